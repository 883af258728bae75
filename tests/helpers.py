"""Dummy recordings for tests: tones, noise, silence and synthesized speech, in any container."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

SR = 16000  # Hz, the rate the generators work at


@dataclass
class SpokenWord:
    word: str
    start: float  # seconds from the start of the file
    end: float  # seconds


def tone(seconds: float, freq: float = 440.0, sr: int = SR, amp: float = 0.3) -> np.ndarray:
    t = np.arange(int(round(seconds * sr))) / sr
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def noise(seconds: float, sr: int = SR, amp: float = 0.01, seed: int = 0) -> np.ndarray:
    return (np.random.default_rng(seed).normal(0, amp, int(round(seconds * sr)))).astype(np.float32)


def speech(sentences: list[str], gap_s: float = 0.6, rate: int = 175, noise_amp: float = 0.002) -> tuple[np.ndarray, list[SpokenWord]]:
    """Sentences synthesized with espeak-ng, each preceded by gap_s of (faintly noisy) silence, 16 kHz mono."""
    from awesearch.tts import synthesize

    parts, words, t = [], [], 0.0
    for text in sentences:
        s = synthesize(text, rate=rate)
        assert s.sample_rate == SR
        parts += [np.zeros(int(gap_s * SR), np.float32), s.audio.astype(np.float32)]
        t += gap_s
        words += [SpokenWord(w.word, t + w.start, t + w.end) for w in s.words]
        t += len(s.audio) / SR
    parts.append(np.zeros(int(gap_s * SR), np.float32))
    audio = np.concatenate(parts)
    audio += noise(len(audio) / SR, amp=noise_amp, seed=len(sentences))
    return audio, words


def resample(audio: np.ndarray, sr_from: int, sr_to: int) -> np.ndarray:
    """Linear interpolation: good enough to make test files at other rates (speech is below 4 kHz)."""
    if sr_from == sr_to:
        return audio
    n = int(round(len(audio) * sr_to / sr_from))
    return np.interp(np.arange(n) * sr_from / sr_to, np.arange(len(audio)), audio).astype(np.float32)


def write_audio(path: Path, audio: np.ndarray, sr: int = SR, channels: int = 1, subtype: str | None = None) -> Path:
    """Write mono 16 kHz-style float audio to `path` at rate `sr` with `channels` (copies of the signal).

    wav/flac/ogg/mp3 through soundfile; opus/m4a/aac/mp4/webm through PyAV (mp4/webm get a video track too).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = np.repeat(np.asarray(audio, np.float32)[:, None], channels, axis=1)
    ext = path.suffix.lower()
    if ext in (".wav", ".flac", ".ogg", ".mp3"):
        import soundfile as sf

        sf.write(str(path), data, sr, subtype=subtype)
        return path
    _write_pyav(path, data, sr)
    return path


def _write_pyav(path: Path, data: np.ndarray, sr: int) -> None:
    import av

    ext = path.suffix.lower()
    codec, fmt, video = {
        ".opus": ("libopus", "ogg", None),
        ".m4a": ("aac", "mp4", None),
        ".aac": ("aac", "adts", None),
        ".mp4": ("aac", "mp4", "mpeg4"),
        ".webm": ("libopus", "webm", "libvpx"),
    }[ext]
    channels = data.shape[1]
    layout = "mono" if channels == 1 else "stereo"
    with av.open(str(path), "w", format=fmt) as out:
        astream = out.add_stream(codec, rate=sr, layout=layout)
        vstream = None
        if video:
            vstream = out.add_stream(video, rate=10)
            vstream.width, vstream.height, vstream.pix_fmt = 32, 32, "yuv420p"
        frame_n = 960 if codec == "libopus" else 1024
        planar = np.ascontiguousarray(data.T)
        for i in range(0, planar.shape[1], frame_n):
            block = np.ascontiguousarray(planar[:, i : i + frame_n])
            frame = av.AudioFrame.from_ndarray(block, format="fltp", layout=layout)
            frame.sample_rate = sr
            frame.pts = i
            for packet in astream.encode(frame):
                out.mux(packet)
        for packet in astream.encode(None):
            out.mux(packet)
        if vstream is not None:
            seconds = planar.shape[1] / sr
            for i in range(max(1, int(seconds * 10))):
                img = np.full((32, 32, 3), (i * 7) % 255, np.uint8)
                vf = av.VideoFrame.from_ndarray(img, format="rgb24")
                vf.pts = i
                for packet in vstream.encode(vf):
                    out.mux(packet)
            for packet in vstream.encode(None):
                out.mux(packet)


def truncate(path: Path, keep_fraction: float = 0.5) -> Path:
    data = Path(path).read_bytes()
    Path(path).write_bytes(data[: int(len(data) * keep_fraction)])
    return Path(path)


def window_rows(data) -> set[tuple[str, float, float]]:
    """The (path, start, end) of every live window of a SearchData (rounded to the microsecond)."""
    return {(data.paths[int(f)], round(float(s), 6), round(float(e), 6)) for f, s, e in zip(data.file_ids, data.starts, data.ends)}
