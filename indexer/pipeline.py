"""The offline pipeline: scan, diff, decode in chunks, VAD, candidate windows, embed, commit.

Each file is streamed in CHUNK_S chunks with CHUNK_PAD_S of extra audio each side; a window belongs to the
chunk whose core holds its start, so no window is embedded twice and each sees its full encoder context.
Decoding and embedding are indexer/embed.py (in this process, or in worker processes: indexer/workers.py);
this module is the single writer: it applies their events in order.
Files are committed in batches (at least every COMMIT_INTERVAL_S of wall time); a killed run loses only
the files since the last commit, and the next run redoes exactly those.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from awesearch.approx import update_approx
from awesearch.audio import probe_duration
from awesearch.errors import AudioDecodeError
from awesearch.speaker_index import check_speaker_model
from awesearch.store import MANIFEST_NAME, STATUS_INDEXED, STATUS_SKIPPED, FileRecord

from .embed import embed_file  # noqa: F401 - cluster workers (cluster.py) embed one file with it
from .scan import ScannedFile, plan, scan
from .writer import IndexWriter, acquire_lock

MALLOC_ARENAS = 2  # glibc malloc arenas (see limit_malloc_arenas)
M_ARENA_MAX = -8  # glibc mallopt parameter numbers
M_MMAP_THRESHOLD = -3
M_TRIM_THRESHOLD = -1
MMAP_THRESHOLD_BYTES = 64 << 20  # allocations below this come from the arenas, not fresh mmap pages (the encoder's 54 MB)
TRIM_THRESHOLD_BYTES = 128 << 20  # free memory an arena keeps before returning it to the system
COMMIT_INTERVAL_S = 10.0  # seconds of wall time between commits at most (a file in progress finishes first)
COMMIT_MAX_FILES = 200  # files per commit at most
ENCODER_THREADS = 1  # torch threads for the encoder: the second core runs decoding + VAD (see embed.py); more
# intra-op threads made both stages several times slower on a busy 2-core machine
BLAS_THREADS = 1  # numpy's BLAS threads while indexing: its products (VAD features, Whisper mel) are small, and a
# second BLAS thread spins on the core the encoder needs (3 x 3 min: 2-3 of ~14 CPU s, alternating runs)
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
    notes: list[str] = field(default_factory=list)  # other repairs made at open (indexer/repair.py)
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


def limit_blas_threads():
    """numpy's BLAS (and any other BLAS loaded) on BLAS_THREADS threads from now on, for this process (the
    worker processes call it once); as a context manager (index_paths) the limits are restored at its end."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=BLAS_THREADS, user_api="blas")


def _blas_limited(fn):
    """fn runs with limit_blas_threads()."""

    @functools.wraps(fn)
    def run(*args, **kwargs):
        with limit_blas_threads():
            return fn(*args, **kwargs)

    return run


def limit_malloc_arenas() -> bool:
    """Cap glibc at MALLOC_ARENAS arenas and keep large blocks in them; True when applied (glibc only;
    elsewhere the allocator differs).

    glibc gives each thread its own arena; audio made by the analysis thread and freed by this one fragmented
    them and RSS grew ~75 MB per hour of audio. With two arenas it stays flat (benchmarks/index_speed.py).
    The Whisper encoder allocates and frees a 54 MB attention matrix per layer and block; above glibc's mmap
    threshold (at most 32 MB by default) each one was a fresh mmap whose pages the kernel zeroed on first
    touch: 1.2 million page faults and a quarter of the encoder's CPU time on 9 minutes of audio.
    MMAP_THRESHOLD_BYTES and TRIM_THRESHOLD_BYTES keep them in the arenas (about 30 thousand faults). Peak RSS of
    one 2-hour file: 1.09 GB with these values, 1.38 GB when arenas kept up to 1 GB free plus a 64 MB top pad
    (fewer faults, but RSS grew ~300 MB per hour), 1.25 GB with glibc's defaults (main before issue 9's second
    session)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:  # musl and other C libraries: no glibc arenas to cap
        return False
    ok = libc.mallopt(M_ARENA_MAX, MALLOC_ARENAS)
    ok &= libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)
    ok &= libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES)
    return bool(ok)


def set_torch_threads(threads: int | None) -> int:
    """torch intra-op threads for the encoder (default ENCODER_THREADS; the VAD always runs on one)."""
    import torch

    n = threads or ENCODER_THREADS
    torch.set_num_threads(n)
    return n


@_blas_limited
def index_paths(
    paths: list[str | os.PathLike],
    index_dir: str | os.PathLike,
    model: str | None = None,
    progress: Callable[[Progress], None] | None = None,
    threads: int | None = None,
    commit_interval_s: float = COMMIT_INTERVAL_S,
    phonetic: bool = True,
    jobs: int = 1,
    device: str = "auto",
    pack: bool = True,
    verify: bool | None = None,
    cluster: str | None = None,
    speakers: bool = True,
) -> IndexReport:
    """Index the audio under `paths` into `index_dir` (created if missing), incrementally and durably.

    Raises IndexLockedError when another indexer runs, IndexFormatError when the index was built by
    another encoder or format version, AwesearchError when a path does not exist. phonetic=False leaves out the
    phonetic store (first-stage cosine scores only; benchmarks compare the two). Files that cannot be
    read are reported in IndexReport.skipped and recorded in the index; they never stop the run.
    jobs > 1 embeds in that many worker processes (each with its own encoder; this process is the only
    writer); device "cpu", "cuda" or "auto" (cuda when CTranslate2 sees a GPU) runs the Whisper front end.
    pack=False encodes each span of speech in blocks of its own (slower on short files; see indexer/embed.py).
    verify: see IndexWriter.open; damaged index data is dropped and its recordings re-embedded (repair.py).
    cluster: a Dask scheduler address; files are embedded on its workers, this process commits (cluster.py).
    IndexWriteError (one line) when the disk fills up or a write fails; every earlier commit stays intact.
    speakers: also store speaker embeddings of the speech (awesearch/speakers.py, on a cluster too; False:
    benchmarks only).
    """
    from .embed import ChunkDone, FileDone, FileFailed, Speakers, Windows, embed_stream
    from .workers import check_jobs, parallel_stream, resolve_device

    t0 = time.monotonic()
    check_jobs(jobs)
    device = resolve_device(device)
    limit_malloc_arenas()
    report = IndexReport()
    report_progress = progress or (lambda p: None)
    scanned = scan(paths)
    lock_fd = acquire_lock(index_dir)  # before the slow model loading: a second indexer fails at once
    early, first = _early_frontend(model, jobs, cluster, threads, device, pack, index_dir, scanned)
    try:
        from awesearch.encoder import load_encoder  # imports torch (1.2-1.5 s): the front end loads meanwhile
        from awesearch.phonetic import load_phone_model

        encoder = load_encoder(model)
        client = None
        if cluster is not None:
            from .cluster import connect

            client = connect(cluster)
        encoder.device = device
        encoder.frontend_threads = threads or encoder.frontend_threads
        source = os.path.abspath(model) if model and (model.endswith(".pt") or os.sep in model) else (model or encoder.name)
        phone = load_phone_model() if phonetic and encoder.has_phonetic_frontend else None
    except BaseException:
        os.close(lock_fd)
        raise
    with IndexWriter.open(index_dir, encoder, source=source, lock_fd=lock_fd, phone=phone, verify=verify) as writer, \
            client or contextlib.nullcontext():
        set_torch_threads(threads)
        work = plan(paths, scanned, writer.files)
        report.repaired = writer.repaired
        report.notes = writer.notes
        scanned_paths = {s.path for s in scanned}
        report.lost = [p for p in writer.repaired if p not in scanned_paths]
        speaker_model = _speaker_model() if speakers else None
        if speaker_model is not None:
            check_speaker_model(writer.manifest, speaker_model, Path(index_dir))
        if jobs == 1 and client is None and work.todo:
            encoder.preload_frontend(early)  # loads while durations are probed and the first chunk decoded
        report.unchanged = len(work.unchanged) + len(work.touched)
        report.removed = len(work.removed)

        def skip(s: ScannedFile, reason: str, digest: str = "", duration: float = 0.0, file_id: int | None = None) -> FileRecord:
            report.skipped.append(SkippedFile(s.path, reason))
            return FileRecord(
                file_id=writer.new_file_id() if file_id is None else file_id, path=s.path, size=s.size,
                mtime_ns=s.mtime_ns, content_hash=digest, duration=duration, status=STATUS_SKIPPED, error=reason,
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

        def commit() -> None:
            writer.commit(pending, work.removed, before_publish=_test_pause)
            pending.clear()

        last_commit = time.monotonic()
        file_ids: dict[int, int] = {}  # input key -> file id
        seen_s: dict[int, float] = {}  # input key -> audio seconds reported in progress so far
        files = [(k, s.path) for k, (s, _) in enumerate(todo)]
        if client is not None:
            from .workers import cluster_stream

            events = cluster_stream(client, files, source, phone is not None, threads, speaker_model.checksum if speaker_model else "")
        elif jobs == 1:
            events = embed_stream(files, encoder, phone, pack=pack, speaker_model=speaker_model, first=first)
        else:
            events = parallel_stream(files, source, phone is not None, jobs, device, threads, pack, speaker_model is not None)
        for ev in events:
            s, digest = todo[ev.key]
            if ev.key not in file_ids:
                file_ids[ev.key] = writer.new_file_id()
                seen_s[ev.key] = 0.0
            file_id = file_ids[ev.key]
            state.current = s.path
            if isinstance(ev, Windows):
                writer.add_windows(file_id, ev.vectors, ev.starts, ev.ends)
                continue
            if isinstance(ev, Speakers):
                writer.add_speakers(file_id, ev.starts, ev.ends, ev.voices, speaker_model.checksum)
                continue
            if isinstance(ev, ChunkDone):
                step = min(ev.audio_s, durations[ev.key] - seen_s[ev.key])
                seen_s[ev.key] += step
                state.done_audio_s += step
                state.windows += ev.windows
                report_progress(state)
                continue
            if isinstance(ev, FileFailed):
                writer.drop_pending(file_id)
                pending.append(skip(s, _reason(ev.error, s.path), digest, durations[ev.key], file_id))
            elif isinstance(ev, FileDone):
                n_phonetic = writer.add_phonetic(file_id, ev.codes) if ev.codes is not None else 0
                report.indexed += 1
                report.audio_s += ev.audio_s
                report.speech_s += ev.speech_s
                report.windows += ev.windows
                pending.append(
                    FileRecord(
                        file_id=file_id, path=s.path, size=s.size, mtime_ns=s.mtime_ns, content_hash=digest,
                        duration=ev.audio_s, status=STATUS_INDEXED, windows=ev.windows, phonetic_frames=n_phonetic,
                    )
                )
            state.files_done += 1
            state.done_audio_s += durations[ev.key] - seen_s.pop(ev.key)
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


def _early_frontend(model: str | None, jobs: int, cluster: str | None, threads: int | None, device: str, pack: bool,
                    index_dir, scanned: list[ScannedFile]):
    """(load, first): the default encoder's Whisper front end, loading on a thread from before the torch
    import (which it then overlaps), or None where this process will not encode with the default model (the
    default encoder reads Whisper frames; another model may not, and with --jobs or --cluster the workers
    encode; importing awesearch.encoder to check would import torch first). For a new index (every readable
    file is to be indexed, in scan order) it also prefetches the spans the stream will encode first: `first`,
    an embed.FirstSpans on the default encoder's frame grid and span margin, else None."""
    if model is not None or jobs != 1 or cluster is not None:
        return None, None
    from awesearch.whisper_frontend import FRONTEND_THREADS, FrontendLoad, whisper_available

    from .embed import FirstSpans

    if not whisper_available():
        return None, None
    first = None
    readable = [s for s in scanned if not s.error]
    if pack and readable and not (Path(index_dir) / MANIFEST_NAME).exists():
        first = FirstSpans(readable[0].path, len(readable) == 1, *default_span_grid())
    return FrontendLoad(threads or FRONTEND_THREADS, device, first_audio=first), first


def default_span_grid() -> tuple[float, float]:
    """The default encoder's frame grid (seconds per frame: Whisper frames, frame stride 1) and span margin
    (embed.SPAN_MARGIN_S: its context is shorter), known before torch is imported; a test checks them
    against the loaded encoder (a mismatch would only waste the prefetch: its spans would not match)."""
    from awesearch.whisper_frontend import WHISPER_FRAME_RATE

    from .embed import SPAN_MARGIN_S

    return 1.0 / WHISPER_FRAME_RATE, SPAN_MARGIN_S


def _speaker_model():
    from awesearch.speakers import load_speaker_model

    return load_speaker_model()


def _reason(e: AudioDecodeError, path: str) -> str:
    """The error's message without the leading path (the summary prints the path beside it)."""
    msg = str(e)
    prefix = f"{path}: "
    return msg[len(prefix) :] if msg.startswith(prefix) else msg
