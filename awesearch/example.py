"""The README demo archive: a few short espeak-ng recordings, several voices, wav/flac/mp3.

    python -m awesearch.example DIR      # writes DIR/*.wav|flac|mp3 and DIR/words.tsv

Several recordings say "prince" (and near misses like "prints" and "princess"), spoken by different
voices. words.tsv lists every word of every file with its espeak-ng timing (file, word, start, end
in seconds), so a query's hits can be checked by eye.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from awesearch.errors import AwesearchError

LEAD_S = 0.5  # seconds of silence before the first sentence of a file
GAP_S = 0.6  # seconds of silence between sentences
TAIL_S = 0.5  # seconds of silence after the last sentence


@dataclass(frozen=True)
class Recording:
    name: str  # file name, its extension picks the format
    voice: str  # espeak-ng voice
    variant: str | None  # espeak-ng voice variant
    rate: int  # words per minute
    sentences: tuple[str, ...]


RECORDINGS: tuple[Recording, ...] = (
    Recording("little_prince.wav", "en-us", None, 165, (
        "The little prince asked for a drawing of a sheep.",
        "Prints of the old photos arrived on Tuesday.",
    )),
    Recording("palace.flac", "en-us", "f3", 160, (
        "Everyone in the palace waited for the prince to speak.",
        "The princess wore a green dress.",
    )),
    Recording("desert.mp3", "en-gb-x-rp", "m3", 150, (
        "A fox and a prince met in the desert.",
        "They talked about roses until the evening.",
    )),
    Recording("weather.wav", "en-us", "m1", 170, (
        "Tomorrow will be cloudy with a chance of rain.",
        "Bring an umbrella to the station.",
    )),
    Recording("story.mp3", "en-us", "f1", 155, (
        "Once upon a time a young prince lived by the sea.",
    )),
)


@dataclass(frozen=True)
class SpokenWord:
    path: Path
    word: str
    start: float  # seconds from the start of the file
    end: float  # seconds


def render(recording: Recording) -> tuple[np.ndarray, list[tuple[str, float, float]]]:
    """16 kHz audio of one recording and its words with absolute timings."""
    from awesearch.tts import SAMPLE_RATE, synthesize

    parts = [np.zeros(int(LEAD_S * SAMPLE_RATE), np.float32)]
    words: list[tuple[str, float, float]] = []
    offset = LEAD_S
    for i, sentence in enumerate(recording.sentences):
        if i:
            parts.append(np.zeros(int(GAP_S * SAMPLE_RATE), np.float32))
            offset += GAP_S
        syn = synthesize(sentence, voice=recording.voice, rate=recording.rate, variant=recording.variant)
        parts.append(syn.audio)
        words.extend((w.word.strip(".,!?").lower(), offset + w.start, offset + w.end) for w in syn.words)
        offset += len(syn.audio) / SAMPLE_RATE
    parts.append(np.zeros(int(TAIL_S * SAMPLE_RATE), np.float32))
    audio = np.concatenate(parts)
    peak = float(np.abs(audio).max())
    return (0.9 * audio / peak if peak > 0 else audio), words


def write_example(directory: str | Path) -> list[SpokenWord]:
    """Write the demo recordings and words.tsv into directory; return every spoken word."""
    import soundfile as sf

    from awesearch.tts import SAMPLE_RATE

    directory = Path(directory).resolve()
    directory.mkdir(parents=True, exist_ok=True)
    spoken: list[SpokenWord] = []
    for rec in RECORDINGS:
        audio, words = render(rec)
        path = directory / rec.name
        fmt = path.suffix.lstrip(".").upper()
        try:
            sf.write(path, audio, SAMPLE_RATE, format=fmt)
        except (sf.LibsndfileError, TypeError, ValueError) as e:
            raise AwesearchError(f"cannot write {path} as {fmt}: {e}") from e
        spoken.extend(SpokenWord(path, w, round(s, 3), round(e, 3)) for w, s, e in words)
    lines = ["file\tword\tstart\tend"] + [f"{w.path.name}\t{w.word}\t{w.start:.3f}\t{w.end:.3f}" for w in spoken]
    (directory / "words.tsv").write_text("\n".join(lines) + "\n")
    return spoken


def main(argv: list[str]) -> int:
    if len(argv) != 1 or argv[0] in ("-h", "--help"):
        print("usage: python -m awesearch.example DIR", file=sys.stderr)
        return 2
    try:
        spoken = write_example(argv[0])
    except AwesearchError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    files = sorted({w.path for w in spoken})
    print(f"wrote {len(files)} recordings to {Path(argv[0]).resolve()}")
    for w in spoken:
        if w.word == "prince":
            print(f"  'prince' in {w.path.name} at {w.start:.2f}-{w.end:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
