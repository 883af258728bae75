"""Speech regions with silero-vad (v6, as the package ships it), run in numpy on the weights the silero-vad package ships.

Silero is a per-frame feature stack (a 256-point STFT and four small convolutions over one 32 ms frame
plus the 4 ms before it) followed by one LSTM cell carried from frame to frame. Only the LSTM is
recurrent, so the feature stack runs for every frame of the audio at once (a few matrix products), and
only the LSTM steps one frame at a time. Stepped over a whole file from Python that would be ~30k steps
an hour; instead the frames are cut into STREAM_S streams that step side by side as one batch, each first
running through the WARMUP_S of frames before it so its recurrent state has settled by the time its own
frames start (the first stream warms up on its own first frames: zeros would differ from any real start).
tests/test_audio.py checks the result against silero's own TorchScript model frame by frame.

The weights are read from the package's TorchScript file (MIT, snakers4/silero-vad; the model
`load_silero_vad()` loads) by a restricted unpickler, without importing the package or torch: the indexer runs the VAD while torch is still being imported, so the
encoder starts sooner. Frame probabilities become regions with silero's own state machine
(`get_speech_timestamps_from_probs`, ported below for the options used here).
"""

from __future__ import annotations

import collections
import importlib.util
import io
import pickle
import zipfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from .audio import SAMPLE_RATE
from .errors import CheckpointError

FRAME_SAMPLES = 512  # silero's frame at 16 kHz = 32 ms
CONTEXT_SAMPLES = 64  # samples of the previous frame each frame's features also see (4 ms)
N_FFT = 256  # silero's STFT window (samples); hop STFT_HOP, so 4 STFT frames per frame
STFT_HOP = 128
STREAM_S = 2.0  # seconds of audio per batched stream
WARMUP_S = 0.64  # seconds of preceding audio each stream runs through first (20 frames)
SPEECH_THRESHOLD = 0.5  # silero speech probability
NEG_THRESHOLD = SPEECH_THRESHOLD - 0.15  # below it a region may end (silero's default hysteresis)
MIN_SPEECH_S = 0.1  # shorter blips are dropped (a short word like "it" is ~0.15 s)
MIN_SILENCE_S = 0.1  # shorter pauses do not split a region
REGION_PAD_S = 0.1  # seconds added to each side of a region (merged where pads meet)
SILERO_PACKAGE = "silero_vad"
WEIGHTS_FILE = "data/silero_vad.jit"  # inside the package: the TorchScript model load_silero_vad() loads
HIDDEN = 128  # LSTM width


@dataclass(frozen=True)
class SileroWeights:
    """silero-vad v5 (16 kHz) as matrices for `x @ W` on rows of features."""

    stft: np.ndarray  # [N_FFT, 2 * (N_FFT // 2 + 1)] real then imaginary basis
    convs: tuple[tuple[np.ndarray, np.ndarray], ...]  # per layer ([3 * in, out] im2col weights, [out] bias)
    w_ih: np.ndarray  # [HIDDEN, 4 * HIDDEN]
    w_hh: np.ndarray  # [HIDDEN, 4 * HIDDEN]
    bias: np.ndarray  # [4 * HIDDEN] both LSTM biases
    out_w: np.ndarray  # [HIDDEN]
    out_b: float


def weights_path() -> Path:
    """The TorchScript file inside the installed silero-vad package (found without importing it)."""
    spec = importlib.util.find_spec(SILERO_PACKAGE)
    if spec is None or spec.origin is None:
        raise CheckpointError(f"the VAD needs the {SILERO_PACKAGE} package (pip install silero-vad)")
    path = Path(spec.origin).parent / WEIGHTS_FILE
    if not path.is_file():
        raise CheckpointError(f"silero-vad weights missing: {path}")
    return path


class _Attrs:
    """A pickled TorchScript module: its attributes only (no code, no torch)."""

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)


def _tensor(storage: np.ndarray, offset: int, size, stride, *_) -> np.ndarray:
    return np.lib.stride_tricks.as_strided(storage[offset:], shape=size, strides=[s * storage.itemsize for s in stride]).copy()


class _JitUnpickler(pickle.Unpickler):
    """Reads a TorchScript archive's data.pkl with numpy arrays for tensors; any other global is refused."""

    GLOBALS = {
        ("torch._utils", "_rebuild_tensor_v2"): _tensor,
        ("collections", "OrderedDict"): collections.OrderedDict,
        ("torch.jit._pickle", "build_intlist"): list,
        ("torch", "FloatStorage"): np.float32,
    }

    def __init__(self, archive: zipfile.ZipFile, prefix: str):
        super().__init__(io.BytesIO(archive.read(f"{prefix}/data.pkl")))
        self.archive, self.prefix = archive, prefix

    def find_class(self, module: str, name: str):
        if module.startswith("__torch__."):
            return _Attrs
        if (module, name) not in self.GLOBALS:
            raise pickle.UnpicklingError(f"unexpected {module}.{name}")
        return self.GLOBALS[(module, name)]

    def persistent_load(self, pid):
        _, dtype, key, _, numel = pid  # ("storage", storage type, key, location, number of elements)
        return np.frombuffer(self.archive.read(f"{self.prefix}/data/{key}"), dtype, numel)


def read_jit_module(path: Path):
    """The attributes (numpy tensors, numbers, submodules) of a TorchScript file, read without torch."""
    try:
        with zipfile.ZipFile(path) as z:
            name = next(n for n in z.namelist() if n.endswith("/data.pkl") and n.count("/") == 1)
            return _JitUnpickler(z, name.split("/")[0]).load()
    except (OSError, zipfile.BadZipFile, StopIteration, pickle.UnpicklingError, ValueError, KeyError) as e:
        raise CheckpointError(f"cannot read the silero-vad model {path}: {e}") from e


@lru_cache(maxsize=1)
def _weights() -> SileroWeights:
    m = read_jit_module(weights_path())._model  # the 16 kHz model
    layers = [getattr(m.encoder, str(i)).reparam_conv for i in range(4)]
    rnn = m.decoder.rnn
    out = getattr(m.decoder.decoder, "2")
    return SileroWeights(
        stft=np.ascontiguousarray(m.stft.forward_basis_buffer[:, 0, :].T),
        convs=tuple((np.ascontiguousarray(c.weight.transpose(2, 1, 0).reshape(-1, c.weight.shape[0])), c.bias) for c in layers),
        w_ih=np.ascontiguousarray(rnn.weight_ih.T),
        w_hh=np.ascontiguousarray(rnn.weight_hh.T),
        bias=rnn.bias_ih + rnn.bias_hh,
        out_w=out.weight.reshape(-1),
        out_b=float(out.bias[0]),
    )


def _conv(x: np.ndarray, w: np.ndarray, b: np.ndarray, stride: int) -> np.ndarray:
    """Conv1d (kernel 3, padding 1) + ReLU over [frames, positions, channels], as one matrix product (im2col)."""
    n, length, ch = x.shape
    n_out = (length - 1) // stride + 1
    cols = np.zeros((n, n_out, 3, ch), np.float32)
    for t in range(n_out):
        for k in range(3):
            p = stride * t + k - 1  # input position under kernel tap k
            if 0 <= p < length:
                cols[:, t, k] = x[:, p]
    y = cols.reshape(n * n_out, 3 * ch) @ w
    y += b
    return np.maximum(y, 0.0, out=y).reshape(n, n_out, -1)


def frame_features(audio: np.ndarray) -> np.ndarray:
    """The LSTM input of every frame: [frames, HIDDEN] (frame i = samples [i*512, (i+1)*512), zero-padded at
    the end, seeing the CONTEXT_SAMPLES before it; zeros before the first)."""
    w = _weights()
    n = -(-len(audio) // FRAME_SAMPLES)
    x = np.zeros(CONTEXT_SAMPLES + n * FRAME_SAMPLES, np.float32)
    x[CONTEXT_SAMPLES : CONTEXT_SAMPLES + len(audio)] = audio
    span = CONTEXT_SAMPLES + FRAME_SAMPLES
    frames = np.lib.stride_tricks.sliding_window_view(x, span)[::FRAME_SAMPLES][:n]  # [n, 576]
    # silero reflect-pads each frame's right end by CONTEXT_SAMPLES before its STFT
    padded = np.concatenate([frames, frames[:, span - 2 : span - 2 - CONTEXT_SAMPLES : -1]], axis=1)  # [n, 640]
    stft_frames = np.lib.stride_tricks.sliding_window_view(padded, N_FFT, axis=1)[:, ::STFT_HOP]  # [n, 4, 256]
    spec = np.ascontiguousarray(stft_frames).reshape(-1, N_FFT) @ w.stft
    spec *= spec
    half = w.stft.shape[1] // 2
    h = np.sqrt(spec[:, :half] + spec[:, half:]).reshape(n, -1, half)  # [n, 4, 129] magnitudes
    for (cw, cb), stride in zip(w.convs, (1, 2, 2, 1)):
        h = _conv(h, cw, cb, stride)
    return h[:, 0, :]  # [n, 128]


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 + 0.5 * np.tanh(0.5 * x)  # = 1 / (1 + exp(-x)) without overflow


def _lstm_probabilities(inputs: np.ndarray) -> np.ndarray:
    """inputs [streams, steps, 4 * HIDDEN] (features @ w_ih + bias) -> speech probability [streams, steps],
    each stream from a zero state."""
    w = _weights()
    s, steps, _ = inputs.shape
    h = np.zeros((s, HIDDEN), np.float32)
    c = np.zeros((s, HIDDEN), np.float32)
    out = np.empty((s, steps), np.float32)
    for t in range(steps):
        g = inputs[:, t] + h @ w.w_hh
        i, f, o = _sigmoid(g[:, :HIDDEN]), _sigmoid(g[:, HIDDEN : 2 * HIDDEN]), _sigmoid(g[:, 3 * HIDDEN :])
        c = f * c + i * np.tanh(g[:, 2 * HIDDEN : 3 * HIDDEN])
        h = o * np.tanh(c)
        out[:, t] = np.maximum(h, 0.0) @ w.out_w + w.out_b
    return _sigmoid(out)


def _stream_rows(n_frames: int, per_stream: int, warm: int) -> np.ndarray:
    """Frame indices [streams, warm + per_stream]: stream j runs frames j*per_stream - warm .. (j+1)*per_stream - 1
    and keeps its last per_stream outputs; the first stream warms up on its own first frames. Indices past the
    end repeat the last frame (their outputs are dropped)."""
    n_streams = -(-n_frames // per_stream)
    idx = np.arange(n_streams)[:, None] * per_stream + np.arange(-warm, per_stream)[None, :]
    idx[0, :warm] = np.arange(warm) % n_frames
    return np.clip(idx, 0, n_frames - 1)


def speech_probabilities(audio: np.ndarray) -> np.ndarray:
    """Per-frame (FRAME_SAMPLES) speech probability of 16 kHz mono float32 audio."""
    return speech_probabilities_many([audio])[0]


def speech_probabilities_many(audios: list[np.ndarray], stream_s: float | None = STREAM_S) -> list[np.ndarray]:
    """speech_probabilities of several clips in one pass: all their streams step side by side as one batch
    (the recurrent steps, not the audio, cost the time, so many short clips cost about as much as one).
    stream_s=None steps every clip whole from a zero state, frame by frame as silero itself does."""
    audios = [np.asarray(a, dtype=np.float32).reshape(-1) for a in audios]
    w = _weights()
    kept = [a for a in audios if len(a)]
    if not kept:
        return [np.zeros(0, np.float32) for _ in audios]
    feats = [frame_features(a) @ w.w_ih + w.bias for a in kept]  # [frames, 4 * HIDDEN] each
    if stream_s is None:
        longest = max(len(f) for f in feats)
        rows = np.zeros((len(feats), longest, 4 * HIDDEN), np.float32)
        for j, f in enumerate(feats):
            rows[j, : len(f)] = f
        probs = _lstm_probabilities(rows)
        per_clip = iter(p[: len(f)] for p, f in zip(probs, feats))
    else:
        per_stream = int(stream_s * SAMPLE_RATE) // FRAME_SAMPLES
        warm = int(WARMUP_S * SAMPLE_RATE) // FRAME_SAMPLES
        idx = [_stream_rows(len(f), per_stream, warm) for f in feats]
        probs = _lstm_probabilities(np.concatenate([f[i] for f, i in zip(feats, idx)]))[:, warm:]
        bounds = np.cumsum([0] + [len(i) for i in idx])
        per_clip = iter(probs[a:b].reshape(-1)[: len(f)] for a, b, f in zip(bounds[:-1], bounds[1:], feats))
    return [next(per_clip) if len(a) else np.zeros(0, np.float32) for a in audios]


def regions_from_probabilities(probs: np.ndarray, n_samples: int) -> list[tuple[float, float]]:
    """Silero's hysteresis state machine over frame probabilities -> padded (start_s, end_s) regions (a port of
    silero_vad.get_speech_timestamps_from_probs with no maximum speech length, which never cuts a region)."""
    min_speech = SAMPLE_RATE * MIN_SPEECH_S
    min_silence = SAMPLE_RATE * MIN_SILENCE_S
    pad = SAMPLE_RATE * REGION_PAD_S
    speeches: list[list[int]] = []
    start = temp_end = 0
    triggered = False
    for i, p in enumerate(np.asarray(probs, np.float32).tolist()):
        sample = FRAME_SAMPLES * i
        if p >= SPEECH_THRESHOLD:
            temp_end = 0
            if not triggered:
                triggered, start = True, sample
                continue
        if p < NEG_THRESHOLD and triggered:
            temp_end = temp_end or sample
            if sample - temp_end < min_silence:
                continue
            if temp_end - start > min_speech:
                speeches.append([start, temp_end])
            triggered, temp_end = False, 0
    if triggered and n_samples - start > min_speech:
        speeches.append([start, n_samples])
    for i, s in enumerate(speeches):
        if i == 0:
            s[0] = int(max(0, s[0] - pad))
        if i != len(speeches) - 1:
            gap = speeches[i + 1][0] - s[1]
            if gap < 2 * pad:
                s[1] += int(gap // 2)
                speeches[i + 1][0] = int(max(0, speeches[i + 1][0] - gap // 2))
            else:
                s[1] = int(min(n_samples, s[1] + pad))
                speeches[i + 1][0] = int(max(0, speeches[i + 1][0] - pad))
        else:
            s[1] = int(min(n_samples, s[1] + pad))
    return [(s / SAMPLE_RATE, e / SAMPLE_RATE) for s, e in speeches]


def speech_regions(audio: np.ndarray) -> list[tuple[float, float]]:
    """(start_s, end_s) of speech in 16 kHz mono audio, seconds from its first sample, padded by REGION_PAD_S."""
    return speech_regions_many([audio])[0]


def speech_regions_many(audios: list[np.ndarray]) -> list[list[tuple[float, float]]]:
    """speech_regions of several clips, their VAD run as one batch (speech_probabilities_many)."""
    probs = speech_probabilities_many(audios)
    return [regions_from_probabilities(p, len(np.reshape(a, -1))) if len(p) else [] for p, a in zip(probs, audios)]
