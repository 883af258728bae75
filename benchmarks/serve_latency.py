"""What `awesearch serve` adds to a search, and how fast it seeks in a long recording.

    python benchmarks/serve_latency.py --index ./example/.awesearch --minutes 20 --out benchmarks/results/serve_latency.json

1. Text queries: SearchEngine.search called directly in this process against GET /api/search over real
   HTTP to `awesearch serve` in its own process (127.0.0.1, one client), same queries, same run: the ratio
   is the web layer's cost.
2. Seeking: time to the first byte of a 64 KB Range at random offsets of a long generated recording,
   served as it is (wav, mp3) against transcoded on the fly to WAV (an mp3 and a Matroska file through PyAV).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

QUERIES = ["prince", "the little prince", "sheep", "umbrella", "desert", "weather", "roses", "station", "palace", "princess"]
RANGE_BYTES = 64 * 1024
SEEKS = 12
SERVER_START_S = 120.0  # seconds to wait for `awesearch serve` to answer


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q))


@contextmanager
def serve_process(index: str) -> Iterator[str]:
    """`awesearch serve` in its own process (as a user runs it) on a free port; yields the base URL."""
    import httpx

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cli = Path(__file__).resolve().parent.parent / "cli.py"
    proc = subprocess.Popen([sys.executable, str(cli), "serve", "--index", index, "--port", str(port)], stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + SERVER_START_S
        while True:
            try:
                httpx.get(f"{base}/api/info").raise_for_status()
                break
            except httpx.TransportError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit("awesearch serve did not start")
                time.sleep(0.2)
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def bench_queries(index: str, repeats: int) -> dict:
    import httpx

    from awesearch.web.app import open_archive

    archive = open_archive(index)
    engine = archive.engine
    direct, web, inside = [], [], []  # ms: engine here, HTTP round trip, engine inside the server
    with serve_process(index) as base, httpx.Client(base_url=base) as client:
        for q in QUERIES[:2]:  # warm both paths
            engine.search(text=q, k=10)
            client.get("/api/search", params={"text": q, "k": 10}).raise_for_status()
        for _ in range(repeats):
            for q in QUERIES:
                t0 = time.perf_counter()
                engine.search(text=q, k=10)
                direct.append((time.perf_counter() - t0) * 1000)
                t0 = time.perf_counter()
                r = client.get("/api/search", params={"text": q, "k": 10})
                web.append((time.perf_counter() - t0) * 1000)
                r.raise_for_status()
                inside.append(r.json()["elapsed_ms"])
    return {
        "queries": len(direct),
        "encoder": archive.stats.encoder_name,
        "windows": archive.stats.windows,
        "direct_ms_p50": pct(direct, 50),
        "direct_ms_p95": pct(direct, 95),
        "http_ms_p50": pct(web, 50),
        "http_ms_p95": pct(web, 95),
        "http_over_direct_p50": pct(web, 50) / pct(direct, 50),
        "server_engine_ms_p50": pct(inside, 50),
        "web_layer_ms_p50": pct(np.subtract(web, inside).tolist(), 50),  # round trip minus the server's own search time
        "load_average_1min": os.getloadavg()[0],  # a busy shared machine makes every figure here noisy
    }


def bench_seeks(minutes: float) -> dict:
    from helpers import speech, write_audio

    from awesearch.audio import probe_duration
    from awesearch.web.media import audio_source

    audio, _ = speech(["the little prince asked for a drawing of a sheep", "bring an umbrella to the station"])
    long = np.tile(audio, int(np.ceil(minutes * 60 * 16000 / len(audio))))[: int(minutes * 60 * 16000)]
    rng = np.random.default_rng(0)
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        files = {
            "wav as is": (write_audio(Path(tmp) / "long.wav", long), False),
            "mp3 as is": (write_audio(Path(tmp) / "long.mp3", long), False),
            "mp3 transcoded": (Path(tmp) / "long.mp3", True),
            "mka (Opus) transcoded": (write_audio(Path(tmp) / "long.webm", long).rename(Path(tmp) / "long.mka"), True),
        }
        for label, (path, transcode) in files.items():
            times = []
            for _ in range(SEEKS):
                t0 = time.perf_counter()
                source = audio_source(path, probe_duration(path), transcode)
                offset = int(rng.integers(0, source.size - RANGE_BYTES))
                next(iter(source.read(offset, RANGE_BYTES)))
                times.append((time.perf_counter() - t0) * 1000)
            out[label] = {"first_byte_ms_p50": statistics.median(times), "first_byte_ms_max": max(times)}
    return {"minutes": minutes, "range_bytes": RANGE_BYTES, "seeks": SEEKS, "files": out}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--index", required=True, help="an index to query (e.g. the example archive's)")
    parser.add_argument("--repeats", type=int, default=3, help="passes over the 10 queries")
    parser.add_argument("--minutes", type=float, default=20, help="length of the generated long recording")
    parser.add_argument("--out", default=None, help="write the results as JSON here")
    args = parser.parse_args()
    import faiss
    import torch

    torch.set_num_threads(1)  # as `awesearch serve` runs
    faiss.omp_set_num_threads(1)
    result = {"queries": bench_queries(args.index, args.repeats), "seeks": bench_seeks(args.minutes)}
    text = json.dumps(result, indent=1)
    print(text)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
