"""Rare names that CMUdict does not know, spoken in sentences by our own synthetic voices (issue 18).

Two disjoint lists: ``CALIB_NAMES`` go into the calibration archive (fit_calibration.py), ``BENCH_NAMES``
into the names benchmark (benchmarks/names_bench.py); likewise two disjoint sets of held-out voices
(never in the phoneme head's training split; never SVOX pico or piper). The query is the name as typed, so
its target is g2p_en's guess while the synthesiser says it by its own letter-to-sound rules: the mismatch
an archivist meets with a name no dictionary knows.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SAMPLE_RATE = 16000  # Hz
CALIB_NAMES = tuple("""
okonkwo nkechi tadeusz oyelaran siddharth zbigniew bartholomeu ifeoma kwabena thandiwe radoslaw xiomara
yevgenia aurelio marisol keoni leilani tanvir anneliese florentyna gwendolyn ravindra sundaram chidinma
oluwaseun przemek dragomir soraya tamsin ingeborg sigrun wojciech agnieszka benedikt jovana milorad
oyinkansola babatunde olumide chukwuemeka adaeze tochukwu nnamdi kayode folasade temitope ragnhild solveig
eirik gudrun bjarni hrafnhildur katarzyna grzegorz malgosia jaroslaw bozena dobrawa zofia szymon wladyslaw
anupama lakshmi subramaniam chandrasekhar padmavathi vishwanath raghunathan meenakshi kalpana thirumalai
ngaio aroha whetu tamati rangi mereana kealoha makana kanoa pualani iolana keahi xochitl citlali tlaloc
nezahualcoyotl itzel yaretzi bogdana radomir vukasin dusica branislava ljubica zhivko tsvetana kiril rumyana
""".split())
BENCH_NAMES = tuple("""
adebayo chiamaka krzysztof malgorzata venkatesh anirudh svetlana dobromir esperanza guadalupe kalani
makoa tsegaye abebe ngozi obinna rasmus torbjorn sigurd halvard emeka yaroslav ludmila zdenek
bogumila casimiro evangelina hortensia isidoro leocadia
""".split())
CALIB_VOICE_BASES = ("festival:us3_mbrola", "espeak:en-gb-x-gbcwmd")
BENCH_VOICE_BASES = ("festival:ked", "flite:rms", "mbrola:mb-us2")
CARRIERS = (
    "yesterday {} arrived at the station", "we asked {} about the old farm", "the letter was signed by {} himself",
    "everyone in the village knew {} well", "after the war {} moved to the city", "i think {} was the youngest",
    "{} told us the story twice", "my grandmother worked with {} for years", "nobody expected {} to come back",
    "the teacher called {} to the front",
)
FILLERS = (
    "the river was high that spring", "we walked to the market every morning", "the school closed early in winter",
    "my father kept the old radio", "they built the bridge after the flood", "the church bells rang at noon",
)


@dataclass
class SpokenName:
    """One word of the names archive: a name, or a word of its carrier or filler sentence."""

    path: str
    start: float  # seconds
    end: float
    name: str  # the word (normalised)
    is_name: bool = True
    phonemes: tuple[str, ...] = ()


def unknown_names(names: tuple[str, ...]) -> list[str]:
    """The names CMUdict does not hold (the list is checked at run time, not trusted)."""
    from awesearch.g2p import cmu_lexicon

    cmu = cmu_lexicon()
    return [n for n in names if n not in cmu]


def name_voices(bases: tuple[str, ...]):
    """Installed voices whose base is in `bases` (engine, voice) pairs."""
    from awesearch.train.corpus import usable_voices
    from awesearch.train.synth import available_engines

    out = []
    for name, engine in available_engines().items():
        out += [(engine, v) for v in usable_voices(engine.voices()) if v.base in bases]
    if not out:
        raise RuntimeError(f"none of the voices {bases} is installed (scripts/install_train_deps.sh)")
    return out


def build_names_archive(out: Path, names: tuple[str, ...], voice_bases: tuple[str, ...], seed: int = 0,
                        per_name: int = 2, per_recording: int = 6) -> list[SpokenName]:
    """Recordings of carrier sentences with names (each `per_name` times, random voices) and fillers;
    returns where every word is spoken (word times from the engines; `is_name` marks the names)."""
    import soundfile as sf

    from awesearch.text import word_phonemes
    from awesearch.train.synth import EngineError, Prosody, Request

    rng = random.Random(seed)
    voices = name_voices(voice_bases)
    sentences = [(rng.choice(CARRIERS).format(n), n) for n in unknown_names(names) for _ in range(per_name)]
    sentences += [(rng.choice(FILLERS), None) for _ in range(len(sentences) // 3)]
    rng.shuffle(sentences)
    out.mkdir(parents=True, exist_ok=True)
    spoken: list[SpokenName] = []
    for r0 in range(0, len(sentences), per_recording):
        path = out / f"names-{r0 // per_recording:03d}.wav"
        pieces, t = [], 0.0
        for text, name in sentences[r0 : r0 + per_recording]:
            engine, voice = rng.choice(voices)
            words = text.split()
            req = Request(text, words, [word_phonemes(w) for w in words], voice, Prosody(rng.uniform(0.85, 1.15), rng.randint(35, 70), 50))
            res = engine.speak([req])[0]
            if isinstance(res, EngineError):
                continue
            gap = np.zeros(int(rng.uniform(0.3, 1.0) * SAMPLE_RATE), np.float32)
            pieces += [gap, res.audio.astype(np.float32)]
            t += len(gap) / SAMPLE_RATE
            spoken += [SpokenName(str(path), t + w.start, t + w.end, word, word == name, tuple(ph))
                       for w, word, ph in zip(res.words, words, req.phonemes)]
            t += len(res.audio) / SAMPLE_RATE
        if pieces:
            sf.write(path, np.clip(np.concatenate(pieces), -1, 1), SAMPLE_RATE)
    return spoken
