"""Segment vector files (seg-NNNNNN.vec): window embeddings as int8 codes with one fp16 scale per window.

A unit-length window vector x is stored as scale = max |x_i| (fp16, rounded up) and codes
round(127 x / scale) (int8): 130 bytes for 128 dimensions, half of fp16, with cosine errors of at most
~0.004 (recall@100 of the decoded vectors against fp16: 0.996 on the real set's windows). Decoding is
codes * scale / 127; re-encoding a decoded vector gives the same codes, so compaction does not drift.

Layout (little-endian): header struct "<8sHHII" (magic b"AWSVEC\\0\\0", version, header bytes, dim, n),
then fp16 scales [n], then int8 codes [n, dim]. Plain arrays at fixed offsets, so a reader can also
memory-map them (the approximate index re-ranks its candidates from them, awesearch/approx.py).
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

from .errors import IndexFormatError

VEC_MAGIC = b"AWSVEC\0\0"
VEC_VERSION = 1
_HEADER = struct.Struct("<8sHHII")
CODE_MAX = 127  # int8 codes span -CODE_MAX..CODE_MAX


def encode(vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """float [n, dim] -> (fp16 scales [n], int8 codes [n, dim])."""
    x = np.asarray(vectors, np.float32)
    peak = np.abs(x).max(axis=1) if len(x) else np.zeros(0, np.float32)
    scales = peak.astype(np.float16)
    low = scales.astype(np.float32) < peak  # fp16 rounded down: step up so no code exceeds CODE_MAX
    scales[low] = np.nextafter(scales[low], np.float16(np.inf))
    safe = np.where(scales > 0, scales.astype(np.float32), 1.0)
    codes = np.clip(np.rint(x * (CODE_MAX / safe)[:, None]), -CODE_MAX, CODE_MAX).astype(np.int8)
    return scales, codes


def decode(scales: np.ndarray, codes: np.ndarray, dtype=np.float16) -> np.ndarray:
    """(scales [n], codes [n, dim]) -> vectors [n, dim] of dtype."""
    return (np.asarray(codes, np.float32) * (np.asarray(scales, np.float32) / CODE_MAX)[:, None]).astype(dtype)


def vec_bytes(vectors: np.ndarray) -> bytes:
    scales, codes = encode(vectors)
    n, dim = codes.shape if codes.ndim == 2 else (0, np.asarray(vectors).shape[-1])
    return _HEADER.pack(VEC_MAGIC, VEC_VERSION, _HEADER.size, dim, n) + scales.astype("<f2").tobytes() + codes.tobytes()


def _layout(raw: bytes, name: str) -> tuple[int, int]:
    """(dim, n) of a .vec file's header; IndexFormatError when it is not one this awesearch reads."""
    if len(raw) < _HEADER.size:
        raise IndexFormatError(f"{name} is truncated")
    magic, version, hsize, dim, n = _HEADER.unpack(raw[: _HEADER.size])
    if magic != VEC_MAGIC:
        raise IndexFormatError(f"{name} is not an awesearch vector file")
    if version != VEC_VERSION or hsize != _HEADER.size:
        raise IndexFormatError(f"{name} has vector format version {version}, this awesearch reads {VEC_VERSION}: re-index")
    return dim, n


def read_vec(raw: bytes, name: str) -> tuple[np.ndarray, np.ndarray]:
    """(scales fp16 [n], codes int8 [n, dim]) of a .vec file's bytes."""
    dim, n = _layout(raw, name)
    if len(raw) != _HEADER.size + n * (2 + dim):
        raise IndexFormatError(f"{name} has {len(raw)} bytes, its header says {_HEADER.size + n * (2 + dim)}")
    scales = np.frombuffer(raw, "<f2", n, _HEADER.size)
    codes = np.frombuffer(raw, np.int8, n * dim, _HEADER.size + 2 * n).reshape(n, dim)
    return scales, codes


def map_vec(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(scales, codes) of a .vec file as read-only memory maps (size checked, not the checksum)."""
    with open(path, "rb") as f:
        dim, n = _layout(f.read(_HEADER.size), path.name)
    if path.stat().st_size != _HEADER.size + n * (2 + dim):
        raise IndexFormatError(f"{path.name} has the wrong size for its header")
    if n == 0:
        return np.zeros(0, np.float16), np.zeros((0, dim), np.int8)
    scales = np.memmap(path, "<f2", "r", _HEADER.size, (n,))
    codes = np.memmap(path, np.int8, "r", _HEADER.size + 2 * n, (n, dim))
    return scales, codes
