"""Spoken-term-detection metrics on tiny cases worked out by hand."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import stdmetrics as m  # noqa: E402

TRUTH = [("a", 1.0, 1.5), ("a", 5.0, 5.5), ("b", 2.0, 2.4)]
# Ranked: a@1.2 correct; a@1.1 overlaps the same (already matched) occurrence -> false alarm;
# b@2.1 correct; a@9.0 false alarm. The occurrence a@5.0 is never found.
DETS = [("a", 1.1, 1.4, 0.8), ("a", 1.2, 1.6, 0.9), ("a", 9.0, 9.5, 0.6), ("b", 2.1, 2.3, 0.7)]


def q1():
    return m.match_detections(DETS, TRUTH)


def q2():  # one occurrence, found with score 0.75
    return m.match_detections([("c", 0.0, 0.4, 0.75)], [("c", 0.1, 0.5)])


def q3():  # absent query: one false alarm with score 0.95
    return m.match_detections([("a", 3.0, 3.3, 0.95)], [])


def test_matching_each_occurrence_once_in_score_order():
    r = q1()
    assert r.scores.tolist() == [0.9, 0.8, 0.7, 0.6]
    assert r.correct.tolist() == [True, False, True, False]
    assert r.n_true == 3


def test_tolerance_half_second_and_same_file():
    truth = [("a", 5.0, 5.5)]
    assert m.match_detections([("a", 5.9, 6.2, 1.0)], truth).correct.tolist() == [True]  # 5.9 < 5.5 + 0.5
    assert m.match_detections([("a", 6.1, 6.3, 1.0)], truth).correct.tolist() == [False]
    assert m.match_detections([("a", 4.2, 4.4, 1.0)], truth).correct.tolist() == [False]  # ends before 4.5
    assert m.match_detections([("b", 5.0, 5.5, 1.0)], truth).correct.tolist() == [False]


def test_average_precision_and_precision_at_n():
    r = q1()
    assert m.average_precision(r) == pytest.approx((1 / 1 + 2 / 3) / 3)  # 5/9; the missed one counts 0
    assert m.precision_at_n(r) == pytest.approx(2 / 3)  # top 3: T F T
    assert np.isnan(m.average_precision(q3())) and np.isnan(m.precision_at_n(q3()))
    empty = m.match_detections([], [("a", 0, 1)])
    assert m.average_precision(empty) == 0.0 and m.precision_at_n(empty) == 0.0


def test_twv_by_hand():
    rs = [q1(), q2(), q3()]  # q3 has no occurrence: left out of the mean
    # θ = 0.7: q1 finds 2 of 3 with 1 false alarm; q2 finds its one. T = 100 s.
    expected = 1 - ((1 / 3 + 999.9 * 1 / (100 - 3)) + 0.0) / 2
    assert m.twv(rs, 100.0, 0.7) == pytest.approx(expected)
    assert m.twv(rs, 100.0, 0.7, beta=1.0) == pytest.approx(1 - (1 / 3 + 1 / 97) / 2)
    assert m.twv(rs, 100.0, np.inf) == pytest.approx(0.0)  # no detections: P_miss = 1 for all
    assert np.isnan(m.twv([q3()], 100.0, 0.5))


def test_mtwv_and_atwv():
    rs = [q1(), q2(), q3()]
    # θ=0.9: q1 1/3 found, no FA; q2 missed -> 1 - (2/3 + 1)/2 = 1/6; every lower θ adds a false alarm
    # (costing ~10 at β=999.9) or nothing; θ=inf gives 0.
    value, theta = m.mtwv(rs, 100.0)
    assert value == pytest.approx(1 / 6)
    assert theta == 0.9
    assert m.atwv(rs, 100.0, 0.9) == pytest.approx(1 / 6)


def test_false_alarms_per_hour():
    rs = [q1(), q2(), q3()]
    # θ=0.7: q1 1 FA (0.8), q2 0, q3 1 (0.95): 2 FA / 3 queries / 0.5 h
    assert m.false_alarms_per_hour(rs, 0.5, 0.7) == pytest.approx(4 / 3)
    assert m.false_alarms_per_hour(rs, 0.5, 0.96) == 0.0


def test_pooled_pr_curve():
    recall, precision = m.pooled_pr_curve([q1(), q2()])
    # pooled by score: 0.9 T, 0.8 F, 0.75 T, 0.7 T, 0.6 F; 4 occurrences
    assert recall.tolist() == pytest.approx([0.25, 0.25, 0.5, 0.75, 0.75])
    assert precision.tolist() == pytest.approx([1, 0.5, 2 / 3, 0.75, 0.6])


def test_mtwv_equals_the_maximum_of_twv_over_every_distinct_score():
    """mtwv's cumulative sum gives exactly what evaluating twv at every candidate threshold gives."""
    rng = np.random.default_rng(0)
    for _ in range(5):
        results = []
        for _ in range(40):
            k = int(rng.integers(0, 20))
            correct = rng.random(k) < 0.3
            results.append(m.QueryResult(np.sort(np.round(rng.random(k), 2))[::-1], correct, int(correct.sum() + rng.integers(0, 3))))
        best, best_theta = -np.inf, np.inf
        for theta in m.candidate_thresholds(results)[::-1]:
            v = m.twv(results, 600.0, float(theta), beta=20.0)
            if v > best:
                best, best_theta = v, float(theta)
        got = m.mtwv(results, 600.0, beta=20.0)
        assert abs(got[0] - best) < 1e-9 and got[1] == best_theta
