"""The second stage: re-score first-stage candidates by aligning the query's phonemes to the stored
phonetic frames around them (issue 8, point 2; PLCL's phoneme-level matching done at search time).

For a candidate region (the frames of a few overlapping windows plus a margin) and a query target
``| w1 | w2 |`` (phonemes with word boundaries, awesearch/phonetic.py), a CTC Viterbi alignment with a free
start and end finds the best span. Each frame is scored relative to the best class of that frame,

    d_t(c) = log p_t(c) - max_c' log p_t(c')     (<= 0),

so the sum over the aligned frames is a log-likelihood ratio against a free phone loop over the same
frames: 0 when the head's own best path spells the query there, strongly negative when a phoneme or a
word boundary is missing ("bred" inside "spread": no boundary before B and a P where B should be).
Every candidate of one query is aligned in one vectorised pass over frames (numpy, [B, S] per step).

Features handed to calibration (awesearch/calibrate.py): the total LLR, the LLR per target token, the
worst single token's LLR, the number of tokens, and the aligned duration per token.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .phonetic import BLANK, BOUNDARY, FRAME_RATE, dequantize

NEG = np.float32(-1e9)  # "impossible" in the log domain without inf arithmetic
MARGIN_S = 0.3  # seconds added to each side of a candidate region: room to find the true word edges
MAX_REGION_S = 6.0  # longest region aligned (a merged cluster of windows is cut to this)


@dataclass
class Alignment:
    """The best free-start/end alignment of one query target in each of B regions (frames at FRAME_RATE)."""

    llr: np.ndarray  # [B] sum of d over aligned frames (nats, <= 0)
    worst_token: np.ndarray  # [B] the lowest per-token sum of d (nats, <= 0)
    start_frame: np.ndarray  # [B] first frame of the first word's first phoneme, region-relative
    end_frame: np.ndarray  # [B] one past the last frame of the last word's last phoneme
    span_start_frame: np.ndarray  # [B] first aligned frame (the leading boundary token)
    span_end_frame: np.ndarray  # [B] one past the last aligned frame (the trailing boundary token)
    n_tokens: int  # target tokens (phonemes + boundaries)


def frame_scores(codes_or_logp: np.ndarray, substitution: np.ndarray | None = None) -> np.ndarray:
    """uint8 codes or float log-posteriors [..., T, C] -> d = logp - max over classes (float32, <= 0).

    With a substitution matrix S [C, C] (substitution_matrix), a class is scored by the posterior mass of
    the classes the head confuses it with, log sum_c' S[c, c'] p(c'), instead of its own posterior: a
    phoneme the head often hears as a neighbour (IH as EH) costs little where the neighbour was decoded, a
    distant one (IH as K) still costs what it did."""
    logp = dequantize(codes_or_logp) if codes_or_logp.dtype == np.uint8 else np.asarray(codes_or_logp, np.float32)
    if substitution is not None:
        logp = np.log(np.maximum(np.exp(logp) @ substitution.T.astype(np.float32), 1e-12))
    return logp - logp.max(axis=-1, keepdims=True)


def substitution_matrix(confusion: np.ndarray, weight: float) -> np.ndarray:
    """[N_CLASSES, N_CLASSES]: identity for blank and boundary; for phonemes (1 - weight) I + weight C, where
    C[i, j] = P(head decodes phoneme j | phoneme i said) (phonetic.PhoneModel.confusion)."""
    from .phonetic import N_CLASSES

    s = np.eye(N_CLASSES, dtype=np.float32)
    n = confusion.shape[0]
    s[1 : n + 1, 1 : n + 1] = (1.0 - weight) * np.eye(n) + weight * np.asarray(confusion, np.float32)
    return s


def _expand(target: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """CTC states blank, y1, blank, y2, ..., yL, blank and whether each state may skip the blank before it."""
    ext = np.zeros(2 * len(target) + 1, np.int64)
    ext[1::2] = target
    skip = np.zeros(len(ext), bool)
    skip[3::2] = np.asarray(target[1:]) != np.asarray(target[:-1])
    return ext, skip


def align(d: np.ndarray, lengths: np.ndarray, target: list[int]) -> Alignment:
    """Viterbi alignment of `target` (class ids) in each of B regions.

    d: [B, T, C] frame scores (frame_scores), regions padded to T; lengths: [B] valid frames per region.
    The path may start at any frame (in the first token) and end at any frame (in the last token).
    The forward pass keeps every step's scores [T, B, S]; the back-pointers are recomputed only along the
    winning paths (cheaper than storing an argmax for every state).
    """
    if not target:
        raise ValueError("empty target")
    B, T, _ = d.shape
    ext, skip = _expand(target)
    S = len(ext)
    e = np.ascontiguousarray(np.transpose(d[:, :, ext], (1, 0, 2)))  # [T, B, S]
    invalid = np.arange(T)[:, None] >= np.asarray(lengths)[None, :]  # [T, B]
    alphas = np.empty((T, B, S), np.float32)
    alpha = np.full((B, S), NEG, np.float32)
    m = np.empty((B, S), np.float32)
    skip_rows = np.nonzero(skip)[0]
    for t in range(T):
        np.copyto(m, alpha)
        np.maximum(m[:, 1:], alpha[:, :-1], out=m[:, 1:])
        if len(skip_rows):
            m[:, skip_rows] = np.maximum(m[:, skip_rows], alpha[:, skip_rows - 2])  # fancy index: assign, not out=
        np.maximum(m[:, 1], 0.0, out=m[:, 1])  # a fresh start in the first token
        alpha = m + e[t]
        alpha[invalid[t]] = NEG
        alphas[t] = alpha
    ends = alphas[:, :, S - 2]  # the path ends in the last token
    best_t = ends.argmax(axis=0)
    best = ends[best_t, np.arange(B)]
    return _backtrack(alphas, e, ext, skip, best, best_t, len(target))


def _backtrack(alphas: np.ndarray, e: np.ndarray, ext: np.ndarray, skip: np.ndarray, best: np.ndarray, best_t: np.ndarray,
               n_tokens: int) -> Alignment:
    T, B, S = alphas.shape
    state = np.full(B, S - 2, np.int64)
    active = np.zeros(B, bool)
    token_cost = np.zeros((B, n_tokens), np.float32)
    first_phone = np.full(B, -1, np.int64)
    last_phone = np.full(B, -1, np.int64)
    span_start = best_t.copy()
    rows = np.arange(B)
    is_phone_state = (ext != BLANK) & (ext != BOUNDARY)
    for t in range(int(best_t.max()), -1, -1):
        active |= best_t == t
        if not active.any():
            continue
        b = rows[active]
        s = state[b]
        odd = s % 2 == 1
        np.add.at(token_cost, (b[odd], (s[odd] - 1) // 2), e[t, b[odd], s[odd]])
        ph = is_phone_state[s]
        last_phone[b[ph & (last_phone[b] < 0)]] = t
        first_phone[b[ph]] = t
        span_start[b] = t
        # predecessor: the best of stay / s-1 / s-2 (where allowed) at t-1, or a fresh start (s == 1)
        if t == 0:
            break
        prev = alphas[t - 1, b]
        stay = prev[np.arange(len(b)), s]
        one = np.where(s >= 1, prev[np.arange(len(b)), np.maximum(s - 1, 0)], NEG)
        two = np.where((s >= 2) & skip[s], prev[np.arange(len(b)), np.maximum(s - 2, 0)], NEG)
        fresh = np.where(s == 1, 0.0, NEG)
        choice = np.argmax(np.stack([stay, one, two, fresh]), axis=0)
        started = (choice == 3) | (np.maximum(np.maximum(stay, one), np.maximum(two, fresh)) <= NEG / 2)
        state[b] = s - np.where(started, 0, choice)
        active[b[started]] = False
    return Alignment(
        llr=best,
        worst_token=token_cost.min(axis=1),
        start_frame=first_phone,
        end_frame=last_phone + 1,
        span_start_frame=span_start,
        span_end_frame=best_t + 1,
        n_tokens=n_tokens,
    )


@dataclass
class Region:
    """Frames [frame_lo, frame_hi) of one recording to align a query in (file frame indices)."""

    file: int  # dense file index of the search table
    frame_lo: int
    frame_hi: int
    cosine: float  # best first-stage score of the windows inside


def merge_windows(files: np.ndarray, starts: np.ndarray, ends: np.ndarray, scores: np.ndarray,
                  before_s=MARGIN_S, after_s=MARGIN_S, max_region_s: float = MAX_REGION_S) -> list[Region]:
    """First-stage windows -> regions: per file, windows whose margins overlap are merged (a merged region is
    not allowed to grow past max_region_s; the next window then opens a new one). before_s / after_s:
    seconds added to each window, one number or one per window."""
    out: list[Region] = []
    before = np.broadcast_to(np.asarray(before_s, np.float64), np.shape(starts))
    after = np.broadcast_to(np.asarray(after_s, np.float64), np.shape(starts))
    lows = np.asarray(starts, np.float64) - before
    order = np.lexsort((lows, files))
    cur: Region | None = None
    cur_lo_s = cur_hi_s = 0.0
    for i in order:
        f, lo, hi, sc = int(files[i]), float(lows[i]), float(ends[i]) + float(after[i]), float(scores[i])
        lo = max(0.0, lo)
        if cur is not None and cur.file == f and lo <= cur_hi_s and max(hi, cur_hi_s) - cur_lo_s <= max_region_s:
            cur_hi_s = max(cur_hi_s, hi)
            cur.frame_hi = int(np.ceil(cur_hi_s * FRAME_RATE))
            cur.cosine = max(cur.cosine, sc)
            continue
        cur = Region(f, int(np.floor(lo * FRAME_RATE)), int(np.ceil(hi * FRAME_RATE)), sc)
        cur_lo_s, cur_hi_s = lo, hi
        out.append(cur)
    return out


def pad_regions(chunks: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Frame scores of regions of different lengths -> [B, T, C] padded with impossible frames, lengths [B]."""
    lengths = np.array([len(c) for c in chunks], np.int64)
    T = max(1, int(lengths.max())) if len(chunks) else 1
    C = chunks[0].shape[1]
    out = np.full((len(chunks), T, C), NEG, np.float32)
    for i, c in enumerate(chunks):
        out[i, : len(c)] = c
    return out, lengths
