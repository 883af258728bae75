"""Speaker embeddings: who is speaking in a stretch of speech.

The voice encoder is Resemblyzer's GE2E model (a 3-layer LSTM over 40-band mel power frames, 256-d
output; Apache-2.0, weights converted to fp16 in assets/speaker-v1.ckpt by awesearch/train/speaker_asset.py).
Its input is re-implemented here (torch.stft + a Slaney mel filterbank, as librosa computes it), so
neither librosa nor webrtcvad is needed: speech is found by our own silero VAD instead.

Speech regions are merged across short pauses into stretches; stretches longer than MAX_PIECE_S are cut
into equal pieces, shorter ones are one piece each (so every word said has a piece; pieces under MIN_PIECE_S
know the voice poorly and are judged with their neighbours, see speaker_index.py). Each piece is embedded as Resemblyzer embeds an utterance (1.6 s partials at PARTIAL_RATE_HZ, averaged), minus the
asset's centring mean (zeros in speaker-v1: centring on synthetic voices lowered verification on real
speech), L2-normalised. A logistic curve fitted on synthetic voices (espeak-ng, festival, flite; never real
speech) turns a cosine into a same-voice probability.

The asset is a torch file holding a dict: magic "awesearch-speaker-model", version, name, state_dict (fp16
LSTM + linear), mean [256] float32, calibration {"a", "b"} (p = sigmoid(a * cos + b)), provenance.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from .errors import CheckpointError, QueryError

SPEAKER_MAGIC = "awesearch-speaker-model"
SPEAKER_VERSION = 1
SPEAKER_ASSET = Path(__file__).parent / "assets" / "speaker-v1.ckpt"  # not .pt: every assets/*.pt is an encoder
SAMPLE_RATE = 16000  # Hz
N_FFT = 400  # samples = 25 ms (Resemblyzer's mel_window_length)
HOP = 160  # samples = 10 ms
N_MELS = 40  # Resemblyzer's mel_n_channels
HIDDEN = 256  # LSTM width and embedding size
LAYERS = 3
PARTIAL_FRAMES = 160  # 1.6 s of mel frames per partial utterance
PARTIAL_RATE_HZ = 1.0  # partials per second of speech (Resemblyzer's 1.3 made a 2-3 s piece 2-3 partials, this 1-2:
# about a quarter less LSTM time; the stored pieces only place hits and make voices since the query-time verifier)
MIN_COVERAGE = 0.75  # a last partial less full than this is dropped (when there is another)
TARGET_DBFS = -30.0  # quieter pieces are amplified to this RMS level (never attenuated), as Resemblyzer does
MERGE_GAP_S = 0.3  # VAD regions closer than this are one stretch of speech
MIN_PIECE_S = 1.0  # pieces shorter than this do not make voices or prototypes (they are still stored)
MAX_PIECE_S = 3.0  # longer stretches are cut into equal pieces no longer than this
MIN_CLIP_SPEECH_S = 1.0  # a speaker example must hold at least this much speech
MAX_CLIP_S = 600.0  # seconds of a speaker example file that are read at most
ACCEPT_P = 0.5  # same-voice probability at which a piece counts as the voice


@dataclass(frozen=True)
class Calibration:
    """p(same voice) = sigmoid(a * cosine + b), fitted on synthetic voices."""

    a: float
    b: float

    def probability(self, cosine: np.ndarray | float) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-(self.a * np.asarray(cosine, np.float64) + self.b)))

    def cosine_at(self, p: float) -> float:
        """The cosine where the probability is p."""
        return float((np.log(p / (1 - p)) - self.b) / self.a)


def _hz_to_slaney(hz: np.ndarray) -> np.ndarray:
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    step = np.log(6.4) / 27.0
    hz = np.asarray(hz, np.float64)
    return np.where(hz >= min_log_hz, min_log_hz / f_sp + np.log(np.maximum(hz, 1e-10) / min_log_hz) / step, hz / f_sp)


def _slaney_to_hz(mel: np.ndarray) -> np.ndarray:
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    step = np.log(6.4) / 27.0
    min_log_mel = min_log_hz / f_sp
    mel = np.asarray(mel, np.float64)
    return np.where(mel >= min_log_mel, min_log_hz * np.exp(step * (mel - min_log_mel)), f_sp * mel)


@lru_cache(maxsize=1)
def slaney_filterbank():
    """[N_MELS, N_FFT // 2 + 1] Slaney-scale, Slaney-normalised triangles (librosa.filters.mel defaults)."""
    import torch

    mel_f = _slaney_to_hz(np.linspace(_hz_to_slaney(0.0), _hz_to_slaney(SAMPLE_RATE / 2), N_MELS + 2))
    fft_f = np.linspace(0, SAMPLE_RATE / 2, 1 + N_FFT // 2)
    fdiff = np.diff(mel_f)
    ramps = mel_f[:, None] - fft_f[None, :]
    lower = -ramps[:N_MELS] / fdiff[:N_MELS, None]
    upper = ramps[2:] / fdiff[1:, None]
    weights = np.maximum(0.0, np.minimum(lower, upper)) * (2.0 / (mel_f[2:] - mel_f[:N_MELS]))[:, None]
    return torch.from_numpy(weights.astype(np.float32))


def mel_power(audio: np.ndarray):
    """16 kHz audio -> [frames, N_MELS] mel power frames (not log), centred STFT with zero padding."""
    import torch

    x = torch.as_tensor(np.asarray(audio, np.float32))
    if len(x) < N_FFT:
        x = torch.nn.functional.pad(x, (0, N_FFT - len(x)))
    spec = torch.stft(x, N_FFT, HOP, window=torch.hann_window(N_FFT), center=True, pad_mode="constant", return_complex=True)
    return (slaney_filterbank() @ (spec.real.square() + spec.imag.square())).T


def normalize_volume(audio: np.ndarray) -> np.ndarray:
    """Amplify to TARGET_DBFS RMS when quieter (int16 full scale, as Resemblyzer measures it)."""
    rms = float(np.sqrt(np.mean(np.square(audio, dtype=np.float64))))
    if rms <= 0:
        return audio
    gain_db = TARGET_DBFS - 20 * np.log10(rms)
    return audio * np.float32(10 ** (gain_db / 20)) if gain_db > 0 else audio


def partial_starts(n_frames: int) -> list[int]:
    """Frame offsets of the PARTIAL_FRAMES-long partials of a piece (Resemblyzer's compute_partial_slices)."""
    step = int(round(SAMPLE_RATE / PARTIAL_RATE_HZ / HOP))
    starts = list(range(0, max(1, n_frames - PARTIAL_FRAMES + step + 1), step))
    if len(starts) > 1 and (n_frames - starts[-1]) / PARTIAL_FRAMES < MIN_COVERAGE:
        starts.pop()
    return starts


def speech_pieces(regions: list[tuple[float, float]], lo: float = 0.0, hi: float = float("inf")) -> np.ndarray:
    """[n, 2] (start, end) seconds: the regions clipped to lo..hi, merged across pauses under MERGE_GAP_S, the
    stretches longer than MAX_PIECE_S cut into equal pieces of at most MAX_PIECE_S (short ones kept whole)."""
    from .windows import merge_regions

    out = []
    for s, e in merge_regions(regions, hi, lo, MERGE_GAP_S):
        d = e - s
        n = max(1, int(np.ceil(d / MAX_PIECE_S - 1e-9)))
        out += [(s + i * d / n, s + (i + 1) * d / n) for i in range(n)]
    return np.asarray(out, np.float64).reshape(-1, 2)


def ample(pieces: np.ndarray) -> np.ndarray:
    """The pieces long enough to know a voice by (at least MIN_PIECE_S)."""
    pieces = np.asarray(pieces, np.float64).reshape(-1, 2)
    return pieces[pieces[:, 1] - pieces[:, 0] >= MIN_PIECE_S - 1e-9]


class SpeakerModel:
    """Pieces of 16 kHz audio -> centred, L2-normalised speaker embeddings [n, HIDDEN] and probabilities."""

    def __init__(self, state_dict: dict, mean: np.ndarray, calibration: Calibration, name: str, checksum: str):
        import torch

        self.lstm = torch.nn.LSTM(N_MELS, HIDDEN, LAYERS, batch_first=True)
        self.linear = torch.nn.Linear(HIDDEN, HIDDEN)
        self.lstm.load_state_dict({k[5:]: v.float() for k, v in state_dict.items() if k.startswith("lstm.")})
        self.linear.load_state_dict({k[7:]: v.float() for k, v in state_dict.items() if k.startswith("linear.")})
        self.lstm.eval()
        # bfloat16 halves the LSTM's CPU time where the CPU computes it natively (AVX512-BF16/AMX): embeddings
        # within 2e-4 cosine of float32's, real-set verification EER 5.28 % against 5.26 %
        self.bf16 = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
        if self.bf16:
            self.lstm.to(torch.bfloat16)
        self.mean = np.asarray(mean, np.float32)  # [HIDDEN], zeros for raw Resemblyzer embeddings
        self.calibration = calibration
        self.name = name
        self.checksum = checksum  # embedding_checksum of the asset
        self.dim = HIDDEN

    def _partials(self, mels) -> "np.ndarray":
        """[B, PARTIAL_FRAMES, N_MELS] -> raw (uncentred) unit embeddings [B, HIDDEN]."""
        import torch

        with torch.inference_mode():
            _, (hidden, _) = self.lstm(mels.to(torch.bfloat16) if self.bf16 else mels)
            raw = torch.relu(self.linear(hidden[-1].float()))
            return torch.nn.functional.normalize(raw, dim=1).numpy()

    def embed_raw(self, audio: np.ndarray, pieces: np.ndarray) -> np.ndarray:
        """Resemblyzer utterance embeddings [n, HIDDEN] of the pieces (seconds into audio), uncentred."""
        return self.embed_raw_many([(audio, pieces)])[0]

    def embed_raw_many(self, jobs: list[tuple[np.ndarray, np.ndarray]]) -> list[np.ndarray]:
        """embed_raw of several (audio, pieces), all partials in one LSTM batch (a batch of one partial costs
        2.5x a partial of a batch of 4 or more)."""
        import torch

        parts, owner, counts = [], [], []  # partial mel frames; the piece (counted over all jobs) of each; pieces per job
        n = 0  # pieces so far
        for audio, pieces in jobs:
            pieces = np.asarray(pieces, np.float64).reshape(-1, 2)
            for s, e in pieces:
                piece = normalize_volume(audio[int(round(s * SAMPLE_RATE)) : int(round(e * SAMPLE_RATE))])
                mel = mel_power(piece)
                for start in partial_starts(len(mel)):
                    part = mel[start : start + PARTIAL_FRAMES]
                    if len(part) < PARTIAL_FRAMES:  # zero audio has zero mel power: as Resemblyzer's padded wav
                        part = torch.nn.functional.pad(part, (0, 0, 0, PARTIAL_FRAMES - len(part)))
                    parts.append(part)
                    owner.append(n)
                n += 1
            counts.append(len(pieces))
        if n == 0:
            return [np.zeros((0, HIDDEN), np.float32) for _ in jobs]
        sums = np.zeros((n, HIDDEN), np.float64)
        np.add.at(sums, np.asarray(owner), self._partials(torch.stack(parts)))
        emb = (sums / np.linalg.norm(sums, axis=1, keepdims=True)).astype(np.float32)
        return np.split(emb, np.cumsum(counts)[:-1])

    def centre(self, raw: np.ndarray) -> np.ndarray:
        """Subtract the centring mean and L2-normalise."""
        c = np.asarray(raw, np.float32) - self.mean
        return c / np.maximum(np.linalg.norm(c, axis=-1, keepdims=True), 1e-12)

    def embed(self, audio: np.ndarray, pieces: np.ndarray) -> np.ndarray:
        """Centred unit embeddings [n, HIDDEN] of the pieces (seconds into 16 kHz audio)."""
        return self.centre(self.embed_raw(audio, pieces))

    def embed_speech(self, audio: np.ndarray, regions: list[tuple[float, float]], lo: float = 0.0, hi: float = float("inf")):
        """(pieces [n, 2] seconds, embeddings [n, HIDDEN]) of the speech regions of audio within lo..hi."""
        return self.embed_speech_many([(audio, regions, lo, hi)])[0]

    def embed_speech_many(self, jobs: list[tuple[np.ndarray, list, float, float]]) -> list[tuple[np.ndarray, np.ndarray]]:
        """embed_speech of several (audio, regions, lo, hi) at once (one LSTM batch)."""
        pieces = [speech_pieces(regions, lo, hi) for _, regions, lo, hi in jobs]
        raw = self.embed_raw_many([(job[0], p) for job, p in zip(jobs, pieces)])
        return [(p, self.centre(r)) for p, r in zip(pieces, raw)]

    def probability(self, cosine) -> np.ndarray:
        return self.calibration.probability(cosine)


def prototype(embeddings: np.ndarray) -> np.ndarray:
    """One unit vector for several centred embeddings of one voice."""
    m = np.asarray(embeddings, np.float64).mean(axis=0)
    return (m / max(np.linalg.norm(m), 1e-12)).astype(np.float32)


def embedding_checksum(ckpt: dict) -> str:
    """sha256 of what the stored embeddings depend on (weights and mean), not of the calibration: an index
    stays valid when only the same-voice calibration is refitted."""
    h = hashlib.sha256()
    for key in sorted(ckpt["state_dict"]):
        h.update(key.encode())
        h.update(ckpt["state_dict"][key].numpy().tobytes())
    h.update(ckpt["mean"].numpy().astype(np.float32).tobytes())
    return h.hexdigest()


def read_asset(path: str | None, shipped: Path, what: str, magic: str, version: int) -> dict:
    """The torch dict of the shipped asset (checked against assets/SHA256SUMS) or of the file at path;
    CheckpointError naming `what` when it is missing, unreadable, foreign or of another version."""
    from .encoder import read_checkpoint, shipped_checksums

    p = Path(path) if path else shipped
    if path is None and p.is_file() and shipped_checksums().get(p.name) != hashlib.sha256(p.read_bytes()).hexdigest():
        raise CheckpointError(f"shipped {what} {p.name} does not match its checksum in SHA256SUMS; reinstall awesearch")
    return read_checkpoint(p, magic, version, what)


@lru_cache(maxsize=2)
def load_speaker_model(path: str | None = None) -> SpeakerModel:
    """The shipped speaker model (or a speaker asset at path); CheckpointError when missing or foreign."""
    ckpt = read_asset(path, SPEAKER_ASSET, "speaker model", SPEAKER_MAGIC, SPEAKER_VERSION)
    cal = Calibration(a=float(ckpt["calibration"]["a"]), b=float(ckpt["calibration"]["b"]))
    return SpeakerModel(ckpt["state_dict"], ckpt["mean"].numpy(), cal, ckpt["name"], embedding_checksum(ckpt))


@dataclass
class SpeakerExample:
    """A clip given with --speaker, with an optional span."""

    path: str
    start: float | None = None  # seconds
    end: float | None = None  # seconds


def example_embeddings(model: SpeakerModel, example: SpeakerExample) -> tuple[np.ndarray, float]:
    """(centred embeddings of the example's speech pieces, seconds of speech); QueryError when the clip is
    unreadable, holds no speech, or less than MIN_CLIP_SPEECH_S of it."""
    from .audio import load_audio, probe_duration
    from .errors import AudioDecodeError
    from .vad import speech_regions

    what = example.path if example.start is None else f"{example.path} [{example.start:.2f}..{example.end:.2f} s]"
    if (example.start is None) != (example.end is None):
        raise QueryError("--speaker-start and --speaker-end go together")
    if example.start is not None and not 0 <= example.start < example.end:
        raise QueryError(f"speaker example span must have 0 <= start < end, got {example.start}..{example.end}")
    if not Path(example.path).is_file():
        raise QueryError(f"speaker example not found: {example.path}")
    try:
        start = example.start or 0.0
        end = example.end if example.end is not None else min(probe_duration(example.path), MAX_CLIP_S)
        audio = load_audio(example.path, start, end)
    except AudioDecodeError as e:
        raise QueryError(f"speaker example {what} cannot be read: {e}") from None
    regions = speech_regions(audio)
    speech_s = float(sum(e - s for s, e in regions))
    if not regions:
        raise QueryError(f"speaker example {what} has no speech (voice activity detection found none)")
    pieces = ample(speech_pieces(regions))
    if speech_s < MIN_CLIP_SPEECH_S or len(pieces) == 0:
        raise QueryError(
            f"speaker example {what} has {speech_s:.2f} s of speech in stretches too short to know the voice; "
            f"give at least {MIN_CLIP_SPEECH_S:.0f} s of continuous speech"
        )
    return model.embed(audio, pieces), speech_s


def examples_prototype(model: SpeakerModel, examples: list[SpeakerExample]) -> np.ndarray:
    """One prototype vector for all pieces of all examples (repeated --speaker)."""
    if not examples:
        raise QueryError("give at least one speaker example")
    return prototype(np.concatenate([example_embeddings(model, ex)[0] for ex in examples]))


def speaker_examples(paths: list, starts: list[float], ends: list[float]) -> list[SpeakerExample]:
    """--speaker clips with their optional --speaker-start/--speaker-end spans (one of each per clip, or none)."""
    if (starts or ends) and not paths:
        raise QueryError("--speaker-start/--speaker-end need --speaker")
    if len(starts) != len(ends) or (starts and len(starts) != len(paths)):
        raise QueryError("give one --speaker-start and one --speaker-end per --speaker (or none)")
    if not starts:
        return [SpeakerExample(str(p)) for p in paths]
    return [SpeakerExample(str(p), float(s), float(e)) for p, s, e in zip(paths, starts, ends)]
