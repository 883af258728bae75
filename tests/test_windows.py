"""Window grids (awesearch/windows.py): density and edge tolerance of the default and coarser grids."""

import numpy as np
import pytest

from awesearch.windows import GRID, WindowGrid, span_boundaries, span_windows


def density(grid: WindowGrid, span_s: float = 60.0) -> float:
    return len(span_windows(0.0, span_s, grid)) / span_s


INF = float("inf")  # no coarse tier


@pytest.mark.parametrize("grid", [WindowGrid(gap_s=0.2, coarse_from_s=INF), WindowGrid(gap_s=0.3, coarse_from_s=INF), GRID])
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
    # 1 / g starts per second, each with the lengths g, 2g, ... up to 2 s (minus the span's end)
    assert density(WindowGrid(gap_s=0.2, coarse_from_s=INF)) == pytest.approx(5 * 10, rel=0.03)
    assert density(WindowGrid(gap_s=0.3, coarse_from_s=INF)) == pytest.approx(10 / 3 * 6, rel=0.03)
    # the indexer's grid: 4 starts/s x 2 fine lengths (0.25, 0.5 s) + 2 starts/s x 3 coarse ones (1, 1.5, 2 s)
    assert density(GRID) == pytest.approx(4 * 2 + 2 * 3, rel=0.02)
    assert density(GRID) < 15  # measured on speech (short spans): 12.9 per second
