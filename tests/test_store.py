"""The on-disk index format: round trip, refusing other versions/encoders, lock, GC, tombstones, compaction."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np
import pytest

from awesearch.errors import IndexFormatError, IndexLockedError, IndexMissingError
from awesearch.features import FeatureConfig
from awesearch.store import (
    FORMAT_VERSION,
    MAGIC,
    MANIFEST_NAME,
    STATUS_INDEXED,
    STATUS_SKIPPED,
    FileRecord,
    IndexStore,
    check_encoder_matches,
)
from awesearch.indexer.writer import IndexWriter

DIM = 8


@dataclass
class FakeEncoder:
    """What the store needs from an encoder (no torch)."""

    name: str = "fake"
    checksum: str = "c0ffee" * 10
    dim: int = DIM
    feature_config: FeatureConfig = field(default_factory=FeatureConfig)
    frontend_block_s: float = 20.0  # a Whisper front end's


def unit_rows(n: int, seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).normal(size=(n, DIM)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def record(fid: int, path: str, windows: int, status: str = STATUS_INDEXED, **kw) -> FileRecord:
    base = dict(file_id=fid, path=path, size=100 + fid, mtime_ns=1000 + fid, content_hash=f"h{fid}", duration=3.0,
                status=status, error="" if status == STATUS_INDEXED else "bad", windows=windows)
    return FileRecord(**{**base, **kw})


def add_file(w: IndexWriter, path: str, n: int, seed: int) -> tuple[FileRecord, np.ndarray]:
    fid = w.new_file_id()
    vecs = unit_rows(n, seed)
    starts = np.arange(n) * 0.1
    w.add_windows(fid, vecs, starts, starts + 0.5)
    return record(fid, path, n), vecs


def test_round_trip(tmp_path):
    enc = FakeEncoder()
    with IndexWriter.open(tmp_path, enc) as w:
        ra, va = add_file(w, "/x/a.wav", 5, 0)
        rb, vb = add_file(w, "/x/b.wav", 3, 1)
        bad = record(w.new_file_id(), "/x/c.mp3", 0, STATUS_SKIPPED, error="not decodable as audio")
        w.commit([ra, rb, bad])
    manifest = json.loads((tmp_path / MANIFEST_NAME).read_text())
    assert manifest["magic"] == MAGIC and manifest["format_version"] == FORMAT_VERSION
    assert manifest["encoder_name"] == "fake" and manifest["encoder_checksum"] == enc.checksum
    assert manifest["dim"] == DIM and manifest["feature_config"]["n_mels"] == FeatureConfig().n_mels
    assert len(manifest["segments"]) == 1 and manifest["segments"][0]["windows"] == 8
    for seg in manifest["segments"]:
        assert (tmp_path / f"{seg['name']}.vec").is_file() and (tmp_path / f"{seg['name']}.parquet").is_file()

    store = IndexStore.open(tmp_path)
    files = {f.path: f for f in store.load_files()}
    assert files["/x/a.wav"] == ra and files["/x/c.mp3"].error == "not decodable as audio"
    data = store.load_search_data()
    assert data.index.ntotal == 8 and data.index.d == DIM
    assert data.paths == {ra.file_id: "/x/a.wav", rb.file_id: "/x/b.wav"}
    assert list(data.file_ids) == [ra.file_id] * 5 + [rb.file_id] * 3
    np.testing.assert_allclose(data.starts[:5], np.arange(5) * 0.1)
    np.testing.assert_allclose(data.ends - data.starts, 0.5)
    stored = np.concatenate([va, vb])  # int8 codes: at most half a step (max |x| / 127) off, plus fp16 rounding
    assert np.all(np.abs(data.index.reconstruct_n(0, 8) - stored) < np.abs(stored).max(1, keepdims=True) / 254 + 1e-3)
    scores, ids = data.index.search(vb[1:2], 1)
    assert ids[0, 0] == 6 and scores[0, 0] == pytest.approx(1.0, abs=5e-3)  # inner product of unit vectors

    stats = store.stats()
    assert (stats.files, stats.windows, len(stats.skipped)) == (2, 8, 1)
    assert stats.audio_s == pytest.approx(6.0) and stats.size_bytes > 0 and stats.encoder_name == "fake"


def test_open_for_search_gives_a_window_table(tmp_path, random_encoder):
    from awesearch.store import open_for_search

    with IndexWriter.open(tmp_path, random_encoder) as w:
        fid = w.new_file_id()
        w.add_windows(fid, unit_rows(4, 0).repeat(random_encoder.dim // DIM, axis=1), np.zeros(4), np.ones(4))
        w.commit([record(fid + 0, "/x/z.wav", 4)])
    table, encoder, phone = open_for_search(tmp_path)
    assert phone is None  # the random encoder has no phonetic front end
    assert encoder.checksum == random_encoder.checksum
    assert table.index.ntotal == 4 and table.paths == ["/x/z.wav"] and list(table.file_ids) == [0] * 4


def test_uncommitted_windows_are_invisible_and_collected(tmp_path):
    enc = FakeEncoder()
    with IndexWriter.open(tmp_path, enc) as w:
        r, _ = add_file(w, "/x/a.wav", 4, 0)
        w.commit([r])
    before = sorted(p.name for p in tmp_path.iterdir())
    w = IndexWriter.open(tmp_path, enc)
    r2, _ = add_file(w, "/x/b.wav", 6, 1)
    w._flush()  # a segment is on disk, as when a writer dies just before its commit
    (tmp_path / ".seg-000099.vec.tmp-123").write_bytes(b"partial")
    w.close()  # "killed": no commit
    assert IndexStore.open(tmp_path).load_search_data().index.ntotal == 4
    with IndexWriter.open(tmp_path, enc):  # the next writer removes the debris
        pass
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_failed_file_windows_are_dropped(tmp_path):
    enc = FakeEncoder()
    with IndexWriter.open(tmp_path, enc) as w:
        r, _ = add_file(w, "/x/a.wav", 4, 0)
        dead = w.new_file_id()
        w.add_windows(dead, unit_rows(3, 2), np.zeros(3), np.ones(3))
        w.drop_pending(dead)
        w.commit([r])
    store = IndexStore.open(tmp_path)
    assert store.manifest.segments[0].windows == 4


def test_replace_and_remove_leave_tombstones_then_compaction(tmp_path):
    enc = FakeEncoder()
    with IndexWriter.open(tmp_path, enc) as w:
        ra, _ = add_file(w, "/x/a.wav", 5, 0)
        rb, _ = add_file(w, "/x/b.wav", 5, 1)
        w.commit([ra, rb])
        ra2, va2 = add_file(w, "/x/a.wav", 3, 2)  # a changed: new file id, same path
        w.commit([ra2])
        data = IndexStore.open(tmp_path).load_search_data()
        assert data.index.ntotal == 8 and set(data.paths.values()) == {"/x/a.wav", "/x/b.wav"}
        assert ra.file_id not in set(data.file_ids.tolist())
        w.commit([], removed_paths={"/x/b.wav"})
        assert IndexStore.open(tmp_path).load_search_data().index.ntotal == 3
        assert w.needs_compaction()  # 10 of 13 stored windows are dead
        w.compact()
        assert not w.needs_compaction()
    store = IndexStore.open(tmp_path)
    assert [s.windows for s in store.manifest.segments] == [3]
    data = store.load_search_data()
    np.testing.assert_allclose(data.index.reconstruct_n(0, 3), va2, atol=4e-3)  # int8 codes: half a step of max |x| / 127 (<= 0.0039 for unit vectors)
    assert {p.name for p in tmp_path.glob("seg-*")} == {f"{store.manifest.segments[0].name}.{e}" for e in ("vec", "parquet")}


def test_refuses_other_format_version(tmp_path):
    with IndexWriter.open(tmp_path, FakeEncoder()) as w:
        w.commit([])
    m = json.loads((tmp_path / MANIFEST_NAME).read_text())
    m["format_version"] = FORMAT_VERSION + 1
    (tmp_path / MANIFEST_NAME).write_text(json.dumps(m))
    with pytest.raises(IndexFormatError, match="format version .*re-index"):
        IndexStore.open(tmp_path)
    with pytest.raises(IndexFormatError, match="re-index"):
        IndexWriter.open(tmp_path, FakeEncoder())


def test_refuses_other_encoder(tmp_path):
    with IndexWriter.open(tmp_path, FakeEncoder()) as w:
        w.commit([])
    for other in (FakeEncoder(checksum="beef" * 16), FakeEncoder(name="other"), FakeEncoder(dim=16),
                  FakeEncoder(feature_config=FeatureConfig(n_mels=40))):
        with pytest.raises(IndexFormatError, match="re-index"):
            IndexWriter.open(tmp_path, other)
    IndexWriter.open(tmp_path, FakeEncoder()).close()  # the lock was released on every refusal


def test_refuses_vectors_of_other_frontend_blocks(tmp_path):
    """The same checkpoint with Whisper blocks of another length (or the log-mel front end) makes other
    vectors: the index says which it holds and asks for a re-index, for writing and for searching."""
    with IndexWriter.open(tmp_path, FakeEncoder()) as w:
        w.commit([])
    assert json.loads((tmp_path / MANIFEST_NAME).read_text())["frontend_block_s"] == 20.0
    for block_s, says in ((30.0, "Whisper frames of 20 s blocks, this awesearch encodes Whisper frames of 30 s blocks"),
                          (0.0, "this awesearch encodes log-mel frames")):
        with pytest.raises(IndexFormatError, match=says + ".*re-index"):
            IndexWriter.open(tmp_path, FakeEncoder(frontend_block_s=block_s))
        with pytest.raises(IndexFormatError, match=says):
            check_encoder_matches(IndexStore.open(tmp_path).manifest, FakeEncoder(frontend_block_s=block_s), tmp_path)
    IndexWriter.open(tmp_path, FakeEncoder()).close()


def test_damaged_or_missing(tmp_path):
    with pytest.raises(IndexMissingError, match="no index"):
        IndexStore.open(tmp_path / "nothing")
    tmp_path.joinpath(MANIFEST_NAME).write_text("{ not json")
    with pytest.raises(IndexFormatError, match="damaged"):
        IndexStore.open(tmp_path)
    tmp_path.joinpath(MANIFEST_NAME).write_text(json.dumps({"magic": "something-else"}))
    with pytest.raises(IndexFormatError, match="not an awesearch index"):
        IndexStore.open(tmp_path)


def test_lock(tmp_path):
    first = IndexWriter.open(tmp_path, FakeEncoder())
    with pytest.raises(IndexLockedError, match="^index is locked"):
        IndexWriter.open(tmp_path, FakeEncoder())
    first.commit([])
    assert IndexStore.open(tmp_path).manifest.generation == 1  # readers do not need the lock
    first.close()
    IndexWriter.open(tmp_path, FakeEncoder()).close()


@pytest.mark.slow
def test_lock_across_processes(tmp_path):
    import subprocess
    import sys

    first = IndexWriter.open(tmp_path, FakeEncoder())
    code = (
        "import sys; sys.path[:0] = sys.argv[2:]\n"
        "from test_store import FakeEncoder\n"
        "from awesearch.indexer.writer import IndexWriter\n"
        "from awesearch.errors import IndexLockedError\n"
        "try:\n    IndexWriter.open(sys.argv[1], FakeEncoder())\nexcept IndexLockedError as e:\n    print(e); sys.exit(3)\n"
    )
    from pathlib import Path

    here = Path(__file__).parent
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path), str(here), str(here.parent)], capture_output=True, text=True)
    first.close()
    assert proc.returncode == 3 and proc.stdout.startswith("index is locked"), proc.stderr


@pytest.mark.slow
def test_many_small_segments_are_merged(tmp_path):
    from awesearch.store import COMPACT_MIN_SEGMENTS

    enc = FakeEncoder()
    with IndexWriter.open(tmp_path, enc) as w:
        for i in range(COMPACT_MIN_SEGMENTS + 2):
            r, _ = add_file(w, f"/x/{i}.wav", 3, i)
            w.commit([r])
        before = IndexStore.open(tmp_path).load_search_data()
        assert len(w.manifest.segments) == COMPACT_MIN_SEGMENTS + 2 and w.needs_compaction()
        w.compact()
        assert len(w.manifest.segments) == 1 and not w.needs_compaction()
    after = IndexStore.open(tmp_path).load_search_data()
    assert after.paths == before.paths and after.index.ntotal == before.index.ntotal
    np.testing.assert_array_equal(after.index.reconstruct_n(0, after.index.ntotal), before.index.reconstruct_n(0, before.index.ntotal))
    assert len(list(tmp_path.glob("seg-*"))) == 2


def test_reader_retries_when_a_writer_collected_its_files(tmp_path):
    enc = FakeEncoder()
    with IndexWriter.open(tmp_path, enc) as w:
        r, _ = add_file(w, "/x/a.wav", 4, 0)
        w.commit([r])
    stale = IndexStore.open(tmp_path)  # a reader that read the manifest ...
    with IndexWriter.open(tmp_path, enc) as w:  # ... then a writer replaced everything and collected the old files
        r2, _ = add_file(w, "/x/a.wav", 2, 1)
        w.commit([r2])
        w.compact()
    assert not (tmp_path / f"{stale.manifest.segments[0].name}.vec").exists()
    assert stale.load_search_data().index.ntotal == 2  # re-read the manifest and got the new state
