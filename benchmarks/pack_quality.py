"""Does packing spans across files and skipping silences lose search quality? (issue 9)

    nice python benchmarks/pack_quality.py --limit 150 --out benchmarks/results/pack_quality.json

Indexes ../shared/eval/real (read in place; evaluation only, nothing is tuned on it) three times with the
default encoder: "sequential" (each chunk's speech encoded on its own, no island cutting: the path before
issue 9), "packed" (the default: speech islands, packed across files into shared Whisper blocks) and
"unpacked" (`--no-pack`: speech islands, each in blocks of its own). Then the same word, phrase and audio
queries (threshold 0, cap 50) on each: MAP and MTWV, and the mean cosine between the sequential and packed
indexes' vectors of the same windows.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from bench_archive import build_queries, real_archive  # noqa: E402
from detect_bench import DEFAULT_REAL, metrics, run_awesearch  # noqa: E402

SEQUENTIAL = {"PACK_FLUSH_S": 0.0, "SKIP_GAP_S": 1e9}  # embed.py constants of the sequential pass


def build(archive, out: Path, sequential: bool, pack: bool = True) -> float:
    from awesearch.indexer import embed, index_paths

    saved = {k: getattr(embed, k) for k in SEQUENTIAL}
    if sequential:
        for k, v in SEQUENTIAL.items():
            setattr(embed, k, v)
    try:
        shutil.rmtree(out, ignore_errors=True)
        t = time.perf_counter()
        index_paths([str(p) for p in archive.files.values()], out, pack=pack)
        return time.perf_counter() - t
    finally:
        for k, v in saved.items():
            setattr(embed, k, v)


def vectors(idx: Path) -> dict:
    from awesearch.store import IndexStore

    d = IndexStore.open(idx).load_search_data()
    v = d.index.reconstruct_n(0, d.index.ntotal)
    return {(d.paths[int(f)], round(float(a), 4), round(float(b), 4)): x for f, a, b, x in zip(d.file_ids, d.starts, d.ends, v)}


KINDS = ("word", "phrase", "audio")


def query_kinds(archive, limit: int | None) -> dict:
    """bench_archive.build_queries of the archive, by kind."""
    qs = build_queries(archive, limit)
    return {k: [q for q in qs if q.kind == k] for k in KINDS}


def search_quality(index_dir: Path, archive, kinds: dict) -> dict:
    """detect_bench.metrics of each kind's queries (threshold 0, cap 50; MTWV and the rest at the calibrated
    default threshold) on the index."""
    from awesearch.search import DEFAULT_THRESHOLD, SearchEngine

    engine = SearchEngine.open(index_dir)
    out = {}
    for kind, q in kinds.items():
        dets, _ = run_awesearch(engine, archive, q, 50, 0.0)
        out[kind] = metrics(archive, q, dets, DEFAULT_THRESHOLD)
    return out


def deltas(new: dict, base: dict, kinds) -> dict:
    """MAP and MTWV of `new` less those of `base`, per kind."""
    return {k: {m: new[k].get(m, float("nan")) - base[k].get(m, float("nan")) for m in ("map", "mtwv")} for k in kinds}


def write_report(path: Path | None, report: dict) -> None:
    if path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(report, indent=1) + "\n")


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--real", type=Path, default=DEFAULT_REAL)
    p.add_argument("--work", type=Path, default=Path.home() / ".cache" / "awesearch" / "pack-quality")
    p.add_argument("--limit", type=int, default=None, help="cap every query kind (quick runs)")
    p.add_argument("--limit-files", type=int, default=None)
    p.add_argument("--reuse-sequential", action="store_true", help="keep the sequential index of an earlier run in --work")
    p.add_argument("--out", type=Path)
    a = p.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    archive = real_archive(a.real, a.limit_files)
    kinds = query_kinds(archive, a.limit)
    report: dict = {"archive_minutes": archive.seconds / 60, "queries": {k: len(v) for k, v in kinds.items()}}
    for name in ("sequential", "packed", "unpacked"):
        idx = a.work.expanduser() / name
        reuse = a.reuse_sequential and name == "sequential" and (idx / "manifest.json").exists()
        wall = float("nan") if reuse else build(archive, idx, name == "sequential", pack=name != "unpacked")
        r = {"index_wall_s": wall, "x_realtime": archive.seconds / wall, **search_quality(idx, archive, kinds)}
        report[name] = r
        print(name, json.dumps(r), flush=True)
    va, vb = vectors(a.work.expanduser() / "sequential"), vectors(a.work.expanduser() / "packed")
    shared = sorted(set(va) & set(vb))
    cos = np.array([float(va[k] @ vb[k] / np.linalg.norm(va[k]) / np.linalg.norm(vb[k])) for k in shared])
    report["windows"] = {"sequential": len(va), "packed": len(vb), "shared": len(shared),
                         "cosine_mean": float(cos.mean()), "cosine_p1": float(np.percentile(cos, 1))}
    report["delta"] = deltas(report["packed"], report["sequential"], kinds)
    report["delta_unpacked"] = deltas(report["unpacked"], report["sequential"], kinds)
    print(json.dumps(report["delta"]), json.dumps(report["delta_unpacked"]), json.dumps(report["windows"]))
    write_report(a.out, report)
    return report


if __name__ == "__main__":
    main()
