"""Distributed indexing on Dask: workers decode and embed files, this process alone writes and commits.

`index_paths(..., cluster="tcp://scheduler:8786")` plans as usual (scan, diff, hashes) and then, instead
of embedding each file itself, submits it to the Dask cluster (embed_remote: decode, VAD, windows,
encoder, speaker pieces, exactly embed_file) keeping up to IN_FLIGHT_PER_WORKER files per worker in flight, and takes the
results back in plan order. Vectors go into the one IndexWriter as in a local run, so commits, durability
(a killed coordinator loses only files since the last commit) and the resulting index are the same as a
local run's. Workers need awesearch installed (same version) and the audio at the same paths.

Dask rather than Ray: the work is a plain map of files to arrays with one consumer; Dask's distributed
scheduler is a pure-Python pip install (no object store or raylet daemons), starts in about a second
for tests, and runs on SSH, Kubernetes, HPC job queues or `dask scheduler` / `dask worker` by hand.
"""

from __future__ import annotations

import functools
from collections import deque
from dataclasses import dataclass
from typing import Callable

import numpy as np

from awesearch.errors import AudioDecodeError, AwesearchError

IN_FLIGHT_PER_WORKER = 2  # files submitted ahead per worker (bounds coordinator memory)
CONNECT_TIMEOUT_S = 30  # seconds to reach the scheduler


@dataclass
class EmbeddedFile:
    """A worker's result for one file."""

    audio_s: float  # seconds of audio
    speech_s: float  # seconds of speech
    vectors: np.ndarray  # [n, D] float16
    starts: np.ndarray  # [n] seconds
    ends: np.ndarray  # [n] seconds
    phonetic: np.ndarray | None  # uint8 codes [T, classes] of the phoneme head, or None (no phonetic store)
    speakers: tuple | None = None  # (starts [m] s, ends [m] s, emb [m, HIDDEN], speaker model checksum), or None


class _Collector:
    """Stands in for the IndexWriter on a worker: embed_file adds windows here."""

    def __init__(self) -> None:
        self.parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self.phonetic: np.ndarray | None = None
        self.speakers: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self.speaker_model = ""

    def add_speakers(self, file_id: int, starts: np.ndarray, ends: np.ndarray, emb: np.ndarray, model_checksum: str) -> None:
        self.speakers.append((np.asarray(starts, np.float64), np.asarray(ends, np.float64), np.asarray(emb, np.float32)))
        self.speaker_model = model_checksum

    def speaker_result(self) -> tuple | None:
        if not self.speakers:
            return None
        return (*(np.concatenate([p[i] for p in self.speakers]) for i in range(3)), self.speaker_model)

    def add_windows(self, file_id: int, vectors: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> None:
        self.parts.append((np.asarray(vectors, np.float16), np.asarray(starts, np.float64), np.asarray(ends, np.float64)))

    def add_phonetic(self, file_id: int, codes: np.ndarray) -> int:
        self.phonetic = codes
        return len(codes)


@functools.lru_cache(maxsize=2)
def _worker_models(model: str | None, phonetic: bool, threads: int | None):
    """(encoder, phoneme head or None) once per worker process (loaded on its first file)."""
    from awesearch.encoder import load_encoder
    from awesearch.phonetic import load_phone_model

    from .pipeline import limit_blas_threads, limit_malloc_arenas, set_torch_threads

    limit_malloc_arenas()
    limit_blas_threads()
    set_torch_threads(threads)
    return load_encoder(model), (load_phone_model() if phonetic else None)


def embed_remote(path: str, model: str | None, phonetic: bool, threads: int | None, speakers: bool = False) -> EmbeddedFile:
    """Run on a worker: embed one file, with speaker pieces when asked (AudioDecodeError travels back to the
    coordinator)."""
    from awesearch.speakers import load_speaker_model

    from .pipeline import embed_file

    encoder, phone = _worker_models(model, phonetic, threads)
    sink = _Collector()
    speaker_model = load_speaker_model() if speakers else None
    audio_s, speech_s, _, _ = embed_file(path, encoder, sink, -1, lambda chunk_s, n: None, phone, speaker_model)
    dim = encoder.dim
    cols = [np.concatenate([p[i] for p in sink.parts]) if sink.parts else np.empty((0, dim) if i == 0 else 0) for i in range(3)]
    return EmbeddedFile(audio_s, speech_s, cols[0].reshape(-1, dim), cols[1], cols[2], sink.phonetic, sink.speaker_result())


def connect(address: str):
    """A Dask client for the scheduler at address; AwesearchError (one line) when unreachable or not installed."""
    try:
        from distributed import Client
    except ImportError:
        raise AwesearchError("--cluster needs Dask: pip install 'awesearch[cluster]'") from None
    try:
        return Client(address, timeout=CONNECT_TIMEOUT_S)
    except (OSError, TimeoutError) as e:
        raise AwesearchError(f"cannot reach the Dask scheduler at {address}: {e}") from None


class ClusterEmbedder:
    """embed(path, file_id, on_chunk) like embed_file, with the work done on the cluster.

    Files must be asked for in the order given to the constructor; the next ones are already running."""

    def __init__(self, client, paths: list[str], model: str | None, phonetic: bool, threads: int | None, writer, speaker_model: str = ""):
        """speaker_model: the checksum of the coordinator's speaker model, or "" for no speaker pieces; a worker
        whose speaker model differs is refused (its pieces would not be comparable)."""
        self.client, self.writer, self.speaker_model = client, writer, speaker_model
        self._todo = deque(paths)
        self._futures: deque = deque()
        workers = max(1, len(client.scheduler_info().get("workers", {})))
        self._ahead = IN_FLIGHT_PER_WORKER * workers
        self._submit = functools.partial(
            client.submit, embed_remote, model=model, phonetic=phonetic, threads=threads, speakers=bool(speaker_model), pure=False
        )
        self._fill()

    def _fill(self) -> None:
        while self._todo and len(self._futures) < self._ahead:
            path = self._todo.popleft()
            self._futures.append((path, self._submit(path)))

    def embed(self, path: str, file_id: int, on_chunk: Callable[[float, int], None]) -> tuple[float, float, int, int]:
        expected, future = self._futures.popleft()
        if expected != path:
            raise RuntimeError(f"cluster results out of order: expected {expected}, asked for {path}")
        self._fill()
        try:
            result: EmbeddedFile = future.result()
        except AudioDecodeError:
            raise
        except AwesearchError as e:  # any other one-line problem of this file on the worker
            raise AudioDecodeError(str(e)) from None
        n = len(result.vectors)
        self.writer.add_windows(file_id, result.vectors, result.starts, result.ends)
        n_phonetic = self.writer.add_phonetic(file_id, result.phonetic) if result.phonetic is not None else 0
        if result.speakers is not None:
            starts, ends, emb, checksum = result.speakers
            if checksum != self.speaker_model:
                raise AwesearchError(f"a Dask worker has another speaker model ({checksum[:12]}, here {self.speaker_model[:12]}): install the same awesearch on every worker")
            self.writer.add_speakers(file_id, starts, ends, emb, checksum)
        on_chunk(result.audio_s, n)
        return result.audio_s, result.speech_s, n, n_phonetic
