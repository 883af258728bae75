"""Standard spoken-term-detection benchmark (issue 5): one command reproduces the table.

    nice -n 19 python benchmarks/stdbench.py --out-md runs/stdbench.md --out-json runs/stdbench.json --out-png runs/stdbench.png
    python benchmarks/stdbench.py --smoke            # 2 generated files, 3 queries per kind, < ~60 s

The full run takes about an hour on 2 cores, most of it pocketsphinx (keyword spotting ~1/12 to 1/20 of
the audio's duration per query, transcription ~1/3). --latency-hours (nothing) skips the 1/10/100 h sweep.

Archives: the real recordings (../shared/eval/real, read in place) and a generated long-form archive of
held-out espeak-ng voices (cached under ~/.cache/awesearch/bench-archive); see bench_archive.py.
Systems, on the same queries in the same run: awesearch (index built with indexer.index_paths), Whisper
tiny.en transcript search, pocketsphinx keyphrase spotting (only --ps-queries seeded text queries:
it costs ~1/12 of the audio's duration per query), pocketsphinx transcript search, subsequence DTW
(audio queries only). Metrics (stdmetrics.py): MAP, P@N, MTWV, ATWV and false alarms per hour, hits
matched with 0.5 s tolerance. ATWV threshold: transcript/keyword systems use their own decisions (every
detection is a YES); awesearch and DTW use --awe-threshold/--dtw-threshold when given, else the MTWV
threshold of the *other* archive (held-out calibration; "oracle" when only one archive runs).
Cost: indexing x real time, index bytes per hour, peak RSS of the indexing process, query latency.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import shutil
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import stdmetrics as sm  # noqa: E402
from bench_archive import Archive, Query, build_queries, real_archive, synthetic_archive  # noqa: E402

DEFAULT_REAL = HERE.parent.parent / "shared" / "eval" / "real"
DEFAULT_CACHE = Path.home() / ".cache" / "awesearch" / "bench-archive"
SYSTEMS = ("awesearch", "whisper", "ps-kws", "ps-transcript", "dtw")
TEXT_SYSTEMS = ("awesearch", "whisper", "ps-kws", "ps-transcript")
GROUPS = {"word": ("word",), "phrase": ("phrase",), "text": ("word", "phrase"), "audio": ("audio",)}
ABSENT = {"awesearch": ("absent", "pseudo"), "whisper": ("absent",), "ps-kws": ("absent",), "ps-transcript": ("absent",)}

Det = tuple[str, float, float, float]  # (file id, start, end, score)


# -- awesearch ----------------------------------------------------------------------------------


def _index_child(files: list[str], index_dir: str, model: str | None) -> dict:
    """Runs in a fresh process so that peak RSS is the indexer's own."""
    from awesearch.store import IndexStore
    from awesearch.indexer import index_paths

    report = index_paths(files, index_dir, model=model)
    stats = IndexStore.open(index_dir).stats()
    return {"audio_s": report.audio_s, "speech_s": report.speech_s, "wall_s": report.wall_s, "windows": report.windows,
            "skipped": [s.reason for s in report.skipped], "size_bytes": stats.size_bytes,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def run_awesearch(archive: Archive, queries: list[Query], work: Path, model: str | None, top: int) -> tuple[dict, dict]:
    import multiprocessing as mp

    from awesearch.errors import QueryError
    from awesearch.search import SearchEngine, search_vectors

    index_dir = work / f"index-{archive.name}"
    shutil.rmtree(index_dir, ignore_errors=True)
    t0 = time.perf_counter()
    with mp.get_context("spawn").Pool(1) as pool:
        cost = pool.apply(_index_child, ([str(p) for p in archive.files.values()], str(index_dir), model))
    cost["end_to_end_s"] = time.perf_counter() - t0  # including process start and model loading
    cost["x_realtime"] = archive.seconds / cost["end_to_end_s"]
    cost["bytes_per_hour"] = cost["size_bytes"] / (archive.seconds / 3600)
    engine = SearchEngine.open(index_dir)
    ids = archive.path_to_id()
    dets: dict[str, list[Det]] = {}
    lat = {"text": [], "audio": [], "pseudo": []}

    def conv(hits) -> list[Det]:
        return [(ids[str(Path(h.path).resolve())], h.start, h.end, h.score) for h in hits]

    engine.search_text("warm up", k=top)
    for q in queries:
        t = time.perf_counter()
        if q.kind == "audio":
            fid, s, e = q.example
            try:
                hits = engine.search_audio(archive.files[fid], s, e, k=top + 5)
            except QueryError as exc:  # a silent or too short example
                print(f"[{archive.name}] audio query {q.label}: {exc}", file=sys.stderr)
                hits = []
            lat["audio"].append(time.perf_counter() - t)
        elif q.kind == "pseudo":
            hits = search_vectors(engine.table, engine.encoder.embed_phonemes([q.phonemes]), top)[0]
            lat["pseudo"].append(time.perf_counter() - t)
        else:
            hits = engine.search_text(q.text, k=top)
            lat["text"].append(time.perf_counter() - t)
        dets[q.label] = conv(hits)
    for kind, ts in lat.items():
        if ts:
            cost[f"{kind}_query_ms_p50"], cost[f"{kind}_query_ms_p95"] = (float(np.percentile(np.array(ts) * 1000, p)) for p in (50, 95))
    return dets, cost


# -- peers --------------------------------------------------------------------------------------


def _audio_cache(archive: Archive) -> dict[str, np.ndarray]:
    from awesearch.audio import load_audio

    return {fid: load_audio(p) for fid, p in archive.files.items()}


def run_transcript(archive: Archive, audio: dict, queries: list[Query], which: str) -> tuple[dict, dict]:
    import peers

    transcribe = peers.whisper_transcribe if which == "whisper" else peers.pocketsphinx_transcribe
    if which == "whisper":
        peers.whisper_model()  # loading is not transcription time
    t0 = time.perf_counter()
    words = {fid: transcribe(a) for fid, a in audio.items()}
    wall = time.perf_counter() - t0
    dets = {q.label: [(fid, s.start, s.end, s.score) for fid, ws in words.items() for s in peers.text_search(ws, q.text)]
            for q in queries if q.kind in ("word", "phrase", "absent")}
    return dets, {"transcribe_s": wall, "x_realtime": archive.seconds / wall}


def run_ps_kws(archive: Archive, audio: dict, queries: list[Query], n: int, seed: int) -> tuple[dict, dict, set[str]]:
    import peers

    text_q = [q for q in queries if q.kind in ("word", "phrase", "absent")]
    chosen = random.Random(seed).sample(text_q, min(n, len(text_q)))
    dets, t0 = {}, time.perf_counter()
    for q in chosen:
        dets[q.label] = [(fid, s.start, s.end, s.score) for fid, a in audio.items() for s in peers.pocketsphinx_keyphrase(a, q.text)]
    wall = time.perf_counter() - t0
    per_q = wall / max(1, len(chosen))
    return dets, {"queries": len(chosen), "s_per_query": per_q, "x_realtime_per_query": archive.seconds / per_q if chosen else None}, {q.label for q in chosen}


def run_dtw(archive: Archive, audio: dict, queries: list[Query], top: int) -> tuple[dict, dict]:
    import peers

    dets, times = {}, []
    for q in queries:
        if q.kind != "audio":
            continue
        fid, s, e = q.example
        clip = audio[fid][int(s * 16000) : int(e * 16000)]
        t = time.perf_counter()
        found = [(f, sp.start, sp.end, sp.score) for f, a in audio.items() for sp in peers.dtw_search(clip, a)]
        times.append(time.perf_counter() - t)
        dets[q.label] = sorted(found, key=lambda d: -d[3])[: top + 5]
    cost = {"query_s_p50": float(np.median(times))} if times else {}
    return dets, cost


# -- scoring ------------------------------------------------------------------------------------


def _drop_example(q: Query, dets: list[Det]) -> list[Det]:
    """Audio queries: the example's own occurrence is not a target; drop detections overlapping it."""
    if q.example is None:
        return dets
    fid, s, e = q.example
    return [d for d in dets if not (d[0] == fid and d[1] < e and d[2] > s)]


def score_system(archive: Archive, queries: list[Query], dets: dict, top: int) -> dict[str, list[sm.QueryResult]]:
    """QueryResults by query kind, for the queries this system answered."""
    out: dict[str, list[sm.QueryResult]] = {}
    for q in queries:
        if q.label in dets:
            d = _drop_example(q, dets[q.label])
            d = sorted(d, key=lambda x: -x[3])[:top]
            out.setdefault(q.kind, []).append(sm.match_detections(d, q.truth))
    return out


def summarize(results: dict[str, list[sm.QueryResult]], system: str, seconds: float, theta: float | None) -> dict[str, dict]:
    """Metrics per group; theta None = the MTWV threshold (set later from the other archive when possible)."""
    rows = {}
    for group, kinds in GROUPS.items():
        rs = [r for k in kinds for r in results.get(k, [])]
        if not rs:
            continue
        m, m_theta = sm.mtwv(rs, seconds)
        absent = [r for k in ABSENT.get(system, ()) if not (group == "audio") for r in results.get(k, [])]
        rows[group] = {"queries": len(rs), "occurrences": sum(r.n_true for r in rs),
                       "map": float(np.mean([sm.average_precision(r) for r in rs])),
                       "p_at_n": float(np.mean([sm.precision_at_n(r) for r in rs])),
                       "mtwv": m, "mtwv_theta": m_theta, "_rs": rs, "_absent": absent}
    return rows


def finish(row: dict, theta: float, theta_src: str, seconds: float) -> None:
    hours = seconds / 3600
    rs, absent = row.pop("_rs"), row.pop("_absent")
    row["theta"], row["theta_source"] = theta, theta_src
    row["atwv"] = sm.atwv(rs, seconds, theta)
    row["fa_per_hour"] = sm.false_alarms_per_hour(rs, hours, theta)
    row["absent_queries"] = len(absent)
    row["absent_fa_per_hour"] = sm.false_alarms_per_hour(absent, hours, theta) if absent else float("nan")


# -- reporting ----------------------------------------------------------------------------------


def _f(x, nd=3) -> str:
    if x is None or (isinstance(x, float) and not np.isfinite(x)):
        return "-" if x is None or np.isnan(x) else ("inf" if x > 0 else "-inf")
    return f"{x:.{nd}f}" if isinstance(x, float) else str(x)


def _finite(x):
    """JSON-safe copy: NaN/inf -> None, numpy scalars -> Python."""
    if isinstance(x, dict):
        return {str(k): _finite(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_finite(v) for v in x]
    if isinstance(x, (float, np.floating)):
        return float(x) if np.isfinite(x) else None
    if isinstance(x, np.integer):
        return int(x)
    return x


def markdown(report: dict) -> str:
    lines = ["| archive | system | queries | occ. | MAP | P@N | MTWV | ATWV | θ (source) | FA/h/query | absent FA/h/query (n) |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in report["rows"]:
        lines.append(f"| {r['archive']} | {r['system']} | {r['group']} {r['queries']} | {r['occurrences']} | {_f(r['map'])} | {_f(r['p_at_n'])} | "
                     f"{_f(r['mtwv'])} | {_f(r['atwv'])} | {_f(r['theta'], 2)} ({r['theta_source']}) | {_f(r['fa_per_hour'], 1)} | "
                     f"{_f(r['absent_fa_per_hour'], 1)} ({r['absent_queries']}) |")
    lines += ["", "| archive | cost | value |", "|---|---|---|"]
    for name, c in report["cost"].items():
        for k, v in c.items():
            if not isinstance(v, (list, dict)):
                lines.append(f"| {name} | {k} | {_f(v, 2) if isinstance(v, float) else v} |")
    if report.get("libriphrase"):
        lines += ["", "LibriPhrase-style (benchmarks/eval_real.py, real archive): " +
                  ", ".join(f"{k} {v}" for k, v in report["libriphrase"].items() if k.startswith(("auc", "eer")))]
    if report.get("latency_md"):
        lines += ["", "Query latency on synthetic indexes (benchmarks/query_latency.py):", "", report["latency_md"]]
    lines += ["", "Notes: " + " ".join(report["notes"])]
    return "\n".join(lines)


def plot(curves: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    archives = sorted({a for a, _, _ in curves})
    fig, axes = plt.subplots(2, len(archives), figsize=(5.5 * len(archives), 9), squeeze=False)
    for j, a in enumerate(archives):
        for i, group in enumerate(("text", "audio")):
            ax = axes[i][j]
            for (arch, g, system), (rec, prec) in sorted(curves.items()):
                if arch == a and g == group and len(rec):
                    ax.plot(rec, prec, label=system)
            ax.set(title=f"{a}: {group} queries", xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.02))
            ax.grid(alpha=0.3)
            ax.legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


# -- main ---------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--real", type=Path, default=DEFAULT_REAL)
    ap.add_argument("--archives", default="real,synthetic")
    ap.add_argument("--synthetic-minutes", type=float, default=10.0)
    ap.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="generated archive and work indexes (never the repository)")
    ap.add_argument("--systems", default=",".join(SYSTEMS), help=f"comma-separated subset of {','.join(SYSTEMS)}")
    ap.add_argument("--model", default=None, help="awesearch encoder (default: the shipped one)")
    ap.add_argument("--limit-queries", type=int, default=200, help="cap per query kind per archive, seeded random choice (0: no cap)")
    ap.add_argument("--limit-files", type=int, default=None, help="first N files of each archive")
    ap.add_argument("--ps-queries", type=int, default=20, help="text queries given to pocketsphinx keyphrase spotting per archive")
    ap.add_argument("--top", type=int, default=100, help="detections kept per query")
    ap.add_argument("--awe-threshold", type=float, default=None)
    ap.add_argument("--dtw-threshold", type=float, default=None)
    ap.add_argument("--latency-hours", type=float, nargs="*", default=[1, 10, 100], help="query_latency.py index sizes (none: skip)")
    ap.add_argument("--no-libriphrase", action="store_true", help="skip eval_real.py's AUC/EER")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--smoke", action="store_true", help="2 generated 10 s files, 3 queries per kind, no real archive, no latency sweep")
    ap.add_argument("--out-md", type=Path)
    ap.add_argument("--out-json", type=Path)
    ap.add_argument("--out-png", type=Path)
    args = ap.parse_args(argv)
    file_s = 60.0
    if args.smoke:
        args.archives, args.synthetic_minutes, file_s = "synthetic", 20 / 60, 10.0
        args.limit_queries = 3
        args.ps_queries, args.latency_hours, args.no_libriphrase = min(args.ps_queries, 3), [], True
    systems = [s for s in args.systems.split(",") if s]
    unknown = set(systems) - set(SYSTEMS)
    if unknown:
        ap.error(f"unknown systems {sorted(unknown)}")
    t_start = time.perf_counter()
    work = args.cache / "work"
    work.mkdir(parents=True, exist_ok=True)
    archives = []
    for name in args.archives.split(","):
        if name == "real":
            archives.append(real_archive(args.real, args.limit_files))
        elif name == "synthetic":
            archives.append(synthetic_archive(args.cache, args.synthetic_minutes, args.seed, file_s, args.limit_files))
    report = {"config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}, "rows": [], "cost": {},
              "archives": {}, "notes": []}
    pending, curves = {}, {}  # (archive, system, group) -> row awaiting its θ
    for arch in archives:
        queries = build_queries(arch, args.limit_queries or None, args.seed)
        kinds = {k: sum(q.kind == k for q in queries) for k in ("word", "phrase", "absent", "pseudo", "audio")}
        report["archives"][arch.name] = {"files": len(arch.files), "seconds": arch.seconds, "queries": kinds}
        print(f"[{arch.name}] {len(arch.files)} files, {arch.seconds / 60:.1f} min, queries {kinds}", file=sys.stderr, flush=True)
        audio = _audio_cache(arch) if set(systems) - {"awesearch"} else {}
        cost, all_dets = {}, {}
        for system in systems:
            t = time.perf_counter()
            if system == "awesearch":
                all_dets[system], cost["awesearch"] = run_awesearch(arch, queries, work, args.model, args.top)
            elif system in ("whisper", "ps-transcript"):
                all_dets[system], cost[system] = run_transcript(arch, audio, queries, system)
            elif system == "ps-kws":
                all_dets[system], cost[system], chosen = run_ps_kws(arch, audio, queries, args.ps_queries, args.seed)
                if "awesearch" in all_dets:  # awesearch on exactly the keyword spotter's queries
                    all_dets["awesearch (ps-kws queries)"] = {k: v for k, v in all_dets["awesearch"].items() if k in chosen}
            elif system == "dtw":
                all_dets[system], cost[system] = run_dtw(arch, audio, queries, args.top)
            print(f"[{arch.name}] {system}: {time.perf_counter() - t:.1f} s", file=sys.stderr, flush=True)
        if "awesearch" in cost and "whisper" in cost:
            cost["ratios"] = {"awesearch_index_speed / whisper_transcription_speed": cost["awesearch"]["x_realtime"] / cost["whisper"]["x_realtime"]}
        if "awesearch" in cost and "ps-transcript" in cost:
            cost.setdefault("ratios", {})["awesearch_index_speed / ps_transcription_speed"] = cost["awesearch"]["x_realtime"] / cost["ps-transcript"]["x_realtime"]
        report["cost"].update({f"{arch.name} {k}": v for k, v in cost.items()})
        for system, dets in all_dets.items():
            base = system.split(" ")[0]
            results = score_system(arch, queries, dets, args.top)
            for group, row in summarize(results, base, arch.seconds, None).items():
                row.update(archive=arch.name, system=system, group=group)
                pending[(arch.name, system, group)] = row
                curves[(arch.name, "audio" if group == "audio" else group, system)] = sm.pooled_pr_curve(row["_rs"])
    given = {"awesearch": args.awe_threshold, "dtw": args.dtw_threshold}
    for (a, system, group), row in pending.items():
        base = system.split(" ")[0]
        if base not in given:
            theta, src = -np.inf, "own decisions"
        elif given[base] is not None:
            theta, src = given[base], "given"
        else:
            other = [r for (a2, s2, g2), r in pending.items() if a2 != a and s2 == system and g2 == group]
            theta, src = (other[0]["mtwv_theta"], f"MTWV θ of {other[0]['archive']}") if other else (row["mtwv_theta"], "oracle")
        finish(row, float(theta), src, report["archives"][a]["seconds"])
        report["rows"].append(row)
    report["rows"].sort(key=lambda r: (r["archive"], list(GROUPS).index(r["group"]), r["system"]))
    if "real" in args.archives and not args.no_libriphrase and "awesearch" in systems:
        import eval_real

        report["libriphrase"] = eval_real.evaluate(args.model, args.real, args.seed)
    if args.latency_hours and "awesearch" in systems:
        import query_latency

        report["latency_md"] = query_latency.run(args.latency_hours, args.model, query_latency.DEFAULT_WINDOWS_PER_SECOND, 40, 10, None)
    report["notes"] = [
        f"Hits match a true occurrence in the same file with {sm.TOLERANCE_S} s tolerance, each occurrence once; MTWV/ATWV with β={sm.BETA}, T = archive seconds.",
        f"ps-kws answers only {args.ps_queries} seeded text queries per archive (its cost); 'awesearch (ps-kws queries)' is awesearch on the same ones.",
        "Absent queries: real words one phoneme from a present word; awesearch also gets pseudo-words (phoneme edits) searched by phonemes.",
        "Audio queries: detections overlapping the example itself are dropped before scoring.",
        "Peak RSS is that of the awesearch indexing process (spawned fresh). awesearch x real time is end to end (process start,"
        " model loading, indexing); the transcribers' x real time excludes loading their models.",
    ]
    report["wall_s"] = time.perf_counter() - t_start
    md = markdown(report)
    print(md)
    if args.out_md:
        args.out_md.parent.mkdir(parents=True, exist_ok=True)
        args.out_md.write_text(md + "\n")
    if args.out_json:
        args.out_json.parent.mkdir(parents=True, exist_ok=True)
        args.out_json.write_text(json.dumps(_finite(report), indent=1))
    if args.out_png:
        plot(curves, args.out_png)
    return report


if __name__ == "__main__":
    main()
