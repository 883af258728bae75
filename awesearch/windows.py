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


def span_boundaries(start: float, end: float) -> np.ndarray:
    """The span's edges and an even grid between them, at most MAX_GAP_S apart (seconds, sorted)."""
    n_gaps = max(1, int(np.ceil((end - start) / MAX_GAP_S - 1e-9)))
    return np.linspace(start, end, n_gaps + 1)


def windows_from_boundaries(bounds: np.ndarray) -> np.ndarray:
    """All [start, end] pairs of boundaries spanning MIN_WINDOW_S..MAX_WINDOW_S."""
    pairs = []
    n = len(bounds)
    for span in range(1, n):
        s, e = bounds[: n - span], bounds[span:]
        d = e - s
        if d.min() > MAX_WINDOW_S + 1e-9:  # bounds are sorted: wider spans are longer still
            break
        ok = (d >= MIN_WINDOW_S - 1e-9) & (d <= MAX_WINDOW_S + 1e-9)
        if ok.any():
            pairs.append(np.stack([s[ok], e[ok]], axis=1))
    if not pairs:
        return np.zeros((0, 2), np.float64)
    w = np.concatenate(pairs)
    return w[np.lexsort((w[:, 1], w[:, 0]))]


def candidate_windows(audio: np.ndarray, regions: list[tuple[float, float]]) -> np.ndarray:
    """[n, 2] float64 window (start, end) seconds relative to audio[0], sorted, inside the given speech regions."""
    spans = merge_regions(regions, len(audio) / SAMPLE_RATE)
    out = [windows_from_boundaries(span_boundaries(s, e)) for s, e in spans if e - s >= MIN_WINDOW_S]
    out = [w for w in out if len(w)]
    if not out:
        return np.zeros((0, 2), np.float64)
    w = np.concatenate(out)
    return w[np.lexsort((w[:, 1], w[:, 0]))]
