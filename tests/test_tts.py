"""espeak-ng synthesis through espeakng-loader: audio, word timings, voices, resampling."""

import numpy as np
import pytest

from awesearch import tts


def test_synthesize_words_and_audio():
    s = tts.synthesize("The prince bought prints.")
    assert s.sample_rate == 16000
    assert s.audio.dtype == np.float32 and s.audio.ndim == 1
    assert 0.5 < len(s.audio) / 16000 < 3.0
    assert 0.05 < np.abs(s.audio).max() <= 1.0
    assert [w.word for w in s.words] == ["The", "prince", "bought", "prints"]
    duration = len(s.audio) / 16000
    for a, b in zip(s.words, s.words[1:]):
        assert a.start < a.end <= b.start + 1e-6
    assert s.words[-1].end <= duration + 1e-6
    assert all(w.end - w.start > 0.03 for w in s.words)


def test_trailing_silence_trimmed_at_sentence_end():
    s = tts.synthesize("This is a test. Another sentence.")
    test, another = s.words[3], s.words[4]
    assert test.word == "test" and another.word == "Another"
    assert another.start - test.end > 0.1  # the pause between sentences is not part of "test"


def test_repeated_calls_agree_and_voices_differ():
    a = tts.synthesize("hello world", voice="en-us", rate=175, pitch=50)
    b = tts.synthesize("hello world", voice="en-us", rate=175, pitch=50)
    # espeak-ng is not bit-exact between calls (a few samples of jitter), but timings agree
    assert abs(len(a.audio) - len(b.audio)) < 160
    assert [(w.word, round(w.start, 2)) for w in a.words] == [(w.word, round(w.start, 2)) for w in b.words]
    fast = tts.synthesize("hello world", voice="en-us", rate=300)
    assert len(fast.audio) < len(a.audio)
    other = tts.synthesize("hello world", voice="en-029", variant="f3", pitch=80)
    assert not np.array_equal(other.audio[: len(a.audio)], a.audio[: len(other.audio)])


def test_unknown_voice_raises():
    with pytest.raises(tts.SynthesisError):
        tts.synthesize("hello", voice="xx-nonexistent")
    with pytest.raises(tts.SynthesisError):
        tts.synthesize("   ")


def test_list_voices_and_variants():
    voices = tts.list_voices()
    assert "gmw/en-US" in voices and len(voices) > 50
    variants = tts.list_variants()
    assert {"f3", "m1", "klatt"} <= set(variants)


def test_resample_preserves_tone():
    sr_in, sr_out, freq = 22050, 16000, 1000.0
    x = np.sin(2 * np.pi * freq * np.arange(sr_in) / sr_in).astype(np.float32)
    y = tts.resample(x, sr_in, sr_out)
    assert len(y) == sr_out
    ref = np.sin(2 * np.pi * freq * np.arange(sr_out) / sr_out)
    assert np.abs(y[200:-200] - ref[200:-200]).max() < 1e-2
    # content above the new Nyquist is removed
    hi = np.sin(2 * np.pi * 10000 * np.arange(sr_in) / sr_in).astype(np.float32)
    assert np.abs(tts.resample(hi, sr_in, sr_out)[200:-200]).max() < 0.05
