"""Word tokens for training: every word (and some two-word phrases) of every corpus utterance.

A token is a span of an utterance's audio plus its label (the normalised word or phrase) and
phonemes. Audio is held once per utterance as int16 (50 h of speech is 5.8 GB that way).
"""

from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SAMPLE_RATE = 16000  # Hz
PHRASE_PROB = 0.15  # share of adjacent word pairs also kept as two-word phrase tokens
MIN_EVAL_PHONEMES = 3  # very short words ("a", "of") make same/different AP mostly about noise


@dataclass
class TrainToken:
    audio: np.ndarray  # int16 samples of the whole utterance (shared, not copied)
    start: float  # seconds
    end: float  # seconds
    key: str  # the word or phrase, normalised; "" for distractors
    phonemes: list[str]
    voice: str
    feats: np.ndarray | None = None  # fp16 Whisper frames of the whole utterance [T, 384] (whisper front end only)


class TokenBank:
    def __init__(self, tokens: list[TrainToken], utterances: list[tuple[np.ndarray, list[tuple[float, float]], str]]):
        self.tokens = tokens
        self.feats = {id(t.audio): t.feats for t in tokens if t.feats is not None}
        self.utterances = utterances  # (audio, word spans, voice): for distractor windows
        by_key: dict[str, list[int]] = defaultdict(list)
        self.phonemes: dict[str, list[str]] = {}
        for i, t in enumerate(tokens):
            by_key[t.key].append(i)
            self.phonemes[t.key] = t.phonemes
        self.by_key = {k: v for k, v in by_key.items() if len(v) >= 2}
        self.keys = sorted(self.by_key)

    def describe(self) -> str:
        hours = sum(len(a) for a, _, _ in self.utterances) / SAMPLE_RATE / 3600
        voices = len({v for _, _, v in self.utterances})
        return f"{hours:.2f} h, {len(self.utterances)} utts, {len(self.tokens)} tokens, {len(self.keys)} repeated types, {voices} voices"

    def sample_batch(self, n_words: int, per_word: int, rng: random.Random) -> tuple[list[str], list[TrainToken]]:
        keys = rng.sample(self.keys, min(n_words, len(self.keys)))
        toks = []
        for k in keys:
            idx = self.by_key[k]
            pick = rng.sample(idx, per_word) if len(idx) >= per_word else [rng.choice(idx) for _ in range(per_word)]
            toks.extend(self.tokens[i] for i in pick)
        return keys, toks

    def sample_distractors(self, n: int, rng: random.Random) -> list[TrainToken]:
        """Windows that are not a word or phrase: fragments and spans across word edges."""
        out = []
        while len(out) < n:
            audio, spans, voice = rng.choice(self.utterances)
            dur = len(audio) / SAMPLE_RATE
            length = rng.uniform(0.15, 1.5)
            if dur < length + 0.1:
                continue
            a = rng.uniform(0.0, dur - length)
            b = a + length
            if any(abs(a - s) < 0.1 and abs(b - e) < 0.1 for s, e in spans):
                continue
            out.append(TrainToken(audio, a, b, "", [], voice, self.feats.get(id(audio))))
        return out

    def eval_sample(self, max_tokens: int, rng: random.Random) -> list[TrainToken]:
        keys = [k for k in self.keys if " " not in k and len(self.phonemes[k]) >= MIN_EVAL_PHONEMES]
        rng.shuffle(keys)
        out: list[TrainToken] = []
        for k in keys:
            out.extend(self.tokens[i] for i in self.by_key[k][:6])
            if len(out) >= max_tokens:
                break
        return out


def whisper_features(corpus_dir: Path, utts: list) -> list[np.ndarray]:
    """Frozen Whisper frames for every utterance, cached next to the corpus (they cost ~1/20 real time)."""
    from ..whisper_frontend import WhisperFrontend

    cache = Path(corpus_dir) / "whisper-feats.npz"
    keys = [u.utt_id for u in utts]
    if cache.is_file():
        with np.load(cache) as z:
            if list(z["keys"]) == keys:
                flat, offsets = z["flat"], z["offsets"]
                return [flat[offsets[i] : offsets[i + 1]] for i in range(len(keys))]
    fe = WhisperFrontend()
    feats = []
    for i in range(0, len(utts), 64):
        feats.extend(f.astype(np.float16) for f in fe.encode_many([u.audio for u in utts[i : i + 64]]))
        print(f"whisper features: {len(feats)}/{len(utts)} utterances", flush=True)
    offsets = np.concatenate([[0], np.cumsum([len(f) for f in feats])])
    np.savez(cache.with_suffix(".tmp.npz"), keys=np.array(keys), flat=np.concatenate(feats), offsets=offsets)
    cache.with_suffix(".tmp.npz").replace(cache)
    return feats


def load_tokens(corpus_dir: Path, seed: int = 0, whisper: bool = False, max_utterances: int | None = None) -> tuple[TokenBank, TokenBank]:
    """Read a corpus (awesearch.train.corpus format) into train and validation token banks.

    max_utterances: a seeded random subset (for front ends whose features are costly to precompute).
    """
    from .corpus import CorpusReader

    utts = list(CorpusReader(corpus_dir))
    if max_utterances is not None and max_utterances < len(utts):
        utts = random.Random(seed).sample(utts, max_utterances)
    all_feats = whisper_features(corpus_dir, utts) if whisper else [None] * len(utts)

    rng = random.Random(seed)
    banks: dict[str, tuple[list, list]] = {"train": ([], []), "val": ([], [])}
    for utt, feats in zip(utts, all_feats):
        split = "val" if utt.split != "train" else "train"
        audio = np.array(utt.audio_int16)  # copy out of the memory map: random access is faster in RAM
        words = [w for w in utt.words if w.phonemes]
        toks, spans = banks[split]
        spans.append((audio, [(w.start, w.end) for w in words], utt.voice))
        for i, w in enumerate(words):
            toks.append(TrainToken(audio, w.start, w.end, w.word, list(w.phonemes), utt.voice, feats))
            if i + 1 < len(words) and rng.random() < PHRASE_PROB:
                nxt = words[i + 1]
                toks.append(TrainToken(audio, w.start, nxt.end, f"{w.word} {nxt.word}", list(w.phonemes) + list(nxt.phonemes), utt.voice, feats))
    return TokenBank(*banks["train"]), TokenBank(*banks["val"])
