"""The on-disk index: a manifest, immutable FAISS + Parquet segments, a files table, a writer lock.

Layout of an index directory:
    manifest.json          magic, format version, encoder (name, checksum, dim), feature config, the live
                           segments and the current files table; replaced atomically on every commit
    seg-NNNNNN.faiss       window vectors, float16 (IndexScalarQuantizer QT_fp16, inner product), row order
    seg-NNNNNN.parquet     one row per window: file_id, start_s, end_s (same row order as the .faiss)
    files-NNNNNN.parquet   one row per file: file_id, path, size, mtime_ns, content_hash, duration_s,
                           status ("indexed" | "skipped"), error, windows
    index.lock             flock'd by the one writer; readers never lock

A window is live when its file_id is in the files table with status "indexed"; a changed or deleted
file's old windows are therefore dead the moment the manifest names a table without them (tombstones),
and compaction rewrites segments to drop them. Every file is written to a fresh name (temp, fsync,
os.replace, fsync of the directory) and only then referenced by a new manifest, so a writer killed at
any moment leaves the previous manifest and everything it names intact; unreferenced files are removed
by the next writer.
"""

from __future__ import annotations

import datetime as _dt
import fcntl
import json
import os
import re
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np

from .errors import IndexFormatError, IndexLockedError, IndexMissingError

if TYPE_CHECKING:  # heavy imports stay out of module import time
    import faiss

MAGIC = "awesearch-index"
FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"
LOCK_NAME = "index.lock"
DEFAULT_INDEX_DIR = ".awesearch"
INDEX_ENV = "AWESEARCH_INDEX"
SEGMENT_MAX_WINDOWS = 250_000  # windows per segment file before a writer starts the next one
COMPACT_MIN_SEGMENTS = 16  # compact when there are more segments than this ...
COMPACT_DEAD_FRACTION = 0.25  # ... or when this share of stored windows is dead
READ_RETRIES = 3  # a reader re-reads the manifest when a writer garbage-collected what it named
STATUS_INDEXED = "indexed"
STATUS_SKIPPED = "skipped"
_OWN_FILE = re.compile(r"^(seg-\d{6}\.(faiss|parquet)|files-\d{6}\.parquet|\..*\.tmp-\d+)$")


def default_index_dir() -> Path:
    """$AWESEARCH_INDEX, or ./.awesearch."""
    return Path(os.environ.get(INDEX_ENV) or DEFAULT_INDEX_DIR)


@dataclass
class FileRecord:
    """One recording as the index knows it."""

    file_id: int
    path: str  # absolute path as scanned (symlinks not resolved)
    size: int  # bytes
    mtime_ns: int  # st_mtime_ns
    content_hash: str  # sha256 hex of the file's bytes ("" when it could not be read)
    duration: float  # seconds of audio (0 when skipped before decoding)
    status: str  # STATUS_INDEXED or STATUS_SKIPPED
    error: str = ""  # one-line reason when skipped
    windows: int = 0  # live windows of this file


@dataclass
class SegmentInfo:
    name: str  # "seg-000001": the stem of the .faiss and .parquet pair
    windows: int  # rows in the segment (live and dead)


@dataclass
class Manifest:
    encoder_name: str
    encoder_checksum: str
    dim: int
    feature_config: dict
    encoder_source: str  # what to pass to load_encoder to get this encoder back (name or absolute path)
    segments: list[SegmentInfo] = field(default_factory=list)
    files_table: str | None = None  # "files-000003.parquet"; None until the first commit
    next_number: int = 1  # next seg-/files- number
    next_file_id: int = 0
    generation: int = 0  # commits so far
    created: str = ""
    updated: str = ""

    def to_json(self) -> str:
        d = {"magic": MAGIC, "format_version": FORMAT_VERSION, **asdict(self)}
        return json.dumps(d, indent=1, sort_keys=True)

    @classmethod
    def from_json(cls, text: str, where: Path) -> "Manifest":
        try:
            d = json.loads(text)
        except json.JSONDecodeError as e:
            raise IndexFormatError(f"index manifest {where} is damaged ({e.msg}); re-index into a new directory") from None
        if not isinstance(d, dict) or d.get("magic") != MAGIC:
            raise IndexFormatError(f"{where} is not an awesearch index manifest; re-index into a new directory")
        if d.get("format_version") != FORMAT_VERSION:
            raise IndexFormatError(
                f"index {where.parent} has format version {d.get('format_version')}, this awesearch reads version "
                f"{FORMAT_VERSION}: re-index (delete {where.parent} and run awesearch index again)"
            )
        try:
            d["segments"] = [SegmentInfo(**s) for s in d["segments"]]
            return cls(**{f.name: d[f.name] for f in fields(cls)})
        except (KeyError, TypeError) as e:
            raise IndexFormatError(f"index manifest {where} is damaged ({e}); re-index into a new directory") from None


@dataclass
class SearchData:
    """All live windows of an index, ready to search."""

    index: "faiss.Index"  # IndexScalarQuantizer fp16, inner product; row i is window i
    file_ids: np.ndarray  # [n] int64
    starts: np.ndarray  # [n] float64 seconds
    ends: np.ndarray  # [n] float64 seconds
    paths: dict[int, str]  # file_id -> absolute path


@dataclass
class IndexStats:
    files: int  # indexed files
    audio_s: float  # seconds of audio in indexed files
    windows: int  # live windows
    stored_windows: int  # rows in segments, live and dead
    skipped: list[FileRecord]
    size_bytes: int  # manifest + files the manifest names
    encoder_name: str
    encoder_checksum: str
    dim: int
    segments: int
    updated: str


# -- files ------------------------------------------------------------------------------------


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _tmp_name(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


def _publish(tmp: Path, final: Path) -> None:
    """fsync a fully written temp file, rename it into place, fsync the directory."""
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())
    os.replace(tmp, final)
    _fsync_dir(final.parent)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    tmp = _tmp_name(path)
    with open(tmp, "wb") as f:
        f.write(data)
    _publish(tmp, path)


def _write_parquet(path: Path, columns: dict[str, np.ndarray | list], schema) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table({k: pa.array(v, type=schema.field(k).type) for k, v in columns.items()}, schema=schema)
    tmp = _tmp_name(path)
    pq.write_table(table, tmp)
    _publish(tmp, path)


def _window_schema():
    import pyarrow as pa

    return pa.schema([("file_id", pa.int64()), ("start_s", pa.float64()), ("end_s", pa.float64())])


def _files_schema():
    import pyarrow as pa

    return pa.schema(
        [
            ("file_id", pa.int64()),
            ("path", pa.string()),
            ("size", pa.int64()),
            ("mtime_ns", pa.int64()),
            ("content_hash", pa.string()),
            ("duration_s", pa.float64()),
            ("status", pa.string()),
            ("error", pa.string()),
            ("windows", pa.int64()),
        ]
    )


def _new_flat_index(dim: int) -> "faiss.Index":
    import faiss

    return faiss.IndexScalarQuantizer(dim, faiss.ScalarQuantizer.QT_fp16, faiss.METRIC_INNER_PRODUCT)


def _codes_of(index: "faiss.Index") -> np.ndarray:
    """The fp16 vectors of an IndexScalarQuantizer as a [n, dim] float16 view of its codes."""
    import faiss

    return faiss.vector_to_array(index.codes).view(np.float16).reshape(index.ntotal, index.d)


def _index_from_fp16(vectors: np.ndarray) -> "faiss.Index":
    vectors = np.ascontiguousarray(vectors, dtype=np.float16)
    index = _new_flat_index(vectors.shape[1])
    if len(vectors):
        index.add_sa_codes(vectors.view(np.uint8).reshape(len(vectors), -1))
    return index


def _write_segment(directory: Path, name: str, vectors: np.ndarray, file_ids, starts, ends) -> SegmentInfo:
    """Write seg-N.parquet and seg-N.faiss (both durable) and describe them; nothing references them yet."""
    import faiss

    n = len(vectors)
    if not (len(file_ids) == len(starts) == len(ends) == n):
        raise ValueError("segment columns differ in length")
    _write_parquet(
        directory / f"{name}.parquet",
        {"file_id": np.asarray(file_ids, np.int64), "start_s": np.asarray(starts, np.float64), "end_s": np.asarray(ends, np.float64)},
        _window_schema(),
    )
    path = directory / f"{name}.faiss"
    tmp = _tmp_name(path)
    faiss.write_index(_index_from_fp16(vectors), str(tmp))
    _publish(tmp, path)
    return SegmentInfo(name=name, windows=n)


# -- reading ----------------------------------------------------------------------------------


class IndexStore:
    """A read-only view of one committed state of an index (readers take no lock)."""

    def __init__(self, directory: Path, manifest: Manifest):
        self.directory = directory
        self.manifest = manifest

    @classmethod
    def open(cls, directory: str | os.PathLike) -> "IndexStore":
        directory = Path(directory)
        path = directory / MANIFEST_NAME
        try:
            text = path.read_text()
        except FileNotFoundError:
            raise IndexMissingError(f"no index at {directory} (run `awesearch index PATH` first)") from None
        except OSError as e:
            raise IndexMissingError(f"cannot read index at {directory}: {e.strerror or e}") from None
        return cls(directory, Manifest.from_json(text, path))

    def _reopen(self) -> None:
        self.manifest = IndexStore.open(self.directory).manifest

    def _retrying(self, fn):
        """Run fn against the current manifest; if a file it names vanished (a writer's GC), re-read and retry."""
        for attempt in range(READ_RETRIES):
            try:
                return fn()
            except FileNotFoundError as e:
                if attempt == READ_RETRIES - 1:
                    raise IndexFormatError(f"index {self.directory} is damaged: {e.filename} is missing") from None
                self._reopen()

    def load_files(self) -> list[FileRecord]:
        return self._retrying(self._load_files)

    def _load_files(self) -> list[FileRecord]:
        import pyarrow.parquet as pq

        if self.manifest.files_table is None:
            return []
        t = pq.read_table(self.directory / self.manifest.files_table).to_pydict()
        return [
            FileRecord(
                file_id=t["file_id"][i],
                path=t["path"][i],
                size=t["size"][i],
                mtime_ns=t["mtime_ns"][i],
                content_hash=t["content_hash"][i],
                duration=t["duration_s"][i],
                status=t["status"][i],
                error=t["error"][i],
                windows=t["windows"][i],
            )
            for i in range(len(t["file_id"]))
        ]

    def live_file_ids(self, files: list[FileRecord] | None = None) -> np.ndarray:
        files = self.load_files() if files is None else files
        return np.asarray(sorted(f.file_id for f in files if f.status == STATUS_INDEXED), np.int64)

    def read_segment(self, seg: SegmentInfo) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(vectors fp16 [n, dim], file_ids, starts, ends) of one segment, live and dead rows alike."""
        import faiss
        import pyarrow.parquet as pq

        t = pq.read_table(self.directory / f"{seg.name}.parquet")
        index = faiss.read_index(str(self.directory / f"{seg.name}.faiss"))
        if index.ntotal != t.num_rows or index.ntotal != seg.windows or index.d != self.manifest.dim:
            raise IndexFormatError(
                f"index {self.directory} is damaged: segment {seg.name} has {index.ntotal} vectors of dim {index.d}, "
                f"{t.num_rows} rows, manifest says {seg.windows} of dim {self.manifest.dim}"
            )
        return (
            _codes_of(index),
            t.column("file_id").to_numpy(),
            t.column("start_s").to_numpy(),
            t.column("end_s").to_numpy(),
        )

    def load_search_data(self) -> SearchData:
        """A FAISS index over all live windows plus their file ids, start/end seconds and the file paths."""
        return self._retrying(self._load_search_data)

    def _load_search_data(self) -> SearchData:
        files = self._load_files()
        live = self.live_file_ids(files)
        n_live = sum(f.windows for f in files if f.status == STATUS_INDEXED)
        dim = self.manifest.dim
        vectors = np.empty((n_live, dim), np.float16)
        file_ids = np.empty(n_live, np.int64)
        starts = np.empty(n_live, np.float64)
        ends = np.empty(n_live, np.float64)
        at = 0
        for seg in self.manifest.segments:
            v, f, s, e = self.read_segment(seg)
            keep = np.isin(f, live)
            k = int(keep.sum())
            if at + k > n_live:
                raise IndexFormatError(f"index {self.directory} is damaged: more live windows than the files table counts")
            vectors[at : at + k], file_ids[at : at + k] = v[keep], f[keep]
            starts[at : at + k], ends[at : at + k] = s[keep], e[keep]
            at += k
        if at != n_live:
            raise IndexFormatError(f"index {self.directory} is damaged: {at} live windows, the files table counts {n_live}")
        paths = {f.file_id: f.path for f in files if f.status == STATUS_INDEXED}
        return SearchData(index=_index_from_fp16(vectors), file_ids=file_ids, starts=starts, ends=ends, paths=paths)

    def referenced_names(self) -> set[str]:
        names = {MANIFEST_NAME}
        if self.manifest.files_table:
            names.add(self.manifest.files_table)
        for seg in self.manifest.segments:
            names |= {f"{seg.name}.faiss", f"{seg.name}.parquet"}
        return names

    def stats(self) -> IndexStats:
        files = self.load_files()
        indexed = [f for f in files if f.status == STATUS_INDEXED]
        size = 0
        for name in self.referenced_names():
            try:
                size += (self.directory / name).stat().st_size
            except FileNotFoundError:
                pass  # a concurrent writer replaced it; the size is a snapshot anyway
        m = self.manifest
        return IndexStats(
            files=len(indexed),
            audio_s=float(sum(f.duration for f in indexed)),
            windows=int(sum(f.windows for f in indexed)),
            stored_windows=int(sum(s.windows for s in m.segments)),
            skipped=[f for f in files if f.status == STATUS_SKIPPED],
            size_bytes=size,
            encoder_name=m.encoder_name,
            encoder_checksum=m.encoder_checksum,
            dim=m.dim,
            segments=len(m.segments),
            updated=m.updated,
        )


def open_for_search(index_dir: str | os.PathLike):
    """(awesearch.search.WindowTable, Encoder) for an index: loads the encoder the manifest names and checks
    its checksum. File ids in the table are dense indices into table.paths."""
    from .encoder import load_encoder
    from .search import WindowTable

    store = IndexStore.open(index_dir)
    m = store.manifest
    encoder = load_encoder(m.encoder_source)
    check_encoder_matches(m, encoder, Path(index_dir))
    data = store.load_search_data()
    ids = sorted(data.paths)
    dense = np.searchsorted(np.asarray(ids, np.int64), data.file_ids)
    table = WindowTable(index=data.index, file_ids=dense, starts=data.starts, ends=data.ends, paths=[data.paths[i] for i in ids])
    return table, encoder


def check_encoder_matches(manifest: Manifest, encoder, directory: Path) -> None:
    """IndexFormatError unless the encoder is the one that built the index."""
    fc = asdict(encoder.feature_config)
    same = (
        manifest.encoder_name == encoder.name
        and manifest.encoder_checksum == encoder.checksum
        and manifest.dim == encoder.dim
        and manifest.feature_config == fc
    )
    if not same:
        raise IndexFormatError(
            f"index {directory} was built with encoder {manifest.encoder_name} ({manifest.encoder_checksum[:12]}), "
            f"not {encoder.name} ({encoder.checksum[:12]}): re-index into a new --index directory or delete {directory}"
        )


# -- writing ----------------------------------------------------------------------------------


def acquire_lock(directory: str | os.PathLike) -> int:
    """Create the index directory if needed and take its writer lock; returns the fd that holds it.
    IndexLockedError at once when another writer has it."""
    directory = Path(directory)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        fd = os.open(directory / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
        raise IndexMissingError(f"cannot create index at {directory}: {e.strerror or e}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise IndexLockedError(f"index is locked: another awesearch indexer is writing {directory}") from None
    return fd


class IndexWriter:
    """The single writer of an index directory: holds the lock, buffers windows, commits atomically.

    Usage:
        with IndexWriter.open(dir, encoder) as w:
            fid = w.new_file_id()
            w.add_windows(fid, vectors, starts, ends)      # as many times as needed
            w.commit(records=[FileRecord(file_id=fid, ...)], removed_paths=set())
    Windows of a file become visible only when a commit lists its record with status "indexed".
    """

    def __init__(self, directory: Path, manifest: Manifest, lock_fd: int):
        self.directory = directory
        self.manifest = manifest
        self._lock_fd = lock_fd
        self._files = {f.path: f for f in IndexStore(directory, manifest).load_files()}
        self._pending: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []
        self._pending_n = 0
        self._new_segments: list[SegmentInfo] = []  # written, not yet in a committed manifest

    @classmethod
    def open(cls, directory: str | os.PathLike, encoder, source: str | None = None, lock_fd: int | None = None) -> "IndexWriter":
        """Lock (unless lock_fd from acquire_lock is given), check or create the manifest, collect garbage.

        source: what load_encoder should be given to get the encoder back (default: its name)."""
        directory = Path(directory)
        fd = acquire_lock(directory) if lock_fd is None else lock_fd
        try:
            if (directory / MANIFEST_NAME).exists():
                manifest = IndexStore.open(directory).manifest
                check_encoder_matches(manifest, encoder, directory)
            else:
                now = _now()
                manifest = Manifest(
                    encoder_name=encoder.name,
                    encoder_checksum=encoder.checksum,
                    dim=int(encoder.dim),
                    feature_config=asdict(encoder.feature_config),
                    encoder_source=source or encoder.name,
                    created=now,
                    updated=now,
                )
            writer = cls(directory, manifest, fd)
            writer.collect_garbage()
            return writer
        except BaseException:
            os.close(fd)
            raise

    def close(self) -> None:
        if self._lock_fd >= 0:
            os.close(self._lock_fd)  # releases the flock
            self._lock_fd = -1

    def __enter__(self) -> "IndexWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # state ---------------------------------------------------------------------------------

    @property
    def files(self) -> dict[str, FileRecord]:
        """Committed files by path."""
        return dict(self._files)

    def new_file_id(self) -> int:
        fid = self.manifest.next_file_id
        self.manifest.next_file_id += 1
        return fid

    def _next_name(self, prefix: str) -> str:
        n = self.manifest.next_number
        self.manifest.next_number += 1
        return f"{prefix}-{n:06d}"

    # windows -------------------------------------------------------------------------------

    def add_windows(self, file_id: int, vectors: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> None:
        """Buffer windows of a file (vectors [n, dim], L2-normalised); flushed to segment files as they fill."""
        vectors = np.asarray(vectors)
        if vectors.ndim != 2 or vectors.shape[1] != self.manifest.dim:
            raise ValueError(f"vectors must be [n, {self.manifest.dim}], got {vectors.shape}")
        n = len(vectors)
        if n == 0:
            return
        self._pending.append(
            (vectors.astype(np.float16), np.full(n, file_id, np.int64), np.asarray(starts, np.float64), np.asarray(ends, np.float64))
        )
        self._pending_n += n
        if self._pending_n >= SEGMENT_MAX_WINDOWS:
            self._flush()

    def drop_pending(self, file_id: int) -> None:
        """Forget buffered windows of a file that failed half way (any already flushed stay dead rows)."""
        kept = []
        for p in self._pending:
            keep = p[1] != file_id
            if keep.any():
                kept.append(tuple(c[keep] for c in p))
        self._pending = kept
        self._pending_n = sum(len(p[0]) for p in kept)

    def _flush(self) -> None:
        if not self._pending:
            return
        cols = [np.concatenate([p[i] for p in self._pending]) for i in range(4)]
        self._pending, self._pending_n = [], 0
        self._new_segments.append(_write_segment(self.directory, self._next_name("seg"), *cols))

    def commit(
        self,
        records: list[FileRecord],
        removed_paths: set[str] | frozenset = frozenset(),
        before_publish: Callable[[], None] | None = None,
    ) -> None:
        """Atomically publish the buffered windows and the new file records (replacing records of the same
        path), and drop removed paths. After this returns, a crash keeps exactly this state.
        before_publish runs after every new file is durable and before the manifest names them (tests)."""
        self._flush()
        files = dict(self._files)
        for path in removed_paths:
            files.pop(path, None)
        for r in records:
            files[r.path] = r
        ordered = sorted(files.values(), key=lambda r: r.file_id)
        table_name = f"{self._next_name('files')}.parquet"
        _write_parquet(
            self.directory / table_name,
            {
                "file_id": [r.file_id for r in ordered],
                "path": [r.path for r in ordered],
                "size": [r.size for r in ordered],
                "mtime_ns": [r.mtime_ns for r in ordered],
                "content_hash": [r.content_hash for r in ordered],
                "duration_s": [float(r.duration) for r in ordered],
                "status": [r.status for r in ordered],
                "error": [r.error for r in ordered],
                "windows": [int(r.windows) for r in ordered],
            },
            _files_schema(),
        )
        if before_publish is not None:
            before_publish()
        m = self.manifest
        m.segments = m.segments + self._new_segments
        m.files_table = table_name
        m.generation += 1
        m.updated = _now()
        atomic_write_bytes(self.directory / MANIFEST_NAME, m.to_json().encode())
        self._new_segments = []
        self._files = files

    # maintenance ---------------------------------------------------------------------------

    def collect_garbage(self) -> list[str]:
        """Delete our files that the committed manifest does not name (left by a killed or finished writer)."""
        referenced = IndexStore(self.directory, self.manifest).referenced_names()
        referenced |= {f"{s.name}.{ext}" for s in self._new_segments for ext in ("faiss", "parquet")}
        removed = []
        for entry in os.scandir(self.directory):
            if entry.is_file(follow_symlinks=False) and _OWN_FILE.match(entry.name) and entry.name not in referenced:
                os.unlink(entry.path)
                removed.append(entry.name)
        return removed

    def _segment_live(self) -> list[tuple[SegmentInfo, int]]:
        """(segment, live windows in it) for every committed segment."""
        import pyarrow.parquet as pq

        live = IndexStore(self.directory, self.manifest).live_file_ids(list(self._files.values()))
        out = []
        for seg in self.manifest.segments:
            ids = pq.read_table(self.directory / f"{seg.name}.parquet", columns=["file_id"]).column("file_id").to_numpy()
            out.append((seg, int(np.isin(ids, live).sum())))
        return out

    def _compaction_victims(self) -> list[SegmentInfo]:
        """Segments worth rewriting: those with many dead windows, and the small ones once there are many."""
        stats = self._segment_live()
        dirty = [s for s, n in stats if s.windows and (s.windows - n) / s.windows > COMPACT_DEAD_FRACTION]
        small = [s for s, n in stats if s.windows < SEGMENT_MAX_WINDOWS // 2 and s not in dirty]
        return dirty + (small if len(small) > COMPACT_MIN_SEGMENTS else [])

    def needs_compaction(self) -> bool:
        return bool(self._compaction_victims())

    def compact(self) -> None:
        """Rewrite the victim segments keeping only live windows, packed into segments of up to
        SEGMENT_MAX_WINDOWS; other segments are left alone. Committed atomically like any other change."""
        if self._pending or self._new_segments:
            raise RuntimeError("commit before compacting")
        victims = self._compaction_victims()
        if not victims:
            return
        reader = IndexStore(self.directory, self.manifest)
        live = reader.live_file_ids(list(self._files.values()))
        for seg in victims:
            v, f, s, e = reader.read_segment(seg)
            keep = np.isin(f, live)
            if keep.any():
                self._pending.append((v[keep], f[keep], s[keep], e[keep]))
                self._pending_n += int(keep.sum())
                if self._pending_n >= SEGMENT_MAX_WINDOWS:
                    self._flush()
        self._flush()
        gone = {s.name for s in victims}
        self.manifest.segments = [s for s in self.manifest.segments if s.name not in gone]
        self.commit(records=[])
        self.collect_garbage()
