"""Search quality with the Whisper front end as shipped (blocks of BLOCK_S seconds, inputs cut TAIL_PAD_S after
their audio) against Whisper's own whole zero-padded 30 s blocks, the front end before (issue 9).

    nice python benchmarks/block_quality.py --out benchmarks/results/block_quality.json

The same archives are indexed (the default pipeline: islands packed across files) once per front end and
searched with the same word, phrase and audio queries (threshold 0, cap 50): MAP and MTWV at the calibrated
default threshold. Archives: ../shared/eval/real (read in place; evaluation only, nothing is tuned on it)
and a generated long-form archive of held-out espeak-ng voices (bench_archive.synthetic_archive, 3-minute
files: blocks matter most in long recordings). Block length and tail were chosen on encoder speed and frame
agreement alone (espeak-ng speech); this checks that they cost no search quality.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from bench_archive import real_archive, synthetic_archive  # noqa: E402
from detect_bench import DEFAULT_REAL  # noqa: E402
from pack_quality import deltas, query_kinds, search_quality, write_report  # noqa: E402


def set_block(seconds: float, tail_pad_s: float, chunk_s: float) -> None:
    """Every block constant of awesearch.whisper_frontend for blocks of `seconds` (margins unchanged) whose
    inputs stop tail_pad_s after their audio (`seconds`: always whole blocks), and indexer.embed's constants
    that follow the block length (chunk_s: a chunk of speech is a whole number of blocks)."""
    import awesearch.whisper_frontend as W
    from awesearch.indexer import embed

    embed.CHUNK_S, embed.LONG_SPAN_S, embed.SPECULATE_MAX_S = chunk_s, seconds, seconds
    W.TAIL_PAD_S = tail_pad_s
    W.BLOCK_S = seconds
    W.BLOCK_SAMPLES = int(seconds * W.SAMPLE_RATE)
    W.BLOCK_FRAMES = int(seconds * W.WHISPER_FRAME_RATE)
    W.N_MEL_FRAMES = 2 * W.BLOCK_FRAMES
    W.BLOCK_HOP_FRAMES = W.BLOCK_FRAMES - 2 * W.BLOCK_MARGIN_FRAMES
    W.BLOCK_HOP_S = W.BLOCK_HOP_FRAMES / W.WHISPER_FRAME_RATE


def main(argv: list[str] | None = None) -> dict:
    import awesearch.whisper_frontend as W
    from awesearch.indexer import embed

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--real", type=Path, default=DEFAULT_REAL)
    p.add_argument("--synthetic-minutes", type=float, default=12.0, help="0 leaves the synthetic archive out")
    p.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "awesearch" / "bench-archive")
    p.add_argument("--work", type=Path, default=Path.home() / ".cache" / "awesearch" / "block-quality")
    p.add_argument("--limit", type=int, default=150, help="queries per kind")
    p.add_argument("--out", type=Path)
    a = p.parse_args(argv)
    import torch

    from awesearch.indexer import index_paths

    torch.set_num_threads(1)
    archives = [real_archive(a.real)]
    if a.synthetic_minutes > 0:
        archives.append(synthetic_archive(a.cache, a.synthetic_minutes, 0, 180.0))
    shipped = (W.BLOCK_S, W.TAIL_PAD_S, embed.CHUNK_S)
    variants = {"before (30 s blocks, zero-padded)": (30.0, 30.0, 104.0),
                f"shipped ({shipped[0]:g} s blocks, cut {shipped[1]:g} s after audio)": shipped}
    report: dict = {"variants": variants, "archives": {}}
    try:
        for archive in archives:
            kinds = query_kinds(archive, a.limit)
            r = report["archives"][archive.name] = {"minutes": archive.seconds / 60, "queries": {k: len(v) for k, v in kinds.items()}}
            for k, (name, variant) in enumerate(variants.items()):
                set_block(*variant)
                idx = a.work.expanduser() / f"{archive.name}-{k}"
                shutil.rmtree(idx, ignore_errors=True)
                t = time.perf_counter()
                index_paths([str(f) for f in archive.files.values()], idx)
                run = r[name] = {"index_wall_s": time.perf_counter() - t}
                for kind, m in search_quality(idx, archive, kinds).items():
                    run[kind] = {"map": m["map"], "mtwv": m["mtwv"]}
                print(archive.name, name, json.dumps(run), flush=True)
            base, new = (r[name] for name in variants)
            r["delta"] = deltas(new, base, kinds)
    finally:
        set_block(*shipped)
    print(json.dumps({n: r["delta"] for n, r in report["archives"].items()}))
    write_report(a.out, report)
    return report


if __name__ == "__main__":
    main()
