"""Decoding any audio (or the audio track of a video) to 16 kHz mono float32, streaming long files in chunks.

Decoder dispatch by extension: soundfile (libsndfile) for wav/flac/ogg/mp3, PyAV (FFmpeg) for everything
else and for the files of those extensions that libsndfile cannot read (e.g. Opus in .ogg, WAV with an
exotic codec). If both decoders fail, AudioDecodeError carries both reasons. Down-mixing is the mean of the
channels; rate conversion is libswresample (through PyAV), streamed, so memory stays flat on 10-hour files.
"""

from __future__ import annotations

import os
import re
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from .errors import AudioDecodeError

SAMPLE_RATE = 16000  # Hz: every recording is decoded to this rate, mono, float32 in [-1, 1]
BLOCK_S = 10.0  # seconds of source audio decoded per read when streaming
RESAMPLE_WARMUP_S = 1.0  # seconds decoded before a seek point so the resampler's filter has settled

SOUNDFILE_EXTENSIONS = frozenset({".wav", ".flac", ".ogg", ".mp3"})
PYAV_EXTENSIONS = frozenset({".opus", ".m4a", ".aac", ".mp4", ".webm", ".oga", ".mka", ".wma"})
AUDIO_EXTENSIONS = SOUNDFILE_EXTENSIONS | PYAV_EXTENSIONS


@dataclass
class AudioChunk:
    """A piece of a recording, 16 kHz mono. Windows starting in [core_start, core_end) belong to this chunk."""

    start: float  # seconds: file time of samples[0]
    samples: np.ndarray  # float32 [n] at SAMPLE_RATE
    core_start: float  # seconds (file time)
    core_end: float  # seconds (file time)

    @property
    def end(self) -> float:
        """File time just after the last sample, seconds."""
        return self.start + len(self.samples) / SAMPLE_RATE


def is_audio_path(path: str | os.PathLike) -> bool:
    return Path(path).suffix.lower() in AUDIO_EXTENSIONS


class _MonoResampler:
    """Streams mono float32 blocks at `rate` to SAMPLE_RATE (identity when the rate already matches)."""

    def __init__(self, rate: int):
        self.rate = int(rate)
        self._resampler = None
        if self.rate != SAMPLE_RATE:
            import av

            self._resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)

    def push(self, mono: np.ndarray | None) -> np.ndarray:
        """Feed a block (None flushes the filter tail) and return whatever 16 kHz samples are ready."""
        if self._resampler is None:
            return np.zeros(0, np.float32) if mono is None else np.ascontiguousarray(mono, dtype=np.float32)
        import av

        frame = None
        if mono is not None:
            if len(mono) == 0:
                return np.zeros(0, np.float32)
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(mono, dtype=np.float32)[None, :], format="flt", layout="mono")
            frame.sample_rate = self.rate
        outs = [o.to_ndarray().reshape(-1) for o in self._resampler.resample(frame)]
        return np.concatenate(outs).astype(np.float32, copy=False) if outs else np.zeros(0, np.float32)


def _check_readable(path: Path) -> None:
    """One-line reasons for the cases that no decoder should even try."""
    if path.is_symlink() and not path.exists():
        raise AudioDecodeError(f"{path}: broken symlink")
    try:
        st = path.stat()
    except PermissionError:
        raise AudioDecodeError(f"{path}: permission denied") from None
    except OSError as e:
        raise AudioDecodeError(f"{path}: cannot stat ({e.strerror or e})") from None
    if not path.is_file():
        raise AudioDecodeError(f"{path}: not a regular file")
    if st.st_size == 0:
        raise AudioDecodeError(f"{path}: empty file (0 bytes)")
    if not os.access(path, os.R_OK):
        raise AudioDecodeError(f"{path}: permission denied")


def _check_wav_complete(path: Path) -> None:
    """libsndfile silently reads a truncated RIFF WAV; the header's data size says how much should be there."""
    with open(path, "rb") as f:
        head = f.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            return  # not RIFF (RF64, W64, ...): leave it to the decoder
        while True:
            chunk = f.read(8)
            if len(chunk) < 8:
                raise AudioDecodeError(f"{path}: truncated WAV (no data chunk)")
            cid, size = chunk[:4], struct.unpack("<I", chunk[4:])[0]
            if cid == b"data":
                if size in (0, 0xFFFFFFFF):  # 0 or -1: written by a streaming encoder that never patched it
                    return
                have = os.fstat(f.fileno()).st_size - f.tell()
                if have < size:
                    raise AudioDecodeError(
                        f"{path}: truncated WAV (header promises {size} bytes of audio, file has {max(have, 0)})"
                    )
                return
            f.seek(size + (size & 1), os.SEEK_CUR)


# -- soundfile -------------------------------------------------------------------------------


def _soundfile_blocks(path: Path, start: float) -> Iterator[np.ndarray]:
    import soundfile as sf

    with sf.SoundFile(str(path)) as f:
        rate = f.samplerate
        resampler = _MonoResampler(rate)
        skip_out = 0  # 16 kHz samples to drop after the pre-roll
        if start > 0:
            # resampled files: start whole seconds early, where both sample grids line up, so the filter settles
            pre = start if rate == SAMPLE_RATE else float(np.floor(max(0.0, start - RESAMPLE_WARMUP_S)))
            first = int(round(pre * rate))
            if first >= f.frames:
                return
            f.seek(first)
            skip_out = int(round((start - pre) * SAMPLE_RATE))
        block = max(1, int(BLOCK_S * rate))
        while True:
            data = f.read(block, dtype="float32", always_2d=True)
            last = len(data) < block
            out = resampler.push(data.mean(axis=1)) if len(data) else np.zeros(0, np.float32)
            if last:
                out = np.concatenate([out, resampler.push(None)])
            if skip_out:
                drop = min(skip_out, len(out))
                out, skip_out = out[drop:], skip_out - drop
            if len(out):
                yield out
            if last:
                return


def _soundfile_duration(path: Path) -> float:
    import soundfile as sf

    info = sf.info(str(path))
    if info.samplerate <= 0:
        raise RuntimeError("invalid sample rate")
    return info.frames / info.samplerate


# -- PyAV ------------------------------------------------------------------------------------


def _pyav_blocks(path: Path, start: float) -> Iterator[np.ndarray]:
    import av

    with av.open(str(path), metadata_errors="ignore") as container:
        if not container.streams.audio:
            raise AudioDecodeError(f"{path}: no audio stream")
        stream = container.streams.audio[0]
        to_float = av.AudioResampler(format="fltp")  # keeps rate and layout; only converts sample format
        resampler: _MonoResampler | None = None
        skip_out = int(round(start * SAMPLE_RATE))  # compressed formats seek imprecisely: decode and drop
        for frame in container.decode(stream):
            if resampler is None:
                resampler = _MonoResampler(frame.sample_rate)
            for f in to_float.resample(frame):
                out = resampler.push(f.to_ndarray().mean(axis=0))
                if skip_out:
                    drop = min(skip_out, len(out))
                    out, skip_out = out[drop:], skip_out - drop
                if len(out):
                    yield out
        if resampler is None:
            raise AudioDecodeError(f"{path}: no decodable audio frames")
        out = resampler.push(None)[skip_out:]
        if len(out):
            yield out


def _pyav_duration(path: Path) -> float:
    import av

    with av.open(str(path), metadata_errors="ignore") as container:
        if not container.streams.audio:
            raise AudioDecodeError(f"{path}: no audio stream")
        stream = container.streams.audio[0]
        if stream.duration is not None and stream.time_base is not None:
            return float(stream.duration * stream.time_base)
        if container.duration is not None:
            return container.duration / 1_000_000  # av.time_base
        total = 0  # no duration in the header (some webm/ogg): count the samples
        for frame in container.decode(stream):
            total += frame.samples / frame.sample_rate
        return float(total)


# -- dispatch --------------------------------------------------------------------------------


def _decoders(path: Path):
    suffix = path.suffix.lower()
    if suffix == ".mp3" and not _looks_like_mp3(path):
        return [("pyav", _pyav_blocks, _pyav_duration)]  # FFmpeg probes the content, whatever the name says
    if suffix in SOUNDFILE_EXTENSIONS:
        return [("soundfile", _soundfile_blocks, _soundfile_duration), ("pyav", _pyav_blocks, _pyav_duration)]
    return [("pyav", _pyav_blocks, _pyav_duration)]


def _short(e: BaseException, path: Path | None = None) -> str:
    """One line, without the file name (the caller prints it) or errno noise."""
    msg = str(e)
    if path is not None:
        msg = msg.replace(f"'{path}'", "file").replace(str(path), "file")
    msg = re.sub(r"\[Errno -?\d+\] ", "", msg)
    return " ".join(msg.split())[:160] or type(e).__name__


def _looks_like_mp3(path: Path) -> bool:
    """An ID3 tag or an MPEG audio frame sync at the start (libmpg123 spews notes on anything else)."""
    with open(path, "rb") as f:
        head = f.read(3)
    return head == b"ID3" or (len(head) >= 2 and head[0] == 0xFF and (head[1] & 0xE0) == 0xE0)


def _pick_decoder(path: Path):
    """(name, blocks_fn, duration) of the first decoder that can open the file; AudioDecodeError otherwise."""
    _check_readable(path)
    if path.suffix.lower() == ".wav":
        _check_wav_complete(path)
    reasons = []
    for name, blocks, duration in _decoders(path):
        try:
            d = duration(path)
        except AudioDecodeError:
            raise
        except Exception as e:  # each decoder library raises its own exception family
            reasons.append(f"{name}: {_short(e, path)}")
            continue
        return name, blocks, d
    raise AudioDecodeError(f"{path}: not decodable as audio ({'; '.join(reasons)})")


def probe_duration(path: str | os.PathLike) -> float:
    """Duration in seconds from the container header; AudioDecodeError with a one-line reason otherwise."""
    return _pick_decoder(Path(path))[2]


def iter_blocks(path: str | os.PathLike, start: float = 0.0) -> Iterator[np.ndarray]:
    """16 kHz mono float32 blocks from `start` seconds to the end of the file, streamed."""
    path = Path(path)
    name, blocks, _ = _pick_decoder(path)
    try:
        yield from blocks(path, max(0.0, float(start)))
    except AudioDecodeError:
        raise
    except MemoryError:
        raise
    except Exception as e:  # decode errors in the middle of a file: corrupt or truncated data
        raise AudioDecodeError(f"{path}: decoding failed ({name}): {_short(e, path)}") from None


def load_audio(path: str | os.PathLike, start: float | None = None, end: float | None = None) -> np.ndarray:
    """The whole file, or start..end seconds of it, as 16 kHz mono float32 (shorter if the file ends first)."""
    start = 0.0 if start is None else float(start)
    want = None if end is None else max(0, int(round((float(end) - start) * SAMPLE_RATE)))
    parts, have = [], 0
    for block in iter_blocks(path, start):
        parts.append(block)
        have += len(block)
        if want is not None and have >= want:
            break
    audio = np.concatenate(parts) if parts else np.zeros(0, np.float32)
    return audio if want is None else audio[:want]


def iter_chunks(path: str | os.PathLike, chunk_s: float, overlap_s: float) -> Iterator[AudioChunk]:
    """Chunks of about chunk_s seconds; each carries overlap_s / 2 of extra audio on either side of its core.

    Cores tile the file exactly ([0, chunk_s), [chunk_s, 2 chunk_s), ...), so assigning each window to the
    chunk whose core holds its start gives every window exactly once. Chunk starts are whole multiples of
    1 / SAMPLE_RATE at core boundaries minus the pad, so with whole-second chunk_s and pad they sit on any
    encoder frame grid that divides one second.
    """
    if chunk_s <= 0 or overlap_s < 0:
        raise ValueError("chunk_s must be > 0 and overlap_s >= 0")
    core = int(round(chunk_s * SAMPLE_RATE))
    pad = int(round(overlap_s / 2 * SAMPLE_RATE))
    buf = np.zeros(0, np.float32)
    buf_start = 0  # file sample index of buf[0]
    k = 0  # index of the next chunk to emit
    eof = False
    blocks = iter_blocks(path)
    while True:
        need_end = (k + 1) * core + pad  # sample index just after the chunk's right pad
        while not eof and buf_start + len(buf) < need_end:
            try:
                buf = np.concatenate([buf, next(blocks)])
            except StopIteration:
                eof = True
        total_known = buf_start + len(buf)
        c0 = max(0, k * core - pad)
        if c0 >= total_known or k * core >= total_known:
            if k == 0 and total_known == 0:
                raise AudioDecodeError(f"{path}: no audio samples")
            return
        c1 = min(need_end, total_known)
        samples = buf[c0 - buf_start : c1 - buf_start].copy()
        last = eof and (k + 1) * core >= total_known
        yield AudioChunk(
            start=c0 / SAMPLE_RATE,
            samples=samples,
            core_start=k * core / SAMPLE_RATE,
            core_end=(total_known if last else (k + 1) * core) / SAMPLE_RATE,
        )
        if last:
            return
        k += 1
        keep_from = max(0, k * core - pad)  # drop what no later chunk needs
        buf = buf[keep_from - buf_start :]
        buf_start = keep_from
