"""The acoustic word embedding network: an audio tower and a text (phoneme) tower into one space.

Audio tower: log-mel -> strided conv -> dilated residual conv blocks -> contextual frames (20 ms).
A window [start, end] is embedded by splitting its frames into N_POOL equal segments, averaging each
(via a cumulative sum, so any number of windows costs O(1) each once the chunk's frames exist),
concatenating them with the log duration, and projecting with a small MLP. This is what makes
indexing fast: frames are computed once per chunk of audio, not once per window.

Text tower: phoneme + position embeddings -> residual convs -> the same segment pooling -> MLP. Both outputs are
L2-normalised; cosine similarity is the score.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

MAX_PHONEMES = 64  # longest phoneme sequence the text tower reads (four long words)


@dataclass
class ModelDimensions:
    frontend: str = "mel"  # "mel": log-mel from scratch; "whisper": frozen Whisper tiny.en encoder frames
    n_input: int = 128  # features per input frame: 128 log-mel bands, or 384 Whisper encoder dims
    frame_stride: int = 2  # input frames per model frame: 10 ms mel -> 20 ms frames halves the conv cost (Whisper: 1)
    channels: int = 128  # width of the conv frame encoder: small enough to train on 2 CPU cores in an hour
    dilations: tuple[int, ...] = (1, 2, 4)  # kernel 5 at 20 ms: receptive field about +-280 ms, a syllable or two of context
    kernel_size: int = 5
    n_pool: int = 4  # segments per window: keeps phoneme order, which a plain mean would lose
    embed_dim: int = 128  # D of the search space; 256 B per window in fp16
    hidden: int = 384  # MLP width of both heads
    n_phonemes: int = 40  # 39 ARPAbet phonemes + padding id 0
    phone_embed: int = 128
    text_channels: int = 192  # width of the phoneme conv encoder
    text_layers: int = 2  # kernel 3 each: every phoneme sees +-2 neighbours

    def __post_init__(self) -> None:
        self.dilations = tuple(self.dilations)  # JSON/checkpoint round-trips give lists


def segment_pool(cumsum: Tensor, batch_idx: Tensor, start: Tensor, end: Tensor, n_pool: int) -> Tensor:
    """Mean of n_pool equal segments of [start, end) frames, from a cumulative sum.

    cumsum: [B, T + 1, C] with cumsum[:, 0] = 0. start/end: [N] int frame indices, end - start >= n_pool.
    Returns [N, n_pool * C].
    """
    length = (end - start).float()
    k = torch.arange(n_pool + 1, device=start.device, dtype=torch.float32)
    bounds = start[:, None] + torch.floor(length[:, None] * k[None, :] / n_pool).long()  # [N, n_pool + 1]
    rows = cumsum[batch_idx[:, None], bounds]  # [N, n_pool + 1, C]
    sums = rows[:, 1:] - rows[:, :-1]
    counts = (bounds[:, 1:] - bounds[:, :-1]).clamp(min=1).unsqueeze(-1)
    return (sums / counts).flatten(1)


class ResidualConv(nn.Module):
    def __init__(self, channels: int, kernel_size: int, dilation: int):
        super().__init__()
        self.norm = nn.LayerNorm(channels)
        self.conv = nn.Conv1d(channels, channels, kernel_size, padding=dilation * (kernel_size - 1) // 2, dilation=dilation)

    def forward(self, x: Tensor) -> Tensor:  # x: [B, T, C]
        h = F.gelu(self.norm(x)).transpose(1, 2)
        return x + self.conv(h).transpose(1, 2)


class Head(nn.Module):
    """Pooled segments (+ extra scalar) -> L2-normalised embedding."""

    def __init__(self, d_in: int, hidden: int, d_out: int):
        super().__init__()
        self.net = nn.Sequential(nn.LayerNorm(d_in), nn.Linear(d_in, hidden), nn.GELU(), nn.Linear(hidden, d_out))

    def forward(self, x: Tensor) -> Tensor:
        return F.normalize(self.net(x), dim=-1)


class AudioTower(nn.Module):
    def __init__(self, dims: ModelDimensions):
        super().__init__()
        self.dims = dims
        self.in_norm = nn.LayerNorm(dims.n_input)  # per-frame: removes overall gain, so loudness does not matter
        self.stem = nn.Conv1d(dims.n_input, dims.channels, dims.kernel_size, stride=dims.frame_stride, padding=dims.kernel_size // 2)
        self.blocks = nn.ModuleList(ResidualConv(dims.channels, dims.kernel_size, d) for d in dims.dilations)
        self.out_norm = nn.LayerNorm(dims.channels)
        self.head = Head(dims.n_pool * dims.channels + 1, dims.hidden, dims.embed_dim)

    def frames(self, feats: Tensor) -> Tensor:
        """[B, T_in, n_input] -> contextual frames [B, T, C] at input_rate / frame_stride."""
        x = self.stem(self.in_norm(feats).transpose(1, 2)).transpose(1, 2)
        x = F.gelu(x)
        for block in self.blocks:
            x = block(x)
        return self.out_norm(x)

    def pool(self, frames: Tensor, batch_idx: Tensor, start: Tensor, end: Tensor, frame_rate: float) -> Tensor:
        """Embed windows given as model-frame indices [start, end) into [N, D]."""
        n_pool = self.dims.n_pool
        T = frames.shape[1]
        start = start.clamp(0, max(T - n_pool, 0))
        end = torch.maximum(end, start + n_pool).clamp(max=T)
        start = torch.minimum(start, end - n_pool).clamp(min=0)
        cumsum = F.pad(frames.cumsum(dim=1), (0, 0, 1, 0))
        pooled = segment_pool(cumsum, batch_idx, start, end, n_pool)
        log_dur = torch.log((end - start).float() / frame_rate).unsqueeze(-1)
        return self.head(torch.cat([pooled, log_dur], dim=-1))


class TextTower(nn.Module):
    """Phoneme ids -> embedding. Convolutions, not a GRU: as good for 3-20 phonemes and ~10x faster on CPU."""

    def __init__(self, dims: ModelDimensions):
        super().__init__()
        self.dims = dims
        self.embed = nn.Embedding(dims.n_phonemes, dims.phone_embed, padding_idx=0)
        self.position = nn.Embedding(MAX_PHONEMES, dims.phone_embed)  # where in the word a phoneme sits
        self.proj = nn.Linear(dims.phone_embed, dims.text_channels)
        self.blocks = nn.ModuleList(ResidualConv(dims.text_channels, 3, 1) for _ in range(dims.text_layers))
        self.out_norm = nn.LayerNorm(dims.text_channels)
        self.head = Head(dims.n_pool * dims.text_channels + 1, dims.hidden, dims.embed_dim)

    def forward(self, ids: Tensor, lengths: Tensor) -> Tensor:
        """ids: [B, L] phoneme ids (0 = pad), lengths: [B] -> [B, D]."""
        ids = ids[:, :MAX_PHONEMES]
        lengths = lengths.clamp(max=MAX_PHONEMES)
        pos = torch.arange(ids.shape[1], device=ids.device)
        mask = (pos[None, :] < lengths[:, None]).unsqueeze(-1).float()
        x = self.proj(self.embed(ids) + self.position(pos)[None]) * mask
        for block in self.blocks:
            x = block(x) * mask  # re-mask so padding never leaks into real positions
        x = self.out_norm(x) * mask
        n_pool = self.dims.n_pool
        # Repeat each position n_pool times so words shorter than n_pool phonemes still fill every segment.
        x = x.repeat_interleave(n_pool, dim=1)
        cumsum = F.pad(x.cumsum(dim=1), (0, 0, 1, 0))
        batch_idx = torch.arange(ids.shape[0], device=ids.device)
        pooled = segment_pool(cumsum, batch_idx, torch.zeros_like(lengths), lengths * n_pool, n_pool)
        log_len = torch.log(lengths.float()).unsqueeze(-1)
        return self.head(torch.cat([pooled, log_len], dim=-1))


class AWEModel(nn.Module):
    def __init__(self, dims: ModelDimensions):
        super().__init__()
        self.dims = dims
        self.audio = AudioTower(dims)
        self.text = TextTower(dims)
        # CLAP temperature, learnable: logit scale = exp(t), initialised at 1 / 0.07 as in CLIP.
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))
