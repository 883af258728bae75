"""Decoding (formats, rates, layouts, seeking, chunking, bad input), VAD regions and candidate windows."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from awesearch.audio import SAMPLE_RATE, iter_chunks, load_audio, probe_duration
from awesearch.errors import AudioDecodeError
from helpers import resample, tone, truncate, write_audio

FORMATS = [  # (extension, source rate, channels)
    (".wav", 44100, 2),
    (".wav", 8000, 1),
    (".flac", 22050, 2),
    (".ogg", 48000, 1),
    (".mp3", 44100, 2),
    (".opus", 48000, 2),
    (".m4a", 44100, 1),
    (".aac", 32000, 2),
    (".mp4", 44100, 2),  # with a video track
    (".webm", 48000, 1),  # with a video track
]


@pytest.mark.parametrize("ext,rate,channels", FORMATS)
def test_formats_decode_to_16k_mono(tmp_path, ext, rate, channels):
    src = tone(2.0, freq=440.0)
    path = write_audio(tmp_path / f"x{ext}", resample(src, SAMPLE_RATE, rate), sr=rate, channels=channels)
    audio = load_audio(path)
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert abs(len(audio) / SAMPLE_RATE - 2.0) < 0.06  # codec priming / padding only
    assert abs(probe_duration(path) - 2.0) < 0.06
    spectrum = np.abs(np.fft.rfft(audio[: SAMPLE_RATE]))
    assert abs(np.argmax(spectrum) - 440) <= 2  # 1 s of audio: bin = Hz
    assert 0.2 < np.abs(audio).max() < 0.4  # channels averaged, not summed


@pytest.mark.parametrize("rate", [16000, 44100])
def test_load_audio_span_matches_full_decode(tmp_path, rate):
    src = np.random.default_rng(1).normal(0, 0.1, 5 * SAMPLE_RATE).astype(np.float32)
    path = write_audio(tmp_path / "x.wav", resample(src, SAMPLE_RATE, rate), sr=rate, subtype="FLOAT")
    full = load_audio(path)
    part = load_audio(path, 2.5, 3.25)
    lo = int(2.5 * SAMPLE_RATE)
    assert len(part) == int(0.75 * SAMPLE_RATE)
    np.testing.assert_allclose(part, full[lo : lo + len(part)], atol=1e-4)
    assert len(load_audio(path, 4.5, 9.0)) == int(0.5 * SAMPLE_RATE)  # clipped at the end of the file


def test_chunks_tile_the_file(tmp_path):
    src = np.random.default_rng(2).normal(0, 0.1, int(10.3 * SAMPLE_RATE)).astype(np.float32)
    path = write_audio(tmp_path / "x.wav", src, subtype="FLOAT")
    chunks = list(iter_chunks(path, chunk_s=3.0, overlap_s=2.0))
    assert [c.core_start for c in chunks] == [0.0, 3.0, 6.0, 9.0]
    assert chunks[-1].core_end == pytest.approx(10.3)
    for c in chunks:
        lo = int(round(c.start * SAMPLE_RATE))
        np.testing.assert_array_equal(c.samples, src[lo : lo + len(c.samples)])
        assert c.start == pytest.approx(max(0.0, c.core_start - 1.0))
        assert c.end == pytest.approx(min(10.3, c.core_end + 1.0))
    cores = [c.samples[int(round((c.core_start - c.start) * SAMPLE_RATE)) : int(round((c.core_end - c.start) * SAMPLE_RATE))] for c in chunks]
    np.testing.assert_array_equal(np.concatenate(cores), src)


def test_bad_files_raise_one_line_reasons(tmp_path):
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    text = tmp_path / "notes.mp3"
    text.write_text("this is not audio\n" * 20)
    trunc = truncate(write_audio(tmp_path / "trunc.wav", tone(2.0)), 0.5)
    broken = tmp_path / "broken.flac"
    os.symlink(tmp_path / "missing.flac", broken)
    garbage = tmp_path / "garbage.flac"
    garbage.write_bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    expected = {empty: "empty", text: "not decodable", trunc: "truncated", broken: "broken symlink", garbage: "decodable"}
    for path, words in expected.items():
        with pytest.raises(AudioDecodeError) as err:
            load_audio(path)
        msg = str(err.value)
        assert words in msg and "\n" not in msg and str(path) in msg


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_permission_denied(tmp_path):
    path = write_audio(tmp_path / "x.wav", tone(1.0))
    path.chmod(0)
    with pytest.raises(AudioDecodeError, match="permission denied"):
        load_audio(path)


def test_permission_denied_simulated(tmp_path, monkeypatch):
    path = write_audio(tmp_path / "x.wav", tone(1.0))
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: False if Path(p) == path else real_access(p, mode))
    with pytest.raises(AudioDecodeError, match="permission denied"):
        probe_duration(path)


# -- VAD ---------------------------------------------------------------------------------------


def test_vad_finds_speech_and_skips_silence(speech_clips):
    from awesearch.vad import speech_regions

    audio, words = speech_clips[0]
    regions = speech_regions(audio)
    assert regions, "no speech found"
    for w in words:  # every word lies (mostly) inside a region
        mid = (w.start + w.end) / 2
        assert any(s <= mid <= e for s, e in regions), w
    speech_s = sum(e - s for s, e in regions)
    assert speech_s < 0.9 * len(audio) / SAMPLE_RATE  # the gaps are not speech
    assert speech_regions(np.zeros(3 * SAMPLE_RATE, np.float32)) == []
    assert speech_regions(tone(3.0, 1000.0)) == []


def test_numpy_vad_equals_silero_torchscript_frame_by_frame(speech_clips):
    """Our numpy silero, stepped frame by frame, against the package's own TorchScript model (torch)."""
    import torch
    from silero_vad import load_silero_vad

    from awesearch.vad import speech_probabilities_many

    audio = np.concatenate([c[0] for c in speech_clips])
    reference = load_silero_vad(onnx=False).audio_forward(torch.from_numpy(audio), SAMPLE_RATE)[0].numpy()
    ours = speech_probabilities_many([audio], stream_s=None)[0]
    assert ours.shape == reference.shape
    assert np.abs(ours - reference).max() < 1e-4  # measured 7.3e-6 (float32 arithmetic in another order)
    assert reference.max() > 0.9 and reference.min() < 0.1  # speech and pauses both present


def test_regions_follow_silero_state_machine():
    from silero_vad import get_speech_timestamps_from_probs

    from awesearch.vad import FRAME_SAMPLES, MIN_SILENCE_S, MIN_SPEECH_S, REGION_PAD_S, SPEECH_THRESHOLD, regions_from_probabilities

    rng = np.random.default_rng(0)
    for k in range(20):  # runs of speech and silence of random lengths, with noise, ending either way
        probs = np.repeat(rng.random(60) < 0.5, rng.integers(1, 12, 60)).astype(np.float32) * 0.8 + rng.random(1) * 0.05
        probs = np.clip(probs + rng.normal(0, 0.15, len(probs)), 0, 1).astype(np.float32)
        n = len(probs) * FRAME_SAMPLES - int(rng.integers(0, FRAME_SAMPLES))
        expected = get_speech_timestamps_from_probs(
            [float(p) for p in probs], sampling_rate=SAMPLE_RATE, threshold=SPEECH_THRESHOLD,
            min_speech_duration_ms=int(MIN_SPEECH_S * 1000), min_silence_duration_ms=int(MIN_SILENCE_S * 1000),
            speech_pad_ms=int(REGION_PAD_S * 1000), audio_length_samples=n,
        )
        assert regions_from_probabilities(probs, n) == [(s["start"] / SAMPLE_RATE, s["end"] / SAMPLE_RATE) for s in expected], k


@pytest.mark.slow
def test_batched_vad_matches_frame_by_frame(speech_clips):
    from awesearch.vad import regions_from_probabilities, speech_probabilities, speech_probabilities_many

    audio = np.concatenate([c[0] for c in speech_clips])
    batched = speech_probabilities(audio)
    sequential = speech_probabilities_many([audio], stream_s=None)[0]  # = silero's own (test above)
    assert batched.shape == sequential.shape
    assert np.mean(np.abs(batched - sequential) < 0.1) > 0.93  # measured 0.956 (the torch streams before: 0.956)
    a = regions_from_probabilities(batched, len(audio))
    b = regions_from_probabilities(sequential, len(audio))
    covered = lambda regions, t: any(s <= t <= e for s, e in regions)  # noqa: E731
    grid = np.arange(0, len(audio) / SAMPLE_RATE, 0.01)
    agree = np.mean([covered(a, t) == covered(b, t) for t in grid])
    assert agree > 0.97  # measured 0.985 (the torch streams before: 0.985)


def test_vad_runs_without_torch():
    """The indexer runs the VAD while torch is being imported: awesearch.vad must not need it."""
    code = (
        "import sys, numpy as np; from awesearch.vad import speech_regions; "
        "speech_regions(np.random.default_rng(0).normal(0, 0.1, 16000).astype(np.float32)); "
        "assert 'torch' not in sys.modules and 'silero_vad' not in sys.modules, 'imported torch'"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-500:]


def test_vad_model_reader_refuses_foreign_code(tmp_path):
    """The TorchScript reader unpickles tensors and module attributes only: any other global is refused."""
    import pickle
    import zipfile

    from awesearch.errors import CheckpointError
    from awesearch.vad import read_jit_module

    path = tmp_path / "evil.jit"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("m/data.pkl", pickle.dumps(os.system, protocol=2))  # a GLOBAL os.system
    with pytest.raises(CheckpointError, match="unexpected"):
        read_jit_module(path)
    path.write_bytes(b"not a zip")
    with pytest.raises(CheckpointError, match="cannot read"):
        read_jit_module(path)


# -- windows -----------------------------------------------------------------------------------


def test_windows_cover_every_word_and_phrase_within_the_grid_tolerance(speech_clips):
    from awesearch.vad import speech_regions
    from awesearch.windows import COARSE_FROM_S, COARSE_STRIDE, MAX_GAP_S, MAX_WINDOW_S, MIN_WINDOW_S, candidate_windows, merge_regions

    total_windows = total_speech = 0.0
    for audio, words in speech_clips:
        regions = speech_regions(audio)
        w = candidate_windows(audio, regions)
        assert len(w) > 0
        d = w[:, 1] - w[:, 0]
        assert d.min() >= MIN_WINDOW_S - 1e-9 and d.max() <= MAX_WINDOW_S + 1e-9
        assert len(np.unique(w, axis=0)) == len(w)
        spans = merge_regions(regions, len(audio) / SAMPLE_RATE)
        assert all(any(s - 1e-9 <= a and b <= e + 1e-9 for s, e in spans) for a, b in w)
        checked = 0
        for n in range(1, 5):
            for i in range(len(words) - n + 1):
                start, end = words[i].start, words[i + n - 1].end
                if not 0.2 <= end - start <= MAX_WINDOW_S:
                    continue
                err = np.maximum(np.abs(w[:, 0] - start), np.abs(w[:, 1] - end)).min()
                # each edge within half a grid step: 0.125 s for short windows, 0.25 s on the coarse grid
                tolerance = MAX_GAP_S / 2 if end - start <= COARSE_FROM_S - MAX_GAP_S / 2 else COARSE_STRIDE * MAX_GAP_S / 2
                assert err <= tolerance + 1e-6, (words[i : i + n], err)
                checked += 1
        assert checked > 10
        total_windows += len(w)
        total_speech += sum(e - s for s, e in regions)
    assert total_windows / total_speech < 15  # issue 11: at most 15 windows per second of speech


def test_windows_stay_inside_speech():
    from awesearch.windows import candidate_windows

    audio = np.zeros(10 * SAMPLE_RATE, np.float32)
    w = candidate_windows(audio, [(1.0, 2.5), (6.0, 6.1), (7.0, 8.0)])
    inside = ((w[:, 0] >= 1.0) & (w[:, 1] <= 2.5)) | ((w[:, 0] >= 7.0) & (w[:, 1] <= 8.0))
    assert len(w) > 0 and inside.all()
    assert candidate_windows(audio, []).shape == (0, 2)
