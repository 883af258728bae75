"""Retrieval metrics shared by training validation and the benchmarks (numpy only)."""

from __future__ import annotations

import numpy as np


def average_precision(scores: np.ndarray, labels: np.ndarray) -> float:
    """AP of a ranking by descending score; labels are booleans. NaN if there is no positive."""
    scores = np.asarray(scores, dtype=np.float64).ravel()
    labels = np.asarray(labels, dtype=bool).ravel()
    n_pos = int(labels.sum())
    if n_pos == 0:
        return float("nan")
    order = np.argsort(-scores, kind="stable")
    hits = labels[order]
    ranks = np.flatnonzero(hits) + 1
    return float(np.mean(np.arange(1, n_pos + 1) / ranks))


def same_different_ap(emb: np.ndarray, labels: np.ndarray) -> float:
    """Same/different AP over all pairs of tokens (Carlin et al. 2011): is each pair the same word?"""
    labels = np.asarray(labels)
    sims = emb @ emb.T
    iu = np.triu_indices(len(labels), k=1)
    same = labels[iu[0]] == labels[iu[1]]
    return average_precision(sims[iu], same)


def cross_modal_ap(audio_emb: np.ndarray, audio_labels: np.ndarray, text_emb: np.ndarray, text_labels: np.ndarray) -> float:
    """Same/different AP over all (audio token, text type) pairs: does the audio say the text?"""
    sims = audio_emb @ text_emb.T
    same = np.asarray(audio_labels)[:, None] == np.asarray(text_labels)[None, :]
    return average_precision(sims.ravel(), same.ravel())


def auc_eer(pos_scores: np.ndarray, neg_scores: np.ndarray) -> tuple[float, float]:
    """ROC AUC and equal error rate of a detector, positives vs negatives (LibriPhrase-style)."""
    pos = np.asarray(pos_scores, dtype=np.float64).ravel()
    neg = np.asarray(neg_scores, dtype=np.float64).ravel()
    if len(pos) == 0 or len(neg) == 0:
        return float("nan"), float("nan")
    scores = np.concatenate([pos, neg])
    is_pos = np.concatenate([np.ones(len(pos), bool), np.zeros(len(neg), bool)])
    order = np.argsort(-scores, kind="stable")
    is_pos = is_pos[order]
    tpr = np.concatenate([[0.0], np.cumsum(is_pos) / len(pos)])
    fpr = np.concatenate([[0.0], np.cumsum(~is_pos) / len(neg)])
    auc = float(np.trapezoid(tpr, fpr))
    fnr = 1.0 - tpr
    i = int(np.argmin(np.abs(fnr - fpr)))
    eer = float((fnr[i] + fpr[i]) / 2)
    return auc, eer
