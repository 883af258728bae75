"""Evaluate an encoder on the real recordings in ../shared/eval/real (read in place, never copied).

Every aligned word with at least MIN_PHONEMES phonemes becomes a token; its window is pooled from
frames computed over the whole recording, exactly as the indexer does, with boundaries taken from
words_aligned.tsv and optionally jittered by +-JITTER_S. Reports (issue 4):
- same/different AP audio-audio and audio-text, all / in-vocabulary / out-of-vocabulary words;
- LibriPhrase-style AUC and EER of (audio token, text) pairs: easy negatives are random other words,
  hard negatives are phoneme edits (1-2) of the token's own word;
- encoder speed, x real time on this machine.

Usage: python benchmarks/eval_real.py [--model NAME_OR_PATH ...] [--real DIR] [--json OUT]
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from awesearch.audio import load_audio  # noqa: E402
from awesearch.encoder import load_encoder  # noqa: E402
from awesearch.metrics import auc_eer, cross_modal_ap, same_different_ap  # noqa: E402
from awesearch.text import word_phonemes  # noqa: E402
from awesearch.train.lexicon import is_oov_word  # noqa: E402
from awesearch.train.negatives import phoneme_edits  # noqa: E402

DEFAULT_REAL = ROOT.parent / "shared" / "eval" / "real"
MIN_PHONEMES = 3  # shorter function words are not search targets
JITTER_S = 0.05  # seconds: indexer windows never fall exactly on word edges


def read_words(real: Path) -> dict[str, list[tuple[str, float, float]]]:
    by_clip: dict[str, list[tuple[str, float, float]]] = defaultdict(list)
    with open(real / "words_aligned.tsv", newline="") as f:
        for row in csv.DictReader(f, delimiter="\t"):
            by_clip[row["id"]].append((row["word"], float(row["start_s"]), float(row["end_s"])))
    return by_clip


def evaluate(model: str | None, real: Path, seed: int = 0) -> dict:
    enc = load_encoder(model)
    rng = random.Random(seed)
    words = read_words(real)
    embs = {"exact": [], "jitter": []}
    labels: list[str] = []
    audio_s = encode_s = 0.0
    for clip, ws in sorted(words.items()):
        keep = [(w, s, e) for w, s, e in ws if len(word_phonemes(w)) >= MIN_PHONEMES and e - s >= 0.1]
        if not keep:
            continue
        audio = load_audio(real / "audio" / f"{clip}.wav")
        t0 = time.perf_counter()
        frames = enc.encode_frames(audio)
        exact = np.array([(s, e) for _, s, e in keep])
        embs["exact"].append(enc.pool_windows(frames, exact))
        encode_s += time.perf_counter() - t0
        audio_s += len(audio) / 16000
        jit = exact + np.array([[rng.uniform(-JITTER_S, JITTER_S) for _ in range(2)] for _ in keep])
        embs["jitter"].append(enc.pool_windows(frames, np.clip(jit, 0, None)))
        labels.extend(w for w, _, _ in keep)
    lab = np.array(labels)
    types = sorted(set(labels))
    text = enc.embed_phonemes([word_phonemes(t) for t in types])
    type_idx = {t: i for i, t in enumerate(types)}
    oov = np.array([is_oov_word(w) for w in labels])
    out: dict = {"model": enc.name, "tokens": len(labels), "types": len(types), "oov_tokens": int(oov.sum()),
                 "encoder_x_realtime": round(audio_s / max(encode_s, 1e-9), 1)}
    for cut, parts in embs.items():
        a = np.concatenate(parts)
        for subset, mask in (("all", np.ones(len(lab), bool)), ("iv", ~oov), ("oov", oov)):
            sub_types = sorted(set(lab[mask]))
            out[f"ap_aa_{cut}_{subset}"] = round(same_different_ap(a[mask], lab[mask]), 4)
            out[f"ap_at_{cut}_{subset}"] = round(cross_modal_ap(a[mask], lab[mask], text[[type_idx[t] for t in sub_types]], np.array(sub_types)), 4)
    # LibriPhrase-style detection of (audio, text) pairs on jittered windows.
    a = np.concatenate(embs["jitter"])
    pos = np.einsum("nd,nd->n", a, text[[type_idx[w] for w in labels]])
    easy = np.array([a[i] @ text[type_idx[rng.choice([t for t in types if t != w])]] for i, w in enumerate(labels)])
    edits = [phoneme_edits(word_phonemes(w), 1, rng)[0] for w in labels]
    hard_text = enc.embed_phonemes(edits)
    hard = np.einsum("nd,nd->n", a, hard_text)
    out["auc_easy"], out["eer_easy"] = (round(x, 4) for x in auc_eer(pos, easy))
    out["auc_hard"], out["eer_hard"] = (round(x, 4) for x in auc_eer(pos, hard))
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", action="append", help="encoder name or checkpoint path (repeatable); default: shipped default")
    p.add_argument("--real", type=Path, default=DEFAULT_REAL)
    p.add_argument("--json", type=Path)
    args = p.parse_args()
    results = [evaluate(m, args.real) for m in (args.model or [None])]
    cols = ["model", "tokens", "ap_aa_exact_all", "ap_aa_jitter_all", "ap_aa_jitter_iv", "ap_aa_jitter_oov",
            "ap_at_exact_all", "ap_at_jitter_all", "ap_at_jitter_iv", "ap_at_jitter_oov",
            "auc_easy", "eer_easy", "auc_hard", "eer_hard", "encoder_x_realtime"]
    print("| " + " | ".join(cols) + " |")
    print("|" + "---|" * len(cols))
    for r in results:
        print("| " + " | ".join(str(r[c]) for c in cols) + " |")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
