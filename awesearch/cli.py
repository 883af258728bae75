"""awesearch command line: a thin typer layer over the library.

Heavy imports (torch, faiss, the pipeline) happen inside the command functions so `--help` is fast.
Any AwesearchError becomes one line on stderr and exit code 1.
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

app = typer.Typer(
    help="Search recordings for spoken words with acoustic word embeddings (no transcripts needed).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

INDEX_HELP = "Index directory (default: $AWESEARCH_INDEX, else ./.awesearch)."


def fail(message: str) -> "typer.Exit":
    """Print one line on stderr and return the Exit(1) to raise."""
    typer.echo(f"awesearch: {message}", err=True)
    return typer.Exit(1)


def resolve_index_dir(index: Optional[Path]) -> Path:
    """--index, else $AWESEARCH_INDEX, else ./.awesearch."""
    from awesearch.store import default_index_dir

    return index if index is not None else default_index_dir()


def human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1024 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"


def human_duration(seconds: float) -> str:
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}"


@app.command()
def index(
    paths: List[Path] = typer.Argument(..., help="Audio files or directories (searched recursively)."),
    index: Optional[Path] = typer.Option(None, "--index", "-i", help=INDEX_HELP),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Encoder name or checkpoint path (default: the shipped model)."),
    threads: Optional[int] = typer.Option(None, "--threads", help="Threads for the encoder: torch (default 1) and the Whisper front end (default 2); decoding and VAD run beside it."),
    jobs: int = typer.Option(1, "--jobs", "-j", help="Worker processes, each with its own encoder (this process writes the index)."),
    device: str = typer.Option("auto", "--device", help="Where the Whisper front end runs: cpu, cuda, or auto (cuda when a GPU is usable)."),
    pack: bool = typer.Option(True, "--pack/--no-pack", help="Pack the speech of short files into shared Whisper blocks (fast; --no-pack encodes each alone)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
    cluster: Optional[str] = typer.Option(None, "--cluster", help="Dask scheduler address (tcp://host:8786): its workers embed the files, this process commits (see README)."),
    verify: bool = typer.Option(False, "--verify", help="Checksum every byte of the index first (done anyway up to 4 GB of index); damaged data is dropped and its recordings re-embedded."),
) -> None:
    """Index the speech in audio files: wav, flac, ogg, opus, mp3, m4a/aac and the audio of mp4/webm.

    Re-running only embeds new or changed files and drops deleted ones. Unreadable files are skipped with a reason (see `awesearch info`). Exits 1 only if nothing could be indexed.
    """
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    from awesearch.errors import AwesearchError
    from awesearch.indexer import index_paths

    index_dir = resolve_index_dir(index)
    console = Console(stderr=True)
    bar = Progress(
        TextColumn("[bold]indexing"),
        BarColumn(),
        TextColumn("{task.fields[hours]}"),
        TextColumn("{task.fields[files]}"),
        TimeRemainingColumn(),
        TimeElapsedColumn(),
        console=console,
        disable=quiet,
        transient=True,
    )
    task = bar.add_task("index", total=None, hours="", files="scanning")

    def on_progress(p) -> None:
        bar.update(
            task,
            total=max(p.total_audio_s / 3600, 1e-9),
            completed=p.done_audio_s / 3600,
            hours=f"{p.done_audio_s / 3600:.2f}/{p.total_audio_s / 3600:.2f} h",
            files=f"{p.files_done}/{p.files_total} files",
        )

    try:
        with bar:
            report = index_paths(
                [str(p) for p in paths], index_dir, model=model, progress=on_progress, threads=threads, verify=verify or None,
                cluster=cluster, jobs=jobs, device=device, pack=pack,
            )
    except AwesearchError as e:
        raise fail(str(e))
    except KeyboardInterrupt:
        typer.echo("awesearch: interrupted; the index keeps every file committed so far (run index again to resume)", err=True)
        raise typer.Exit(130)
    out = Console()
    if report.repaired:
        out.print(f"repaired: {len(report.repaired)} recordings had damaged index data and were re-embedded "
                  f"({len(report.lost)} not under the given paths: index their folders too)", highlight=False, soft_wrap=True)
    for note in report.notes:
        out.print(f"repaired: {note}", highlight=False, soft_wrap=True)
    for p in report.lost:
        out.print(f"lost {p}: its index data was damaged; index its folder again", highlight=False, soft_wrap=True)
    for s in report.skipped:
        out.print(f"skipped {s.path}: {s.reason}", highlight=False, soft_wrap=True)
    out.print(
        f"{report.indexed} indexed, {report.unchanged} unchanged, {report.removed} removed, "
        f"{len(report.skipped)} skipped; {human_duration(report.audio_s)} of audio "
        f"({human_duration(report.speech_s)} speech), {report.windows} windows in {report.wall_s:.1f} s "
        f"({report.realtime_factor:.0f}x real time) -> {index_dir}",
        highlight=False,
        soft_wrap=True,
    )
    if not report.ok:
        raise fail(f"nothing could be indexed under {', '.join(str(p) for p in paths)}")


@app.command()
def info(
    index: Optional[Path] = typer.Option(None, "--index", "-i", help=INDEX_HELP),
) -> None:
    """Show what an index holds: files, hours of audio, windows, skipped files, size on disk, encoder."""
    from awesearch.errors import AwesearchError
    from awesearch.store import IndexStore

    from awesearch.approx import describe

    index_dir = resolve_index_dir(index)
    try:
        store = IndexStore.open(index_dir)
        stats = store.stats()
    except AwesearchError as e:
        raise fail(str(e))
    lines = [
        f"index:    {index_dir.resolve()}",
        f"encoder:  {stats.encoder_name} (sha256 {stats.encoder_checksum[:12]}, dim {stats.dim})",
        f"files:    {stats.files} indexed, {len(stats.skipped)} skipped",
        f"audio:    {stats.audio_s / 3600:.2f} h ({human_duration(stats.audio_s)})",
        f"windows:  {stats.windows} live ({stats.stored_windows} stored in {stats.segments} segments)",
        f"size:     {human_bytes(stats.size_bytes)} on disk",
        f"search:   {describe(store.manifest)}",
        "scores:   " + (f"calibrated probabilities (phonetic second stage, phoneme head {store.manifest.phone_model})"
                        if store.manifest.phone_model else "cosine similarities (no phonetic store: first stage only)"),
        f"updated:  {stats.updated}",
    ]
    for line in lines:
        typer.echo(line)
    if stats.skipped:
        typer.echo("skipped:")
        for f in stats.skipped:
            typer.echo(f"  {f.path}: {f.error}")


@app.command()
def check(
    index: Optional[Path] = typer.Option(None, "--index", "-i", help=INDEX_HELP),
) -> None:
    """Verify every byte of an index against the checksums in its manifest; exit 1 if anything is damaged.

    Prints one line per missing, truncated or corrupted file. `awesearch index --verify` on the same folders repairs it.
    """
    from awesearch.errors import AwesearchError
    from awesearch.integrity import damage_message
    from awesearch.store import IndexStore

    index_dir = resolve_index_dir(index)
    try:
        store = IndexStore.open(index_dir)
        damages = store.verify(full=True)
    except AwesearchError as e:
        raise fail(str(e))
    for d in damages:
        typer.echo(f"damaged: {d}")
    if damages:
        raise fail(damage_message(index_dir, damages))
    unchecked = store.unchecksummed()
    size = sum(int(c["size"]) for c in store.manifest.checksums.values())
    note = f" ({len(unchecked)} without checksums, written before checksums existed)" if unchecked else ""
    typer.echo(f"ok: {len(store.data_names())} files, {human_bytes(size)} verified{note}")


# -- query: the search engineer's command goes here (awesearch/search.py) ------------------------


@app.command()
def query(
    text: Optional[str] = typer.Option(None, "--text", "-t", help='Words or a phrase of one to four words, e.g. "prince".'),
    audio: Optional[List[Path]] = typer.Option(None, "--audio", "-a", help="Query by example: an audio file, or with --start/--end a span of it. Repeat for several examples of one word (one prototype)."),
    start: Optional[List[float]] = typer.Option(None, "--start", help="With --audio: start of the example span in seconds (one per --audio, in order)."),
    end: Optional[List[float]] = typer.Option(None, "--end", help="With --audio: end of the example span in seconds (one per --audio, in order)."),
    queries: Optional[Path] = typer.Option(None, "--queries", help="File of text queries, one per line (blank lines and #comments ignored)."),
    index: Optional[List[Path]] = typer.Option(None, "--index", "-i", help=INDEX_HELP + " Repeat to search several indexes (shards) as one."),
    top: Optional[int] = typer.Option(None, "--top", "-k", help="Most hits per query (each spoken occurrence is one hit); default 100 with calibrated scores, 10 otherwise."),
    threshold: Optional[float] = typer.Option(None, "--threshold", help="Minimum score: the probability (0..1, default 0.5) that the query is spoken there; on an index without a phonetic store (mel or random encoder) a cosine, default none."),
    within: Optional[Path] = typer.Option(None, "--within", help="Only hits in this recording or in recordings under this folder."),
    as_json: bool = typer.Option(False, "--json", help='Print [{"path", "start", "end", "score"}, ...] (with --queries: one {"query", "hits"} per line).'),
    fmt: Optional[str] = typer.Option(None, "--format", "-f", help="Export as csv, json, vtt, audacity, textgrid or eaf (the last four are one file per recording: give --out DIR unless all hits are in one file)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="With --format: write the export file(s) into this directory instead of printing."),
    speaker: Optional[List[Path]] = typer.Option(None, "--speaker", help="Only hits in this voice: an audio clip of it (at least 1 s of speech). Repeat to give several examples of one voice."),
    speaker_start: Optional[List[float]] = typer.Option(None, "--speaker-start", help="With --speaker: start of the example span in seconds (one per --speaker)."),
    speaker_end: Optional[List[float]] = typer.Option(None, "--speaker-end", help="With --speaker: end of the example span in seconds (one per --speaker)."),
    speaker_id: Optional[str] = typer.Option(None, "--speaker-id", help="Only hits in a voice of `awesearch speakers`: its id (S3) or name (one index: each numbers its own voices)."),
) -> None:
    """Find where words are spoken: by text (--text), by example (--audio, repeatable), or both.

    Prints every detection (file, start-end, score) best first. The score is the calibrated probability that the query is spoken there, after a phonetic check of each candidate; hits under --threshold are not shown.
    """
    import json

    from awesearch.errors import AwesearchError, QueryError

    try:
        if queries is not None and (text is not None or audio is not None):
            raise QueryError("--queries cannot be combined with --text or --audio")
        if queries is None and text is None and audio is None:
            raise QueryError("give --text, --audio (or both), or --queries FILE")
        if fmt is not None and as_json:
            raise QueryError("--json and --format cannot be combined")
        if out is not None and fmt is None:
            raise QueryError("--out needs --format")
        if fmt is not None:
            from awesearch.export import check_format

            check_format(fmt)
        from awesearch.search import SearchEngine, audio_spans, check_text, read_queries

        # every check that needs no model or index first, so a bad query fails fast with its own message
        if text is not None:
            check_text(text)
        examples = audio_spans(audio or [], start or [], end or [])
        batch = read_queries(queries) if queries is not None else None
        if within is not None and (batch is not None or (index and len(index) > 1)):
            raise QueryError("--within works with --text or --audio on one index, not with --queries or shards")
        voice_filter = None
        if speaker or speaker_id is not None or speaker_start or speaker_end:
            from awesearch.speaker_index import open_filter
            from awesearch.speakers import speaker_examples

            voice_filter = open_filter(
                [Path(d) for d in index] if index and len(index) > 1 else [resolve_index_dir(index[0] if index else None)],
                speaker_examples(speaker or [], speaker_start or [], speaker_end or []), speaker_id,
            )

        if batch is None:
            import faiss
            import torch

            # One short query: torch has too little work to split, and FAISS parallelises over queries, not
            # within one; extra threads only add overhead (an audio query embedded ~30x slower with 2 threads
            # than with 1 on a busy 2-core machine).
            torch.set_num_threads(1)
            faiss.omp_set_num_threads(1)
        if index and len(index) > 1:
            from awesearch.shards import ShardedEngine

            engine = ShardedEngine.open(index)
        else:
            engine = SearchEngine.open(resolve_index_dir(index[0] if index else None))
        if voice_filter is not None and batch is not None:
            results = list(zip(batch, voice_filter.search_texts(engine, batch, top, threshold)))
        elif voice_filter is not None:
            run = lambda k: engine.search(text=text, audio=examples, k=k, threshold=threshold, within=within)  # noqa: E731
            results = [(text, voice_filter.search(run, engine.limits(top, threshold)[0]))]
        elif batch is None:
            results = [(text, engine.search(text=text, audio=examples, k=top, threshold=threshold, within=within))]
        else:
            results = list(zip(batch, engine.search_texts(batch, k=top, threshold=threshold)))
        if fmt is not None:
            write_export(results, fmt, out, resolve_index_dir(index[0] if index else None))
            return
    except AwesearchError as e:
        raise fail(str(e))
    if voice_filter is not None and voice_filter.note:
        typer.echo(f"note: {voice_filter.note}", err=True)
    if as_json:
        for q, hits in results:
            rows = [h.to_dict() for h in hits]
            typer.echo(json.dumps(rows if batch is None else {"query": q, "hits": rows}))
        return
    print_hits(results, titled=batch is not None, calibrated=engine.calibrated)


def write_export(results: list, fmt: str, out: Optional[Path], index_dir: Path) -> None:
    """--format: print the one export document, or write every document into --out."""
    from awesearch.errors import QueryError
    from awesearch.export import PER_FILE_FORMATS, export
    from awesearch.store import IndexStore

    durations = {f.path: f.duration for f in IndexStore.open(index_dir).load_files()} if fmt == "textgrid" else None
    docs = export([(q or "example", hits) for q, hits in results], fmt, durations)
    if out is None:
        if len(docs) != 1:
            files = f"{len(docs)} recordings" if docs else "no recording"
            raise QueryError(f"--format {fmt} writes one file per recording and the hits are in {files}: give --out DIR")
        typer.echo(next(iter(docs.values())), nl=False)
        return
    try:
        out.mkdir(parents=True, exist_ok=True)
        for name, text in docs.items():
            (out / name).write_text(text, encoding="utf-8")
    except OSError as e:
        raise QueryError(f"cannot write the export into {out}: {e.strerror or e}") from None
    kind = "per recording" if fmt in PER_FILE_FORMATS else "table"
    typer.echo(f"wrote {len(docs)} {fmt} file(s) ({kind}) into {out}", err=True)


@app.command()
def serve(
    index: Optional[Path] = typer.Option(None, "--index", "-i", help=INDEX_HELP),
    port: int = typer.Option(8765, "--port", "-p", help="TCP port."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to bind; anything but loopback makes the archive reachable by others."),
    open_browser: bool = typer.Option(False, "--open", help="Open the page in the default web browser."),
) -> None:
    """Serve a local web page to search the index, listen to the hits and export them (read-only).

    Open http://127.0.0.1:8765/?q=prince to run a search on load. The JSON API behind the page is described in the README.
    """
    import ipaddress

    from awesearch.errors import AwesearchError

    index_dir = resolve_index_dir(index)
    if not 0 < port < 65536:
        raise fail(f"--port must be 1..65535, got {port}")
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        typer.echo(f"awesearch: WARNING: serving on {host}: anyone who can reach this machine can search and listen to the archive", err=True)
    import faiss
    import torch
    import uvicorn

    from awesearch.web.app import LOOPBACK_HOSTS, create_app, open_archive

    torch.set_num_threads(1)  # one short query at a time, as `query` does
    faiss.omp_set_num_threads(1)
    try:
        archive = open_archive(index_dir)
    except AwesearchError as e:
        raise fail(str(e))
    url = f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{port}/"
    typer.echo(f"awesearch: serving {archive.stats.files} recordings from {archive.index_dir} at {url} (Ctrl+C stops)", err=True)
    if open_browser:
        import threading
        import webbrowser

        threading.Timer(1.0, webbrowser.open, args=(url,)).start()
    # on loopback only loopback names are answered (no DNS rebinding); on another host any name the clients use
    allowed_hosts = LOOPBACK_HOSTS | {host.lower()} if loopback else None
    uvicorn.run(create_app(archive, allowed_hosts), host=host, port=port, log_level="warning")


def shown_path(path: str) -> str:
    """A path relative to the working directory when inside it."""
    p, cwd = Path(path), Path.cwd()
    return str(p.relative_to(cwd) if p.is_relative_to(cwd) else p)


def print_hits(results: list, titled: bool, calibrated: bool = True) -> None:
    """Rich tables of (query, hits): rank, file (relative to the working directory when inside it), h:mm:ss.s span, score."""
    from rich.console import Console
    from rich.table import Table

    from awesearch.search import format_time

    console = Console()
    for q, hits in results:
        title = repr(q) if titled else None
        if not hits:
            console.print(f"{title}: no hits" if title else "no hits", highlight=False)
            continue
        table = Table(title=title, title_justify="left")
        table.add_column("#", justify="right")
        table.add_column("file", overflow="fold")
        table.add_column("time", no_wrap=True)
        table.add_column("score" if calibrated else "cosine", justify="right")
        voiced = hasattr(hits[0], "speaker_score")
        if voiced:
            table.add_column("speaker", justify="right")
        for rank, h in enumerate(hits, 1):
            row = [str(rank), shown_path(h.path), f"{format_time(h.start)}–{format_time(h.end)}", f"{h.score:.3f}"]
            table.add_row(*row, *([f"{h.speaker_score:.2f}"] if voiced else []))
        console.print(table)


speakers_app = typer.Typer(invoke_without_command=True)
app.add_typer(speakers_app, name="speakers")


@speakers_app.callback(invoke_without_command=True)
def speakers(
    ctx: typer.Context,
    index: Optional[Path] = typer.Option(None, "--index", "-i", help=INDEX_HELP),
    within: Optional[Path] = typer.Option(None, "--within", help="Only hits in this recording or in recordings under this folder."),
    as_json: bool = typer.Option(False, "--json", help='Print [{"id", "name", "speech_s", "files", "sample_path", "sample_start", "sample_end"}, ...].'),
) -> None:
    """List the voices of the archive: id, name, speaking time, files and a sample span.

    Speech that fits no known voice is clustered into new voices first (their number is chosen automatically) and stored in the index, so ids and names stay when more audio is indexed. Name a voice with `awesearch speakers name S3 "Interviewer"`.
    """
    if ctx.invoked_subcommand is not None:
        return
    import json

    from awesearch.errors import AwesearchError
    from awesearch.speaker_index import update_voices

    try:
        summaries, unassigned_s = update_voices(resolve_index_dir(index))
    except AwesearchError as e:
        raise fail(str(e))
    if as_json:
        typer.echo(json.dumps([s.to_dict() for s in summaries]))
        return
    from rich.console import Console
    from rich.table import Table

    from awesearch.search import format_time

    table = Table()
    for col in ("voice", "name", "speaking time", "files", "sample"):
        table.add_column(col, overflow="fold")
    for s in summaries:
        table.add_row(s.id, s.name, human_duration(s.speech_s), str(s.files), f"{shown_path(s.sample_path)} {format_time(s.sample_start)}–{format_time(s.sample_end)}")
    console = Console()
    console.print(table)
    console.print(f"{len(summaries)} voices; {human_duration(unassigned_s)} of speech in no voice", highlight=False)


@speakers_app.command("name")
def speakers_name(
    voice: str = typer.Argument(..., help="Voice id (S3) or its current name."),
    name: str = typer.Argument(..., help='The new name, e.g. "Interviewer" (empty to clear).'),
    index: Optional[Path] = typer.Option(None, "--index", "-i", help=INDEX_HELP),
) -> None:
    """Name a voice; `awesearch query --speaker-id NAME` then finds it by that name."""
    from awesearch.errors import AwesearchError
    from awesearch.speaker_index import name_voice

    try:
        v = name_voice(resolve_index_dir(index), voice, name)
    except AwesearchError as e:
        raise fail(str(e))
    typer.echo(f"{v.id} is now named {v.name!r}" if v.name else f"{v.id} has no name now")


def main() -> None:
    """The `awesearch` entry point. After a command that loaded torch, the process ends with os._exit once
    stdout and stderr are flushed: torch's interpreter teardown took 1.3 s, more than indexing a 10 s file
    (every index file is written, synced and closed by then; the lock is released)."""
    import os
    import sys

    try:
        app()
        code = 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    if "torch" not in sys.modules:
        raise SystemExit(code)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    main()
