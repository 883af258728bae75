"""The offline pipeline: scan, diff, decode in chunks, VAD, candidate windows, embed, commit.

Each file is streamed in CHUNK_S chunks with CHUNK_PAD_S of extra audio each side; a window belongs to the
chunk whose core holds its start, so no window is embedded twice and each sees its full encoder context.
Files are committed in batches (at least every COMMIT_INTERVAL_S of wall time); a killed run loses only
the files since the last commit, and the next run redoes exactly those.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import math
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from awesearch.approx import update_approx
from awesearch.audio import SAMPLE_RATE, AudioChunk, iter_chunks, probe_duration
from awesearch.errors import AudioDecodeError, AwesearchError
from awesearch.speaker_index import check_speaker_model
from awesearch.store import STATUS_INDEXED, STATUS_SKIPPED, FileRecord
from awesearch.vad import speech_regions
from awesearch.windows import MAX_WINDOW_S, candidate_windows

from .scan import ScannedFile, plan, scan
from .writer import IndexWriter, acquire_lock

CHUNK_S = 60.0  # seconds of audio per chunk core
CHUNK_PAD_S = 4.0  # seconds each side; must exceed MAX_WINDOW_S + encoder context (checked at run time)
# Chunk starts are multiples of 4 s = 125 VAD frames of 32 ms = a whole number of encoder frames (10, 20 or
# 40 ms), so every chunk sees the same frame grids as a whole-file pass (and as a query cut from the file).
MALLOC_ARENAS = 2  # glibc malloc arenas (see limit_malloc_arenas)
M_ARENA_MAX = -8  # glibc mallopt parameter number
ENCODE_QUANTUM_S = 4.0  # seconds: encoded spans are whole multiples of this (bounded set of tensor shapes)
COMMIT_INTERVAL_S = 10.0  # seconds of wall time between commits at most (a file in progress finishes first)
COMMIT_MAX_FILES = 200  # files per commit at most
ENCODER_THREADS = 1  # torch threads for the encoder: the second core runs decoding + VAD (see embed_file); more
# intra-op threads made both stages several times slower on a busy 2-core machine
TEST_PAUSE_ENV = "AWESEARCH_TEST_PAUSE_S"  # tests only: seconds to sleep after each file and before each publish


@dataclass
class Progress:
    """What the pipeline reports to its progress callback (after the plan, after each chunk and file)."""

    total_audio_s: float  # seconds of audio to index this run
    done_audio_s: float  # seconds processed so far (including skipped files' estimated duration)
    files_total: int
    files_done: int
    windows: int  # windows embedded so far
    current: str  # path being indexed ("" when idle)


@dataclass
class SkippedFile:
    path: str
    reason: str  # one line


@dataclass
class IndexReport:
    indexed: int = 0  # files embedded this run
    unchanged: int = 0  # files already in the index
    removed: int = 0  # files dropped because they are gone
    skipped: list[SkippedFile] = field(default_factory=list)
    audio_s: float = 0.0  # seconds of audio embedded this run
    speech_s: float = 0.0  # seconds of it inside speech regions
    windows: int = 0  # windows embedded this run
    wall_s: float = 0.0  # seconds the run took
    repaired: list[str] = field(default_factory=list)  # recordings whose index data was damaged (re-embedded if scanned)
    lost: list[str] = field(default_factory=list)  # those of them not under the given paths (still to re-index)

    @property
    def realtime_factor(self) -> float:
        """Audio seconds indexed per wall second."""
        return self.audio_s / self.wall_s if self.wall_s > 0 else 0.0

    @property
    def ok(self) -> bool:
        """False when nothing under the given paths is indexed (every file failed, or none was found)."""
        return self.indexed + self.unchanged > 0


def _test_pause() -> None:
    pause = os.environ.get(TEST_PAUSE_ENV)
    if pause:
        time.sleep(float(pause))


def limit_malloc_arenas() -> bool:
    """Cap glibc at MALLOC_ARENAS arenas; True when applied (glibc only; elsewhere the allocator differs).

    glibc gives each thread its own arena; audio made by the analysis thread and freed by this one fragmented
    them and RSS grew ~75 MB per hour of audio. With two arenas it stays flat (benchmarks/index_speed.py)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:  # musl and other C libraries: no glibc arenas to cap
        return False
    return bool(libc.mallopt(M_ARENA_MAX, MALLOC_ARENAS))


def set_torch_threads(threads: int | None) -> int:
    """torch intra-op threads for the encoder (default ENCODER_THREADS; the VAD always runs on one)."""
    import torch

    n = threads or ENCODER_THREADS
    torch.set_num_threads(n)
    return n


@dataclass
class _AnalysedChunk:
    chunk: AudioChunk
    windows: np.ndarray  # [n, 2] seconds relative to chunk.start, on the encoder frame grid, starting in the core
    speech_s: float  # seconds of speech in the core
    pieces: np.ndarray  # [m, 2] seconds relative to chunk.start: speaker pieces inside the core
    voices: np.ndarray  # [m, HIDDEN] their speaker embeddings


def _analyse(chunks: Iterator[AudioChunk], frame_s: float, speaker_model=None) -> _AnalysedChunk | None:
    """Decode the next chunk, find its speech, its windows and (with a speaker model) the speaker embeddings
    of its speech pieces (None at the end of the file)."""
    chunk = next(chunks, None)
    if chunk is None:
        return None
    samples = chunk.samples
    regions = speech_regions(samples)
    core_lo, core_hi = chunk.core_start - chunk.start, chunk.core_end - chunk.start
    speech_s = sum(max(0.0, min(e, core_hi) - max(s, core_lo)) for s, e in regions)
    w = candidate_windows(samples, regions)
    # snap to the encoder's frame grid (file time): pooling is frame-exact, so the stored times are what
    # was embedded, and a window embeds the same whichever chunk or query span it is computed from
    w = np.unique(np.round((w + chunk.start) / frame_s) * frame_s - chunk.start, axis=0).reshape(-1, 2)
    w = w[(w[:, 0] >= core_lo - 1e-9) & (w[:, 0] < core_hi - 1e-9) & (w[:, 1] > w[:, 0])]
    if speaker_model is None:
        return _AnalysedChunk(chunk, w, speech_s, np.zeros((0, 2)), np.zeros((0, 0), np.float32))
    pieces, voices = speaker_model.embed_speech(samples, regions, core_lo, core_hi)
    return _AnalysedChunk(chunk, w, speech_s, pieces, voices)


class _PhoneticTrack:
    """The phoneme head's codes of one file, gathered chunk by chunk (chunk cores only) at FRAME_RATE."""

    def __init__(self, phone):
        self.phone = phone
        self.pieces: list[tuple[int, np.ndarray]] = []  # (first file frame, codes)

    def add(self, inputs, span_start_s: float, core_start_s: float, core_end_s: float) -> None:
        """inputs: front-end features [1, T, 384] of audio starting at file time span_start_s."""
        import torch

        from awesearch.phonetic import FRAME_RATE, quantize

        with torch.inference_mode():
            codes = quantize(self.phone.head(inputs)[0].numpy())
        f0 = int(round(span_start_s * FRAME_RATE))
        lo = max(0, int(round(core_start_s * FRAME_RATE)) - f0)
        hi = min(len(codes), int(round(core_end_s * FRAME_RATE)) - f0)
        if hi > lo:
            self.pieces.append((f0 + lo, codes[lo:hi]))

    def codes(self, duration_s: float) -> np.ndarray:
        from awesearch.phonetic import FRAME_RATE, blank_codes

        out = blank_codes(int(math.ceil(duration_s * FRAME_RATE)))
        for f, c in self.pieces:
            n = max(0, min(len(c), len(out) - f))
            out[f : f + n] = c[:n]
        return out


def embed_file(
    path: str, encoder, writer: IndexWriter, file_id: int, on_chunk: Callable[[float, int], None], phone=None, speaker_model=None
) -> tuple[float, float, int, int]:
    """Decode, VAD, window and embed one file into the writer's buffer.

    Two stages overlap on two cores: a worker thread decodes chunk k+1 and runs the VAD and windowing on it
    while this thread embeds chunk k (torch kernels release the GIL). Returns (audio seconds, speech
    seconds, windows); raises AudioDecodeError when the file cannot be decoded. on_chunk(audio seconds of
    the chunk core, windows in it) is called after every chunk. With a phoneme head (`phone`), the file's
    phonetic frames are written too (writer.add_phonetic); the fourth value is their number (else 0). With a
    speaker model (awesearch/speakers.py), the speaker pieces of its speech are buffered too (writer.add_speakers).
    """
    if CHUNK_PAD_S <= MAX_WINDOW_S + encoder.context_s:
        raise AwesearchError(f"chunk pad {CHUNK_PAD_S} s is too small for encoder context {encoder.context_s} s")
    frame_s = 1.0 / encoder.frame_rate
    ctx = float(encoder.context_s)
    audio_s = speech_s = 0.0
    n_windows = 0
    track = _PhoneticTrack(phone) if phone is not None else None
    audio_end = 0.0
    chunks = iter_chunks(path, CHUNK_S, 2 * CHUNK_PAD_S)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="awesearch-analyse") as pool:
        ahead = pool.submit(_analyse, chunks, frame_s, speaker_model)
        while (item := ahead.result()) is not None:
            ahead = pool.submit(_analyse, chunks, frame_s, speaker_model)  # the generator is only ever advanced by the worker
            chunk, w = item.chunk, item.windows
            if len(item.pieces):
                p = np.round(item.pieces + chunk.start, 6)
                writer.add_speakers(file_id, p[:, 0], p[:, 1], item.voices, speaker_model.checksum)
            if len(w):
                # encode only the span the windows need: whole seconds from the chunk start (on every encoder
                # frame grid), ENCODE_QUANTUM_S long, so few distinct input shapes reach torch (oneDNN caches
                # kernels per shape: arbitrary lengths grew memory by ~80 MB per hour of audio)
                samples = chunk.samples
                lo = max(0.0, math.floor(w[:, 0].min() - ctx))
                hi = lo + ENCODE_QUANTUM_S * math.ceil((w[:, 1].max() + ctx - lo) / ENCODE_QUANTUM_S)
                hi = min(len(samples) / SAMPLE_RATE, hi)
                frames, inputs = encoder.encode_frames_and_inputs(samples[int(round(lo * SAMPLE_RATE)) : int(round(hi * SAMPLE_RATE))])
                if track is not None:
                    track.add(inputs, chunk.start + lo, chunk.core_start, chunk.core_end)
                vectors = encoder.pool_windows(frames, w - lo)
                writer.add_windows(file_id, vectors, np.round(w[:, 0] + chunk.start, 6), np.round(w[:, 1] + chunk.start, 6))
                n_windows += len(w)
            speech_s += item.speech_s
            audio_s += chunk.core_end - chunk.core_start
            audio_end = max(audio_end, chunk.core_end)
            on_chunk(chunk.core_end - chunk.core_start, len(w))
    n_phonetic = writer.add_phonetic(file_id, track.codes(audio_end)) if track is not None and n_windows else 0
    return audio_s, speech_s, n_windows, n_phonetic


def index_paths(
    paths: list[str | os.PathLike],
    index_dir: str | os.PathLike,
    model: str | None = None,
    progress: Callable[[Progress], None] | None = None,
    threads: int | None = None,
    commit_interval_s: float = COMMIT_INTERVAL_S,
    phonetic: bool = True,
    verify: bool | None = None,
    cluster: str | None = None,
    speakers: bool = True,
) -> IndexReport:
    """Index the audio under `paths` into `index_dir` (created if missing), incrementally and durably.

    Raises IndexLockedError when another indexer runs, IndexFormatError when the index was built by
    another encoder or format version, AwesearchError when a path does not exist. phonetic=False leaves out the
    phonetic store (first-stage cosine scores only; benchmarks compare the two). Files that cannot be
    read are reported in IndexReport.skipped and recorded in the index; they never stop the run.
    verify: see IndexWriter.open; damaged index data is dropped and its recordings re-embedded (repair.py).
    cluster: a Dask scheduler address; files are embedded on its workers, this process commits (cluster.py).
    IndexWriteError (one line) when the disk fills up or a write fails; every earlier commit stays intact.
    speakers: also store speaker embeddings of the speech (awesearch/speakers.py; not on a cluster; False:
    benchmarks only).
    """
    from awesearch.encoder import load_encoder
    from awesearch.phonetic import load_phone_model

    t0 = time.monotonic()
    limit_malloc_arenas()
    report = IndexReport()
    report_progress = progress or (lambda p: None)
    scanned = scan(paths)
    lock_fd = acquire_lock(index_dir)  # before the slow model loading: a second indexer fails at once
    try:
        encoder = load_encoder(model)
        client = None
        if cluster is not None:
            from .cluster import connect

            client = connect(cluster)
    except BaseException:
        os.close(lock_fd)
        raise
    source = os.path.abspath(model) if model and (model.endswith(".pt") or os.sep in model) else (model or encoder.name)
    try:
        phone = load_phone_model() if phonetic and encoder.has_phonetic_frontend else None
        speaker_model = _speaker_model() if speakers and cluster is None else None
    except BaseException:
        os.close(lock_fd)
        raise
    with IndexWriter.open(index_dir, encoder, source=source, lock_fd=lock_fd, phone=phone, verify=verify) as writer, \
            client or contextlib.nullcontext():
        if speaker_model is not None:
            check_speaker_model(writer.manifest, speaker_model, Path(index_dir))
        set_torch_threads(threads)
        work = plan(paths, scanned, writer.files)
        report.repaired = writer.repaired
        scanned_paths = {s.path for s in scanned}
        report.lost = [p for p in writer.repaired if p not in scanned_paths]
        report.unchanged = len(work.unchanged) + len(work.touched)
        report.removed = len(work.removed)

        def skip(s: ScannedFile, reason: str, digest: str = "", duration: float = 0.0) -> FileRecord:
            report.skipped.append(SkippedFile(s.path, reason))
            return FileRecord(
                file_id=writer.new_file_id(), path=s.path, size=s.size, mtime_ns=s.mtime_ns,
                content_hash=digest, duration=duration, status=STATUS_SKIPPED, error=reason,
            )

        pending: list[FileRecord] = [skip(s, s.error) for s in work.unreadable] + work.touched
        durations: list[float] = []
        todo: list[tuple[ScannedFile, str]] = []
        for s, digest in work.todo:
            try:
                durations.append(probe_duration(s.path))
                todo.append((s, digest))
            except AudioDecodeError as e:
                pending.append(skip(s, _reason(e, s.path), digest))
        state = Progress(sum(durations), 0.0, len(todo), 0, 0, "")
        report_progress(state)
        if client is None:
            embed = functools.partial(embed_file, encoder=encoder, writer=writer, phone=phone, speaker_model=speaker_model)
        else:
            from .cluster import ClusterEmbedder

            embed = ClusterEmbedder(client, [s.path for s, _ in todo], source, phone is not None, threads, writer).embed

        def commit() -> None:
            writer.commit(pending, work.removed, before_publish=_test_pause)
            pending.clear()

        last_commit = time.monotonic()
        for (s, digest), duration in zip(todo, durations):
            state.current = s.path
            file_id = writer.new_file_id()
            done_before = state.done_audio_s

            def on_chunk(chunk_s: float, n: int) -> None:
                state.done_audio_s = min(done_before + duration, state.done_audio_s + chunk_s)
                state.windows += n
                report_progress(state)

            try:
                audio_s, speech_s, n, n_phonetic = embed(s.path, file_id=file_id, on_chunk=on_chunk)
            except AudioDecodeError as e:
                writer.drop_pending(file_id)
                pending.append(skip(s, _reason(e, s.path), digest, duration))
            else:
                report.indexed += 1
                report.audio_s += audio_s
                report.speech_s += speech_s
                report.windows += n
                pending.append(
                    FileRecord(
                        file_id=file_id, path=s.path, size=s.size, mtime_ns=s.mtime_ns, content_hash=digest,
                        duration=audio_s, status=STATUS_INDEXED, windows=n, phonetic_frames=n_phonetic,
                    )
                )
            state.files_done += 1
            state.done_audio_s = done_before + duration
            report_progress(state)
            _test_pause()
            if time.monotonic() - last_commit >= commit_interval_s or len(pending) >= COMMIT_MAX_FILES:
                commit()
                last_commit = time.monotonic()
        if pending or work.removed or writer.manifest.generation == 0:
            commit()
        if writer.needs_compaction():
            writer.compact()
        update_approx(writer)
        state.current = ""
        report_progress(state)
    report.wall_s = time.monotonic() - t0
    return report


def _speaker_model():
    from awesearch.speakers import load_speaker_model

    return load_speaker_model()


def _reason(e: AudioDecodeError, path: str) -> str:
    """The error's message without the leading path (the summary prints the path beside it)."""
    msg = str(e)
    prefix = f"{path}: "
    return msg[len(prefix) :] if msg.startswith(prefix) else msg
