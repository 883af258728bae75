"""The bar to beat: average precision of Whisper tiny.en transcript search on the real recordings.

For every word type of at least MIN_PHONEMES phonemes in ../shared/eval/real/words_aligned.tsv, search
all transcripts (``peers.text_search``); a hit is correct if it overlaps a not-yet-matched true
occurrence of that word in the same recording, with TOLERANCE_S slack either side. AP per word =
mean over true occurrences of the precision at the rank where each was found (0 if never found);
the bar is the mean over words (MAP). Audio is read in place, never copied. Transcripts are cached
(delete the cache after changing peers.whisper_transcribe's settings).

Usage: nice python benchmarks/whisper_bar.py [--real DIR] [--limit N] [--cache runs/whisper_transcripts.json]
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

import peers
from awesearch.audio import load_audio
from awesearch.text import word_phonemes

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_REAL = ROOT.parent / "shared" / "eval" / "real"
MIN_PHONEMES = 4  # search targets: words of at least this many phonemes
TOLERANCE_S = 0.5  # seconds of slack either side of the true word


def read_truth(real: Path, clips: set[str] | None) -> dict[str, list[tuple[str, float, float]]]:
    truth: dict[str, list[tuple[str, float, float]]] = defaultdict(list)
    with open(real / "words_aligned.tsv", newline="") as f:
        for row in csv.DictReader(f, delimiter="\t"):
            if clips is None or row["id"] in clips:
                truth[row["id"]].append((row["word"], float(row["start_s"]), float(row["end_s"])))
    return truth


def transcribe_all(real: Path, clips: list[str], cache: Path) -> tuple[dict[str, list[peers.WordHit]], float, float]:
    """Transcripts by clip id (cached as JSON), plus seconds of audio and of transcription this run."""
    done = json.loads(cache.read_text()) if cache.is_file() else {}
    audio_s = run_s = 0.0
    for clip in clips:
        if clip in done:
            continue
        audio = load_audio(real / "audio" / f"{clip}.wav")
        t0 = time.perf_counter()
        words = peers.whisper_transcribe(audio)
        run_s += time.perf_counter() - t0
        audio_s += len(audio) / peers.SAMPLE_RATE
        done[clip] = [[w.word, w.start, w.end, w.prob] for w in words]
        cache.parent.mkdir(parents=True, exist_ok=True)
        cache.write_text(json.dumps(done))
    return {c: [peers.WordHit(*w) for w in done[c]] for c in clips}, audio_s, run_s


def word_ap(word: str, transcripts: dict[str, list[peers.WordHit]], truth: dict[str, list[tuple[str, float, float]]]) -> tuple[float, int, int]:
    """(AP, true occurrences, occurrences found) of one query word over all clips."""
    hits = [(h.score, clip, h.start, h.end) for clip, words in transcripts.items() for h in peers.text_search(words, word)]
    hits.sort(key=lambda h: -h[0])
    occurrences = {clip: [(s, e) for w, s, e in ws if w == word] for clip, ws in truth.items()}
    n_true = sum(len(v) for v in occurrences.values())
    used: set[tuple[str, int]] = set()
    precisions = []
    for rank, (_, clip, start, end) in enumerate(hits, 1):
        for k, (s, e) in enumerate(occurrences.get(clip, [])):
            if (clip, k) not in used and start < e + TOLERANCE_S and end > s - TOLERANCE_S:
                used.add((clip, k))
                precisions.append(len(used) / rank)
                break
    return (sum(precisions) / n_true if n_true else float("nan")), n_true, len(used)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--real", type=Path, default=DEFAULT_REAL)
    ap.add_argument("--limit", type=int, default=None, help="only the first N recordings (sorted by id)")
    ap.add_argument("--cache", type=Path, default=ROOT / "runs" / "whisper_transcripts.json")
    args = ap.parse_args()
    clips = sorted(p.stem for p in (args.real / "audio").glob("*.wav"))[: args.limit]
    truth = read_truth(args.real, set(clips))
    transcripts, audio_s, run_s = transcribe_all(args.real, clips, args.cache)
    vocab = sorted({w for ws in truth.values() for w, _, _ in ws if len(word_phonemes(w)) >= MIN_PHONEMES})
    results = {w: word_ap(w, transcripts, truth) for w in vocab}
    aps = np.array([r[0] for r in results.values()])
    n_true = sum(r[1] for r in results.values())
    found = sum(r[2] for r in results.values())
    if run_s:
        print(f"transcribed {audio_s:.0f} s of audio in {run_s:.0f} s: {audio_s / run_s:.1f}x real time")
    print(f"{len(clips)} recordings, {len(vocab)} query words (>= {MIN_PHONEMES} phonemes), {n_true} occurrences")
    print(f"whisper tiny.en transcript search: MAP = {aps.mean():.3f}  (occurrence recall {found / n_true:.3f})")
    worst = sorted(results.items(), key=lambda kv: kv[1][0])[:10]
    print("lowest AP:", ", ".join(f"{w} {r[0]:.2f} ({r[2]}/{r[1]})" for w, r in worst))


if __name__ == "__main__":
    main()
