"""Exporters: search results as CSV, JSON, WebVTT, Audacity labels, Praat TextGrid and ELAN .eaf.

Shared by `awesearch query --format` and the web API (`/api/search?format=`). Input is a list of
`(query, hits)` pairs (hits as `awesearch.search.Hit`, or anything with path, start, end, score).
CSV and JSON are one table over every file; the other formats describe the timeline of one recording,
so they come out as one document per file (`export(...)` returns `{file name: text}`).

Labels are the query text; WebVTT cues and Audacity labels add the score. Where a format cannot hold
overlapping intervals on one tier (TextGrid interval tiers, ELAN alignable tiers), overlapping hits of
one query go onto extra tiers ("prince", "prince (2)", ...).
"""

from __future__ import annotations

import csv
import io
import json
import re
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import escape, quoteattr

from awesearch.errors import QueryError

TABLE_FORMATS = ("csv", "json")  # one document for all files
PER_FILE_FORMATS = ("vtt", "audacity", "textgrid", "eaf")  # one document per recording
FORMATS = TABLE_FORMATS + PER_FILE_FORMATS
EXTENSIONS = {"csv": ".csv", "json": ".json", "vtt": ".vtt", "audacity": ".txt", "textgrid": ".TextGrid", "eaf": ".eaf"}
MEDIA_TYPES = {
    "csv": "text/csv",
    "json": "application/json",
    "vtt": "text/vtt",
    "audacity": "text/plain",
    "textgrid": "text/plain",
    "eaf": "application/xml",
}
SCORE_DECIMALS = 4
TIME_DECIMALS = 3  # seconds: millisecond resolution everywhere


@dataclass(frozen=True)
class Row:
    """One hit of one query (the flat table every exporter starts from)."""

    query: str
    path: str  # absolute path of the recording
    start: float  # seconds
    end: float  # seconds
    score: float


def check_format(fmt: str) -> str:
    """The format name, or QueryError naming the choices."""
    if fmt not in FORMATS:
        raise QueryError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")
    return fmt


def rows_of(results: list[tuple[str, list]]) -> list[Row]:
    return [Row(str(q), h.path, float(h.start), float(h.end), float(h.score)) for q, hits in results for h in hits]


def slug(text: str) -> str:
    """A file-name-safe form of a query: 'The Prince!' -> 'the-prince'."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "query"


# -- one document for all files -----------------------------------------------------------------


def to_csv(rows: list[Row]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["query", "path", "start", "end", "score"])
    for r in rows:
        writer.writerow([r.query, r.path, f"{r.start:.{TIME_DECIMALS}f}", f"{r.end:.{TIME_DECIMALS}f}", f"{r.score:.{SCORE_DECIMALS}f}"])
    return out.getvalue()


def to_json(rows: list[Row]) -> str:
    """A JSON list of {"query", "path", "start", "end", "score"}: the CLI's --json hit contract plus the query."""
    return json.dumps([{"query": r.query, "path": r.path, "start": r.start, "end": r.end, "score": r.score} for r in rows], indent=1) + "\n"


# -- per file ------------------------------------------------------------------------------------


def tiers(rows: list[Row]) -> list[tuple[str, list[Row]]]:
    """(tier name, time-sorted rows) per query, overlapping rows spread over extra tiers (greedy, first fit)."""
    out: list[tuple[str, list[Row]]] = []
    for query in dict.fromkeys(r.query for r in rows):
        layers: list[list[Row]] = []
        for r in sorted((r for r in rows if r.query == query), key=lambda r: (r.start, r.end)):
            layer = next((lay for lay in layers if lay[-1].end <= r.start), None)
            if layer is None:
                layers.append([r])
            else:
                layer.append(r)
        out += [(query if i == 0 else f"{query} ({i + 1})", layer) for i, layer in enumerate(layers)]
    return out


def vtt_time(seconds: float) -> str:
    ms = int(round(seconds * 1000))
    h, rest = divmod(ms, 3_600_000)
    m, rest = divmod(rest, 60_000)
    s, ms = divmod(rest, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}.{ms:03d}"


def to_vtt(rows: list[Row]) -> str:
    lines = ["WEBVTT", ""]
    for i, r in enumerate(sorted(rows, key=lambda r: (r.start, r.end)), 1):
        # "-->" may not appear in a cue's text; a query never holds it after normalisation, but a label is user text
        text = f"{r.query} ({r.score:.3f})".replace("-->", "->")
        lines += [str(i), f"{vtt_time(r.start)} --> {vtt_time(r.end)}", text, ""]
    return "\n".join(lines)


def to_audacity(rows: list[Row]) -> str:
    """Audacity label track: start<TAB>end<TAB>label per line, seconds."""
    return "".join(
        f"{r.start:.{TIME_DECIMALS}f}\t{r.end:.{TIME_DECIMALS}f}\t{r.query} {r.score:.3f}\n"
        for r in sorted(rows, key=lambda r: (r.start, r.end))
    )


def _praat_string(text: str) -> str:
    return '"' + text.replace('"', '""') + '"'


def to_textgrid(rows: list[Row], duration: float) -> str:
    """Praat TextGrid (long text format): one interval tier per query layer, gaps as empty intervals."""
    xmax = max([duration] + [r.end for r in rows])
    tier_list = tiers(rows)
    lines = ['File type = "ooTextFile"', 'Object class = "TextGrid"', "", "xmin = 0", f"xmax = {xmax:.{TIME_DECIMALS}f}", "tiers? <exists>", f"size = {len(tier_list)}", "item []:"]
    for ti, (name, layer) in enumerate(tier_list, 1):
        intervals: list[tuple[float, float, str]] = []
        t = 0.0
        for r in layer:
            if r.start > t:
                intervals.append((t, r.start, ""))
            intervals.append((max(r.start, t), r.end, r.query))
            t = r.end
        if t < xmax:
            intervals.append((t, xmax, ""))
        lines += [f"    item [{ti}]:", '        class = "IntervalTier"', f"        name = {_praat_string(name)}", "        xmin = 0", f"        xmax = {xmax:.{TIME_DECIMALS}f}", f"        intervals: size = {len(intervals)}"]
        for ii, (a, b, text) in enumerate(intervals, 1):
            lines += [f"        intervals [{ii}]:", f"            xmin = {a:.{TIME_DECIMALS}f}", f"            xmax = {b:.{TIME_DECIMALS}f}", f"            text = {_praat_string(text)}"]
    return "\n".join(lines) + "\n"


def to_eaf(rows: list[Row], media_path: str) -> str:
    """ELAN annotation document (EAF 3.0): one alignable tier per query layer, the recording linked as media."""
    slots: list[int] = []  # milliseconds, one time slot per boundary
    tier_xml = []
    ann = 0
    for name, layer in tiers(rows):
        anns = []
        for r in layer:
            ann += 1
            slots += [int(round(r.start * 1000)), int(round(r.end * 1000))]
            a, b = len(slots) - 1, len(slots)
            anns.append(
                f'        <ANNOTATION>\n            <ALIGNABLE_ANNOTATION ANNOTATION_ID="a{ann}" TIME_SLOT_REF1="ts{a}" TIME_SLOT_REF2="ts{b}">\n'
                f"                <ANNOTATION_VALUE>{escape(r.query)}</ANNOTATION_VALUE>\n            </ALIGNABLE_ANNOTATION>\n        </ANNOTATION>"
            )
        tier_xml.append(f'    <TIER LINGUISTIC_TYPE_REF="awesearch-hit" TIER_ID={quoteattr(name)}>\n' + "\n".join(anns) + ("\n" if anns else "") + "    </TIER>")
    media_url = Path(media_path).resolve().as_uri()
    mime = "audio/x-wav" if Path(media_path).suffix.lower() == ".wav" else "audio/*"  # ELAN's own names
    slot_xml = "\n".join(f'        <TIME_SLOT TIME_SLOT_ID="ts{i}" TIME_VALUE="{ms}"/>' for i, ms in enumerate(slots, 1))
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<ANNOTATION_DOCUMENT AUTHOR="awesearch" DATE="1970-01-01T00:00:00Z" FORMAT="3.0" VERSION="3.0" '
        'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xsi:noNamespaceSchemaLocation="http://www.mpi.nl/tools/elan/EAFv3.0.xsd">\n'
        '    <HEADER MEDIA_FILE="" TIME_UNITS="milliseconds">\n'
        f"        <MEDIA_DESCRIPTOR MEDIA_URL={quoteattr(media_url)} MIME_TYPE={quoteattr(mime)} RELATIVE_MEDIA_URL={quoteattr('./' + Path(media_path).name)}/>\n"
        "    </HEADER>\n"
        f"    <TIME_ORDER>\n{slot_xml}\n    </TIME_ORDER>\n" + "\n".join(tier_xml) + "\n"
        '    <LINGUISTIC_TYPE GRAPHIC_REFERENCES="false" LINGUISTIC_TYPE_ID="awesearch-hit" TIME_ALIGNABLE="true"/>\n'
        "</ANNOTATION_DOCUMENT>\n"
    )


# -- entry point -----------------------------------------------------------------------------------


def export(results: list[tuple[str, list]], fmt: str, durations: dict[str, float] | None = None) -> dict[str, str]:
    """{file name: text} of the results in `fmt`.

    Table formats give one file, `awesearch-<query>.<ext>`; per-file formats give one per recording with hits,
    `<recording stem>.<query>.<ext>` (`durations`, seconds per path, sets a TextGrid's end; default: last hit).
    Per-file names are made unique when two recordings share a stem.
    """
    check_format(fmt)
    rows = rows_of(results)
    label = slug("-".join(dict.fromkeys(q for q, _ in results))) if results else "query"
    ext = EXTENSIONS[fmt]
    if fmt == "csv":
        return {f"awesearch-{label}{ext}": to_csv(rows)}
    if fmt == "json":
        return {f"awesearch-{label}{ext}": to_json(rows)}
    out: dict[str, str] = {}
    for path in dict.fromkeys(r.path for r in rows):
        mine = [r for r in rows if r.path == path]
        if fmt == "vtt":
            text = to_vtt(mine)
        elif fmt == "audacity":
            text = to_audacity(mine)
        elif fmt == "textgrid":
            text = to_textgrid(mine, (durations or {}).get(path, 0.0))
        else:
            text = to_eaf(mine, path)
        name, n = f"{Path(path).stem}.{label}{ext}", 1
        while name in out:
            n += 1
            name = f"{Path(path).stem}-{n}.{label}{ext}"
        out[name] = text
    return out
