"""Integrity: checksums of every data file, damage refused with one line, repair by re-indexing, full disks."""

from __future__ import annotations

import errno
import json
import os
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from awesearch import store as store_module
from awesearch.errors import IndexDamagedError, IndexWriteError
from awesearch.store import MANIFEST_NAME, STATUS_INDEXED, STATUS_SKIPPED, IndexStore
from awesearch.cli import app
from helpers import truncate
from awesearch.indexer import index_paths
from test_indexer import assert_same_index

runner = CliRunner()


def run(root, idx, **kw):
    return index_paths([root], idx, model="random", commit_interval_s=0.0, **kw)  # a commit (and segment) per file


def flip_byte(path: Path, at_fraction: float = 0.6) -> None:
    data = bytearray(path.read_bytes())
    data[int(len(data) * at_fraction)] ^= 0x40
    path.write_bytes(bytes(data))


def segment_of(idx: Path, name: str) -> str:
    """The segment holding the windows of the recording called `name` (one segment per file here)."""
    store = IndexStore.open(idx)
    fid = next(f.file_id for f in store.load_files() if Path(f.path).name == name)
    seg = next(s for s in store.manifest.segments if s.file_id_min == fid == s.file_id_max)
    return seg.name


@pytest.fixture
def indexed(corpus, tmp_path):
    idx = tmp_path / "idx"
    assert run(corpus, idx).indexed == 3
    return idx


def test_help():
    for command, words in (("check", ["checksums", "exit 1", "--index"]), ("index", ["--verify", "--cluster"])):
        result = runner.invoke(app, [command, "--help"])
        assert result.exit_code == 0 and all(w in result.output for w in words), result.output


def test_every_data_file_has_a_checksum(indexed):
    m = json.loads((indexed / MANIFEST_NAME).read_text())
    store = IndexStore.open(indexed)
    assert len(m["segments"]) == 3 and set(m["checksums"]) == set(store.data_names())
    for name, entry in m["checksums"].items():
        assert entry["size"] == (indexed / name).stat().st_size and len(entry["crc32"]) == 8
    assert store.verify(full=True) == [] and store.unchecksummed() == []
    result = runner.invoke(app, ["check", "--index", str(indexed)])
    assert result.exit_code == 0 and result.output.startswith("ok: 10 files"), result.output  # files table, 3 segments x 2, 3 speaker tables


@pytest.mark.parametrize(
    "damage, problem",
    [
        (lambda p: flip_byte(p), "fails its checksum"),
        (lambda p: truncate(p, 0.7), "is truncated"),
        (lambda p: p.unlink(), "is missing"),
    ],
    ids=["bit-flip", "truncated", "missing"],
)
def test_damaged_segment_is_refused_with_one_line(indexed, damage, problem):
    name = f"{segment_of(indexed, 'b.flac')}.vec"
    damage(indexed / name)
    with pytest.raises(IndexDamagedError, match=f"{name} {problem}.*awesearch index --verify. on the same folders"):
        IndexStore.open(indexed).load_search_data()
    checked = runner.invoke(app, ["check", "--index", str(indexed)])
    assert checked.exit_code == 1 and f"damaged: {name} {problem}" in checked.output
    queried = runner.invoke(app, ["query", "--text", "prince", "--index", str(indexed)])
    assert queried.exit_code == 1 and queried.output.count("\n") == 1 and name in queried.output
    assert "Traceback" not in queried.output


@pytest.mark.parametrize("which", ["vec", "parquet"])
def test_reindexing_re_embeds_exactly_the_lost_recordings(corpus, indexed, tmp_path, which):
    name = f"{segment_of(indexed, 'b.flac')}.{which}"
    flip_byte(indexed / name)
    report = run(corpus, indexed)  # small index: every byte is verified at open
    assert [Path(p).name for p in report.repaired] == ["b.flac"] and report.lost == []
    assert report.indexed == 1 and report.unchanged == 2
    assert IndexStore.open(indexed).verify(full=True) == [] and not (indexed / name).exists()
    clean = tmp_path / "clean"
    run(corpus, clean)
    assert_same_index(indexed, clean)


def test_lost_recordings_outside_the_given_paths_are_kept_as_skipped(corpus, indexed):
    flip_byte(indexed / f"{segment_of(indexed, 'a.wav')}.vec")
    report = run(corpus / "sub", indexed)  # a.wav is not under sub/
    assert [Path(p).name for p in report.lost] == ["a.wav"] and report.indexed == 0
    files = {Path(f.path).name: f for f in IndexStore.open(indexed).load_files()}
    assert files["a.wav"].status == STATUS_SKIPPED and "index data was lost" in files["a.wav"].error
    assert files["b.flac"].status == STATUS_INDEXED
    assert run(corpus, indexed).indexed == 1  # indexing its folder brings it back


def test_damaged_files_table_re_embeds_everything(corpus, indexed):
    flip_byte(indexed / IndexStore.open(indexed).manifest.files_table, 0.5)
    with pytest.raises(IndexDamagedError, match="files-.*fails its checksum"):
        IndexStore.open(indexed).load_files()
    result = runner.invoke(app, ["index", str(corpus), "--index", str(indexed), "--model", "random", "--quiet", "--verify"])
    assert result.exit_code == 0 and "3 indexed, 0 unchanged" in result.output, result.output
    assert IndexStore.open(indexed).verify(full=True) == []


def test_cheap_check_finds_sizes_and_the_files_table(indexed):
    name = f"{segment_of(indexed, 'a.wav')}.vec"
    flip_byte(indexed / name)
    store = IndexStore.open(indexed)
    assert store.verify(full=False) == []  # a cheap check reads no segment ...
    assert [d.name for d in store.verify(full=True)] == [name]  # ... a full one every byte
    truncate(indexed / name, 0.9)
    assert [(d.name, d.problem[:12]) for d in store.verify(full=False)] == [(name, "is truncated")]
    table = store.manifest.files_table
    flip_byte(indexed / table)
    assert [d.name for d in store.verify(full=False)] == [table, name]  # the table is read in full even cheaply


def test_simulated_write_error_keeps_the_committed_index(corpus, tmp_path, monkeypatch):
    idx = tmp_path / "idx"
    real_publish = store_module._publish
    calls = []

    def failing_publish(tmp, final):
        calls.append(final.name)
        if final.name.startswith("seg-") and sum(c.startswith("seg-") for c in calls) > 2:  # the second file's segment
            raise OSError(errno.ENOSPC, "No space left on device")
        real_publish(tmp, final)

    monkeypatch.setattr(store_module, "_publish", failing_publish)
    with pytest.raises(IndexWriteError) as e:
        run(corpus, idx)
    assert str(e.value) == f"disk full writing {idx}: 1 files committed, the index is intact; free space and re-run"
    store = IndexStore.open(idx)
    assert store.verify(full=True) == [] and len(store.load_search_data().paths) == 1
    assert not [p for p in idx.iterdir() if ".tmp-" in p.name]  # the partial temp file was removed
    monkeypatch.setattr(store_module, "_publish", real_publish)
    assert run(corpus, idx).indexed == 2


def _mount_tmpfs(where: Path, size: str) -> bool:
    where.mkdir()
    if os.geteuid() != 0:
        return False
    return subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)], capture_output=True).returncode == 0


def test_full_tmpfs_ends_in_one_line_and_keeps_the_index(corpus, tmp_path):
    disk = tmp_path / "small"
    if not _mount_tmpfs(disk, "4m"):
        pytest.skip("mounting a tmpfs needs root")
    try:
        idx = disk / "idx"
        first = runner.invoke(app, ["index", str(corpus / "a.wav"), "--index", str(idx), "--model", "random", "--quiet"])
        assert first.exit_code == 0, first.output
        before = IndexStore.open(idx).load_search_data()
        free = os.statvfs(disk).f_bavail * os.statvfs(disk).f_frsize
        (disk / "filler").write_bytes(b"\0" * (free - 16 * 1024))  # leave 16 KB: too little for the next segment
        result = runner.invoke(app, ["index", str(corpus), "--index", str(idx), "--model", "random", "--quiet"])
        assert result.exit_code == 1
        assert result.output.strip().splitlines()[-1] == (
            f"awesearch: disk full writing {idx}: 0 files committed, the index is intact; free space and re-run"
        )
        after = IndexStore.open(idx)
        assert after.verify(full=True) == []
        assert after.load_search_data().paths == before.paths
        (disk / "filler").unlink()
        again = runner.invoke(app, ["index", str(corpus), "--index", str(idx), "--model", "random", "--quiet"])
        assert again.exit_code == 0 and "2 indexed, 1 unchanged" in again.output, again.output
    finally:
        subprocess.run(["umount", "--lazy", str(disk)], check=False)  # lazy: an fd the CLI runner left open keeps it busy


def test_index_written_before_checksums_opens_and_gains_them(indexed):
    from awesearch.indexer.writer import IndexWriter

    path = indexed / MANIFEST_NAME
    m = json.loads(path.read_text())
    del m["checksums"], m["approx"]
    for seg in m["segments"]:
        del seg["file_id_min"], seg["file_id_max"]
    path.write_text(json.dumps(m))
    store = IndexStore.open(indexed)
    assert store.unchecksummed() == store.data_names() and store.verify(full=True) == []
    assert len(store.load_search_data().paths) == 3
    result = runner.invoke(app, ["check", "--index", str(indexed)])
    assert result.exit_code == 0 and "10 without checksums" in result.output  # with the 3 speaker tables
    from awesearch.encoder import load_encoder

    with IndexWriter.open(indexed, load_encoder("random")) as w:
        w.commit([])
    assert IndexStore.open(indexed).unchecksummed() == []
