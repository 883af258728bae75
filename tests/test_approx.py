"""The approximate index of large indexes: recall against exact search, tail, tombstones, extend/retrain, damage."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from awesearch import approx
from awesearch.errors import IndexDamagedError
from awesearch.store import IndexStore
from awesearch.indexer.writer import IndexWriter
from test_store import FakeEncoder, record

DIM = 8  # test_store.FakeEncoder's dimension
CENTRES = np.random.default_rng(7).normal(size=(300, DIM)).astype(np.float32)


def clustered(n: int, seed: int) -> np.ndarray:
    """Unit vectors around 300 random centres (window embeddings cluster by word and speaker too)."""
    rng = np.random.default_rng(seed)
    v = CENTRES[rng.integers(0, len(CENTRES), n)] + 0.25 * rng.normal(size=(n, DIM)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


@pytest.fixture(autouse=True)
def small_thresholds(monkeypatch):
    monkeypatch.setattr(approx, "APPROX_MIN_WINDOWS", 20_000)
    monkeypatch.setattr(approx, "MIN_LISTS", 16)
    monkeypatch.setattr(approx, "NPROBE", 8)  # 8 of 128 lists: a search that really is approximate


def add(w: IndexWriter, path: str, n: int, seed: int):
    fid = w.new_file_id()
    starts = np.arange(n) * 0.05
    w.add_windows(fid, clustered(n, seed), starts, starts + 0.5)
    r = record(fid, path, n)
    w.commit([r])
    return r


def keys(table, ids) -> list[tuple[str, float]]:
    return [(table.paths[int(table.file_ids[i])], round(float(table.starts[i]), 3)) for i in ids if i >= 0]  # rows store float32 seconds


def exact_and_approx(idx: Path):
    from awesearch.search import WindowTable

    store = IndexStore.open(idx)
    data = store.load_search_data()
    ids = sorted(data.paths)
    exact = WindowTable(data.index, np.searchsorted(ids, data.file_ids), data.starts, data.ends, [data.paths[i] for i in ids])
    return exact, approx.open_approx_table(store)


def recall_at(exact, table, queries: np.ndarray, k: int) -> float:
    _, ie = exact.index.search(queries, k)
    _, ia = table.index.search(queries, k)
    return float(np.mean([len(set(keys(exact, e)) & set(keys(table, a))) / k for e, a in zip(ie, ia)]))


def test_small_index_has_no_approximate_index(tmp_path):
    with IndexWriter.open(tmp_path, FakeEncoder()) as w:
        add(w, "/x/a.wav", 1000, 0)
        assert approx.update_approx(w) is None and w.manifest.approx is None


def test_recall_against_exact_then_tail_and_tombstones(tmp_path):
    with IndexWriter.open(tmp_path, FakeEncoder()) as w:
        for i in range(3):
            add(w, f"/x/{i}.wav", 9000, i)
        assert approx.update_approx(w) == "build"
        info = approx.approx_info(w.manifest)
        assert info.windows == 27_000 and info.nlist == approx.choose_nlist(27_000) and len(info.segments) == 3
        assert set(w.manifest.checksums) >= set(info.files())  # checksummed like every data file
        exact, table = exact_and_approx(tmp_path)
        queries = clustered(40, 99)
        # recall@100 against exact search: 0.994 seen here (4-bit codes re-ranked from int8, 128 lists, nprobe 8;
        # 0.908 without the re-ranking depth)
        assert recall_at(exact, table, queries, 100) >= 0.95
        assert table.index.ntotal == 27_000

        tail = add(w, "/x/new.wav", 500, 50)  # too small a tail to extend: searched exactly beside it
        assert approx.update_approx(w) is None
        exact, table = exact_and_approx(tmp_path)
        probe = clustered(500, 50)[:5]
        _, ids = table.index.search(probe, 1)
        assert [k[0] for k in keys(table, ids[:, 0])] == [tail.path] * 5
        assert recall_at(exact, table, queries, 100) >= 0.95

        w.commit([], removed_paths={"/x/0.wav"})  # deleted: its rows in the approximate index are dead
        exact, table = exact_and_approx(tmp_path)
        _, ids = table.index.search(queries, 100)
        assert "/x/0.wav" not in {k[0] for row in ids for k in keys(table, row)}
        assert recall_at(exact, table, queries, 100) >= 0.95  # 0.981 seen: dead rows are skipped, not counted


def test_extend_retrain_rebuild_drop(tmp_path, monkeypatch):
    with IndexWriter.open(tmp_path, FakeEncoder()) as w:
        add(w, "/x/a.wav", 21_000, 0)
        assert approx.update_approx(w) == "build"
        assert approx.describe(w.manifest).startswith("approximate: IVF, 128 lists, 21,000 windows")
        first = approx.approx_info(w.manifest)
        add(w, "/x/b.wav", 8000, 1)  # tail 8000 > 0.25 * 21000
        assert approx.update_approx(w) == "extend"
        ext = approx.approx_info(w.manifest)
        assert ext.windows == 29_000 and ext.trained_windows == first.trained_windows and ext.name != first.name
        assert not (tmp_path / f"{first.name}.faiss").exists()  # collected
        monkeypatch.setattr(approx, "TAIL_MAX_WINDOWS", 999)  # a large index: the tail is capped in windows
        add(w, "/x/b2.wav", 1000, 3)
        assert approx.update_approx(w) == "extend" and approx.approx_info(w.manifest).windows == 30_000
        add(w, "/x/c.wav", 60_000, 2)  # 90,000 > 4 * 21,000: outgrown its training
        assert approx.update_approx(w) == "build"
        assert approx.approx_info(w.manifest).trained_windows == 90_000
        w.commit([], removed_paths={"/x/c.wav"})
        w.compact()  # the segment of c.wav is gone: its rows must not come back from the tail
        assert approx.update_approx(w) == "build"
        assert approx.approx_info(w.manifest).windows == 30_000
        w.commit([], removed_paths={"/x/a.wav", "/x/b2.wav"})  # 8,000 live windows left: below the threshold
        assert approx.update_approx(w) == "drop" and w.manifest.approx is None
        assert approx.describe(w.manifest).startswith("exact")


def in_memory_lists(store, info) -> list[tuple[bytes, np.ndarray]]:
    """Every inverted list (codes, ids) of faiss's own in-memory index.add over the live windows of the
    segments the approximate index covers, in its order, with the built index's training."""
    import faiss

    built = faiss.read_index(str(store.directory / f"{info.name}.faiss"))
    built.reset()
    live = {f.file_id for f in store.load_files()}
    for seg in store.manifest.segments:
        v, f, _, _ = store.read_segment(seg)
        built.add(np.ascontiguousarray(v[np.isin(f, list(live))], np.float32))
    return lists_of(built)


def lists_of(ivf) -> list[tuple[bytes, np.ndarray]]:
    import faiss

    inv, cs = ivf.invlists, ivf.code_size
    return [(faiss.rev_swig_ptr(inv.get_codes(l), inv.list_size(l) * cs).tobytes(),
             faiss.rev_swig_ptr(inv.get_ids(l), inv.list_size(l)).copy()) for l in range(ivf.nlist)]


def test_streamed_build_and_extend_equal_faiss_in_memory_add(tmp_path):
    import faiss

    with IndexWriter.open(tmp_path, FakeEncoder()) as w:
        add(w, "/x/a.wav", 15_000, 0)
        add(w, "/x/b.wav", 6_000, 1)
        assert approx.update_approx(w) == "build"
        add(w, "/x/c.wav", 8_000, 2)
        assert approx.update_approx(w) == "extend"  # old lists from the memory map, then the new entries
        store = IndexStore.open(tmp_path)
        info = approx.approx_info(store.manifest)
        streamed = faiss.read_index(str(tmp_path / f"{info.name}.faiss"))
        assert streamed.ntotal == info.windows == 29_000
        expected = in_memory_lists(store, info)
        got = lists_of(streamed)
        assert sum(len(i) for _, i in got) == 29_000 and sum(1 for _, i in got if len(i)) > 50
        for (ce, ie), (cg, ig) in zip(expected, got):
            assert ce == cg and np.array_equal(ie, ig)
        rows = np.load(tmp_path / f"{info.name}.rows")
        assert len(rows) == 29_000 and list(np.unique(rows["seg"])) == [0, 1, 2]


def test_damaged_approximate_index_is_refused_then_rebuilt(tmp_path):
    with IndexWriter.open(tmp_path, FakeEncoder()) as w:
        add(w, "/x/a.wav", 21_000, 0)
        approx.update_approx(w)
        name = approx.approx_info(w.manifest).name
    data = (tmp_path / f"{name}.faiss").read_bytes()
    (tmp_path / f"{name}.faiss").write_bytes(data[: len(data) // 2])
    with pytest.raises(IndexDamagedError, match=f"{name}.faiss is truncated"):
        approx.open_approx_table(IndexStore.open(tmp_path))
    with IndexWriter.open(tmp_path, FakeEncoder()) as w:
        assert w.manifest.approx is None and w.repaired == []  # derived data: dropped, no recording lost
        assert approx.update_approx(w) == "build"
    assert IndexStore.open(tmp_path).verify(full=True) == []


def test_columns_take_ids_and_arrays_of_ids(tmp_path):
    with IndexWriter.open(tmp_path, FakeEncoder()) as w:
        add(w, "/x/a.wav", 21_000, 0)
        approx.update_approx(w)
        add(w, "/x/b.wav", 100, 1)  # the tail
    _, table = exact_and_approx(tmp_path)
    ids = np.array([[0, 20_999], [21_000, 21_099]])
    assert table.file_ids[ids].tolist() == [[0, 0], [1, 1]] and table.file_ids[21_050] == 1
    np.testing.assert_allclose(table.starts[ids], [[0.0, 20_999 * 0.05], [0.0, 99 * 0.05]])
    np.testing.assert_allclose(table.ends[np.array([5, 21_005])], [5 * 0.05 + 0.5, 5 * 0.05 + 0.5])


def test_reader_retries_when_a_writer_replaced_the_approximate_index(tmp_path):
    """store._retrying is how open_for_search opens it."""
    with IndexWriter.open(tmp_path, FakeEncoder()) as w:
        add(w, "/x/a.wav", 21_000, 0)
        approx.update_approx(w)
        stale = IndexStore.open(tmp_path)  # a reader that read the manifest ...
        add(w, "/x/b.wav", 8000, 1)
        approx.update_approx(w)  # ... then the writer extended the index and collected the old files
    assert not (tmp_path / f"{approx.approx_info(stale.manifest).name}.faiss").exists()
    table = stale._retrying(lambda: approx.open_approx_table(stale))
    assert table.index.ntotal == 29_000
    (tmp_path / f"{approx.approx_info(stale.manifest).name}.rows").unlink()  # really gone: damaged, one line
    with pytest.raises(IndexDamagedError, match=r"approx-\d+\.rows is missing"):
        stale._retrying(lambda: approx.open_approx_table(stale))
