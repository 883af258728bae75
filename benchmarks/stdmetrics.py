"""Spoken-term-detection metrics for benchmarks/stdbench.py (numpy only).

A query's result is a ranked list of detections ``(file, start, end, score)``; its truth is a list of
occurrences ``(file, start, end)``. ``match_detections`` labels each detection correct or not: in
descending score order, a detection is correct if it overlaps a not-yet-matched true occurrence in the
same file with ``tol`` seconds of slack either side (each occurrence is matched at most once).

- ``average_precision``: mean over true occurrences of the precision at the rank where each was found
  (0 for occurrences never found); ``precision_at_n``: precision of the first N detections, N = occurrences.
- ``twv``/``mtwv``/``atwv``: NIST term-weighted value, TWV(θ) = 1 - mean_q [P_miss(q,θ) + β P_FA(q,θ)],
  P_miss = 1 - n_corr/n_true, P_FA = n_FA / (T_speech - n_true), T_speech in seconds, β = 999.9; queries
  with no true occurrence are left out of the mean. MTWV = max over θ; ATWV = TWV at a given θ.
- ``false_alarms_per_hour``: false alarms scoring at least θ, per query and per hour of audio.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

BETA = 999.9
TOLERANCE_S = 0.5


@dataclass
class QueryResult:
    """One query's detections after matching: scores (best first), correct flags, and true occurrences."""

    scores: np.ndarray  # [n] float, descending
    correct: np.ndarray  # [n] bool
    n_true: int


def match_detections(
    detections: Sequence[tuple[str, float, float, float]],
    truth: Sequence[tuple[str, float, float]],
    tol: float = TOLERANCE_S,
) -> QueryResult:
    """Sort detections by descending score (stable) and label each correct or false alarm."""
    dets = sorted(detections, key=lambda d: -d[3])
    used = np.zeros(len(truth), dtype=bool)
    correct = np.zeros(len(dets), dtype=bool)
    for i, (f, s, e, _) in enumerate(dets):
        for k, (tf, ts, te) in enumerate(truth):
            if not used[k] and tf == f and s < te + tol and e > ts - tol:
                used[k] = True
                correct[i] = True
                break
    scores = np.array([d[3] for d in dets], dtype=np.float64)
    return QueryResult(scores, correct, len(truth))


def average_precision(r: QueryResult) -> float:
    """AP over the ranked detections; occurrences never found count precision 0. NaN if n_true == 0."""
    if r.n_true == 0:
        return float("nan")
    ranks = np.flatnonzero(r.correct) + 1
    return float(np.sum(np.arange(1, len(ranks) + 1) / ranks) / r.n_true)


def precision_at_n(r: QueryResult) -> float:
    """Precision of the first N detections, N = true occurrences (missing detections count wrong)."""
    if r.n_true == 0:
        return float("nan")
    return float(r.correct[: r.n_true].sum() / r.n_true)


def _counts(r: QueryResult, theta: float) -> tuple[int, int]:
    keep = r.scores >= theta
    n_corr = int(np.sum(r.correct & keep))
    return n_corr, int(np.sum(keep)) - n_corr


def twv(results: Sequence[QueryResult], t_speech_s: float, theta: float, beta: float = BETA) -> float:
    """Term-weighted value at threshold θ (detections with score >= θ are YES). NaN with no scorable query."""
    terms = []
    for r in results:
        if r.n_true == 0:
            continue
        n_corr, n_fa = _counts(r, theta)
        p_miss = 1.0 - n_corr / r.n_true
        p_fa = n_fa / (t_speech_s - r.n_true)
        terms.append(p_miss + beta * p_fa)
    return float(1.0 - np.mean(terms)) if terms else float("nan")


def candidate_thresholds(results: Sequence[QueryResult]) -> np.ndarray:
    """Every distinct score, plus +inf (no detection at all), ascending."""
    scores = [r.scores for r in results if len(r.scores)]
    allv = np.unique(np.concatenate(scores)) if scores else np.zeros(0)
    return np.concatenate([allv, [np.inf]])


def mtwv(results: Sequence[QueryResult], t_speech_s: float, beta: float = BETA) -> tuple[float, float]:
    """(maximum TWV over thresholds, the threshold reaching it; the highest such θ on ties).

    TWV(θ) = sum over detections scoring >= θ of their weight (1 / n_true of its query if correct, else
    -β / (T - n_true)), divided by the number of scorable queries: one sort and a cumulative sum instead of a
    TWV per distinct score (the same values; thousands of queries made that loop take hours)."""
    scorable = [r for r in results if r.n_true > 0]
    if not scorable:
        return float("nan"), float("nan")
    scores = np.concatenate([r.scores for r in scorable] + [np.zeros(0)])
    weights = np.concatenate([np.where(r.correct, 1.0 / r.n_true, -beta / (t_speech_s - r.n_true)) for r in scorable] + [np.zeros(0)])
    order = np.argsort(-scores, kind="stable")
    scores, cum = scores[order], np.cumsum(weights[order]) / len(scorable)
    last_of_tie = np.r_[scores[1:] != scores[:-1], True] if len(scores) else np.zeros(0, bool)
    thetas = np.concatenate([[np.inf], scores[last_of_tie]])
    values = np.concatenate([[0.0], cum[last_of_tie]])
    i = int(np.argmax(values))  # the first maximum: the highest threshold on ties
    return float(values[i]), float(thetas[i])


def atwv(results: Sequence[QueryResult], t_speech_s: float, theta: float, beta: float = BETA) -> float:
    """Actual TWV: TWV at the operating threshold θ (chosen beforehand)."""
    return twv(results, t_speech_s, theta, beta)


def false_alarms_per_hour(results: Sequence[QueryResult], hours: float, theta: float) -> float:
    """False alarms with score >= θ, per query and per hour of searched audio. NaN with no query."""
    if not results or hours <= 0:
        return float("nan")
    n_fa = sum(_counts(r, theta)[1] for r in results)
    return float(n_fa / len(results) / hours)


def pooled_pr_curve(results: Sequence[QueryResult]) -> tuple[np.ndarray, np.ndarray]:
    """(recall, precision) of all queries' detections pooled and thresholded together, by descending score."""
    n_true = sum(r.n_true for r in results)
    if n_true == 0:
        return np.zeros(0), np.zeros(0)
    scores = np.concatenate([r.scores for r in results] + [np.zeros(0)])
    correct = np.concatenate([r.correct for r in results] + [np.zeros(0, bool)])
    order = np.argsort(-scores, kind="stable")
    tp = np.cumsum(correct[order])
    return tp / n_true, tp / np.arange(1, len(order) + 1)
