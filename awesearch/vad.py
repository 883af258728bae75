"""Speech regions with silero-vad (the model ships inside the silero-vad package).

Silero is a recurrent model run one 32 ms frame at a time; called frame by frame from Python it manages
about 80x real time on one core, which alone would miss the indexer's 100x target. So the audio is cut
into STREAM_S pieces that run side by side as one batch, each preceded by WARMUP_S of the audio before it
so its recurrent state has settled by the time its own frames start (the first piece gets zeros). On
speech this matches the frame-by-frame probabilities closely (tests/test_audio.py checks the regions) at
over 500x real time. Frame probabilities become regions with silero's own state machine.
"""

from __future__ import annotations

import warnings
from functools import lru_cache

import numpy as np

from .audio import SAMPLE_RATE

FRAME_SAMPLES = 512  # silero's frame at 16 kHz = 32 ms
STREAM_S = 2.0  # seconds of audio per batched stream
WARMUP_S = 0.64  # seconds of preceding audio each stream runs through first (20 frames)
SPEECH_THRESHOLD = 0.5  # silero speech probability
MIN_SPEECH_S = 0.1  # shorter blips are dropped (a short word like "it" is ~0.15 s)
MIN_SILENCE_S = 0.1  # shorter pauses do not split a region
REGION_PAD_S = 0.1  # seconds added to each side of a region (merged where pads meet)
VAD_THREADS = 1  # torch threads while the VAD runs: its steps are tiny, more threads only add sync (10x slower on a busy 2-core box)


@lru_cache(maxsize=1)
def _model():
    import torch

    threads = torch.get_num_threads()
    from silero_vad import load_silero_vad  # its import sets torch threads to 1 for the whole process

    torch.set_num_threads(threads)
    with warnings.catch_warnings():  # torch.jit.load is deprecated; silero ships a TorchScript file
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        return load_silero_vad(onnx=False)


def speech_probabilities(audio: np.ndarray) -> np.ndarray:
    """Per-frame (FRAME_SAMPLES) speech probability of 16 kHz mono float32 audio."""
    return speech_probabilities_many([audio])[0]


def _streams(audio: np.ndarray) -> tuple[np.ndarray, int]:
    """The clip as [streams, warm + per_stream, FRAME_SAMPLES] rows, and its number of frames."""
    n_frames = -(-len(audio) // FRAME_SAMPLES)
    per_stream = int(STREAM_S * SAMPLE_RATE) // FRAME_SAMPLES
    warm = int(WARMUP_S * SAMPLE_RATE) // FRAME_SAMPLES
    n_streams = -(-n_frames // per_stream)
    # stream j runs frames j*per_stream - warm .. (j+1)*per_stream - 1 and keeps its last per_stream outputs;
    # the first stream warms up on its own first frames (zeros would differ from any real start)
    flat = np.zeros(n_streams * per_stream * FRAME_SAMPLES, np.float32)
    flat[: len(audio)] = audio
    rows = flat.reshape(n_streams * per_stream, FRAME_SAMPLES)
    idx = np.arange(n_streams)[:, None] * per_stream + np.arange(-warm, per_stream)[None, :]
    idx[0, :warm] = np.arange(warm) % len(rows)
    return rows[idx], n_frames


def speech_probabilities_many(audios: list[np.ndarray]) -> list[np.ndarray]:
    """speech_probabilities of several clips in one pass: all their streams run side by side as one batch
    (the recurrent steps, not the audio, cost the time, so many short clips cost about as much as one)."""
    import torch

    audios = [np.asarray(a, dtype=np.float32).reshape(-1) for a in audios]
    parts = [_streams(a) for a in audios if len(a)]
    if not parts:
        return [np.zeros(0, np.float32) for _ in audios]
    warm = int(WARMUP_S * SAMPLE_RATE) // FRAME_SAMPLES
    batch = torch.from_numpy(np.concatenate([rows for rows, _ in parts]))  # [streams, steps, FRAME_SAMPLES]
    model = _model()
    model.reset_states()
    out = np.empty(batch.shape[:2], np.float32)
    threads = torch.get_num_threads()
    if threads != VAD_THREADS:  # process-wide: the indexer runs with VAD_THREADS already, so it never flips
        torch.set_num_threads(VAD_THREADS)
    try:
        with torch.inference_mode():
            for step in range(batch.shape[1]):
                out[:, step] = model(batch[:, step], SAMPLE_RATE).reshape(-1).numpy()
    finally:
        if threads != VAD_THREADS:
            torch.set_num_threads(threads)
        model.reset_states()
    probs, row = [], 0
    it = iter(parts)
    for a in audios:
        if not len(a):
            probs.append(np.zeros(0, np.float32))
            continue
        rows, n_frames = next(it)
        probs.append(out[row : row + len(rows), warm:].reshape(-1)[:n_frames])
        row += len(rows)
    return probs


def regions_from_probabilities(probs: np.ndarray, n_samples: int) -> list[tuple[float, float]]:
    """Silero's hysteresis state machine over frame probabilities -> padded (start_s, end_s) regions."""
    from silero_vad import get_speech_timestamps_from_probs

    stamps = get_speech_timestamps_from_probs(
        [float(p) for p in probs],
        sampling_rate=SAMPLE_RATE,
        threshold=SPEECH_THRESHOLD,
        min_speech_duration_ms=int(MIN_SPEECH_S * 1000),
        min_silence_duration_ms=int(MIN_SILENCE_S * 1000),
        speech_pad_ms=int(REGION_PAD_S * 1000),
        audio_length_samples=n_samples,
    )
    return [(s["start"] / SAMPLE_RATE, s["end"] / SAMPLE_RATE) for s in stamps]


def speech_regions(audio: np.ndarray) -> list[tuple[float, float]]:
    """(start_s, end_s) of speech in 16 kHz mono audio, seconds from its first sample, padded by REGION_PAD_S."""
    return speech_regions_many([audio])[0]


def speech_regions_many(audios: list[np.ndarray]) -> list[list[tuple[float, float]]]:
    """speech_regions of several clips, their VAD run as one batch (speech_probabilities_many)."""
    probs = speech_probabilities_many(audios)
    return [regions_from_probabilities(p, len(np.reshape(a, -1))) if len(p) else [] for p, a in zip(probs, audios)]
