"""The on-disk index: a manifest, immutable FAISS + Parquet segments, a files table, a writer lock.

The writer (lock, commits, garbage collection, compaction) is indexer/writer.py; this module is the format
and the read side. Layout of an index directory:
    manifest.json          magic, format version, encoder (name, checksum, dim), feature config, the live
                           segments and the current files table; replaced atomically on every commit
    seg-NNNNNN.vec         window vectors, int8 codes + one fp16 scale per window (awesearch/vectors.py), row order
    seg-NNNNNN.parquet     one row per window: file_id, start_s, end_s (same row order as the .vec)
    files-NNNNNN.parquet   one row per file: file_id, path, size, mtime_ns, content_hash, duration_s,
                           status ("indexed" | "skipped"), error, windows, phonetic_frames
    phon-NNNNNNNN.awp      per indexed file (by file_id) when the index has a phonetic head: quantised phoneme
                           log-posteriors at 50 frames/s (awesearch/phonetic.py), read by the second stage
    index.lock             flock'd by the one writer; readers never lock

Every data file the manifest names has a checksum entry (size, crc32) in manifest.checksums, verified when
the file is read (awesearch/integrity.py); a damaged file raises IndexDamagedError naming it.

A window is live when its file_id is in the files table with status "indexed"; a changed or deleted
file's old windows are therefore dead the moment the manifest names a table without them (tombstones),
and compaction rewrites segments to drop them. Every file is written to a fresh name (temp, fsync,
os.replace, fsync of the directory) and only then referenced by a new manifest, so a writer killed at
any moment leaves the previous manifest and everything it names intact; unreferenced files are removed
by the next writer.
"""

from __future__ import annotations

import datetime as _dt
import errno
import json
import os
import re
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .errors import IndexDamagedError, IndexFormatError, IndexMissingError
from .integrity import MISSING, Checksum, Damage, check_bytes, check_file, checksum_file, damage_message
from .speaker_index import SpeakerTableInfo
from .window_table import WindowTable

if TYPE_CHECKING:  # heavy imports stay out of module import time
    import faiss

MAGIC = "awesearch-index"
FORMAT_VERSION = 4  # 2: phonetic frame files (phon-*.awp), files table column phonetic_frames; 3: int8 seg-*.vec, compressed .awp v2; 4: Whisper frames
# from 20 s blocks (whisper_frontend.BLOCK_S), recorded as frontend_block_s
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
OWN_FILE = re.compile(r"^(seg-\d{6}\.(vec|parquet)|files-\d{6}\.parquet|phon-\d{8}\.awp|approx-\d{6}\.(faiss|rows)|spk-\d{6}\.parquet|spkc-\d{6}\.json|\..*\.tmp-\d+)$")


def phonetic_name(file_id: int) -> str:
    """The phonetic frame file of an indexed recording."""
    return f"phon-{file_id:08d}.awp"


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
    phonetic_frames: int = 0  # frames in its phon-<file_id>.awp (0: no phonetic file)


@dataclass
class SegmentInfo:
    name: str  # "seg-000001": the stem of the .vec and .parquet pair
    windows: int  # rows in the segment (live and dead)
    file_id_min: int = -1  # smallest and largest file_id of its rows (-1: unknown), so a lost segment's
    file_id_max: int = -1  # recordings are known even when its .parquet is damaged


@dataclass
class Manifest:
    encoder_name: str
    encoder_checksum: str
    dim: int
    feature_config: dict
    encoder_source: str  # what to pass to load_encoder to get this encoder back (name or absolute path)
    frontend_block_s: float = 0.0  # seconds per Whisper front-end block its vectors were encoded in (0: log-mel front end)
    phone_model: str = ""  # the phoneme head that wrote the phon-*.awp files ("" when the index has none)
    phone_checksum: str = ""  # its sha256: the second stage refuses a different head
    segments: list[SegmentInfo] = field(default_factory=list)
    files_table: str | None = None  # "files-000003.parquet"; None until the first commit
    next_number: int = 1  # next seg-/files- number
    next_file_id: int = 0
    generation: int = 0  # commits so far
    created: str = ""
    updated: str = ""
    checksums: dict = field(default_factory=dict)  # data file name -> {"size": bytes, "crc32": hex} (integrity.py)
    approx: dict | None = None  # the approximate index of a large index (awesearch/approx.py ApproxInfo), if any
    # speakers (awesearch/speaker_index.py): piece tables, the speaker model's checksum, the voices file
    speaker_tables: list["SpeakerTableInfo"] = field(default_factory=list)
    speaker_model: str = ""
    speaker_voices: str | None = None  # "spkc-000012.json" once `awesearch speakers` has run

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
            d["speaker_tables"] = [SpeakerTableInfo(**s) for s in d.get("speaker_tables", [])]
            return cls(**{f.name: d[f.name] for f in fields(cls) if f.name in d})  # absent: the field's default
        except (KeyError, TypeError) as e:
            raise IndexFormatError(f"index manifest {where} is damaged ({e}); re-index into a new directory") from None


@dataclass
class SearchData:
    """All live windows of an index, ready to search."""

    index: "faiss.Index"  # IndexScalarQuantizer fp16 (the decoded int8 vectors), inner product; row i is window i
    file_ids: np.ndarray  # [n] int64
    starts: np.ndarray  # [n] float64 seconds
    ends: np.ndarray  # [n] float64 seconds
    paths: dict[int, str]  # file_id -> absolute path
    phonetic_frames: dict[int, int] = field(default_factory=dict)  # file_id -> frames in its phon-*.awp (0: none)


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


def now_utc() -> str:
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


def _unlink_quietly(path: Path) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


@contextmanager
def atomic_path(path: Path):
    """Yield a temp path to write `path`'s content into; published (fsync, rename) when the block ends,
    removed if it fails (a full disk gets its space back at once)."""
    tmp = _tmp_name(path)
    try:
        yield tmp
        _publish(tmp, path)
    except BaseException:
        _unlink_quietly(tmp)
        raise


def atomic_write_bytes(path: Path, data: bytes) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write(data)


def write_parquet(path: Path, columns: dict[str, np.ndarray | list], schema) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table({k: pa.array(v, type=schema.field(k).type) for k, v in columns.items()}, schema=schema)
    tmp = _tmp_name(path)
    try:
        pq.write_table(table, tmp)
        _publish(tmp, path)
    except BaseException:
        _unlink_quietly(tmp)
        raise


def _window_schema():
    import pyarrow as pa

    return pa.schema([("file_id", pa.int64()), ("start_s", pa.float64()), ("end_s", pa.float64())])


def files_schema():
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
            ("phonetic_frames", pa.int64()),
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


def write_segment(directory: Path, name: str, vectors: np.ndarray, file_ids, starts, ends) -> SegmentInfo:
    """Write seg-N.parquet and seg-N.vec (both durable) and describe them; nothing references them yet."""
    from .vectors import vec_bytes

    n = len(vectors)
    if not (len(file_ids) == len(starts) == len(ends) == n):
        raise ValueError("segment columns differ in length")
    write_parquet(
        directory / f"{name}.parquet",
        {"file_id": np.asarray(file_ids, np.int64), "start_s": np.asarray(starts, np.float64), "end_s": np.asarray(ends, np.float64)},
        _window_schema(),
    )
    # written by Python, so a full disk is an OSError like any other write
    atomic_write_bytes(directory / f"{name}.vec", vec_bytes(vectors))
    ids = np.asarray(file_ids, np.int64)
    lo, hi = (int(ids.min()), int(ids.max())) if n else (-1, -1)
    return SegmentInfo(name=name, windows=n, file_id_min=lo, file_id_max=hi)


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
                    damages = [Damage(Path(e.filename).name, "is missing")]
                    raise IndexDamagedError(damage_message(self.directory, damages), damages) from None
                self._reopen()

    # integrity ----------------------------------------------------------------------------

    def checksum_of(self, name: str) -> Checksum | None:
        entry = self.manifest.checksums.get(name)
        return Checksum.from_json(entry) if entry is not None else None

    def read_verified(self, name: str) -> bytes:
        """The bytes of a data file the manifest names, checked against its checksum entry.
        FileNotFoundError when missing (readers retry: a writer may have collected it); IndexDamagedError
        when it differs."""
        data = (self.directory / name).read_bytes()
        damage = check_bytes(name, data, self.checksum_of(name))
        if damage is not None:
            raise IndexDamagedError(damage_message(self.directory, [damage]), [damage])
        return data

    def data_names(self, files: list[FileRecord] | None = None) -> list[str]:
        """Every data file the manifest names (all but the manifest itself), sorted."""
        return sorted(self.referenced_names(files) - {MANIFEST_NAME})

    def verify(self, full: bool = True) -> list[Damage]:
        """Damage of every data file: missing, wrong size, or (when full) a wrong checksum. The files table is
        always checked in full (it lists the per-recording files); when it is damaged, the files it would
        name are not checked. Files without a checksum entry are checked for presence."""
        damages = []
        table = self.manifest.files_table
        if table and (damage := check_file(self.directory / table, self.checksum_of(table), full=True)):
            damages.append(damage)
        for name in self.data_names([] if damages else None):
            if name == table:
                continue
            damage = check_file(self.directory / name, self.checksum_of(name), full)
            if damage is not None:
                damages.append(damage)
        return damages

    def check_large(self, names: list[str]) -> None:
        """IndexDamagedError unless these files (too large to read at open) have their recorded size;
        FileNotFoundError when one is missing (readers retry: a writer may have just collected it)."""
        damages = [d for n in names if (d := check_file(self.directory / n, self.checksum_of(n), full=False))]
        for d in damages:
            if d.problem == MISSING:
                raise FileNotFoundError(errno.ENOENT, "missing", str(self.directory / d.name))
        if damages:
            raise IndexDamagedError(damage_message(self.directory, damages), damages)

    def unchecksummed(self) -> list[str]:
        """Data files the manifest names without a checksum entry (an index written before checksums)."""
        return [n for n in self.data_names() if n not in self.manifest.checksums]

    def compute_checksums(self) -> dict:
        """manifest.checksums for the current references: existing entries kept, new files checksummed from disk."""
        out = {}
        for name in self.data_names():
            entry = self.manifest.checksums.get(name)
            out[name] = entry if entry is not None else checksum_file(self.directory / name).to_json()
        return out

    def load_files(self) -> list[FileRecord]:
        return self._retrying(self._load_files)

    def _load_files(self) -> list[FileRecord]:
        if self.manifest.files_table is None:
            return []
        t = parquet_from_bytes(self.read_verified(self.manifest.files_table)).to_pydict()
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
                phonetic_frames=t["phonetic_frames"][i],
            )
            for i in range(len(t["file_id"]))
        ]

    def live_file_ids(self, files: list[FileRecord] | None = None) -> np.ndarray:
        files = self.load_files() if files is None else files
        return np.asarray(sorted(f.file_id for f in files if f.status == STATUS_INDEXED), np.int64)

    def read_segment(self, seg: SegmentInfo) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(vectors fp16 [n, dim], file_ids, starts, ends) of one segment, live and dead rows alike."""
        from .vectors import decode, read_vec

        t = parquet_from_bytes(self.read_verified(f"{seg.name}.parquet"))
        scales, codes = read_vec(self.read_verified(f"{seg.name}.vec"), f"{seg.name}.vec")
        if len(codes) != t.num_rows or len(codes) != seg.windows or codes.shape[1] != self.manifest.dim:
            raise IndexFormatError(
                f"index {self.directory} is damaged: segment {seg.name} has {len(codes)} vectors of dim {codes.shape[1]}, "
                f"{t.num_rows} rows, manifest says {seg.windows} of dim {self.manifest.dim}"
            )
        return (
            decode(scales, codes),
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
        phon = {f.file_id: f.phonetic_frames for f in files if f.status == STATUS_INDEXED}
        return SearchData(index=_index_from_fp16(vectors), file_ids=file_ids, starts=starts, ends=ends, paths=paths, phonetic_frames=phon)

    def referenced_names(self, files: list[FileRecord] | None = None) -> set[str]:
        """Every file the manifest names, directly or through the files table (`files`: that table, if loaded)."""
        files = self.load_files() if files is None else files
        names = {MANIFEST_NAME}
        if self.manifest.files_table:
            names.add(self.manifest.files_table)
        for seg in self.manifest.segments:
            names |= {f"{seg.name}.vec", f"{seg.name}.parquet"}
        names |= {phonetic_name(f.file_id) for f in files if f.status == STATUS_INDEXED and f.phonetic_frames}
        if self.manifest.approx:
            names |= {f"{self.manifest.approx['name']}.{ext}" for ext in ("faiss", "rows")}
            names |= {f"{seg}.vec" for seg in self.manifest.approx["segments"]}  # it re-ranks from them
        names |= {f"{t.name}.parquet" for t in self.manifest.speaker_tables}
        if self.manifest.speaker_voices:
            names.add(self.manifest.speaker_voices)
        return names

    def stats(self) -> IndexStats:
        files = self.load_files()
        indexed = [f for f in files if f.status == STATUS_INDEXED]
        size = 0
        for name in self.referenced_names(files):
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


def parquet_from_bytes(data: bytes):
    import pyarrow as pa
    import pyarrow.parquet as pq

    return pq.read_table(pa.BufferReader(data))


def open_for_search(index_dir: str | os.PathLike):
    """(WindowTable, Encoder, PhoneModel or None) for an index: loads the encoder and the
    phoneme head the manifest names and checks their checksums. File ids in the table are dense indices into
    table.paths; table.phon_paths[i] is file i's phonetic frame file (None when it has none)."""
    from .encoder import load_encoder

    store = IndexStore.open(index_dir)
    m = store.manifest
    encoder = load_encoder(m.encoder_source)
    check_encoder_matches(m, encoder, Path(index_dir))
    phone = None
    if m.phone_model:
        from .phonetic import RETIRED_PHONE_MODELS, load_phone_model

        if m.phone_model in RETIRED_PHONE_MODELS:
            raise IndexFormatError(
                f"index {index_dir} was built with phoneme head {m.phone_model}, which this awesearch no longer ships: "
                f"re-index into a new --index directory or delete {index_dir}"
            )
        phone = load_phone_model(m.phone_model)
        check_phone_matches(m, phone, Path(index_dir))
    if m.approx:
        from .approx import open_approx_table

        return store._retrying(lambda: open_approx_table(store)), encoder, phone
    data = store.load_search_data()
    ids = sorted(data.paths)
    dense = np.searchsorted(np.asarray(ids, np.int64), data.file_ids)
    directory = Path(index_dir)
    phon_paths = [directory / phonetic_name(i) if data.phonetic_frames.get(i) else None for i in ids]
    table = WindowTable(index=data.index, file_ids=dense, starts=data.starts, ends=data.ends, paths=[data.paths[i] for i in ids],
                        phon_paths=phon_paths)
    return table, encoder, phone


def check_encoder_matches(manifest: Manifest, encoder, directory: Path) -> None:
    """IndexFormatError unless the encoder is the one that built the index."""
    fc = asdict(encoder.feature_config)
    same = (
        manifest.encoder_name == encoder.name
        and manifest.encoder_checksum == encoder.checksum
        and manifest.dim == encoder.dim
        and manifest.feature_config == fc
    )
    if same and manifest.frontend_block_s != encoder.frontend_block_s:
        frames = lambda block_s: f"Whisper frames of {block_s:g} s blocks" if block_s else "log-mel frames"  # noqa: E731
        raise IndexFormatError(
            f"index {directory} holds vectors of {frames(manifest.frontend_block_s)}, this awesearch encodes "
            f"{frames(encoder.frontend_block_s)}: re-index into a new --index directory or delete {directory}"
        )
    if not same:
        raise IndexFormatError(
            f"index {directory} was built with encoder {manifest.encoder_name} ({manifest.encoder_checksum[:12]}), "
            f"not {encoder.name} ({encoder.checksum[:12]}): re-index into a new --index directory or delete {directory}"
        )


def check_phone_matches(manifest: Manifest, phone, directory: Path) -> None:
    """IndexFormatError unless `phone` (a PhoneModel or None) is the phoneme head that wrote the index."""
    name, checksum = (phone.name, phone.checksum) if phone is not None else ("", "")
    if (manifest.phone_model, manifest.phone_checksum) != (name, checksum):
        raise IndexFormatError(
            f"index {directory} was built with phoneme head {manifest.phone_model or 'none'} "
            f"({manifest.phone_checksum[:12]}), not {name or 'none'} ({checksum[:12]}): re-index into a new --index directory or delete {directory}"
        )
