"""`--jobs N`: worker processes that each load their own encoder and run indexer/embed.py's stream; `--device`.

Files go to the workers through one task queue (a worker takes the next file when its analysis thread is
ready for it, so spans of the files one worker holds are packed together); every event comes back through
one result queue to the indexing process, the only writer, which applies events as they arrive. Events of
one file always come from one worker, in order. A worker that dies stops the run with a one-line error;
the index keeps what was committed.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import queue
from typing import Iterator

from awesearch.errors import AwesearchError

DEVICES = ("auto", "cpu", "cuda")
MAX_JOBS = 64
POLL_S = 1.0  # seconds between liveness checks of the workers while waiting for events
RESULT_QUEUE_EVENTS = 64  # events in flight at most (bounds memory when the writer is slower)


def check_jobs(jobs: int) -> None:
    if not isinstance(jobs, int) or not 1 <= jobs <= MAX_JOBS:
        raise AwesearchError(f"--jobs must be between 1 and {MAX_JOBS}, got {jobs}")


def cuda_devices() -> int:
    """CUDA devices CTranslate2 (the Whisper front end) can use; 0 when it is not installed or sees none."""
    try:
        import ctranslate2
    except ImportError:
        return 0
    try:
        return int(ctranslate2.get_cuda_device_count())
    except Exception:  # noqa: BLE001 - a broken CUDA set-up counts as no GPU
        return 0


def resolve_device(device: str) -> str:
    """"auto" -> "cuda" when a GPU is usable, else "cpu"; "cuda" without one is a one-line error."""
    if device not in DEVICES:
        raise AwesearchError(f"--device must be one of {', '.join(DEVICES)}, got {device!r}")
    if device == "cpu":
        return "cpu"
    has_gpu = cuda_devices() > 0
    if device == "cuda" and not has_gpu:
        raise AwesearchError("--device cuda: no CUDA GPU is usable here (CTranslate2 sees none); use --device cpu or auto")
    return "cuda" if has_gpu else "cpu"


def _worker(tasks, results, source: str, phonetic: bool, device: str, threads: int, pack: bool, speakers: bool) -> None:
    """Worker process: embed the files it takes from `tasks` (None ends), put events on `results`."""
    try:
        import torch

        from awesearch.encoder import load_encoder
        from awesearch.phonetic import load_phone_model

        from .embed import embed_stream
        from .pipeline import limit_blas_threads, limit_malloc_arenas

        limit_malloc_arenas()
        limit_blas_threads()
        torch.set_num_threads(1)
        encoder = load_encoder(source)
        encoder.device = device
        encoder.frontend_threads = threads
        encoder.preload_frontend()
        phone = load_phone_model() if phonetic else None
        speaker_model = None
        if speakers:
            from awesearch.speakers import load_speaker_model

            speaker_model = load_speaker_model()
        for ev in embed_stream(iter(tasks.get, None), encoder, phone, pack=pack, speaker_model=speaker_model):
            results.put(ev)
        results.put(("exit", os.getpid()))
    except BaseException as e:  # noqa: BLE001 - reported to the writer as one line
        results.put(("error", f"{e.__class__.__name__}: {e}" if not isinstance(e, AwesearchError) else str(e)))


def parallel_stream(
    files: list[tuple[int, str]], source: str, phonetic: bool, jobs: int, device: str, threads: int | None, pack: bool = True, speakers: bool = False
) -> Iterator:
    """embed_stream's events for `files`, computed by `jobs` worker processes."""
    ctx = mp.get_context("spawn")  # no fork of a process holding torch / CTranslate2 threads
    tasks, results = ctx.Queue(), ctx.Queue(maxsize=RESULT_QUEUE_EVENTS)
    for f in files:
        tasks.put(f)
    for _ in range(jobs):
        tasks.put(None)
    per_worker = threads or max(1, (os.cpu_count() or 1) // jobs)
    procs = [ctx.Process(target=_worker, args=(tasks, results, source, phonetic, device, per_worker, pack, speakers), daemon=True) for _ in range(jobs)]
    for p in procs:
        p.start()
    running = jobs
    try:
        while running:
            try:
                ev = results.get(timeout=POLL_S)
            except queue.Empty:
                dead = [p for p in procs if p.exitcode not in (None, 0)]
                if dead:
                    raise AwesearchError(f"an indexing worker died (exit code {dead[0].exitcode}); run index again to resume") from None
                continue
            if isinstance(ev, tuple):
                if ev[0] == "error":
                    raise AwesearchError(f"indexing worker failed: {ev[1]}")
                running -= 1
                continue
            yield ev
    finally:
        for p in procs:
            if p.is_alive():
                p.terminate()
        for p in procs:
            p.join(timeout=5)


class _EventSink:
    """Stands in for the writer of cluster.ClusterEmbedder: its calls become events of one file."""

    def __init__(self) -> None:
        self.windows: list = []
        self.codes = None

    def add_windows(self, key: int, vectors, starts, ends) -> None:
        from .embed import Windows

        self.windows.append(Windows(key, vectors, starts, ends))

    def add_phonetic(self, key: int, codes) -> int:
        self.codes = codes
        return len(codes)

    def add_speakers(self, key: int, starts, ends, emb, model_checksum: str) -> None:
        from .embed import Speakers

        self.windows.append(Speakers(key, starts, ends, emb))


def cluster_stream(client, files: list[tuple[int, str]], source: str, phonetic: bool, threads: int | None, speaker_model: str = "") -> Iterator:
    """embed_stream's events for `files`, embedded on a Dask cluster (indexer/cluster.py), in order; with
    speaker_model (a speaker model's checksum), Speakers events too."""
    from awesearch.errors import AudioDecodeError

    from .cluster import ClusterEmbedder
    from .embed import ChunkDone, FileDone, FileFailed

    sink = _EventSink()
    embedder = ClusterEmbedder(client, [p for _, p in files], source, phonetic, threads, sink, speaker_model)
    for key, path in files:
        try:
            audio_s, speech_s, n, _ = embedder.embed(path, file_id=key, on_chunk=lambda s, n: None)
        except AudioDecodeError as e:
            sink.windows, sink.codes = [], None
            yield FileFailed(key, e)
            continue
        yield from sink.windows
        yield ChunkDone(key, audio_s, n)
        yield FileDone(key, audio_s, speech_s, n, sink.codes)
        sink.windows, sink.codes = [], None
