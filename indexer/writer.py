"""The single writer of an index: the lock, buffered segments, atomic commits, garbage collection, compaction.

The format and the read side are awesearch/store.py (see its docstring for the layout and the durability
argument); this module only ever adds files under fresh names and then replaces manifest.json atomically.
"""

from __future__ import annotations

import errno
import fcntl
import os
from contextlib import contextmanager
from dataclasses import asdict, replace
from pathlib import Path
from typing import Callable

import numpy as np

from awesearch.errors import IndexLockedError, IndexMissingError, IndexWriteError
from awesearch.speaker_index import read_speaker_table, write_speaker_table
from awesearch.store import (
    COMPACT_DEAD_FRACTION,
    COMPACT_MIN_SEGMENTS,
    LOCK_NAME,
    MANIFEST_NAME,
    OWN_FILE,
    SEGMENT_MAX_WINDOWS,
    STATUS_INDEXED,
    FileRecord,
    IndexStore,
    Manifest,
    SegmentInfo,
    atomic_write_bytes,
    check_encoder_matches,
    check_phone_matches,
    files_schema,
    now_utc,
    phonetic_name,
    write_parquet,
    write_segment,
)

FULL_VERIFY_MAX_BYTES = 4 << 30  # a writer checksums every byte at open up to this index size (about 2 GB/s);
# larger indexes get the cheap check (sizes, and the files table in full) unless verification is asked for
DISK_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)


def storage_message(directory: Path, e: OSError, committed: int) -> str:
    """One line for a failed write: what happened, that the index is intact, what to do."""
    state = f"{committed} files committed, the index is intact"
    if e.errno in DISK_FULL_ERRNOS or "No space left" in str(e):
        return f"disk full writing {directory}: {state}; free space and re-run"
    return f"I/O error writing {directory} ({e.strerror or e}): {state}; fix the storage and re-run"


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

    def __init__(self, directory: Path, manifest: Manifest, lock_fd: int, files: dict[str, FileRecord] | None = None):
        self.directory = directory
        self.manifest = manifest
        self._lock_fd = lock_fd
        self._files = {f.path: f for f in IndexStore(directory, manifest).load_files()} if files is None else files
        self.committed_files = 0  # indexed records committed by this writer (for the disk-full message)
        self.repaired: list[str] = []  # paths whose index data was damaged and dropped at open
        self.notes: list[str] = []  # other repairs at open the user must hear of (a dropped voices file)
        self._pending: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []
        self._pending_n = 0
        self._new_segments: list[SegmentInfo] = []  # written, not yet in a committed manifest
        self._pending_speakers: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []  # file_ids, starts, ends, emb
        self.speaker_model: str = ""  # checksum of the speaker model whose pieces are buffered

    @classmethod
    def open(
        cls, directory: str | os.PathLike, encoder, source: str | None = None, lock_fd: int | None = None, phone=None,
        verify: bool | None = None,
    ) -> "IndexWriter":
        """Lock (unless lock_fd from acquire_lock is given), check or create the manifest, verify and repair
        (indexer/repair.py), collect garbage.

        source: what load_encoder should be given to get the encoder back (default: its name).
        verify: checksum every byte (True), only sizes and the files table (False), or every byte up to
        FULL_VERIFY_MAX_BYTES of index (None)."""
        directory = Path(directory)
        fd = acquire_lock(directory) if lock_fd is None else lock_fd
        try:
            if (directory / MANIFEST_NAME).exists():
                manifest = IndexStore.open(directory).manifest
                check_encoder_matches(manifest, encoder, directory)
                check_phone_matches(manifest, phone, directory)
            else:
                now = now_utc()
                manifest = Manifest(
                    encoder_name=encoder.name,
                    encoder_checksum=encoder.checksum,
                    dim=int(encoder.dim),
                    feature_config=asdict(encoder.feature_config),
                    encoder_source=source or encoder.name,
                    frontend_block_s=encoder.frontend_block_s,
                    phone_model=phone.name if phone is not None else "",
                    phone_checksum=phone.checksum if phone is not None else "",
                    created=now,
                    updated=now,
                )
            writer = cls._verified(directory, manifest, fd, verify)
            writer.collect_garbage()
            return writer
        except BaseException:
            os.close(fd)
            raise

    @classmethod
    def _verified(cls, directory: Path, manifest: Manifest, fd: int, verify: bool | None) -> "IndexWriter":
        from .repair import VOICES_LOST, repair

        store = IndexStore(directory, manifest)
        if verify is None:
            verify = sum(int(c["size"]) for c in manifest.checksums.values()) <= FULL_VERIFY_MAX_BYTES
        damages = store.verify(full=verify)
        if not damages:
            return cls(directory, manifest, fd)
        voices = manifest.speaker_voices
        files, lost = repair(directory, manifest, damages)
        writer = cls(directory, manifest, fd, files)
        writer.commit([])  # the index no longer names the damaged files; their recordings are marked skipped
        writer.repaired = lost
        writer.notes = [VOICES_LOST.format(voices)] if voices and not manifest.speaker_voices else []
        return writer

    @contextmanager
    def storage(self):
        """Turn a failed write (full disk, I/O error) into IndexWriteError; committed state is untouched."""
        try:
            yield
        except OSError as e:
            raise IndexWriteError(storage_message(self.directory, e, self.committed_files)) from None

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

    def next_name(self, prefix: str) -> str:
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

    def add_phonetic(self, file_id: int, codes: np.ndarray) -> int:
        """Write a file's phonetic frames (uint8 codes [T, N_CLASSES]) durably as phon-<file_id>.awp; like its
        windows, it is live only once a commit lists the file. Returns the number of frames."""
        from awesearch.phonetic import awp_bytes

        with self.storage():
            atomic_write_bytes(self.directory / phonetic_name(file_id), awp_bytes(codes))
        return len(codes)

    def add_speakers(self, file_id: int, starts: np.ndarray, ends: np.ndarray, emb: np.ndarray, model_checksum: str) -> None:
        """Buffer speaker pieces of a file (emb [n, HIDDEN] unit vectors); written as one table per commit."""
        n = len(emb)
        if n:
            self._pending_speakers.append((np.full(n, file_id, np.int64), np.asarray(starts, np.float64), np.asarray(ends, np.float64), np.asarray(emb)))
            self.speaker_model = model_checksum

    def drop_pending(self, file_id: int) -> None:
        """Forget buffered windows of a file that failed half way (any already flushed stay dead rows)."""
        self._pending_speakers = [p for p in self._pending_speakers if p[0][0] != file_id]
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
        with self.storage():
            self._new_segments.append(write_segment(self.directory, self.next_name("seg"), *cols))

    def commit(
        self,
        records: list[FileRecord],
        removed_paths: set[str] | frozenset = frozenset(),
        before_publish: Callable[[], None] | None = None,
    ) -> None:
        """Atomically publish the buffered windows and the new file records (replacing records of the same
        path), and drop removed paths. After this returns, a crash keeps exactly this state.
        before_publish runs after every new file is durable and before the manifest names them (tests).
        IndexWriteError when the disk is full or a write fails: nothing of this commit is published."""
        self._flush()
        with self.storage():
            self._commit(records, removed_paths, before_publish)
        self.committed_files += sum(r.status == STATUS_INDEXED for r in records)

    def _commit(self, records, removed_paths, before_publish) -> None:
        files = dict(self._files)
        for path in removed_paths:
            files.pop(path, None)
        for r in records:
            files[r.path] = r
        ordered = sorted(files.values(), key=lambda r: r.file_id)
        table_name = f"{self.next_name('files')}.parquet"
        write_parquet(
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
                "phonetic_frames": [int(r.phonetic_frames) for r in ordered],
            },
            files_schema(),
        )
        new_speakers = self._write_speakers()
        if before_publish is not None:
            before_publish()
        m = replace(self.manifest)  # published only if every step below succeeds
        if new_speakers:
            m.speaker_model = self.speaker_model
        m.speaker_tables = m.speaker_tables + new_speakers
        m.segments = m.segments + self._new_segments
        m.files_table = table_name
        m.generation += 1
        m.updated = now_utc()
        m.checksums = IndexStore(self.directory, m).compute_checksums()  # every file it names, whatever its kind
        atomic_write_bytes(self.directory / MANIFEST_NAME, m.to_json().encode())
        self.manifest = m
        self._new_segments = []
        self._files = files

    def _write_speakers(self) -> list:
        """Write the buffered speaker pieces as one table (nothing references it until the manifest does)."""
        if not self._pending_speakers:
            return []
        cols = [np.concatenate([p[i] for p in self._pending_speakers]) for i in range(4)]
        self._pending_speakers = []
        if len(cols[0]) == 0:
            return []
        if self.manifest.speaker_model and self.manifest.speaker_model != self.speaker_model:
            raise ValueError("speaker pieces of two speaker models in one index")
        return [write_speaker_table(self.directory, self.next_name("spk"), *cols)]

    def set_voices(self, voices_json: str) -> None:
        """Publish a new voices file (awesearch speakers); committed atomically like any other change."""
        name = f"{self.next_name('spkc')}.json"
        with self.storage():
            atomic_write_bytes(self.directory / name, voices_json.encode())
        self.manifest.speaker_voices = name
        self.commit(records=[])
        self.collect_garbage()

    def _speakers_need_compaction(self) -> bool:
        tables = self.manifest.speaker_tables
        if len(tables) > COMPACT_MIN_SEGMENTS:
            return True
        live = IndexStore(self.directory, self.manifest).live_file_ids(list(self._files.values()))
        stored = sum(t.pieces for t in tables)
        import pyarrow.parquet as pq

        alive = sum(
            int(np.isin(pq.read_table(self.directory / f"{t.name}.parquet", columns=["file_id"]).column("file_id").to_numpy(), live).sum())
            for t in tables
        )
        return stored > 0 and (stored - alive) / stored > COMPACT_DEAD_FRACTION

    def _compact_speakers(self) -> None:
        """Rewrite all speaker tables as one holding only live pieces (the next commit publishes it)."""
        live = IndexStore(self.directory, self.manifest).live_file_ids(list(self._files.values()))
        for t in self.manifest.speaker_tables:
            f, s, e, emb = read_speaker_table(self.directory, t)
            keep = np.isin(f, live)
            self._pending_speakers.append((f[keep], s[keep], e[keep], emb[keep]))
        self.speaker_model = self.manifest.speaker_model
        self.manifest.speaker_tables = []

    # maintenance ---------------------------------------------------------------------------

    def collect_garbage(self) -> list[str]:
        """Delete our files that the committed manifest does not name (left by a killed or finished writer)."""
        referenced = IndexStore(self.directory, self.manifest).referenced_names()
        referenced |= {f"{s.name}.{ext}" for s in self._new_segments for ext in ("vec", "parquet")}
        removed = []
        for entry in os.scandir(self.directory):
            if entry.is_file(follow_symlinks=False) and OWN_FILE.match(entry.name) and entry.name not in referenced:
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
        return bool(self._compaction_victims()) or self._speakers_need_compaction()

    def compact(self) -> None:
        """Rewrite the victim segments keeping only live windows, packed into segments of up to
        SEGMENT_MAX_WINDOWS; other segments are left alone. Committed atomically like any other change."""
        if self._pending or self._new_segments:
            raise RuntimeError("commit before compacting")
        victims = self._compaction_victims()
        speakers = self._speakers_need_compaction()
        if speakers:
            self._compact_speakers()
        if not victims and not speakers:
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
