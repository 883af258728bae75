"""Query engine: NMS, candidate pools, thresholds and query plumbing on hand-built indexes."""

from __future__ import annotations

import faiss
import numpy as np
import pytest

from awesearch.errors import IndexFormatError, QueryError
from awesearch.search import (
    Hit,
    SearchEngine,
    WindowTable,
    check_audio,
    check_text,
    nms,
    overlaps_too_much,
    search_vector,
    search_vectors,
)


def unit(v: np.ndarray) -> np.ndarray:
    v = np.asarray(v, dtype=np.float32)
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def make_table(vectors: np.ndarray, file_ids, starts, ends, paths) -> WindowTable:
    index = faiss.IndexFlatIP(vectors.shape[1])
    index.add(np.ascontiguousarray(vectors, dtype=np.float32))
    return WindowTable(
        index=index,
        file_ids=np.asarray(file_ids, dtype=np.int64),
        starts=np.asarray(starts, dtype=np.float64),
        ends=np.asarray(ends, dtype=np.float64),
        paths=list(paths),
    )


# -- NMS -------------------------------------------------------------------------------------


def test_overlap_rule():
    assert overlaps_too_much(1.0, 1.5, 1.0, 1.5)
    assert overlaps_too_much(1.1, 1.6, 1.0, 1.5)  # 80 % of the shorter
    assert not overlaps_too_much(1.4, 1.9, 1.0, 1.5)  # 20 % of the shorter, center outside
    assert not overlaps_too_much(2.0, 2.5, 1.0, 1.5)  # disjoint
    assert not overlaps_too_much(1.5, 2.0, 1.0, 1.5)  # touching
    # a short window whose center is inside a long better hit, overlapping less than 30 % of itself: cannot be
    # (center inside means >= 50 % overlap), so check the center rule with a tiny overlap share instead
    assert overlaps_too_much(0.9, 1.3, 1.0, 3.0, overlap=0.9)


def test_nms_keeps_one_hit_per_occurrence():
    hits = [
        Hit("/a.wav", 1.00, 1.50, 0.90),
        Hit("/a.wav", 1.02, 1.48, 0.95),  # best of occurrence 1
        Hit("/a.wav", 0.95, 1.60, 0.80),
        Hit("/a.wav", 5.00, 5.40, 0.70),  # occurrence 2
        Hit("/a.wav", 5.10, 5.50, 0.60),
        Hit("/b.wav", 1.00, 1.50, 0.85),  # same times, other file: not suppressed
    ]
    kept = nms(hits)
    assert kept == [Hit("/a.wav", 1.02, 1.48, 0.95), Hit("/b.wav", 1.00, 1.50, 0.85), Hit("/a.wav", 5.00, 5.40, 0.70)]


def test_nms_adjacent_words_survive():
    hits = [Hit("/a.wav", 1.0, 1.5, 0.9), Hit("/a.wav", 1.4, 1.9, 0.8), Hit("/a.wav", 1.9, 2.3, 0.7)]
    assert nms(hits) == hits  # 0.1 s overlap is 20 % of the shorter: a neighbouring word, kept


def test_nms_center_inside_better_hit():
    # the long window's center (1.6) lies outside the short best hit, and the overlap is 100 % of the shorter -> dropped
    hits = [Hit("/a.wav", 1.0, 1.3, 0.9), Hit("/a.wav", 0.2, 3.0, 0.8)]
    assert nms(hits) == [hits[0]]


def test_nms_k_and_order():
    hits = [Hit("/a.wav", float(i), i + 0.5, s) for i, s in enumerate([0.1, 0.5, 0.3, 0.9])]
    assert [h.score for h in nms(hits, k=2)] == [0.9, 0.5]
    assert nms([], k=3) == []


# -- search_vector -----------------------------------------------------------------------------


def test_search_vector_pool_grows_until_k_distinct_hits():
    rng = np.random.default_rng(0)
    d = 16
    target = unit(rng.normal(size=d))
    # 500 near-duplicate windows of one occurrence, all scoring higher than three distinct weaker occurrences
    dup = unit(target + 0.01 * rng.normal(size=(500, d)))
    weaker = unit(target + 0.5 * rng.normal(size=(3, d)))
    vectors = np.vstack([dup, weaker])
    starts = np.concatenate([10.0 + rng.uniform(-0.02, 0.02, 500), [1.0, 3.0, 5.0]])
    ends = starts + 0.5
    table = make_table(vectors, np.zeros(503), starts, ends, ["/x.wav"])
    hits = search_vector(table, target, k=4)  # first pool is 20 * 4 + 100 = 180 < 500 duplicates
    assert len(hits) == 4
    assert 9.9 < hits[0].start < 10.1
    assert sorted(h.start for h in hits[1:]) == [1.0, 3.0, 5.0]
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    # in a batch, the query that needs a bigger pool gets one and the other is unaffected
    other = unit(rng.normal(size=d))
    batch = search_vectors(table, np.stack([other, target]), k=4)
    assert batch[1] == hits
    assert batch[0] == search_vector(table, other, k=4)


def test_search_vector_threshold_and_small_index():
    vectors = unit(np.eye(4))
    table = make_table(vectors, [0, 0, 1, 1], [0, 1, 0, 1], [0.5, 1.5, 0.5, 1.5], ["/a.wav", "/b.wav"])
    q = unit([1.0, 0.5, 0.0, 0.0])
    hits = search_vector(table, q, k=10)  # k larger than the index
    assert len(hits) == 4
    assert hits[0] == Hit("/a.wav", 0.0, 0.5, pytest.approx(float(q[0])))
    assert hits[1].start == 1.0 and hits[1].path == "/a.wav"
    only = search_vector(table, q, k=10, threshold=0.5)
    assert [h.path for h in only] == ["/a.wav"]
    assert search_vector(table, q, k=10, threshold=0.99) == []


def test_search_vector_empty_index_and_bad_k():
    table = make_table(np.zeros((0, 4), np.float32), [], [], [], [])
    assert search_vector(table, unit(np.ones(4)), k=3) == []
    with pytest.raises(QueryError):
        search_vector(table, unit(np.ones(4)), k=0)


def test_dimension_mismatch_and_damaged_table():
    table = make_table(unit(np.eye(4)), [0] * 4, [0, 1, 2, 3], [0.5, 1.5, 2.5, 3.5], ["/a.wav"])
    with pytest.raises(IndexFormatError):
        search_vector(table, np.ones(8, np.float32), k=1)
    index = faiss.IndexFlatIP(4)
    index.add(unit(np.eye(4)))
    with pytest.raises(IndexFormatError):
        WindowTable(index, np.zeros(3, np.int64), np.zeros(3), np.zeros(3), ["/a.wav"])


# -- query checks ------------------------------------------------------------------------------


def test_check_text():
    assert check_text("Prince") == ["prince"]
    assert len(check_text("The Little Prince, 2")) == 4
    for bad in ["", "   ", "?!...", "one two three four five"]:
        with pytest.raises(QueryError):
            check_text(bad)


def test_check_audio():
    rng = np.random.default_rng(1)
    check_audio((0.1 * rng.normal(size=3200)).astype(np.float32), 16000, "x")
    with pytest.raises(QueryError, match="at least"):
        check_audio((0.1 * rng.normal(size=800)).astype(np.float32), 16000, "x")  # 0.05 s
    with pytest.raises(QueryError, match="silent"):
        check_audio(np.zeros(16000, np.float32), 16000, "x")


# -- engine plumbing with a stand-in encoder ---------------------------------------------------------


class FakeEncoder:
    """Embeds phoneme sequences by hashing, so a text query lands on a chosen window."""

    name = "fake"
    dim = 8
    context_s = 0.3
    frame_rate = 50.0

    def __init__(self):
        self.seen: list[list[str]] = []

    def vector(self, seq: list[str]) -> np.ndarray:
        rng = np.random.default_rng(abs(hash(" ".join(seq))) % (2**32))
        return unit(rng.normal(size=self.dim))

    def embed_phonemes(self, seqs):
        self.seen.extend(seqs)
        return np.stack([self.vector(s) for s in seqs]).astype(np.float32)


def test_text_query_plumbing():
    from awesearch.text import text_to_phonemes

    enc = FakeEncoder()
    prince = enc.vector(text_to_phonemes("prince"))
    others = unit(np.random.default_rng(2).normal(size=(5, enc.dim)))
    vectors = np.vstack([others[:3], prince, others[3:]])
    table = make_table(vectors, [0, 0, 0, 1, 1, 1], [0, 1, 2, 0, 1, 2], [0.4, 1.4, 2.4, 0.4, 1.4, 2.4], ["/a.wav", "/b.wav"])
    engine = SearchEngine(table, enc)
    hits = engine.search_text("  PRINCE! ", k=3)
    assert hits[0] == Hit("/b.wav", 0.0, 0.4, pytest.approx(1.0, abs=1e-5))
    assert enc.seen[-1] == text_to_phonemes("prince")
    assert engine.search(text="prince", k=1) == hits[:1]
    with pytest.raises(QueryError):
        engine.search_text("", k=3)
    with pytest.raises(QueryError):
        engine.search(k=3)
    with pytest.raises(QueryError, match="--audio"):
        engine.search(text="prince", start=1.0, end=2.0)


def test_engine_refuses_dimension_mismatch():
    table = make_table(unit(np.eye(4)), [0] * 4, [0, 1, 2, 3], [0.5, 1.5, 2.5, 3.5], ["/a.wav"])
    with pytest.raises(IndexFormatError):
        SearchEngine(table, FakeEncoder())
