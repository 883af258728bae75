"""Where indexing time goes: wall seconds per pipeline stage of one `index_paths` run (issue 9).

    nice python benchmarks/index_profile.py /work/shared/eval/real/audio --out benchmarks/results/index_profile.json
    nice python benchmarks/index_profile.py /tmp/long --jobs 1

Each stage's function is wrapped with a timer (summed per thread, so stages that overlap on two threads
can add up to more than the wall time). Stages: model loading, decode (audio blocks), VAD, windows,
Whisper mel, Whisper encoder, conv head, phoneme head, pooling, writing (segments, phonetic files,
commits). Not a test; the speed targets are checked by benchmarks/index_bench.py.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import resource
import sys
import threading
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

_TOTALS: dict[str, float] = defaultdict(float)
_CPU: dict[str, float] = defaultdict(float)  # CPU seconds of the calling thread (CTranslate2 runs on its own threads)
_CALLS: dict[str, int] = defaultdict(int)
_LOCK = threading.Lock()
_EVENTS: list[tuple[str, str, float, float]] = []  # (stage, thread name, start, end) seconds since _T0, for --timeline
_T0 = time.perf_counter()


def _process_age() -> float:
    """Seconds since this process was started (/proc/self/stat field 22 against the boot clock)."""
    ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
    return time.clock_gettime(time.CLOCK_BOOTTIME) - ticks / os.sysconf("SC_CLK_TCK")


_AGE_AT_T0 = _process_age()  # interpreter start-up before this script's first line ran


def _record(stage: str, t: float, c: float) -> None:
    """Add one call's wall seconds (since perf_counter t) and thread CPU seconds (since thread_time c)."""
    now = time.perf_counter()
    with _LOCK:
        _EVENTS.append((stage, threading.current_thread().name, t - _T0, now - _T0))
        _TOTALS[stage] += now - t
        _CPU[stage] += time.thread_time() - c
        _CALLS[stage] += 1


def _timed(stage: str, fn):
    @functools.wraps(fn)
    def wrapper(*a, **kw):
        t, c = time.perf_counter(), time.thread_time()
        try:
            return fn(*a, **kw)
        finally:
            _record(stage, t, c)

    return wrapper


def _timed_iter(stage: str, fn):
    """A generator function whose every next() is timed (decoding happens inside the iteration)."""

    @functools.wraps(fn)
    def wrapper(*a, **kw):
        it = fn(*a, **kw)
        while True:
            t, c = time.perf_counter(), time.thread_time()
            try:
                item = next(it)
            except StopIteration:
                return
            finally:
                _record(stage, t, c)
            yield item

    return wrapper


def instrument() -> None:
    """Wrap every stage's function where it is looked up (module globals and classes)."""
    import awesearch.audio as audio
    import awesearch.encoder as encoder
    import awesearch.whisper_frontend as wf
    import awesearch.indexer.embed as embed
    import awesearch.indexer.writer as writer
    from awesearch.model import AudioTower

    audio.iter_blocks = _timed_iter("decode", audio.iter_blocks)
    encoder.load_encoder = _timed("load encoder", encoder.load_encoder)
    wf.WhisperFrontend.__init__ = _timed("load whisper", wf.WhisperFrontend.__init__)
    wf.WhisperFrontend.mel = _timed("whisper mel", wf.WhisperFrontend.mel)
    wf.WhisperFrontend._encode_blocks = _timed("whisper mel+encoder", wf.WhisperFrontend._encode_blocks)
    AudioTower.frames = _timed("conv head", AudioTower.frames)
    encoder.Encoder.pool_windows = _timed("pooling", encoder.Encoder.pool_windows)
    for name, stage in (("speech_regions_many", "vad"), ("candidate_windows", "windows")):
        setattr(embed, name, _timed(stage, getattr(embed, name)))
    embed.PhoneticTrack.add = _timed("phoneme head", embed.PhoneticTrack.add)
    from awesearch.speakers import SpeakerModel

    SpeakerModel.embed_speech_many = _timed("speaker embeddings", SpeakerModel.embed_speech_many)
    writer.IndexWriter.add_windows = _timed("write windows", writer.IndexWriter.add_windows)
    writer.IndexWriter.add_phonetic = _timed("write phonetic", writer.IndexWriter.add_phonetic)
    writer.IndexWriter.commit = _timed("commit", writer.IndexWriter.commit)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("paths", nargs="+", type=Path, help="audio files or folders to index")
    ap.add_argument("--index", type=Path, default=None, help="index directory (default: a temporary one)")
    ap.add_argument("--model", default=None)
    ap.add_argument("--out", type=Path, default=None, help="write the profile as JSON here")
    ap.add_argument("--timeline", action="store_true", help="also print every stage call as start-end seconds since process start")
    args = ap.parse_args()

    import shutil
    import tempfile

    t0 = time.perf_counter()
    instrument()
    from awesearch.indexer import index_paths

    index_dir = args.index or Path(tempfile.mkdtemp(prefix="awesearch-profile-")) / "idx"
    shutil.rmtree(index_dir, ignore_errors=True)
    report = index_paths([str(p) for p in args.paths], index_dir, model=args.model)
    wall = time.perf_counter() - t0
    whisper_only = _TOTALS["whisper mel+encoder"] - _TOTALS["whisper mel"]
    rows = dict(_TOTALS)
    rows["whisper encoder (without mel)"] = whisper_only
    print(f"audio {report.audio_s:.0f} s, {report.indexed} files, wall {wall:.1f} s (index_paths {report.wall_s:.1f} s): "
          f"{report.audio_s / wall:.1f}x real time")
    usage = resource.getrusage(resource.RUSAGE_SELF)
    cpu = usage.ru_utime + usage.ru_stime
    print(f"  process CPU {cpu:.1f} s (user {usage.ru_utime:.1f}, system {usage.ru_stime:.1f}), "
          f"load average {os.getloadavg()[0]:.1f}; stage CPU is the calling thread's (the encoder's is CTranslate2's threads)")
    for k, v in sorted(rows.items(), key=lambda kv: -kv[1]):
        print(f"  {k:32s} {v:7.2f} s  {100 * v / wall:5.1f} % of wall  CPU {_CPU.get(k, 0.0):6.2f} s  ({_CALLS.get(k, 0)} calls)")
    if args.timeline:
        print(f"  (times from this script's first line; the interpreter had run {_AGE_AT_T0:.2f} s before it)")
        for stage, thread, a, b in sorted(_EVENTS, key=lambda e: e[2]):
            print(f"  {a:6.2f}-{b:6.2f}  {thread[:22]:22s} {stage}")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"audio_s": report.audio_s, "files": report.indexed, "wall_s": wall,
                                        "stages_s": rows, "stages_thread_cpu_s": dict(_CPU), "process_cpu_s": cpu,
                                        "load_avg": os.getloadavg(), "calls": dict(_CALLS),
                                        "interpreter_start_s": round(_AGE_AT_T0, 3)}, indent=1) + "\n")
    if args.index is None:
        shutil.rmtree(index_dir.parent, ignore_errors=True)


if __name__ == "__main__":
    main()
