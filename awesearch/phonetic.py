"""The phonetic frame stage: a CTC phoneme head on the Whisper front end's frames, and the `.awp` file of
quantised log-posteriors that the indexer writes per recording (issue 8, point 1).

Classes: 0 is the CTC blank, 1..39 the ARPAbet phonemes of ``awesearch.g2p.PHONEMES`` (no stress), 40 is
the word boundary ``|`` (as in wav2vec2's character CTC). Training targets are ``| w1 | w2 | ... |``, so the
head learns where words start and end, which is what lets the second stage (awesearch/verify.py) reject
"prince" inside "princess" or "bred" inside "spread".

Checkpoint (torch, read with weights_only=True): magic "awesearch-phone", version, name, dims
(PhoneHeadDims), state_dict (fp16), train_info. Rebuilt as PhoneHead(PhoneHeadDims(**ckpt["dims"])).

`.awp` file (one per indexed recording, written once, never modified), version 2:
    header  struct "<8sHHHHfIII": magic b"AWSPHON\\0", version, header bytes, n_classes, block frames,
            frame_rate (Hz), n_frames, n_blocks, crc32 of everything after the header
    offsets uint32 [n_blocks + 1]: byte offset of each block after the table (the last: the blocks' end)
    blocks  zlib-compressed uint8 [<= block frames, n_classes] codes q = round(-log p / QUANT_STEP_NATS),
            clipped to MAX_CODE; a slice reads only the blocks it covers
Frames the encoder never saw (silence between speech, skipped by the indexer) hold "certainly blank".
Clipping at MAX_CODE (8 nats: p < 3.4e-4 all counts as "impossible") makes the codes compressible: 50
frames/s x 41 classes is 7.4 MB per audio hour raw, 1.95 MB compressed (real set; 1.86 with 256-frame blocks,
which made text queries ~15 % slower).
Version 1 files (raw codes, clipped at 255) are refused with the re-index message.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .errors import CheckpointError, IndexFormatError, QueryError
from .g2p import PHONEMES

BLANK = 0
BOUNDARY = len(PHONEMES) + 1  # 40: the word boundary token "|"
N_CLASSES = len(PHONEMES) + 2  # blank + 39 phonemes + boundary
BOUNDARY_SYMBOL = "|"
FRAME_RATE = 50.0  # Hz: one class distribution per Whisper encoder frame (20 ms)
QUANT_STEP_NATS = 1.0 / 16  # uint8 step of -log p
MAX_CODE = 128  # codes are clipped here: 8 nats, p < 3.4e-4 (an "impossible" frame; clipping makes codes compressible)
AWP_BLOCK_FRAMES = 64  # frames per compressed block (1.28 s, about one candidate region): the unit of random access
CHECKPOINT_MAGIC = "awesearch-phone"
CHECKPOINT_VERSION = 2  # 2: dims gained more_kernel / dilation_base / dropout (version 1 heads are read too)
READABLE_CHECKPOINT_VERSIONS = (1, 2)
AWP_MAGIC = b"AWSPHON\0"
AWP_VERSION = 2  # 2: clipped codes in zlib blocks with an offset table
_AWP_HEADER = struct.Struct("<8sHHHHfIII")
ASSETS = Path(__file__).parent / "assets"
DEFAULT_PHONE_MODEL = "phone-whisper-v2"  # v2: dilated residual layers, trained on real speech too (issue 18)
RETIRED_PHONE_MODELS = ("phone-whisper-v1",)  # no longer shipped: their indexes get the re-index message


@dataclass
class PhoneHeadDims:
    n_input: int = 384  # Whisper tiny.en encoder width
    channels: int = 256  # one conv layer: the Whisper frames are already phonetic, the head only reads them out
    kernel_size: int = 5  # +-40 ms of neighbours: enough to place boundaries, cheap at indexing
    n_classes: int = N_CLASSES
    layers: int = 1  # conv layers (residual after the first): more context for the phoneme decision
    more_kernel: int = 5  # kernel of the residual layers (v2 heads: 3, dilated; cost at indexing ~ layers x kernel)
    dilation_base: int = 1  # residual layer i (from 1) looks dilation_base**i frames apart: context grows cheaply
    dropout: float = 0.0  # training only: real speech is a few hours, the head must not memorise its speakers


class PhoneHead(nn.Module):
    """Whisper frames [B, T, 384] -> log-posteriors [B, T, n_classes] (log-softmax)."""

    def __init__(self, dims: PhoneHeadDims):
        super().__init__()
        self.dims = dims
        self.conv = nn.Conv1d(dims.n_input, dims.channels, dims.kernel_size, padding=dims.kernel_size // 2)
        self.more = nn.ModuleList(
            nn.Conv1d(dims.channels, dims.channels, dims.more_kernel, dilation=dims.dilation_base**i,
                      padding=(dims.more_kernel // 2) * dims.dilation_base**i)
            for i in range(1, dims.layers)
        )
        self.drop = nn.Dropout(dims.dropout)
        self.norm = nn.LayerNorm(dims.channels)
        self.out = nn.Linear(dims.channels, dims.n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gelu = torch.nn.functional.gelu
        h = self.drop(gelu(self.conv(x.transpose(1, 2))))  # [B, C, T]
        for conv in self.more:
            h = h + self.drop(gelu(conv(h)))
        return torch.log_softmax(self.out(self.norm(h.transpose(1, 2))), dim=-1)


@dataclass
class PhoneModel:
    """A loaded phoneme head plus what identifies it in an index manifest."""

    head: PhoneHead
    name: str
    checksum: str
    confusion: np.ndarray | None = None  # [39, 39] P(head decodes phoneme j | phoneme i was said), v2 heads; None: unknown

    @torch.inference_mode()
    def log_posteriors(self, frames: np.ndarray | torch.Tensor) -> np.ndarray:
        """Whisper frames [T, 384] -> float32 log-posteriors [T, N_CLASSES]."""
        x = torch.as_tensor(np.asarray(frames, dtype=np.float32))[None]
        return self.head(x)[0].numpy()


def save_phone_checkpoint(path: Path, head: PhoneHead, name: str, train_info: dict, confusion: np.ndarray | None = None) -> str:
    """Write a phoneme head checkpoint (fp16 weights; the head's measured phoneme confusions, when given)
    atomically and return its sha256."""
    from .encoder import write_checkpoint

    header = {"magic": CHECKPOINT_MAGIC, "version": CHECKPOINT_VERSION, "name": name, "train_info": train_info}
    if confusion is not None:
        confusion = np.asarray(confusion, np.float32)
        if confusion.shape != (len(PHONEMES), len(PHONEMES)):
            raise ValueError(f"confusion must be [{len(PHONEMES)}, {len(PHONEMES)}], got {confusion.shape}")
        header["confusion"] = torch.from_numpy(confusion)
    return write_checkpoint(path, head, header)


def load_phone_checkpoint(path: Path) -> PhoneModel:
    from .encoder import file_sha256, read_checkpoint

    path = Path(path)
    ckpt = read_checkpoint(path, CHECKPOINT_MAGIC, READABLE_CHECKPOINT_VERSIONS, "phoneme head")
    dims = PhoneHeadDims(**ckpt["dims"])
    if dims.n_classes != N_CLASSES:
        raise CheckpointError(f"{path}: {dims.n_classes} classes, this awesearch uses {N_CLASSES}")
    head = PhoneHead(dims)
    head.load_state_dict({k: v.float() for k, v in ckpt["state_dict"].items()})
    confusion = ckpt.get("confusion")
    if confusion is not None:
        confusion = confusion.float().numpy()
        if confusion.shape != (len(PHONEMES), len(PHONEMES)):
            raise CheckpointError(f"{path}: phoneme confusions of shape {tuple(confusion.shape)}, expected {len(PHONEMES)} x {len(PHONEMES)}")
    return PhoneModel(head.eval(), ckpt["name"], file_sha256(path), confusion)


@lru_cache(maxsize=4)
def load_phone_model(name: str = DEFAULT_PHONE_MODEL) -> PhoneModel:
    """A shipped head by name (checked against assets/SHA256SUMS) or a checkpoint path."""
    shipped = ASSETS / f"{name}.pt"
    if shipped.is_file():
        model = load_phone_checkpoint(shipped)
        from .encoder import shipped_checksums

        if shipped_checksums().get(shipped.name) != model.checksum:
            raise CheckpointError(f"shipped checkpoint {shipped.name} does not match its checksum; reinstall awesearch")
        model.name = name  # what an index manifest records, and gives back here
        return model
    if name.endswith(".pt") or "/" in name:
        return load_phone_checkpoint(Path(name))
    raise CheckpointError(f"unknown phoneme head {name!r}")


# -- symbols ---------------------------------------------------------------------------------------


@lru_cache(maxsize=1)
def _symbol_ids() -> dict[str, int]:
    ids = {p: i + 1 for i, p in enumerate(PHONEMES)}
    ids[BOUNDARY_SYMBOL] = BOUNDARY
    return ids


def symbols_to_ids(symbols: list[str]) -> list[int]:
    """ARPAbet (stress digits ignored) and "|" -> class ids; QueryError on anything else."""
    table = _symbol_ids()
    out = []
    for s in symbols:
        key = s if s == BOUNDARY_SYMBOL else s.rstrip("012").upper()
        if key not in table:
            raise QueryError(f"unknown phoneme {s!r}")
        out.append(table[key])
    return out


def ids_to_symbols(ids) -> list[str]:
    return [BOUNDARY_SYMBOL if i == BOUNDARY else PHONEMES[i - 1] for i in ids if i != BLANK]


def word_targets(words: list[list[str]]) -> list[int]:
    """Phonemes of consecutive words -> CTC target ids "| w1 | w2 | ... |"."""
    out = [BOUNDARY]
    for w in words:
        out.extend(symbols_to_ids(w))
        out.append(BOUNDARY)
    return out


def greedy_decode(logp: np.ndarray) -> list[int]:
    """Best-path CTC decoding: argmax per frame, repeats merged, blanks dropped."""
    best = np.argmax(logp, axis=1)
    keep = np.ones(len(best), bool)
    keep[1:] = best[1:] != best[:-1]
    return [int(c) for c in best[keep] if c != BLANK]


EXAMPLE_ALTERNATIVES = 3  # audio examples: besides the best path, this many with one uncertain phoneme swapped


def example_targets(logp: np.ndarray, alternatives: int = EXAMPLE_ALTERNATIVES) -> list[list[int]]:
    """CTC targets "| ... |" heard in an audio example's frames: the best path first, then up to
    `alternatives` variants, each with one of its least certain phonemes replaced by that stretch's runner-up
    (an n-best list of one-phoneme edits: a real voice's example is often decoded one phoneme off).
    Internal word boundaries are kept; repeated or edge ones merge into the outer two. [] if no phoneme."""
    best = np.argmax(logp, axis=1)
    starts = np.flatnonzero(np.r_[True, best[1:] != best[:-1]])
    segments = [(int(best[s]), s, e) for s, e in zip(starts, np.r_[starts[1:], len(best)]) if best[s] != BLANK]
    target = [BOUNDARY]
    where: list[tuple[int, int, int]] = []  # (position in target, segment start, end) of each phoneme
    for c, s, e in segments:
        if c != BOUNDARY or target[-1] != BOUNDARY:
            if c != BOUNDARY:
                where.append((len(target), s, e))
            target.append(c)
    if target[-1] != BOUNDARY:
        target.append(BOUNDARY)
    if not where:
        return []
    p = np.exp(logp)
    options = []
    for pos, s, e in where:
        mean = p[s:e].mean(axis=0)
        conf = float(mean[target[pos]])
        mean[[BLANK, BOUNDARY, target[pos]]] = -1.0
        options.append((conf, pos, int(np.argmax(mean))))
    out = [target]
    for _, pos, alt in sorted(options)[:alternatives]:
        variant = list(target)
        variant[pos] = alt
        if variant not in out:
            out.append(variant)
    return out


# -- quantisation and .awp files ------------------------------------------------------------------


def quantize(logp: np.ndarray) -> np.ndarray:
    """float log-posteriors [T, C] -> uint8 codes (0 = certain, MAX_CODE = impossible)."""
    return np.clip(np.rint(-np.asarray(logp, np.float32) / QUANT_STEP_NATS), 0, MAX_CODE).astype(np.uint8)


def dequantize(codes: np.ndarray) -> np.ndarray:
    return codes.astype(np.float32) * -QUANT_STEP_NATS


def blank_codes(n_frames: int) -> np.ndarray:
    """Codes of frames nobody encoded: blank certain, everything else at the floor."""
    codes = np.full((n_frames, N_CLASSES), MAX_CODE, np.uint8)
    codes[:, BLANK] = 0
    return codes


def awp_bytes(codes: np.ndarray, frame_rate: float = FRAME_RATE) -> bytes:
    codes = np.ascontiguousarray(codes, np.uint8)
    if codes.ndim != 2 or codes.shape[1] != N_CLASSES:
        raise ValueError(f"phonetic codes must be [T, {N_CLASSES}], got {codes.shape}")
    if len(codes) and int(codes.max()) > MAX_CODE:
        raise ValueError(f"phonetic codes above {MAX_CODE}: quantize() them")
    blocks = [zlib.compress(codes[i : i + AWP_BLOCK_FRAMES].tobytes(), 6) for i in range(0, len(codes), AWP_BLOCK_FRAMES)]
    offsets = np.concatenate([[0], np.cumsum([len(b) for b in blocks], dtype=np.int64)]).astype("<u4")
    body = offsets.tobytes() + b"".join(blocks)
    header = _AWP_HEADER.pack(AWP_MAGIC, AWP_VERSION, _AWP_HEADER.size, N_CLASSES, AWP_BLOCK_FRAMES, frame_rate, len(codes), len(blocks), zlib.crc32(body))
    return header + body


@dataclass
class AwpHeader:
    frame_rate: float  # Hz
    n_frames: int
    crc32: int  # of everything after the header
    block_frames: int  # frames per compressed block
    n_blocks: int


def read_awp_header(path: Path) -> AwpHeader:
    with open(path, "rb") as f:
        raw = f.read(_AWP_HEADER.size)
    return _parse_header(raw, path)


def _damaged(path: Path, what: str = "damaged") -> IndexFormatError:
    return IndexFormatError(f"phonetic file {path} is {what}; run awesearch index on the same folders to repair it")


def _parse_header(raw: bytes, path: Path) -> AwpHeader:
    if len(raw) >= 10 and raw[:8] == AWP_MAGIC and struct.unpack("<H", raw[8:10])[0] != AWP_VERSION:
        raise IndexFormatError(f"phonetic file {path} has version {struct.unpack('<H', raw[8:10])[0]}, this awesearch reads {AWP_VERSION}: re-index")
    if len(raw) < _AWP_HEADER.size:
        raise _damaged(path, "truncated")
    magic, version, hsize, n_classes, block, rate, n, n_blocks, crc = _AWP_HEADER.unpack(raw[: _AWP_HEADER.size])
    if magic != AWP_MAGIC:
        raise IndexFormatError(f"{path} is not an awesearch phonetic file; run awesearch index on the same folders to repair it")
    if hsize != _AWP_HEADER.size or n_classes != N_CLASSES or block < 1 or n_blocks != -(-n // block):
        raise IndexFormatError(f"phonetic file {path} has an unexpected header ({n_classes} classes); re-index")
    return AwpHeader(rate, n, crc, block, n_blocks)


def _decode_blocks(path: Path, head: AwpHeader, offsets: np.ndarray, data: bytes, first: int, base: int) -> np.ndarray:
    """Codes of consecutive blocks first.. whose bytes start at data[0] (= offsets[first] - base)."""
    out = []
    for b in range(first, first + len(offsets) - 1):
        lo, hi = int(offsets[b - first]) - base, int(offsets[b - first + 1]) - base
        try:
            raw = zlib.decompress(data[lo:hi])
        except zlib.error:
            raise _damaged(path) from None
        frames = min(head.block_frames, head.n_frames - b * head.block_frames)
        if len(raw) != frames * N_CLASSES:
            raise _damaged(path)
        out.append(np.frombuffer(raw, np.uint8).reshape(frames, N_CLASSES))
    return np.concatenate(out) if out else np.zeros((0, N_CLASSES), np.uint8)


def read_awp(path: Path, start_frame: int = 0, end_frame: int | None = None, verify: bool = False) -> np.ndarray:
    """Codes [end - start, N_CLASSES] of frames [start, end) (clipped to the file); verify=True reads all and
    checks the crc32 first."""
    path = Path(path)
    with open(path, "rb") as f:
        head = _parse_header(f.read(_AWP_HEADER.size), path)
        table_bytes = 4 * (head.n_blocks + 1)
        lo = min(max(0, start_frame), head.n_frames)
        hi = head.n_frames if end_frame is None else min(max(lo, end_frame), head.n_frames)
        if verify:
            body = f.read()
            if len(body) < table_bytes or zlib.crc32(body) != head.crc32:
                raise _damaged(path)
            offsets = np.frombuffer(body[:table_bytes], "<u4")
            if int(offsets[-1]) != len(body) - table_bytes:
                raise _damaged(path)
            return _decode_blocks(path, head, offsets, body[table_bytes:], 0, 0)[lo:hi]
        if hi <= lo:
            return np.zeros((0, N_CLASSES), np.uint8)
        b0, b1 = lo // head.block_frames, (hi - 1) // head.block_frames + 1
        f.seek(_AWP_HEADER.size + 4 * b0)
        raw = f.read(4 * (b1 - b0 + 1))
        if len(raw) != 4 * (b1 - b0 + 1):
            raise _damaged(path, "truncated")
        offsets = np.frombuffer(raw, "<u4")
        f.seek(_AWP_HEADER.size + table_bytes + int(offsets[0]))
        data = f.read(int(offsets[-1]) - int(offsets[0]))
    if len(data) != int(offsets[-1]) - int(offsets[0]):
        raise _damaged(path, "truncated")
    codes = _decode_blocks(path, head, offsets, data, b0, int(offsets[0]))
    return codes[lo - b0 * head.block_frames : hi - b0 * head.block_frames]
