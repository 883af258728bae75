"""Archives and queries of the standard benchmark (benchmarks/stdbench.py).

Archives (``Archive``: audio files, their durations, speakers and word-level ground truth):
- ``real_archive``: ../shared/eval/real (read in place, never copied): ``audio/ID.wav`` and
  ``words_aligned.tsv``; speakers from ``manifest.tsv``.
- ``synthetic_archive``: long-form espeak-ng speech by held-out voices only (``is_held_out_voice``:
  every accent with a held-out variant, and the held-out accent en-gb-x-gbcwmd with any variant), one
  voice per file, sentences of frequency-ranked words with pauses; a third of the files get noise
  (10-20 dB SNR), a third are telephone band (band-limited at 8 kHz and stored as 8 kHz wav). Word times are espeak's own.
  Written once to a cache directory (never the repository) and reused.

Queries (``Query``: kind, text or phonemes or example span, and the true occurrences):
- ``word``: word types of >= MIN_PHONEMES phonemes present in the archive; ``phrase``: two adjacent words.
- ``absent``: real words (frequent cmudict words) one phoneme edit from a present word and absent from
  the archive; ``pseudo``: phoneme sequences one edit from a present word (awesearch only: it can search
  phonemes directly). Both have no true occurrence: they measure false alarms.
- ``audio``: one occurrence (the example) of a word spoken at least twice; the other occurrences are the targets.
"""

from __future__ import annotations

import csv
import functools
import json
import random
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from awesearch.text import word_phonemes

MIN_PHONEMES = 4
SYN_FILE_S = 60.0  # seconds per generated file
SYN_WORDS_PER_MINUTE_VOCAB = 30  # content-word types per minute of generated audio (so words repeat)
SYN_FUNCTION_WORDS = 60  # the most frequent words, interleaved as function words
SYN_CONTENT_RANKS = (200, 6000)  # frequency ranks content words come from
SYN_VERSION = 2  # bump when generation changes (cache key)


@dataclass
class Archive:
    name: str
    files: dict[str, Path]  # file id -> audio path
    durations: dict[str, float]  # seconds
    speakers: dict[str, str]
    truth: dict[str, list[tuple[str, float, float]]]  # file id -> [(word, start, end)] in order

    @property
    def seconds(self) -> float:
        return float(sum(self.durations.values()))

    def path_to_id(self) -> dict[str, str]:
        return {str(p.resolve()): fid for fid, p in self.files.items()}


@dataclass
class Query:
    kind: str  # word | phrase | absent | pseudo | audio
    text: str | None  # word or phrase (None for pseudo)
    phonemes: list[str]
    truth: list[tuple[str, float, float]]  # (file id, start, end) of true occurrences
    example: tuple[str, float, float] | None = None  # audio queries: (file id, start, end)
    meta: dict = field(default_factory=dict)

    @property
    def label(self) -> str:
        if self.kind == "audio":
            return f"audio:{self.text}@{self.example[0]}:{self.example[1]:.2f}"
        return self.text if self.text is not None else "/" + " ".join(self.phonemes) + "/"


# -- the real recordings ------------------------------------------------------------------------


def real_archive(real: Path, limit_files: int | None = None) -> Archive:
    truth: dict[str, list] = defaultdict(list)
    with open(real / "words_aligned.tsv", newline="") as f:
        for row in csv.DictReader(f, delimiter="\t"):
            truth[row["id"]].append((row["word"], float(row["start_s"]), float(row["end_s"])))
    durations, speakers = {}, {}
    with open(real / "manifest.tsv", newline="") as f:
        for row in csv.DictReader(f, delimiter="\t"):
            durations[row["id"]] = float(row["duration_s"])
            speakers[row["id"]] = row.get("speaker") or row["id"]
    ids = sorted(p.stem for p in (real / "audio").glob("*.wav"))[:limit_files]
    return Archive(
        "real", {i: real / "audio" / f"{i}.wav" for i in ids}, {i: durations[i] for i in ids},
        {i: speakers.get(i, i) for i in ids}, {i: truth.get(i, []) for i in ids},
    )


# -- the generated long-form archive -------------------------------------------------------------


def held_out_voices() -> list[tuple[str, str]]:
    """(accent, variant) of the espeak-ng voices the training corpus holds out."""
    from awesearch.train.corpus import is_held_out_voice, usable_voices
    from awesearch.train.synth import EspeakSynth

    return sorted((v.name, v.variant) for v in usable_voices(EspeakSynth().voices()) if is_held_out_voice(v))


def _vocabulary(n_content: int, rng: random.Random) -> tuple[list[str], list[str]]:
    import wordfreq

    from awesearch.g2p import cmu_lexicon

    cmu = cmu_lexicon()
    top = [w for w in wordfreq.top_n_list("en", SYN_CONTENT_RANKS[1]) if w.isalpha() and w in cmu]
    function = [w for w in top[:SYN_FUNCTION_WORDS] if len(w) > 1 or w in ("a", "i")]
    pool = [w for w in top[SYN_CONTENT_RANKS[0]:] if len(w) > 2]
    return function, rng.sample(pool, min(n_content, len(pool)))


def _sentence(rng: random.Random, function: list[str], content: list[str]) -> str:
    return " ".join(rng.choice(function) if rng.random() < 0.35 else rng.choice(content) for _ in range(rng.randint(4, 9)))


def _degrade(audio: np.ndarray, condition: str, rng: np.random.Generator) -> np.ndarray:
    from awesearch.tts import resample

    if condition == "noise":
        snr_db = rng.uniform(10, 20)
        noise = np.cumsum(rng.normal(0, 1, len(audio))) if rng.random() < 0.5 else rng.normal(0, 1, len(audio))
        noise = noise - np.convolve(noise, np.ones(400) / 400, mode="same")  # drop the DC/random-walk drift
        p_sig = np.mean(audio[np.abs(audio) > 1e-3] ** 2) if np.any(np.abs(audio) > 1e-3) else 1e-6
        noise *= np.sqrt(p_sig / 10 ** (snr_db / 10) / (np.mean(noise**2) + 1e-12))
        audio = audio + noise.astype(np.float32)
    elif condition == "telephone":
        audio = resample(resample(audio, 16000, 8000), 8000, 16000)[: len(audio)]
    peak = float(np.max(np.abs(audio))) or 1.0
    return (audio * min(1.0, 0.95 / peak)).astype(np.float32)


def synthetic_archive(cache: Path, minutes: float, seed: int = 0, file_s: float = SYN_FILE_S, limit_files: int | None = None) -> Archive:
    """Generate (once; cached under ``cache``) and load the long-form held-out-voice archive."""
    import soundfile as sf

    key = f"syn-v{SYN_VERSION}-{minutes:g}min-{file_s:g}s-seed{seed}"
    root = cache / key
    meta_path = root / "words.json"
    if not meta_path.is_file():
        from awesearch.tts import synthesize

        rng = random.Random(seed)
        nrng = np.random.default_rng(seed)
        voices = held_out_voices()
        function, content = _vocabulary(max(20, int(SYN_WORDS_PER_MINUTE_VOCAB * minutes)), rng)
        n_files = max(1, int(round(minutes * 60 / file_s)))
        (root / "audio").mkdir(parents=True, exist_ok=True)
        meta = {}
        for i in range(n_files):
            accent, variant = voices[(i * 7 + seed) % len(voices)]
            condition = ("clean", "noise", "telephone")[i % 3]
            rate, pitch = rng.randint(140, 200), rng.randint(30, 70)
            parts, words, t = [], [], 0.0
            while t < file_s:
                pause = np.zeros(int(rng.uniform(0.3, 1.5) * 16000), np.float32)
                s = synthesize(_sentence(rng, function, content), voice=accent, rate=rate, pitch=pitch, variant=variant or None)
                t += len(pause) / 16000
                words += [(w.word.lower(), round(t + w.start, 3), round(t + w.end, 3)) for w in s.words]
                parts += [pause, s.audio.astype(np.float32)]
                t += len(s.audio) / 16000
            audio = np.concatenate(parts + [np.zeros(8000, np.float32)])
            audio = _degrade(audio + nrng.normal(0, 0.001, len(audio)).astype(np.float32), condition, nrng)
            fid = f"syn{i:03d}"
            if condition == "telephone":  # stored at 8 kHz: the decoders' resampling is part of the test
                from awesearch.tts import resample

                sf.write(str(root / "audio" / f"{fid}.wav"), resample(audio, 16000, 8000), 8000, subtype="PCM_16")
            else:
                sf.write(str(root / "audio" / f"{fid}.wav"), audio, 16000, subtype="PCM_16")
            meta[fid] = {"voice": f"espeak:{accent}:{variant}", "condition": condition, "rate": rate, "pitch": pitch,
                         "duration": len(audio) / 16000, "words": words}
        meta_path.write_text(json.dumps(meta))
    meta = json.loads(meta_path.read_text())
    ids = sorted(meta)[:limit_files]
    return Archive(
        "synthetic", {i: root / "audio" / f"{i}.wav" for i in ids}, {i: meta[i]["duration"] for i in ids},
        {i: meta[i]["voice"] for i in ids}, {i: [tuple(w) for w in meta[i]["words"]] for i in ids},
    )


# -- queries ------------------------------------------------------------------------------------


def _occurrences(archive: Archive, n_words: int) -> dict[tuple[str, ...], list[tuple[str, float, float]]]:
    occ: dict[tuple[str, ...], list] = defaultdict(list)
    for fid, ws in archive.truth.items():
        for i in range(len(ws) - n_words + 1):
            span = ws[i : i + n_words]
            occ[tuple(w for w, _, _ in span)].append((fid, span[0][1], span[-1][2]))
    return occ


def _cap(items: list, n: int | None, rng: random.Random) -> list:
    return items if n is None or len(items) <= n else rng.sample(items, n)


@functools.lru_cache(maxsize=1)
def _neighbour_index():
    import wordfreq

    from awesearch.g2p import cmu_lexicon
    from awesearch.train.negatives import NeighbourIndex

    entries = ((w, p[0]) for w, p in cmu_lexicon().items() if w.isalpha() and wordfreq.zipf_frequency(w, "en") >= 3.0)
    return NeighbourIndex(entries, max_distance=1)


def build_queries(archive: Archive, limit: int | None, seed: int = 0) -> list[Query]:
    """Word, phrase, absent, pseudo and audio queries of one archive; each kind capped at ``limit``."""
    from awesearch.train.negatives import edit_distance, phoneme_edits

    rng = random.Random(seed)
    words = _occurrences(archive, 1)
    present = {w[0] for w in words}
    present_prons = {tuple(word_phonemes(w)) for w in present}
    long_words = sorted(w[0] for w in words if len(word_phonemes(w[0])) >= MIN_PHONEMES)
    out = [Query("word", w, word_phonemes(w), words[(w,)]) for w in _cap(long_words, limit, rng)]

    pairs = _occurrences(archive, 2)
    phrases = sorted(p for p in pairs if p[0] != p[1] and sum(len(word_phonemes(w)) for w in p) >= MIN_PHONEMES + 2
                     and all(word_phonemes(w) for w in p))
    out += [Query("phrase", " ".join(p), [x for w in p for x in word_phonemes(w)], pairs[p]) for p in _cap(phrases, limit, rng)]

    nbr = _neighbour_index()
    absent, pseudo = [], []
    for w in rng.sample(long_words, len(long_words)):
        phones = word_phonemes(w)
        for cand, _ in nbr.neighbours(phones, k=20, exclude=w):
            if cand not in present and tuple(word_phonemes(cand)) not in present_prons and all(q.text != cand for q in absent):
                absent.append(Query("absent", cand, word_phonemes(cand), [], meta={"near": w}))
                break
        for seq in phoneme_edits(phones, 4, rng):
            if edit_distance(seq, phones) == 1 and tuple(seq) not in present_prons:
                pseudo.append(Query("pseudo", None, seq, [], meta={"near": w}))
                break
        if limit is not None and len(absent) >= limit and len(pseudo) >= limit:
            break
    out += absent[:limit] + pseudo[:limit]

    audio = []
    for w in long_words:
        occ = [o for o in words[(w,)] if 0.2 <= o[2] - o[1] <= 2.5]
        if len(occ) < 2 or len(occ) != len(words[(w,)]):
            continue
        ex = occ[rng.randrange(len(occ))]
        targets = [o for o in occ if o != ex]
        cross = sum(archive.speakers[o[0]] != archive.speakers[ex[0]] for o in targets)
        audio.append(Query("audio", w, word_phonemes(w), targets, example=ex, meta={"cross_speaker_targets": cross}))
    out += _cap(audio, limit, rng)
    return out
