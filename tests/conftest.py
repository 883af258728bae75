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
