"""Training-time audio augmentation for 16 kHz mono float32 speech.

``random_augment(seg, rng)`` is what the training loop calls on each crop: it never changes the
length or the timing of the audio (word boundaries stay valid). It applies, each with its own
probability: gain, pitch shift (phase vocoder), reverberation (simulated room), additive noise
(white, pink, or babble made of other synthetic speech) at 0-30 dB SNR, telephone band with an
8 kHz round trip, and an MP3 or Opus encode/decode round trip.

``speed_perturb(audio, factor)`` changes speed (and pitch) by resampling: it changes the length,
so every time in the utterance must be divided by ``factor``; use it on whole utterances.
"""

from __future__ import annotations

import io
import math
import random

import av
import numpy as np
import torch

from awesearch.tts import resample

SAMPLE_RATE = 16000  # Hz
SNR_DB = (0.0, 30.0)  # additive noise signal-to-noise ratio range, dB
GAIN_DB = (-12.0, 6.0)  # gain range, dB
SPEED_RANGE = (0.9, 1.1)  # speed_perturb factors
PITCH_SEMITONES = (-3.0, 3.0)  # pitch-shift range, semitones
RT60_S = (0.15, 0.9)  # reverberation time range, seconds
DIRECT_TO_REVERB_DB = (-3.0, 12.0)  # energy of the direct path over the reverberant tail, dB
TELEPHONE_BAND_HZ = (300.0, 3400.0)
TELEPHONE_RATE = 8000  # Hz
CODEC_BITRATES = {"mp3": (32_000, 64_000), "opus": (8_000, 32_000)}  # bit/s
BABBLE_TALKERS = (3, 7)
PHASE_VOCODER_FFT = 512  # samples
RATE_STEP_HZ = 400  # speed and pitch factors are quantised so resampling rates are multiples of this
PROBS = {"gain": 0.5, "pitch": 0.2, "reverb": 0.3, "noise": 0.5, "telephone": 0.15, "codec": 0.05}


def gain(audio: np.ndarray, db: float) -> np.ndarray:
    return np.clip(audio * 10 ** (db / 20), -1.0, 1.0).astype(np.float32)


def _quantized_rate(factor: float) -> int:
    """SAMPLE_RATE / factor rounded to a multiple of RATE_STEP_HZ (keeps resampling kernels few and small)."""
    return int(round(SAMPLE_RATE / factor / RATE_STEP_HZ)) * RATE_STEP_HZ


def speed_perturb(audio: np.ndarray, factor: float) -> tuple[np.ndarray, float]:
    """Play about ``factor`` times faster (pitch rises with it). Returns the audio and the factor
    actually applied (quantised); divide every time in the utterance by it."""
    rate = _quantized_rate(factor)
    return resample(audio, SAMPLE_RATE, rate), SAMPLE_RATE / rate


def _time_stretch(audio: np.ndarray, rate: float, n_fft: int = PHASE_VOCODER_FFT) -> np.ndarray:
    """Phase-vocoder time stretch by ``rate`` (>1 shorter), pitch kept."""
    hop = n_fft // 4
    window = torch.hann_window(n_fft)
    spec = torch.stft(torch.from_numpy(audio), n_fft, hop, window=window, return_complex=True)  # [F, T]
    steps = torch.arange(0, spec.shape[1] - 1, rate)
    steps = steps[steps < spec.shape[1] - 1]  # a float arange can overshoot its end by rounding
    idx = steps.floor().long()
    frac = (steps - idx).unsqueeze(0)
    a, b = spec[:, idx], spec[:, idx + 1]
    mag = (1 - frac) * a.abs() + frac * b.abs()
    expected = torch.linspace(0, math.pi * hop, spec.shape[0]).unsqueeze(1)
    dphase = b.angle() - a.angle() - expected
    dphase = dphase - 2 * math.pi * torch.round(dphase / (2 * math.pi))
    phase = torch.cumsum(torch.cat([spec[:, :1].angle(), (dphase + expected)[:, :-1]], dim=1), dim=1)
    out = torch.istft(torch.polar(mag, phase), n_fft, hop, window=window)
    return out.numpy().astype(np.float32)


def pitch_shift(audio: np.ndarray, semitones: float) -> np.ndarray:
    """Shift pitch by ``semitones`` keeping length and timing (time stretch, then resample)."""
    if len(audio) < PHASE_VOCODER_FFT:
        return audio
    rate = _quantized_rate(1 / 2 ** (semitones / 12))
    factor = rate / SAMPLE_RATE
    stretched = _time_stretch(audio, 1 / factor)
    shifted = resample(stretched, rate, SAMPLE_RATE)
    return _fit(shifted, len(audio))


def _fit(audio: np.ndarray, n: int) -> np.ndarray:
    if len(audio) >= n:
        return audio[:n].astype(np.float32)
    return np.pad(audio, (0, n - len(audio))).astype(np.float32)


def white_noise(n: int, rng: random.Random) -> np.ndarray:
    return np.random.default_rng(rng.getrandbits(32)).standard_normal(n).astype(np.float32)


def pink_noise(n: int, rng: random.Random) -> np.ndarray:
    """1/f noise by shaping white noise in the frequency domain."""
    spec = np.fft.rfft(white_noise(n, rng))
    freqs = np.arange(len(spec), dtype=np.float64)
    freqs[0] = 1.0
    pink = np.fft.irfft(spec / np.sqrt(freqs), n)
    return (pink / (pink.std() + 1e-9)).astype(np.float32)


def babble(pool: list[np.ndarray], n: int, rng: random.Random) -> np.ndarray:
    """A sum of BABBLE_TALKERS random stretches of other speech from ``pool``."""
    out = np.zeros(n, np.float32)
    for _ in range(rng.randint(*BABBLE_TALKERS)):
        src = pool[rng.randrange(len(pool))]
        if len(src) == 0:
            continue
        start = rng.randrange(max(1, len(src) - n))
        piece = np.resize(src[start : start + n], n) if len(src) < n else src[start : start + n]
        out += piece / (np.sqrt(np.mean(piece**2)) + 1e-9)
    return out


def add_noise(audio: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    """Mix ``noise`` under ``audio`` at ``snr_db`` (signal power over noise power)."""
    p_sig = float(np.mean(audio.astype(np.float64) ** 2)) + 1e-10
    p_noise = float(np.mean(noise.astype(np.float64) ** 2)) + 1e-10
    scale = math.sqrt(p_sig / (p_noise * 10 ** (snr_db / 10)))
    return np.clip(audio + scale * noise, -1.0, 1.0).astype(np.float32)


def room_impulse_response(rng: random.Random, rt60: float, drr_db: float) -> np.ndarray:
    """A simulated room: direct path at t=0 plus an exponentially decaying noise tail (RT60)."""
    n = int(rt60 * SAMPLE_RATE)
    t = np.arange(n) / SAMPLE_RATE
    tail = white_noise(n, rng) * np.exp(-6.9078 * t / rt60)  # -60 dB at rt60
    tail[: int(0.0025 * SAMPLE_RATE)] = 0.0  # first reflections after 2.5 ms
    tail *= math.sqrt(10 ** (-drr_db / 10) / (np.sum(tail**2) + 1e-12))
    tail[0] = 1.0
    return tail.astype(np.float32)


def reverberate(audio: np.ndarray, rir: np.ndarray) -> np.ndarray:
    """Convolve with ``rir`` (FFT), same length and level as the input, no delay added."""
    n = len(audio) + len(rir) - 1
    size = 1 << (n - 1).bit_length()
    wet = np.fft.irfft(np.fft.rfft(audio, size) * np.fft.rfft(rir, size), size)[: len(audio)]
    wet *= (np.sqrt(np.mean(audio**2)) + 1e-9) / (np.sqrt(np.mean(wet**2)) + 1e-9)
    return np.clip(wet, -1.0, 1.0).astype(np.float32)


def telephone(audio: np.ndarray) -> np.ndarray:
    """Narrow band: down to 8 kHz and back, then a 300-3400 Hz band-pass (FFT mask)."""
    narrow = _fit(resample(resample(audio, SAMPLE_RATE, TELEPHONE_RATE), TELEPHONE_RATE, SAMPLE_RATE), len(audio))
    spec = np.fft.rfft(narrow)
    freqs = np.fft.rfftfreq(len(narrow), 1 / SAMPLE_RATE)
    spec[(freqs < TELEPHONE_BAND_HZ[0]) | (freqs > TELEPHONE_BAND_HZ[1])] = 0
    return np.fft.irfft(spec, len(narrow)).astype(np.float32)


def codec_round_trip(audio: np.ndarray, codec: str, bitrate: int) -> np.ndarray:
    """Encode to MP3 or Opus in memory and decode back; the codec's delay is removed."""
    container, encoder, rate = {"mp3": ("mp3", "libmp3lame", SAMPLE_RATE), "opus": ("ogg", "libopus", SAMPLE_RATE)}[codec]
    source = resample(audio, SAMPLE_RATE, rate)
    buf = io.BytesIO()
    with av.open(buf, mode="w", format=container) as out:
        stream = out.add_stream(encoder, rate=rate)
        stream.bit_rate = bitrate
        stream.layout = "mono"
        pcm = np.clip(source * 32767, -32768, 32767).astype(np.int16)[None, :]
        frame = av.AudioFrame.from_ndarray(pcm, format="s16", layout="mono")
        frame.sample_rate = rate
        for packet in stream.encode(frame):
            out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    buf.seek(0)
    chunks = []
    with av.open(buf, mode="r") as inp:
        resampler = av.AudioResampler(format="flt", layout="mono", rate=rate)
        for frame in inp.decode(audio=0):
            for f in resampler.resample(frame):
                chunks.append(f.to_ndarray().reshape(-1))
    decoded = np.concatenate(chunks) if chunks else np.zeros(0, np.float32)
    decoded = resample(decoded.astype(np.float32), rate, SAMPLE_RATE)
    return _fit(decoded[_codec_delay(audio, decoded) :], len(audio))


def _codec_delay(ref: np.ndarray, decoded: np.ndarray, max_delay: int = 4096) -> int:
    """Samples by which ``decoded`` lags ``ref`` (cross-correlation peak, 0..max_delay)."""
    n = min(len(ref), len(decoded) - max_delay)
    if n <= 0:
        return 0
    size = 1 << (n + max_delay).bit_length()
    corr = np.fft.irfft(np.fft.rfft(decoded[: n + max_delay], size) * np.conj(np.fft.rfft(ref[:n], size)), size)
    return int(np.argmax(corr[: max_delay + 1]))


class Augmenter:
    """Random augmentation chains; ``babble_pool`` (other speech, 16 kHz) enables babble noise."""

    def __init__(self, babble_pool: list[np.ndarray] | None = None, probs: dict[str, float] | None = None) -> None:
        self.babble_pool = babble_pool or []
        self.probs = dict(PROBS, **(probs or {}))

    def __call__(self, seg: np.ndarray, rng: random.Random) -> np.ndarray:
        x = np.asarray(seg, dtype=np.float32)
        if len(x) == 0:
            return x
        p = self.probs
        if rng.random() < p["pitch"]:
            x = pitch_shift(x, rng.uniform(*PITCH_SEMITONES))
        if rng.random() < p["reverb"]:
            x = reverberate(x, room_impulse_response(rng, rng.uniform(*RT60_S), rng.uniform(*DIRECT_TO_REVERB_DB)))
        if rng.random() < p["noise"]:
            kinds = ["white", "pink"] + (["babble", "babble"] if self.babble_pool else [])
            kind = rng.choice(kinds)
            noise = white_noise(len(x), rng) if kind == "white" else pink_noise(len(x), rng) if kind == "pink" else babble(self.babble_pool, len(x), rng)
            x = add_noise(x, noise, rng.uniform(*SNR_DB))
        if rng.random() < p["telephone"]:
            x = telephone(x)
        if rng.random() < p["codec"]:
            codec = rng.choice(sorted(CODEC_BITRATES))
            x = codec_round_trip(x, codec, rng.randint(*CODEC_BITRATES[codec]))
        if rng.random() < p["gain"]:
            x = gain(x, rng.uniform(*GAIN_DB))
        return x


def random_augment(seg: np.ndarray, rng: random.Random) -> np.ndarray:
    """One random chain without babble (no speech pool); same length and timing as ``seg``."""
    return Augmenter()(seg, rng)
