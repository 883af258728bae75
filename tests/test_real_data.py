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


def _fake_speechocean(root, utterances):
    """A git repository laid out like jimbozhang/speechocean762 (WAVE/, train/ and test/ tables, text-phone)."""
    from helpers import write_audio

    from awesearch.text import word_phonemes

    for d in ("train", "test", "resource"):
        (root / d).mkdir(parents=True, exist_ok=True)
    rows = {"train": [], "test": []}
    phones = []
    for utt, spk, part, audio, words in utterances:
        write_audio(root / "WAVE" / f"SPEAKER{spk}" / f"{utt}.WAV", audio)
        rows[part].append((utt, spk, " ".join(w.upper() for w in words)))
        phones += [f"{utt}.{i} " + " ".join(p + "0" for p in word_phonemes(w)) for i, w in enumerate(words)]
    for part, rs in rows.items():
        (root / part / "text").write_text("".join(f"{u}\t{t}\n" for u, _, t in rs))
        (root / part / "utt2spk").write_text("".join(f"{u} {s}\n" for u, s, _ in rs))
        (root / part / "wav.scp").write_text("".join(f"{u}\tWAVE/SPEAKER{s}/{u}.WAV\n" for u, s, _ in rs))
    (root / "resource" / "text-phone").write_text("\n".join(phones) + "\n")
    git = ["git", "-c", "user.email=t@t", "-c", "user.name=t", "-C", str(root)]
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    subprocess.run(git + ["add", "-A"], check=True)
    subprocess.run(git + ["commit", "-qm", "fake"], check=True)
    return root / ".git"


@pytest.mark.slow
def test_the_builder_reads_speechocean_from_git_objects_into_speaker_disjoint_corpus_shards(tmp_path):
    from helpers import speech

    from awesearch.train.corpus import CorpusReader
    from awesearch.train.real import build

    # speakers chosen so that the crc32 split gives one of each split
    by_split = {}
    for i in range(200):
        by_split.setdefault(speaker_split(f"speechocean762:{i:04d}"), f"{i:04d}")
        if len(by_split) == 3:
            break
    utterances = []
    for n, (split, spk) in enumerate(sorted(by_split.items())):
        words = ["the", "prince", "spoke"]
        audio, _ = speech([" ".join(words)])
        utterances.append((f"{n:09d}", spk, "train" if n % 2 else "test", audio, words))
    repo = _fake_speechocean(tmp_path / "so", utterances)
    out = tmp_path / "real"
    manifest = build(out, ["speechocean762"], repo)
    assert set(manifest["hours"]) == {"train", "calib", "test"} and manifest["unaligned_left_out"] == 0
    reader = CorpusReader(out)
    got = {u.split: u for u in reader}
    assert set(got) == {"train", "calib", "test"}
    for split, u in got.items():
        assert u.voice == f"speechocean762:{by_split[split]}" and [w.word for w in u.words] == ["the", "prince", "spoke"]
        assert u.words[1].phonemes == ["P", "R", "IH", "N", "S"] and len(u.audio) > 16000
        if split == "train":
            assert all(w.start == w.end == -1.0 for w in u.words)  # CTC needs no word times
        else:  # pocketsphinx word times, in order, inside the utterance
            starts = [w.start for w in u.words]
            assert starts == sorted(starts) and 0 <= starts[0] and u.words[-1].end <= u.duration + 1e-6
