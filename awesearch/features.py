"""Log-mel front end, computed with torch.stft and our own mel filterbank.

torchaudio is not used: the PyPI torchaudio wheel is a CUDA build that fails to import on CPU-only
machines, and the log-mel transform is twenty lines of torch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch

SAMPLE_RATE = 16000  # Hz: every recording is decoded to this rate
N_FFT = 400  # samples = 25 ms analysis window
HOP_LENGTH = 160  # samples = 10 ms between frames
N_MELS = 128  # mel bands, as in the JMCL reference recipe
F_MIN = 20.0  # Hz
F_MAX = 7600.0  # Hz: just under Nyquist, so 8 kHz telephone audio and 16 kHz audio share the band
LOG_FLOOR = 1e-6  # added before log so silence is finite


@dataclass(frozen=True)
class FeatureConfig:
    """Saved in every checkpoint and index manifest: features must match between indexing and query."""

    sample_rate: int = SAMPLE_RATE
    n_fft: int = N_FFT
    hop_length: int = HOP_LENGTH
    n_mels: int = N_MELS
    f_min: float = F_MIN
    f_max: float = F_MAX

    @property
    def frame_rate(self) -> float:
        """Mel frames per second."""
        return self.sample_rate / self.hop_length


def _hz_to_mel(hz: np.ndarray) -> np.ndarray:
    return 2595.0 * np.log10(1.0 + hz / 700.0)


def _mel_to_hz(mel: np.ndarray) -> np.ndarray:
    return 700.0 * (10.0 ** (mel / 2595.0) - 1.0)


@lru_cache(maxsize=8)
def mel_filterbank(cfg: FeatureConfig) -> torch.Tensor:
    """Triangular HTK-style mel filters, shape [n_fft // 2 + 1, n_mels], area-normalised."""
    n_freqs = cfg.n_fft // 2 + 1
    freqs = np.linspace(0.0, cfg.sample_rate / 2, n_freqs)
    mel_points = np.linspace(_hz_to_mel(np.array(cfg.f_min)), _hz_to_mel(np.array(cfg.f_max)), cfg.n_mels + 2)
    hz_points = _mel_to_hz(mel_points)
    lower, center, upper = hz_points[:-2], hz_points[1:-1], hz_points[2:]
    up = (freqs[:, None] - lower[None, :]) / (center - lower)[None, :]
    down = (upper[None, :] - freqs[:, None]) / (upper - center)[None, :]
    fb = np.clip(np.minimum(up, down), 0.0, None)
    fb *= (2.0 / (upper - lower))[None, :]  # equal area per band
    return torch.from_numpy(fb.astype(np.float32))


@lru_cache(maxsize=8)
def _window(n_fft: int) -> torch.Tensor:
    return torch.hann_window(n_fft)


def log_mel(audio: torch.Tensor | np.ndarray, cfg: FeatureConfig = FeatureConfig()) -> torch.Tensor:
    """Audio [..., samples] at cfg.sample_rate -> natural-log mel energies [..., frames, n_mels].

    Frame t is centred on sample t * hop_length, so it stands for time t / frame_rate seconds.
    """
    x = torch.as_tensor(audio, dtype=torch.float32)
    if x.shape[-1] < cfg.n_fft:
        x = torch.nn.functional.pad(x, (0, cfg.n_fft - x.shape[-1]))
    lead = x.shape[:-1]
    x = x.reshape(-1, x.shape[-1])
    spec = torch.stft(x, cfg.n_fft, cfg.hop_length, window=_window(cfg.n_fft), center=True, return_complex=True)
    power = spec.real.square() + spec.imag.square()  # [B, freqs, frames]
    mel = torch.matmul(power.transpose(1, 2), mel_filterbank(cfg))  # [B, frames, n_mels]
    out = torch.log(mel + LOG_FLOOR)
    return out.reshape(*lead, out.shape[-2], out.shape[-1])


def n_frames(n_samples: int, cfg: FeatureConfig = FeatureConfig()) -> int:
    """Number of frames log_mel returns for n_samples of audio."""
    return max(n_samples, cfg.n_fft) // cfg.hop_length + 1


def seconds_to_frame(t: float, frame_rate: float) -> int:
    return int(math.floor(t * frame_rate + 0.5))
