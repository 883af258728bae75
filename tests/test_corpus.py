"""Training corpus: lexicon, engines and word boundaries, augmentation, negatives, build + reader."""

import random
import shutil

import numpy as np
import pytest

pytest.importorskip("wordfreq", reason="training extra not installed: pip install wordfreq==3.1.1")

from awesearch import text
from awesearch.train import augment as A
from awesearch.train import corpus as C
from awesearch.train import lexicon as L
from awesearch.train import negatives as N
from awesearch.train import synth as S

SR = 16000


# ------------------------------------------------------------------ lexicon and split

def test_oov_split_is_deterministic_and_spares_common_words():
    words = [f"word{i}" for i in range(2000)]
    held = [w for w in words if L.is_oov_word(w)]
    assert held == [w for w in words if L.is_oov_word(w)]
    assert 0.05 < len(held) / len(words) < 0.15
    assert not any(L.is_oov_word(w) for w in ["the", "and", "of", "you", "is"])
    assert L.is_oov_word("Word7") == L.is_oov_word("word7")


@pytest.mark.slow
def test_small_lexicon_and_sampler():
    lex = L.build_lexicon(300)
    words = [e.word for e in lex]
    assert words[:3] == ["the", "to", "and"]
    assert len(set(words)) == len(words) >= 300
    assert all(e.phonemes and set(e.phonemes) <= set(text.PHONEMES) for e in lex)
    assert any(e.is_name for e in lex) and any(e.oov for e in lex)
    iv = L.WordSampler(lex, oov=False)
    draws = iv.draw(np.random.default_rng(0), 2000)
    assert not any(e.oov for e in draws)
    counts = {}
    for e in draws:
        counts[e.word] = counts.get(e.word, 0) + 1
    assert counts.get("the", 0) > 2000 / len(iv.entries)  # frequency-aware, not uniform
    assert L.spoken_form(next(e for e in lex if e.is_name))[0].isupper()


# ------------------------------------------------------------------ engines and boundaries

def _request(engine, voice):
    words = ["the", "prince", "bought", "prints", "for", "sarah"]
    return S.Request("The prince bought prints, for Sarah.", words, [text.word_phonemes(w) for w in words],
                     voice, S.Prosody(1.0, 50, 50))


def _check_spoken(res, n_words):
    assert not isinstance(res, Exception), res
    dur = len(res.audio) / SR
    assert res.audio.dtype == np.float32 and 0.8 < dur < 5
    assert [w.word for w in res.words] == ["the", "prince", "bought", "prints", "for", "sarah"][:n_words]
    for a, b in zip(res.words, res.words[1:]):
        assert a.start < a.end <= b.start + 1e-3
    assert res.words[-1].end <= dur + 1e-3
    # the word spans hold speech: each has energy well above the silence floor
    for w in res.words:
        seg = res.audio[int(w.start * SR): int(w.end * SR)]
        assert np.sqrt(np.mean(seg ** 2)) > 0.005


def test_espeak_engine():
    eng = S.EspeakSynth()
    voices = C.usable_voices(eng.voices())
    assert len({v.base for v in voices}) == 8
    res = eng.speak([_request(eng, S.Voice("espeak", "en-gb-scotland", "f3"))])[0]
    _check_spoken(res, 6)
    assert res.timing_source == "espeak-events"


@pytest.mark.parametrize("engine_name", ["festival", "flite", "mbrola"])
def test_other_engine_families(engine_name):
    engines = S.available_engines((engine_name,))
    if engine_name not in engines:
        pytest.skip(f"{engine_name} not installed (scripts/install_train_deps.sh)")
    eng = engines[engine_name]
    res = eng.speak([_request(eng, eng.voices()[0])])[0]
    _check_spoken(res, 6)


def test_word_count_mismatch_is_an_error_not_a_guess():
    eng = S.EspeakSynth()
    req = _request(eng, S.Voice("espeak", "en-us"))
    req.words = req.words[:-1]
    assert isinstance(eng.speak([req])[0], S.EngineError)


def test_pocketsphinx_forced_alignment_matches_espeak_events():
    pytest.importorskip("pocketsphinx")
    from awesearch import tts
    words = ["the", "prince", "bought", "prints", "for", "sarah"]
    s = tts.synthesize(" ".join(words))
    got = S.PocketsphinxAligner().align(s.audio, words, [text.word_phonemes(w) for w in words])
    assert [w.word for w in got] == words
    starts = np.array([w.start for w in got]) - np.array([w.start for w in s.words])
    assert np.median(np.abs(starts)) < 0.05


def test_align_phones_to_words():
    words = [["P", "R", "IH", "N", "S"], ["B", "AO", "T"]]
    assert S.align_phones_to_words(words, ["P", "R", "IH", "N", "S", "B", "AO", "T"]) == [(0, 4), (5, 7)]
    # a substituted and an inserted phone stay with their word
    assert S.align_phones_to_words(words, ["P", "R", "IY", "N", "T", "S", "B", "AA", "T"]) == [(0, 5), (6, 8)]
    assert S.align_phones_to_words(words, ["P", "R"]) is None


# ------------------------------------------------------------------ augmentation

@pytest.fixture(scope="module")
def speech():
    from awesearch import tts
    return tts.synthesize("the prince bought prints").audio


def test_augment_keeps_length_and_timing(speech):
    rng = random.Random(0)
    for _ in range(10):
        out = A.random_augment(speech, rng)
        assert out.shape == speech.shape and out.dtype == np.float32
        assert np.isfinite(out).all() and np.abs(out).max() <= 1.0
    babble = A.Augmenter([speech, speech[::-1].copy()], probs={"noise": 1.0})
    assert babble(speech, rng).shape == speech.shape


def test_noise_at_requested_snr(speech):
    noise = A.pink_noise(len(speech), random.Random(1))
    mixed = A.add_noise(speech, noise, 10.0)
    residual = mixed - speech
    snr = 10 * np.log10(np.mean(speech ** 2) / np.mean(residual ** 2))
    assert abs(snr - 10.0) < 0.5


def test_pitch_shift_and_speed():
    tone = np.sin(2 * np.pi * 440 * np.arange(SR) / SR).astype(np.float32)
    up = A.pitch_shift(tone, 12.0)
    assert len(up) == len(tone)
    peak = np.argmax(np.abs(np.fft.rfft(up[2000:14000]))) * SR / 12000
    assert abs(peak - 880) < 10
    fast, factor = A.speed_perturb(tone, 1.1)
    assert abs(factor - 1.1) < 0.02 and abs(len(fast) - len(tone) / factor) < 2


@pytest.mark.parametrize("codec, bitrate", [("mp3", 48000), ("opus", 16000)])
def test_codec_round_trip_is_aligned(speech, codec, bitrate):
    out = A.codec_round_trip(speech, codec, bitrate)
    assert out.shape == speech.shape
    assert np.corrcoef(out, speech)[0, 1] > 0.9  # the codec delay was removed


def test_reverb_and_telephone(speech):
    rir = A.room_impulse_response(random.Random(0), 0.5, 3.0)
    wet = A.reverberate(speech, rir)
    assert wet.shape == speech.shape and 0.5 < np.corrcoef(wet, speech)[0, 1] < 0.999
    tel = A.telephone(speech)
    spec = np.abs(np.fft.rfft(tel))
    freqs = np.fft.rfftfreq(len(tel), 1 / SR)
    assert spec[freqs > 4000].max() < 1e-3 * spec.max()


# ------------------------------------------------------------------ negatives

def test_phoneme_edits_distance_and_distinct():
    phones = text.word_phonemes("prince")
    edits = N.phoneme_edits(phones, 20, random.Random(0))
    assert len(edits) == 20 and len({tuple(e) for e in edits}) == 20
    assert all(1 <= N.edit_distance(phones, e) <= 2 for e in edits)
    assert all(set(e) <= set(text.PHONEMES) for e in edits)
    assert N.phoneme_edits([], 3, random.Random(0)) == []


def test_replacements_favour_confusable_phonemes():
    rng = random.Random(0)
    swaps = [e[0] for e in (N._one_edit(["P"], rng) for _ in range(3000)) if len(e) == 1]
    share = sum(p in N.confusable_with("P") for p in swaps) / len(swaps)
    assert share > 0.3  # 3 of 38 phonemes, boosted 8x -> ~0.4


def test_neighbour_index_finds_real_confusable_words():
    words = ["prince", "prints", "princess", "print", "rinse", "banana", "search"]
    idx = N.NeighbourIndex((w, text.word_phonemes(w)) for w in words)
    found = dict(idx.neighbours(text.word_phonemes("prince"), exclude="prince"))
    assert {"prints", "princess", "print", "rinse"} <= set(found)
    assert "banana" not in found and "prince" not in found
    assert found["prints"] == 1 and found["princess"] == 2


# ------------------------------------------------------------------ build and read

def test_build_shard_and_reader(tmp_path, monkeypatch):
    monkeypatch.setattr(C, "SHARD_UTTERANCES", 6)
    monkeypatch.setattr(C, "ENGINE_WEIGHTS", {"espeak": 1.0, "festival": 0.0, "flite": 0.0, "mbrola": 0.0})
    C.write_lexicon(tmp_path / "lexicon.tsv", L.build_lexicon(200))
    stats = C.build_shard(tmp_path, 7, 0, ("espeak",))
    assert stats["engine"] == "espeak" and stats["utterances"] + stats["failed"] == 6
    assert stats["utterances"] >= 5
    first = (tmp_path / "shard-00000.jsonl").read_text()
    # cached: a second call does not rebuild
    assert C.build_shard(tmp_path, 7, 0, ("espeak",)) == stats
    reader = C.CorpusReader(tmp_path)
    assert len(reader) == stats["utterances"]
    for utt in reader:
        assert utt.audio.dtype == np.float32 and utt.sample_rate == SR
        assert utt.voice.startswith("espeak:") and utt.base_voice == ":".join(utt.voice.split(":")[:2])
        assert utt.split in ("train", "val_voice", "val_oov")
        assert utt.words and all(0 <= w.start < w.end <= utt.duration + 1e-3 for w in utt.words)
        assert all(w.phonemes for w in utt.words)
        assert (utt.split == "val_oov") == any(L.is_oov_word(w.word) for w in utt.words)
    st = reader.stats()["all"]
    assert st["utterances"] == len(reader) and st["hours"] > 0
    # deterministic from the seed: the same texts and voices again
    other = tmp_path / "again"
    other.mkdir()
    shutil.copy(tmp_path / "lexicon.tsv", other / "lexicon.tsv")
    C.build_shard(other, 7, 0, ("espeak",))
    strip = lambda s: [l.split('"words"')[0] for l in s.splitlines()]
    assert strip((other / "shard-00000.jsonl").read_text()) == strip(first)
    assert len(list(reader.utterances(split="train", shuffle_seed=1))) == sum(u.split == "train" for u in reader)


def test_plan_is_pure_and_splits_by_voice():
    lex = L.build_lexicon(200)
    iv, oov = L.WordSampler(lex, False), L.WordSampler(lex, True)
    voices = C.usable_voices(S.EspeakSynth().voices())
    a = C.plan_shard(3, 1, voices, iv, oov)
    b = C.plan_shard(3, 1, voices, iv, oov)
    assert [(r.text, r.voice, s) for r, s in a] == [(r.text, r.voice, s) for r, s in b]
    for req, split in a:
        if split == "val_voice":
            assert C.is_held_out_voice(req.voice)
        if split == "train":
            assert not C.is_held_out_voice(req.voice) and not any(L.is_oov_word(w) for w in req.words)
