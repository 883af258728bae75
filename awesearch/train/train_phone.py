"""Train the CTC phoneme head (awesearch/phonetic.py) on frozen Whisper frames of the synthetic corpus.

    python -m awesearch.train.train_phone --corpus ~/.cache/awesearch/corpus --real ~/.cache/awesearch/real --out awesearch/assets/phone-whisper-v2.pt (README: the flags of the shipped head)

Targets are "| w1 | w2 | ... |" (phonemes of the corpus's word records, word boundaries as a token).
Half of the utterances are augmented (noise, reverb, telephone, codec, pitch, gain: train/augment.py)
before the Whisper encoder, so the head sees degraded speech as well as clean synthesis. Frames are
computed once and cached beside the corpus in parts (``phone-feats-*.npz``), so an interrupted run
resumes; the training loop checkpoints every ``--save-every`` steps and resumes from ``--out``.tmp.ckpt.
Only the corpus's ``train`` split is used for training; ``val_voice`` (held-out voices) gives the
phoneme error rate printed while training. Never the real evaluation set, never SVOX pico or piper.
"""

from __future__ import annotations

import argparse
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from awesearch.phonetic import BOUNDARY, PhoneHead, PhoneHeadDims, greedy_decode, save_phone_checkpoint, word_targets

PART_UTTERANCES = 400  # utterances per cached feature part (a part is the unit of resumption)


@dataclass
class PhoneTrainConfig:
    corpus: Path
    out: Path
    hours: float = 6.0  # of train-split speech to encode: Whisper frames cost ~1/30 real time on 2 cores
    val_utterances: int = 200  # held-out-voice utterances for the phoneme error rate
    augment_prob: float = 0.5  # share of utterances degraded before the encoder
    steps: int = 3000
    batch: int = 24  # utterances per step (~100 s of speech)
    lr: float = 2e-3
    seed: int = 0
    save_every: int = 250
    dims: PhoneHeadDims = field(default_factory=PhoneHeadDims)
    init: Path | None = None  # a phoneme head checkpoint to continue training from
    real: Path | None = None  # real speech corpus (awesearch.train.real): its train split mixed into every batch
    real_share: float = 0.4  # share of each batch drawn from real speech (a few hours of it vs many synthetic)
    real_hours: float | None = None  # of the real train split to encode (None: all of it)


def _targets(utt) -> list[int] | None:
    words = [w.phonemes for w in utt.words if w.phonemes]
    if not words or len(words) != len(utt.words):
        return None  # a word without phonemes would leave a hole in the target
    return word_targets(words)


def encode_part(fe, utts: list, augment: float, seed: int) -> dict:
    from awesearch.train.augment import random_augment

    rng = random.Random(seed)
    audios = []
    for u in utts:
        a = u.audio
        audios.append(random_augment(a, rng) if rng.random() < augment else a)
    feats = fe.encode_many(audios)
    targets = [_targets(u) for u in utts]
    keep = [i for i, t in enumerate(targets) if t is not None]
    flat = np.concatenate([feats[i].astype(np.float16) for i in keep])
    offsets = np.concatenate([[0], np.cumsum([len(feats[i]) for i in keep])])
    tflat = np.concatenate([targets[i] for i in keep]).astype(np.int16)
    toffsets = np.concatenate([[0], np.cumsum([len(targets[i]) for i in keep])])
    return {"flat": flat, "offsets": offsets, "tflat": tflat, "toffsets": toffsets}


def cached_features(cfg: PhoneTrainConfig, split: str, hours: float | None, max_utts: int | None, augment: float,
                    corpus: Path | None = None) -> list[tuple[np.ndarray, np.ndarray]]:
    """[(frames fp16 [T, 384], target ids)] for a seeded subset of a split of `corpus` (default cfg.corpus),
    encoded part by part (resumable)."""
    from awesearch.train.corpus import CorpusReader
    from awesearch.whisper_frontend import WhisperFrontend

    corpus = Path(corpus or cfg.corpus)
    reader = CorpusReader(corpus)
    utts, total = [], 0.0
    for u in reader.utterances(split=split, shuffle_seed=cfg.seed):
        if (hours is not None and total >= hours * 3600) or (max_utts is not None and len(utts) >= max_utts):
            break
        utts.append(u)
        total += u.duration
    fe = None
    out = []
    for p0 in range(0, len(utts), PART_UTTERANCES):
        part = corpus / f"phone-feats-{split}-s{cfg.seed}-a{augment:g}-{p0 // PART_UTTERANCES:04d}.npz"
        if not part.is_file():
            fe = fe or WhisperFrontend()
            t0 = time.time()
            arrays = encode_part(fe, utts[p0 : p0 + PART_UTTERANCES], augment, cfg.seed * 1000 + p0)
            tmp = part.with_suffix(".tmp.npz")
            np.savez(tmp, **arrays)
            tmp.replace(part)
            print(f"{split}: encoded part {p0 // PART_UTTERANCES} ({len(arrays['offsets']) - 1} utts) in {time.time() - t0:.0f} s", flush=True)
        with np.load(part) as z:
            flat, off, tflat, toff = z["flat"], z["offsets"], z["tflat"], z["toffsets"]
        out.extend((flat[off[i] : off[i + 1]], tflat[toff[i] : toff[i + 1]].astype(np.int64)) for i in range(len(off) - 1))
    print(f"{split}: {len(out)} utterances, {sum(len(f) for f, _ in out) / 50 / 3600:.2f} h of frames", flush=True)
    return out


def _batch(items: list[tuple[np.ndarray, np.ndarray]]):
    lengths = torch.tensor([len(f) for f, _ in items])
    x = torch.zeros(len(items), int(lengths.max()), items[0][0].shape[1])
    for i, (f, _) in enumerate(items):
        x[i, : len(f)] = torch.from_numpy(f.astype(np.float32))
    targets = torch.cat([torch.from_numpy(t) for _, t in items])
    tlens = torch.tensor([len(t) for _, t in items])
    return x, lengths, targets, tlens


def edit_distance(a: list[int], b: list[int]) -> int:
    prev = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        cur = [i] + [0] * len(b)
        for j, y in enumerate(b, 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (x != y))
        prev = cur
    return prev[-1]


def aligned_pairs(hyp: list[int], ref: list[int]) -> list[tuple[int, int]]:
    """(ref, hyp) pairs of a minimum edit alignment: matches and substitutions (insertions and deletions left out)."""
    n, m = len(ref), len(hyp)
    d = np.zeros((n + 1, m + 1), np.int32)
    d[:, 0] = np.arange(n + 1)
    d[0, :] = np.arange(m + 1)
    for i in range(1, n + 1):
        for j in range(1, m + 1):
            d[i, j] = min(d[i - 1, j] + 1, d[i, j - 1] + 1, d[i - 1, j - 1] + (ref[i - 1] != hyp[j - 1]))
    pairs, i, j = [], n, m
    while i > 0 and j > 0:
        if d[i, j] == d[i - 1, j - 1] + (ref[i - 1] != hyp[j - 1]):
            pairs.append((ref[i - 1], hyp[j - 1]))
            i, j = i - 1, j - 1
        elif d[i, j] == d[i - 1, j] + 1:
            i -= 1
        else:
            j -= 1
    return pairs[::-1]


@torch.inference_mode()
def confusion_matrix(head: PhoneHead, items: list[tuple[np.ndarray, np.ndarray]], prior: float = 1.0) -> np.ndarray:
    """[39, 39] row-normalised P(decoded j | said i) of the head's greedy decoding against the targets
    (phonemes only; `prior` counts of a correct decoding added to each diagonal so rare phonemes are sane)."""
    from awesearch.g2p import PHONEMES

    head.eval()
    n = len(PHONEMES)
    counts = np.eye(n) * prior
    for i in range(0, len(items), 32):
        chunk = items[i : i + 32]
        x, lengths, _, _ = _batch(chunk)
        logp = head(x).numpy()
        for (_, t), lp, L in zip(chunk, logp, lengths):
            hyp = [c for c in greedy_decode(lp[: int(L)]) if c != BOUNDARY]
            ref = [int(c) for c in t if c != BOUNDARY]
            for r, h in aligned_pairs(hyp, ref):
                counts[r - 1, h - 1] += 1
    head.train()
    return counts / counts.sum(axis=1, keepdims=True)


@torch.inference_mode()
def error_rates(head: PhoneHead, items: list[tuple[np.ndarray, np.ndarray]]) -> dict:
    """Phoneme error rate (boundaries removed) and boundary error rate, greedy decoding."""
    head.eval()
    errs = n = berrs = bn = 0
    for i in range(0, len(items), 32):
        chunk = items[i : i + 32]
        x, lengths, _, _ = _batch(chunk)
        logp = head(x).numpy()
        for (f, t), lp, L in zip(chunk, logp, lengths):
            hyp = greedy_decode(lp[: int(L)])
            ref = [int(c) for c in t]
            errs += edit_distance([c for c in hyp if c != BOUNDARY], [c for c in ref if c != BOUNDARY])
            n += sum(c != BOUNDARY for c in ref)
            berrs += abs(hyp.count(BOUNDARY) - ref.count(BOUNDARY))
            bn += ref.count(BOUNDARY)
    head.train()
    return {"per": errs / max(n, 1), "boundary_count_error": berrs / max(bn, 1)}


def train(cfg: PhoneTrainConfig) -> dict:
    torch.manual_seed(cfg.seed)
    rng = random.Random(cfg.seed)
    train_items = cached_features(cfg, "train", cfg.hours, None, cfg.augment_prob)
    val_items = cached_features(cfg, "val_voice", None, cfg.val_utterances, 0.0)
    real_items, real_val = [], []
    if cfg.real is not None:  # speaker-disjoint: train for the head, test (never trained on) for its PER
        real_items = cached_features(cfg, "train", cfg.real_hours, None, cfg.augment_prob, corpus=cfg.real)
        real_val = cached_features(cfg, "test", None, cfg.val_utterances, 0.0, corpus=cfg.real)
    n_real = int(round(cfg.batch * cfg.real_share)) if real_items else 0
    head = PhoneHead(cfg.dims)
    if cfg.init is not None:  # continue from a finished head (its dims win)
        from awesearch.phonetic import load_phone_checkpoint

        head = load_phone_checkpoint(cfg.init).head.train()
    opt = torch.optim.AdamW(head.parameters(), lr=cfg.lr, weight_decay=1e-2)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=cfg.steps, pct_start=0.1)
    ctc = torch.nn.CTCLoss(blank=0, zero_infinity=True)
    resume = cfg.out.with_suffix(".tmp.ckpt")
    step = 0
    if resume.is_file():
        state = torch.load(resume, weights_only=True)
        head.load_state_dict(state["head"])
        opt.load_state_dict(state["opt"])
        sched.load_state_dict(state["sched"])
        step = int(state["step"])
        rng.seed(cfg.seed + step)
        print(f"resumed at step {step}", flush=True)
    t0 = time.time()
    losses = []
    while step < cfg.steps:
        x, lengths, targets, tlens = _batch(rng.sample(train_items, cfg.batch - n_real) + rng.sample(real_items, n_real))
        logp = head(x).transpose(0, 1)  # [T, B, C]
        loss = ctc(logp, targets, lengths, tlens)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(head.parameters(), 5.0)
        opt.step()
        sched.step()
        step += 1
        losses.append(loss.item())
        if step % 50 == 0:
            print(f"step {step} loss {np.mean(losses[-50:]):.3f} ({time.time() - t0:.0f} s)", flush=True)
        if step % cfg.save_every == 0 or step == cfg.steps:
            print(f"step {step} val {error_rates(head, val_items)} real test {error_rates(head, real_val) if real_val else None}", flush=True)
            tmp = resume.with_suffix(".part")
            torch.save({"head": head.state_dict(), "opt": opt.state_dict(), "sched": sched.state_dict(), "step": step}, tmp)
            tmp.replace(resume)
    val = error_rates(head, val_items)
    confusion_items = val_items + (cached_features(cfg, "calib", None, None, 0.0, corpus=cfg.real) if cfg.real is not None else [])
    confusion = confusion_matrix(head, confusion_items)
    info = {"seed": cfg.seed, "steps": cfg.steps, "hours": cfg.hours, "augment_prob": cfg.augment_prob,
            "train_utterances": len(train_items), "val_voice": val, "real_train_utterances": len(real_items),
            "real_test": error_rates(head, real_val) if real_val else None, "final_loss": float(np.mean(losses[-50:])) if losses else None,
            "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(cfg).items()}}
    info["confusion_measured_on"] = "synthetic val_voice" + (" + real calib" if cfg.real is not None else "")
    digest = save_phone_checkpoint(cfg.out, head, cfg.out.stem, info, confusion)
    print(f"saved {cfg.out} sha256 {digest}: {val}", flush=True)
    return info


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--corpus", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--hours", type=float, default=PhoneTrainConfig.hours)
    p.add_argument("--steps", type=int, default=PhoneTrainConfig.steps)
    p.add_argument("--batch", type=int, default=PhoneTrainConfig.batch)
    p.add_argument("--lr", type=float, default=PhoneTrainConfig.lr)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--layers", type=int, default=PhoneHeadDims.layers)
    p.add_argument("--channels", type=int, default=PhoneHeadDims.channels)
    p.add_argument("--more-kernel", type=int, default=PhoneHeadDims.more_kernel)
    p.add_argument("--dilation-base", type=int, default=PhoneHeadDims.dilation_base)
    p.add_argument("--dropout", type=float, default=PhoneHeadDims.dropout)
    p.add_argument("--init", type=Path, help="continue from this phoneme head checkpoint")
    p.add_argument("--real", type=Path, help="real speech corpus (python -m awesearch.train.real build)")
    p.add_argument("--real-share", type=float, default=PhoneTrainConfig.real_share)
    p.add_argument("--real-hours", type=float, default=None)
    p.add_argument("--encode-only", action="store_true", help="cache the frames and stop (no training)")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    cfg = PhoneTrainConfig(corpus=a.corpus.expanduser(), out=a.out, hours=a.hours, steps=a.steps, batch=a.batch, lr=a.lr, seed=a.seed,
                           dims=PhoneHeadDims(layers=a.layers, channels=a.channels, more_kernel=a.more_kernel,
                                              dilation_base=a.dilation_base, dropout=a.dropout),
                           init=a.init, real=a.real.expanduser() if a.real else None, real_share=a.real_share, real_hours=a.real_hours)
    if a.encode_only:
        cached_features(cfg, "train", cfg.hours, None, cfg.augment_prob)
        cached_features(cfg, "val_voice", None, cfg.val_utterances, 0.0)
        if cfg.real is not None:
            cached_features(cfg, "train", cfg.real_hours, None, cfg.augment_prob, corpus=cfg.real)
            cached_features(cfg, "test", None, cfg.val_utterances, 0.0, corpus=cfg.real)
            cached_features(cfg, "calib", None, None, 0.0, corpus=cfg.real)
        return
    train(cfg)


if __name__ == "__main__":
    main()
