"""Window grids (awesearch/windows.py): density and edge tolerance of the default and coarser grids."""

import numpy as np
import pytest

from awesearch.windows import GRID, WindowGrid, span_boundaries, span_windows


def density(grid: WindowGrid, span_s: float = 60.0) -> float:
    return len(span_windows(0.0, span_s, grid)) / span_s


@pytest.mark.parametrize("grid", [WindowGrid(gap_s=0.2), WindowGrid(gap_s=0.3), WindowGrid(gap_s=0.25, coarse_from_s=0.6)])
def test_every_word_has_a_window_within_its_grid_tolerance(grid):
    w = span_windows(0.0, 30.0, grid)
    d = w[:, 1] - w[:, 0]
    assert d.min() >= grid.min_window_s - 1e-9 and d.max() <= grid.max_window_s + 1e-9
    assert len(np.unique(w, axis=0)) == len(w)
    rng = np.random.default_rng(0)
    for _ in range(300):
        length = rng.uniform(max(0.2, grid.min_window_s + grid.gap_s), grid.max_window_s - grid.gap_s)
        start = rng.uniform(0, 30.0 - length)
        err = np.maximum(np.abs(w[:, 0] - start), np.abs(w[:, 1] - start - length)).min()
        if grid.coarse_from_s - grid.gap_s < length < grid.coarse_from_s + 2 * grid.coarse_stride * grid.gap_s:
            continue  # near the switch a word's snapped edges may fall in either tier: no simple bound
        stride = grid.coarse_stride if length > grid.coarse_from_s else 1  # each edge snaps to its tier's grid
        assert err <= stride * grid.gap_s / 2 + 1e-9


def test_coarse_long_windows_sit_on_every_other_boundary():
    grid = WindowGrid(gap_s=0.25, coarse_from_s=0.6)
    bounds = span_boundaries(0.0, 10.0, grid.gap_s)
    w = span_windows(0.0, 10.0, grid)
    long = w[w[:, 1] - w[:, 0] > grid.coarse_from_s + 1e-6]
    coarse = np.append(bounds[::2], bounds[-1])
    assert np.isin(np.round(long, 6), np.round(coarse, 6)).all()


def test_density_on_a_long_span_follows_the_formula():
    # one boundary every g seconds, windows of lo..hi seconds: about (hi - lo) / g^2 per second of speech
    assert density(WindowGrid(gap_s=0.2)) == pytest.approx((2.0 - 0.2) / 0.2**2, rel=0.08)
    assert density(WindowGrid(gap_s=0.3)) == pytest.approx((2.1 - 0.3) / 0.3**2, rel=0.08)
    assert density(GRID) <= 20  # the indexer's grid: at most 15 windows per second of (real, short-span) speech
