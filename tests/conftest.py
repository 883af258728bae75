"""Shared fixtures: a small synthesized speech corpus and the random encoder (fast, plumbing only)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # tests/helpers.py
sys.path.insert(0, str(Path(__file__).parent.parent))  # cli.py at the repository root

from helpers import resample, speech, write_audio  # noqa: E402

SENTENCES = [
    ["the prince of persia went to the market", "and bought seven apples"],
    ["yesterday i spoke with a doctor", "about the weather in london"],
    ["she sells sea shells by the sea shore"],
]


@pytest.fixture(scope="session")
def random_encoder():
    from awesearch.encoder import load_encoder

    return load_encoder("random")


@pytest.fixture(scope="session")
def speech_clips():
    """[(audio, words)] for three short recordings (about 4 to 6 s each)."""
    return [speech(s) for s in SENTENCES]


@pytest.fixture
def corpus(tmp_path, speech_clips):
    """A directory with three speech recordings in different formats and layouts; returns its path."""
    root = tmp_path / "corpus"
    write_audio(root / "a.wav", speech_clips[0][0])
    write_audio(root / "sub" / "b.flac", resample(speech_clips[1][0], 16000, 44100), sr=44100, channels=2)
    write_audio(root / "sub" / "deeper" / "c.ogg", resample(speech_clips[2][0], 16000, 48000), sr=48000)
    return root


@pytest.fixture(scope="session")
def web_archive(tmp_path_factory, speech_clips):
    """(audio dir, index dir) for the web tests: prince.wav, doctor.flac (44.1 kHz stereo), shells.mka (Opus in
    Matroska, a container browsers do not take as audio), and junk.wav (skipped); random encoder."""
    import shutil

    from awesearch.indexer import index_paths

    root = tmp_path_factory.mktemp("web")
    files = root / "audio"
    write_audio(files / "prince.wav", speech_clips[0][0])
    write_audio(files / "doctor.flac", resample(speech_clips[1][0], 16000, 44100), sr=44100, channels=2)
    webm = write_audio(root / "shells.webm", resample(speech_clips[2][0], 16000, 48000), sr=48000)
    shutil.copy(webm, files / "shells.mka")  # webm is Matroska: FFmpeg reads it, the name says "not for a browser"
    (files / "junk.wav").write_bytes(b"not audio" * 50)
    report = index_paths([str(files)], root / "idx", model="random")
    assert report.indexed == 3 and len(report.skipped) == 1, report
    return files, root / "idx"
