"""Files in, embedding events out: decode + VAD + windows on one thread, the encoder on packed spans on another.

The stream (`embed_stream`) turns a sequence of files into events the single writer applies in order:
`Windows` (vectors of one file, any number of times), `ChunkDone` (progress), `FileDone` (with the file's
phonetic codes) or `FileFailed`. It runs in the indexing process (`--jobs 1`) or in each worker process.

Only speech is encoded: each chunk's windows are grouped into speech islands (a gap of more than
SKIP_GAP_S between them splits a group), and each island is encoded with SPAN_MARGIN_S of audio context on
both sides. Islands of at most one block (20 s), from any files, are packed into shared Whisper blocks by the
front end (`WhisperFrontend.encode_many`), so a 5 s clip no longer pays a whole block; longer islands are
cut into overlapping blocks as before. Spans queue until PACK_FLUSH_S of audio is waiting, a span longer than
LONG_SPAN_S arrives, the first VAD batch's spans are all in (so the encoder starts at once), or the input
ends, then all are encoded in one call; a file's events are emitted only
after its spans are encoded. A chunk's spans are handed over before its speaker embeddings are computed.

Encoding runs on ENCODE_THREADS threads beside the stream: a flush hands its spans to them and returns, and
a batch's heads, pooling and events follow once its frames are ready, so the Whisper blocks of one flush run
while the previous flush is pooled (no core waits at a flush boundary). The first chunk of a run is
encoded whole as soon as it is decoded (SPECULATE_FIRST_CHUNK; if at most SPECULATE_MAX_S long), before its
VAD has run; its windows and islands are filled in when its VAD is done (their vectors then come from the
whole chunk's frames, and its phonetic codes are kept inside the islands only, as for island spans). Before
the stream starts, while torch is imported, the indexer may already have encoded the first spans (FirstSpans,
WhisperFrontend.prefetch); the front end hands those frames over when the stream asks for the same spans.
"""

from __future__ import annotations

import math
import queue
import threading
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Iterable, Iterator

import numpy as np

from awesearch.audio import SAMPLE_RATE, AudioChunk, iter_chunks
from awesearch.errors import AudioDecodeError, AwesearchError
from awesearch.vad import speech_regions_many
from awesearch.windows import MAX_WINDOW_S, candidate_windows

CHUNK_S = 112.0  # seconds of audio per chunk core: with the pads and margins a chunk of continuous speech is one
# 116 s span = exactly 7 overlapping 20 s Whisper blocks (20 + 6 x 16 s; with 30 s blocks: 104 s, 30 + 3 x 26 s)
CHUNK_PAD_S = 4.0  # seconds each side; must exceed MAX_WINDOW_S + SPAN_MARGIN_S (checked at run time)
# Chunk starts are multiples of 4 s = 125 VAD frames of 32 ms = a whole number of encoder frames (10, 20 or
# 40 ms), so every chunk sees the same frame grids as a whole-file pass (and as a query cut from the file).
ENCODE_QUANTUM_S = 2.0  # seconds: encoded spans are whole multiples of this (bounded set of tensor shapes:
# oneDNN caches kernels per shape, and arbitrary lengths grew memory by ~80 MB per hour of audio)
SPAN_MARGIN_S = 1.0  # seconds of audio context encoded before the first and after the last window of an island
SKIP_GAP_S = 4.0  # seconds: a longer stretch without windows (silence, music) is not encoded
PACK_FLUSH_S = 120.0  # seconds of queued span audio that triggers encoding (4 Whisper blocks when packed)
# What packing costs in vector agreement with the Whisper front end (Whisper attends over the whole block,
# so packed clips hear each other): window vectors of three espeak-ng sentences packed together vs each
# encoded alone measured mean cosine 0.953, 5th percentile 0.833 (tests assert the bounds below); search
# quality on real speech is measured by benchmarks/pack_quality.py.
PACK_MEAN_COSINE = 0.93
PACK_P5_COSINE = 0.78
LONG_SPAN_S = 20.0  # seconds: a longer span fills Whisper blocks of its own (nothing to pack), so it is encoded at once
VAD_BATCH_S = 60.0  # seconds of decoded audio whose VAD runs as one batch (many short files cost about one
# call's ~80 recurrent steps; a long file's chunks go one by one, so the encoder is never far behind the decoder)
QUEUE_CHUNKS = 2  # analysed chunks the decode/VAD thread may run ahead of the encoder
ENCODE_THREADS = 2  # flushes encoded at once: the next one's Whisper blocks queue behind this one's in the front
# end's own pool, so both of its streams stay busy across a flush boundary
MAX_BATCHES = 3  # encoded or encoding flushes held at most (memory: ~10 MB of frames per 120 s flush)
POLL_S = 0.05  # seconds the stream waits for the analysis thread before finishing batches that are ready
SPECULATE_FIRST_CHUNK = True  # encode a run's first chunk whole before its VAD (see the module docstring)
SPECULATE_MAX_S = 20.0  # seconds: only a first chunk this short (one Whisper block) is, so that at most one block
# of silence or music is ever encoded for it (a whole 112 s chunk of a half-silent file cost 4 blocks for 3)


@dataclass
class Windows:
    key: int  # the file's position in the input sequence
    vectors: np.ndarray  # [n, D] float32, L2-normalised
    starts: np.ndarray  # [n] seconds, file time
    ends: np.ndarray  # [n] seconds, file time


@dataclass
class ChunkDone:
    key: int
    audio_s: float  # seconds of audio in the chunk core
    windows: int


@dataclass
class Speakers:
    key: int
    starts: np.ndarray  # [m] seconds, file time: speaker pieces of the chunk core's speech
    ends: np.ndarray  # [m] seconds
    voices: np.ndarray  # [m, HIDDEN] their speaker embeddings (awesearch/speakers.py)


@dataclass
class FileDone:
    key: int
    audio_s: float  # seconds of audio
    speech_s: float  # seconds inside speech regions
    windows: int
    codes: np.ndarray | None  # phonetic codes [T, N_CLASSES] uint8, or None without a phoneme head


@dataclass
class FileFailed:
    key: int
    error: AudioDecodeError


@dataclass
class Span:
    """A stretch of one chunk to encode, with the windows it serves."""

    key: int
    start: float  # seconds, file time of samples[0]
    samples: np.ndarray  # float32 at SAMPLE_RATE
    windows: np.ndarray | None  # [n, 2] seconds relative to `start`; None until `ready` for a speculative span
    core: tuple[float, float]  # seconds, file time: phonetic frames of this span are kept inside it
    keep: list[tuple[float, float]] | None = None  # seconds, file time: where phonetic frames are kept (None: core)
    ready: threading.Event | None = None  # set by the analysis thread once `windows` and `keep` are known

    def is_ready(self) -> bool:
        return self.ready is None or self.ready.is_set()

    def keep_ranges(self) -> list[tuple[float, float]]:
        return [self.core] if self.keep is None else self.keep


@dataclass
class _FileState:
    track: object | None
    audio_s: float = 0.0
    speech_s: float = 0.0
    windows: int = 0
    audio_end: float = 0.0


class PhoneticTrack:
    """The phoneme head's codes of one file, gathered span by span (chunk cores only) at FRAME_RATE."""

    def __init__(self, phone):
        self.phone = phone
        self.pieces: list[tuple[int, np.ndarray]] = []  # (first file frame, codes)

    def add(self, inputs, span_start_s: float, keep: list[tuple[float, float]]) -> None:
        """inputs: front-end features [1, T, 384] of audio starting at file time span_start_s; the codes inside
        the `keep` ranges (seconds, file time) are kept."""
        import torch

        from awesearch.phonetic import FRAME_RATE, quantize

        with torch.inference_mode():
            codes = quantize(self.phone.head(inputs)[0].numpy())
        f0 = int(round(span_start_s * FRAME_RATE))
        for start_s, end_s in keep:
            lo = max(0, int(round(start_s * FRAME_RATE)) - f0)
            hi = min(len(codes), int(round(end_s * FRAME_RATE)) - f0)
            if hi > lo:
                self.pieces.append((f0 + lo, codes[lo:hi]))

    def codes(self, duration_s: float) -> np.ndarray:
        from awesearch.phonetic import FRAME_RATE, blank_codes

        out = blank_codes(int(math.ceil(duration_s * FRAME_RATE)))
        for f, c in self.pieces:
            n = max(0, min(len(c), len(out) - f))
            out[f : f + n] = c[:n]
        return out


def chunk_windows(chunk: AudioChunk, frame_s: float, regions: list[tuple[float, float]]) -> tuple[np.ndarray, float]:
    """The chunk's windows ([n, 2] seconds from chunk.start, on the encoder's frame grid in file time,
    starting in the core) and the seconds of speech in its core, given its VAD regions."""
    samples = chunk.samples
    core_lo, core_hi = chunk.core_start - chunk.start, chunk.core_end - chunk.start
    speech_s = sum(max(0.0, min(e, core_hi) - max(s, core_lo)) for s, e in regions)
    w = candidate_windows(samples, regions)
    # snap to the encoder's frame grid (file time): pooling is frame-exact, so the stored times are what
    # was embedded, and a window embeds the same whichever chunk or query span it is computed from
    w = np.unique(np.round((w + chunk.start) / frame_s) * frame_s - chunk.start, axis=0).reshape(-1, 2)
    w = w[(w[:, 0] >= core_lo - 1e-9) & (w[:, 0] < core_hi - 1e-9) & (w[:, 1] > w[:, 0])]
    return w, speech_s


def island_spans(key: int, chunk: AudioChunk, w: np.ndarray, margin_s: float, skip_gap_s: float | None = None) -> list[Span]:
    """Cut the chunk's windows (sorted by start) into islands separated by more than skip_gap_s without any
    window, and return one span per island: whole seconds from the chunk start (on every encoder frame
    grid), margin_s of context either side, ENCODE_QUANTUM_S long, clipped to the chunk."""
    spans = []
    for lo, hi, part in islands(w, len(chunk.samples) / SAMPLE_RATE, margin_s, skip_gap_s):
        a, b = int(round(lo * SAMPLE_RATE)), int(round(hi * SAMPLE_RATE))
        spans.append(Span(key, chunk.start + lo, chunk.samples[a:b].copy(), part - lo, (chunk.core_start, chunk.core_end)))
    return spans


def islands(w: np.ndarray, length_s: float, margin_s: float, skip_gap_s: float | None = None) -> list[tuple[float, float, np.ndarray]]:
    """(lo, hi, windows) of every island of windows w ([n, 2] seconds from the chunk start): see island_spans."""
    if not len(w):
        return []
    skip_gap_s = SKIP_GAP_S if skip_gap_s is None else skip_gap_s
    w = w[np.argsort(w[:, 0], kind="stable")]
    reach = np.maximum.accumulate(w[:, 1])
    cuts = np.nonzero(w[1:, 0] > reach[:-1] + skip_gap_s)[0] + 1
    out = []
    for part in np.split(w, cuts):
        lo = max(0.0, math.floor(part[:, 0].min() - margin_s))
        hi = min(length_s, lo + ENCODE_QUANTUM_S * math.ceil((part[:, 1].max() + margin_s - lo) / ENCODE_QUANTUM_S))
        out.append((lo, hi, part))
    return out


def fill_speculative(span: Span, chunk: AudioChunk, w: np.ndarray, margin_s: float) -> None:
    """A whole-chunk span (encoded before its VAD ran) gets its windows and the islands where its phonetic
    codes are kept, as island_spans would have cut them; then it is ready."""
    span.windows = w[np.argsort(w[:, 0], kind="stable")] if len(w) else np.zeros((0, 2))
    span.keep = [(max(chunk.core_start, chunk.start + lo), min(chunk.core_end, chunk.start + hi))
                 for lo, hi, _ in islands(w, len(chunk.samples) / SAMPLE_RATE, margin_s)]
    span.ready.set()


@dataclass
class _Batch:
    """One flush: the queued items in arrival order, and the encoding of their spans (a Future of one
    (frames, inputs) pair per span, in order)."""

    items: list
    encoded: Future

    def ready(self) -> bool:
        return self.encoded.done() and all(i.is_ready() for i in self.items if isinstance(i, Span))


class _Packer:
    """Queues spans and the events that must follow them; a flush hands them to the encoding threads as one
    batch, and batches are finished (heads, pooling, events) in order once encoded."""

    def __init__(self, encoder, phone, pack: bool):
        self.encoder = encoder
        self.phone = phone
        self.pack = pack
        self.items: list = []  # Span, Speakers, ChunkDone, ("done", key) in arrival order
        self.queued_s = 0.0
        self.files: dict[int, _FileState] = {}
        self.order: list[int] = []  # keys of started files not yet done, in input order
        self.held: dict[int, list] = {}  # events of files behind the first of self.order
        self.batches: deque[_Batch] = deque()  # flushed, not yet finished, oldest first
        self._pool: ThreadPoolExecutor | None = None

    def start(self, key: int, phone) -> None:
        self.files[key] = _FileState(PhoneticTrack(phone) if phone is not None else None)
        self.order.append(key)

    def fail(self, key: int) -> Iterator:
        """Forget a file that failed; then release the events of files that were waiting behind it. Its items
        in batches already flushed are skipped when those finish."""
        self.items = [i for i in self.items if getattr(i, "key", None) != key]
        self.files.pop(key, None)
        self.held.pop(key, None)
        self.order = [k for k in self.order if k != key]
        return self._release([])

    def flush(self) -> Iterator:
        """Hand everything queued to the encoding threads; then the events of the batches already encoded."""
        if self.items:
            if len(self.batches) >= MAX_BATCHES:
                yield from self._release(self._finish(self.batches.popleft()))
            spans = [s.samples for s in self.items if isinstance(s, Span)]
            self.batches.append(_Batch(self.items, self._submit(spans)))
            self.items, self.queued_s = [], 0.0
        yield from self.finish_ready()

    def finish_ready(self) -> Iterator:
        """Events of the oldest batches whose encoding is done (and whose speculative spans are filled in)."""
        while self.batches and self.batches[0].ready():
            yield from self._release(self._finish(self.batches.popleft()))

    def finish_all(self) -> Iterator:
        """Flush, then wait for every batch and give all their events."""
        yield from self.flush()
        while self.batches:
            yield from self._release(self._finish(self.batches.popleft()))

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def _submit(self, spans: list[np.ndarray]) -> Future:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(ENCODE_THREADS, thread_name_prefix="awesearch-encode")
        if self.pack:
            return self._pool.submit(self.encoder.encode_many_frames_and_inputs, spans) if spans else _done([])
        # each span in its own blocks, as the sequential path did
        return self._pool.submit(lambda: [self.encoder.encode_many_frames_and_inputs([a])[0] for a in spans])

    def _release(self, events: list) -> Iterator:
        """Events in file order: a file's events wait until every earlier file is done (spans of several files
        are encoded together), so the writer's commit after a FileDone holds that file's windows only."""
        for ev in events:
            self.held.setdefault(ev.key, []).append(ev)
        while self.order and self.order[0] in self.held:
            evs = self.held.pop(self.order[0])
            yield from evs
            if not isinstance(evs[-1], FileDone):
                return
            self.order.pop(0)

    def _finish(self, batch: _Batch) -> list:
        """Heads, pooling and events of one batch, in arrival order (waits for its encoding)."""
        encoded = iter(batch.encoded.result())
        events = []
        for item in batch.items:
            key = item[1] if isinstance(item, tuple) else item.key
            if isinstance(item, Span):
                frames, inputs = next(encoded)
                if key not in self.files:  # the file failed after this span was flushed
                    continue
                if item.ready is not None:
                    item.ready.wait()
                state = self.files[key]
                if state.track is not None:
                    state.track.add(inputs, item.start, item.keep_ranges())
                if len(item.windows):
                    vectors = self.encoder.pool_windows(frames, item.windows)
                    t = np.round(item.windows + item.start, 6)
                    events.append(Windows(key, vectors, t[:, 0], t[:, 1]))
            elif key not in self.files:
                continue
            elif not isinstance(item, tuple):  # ChunkDone, Speakers
                events.append(item)
            else:
                state = self.files.pop(key)
                codes = state.track.codes(state.audio_end) if state.track is not None and state.windows else None
                events.append(FileDone(key, state.audio_s, state.speech_s, state.windows, codes))
        return events


def _done(value) -> Future:
    f: Future = Future()
    f.set_result(value)
    return f


def speculated(chunk: AudioChunk) -> bool:
    """Whether a run's first chunk is encoded whole before its VAD (SPECULATE_FIRST_CHUNK, SPECULATE_MAX_S)."""
    return SPECULATE_FIRST_CHUNK and len(chunk.samples) <= SPECULATE_MAX_S * SAMPLE_RATE


@dataclass
class FirstSpans:
    """Called (by whisper_frontend.FrontendLoad, before the stream starts, while torch is imported): the
    spans embed_stream hands to the encoder in its first call when `path` is its first file, where that
    call holds nothing else, or None; WhisperFrontend.prefetch encodes them. frame_s and margin_s: the
    stream's (the encoder's frame grid and span margin). The stream's first call encodes its first VAD
    batch's spans (the ("flush",) after it), so:
    - a speculated first chunk (see speculated) of the run's only file: the whole chunk (of several files
      the first batch holds the next files' spans too);
    - a first chunk whose VAD runs alone (at least VAD_BATCH_S long, or the whole of the only file): its
      island spans.
    The chunk's VAD runs once, here or in the stream, whichever asks first (`regions`)."""

    path: str
    alone: bool
    frame_s: float
    margin_s: float
    vad: tuple[AudioChunk, list] | None = None  # the first chunk and its VAD regions, once computed
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __call__(self) -> list[np.ndarray] | None:
        chunk = next(iter(iter_chunks(self.path, CHUNK_S, 2 * CHUNK_PAD_S)), None)
        if chunk is None:
            return None
        if speculated(chunk):
            return [chunk.samples] if self.alone else None
        whole_file = self.alone and chunk.end <= chunk.core_end  # the last chunk has no right pad
        if len(chunk.samples) < VAD_BATCH_S * SAMPLE_RATE and not whole_file:
            return None
        w, _ = chunk_windows(chunk, self.frame_s, self.regions(chunk))
        return [s.samples for s in island_spans(0, chunk, w, self.margin_s)] or None

    def regions(self, chunk: AudioChunk) -> list:
        """The VAD regions of `chunk` when its VAD runs alone: computed once if it is the first chunk (the
        same samples), by whichever of the prefetch and the stream asks first; the other waits for them."""
        with self._lock:
            vad = self.vad
            if vad is None or vad[0].start != chunk.start or not np.array_equal(vad[0].samples, chunk.samples):
                self.vad = vad = (chunk, speech_regions_many([chunk.samples])[0])
            return vad[1]


def _analyse_files(
    files: Iterable[tuple[int, str]], frame_s: float, margin_s: float, out: queue.Queue, stop: threading.Event,
    speaker_model=None, speculate: bool = False, first: FirstSpans | None = None,
) -> None:
    """Producer thread: per file, ("start", key), then per chunk ("spans", spans) and ("chunk", ChunkDone, speech_s,
    core_end, Speakers or None: with a speaker model, the speaker embeddings of the core's speech pieces), then
    ("done", key) or ("failed", key, error); finally None. Exceptions other than decode errors are passed on.
    ("flush",) follows the spans of the first VAD batch.
    Chunks are gathered until VAD_BATCH_S of audio waits and their VAD runs as one batch (short files).
    speculate: the first chunk goes out at once as one whole-chunk span, filled in (fill_speculative) when
    its VAD has run. first: a first batch of one chunk gets its regions from first.regions (computed once)."""

    def put(x) -> None:
        while not stop.is_set():
            try:
                out.put(x, timeout=0.1)
                return
            except queue.Full:
                continue

    pending: list = []  # messages in order; ("chunk", key, chunk) until its VAD has run
    first_batch = True

    def flush() -> None:
        nonlocal first_batch
        chunks = [m for m in pending if m[0] == "chunk"]
        if first is not None and len(chunks) == 1:  # the prefetch may have run this VAD already
            regions = iter([first.regions(chunks[0][2])])
        else:
            regions = iter(speech_regions_many([m[2].samples for m in chunks]) if chunks else ())
        staged = []  # every chunk's spans go to the encoder first; speaker embeddings and the rest follow
        for m in pending:
            if m[0] == "start":
                put(m)
            elif m[0] != "chunk":
                staged.append((m, None))
            else:
                r = next(regions)
                w, speech_s = chunk_windows(m[2], frame_s, r)
                if m[3] is not None:  # encoded already: its windows and islands now
                    fill_speculative(m[3], m[2], w, margin_s)
                else:
                    put(("spans", island_spans(m[1], m[2], w, margin_s)))
                staged.append((m, (r, w, speech_s)))
        if first_batch:  # the encoder starts on the first batch's spans at once (FIRST_FLUSH)
            put(("flush",))
            first_batch = False
        analysed_chunks = [(m[2], a[0]) for m, a in staged if a is not None]
        spoken = iter(  # the speaker pieces of every chunk, in one batch
            speaker_model.embed_speech_many(
                [(c.samples, r, c.core_start - c.start, c.core_end - c.start) for c, r in analysed_chunks]
            ) if speaker_model is not None and analysed_chunks else ()
        )
        for m, analysed in staged:
            if analysed is None:
                put(m)
                continue
            (_, key, chunk, _), (r, w, speech_s) = m, analysed
            voices = None
            if speaker_model is not None:
                pieces, emb = next(spoken)
                if len(pieces):
                    p = np.round(pieces + chunk.start, 6)
                    voices = Speakers(key, p[:, 0], p[:, 1], emb)
            put(("chunk", ChunkDone(key, chunk.core_end - chunk.core_start, len(w)), speech_s, chunk.core_end, voices))
        pending.clear()

    try:
        waiting_s = 0.0
        for key, path in files:
            pending.append(("start", key))
            try:
                for chunk in iter_chunks(path, CHUNK_S, 2 * CHUNK_PAD_S):
                    if stop.is_set():
                        return
                    early = None
                    if speculate and speculated(chunk):  # the run's first chunk: to the encoder now, before the VAD
                        early = Span(key, chunk.start, chunk.samples.copy(), None, (chunk.core_start, chunk.core_end), ready=threading.Event())
                        for m in pending:  # ("start", key): the stream must know the file before its span
                            put(m)
                        pending.clear()
                        put(("spans", [early]))
                    speculate = False  # a longer first chunk waits for its VAD like every other chunk
                    pending.append(("chunk", key, chunk, early))
                    waiting_s += len(chunk.samples) / SAMPLE_RATE
                    if waiting_s >= VAD_BATCH_S:
                        flush()
                        first, waiting_s = None, 0.0
            except AudioDecodeError as e:
                pending.append(("failed", key, e))
            else:
                pending.append(("done", key))
        flush()
        put(None)
    except BaseException as e:  # noqa: BLE001 - handed to the consuming thread, which re-raises it
        put(("error", e))


def embed_stream(
    files: Iterable[tuple[int, str]], encoder, phone=None, flush_s: float | None = None, pack: bool = True, speaker_model=None,
    first: FirstSpans | None = None,
) -> Iterator:
    """Events for (key, path) pairs, in an order the writer can apply directly (see the module docstring).

    A decode error of one file yields FileFailed after any Windows of that file already emitted; the writer
    drops those (IndexWriter.drop_pending). flush_s: seconds of queued audio that trigger encoding (default
    PACK_FLUSH_S). pack=False encodes every span in blocks of its own (no attention across files) and never
    speculates (a --no-pack or cluster run equals the sequential path). With a speaker model, Speakers events
    carry the speaker embeddings of each chunk's speech. first: the FirstSpans that prefetched the first
    file's first spans, whose VAD regions the stream reuses."""
    flush_s = PACK_FLUSH_S if flush_s is None else flush_s
    margin = max(SPAN_MARGIN_S, float(encoder.context_s))
    if CHUNK_PAD_S <= MAX_WINDOW_S + margin:
        raise AwesearchError(f"chunk pad {CHUNK_PAD_S} s is too small for {MAX_WINDOW_S} s windows and {margin} s of context")
    frame_s = 1.0 / encoder.frame_rate
    packer = _Packer(encoder, phone, pack)
    q: queue.Queue = queue.Queue(maxsize=2 * QUEUE_CHUNKS)  # two messages per chunk
    stop = threading.Event()
    speculate = pack
    worker = threading.Thread(
        target=_analyse_files, args=(files, frame_s, margin, q, stop, speaker_model, speculate, first), name="awesearch-analyse", daemon=True
    )
    worker.start()
    try:
        while True:
            try:
                msg = q.get(timeout=POLL_S)
            except queue.Empty:  # the analysis is busy: finish what the encoder has done meanwhile
                yield from packer.finish_ready()
                continue
            if msg is None:
                break
            if msg[0] == "error":
                raise msg[1]
            if msg[0] == "start":
                packer.start(msg[1], phone)
            elif msg[0] == "done":
                packer.items.append(msg)
            elif msg[0] == "failed":
                yield FileFailed(msg[1], msg[2])
                yield from packer.fail(msg[1])
            elif msg[0] == "flush":
                yield from packer.flush()
            elif msg[0] == "spans":
                packer.items.extend(msg[1])
                packer.queued_s += sum(len(s.samples) for s in msg[1]) / SAMPLE_RATE
                if packer.queued_s >= flush_s or any(len(s.samples) > LONG_SPAN_S * SAMPLE_RATE for s in msg[1]):
                    yield from packer.flush()
            else:
                _, progress, speech_s, core_end, voices = msg
                state = packer.files[progress.key]
                state.audio_s += progress.audio_s
                state.speech_s += speech_s
                state.windows += progress.windows
                state.audio_end = max(state.audio_end, core_end)
                if voices is not None:
                    packer.items.append(voices)
                packer.items.append(progress)
        yield from packer.finish_all()
    finally:
        stop.set()
        packer.close()
        worker.join(timeout=5)


def embed_file(path: str, encoder, writer, file_id: int, on_chunk, phone=None, speaker_model=None) -> tuple[float, float, int, int]:
    """One file through embed_stream into a writer (or anything with add_windows / add_phonetic): returns
    (audio seconds, speech seconds, windows, phonetic frames); AudioDecodeError when it cannot be decoded.
    on_chunk(audio seconds, windows) after every chunk. Cluster workers (indexer/cluster.py) use it; every
    span is encoded alone (pack=False), so a cluster run equals a local `--no-pack` run."""
    for ev in embed_stream([(0, path)], encoder, phone, pack=False, speaker_model=speaker_model):
        if isinstance(ev, Windows):
            writer.add_windows(file_id, ev.vectors, ev.starts, ev.ends)
        elif isinstance(ev, Speakers):
            writer.add_speakers(file_id, ev.starts, ev.ends, ev.voices, speaker_model.checksum)
        elif isinstance(ev, ChunkDone):
            on_chunk(ev.audio_s, ev.windows)
        elif isinstance(ev, FileFailed):
            raise ev.error
        else:
            n_phonetic = writer.add_phonetic(file_id, ev.codes) if ev.codes is not None else 0
            return ev.audio_s, ev.speech_s, ev.windows, n_phonetic
    raise AwesearchError(f"{path}: the embedding stream ended without a result")
