"""Indexing speed and memory on generated speech: x real time, peak RSS, windows per second of speech, bytes per hour.

    python benchmarks/index_speed.py --minutes 10 --model random
    python benchmarks/index_speed.py --minutes 600 --model random --keep /tmp/bench   # a 10-hour file (1.1 GB wav)

The recording is espeak-ng sentences in random order with random pauses (about 75 % speech) and faint
noise, written to one 16 kHz wav file block by block (so a 10-hour file never sits in memory). Not a test.
"""

from __future__ import annotations

import argparse
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

SENTENCES = [
    "the prince of persia went to the market and bought seven apples",
    "yesterday i spoke with a doctor about the weather in london",
    "she sells sea shells by the sea shore every single morning",
    "our company announced a partnership with the national library",
    "please remember to water the plants while we are away on holiday",
    "the quick brown fox jumps over the lazy dog near the river bank",
    "in the beginning there was nothing but a long and quiet silence",
    "they decided to build a small wooden house next to the lake",
]


def write_recording(path: Path, seconds: float, seed: int = 0) -> None:
    import soundfile as sf

    from awesearch.tts import synthesize

    rng = np.random.default_rng(seed)
    clips = [synthesize(s, rate=r).audio.astype(np.float32) for s in SENTENCES for r in (150, 185)]
    target = int(seconds * 16000)
    written = 0
    with sf.SoundFile(str(path), "w", samplerate=16000, channels=1, subtype="PCM_16") as f:
        while written < target:
            pause = np.zeros(int(rng.uniform(0.2, 1.5) * 16000), np.float32)
            block = np.concatenate([pause, clips[rng.integers(len(clips))]])[: target - written]
            block = block + rng.normal(0, 0.002, len(block)).astype(np.float32)
            f.write(block)
            written += len(block)


def stage_times(path: Path, model: str | None, seconds: float) -> dict[str, float]:
    """Seconds spent per stage on the first `seconds` of the file (single pass, no index writes)."""
    from awesearch.audio import iter_chunks
    from awesearch.encoder import load_encoder
    from awesearch.vad import speech_regions
    from awesearch.windows import candidate_windows

    enc = load_encoder(model)
    t = {"decode": 0.0, "vad": 0.0, "windows": 0.0, "encode": 0.0}
    done = 0.0
    it = iter_chunks(path, 60.0, 8.0)
    while done < seconds:
        t0 = time.perf_counter()
        try:
            chunk = next(it)
        except StopIteration:
            break
        t1 = time.perf_counter()
        regions = speech_regions(chunk.samples)
        t2 = time.perf_counter()
        w = candidate_windows(chunk.samples, regions)
        t3 = time.perf_counter()
        if len(w):
            enc.pool_windows(enc.encode_frames(chunk.samples), w)
        t4 = time.perf_counter()
        for k, v in zip(t, (t1 - t0, t2 - t1, t3 - t2, t4 - t3)):
            t[k] += v
        done += chunk.core_end - chunk.core_start
    return {k: done / v if v else float("inf") for k, v in t.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=10.0, help="length of the generated recording")
    ap.add_argument("--model", default=None, help="encoder for load_encoder (default: the shipped model)")
    ap.add_argument("--threads", type=int, default=None, help="torch threads for the encoder (default: all cores)")
    ap.add_argument("--keep", type=Path, default=None, help="work directory to keep (default: a temporary one)")
    ap.add_argument("--stages", action="store_true", help="also time decode / VAD / windows / encode separately")
    args = ap.parse_args()

    work = args.keep or Path(tempfile.mkdtemp(prefix="awesearch-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    audio = work / "audio" / "long.wav"
    audio.parent.mkdir(exist_ok=True)
    if not audio.exists():
        t = time.perf_counter()
        write_recording(audio, args.minutes * 60)
        print(f"generated {args.minutes:.1f} min in {time.perf_counter() - t:.1f} s: {audio}")
    index_dir = work / "index"
    shutil.rmtree(index_dir, ignore_errors=True)

    from awesearch.indexer import index_paths
    from awesearch.store import IndexStore

    usage = resource.getrusage(resource.RUSAGE_SELF)
    rss_before, cpu_before = usage.ru_maxrss / 1024, usage.ru_utime + usage.ru_stime
    report = index_paths([audio.parent], index_dir, model=args.model, threads=args.threads)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    peak_mb, cpu_s = usage.ru_maxrss / 1024, usage.ru_utime + usage.ru_stime - cpu_before
    stats = IndexStore.open(index_dir).stats()
    hours = report.audio_s / 3600
    print(f"audio            {report.audio_s:.0f} s ({report.speech_s:.0f} s speech)")
    print(f"wall             {report.wall_s:.1f} s   -> {report.realtime_factor:.0f}x real time (incl. model loading)")
    print(f"cpu              {cpu_s:.1f} s   -> {report.audio_s / cpu_s:.0f}x real time per busy core (robust to other load)")
    print(f"windows          {report.windows}   -> {report.windows / max(report.speech_s, 1e-9):.1f} per second of speech")
    print(f"index size       {stats.size_bytes / 1e6:.1f} MB  -> {stats.size_bytes / max(hours, 1e-9) / 1e6:.1f} MB per hour of audio")
    print(f"peak RSS         {peak_mb:.0f} MB (before indexing: {rss_before:.0f} MB)")
    if args.stages:
        for k, v in stage_times(audio, args.model, min(report.audio_s, 600.0)).items():
            print(f"stage {k:10s} {v:.0f}x real time")
    if args.keep is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
