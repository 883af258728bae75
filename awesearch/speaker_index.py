"""Speakers in the index: the per-commit speaker tables, the archive's voices, and speaker-filtered hits.

Files (named by the manifest, written like every other index file: fresh name, fsync, atomic publish):
    spk-NNNNNN.parquet   one row per piece of speech: file_id, start_s, end_s, emb (HIDDEN fp16 as bytes);
                         schema metadata magic "awesearch-speakers", version, dim
    spkc-NNNNNN.json     the archive's voices: magic "awesearch-voices", version, the speaker model checksum,
                         next_id, voices [{id "S3", name, centroid [HIDDEN floats]}]

A piece belongs to the voice whose centroid is nearest, when its calibrated same-voice probability is at
least ACCEPT_P; otherwise it is unassigned. Voices are made by `awesearch speakers` (cluster_voices): the
unassigned pieces are grouped per file (average-linkage agglomerative clustering on mean piece-pair cosine,
cut at ACCEPT_P), the file groups are clustered across files the same way (a group's distance to another is
the mean cosine over their piece pairs, so big groups do not look more alike than their pieces), and each cluster becomes a voice with the next free id.
Existing voices keep their ids, names and centroids (updated to the mean of their members), so new speech
indexed later is assigned to the voices already known, and new voices appear beside them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import IndexFormatError, QueryError
from .speakers import ACCEPT_P, HIDDEN, MIN_PIECE_S, SpeakerModel, prototype

TABLE_MAGIC = "awesearch-speakers"
TABLE_VERSION = 1
VOICES_MAGIC = "awesearch-voices"
VOICES_VERSION = 1
VOICE_PREFIX = "S"  # voice ids are S1, S2, ...
MAX_GAP_S = 1.0  # a hit outside every piece takes the nearest piece of its file within this many seconds
NEIGHBOURS = 2  # a piece is judged with up to this many pieces on each side of it (its context) ...
CONTEXT_GAP_S = 2.0  # ... that start within this many seconds of its edge and agree with it (p >= ACCEPT_P)
POOL_START = 200  # hits fetched before speaker filtering (doubled while too few survive)
POOL_MAX = 20_000  # hits fetched at most
SHARDED_VOICE = "--speaker-id names a voice of one index (each index numbers its own voices); with several --index give --speaker CLIP"


@dataclass
class SpeakerTableInfo:
    name: str  # "spk-000004": the stem of the .parquet
    pieces: int  # rows (live and dead)


def _schema():
    import pyarrow as pa

    meta = {"magic": TABLE_MAGIC, "version": str(TABLE_VERSION), "dim": str(HIDDEN)}
    return pa.schema(
        [("file_id", pa.int64()), ("start_s", pa.float64()), ("end_s", pa.float64()), ("emb", pa.binary(2 * HIDDEN))],
        metadata=meta,
    )


def write_speaker_table(directory: Path, name: str, file_ids, starts, ends, emb: np.ndarray) -> SpeakerTableInfo:
    """Write spk-N.parquet durably (nothing references it yet)."""
    from .store import write_parquet

    emb = np.ascontiguousarray(np.asarray(emb, np.float16).reshape(-1, HIDDEN))
    write_parquet(
        directory / f"{name}.parquet",
        {
            "file_id": np.asarray(file_ids, np.int64),
            "start_s": np.asarray(starts, np.float64),
            "end_s": np.asarray(ends, np.float64),
            "emb": [row.tobytes() for row in emb],
        },
        _schema(),
    )
    return SpeakerTableInfo(name=name, pieces=len(emb))


def read_speaker_table(directory: Path, info: SpeakerTableInfo) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(file_ids, starts, ends, emb [n, HIDDEN] float16); IndexFormatError when it is not ours or damaged."""
    import pyarrow.parquet as pq

    path = directory / f"{info.name}.parquet"
    t = pq.read_table(path)
    meta = {k.decode(): v.decode() for k, v in (t.schema.metadata or {}).items()}
    if meta.get("magic") != TABLE_MAGIC or meta.get("version") != str(TABLE_VERSION) or meta.get("dim") != str(HIDDEN):
        raise IndexFormatError(f"{path} is not a speaker table this awesearch reads (version {meta.get('version')}); re-index")
    if t.num_rows != info.pieces:
        raise IndexFormatError(f"index {directory} is damaged: {path.name} has {t.num_rows} rows, the manifest says {info.pieces}")
    raw = b"".join(t.column("emb").to_pylist())
    emb = np.frombuffer(raw, np.float16).reshape(t.num_rows, HIDDEN)
    return t.column("file_id").to_numpy(), t.column("start_s").to_numpy(), t.column("end_s").to_numpy(), emb


def check_speaker_model(manifest, model: SpeakerModel, directory: Path) -> None:
    """IndexFormatError when the index's speaker pieces were made by another speaker model."""
    if manifest.speaker_model and manifest.speaker_model != model.checksum:
        raise IndexFormatError(
            f"index {directory} holds speaker embeddings of another speaker model ({manifest.speaker_model[:12]}, "
            f"this is {model.checksum[:12]}): re-index into a new --index directory"
        )


# -- reading -------------------------------------------------------------------------------------


@dataclass
class SpeakerData:
    """All live pieces of an index."""

    paths: list[str]  # dense file index -> absolute path
    file_idx: np.ndarray  # [n] int, index into paths
    starts: np.ndarray  # [n] seconds
    ends: np.ndarray  # [n] seconds
    emb: np.ndarray  # [n, HIDDEN] float32, unit vectors
    by_path: dict[str, np.ndarray] = field(default_factory=dict)  # path -> piece rows, by start
    context: np.ndarray | None = None  # [n, HIDDEN] each piece averaged with its agreeing neighbours (not unit:
    # its dot product with a unit vector is the mean of their cosines, on the scale the calibration was fitted on)

    def __post_init__(self) -> None:
        order = np.lexsort((self.starts, self.file_idx))
        files, first = np.unique(self.file_idx[order], return_index=True)
        for fi, rows in zip(files, np.split(order, first[1:])):
            self.by_path[self.paths[int(fi)]] = rows

    def with_context(self, model: SpeakerModel) -> "SpeakerData":
        """Set `context`: each piece's embedding averaged (weighted by seconds) with those of the up to NEIGHBOURS
        pieces on each side of it in its recording that start within CONTEXT_GAP_S of it and that the model
        calls the same voice as it (p >= ACCEPT_P). A short piece knows its voice poorly on its own; a piece
        at a change of voice keeps only the neighbours on its own side."""
        order = np.lexsort((self.starts, self.file_idx))
        f, s, e, emb = self.file_idx[order], self.starts[order], self.ends[order], self.emb[order]
        w = (e - s)[:, None]
        sums, weights = emb * w, w.copy()
        agree = model.calibration.cosine_at(ACCEPT_P)
        for k in range(1, NEIGHBOURS + 1):
            a, b = np.arange(len(f) - k), np.arange(k, len(f))
            ok = (f[a] == f[b]) & (s[b] - e[a] <= CONTEXT_GAP_S) & (np.einsum("ij,ij->i", emb[a], emb[b]) >= agree)
            np.add.at(sums, a[ok], emb[b[ok]] * w[b[ok]])
            np.add.at(sums, b[ok], emb[a[ok]] * w[a[ok]])
            np.add.at(weights, a[ok], w[b[ok]])
            np.add.at(weights, b[ok], w[a[ok]])
        self.context = np.empty_like(self.emb)
        self.context[order] = sums / weights
        return self

    def piece_for(self, path: str, start: float, end: float) -> int:
        """Row of the piece that overlaps start..end most, else the nearest one within MAX_GAP_S; -1 if none."""
        rows = self.by_path.get(path)
        if rows is None or len(rows) == 0:
            return -1
        s, e = self.starts[rows], self.ends[rows]
        overlap = np.minimum(e, end) - np.maximum(s, start)
        best = int(np.argmax(overlap))
        if overlap[best] > 0:
            return int(rows[best])
        gap = np.maximum(s - end, start - e)
        best = int(np.argmin(gap))
        return int(rows[best]) if gap[best] <= MAX_GAP_S else -1


def load_speaker_data(store) -> SpeakerData:
    """Live pieces of an awesearch.store.IndexStore (retrying, like every reader, when a writer's GC raced it)."""

    def load() -> SpeakerData:
        files = store.load_files()
        live = store.live_file_ids(files)
        live_set = set(live.tolist())
        paths_by_id = {f.file_id: f.path for f in files if f.file_id in live_set}
        parts = []
        for info in store.manifest.speaker_tables:
            f, s, e, emb = read_speaker_table(store.directory, info)
            keep = np.isin(f, live)
            parts.append((f[keep], s[keep], e[keep], emb[keep]))
        ids = sorted(paths_by_id)
        if not parts:
            return SpeakerData([paths_by_id[i] for i in ids], np.zeros(0, int), np.zeros(0), np.zeros(0), np.zeros((0, HIDDEN), np.float32))
        f, s, e, emb = (np.concatenate([p[i] for p in parts]) for i in range(4))
        dense = np.searchsorted(np.asarray(ids, np.int64), f)
        return SpeakerData([paths_by_id[i] for i in ids], dense, s, e, emb.astype(np.float32))

    return store._retrying(load)


# -- voices --------------------------------------------------------------------------------------


@dataclass
class Voice:
    id: str  # "S3"
    name: str  # "" until named
    centroid: np.ndarray  # [HIDDEN] unit vector


@dataclass
class Voices:
    model: str  # speaker model checksum
    next_id: int = 1
    voices: list[Voice] = field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps(
            {
                "magic": VOICES_MAGIC,
                "version": VOICES_VERSION,
                "model": self.model,
                "next_id": self.next_id,
                "voices": [{"id": v.id, "name": v.name, "centroid": [round(float(x), 6) for x in v.centroid]} for v in self.voices],
            }
        )

    @classmethod
    def from_json(cls, text: str, where: Path) -> "Voices":
        try:
            d = json.loads(text)
            if d.get("magic") != VOICES_MAGIC or d.get("version") != VOICES_VERSION:
                raise IndexFormatError(f"{where} is not a voices file this awesearch reads; run `awesearch speakers` after re-indexing")
            voices = [Voice(v["id"], v["name"], np.asarray(v["centroid"], np.float32)) for v in d["voices"]]
            return cls(model=d["model"], next_id=int(d["next_id"]), voices=voices)
        except (json.JSONDecodeError, KeyError, TypeError, AttributeError) as e:
            raise IndexFormatError(f"voices file {where} is damaged ({e})") from None

    def find(self, key: str) -> Voice:
        """A voice by id (S3) or name, case-insensitive; QueryError naming the known ones otherwise."""
        k = key.strip().lower()
        for v in self.voices:
            if v.id.lower() == k or (v.name and v.name.lower() == k):
                return v
        known = ", ".join(v.id + (f" ({v.name})" if v.name else "") for v in self.voices) or "none yet (run `awesearch speakers`)"
        raise QueryError(f"no voice {key!r} in this index; known voices: {known}")

    def centroids(self) -> np.ndarray:
        return np.stack([v.centroid for v in self.voices]) if self.voices else np.zeros((0, HIDDEN), np.float32)


def load_voices(store) -> Voices | None:
    name = store.manifest.speaker_voices
    if not name:
        return None
    path = store.directory / name
    return store._retrying(lambda: Voices.from_json(path.read_text(), path))


def assign(model: SpeakerModel, emb: np.ndarray, voices: Voices) -> tuple[np.ndarray, np.ndarray]:
    """(voice index or -1, probability of that voice) for each embedding."""
    c = voices.centroids()
    if len(c) == 0 or len(emb) == 0:
        return np.full(len(emb), -1), np.zeros(len(emb))
    sims = emb @ c.T
    best = sims.argmax(1)
    p = model.probability(sims[np.arange(len(emb)), best])
    return np.where(p >= ACCEPT_P, best, -1), p


def agglomerate(means: np.ndarray, model: SpeakerModel) -> np.ndarray:
    """Cluster labels 0..k-1 of groups given by the (unnormalised) means of their pieces' unit vectors.

    Average linkage where the distance of two groups is 1 - mean_a . mean_b, the mean cosine over all their
    piece pairs; clusters merge while that mean cosine is at least the one where the calibrated same-voice
    probability is ACCEPT_P (so the number of voices is chosen by the data). A single piece is a group of one."""
    if len(means) == 1:
        return np.zeros(1, int)
    from scipy.cluster.hierarchy import fcluster, linkage
    from scipy.spatial.distance import squareform

    m = np.asarray(means, np.float64)
    dist = np.clip(1.0 - m @ m.T, 0.0, 2.0)
    np.fill_diagonal(dist, 0.0)
    z = linkage(squareform(dist, checks=False), method="average")
    cut = 1.0 - model.calibration.cosine_at(ACCEPT_P)
    return fcluster(z, t=cut, criterion="distance") - 1


def cluster_voices(model: SpeakerModel, data: SpeakerData, voices: Voices | None) -> Voices:
    """Voices after assigning every live piece to the known voices and clustering the rest into new ones.
    Only pieces of at least MIN_PIECE_S make or move voices (shorter ones are too unsure of their voice)."""
    voices = voices or Voices(model=model.checksum)
    if voices.model != model.checksum:
        raise IndexFormatError("the index's voices were made by another speaker model; re-index")
    ample = data.ends - data.starts >= MIN_PIECE_S - 1e-9
    member, _ = assign(model, data.emb, voices)
    member[~ample] = -2  # neither a member nor free
    free = np.flatnonzero(member == -1)
    groups, owners = [], []  # file-level groups of unassigned pieces: centroid, rows
    for rows in data.by_path.values():
        rows = rows[member[rows] == -1]
        if len(rows) == 0:
            continue
        labels = agglomerate(data.emb[rows], model)
        for g in np.unique(labels):
            owners.append(rows[labels == g])
            groups.append(data.emb[owners[-1]].mean(axis=0))
    if len(free) and groups:
        labels = agglomerate(np.stack(groups), model)
        for g in np.unique(labels):
            rows = np.concatenate([owners[i] for i in np.flatnonzero(labels == g)])
            voices.voices.append(Voice(f"{VOICE_PREFIX}{voices.next_id}", "", prototype(data.emb[rows])))
            voices.next_id += 1
    # centroids follow their members (ids and names stay)
    member, _ = assign(model, data.emb, voices)
    for i, v in enumerate(voices.voices):
        if (ample & (member == i)).any():
            v.centroid = prototype(data.emb[ample & (member == i)])
    return voices


@dataclass
class VoiceSummary:
    id: str
    name: str
    speech_s: float  # seconds of speech assigned to the voice
    files: int  # recordings it speaks in
    sample_path: str  # the piece most like the voice
    sample_start: float  # seconds
    sample_end: float  # seconds

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def summarize(model: SpeakerModel, data: SpeakerData, voices: Voices) -> tuple[list[VoiceSummary], float]:
    """(one summary per voice with speech, most speech first; seconds of speech assigned to no voice). Each
    piece is assigned with its context (SpeakerData.with_context)."""
    member, _ = assign(model, data.with_context(model).context, voices)
    dur = data.ends - data.starts
    out = []
    for i, v in enumerate(voices.voices):
        rows = np.flatnonzero(member == i)
        if len(rows) == 0:
            continue
        short = dur[rows] < MIN_PIECE_S - 1e-9  # a sample too short to hear the voice in only when there is no other
        best = rows[int(np.argmax(data.emb[rows] @ v.centroid - 2.0 * short))]
        out.append(
            VoiceSummary(
                v.id, v.name, float(dur[rows].sum()), len(np.unique(data.file_idx[rows])),
                data.paths[int(data.file_idx[best])], float(data.starts[best]), float(data.ends[best]),
            )
        )
    out.sort(key=lambda s: -s.speech_s)
    return out, float(dur[member < 0].sum())


# -- filtered hits --------------------------------------------------------------------------------


@dataclass(frozen=True)
class SpeakerHit:
    """A search hit with the calibrated probability that the requested voice speaks it."""

    hit: object  # awesearch.search.Hit
    speaker_score: float  # 0..1

    def to_dict(self) -> dict:
        return {**self.hit.to_dict(), "speaker_score": self.speaker_score}

    @property
    def path(self) -> str:
        return self.hit.path

    @property
    def start(self) -> float:
        return self.hit.start

    @property
    def end(self) -> float:
        return self.hit.end

    @property
    def score(self) -> float:
        return self.hit.score


@dataclass
class SpeakerFilter:
    """Keeps the hits spoken by one voice. The stored (LSTM) pieces say which stretch of speech holds a hit;
    the query-time verifier (speaker_verify.py, CAM++) judges that stretch against the voice's prototype."""

    judge: object  # awesearch.speaker_verify.PieceJudge: the verifier, the pieces and the prototype
    stopped: int = 0  # pieces a search had verified when MAX_CHECKS stopped it (0: no search stopped)

    def score(self, hits: list, k: int | None = None, limit: int | None = None) -> list[SpeakerHit]:
        """The hits whose piece is the voice (probability >= ACCEPT_P), in their order, with speaker_score;
        verified BATCH hits at a time, stopping once k are kept (their order is the same either way) or once
        the judge holds `limit` pieces (default: MAX_CHECKS more than now; then `stopped`). Pieces judged
        earlier (the cache spans the searches of one filter) are not checked again and do not count."""
        from .speaker_verify import BATCH, MAX_CHECKS

        start = len(self.judge.p)
        limit = start + MAX_CHECKS if limit is None else limit
        out = []
        for i in range(0, len(hits), BATCH):
            if len(self.judge.p) >= limit:
                self.stopped = len(self.judge.p) - (limit - MAX_CHECKS)
                break
            block = hits[i : i + BATCH]
            rows = [self.judge.data.piece_for(h.path, h.start, h.end) for h in block]
            self.judge.prepare(rows)
            out += [SpeakerHit(h, round(self.judge.p[r], 4)) for h, r in zip(block, rows) if self.judge.accepts(r)]
            if k is not None and len(out) >= k:
                break
        return out

    def search(self, run, k: int) -> list[SpeakerHit]:
        """run(k) -> hits best first (the engine's search); fetch more until k hits of the voice survive, with
        at most MAX_CHECKS pieces verified for this search."""
        from .speaker_verify import MAX_CHECKS

        pool = max(POOL_START, 10 * k)
        limit = len(self.judge.p) + MAX_CHECKS
        while True:
            hits = run(pool)
            kept = self.score(hits, k, limit)
            if len(kept) >= k or len(hits) < pool or pool >= POOL_MAX:
                return kept[:k]
            if len(self.judge.p) >= limit:  # a larger pool would only hold hits left unchecked
                self.stopped = len(self.judge.p) - (limit - MAX_CHECKS)
                return kept[:k]
            pool = min(POOL_MAX, pool * 4)

    @property
    def note(self) -> str | None:
        """One line for the user when a search stopped verifying early, else None."""
        from .speaker_verify import MAX_CHECKS

        if not self.stopped:
            return None
        return (f"the voice check stopped after {self.stopped} speech pieces of the best-ranked hits (limit "
                f"{MAX_CHECKS}): later hits were not checked (narrow the search with --within, a higher --threshold or a smaller -k)")

    def search_texts(self, engine, texts: list[str], k: int | None, threshold: float | None) -> list[list[SpeakerHit]]:
        """The --queries path: each text searched (engine: SearchEngine or ShardedEngine) and filtered."""
        cap, _ = engine.limits(k, threshold)
        return [self.search(lambda n, t=t: engine.search(text=t, k=n, threshold=threshold), cap) for t in texts]


@dataclass
class SpeakerSource:
    """The speaker side of one opened index or several (shards): the model, all live pieces with their
    context, the voices (of a single index only: each index numbers its own), and the query-time verifier."""

    model: SpeakerModel
    data: SpeakerData
    voices: Voices | None
    shards: int  # indexes read
    verifier: object  # awesearch.speaker_verify.Verifier

    def _filter(self, target: np.ndarray) -> SpeakerFilter:
        from .speaker_verify import PieceJudge

        return SpeakerFilter(PieceJudge(self.verifier, self.data, target))

    def for_examples(self, examples: list) -> SpeakerFilter:
        """A filter for --speaker examples (awesearch.speakers.SpeakerExample; QueryError on a bad clip): the
        verifier's prototype of their speech pieces."""
        from .speakers import examples_prototype

        return self._filter(examples_prototype(self.verifier, examples))

    def for_voice(self, key: str) -> SpeakerFilter:
        """A filter for a voice of `awesearch speakers`, by id (S3) or name."""
        if self.shards > 1:
            raise QueryError(SHARDED_VOICE)
        if self.voices is None:
            raise QueryError("this index has no voices yet: run `awesearch speakers` first")
        from .speaker_verify import voice_prototype

        v = self.voices.find(key)
        member, _ = assign(self.model, self.data.context, self.voices)  # as `awesearch speakers` counts them
        rows = np.flatnonzero((member == self.voices.voices.index(v)) & (self.data.ends - self.data.starts >= MIN_PIECE_S - 1e-9))
        return self._filter(voice_prototype(self.verifier, self.data, rows, v.id))


def open_speakers(index_dirs: list) -> SpeakerSource:
    """Read the speaker pieces (and voices) of one index or several; QueryError when one has none,
    IndexFormatError when they come from another speaker model."""
    from .speaker_verify import load_verifier
    from .speakers import load_speaker_model
    from .store import IndexStore

    dirs = [Path(d) for d in index_dirs]
    stores = [IndexStore.open(d) for d in dirs]
    model = load_speaker_model()
    for d, store in zip(dirs, stores):
        if not store.manifest.speaker_tables:
            raise QueryError(f"index {d} has no speaker embeddings (index it with this awesearch version)")
        check_speaker_model(store.manifest, model, d)
    data = merge_speaker_data([load_speaker_data(store) for store in stores]).with_context(model)
    return SpeakerSource(model, data, load_voices(stores[0]) if len(stores) == 1 else None, len(stores), load_verifier())


def open_filter(index_dirs: list, examples: list | None = None, voice: str | None = None) -> SpeakerFilter:
    """A SpeakerFilter over one index or several for --speaker examples or a --speaker-id voice."""
    if bool(examples) == (voice is not None):
        raise QueryError("give --speaker CLIP (repeatable) or --speaker-id VOICE, not both")
    if voice is not None and len(index_dirs) > 1:  # before reading anything
        raise QueryError(SHARDED_VOICE)
    source = open_speakers(index_dirs)
    return source.for_voice(voice) if voice is not None else source.for_examples(examples)


def merge_speaker_data(parts: list[SpeakerData]) -> SpeakerData:
    """The pieces of several indexes as one (paths are absolute, so a recording keeps its pieces)."""
    if len(parts) == 1:
        return parts[0]
    paths = sorted({p for d in parts for p in d.paths})
    dense = {p: i for i, p in enumerate(paths)}
    file_idx = np.concatenate([np.asarray([dense[d.paths[int(i)]] for i in d.file_idx], int) for d in parts])
    return SpeakerData(
        paths, file_idx, *(np.concatenate([getattr(d, a) for d in parts]) for a in ("starts", "ends")),
        np.concatenate([d.emb for d in parts]).reshape(-1, HIDDEN),
    )


# -- changing the voices (under the writer lock) ---------------------------------------------------


def _locked_writer(index_dir: Path):
    """An IndexWriter on the committed manifest without loading the encoder (voices need no encoder)."""
    import os

    from awesearch.indexer.writer import IndexWriter, acquire_lock

    from .store import MANIFEST_NAME, IndexStore

    if not (Path(index_dir) / MANIFEST_NAME).exists():
        IndexStore.open(index_dir)  # raises IndexMissingError with the usual message
    fd = acquire_lock(index_dir)
    try:
        return IndexWriter(Path(index_dir), IndexStore.open(index_dir).manifest, fd)
    except BaseException:
        os.close(fd)
        raise


def update_voices(index_dir: Path) -> tuple[list[VoiceSummary], float]:
    """Cluster speech that fits no known voice into new voices, store them, and summarise every voice."""
    from .speakers import load_speaker_model
    from .store import IndexStore

    model = load_speaker_model()
    with _locked_writer(index_dir) as writer:
        store = IndexStore(writer.directory, writer.manifest)
        if not store.manifest.speaker_tables:
            raise QueryError(f"index {index_dir} has no speaker embeddings (nothing indexed, or indexed without speakers)")
        check_speaker_model(store.manifest, model, Path(index_dir))
        data = load_speaker_data(store)
        old = load_voices(store)
        before = None if old is None else old.to_json()
        voices = cluster_voices(model, data, old)
        if voices.to_json() != before:
            writer.set_voices(voices.to_json())
    return summarize(model, data, voices)


def name_voice(index_dir: Path, key: str, name: str) -> Voice:
    """Give a voice a name (unique, case-insensitive; not another voice's id) and store it."""
    from .store import IndexStore

    name = " ".join(name.split())
    with _locked_writer(index_dir) as writer:
        voices = load_voices(IndexStore(writer.directory, writer.manifest))
        if voices is None:
            raise QueryError("this index has no voices yet: run `awesearch speakers` first")
        voice = voices.find(key)
        for other in voices.voices:
            if other is not voice and name and name.lower() in (other.id.lower(), other.name.lower()):
                raise QueryError(f"{name!r} is already {other.id}{' (' + other.name + ')' if other.name else ''}; choose another name")
        voice.name = name
        writer.set_voices(voices.to_json())
    return voice
