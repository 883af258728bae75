"""Speech synthesis engines for the training corpus, each with exact word timings.

| engine   | voices                                                    | word timings from              |
|----------|-----------------------------------------------------------|--------------------------------|
| espeak   | 8 English accents x ~100 variants (espeakng-loader wheel) | espeak-ng word events (C API)  |
| festival | kal, ked, rab, don diphones; slt HTS; us1-3, en1 MBROLA   | festival Word word_start/end   |
| flite    | kal16, awb, rms, slt (+ kal 8 kHz)                        | flite segment end times (-psdur), aligned to the words' phonemes |
| mbrola   | us1, us2, us3, en1 driven by the system espeak-ng         | pocketsphinx forced alignment  |

Engines whose programs or voices are not installed are left out with a logged warning naming
what is missing (``available_engines``); ``scripts/install_train_deps.sh`` installs them.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from awesearch import tts
from awesearch.tts import SAMPLE_RATE, WordTiming

log = logging.getLogger(__name__)

ESPEAK_ACCENTS = ("en-us", "en", "en-gb-x-rp", "en-gb-scotland", "en-gb-x-gbclan", "en-gb-x-gbcwmd", "en-029", "en-us-nyc")
ESPEAK_BASE_WPM = 175  # espeak-ng words per minute at speed factor 1.0
FESTIVAL_VOICES = {  # corpus voice name -> (festival voice function, voice directory)
    "kal": ("voice_kal_diphone", "english/kal_diphone"),
    "ked": ("voice_ked_diphone", "english/ked_diphone"),
    "rab": ("voice_rab_diphone", "english/rab_diphone"),
    "don": ("voice_don_diphone", "english/don_diphone"),
    "slt_hts": ("voice_cmu_us_slt_arctic_hts", "us/cmu_us_slt_arctic_hts"),
    "us1_mbrola": ("voice_us1_mbrola", "english/us1_mbrola"),
    "us2_mbrola": ("voice_us2_mbrola", "english/us2_mbrola"),
    "us3_mbrola": ("voice_us3_mbrola", "english/us3_mbrola"),
    "en1_mbrola": ("voice_en1_mbrola", "english/en1_mbrola"),
}
FESTIVAL_VOICE_DIR = Path("/usr/share/festival/voices")
FLITE_VOICES = ("kal16", "awb", "rms", "slt", "kal")
FESTIVAL_TIMEOUT_S = 600  # seconds for one festival batch
FLITE_TIMEOUT_S = 60  # seconds for one flite call


@dataclass(frozen=True)
class Voice:
    engine: str  # "espeak" | "festival" | "flite"
    name: str  # the engine's voice: "en-us", "kal", "slt"
    variant: str = ""  # espeak-ng voice variant ("f3", "klatt", ...); "" for none

    @property
    def id(self) -> str:
        return f"{self.engine}:{self.name}:{self.variant}"

    @property
    def base(self) -> str:
        return f"{self.engine}:{self.name}"


@dataclass(frozen=True)
class Prosody:
    speed: float  # speaking-rate factor, 1.0 = the voice's default
    pitch: int  # espeak-ng pitch 0-100 (other engines: default pitch)
    pitch_range: int  # espeak-ng pitch range 0-100


@dataclass
class Request:
    text: str  # what the engine reads: words separated by spaces, optional , . ? punctuation
    words: list[str]  # the expected words (normalised, lowercase)
    phonemes: list[list[str]]  # ARPAbet of each expected word
    voice: Voice
    prosody: Prosody


@dataclass
class Spoken:
    audio: np.ndarray  # float32, SAMPLE_RATE
    words: list[WordTiming]  # one per expected word, in order
    timing_source: str  # "espeak-events" | "festival-words" | "flite-segments"


class EngineError(RuntimeError):
    """An engine could not speak a request (the corpus builder skips that utterance)."""


def _word_key(word: str) -> str:
    return re.sub(r"[^a-z']", "", word.lower())


def _check_words(got: list[WordTiming], expected: list[str], engine: str) -> list[WordTiming]:
    merged: list[WordTiming] = []
    for w in got:  # festival splits clitics: "let's" -> "let" "'s"
        if merged and w.word.startswith("'"):
            merged[-1] = WordTiming(merged[-1].word + w.word, merged[-1].start, w.end)
        else:
            merged.append(w)
    got = merged
    if [_word_key(w.word) for w in got] != [_word_key(w) for w in expected]:
        raise EngineError(f"{engine} words {[w.word for w in got]} != expected {expected}")
    return [WordTiming(e, w.start, w.end) for w, e in zip(got, expected)]


class EspeakSynth:
    name = "espeak"

    def voices(self) -> list[Voice]:
        return [Voice("espeak", accent, variant) for accent in ESPEAK_ACCENTS for variant in [""] + tts.list_variants()]

    def speak(self, requests: list[Request]) -> list[Spoken | EngineError]:
        out: list[Spoken | EngineError] = []
        for r in requests:
            try:
                s = tts.synthesize(
                    r.text, voice=r.voice.name, rate=int(round(ESPEAK_BASE_WPM * r.prosody.speed)),
                    pitch=r.prosody.pitch, pitch_range=r.prosody.pitch_range, variant=r.voice.variant or None,
                )
                out.append(Spoken(s.audio, _check_words(s.words, r.words, "espeak"), "espeak-events"))
            except (EngineError, tts.SynthesisError) as exc:
                out.append(EngineError(str(exc)))
        return out


def festival_pitch_factor(pitch: int) -> float:
    """espeak-style pitch 0-100 (50 = default) -> factor on festival's target F0 mean (0.71-1.41)."""
    return 2 ** ((pitch - 50) / 100)


def _scheme_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


class FestivalSynth:
    """One ``festival --batch`` process per batch of requests; word_start/word_end per Word item."""

    name = "festival"

    def __init__(self, voice_names: list[str]) -> None:
        self.voice_names = voice_names

    def voices(self) -> list[Voice]:
        return [Voice("festival", v) for v in self.voice_names]

    def speak(self, requests: list[Request]) -> list[Spoken | EngineError]:
        with tempfile.TemporaryDirectory(prefix="awe-festival-") as tmp:
            lines = ["(Parameter.set 'Audio_Method 'none)"]
            for i, r in enumerate(requests):
                wav = os.path.join(tmp, f"{i}.wav")
                lines += [
                    f"({FESTIVAL_VOICES[r.voice.name][0]})",
                    f"(Parameter.set 'Duration_Stretch {1.0 / r.prosody.speed:.3f})",
                    # pitch: scale the voice's target F0 mean (diphone and MBROLA voices; HTS ignores it)
                    "(if (and (boundp 'int_lr_params) (assoc 'target_f0_mean int_lr_params)) (set! int_lr_params "
                    f"(cons (list 'target_f0_mean (* {festival_pitch_factor(r.prosody.pitch):.3f} "
                    "(car (cdr (assoc 'target_f0_mean int_lr_params))))) int_lr_params)))",
                    f"(set! utt (SynthText {_scheme_string(r.text)}))",
                    f"(utt.save.wave utt {_scheme_string(wav)} 'riff)",
                    f'(format t "UTT {i}\\n")',
                    "(mapcar (lambda (w) (format t \"W %s %f %f\\n\" (item.name w) "
                    "(item.feat w \"word_start\") (item.feat w \"word_end\"))) (utt.relation.items utt 'Word))",
                ]
            script = os.path.join(tmp, "batch.scm")
            Path(script).write_text("\n".join(lines) + "\n")
            proc = subprocess.run(["festival", "--batch", script], capture_output=True, text=True, timeout=FESTIVAL_TIMEOUT_S)
            timings: dict[int, list[WordTiming]] = {}
            current = -1
            for line in proc.stdout.splitlines():
                parts = line.split()
                if len(parts) == 2 and parts[0] == "UTT":
                    current = int(parts[1])
                    timings[current] = []
                elif len(parts) == 4 and parts[0] == "W" and current >= 0:
                    timings[current].append(WordTiming(parts[1], float(parts[2]), float(parts[3])))
            out: list[Spoken | EngineError] = []
            for i, r in enumerate(requests):
                wav = os.path.join(tmp, f"{i}.wav")
                if i not in timings or not os.path.exists(wav):
                    out.append(EngineError(f"festival failed on {r.text!r}: {proc.stderr.strip()[-200:]}"))
                    continue
                audio, sr = sf.read(wav, dtype="float32")
                try:
                    out.append(Spoken(tts.resample(audio, sr, SAMPLE_RATE), _check_words(timings[i], r.words, "festival"), "festival-words"))
                except EngineError as exc:
                    out.append(exc)
        return out


def align_phones_to_words(word_phones: list[list[str]], phones: list[str]) -> list[tuple[int, int]] | None:
    """Levenshtein-align produced phones (pauses removed) to the expected words' phones.
    Returns, per word, the [first, last] index into ``phones`` it owns, or None if a word gets none."""
    expected = [(w, p) for w, ps in enumerate(word_phones) for p in ps]
    n, m = len(expected), len(phones)
    cost = np.zeros((n + 1, m + 1), dtype=np.int32)
    cost[:, 0] = np.arange(n + 1)
    cost[0, :] = np.arange(m + 1)
    for i in range(1, n + 1):
        for j in range(1, m + 1):
            sub = cost[i - 1, j - 1] + (expected[i - 1][1] != phones[j - 1])
            cost[i, j] = min(sub, cost[i - 1, j] + 1, cost[i, j - 1] + 1)
    owner = [-1] * m
    i, j = n, m
    while i > 0 and j > 0:
        if cost[i, j] == cost[i - 1, j - 1] + (expected[i - 1][1] != phones[j - 1]):
            owner[j - 1] = expected[i - 1][0]
            i, j = i - 1, j - 1
        elif cost[i, j] == cost[i, j - 1] + 1:
            owner[j - 1] = expected[min(i, n) - 1][0] if i > 0 else 0  # inserted phone: the word being read
            j -= 1
        else:
            i -= 1
    while j > 0:
        owner[j - 1] = 0
        j -= 1
    spans: list[tuple[int, int]] = []
    for w in range(len(word_phones)):
        idx = [k for k, o in enumerate(owner) if o == w]
        if not idx:
            return None
        spans.append((idx[0], idx[-1]))
    return spans


class PocketsphinxAligner:
    """Forced alignment of known words to audio with pocketsphinx (US English model, offline).
    For engines without their own word timings."""

    FRAME_S = 0.01  # seconds per pocketsphinx frame
    PAD_S = 0.2  # seconds of silence added around the audio while aligning

    def __init__(self) -> None:
        from pocketsphinx import Decoder

        self._dec = Decoder(samprate=SAMPLE_RATE, lm=None, loglevel="FATAL")
        self._known: set[str] = set()

    def align(self, audio: np.ndarray, words: list[str], phonemes: list[list[str]]) -> list[WordTiming]:
        for w, p in zip(words, phonemes):
            if w not in self._known:
                if self._dec.lookup_word(w) is None:
                    self._dec.add_word(w, " ".join(p), True)
                self._known.add(w)
        self._dec.set_align_text(" ".join(words))
        pad = np.zeros(int(self.PAD_S * SAMPLE_RATE), np.float32)  # leading/trailing silence helps short inputs
        self._dec.start_utt()
        self._dec.process_raw((np.clip(np.concatenate([pad, audio, pad]), -1, 1) * 32767).astype(np.int16).tobytes(), False, True)
        self._dec.end_utt()
        segments = self._dec.seg() if self._dec.hyp() is not None else None
        if segments is None:
            raise EngineError(f"pocketsphinx could not align {' '.join(words)!r}")
        got = [
            WordTiming(seg.word.split("(")[0], max(0.0, seg.start_frame * self.FRAME_S - self.PAD_S),
                       min(len(audio) / SAMPLE_RATE, (seg.end_frame + 1) * self.FRAME_S - self.PAD_S))
            for seg in segments
            if seg.word not in ("<s>", "</s>", "<sil>", "(NULL)") and not seg.word.startswith("+")
        ]
        return _check_words(got, words, "pocketsphinx")


class EspeakMbrolaSynth:
    """MBROLA voices (us1, us2, us3, en1) driven by the system espeak-ng (Debian libespeak-ng1 +
    mbrola packages). espeak-ng gives no word events with MBROLA, so words are force-aligned."""

    name = "mbrola"
    LIBRARY = "/usr/lib/x86_64-linux-gnu/libespeak-ng.so.1"
    DATA = "/usr/lib/x86_64-linux-gnu/espeak-ng-data"
    VOICES = ("mb-us1", "mb-us2", "mb-us3", "mb-en1")
    MBROLA_DIR = Path("/usr/share/mbrola")

    def __init__(self, voice_names: list[str]) -> None:
        self.voice_names = voice_names
        self._engine: tts.EspeakEngine | None = None
        self._aligner: PocketsphinxAligner | None = None

    def voices(self) -> list[Voice]:
        return [Voice("mbrola", v) for v in self.voice_names]

    def speak(self, requests: list[Request]) -> list[Spoken | EngineError]:
        if self._engine is None:
            self._engine = tts.EspeakEngine(self.LIBRARY, self.DATA)
            self._aligner = PocketsphinxAligner()
        out: list[Spoken | EngineError] = []
        for r in requests:
            try:
                s = self._engine.synthesize(r.text, r.voice.name, int(round(ESPEAK_BASE_WPM * r.prosody.speed)),
                                            r.prosody.pitch, r.prosody.pitch_range, None)
                out.append(Spoken(s.audio, self._aligner.align(s.audio, r.words, r.phonemes), "pocketsphinx-align"))
            except (EngineError, tts.SynthesisError, RuntimeError) as exc:
                out.append(EngineError(str(exc)))
        return out


_FLITE_PHONE_MAP = {"ax": "AH", "pau": "pau"}


class FliteSynth:
    """``flite -psdur``: segment end times, assigned to words by aligning to their phonemes."""

    name = "flite"

    def __init__(self, voice_names: list[str]) -> None:
        self.voice_names = voice_names

    def voices(self) -> list[Voice]:
        return [Voice("flite", v) for v in self.voice_names]

    def _speak_one(self, r: Request, tmp: str) -> Spoken:
        wav = os.path.join(tmp, "out.wav")
        cmd = ["flite", "-voice", r.voice.name, "--setf", f"duration_stretch={1.0 / r.prosody.speed:.3f}", "-psdur", "-t", r.text, "-o", wav]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=FLITE_TIMEOUT_S)
        if proc.returncode != 0 or not os.path.exists(wav):
            raise EngineError(f"flite failed on {r.text!r}: {proc.stderr.strip()[-200:]}")
        segs = []
        prev_end = 0.0
        for item in proc.stdout.split():
            phone, _, end = item.rpartition(":")
            segs.append((_FLITE_PHONE_MAP.get(phone, phone.upper()), prev_end, float(end)))
            prev_end = float(end)
        speech = [s for s in segs if s[0] != "pau"]
        spans = align_phones_to_words(r.phonemes, [s[0] for s in speech])
        if spans is None:
            raise EngineError(f"flite phones do not cover every word of {r.text!r}")
        words = [WordTiming(w, speech[a][1], speech[b][2]) for w, (a, b) in zip(r.words, spans)]
        audio, sr = sf.read(wav, dtype="float32")
        return Spoken(tts.resample(audio, sr, SAMPLE_RATE), words, "flite-segments")

    def speak(self, requests: list[Request]) -> list[Spoken | EngineError]:
        out: list[Spoken | EngineError] = []
        with tempfile.TemporaryDirectory(prefix="awe-flite-") as tmp:
            for r in requests:
                try:
                    out.append(self._speak_one(r, tmp))
                except (EngineError, subprocess.TimeoutExpired, ValueError) as exc:
                    out.append(EngineError(str(exc)))
        return out


Engine = EspeakSynth | FestivalSynth | FliteSynth | EspeakMbrolaSynth


def available_engines(wanted: tuple[str, ...] = ("espeak", "festival", "flite", "mbrola")) -> dict[str, Engine]:
    """The engines (with the voices) installed here. Logs a warning naming whatever is missing."""
    engines: dict[str, Engine] = {}
    if "espeak" in wanted:
        engines["espeak"] = EspeakSynth()
    if "festival" in wanted:
        if shutil.which("festival") is None:
            log.warning("festival not installed: skipping all festival voices (run scripts/install_train_deps.sh)")
        else:
            have = [v for v, (_, d) in FESTIVAL_VOICES.items() if (FESTIVAL_VOICE_DIR / d).is_dir()]
            missing = sorted(set(FESTIVAL_VOICES) - set(have))
            if any(v.endswith("_mbrola") for v in have) and shutil.which("mbrola") is None:
                missing += [v for v in have if v.endswith("_mbrola")]
                have = [v for v in have if not v.endswith("_mbrola")]
            if missing:
                log.warning("festival voices not installed, skipped: %s", ", ".join(missing))
            if have:
                engines["festival"] = FestivalSynth(have)
    if "flite" in wanted:
        if shutil.which("flite") is None:
            log.warning("flite not installed: skipping flite voices %s", ", ".join(FLITE_VOICES))
        else:
            listed = subprocess.run(["flite", "-lv"], capture_output=True, text=True).stdout.split()
            have = [v for v in FLITE_VOICES if v in listed]
            if len(have) < len(FLITE_VOICES):
                log.warning("flite voices missing, skipped: %s", ", ".join(sorted(set(FLITE_VOICES) - set(have))))
            if have:
                engines["flite"] = FliteSynth(have)
    if "mbrola" in wanted:
        have = [v for v in EspeakMbrolaSynth.VOICES if (EspeakMbrolaSynth.MBROLA_DIR / v[3:]).is_dir()]
        if not Path(EspeakMbrolaSynth.LIBRARY).exists() or shutil.which("mbrola") is None:
            log.warning("espeak-ng MBROLA voices skipped: system libespeak-ng1 or mbrola not installed")
        elif importlib.util.find_spec("pocketsphinx") is None:
            log.warning("espeak-ng MBROLA voices skipped: pocketsphinx (their word aligner) not installed")
        elif not have:
            log.warning("espeak-ng MBROLA voices skipped: no mbrola-us1/us2/us3/en1 package installed")
        else:
            if len(have) < len(EspeakMbrolaSynth.VOICES):
                log.warning("MBROLA voices missing, skipped: %s", ", ".join(sorted(set(EspeakMbrolaSynth.VOICES) - set(have))))
            engines["mbrola"] = EspeakMbrolaSynth(have)
    return engines
