"""Real recorded speech for training and calibration (issue 18, point 1), in the synthetic corpus's format.

    python -m awesearch.train.real build --out ~/.cache/awesearch/real

Only the sources named in ``SOURCES`` are allowed (anything else is refused with one line); the real
evaluation set, SVOX pico and piper voices are never read here:

- ``speechocean762``: the public GitHub repository ``jimbozhang/speechocean762`` (5,000 read utterances, 250
  speakers, Mandarin-L1 adults and children, 16 kHz). Its large ``scores*.json`` are absent from the stored
  copy, so the audio and texts are read blob by blob from the git object store (``git cat-file --batch``).
  Word phonemes are the repository's own canonical phones per word (``resource/text-phone``).
- ``asterisk``: Asterisk's English prompts (Debian ``asterisk-core-sounds-en-g722`` for the 16 kHz G.722
  audio, ``asterisk-core-sounds-en`` for ``core-sounds-en.txt.gz``; one professional voice, CC-BY-SA-3.0),
  fetched with ``apt-get download`` into the cache.

Everything lands under ``--out`` (a cache folder, never the repository) as corpus shards
(``awesearch.train.corpus.CorpusReader`` reads them). Splits are speaker-disjoint, fixed by a hash of the
speaker id: ``train`` (the phoneme head), ``calib`` (the calibration) and ``test`` (every measurement:
PER, the reliability table); the one Asterisk voice is ``train``. Word times in ``calib`` and ``test``
come from pocketsphinx forced alignment of the known words (its own US English model, independent of our
head); utterances it cannot align are left out of those splits. ``train`` words carry no times (CTC
training needs none): start = end = -1.
"""

from __future__ import annotations

import argparse
import gzip
import json
import re
import subprocess
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SAMPLE_RATE = 16000  # Hz
SOURCES = ("speechocean762", "asterisk")
DEFAULT_DIR = Path("~/.cache/awesearch/real").expanduser()
DEFAULT_SPEECHOCEAN = Path("/work/.mirror/jimbozhang+speechocean762/repo")  # what `fetch github:jimbozhang/speechocean762` gives
ASTERISK_PACKAGES = ("asterisk-core-sounds-en-g722", "asterisk-core-sounds-en")
SPLIT_SHARES = (("test", 0.15), ("calib", 0.15))  # by speaker hash; the rest is train
SHARD_UTTERANCES = 200
NO_TIME = -1.0  # seconds: a word whose position was not aligned (train split)


@dataclass
class RawUtterance:
    utt_id: str
    speaker: str  # "speechocean762:0001"
    text: str
    words: list[str]
    phonemes: list[list[str]]  # ARPAbet without stress, one list per word
    audio: np.ndarray  # float32, 16 kHz


def speaker_split(speaker: str) -> str:
    """train / calib / test, fixed by the speaker id (crc32, so it never changes between runs)."""
    u = (zlib.crc32(speaker.encode()) % 10_000) / 10_000
    edge = 0.0
    for name, share in SPLIT_SHARES:
        edge += share
        if u < edge:
            return name
    return "train"


def check_sources(sources: list[str]) -> list[str]:
    unknown = [s for s in sources if s not in SOURCES]
    if unknown:
        raise ValueError(f"unknown real speech source {unknown[0]!r}: only {', '.join(SOURCES)} may be used (issue 18)")
    return list(dict.fromkeys(sources))


def _strip(phone: str) -> str:
    return re.sub(r"(_[BIES])?$", "", phone).rstrip("012").upper()


class GitBlobs:
    """Read files of a git repository without a work tree (one `git cat-file --batch` process)."""

    def __init__(self, repo: Path) -> None:
        if not (Path(repo) / "HEAD").exists() and not (Path(repo) / ".git").exists():
            raise FileNotFoundError(f"{repo} is not a git repository (fetch github:jimbozhang/speechocean762 first)")
        self._p = subprocess.Popen(["git", "--git-dir", str(repo), "cat-file", "--batch"], stdin=subprocess.PIPE, stdout=subprocess.PIPE)

    def read(self, path: str) -> bytes:
        self._p.stdin.write(f"HEAD:{path}\n".encode())
        self._p.stdin.flush()
        header = self._p.stdout.readline().split()
        if len(header) < 3 or header[1] != b"blob":
            raise FileNotFoundError(f"HEAD:{path} is not in the repository")
        data = self._p.stdout.read(int(header[2]))
        self._p.stdout.read(1)
        return data

    def close(self) -> None:
        self._p.stdin.close()
        self._p.wait()


def speechocean(repo: Path) -> list[RawUtterance]:
    import io

    import soundfile as sf

    git = GitBlobs(repo)
    phones: dict[str, dict[int, list[str]]] = {}
    for line in git.read("resource/text-phone").decode().splitlines():
        key, *ph = line.split()
        utt, idx = key.rsplit(".", 1)
        phones.setdefault(utt, {})[int(idx)] = [_strip(p) for p in ph]
    out = []
    for part in ("train", "test"):
        texts = dict(line.split(maxsplit=1) for line in git.read(f"{part}/text").decode().splitlines() if line.strip())
        spk = dict(line.split() for line in git.read(f"{part}/utt2spk").decode().splitlines() if line.strip())
        wavs = dict(line.split() for line in git.read(f"{part}/wav.scp").decode().splitlines() if line.strip())
        for utt, text in sorted(texts.items()):
            words = text.lower().split()
            ph = phones.get(utt, {})
            if len(ph) != len(words) or any(not ph.get(i) for i in range(len(words))):
                continue  # no canonical phones for every word
            audio, sr = sf.read(io.BytesIO(git.read(wavs[utt])), dtype="float32")
            if sr != SAMPLE_RATE:
                raise ValueError(f"speechocean762 {utt}: {sr} Hz, expected {SAMPLE_RATE}")
            out.append(RawUtterance(f"so-{utt}", f"speechocean762:{spk[utt]}", text, words, [ph[i] for i in range(len(words))], audio))
    git.close()
    return out


def asterisk(cache: Path) -> list[RawUtterance]:
    """Download (apt-get download, once) and read the Asterisk English prompts."""
    from awesearch.audio import load_audio
    from awesearch.text import normalize, word_phonemes

    debs = cache / "asterisk"
    debs.mkdir(parents=True, exist_ok=True)
    for pkg in ASTERISK_PACKAGES:
        if not list(debs.glob(f"{pkg}_*.deb")):
            subprocess.run(["apt-get", "download", pkg], cwd=debs, check=True, capture_output=True)
    tree = debs / "x"
    if not (tree / "usr").is_dir():
        for deb in debs.glob("*.deb"):
            subprocess.run(["dpkg-deb", "-x", str(deb), str(tree)], check=True)
    sounds = next((tree / "usr/share/asterisk/sounds").iterdir())
    out = []
    with gzip.open(tree / "usr/share/doc/asterisk-core-sounds-en/core-sounds-en.txt.gz", "rt", errors="replace") as f:
        for line in f:
            if line.startswith(";") or ":" not in line:
                continue
            name, text = line.split(":", 1)
            path = sounds / f"{name.strip()}.g722"
            text = re.sub(r"\[.*?\]|<.*?>", " ", text).strip()
            words = normalize(text)
            if not path.is_file() or not words:
                continue
            try:
                phonemes = [word_phonemes(w) for w in words]
            except Exception:  # a word g2p cannot spell: leave the prompt out
                continue
            audio = load_audio(path)
            out.append(RawUtterance(f"ast-{name.strip().replace('/', '-')}", "asterisk:allison", text, words, phonemes, audio))
    return out


def build(out: Path, sources: list[str], speechocean_repo: Path = DEFAULT_SPEECHOCEAN) -> dict:
    from awesearch.train.synth import EngineError, PocketsphinxAligner

    sources = check_sources(sources)
    out = Path(out).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    utts: list[RawUtterance] = []
    if "speechocean762" in sources:
        utts += speechocean(speechocean_repo)
    if "asterisk" in sources:
        utts += asterisk(out / "sources")
    aligner = PocketsphinxAligner()
    records, blobs, offset, shard, unaligned = [], [], 0, 0, 0
    totals: dict[str, float] = {}
    speakers: dict[str, set] = {}

    def flush() -> None:
        nonlocal records, blobs, offset, shard
        if not records:
            return
        stem = out / f"shard-{shard:05d}"
        np.save(f"{stem}.npy.tmp.npy", np.concatenate(blobs))
        Path(f"{stem}.npy.tmp.npy").replace(f"{stem}.npy")
        Path(f"{stem}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
        Path(f"{stem}.done.json").write_text(json.dumps({"shard": shard, "utterances": len(records)}))
        records, blobs, offset, shard = [], [], 0, shard + 1

    for u in utts:
        split = "train" if u.speaker.startswith("asterisk:") else speaker_split(u.speaker)
        times = [(NO_TIME, NO_TIME)] * len(u.words)
        source = "none"
        if split != "train":
            try:
                got = aligner.align(u.audio, u.words, u.phonemes)
                times, source = [(round(w.start, 4), round(w.end, 4)) for w in got], "pocketsphinx-align"
            except EngineError:
                unaligned += 1
                continue
        pcm = np.clip(np.round(u.audio * 32767.0), -32768, 32767).astype(np.int16)
        records.append({
            "utt_id": u.utt_id, "voice": u.speaker, "base_voice": u.speaker, "text": u.text, "sample_rate": SAMPLE_RATE,
            "words": [{"word": w, "start": s, "end": e, "phonemes": p} for w, (s, e), p in zip(u.words, times, u.phonemes)],
            "split": split, "timing_source": source, "speed": 1.0, "pitch": 0, "offset": offset, "num_samples": len(pcm),
        })
        blobs.append(pcm)
        offset += len(pcm)
        totals[split] = totals.get(split, 0.0) + len(pcm) / SAMPLE_RATE / 3600
        speakers.setdefault(split, set()).add(u.speaker)
        if len(records) >= SHARD_UTTERANCES:
            flush()
    flush()
    manifest = {"sources": sources, "utterances": len(utts) - unaligned, "unaligned_left_out": unaligned,
                "hours": {k: round(v, 3) for k, v in totals.items()}, "speakers": {k: len(v) for k, v in speakers.items()}}
    (out / "real.json").write_text(json.dumps(manifest, indent=1))
    return manifest


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="Build the real speech training/calibration corpus (issue 18): speechocean762 and Asterisk prompts.")
    sub = p.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build", help="read the sources into corpus shards under --out")
    b.add_argument("--out", type=Path, default=DEFAULT_DIR)
    b.add_argument("--source", action="append", dest="sources", help=f"one of {', '.join(SOURCES)} (repeatable; default: all)")
    b.add_argument("--speechocean-repo", type=Path, default=DEFAULT_SPEECHOCEAN, help="git directory of jimbozhang/speechocean762")
    a = p.parse_args(argv)
    try:
        print(json.dumps(build(a.out, a.sources or list(SOURCES), a.speechocean_repo), indent=1))
    except (ValueError, FileNotFoundError) as e:
        raise SystemExit(f"error: {e}") from None


if __name__ == "__main__":
    main()
