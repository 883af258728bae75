"""espeak-ng speech synthesis with word timings, through ctypes on the library that the
``espeakng-loader`` wheel ships (libespeak-ng plus its data; no system package needed).

``synthesize("hello world")`` returns 16 kHz float32 audio and one ``WordTiming`` per word:
the start comes from espeak-ng's own word event (``espeakEVENT_WORD.audio_position``), the end
is the next word's start (or the end of the clause), pulled back over trailing silence by an
energy threshold. The library keeps global state, so one process-wide engine serves every call
under a lock; calling repeatedly (and from several threads) is safe.

A second engine can be opened on another libespeak-ng build (e.g. Debian's, whose data has the
MBROLA voices ``mb-us1`` ...): ``EspeakEngine(library=..., data_dir=...)``. Only one engine per
library file can exist in a process.
"""

from __future__ import annotations

import ctypes
import functools
import math
import re
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from awesearch.errors import AwesearchError

SAMPLE_RATE = 16000  # Hz, what every Synthesis carries
ESPEAK_BUFFER_MS = 200  # ms of audio per synth callback
TRIM_FRAME_S = 0.010  # seconds, frame of the energy trimmer
TRIM_THRESHOLD_DB = -40.0  # dB below the utterance's loudest frame counts as silence
TRIM_PAD_S = 0.020  # seconds kept after the last voiced frame of a word
RESAMPLE_ZEROS = 16  # sinc zero crossings each side of the resampling kernel
RESAMPLE_ROLLOFF = 0.945  # cutoff as a fraction of the lower Nyquist frequency

# espeak-ng C API constants (speak_lib.h)
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_POS_CHARACTER = 1
_CHARS_UTF8 = 1
_EVENT_LIST_TERMINATED, _EVENT_WORD, _EVENT_SENTENCE, _EVENT_END, _EVENT_MSG_TERMINATED = 0, 1, 2, 5, 6
_EVENT_SAMPLERATE = 8  # MBROLA voices switch the output rate (e.g. to 16000 Hz)
_PARAM_RATE, _PARAM_VOLUME, _PARAM_PITCH, _PARAM_RANGE = 1, 2, 3, 4
_EE_OK = 0
_INIT_DONT_EXIT = 0x8000
_OUTER_PUNCTUATION = ".,;:!?\"()[]{}'-"


class SynthesisError(AwesearchError):
    """espeak-ng could not be loaded or could not speak the request."""


@dataclass
class WordTiming:
    word: str  # the text of the word as written in the input
    start: float  # seconds
    end: float  # seconds


@dataclass
class Synthesis:
    audio: np.ndarray  # float32 mono in [-1, 1]
    sample_rate: int  # Hz
    words: list[WordTiming]


class _EventId(ctypes.Union):
    _fields_ = [("number", ctypes.c_int), ("name", ctypes.c_char_p), ("string", ctypes.c_char * 8)]


class _Event(ctypes.Structure):
    _fields_ = [
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),
        ("length", ctypes.c_int),
        ("audio_position", ctypes.c_int),
        ("sample", ctypes.c_int),
        ("user_data", ctypes.c_void_p),
        ("id", _EventId),
    ]


class _Voice(ctypes.Structure):
    _fields_ = [
        ("name", ctypes.c_char_p),
        ("languages", ctypes.c_char_p),
        ("identifier", ctypes.c_char_p),
        ("gender", ctypes.c_ubyte),
        ("age", ctypes.c_ubyte),
        ("variant", ctypes.c_ubyte),
        ("xx1", ctypes.c_ubyte),
        ("score", ctypes.c_int),
        ("spare", ctypes.c_void_p),
    ]


_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event))


@dataclass
class _RawWord:
    text_position: int  # 1-based character index into the input
    length: int  # characters
    start_ms: int


class EspeakEngine:
    """One initialised libespeak-ng. Use ``default_engine()`` for the bundled library."""

    def __init__(self, library: str, data_dir: str) -> None:
        try:
            self._lib = ctypes.CDLL(library)
        except OSError as exc:
            raise SynthesisError(f"cannot load espeak-ng library {library}: {exc}") from exc
        lib = self._lib
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_SetSynthCallback.argtypes = [_CALLBACK]
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_Synth.argtypes = [
            ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint,
            ctypes.c_uint, ctypes.POINTER(ctypes.c_uint), ctypes.c_void_p,
        ]
        lib.espeak_ListVoices.restype = ctypes.POINTER(ctypes.POINTER(_Voice))
        lib.espeak_ListVoices.argtypes = [ctypes.c_void_p]
        self.data_dir = data_dir
        self.native_rate = lib.espeak_Initialize(
            _AUDIO_OUTPUT_SYNCHRONOUS, ESPEAK_BUFFER_MS, str(Path(data_dir).parent).encode(), _INIT_DONT_EXIT
        )
        if self.native_rate <= 0:
            raise SynthesisError(f"espeak_Initialize failed for data {data_dir}")
        self._lock = threading.Lock()
        self._chunks: list[np.ndarray] = []
        self._words: list[_RawWord] = []
        self._ends_ms: list[int] = []
        self._rate = self.native_rate
        self._callback = _CALLBACK(self._on_audio)  # keep a reference: the C side holds a pointer
        lib.espeak_SetSynthCallback(self._callback)

    def _on_audio(self, wav, n_samples, events) -> int:
        if n_samples > 0:
            self._chunks.append(np.ctypeslib.as_array(wav, shape=(n_samples,)).copy())
        i = 0
        while events[i].type != _EVENT_LIST_TERMINATED:
            ev = events[i]
            if ev.type == _EVENT_WORD:
                self._words.append(_RawWord(ev.text_position, ev.length, ev.audio_position))
            elif ev.type in (_EVENT_END, _EVENT_MSG_TERMINATED):
                self._ends_ms.append(ev.audio_position)
            elif ev.type == _EVENT_SAMPLERATE:
                self._rate = ev.id.number
            i += 1
        return 0  # continue synthesis

    def list_voices(self) -> list[str]:
        """Identifiers of all voices in this engine's data (e.g. "gmw/en-US", "mb/mb-us1")."""
        with self._lock:
            table = self._lib.espeak_ListVoices(None)
            names = []
            i = 0
            while table[i]:
                names.append(table[i].contents.identifier.decode())
                i += 1
        return names

    def synthesize(self, text: str, voice: str, rate: int, pitch: int, pitch_range: int, variant: str | None) -> Synthesis:
        name = f"{voice}+{variant}" if variant else voice
        encoded = text.encode("utf-8") + b"\0"
        with self._lock:
            if self._lib.espeak_SetVoiceByName(name.encode()) != _EE_OK:
                raise SynthesisError(f"espeak-ng has no voice {name!r} (try en, en-us, en-029, en-gb-x-rp; see list_voices())")
            for param, value in ((_PARAM_RATE, rate), (_PARAM_PITCH, pitch), (_PARAM_RANGE, pitch_range), (_PARAM_VOLUME, 100)):
                self._lib.espeak_SetParameter(param, int(value), 0)
            self._chunks, self._words, self._ends_ms, self._rate = [], [], [], self.native_rate
            err = self._lib.espeak_Synth(encoded, len(encoded), 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None)
            chunks, raw_words, ends_ms, rate = self._chunks, self._words, self._ends_ms, self._rate
            self._chunks, self._words, self._ends_ms = [], [], []
        if err != _EE_OK:
            raise SynthesisError(f"espeak_Synth failed with code {err} for voice {name!r}")
        native = np.concatenate(chunks).astype(np.float32) / 32768.0 if chunks else np.zeros(0, np.float32)
        audio = resample(native, rate, SAMPLE_RATE)
        words = _word_timings(text, raw_words, ends_ms, audio)
        return Synthesis(audio=audio, sample_rate=SAMPLE_RATE, words=words)


def _tokens(text: str) -> list[tuple[int, int]]:
    """[start, end) character spans of the whitespace-separated tokens of ``text``."""
    return [(m.start(), m.end()) for m in re.finditer(r"\S+", text)]


def _word_timings(text: str, raw: list[_RawWord], ends_ms: list[int], audio: np.ndarray) -> list[WordTiming]:
    """Word events -> one [start, end] (seconds) per written token that was spoken.

    espeak-ng may emit several events inside one token ("mysql", "park's"); they are merged, so
    words are the input's whitespace-separated tokens (outer punctuation stripped). Each end is the
    next word's start (or the clause end), pulled back over trailing silence."""
    duration = len(audio) / SAMPLE_RATE
    energy_db = _frame_energy_db(audio)
    spans = _tokens(text)
    merged: list[tuple[int, float]] = []  # (token index, start seconds)
    for w in raw:
        pos = w.text_position - 1  # espeak counts characters from 1
        tok = next((i for i, (a, b) in enumerate(spans) if a <= pos < b), None)
        if tok is None or (merged and merged[-1][0] == tok):
            continue
        merged.append((tok, min(w.start_ms / 1000.0, duration)))
    out: list[WordTiming] = []
    for k, (tok, start) in enumerate(merged):
        limit = merged[k + 1][1] if k + 1 < len(merged) else duration
        clause_ends = [e / 1000.0 for e in ends_ms if start < e / 1000.0 < limit]
        limit = min([limit, duration] + clause_ends)
        end = _trim_end(energy_db, start, limit)
        a, b = spans[tok]
        word = text[a:b].strip(_OUTER_PUNCTUATION) or text[a:b]
        out.append(WordTiming(word=word, start=round(float(start), 4), end=round(float(end), 4)))
    return out


def _frame_energy_db(audio: np.ndarray) -> np.ndarray:
    """Energy of each TRIM_FRAME_S frame in dB relative to the loudest frame."""
    hop = int(TRIM_FRAME_S * SAMPLE_RATE)
    n = len(audio) // hop
    if n == 0:
        return np.full(1, -120.0)
    frames = audio[: n * hop].reshape(n, hop)
    power = (frames.astype(np.float64) ** 2).mean(axis=1) + 1e-12
    db = 10.0 * np.log10(power)
    return db - db.max()


def _trim_end(energy_db: np.ndarray, start: float, limit: float) -> float:
    """The last voiced frame in [start, limit) plus TRIM_PAD_S, never past limit; limit if none."""
    lo = int(start / TRIM_FRAME_S)
    hi = min(int(limit / TRIM_FRAME_S + 1e-6), len(energy_db))  # frames wholly before limit
    voiced = np.flatnonzero(energy_db[lo:hi] > TRIM_THRESHOLD_DB)
    if len(voiced) == 0:
        return limit
    return float(min(limit, (lo + voiced[-1] + 1) * TRIM_FRAME_S + TRIM_PAD_S))


@functools.lru_cache(maxsize=16)
def _sinc_kernel(orig: int, new: int) -> tuple[torch.Tensor, int]:
    """Polyphase windowed-sinc (Hann) kernel [new, 1, taps] for rates already divided by their gcd."""
    cutoff = min(orig, new) * RESAMPLE_ROLLOFF
    width = int(math.ceil(RESAMPLE_ZEROS * orig / cutoff))
    idx = torch.arange(-width, width + orig, dtype=torch.float64)[None, None] / orig
    t = torch.arange(0, -new, -1, dtype=torch.float64)[:, None, None] / new + idx
    t = (t * cutoff).clamp(-RESAMPLE_ZEROS, RESAMPLE_ZEROS)
    window = torch.cos(t * math.pi / RESAMPLE_ZEROS / 2) ** 2
    t = t * math.pi
    kernel = torch.where(t == 0, torch.tensor(1.0, dtype=torch.float64), torch.sin(t) / t)
    kernel = (kernel * window * cutoff / orig).to(torch.float32)
    return kernel, width


def resample(audio: np.ndarray, orig_rate: int, new_rate: int) -> np.ndarray:
    """Band-limited polyphase sinc resampling of mono float32 audio (torch conv1d, CPU)."""
    if orig_rate == new_rate or len(audio) == 0:
        return audio.astype(np.float32, copy=False)
    g = math.gcd(orig_rate, new_rate)
    orig, new = orig_rate // g, new_rate // g
    kernel, width = _sinc_kernel(orig, new)
    x = torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32))[None, None]
    x = torch.nn.functional.pad(x, (width, width + orig))
    with torch.no_grad():
        y = torch.nn.functional.conv1d(x, kernel, stride=orig)  # [1, new, frames]
    y = y.transpose(1, 2).reshape(-1)
    target = int(math.ceil(new * len(audio) / orig))
    return y[:target].numpy().astype(np.float32, copy=False)


@functools.lru_cache(maxsize=1)
def default_engine() -> EspeakEngine:
    """The process-wide engine on the espeakng-loader library and data."""
    import espeakng_loader

    return EspeakEngine(espeakng_loader.get_library_path(), espeakng_loader.get_data_path())


def list_voices() -> list[str]:
    """Voice identifiers of the bundled espeak-ng (``synthesize`` takes them, or a language like "en-us")."""
    return default_engine().list_voices()


def list_variants() -> list[str]:
    """Names of the bundled voice variants (``variant=`` of ``synthesize``, e.g. "f3", "m1", "klatt")."""
    return sorted(p.name for p in (Path(default_engine().data_dir) / "voices" / "!v").iterdir())


def synthesize(
    text: str, voice: str = "en-us", rate: int = 175, pitch: int = 50, pitch_range: int = 50, variant: str | None = None
) -> Synthesis:
    """Speak ``text`` with espeak-ng. rate: words per minute (80-450); pitch, pitch_range: 0-100;
    variant: a voice variant name (see ``list_variants()``). Returns 16 kHz audio and word timings."""
    if not text.strip():
        raise SynthesisError("nothing to synthesize: empty text")
    return default_engine().synthesize(text, voice, rate, pitch, pitch_range, variant)
