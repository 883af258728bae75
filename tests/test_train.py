"""The training losses and a tiny end-to-end training run (tiny model, generated speech)."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from awesearch.train.train import clap_loss, dwd_loss


def _clustered(n_words: int, per_word: int, spread: float, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    centres = F.normalize(torch.randn(n_words, 16, generator=g), dim=-1)
    labels = torch.arange(n_words).repeat_interleave(per_word)
    audio = F.normalize(centres[labels] + spread * torch.randn(len(labels), 16, generator=g), dim=-1)
    return audio, labels, centres


def test_dwd_prefers_clustered_embeddings():
    tight, labels, _ = _clustered(8, 4, 0.05)
    loose, _, _ = _clustered(8, 4, 3.0)
    assert dwd_loss(tight, labels, 0.1, 0.2) < dwd_loss(loose, labels, 0.1, 0.2)
    # The hardest-negative term vanishes once every positive beats every negative by the margin.
    sims = tight @ tight.T
    same = labels[:, None] == labels[None, :]
    assert sims[same].min() > sims[~same].max() + 0.2


def test_clap_prefers_aligned_text_and_ignores_distractor_labels():
    audio, labels, centres = _clustered(8, 4, 0.05)
    distractors = F.normalize(torch.randn(5, 16), dim=-1)
    a = torch.cat([audio, distractors])
    lab = torch.cat([labels, -1 - torch.arange(5)])
    negatives = F.normalize(torch.randn(8, 16), dim=-1)
    aligned = clap_loss(a, lab, torch.cat([centres, negatives]), 8, torch.tensor(20.0))
    shuffled = clap_loss(a, lab, torch.cat([centres.roll(1, 0), negatives]), 8, torch.tensor(20.0))
    assert aligned < shuffled


@pytest.mark.slow
def test_tiny_training_run_improves_and_saves_a_loadable_checkpoint(tmp_path, monkeypatch):
    from awesearch.encoder import load_checkpoint
    from awesearch.model import ModelDimensions
    from awesearch.text import word_phonemes
    from awesearch.train import data as D
    from awesearch.train import train as T
    from awesearch.tts import synthesize

    rng = random.Random(0)
    vocab = "prince princess water garden morning silver river window".split()

    def bank(voices: list[str]) -> D.TokenBank:
        toks, utts = [], []
        for v in voices:
            for _ in range(3):
                s = synthesize(" ".join(rng.sample(vocab, 5)), voice=v)
                audio = (np.clip(s.audio, -1, 1) * 32767).astype(np.int16)
                utts.append((audio, [(w.start, w.end) for w in s.words], v))
                toks += [D.TrainToken(audio, w.start, w.end, w.word, word_phonemes(w.word), v) for w in s.words]
        return D.TokenBank(toks, utts)

    train_bank, val_bank = bank(["en-us", "en"]), bank(["en-us"])
    monkeypatch.setattr(T, "load_tokens", lambda *a, **k: (train_bank, val_bank))
    dims = ModelDimensions(channels=32, hidden=64, embed_dim=16, phone_embed=16, text_channels=16, text_layers=1)
    cfg = T.TrainConfig(corpus=tmp_path, out=tmp_path / "m.pt", steps=30, words_per_batch=6, distractors=4,
                        val_every=15, noise_prob=0.0, lr=3e-3, warmup=5, dims=dims)
    result = T.train(cfg)
    assert [v["step"] for v in result["log"]] == [15, 30]
    enc = load_checkpoint(cfg.out)
    assert enc.dim == 16 and enc.name == cfg.name
    # 30 steps on 8 words: validation AP must beat chance (about 1 / 8 for audio-text) clearly.
    assert result["best"]["ap_audio_text"] > 0.3, result["best"]
