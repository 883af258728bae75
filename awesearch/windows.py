"""Candidate word-level windows (one to four words, about 0.25..2.0 s) inside speech regions.

Boundaries: the edges of each span of speech (VAD regions closer than JOIN_GAP_S joined, so phrases with
short pauses get windows) and an even grid between them with at most MAX_GAP_S spacing. Windows up to
COARSE_FROM_S long are every pair of boundaries of one span that far apart, so their start and end are each
within MAX_GAP_S / 2 = 0.125 s of any word's; longer windows (phrases) use every COARSE_STRIDE-th boundary,
within 0.25 s. The first stage only has to put a window near each occurrence: the second stage
(awesearch/detect.py) merges the hits into regions with margins and finds the word edges by alignment.

Density: with b = 1 / g boundaries per second, windows of lo..hi seconds number about (hi - lo) * b^2 per
second of a long span. The grid was chosen by benchmarks/window_grid.py on held-out synthetic voices (the
calibration archive; rule stated there before measuring): 12.9 windows per second of speech against 38.9
for the earlier 0.2 s grid up to 2 s, word recall@100 of the first stage 0.920 against 0.925, second-stage
word MAP 0.828 against 0.823 (results in benchmarks/results/window_grid_calib.json, real-set report
beside it). Snapping boundaries to energy dips was tried earlier: +20 % density for 0.011 s of mean
end-point error, not used.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .audio import SAMPLE_RATE

MIN_WINDOW_S = 0.15  # seconds: shortest window (a span shorter than one grid step still gets one)
MAX_WINDOW_S = 2.0  # seconds: longest window (about four words)
MAX_GAP_S = 0.25  # seconds: no two consecutive boundaries are further apart than this
COARSE_FROM_S = 0.6  # seconds: longer windows use only every COARSE_STRIDE-th boundary
COARSE_STRIDE = 2  # boundaries
JOIN_GAP_S = 0.3  # seconds: speech regions closer than this form one span (pauses inside a phrase)


def merge_regions(regions: list[tuple[float, float]], duration: float, lo: float = 0.0, gap: float = JOIN_GAP_S) -> list[tuple[float, float]]:
    """Clip regions to [lo, duration] and join those separated by less than `gap` seconds."""
    out: list[list[float]] = []
    for start, end in sorted(regions):
        start, end = max(lo, float(start)), min(duration, float(end))
        if end <= start:
            continue
        if out and start - out[-1][1] < gap:
            out[-1][1] = max(out[-1][1], end)
        else:
            out.append([start, end])
    return [(s, e) for s, e in out]


@dataclass(frozen=True)
class WindowGrid:
    """Where window edges go: an even grid of boundaries per span; windows longer than coarse_from_s use
    only every coarse_stride-th boundary (and the span's end), so long windows are sparser."""

    gap_s: float = MAX_GAP_S  # seconds: no two consecutive boundaries further apart
    min_window_s: float = MIN_WINDOW_S  # seconds
    max_window_s: float = MAX_WINDOW_S  # seconds
    coarse_from_s: float = COARSE_FROM_S  # seconds: windows longer than this come from the coarse boundaries
    coarse_stride: int = COARSE_STRIDE  # boundaries: the coarse grid keeps one in this many


GRID = WindowGrid()  # the grid the indexer uses


def span_boundaries(start: float, end: float, gap_s: float = MAX_GAP_S) -> np.ndarray:
    """The span's edges and an even grid between them, at most gap_s apart (seconds, sorted)."""
    n_gaps = max(1, int(np.ceil((end - start) / gap_s - 1e-9)))
    return np.linspace(start, end, n_gaps + 1)


def windows_from_boundaries(bounds: np.ndarray, lo_s: float = MIN_WINDOW_S, hi_s: float = MAX_WINDOW_S) -> np.ndarray:
    """All [start, end] pairs of boundaries spanning lo_s..hi_s seconds."""
    pairs = []
    n = len(bounds)
    for span in range(1, n):
        s, e = bounds[: n - span], bounds[span:]
        d = e - s
        if d.min() > hi_s + 1e-9:  # bounds are sorted: wider spans are longer still
            break
        ok = (d >= lo_s - 1e-9) & (d <= hi_s + 1e-9)
        if ok.any():
            pairs.append(np.stack([s[ok], e[ok]], axis=1))
    if not pairs:
        return np.zeros((0, 2), np.float64)
    w = np.concatenate(pairs)
    return w[np.lexsort((w[:, 1], w[:, 0]))]


def span_windows(start: float, end: float, grid: WindowGrid) -> np.ndarray:
    """[n, 2] windows of one span of speech on the grid (sorted)."""
    bounds = span_boundaries(start, end, grid.gap_s)
    if grid.coarse_from_s >= grid.max_window_s:
        return windows_from_boundaries(bounds, grid.min_window_s, grid.max_window_s)
    coarse = bounds[:: grid.coarse_stride]
    if coarse[-1] != bounds[-1]:
        coarse = np.append(coarse, bounds[-1])
    fine = windows_from_boundaries(bounds, grid.min_window_s, grid.coarse_from_s)
    long = windows_from_boundaries(coarse, grid.coarse_from_s + 1e-6, grid.max_window_s)
    w = np.concatenate([fine, long])
    return w[np.lexsort((w[:, 1], w[:, 0]))]


def candidate_windows(audio: np.ndarray, regions: list[tuple[float, float]], grid: WindowGrid | None = None) -> np.ndarray:
    """[n, 2] float64 window (start, end) seconds relative to audio[0], sorted, inside the given speech regions
    (grid: GRID unless given)."""
    grid = GRID if grid is None else grid
    spans = merge_regions(regions, len(audio) / SAMPLE_RATE)
    out = [span_windows(s, e, grid) for s, e in spans if e - s >= grid.min_window_s]
    out = [w for w in out if len(w)]
    if not out:
        return np.zeros((0, 2), np.float64)
    w = np.concatenate(out)
    return w[np.lexsort((w[:, 1], w[:, 0]))]
