"""What the phoneme head costs at indexing (issue 18: "indexing at least 90 % of today's speed").

    python benchmarks/head_cost.py --repeat 3 --out-json benchmarks/results/head_cost.json

Indexes the same recordings (default: ../shared/eval/real, read in place) with the shipped head, with the
previous head (benchmarks/baselines/phone-whisper-v1.pt: the head of the last release) and without a
phonetic store, each in a fresh child process, alternating, `--repeat` times; reports the medians of
end-to-end seconds and the ratios measured side by side. The rest of the indexer is the same code in every run.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
DEFAULT_REAL = HERE.parent.parent / "shared" / "eval" / "real"
BASELINE_HEAD = HERE / "baselines" / "phone-whisper-v1.pt"


def _child(files: list[str], out: str, head: str | None) -> float:
    import awesearch.phonetic as phonetic
    from awesearch.indexer import index_paths

    if head == "baseline":
        checkpoint = phonetic.load_phone_checkpoint(BASELINE_HEAD)
        phonetic.load_phone_model = lambda name=None: checkpoint  # what the indexer loads by default
    t0 = time.perf_counter()
    index_paths(files, out, phonetic=head is not None)
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--real", type=Path, default=DEFAULT_REAL)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--out-json", type=Path)
    a = p.parse_args(argv)
    files = sorted(str(f) for f in (a.real / "audio").glob("*.wav"))
    import soundfile as sf

    audio_s = sum(sf.info(f).duration for f in files)
    runs: dict[str, list[float]] = {"shipped": [], "baseline": [], "none": []}
    ctx = mp.get_context("spawn")
    for _ in range(a.repeat):
        for name in runs:
            out = tempfile.mkdtemp(prefix="head-cost-")
            with ctx.Pool(1) as pool:
                t0 = time.perf_counter()
                pool.apply(_child, (files, out, None if name == "none" else name))
                runs[name].append(time.perf_counter() - t0)
            shutil.rmtree(out, ignore_errors=True)
            print(name, f"{runs[name][-1]:.1f} s", flush=True)
    med = {k: statistics.median(v) for k, v in runs.items()}
    report = {"audio_s": audio_s, "runs_s": runs, "median_s": med,
              "x_realtime": {k: audio_s / v for k, v in med.items()},
              "speed_shipped_over_baseline": med["baseline"] / med["shipped"],
              "speed_shipped_over_no_phonetic": med["none"] / med["shipped"]}
    print(json.dumps(report, indent=1))
    if a.out_json:
        a.out_json.write_text(json.dumps(report, indent=1))
    return report


if __name__ == "__main__":
    main()
