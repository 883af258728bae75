"""Fit the calibrated-score models (awesearch/calibrate.py) on held-out synthetic voices, real speakers and names.

    python -m awesearch.train.fit_calibration --corpus ~/.cache/awesearch/corpus --work ~/.cache/awesearch/calib \
        --real ~/.cache/awesearch/real --out awesearch/assets/calibration-v2.json

1. Archive: synthetic ``val_voice`` utterances (voices never trained on; the names benchmark's voices left
   out), real ``calib`` speakers (awesearch.train.real: never trained on), and rare names CMUdict lacks
   (awesearch.train.names, in carrier sentences), joined into ~60 s recordings with pauses, part of them
   degraded (noise, reverb, codec: train/augment.py), indexed with the real indexer and the shipped models.
   Never real evaluation speech, never SVOX pico or piper.
2. Queries: words present in the archive (>= 3 phonemes) and phrases as a user types them (the engine's own
   plan), rare names through g2p, absent words one phoneme edit from a present word (PLCL's confusable
   negatives), and audio examples cut from utterances outside the archive.
3. Every first-stage candidate region of every query is aligned (awesearch/detect.py) and labelled: right
   when an occurrence of the query's words anywhere in the archive overlaps it by at least half.
4. Per query kind (search.query_kind) the background prior is the mean of the queries' candidate medians; a
   logistic model is fitted on half of the queries and scored on the other half (log loss, reliability per
   source), then refitted on all; the substitution weight with the lowest held-out log loss is kept; the
   word-edge offsets are the median differences on right hits.
"""

from __future__ import annotations

import argparse
import json
import random
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SAMPLE_RATE = 16000  # Hz
RECORDING_S = 60.0  # seconds of speech per archive recording
PAUSE_S = (0.2, 1.2)  # seconds of silence between utterances
DEGRADED_SHARE = 0.5  # recordings augmented as a whole


@dataclass
class Spoken:
    """One word as spoken in the calibration archive (ground truth)."""

    path: str
    start: float  # seconds
    end: float  # seconds
    phonemes: tuple[str, ...]
    word: str = ""  # normalised spelling (text queries are made of these, as a user types them)


def build_archive(corpus: Path, out: Path, minutes: float, seed: int, degraded: float = DEGRADED_SHARE,
                  split: str = "val_voice", prefix: str = "calib", exclude_bases: tuple[str, ...] = ()) -> tuple[list[Spoken], list]:
    """Write the archive's recordings from one split of a corpus (synthetic, or real: awesearch.train.real);
    return its words and the utterances of the split left for audio examples."""
    import soundfile as sf

    from awesearch.train.augment import random_augment
    from awesearch.train.corpus import CorpusReader

    rng = random.Random(seed)
    utts = [u for u in CorpusReader(corpus).utterances(split=split, shuffle_seed=seed)
            if all(w.start >= 0 for w in u.words) and u.base_voice not in exclude_bases]
    out.mkdir(parents=True, exist_ok=True)
    words: list[Spoken] = []
    used = 0
    total = 0.0
    n_file = 0
    while total < minutes * 60 and used < len(utts):
        path = out / f"{prefix}-{n_file:03d}.wav"
        pieces, t = [], 0.0
        while t < RECORDING_S and used < len(utts):
            u = utts[used]
            used += 1
            gap = rng.uniform(*PAUSE_S)
            pieces.append(np.zeros(int(gap * SAMPLE_RATE), np.float32))
            t += gap
            pieces.append(u.audio)
            words += [Spoken(str(path), t + w.start, t + w.end, tuple(w.phonemes), w.word) for w in u.words if w.phonemes]
            t += u.duration
        audio = np.concatenate(pieces)
        if rng.random() < degraded:
            audio = random_augment(audio, rng)
        sf.write(path, np.clip(audio, -1, 1), SAMPLE_RATE)
        total += t
        n_file += 1
    return words, utts[used:]


def occurrences(words: list[Spoken], n: int, key: str = "phonemes") -> dict[tuple, list[tuple[str, float, float]]]:
    """n consecutive words (a tuple of their phoneme tuples, or of their spellings with key="word") -> where
    they are spoken."""
    out: dict[tuple, list] = defaultdict(list)
    for i in range(len(words) - n + 1):
        ws = words[i : i + n]
        if len({w.path for w in ws}) == 1 and all(b.start - a.end < 1.5 for a, b in zip(ws, ws[1:])):
            out[tuple(getattr(w, key) for w in ws)].append((ws[0].path, ws[0].start, ws[-1].end))
    return out


def is_right(path: str, start: float, end: float, truth: list[tuple[str, float, float]]) -> tuple[bool, float, float]:
    """(right, true start, true end): a spoken occurrence overlaps the hit by at least half of the shorter one."""
    for p, s, e in truth:
        inter = min(end, e) - max(start, s)
        if p == path and inter > 0.5 * min(end - start, e - s):
            return True, s, e
    return False, 0.0, 0.0


@dataclass
class Rows:
    """Every first-stage candidate of every query: own evidence (the first 5 FEATURES), label, query id."""

    x: np.ndarray  # [n, 5]
    y: np.ndarray  # [n] 1.0 right
    q: np.ndarray  # [n] query id
    offsets: list  # (true start - hit start, true end - hit end) of right candidates


def collect(engine, plans: list[tuple[str, object, list]], pool: int) -> dict[str, Rows]:
    """Own evidence, labels, query ids and edge errors of every candidate of every query plan, by kind."""
    acc: dict[str, list] = defaultdict(list)
    for qi, (_, plan, truth) in enumerate(plans):
        kind = plan.kind  # the calibration model the engine will use for this query (search.query_kind)
        for c in engine.detector._score(plan, pool):
            right, s, e = is_right(engine.table.paths[c.file], c.start, c.end, truth)
            acc[kind].append((c.features[:5], right, qi, (s - c.start, e - c.end) if right else None))
    return {k: Rows(np.stack([r[0] for r in v]), np.array([r[1] for r in v], float), np.array([r[2] for r in v]),
                    [r[3] for r in v if r[3] is not None]) for k, v in acc.items()}


def background_prior(rows: Rows) -> list[float]:
    """The typical background of a query: the mean over queries of their candidates' medians."""
    from awesearch.calibrate import BACKGROUND_FEATURES, FEATURES

    cols = [FEATURES.index(f) for f in BACKGROUND_FEATURES]
    meds = [np.median(rows.x[rows.q == q][:, cols], axis=0) for q in np.unique(rows.q)]
    return np.mean(meds, axis=0).tolist()


def full_features(cal, kind: str, rows: Rows) -> np.ndarray:
    """[n, len(FEATURES)]: each query's rows with its background as the detector computes it."""
    parts = {}
    for q in np.unique(rows.q):
        sel = rows.q == q
        parts[int(q)] = cal.with_background(kind, rows.x[sel])
    out = np.zeros((len(rows.y), next(iter(parts.values())).shape[1]))
    for q, v in parts.items():
        out[rows.q == q] = v
    return out


def reliability(p: np.ndarray, y: np.ndarray, bins: int = 10) -> list[dict]:
    """Per probability decile [i/10, (i+1)/10): candidates, their mean probability and the share right."""
    out = []
    for i in range(bins):
        sel = (p >= i / bins) & ((p < (i + 1) / bins) if i < bins - 1 else (p <= 1.0))
        out.append({"bin": f"{i / bins:.1f}-{(i + 1) / bins:.1f}", "n": int(sel.sum()),
                    "mean_p": float(p[sel].mean()) if sel.any() else None, "right": float(y[sel].mean()) if sel.any() else None})
    return out


def fit_kinds(rows: dict[str, Rows], source_of: list[str]):
    """(models, held-out report, priors, offsets): per kind a logistic fitted on the even queries and scored on
    the odd ones (reported), then refitted on all."""
    from awesearch.calibrate import Calibration, fit_logistic

    priors = {k: background_prior(r) for k, r in rows.items()}
    probe = Calibration({}, background_prior=priors)
    models, report, offsets = {}, {}, []
    for kind, r in rows.items():
        x = full_features(probe, kind, r)
        offsets += r.offsets
        held = r.q % 2 == 1
        half = fit_logistic(x[~held], r.y[~held])
        ph, yh = half.probability(x[held]), r.y[held]
        src = np.array([source_of[q] for q in r.q])[held]
        tp = float(((ph >= 0.5) & (yh > 0)).sum())
        eps = 1e-6
        report[kind] = {
            "candidates": int(len(r.y)), "right": int(r.y.sum()),
            "heldout_log_loss": float(-np.mean(yh * np.log(ph + eps) + (1 - yh) * np.log(1 - ph + eps))),
            "heldout_precision_at_0.5": tp / max(1.0, float((ph >= 0.5).sum())),
            "heldout_recall_at_0.5_of_candidates": tp / max(1.0, float(yh.sum())),
            "heldout_reliability": {s: reliability(ph[src == s], yh[src == s]) for s in sorted(set(src))},
        }
        models[kind] = fit_logistic(x, r.y)
        print(kind, json.dumps({k: v for k, v in report[kind].items() if "reliability" not in k}), flush=True)
    return models, report, priors, offsets


def make_plans(engine, words: list[Spoken], all_words: list[Spoken], spare: list, examples_dir: Path, n_queries: int,
               rng: random.Random) -> list:
    """(kind, QueryPlan, truth) for words and phrases of `words` as typed (the engine's own plan:
    pronunciations, g2p), absent confusables one or two phoneme edits from a present word, and audio examples
    from `spare`. Truth comes from `all_words`: every word of the whole archive searched."""
    import soundfile as sf

    from awesearch.calibrate import SHORT_PHONEMES
    from awesearch.detect import QueryPlan
    from awesearch.phonetic import word_targets
    from awesearch.search import AudioSpan
    from awesearch.train.negatives import phoneme_edits

    def phon_plan(phons: list[tuple[str, ...]]) -> QueryPlan:
        flat = sum([list(p) for p in phons], [])
        return QueryPlan([engine.encoder.embed_phonemes([flat])[0]], [(0.0, 0.0)], [[word_targets([list(p) for p in phons])]],
                         "short" if len(flat) <= SHORT_PHONEMES else "text")

    by_word = occurrences(all_words, 1, "word")
    present = {k[0] for k in occurrences(all_words, 1)}
    phon_of = {w.word: w.phonemes for w in words}
    eligible = sorted(k for k in occurrences(words, 1, "word") if len(phon_of[k[0]]) >= 3)
    rng.shuffle(eligible)
    plans = [("text", engine._plan(k[0], []), by_word[k]) for k in eligible[:n_queries]]
    for k in eligible[: n_queries // 3]:  # absent confusables: no occurrence can be right
        for edit in phoneme_edits(list(phon_of[k[0]]), 1, rng):
            if tuple(edit) not in present:
                plans.append(("text", phon_plan([tuple(edit)]), []))
    for n in (2, 3):
        multi = occurrences(all_words, n, "word")
        keys = sorted(occurrences(words, n, "word"))
        rng.shuffle(keys)
        plans += [("text", engine._plan(" ".join(k), []), multi[k]) for k in keys[: n_queries // 4]]
    examples_dir.mkdir(parents=True, exist_ok=True)
    n_audio = 0
    for u in spare:  # a word cut (with its context) from an utterance outside the archive
        if n_audio >= n_queries // 2:
            break
        cands = [w for w in u.words if (w.word,) in by_word and len(w.phonemes) >= 3 and w.start >= 0]
        if not cands:
            continue
        w = rng.choice(cands)
        clip = examples_dir / f"{u.utt_id}.wav"
        sf.write(clip, u.audio, SAMPLE_RATE)
        try:
            vec, targets = engine._embed_example(AudioSpan(clip, w.start, w.end), decode=True)
        except Exception as e:  # an example the recogniser hears nothing in is skipped, as a user would be told
            print(f"skip example {clip.name}: {e}")
            continue
        plans.append(("audio", QueryPlan([vec], [(0.0, 0.0)], [targets], "audio"), by_word[(w.word,)]))
        n_audio += 1
    return plans


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--corpus", type=Path, required=True, help="synthetic corpus (its val_voice split: held-out voices)")
    p.add_argument("--real", type=Path, help="real speech corpus (awesearch.train.real; its calib split: held-out speakers)")
    p.add_argument("--work", type=Path, required=True, help="scratch folder for the archive and its index")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--minutes", type=float, default=20.0, help="of synthetic speech")
    p.add_argument("--real-minutes", type=float, default=35.0, help="of real speech (the rest of the split gives audio examples)")
    p.add_argument("--queries", type=int, default=300, help="word queries per source (phrases, confusables and audio: fewer)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--degraded-share", type=float, default=DEGRADED_SHARE, help="share of the archive's recordings augmented")
    p.add_argument("--substitution-weights", type=float, nargs="+", default=[0.0, 0.3])
    p.add_argument("--dump", type=Path, help="also save every candidate's features and label (.npz) for analysis")
    a = p.parse_args()

    from awesearch.calibrate import KINDS, Calibration
    from awesearch.detect import POOL_WINDOWS
    from awesearch.indexer.pipeline import index_paths
    from awesearch.search import SearchEngine
    from awesearch.train.names import BENCH_VOICE_BASES, CALIB_NAMES, CALIB_VOICE_BASES, build_names_archive
    from awesearch.verify import substitution_matrix

    rng = random.Random(a.seed)
    work = a.work.expanduser()
    archive = work / "archive"

    # the names benchmark's voices stay out of the calibration (benchmarks/heldout_bench.py)
    sources = [("synthetic", build_archive(a.corpus.expanduser(), archive, a.minutes, a.seed, a.degraded_share, exclude_bases=BENCH_VOICE_BASES))]
    names = build_names_archive(archive / "names", CALIB_NAMES, CALIB_VOICE_BASES, a.seed, per_name=3)
    if a.real:
        sources.append(("real", build_archive(a.real.expanduser(), archive, a.real_minutes, a.seed, a.degraded_share / 2, "calib", "real")))
    report = index_paths([archive], work / "index")
    engine = SearchEngine.open(work / "index")
    if not engine.calibrated:
        raise SystemExit("the shipped encoder has no phonetic store; nothing to calibrate")
    name_words = [Spoken(n.path, n.start, n.end, n.phonemes, n.name) for n in names]
    all_words = sorted([w for _, (ws, _) in sources for w in ws] + name_words, key=lambda w: (w.path, w.start))
    plans, source_of = [], []
    for name, (words, spare) in sources:
        got = make_plans(engine, words, all_words, spare, work / "examples" / name, a.queries, rng)
        plans += got
        source_of += [name] * len(got)
        print(f"{name}: {len(words)} words, {sum(k == 'text' for k, _, _ in got)} text and {sum(k == 'audio' for k, _, _ in got)} audio queries", flush=True)
    by_word = occurrences(all_words, 1, "word")
    name_queries = sorted({n.name for n in names if n.is_name})
    for name in name_queries:  # rare names through g2p: the query as typed
        plans.append(("text", engine._plan(name, []), by_word[(name,)]))
        source_of.append("names")
    print(f"names: {sum(n.is_name for n in names)} spoken, {len(name_queries)} queries", flush=True)

    # the share of the head's confusions in phoneme scores: chosen by held-out log loss on these queries
    weights = a.substitution_weights if engine.phone.confusion is not None else [0.0]
    best = None
    for weight in weights:
        engine.detector.substitution = substitution_matrix(engine.phone.confusion, weight) if weight > 0 else None
        rows = collect(engine, plans, POOL_WINDOWS)
        fitted = fit_kinds(rows, source_of)
        loss = sum(r["heldout_log_loss"] * r["candidates"] for r in fitted[1].values()) / sum(r["candidates"] for r in fitted[1].values())
        print(f"substitution weight {weight}: held-out log loss {loss:.4f}", flush=True)
        if best is None or loss < best[0]:
            best = (loss, weight, rows, fitted)
    _, weight, rows, (models, report_kinds, priors, offsets) = best
    missing = set(KINDS) - set(models)
    if missing:
        raise SystemExit(f"no calibration queries of kind {sorted(missing)}")
    if a.dump:
        np.savez(a.dump, **{f"{k}_{n}": getattr(r, n) for k, r in rows.items() for n in ("x", "y", "q")}, source=np.array(source_of))
    was = engine.detector.calibration  # candidates' edges already include the offsets of the loaded calibration
    off = np.array(offsets)
    cal = Calibration(models, was.start_offset_s + float(np.median(off[:, 0])), was.end_offset_s + float(np.median(off[:, 1])),
                      {"archive_minutes": round(report.audio_s / 60, 1), "sources": [n for n, _ in sources],
                       "split": "synthetic val_voice (held-out voices) + real calib (held-out speakers)",
                       "queries": len(plans), "seed": a.seed, "heldout": report_kinds, "substitution_weights_tried": weights},
                      priors, weight)
    cal.save(a.out)
    print(f"saved {a.out}: substitution weight {weight}, start offset {cal.start_offset_s:+.3f} s, end offset {cal.end_offset_s:+.3f} s, priors {priors}")


if __name__ == "__main__":
    main()
