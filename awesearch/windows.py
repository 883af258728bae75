"""Candidate word-level windows (one to four words, about 0.2..2.0 s) inside speech regions.

Boundaries: the edges of each span of speech (VAD regions closer than JOIN_GAP_S joined, so phrases with
short pauses get windows) and an even grid between them with at most MAX_GAP_S spacing. Every instant of
speech is then within MAX_GAP_S / 2 = 0.1 s of a boundary, so any word or phrase of 0.2..2.0 s has a
window whose start and end are each within 0.1 s of the true ones (tests/test_audio.py checks this on
synthesized speech). Windows: every pair of boundaries in one span that is MIN_WINDOW_S..MAX_WINDOW_S long.

Density: with b = 1 / MAX_GAP_S boundaries per second and windows up to MAX_WINDOW_S, a long span gives
about b * b * (MAX_WINDOW_S - MIN_WINDOW_S) = 46 windows per second; real spans are short, so measured
figures are 38 / s on the test sentences and 43 / s on benchmarks/index_speed.py's recording. The 0.1 s
guarantee sets this floor: 30 / s would need MAX_WINDOW_S = 1.35 s or a 0.125 s tolerance. Snapping
boundaries to energy dips was tried: anchoring extra boundaries at dips improved the mean end-point error
from 0.065 s to 0.054 s but raised density by 20 %, so it is not used.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .audio import SAMPLE_RATE

MIN_WINDOW_S = 0.15  # seconds: shortest window; below 0.2 so a 0.2 s word has a window within 0.1 s at both ends
MAX_WINDOW_S = 2.0  # seconds: longest window (about four words)
MAX_GAP_S = 0.2  # seconds: no two consecutive boundaries are further apart than this
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
    coarse_from_s: float = float("inf")  # seconds: windows longer than this come from the coarse boundaries
    coarse_stride: int = 2  # boundaries: the coarse grid keeps one in this many


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
