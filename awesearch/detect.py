"""Detections: first-stage candidates -> second-stage alignment -> calibrated probability -> hits.

The query engine (awesearch/search.py) calls `Detector.detect` when the index has a phonetic store.

1. Candidates: the FAISS pool of the query vector (and, for phrases, of the phrase's rarest word, the one
   with most phonemes, whose regions are widened by the expected length of the other words plus pauses);
   overlapping windows of one file are merged into regions (verify.merge_windows).
2. Each region's stored frames (phon-*.awp) are aligned with the query's target ``| w1 | w2 |``; pauses
   between words are blank frames, which the alignment allows anywhere.
3. The alignment's evidence, beside the same evidence relative to the query's background (the median
   of its candidate regions), becomes a probability (calibrate.py); the hit's start and end are the aligned
   word edges; duplicates are suppressed (NMS) and hits under the threshold dropped.
When many candidates pass, the pool doubles (up to the whole index), so frequent words are not cut off
by the candidate budget.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .calibrate import Calibration
from .errors import IndexFormatError
from .phonetic import FRAME_RATE, read_awp
from .verify import MARGIN_S, Alignment, align, frame_scores, merge_windows, pad_regions, substitution_matrix

POOL_WINDOWS = 300  # first-stage windows per query vector in the first round (~40-60 regions)
POOL_GROWTH_SHARE = 0.3  # the pool doubles while this share of the regions pass the threshold
MAX_POOL_WINDOWS = 20_000  # a hard cap per query vector (latency)
PHONE_S = 0.09  # seconds per phoneme, to widen a rarest-word region by the rest of the phrase
PAUSE_S = 0.4  # seconds of pause allowed between two words of a phrase
ALIGN_BATCH = 256  # regions aligned per numpy pass


@dataclass
class QueryPlan:
    """What the second stage needs of one query."""

    vectors: list[np.ndarray]  # first-stage query vectors: the query's own, then the rarest word's (phrases)
    widen: list[tuple[float, float]]  # seconds to add before/after each vector's windows (beyond MARGIN_S)
    targets: list[list[list[int]]]  # CTC targets: groups (examples; features averaged) of alternatives
    # (pronunciations; the best-aligned one counts)
    kind: str  # "text" or "audio": which calibration model


@dataclass
class Candidate:
    file: int  # dense file index
    start: float  # seconds (word edges from the alignment)
    end: float
    probability: float
    features: np.ndarray  # calibrate.FEATURES (own evidence, then relative to the query's background)


class Detector:
    def __init__(self, table, calibration: Calibration, confusion: np.ndarray | None = None):
        self.table = table  # awesearch.search.WindowTable whose phon_paths name every file's phon-*.awp (or None)
        self.phon_paths = table.phon_paths
        self.calibration = calibration
        # phoneme substitutions priced by the head's own confusions (calibration.substitution_weight of them)
        self.substitution = None
        if confusion is not None and calibration.substitution_weight > 0:
            self.substitution = substitution_matrix(confusion, calibration.substitution_weight)

    def detect(self, plan: QueryPlan, k: int, threshold: float) -> list[Candidate]:
        n = self.table.index.ntotal
        pool = min(n, POOL_WINDOWS)
        while True:
            cands = self._score(plan, pool)
            passing = sum(c.probability >= threshold for c in cands)
            # grow while many candidates pass (a frequent word may have more occurrences than the pool holds)
            if pool >= min(n, MAX_POOL_WINDOWS) or passing >= k or passing < POOL_GROWTH_SHARE * max(len(cands), 1):
                break
            pool = min(n, MAX_POOL_WINDOWS, pool * 2)
        return [c for c in cands if c.probability >= threshold]

    def _score(self, plan: QueryPlan, pool: int) -> list[Candidate]:
        found, befores, afters = [], [], []
        scores, ids = self.table.index.search(np.ascontiguousarray(np.stack(plan.vectors), np.float32), pool)
        for row, (before, after) in enumerate(plan.widen):
            ok = ids[row] >= 0
            found.append((ids[row][ok], scores[row][ok]))
            befores.append(np.full(int(ok.sum()), MARGIN_S + before))
            afters.append(np.full(int(ok.sum()), MARGIN_S + after))
        ids = np.concatenate([i for i, _ in found])
        scores = np.concatenate([s for _, s in found])
        # one set of regions for all vectors: a phrase's own windows and its rarest word's windows merge
        regions = merge_windows(self.table.file_ids[ids], self.table.starts[ids], self.table.ends[ids], scores,
                                np.concatenate(befores), np.concatenate(afters))
        regions = [r for r in regions if self.phon_paths[r.file] is not None]
        if not regions:
            return []
        codes = self._read(regions)
        feats, starts, ends = [], [], []
        for b0 in range(0, len(regions), ALIGN_BATCH):
            d, lengths = pad_regions([frame_scores(c, self.substitution) for c in codes[b0 : b0 + ALIGN_BATCH]])
            cos = np.array([r.cosine for r in regions[b0 : b0 + ALIGN_BATCH]])
            group_feats, group_edges = [], []
            for alternatives in plan.targets:
                aligned = [align(d, lengths, t) for t in alternatives]
                f = np.stack([features(a, cos) for a in aligned])  # [alternatives, B, F]
                pick = np.argmax(f[:, :, 1], axis=0)  # per region, the alternative with the best LLR per token
                rows = np.arange(len(cos))
                group_feats.append(f[pick, rows])
                group_edges.append((np.stack([a.start_frame for a in aligned])[pick, rows], np.stack([a.end_frame for a in aligned])[pick, rows]))
            feats.append(np.mean(group_feats, axis=0))
            starts.append(np.median([e[0] for e in group_edges], axis=0).astype(np.int64))
            ends.append(np.median([e[1] for e in group_edges], axis=0).astype(np.int64))
        # the query's background in this archive: how it scores in its other candidate regions
        x = self.calibration.with_background(plan.kind, np.concatenate(feats))
        p = self.calibration.models[plan.kind].probability(x)
        lo = np.array([r.frame_lo for r in regions])
        start = (lo + np.concatenate(starts)) / FRAME_RATE + self.calibration.start_offset_s
        end = (lo + np.concatenate(ends)) / FRAME_RATE + self.calibration.end_offset_s
        return [Candidate(r.file, max(0.0, float(s)), float(e), float(pi), xi) for r, s, e, pi, xi in zip(regions, start, end, p, x)]

    def _read(self, regions) -> list[np.ndarray]:
        out = []
        for r in regions:
            try:
                c = read_awp(self.phon_paths[r.file], r.frame_lo, r.frame_hi)
            except FileNotFoundError:
                raise IndexFormatError(
                    f"phonetic file {self.phon_paths[r.file]} is missing (an indexer may have just replaced it): "
                    "run the query again, or awesearch index on the same folders to repair the index"
                ) from None
            out.append(c if len(c) else np.zeros((1, c.shape[1]), np.uint8))
        return out


LLR_FLOOR_PER_TOKEN = -16.0  # nats: a token costs at most about the quantisation floor (255 / 16) per frame


def features(a: Alignment, cosine: np.ndarray) -> np.ndarray:
    """[B, 5] own evidence of one alignment (calibrate.FEATURES up to log_tokens) (see calibrate.py for their meaning).

    A region too short to hold the target has no alignment (verify.NEG); its evidence is clipped to the
    floor, so it scores like the worst real alignment instead of leaking -1e9 into the calibration."""
    llr = np.maximum(a.llr, LLR_FLOOR_PER_TOKEN * a.n_tokens)
    worst = np.maximum(a.worst_token, LLR_FLOOR_PER_TOKEN * 4)
    return np.stack([cosine, llr / a.n_tokens, worst, llr, np.full(len(a.llr), np.log(a.n_tokens))], axis=1)


def phrase_widening(word_phonemes: list[list[str]]) -> tuple[int, tuple[float, float]]:
    """(index of the rarest word: most phonemes, (seconds before it, seconds after it)) for a phrase."""
    i = int(np.argmax([len(w) for w in word_phonemes]))
    before = sum(len(w) for w in word_phonemes[:i]) * PHONE_S + i * PAUSE_S
    after = sum(len(w) for w in word_phonemes[i + 1 :]) * PHONE_S + (len(word_phonemes) - 1 - i) * PAUSE_S
    return i, (before, after)
