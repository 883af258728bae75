"""Audio for the browser: byte ranges of a recording, as it is or transcoded, streamed; waveform peaks.

A format the browser plays (BROWSER_TYPES) is served as its own bytes. Anything else is served as a
*virtual WAV*: 16-bit PCM, 16 kHz mono (what the index heard), whose size is known from the file's
duration before any decoding, so HTTP Range requests map to sample ranges and are decoded on demand
(awesearch.audio, PyAV / libsndfile). Either way a response is a generator of blocks: long files are
streamed, never read whole.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from awesearch.errors import AudioDecodeError, AwesearchError

READ_BLOCK_BYTES = 256 * 1024  # bytes per chunk when streaming a file as it is
WAV_HEADER_BYTES = 44
WAV_SAMPLE_BYTES = 2  # 16-bit PCM
SEEK_MIN_S = 30.0  # seconds: nearer the start, decode from the start (exact, and cheap enough)
SEEK_PREROLL_S = 1.0  # seconds: a container seek lands at least this far before the wanted time
PEAKS_MAX = 2000  # most (min, max) pairs one peaks request may ask for
PEAKS_MAX_SPAN_S = 60.0  # seconds of audio one peaks request may decode

# Extensions the browser decodes itself (Chromium, Firefox); others are transcoded.
BROWSER_TYPES = {
    ".wav": "audio/wav",
    ".flac": "audio/flac",
    ".ogg": "audio/ogg",
    ".oga": "audio/ogg",
    ".opus": "audio/ogg",
    ".mp3": "audio/mpeg",
    ".m4a": "audio/mp4",
    ".aac": "audio/aac",
    ".mp4": "audio/mp4",
    ".webm": "audio/webm",
}
RANGE_RE = re.compile(r"^bytes=(\d*)-(\d*)$")


class RangeError(AwesearchError):
    """A Range header that cannot be served (HTTP 416)."""


@dataclass(frozen=True)
class ByteSource:
    """A byte stream of known size that can be read from any offset."""

    size: int  # bytes
    media_type: str
    read: Callable[[int, int], Iterator[bytes]]  # (offset, length) -> blocks


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """(first, last) byte, inclusive, of a single `bytes=` range; None to send the whole body.

    Multiple ranges are answered with the whole body (allowed by RFC 9110); a syntactically wrong or
    unsatisfiable range raises RangeError.
    """
    if header is None:
        return None
    header = header.strip()
    if "," in header:
        return None
    m = RANGE_RE.match(header)
    if not m or (m.group(1) == "" and m.group(2) == ""):
        raise RangeError(f"malformed Range header {header!r}; expected bytes=FIRST-LAST")
    first, last = m.group(1), m.group(2)
    if first == "":  # suffix: the last N bytes
        n = int(last)
        if n == 0:
            raise RangeError(f"Range {header!r} asks for no bytes")
        return max(0, size - n), size - 1
    a = int(first)
    b = size - 1 if last == "" else min(int(last), size - 1)
    if a >= size or b < a:
        raise RangeError(f"Range {header!r} is outside the {size} bytes of the file")
    return a, b


def file_source(path: Path) -> ByteSource:
    """The file's own bytes."""
    size = path.stat().st_size

    def read(offset: int, length: int) -> Iterator[bytes]:
        with open(path, "rb") as f:
            f.seek(offset)
            while length > 0:
                block = f.read(min(READ_BLOCK_BYTES, length))
                if not block:
                    return
                length -= len(block)
                yield block

    return ByteSource(size, BROWSER_TYPES.get(path.suffix.lower(), "application/octet-stream"), read)


def seek_blocks(path: Path, start: float) -> Iterator[np.ndarray]:
    """16 kHz mono float32 blocks from `start` seconds, like awesearch.audio.iter_blocks, but fast far into a file.

    iter_blocks decodes PyAV formats from the start and drops what comes before `start` (exact, what the
    indexer needs), which costs seconds per minute of a long file; the player seeks, so here files that
    libsndfile cannot seek (anything not .wav/.flac/.ogg/.mp3) start from a container seek instead, SEEK_PREROLL_S
    early, and drop samples by the decoded frames' timestamps (exact to a few milliseconds: enough to listen).
    """
    from awesearch.audio import SOUNDFILE_EXTENSIONS, iter_blocks

    if start < SEEK_MIN_S or path.suffix.lower() in SOUNDFILE_EXTENSIONS:
        yield from iter_blocks(path, start)
        return
    try:
        blocks = _pyav_seek_blocks(path, start)
        first = next(blocks, None)
    except AudioDecodeError:
        raise
    except Exception as e:  # PyAV raises its own exception family
        raise AudioDecodeError(f"{path.name}: cannot seek to {start:.1f} s ({type(e).__name__}: {e})") from None
    if first is None:  # no timestamps, or the seek landed after `start`: the exact, slow way
        yield from iter_blocks(path, start)
        return
    yield first
    yield from blocks


def _pyav_seek_blocks(path: Path, start: float) -> Iterator[np.ndarray]:
    """Blocks from `start` after a container seek; yields nothing when the timestamps cannot place them."""
    import av

    from awesearch.audio import SAMPLE_RATE

    with av.open(str(path), metadata_errors="ignore") as container:
        if not container.streams.audio:
            raise AudioDecodeError(f"{path.name}: no audio stream")
        stream = container.streams.audio[0]
        container.seek(int(max(0.0, start - SEEK_PREROLL_S) / stream.time_base), stream=stream, backward=True)
        resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
        t = None  # seconds: file time of the next sample out of the resampler
        for frame in container.decode(stream):
            if t is None:
                if frame.pts is None or float(frame.pts * frame.time_base) > start:
                    return
                t = float(frame.pts * frame.time_base)
            for out in resampler.resample(frame):
                x = out.to_ndarray().reshape(-1)
                drop = min(len(x), max(0, int(round((start - t) * SAMPLE_RATE))))
                t += len(x) / SAMPLE_RATE
                if len(x) > drop:
                    yield x[drop:]


def wav_header(n_samples: int, rate: int) -> bytes:
    data = n_samples * WAV_SAMPLE_BYTES
    return struct.pack(
        "<4sI4s4sIHHIIHH4sI", b"RIFF", 36 + data, b"WAVE", b"fmt ", 16, 1, 1, rate, rate * WAV_SAMPLE_BYTES, WAV_SAMPLE_BYTES, 16, b"data", data
    )


def to_pcm16(samples: np.ndarray) -> bytes:
    return (np.clip(samples, -1.0, 1.0) * 32767).astype("<i2").tobytes()


def transcoded_source(path: Path, duration: float) -> ByteSource:
    """A 16 kHz mono 16-bit WAV of the recording, decoded only where a range asks for it."""
    from awesearch.audio import SAMPLE_RATE

    n_samples = int(round(duration * SAMPLE_RATE))
    header = wav_header(n_samples, SAMPLE_RATE)

    def read(offset: int, length: int) -> Iterator[bytes]:
        end = offset + length  # one past the last byte wanted
        if offset < WAV_HEADER_BYTES:
            yield header[offset:end]
            offset = WAV_HEADER_BYTES
        if offset >= end:
            return
        first = (offset - WAV_HEADER_BYTES) // WAV_SAMPLE_BYTES  # sample holding byte `offset`
        last = min(n_samples, -(-(end - WAV_HEADER_BYTES) // WAV_SAMPLE_BYTES))  # one past the last sample needed
        skip = (offset - WAV_HEADER_BYTES) - first * WAV_SAMPLE_BYTES  # an odd offset starts mid-sample
        remaining = end - offset  # bytes still to send
        need = last - first
        for block in seek_blocks(path, first / SAMPLE_RATE):
            block = block[:need]
            need -= len(block)
            data = to_pcm16(block)[skip : skip + remaining]
            skip, remaining = 0, remaining - len(data)
            yield data
            if need <= 0 or remaining <= 0:
                break
        if remaining > 0:  # the header's duration was longer than the decoded audio: pad, the size is promised
            yield bytes(remaining)

    return ByteSource(WAV_HEADER_BYTES + n_samples * WAV_SAMPLE_BYTES, "audio/wav", read)


def audio_source(path: Path, duration: float, transcode: bool) -> ByteSource:
    """The file as it is when the browser can play it (and transcode is False), else the virtual WAV."""
    if not transcode and path.suffix.lower() in BROWSER_TYPES:
        return file_source(path)
    return transcoded_source(path, duration)


def peaks(path: Path, start: float, end: float, n: int) -> list[list[float]]:
    """[min, max] of n equal slices of start..end seconds (16 kHz mono), for drawing a waveform."""
    from awesearch.audio import SAMPLE_RATE

    want = int(round((end - start) * SAMPLE_RATE))
    parts, have = [], 0
    for block in seek_blocks(path, start):
        parts.append(block[: want - have])
        have += len(parts[-1])
        if have >= want:
            break
    audio = np.concatenate(parts + [np.zeros(want - have, np.float32)])  # past the end of the file: silence
    out = []
    for piece in np.array_split(audio, n):
        out.append([round(float(piece.min()), 4), round(float(piece.max()), 4)] if len(piece) else [0.0, 0.0])
    return out
