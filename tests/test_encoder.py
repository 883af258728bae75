"""The encoder interface, checkpoint format, and (with the shipped checkpoint) what it has learned."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from awesearch.encoder import (
    ASSETS,
    CHECKPOINT_VERSION,
    DEFAULT_MODEL,
    load_checkpoint,
    load_encoder,
    random_encoder,
    save_checkpoint,
)
from awesearch.errors import CheckpointError, QueryError
from awesearch.features import FeatureConfig, log_mel, mel_filterbank, n_frames
from awesearch.model import AWEModel, ModelDimensions

SR = 16000


def test_log_mel_shape_and_frame_count():
    cfg = FeatureConfig()
    audio = np.random.default_rng(0).normal(0, 0.1, SR).astype(np.float32)
    mel = log_mel(audio, cfg)
    assert mel.shape == (n_frames(SR, cfg), cfg.n_mels)
    assert torch.isfinite(mel).all()
    # A 1 kHz tone puts its energy in the band whose centre is nearest 1 kHz.
    t = np.arange(SR) / SR
    tone = log_mel(np.sin(2 * np.pi * 1000 * t).astype(np.float32), cfg).mean(0)
    fb = mel_filterbank(cfg)
    bin_1k = int(round(1000 / (SR / cfg.n_fft)))
    assert int(tone.argmax()) == int(fb[bin_1k].argmax())


def test_embeddings_are_unit_vectors_of_the_right_size(random_encoder):
    audio = np.random.default_rng(1).normal(0, 0.1, 2 * SR).astype(np.float32)
    emb = random_encoder.embed_windows(audio, np.array([[0.2, 0.6], [0.5, 1.9], [1.0, 1.3]]))
    assert emb.shape == (3, random_encoder.dim) and emb.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    text = random_encoder.embed_phonemes([["P", "R", "IH1", "N", "S"], ["AH0"]])
    assert text.shape == (2, random_encoder.dim)
    np.testing.assert_allclose(np.linalg.norm(text, axis=1), 1.0, atol=1e-5)


def test_pooling_from_chunk_frames_matches_a_direct_window(random_encoder):
    """Windows pooled from one chunk's frames equal the same windows embedded from a crop with context."""
    audio = np.random.default_rng(2).normal(0, 0.1, 4 * SR).astype(np.float32)
    frames = random_encoder.encode_frames(audio)
    whole = random_encoder.pool_windows(frames, np.array([[2.0, 2.6]]))
    ctx = 1.0  # well beyond the receptive field
    crop = audio[int((2.0 - ctx) * SR) : int((2.6 + ctx) * SR)]
    direct = random_encoder.embed_windows(crop, np.array([[ctx, ctx + 0.6]]))
    assert float(whole[0] @ direct[0]) > 0.999


def test_phoneme_padding_does_not_change_the_embedding(random_encoder):
    a = random_encoder.embed_phonemes([["K", "AE", "T"]])
    b = random_encoder.embed_phonemes([["K", "AE", "T"], ["S", "T", "R", "EH", "NG", "K", "TH", "S"]])
    np.testing.assert_allclose(a[0], b[0], atol=1e-5)


def test_bad_phonemes_and_empty_sequences_are_refused(random_encoder):
    with pytest.raises(QueryError):
        random_encoder.embed_phonemes([["XX"]])
    with pytest.raises(QueryError):
        random_encoder.embed_phonemes([[]])


def test_checkpoint_round_trip(tmp_path):
    dims = ModelDimensions(channels=16, hidden=32, embed_dim=8, phone_embed=8, text_channels=8, text_layers=1)
    torch.manual_seed(3)
    model = AWEModel(dims)
    path = tmp_path / "tiny.pt"
    digest = save_checkpoint(path, model, FeatureConfig(), "tiny", {"seed": 3})
    enc = load_checkpoint(path)
    assert enc.name == "tiny" and enc.checksum == digest and enc.dim == 8
    assert enc.model.dims == dims
    audio = np.random.default_rng(4).normal(0, 0.1, SR).astype(np.float32)
    with torch.no_grad():
        model.half().float()  # the checkpoint stores fp16 weights
        mel = log_mel(audio)[None]
        ref = model.audio.pool(model.audio.frames(mel), torch.zeros(1, dtype=torch.long), torch.tensor([5]), torch.tensor([30]), 50.0)
    got = enc.pool_windows(enc.encode_frames(audio), np.array([[0.1, 0.6]]))
    np.testing.assert_allclose(got[0], ref[0].numpy(), atol=1e-4)


def test_checkpoint_of_another_version_or_kind_is_refused(tmp_path):
    path = tmp_path / "x.pt"
    torch.save({"magic": "awesearch-encoder", "version": CHECKPOINT_VERSION + 1}, path)
    with pytest.raises(CheckpointError, match="version"):
        load_checkpoint(path)
    torch.save({"something": "else"}, path)
    with pytest.raises(CheckpointError, match="not an awesearch encoder"):
        load_checkpoint(path)
    path.write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="cannot read"):
        load_checkpoint(path)
    with pytest.raises(CheckpointError, match="unknown encoder"):
        load_encoder("no-such-model")


def test_random_encoder_is_deterministic():
    a = random_encoder(0).embed_phonemes([["K", "AE", "T"]])
    b = random_encoder(0).embed_phonemes([["K", "AE", "T"]])
    np.testing.assert_array_equal(a, b)
    assert random_encoder(0).checksum == random_encoder(0).checksum != random_encoder(1).checksum


shipped = pytest.mark.skipif(not (ASSETS / f"{DEFAULT_MODEL}.pt").is_file(), reason="no shipped checkpoint")


@shipped
def test_shipped_checkpoint_loads_small_and_versioned():
    path = ASSETS / f"{DEFAULT_MODEL}.pt"
    assert path.stat().st_size < 8_000_000  # a few MB
    enc = load_encoder()
    assert enc.name == DEFAULT_MODEL
    ckpt = torch.load(path, weights_only=True)
    assert ckpt["version"] == CHECKPOINT_VERSION and "dims" in ckpt and "train_info" in ckpt


def _word_embedding(enc, sentence: str, word: str, voice: str) -> np.ndarray:
    from awesearch.tts import synthesize

    s = synthesize(sentence, voice=voice)
    (w,) = [w for w in s.words if w.word == word]
    return enc.embed_windows(s.audio, np.array([[w.start, w.end]]))[0]


@pytest.mark.parametrize("name", sorted(p.stem for p in ASSETS.glob("awe-*.pt")))
def test_shipped_encoder_same_word_two_voices_closer_than_confusable(name):
    """'prince' by two voices must be closer than 'prince' vs 'prints'/'princess' by the same voice."""
    from awesearch.text import word_phonemes

    enc = load_encoder(name)
    a = _word_embedding(enc, "they saw the prince today", "prince", "en-us")
    b = _word_embedding(enc, "they saw the prince today", "prince", "en-gb-x-rp")
    for other in ("prints", "princess"):
        c = _word_embedding(enc, f"they saw the {other} today", other, "en-us")
        assert float(a @ b) > float(a @ c), other
    # The text tower agrees: "prince" text is closer to spoken "prince" than to spoken "princess".
    t = enc.embed_phonemes([word_phonemes("prince")])[0]
    c = _word_embedding(enc, "they saw the princess today", "princess", "en-gb-x-rp")
    assert float(t @ b) > float(t @ c)


def test_shipped_checkpoint_is_checked_against_its_checksum(tmp_path, monkeypatch):
    import awesearch.encoder as E

    dims = ModelDimensions(channels=16, hidden=32, embed_dim=8, phone_embed=8, text_channels=8, text_layers=1)
    digest = save_checkpoint(tmp_path / "tiny.pt", AWEModel(dims), FeatureConfig(), "tiny", {})
    monkeypatch.setattr(E, "ASSETS", tmp_path)
    monkeypatch.setattr(E, "CHECKSUMS", tmp_path / "SHA256SUMS")
    (tmp_path / "SHA256SUMS").write_text(f"{digest}  tiny.pt\n")
    assert E.load_encoder("tiny").checksum == digest
    (tmp_path / "SHA256SUMS").write_text(f"{'0' * 64}  tiny.pt\n")
    with pytest.raises(CheckpointError, match="checksum"):
        E.load_encoder("tiny")


@shipped
def test_every_shipped_checkpoint_has_a_checksum():
    import awesearch.encoder as E

    names = {p.name for p in ASSETS.glob("*.pt")}
    assert names <= set(E.shipped_checksums())


@shipped
def test_encoding_threads_share_one_front_end_load(monkeypatch):
    """The indexer's two encoding threads ask for the Whisper front end at once while a preload (with its
    prefetch) is still running: both get the preloaded one; none loads a second model."""
    import threading
    import time

    import awesearch.whisper_frontend as wf

    built = []
    monkeypatch.setattr(wf, "WhisperFrontend", lambda **kw: built.append(kw) or object())

    class SlowLoad:  # a FrontendLoad whose prefetch is still encoding
        threads, device = 2, "cpu"

        def result(self):
            time.sleep(0.3)
            return "preloaded"

    encoder = load_encoder(DEFAULT_MODEL)
    encoder.frontend_threads, encoder.device = 2, "cpu"
    encoder.preload_frontend(SlowLoad())
    got = []
    threads = [threading.Thread(target=lambda: got.append(encoder._frontend())) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert got == ["preloaded", "preloaded"] and built == []
