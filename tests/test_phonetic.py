"""The phonetic frame stage: .awp files, quantisation, checkpoints (awesearch/phonetic.py)."""

import numpy as np
import pytest
import torch

from awesearch.errors import CheckpointError, IndexFormatError, QueryError
from awesearch.phonetic import (
    BLANK,
    BOUNDARY,
    AWP_BLOCK_FRAMES,
    MAX_CODE,
    N_CLASSES,
    QUANT_STEP_NATS,
    PhoneHead,
    PhoneHeadDims,
    awp_bytes,
    blank_codes,
    dequantize,
    greedy_decode,
    ids_to_symbols,
    load_phone_checkpoint,
    quantize,
    read_awp,
    read_awp_header,
    save_phone_checkpoint,
    symbols_to_ids,
    word_targets,
)


def random_logp(t, seed=0):
    x = np.random.default_rng(seed).normal(size=(t, N_CLASSES)).astype(np.float32) * 3
    return x - np.log(np.exp(x).sum(1, keepdims=True))


def test_quantisation_error_is_half_a_step_above_the_floor():
    logp = random_logp(500)
    back = dequantize(quantize(logp))
    above_floor = -logp < MAX_CODE * QUANT_STEP_NATS
    assert np.abs(back - logp)[above_floor].max() <= QUANT_STEP_NATS / 2 + 1e-6
    assert np.all(back[~above_floor] == -MAX_CODE * QUANT_STEP_NATS)
    assert (~above_floor).any()  # the random posteriors do reach the floor


def test_awp_round_trips_whole_and_by_slice(tmp_path):
    n = 2 * AWP_BLOCK_FRAMES + AWP_BLOCK_FRAMES // 4  # three blocks, the last one short
    codes = quantize(random_logp(n))
    path = tmp_path / "phon-00000007.awp"
    path.write_bytes(awp_bytes(codes))
    head = read_awp_header(path)
    assert head.n_frames == n and head.frame_rate == 50.0 and head.n_blocks == 3
    assert np.array_equal(read_awp(path, verify=True), codes)
    for lo, hi in [(10, 50), (100, 150), (AWP_BLOCK_FRAMES - 5, AWP_BLOCK_FRAMES + 5), (0, n), (AWP_BLOCK_FRAMES, 2 * AWP_BLOCK_FRAMES)]:
        assert np.array_equal(read_awp(path, lo, hi), codes[lo:hi])
    assert np.array_equal(read_awp(path, n - 21, n + 100), codes[n - 21 :])  # clipped at the end
    assert read_awp(path, n + 1, n + 100).shape == (0, N_CLASSES)
    assert np.array_equal(read_awp(path, 100, 150, verify=True), codes[100:150])


def test_awp_blank_stretches_compress():
    codes = blank_codes(3000)
    codes[1000:1100] = quantize(random_logp(100))
    assert len(awp_bytes(codes)) < codes.nbytes / 10


def test_awp_version_1_is_refused_with_the_reindex_message(tmp_path):
    import struct
    import zlib

    payload = quantize(random_logp(10)).tobytes()
    old = struct.pack("<8sHHHHfII", b"AWSPHON\0", 1, 28, N_CLASSES, 0, 50.0, 10, zlib.crc32(payload)) + payload
    path = tmp_path / "phon-00000001.awp"
    path.write_bytes(old)
    with pytest.raises(IndexFormatError, match="version 1.*re-index"):
        read_awp(path)


def test_awp_damage_is_refused_with_the_repair_hint(tmp_path):
    path = tmp_path / "p.awp"
    data = bytearray(awp_bytes(quantize(random_logp(50))))
    good = bytes(data)
    data[-3] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(IndexFormatError, match="damaged.*awesearch index"):
        read_awp(path, verify=True)
    path.write_bytes(bytes(data))
    with pytest.raises(IndexFormatError, match="damaged.*awesearch index"):  # a slice read decompresses the block
        read_awp(path, 0, 50)
    path.write_bytes(good[:-10])
    with pytest.raises(IndexFormatError, match="truncated"):
        read_awp(path, 0, 50)
    path.write_bytes(b"RIFF" + bytes(data[4:]))
    with pytest.raises(IndexFormatError, match="not an awesearch phonetic file"):
        read_awp(path)


def test_blank_codes_decode_to_nothing():
    assert greedy_decode(dequantize(blank_codes(20))) == []


def test_targets_and_symbols():
    t = word_targets([["DH", "AH"], ["P", "R", "IH1", "N", "S"]])
    assert t[0] == BOUNDARY and t[-1] == BOUNDARY and t.count(BOUNDARY) == 3
    assert ids_to_symbols(t) == ["|", "DH", "AH", "|", "P", "R", "IH", "N", "S", "|"]
    with pytest.raises(QueryError):
        symbols_to_ids(["XX"])


def test_greedy_decode_merges_repeats_and_drops_blanks():
    ids = [BLANK, 5, 5, BLANK, 5, BOUNDARY, BOUNDARY, 7]
    logp = np.full((len(ids), N_CLASSES), -20.0, np.float32)
    logp[np.arange(len(ids)), ids] = 0.0
    assert greedy_decode(logp) == [5, 5, BOUNDARY, 7]


def test_phone_checkpoint_round_trips(tmp_path):
    torch.manual_seed(0)
    head = PhoneHead(PhoneHeadDims(channels=16))
    path = tmp_path / "phone-test.pt"
    save_phone_checkpoint(path, head, "phone-test", {"seed": 0})
    model = load_phone_checkpoint(path)
    x = torch.randn(1, 30, 384)
    with torch.no_grad():
        assert torch.allclose(model.head(x), head.half().float()(x), atol=1e-4)
    assert model.log_posteriors(x[0].numpy()).shape == (30, N_CLASSES)


def test_phone_checkpoint_refuses_other_files(tmp_path):
    bad = tmp_path / "x.pt"
    torch.save({"magic": "awesearch-encoder"}, bad)
    with pytest.raises(CheckpointError, match="not an awesearch phoneme head"):
        load_phone_checkpoint(bad)
    with pytest.raises(CheckpointError, match="not found"):
        load_phone_checkpoint(tmp_path / "missing.pt")


def test_a_dilated_v2_head_round_trips_and_a_version_1_head_still_loads(tmp_path):
    from awesearch.phonetic import CHECKPOINT_VERSION

    torch.manual_seed(0)
    dims = PhoneHeadDims(channels=16, layers=3, more_kernel=3, dilation_base=2, dropout=0.1)
    head = PhoneHead(dims).eval()
    path = tmp_path / "phone-v2.pt"
    save_phone_checkpoint(path, head, "phone-v2", {"seed": 0})
    assert torch.load(path, weights_only=True)["version"] == CHECKPOINT_VERSION == 2
    model = load_phone_checkpoint(path)
    assert model.head.dims == dims and [c.dilation for c in model.head.more] == [(2,), (4,)]
    x = torch.randn(1, 40, 384)
    with torch.no_grad():
        assert torch.allclose(model.head(x), head.half().float()(x), atol=1e-4)
    # a version 1 checkpoint (no v2 dims fields) is still read, as a plain head
    v1 = torch.load(path, weights_only=True)
    one = PhoneHead(PhoneHeadDims(channels=16))
    v1.update(version=1, dims={k: v for k, v in v1["dims"].items() if k not in ("more_kernel", "dilation_base", "dropout")} | {"layers": 1},
              state_dict={k: v.half() for k, v in one.state_dict().items()})
    torch.save(v1, tmp_path / "v1.pt")
    assert load_phone_checkpoint(tmp_path / "v1.pt").head.dims.layers == 1
    v1["version"] = 3
    torch.save(v1, tmp_path / "v3.pt")
    with pytest.raises(CheckpointError, match="version 3; this awesearch reads version 1 or 2"):
        load_phone_checkpoint(tmp_path / "v3.pt")


def test_example_targets_give_the_best_path_then_one_phoneme_variants_of_its_least_certain_phonemes():
    from awesearch.phonetic import example_targets

    # frames: blank, P (sure), blank, R (unsure: runner-up L), IH (sure), boundary, blank
    probs = np.full((7, N_CLASSES), 1e-4)
    rows = [(BLANK, None), (5, None), (BLANK, None), (7, (9, 0.35)), (3, None), (BOUNDARY, None), (BLANK, None)]
    for t, (c, runner) in enumerate(rows):
        probs[t, c] = 0.95 if runner is None else 0.55
        if runner is not None:
            probs[t, runner[0]] = runner[1]
    logp = np.log(probs / probs.sum(1, keepdims=True))
    targets = example_targets(logp, alternatives=2)
    assert targets[0] == [BOUNDARY, 5, 7, 3, BOUNDARY]  # the best path, boundaries at both ends
    assert targets[1] == [BOUNDARY, 5, 9, 3, BOUNDARY]  # the least certain phoneme (R) swapped for its runner-up
    assert len(targets) == 3 and all(len(t) == 5 and t[0] == t[-1] == BOUNDARY for t in targets)
    assert example_targets(np.log(np.full((5, N_CLASSES), 1e-4) + np.eye(N_CLASSES)[[BLANK] * 5])) == []
