"""The synthetic training corpus: build it from a seed, read it back for training.

Build (deterministic from the seed, parallel, resumable; shards already on disk are kept)::

    python -m awesearch.train.corpus build --out ~/.cache/awesearch/corpus --hours 50 --seed 0 --jobs 2

On disk, under ``--out`` (never inside the repository):

- ``lexicon.tsv``: word, phonemes, frequency, is_name, oov: the words the corpus draws from;
- ``shard-NNNNN.npy``: int16 audio of all utterances of a shard, concatenated (16 kHz);
- ``shard-NNNNN.jsonl``: one utterance record a line (see ``Utterance``), ``offset``/``num_samples``
  locate its audio in the shard blob;
- ``shard-NNNNN.done.json``: written last, marks a finished shard (engine, hours, cpu_s, counts);
- ``corpus.json``: the build's settings and totals (rewritten after every build).

Read (what the training loop uses)::

    reader = CorpusReader(path)            # opens every finished shard; audio is memory-mapped
    len(reader)                            # utterances
    for utt in reader:                     # or reader.utterances(split="train", shuffle_seed=0)
        utt.audio                          # float32 [-1, 1], 16 kHz (utt.audio_int16: no copy)
        utt.words                          # [WordRecord(word, start, end, phonemes)], seconds
        utt.voice, utt.base_voice          # "espeak:en-us:f3", "espeak:en-us"
        utt.split                          # "train" | "val_voice" (held-out voices) | "val_oov" (held-out words)
    reader.stats()                         # hours, utterances, word tokens/types, voices per split

Splits: an utterance with any held-out word type (``lexicon.is_oov_word``) is ``val_oov``; else one
spoken by a held-out voice (``HELD_OUT_BASE_VOICES``, ``HELD_OUT_VARIANTS``) is ``val_voice``.
"""

from __future__ import annotations

import argparse
import json
import logging
import multiprocessing as mp
import os
import resource
import time
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from typing import Iterator

import numpy as np

from awesearch.train import lexicon as lex
from awesearch.train.synth import EngineError, Prosody, Request, Voice, available_engines

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
DEFAULT_DIR = Path("~/.cache/awesearch/corpus").expanduser()
SAMPLE_RATE = 16000  # Hz
SHARD_UTTERANCES = 200  # utterances per shard (~8 minutes of speech)
ENGINE_WEIGHTS = {"espeak": 0.5, "festival": 0.25, "flite": 0.12, "mbrola": 0.13}  # share of shards per engine (renormalised over installed ones)
KIND_WEIGHTS = {"sentence": 0.6, "phrase": 0.25, "names": 0.15}
SENTENCE_WORDS = (4, 14)  # words per sentence, inclusive
PHRASE_WORDS = (1, 4)  # words per short phrase, inclusive
OOV_UTTERANCE_SHARE = 0.08  # utterances that speak held-out (OOV) words, split val_oov
COMMA_PROB = 0.08  # chance of a comma after a sentence word
SPEED_RANGE = (0.75, 1.35)  # speaking-rate factor
PITCH_RANGE = (25, 85)  # espeak-ng pitch
PITCH_SPREAD_RANGE = (20, 90)  # espeak-ng pitch range
HELD_OUT_BASE_VOICES = ("espeak:en-gb-x-gbcwmd", "festival:ked", "festival:us3_mbrola", "flite:rms", "mbrola:mb-us2")
HELD_OUT_VARIANTS = ("f5", "m7", "klatt4", "Gene2", "steph3")
EXCLUDED_VARIANTS = ("Demonic", "UniRobot", "anikaRobot", "robosoft", "croak", "Tweaky")  # prefixes: not human-like


@dataclass
class WordRecord:
    word: str  # normalised lowercase
    start: float  # seconds from the utterance start
    end: float  # seconds
    phonemes: list[str]  # ARPAbet without stress


@dataclass
class Utterance:
    utt_id: str
    voice: str  # engine:name:variant
    base_voice: str  # engine:name
    text: str  # what the engine read
    sample_rate: int  # Hz
    words: list[WordRecord]
    split: str  # "train" | "val_voice" | "val_oov"
    timing_source: str  # "espeak-events" | "festival-words" | "flite-segments" | "pocketsphinx-align"
    speed: float  # speaking-rate factor
    pitch: int
    blob: np.ndarray  # the shard's int16 audio (memory-mapped)
    offset: int  # first sample in blob
    num_samples: int

    @property
    def audio_int16(self) -> np.ndarray:
        return self.blob[self.offset : self.offset + self.num_samples]

    @property
    def audio(self) -> np.ndarray:
        return self.audio_int16.astype(np.float32) / 32768.0

    @property
    def duration(self) -> float:  # seconds
        return self.num_samples / self.sample_rate


# ---------------------------------------------------------------- planning (pure, from the seed)

def is_held_out_voice(voice: Voice) -> bool:
    return voice.base in HELD_OUT_BASE_VOICES or voice.variant in HELD_OUT_VARIANTS


def usable_voices(engine_voices: list[Voice]) -> list[Voice]:
    return [v for v in engine_voices if not any(v.variant.startswith(p) for p in EXCLUDED_VARIANTS)]


def shard_engine(seed: int, shard: int, engines: list[str]) -> str:
    rng = np.random.default_rng([seed, shard, 1])
    weights = np.array([ENGINE_WEIGHTS[e] for e in engines])
    return engines[int(rng.choice(len(engines), p=weights / weights.sum()))]


def _utterance_words(rng: np.random.Generator, iv: lex.WordSampler, oov: lex.WordSampler) -> tuple[list[lex.LexiconEntry], str, bool]:
    """(entries, text, has_oov) for one utterance."""
    kind = str(rng.choice(list(KIND_WEIGHTS), p=np.array(list(KIND_WEIGHTS.values()))))
    if kind == "sentence":
        n = int(rng.integers(SENTENCE_WORDS[0], SENTENCE_WORDS[1] + 1))
    else:
        n = int(rng.integers(PHRASE_WORDS[0], PHRASE_WORDS[1] + 1))
    entries = iv.draw(rng, n)
    if kind == "names":
        k = int(rng.integers(1, min(2, n) + 1))
        entries[:k] = iv.draw_names(rng, k)
    has_oov = bool(rng.random() < OOV_UTTERANCE_SHARE)
    if has_oov:
        k = int(rng.integers(1, max(1, n // 3) + 1))
        for pos, e in zip(rng.choice(n, size=k, replace=False), oov.draw(rng, k)):
            entries[int(pos)] = e
    tokens = []
    for i, e in enumerate(entries):
        tok = lex.spoken_form(e)
        if kind == "sentence" and i + 1 < n and rng.random() < COMMA_PROB:
            tok += ","
        tokens.append(tok)
    text = " ".join(tokens)
    if kind == "sentence":
        text = text[0].upper() + text[1:] + str(rng.choice([".", ".", "?"]))
    return entries, text, has_oov


def plan_shard(seed: int, shard: int, voices: list[Voice], iv: lex.WordSampler, oov: lex.WordSampler) -> list[tuple[Request, str]]:
    """The requests of one shard, each with its split. Pure function of its arguments."""
    rng = np.random.default_rng([seed, shard, 2])
    plan = []
    for _ in range(SHARD_UTTERANCES):
        entries, text, has_oov = _utterance_words(rng, iv, oov)
        voice = voices[int(rng.integers(len(voices)))]
        prosody = Prosody(
            speed=round(float(rng.uniform(*SPEED_RANGE)), 3),
            pitch=int(rng.integers(PITCH_RANGE[0], PITCH_RANGE[1] + 1)),
            pitch_range=int(rng.integers(PITCH_SPREAD_RANGE[0], PITCH_SPREAD_RANGE[1] + 1)),
        )
        split = "val_oov" if has_oov else "val_voice" if is_held_out_voice(voice) else "train"
        req = Request(text, [e.word for e in entries], [list(e.phonemes) for e in entries], voice, prosody)
        plan.append((req, split))
    return plan


# ---------------------------------------------------------------- lexicon file

def write_lexicon(path: Path, lexicon: tuple[lex.LexiconEntry, ...]) -> None:
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w") as f:
        for e in lexicon:
            f.write(f"{e.word}\t{' '.join(e.phonemes)}\t{e.frequency:.4g}\t{int(e.is_name)}\t{int(e.oov)}\n")
    os.replace(tmp, path)


@lru_cache(maxsize=2)
def samplers(path: Path) -> tuple[lex.WordSampler, lex.WordSampler]:
    """(in-vocabulary, out-of-vocabulary) word samplers over a lexicon file."""
    lexicon = read_lexicon(path)
    return lex.WordSampler(lexicon, oov=False), lex.WordSampler(lexicon, oov=True)


def read_lexicon(path: Path) -> tuple[lex.LexiconEntry, ...]:
    out = []
    for line in open(path):
        word, phones, freq, is_name, oov = line.rstrip("\n").split("\t")
        out.append(lex.LexiconEntry(word, tuple(phones.split()), float(freq), is_name == "1", oov == "1"))
    return tuple(out)


# ---------------------------------------------------------------- building

def _cpu_seconds() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def build_shard(out: Path, seed: int, shard: int, engine_names: tuple[str, ...]) -> dict:
    """Synthesize one shard into ``out`` (atomic: files appear complete or not at all)."""
    done = out / f"shard-{shard:05d}.done.json"
    if done.exists():
        return json.loads(done.read_text())
    cpu0, wall0 = _cpu_seconds(), time.time()
    iv, oov = samplers(out / "lexicon.tsv")
    engines = available_engines(engine_names)
    engine_name = shard_engine(seed, shard, sorted(engines))
    engine = engines[engine_name]
    plan = plan_shard(seed, shard, usable_voices(engine.voices()), iv, oov)
    results = engine.speak([req for req, _ in plan])
    blobs, records, failures, offset = [], [], [], 0
    for k, ((req, split), res) in enumerate(zip(plan, results)):
        if isinstance(res, EngineError):
            failures.append(str(res)[:200])
            continue
        pcm = np.clip(np.round(res.audio * 32767.0), -32768, 32767).astype(np.int16)
        words = [asdict(WordRecord(w.word, round(w.start, 4), round(w.end, 4), p)) for w, p in zip(res.words, req.phonemes)]
        records.append({
            "utt_id": f"s{seed}-{shard:05d}-{k:03d}", "voice": req.voice.id, "base_voice": req.voice.base,
            "text": req.text, "sample_rate": SAMPLE_RATE, "words": words, "split": split,
            "timing_source": res.timing_source, "speed": req.prosody.speed, "pitch": req.prosody.pitch,
            "offset": offset, "num_samples": len(pcm),
        })
        blobs.append(pcm)
        offset += len(pcm)
    audio = np.concatenate(blobs) if blobs else np.zeros(0, np.int16)
    stem = out / f"shard-{shard:05d}"
    np.save(f"{stem}.npy.tmp.npy", audio)
    os.replace(f"{stem}.npy.tmp.npy", f"{stem}.npy")
    with open(f"{stem}.jsonl.tmp", "w") as f:
        for r in records:
            f.write(json.dumps(r) + "\n")
    os.replace(f"{stem}.jsonl.tmp", f"{stem}.jsonl")
    stats = {
        "shard": shard, "engine": engine_name, "utterances": len(records), "failed": len(failures),
        "failures": failures[:5], "hours": len(audio) / SAMPLE_RATE / 3600,
        "cpu_s": _cpu_seconds() - cpu0, "wall_s": time.time() - wall0,
    }
    done.write_text(json.dumps(stats))
    return stats


def _build_shard_job(args: tuple) -> dict:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    return build_shard(*args)


def build(out: Path, hours: float, seed: int, jobs: int, engine_names: tuple[str, ...], vocab: int | None = None) -> dict:
    """Build shards 0, 1, 2, ... until the corpus holds ``hours`` of speech. Returns totals."""
    out.mkdir(parents=True, exist_ok=True)
    engines = available_engines(engine_names)
    log.info("engines: %s", {k: len(usable_voices(e.voices())) for k, e in engines.items()})
    lex_path = out / "lexicon.tsv"
    if not lex_path.exists():
        t0 = time.time()
        write_lexicon(lex_path, lex.build_lexicon(vocab or lex.vocabulary_size(hours)))
        log.info("lexicon written in %.0f s", time.time() - t0)
    total_h, shard, done_stats = 0.0, 0, []
    ctx = mp.get_context("spawn")  # espeak-ng keeps global state: fresh processes, no fork
    with ctx.Pool(jobs) as pool:
        pending = []
        while total_h < hours or pending:
            while total_h + len(pending) * 0.12 < hours and len(pending) < 2 * jobs:
                pending.append(pool.apply_async(_build_shard_job, ((out, seed, shard, tuple(sorted(engines))),)))
                shard += 1
            stats = pending.pop(0).get()
            if stats["utterances"] == 0:
                raise RuntimeError(f"shard {stats['shard']} ({stats['engine']}) produced no utterance: {stats['failures']}")
            done_stats.append(stats)
            total_h += stats["hours"]
            log.info("shard %d (%s): %.2f h in %.0f s cpu; total %.2f / %.1f h", stats["shard"], stats["engine"], stats["hours"], stats["cpu_s"], total_h, hours)
    cpu_s = sum(s["cpu_s"] for s in done_stats)
    manifest = {
        "format_version": FORMAT_VERSION, "seed": seed, "hours_target": hours, "shards": shard,
        "engines": {k: {"voices": len(usable_voices(e.voices())), "base_voices": sorted({v.base for v in e.voices()})} for k, e in engines.items()},
        "hours": round(total_h, 3), "cpu_hours": round(cpu_s / 3600, 3),
        "hours_per_cpu_hour": round(total_h / max(cpu_s / 3600, 1e-9), 1),
        "failed_utterances": sum(s["failed"] for s in done_stats),
    }
    (out / "corpus.json").write_text(json.dumps(manifest, indent=1))
    return manifest


# ---------------------------------------------------------------- reading

class CorpusReader:
    """Every finished shard of a corpus directory; see the module docstring for the API."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path).expanduser()
        self.shards = sorted(p.name[: -len(".done.json")] for p in self.path.glob("shard-*.done.json"))
        if not self.shards:
            raise FileNotFoundError(f"no finished corpus shards in {self.path}")
        self._records: list[tuple[int, dict]] = []
        for i, stem in enumerate(self.shards):
            with open(self.path / f"{stem}.jsonl") as f:
                self._records.extend((i, json.loads(line)) for line in f)
        self._blobs: dict[int, np.ndarray] = {}

    def __len__(self) -> int:
        return len(self._records)

    def _blob(self, shard: int) -> np.ndarray:
        if shard not in self._blobs:
            self._blobs[shard] = np.load(self.path / f"{self.shards[shard]}.npy", mmap_mode="r")
        return self._blobs[shard]

    def _utterance(self, shard: int, r: dict) -> Utterance:
        words = [WordRecord(w["word"], w["start"], w["end"], w["phonemes"]) for w in r["words"]]
        return Utterance(
            r["utt_id"], r["voice"], r["base_voice"], r["text"], r["sample_rate"], words, r["split"],
            r["timing_source"], r["speed"], r["pitch"], self._blob(shard), r["offset"], r["num_samples"],
        )

    def utterances(self, split: str | None = None, shuffle_seed: int | None = None) -> Iterator[Utterance]:
        """Utterances (of one split, if given), in shard order or shuffled by ``shuffle_seed``."""
        order = np.arange(len(self._records))
        if shuffle_seed is not None:
            order = np.random.default_rng(shuffle_seed).permutation(order)
        for i in order:
            shard, r = self._records[int(i)]
            if split is None or r["split"] == split:
                yield self._utterance(shard, r)

    def __iter__(self) -> Iterator[Utterance]:
        return self.utterances()

    def stats(self) -> dict:
        """Hours, utterances, word tokens and types, voices and base voices, per split and overall."""
        out: dict[str, dict] = {}
        for _, r in self._records:
            for key in ("all", r["split"]):
                s = out.setdefault(key, {"hours": 0.0, "utterances": 0, "word_tokens": 0, "types": set(), "voices": set(), "base_voices": set(), "engines": set()})
                s["hours"] += r["num_samples"] / r["sample_rate"] / 3600
                s["utterances"] += 1
                s["word_tokens"] += len(r["words"])
                s["types"].update(w["word"] for w in r["words"])
                s["voices"].add(r["voice"])
                s["base_voices"].add(r["base_voice"])
                s["engines"].add(r["voice"].split(":")[0])
        return {
            k: {"hours": round(s["hours"], 3), "utterances": s["utterances"], "word_tokens": s["word_tokens"],
                "word_types": len(s["types"]), "voices": len(s["voices"]), "base_voices": len(s["base_voices"]),
                "engines": sorted(s["engines"])}
            for k, s in out.items()
        }


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m awesearch.train.corpus", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build", help="synthesize a corpus (resumes: finished shards are kept)")
    b.add_argument("--out", type=Path, default=DEFAULT_DIR)
    b.add_argument("--hours", type=float, required=True, help="hours of speech to reach")
    b.add_argument("--seed", type=int, default=0)
    b.add_argument("--jobs", type=int, default=max(1, os.cpu_count() or 1))
    b.add_argument("--vocab", type=int, default=None, help="word types (default: lexicon.vocabulary_size(hours)); fixed once lexicon.tsv exists")
    b.add_argument("--engines", default="espeak,festival,flite,mbrola", help="comma-separated subset of espeak,festival,flite,mbrola")
    s = sub.add_parser("stats", help="print a corpus's statistics")
    s.add_argument("--out", type=Path, default=DEFAULT_DIR)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.cmd == "build":
        manifest = build(args.out.expanduser(), args.hours, args.seed, args.jobs, tuple(args.engines.split(",")), args.vocab)
        print(json.dumps(manifest, indent=1))
        print(json.dumps(CorpusReader(args.out).stats(), indent=1))
    else:
        print(json.dumps(CorpusReader(args.out).stats(), indent=1))


if __name__ == "__main__":
    main()
