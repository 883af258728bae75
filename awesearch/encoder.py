"""The encoder interface the indexer and the query engine use, and checkpoint loading.

A checkpoint is a torch file holding a dict:
    magic "awesearch-encoder", version, name, dims (ModelDimensions), feature_config (FeatureConfig),
    state_dict (fp16 tensors), train_info (free-form provenance, e.g. seed, steps, validation AP).
It is read with torch.load(weights_only=True) and rebuilt as AWEModel(ModelDimensions(**ckpt["dims"])).
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from .errors import CheckpointError, QueryError
from .features import FeatureConfig, log_mel
from .model import AWEModel, ModelDimensions
from .whisper_frontend import FRONTEND_THREADS  # CTranslate2 threads of the Whisper front end by default

CHECKPOINT_MAGIC = "awesearch-encoder"
CHECKPOINT_VERSION = 1
ASSETS = Path(__file__).parent / "assets"
DEFAULT_MODEL = "awe-whisper-v1"  # chosen by measurement on real speech: README "Choosing the default encoder"
CHECKSUMS = ASSETS / "SHA256SUMS"  # "<sha256>  <file>" lines for every shipped checkpoint
RANDOM_MODEL = "random"  # a small randomly initialised model: plumbing tests only, it finds nothing meaningful
CONTEXT_S = 0.3  # seconds of audio each side of a window that the frame encoder looks at (receptive field ~0.25 s)
MIN_WINDOW_S = 0.1  # shorter spans cannot be embedded meaningfully


@dataclass
class ChunkFrames:
    """Frame-level features of one chunk of audio, computed once and pooled into many windows."""

    frames: torch.Tensor  # [1, T, C]
    frame_rate: float  # frames per second
    duration: float  # seconds of audio in the chunk


def input_frame_rate(dims: ModelDimensions, fc: FeatureConfig) -> float:
    """Input feature frames per second for a model's front end."""
    if dims.frontend == "whisper":
        from .whisper_frontend import WHISPER_FRAME_RATE

        return WHISPER_FRAME_RATE
    return fc.frame_rate


@lru_cache(maxsize=1)
def _phoneme_index() -> dict[str, int]:
    from .text import PHONEMES

    return {p: i + 1 for i, p in enumerate(PHONEMES)}  # 0 is padding


def phoneme_ids(seq: list[str]) -> list[int]:
    index = _phoneme_index()
    ids = []
    for p in seq:
        base = p.rstrip("012").upper()
        if base not in index:
            raise QueryError(f"unknown phoneme {p!r}")
        ids.append(index[base])
    return ids


def phoneme_batch(seqs: list[list[str]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Phoneme sequences -> zero-padded id tensor [B, L] and lengths [B] for the text tower."""
    ids = [phoneme_ids(s) for s in seqs]
    lengths = torch.tensor([len(s) for s in ids])
    padded = torch.zeros(len(ids), int(lengths.max()), dtype=torch.long)
    for i, s in enumerate(ids):
        padded[i, : len(s)] = torch.tensor(s)
    return padded, lengths


class Encoder:
    """Audio windows and phoneme sequences -> L2-normalised vectors in one space."""

    def __init__(self, model: AWEModel, feature_config: FeatureConfig, name: str, checksum: str):
        self.model = model.eval()
        self.feature_config = feature_config
        self.name = name
        self.checksum = checksum
        self.dim = model.dims.embed_dim
        self.context_s = CONTEXT_S
        self.frame_rate = input_frame_rate(model.dims, feature_config) / model.dims.frame_stride
        self._whisper = None  # the Whisper front end, loaded on first use (or by preload_frontend)
        self._loading = None  # the thread of preload_frontend while it runs
        self._frontend_lock = threading.Lock()  # the indexer's encoding threads ask for the front end at once
        self.frontend_threads = FRONTEND_THREADS  # CTranslate2 threads of the Whisper front end (set before first use)
        self.device = "cpu"  # "cpu" or "cuda": where the Whisper front end runs (set before first use)

    @torch.inference_mode()
    def input_features(self, audio: np.ndarray) -> torch.Tensor:
        """Front-end features [1, T_in, n_input] of a chunk of 16 kHz audio."""
        if self.model.dims.frontend == "whisper":
            return torch.from_numpy(self._frontend().encode(np.asarray(audio, dtype=np.float32)))[None]
        return log_mel(torch.as_tensor(audio, dtype=torch.float32), self.feature_config)[None]

    @torch.inference_mode()
    def encode_frames(self, audio: np.ndarray) -> ChunkFrames:
        return self.encode_frames_and_inputs(audio)[0]

    @torch.inference_mode()
    def encode_frames_and_inputs(self, audio: np.ndarray) -> tuple[ChunkFrames, torch.Tensor]:
        """The chunk's frames plus the front-end features they came from (the phoneme head reads those)."""
        inputs = self.input_features(audio)
        frames = self.model.audio.frames(inputs)
        return ChunkFrames(frames=frames, frame_rate=self.frame_rate, duration=len(audio) / self.feature_config.sample_rate), inputs

    @torch.inference_mode()
    def encode_many_frames_and_inputs(self, audios: list[np.ndarray]) -> list[tuple[ChunkFrames, torch.Tensor]]:
        """encode_frames_and_inputs of several spans at once; the Whisper front end packs spans of up to one block (20 s)
        into shared blocks (awesearch/whisper_frontend.py), which changes their attention context a little."""
        if self.model.dims.frontend == "whisper":
            feats = [torch.from_numpy(f)[None] for f in self._frontend().encode_many([np.asarray(a, dtype=np.float32) for a in audios])]
        else:
            feats = [log_mel(torch.as_tensor(a, dtype=torch.float32), self.feature_config)[None] for a in audios]
        sr = self.feature_config.sample_rate
        return [(ChunkFrames(self.model.audio.frames(f), self.frame_rate, len(a) / sr), f) for f, a in zip(feats, audios)]

    def _frontend(self):
        from .whisper_frontend import WhisperFrontend

        with self._frontend_lock:  # one load: a second caller waits for the first's
            if self._loading is not None:
                load, self._loading = self._loading, None
                if (load.threads, load.device) == (self.frontend_threads, self.device):
                    self._whisper = load.result()  # its error, if loading failed, is raised here
            if self._whisper is None:  # not preloaded, or preloaded with other settings: load here
                self._whisper = WhisperFrontend(threads=self.frontend_threads, device=self.device)
            return self._whisper

    def preload_frontend(self, load=None) -> None:
        """Start loading the Whisper front end on a background thread (start-up overlaps other loading), or
        adopt `load`, a whisper_frontend.FrontendLoad started before this encoder was loaded; its first use
        waits for it. No-op for the log-mel front end or when already loaded."""
        from .whisper_frontend import FrontendLoad

        if self.model.dims.frontend != "whisper" or self._whisper is not None or self._loading is not None:
            return
        self._loading = load or FrontendLoad(self.frontend_threads, self.device)

    @property
    def frontend_block_s(self) -> float:
        """Seconds per Whisper block its audio frames are encoded in (0 for the log-mel front end): part of
        what an index's vectors mean (store.check_encoder_matches)."""
        from .whisper_frontend import BLOCK_S

        return BLOCK_S if self.model.dims.frontend == "whisper" else 0.0

    @property
    def has_phonetic_frontend(self) -> bool:
        """True when the front end gives Whisper frames, which the phoneme head (awesearch/phonetic.py) reads."""
        return self.model.dims.frontend == "whisper"

    @torch.inference_mode()
    def pool_windows(self, chunk: ChunkFrames, windows: np.ndarray, batch: int = 8192) -> np.ndarray:
        """windows: [n, 2] seconds relative to the chunk start -> [n, D] float32."""
        windows = np.asarray(windows, dtype=np.float64).reshape(-1, 2)
        out = np.empty((len(windows), self.dim), dtype=np.float32)
        for i in range(0, len(windows), batch):
            w = torch.from_numpy(windows[i : i + batch])
            start = torch.round(w[:, 0] * chunk.frame_rate).long()
            end = torch.round(w[:, 1] * chunk.frame_rate).long()
            idx = torch.zeros_like(start)
            out[i : i + batch] = self.model.audio.pool(chunk.frames, idx, start, end, chunk.frame_rate).numpy()
        return out

    def embed_windows(self, audio: np.ndarray, windows: np.ndarray) -> np.ndarray:
        return self.pool_windows(self.encode_frames(audio), windows)

    @torch.inference_mode()
    def embed_phonemes(self, seqs: list[list[str]]) -> np.ndarray:
        if not seqs or any(len(s) == 0 for s in seqs):
            raise QueryError("cannot embed an empty phoneme sequence")
        return self.model.text(*phoneme_batch(seqs)).numpy().astype(np.float32)


def save_checkpoint(path: Path, model: AWEModel, feature_config: FeatureConfig, name: str, train_info: dict) -> str:
    """Write a checkpoint (fp16 weights) atomically and return its sha256."""
    return write_checkpoint(path, model, {"magic": CHECKPOINT_MAGIC, "version": CHECKPOINT_VERSION, "name": name,
                                          "feature_config": asdict(feature_config), "train_info": train_info})


def write_checkpoint(path: Path, model: torch.nn.Module, header: dict) -> str:
    """header + the model's dims and fp16 state_dict, written atomically; returns the file's sha256."""
    state = {k: v.detach().to(torch.float16) if v.is_floating_point() else v for k, v in model.state_dict().items()}
    path = Path(path)
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save({**header, "dims": asdict(model.dims), "state_dict": state}, tmp)
    tmp.replace(path)
    return file_sha256(path)


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def read_checkpoint(path: Path, magic: str, version: int | tuple[int, ...], what: str) -> dict:
    """The dict of a torch checkpoint file (weights_only), checked for magic and version (one, or a tuple of
    readable versions); CheckpointError else."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{what} checkpoint not found: {path}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types for corrupt files
        raise CheckpointError(f"cannot read {what} checkpoint {path}: {e.__class__.__name__}") from e
    if not isinstance(ckpt, dict) or ckpt.get("magic") != magic:
        raise CheckpointError(f"{path} is not an awesearch {what} checkpoint")
    versions = version if isinstance(version, tuple) else (version,)
    if ckpt.get("version") not in versions:
        raise CheckpointError(f"{path} has {what} checkpoint version {ckpt.get('version')}; this awesearch reads version "
                              f"{' or '.join(map(str, versions))}")
    return ckpt


def load_checkpoint(path: Path) -> Encoder:
    path = Path(path)
    ckpt = read_checkpoint(path, CHECKPOINT_MAGIC, CHECKPOINT_VERSION, "encoder")
    model = AWEModel(ModelDimensions(**ckpt["dims"]))
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in ckpt["state_dict"].items()})
    fc = FeatureConfig(**ckpt["feature_config"])
    if model.dims.frontend == "mel" and fc.n_mels != model.dims.n_input:
        raise CheckpointError(f"{path}: feature n_mels {fc.n_mels} does not match the model's input size {model.dims.n_input}")
    return Encoder(model, fc, name=ckpt["name"], checksum=file_sha256(path))


def random_encoder(seed: int = 0) -> Encoder:
    """A small randomly initialised encoder for plumbing tests (deterministic from the seed)."""
    dims = ModelDimensions(channels=64, hidden=128, embed_dim=32, phone_embed=32, text_channels=32, text_layers=1)
    torch.manual_seed(seed)
    model = AWEModel(dims)
    digest = hashlib.sha256(f"{RANDOM_MODEL}:{seed}:{asdict(dims)}".encode()).hexdigest()
    return Encoder(model, FeatureConfig(), name=RANDOM_MODEL, checksum=digest)


def shipped_checksums() -> dict[str, str]:
    if not CHECKSUMS.is_file():
        return {}
    pairs = (line.split() for line in CHECKSUMS.read_text().splitlines() if line.strip())
    return {name: digest for digest, name in pairs}


def available_models() -> list[str]:
    return sorted(p.stem for p in ASSETS.glob("awe-*.pt")) + [RANDOM_MODEL]  # phone-*.pt are phoneme heads


def load_encoder(name: str | None = None) -> Encoder:
    """None -> the shipped default; a shipped model name; "random"; or a path to a checkpoint file."""
    name = name or DEFAULT_MODEL
    if name == RANDOM_MODEL:
        return random_encoder()
    shipped = ASSETS / f"{name}.pt"
    if shipped.is_file():
        enc = load_checkpoint(shipped)
        expected = shipped_checksums().get(shipped.name)
        if expected != enc.checksum:
            raise CheckpointError(f"shipped checkpoint {shipped.name} does not match its checksum in {CHECKSUMS.name}; reinstall awesearch")
        return enc
    if name.endswith(".pt") or "/" in name:
        return load_checkpoint(Path(name))
    raise CheckpointError(f"unknown encoder {name!r}; available: {', '.join(available_models())}")
