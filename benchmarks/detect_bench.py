"""Trustworthy detections (issue 8): one command reproduces every figure, awesearch beside Whisper.

    nice python benchmarks/detect_bench.py --out-md benchmarks/results/detect.md --out-json benchmarks/results/detect.json

On ../shared/eval/real (read in place; evaluation only: nothing here is fitted or tuned on it):
- CLI defaults (threshold 0.5, cap 100) on every single-word query: pooled precision and recall;
- threshold 0, cap 50: MAP, MTWV and ATWV at the default threshold (words; two- and three-word phrases);
- absent real words one phoneme from a present word: false alarms per hour per query at the default;
- median start error of correct hits; query by example MAP (the example's own span is not a target);
- the same for faster-whisper tiny.en transcript search (every transcript match is a YES, score = word
  probability), from transcripts made in the same run (cached in --work);
- cost: indexing x real time with and without the phonetic store (same run, in child processes), index
  bytes per audio hour (phonetic files separately); text and audio query latency on this archive and on
  a 10 h index made by replicating this archive's windows with perturbation (phonetic files shared:
  the alignment work per query is real; stated beside the figure).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import random
import shutil
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import stdmetrics as sm  # noqa: E402
from bench_archive import Archive, Query, build_queries, real_archive  # noqa: E402

DEFAULT_REAL = HERE.parent.parent / "shared" / "eval" / "real"
DEFAULT_WORK = Path.home() / ".cache" / "awesearch" / "detect-bench"
Det = tuple[str, float, float, float]


def _index_child(files: list[str], index_dir: str, phonetic: bool) -> dict:
    import resource

    from awesearch.store import IndexStore
    from awesearch.indexer import index_paths

    report = index_paths(files, index_dir, phonetic=phonetic)
    size = IndexStore.open(index_dir).stats().size_bytes
    phon = sum(p.stat().st_size for p in Path(index_dir).glob("phon-*.awp"))
    return {"wall_s": report.wall_s, "size_bytes": size, "phonetic_bytes": phon,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def index(archive: Archive, work: Path, phonetic: bool) -> tuple[Path, dict]:
    out = work / f"index-{'phon' if phonetic else 'nophon'}"
    shutil.rmtree(out, ignore_errors=True)
    t0 = time.perf_counter()
    with mp.get_context("spawn").Pool(1) as pool:
        cost = pool.apply(_index_child, ([str(p) for p in archive.files.values()], str(out), phonetic))
    cost["end_to_end_s"] = time.perf_counter() - t0
    hours = archive.seconds / 3600
    cost.update(x_realtime=archive.seconds / cost["end_to_end_s"], mb_per_hour=cost["size_bytes"] / hours / 1e6,
                phonetic_mb_per_hour=cost["phonetic_bytes"] / hours / 1e6)
    return out, cost


def run_awesearch(engine, archive: Archive, queries: list[Query], k: int | None, threshold: float | None) -> tuple[dict, list[float]]:
    from awesearch.errors import QueryError
    from awesearch.search import AudioSpan

    ids = archive.path_to_id()
    dets, lat = {}, []
    for q in queries:
        t = time.perf_counter()
        try:
            if q.kind == "audio":
                fid, s, e = q.example
                hits = engine.search(audio=[AudioSpan(archive.files[fid], s, e)], k=k, threshold=threshold)
            else:
                hits = engine.search(text=q.text, k=k, threshold=threshold)
        except QueryError as exc:
            print(f"{q.label}: {exc}", file=sys.stderr)
            hits = []
        lat.append(time.perf_counter() - t)
        dets[q.label] = [(ids[str(Path(h.path).resolve())], h.start, h.end, h.score) for h in hits]
        if q.kind == "audio":  # the example itself is not a target
            fid, s, e = q.example
            dets[q.label] = [d for d in dets[q.label] if not (d[0] == fid and d[1] < e and d[2] > s)]
    return dets, lat


def whisper_dets(archive: Archive, queries: list[Query], work: Path) -> tuple[dict, float]:
    from peers import text_search, whisper_transcribe

    cache = work / "whisper-transcripts.json"
    spent = 0.0
    if cache.is_file():
        transcripts = json.loads(cache.read_text())
        spent = transcripts.pop("_seconds")
    else:
        transcripts, t0 = {}, time.perf_counter()
        for fid, path in archive.files.items():
            transcripts[fid] = [[w.word, w.start, w.end, w.prob] for w in whisper_transcribe(path)]
        spent = time.perf_counter() - t0
        cache.write_text(json.dumps({**transcripts, "_seconds": spent}))
    from peers import WordHit

    words = {fid: [WordHit(*w) for w in ws] for fid, ws in transcripts.items()}
    dets = {}
    for q in queries:
        if q.kind == "audio":
            continue
        dets[q.label] = [(fid, s.start, s.end, s.score) for fid, ws in words.items() for s in text_search(ws, q.text)]
    return dets, archive.seconds / spent


def metrics(archive: Archive, queries: list[Query], dets: dict, theta: float | None) -> dict:
    results = [sm.match_detections(dets.get(q.label, []), q.truth) for q in queries]
    with_truth = [r for r in results if r.n_true]
    out = {"queries": len(queries)}
    if with_truth:
        out["map"] = float(np.nanmean([sm.average_precision(r) for r in with_truth]))
        out["mtwv"], out["mtwv_threshold"] = sm.mtwv(with_truth, archive.seconds)
        if theta is not None:
            out["atwv"] = sm.atwv(with_truth, archive.seconds, theta)
    returned = sum(int((r.scores >= (theta or -np.inf)).sum()) for r in results)
    correct = sum(int((r.correct & (r.scores >= (theta or -np.inf))).sum()) for r in results)
    n_true = sum(r.n_true for r in results)
    out.update(returned=returned, precision=correct / max(returned, 1), recall=correct / max(n_true, 1))
    if not with_truth:
        out["fa_per_hour_per_query"] = sm.false_alarms_per_hour(results, archive.seconds / 3600, theta if theta is not None else -np.inf)
    return out


def start_errors(queries: list[Query], dets: dict) -> float:
    errs = []
    for q in queries:
        for f, s, e, _ in dets.get(q.label, []):
            near = [ts for tf, ts, te in q.truth if tf == f and s < te and e > ts]
            if near:
                errs.append(min(abs(s - ts) for ts in near))
    return float(np.median(errs)) if errs else float("nan")


def latency_10h(engine, archive: Archive, hours: float, seed: int = 0) -> dict:
    """Text/audio p50 on the archive's windows replicated (perturbed) to `hours` of audio."""
    import faiss

    from awesearch.search import SearchEngine, WindowTable
    from awesearch.store import _codes_of

    t = engine.table
    reps = max(1, int(round(hours * 3600 / archive.seconds)))
    rng = np.random.default_rng(seed)
    base = _codes_of(t.index).astype(np.float32)
    vecs = np.concatenate([base + rng.normal(0, 0.05, base.shape).astype(np.float32) * (r > 0) for r in range(reps)])
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    idx = faiss.IndexScalarQuantizer(vecs.shape[1], faiss.ScalarQuantizer.QT_fp16, faiss.METRIC_INNER_PRODUCT)
    idx.add(vecs)
    nf = len(t.paths)
    table = WindowTable(idx, np.concatenate([t.file_ids + r * nf for r in range(reps)]), np.tile(t.starts, reps), np.tile(t.ends, reps),
                        t.paths * reps, t.phon_paths * reps)
    big = SearchEngine(table, engine.encoder, engine.phone, engine.detector.calibration)
    words = ["prince", "morning", "remember", "government", "little prince", "the other side"]
    big.search(text="warm up")
    ts = []
    for w in words * 3:
        t0 = time.perf_counter()
        big.search(text=w)
        ts.append(time.perf_counter() - t0)
    return {"hours": reps * archive.seconds / 3600, "windows": int(idx.ntotal), "text_ms_p50": float(np.median(ts) * 1000),
            "text_ms_p95": float(np.percentile(ts, 95) * 1000)}


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--real", type=Path, default=DEFAULT_REAL)
    p.add_argument("--work", type=Path, default=DEFAULT_WORK)
    p.add_argument("--phrases", type=int, default=300, help="two- and three-word phrase queries (sampled)")
    p.add_argument("--limit", type=int, default=None, help="cap every query kind (quick runs)")
    p.add_argument("--limit-files", type=int, default=None)
    p.add_argument("--latency-hours", type=float, default=10.0)
    p.add_argument("--reuse-index", action="store_true", help="keep the indexes (and cost figures) of the last run in --work")
    p.add_argument("--no-heldout", action="store_true", help="skip the held-out real speakers and rare names (heldout_bench.py)")
    p.add_argument("--heldout-limit", type=int, default=200, help="cap every query kind of the held-out real speakers")
    p.add_argument("--out-md", type=Path)
    p.add_argument("--out-json", type=Path)
    a = p.parse_args(argv)
    import torch

    from awesearch.search import DEFAULT_THRESHOLD, SearchEngine

    torch.set_num_threads(1)
    work = a.work.expanduser()
    work.mkdir(parents=True, exist_ok=True)
    archive = real_archive(a.real, a.limit_files)
    qs = build_queries(archive, a.limit)
    words = [q for q in qs if q.kind == "word"]
    absent = [q for q in qs if q.kind == "absent"]
    audio = [q for q in qs if q.kind == "audio"]
    from bench_archive import _occurrences
    from awesearch.text import text_to_phonemes

    rng = random.Random(0)
    phrases = []
    for n in (2, 3):
        occ = _occurrences(archive, n)
        keys = sorted(k for k in occ if len(set(k)) == n)
        for k in rng.sample(keys, min(len(keys), a.phrases // 2)):
            phrases.append(Query("phrase", " ".join(k), text_to_phonemes(" ".join(k)), occ[k]))
    report: dict = {"archive_minutes": archive.seconds / 60, "n_words": len(words), "n_phrases": len(phrases),
                    "n_absent": len(absent), "n_audio": len(audio)}

    saved = work / "index-cost.json"
    if a.reuse_index and saved.is_file():  # re-score queries against the indexes of an earlier run (its cost figures)
        cost_plain, cost_phon = json.loads(saved.read_text())
        idx_plain, idx_phon = work / "index-nophon", work / "index-phon"
    else:
        idx_plain, cost_plain = index(archive, work, phonetic=False)
        idx_phon, cost_phon = index(archive, work, phonetic=True)
        saved.write_text(json.dumps([cost_plain, cost_phon]))
    report["cost"] = {"without_phonetic": cost_plain, "with_phonetic": cost_phon,
                      "slowdown": cost_plain["x_realtime"] / cost_phon["x_realtime"]}
    print(json.dumps(report["cost"]), flush=True)

    engine = SearchEngine.open(idx_phon)
    aw: dict = {}
    d_default, lat_text = run_awesearch(engine, archive, words, None, None)
    aw["words_default"] = metrics(archive, words, d_default, DEFAULT_THRESHOLD)
    aw["words_default"]["median_start_error_s"] = start_errors(words, {k: [d for d in v] for k, v in d_default.items()})
    d50, _ = run_awesearch(engine, archive, words, 50, 0.0)
    aw["words_k50"] = metrics(archive, words, d50, DEFAULT_THRESHOLD)
    p50d, _ = run_awesearch(engine, archive, phrases, 50, 0.0)
    aw["phrases_k50"] = metrics(archive, phrases, p50d, DEFAULT_THRESHOLD)
    pdd, _ = run_awesearch(engine, archive, phrases, None, None)
    aw["phrases_default"] = metrics(archive, phrases, pdd, DEFAULT_THRESHOLD)
    ad, _ = run_awesearch(engine, archive, absent, None, None)
    aw["absent_default"] = metrics(archive, absent, ad, DEFAULT_THRESHOLD)
    qd, lat_audio = run_awesearch(engine, archive, audio, 50, 0.0)
    aw["audio_k50"] = metrics(archive, audio, qd, DEFAULT_THRESHOLD)
    qdd, _ = run_awesearch(engine, archive, audio, None, None)
    aw["audio_default"] = metrics(archive, audio, qdd, DEFAULT_THRESHOLD)
    aw["latency"] = {"text_ms_p50": float(np.median(lat_text) * 1000), "audio_ms_p50": float(np.median(lat_audio) * 1000)}
    if a.latency_hours:
        aw["latency"]["large"] = latency_10h(engine, archive, a.latency_hours)
    # first stage alone (today's scores) on the same queries, for the ratio
    plain = SearchEngine.open(idx_plain)
    f50, _ = run_awesearch(plain, archive, words, 50, None)
    fp50, _ = run_awesearch(plain, archive, phrases, 50, None)
    report["first_stage_only"] = {"words_k50": metrics(archive, words, f50, None), "phrases_k50": metrics(archive, phrases, fp50, None)}
    report["awesearch"] = aw
    print(json.dumps(aw), flush=True)

    wd, wx = whisper_dets(archive, words + phrases + absent, work)
    report["whisper"] = {"words": metrics(archive, words, wd, 0.0), "phrases": metrics(archive, phrases, wd, 0.0),
                         "absent": metrics(archive, absent, wd, 0.0), "x_realtime_transcription": wx}
    report["whisper"]["words"]["median_start_error_s"] = start_errors(words, wd)
    if not a.no_heldout:
        import heldout_bench

        report["heldout"] = heldout_bench.run(work / "heldout", limit=a.limit or a.heldout_limit)
    text = markdown(report)
    print(text)
    if a.out_md:
        a.out_md.write_text(text)
    if a.out_json:
        a.out_json.write_text(json.dumps(report, indent=1))
    return report


def markdown(r: dict) -> str:
    aw, wh, c = r["awesearch"], r["whisper"], r["cost"]

    def f(x, nd=3):
        return "–" if x is None or (isinstance(x, float) and not np.isfinite(x)) else f"{x:.{nd}f}"

    rows = [
        ("words, defaults: precision / recall", f"{f(aw['words_default']['precision'])} / {f(aw['words_default']['recall'])}",
         f"{f(wh['words']['precision'])} / {f(wh['words']['recall'])}", "≥ 0.90 / ≥ 0.85"),
        ("words, -k 50: MAP", f(aw["words_k50"]["map"]), f(wh["words"]["map"]), "≥ 0.93"),
        ("words, -k 50: MTWV", f(aw["words_k50"]["mtwv"]), f(wh["words"]["mtwv"]), "≥ 0.80"),
        ("words: ATWV at the default threshold", f(aw["words_k50"].get("atwv")), f(wh["words"].get("atwv")), ""),
        ("phrases (2-3 words), defaults: precision / recall", f"{f(aw['phrases_default']['precision'])} / {f(aw['phrases_default']['recall'])}",
         f"{f(wh['phrases']['precision'])} / {f(wh['phrases']['recall'])}", "≥ 0.90 / ≥ 0.85"),
        ("phrases (2-3 words), -k 50: MAP", f(aw["phrases_k50"]["map"]), f(wh["phrases"]["map"]), "≥ 0.65"),
        ("phrases: MTWV", f(aw["phrases_k50"]["mtwv"]), f(wh["phrases"]["mtwv"]), ""),
        ("absent words 1 phoneme away: FA / hour / query", f(aw["absent_default"]["fa_per_hour_per_query"], 2),
         f(wh["absent"]["fa_per_hour_per_query"], 2), "≤ 0.5"),
        ("median start error of correct hits (s)", f(aw["words_default"]["median_start_error_s"]), f(wh["words"]["median_start_error_s"]), "≤ 0.06"),
        ("query by example, defaults: precision / recall", f"{f(aw['audio_default']['precision'])} / {f(aw['audio_default']['recall'])}",
         "–", "≥ 0.85 / ≥ 0.80"),
        ("query by example, -k 50: MAP", f(aw["audio_k50"]["map"]), "–", "≥ 0.867 (before)"),
    ]
    lines = [f"Real set: {r['archive_minutes']:.1f} min, {r['n_words']} words, {r['n_phrases']} phrases, {r['n_absent']} absent words, "
             f"{r['n_audio']} audio queries.", "", "| figure | awesearch | Whisper tiny.en transcripts | target |", "|---|---|---|---|"]
    lines += [f"| {a} | {b} | {w} | {t} |" for a, b, w, t in rows]
    fs = r["first_stage_only"]
    lat = aw["latency"]
    lines += ["", f"First stage alone on the same queries (cosine scores): words MAP {f(fs['words_k50']['map'])}, MTWV {f(fs['words_k50']['mtwv'])}; "
              f"phrases MAP {f(fs['phrases_k50']['map'])}.",
              f"Latency: text p50 {lat['text_ms_p50']:.0f} ms, audio p50 {lat['audio_ms_p50']:.0f} ms on this archive"
              + (f"; text p50/p95 {lat['large']['text_ms_p50']:.0f}/{lat['large']['text_ms_p95']:.0f} ms at {lat['large']['hours']:.1f} h "
                 f"({lat['large']['windows']:,} windows: this archive replicated with perturbed vectors)" if "large" in lat else "") + ".",
              f"Indexing: {c['with_phonetic']['x_realtime']:.1f}x real time with the phonetic store, {c['without_phonetic']['x_realtime']:.1f}x without "
              f"({(c['slowdown'] - 1) * 100:+.1f} %); index {c['with_phonetic']['mb_per_hour']:.1f} MB per audio hour, of which phonetic "
              f"{c['with_phonetic']['phonetic_mb_per_hour']:.1f}; Whisper transcription {wh['x_realtime_transcription']:.1f}x real time."]
    if r.get("heldout"):
        import heldout_bench

        lines += ["", heldout_bench.markdown(r["heldout"])]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
