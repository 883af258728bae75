"""Fit the calibrated-score models (awesearch/calibrate.py) on an archive of held-out synthetic voices.

    python -m awesearch.train.fit_calibration --corpus ~/.cache/awesearch/corpus --work ~/.cache/awesearch/calib \
        --out awesearch/assets/calibration-v1.json

1. Archive: ``val_voice`` utterances (voices never trained on; never real evaluation speech, never SVOX
   pico or piper) joined into ~60 s recordings with pauses, half of them degraded (noise, reverb, codec:
   train/augment.py), indexed with the real indexer and the shipped encoder + phoneme head.
2. Queries: words present in the archive (>= 3 phonemes), absent words one or two phoneme edits from a
   present word (PLCL's confusable negatives), two- and three-word phrases, and audio examples cut from
   other held-out utterances (not in the archive).
3. Every first-stage candidate region of every query is aligned (awesearch/detect.py) and labelled: right
   when a spoken occurrence with the query's phonemes overlaps it by at least half.
4. A logistic model per query kind is fitted on half of the queries and scored on the other half, then
   refitted on all; the word-edge offsets are the median differences on right hits.
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


def build_archive(corpus: Path, out: Path, minutes: float, seed: int, degraded: float = DEGRADED_SHARE) -> tuple[list[Spoken], list]:
    """Write the archive's recordings; return its words and the held-out utterances left for audio examples."""
    import soundfile as sf

    from awesearch.train.augment import random_augment
    from awesearch.train.corpus import CorpusReader

    rng = random.Random(seed)
    utts = list(CorpusReader(corpus).utterances(split="val_voice", shuffle_seed=seed))
    out.mkdir(parents=True, exist_ok=True)
    words: list[Spoken] = []
    used = 0
    total = 0.0
    n_file = 0
    while total < minutes * 60 and used < len(utts):
        path = out / f"calib-{n_file:03d}.wav"
        pieces, t = [], 0.0
        while t < RECORDING_S and used < len(utts):
            u = utts[used]
            used += 1
            gap = rng.uniform(*PAUSE_S)
            pieces.append(np.zeros(int(gap * SAMPLE_RATE), np.float32))
            t += gap
            pieces.append(u.audio)
            words += [Spoken(str(path), t + w.start, t + w.end, tuple(w.phonemes)) for w in u.words if w.phonemes]
            t += u.duration
        audio = np.concatenate(pieces)
        if rng.random() < degraded:
            audio = random_augment(audio, rng)
        sf.write(path, np.clip(audio, -1, 1), SAMPLE_RATE)
        total += t
        n_file += 1
    return words, utts[used:]


def occurrences(words: list[Spoken], n: int) -> dict[tuple, list[tuple[str, float, float]]]:
    """Phoneme sequences of n consecutive words (tuple of word tuples) -> where they are spoken."""
    out: dict[tuple, list] = defaultdict(list)
    for i in range(len(words) - n + 1):
        ws = words[i : i + n]
        if len({w.path for w in ws}) == 1 and all(b.start - a.end < 1.5 for a, b in zip(ws, ws[1:])):
            out[tuple(w.phonemes for w in ws)].append((ws[0].path, ws[0].start, ws[-1].end))
    return out


def is_right(path: str, start: float, end: float, truth: list[tuple[str, float, float]]) -> tuple[bool, float, float]:
    """(right, true start, true end): a spoken occurrence overlaps the hit by at least half of the shorter one."""
    for p, s, e in truth:
        inter = min(end, e) - max(start, s)
        if p == path and inter > 0.5 * min(end - start, e - s):
            return True, s, e
    return False, 0.0, 0.0


def collect(engine, plans: list[tuple[str, object, list]], pool: int) -> dict[str, list]:
    """Features, labels, query ids and edge errors of every candidate of every query plan."""
    rows: dict[str, list] = defaultdict(list)
    for qi, (kind, plan, truth) in enumerate(plans):
        for c in engine.detector._score(plan, pool):
            right, s, e = is_right(engine.table.paths[c.file], c.start, c.end, truth)
            rows[kind].append((c.features, right, qi, (s - c.start, e - c.end) if right else None))
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--corpus", type=Path, required=True)
    p.add_argument("--work", type=Path, required=True, help="scratch folder for the archive and its index")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--minutes", type=float, default=20.0)
    p.add_argument("--queries", type=int, default=300, help="word queries (phrases, confusables and audio: fewer)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--degraded-share", type=float, default=DEGRADED_SHARE, help="share of the archive's recordings augmented")
    p.add_argument("--dump", type=Path, help="also save every candidate's features and label (.npz) for analysis")
    a = p.parse_args()

    from awesearch.calibrate import Calibration, fit_logistic
    from awesearch.detect import POOL_WINDOWS, QueryPlan, phrase_widening
    from awesearch.phonetic import word_targets
    from awesearch.search import AudioSpan, SearchEngine
    from awesearch.train.negatives import phoneme_edits
    from indexer.pipeline import index_paths

    rng = random.Random(a.seed)
    archive = a.work.expanduser() / "archive"
    words, spare = build_archive(a.corpus.expanduser(), archive, a.minutes, a.seed, a.degraded_share)
    index_dir = a.work.expanduser() / "index"
    report = index_paths([archive], index_dir)
    print(f"archive: {report.indexed} files, {report.audio_s / 60:.1f} min, {len(words)} words", flush=True)
    engine = SearchEngine.open(index_dir)
    if not engine.calibrated:
        raise SystemExit("the shipped encoder has no phonetic store; nothing to calibrate")

    def text_plan(word_phons: list[tuple[str, ...]]) -> QueryPlan:
        phons = [list(w) for w in word_phons]
        vectors = [engine.encoder.embed_phonemes([sum(phons, [])])[0]]
        widen = [(0.0, 0.0)]
        if len(phons) > 1:
            i, around = phrase_widening(phons)
            vectors.append(engine.encoder.embed_phonemes([phons[i]])[0])
            widen.append(around)
        return QueryPlan(vectors, widen, [[word_targets(phons)]], "text")

    singles = occurrences(words, 1)
    present = {k[0] for k in singles}
    eligible = sorted(k for k in singles if len(k[0]) >= 3)
    rng.shuffle(eligible)
    plans = [("text", text_plan(list(k)), singles[k]) for k in eligible[: a.queries]]
    for k in eligible[: a.queries // 3]:  # absent confusables: no occurrence can be right
        for edit in phoneme_edits(k[0], 1, rng):
            if tuple(edit) not in present:
                plans.append(("text", text_plan([tuple(edit)]), []))
    for n in (2, 3):
        multi = occurrences(words, n)
        keys = sorted(multi)
        rng.shuffle(keys)
        plans += [("text", text_plan(list(k)), multi[k]) for k in keys[: a.queries // 4]]
    # audio examples: a word cut (with its context) from a held-out utterance outside the archive
    import soundfile as sf

    examples_dir = a.work.expanduser() / "examples"
    examples_dir.mkdir(exist_ok=True)
    n_audio = 0
    for u in spare:
        if n_audio >= a.queries // 2:
            break
        cands = [w for w in u.words if (tuple(w.phonemes),) in singles and len(w.phonemes) >= 3]
        if not cands:
            continue
        w = rng.choice(cands)
        clip = examples_dir / f"{u.utt_id}.wav"
        sf.write(clip, u.audio, SAMPLE_RATE)
        try:
            vec, target = engine._embed_example(AudioSpan(clip, w.start, w.end), decode=True)
        except Exception as e:  # an example the recogniser hears nothing in is skipped, as a user would be told
            print(f"skip example {clip.name}: {e}")
            continue
        plans.append(("audio", QueryPlan([vec], [(0.0, 0.0)], [[target]], "audio"), singles[(tuple(w.phonemes),)]))
        n_audio += 1
    print(f"queries: {sum(k == 'text' for k, _, _ in plans)} text, {n_audio} audio", flush=True)

    rows = collect(engine, plans, POOL_WINDOWS)
    if a.dump:
        np.savez(a.dump, **{f"{k}_{n}": np.array([r[i] for r in v], dtype=object if n == "offset" else None)
                            for k, v in rows.items() for i, n in enumerate(("x", "y", "q", "offset"))})
    models, report_kinds, offsets = {}, {}, []
    for kind, r in rows.items():
        x = np.stack([f for f, _, _, _ in r])
        y = np.array([lab for _, lab, _, _ in r], float)
        q = np.array([qi for _, _, qi, _ in r])
        offsets += [o for _, _, _, o in r if o is not None]
        held = q % 2 == 1
        half = fit_logistic(x[~held], y[~held])
        ph = half.probability(x[held])
        yh = y[held]
        tp = float(((ph >= 0.5) & (yh > 0)).sum())
        report_kinds[kind] = {
            "candidates": int(len(y)), "right": int(y.sum()),
            "heldout_precision_at_0.5": tp / max(1.0, float((ph >= 0.5).sum())),
            "heldout_recall_at_0.5_of_candidates": tp / max(1.0, float(yh.sum())),
            "heldout_mean_p_right": float(ph[yh > 0].mean()) if yh.sum() else None,
            "heldout_mean_p_wrong": float(ph[yh == 0].mean()),
        }
        models[kind] = fit_logistic(x, y)
        print(kind, json.dumps(report_kinds[kind]), flush=True)
    off = np.array(offsets)
    was = engine.detector.calibration  # candidates' edges already include the offsets of the loaded calibration
    cal = Calibration(models, was.start_offset_s + float(np.median(off[:, 0])), was.end_offset_s + float(np.median(off[:, 1])),
                      {"archive_minutes": round(report.audio_s / 60, 1), "split": "val_voice (held-out synthetic voices)",
                       "queries": len(plans), "seed": a.seed, "heldout": report_kinds})
    cal.save(a.out)
    print(f"saved {a.out}: start offset {cal.start_offset_s:+.3f} s, end offset {cal.end_offset_s:+.3f} s")


if __name__ == "__main__":
    main()
