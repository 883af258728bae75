"""Joint CLAP + DWD training of the acoustic word encoder (issue 4).

Batches follow JMCL: W word types x E spoken examples each (different voices where the corpus has them),
plus non-word distractor windows. Losses:
- DWD (audio-audio): supervised-contrastive loss with all same-word examples as positives, plus a
  hardest-negative margin term (the hardest other-word window must stay `margin` below the
  weakest same-word example).
- CLAP (audio-text): symmetric InfoNCE with a learnable temperature; the text side also holds
  PLCL-style hard negatives (phoneme edits of each word), and the audio side holds the distractors.
Windows are cut with jittered boundaries inside random context, then pooled from frames computed
over the whole crop -- exactly how the indexer embeds windows.

Run: python -m awesearch.train.train --corpus DIR --out PATH [--frontend mel|whisper] --steps N
(the exact commands behind the shipped checkpoints are in README.md, "Reproducing the checkpoints").
"""

from __future__ import annotations

import argparse
import json
import math
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..encoder import input_frame_rate, phoneme_batch, save_checkpoint
from ..features import FeatureConfig, log_mel
from ..metrics import cross_modal_ap, same_different_ap
from ..model import AWEModel, ModelDimensions
from .data import SAMPLE_RATE, TrainToken, TokenBank, load_tokens

WHISPER_FRAME_RATE = 50.0  # Hz, frames of the frozen Whisper front end


@dataclass
class TrainConfig:
    corpus: Path
    out: Path
    name: str = "awe-mel-v1"
    seed: int = 0
    steps: int = 3000
    words_per_batch: int = 32  # W: distinct words per batch; more words = more negatives per step
    examples_per_word: int = 4  # E: as in JMCL, so every anchor has 3 positives
    distractors: int = 32  # non-word windows per batch: teach the text side to reject fragments
    text_negatives: int = 2  # PLCL phoneme-edit negatives per word
    lr: float = 2e-3
    weight_decay: float = 0.01
    warmup: int = 100
    clap_weight: float = 1.0  # text queries are the product's main use, so CLAP gets equal weight (JMCL: 0.1)
    dwd_weight: float = 1.0
    dwd_temperature: float = 0.1
    margin: float = 0.2  # hardest-negative margin, in cosine
    jitter_s: float = 0.08  # +-80 ms boundary jitter: indexer windows are within 0.1 s of word edges, never exactly on them
    max_context_s: float = 0.4  # random audio kept either side of the window (receptive field is +-0.25 s)
    noise_prob: float = 0.5  # fraction of crops with additive noise / channel effects
    val_every: int = 250
    max_utterances: int | None = None  # train on a seeded subset of the corpus (None: all of it)
    init: Path | None = None  # continue from this checkpoint's weights (its dims win over `dims`)
    threads: int = 2
    dims: ModelDimensions = field(default_factory=ModelDimensions)


def crop_batch(tokens: list[TrainToken], cfg: TrainConfig, rng: random.Random, augment, frontend: str) -> tuple[torch.Tensor, np.ndarray]:
    """Cut each token with random context and jittered edges.

    Returns padded model inputs (waveforms [B, S] for "mel"; precomputed Whisper frames [B, T, 384]
    for "whisper") and windows [B, 2] in seconds from each crop's start.
    """
    rate = SAMPLE_RATE if frontend == "mel" else WHISPER_FRAME_RATE
    crops, windows = [], []
    for tok in tokens:
        source = tok.audio if frontend == "mel" else tok.feats
        dur = len(source) / rate
        a = max(0.0, tok.start - rng.uniform(0.05, cfg.max_context_s))
        b = min(dur, tok.end + rng.uniform(0.05, cfg.max_context_s))
        ia = int(a * rate)
        seg = source[ia : int(b * rate)]
        a = ia / rate
        if frontend == "mel":
            seg = seg.astype(np.float32) / 32768.0
            if augment is not None and rng.random() < cfg.noise_prob:
                seg = augment(seg, rng)
        crop_dur = len(seg) / rate
        ws = max(0.0, tok.start - a + rng.uniform(-cfg.jitter_s, cfg.jitter_s))
        we = min(crop_dur, max(tok.end - a + rng.uniform(-cfg.jitter_s, cfg.jitter_s), ws + 0.1))
        crops.append(torch.from_numpy(np.asarray(seg, dtype=np.float32)))
        windows.append((ws, we))
    batch = torch.nn.utils.rnn.pad_sequence(crops, batch_first=True)
    return batch, np.asarray(windows)


def embed_crops(model: AWEModel, fc: FeatureConfig, inputs: torch.Tensor, windows: np.ndarray) -> torch.Tensor:
    feats = log_mel(inputs, fc) if model.dims.frontend == "mel" else inputs
    frames = model.audio.frames(feats)
    rate = input_frame_rate(model.dims, fc) / model.dims.frame_stride
    w = torch.from_numpy(windows)
    start = torch.round(w[:, 0] * rate).long()
    end = torch.round(w[:, 1] * rate).long()
    return model.audio.pool(frames, torch.arange(len(windows)), start, end, rate)


def dwd_loss(a: torch.Tensor, labels: torch.Tensor, temperature: float, margin: float) -> torch.Tensor:
    sims = a @ a.T
    n = len(labels)
    eye = torch.eye(n, dtype=torch.bool)
    pos = (labels[:, None] == labels[None, :]) & ~eye
    has_pos = pos.any(1)
    logits = (sims / temperature).masked_fill(eye, -1e9)
    log_prob = logits - torch.logsumexp(logits, dim=1, keepdim=True)
    supcon = -(log_prob * pos).sum(1)[has_pos] / pos.sum(1)[has_pos]
    hardest_neg = sims.masked_fill(pos | eye, -2.0).max(1).values
    weakest_pos = sims.masked_fill(~pos, 2.0).min(1).values
    hard = F.relu(margin + hardest_neg - weakest_pos)[has_pos]
    return supcon.mean() + hard.mean()


def clap_loss(a: torch.Tensor, labels: torch.Tensor, t: torch.Tensor, n_words: int, scale: torch.Tensor) -> torch.Tensor:
    """a: [N, D] audio (labels -1 for distractors); t: [M, D] text, rows 0..n_words-1 are the batch words."""
    word_rows = labels >= 0
    logits_at = scale * a[word_rows] @ t.T  # audio -> text (hard negatives included)
    loss_at = F.cross_entropy(logits_at, labels[word_rows])
    logits_ta = scale * t[:n_words] @ a.T  # text -> audio (distractors included)
    pos = labels[None, :] == torch.arange(n_words)[:, None]
    log_prob = logits_ta - torch.logsumexp(logits_ta, dim=1, keepdim=True)
    loss_ta = (-(log_prob * pos).sum(1) / pos.sum(1).clamp(min=1)).mean()
    return (loss_at + loss_ta) / 2


@torch.no_grad()
def validate(model: AWEModel, fc: FeatureConfig, bank: TokenBank, max_tokens: int = 1500, seed: int = 0) -> dict:
    """Same/different AP (audio-audio) and audio-text AP on held-out tokens, windows cut at +-50 ms jitter."""
    model.eval()
    rng = random.Random(seed)
    toks = bank.eval_sample(max_tokens, rng)
    cfg = TrainConfig(corpus=Path("."), out=Path("."), noise_prob=0.0)
    embs = []
    for i in range(0, len(toks), 128):
        audio, windows = crop_batch(toks[i : i + 128], cfg, rng, None, model.dims.frontend)
        embs.append(embed_crops(model, fc, audio, windows))
    a = torch.cat(embs).numpy()
    labels = np.array([t.key for t in toks])
    types = sorted(set(labels))
    seqs = {t.key: t.phonemes for t in toks}
    ids, lengths = phoneme_batch([seqs[k] for k in types])
    t = model.text(ids, lengths).numpy()
    model.train()
    return {"ap_audio_audio": same_different_ap(a, labels), "ap_audio_text": cross_modal_ap(a, labels, t, np.array(types)), "tokens": len(toks)}


def train(cfg: TrainConfig) -> dict:
    from .negatives import phoneme_edits  # PLCL hard negatives (issue 3)

    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    rng = random.Random(cfg.seed)
    fc = FeatureConfig()
    if cfg.init is not None:
        from ..encoder import load_checkpoint

        model = load_checkpoint(cfg.init).model.train()
        cfg.dims = model.dims
    else:
        model = AWEModel(cfg.dims)
    train_bank, val_bank = load_tokens(cfg.corpus, cfg.seed, cfg.dims.frontend == "whisper", cfg.max_utterances)
    from .augment import random_augment as augment
    print(f"train: {train_bank.describe()} | val: {val_bank.describe()} | augmented share: {cfg.noise_prob}", flush=True)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / cfg.warmup) * 0.5 * (1 + math.cos(math.pi * min(s, cfg.steps) / cfg.steps))
    )
    log, best, t0 = [], None, time.time()
    for step in range(1, cfg.steps + 1):
        keys, toks = train_bank.sample_batch(cfg.words_per_batch, cfg.examples_per_word, rng)
        distract = train_bank.sample_distractors(cfg.distractors, rng)
        audio, windows = crop_batch(toks + distract, cfg, rng, augment, cfg.dims.frontend)
        labels = torch.tensor([keys.index(t.key) for t in toks] + [-1 - i for i in range(len(distract))])
        a = embed_crops(model, fc, audio, windows)
        word_phones = [train_bank.phonemes[k] for k in keys]
        negs = [e for p in word_phones for e in phoneme_edits(p, cfg.text_negatives, rng)]
        ids, lengths = phoneme_batch(word_phones + negs)
        t = model.text(ids, lengths)
        scale = model.logit_scale.exp().clamp(max=100)
        l_dwd = dwd_loss(a, labels, cfg.dwd_temperature, cfg.margin)
        l_clap = clap_loss(a, labels, t, len(keys), scale)
        loss = cfg.dwd_weight * l_dwd + cfg.clap_weight * l_clap
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        opt.step()
        sched.step()
        if step % 25 == 0:
            print(f"step {step} loss {loss.item():.3f} dwd {l_dwd.item():.3f} clap {l_clap.item():.3f} "
                  f"scale {scale.item():.1f} {time.time() - t0:.0f}s", flush=True)
        if step % cfg.val_every == 0 or step == cfg.steps:
            v = validate(model, fc, val_bank)
            v.update(step=step, loss=loss.item(), elapsed_s=round(time.time() - t0, 1))
            log.append(v)
            print("val", json.dumps(v), flush=True)
            if best is None or v["ap_audio_text"] + v["ap_audio_audio"] > best["ap_audio_text"] + best["ap_audio_audio"]:
                best = v
                info = {"seed": cfg.seed, "config": {k: str(x) for k, x in asdict(cfg).items() if k != "dims"},
                        "corpus": train_bank.describe(), "validation": v}
                save_checkpoint(cfg.out, model, fc, cfg.name, info)
    return {"best": best, "log": log}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--corpus", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--name", default="awe-mel-v1")
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--words-per-batch", type=int, default=32)
    p.add_argument("--val-every", type=int, default=250)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--frontend", choices=["mel", "whisper"], default="mel")
    p.add_argument("--init", type=Path, default=None, help="start from this checkpoint's weights")
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--max-utterances", type=int, default=None, help="train on a seeded subset of the corpus")
    p.add_argument("--noise-prob", type=float, default=0.5, help="share of crops augmented (0 disables augmentation)")
    args = p.parse_args()
    dims = ModelDimensions() if args.frontend == "mel" else ModelDimensions(
        frontend="whisper", n_input=384, frame_stride=1, channels=128, dilations=(1, 2))
    cfg = TrainConfig(corpus=args.corpus, out=args.out, name=args.name, steps=args.steps, seed=args.seed,
                      words_per_batch=args.words_per_batch, val_every=args.val_every, threads=args.threads, dims=dims,
                      noise_prob=args.noise_prob, max_utterances=args.max_utterances,
                      init=args.init, lr=args.lr)
    result = train(cfg)
    print("best", json.dumps(result["best"]))


if __name__ == "__main__":
    main()
