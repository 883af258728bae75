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
    cal = Calibration({"text": fit_logistic(x, y), "short": fit_logistic(x, y), "name": fit_logistic(x, y), "audio": fit_logistic(x, ~y)},
                      0.01, -0.02, {"test": 1}, {"text": [0.5, -3.0], "short": [0.5, -3.0], "name": [0.5, -3.5], "audio": [0.4, -4.0]})
    path = tmp_path / "cal.json"
    cal.save(path)
    back = Calibration.load(path)
    assert back.start_offset_s == 0.01 and back.end_offset_s == -0.02
    assert np.allclose(back.models["text"].probability(x), cal.models["text"].probability(x))
    assert back.background_prior == cal.background_prior
    d = json.loads(path.read_text())
    del d["background_prior"]
    path.write_text(json.dumps(d))
    with pytest.raises(CheckpointError, match="background priors"):
        Calibration.load(path)
    d["version"] = 99
    path.write_text(json.dumps(d))
    with pytest.raises(CheckpointError, match="version"):
        Calibration.load(path)
    path.write_text("{}")
    with pytest.raises(CheckpointError, match="not an awesearch calibration"):
        Calibration.load(path)


def test_the_shipped_calibration_loads():
    cal = load_calibration()
    assert set(cal.models) == {"text", "short", "name", "audio"} and DEFAULT_PATH.is_file()
    assert abs(cal.start_offset_s) < 0.2 and abs(cal.end_offset_s) < 0.2


def test_background_is_the_shrunk_median_of_the_querys_candidates():
    cal = Calibration({}, background_prior={"text": [0.5, -4.0], "audio": [0.5, -4.0]})
    own = np.zeros((24, 5))
    own[:, 0] = 0.7
    own[:, 1] = np.linspace(-6, -1, 24)
    bg = cal.background("text", own)
    med = np.median(own[:, 1])
    assert np.allclose(bg, [(24 * 0.7 + 8 * 0.5) / 32, (24 * med + 8 * -4.0) / 32])
    assert np.allclose(cal.background("text", own[:0]), [0.5, -4.0])  # no candidates: the prior
    full = cal.with_background("text", own)
    assert full.shape == (24, len(FEATURES))
    assert np.allclose(full[:, FEATURES.index("rel_llr_per_token")], own[:, 1] - bg[1])


def test_probabilities_stay_in_0_1_and_monotone_in_a_candidates_own_evidence():
    """With the background columns, more own evidence (per-token LLR, cosine) never lowers a probability,
    and a candidate far above its query's background is believed more than the same evidence amid equals."""
    x, y = toy(4000)
    model = fit_logistic(x, y)
    cal = Calibration({"text": model, "audio": model}, background_prior={"text": [0.0, 0.0], "audio": [0.0, 0.0]})
    rng = np.random.default_rng(1)
    own = rng.normal(size=(30, 5))
    for col in (0, 1, 2, 3):
        probs = []
        for v in np.linspace(-4, 4, 25):
            o = own.copy()
            o[0, col] = v
            probs.append(model.probability(cal.with_background("text", o))[0])
        probs = np.array(probs)
        assert probs.min() >= 0 and probs.max() <= 1 and np.all(np.diff(probs) >= -1e-12)
    alone = own.copy()
    alone[0, 1] = 3.0
    crowd = alone.copy()
    crowd[:, 1] = 3.0  # every candidate scores like the first one: nothing stands out
    p_alone = model.probability(cal.with_background("text", alone))[0]
    p_crowd = model.probability(cal.with_background("text", crowd))[0]
    assert p_alone >= p_crowd


def test_query_kinds_pick_the_calibration_model():
    from awesearch.search import query_kind

    assert query_kind(None) == "audio"
    assert query_kind("prince") == "text" and query_kind("little prince") == "text"
    assert query_kind("cat") == "short"  # K AE T
    assert query_kind("okonkwo") == "name" and query_kind("the okonkwo farm") == "name"  # g2p's guess
