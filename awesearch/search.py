"""Query engine: text, audio (query by example, one or several examples) and fused queries, NMS, hits.

First stage: FAISS over the window embeddings (cosine similarity of L2-normalised vectors). A fused
query (text and audio together) uses the mean of the query vectors; several audio examples form one
prototype the same way (metric-learning user-defined KWS).

Second stage (indexes with a phonetic store, i.e. the Whisper front end): every candidate region is
re-scored by aligning the query's phonemes to the stored phonetic frames (awesearch/detect.py), and the
score a hit shows is the calibrated probability that the query is spoken there (0..1, comparable across
queries). Then `threshold` defaults to DEFAULT_THRESHOLD and `k` is a cap (DEFAULT_CAP): the output is a
list of detections. An index without a phonetic store (the mel and random encoders) shows cosine
similarities, top UNCALIBRATED_TOP by default, and says so (`SearchEngine.calibrated` is False).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from awesearch.errors import IndexFormatError, QueryError
from awesearch.window_table import WindowTable  # noqa: F401 - the store builds it; search reads it

MAX_QUERY_WORDS = 4
MIN_AUDIO_QUERY_S = 0.1
MAX_AUDIO_QUERY_S = 3.0  # seconds of query speech; indexed windows are at most 2.0 s (one to four words)
MAX_WHOLE_FILE_S = 30.0  # a whole-file audio query (no --start/--end) must be a short clip
SILENCE_RMS = 1e-4  # float32 full scale is 1.0; ~-80 dBFS counts as silence
NMS_OVERLAP = 0.3  # a window overlapping a better hit by more than this share of the shorter one is dropped
POOL_FACTOR = 20  # FAISS candidates per wanted hit before NMS
POOL_EXTRA = 100
DEFAULT_THRESHOLD = 0.5  # probability: a hit is shown when it is more likely spoken there than not
DEFAULT_CAP = 100  # hits per query at most by default (calibrated indexes)
UNCALIBRATED_TOP = 10  # hits per query by default when scores are uncalibrated cosines
MAX_PRONUNCIATIONS = 4  # pronunciation variants of a text query aligned (the best one counts)
WITHIN_DEPTH = 10  # cosine-only indexes with a recording filter: first-stage hits fetched per hit wanted


@dataclass(frozen=True)
class Hit:
    path: str  # absolute path of the recording
    start: float  # seconds from the start of the file
    end: float  # seconds
    score: float  # cosine similarity, higher is better

    def to_dict(self) -> dict:
        return {"path": self.path, "start": self.start, "end": self.end, "score": self.score}


@dataclass(frozen=True)
class AudioSpan:
    """One audio example: a clip, or the span start..end seconds of a file."""

    path: str | Path
    start: float | None = None
    end: float | None = None


def overlaps_too_much(a_start: float, a_end: float, b_start: float, b_end: float, overlap: float = NMS_OVERLAP) -> bool:
    """True when window a is a duplicate of the (better) window b.

    Duplicate: the intersection exceeds `overlap` of the shorter window, or a's center lies inside b.
    """
    inter = min(a_end, b_end) - max(a_start, b_start)
    if inter <= 0:
        return False
    shorter = min(a_end - a_start, b_end - b_start)
    if shorter <= 0 or inter > overlap * shorter:
        return True
    center = (a_start + a_end) / 2
    return b_start <= center <= b_end


def nms(hits: list[Hit], k: int | None = None, overlap: float = NMS_OVERLAP) -> list[Hit]:
    """Greedy non-maximum suppression per file: keep the best hit of each spoken occurrence.

    Returns the survivors best first (at most k when k is given).
    """
    kept: list[Hit] = []
    kept_by_path: dict[str, list[Hit]] = {}
    for hit in sorted(hits, key=lambda h: (-h.score, h.path, h.start)):
        same_file = kept_by_path.setdefault(hit.path, [])
        if any(overlaps_too_much(hit.start, hit.end, b.start, b.end, overlap) for b in same_file):
            continue
        same_file.append(hit)
        kept.append(hit)
        if k is not None and len(kept) >= k:
            break
    return kept


def search_vector(table: WindowTable, query: np.ndarray, k: int, threshold: float | None = None) -> list[Hit]:
    """Top-k distinct hits for one query vector (see search_vectors)."""
    return search_vectors(table, np.asarray(query).reshape(1, -1), k, threshold)[0]


def search_vectors(table: WindowTable, queries: np.ndarray, k: int, threshold: float | None = None) -> list[list[Hit]]:
    """Top-k distinct hits for each query vector [m, D]: FAISS candidate pool, threshold, NMS.

    The pool starts at POOL_FACTOR * k + POOL_EXTRA; for a query whose NMS leaves fewer than k hits while the
    pool's worst score still passes the threshold, the pool doubles, so k distinct hits survive when they exist.
    All queries share one FAISS call per round (FAISS parallelises over queries, not within one).
    """
    if k < 1:
        raise QueryError(f"--top must be at least 1, got {k}")
    q = np.ascontiguousarray(np.asarray(queries, dtype=np.float32))
    if q.ndim != 2 or q.shape[1] != table.index.d:
        raise IndexFormatError(f"query vectors have shape {q.shape} but the index has dimension {table.index.d}")
    n = table.index.ntotal
    results: list[list[Hit]] = [[] for _ in range(len(q))]
    if n == 0:
        return results
    todo = list(range(len(q)))
    pool = min(n, POOL_FACTOR * k + POOL_EXTRA)
    while todo:
        scores, ids = table.index.search(q[todo], pool)
        unresolved = []
        for row, qi in enumerate(todo):
            valid = ids[row] >= 0
            sc, ix = scores[row][valid], ids[row][valid]
            passing = sc >= threshold if threshold is not None else np.ones(len(ix), bool)
            hits = [
                Hit(path=table.paths[int(table.file_ids[i])], start=float(table.starts[i]), end=float(table.ends[i]), score=float(v))
                for i, v in zip(ix[passing], sc[passing])
            ]
            results[qi] = nms(hits, k)
            if len(results[qi]) < k and pool < n and passing.all():
                unresolved.append(qi)
        todo = unresolved
        pool = min(n, pool * 2)
    return results


def check_text(text: str) -> list[str]:
    """Normalised words of a text query (one to four); QueryError when unusable."""
    from awesearch.text import normalize

    words = normalize(text)
    if not words:
        raise QueryError(f"text query {text!r} has no words")
    if len(words) > MAX_QUERY_WORDS:
        raise QueryError(
            f"text query {text!r} has {len(words)} words; queries are one to {MAX_QUERY_WORDS} words"
        )
    return words


def check_audio(samples: np.ndarray, sample_rate: int, what: str) -> None:
    """QueryError when a query span is too short or silent."""
    duration = len(samples) / sample_rate
    if duration < MIN_AUDIO_QUERY_S:
        raise QueryError(f"audio query {what} is {duration:.3f} s long; it must be at least {MIN_AUDIO_QUERY_S} s")
    rms = float(np.sqrt(np.mean(np.square(samples, dtype=np.float64))))
    if not math.isfinite(rms) or rms < SILENCE_RMS:
        raise QueryError(f"audio query {what} is silent (RMS {rms:.1e})")


def check_span(path: str | Path, start: float | None, end: float | None) -> None:
    """QueryError for an audio query that cannot be valid whatever the file holds."""
    if (start is None) != (end is None):
        raise QueryError("--start and --end go together (or give neither to use the whole clip)")
    if start is not None and start < 0:
        raise QueryError(f"--start must be >= 0, got {start}")
    if start is not None and start >= end:
        raise QueryError(f"--start ({start}) must be before --end ({end})")
    if start is not None and end - start > MAX_AUDIO_QUERY_S:
        raise QueryError(
            f"audio query span is {end - start:.2f} s; query by example takes one to four words (at most {MAX_AUDIO_QUERY_S} s)"
        )
    if not Path(path).exists():
        raise QueryError(f"audio query file not found: {path}")


def audio_spans(paths: list, starts: list, ends: list) -> list[AudioSpan]:
    """--audio / --start / --end lists -> examples; --start/--end are given for every example or for none."""
    if not paths and (starts or ends):
        raise QueryError("--start/--end need --audio")
    if len(starts) != len(ends):
        raise QueryError("--start and --end go together (or give neither to use the whole clip)")
    if starts and len(starts) != len(paths):
        raise QueryError(f"{len(paths)} --audio examples but {len(starts)} --start/--end pairs: give one pair per example, or none")
    spans = [AudioSpan(p, starts[i] if starts else None, ends[i] if ends else None) for i, p in enumerate(paths)]
    for s in spans:
        check_span(s.path, s.start, s.end)
    return spans


def read_queries(path: str | Path) -> list[str]:
    """Text queries of a --queries file, one per line; blank lines and #comments ignored; all validated."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise QueryError(f"cannot read queries file {path}: {getattr(e, 'strerror', None) or e}") from None
    out = []
    for lineno, line in enumerate(lines, 1):
        q = line.strip()
        if not q or q.startswith("#"):
            continue
        try:
            check_text(q)
        except QueryError as e:
            raise QueryError(f"{path} line {lineno}: {e}") from None
        out.append(q)
    if not out:
        raise QueryError(f"{path} has no queries")
    return out


def query_kind(text: str | None, words: list[str] | None = None) -> str:
    """The calibration model of a query (awesearch/calibrate.py KINDS): "audio" (by example), "name" (a word
    CMUdict does not know: its pronunciation is g2p's guess), "short" (at most SHORT_PHONEMES phonemes) or "text".
    `words`: the text's normalised words when the caller has them already (check_text)."""
    if text is None:
        return "audio"
    from awesearch.calibrate import SHORT_PHONEMES
    from awesearch.g2p import cmu_lexicon
    from awesearch.text import word_phonemes

    cmu = cmu_lexicon()
    words = check_text(text) if words is None else words
    if any(w not in cmu for w in words):
        return "name"
    return "short" if sum(len(word_phonemes(w)) for w in words) <= SHORT_PHONEMES else "text"


def format_time(seconds: float) -> str:
    """h:mm:ss.s, e.g. 0:01:02.5."""
    tenths = int(round(seconds * 10))
    h, rest = divmod(tenths, 36000)
    m, rest = divmod(rest, 600)
    return f"{h}:{m:02d}:{rest / 10:04.1f}"


class SearchEngine:
    """Loads an index, its encoder and (when the index has one) its phoneme head once, then answers queries."""

    def __init__(self, table: WindowTable, encoder, phone=None, calibration=None) -> None:
        if table.index.d != encoder.dim:
            raise IndexFormatError(
                f"index vectors have dimension {table.index.d} but encoder {encoder.name} gives {encoder.dim}"
            )
        self.table = table
        self.encoder = encoder
        self.phone = phone
        self.detector = None
        if phone is not None and calibration is not None and table.phon_paths is not None:
            from awesearch.detect import Detector

            self.detector = Detector(table, calibration, getattr(phone, "confusion", None))

    @classmethod
    def open(cls, index_dir: str | Path) -> "SearchEngine":
        """Open an index read-only and load the encoder (and phoneme head, calibration) its manifest names."""
        from awesearch.errors import CheckpointError
        from awesearch.store import open_for_search

        try:
            table, encoder, phone = open_for_search(Path(index_dir))
            calibration = None
            if phone is not None:
                from awesearch.calibrate import load_calibration

                calibration = load_calibration()
        except CheckpointError as e:
            raise CheckpointError(f"cannot load the models that index {index_dir} was built with: {e}") from None
        return cls(table, encoder, phone, calibration)

    @property
    def calibrated(self) -> bool:
        """True when scores are calibrated probabilities (second stage available)."""
        return self.detector is not None

    def limits(self, k: int | None, threshold: float | None) -> tuple[int, float | None]:
        """The effective (cap, threshold) of a query; QueryError when out of range."""
        if self.calibrated:
            k = DEFAULT_CAP if k is None else k
            threshold = DEFAULT_THRESHOLD if threshold is None else threshold
            if not (0.0 <= threshold <= 1.0):
                raise QueryError(f"--threshold is a probability between 0 and 1, got {threshold}")
        else:
            k = UNCALIBRATED_TOP if k is None else k
        if k < 1:
            raise QueryError(f"--top must be at least 1, got {k}")
        return k, threshold

    # -- query vectors -----------------------------------------------------------------

    def text_vector(self, text: str) -> np.ndarray:
        from awesearch.text import text_to_phonemes

        check_text(text)
        return self.encoder.embed_phonemes([text_to_phonemes(text)])[0]

    def audio_vector(self, path: str | Path, start: float | None = None, end: float | None = None) -> np.ndarray:
        """Embed the span start..end of a file as one window, with encoder context either side."""
        return self._embed_example(AudioSpan(path, start, end), decode=False)[0]

    def _embed_example(self, span: AudioSpan, decode: bool) -> tuple[np.ndarray, list[list[int]] | None]:
        """(window vector, CTC targets heard by the phoneme head: best path first, then one-phoneme variants;
        or None) of one audio example.

        Without start/end the file is a short clip (at most MAX_WHOLE_FILE_S) and the span is its speech:
        from the start of the first to the end of the last VAD region, as the indexer's windows are cut.
        """
        from awesearch.audio import SAMPLE_RATE, load_audio, probe_duration

        path, start, end = Path(span.path), span.start, span.end
        check_span(path, start, end)
        if start is None:
            start, end = self._speech_span(path)
        what = f"{path} [{start:.2f}..{end:.2f} s]"
        ctx = float(self.encoder.context_s)
        # Start decoding on the encoder's frame grid (indexed chunks start on it too), so the query's
        # frames line up with the indexed ones and an archived clip embeds (almost) exactly as indexed.
        frame_s = 1.0 / self.encoder.frame_rate
        load_start = max(0.0, math.floor((start - ctx) / frame_s + 1e-6) * frame_s)
        audio = load_audio(path, load_start, end + ctx)
        available_end = load_start + len(audio) / SAMPLE_RATE  # the file may end before `end`
        if start >= available_end:
            raise QueryError(f"--start ({start}) is past the end of {path} ({probe_duration(path):.2f} s long)")
        end = min(end, available_end)
        lo = int(round((start - load_start) * SAMPLE_RATE))
        hi = int(round((end - load_start) * SAMPLE_RATE))
        check_audio(audio[lo:hi], SAMPLE_RATE, what)
        window = np.array([[start - load_start, end - load_start]], dtype=np.float64)
        frames, inputs = self.encoder.encode_frames_and_inputs(audio)
        vector = self.encoder.pool_windows(frames, window)[0]
        if not decode or self.phone is None:
            return vector, None
        from awesearch.phonetic import FRAME_RATE, example_targets

        logp = self.phone.log_posteriors(inputs[0])
        f_lo, f_hi = int(window[0, 0] * FRAME_RATE), int(math.ceil(window[0, 1] * FRAME_RATE))
        targets = example_targets(logp[f_lo:f_hi])
        if not targets:
            raise QueryError(f"audio query {what}: the phoneme recogniser heard no speech sounds in it; choose a clearer example")
        return vector, targets

    @staticmethod
    def _speech_span(path: Path) -> tuple[float, float]:
        """(start, end) seconds of the speech in a short clip; QueryError if it is long, silent or too much speech."""
        from awesearch.audio import SAMPLE_RATE, load_audio, probe_duration
        from awesearch.vad import speech_regions

        duration = probe_duration(path)
        if duration > MAX_WHOLE_FILE_S:
            raise QueryError(
                f"{path} is {duration:.1f} s long; give --start and --end around the word to search for"
            )
        audio = load_audio(path)
        check_audio(audio, SAMPLE_RATE, str(path))
        regions = speech_regions(audio)
        if not regions:
            raise QueryError(f"audio query {path} has no speech (voice activity detection found none)")
        start, end = regions[0][0], regions[-1][1]
        if end - start > MAX_AUDIO_QUERY_S:
            raise QueryError(
                f"{path} holds {end - start:.2f} s of speech; query by example takes one to four words "
                f"(at most {MAX_AUDIO_QUERY_S} s): give --start and --end"
            )
        return start, end

    # -- searches ------------------------------------------------------------------------

    def search_text(self, text: str, k: int | None = None, threshold: float | None = None) -> list[Hit]:
        return self.search(text=text, k=k, threshold=threshold)

    def search_texts(self, texts: list[str], k: int | None = None, threshold: float | None = None) -> list[list[Hit]]:
        """Many text queries (the --queries path): first stage only, one embedding batch and one FAISS call;
        with the second stage, one detection per query."""
        from awesearch.text import text_to_phonemes

        if not texts:
            return []
        for text in texts:
            check_text(text)
        if self.calibrated:
            return [self.search(text=t, k=k, threshold=threshold) for t in texts]
        k, threshold = self.limits(k, threshold)
        vectors = self.encoder.embed_phonemes([text_to_phonemes(t) for t in texts])
        return search_vectors(self.table, vectors, k, threshold)

    def search_audio(self, path: str | Path, start: float | None = None, end: float | None = None,
                     k: int | None = None, threshold: float | None = None) -> list[Hit]:
        return self.search(audio=path, start=start, end=end, k=k, threshold=threshold)

    def search(
        self,
        text: str | None = None,
        audio: "str | Path | list[AudioSpan] | None" = None,
        start: float | None = None,
        end: float | None = None,
        k: int | None = None,
        threshold: float | None = None,
        within: str | Path | None = None,
    ) -> list[Hit]:
        """Text, audio (a path with optional start/end, or a list of AudioSpan examples), or both fused.

        First stage: the mean of the query vectors. Second stage (calibrated indexes): the text's phonemes
        when there is text, else each example's decoded phonemes (their evidence averaged). `within`: only
        hits in that recording or in recordings under that folder (QueryError when the index has none)."""
        if text is None and not audio:
            raise QueryError("give a text query, an audio query, or both")
        if isinstance(audio, (str, Path)):
            examples = [AudioSpan(audio, start, end)]
        else:
            if start is not None or end is not None:
                raise QueryError("--start/--end need an audio query (--audio)")
            examples = list(audio or [])
        k, threshold = self.limits(k, threshold)
        keep = self._within(within)
        plan = self._plan(text, examples)
        if plan is None:  # no second stage: cosine scores
            vectors = ([self.text_vector(text)] if text is not None else []) + [self.audio_vector(e.path, e.start, e.end) for e in examples]
            # with a filter, a deeper first-stage list is cut down to the recordings asked for
            hits = search_vector(self.table, np.mean(np.stack(vectors), axis=0).astype(np.float32), k if keep is None else WITHIN_DEPTH * k, threshold)
            return [h for h in hits if keep is None or h.path in keep][:k]
        found = self.detector.detect(plan, k, threshold)
        hits = [Hit(path=self.table.paths[c.file], start=c.start, end=c.end, score=c.probability) for c in found]
        return nms([h for h in hits if keep is None or h.path in keep], k)

    def _within(self, within: str | Path | None) -> set[str] | None:
        """Paths of the indexed recordings that are `within` or under it (None: no filter)."""
        if within is None:
            return None
        base = Path(within).expanduser().absolute()
        keep = {p for p in self.table.paths if Path(p) == base or Path(p).is_relative_to(base)}
        if not keep:
            raise QueryError(f"no indexed recording is {base} or under it")
        return keep

    def _plan(self, text: str | None, examples: list[AudioSpan]):
        """The detector's QueryPlan, or None without a second stage."""
        if not self.calibrated:
            return None
        from awesearch.detect import QueryPlan, phrase_widening
        from awesearch.phonetic import word_targets
        from awesearch.text import pronunciations

        vectors, widen, targets = [], [], []
        if text is not None:
            words = check_text(text)
            prons = [[p for p in pronunciations(w) if p] for w in words]
            if any(not p for p in prons):
                raise QueryError(f"text query {text!r} has a word without letters to pronounce")
            first = [p[0] for p in prons]
            alternatives = [first]
            for i, p in enumerate(prons):  # other pronunciations, one word at a time
                alternatives += [first[:i] + [v] + first[i + 1 :] for v in p[1:]]
            targets.append([word_targets(a) for a in alternatives[:MAX_PRONUNCIATIONS]])
            vectors.append(self.encoder.embed_phonemes([sum(first, [])])[0])
            if len(words) > 1:
                i, around = phrase_widening(first)
                rare = self.encoder.embed_phonemes([first[i]])[0]
        embedded = [self._embed_example(e, decode=text is None) for e in examples]
        if text is None:
            targets = [t for _, t in embedded]  # one group per example: its n-best targets
        query = np.mean(np.stack(vectors + [v for v, _ in embedded]), axis=0).astype(np.float32)
        plan_vectors, widen = [query], [(0.0, 0.0)]
        if text is not None and len(words) > 1:
            plan_vectors.append(rare)
            widen.append(around)
        return QueryPlan(plan_vectors, widen, targets, query_kind(text, words if text is not None else None))
