"""Exporters (awesearch/export.py): each format parsed back with its own grammar, overlaps, names."""

from __future__ import annotations

import csv
import io
import json
import re
import xml.etree.ElementTree as ET

import pytest

from awesearch.errors import QueryError
from awesearch.export import FORMATS, check_format, export, tiers, rows_of, vtt_time
from awesearch.search import Hit

A = "/archive/tapes/interview.wav"
B = "/archive/other/interview.flac"  # the same stem in another folder
RESULTS = [
    ("prince", [Hit(A, 12.5, 13.1, 0.91), Hit(B, 3.0, 3.4, 0.8), Hit(A, 12.9, 13.5, 0.7), Hit(A, 3725.25, 3725.9, 0.65)]),
    ('say "hi"', [Hit(A, 1.0, 1.5, 0.5)]),
]


def test_csv_and_json_are_one_table_of_every_hit():
    (name, text), = export(RESULTS, "csv").items()
    assert name == "awesearch-prince-say-hi.csv"
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [(r["query"], r["path"], float(r["start"]), float(r["end"]), float(r["score"])) for r in rows] == [
        (q, h.path, h.start, h.end, h.score) for q, hits in RESULTS for h in hits
    ]
    (_, text), = export(RESULTS, "json").items()
    assert json.loads(text) == [{"query": q, **h.to_dict()} for q, hits in RESULTS for h in hits]


def test_per_file_formats_give_one_document_per_recording_with_unique_names():
    for fmt in ("vtt", "audacity", "textgrid", "eaf"):
        docs = export(RESULTS, fmt)
        assert len(docs) == 2 and len(set(docs)) == 2, docs.keys()
        assert all(name.startswith("interview") and ".prince-say-hi." in name for name in docs)


def test_vtt_cues_are_time_sorted_and_well_formed():
    text = export(RESULTS[:1], "vtt")["interview.prince.vtt"]
    blocks = text.strip().split("\n\n")
    assert blocks[0] == "WEBVTT"
    times = []
    for block in blocks[1:]:
        number, timing, label = block.split("\n")
        m = re.fullmatch(r"(\d\d):(\d\d):(\d\d)\.(\d{3}) --> (\d\d):(\d\d):(\d\d)\.(\d{3})", timing)
        assert m, timing
        times.append(timing)
        assert label.startswith("prince (0.")
    assert times == ["00:00:12.500 --> 00:00:13.100", "00:00:12.900 --> 00:00:13.500", "01:02:05.250 --> 01:02:05.900"]
    assert vtt_time(0.0006) == "00:00:00.001" and vtt_time(59.9996) == "00:01:00.000"


def test_audacity_labels():
    text = export(RESULTS, "audacity")["interview.prince-say-hi.txt"]
    lines = [line.split("\t") for line in text.splitlines()]
    assert [(float(a), float(b), label) for a, b, label in lines] == [
        (1.0, 1.5, 'say "hi" 0.500'),
        (12.5, 13.1, "prince 0.910"),
        (12.9, 13.5, "prince 0.700"),
        (3725.25, 3725.9, "prince 0.650"),
    ]


def parse_textgrid(text: str) -> dict[str, list[tuple[float, float, str]]]:
    """Interval tiers of a long-format TextGrid: {tier name: [(xmin, xmax, text)]}."""
    out: dict[str, list] = {}
    tier = None
    for m in re.finditer(r'name = "((?:[^"]|"")*)"|xmin = ([\d.]+)\s+xmax = ([\d.]+)\s+text = "((?:[^"]|"")*)"', text):
        if m.group(1) is not None:
            tier = m.group(1).replace('""', '"')
            out[tier] = []
        else:
            out[tier].append((float(m.group(2)), float(m.group(3)), m.group(4).replace('""', '"')))
    return out


def test_textgrid_tiers_tile_the_recording_and_overlaps_get_their_own_tier():
    text = export(RESULTS, "textgrid", {A: 4000.0})["interview.prince-say-hi.TextGrid"]
    assert text.startswith('File type = "ooTextFile"\nObject class = "TextGrid"')
    grid = parse_textgrid(text)
    assert list(grid) == ["prince", "prince (2)", 'say "hi"']
    for intervals in grid.values():
        assert intervals[0][0] == 0 and intervals[-1][1] == 4000.0
        assert all(a[1] == b[0] for a, b in zip(intervals, intervals[1:]))  # contiguous, no gaps or overlaps
    labelled = {name: [(a, b) for a, b, t in iv if t] for name, iv in grid.items()}
    assert labelled == {"prince": [(12.5, 13.1), (3725.25, 3725.9)], "prince (2)": [(12.9, 13.5)], 'say "hi"': [(1.0, 1.5)]}
    assert f"size = {len(grid)}" in text
    # without a duration the grid ends at the last hit
    assert parse_textgrid(export(RESULTS, "textgrid")["interview.prince-say-hi.TextGrid"])["prince"][-1][1] == 3725.9


def test_eaf_is_valid_xml_with_aligned_annotations_and_the_media():
    text = export(RESULTS, "eaf")["interview.prince-say-hi.eaf"]
    root = ET.fromstring(text)
    assert root.tag == "ANNOTATION_DOCUMENT" and root.get("FORMAT") == "3.0"
    media = root.find("HEADER/MEDIA_DESCRIPTOR")
    assert media.get("MEDIA_URL") == "file:///archive/tapes/interview.wav" and media.get("MIME_TYPE") == "audio/x-wav"
    slots = {s.get("TIME_SLOT_ID"): int(s.get("TIME_VALUE")) for s in root.iter("TIME_SLOT")}
    got = {}
    for tier in root.iter("TIER"):
        assert root.find(f"LINGUISTIC_TYPE[@LINGUISTIC_TYPE_ID='{tier.get('LINGUISTIC_TYPE_REF')}']") is not None
        got[tier.get("TIER_ID")] = [
            (slots[a.get("TIME_SLOT_REF1")], slots[a.get("TIME_SLOT_REF2")], a.findtext("ANNOTATION_VALUE")) for a in tier.iter("ALIGNABLE_ANNOTATION")
        ]
    assert got == {
        "prince": [(12500, 13100, "prince"), (3725250, 3725900, "prince")],
        "prince (2)": [(12900, 13500, "prince")],
        'say "hi"': [(1000, 1500, 'say "hi"')],
    }
    ids = [a.get("ANNOTATION_ID") for a in root.iter("ALIGNABLE_ANNOTATION")]
    assert len(ids) == len(set(ids))


def test_tiers_first_fit():
    rows = rows_of([("w", [Hit(A, 0, 2, 1), Hit(A, 1, 3, 1), Hit(A, 2, 4, 1), Hit(A, 2.5, 5, 1)])])
    assert [(name, [(r.start, r.end) for r in layer]) for name, layer in tiers(rows)] == [
        ("w", [(0, 2), (2, 4)]),
        ("w (2)", [(1, 3)]),
        ("w (3)", [(2.5, 5)]),
    ]


def test_no_hits_and_unknown_formats():
    assert export([("prince", [])], "vtt") == {}
    (_, text), = export([("prince", [])], "csv").items()
    assert text == "query,path,start,end,score\n"
    with pytest.raises(QueryError, match="unknown export format 'srt'; choose one of csv, json"):
        check_format("srt")
    assert set(FORMATS) == {"csv", "json", "vtt", "audacity", "textgrid", "eaf"}
