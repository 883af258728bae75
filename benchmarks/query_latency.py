"""Warm in-process query latency over synthetic indexes of 1 h / 10 h / 100 h of windows.

    python benchmarks/query_latency.py [--hours 1 10 100] [--encoder NAME] [--windows-per-second W]

A synthetic index replicates a base set of window embeddings (the example archive's windows, embedded
by the chosen encoder) with Gaussian perturbation and re-normalisation until it holds as many windows
as `hours` of speech would give at W windows per second. Text and audio queries then run through
`SearchEngine` (query embedding + FAISS + NMS); the first queries are warm-up and are not timed.
Prints a markdown table of p50/p95 latencies in milliseconds.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from awesearch.encoder import load_encoder  # noqa: E402
from awesearch.search import SearchEngine, WindowTable, search_vector  # noqa: E402

TEXT_QUERIES = ["prince", "little prince", "desert", "umbrella", "the palace", "green dress", "tomorrow", "sheep"]
DEFAULT_WINDOWS_PER_SECOND = 28.0  # awesearch/windows.py: ~28 windows per second of read speech
UNTRAINED = "untrained"  # --encoder value: default dimensions, random weights (timing only)
PERTURB = 0.15  # std of the Gaussian noise added to each replicated unit vector (per dimension, before re-normalising)


def untrained_encoder():
    """The default architecture (ModelDimensions()) with random weights: real compute cost and D, no checkpoint needed."""
    from awesearch.encoder import Encoder
    from awesearch.features import FeatureConfig
    from awesearch.model import AWEModel, ModelDimensions

    return Encoder(AWEModel(ModelDimensions()), FeatureConfig(), name=UNTRAINED, checksum="")


def base_windows(encoder, archive: Path) -> tuple[np.ndarray, list[tuple[Path, float, float]]]:
    """Embeddings of every 1-2 word window of the example archive, and the spans used as audio queries."""
    import soundfile as sf

    from awesearch.example import write_example

    spoken = write_example(archive)
    vectors, spans = [], []
    by_file: dict[Path, list] = {}
    for w in spoken:
        by_file.setdefault(w.path, []).append(w)
    for path, words in by_file.items():
        audio, _ = sf.read(path, dtype="float32")
        wins = [(a.start, a.end) for a in words] + [(a.start, b.end) for a, b in zip(words, words[1:])]
        vectors.append(encoder.embed_windows(audio, np.array(wins)))
        spans.extend((path, a.start, a.end) for a in words if a.end - a.start > 0.2)
    return np.vstack(vectors), spans


def synthetic_table(base: np.ndarray, n: int, rng: np.random.Generator) -> WindowTable:
    """n windows: rows of `base` replicated with noise, stored as the index store stores them (fp16 scalar quantizer)."""
    from awesearch.store import _index_from_fp16

    d = base.shape[1]
    vectors = np.empty((n, d), np.float16)
    block = 1 << 18
    for i in range(0, n, block):
        m = min(block, n - i)
        v = base[rng.integers(0, len(base), m)] + rng.normal(0, PERTURB, (m, d)).astype(np.float32)
        v /= np.linalg.norm(v, axis=1, keepdims=True)
        vectors[i : i + m] = v
    index = _index_from_fp16(vectors)
    del vectors
    n_files = max(1, n // 8400)  # ~5 min files at 28 windows/s
    file_ids = np.sort(rng.integers(0, n_files, n))
    starts = rng.uniform(0, 300, n)
    return WindowTable(
        index=index,
        file_ids=file_ids,
        starts=starts,
        ends=starts + rng.uniform(0.2, 2.0, n),
        paths=[f"/synthetic/{i:06d}.wav" for i in range(n_files)],
    )


def percentiles(times: list[float]) -> tuple[float, float]:
    ms = np.array(times) * 1000
    return float(np.percentile(ms, 50)), float(np.percentile(ms, 95))


def run(hours: list[float], encoder_name: str | None, wps: float, repeats: int, k: int, threads: int | None) -> str:
    import faiss
    import torch

    if threads is not None:
        faiss.omp_set_num_threads(threads)
        torch.set_num_threads(threads)

    encoder = untrained_encoder() if encoder_name == UNTRAINED else load_encoder(encoder_name)
    rng = np.random.default_rng(0)
    rows = [
        f"encoder `{encoder.name}` (D={encoder.dim}), {wps:g} windows/s of audio, k={k}, "
        f"FAISS fp16 scalar quantizer (flat, exact), {faiss.omp_get_max_threads()} FAISS threads, {torch.get_num_threads()} torch threads, "
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at start",
        "",
        "| audio indexed | windows | text p50 ms | text p95 ms | audio p50 ms | audio p95 ms | FAISS+NMS only p50 ms |",
        "|---|---|---|---|---|---|---|",
    ]
    with tempfile.TemporaryDirectory() as tmp:
        base, spans = base_windows(encoder, Path(tmp))
        for h in hours:
            n = int(h * 3600 * wps)
            table = synthetic_table(base, n, rng)
            engine = SearchEngine(table, encoder)
            for q in TEXT_QUERIES[:2]:  # warm-up: lexicon, g2p, torch kernels
                engine.search_text(q, k=k)
            engine.search_audio(*spans[0], k=k)
            text_t, audio_t, core_t = [], [], []
            for i in range(repeats):
                q = TEXT_QUERIES[i % len(TEXT_QUERIES)]
                t0 = time.perf_counter()
                engine.search_text(q, k=k)
                text_t.append(time.perf_counter() - t0)
                path, s, e = spans[i % len(spans)]
                t0 = time.perf_counter()
                vec = engine.audio_vector(path, s, e)
                t1 = time.perf_counter()
                search_vector(table, vec, k)
                t2 = time.perf_counter()
                audio_t.append(t2 - t0)
                core_t.append(t2 - t1)
            tp, audio_p, core_p = percentiles(text_t), percentiles(audio_t), percentiles(core_t)
            rows.append(
                f"| {h:g} h | {n:,} | {tp[0]:.1f} | {tp[1]:.1f} | {audio_p[0]:.1f} | {audio_p[1]:.1f} | {core_p[0]:.1f} |"
            )
            print(rows[-1], file=sys.stderr, flush=True)
            del engine, table
    return "\n".join(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hours", type=float, nargs="+", default=[1, 10, 100])
    ap.add_argument("--encoder", default=None, help=f"encoder name (default: the shipped model; 'random': tiny plumbing model; '{UNTRAINED}': default dims, random weights)")
    ap.add_argument("--windows-per-second", type=float, default=DEFAULT_WINDOWS_PER_SECOND)
    ap.add_argument("--repeats", type=int, default=40)
    ap.add_argument("-k", type=int, default=10)
    ap.add_argument("--threads", type=int, default=None, help="FAISS and torch threads (default: library defaults)")
    args = ap.parse_args()
    print(run(args.hours, args.encoder, args.windows_per_second, args.repeats, args.k, args.threads))


if __name__ == "__main__":
    main()
