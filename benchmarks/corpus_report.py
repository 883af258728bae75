"""Validation report for a synthetic training corpus: statistics, and proof that its word timings hold.

    python benchmarks/corpus_report.py --corpus ~/.cache/awesearch/corpus --samples 600 --seed 0

Statistics: hours, utterances, word tokens and types, voices and base voices, per split, per
engine and per timing source; build throughput (hours of speech per CPU-hour) from the shards.

Timing agreement: for a random sample of words, the audio is cut exactly at the recorded word
boundaries and pocketsphinx (its en-us acoustic model, offline) picks the word it hears from a
grammar of all the words of that utterance plus DISTRACTORS random lexicon words. Agreement is
the share of windows where it picks the recorded word. A window holding the wrong word (shifted
boundaries) is recognised as a neighbour instead; the same test on windows moved one word later
(CONTROL) shows the agreement drops when the timings are wrong.

Boundary agreement: pocketsphinx force-aligns the known words of sampled utterances; the report
gives how far the recorded word starts are from its starts (median, share within 50 ms).

pocketsphinx's acoustic model and dictionary are US English: British and Caribbean espeak-ng
accents and odd voice variants are recognised less often whatever the timings, hence the
breakdown by engine and base voice.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from awesearch.train.corpus import CorpusReader, read_lexicon  # noqa: E402

SAMPLE_RATE = 16000  # Hz
DISTRACTORS = 20  # random lexicon words added to each grammar
PAD_S = 0.15  # seconds of silence put around each cut window
MIN_WORD_S = 0.08  # seconds; shorter windows are not sampled
BOUNDARY_TOLERANCE_S = 0.05  # seconds: a recorded word start "agrees" with forced alignment within this


def _decoder():
    from pocketsphinx import Decoder

    return Decoder(samprate=SAMPLE_RATE, loglevel="FATAL", lm=None)


def _ensure_words(dec, pron: dict[str, list[str]], added: set[str]) -> None:
    for word, phones in pron.items():
        if word in added:
            continue
        if dec.lookup_word(word) is None:
            dec.add_word(word, " ".join(phones), True)
        added.add(word)


def _recognise(dec, audio: np.ndarray, choices: list[str]) -> str:
    alternatives = " | ".join(sorted(set(choices)))
    dec.add_jsgf_string("words", f"#JSGF V1.0;\ngrammar w;\npublic <w> = {alternatives};\n")
    dec.activate_search("words")
    pad = np.zeros(int(PAD_S * SAMPLE_RATE), np.float32)
    pcm = (np.clip(np.concatenate([pad, audio, pad]), -1, 1) * 32767).astype(np.int16).tobytes()
    dec.start_utt()
    dec.process_raw(pcm, False, True)
    dec.end_utt()
    hyp = dec.hyp()
    return hyp.hypstr.strip() if hyp is not None else ""


def _gram_word(word: str) -> str:
    return word.replace("'", "_q_")  # JSGF tokens: keep apostrophe words distinct and valid


def timing_agreement(reader: CorpusReader, n: int, seed: int, lexicon_words: list[tuple[str, list[str]]]) -> dict:
    rng = random.Random(seed)
    utts = [u for u in reader.utterances(shuffle_seed=seed) if len(u.words) >= 2]
    dec = _decoder()
    added: set[str] = set()
    hits, control_hits, total = 0, 0, 0
    by_engine: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    t0 = time.time()
    for utt in utts:
        if total >= n:
            break
        k = rng.randrange(len(utt.words) - 1)
        w, nxt = utt.words[k], utt.words[k + 1]
        if w.end - w.start < MIN_WORD_S:
            continue
        audio = utt.audio
        distract = rng.sample(lexicon_words, DISTRACTORS)
        pron = {_gram_word(x.word): x.phonemes for x in utt.words}
        pron.update({_gram_word(word): phones for word, phones in distract})
        _ensure_words(dec, pron, added)
        choices = list(pron)
        got = _recognise(dec, audio[int(w.start * SAMPLE_RATE) : int(w.end * SAMPLE_RATE)], choices)
        ok = got == _gram_word(w.word)
        # control: a window of the same length moved to where the next word starts
        shift = nxt.start - w.start
        a, b = int((w.start + shift) * SAMPLE_RATE), int((w.end + shift) * SAMPLE_RATE)
        control = _recognise(dec, audio[a:b], choices) == _gram_word(w.word) if w.word != nxt.word else False
        hits += ok
        control_hits += control
        total += 1
        for key in (utt.voice.split(":")[0], utt.base_voice):
            by_engine[key][0] += ok
            by_engine[key][1] += 1
    return {
        "windows": total, "agreement": round(hits / max(total, 1), 4),
        "control_shifted_one_word": round(control_hits / max(total, 1), 4),
        "chance": round(1 / (DISTRACTORS + 6), 3),
        "by_engine_and_base_voice": {e: {"windows": c[1], "agreement": round(c[0] / max(c[1], 1), 4)} for e, c in sorted(by_engine.items())},
        "seconds": round(time.time() - t0, 1),
    }


def boundary_agreement(reader: CorpusReader, n: int, seed: int) -> dict:
    """Recorded word starts vs pocketsphinx forced alignment of the same words, on ``n`` utterances:
    median absolute difference and the share within BOUNDARY_TOLERANCE_S, per timing source."""
    from awesearch.train.synth import EngineError, PocketsphinxAligner

    aligner = PocketsphinxAligner()
    diffs: dict[str, list[float]] = defaultdict(list)
    failed = 0
    for i, utt in enumerate(reader.utterances(shuffle_seed=seed + 1)):
        if i >= n:
            break
        try:
            got = aligner.align(utt.audio, [w.word for w in utt.words], [w.phonemes for w in utt.words])
        except (EngineError, RuntimeError):
            failed += 1
            continue
        diffs[utt.timing_source].extend(abs(g.start - w.start) for g, w in zip(got, utt.words))
    out = {"utterances": n, "alignment_failed": failed, "tolerance_s": BOUNDARY_TOLERANCE_S}
    for source, d in sorted(diffs.items()):
        arr = np.array(d)
        out[source] = {"words": len(arr), "median_abs_start_diff_s": round(float(np.median(arr)), 3),
                       "within_tolerance": round(float(np.mean(arr <= BOUNDARY_TOLERANCE_S)), 3)}
    return out


def build_stats(path: Path) -> dict:
    shards = [json.loads(p.read_text()) for p in sorted(path.glob("shard-*.done.json"))]
    hours = sum(s["hours"] for s in shards)
    cpu_h = sum(s["cpu_s"] for s in shards) / 3600
    per_engine: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
    for s in shards:
        per_engine[s["engine"]][0] += s["hours"]
        per_engine[s["engine"]][1] += s["cpu_s"] / 3600
    return {
        "shards": len(shards), "hours": round(hours, 3), "cpu_hours": round(cpu_h, 3),
        "hours_per_cpu_hour": round(hours / max(cpu_h, 1e-9), 1),
        "failed_utterances": sum(s["failed"] for s in shards),
        "per_engine_hours_per_cpu_hour": {e: round(h / max(c, 1e-9), 1) for e, (h, c) in sorted(per_engine.items())},
    }


def corpus_stats(reader: CorpusReader) -> dict:
    engines: Counter = Counter()
    sources: Counter = Counter()
    base_voices: Counter = Counter()
    word_s = []
    for utt in reader.utterances():
        hours = utt.duration / 3600
        engines[utt.voice.split(":")[0]] += hours
        sources[utt.timing_source] += len(utt.words)
        base_voices[utt.base_voice] += hours
        word_s.extend(w.end - w.start for w in utt.words)
    return {
        "splits": reader.stats(),
        "hours_by_engine": {k: round(v, 3) for k, v in engines.most_common()},
        "hours_by_base_voice": {k: round(v, 3) for k, v in base_voices.most_common()},
        "words_by_timing_source": dict(sources),
        "word_duration_s": {q: round(float(np.quantile(word_s, float(q))), 3) for q in ("0.05", "0.5", "0.95")},
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--corpus", type=Path, default=Path("~/.cache/awesearch/corpus"))
    p.add_argument("--samples", type=int, default=600, help="word windows to check with pocketsphinx")
    p.add_argument("--align-samples", type=int, default=200, help="utterances to force-align with pocketsphinx")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    path = args.corpus.expanduser()
    reader = CorpusReader(path)
    lexicon_words = [(e.word, list(e.phonemes)) for e in read_lexicon(path / "lexicon.tsv")]
    report = {"corpus": str(path), "build": build_stats(path), **corpus_stats(reader)}
    report["timing_agreement"] = timing_agreement(reader, args.samples, args.seed, lexicon_words)
    report["boundary_agreement"] = boundary_agreement(reader, args.align_samples, args.seed)
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
