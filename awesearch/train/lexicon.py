"""Training lexicon: which words the corpus speaks, how often, and which are held out.

Words come from ``wordfreq``'s English list (frequency order, offline data in the wheel) joined
with pronunciations from the CMU dictionary, or g2p_en's offline predictor for the rest (see
``awesearch.text``), plus a list of proper names. ``WordSampler`` draws words frequency-aware: a mix
of a flattened Zipf distribution (common words, coarticulation with function words) and uniform
over types (coverage of rare words).

The word-type split is a pure function of the word (``is_oov_word``): a fixed hash bucket of
words that are not among the most frequent ones, so the same OOV words are held out everywhere.
"""

from __future__ import annotations

import functools
import hashlib
import re
from dataclasses import dataclass

import numpy as np
import wordfreq

from awesearch import text
from awesearch.g2p import cmu_lexicon

OOV_PERCENT = 10  # percent of eligible word types held out as out-of-vocabulary
OOV_MAX_ZIPF = 5.0  # words at least this frequent (Zipf scale, ~top 400) are never held out
LEXICON_SIZE = 60_000  # most word types a lexicon takes from the frequency list
VOCAB_PER_HOUR = 500  # corpus vocabulary grows with its size, so every type is spoken many times
MIN_VOCAB = 1_000  # word types of the smallest corpora
ZIPF_FLATTEN = 0.5  # sampling weight = frequency ** ZIPF_FLATTEN
UNIFORM_SHARE = 0.5  # share of draws uniform over word types
_WORD = re.compile(r"^[a-z]+(?:'[a-z]+)?$")
_SINGLE_LETTER_WORDS = {"a", "i"}
_VOWEL = re.compile(r"[aeiouy]")
# Abbreviations that synthesisers expand or spell out ("dr" -> "doctor", "tv" -> "t v"): not words to record.
ABBREVIATIONS = frozenset(
    "dr st mr mrs ms jr sr http https www com tv inc ltd vs etc ft mt dept govt ave blvd rd hwy usa uk eu "
    "nyc dc ny ca tx fl la nj pa nba nfl fbi cia ceo cnn bbc ok pc dvd cd usb gps pdf faq diy lol omg".split()
)

# Proper names: first names, surnames and places (wordfreq lists them in lowercase among words).
PROPER_NAMES: tuple[str, ...] = tuple(
    """
    James Mary John Patricia Robert Jennifer Michael Linda William Elizabeth David Barbara Richard
    Susan Joseph Jessica Thomas Sarah Charles Karen Christopher Nancy Daniel Lisa Matthew Margaret
    Anthony Betty Mark Sandra Donald Ashley Steven Kimberly Paul Emily Andrew Donna Joshua Michelle
    Kenneth Carol Kevin Amanda Brian Melissa George Deborah Edward Stephanie Ronald Rebecca Timothy
    Laura Jason Sharon Jeffrey Cynthia Ryan Kathleen Jacob Amy Gary Shirley Nicholas Angela Eric
    Helen Jonathan Anna Stephen Brenda Larry Pamela Justin Nicole Scott Emma Brandon Samantha
    Benjamin Katherine Samuel Christine Gregory Debra Frank Rachel Alexander Catherine Raymond
    Carolyn Patrick Janet Jack Ruth Dennis Maria Jerry Heather Tyler Diane Aaron Virginia Jose
    Julie Adam Joyce Henry Victoria Nathan Olivia Douglas Kelly Zachary Christina Peter Lauren
    Kyle Joan Walter Evelyn Ethan Judith Jeremy Megan Harold Cheryl Keith Andrea Christian Hannah
    Roger Martha Noah Jacqueline Gerald Frances Carl Gloria Terry Ann Sean Teresa Austin Kathryn
    Arthur Sara Lawrence Janice Jesse Jean Dylan Alice Bryan Madison Joe Doris Jordan Abigail
    Billy Julia Bruce Judy Albert Grace Willie Denise Gabriel Amber Logan Marilyn Alan Beverly
    Juan Danielle Wayne Theresa Roy Sophia Ralph Marie Randy Diana Eugene Brittany Vincent Natalie
    Russell Isabella Elijah Charlotte Louis Rose Bobby Alexis Philip Kayla Johnny Priya Mohammed
    Ahmed Wei Chen Yuki Hiroshi Olga Ivan Sergei Fatima Aisha Carlos Miguel Sofia Lucia Pierre
    Smith Johnson Williams Brown Jones Garcia Miller Davis Rodriguez Martinez Hernandez Lopez
    Gonzalez Wilson Anderson Taylor Moore Jackson Martin Lee Perez Thompson White Harris Sanchez
    Clark Ramirez Lewis Robinson Walker Young Allen King Wright Scott Torres Nguyen Hill Flores
    Green Adams Nelson Baker Hall Rivera Campbell Mitchell Carter Roberts Murphy Cooper Morgan
    London Paris Berlin Tokyo Boston Chicago Denver Seattle Dallas Houston Phoenix Atlanta Miami
    Toronto Sydney Melbourne Dublin Edinburgh Glasgow Madrid Rome Vienna Prague Moscow Beijing
    Mumbai Delhi Cairo Nairobi Lagos Lisbon Oslo Stockholm Helsinki Amsterdam Brussels Zurich
    Geneva Munich Hamburg Oxford Cambridge Manchester Liverpool Bristol Texas California Florida
    Ohio Oregon Nevada Arizona Georgia Virginia Carolina Kentucky Canada Mexico Brazil Argentina
    Chile Peru Japan China India Russia Egypt Kenya Nigeria Ireland Scotland Wales England France
    Germany Italy Spain Portugal Norway Sweden Finland Denmark Poland Greece Turkey Israel
    Microsoft Google Amazon Netflix Toyota Honda Nokia Samsung Intel Tesla Spotify Python Linux
    """.split()
)


@dataclass(frozen=True)
class LexiconEntry:
    word: str  # lowercase spelling, in-word apostrophe allowed
    phonemes: tuple[str, ...]  # first pronunciation, ARPAbet without stress
    frequency: float  # wordfreq frequency per word token (0 if unknown)
    is_name: bool  # from PROPER_NAMES (spoken capitalised)
    oov: bool  # held out of training by is_oov_word


def vocabulary_size(hours: float) -> int:
    """Word types for a corpus of ``hours``: ~20 spoken examples per type, at most LEXICON_SIZE."""
    return int(min(LEXICON_SIZE, max(MIN_VOCAB, hours * VOCAB_PER_HOUR)))


def _hash_bucket(word: str) -> int:
    return int.from_bytes(hashlib.sha1(word.encode("utf-8")).digest()[:4], "big") % 100


def is_oov_word(word: str) -> bool:
    """True if ``word`` belongs to the held-out (out-of-vocabulary) word types.
    Deterministic: OOV_PERCENT of the hash buckets, never among the most frequent words."""
    w = word.lower()
    if wordfreq.zipf_frequency(w, "en") >= OOV_MAX_ZIPF:
        return False
    return _hash_bucket(w) < OOV_PERCENT


def _usable(word: str) -> bool:
    if not _WORD.match(word):
        return False
    return len(word) > 1 or word in _SINGLE_LETTER_WORDS


@functools.lru_cache(maxsize=4)
def build_lexicon(size: int = LEXICON_SIZE) -> tuple[LexiconEntry, ...]:
    """The ``size`` most frequent usable English words plus PROPER_NAMES, with pronunciations."""
    names = {n.lower() for n in PROPER_NAMES}
    cmu = cmu_lexicon()
    entries: dict[str, LexiconEntry] = {}
    for word in wordfreq.top_n_list("en", 2 * size, wordlist="large"):
        if len(entries) >= size:
            break
        if not _usable(word) or word in entries or word in ABBREVIATIONS:
            continue
        if word not in cmu and not _VOWEL.search(word):
            continue  # an acronym: synthesisers spell it out, unlike its predicted pronunciation
        phones = tuple(text.word_phonemes(word))
        if not phones:
            continue
        entries[word] = LexiconEntry(word, phones, wordfreq.word_frequency(word, "en"), word in names, is_oov_word(word))
    for name in sorted(names - entries.keys()):
        phones = tuple(text.word_phonemes(name))
        entries[name] = LexiconEntry(name, phones, wordfreq.word_frequency(name, "en"), True, is_oov_word(name))
    return tuple(entries.values())


def spoken_form(entry: LexiconEntry) -> str:
    """How the word is written for a synthesiser: names capitalised, other words lowercase."""
    return entry.word.capitalize() if entry.is_name else entry.word


class WordSampler:
    """Frequency-aware word draws from one side of the word-type split."""

    def __init__(self, lexicon: tuple[LexiconEntry, ...], oov: bool) -> None:
        self.entries = [e for e in lexicon if e.oov == oov]
        if not self.entries:
            raise ValueError("empty lexicon side")
        freq = np.array([max(e.frequency, 1e-9) for e in self.entries], dtype=np.float64)
        weights = freq**ZIPF_FLATTEN
        self._zipf_p = weights / weights.sum()
        self._names = [e for e in self.entries if e.is_name]

    def draw(self, rng: np.random.Generator, n: int) -> list[LexiconEntry]:
        """``n`` words: UNIFORM_SHARE uniform over types, the rest by flattened frequency."""
        uniform = rng.random(n) < UNIFORM_SHARE
        zipf_idx = rng.choice(len(self.entries), size=n, p=self._zipf_p)
        uni_idx = rng.integers(0, len(self.entries), size=n)
        return [self.entries[int(u if is_u else z)] for is_u, u, z in zip(uniform, uni_idx, zipf_idx)]

    def draw_names(self, rng: np.random.Generator, n: int) -> list[LexiconEntry]:
        """``n`` proper names (uniform)."""
        pool = self._names or self.entries
        return [pool[int(i)] for i in rng.integers(0, len(pool), size=n)]
