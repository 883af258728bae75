"""Index size, recall@100 of approximate against exact search, text query latency and memory against index size.

    nice -n 10 python benchmarks/scale_bench.py [--hours 1 10 100 1000 10000] [--workdir /tmp/awesearch-scale]

SYNTHETIC INDEXES: the example archive (awesearch/example.py) is indexed with the shipped encoder; its
windows are the base set. An index of H hours holds H * 3600 * W windows (W: windows per audio second of
that real index), each a base window plus Gaussian noise of --perturb per dimension, re-normalised, in
files of 5 minutes; they are written through the real writer (segments, checksums, commits) and one index
grows through the sizes in turn. At each size the approximate index is built by the writer's own code
(awesearch/approx.py; below APPROX_MIN_WINDOWS awesearch itself would search exactly, the benchmark builds
it anyway to compare), then separate processes open the index exactly (all fp16 vectors in memory) and
approximately (memory-mapped IVF) and run the same queries: text queries (warm, through SearchEngine) for
latency, and those plus perturbed base windows (audio-like queries) for recall@100 against exact.
Sizes above --replicate-above (100 h) are made from the largest built index by `replicate` (code-space copies
of its inverted lists, see there; ~40 GB of disk at 10,000 h, deleted after its queries): latency, memory
and size only.
Memory: the query process's anonymous resident memory (RssAnon) after the queries minus before opening the
index (encoder loaded); memory-mapped index pages (RssFile, page cache the kernel can drop) are listed apart.
Writes benchmarks/results/scale_bench.{json,md,png} (or --out DIR).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TEXT_QUERIES = ["prince", "little prince", "desert", "umbrella", "the palace", "green dress", "tomorrow", "sheep",
                "market", "seven apples", "weather", "doctor"]
FILE_S = 300.0  # seconds of audio per synthetic file
COMMIT_FILES = 200  # synthetic files per commit
NPROBES = (8, 16, 32, 64)  # recall sweep
RESULTS = ROOT / "benchmarks" / "results"


def base_index(tmp: Path) -> tuple[np.ndarray, float, str]:
    """(base window vectors, windows per audio second, encoder source) from the example archive."""
    from awesearch.example import write_example
    from awesearch.store import IndexStore
    from awesearch.indexer import index_paths

    write_example(tmp / "archive")
    report = index_paths([tmp / "archive"], tmp / "base-index")
    store = IndexStore.open(tmp / "base-index")
    data = store.load_search_data()
    return data.index.reconstruct_n(0, data.index.ntotal), report.windows / report.audio_s, store.manifest.encoder_source


def grow(writer, base: np.ndarray, target: int, wps: float, perturb: float, rng) -> None:
    """Add synthetic 5-minute files until the index holds `target` live windows."""
    from awesearch.store import STATUS_INDEXED, FileRecord

    have = sum(f.windows for f in writer.files.values())
    per_file = int(FILE_S * wps)
    pending = []
    while have < target:
        n = min(per_file, target - have)
        v = base[rng.integers(0, len(base), n)] + rng.normal(0, perturb, (n, base.shape[1])).astype(np.float32)
        v /= np.linalg.norm(v, axis=1, keepdims=True)
        starts = np.sort(rng.uniform(0, FILE_S - 2, n))
        fid = writer.new_file_id()
        writer.add_windows(fid, v, starts, starts + rng.uniform(0.2, 2.0, n))
        pending.append(FileRecord(fid, f"/synthetic/{fid:07d}.wav", 1, 1, "", FILE_S, STATUS_INDEXED, windows=n))
        have += n
        if len(pending) >= COMMIT_FILES:
            writer.commit(pending)
            pending = []
    writer.commit(pending)


def replicate(src: Path, dst: Path, factor: int, encoder, seed: int = 0) -> dict:
    """A synthetic index `factor` times the size of src's approximate index, made in CODE SPACE: every inverted
    list of src becomes choose_nlist(target) / nlist lists (centroid copies plus noise N(0, 0.01^2)), which
    together hold `factor` copies of its entries, every copy after the first with random low bits of its
    4-bit codes flipped; no vector is re-assigned or re-encoded. Rows: each copy's rows point at new file ids
    (so the files table lists factor x the recordings) but at src's int8 vectors (the re-ranking reads those:
    a smaller set of files than a real index of that size would). src's segments are hard-linked into dst.
    The IVF file is streamed in faiss's own format (header, then "ilar" lists), so the query path is the
    product's (read with IO_FLAG_MMAP)."""
    import faiss

    from awesearch import approx
    from awesearch.store import STATUS_INDEXED, FileRecord, IndexStore
    from awesearch.indexer.writer import IndexWriter

    rng = np.random.default_rng(seed)
    store = IndexStore.open(src)
    info = approx.approx_info(store.manifest)
    shutil.rmtree(dst, ignore_errors=True)
    dst.mkdir(parents=True)
    for p in src.iterdir():
        if p.suffix in (".vec", ".parquet", ".json", ".awp") or p.name.startswith("approx-"):
            os.link(p, dst / p.name)
    base = faiss.read_index(str(src / f"{info.name}.faiss"))
    n_b, nl_b, cs = int(base.ntotal), int(base.nlist), int(base.code_size)
    n_t = n_b * factor
    nl_t = max(nl_b, approx.choose_nlist(n_t))
    copies = nl_t // nl_b
    cent = base.quantizer.reconstruct_n(0, nl_b)
    cent_t = np.repeat(cent, copies, axis=0) + rng.normal(0, 0.01, (nl_t, cent.shape[1])).astype(np.float32)
    big = faiss.IndexIVFScalarQuantizer(faiss.IndexFlatIP(cent.shape[1]), cent.shape[1], nl_t, faiss.ScalarQuantizer.QT_4bit, faiss.METRIC_INNER_PRODUCT)
    big.sq.trained = base.sq.trained
    big.quantizer.add(cent_t)
    big.is_trained = True
    big.by_residual = base.by_residual
    big.ntotal = n_t
    head = faiss.serialize_index(big).tobytes()
    empty = 32  # "ilar", nlist, code_size, "sprs", an empty vector: what an index without entries ends with
    if head[-empty:-empty + 4] != b"ilar":
        raise RuntimeError("unexpected faiss serialisation")
    invl = base.invlists
    lists = [(faiss.rev_swig_ptr(invl.get_codes(l), invl.list_size(l) * cs).copy(),
              faiss.rev_swig_ptr(invl.get_ids(l), invl.list_size(l)).copy()) for l in range(nl_b)]
    reps = [list(range(j, factor, copies)) for j in range(copies)]  # which copies of the entries list copy j holds
    sizes = np.array([len(lists[l][1]) * len(reps[j]) for l in range(nl_b) for j in range(copies)], np.uint64)
    name = f"approx-{999000 + factor:06d}"
    w = IndexWriter.open(dst, encoder, source=store.manifest.encoder_source, verify=False)  # before writing: it collects
    with open(dst / f"{name}.faiss", "wb") as f:  # unreferenced files at open
        f.write(head[:-empty])
        f.write(b"ilar" + np.uint64(nl_t).tobytes() + np.uint64(cs).tobytes() + b"full" + np.uint64(nl_t).tobytes() + sizes.tobytes())
        for codes, ids in lists:
            for j in range(copies):
                cc, ii = [], []
                for r in reps[j]:
                    c = codes if r == 0 else codes ^ (rng.integers(0, 256, len(codes), np.uint8) & 0x11)
                    cc.append(c)
                    ii.append(ids + r * n_b)
                if cc:
                    f.write(np.concatenate(cc).tobytes())
                    f.write(np.concatenate(ii).astype(np.int64).tobytes())
    rows_b = np.load(src / f"{info.name}.rows")
    files = [f for f in store.load_files() if f.status == STATUS_INDEXED]
    stride = max(f.file_id for f in files) + 1
    rows = np.lib.format.open_memmap(dst / f"{name}.rows", "w+", approx.ROW_DTYPE, (n_t,))
    for r in range(factor):
        part = rows_b.copy()
        part["file_id"] += r * stride
        rows[r * n_b : (r + 1) * n_b] = part
    rows.flush()
    del rows
    with w:
        records = [FileRecord(f.file_id + r * stride, f"{f.path}.copy{r}", f.size, f.mtime_ns, "", f.duration, STATUS_INDEXED,
                              windows=f.windows) for r in range(1, factor) for f in files]
        w.manifest.approx = {**approx.asdict(info), "name": name, "windows": n_t, "trained_windows": n_t, "nlist": nl_t}
        for i in range(0, len(records), 20_000):
            w.commit(records[i : i + 20_000])
    return {"windows": n_t, "nlist": nl_t, "centroid_copies": copies}


def sizes(directory: Path) -> dict:
    from awesearch.store import IndexStore

    m = IndexStore.open(directory).manifest
    by_kind: dict[str, int] = {}
    for name, c in m.checksums.items():
        kind = name.split("-")[0] + Path(name).suffix
        by_kind[kind] = by_kind.get(kind, 0) + int(c["size"])
    return by_kind


def rss_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def child(mode: str, directory: Path, repeats: int) -> None:
    """Open the index exactly or approximately, time text queries, print JSON with top-100 keys and memory."""
    import faiss
    import torch

    from awesearch.encoder import load_encoder
    from awesearch.search import SearchEngine, WindowTable
    from awesearch.store import IndexStore, open_for_search

    torch.set_num_threads(1)
    faiss.omp_set_num_threads(1)
    store = IndexStore.open(directory)
    encoder = load_encoder(store.manifest.encoder_source)
    encoder.embed_phonemes([["P", "R", "IH", "N", "S"]])
    before = rss_kb("RssAnon")
    t0 = time.perf_counter()
    if mode == "exact":
        data = store.load_search_data()
        ids = sorted(data.paths)
        table = WindowTable(data.index, np.searchsorted(ids, data.file_ids), data.starts, data.ends, [data.paths[i] for i in ids])
    else:
        table = open_for_search(directory)[0]
    open_s = time.perf_counter() - t0
    engine = SearchEngine(table, encoder)
    for q in TEXT_QUERIES[:2]:
        engine.search_text(q)  # warm-up
    times = []
    for i in range(repeats):
        t0 = time.perf_counter()
        engine.search_text(TEXT_QUERIES[i % len(TEXT_QUERIES)], k=10)
        times.append(time.perf_counter() - t0)
    queries = np.load(directory.parent / "queries.npy")
    search_times = []  # the index alone (what grows with its size): one query vector, top 100
    for i in range(repeats):
        t0 = time.perf_counter()
        table.index.search(np.ascontiguousarray(queries[i % len(queries)][None], np.float32), 100)
        search_times.append(time.perf_counter() - t0)
    tops = {}
    for nprobe in (NPROBES if mode == "approx" else (0,)):
        if nprobe:
            table.index.params = faiss.SearchParametersIVF(nprobe=nprobe)
        _, found = table.index.search(np.ascontiguousarray(queries, np.float32), 100)
        tops[str(nprobe)] = [[f"{table.paths[int(table.file_ids[j])]}@{float(table.starts[j]):.3f}" for j in row if j >= 0] for row in found]  # ms: approximate rows hold float32 seconds
    print(json.dumps({
        "mode": mode, "open_s": open_s, "p50_ms": float(np.percentile(times, 50) * 1000),
        "p95_ms": float(np.percentile(times, 95) * 1000), "rss_before_mb": before / 1024,
        "search_p50_ms": float(np.percentile(search_times, 50) * 1000), "search_p95_ms": float(np.percentile(search_times, 95) * 1000),
        "peak_mb": rss_kb("VmHWM") / 1024, "anon_mb": rss_kb("RssAnon") / 1024, "file_mb": rss_kb("RssFile") / 1024,
        "tops": tops,
    }))


def recall_queries(encoder, base: np.ndarray, n_audio: int, perturb: float) -> np.ndarray:
    """The text queries' vectors and n_audio audio-like ones (base windows plus noise)."""
    from awesearch.text import text_to_phonemes

    rng = np.random.default_rng(123)
    v = base[rng.integers(0, len(base), n_audio)] + rng.normal(0, perturb, (n_audio, base.shape[1])).astype(np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    return np.vstack([encoder.embed_phonemes([text_to_phonemes(t) for t in TEXT_QUERIES]), v]).astype(np.float32)


def run_child(mode: str, directory: Path, args) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--child", mode, str(directory), "--repeats", str(args.repeats)],
        capture_output=True, text=True, check=True, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def recall(exact: list[list[str]], approx: list[list[str]]) -> float:
    return float(np.mean([len(set(e) & set(a)) / max(len(e), 1) for e, a in zip(exact, approx)]))


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    h = [r["hours"] for r in rows]
    he = [r["hours"] for r in rows if r["exact"]]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    ax1.plot(he, [r["exact"]["p50_ms"] for r in rows if r["exact"]], "o-", label="exact p50")
    ax1.plot(he, [r["exact"]["p95_ms"] for r in rows if r["exact"]], "o--", label="exact p95")
    ax1.plot(h, [r["approx"]["p50_ms"] for r in rows], "s-", label="approximate p50")
    ax1.plot(h, [r["approx"]["p95_ms"] for r in rows], "s--", label="approximate p95")
    ax1.axvline(max(he) * 1.5, color="grey", lw=0.8, ls=":")
    ax1.set(xscale="log", yscale="log", xlabel="hours indexed (synthetic; right of the line: replicated)", ylabel="text query latency, ms")
    ax1.legend()
    for nprobe in NPROBES:
        ax2.plot(he, [r["recall"][str(nprobe)] for r in rows if r["recall"]], "o-", label=f"nprobe {nprobe}")
    ax2.axhline(0.95, color="grey", lw=0.8)
    ax2.set(xscale="log", xlabel="hours indexed (synthetic)", ylabel="recall@100 vs exact", ylim=(0.85, 1.005))
    ax2.legend()
    fig.suptitle("awesearch at scale (synthetic: replicated + perturbed example-archive windows)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def size_row(idx: Path, hours: float, n: int, nlist: int, build_s: float, appr: dict, exact: dict | None) -> dict:
    kinds = sizes(idx)
    seg = sum(v for k, v in kinds.items() if not k.startswith("approx"))
    apx = sum(v for k, v in kinds.items() if k.startswith("approx"))
    return {
        "hours": hours, "windows": n, "nlist": nlist, "build_s": build_s, "sizes": kinds,
        "mb_per_hour_segments": seg / hours / 1e6, "mb_per_hour_approx": apx / hours / 1e6,
        "recall": {k: recall(exact["tops"]["0"], v) for k, v in appr["tops"].items()} if exact else None,
        "exact": {k: v for k, v in exact.items() if k != "tops"} if exact else None,
        "approx": {k: v for k, v in appr.items() if k != "tops"},
    }


def markdown(meta: dict, rows: list[dict]) -> str:
    out = [
        f"Synthetic indexes (replicated + perturbed windows of the example archive, noise {meta['perturb']} per dim), "
        f"{meta['wps']:.1f} windows per audio second, encoder `{meta['encoder']}`, 1 torch + 1 FAISS thread, "
        f"{os.cpu_count()} CPUs shared, load {meta['load']:.1f}. Approximate: IVF {meta['codes']}, nprobe {meta['nprobe']}. "
        "Rows marked * were made from the largest built index by replicating its inverted lists in code space "
        "(scale_bench.replicate: centroid copies, perturbed 4-bit codes, no re-assignment; re-ranking reads the "
        "built index's int8 vectors); exact search and recall are not measured there.",
        "",
        "| hours | windows | lists | index MB/h (segments + approx) | approx build s | exact p50/p95 ms | approx p50/p95 ms | "
        "recall@100 | memory MB exact / approx (+ mapped) | approx open s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        e, a = r["exact"], r["approx"]
        ex = f"{e['p50_ms']:.1f} / {e['p95_ms']:.1f}" if e else "–"
        mem_e = f"{e['anon_mb'] - e['rss_before_mb']:.0f}" if e else "–"
        rec = f"{r['recall'][str(meta['nprobe'])]:.3f}" if r["recall"] else "–"
        star = " *" if "replicated_from_hours" in r else ""
        out.append(
            f"| {r['hours']:g}{star} | {r['windows']:,} | {r['nlist']} | {r['mb_per_hour_segments']:.1f} + {r['mb_per_hour_approx']:.1f} | "
            f"{r['build_s']:.0f} | {ex} | {a['p50_ms']:.1f} / {a['p95_ms']:.1f} | "
            f"{rec} | {mem_e} / {a['anon_mb'] - a['rss_before_mb']:.0f} (+ {a['file_mb']:.0f}) | {a['open_s']:.1f} |"
        )
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hours", type=float, nargs="+", default=[1, 10, 100, 1000, 10000])
    ap.add_argument("--replicate-above", type=float, default=100,
                    help="sizes above this many hours are made by replicating the largest built one in code space")
    ap.add_argument("--perturb", type=float, default=0.05, help="noise std per dimension of the replicas")
    ap.add_argument("--audio-queries", type=int, default=40)
    ap.add_argument("--repeats", type=int, default=40)
    ap.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "awesearch-scale")
    ap.add_argument("--keep", action="store_true", help="keep the synthetic index")
    ap.add_argument("--out", type=Path, default=RESULTS, help="directory for scale_bench.{json,md,png}")
    ap.add_argument("--child", nargs=2, metavar=("MODE", "DIR"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return child(args.child[0], Path(args.child[1]), args.repeats)

    from awesearch import approx
    from awesearch.encoder import load_encoder
    from awesearch.indexer.writer import IndexWriter

    shutil.rmtree(args.workdir, ignore_errors=True)
    args.workdir.mkdir(parents=True)
    base, wps, source = base_index(args.workdir)
    encoder = load_encoder(source)
    np.save(args.workdir / "queries.npy", recall_queries(encoder, base, args.audio_queries, args.perturb))
    idx = args.workdir / "index"
    rng = np.random.default_rng(0)
    rows = []
    meta = {"perturb": args.perturb, "wps": wps, "encoder": encoder.name, "load": os.getloadavg()[0],
            "codes": "4-bit scalar quantizer, re-ranked from int8", "nprobe": approx.NPROBE, "synthetic": True}
    approx.APPROX_MIN_WINDOWS = 0  # build it at every size, to compare with exact
    built = [h for h in sorted(args.hours) if h <= args.replicate_above]
    for hours in built:
        n = int(hours * 3600 * wps)
        with IndexWriter.open(idx, encoder, source=source) as w:
            grow(w, base, n, wps, args.perturb, rng)
            t0 = time.perf_counter()
            approx.update_approx(w)
            build_s = time.perf_counter() - t0
            info = approx.approx_info(w.manifest)
        exact, appr = run_child("exact", idx, args), run_child("approx", idx, args)
        rows.append(size_row(idx, hours, n, info.nlist, build_s, appr, exact))
        print(json.dumps({k: v for k, v in rows[-1].items() if k != "sizes"}), file=sys.stderr, flush=True)
    for hours in [h for h in sorted(args.hours) if h > args.replicate_above]:
        factor = int(round(hours / built[-1]))
        big = args.workdir / f"index-x{factor}"
        t0 = time.perf_counter()
        made = replicate(idx, big, factor, encoder)
        build_s = time.perf_counter() - t0
        appr = run_child("approx", big, args)
        rows.append({**size_row(big, built[-1] * factor, made["windows"], made["nlist"], build_s, appr, None),
                     "replicated_from_hours": built[-1], "centroid_copies": made["centroid_copies"]})
        print(json.dumps({k: v for k, v in rows[-1].items() if k != "sizes"}), file=sys.stderr, flush=True)
        shutil.rmtree(big, ignore_errors=True)  # tens of GB at 10,000 h
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "scale_bench.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    md = markdown(meta, rows)
    (args.out / "scale_bench.md").write_text(md + "\n")
    plot(rows, args.out / "scale_bench.png")
    print(md)
    if not args.keep:
        shutil.rmtree(args.workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
