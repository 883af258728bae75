"""Approximate search for large indexes: IVF with 4-bit codes, memory-mapped, re-ranked from the segments' int8
vectors, plus an exact tail.

Below APPROX_MIN_WINDOWS live windows every query scans all vectors exactly (store.py). From there on the
writer keeps an approximate index beside the segments (the segments stay the source of truth):
    approx-NNNNNN.faiss   IndexIVFScalarQuantizer (QT_4bit, inner product) over the live windows of the
                          segments it lists; its coarse quantizer is trained on the index's own vectors;
                          read with IO_FLAG_MMAP, so its inverted lists stay on disk and in the page cache
    approx-NNNNNN.rows    .npy of ROW_DTYPE records (18 bytes): file_id, start, end and where the window's
                          int8 vector is (segment number in ApproxInfo.segments, row in its seg-*.vec)
A query probes NPROBE lists for RERANK_DEPTH x k candidates, re-scores them exactly from the memory-mapped
seg-*.vec files, and scans the newer segments (the tail) exactly, then merges both by score (per window
64 + 8 bytes of IVF + 18 of rows: 90 bytes beside the 130 of its int8 vector); rows of files deleted or re-indexed since the build are dropped at query time. After each indexing
run the writer extends it with the tail (once that exceeds TAIL_MAX_FRACTION of it or TAIL_MAX_WINDOWS),
rebuilds it when a segment it covers was compacted away, and retrains when the live windows outgrew
RETRAIN_GROWTH times those it was trained on. A build streams (see build_approx): memory holds 12
bytes per new window, never the index; an extend rewrites the file from the old one's memory map. Every file is
written like any other (fresh name, checksum, manifest swap); the segments it covers stay referenced (and
on disk) until it is rebuilt without them.
"""

from __future__ import annotations

import errno
import math
from dataclasses import asdict, dataclass

import numpy as np

APPROX_MIN_WINDOWS = 1_000_000  # live windows from which queries go through the approximate index
TAIL_MAX_FRACTION = 0.25  # windows in segments it does not cover, relative to those it holds, before extending ...
TAIL_MAX_WINDOWS = 2_000_000  # ... or this many (the tail is searched exactly, in memory: 256 bytes per window)
RETRAIN_GROWTH = 4.0  # retrain the coarse quantizer when live windows exceed this times the training-time count
LISTS_PER_SQRT = 1  # inverted lists ~ LISTS_PER_SQRT * sqrt(windows), rounded to a power of two ...
MIN_LISTS, MAX_LISTS = 64, 65536  # ... within these bounds
TRAIN_PER_LIST = 64  # training vectors per list (faiss wants 39 or more)
NPROBE = 32  # lists probed per query (recall against nprobe: benchmarks/scale_bench.py)
RERANK_DEPTH = 4  # IVF candidates per wanted hit, re-scored exactly from the int8 vectors ...
MIN_RERANK = 256  # ... and at least this many
ROW_DTYPE = np.dtype([("file_id", "<i4"), ("start", "<f4"), ("end", "<f4"), ("seg", "<u2"), ("row", "<u4")])  # seconds
ADD_BATCH = 1 << 18  # windows encoded per call while building
EMPTY_LISTS_BYTES = 32  # "ilar", nlist, code_size, "sprs", an empty size vector: how faiss ends an empty IVF index


@dataclass
class ApproxInfo:
    """The manifest's description of the approximate index (manifest.approx, a dict in JSON)."""

    name: str  # "approx-000012": stem of the .faiss and .rows pair
    segments: list  # segment names whose live windows (at build time) it holds
    windows: int  # ids in it
    trained_windows: int  # live windows when its quantizer was trained
    nlist: int  # inverted lists

    def files(self) -> list[str]:
        return [f"{self.name}.faiss", f"{self.name}.rows"]


def approx_info(manifest) -> ApproxInfo | None:
    return ApproxInfo(**manifest.approx) if manifest.approx else None


def describe(manifest) -> str:
    """One line for `awesearch info`: how queries search this index."""
    info = approx_info(manifest)
    if info is None:
        return f"exact (approximate from {APPROX_MIN_WINDOWS:,} live windows)"
    tail = sum(s.windows for s in manifest.segments if s.name not in set(info.segments))
    return f"approximate: IVF, {info.nlist} lists, {info.windows:,} windows, nprobe {choose_nprobe(info.nlist)}; {tail:,} newer windows exact"


def choose_nlist(windows: int) -> int:
    """~sqrt(windows) lists as a power of two within MIN_LISTS..MAX_LISTS, and never more than windows (k-means
    needs a point per list; only a tiny index with a lowered APPROX_MIN_WINDOWS gets there)."""
    target = LISTS_PER_SQRT * math.sqrt(max(windows, 1))
    return int(min(MAX_LISTS, max(MIN_LISTS, 2 ** round(math.log2(target))), max(windows, 1)))


def choose_nprobe(nlist: int) -> int:
    return int(min(nlist, NPROBE))


# -- building (the writer's side) -----------------------------------------------------------------------


def _live_rows(store, seg, live: np.ndarray):
    v, f, s, e = store.read_segment(seg)
    keep = np.isin(f, live)
    return v[keep], f[keep], s[keep], e[keep]


def _records(f: np.ndarray, s: np.ndarray, e: np.ndarray, seg: int, rows: np.ndarray) -> np.ndarray:
    out = np.empty(len(f), ROW_DTYPE)
    out["file_id"], out["start"], out["end"], out["seg"], out["row"] = f, s, e, seg, rows
    return out


def _train(store, segments, live: np.ndarray, n_live: int, nlist: int, dim: int, seed: int = 0):
    """An empty IVF index whose quantizer and 4-bit ranges are trained on a uniform sample of live windows."""
    import faiss

    rng = np.random.default_rng(seed)
    share = min(1.0, TRAIN_PER_LIST * nlist / max(n_live, 1))
    sample = []
    for seg in segments:
        v = _live_rows(store, seg, live)[0]
        sample.append(v[rng.random(len(v)) < share].astype(np.float32))
    x = np.ascontiguousarray(np.concatenate(sample))
    index = faiss.IndexIVFScalarQuantizer(faiss.IndexFlatIP(dim), dim, nlist, faiss.ScalarQuantizer.QT_4bit, faiss.METRIC_INNER_PRODUCT)
    index.train(x)
    return index


def _empty_like(index, ntotal: int) -> bytes:
    """faiss's serialisation of an IVF index with index's quantizer and 4-bit ranges, claiming ntotal entries,
    WITHOUT its inverted-list section (the caller streams that: see _write_lists)."""
    import faiss

    nlist, dim = int(index.nlist), int(index.d)
    empty = faiss.IndexIVFScalarQuantizer(faiss.IndexFlatIP(dim), dim, nlist, faiss.ScalarQuantizer.QT_4bit, faiss.METRIC_INNER_PRODUCT)
    empty.quantizer.add(index.quantizer.reconstruct_n(0, nlist))
    empty.sq.trained = index.sq.trained
    empty.by_residual = index.by_residual
    empty.is_trained = True
    empty.ntotal = ntotal
    head = faiss.serialize_index(empty).tobytes()
    if head[-EMPTY_LISTS_BYTES : -EMPTY_LISTS_BYTES + 4] != b"ilar":
        raise RuntimeError("unexpected faiss serialisation of an empty IVF index")
    return head[:-EMPTY_LISTS_BYTES]


def _encode(index, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(list number, 4-bit code) of each row of x, exactly as index.add would store them."""
    enc = index.sa_encode(x)  # coarse list number (little-endian bytes), then the code
    coarse = enc.shape[1] - int(index.code_size)
    lists = np.zeros(len(x), np.int64)
    for b in range(coarse):
        lists |= enc[:, b].astype(np.int64) << (8 * b)
    return lists, enc[:, coarse:]


def build_approx(store, files, previous: ApproxInfo | None, name: str) -> ApproxInfo:
    """Write approx-N.faiss/.rows for the live windows of every segment; reuse previous's training unless
    the index outgrew it; extend previous (add only new segments) when everything it covers still exists.

    Streaming, so memory stays small at any size: pass 1 encodes the new windows segment by segment into
    temp files (list numbers, codes, rows); pass 2 writes the IVF file list by list in faiss's own format
    (previous lists read from its memory map, then the new entries of that list) and the rows table beside
    it. Memory: 12 bytes per new window (list numbers and their sort order); temp disk: 90 bytes per new window."""
    import faiss

    from .store import STATUS_INDEXED, atomic_path

    m = store.manifest
    live = np.asarray(sorted(f.file_id for f in files if f.status == STATUS_INDEXED), np.int64)
    n_live = int(sum(f.windows for f in files if f.status == STATUS_INDEXED))
    names = [s.name for s in m.segments]
    retrain = previous is None or n_live > RETRAIN_GROWTH * previous.trained_windows
    extend = not retrain and set(previous.segments) <= set(names)
    old = old_rows = None
    if retrain:
        nlist = choose_nlist(n_live)
        index, trained = _train(store, m.segments, live, n_live, nlist, m.dim), n_live
    else:
        index = faiss.read_index(str(store.directory / f"{previous.name}.faiss"), faiss.IO_FLAG_MMAP)
        nlist, trained = previous.nlist, previous.trained_windows
        if extend:  # keep its lists; the old records' segment numbers are renumbered to this build's list
            old = index
            old_rows = np.load(store.directory / f"{previous.name}.rows", mmap_mode="r")
    covered = set(previous.segments) if extend else set()
    n_old = int(old.ntotal) if old is not None else 0
    cs = int(index.code_size)
    tmp = {k: store.directory / f".{name}.{k}.build" for k in ("lists", "codes", "rows")}
    try:
        with open(tmp["lists"], "wb") as fl, open(tmp["codes"], "wb") as fc, open(tmp["rows"], "wb") as fr:
            for number, seg in enumerate(m.segments):
                if seg.name in covered:
                    continue
                v, f, s, e = store.read_segment(seg)
                keep = np.flatnonzero(np.isin(f, live))
                for i in range(0, len(keep), ADD_BATCH):
                    lists, codes = _encode(index, np.ascontiguousarray(v[keep[i : i + ADD_BATCH]], np.float32))
                    fl.write(lists.astype(np.int32).tobytes())
                    fc.write(codes.tobytes())
                fr.write(_records(f[keep], s[keep], e[keep], number, keep).tobytes())
        lists = np.fromfile(tmp["lists"], np.int32)
        n_new = len(lists)
        codes = np.memmap(tmp["codes"], np.uint8, "r", shape=(n_new, cs)) if n_new else np.empty((0, cs), np.uint8)
        order = np.argsort(lists, kind="stable")  # entries of each list in add order, as index.add keeps them
        bounds = np.concatenate([[0], np.cumsum(np.bincount(lists, minlength=nlist))])
        old_sizes = [old.invlists.list_size(l) for l in range(nlist)] if old is not None else [0] * nlist
        sizes = np.asarray(old_sizes, np.uint64) + np.diff(bounds).astype(np.uint64)
        with atomic_path(store.directory / f"{name}.faiss") as path, open(path, "wb") as out:
            out.write(_empty_like(index, n_old + n_new))
            out.write(b"ilar" + np.uint64(nlist).tobytes() + np.uint64(cs).tobytes() + b"full" + np.uint64(nlist).tobytes() + sizes.tobytes())
            for l in range(nlist):
                sel = order[bounds[l] : bounds[l + 1]]
                n = old_sizes[l]
                if n:
                    out.write(faiss.rev_swig_ptr(old.invlists.get_codes(l), n * cs).tobytes())
                out.write(codes[sel].tobytes())
                if n:
                    out.write(faiss.rev_swig_ptr(old.invlists.get_ids(l), n).tobytes())
                out.write((sel + n_old).astype(np.int64).tobytes())
        new_rows = np.fromfile(tmp["rows"], ROW_DTYPE)
        with atomic_path(store.directory / f"{name}.rows") as path:
            table = np.lib.format.open_memmap(path, "w+", ROW_DTYPE, (n_old + n_new,))
            if old is not None:
                renumber = np.asarray([names.index(n) for n in previous.segments], np.uint16)
                for i in range(0, n_old, ADD_BATCH):
                    part = np.array(old_rows[i : i + ADD_BATCH])
                    part["seg"] = renumber[part["seg"]]
                    table[i : i + len(part)] = part
            table[n_old:] = new_rows
            table.flush()
            del table
    finally:
        for t in tmp.values():
            t.unlink(missing_ok=True)
    return ApproxInfo(name=name, segments=names, windows=n_old + n_new, trained_windows=trained, nlist=nlist)


def wanted_action(manifest, live_windows: int) -> str | None:
    """"build" (none yet, outgrown, or a covered segment is gone), "extend" (tail too large), "drop" (index
    shrank below the threshold) or None (nothing to do)."""
    info = approx_info(manifest)
    if live_windows < APPROX_MIN_WINDOWS:
        return "drop" if info else None
    if info is None or live_windows > RETRAIN_GROWTH * info.trained_windows:
        return "build"
    names = {s.name for s in manifest.segments}
    if not set(info.segments) <= names:
        return "build"
    tail = sum(s.windows for s in manifest.segments if s.name not in set(info.segments))
    return "extend" if tail > min(TAIL_MAX_FRACTION * info.windows, TAIL_MAX_WINDOWS) else None


def update_approx(writer) -> str | None:
    """Bring the writer's approximate index up to date (after a run's last commit); returns the action taken."""
    from .store import STATUS_INDEXED, IndexStore

    files = list(writer.files.values())
    live_windows = int(sum(f.windows for f in files if f.status == STATUS_INDEXED))
    action = wanted_action(writer.manifest, live_windows)
    if action is None:
        return None
    if action == "drop":
        writer.manifest.approx = None
    else:
        store = IndexStore(writer.directory, writer.manifest)
        with writer.storage():
            info = build_approx(store, files, approx_info(writer.manifest), writer.next_name("approx"))
        writer.manifest.approx = asdict(info)
    writer.commit([])
    writer.collect_garbage()
    return action


# -- searching ----------------------------------------------------------------------------------------


class ApproxIndex:
    """Looks like a faiss index to awesearch.search (d, ntotal, search): ids below n_approx are rows of the
    memory-mapped IVF index, the rest are rows of the exact tail index."""

    def __init__(self, ivf, nprobe: int, rows: np.ndarray, live: np.ndarray, tail, vectors: list):
        import faiss

        self.ivf, self.rows, self.live, self.tail = ivf, rows, live, tail
        self.vectors = vectors  # per covered segment: (scales, codes) memory maps of its seg-*.vec
        self.params = faiss.SearchParametersIVF(nprobe=nprobe)
        self.n_approx = int(ivf.ntotal)
        self.d = int(ivf.d)
        self.ntotal = self.n_approx + int(tail.ntotal)

    def _candidates(self, q: np.ndarray, k: int) -> np.ndarray:
        """IVF top-k ids per query among live rows (-1 padded): rows of since deleted or changed files are
        dropped, and the search is repeated with twice the depth for queries that lost some, until k remain
        or all is seen."""
        ids = np.full((len(q), k), -1, np.int64)
        todo, depth = np.arange(len(q)), k
        while len(todo):
            _, i1 = self.ivf.search(q[todo], min(depth, max(self.n_approx, 1)), params=self.params)
            valid = i1 >= 0
            fid = np.where(valid, self.rows["file_id"][np.maximum(i1, 0)], -1).astype(np.int64)
            live = valid & np.isin(fid, self.live)
            short = []
            for r, qi in enumerate(todo):
                keep = np.flatnonzero(live[r])[:k]
                ids[qi, : len(keep)] = i1[r, keep]
                if len(keep) < k and valid[r].all() and depth < self.n_approx:
                    short.append(qi)
            todo, depth = np.asarray(short, np.int64), depth * 2
        return ids

    def _exact_scores(self, q: np.ndarray, ids: np.ndarray) -> np.ndarray:
        """Inner products of each query with its candidates' int8 vectors (-inf for padding)."""
        from .vectors import decode

        ok = ids >= 0
        wanted = np.sort(ids[ok])  # sorted: the memory maps are read in file order
        rec = self.rows[wanted]
        vec = np.empty((len(rec), self.d), np.float32)
        for seg in np.unique(rec["seg"]):
            at = np.flatnonzero(rec["seg"] == seg)
            scales, codes = self.vectors[int(seg)]
            r = rec["row"][at]
            vec[at] = decode(scales[r], codes[r], np.float32)
        where = np.searchsorted(wanted, ids[ok])
        out = np.full(ids.shape, -np.inf, np.float32)
        out[ok] = np.einsum("ij,ij->i", vec[where], np.repeat(q, ok.sum(1), axis=0))
        return out

    def search(self, q: np.ndarray, k: int):
        ids = self._candidates(q, max(k * RERANK_DEPTH, MIN_RERANK))
        scores = self._exact_scores(q, ids)
        order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        s1, i1 = np.take_along_axis(scores, order, 1), np.take_along_axis(ids, order, 1)
        parts_s, parts_i = [s1], [i1]
        if self.tail.ntotal:
            s2, i2 = self.tail.search(q, min(k, self.tail.ntotal))
            parts_s.append(np.where(i2 >= 0, s2, -np.inf))
            parts_i.append(np.where(i2 >= 0, i2 + self.n_approx, -1))
        s, i = np.concatenate(parts_s, axis=1), np.concatenate(parts_i, axis=1)
        order = np.argsort(-s, axis=1, kind="stable")[:, :k]
        return np.take_along_axis(s, order, 1), np.take_along_axis(i, order, 1)


class _Column:
    """Field `name` of the approximate rows (mapped through `convert`) followed by a tail array, indexable by
    one id or an array of ids (as the second stage does)."""

    def __init__(self, rows: np.ndarray, name: str, tail: np.ndarray, convert=None):
        self.rows, self.name, self.tail, self.convert = rows, name, tail, convert
        self.n_approx = len(rows)

    def __len__(self) -> int:
        return self.n_approx + len(self.tail)

    def __getitem__(self, i):
        ids = np.asarray(i, np.int64)
        flat = ids.reshape(-1)
        inside = flat < self.n_approx
        values = np.asarray(self.rows[self.name][flat[inside]])
        values = self.convert(values) if self.convert else values.astype(np.float64)
        out = np.empty(len(flat), values.dtype if inside.all() else np.result_type(values, self.tail))
        out[inside] = values
        out[~inside] = self.tail[flat[~inside] - self.n_approx]
        return out[0] if ids.ndim == 0 else out.reshape(ids.shape)


def open_approx_table(store):
    """A WindowTable over the approximate index plus the exact tail (segments it does not cover)."""
    import faiss

    from .errors import IndexFormatError
    from .window_table import WindowTable
    from .store import STATUS_INDEXED, _index_from_fp16, phonetic_name
    from .vectors import map_vec

    info = approx_info(store.manifest)
    files = store.load_files()
    indexed = sorted(f.file_id for f in files if f.status == STATUS_INDEXED)
    live = np.asarray(indexed, np.int64)
    paths_by_id = {f.file_id: f.path for f in files if f.status == STATUS_INDEXED}
    store.check_large(info.files())  # size check at open (checksummed in full by `awesearch check`)
    path = store.directory / f"{info.name}.faiss"
    try:
        ivf = faiss.read_index(str(path), faiss.IO_FLAG_MMAP)
    except RuntimeError:
        if not path.exists():  # collected by a writer since the size check: the caller re-reads the manifest
            raise FileNotFoundError(errno.ENOENT, "missing", str(path)) from None
        raise
    rows = np.load(store.directory / f"{info.name}.rows", mmap_mode="r")
    if rows.dtype != ROW_DTYPE:
        raise IndexFormatError(f"{info.name}.rows of index {store.directory} is not in this awesearch's format: re-index")
    store.check_large([f"{name}.vec" for name in info.segments])
    vectors = [map_vec(store.directory / f"{name}.vec") for name in info.segments]
    parts = [_live_rows(store, seg, live) for seg in store.manifest.segments if seg.name not in set(info.segments)]
    cols = [np.concatenate([p[c] for p in parts]) if parts else np.empty((0, store.manifest.dim) if c == 0 else 0) for c in range(4)]
    tail = _index_from_fp16(cols[0].reshape(-1, store.manifest.dim))
    dense_tail = np.searchsorted(live, cols[1])
    index = ApproxIndex(ivf, choose_nprobe(info.nlist), rows, live, tail, vectors)
    to_dense = lambda v: np.searchsorted(live, v.astype(np.int64))  # noqa: E731
    return WindowTable(
        index=index,
        file_ids=_Column(rows, "file_id", dense_tail, to_dense),
        starts=_Column(rows, "start", cols[2]),
        ends=_Column(rows, "end", cols[3]),
        paths=[paths_by_id[i] for i in indexed],
        phon_paths=[store.directory / phonetic_name(f.file_id) if f.phonetic_frames else None
                    for f in sorted(files, key=lambda f: f.file_id) if f.status == STATUS_INDEXED],
    )
