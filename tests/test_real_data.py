"""The real speech builder (awesearch/train/real.py): allowed sources only, speaker-disjoint splits."""

import subprocess
import sys

import pytest

from awesearch.train.real import SOURCES, _strip, check_sources, speaker_split


def test_the_builder_refuses_a_source_it_does_not_know():
    assert check_sources(["asterisk", "speechocean762", "asterisk"]) == ["asterisk", "speechocean762"]
    for bad in ("librispeech", "piper", "eval-real"):
        with pytest.raises(ValueError, match=f"unknown real speech source '{bad}'"):
            check_sources(["asterisk", bad])


def test_the_command_refuses_an_unknown_source_in_one_line(tmp_path):
    r = subprocess.run([sys.executable, "-m", "awesearch.train.real", "build", "--out", str(tmp_path / "real"), "--source", "svox-pico"],
                       capture_output=True, text=True)
    assert r.returncode != 0
    assert r.stderr.strip().splitlines() == [f"error: unknown real speech source 'svox-pico': only {', '.join(SOURCES)} may be used (issue 18)"]
    assert not (tmp_path / "real").exists()  # refused before anything is written


def test_speaker_splits_are_fixed_disjoint_and_near_their_shares():
    speakers = [f"speechocean762:{i:04d}" for i in range(2000)]
    splits = [speaker_split(s) for s in speakers]
    assert splits == [speaker_split(s) for s in speakers]  # a pure function of the speaker
    share = {k: splits.count(k) / len(splits) for k in ("train", "calib", "test")}
    assert abs(share["test"] - 0.15) < 0.03 and abs(share["calib"] - 0.15) < 0.03 and abs(share["train"] - 0.70) < 0.04


def test_speechocean_phone_labels_become_plain_arpabet():
    assert [_strip(p) for p in ["W_B", "IY0_E", "AO1_I", "T_E", "K"]] == ["W", "IY", "AO", "T", "K"]
