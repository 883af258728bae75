"""The web app of `awesearch serve`: a Starlette app over one SearchEngine, read-only.

    GET  /                         the page (static/index.html; /?q=prince runs that search on load)
    GET  /api/info                 what the index holds, and the recordings by file id
    GET  /api/search               text=... | file=ID&start=S&end=E ("more like this"); k, threshold, format,
                                   within, speaker (a voice of `awesearch speakers`: id or name) or
                                   speaker_file=ID&speaker_start=S&speaker_end=E (an indexed span as the voice)
    POST /api/search               body: an audio clip (query by example); start, end, text, k, threshold, format,
                                   within, speaker...
    GET  /api/audio/{id}           a recording by file id, HTTP Range (206), streamed; transcode=1 forces WAV
    GET  /api/peaks/{id}           start, end, n: [min, max] pairs for a waveform

Files are only ever reached through their file id (a position in the index's file list); no path is
taken from a request. Every error is a 4xx (or, for a bug, a 500) with a one-line JSON body
{"error": "..."}. The engine is loaded once; the index the server answers from is the one committed
when it started, so an indexer running meanwhile never shows a half-written state.
"""

from __future__ import annotations

import asyncio
import io
import math
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from awesearch.errors import AudioDecodeError, AwesearchError
from awesearch.export import EXTENSIONS, FORMATS, MEDIA_TYPES, PER_FILE_FORMATS, check_format, export, slug
from awesearch.web.media import PEAKS_MAX, PEAKS_MAX_SPAN_S, RangeError, audio_source, parse_range, peaks

STATIC_DIR = Path(__file__).parent / "static"
DEFAULT_K = 10
MAX_K = 500  # hits per request
MAX_UPLOAD_BYTES = 20 * 2**20  # bytes (20 MB, MB = 2**20): an uploaded query clip
EXAMPLE_LABEL = "example"  # the query name of an audio query in exports
UPLOAD_SUFFIXES = {  # Content-Type of an upload -> file suffix for the decoder (others: FFmpeg probes the bytes)
    "audio/wav": ".wav",
    "audio/x-wav": ".wav",
    "audio/wave": ".wav",
    "audio/flac": ".flac",
    "audio/x-flac": ".flac",
    "audio/mpeg": ".mp3",
    "audio/ogg": ".ogg",
    "audio/webm": ".webm",
    "video/webm": ".webm",
    "audio/mp4": ".m4a",
}


class ApiError(AwesearchError):
    """A request the API refuses, with its HTTP status."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


@dataclass
class Archive:
    """One opened index: the engine and what the page shows about its recordings."""

    index_dir: Path
    engine: object  # awesearch.search.SearchEngine
    stats: object  # awesearch.store.IndexStats
    durations: list[float]  # seconds, by file id (position in engine.table.paths)
    ids: dict[str, int] = field(default_factory=dict)  # path -> file id
    # Searches run one at a time on one long-lived thread: the engine is not re-entrant, and torch/OpenMP
    # keep per-thread state that a fresh pool thread per request would pay for again.
    searcher: ThreadPoolExecutor = field(default_factory=lambda: ThreadPoolExecutor(max_workers=1, thread_name_prefix="awesearch-search"))
    speakers: object = None  # awesearch.speaker_index.SpeakerSource, read on the first speaker-filtered search
    speaker_info: dict = field(default_factory=dict)  # {"pieces": bool, "voices": [{"id", "name"}]} for the page

    def speaker_filter(self, spec: dict):
        """A SpeakerFilter for {"voice": key} or {"example": SpeakerExample} (on the search thread)."""
        from awesearch.speaker_index import open_speakers

        if self.speakers is None:
            self.speakers = open_speakers([self.index_dir])
        return self.speakers.for_voice(spec["voice"]) if "voice" in spec else self.speakers.for_examples([spec["example"]])

    @property
    def paths(self) -> list[str]:
        return self.engine.table.paths


def open_archive(index_dir: str | Path) -> Archive:
    """Load the index read-only (AwesearchError when it is missing, damaged or from another encoder)."""
    from awesearch.search import SearchEngine
    from awesearch.store import IndexStore

    index_dir = Path(index_dir).resolve()
    store = IndexStore.open(index_dir)
    engine = SearchEngine.open(index_dir)
    by_path = {f.path: f.duration for f in store.load_files()}
    paths = engine.table.paths
    from awesearch.speaker_index import load_voices

    voices = load_voices(store)
    speaker_info = {
        "pieces": bool(store.manifest.speaker_tables),
        "voices": [{"id": v.id, "name": v.name} for v in voices.voices] if voices else [],
    }
    return Archive(
        index_dir, engine, store.stats(), [float(by_path.get(p, 0.0)) for p in paths], {p: i for i, p in enumerate(paths)},
        speaker_info=speaker_info,
    )


# -- parameters ------------------------------------------------------------------------------------


def check_params(request: Request, allowed: set[str]) -> None:
    unknown = sorted(set(request.query_params) - allowed)
    if unknown:
        raise ApiError(400, f"unknown parameter {unknown[0]!r}; this endpoint takes {', '.join(sorted(allowed))}")


def float_param(request: Request, name: str, lo: float | None = None, hi: float | None = None) -> float | None:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return None
    try:
        value = float(raw)
    except ValueError:
        raise ApiError(400, f"{name} must be a number, got {raw!r}") from None
    if not math.isfinite(value):
        raise ApiError(400, f"{name} must be a finite number, got {raw!r}")
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        bounds = f">= {lo}" if hi is None else f"<= {hi}" if lo is None else f"in [{lo}, {hi}]"
        raise ApiError(400, f"{name} must be {bounds}, got {raw!r}")
    return value


def int_param(request: Request, name: str, default: int, lo: int, hi: int) -> int:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ApiError(400, f"{name} must be a whole number, got {raw!r}") from None
    if not lo <= value <= hi:
        raise ApiError(400, f"{name} must be between {lo} and {hi}, got {value}")
    return value


def file_id_of(archive: Archive, raw) -> int:
    try:
        fid = int(raw)
    except (TypeError, ValueError):
        raise ApiError(400, f"file id must be a whole number, got {raw!r}") from None
    if not 0 <= fid < len(archive.paths):
        raise ApiError(404, f"no recording with file id {fid} (the index has {len(archive.paths)})")
    return fid


def recording(archive: Archive, fid: int) -> Path:
    path = Path(archive.paths[fid])
    if not path.is_file():
        raise ApiError(404, f"recording {fid} ({path.name}) is no longer on disk")
    return path


# -- search ----------------------------------------------------------------------------------------


SPEAKER_PARAMS = {"speaker", "speaker_file", "speaker_start", "speaker_end"}
SEARCH_GET_PARAMS = {"text", "file", "start", "end", "k", "threshold", "format", "within"} | SPEAKER_PARAMS
SEARCH_POST_PARAMS = {"text", "start", "end", "k", "threshold", "format", "filename", "within"} | SPEAKER_PARAMS


def search_options(request: Request) -> dict:
    """k, threshold (only when given: the engine's default applies otherwise) and the export format."""
    options = {"k": int_param(request, "k", DEFAULT_K, 1, MAX_K)}
    threshold = float_param(request, "threshold")
    if threshold is not None:
        options["threshold"] = threshold
    within = request.query_params.get("within") or None
    if within is not None:  # a folder or recording of the index (the engine refuses anything else; nothing is read)
        options["within"] = within
    fmt = request.query_params.get("format") or None
    if fmt is not None:
        try:
            check_format(fmt)
        except AwesearchError as e:
            raise ApiError(400, str(e)) from None
    return {"options": options, "format": fmt}


def speaker_param(request: Request, archive: Archive) -> dict | None:
    """The voice to filter by: {"voice": id or name}, {"example": SpeakerExample of an indexed span}, or None."""
    from awesearch.speakers import SpeakerExample

    voice = (request.query_params.get("speaker") or "").strip() or None
    fid = request.query_params.get("speaker_file") or None
    start, end = float_param(request, "speaker_start", lo=0), float_param(request, "speaker_end", lo=0)
    if voice is not None and (fid is not None or start is not None or end is not None):
        raise ApiError(400, "give speaker= (a voice) or speaker_file=, speaker_start= and speaker_end= (a span), not both")
    if voice is not None:
        return {"voice": voice}
    if fid is None and start is None and end is None:
        return None
    if fid is None or start is None or end is None:
        raise ApiError(400, "a voice by example needs speaker_file, speaker_start and speaker_end")
    return {"example": SpeakerExample(str(recording(archive, file_id_of(archive, fid))), start, end)}


def text_param(request: Request) -> str | None:
    text = request.query_params.get("text")
    return text if text is not None and text.strip() else None


async def run_search(archive: Archive, speaker: dict | None = None, **query) -> tuple[list, float, list[str]]:
    """(hits, milliseconds, notes) of engine.search(**query) on the archive's search thread; with speaker (see
    speaker_param) only the hits in that voice, each with its speaker_score (notes: the voice check's, if any)."""

    def call():
        t0 = time.perf_counter()
        notes = []
        if speaker is None:
            hits = archive.engine.search(**query)
        else:
            voice = archive.speaker_filter(speaker)
            cap, _ = archive.engine.limits(query.get("k"), query.get("threshold"))
            hits = voice.search(lambda n: archive.engine.search(**{**query, "k": n}), cap)
            notes = [voice.note] if voice.note else []
        return hits, (time.perf_counter() - t0) * 1000, notes

    return await asyncio.wrap_future(archive.searcher.submit(call))


def hit_json(archive: Archive, hit) -> dict:
    fid = archive.ids[hit.path]
    return {**hit.to_dict(), "file_id": fid, "audio_url": f"/api/audio/{fid}"}


def results_response(archive: Archive, label: str, hits: list, ms: float, fmt: str | None, query: dict, notes: list[str] = ()) -> Response:
    if fmt is None:
        body = {"query": query, "hits": [hit_json(archive, h) for h in hits], "elapsed_ms": round(ms, 1)}
        return JSONResponse({**body, "notes": list(notes)} if notes else body)
    durations = {p: archive.durations[i] for i, p in enumerate(archive.paths)}
    docs = export([(label, hits)], fmt, durations)
    if fmt in PER_FILE_FORMATS and len(docs) != 1:  # none or several recordings: one zip
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
            for name, text in docs.items():
                z.writestr(name, text)
        name = f"awesearch-{slug(label)}-{fmt}.zip"
        return Response(buf.getvalue(), media_type="application/zip", headers={"Content-Disposition": f'attachment; filename="{name}"'})
    (name, text), = docs.items()
    return Response(text, media_type=MEDIA_TYPES[fmt], headers={"Content-Disposition": f'attachment; filename="{name}"'})


async def search_get(request: Request) -> Response:
    archive: Archive = request.app.state.archive
    check_params(request, SEARCH_GET_PARAMS)
    opts = search_options(request)
    text = text_param(request)
    start, end = float_param(request, "start", lo=0), float_param(request, "end", lo=0)
    query: dict = {"text": text}
    audio = None
    if request.query_params.get("file") not in (None, ""):
        fid = file_id_of(archive, request.query_params["file"])
        if start is None or end is None:
            raise ApiError(400, "a search by an indexed span needs file, start and end")
        audio = recording(archive, fid)
        query.update(file_id=fid, start=start, end=end)
    elif start is not None or end is not None:
        raise ApiError(400, "start and end need file= (a span of an indexed recording) or a POSTed clip")
    elif text is None:
        raise ApiError(400, "give text= (one to four words) or file=, start= and end=")
    speaker = speaker_param(request, archive)
    hits, ms, notes = await run_search(archive, speaker, text=text, audio=audio, start=start, end=end, **opts["options"])
    label = text or (f"like {audio.stem} {start:.1f}s" if audio else EXAMPLE_LABEL)
    return results_response(archive, label, hits, ms, opts["format"], query, notes)


async def read_upload(request: Request) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_UPLOAD_BYTES:
        raise ApiError(413, f"upload is {int(declared) / 2**20:.1f} MB; the limit is {MAX_UPLOAD_BYTES / 2**20:.0f} MB")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_UPLOAD_BYTES:
            raise ApiError(413, f"upload is over the {MAX_UPLOAD_BYTES / 2**20:.0f} MB limit")
    if not body:
        raise ApiError(400, "POST /api/search needs an audio clip as the request body")
    return bytes(body)


def upload_suffix(request: Request) -> str:
    name = request.query_params.get("filename") or ""
    suffix = Path(name).suffix.lower()
    if suffix and suffix.isascii() and suffix[1:].isalnum():
        return suffix
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    return UPLOAD_SUFFIXES.get(ctype, ".upload")


async def search_post(request: Request) -> Response:
    archive: Archive = request.app.state.archive
    check_params(request, SEARCH_POST_PARAMS)
    opts = search_options(request)
    text = text_param(request)
    start, end = float_param(request, "start", lo=0), float_param(request, "end", lo=0)
    speaker = speaker_param(request, archive)
    body = await read_upload(request)
    with tempfile.TemporaryDirectory(prefix="awesearch-upload-") as tmp:
        clip = Path(tmp) / f"clip{upload_suffix(request)}"
        clip.write_bytes(body)
        try:
            hits, ms, notes = await run_search(archive, speaker, text=text, audio=clip, start=start, end=end, **opts["options"])
        except AwesearchError as e:  # the engine names the temporary file; the user knows it as their upload
            raise type(e)(str(e).replace(str(clip), "uploaded clip")) from None
    query = {"text": text, "audio": "upload", "start": start, "end": end}
    return results_response(archive, text or EXAMPLE_LABEL, hits, ms, opts["format"], query, notes)


# -- info, audio, peaks ------------------------------------------------------------------------------


async def info(request: Request) -> Response:
    archive: Archive = request.app.state.archive
    check_params(request, set())
    s = archive.stats
    return JSONResponse(
        {
            "index": str(archive.index_dir),
            "encoder": s.encoder_name,
            "encoder_checksum": s.encoder_checksum,
            "dim": s.dim,
            "files": s.files,
            "audio_s": s.audio_s,
            "hours": s.audio_s / 3600,
            "windows": s.windows,
            "updated": s.updated,
            "skipped": [{"path": f.path, "error": f.error} for f in s.skipped],
            "recordings": [
                {"file_id": i, "path": p, "name": Path(p).name, "duration": archive.durations[i], "audio_url": f"/api/audio/{i}"}
                for i, p in enumerate(archive.paths)
            ],
            "speakers": archive.speaker_info,
            "formats": list(FORMATS),
            "format_extensions": EXTENSIONS,
            "limits": {"max_k": MAX_K, "max_upload_bytes": MAX_UPLOAD_BYTES},
        }
    )


async def audio(request: Request) -> Response:
    from awesearch.audio import probe_duration

    archive: Archive = request.app.state.archive
    check_params(request, {"transcode"})
    transcode = request.query_params.get("transcode", "0")
    if transcode not in ("0", "1"):
        raise ApiError(400, f"transcode must be 0 or 1, got {transcode!r}")
    path = recording(archive, file_id_of(archive, request.path_params["file_id"]))
    duration = await run_in_threadpool(probe_duration, path)  # AudioDecodeError -> 422 before any byte is sent
    source = audio_source(path, duration, transcode == "1")
    span = parse_range(request.headers.get("range"), source.size)
    headers = {"Accept-Ranges": "bytes", "Cache-Control": "no-cache"}
    if span is None:
        headers["Content-Length"] = str(source.size)
        return StreamingResponse(source.read(0, source.size), media_type=source.media_type, headers=headers)
    first, last = span
    headers.update({"Content-Range": f"bytes {first}-{last}/{source.size}", "Content-Length": str(last - first + 1)})
    return StreamingResponse(source.read(first, last - first + 1), status_code=206, media_type=source.media_type, headers=headers)


async def waveform(request: Request) -> Response:
    archive: Archive = request.app.state.archive
    check_params(request, {"start", "end", "n"})
    path = recording(archive, file_id_of(archive, request.path_params["file_id"]))
    start, end = float_param(request, "start", lo=0), float_param(request, "end", lo=0)
    if start is None or end is None or end <= start:
        raise ApiError(400, "peaks need start and end seconds with start < end")
    if end - start > PEAKS_MAX_SPAN_S:
        raise ApiError(400, f"peaks span at most {PEAKS_MAX_SPAN_S:.0f} s, got {end - start:.1f} s")
    n = int_param(request, "n", 200, 1, PEAKS_MAX)
    return JSONResponse({"start": start, "end": end, "peaks": await run_in_threadpool(peaks, path, start, end, n)})


async def page(request: Request) -> Response:
    return FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-cache"})


# -- errors -------------------------------------------------------------------------------------------


def error_json(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": " ".join(str(message).split())}, status_code=status)


async def on_api_error(request: Request, exc: Exception) -> Response:
    if isinstance(exc, ApiError):
        return error_json(exc.status, str(exc))
    if isinstance(exc, RangeError):
        return error_json(416, str(exc))
    if isinstance(exc, AudioDecodeError):
        return error_json(422, str(exc))
    return error_json(400, str(exc))


async def on_http_error(request: Request, exc: HTTPException) -> Response:
    message = {404: f"not found: {request.url.path}", 405: f"method {request.method} not allowed on {request.url.path}"}
    return error_json(exc.status_code, message.get(exc.status_code, exc.detail))


async def on_crash(request: Request, exc: Exception) -> Response:
    return error_json(500, f"internal error ({type(exc).__name__}): {exc}")


LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "[::1]"})


class HostCheck:
    """ASGI middleware: refuse requests whose Host header names another host.

    A server on 127.0.0.1 is still reachable from web pages the user visits through DNS rebinding (a hostile
    name that resolves to 127.0.0.1); checking the Host header keeps those pages from reading the archive.
    """

    def __init__(self, app, allowed_hosts: frozenset[str]):
        self.app = app
        self.allowed_hosts = allowed_hosts

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http":
            host = Headers(scope=scope).get("host", "")
            name = host[: host.find("]") + 1] if host.startswith("[") else host.split(":")[0]
            if name.lower() not in self.allowed_hosts:
                await error_json(421, f"this server answers only for {', '.join(sorted(self.allowed_hosts))}, not host {host!r}")(scope, receive, send)
                return
        await self.app(scope, receive, send)


def create_app(archive: Archive, allowed_hosts: frozenset[str] | None = None) -> Starlette:
    """The app over one archive; with allowed_hosts, requests for any other Host header get a 421."""
    routes = [
        Route("/", page),
        Route("/api/info", info),
        Route("/api/search", search_get, methods=["GET"]),
        Route("/api/search", search_post, methods=["POST"]),
        Route("/api/audio/{file_id}", audio),
        Route("/api/peaks/{file_id}", waveform),
        Mount("/static", StaticFiles(directory=STATIC_DIR), name="static"),
    ]
    app = Starlette(
        routes=routes,
        middleware=[Middleware(HostCheck, allowed_hosts=allowed_hosts)] if allowed_hosts else [],
        exception_handlers={AwesearchError: on_api_error, HTTPException: on_http_error, Exception: on_crash},
    )
    app.state.archive = archive
    return app
