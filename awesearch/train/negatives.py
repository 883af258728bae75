"""Hard negatives for contrastive training (as in PLCL).

- ``phoneme_edits(phones, n, rng)``: ``n`` distinct phoneme sequences at edit distance 1-2 from
  ``phones`` (insert, replace, delete), replacements and insertions weighted toward phonemes that
  are easily confused with their neighbours (voicing pairs, nearby vowels, nasals, ...).
- ``NeighbourIndex``: real words whose pronunciations are within edit distance 1-2 of a word's
  (prince -> prints, princes, princess), found with a deletion-neighbourhood index.
"""

from __future__ import annotations

import itertools
import random
from collections import defaultdict
from typing import Iterable, Sequence

from awesearch.text import PHONEMES

CONFUSABLE_GROUPS: tuple[tuple[str, ...], ...] = (
    ("P", "B"), ("T", "D"), ("K", "G"), ("P", "T", "K"), ("B", "D", "G"),
    ("F", "V"), ("TH", "DH"), ("S", "Z"), ("SH", "ZH"), ("F", "TH"), ("V", "DH"), ("S", "SH"), ("Z", "ZH"), ("S", "TH"),
    ("CH", "JH"), ("CH", "SH"), ("JH", "ZH"), ("T", "CH"), ("D", "JH"),
    ("M", "N", "NG"), ("L", "R"), ("W", "R"), ("W", "V"), ("Y", "IY"), ("HH", "F"),
    ("IY", "IH"), ("IH", "EH"), ("EH", "AE"), ("EH", "EY"), ("AE", "AH"), ("AH", "AA"), ("AA", "AO"),
    ("AO", "OW"), ("UH", "UW"), ("AH", "UH"), ("OW", "UW"), ("AY", "EY"), ("AW", "AO"), ("OY", "OW"), ("ER", "AH"), ("ER", "R"),
)
CONFUSABLE_WEIGHT = 8.0  # a confusable phoneme is this many times likelier than any other
EDIT_KIND_WEIGHTS = {"replace": 0.6, "insert": 0.2, "delete": 0.2}
TWO_EDITS_PROB = 0.3  # share of negatives at edit distance 2 (the rest at 1)
MAX_TRIES_PER_NEGATIVE = 20

_CONFUSABLE: dict[str, set[str]] = defaultdict(set)
for _group in CONFUSABLE_GROUPS:
    for _a in _group:
        _CONFUSABLE[_a].update(p for p in _group if p != _a)


def confusable_with(phone: str) -> set[str]:
    """Phonemes listed as easily confused with ``phone``."""
    return set(_CONFUSABLE.get(phone, ()))


def _weighted_phone(rng: random.Random, near: Sequence[str], exclude: str | None = None) -> str:
    """A phoneme, CONFUSABLE_WEIGHT times likelier if confusable with any phoneme in ``near``."""
    boost = set().union(*(confusable_with(p) for p in near)) if near else set()
    pool = [p for p in PHONEMES if p != exclude]
    weights = [CONFUSABLE_WEIGHT if p in boost else 1.0 for p in pool]
    return rng.choices(pool, weights=weights)[0]


def _one_edit(phones: list[str], rng: random.Random) -> list[str]:
    kinds = list(EDIT_KIND_WEIGHTS)
    weights = [w if (k != "delete" or len(phones) > 1) else 0.0 for k, w in EDIT_KIND_WEIGHTS.items()]
    kind = rng.choices(kinds, weights=weights)[0]
    out = list(phones)
    if kind == "replace":
        i = rng.randrange(len(out))
        out[i] = _weighted_phone(rng, [out[i]], exclude=out[i])
    elif kind == "insert":
        i = rng.randrange(len(out) + 1)
        out.insert(i, _weighted_phone(rng, out[max(0, i - 1) : i + 1]))
    else:
        del out[rng.randrange(len(out))]
    return out


def phoneme_edits(phones: Sequence[str], n: int, rng: random.Random) -> list[list[str]]:
    """``n`` distinct sequences at edit distance 1 or 2 from ``phones`` (never ``phones`` itself).
    Fewer than ``n`` only if the tries run out (very short inputs)."""
    original = list(phones)
    if not original:
        return []
    seen = {tuple(original)}
    out: list[list[str]] = []
    for _ in range(n * MAX_TRIES_PER_NEGATIVE):
        if len(out) >= n:
            break
        cand = _one_edit(original, rng)
        if rng.random() < TWO_EDITS_PROB:
            cand = _one_edit(cand, rng)
        if cand and tuple(cand) not in seen:
            seen.add(tuple(cand))
            out.append(cand)
    return out


def edit_distance(a: Sequence[str], b: Sequence[str]) -> int:
    """Levenshtein distance between two phoneme sequences."""
    prev = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        cur = [i]
        for j, y in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (x != y)))
        prev = cur
    return prev[-1]


def _deletions(phones: tuple[str, ...], max_deletes: int) -> set[tuple[str, ...]]:
    keys = {phones}
    for k in range(1, min(max_deletes, len(phones) - 1) + 1):
        for idx in itertools.combinations(range(len(phones)), k):
            drop = set(idx)
            keys.add(tuple(p for i, p in enumerate(phones) if i not in drop))
    return keys


class NeighbourIndex:
    """Real words close in phonemes. ``entries``: (word, phonemes) pairs, e.g. from the lexicon."""

    def __init__(self, entries: Iterable[tuple[str, Sequence[str]]], max_distance: int = 2) -> None:
        self.max_distance = max_distance
        self._prons: dict[str, tuple[str, ...]] = {}
        self._keys: dict[tuple[str, ...], set[str]] = defaultdict(set)
        for word, phones in entries:
            pron = tuple(phones)
            if not pron or word in self._prons:
                continue
            self._prons[word] = pron
            for key in _deletions(pron, max_distance):
                self._keys[key].add(word)

    def neighbours(self, phones: Sequence[str], k: int = 10, exclude: str | None = None) -> list[tuple[str, int]]:
        """Up to ``k`` (word, distance) with 1 <= distance <= max_distance, nearest first, then by word."""
        pron = tuple(phones)
        candidates: set[str] = set()
        for key in _deletions(pron, self.max_distance):
            candidates |= self._keys.get(key, set())
        scored = []
        for word in candidates:
            if word == exclude:
                continue
            d = edit_distance(pron, self._prons[word])
            if 1 <= d <= self.max_distance:
                scored.append((d, word))
        return [(w, d) for d, w in sorted(scored)[:k]]
