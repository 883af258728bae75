"""Detections on speech nobody tuned on (issue 18): real held-out speakers and rare names, beside Whisper.

    python benchmarks/heldout_bench.py --out-md benchmarks/results/heldout.md --out-json benchmarks/results/heldout.json

(detect_bench.py runs this too, so one command gives every figure.)

- ``real_heldout``: the ``test`` split of the real training corpus (awesearch.train.real: speechocean762
  speakers never used for the phoneme head nor the calibration), utterances joined into ~60 s recordings.
  Words at the CLI defaults (precision, recall), ``-k 50`` (MAP, MTWV), absent words one phoneme from a present
  one (false alarms per hour per query), query by example, and the **reliability table**: per probability
  decile of the returned hits (threshold 0, k 50), how many there are and the share that is right.
- ``names``: rare names CMUdict does not know (awesearch.train.names.BENCH_NAMES) in carrier sentences, spoken
  by held-out synthetic voices that neither the head nor the calibration heard (never SVOX pico or piper).
  Queries typed as text: their target is g2p's guess.
- ``per``: phoneme error rate (greedy decoding, word boundaries removed) of the shipped head and of the
  previous one (benchmarks/baselines/phone-whisper-v1.pt) on the real ``test`` split and the synthetic
  ``val_voice`` split (the frames cached by train_phone).
Whisper tiny.en transcript search runs on both archives in the same run (every transcript match a YES).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import stdmetrics as sm  # noqa: E402
from bench_archive import Archive, Query, build_queries  # noqa: E402

DEFAULT_WORK = Path.home() / ".cache" / "awesearch" / "heldout-bench"
DEFAULT_REAL_CORPUS = Path.home() / ".cache" / "awesearch" / "real"
DEFAULT_CORPUS = Path.home() / ".cache" / "awesearch" / "corpus"
BASELINE_HEAD = HERE / "baselines" / "phone-whisper-v1.pt"


def _archive(name: str, spoken: list[tuple[str, float, float, str]]) -> Archive:
    """Archive from (path, start, end, word) of every spoken word."""
    import soundfile as sf

    paths = sorted({p for p, _, _, _ in spoken})
    fid = {p: f"{name}-{i:03d}" for i, p in enumerate(paths)}
    truth: dict[str, list] = {fid[p]: [] for p in paths}
    for p, s, e, w in spoken:
        truth[fid[p]].append((w, s, e))
    return Archive(name, {fid[p]: Path(p) for p in paths}, {fid[p]: sf.info(p).duration for p in paths},
                   {fid[p]: name for p in paths}, truth)


def real_heldout_archive(real_corpus: Path, work: Path, seed: int = 0) -> Archive:
    from awesearch.train.fit_calibration import build_archive

    out = work / "real-heldout"
    words, _ = build_archive(real_corpus, out, 1e9, seed, degraded=0.0, split="test", prefix="heldout")
    return _archive("real-heldout", [(w.path, w.start, w.end, w.word) for w in words])


def names_archive(work: Path, seed: int = 0) -> tuple[Archive, list[Query]]:
    from awesearch.text import word_phonemes
    from awesearch.train.names import BENCH_NAMES, BENCH_VOICE_BASES, build_names_archive

    spoken = build_names_archive(work / "names", BENCH_NAMES, BENCH_VOICE_BASES, seed, per_name=3)
    archive = _archive("names", [(n.path, n.start, n.end, n.name) for n in spoken])
    ids = {str(p): f for f, p in archive.files.items()}
    queries = []
    for name in sorted({n.name for n in spoken if n.is_name}):
        queries.append(Query("name", name, word_phonemes(name), [(ids[n.path], n.start, n.end) for n in spoken if n.name == name]))
    return archive, queries


def reliability(archive: Archive, queries: list[Query], dets: dict, bins: int = 10) -> list[dict]:
    """Per probability decile of every returned hit: count, mean probability, share right."""
    from awesearch.train.fit_calibration import reliability as binned

    p, y = [], []
    for q in queries:
        r = sm.match_detections(dets.get(q.label, []), q.truth)
        p += list(r.scores)
        y += list(r.correct)
    return [{"hits" if k == "n" else k: v for k, v in row.items()} for row in binned(np.array(p), np.array(y, float), bins)]


def phoneme_error_rates(corpus: Path, real_corpus: Path) -> dict:
    """PER of the shipped head and of the baseline head on the cached held-out frames (train_phone's cache)."""
    from awesearch.phonetic import load_phone_checkpoint, load_phone_model
    from awesearch.train.train_phone import PhoneTrainConfig, cached_features, error_rates

    cfg = PhoneTrainConfig(corpus=corpus, out=Path("unused.pt"))
    sets = {"real_test": cached_features(cfg, "test", None, cfg.val_utterances, 0.0, corpus=real_corpus),
            "synthetic_val_voice": cached_features(cfg, "val_voice", None, cfg.val_utterances, 0.0)}
    heads = {"shipped": load_phone_model().head}
    if BASELINE_HEAD.is_file():
        heads["phone-whisper-v1"] = load_phone_checkpoint(BASELINE_HEAD).head
    return {h: {s: error_rates(head, items) for s, items in sets.items()} for h, head in heads.items()}


def evaluate(archive: Archive, queries: dict[str, list[Query]], work: Path, with_whisper: bool = True) -> dict:
    from detect_bench import index, metrics, run_awesearch, whisper_dets

    from awesearch.search import DEFAULT_THRESHOLD, SearchEngine

    idx, cost = index(archive, work / archive.name, phonetic=True)
    engine = SearchEngine.open(idx)
    out: dict = {"minutes": archive.seconds / 60, "files": len(archive.files)}
    for kind, qs in queries.items():
        if not qs:
            continue
        d_def, _ = run_awesearch(engine, archive, qs, None, None)
        d50, _ = run_awesearch(engine, archive, qs, 50, 0.0)
        out[kind] = {"default": metrics(archive, qs, d_def, DEFAULT_THRESHOLD), "k50": metrics(archive, qs, d50, DEFAULT_THRESHOLD)}
        if kind in ("word", "name", "audio"):
            out[kind]["reliability"] = reliability(archive, qs, d50)
    if with_whisper:
        texts = [q for qs in queries.values() for q in qs if q.kind != "audio" and q.text]
        wd, _ = whisper_dets(archive, texts, work / archive.name)
        out["whisper"] = {kind: metrics(archive, qs, wd, 0.0) for kind, qs in queries.items() if qs and kind != "audio"}
    return out


def run(work: Path, real_corpus: Path = DEFAULT_REAL_CORPUS, corpus: Path = DEFAULT_CORPUS, limit: int | None = None) -> dict:
    work.mkdir(parents=True, exist_ok=True)
    report: dict = {}
    names, name_queries = names_archive(work)
    report["names"] = evaluate(names, {"name": name_queries}, work)
    print(json.dumps(report["names"]), flush=True)
    if (real_corpus / "real.json").is_file():
        real = real_heldout_archive(real_corpus, work)
        qs = build_queries(real, limit)
        by_kind = {k: [q for q in qs if q.kind == k] for k in ("word", "phrase", "absent", "audio")}
        report["real_heldout"] = evaluate(real, by_kind, work)
        print(json.dumps(report["real_heldout"]), flush=True)
        report["per"] = phoneme_error_rates(corpus, real_corpus)
    return report


def _f(x, nd=3):
    return "–" if x is None else f"{x:.{nd}f}"


def markdown(r: dict) -> str:
    lines = ["## Held-out speech (benchmarks/heldout_bench.py)", ""]
    lines += ["| set | awesearch defaults P / R | awesearch -k 50 MAP / MTWV | Whisper tiny.en P / R, MAP / MTWV |", "|---|---|---|---|"]
    for set_name, kinds in (("names", ("name",)), ("real_heldout", ("word", "phrase", "audio", "absent"))):
        s = r.get(set_name)
        if not s:
            continue
        for k in kinds:
            if k not in s:
                continue
            d, k50, w = s[k]["default"], s[k]["k50"], s.get("whisper", {}).get(k, {})
            if k == "absent":
                lines.append(f"| {set_name} absent (FA / h / query at defaults) | {_f(d.get('fa_per_hour_per_query'), 2)} | | "
                             f"{_f(w.get('fa_per_hour_per_query'), 2)} |")
                continue
            whisper = f"{_f(w.get('precision'))} / {_f(w.get('recall'))}, {_f(w.get('map'))} / {_f(w.get('mtwv'))}" if w else "–"
            lines.append(f"| {set_name} {k} ({d['queries']} queries) | {_f(d['precision'])} / {_f(d['recall'])} | "
                         f"{_f(k50.get('map'))} / {_f(k50.get('mtwv'))} | {whisper} |")
    rel = r.get("real_heldout", {}).get("word", {}).get("reliability")
    if rel:
        lines += ["", "Reliability on real held-out speakers (word queries, threshold 0, k 50):", "",
                  "| probability | hits | mean p | share right |", "|---|---|---|---|"]
        lines += [f"| {b['bin']} | {b['hits']} | {_f(b['mean_p'], 2)} | {_f(b['right'], 2)} |" for b in rel]
    if r.get("per"):
        lines += ["", "| phoneme head | PER real test | PER synthetic val_voice |", "|---|---|---|"]
        lines += [f"| {h} | {_f(v['real_test']['per'])} | {_f(v['synthetic_val_voice']['per'])} |" for h, v in r["per"].items()]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--work", type=Path, default=DEFAULT_WORK)
    p.add_argument("--real-corpus", type=Path, default=DEFAULT_REAL_CORPUS)
    p.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    p.add_argument("--limit", type=int, default=None)
    p.add_argument("--out-md", type=Path)
    p.add_argument("--out-json", type=Path)
    a = p.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    r = run(a.work.expanduser(), a.real_corpus.expanduser(), a.corpus.expanduser(), a.limit)
    text = markdown(r)
    print(text)
    if a.out_md:
        a.out_md.write_text(text)
    if a.out_json:
        a.out_json.write_text(json.dumps(r, indent=1))
    return r


if __name__ == "__main__":
    main()
