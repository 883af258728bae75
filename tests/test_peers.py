import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import peers  # noqa: E402

SENTENCE = "the quarterly budget is due before friday and the lazy river keeps flowing"


def _overlaps(span, start, end, tol=0.2):
    return span.start < end + tol and span.end > start - tol


@pytest.fixture(scope="module")
def speech():
    from awesearch.tts import synthesize

    s = synthesize(SENTENCE)
    return s.audio, {w.word: (w.start, w.end) for w in s.words}


@pytest.mark.slow
def test_text_search_phrases():
    W = peers.WordHit
    words = [W("The", 0.0, 0.2, 0.9), W("lazy", 0.2, 0.5, 0.5), W("River.", 0.5, 0.9, 0.7), W("in", 1.0, 1.1, 1.0), W("1813", 1.1, 1.8, 0.8)]
    assert peers.text_search(words, "lazy river") == [peers.Span(0.2, 0.9, pytest.approx(0.6))]
    assert peers.text_search(words, "river lazy") == []
    assert [h.start for h in peers.text_search(words, "eighteen thirteen")] == [1.1]
    with pytest.raises(peers.QueryError):
        peers.text_search(words, "one two three four five")


def test_subsequence_dtw_finds_planted_segment():
    rng = np.random.default_rng(0)
    archive = rng.standard_normal((300, 8))
    query = archive[120:150]
    query = np.repeat(query, 2, axis=0)[::3]  # tempo change: 20 frames standing for 30
    qn = query / np.linalg.norm(query, axis=1, keepdims=True)
    an = archive / np.linalg.norm(archive, axis=1, keepdims=True)
    cost, start = peers.subsequence_dtw(1 - qn @ an.T)
    end = int(np.argmin(cost))
    assert abs(end - 149) <= 2 and abs(int(start[end]) - 120) <= 2


def test_dtw_search(speech):
    from awesearch.tts import synthesize

    audio, truth = speech
    query = synthesize("budget", rate=150, variant="f2").audio
    hits = peers.dtw_search(query, audio, max_hits=3)
    assert hits == sorted(hits, key=lambda h: -h.score)
    assert _overlaps(hits[0], *truth["budget"])


@pytest.mark.slow
def test_whisper_transcript_search(speech):
    audio, truth = speech
    words = peers.whisper_transcribe(audio)
    assert len(words) >= 8
    hits = peers.text_search(words, "budget")
    assert hits and _overlaps(hits[0], *truth["budget"])
    assert all(0.0 <= w.prob <= 1.0 and w.start <= w.end for w in words)


@pytest.mark.slow
def test_pocketsphinx_keyphrase(speech):
    audio, truth = speech
    hits = peers.pocketsphinx_keyphrase(audio, "budget")
    assert hits and _overlaps(hits[0], *truth["budget"])
    assert peers.pocketsphinx_keyphrase(audio, "decision") == []


@pytest.mark.slow
def test_pocketsphinx_transcribe(speech):
    audio, _ = speech
    words = peers.pocketsphinx_transcribe(audio)
    assert words and all(w.word not in peers.PS_FILLERS and w.start < w.end <= len(audio) / 16000 + 0.02 for w in words)
