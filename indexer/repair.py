"""Repairing an index whose data files are damaged: drop what was lost, mark its recordings for re-embedding.

The writer verifies the index when it opens (indexer/writer.py) and hands the damage here. A damaged
segment (.vec or .parquet) is dropped from the manifest and every recording with rows in it becomes a
"skipped" record with the reason; the next scan of its folder re-embeds it (skipped files are always
retried), so exactly the recordings whose data was lost are embedded again. Their rows in other segments
become dead rows (tombstones) that compaction removes. A damaged files table loses the map from file ids
to paths: every segment is dropped and every recording under the given folders is embedded again.
A damaged speaker table (spk-N.parquet) is dropped and the recordings left without speaker pieces (indexed,
with speech, and in no intact speaker table) are re-embedded the same way. A damaged voices file
(spkc-N.json) is dropped: `awesearch speakers` clusters the voices again (their names are lost: a note says so).
"""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import numpy as np

from awesearch.errors import IndexDamagedError
from awesearch.integrity import Damage, damage_message
from awesearch.store import STATUS_INDEXED, STATUS_SKIPPED, FileRecord, IndexStore, Manifest, parquet_from_bytes

SEGMENT_FILE = re.compile(r"^(seg-\d{6})\.(vec|parquet)$")
APPROX_FILE = re.compile(r"^approx-\d{6}\.(faiss|rows)$")
PHONETIC_FILE = re.compile(r"^phon-(\d{8})\.awp$")  # store.phonetic_name: one per recording, by file_id
SPEAKER_FILE = re.compile(r"^(spk-\d{6})\.parquet$")
VOICES_FILE = re.compile(r"^spkc-\d{6}\.json$")
VOICES_LOST = "the voices file {} was damaged and dropped: run `awesearch speakers` to find the voices again (names given to them are lost)"
LOST_REASON = "its index data was lost ({}); re-embedded when its folder is indexed again"


def _segment_file_ids(store: IndexStore, seg, parquet_ok: bool) -> np.ndarray | None:
    """File ids with rows in a segment: exact from an intact .parquet, else the manifest's range (None: unknown)."""
    if parquet_ok:
        return parquet_from_bytes(store.read_verified(f"{seg.name}.parquet")).column("file_id").to_numpy()
    if seg.file_id_min < 0:
        return None
    return np.arange(seg.file_id_min, seg.file_id_max + 1)


def _speaker_losses(store: IndexStore, manifest: Manifest, bad: set[str], files: dict[str, FileRecord]) -> dict[int, str]:
    """Drop damaged speaker tables and voices; {file id: reason} of the recordings left without speaker pieces."""
    if manifest.speaker_voices in bad:
        manifest.speaker_voices = None
    bad_tables = {m.group(1) for name in bad if (m := SPEAKER_FILE.match(name))}
    if not bad_tables:
        return {}
    from awesearch.speaker_index import read_speaker_table

    manifest.speaker_tables = [t for t in manifest.speaker_tables if t.name not in bad_tables]
    kept = {int(f) for t in manifest.speaker_tables for f in np.unique(read_speaker_table(store.directory, t)[0])}
    what = ", ".join(sorted(f"{t}.parquet" for t in bad_tables))
    return {f.file_id: what for f in files.values() if f.status == STATUS_INDEXED and f.windows > 0 and f.file_id not in kept}


def repair(directory: Path, manifest: Manifest, damages: list[Damage]) -> tuple[dict[str, FileRecord], list[str]]:
    """Drop damaged data from `manifest` (in place); returns (files by path, paths whose data was lost).

    The caller commits the result. IndexDamagedError for damage this function cannot map to recordings."""
    store = IndexStore(directory, manifest)
    bad = {d.name for d in damages}
    table_lost = manifest.files_table in bad
    bad_segments = {m.group(1) for name in bad if (m := SEGMENT_FILE.match(name))}
    if manifest.approx and (bad & {f"{manifest.approx['name']}.{ext}" for ext in ("faiss", "rows")}
                            or bad_segments & set(manifest.approx["segments"])):
        manifest.approx = None  # derived from the segments: rebuilt at the end of the run, nothing is lost
    known = (SEGMENT_FILE.match, APPROX_FILE.match, PHONETIC_FILE.match, SPEAKER_FILE.match, VOICES_FILE.match)
    unknown = [d for d in damages if d.name != manifest.files_table and not any(k(d.name) for k in known)]
    if unknown:
        raise IndexDamagedError(
            damage_message(directory, unknown).split(";")[0] + "; this kind of file cannot be repaired: re-index into a new directory",
            unknown,
        )
    if table_lost:
        manifest.segments, manifest.files_table, manifest.speaker_tables = [], None, []  # voices stay: no file ids
        return {}, []
    files = {f.path: f for f in store.load_files()}
    lost_ids: set[int] = set()
    reasons: dict[int, str] = {}
    everything = False
    for seg in manifest.segments:
        if seg.name not in bad_segments:
            continue
        ids = _segment_file_ids(store, seg, f"{seg.name}.parquet" not in bad)
        what = ", ".join(sorted(n for n in bad if n.startswith(seg.name)))
        if ids is None:
            everything = True
            ids = np.asarray([f.file_id for f in files.values()])
        for fid in np.unique(ids).tolist():
            lost_ids.add(int(fid))
            reasons.setdefault(int(fid), what)
    for fid, what in _speaker_losses(store, manifest, bad, files).items():
        lost_ids.add(fid)
        reasons.setdefault(fid, what)
    for name in bad:
        if m := PHONETIC_FILE.match(name):
            lost_ids.add(int(m.group(1)))
            reasons.setdefault(int(m.group(1)), name)
    manifest.segments = [s for s in manifest.segments if s.name not in bad_segments]
    lost_paths = []
    for path, rec in list(files.items()):
        if rec.status == STATUS_INDEXED and (everything or rec.file_id in lost_ids):
            files[path] = replace(rec, status=STATUS_SKIPPED, windows=0, phonetic_frames=0,
                                  error=LOST_REASON.format(reasons.get(rec.file_id, "damaged")))
            lost_paths.append(path)
    return files, sorted(lost_paths)
