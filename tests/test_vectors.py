"""Segment vector files: int8 codes with a per-window scale (awesearch/vectors.py)."""

import numpy as np
import pytest

from awesearch.errors import IndexFormatError
from awesearch.vectors import _HEADER, CODE_MAX, decode, encode, map_vec, read_vec, vec_bytes


def unit(n, dim=128, seed=0):
    x = np.random.default_rng(seed).normal(size=(n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_codes_are_close_and_stable_under_re_encoding():
    x = unit(500)
    scales, codes = encode(x)
    assert codes.dtype == np.int8 and np.abs(codes).max() == CODE_MAX  # the peak of every row uses the full range
    back = decode(scales, codes, np.float32)
    assert np.all(np.abs(back - x) <= np.abs(x).max(1, keepdims=True) / (2 * CODE_MAX) * 1.01 + 1e-6)
    cos = np.sum(back * x, axis=1) / np.linalg.norm(back, axis=1)
    assert cos.min() > 0.999  # seen 0.9996
    again = encode(decode(scales, codes))  # compaction reads fp16 and writes again: no drift
    assert np.array_equal(again[1], codes) and np.array_equal(again[0], scales)


def test_vec_file_round_trips_and_maps(tmp_path):
    x = unit(37, 16)
    raw = vec_bytes(x)
    assert len(raw) == _HEADER.size + 37 * (2 + 16)
    scales, codes = read_vec(raw, "seg-000001.vec")
    path = tmp_path / "seg-000001.vec"
    path.write_bytes(raw)
    ms, mc = map_vec(path)
    assert np.array_equal(ms, scales) and np.array_equal(mc, codes)
    assert np.allclose(decode(scales, codes, np.float32), x, atol=0.01)
    assert read_vec(vec_bytes(np.zeros((0, 16), np.float32)), "empty")[1].shape == (0, 16)


def test_other_versions_and_damage_are_refused():
    raw = bytearray(vec_bytes(unit(4, 8)))
    with pytest.raises(IndexFormatError, match="header says"):
        read_vec(bytes(raw[:-1]), "seg-000001.vec")
    raw[8] = 9  # version
    with pytest.raises(IndexFormatError, match="version 9.*re-index"):
        read_vec(bytes(raw), "seg-000001.vec")
    with pytest.raises(IndexFormatError, match="not an awesearch vector file"):
        read_vec(b"RIFF" + bytes(raw[4:]), "seg-000001.vec")
