"""Calibrated scores (awesearch/calibrate.py)."""

import json

import numpy as np
import pytest

from awesearch.calibrate import DEFAULT_PATH, FEATURES, MONOTONE, Calibration, fit_logistic, load_calibration
from awesearch.errors import CheckpointError


def toy(n=2000, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.random(n) < 0.2
    x = rng.normal(size=(n, len(FEATURES)))
    x[:, 1] += 2.0 * y  # llr_per_token separates
    x[:, 2] += 1.0 * y
    return x, y


def test_probabilities_lie_in_0_1_and_rise_with_every_monotone_score():
    x, y = toy()
    model = fit_logistic(x, y)
    p = model.probability(x)
    assert p.min() >= 0 and p.max() <= 1
    assert all(w >= 0 for w, m in zip(model.weights, MONOTONE) if m)
    for j, mono in enumerate(MONOTONE):
        if mono:
            grid = np.repeat(x[:1], 50, 0)
            grid[:, j] = np.linspace(-5, 5, 50)
            assert np.all(np.diff(model.probability(grid)) >= 0)


def test_fitted_probabilities_are_calibrated_on_their_own_data():
    x, y = toy(8000)
    p = fit_logistic(x, y).probability(x)
    for lo, hi in [(0.0, 0.2), (0.2, 0.5), (0.5, 0.8), (0.8, 1.0)]:
        sel = (p >= lo) & (p < hi)
        if sel.sum() > 200:
            assert abs(y[sel].mean() - p[sel].mean()) < 0.05  # seen: within 0.02


def test_calibration_round_trips_and_refuses_other_files(tmp_path):
    x, y = toy()
    cal = Calibration({"text": fit_logistic(x, y), "audio": fit_logistic(x, ~y)}, 0.01, -0.02, {"test": 1})
    path = tmp_path / "cal.json"
    cal.save(path)
    back = Calibration.load(path)
    assert back.start_offset_s == 0.01 and back.end_offset_s == -0.02
    assert np.allclose(back.models["text"].probability(x), cal.models["text"].probability(x))
    d = json.loads(path.read_text())
    d["version"] = 99
    path.write_text(json.dumps(d))
    with pytest.raises(CheckpointError, match="version"):
        Calibration.load(path)
    path.write_text("{}")
    with pytest.raises(CheckpointError, match="not an awesearch calibration"):
        Calibration.load(path)


def test_the_shipped_calibration_loads():
    cal = load_calibration()
    assert set(cal.models) == {"text", "audio"} and DEFAULT_PATH.is_file()
    assert abs(cal.start_offset_s) < 0.2 and abs(cal.end_offset_s) < 0.2
