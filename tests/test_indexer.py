"""The indexing pipeline: incremental runs, chunking, odd files, and surviving SIGKILL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from awesearch.errors import AwesearchError, IndexFormatError
from awesearch.store import STATUS_INDEXED, STATUS_SKIPPED, IndexStore
from helpers import noise, tone, truncate, write_audio
from awesearch.indexer import index_paths
from awesearch.indexer import embed, pipeline
from awesearch.windows import MIN_WINDOW_S

REPO = Path(__file__).resolve().parent.parent


def run(root, idx, **kw):
    return index_paths([root], idx, model="random", **kw)


def rows_and_vectors(idx) -> dict[tuple[str, float, float], np.ndarray]:
    data = IndexStore.open(idx).load_search_data()
    vecs = data.index.reconstruct_n(0, data.index.ntotal)
    rows = [(data.paths[int(f)], round(float(s), 6), round(float(e), 6)) for f, s, e in zip(data.file_ids, data.starts, data.ends)]
    assert len(set(rows)) == len(rows), "duplicate windows"
    return dict(zip(rows, vecs))


def assert_same_index(a, b):
    ra, rb = rows_and_vectors(a), rows_and_vectors(b)
    assert set(ra) == set(rb)
    for k in ra:
        np.testing.assert_allclose(ra[k], rb[k], atol=1e-2)


def test_index_corpus(corpus, tmp_path, random_encoder):
    idx = tmp_path / "idx"
    progress = []
    report = run(corpus, idx, progress=lambda p: progress.append((p.done_audio_s, p.total_audio_s, p.files_done)))
    assert report.ok and report.indexed == 3 and not report.skipped
    assert report.windows > 100 and 0 < report.speech_s < report.audio_s
    assert progress[0][0] == 0 and progress[-1][0] == pytest.approx(progress[-1][1]) and progress[-1][2] == 3
    assert all(a[0] <= b[0] for a, b in zip(progress, progress[1:]))
    store = IndexStore.open(idx)
    files = {Path(f.path).name: f for f in store.load_files()}
    assert set(files) == {"a.wav", "b.flac", "c.ogg"}
    data = store.load_search_data()
    assert data.index.ntotal == report.windows
    for fid in data.paths:
        mine = data.file_ids == fid
        duration = [f.duration for f in files.values() if f.file_id == fid][0]
        assert (data.starts[mine] >= 0).all() and (data.ends[mine] <= duration + 1e-6).all()
    frame_s = 1 / random_encoder.frame_rate  # windows are snapped to the encoder's frame grid
    assert (data.ends - data.starts >= MIN_WINDOW_S - frame_s - 1e-6).all()
    assert np.allclose(data.starts / frame_s, np.round(data.starts / frame_s), atol=1e-3)


@pytest.mark.slow
def test_incremental_add_touch_change_delete(corpus, tmp_path, speech_clips):
    idx = tmp_path / "idx"
    assert run(corpus, idx).indexed == 3
    again = run(corpus, idx)
    assert (again.indexed, again.unchanged, again.removed) == (0, 3, 0)

    write_audio(corpus / "d.wav", speech_clips[2][0])
    added = run(corpus, idx)
    assert (added.indexed, added.unchanged) == (1, 3)

    a = corpus / "a.wav"
    os.utime(a, ns=(a.stat().st_atime_ns, a.stat().st_mtime_ns + 5_000_000_000))  # same bytes, new mtime
    touched = run(corpus, idx)
    assert (touched.indexed, touched.unchanged) == (0, 4)
    rec = {f.path: f for f in IndexStore.open(idx).load_files()}[str(a)]
    assert rec.mtime_ns == a.stat().st_mtime_ns

    write_audio(corpus / "sub" / "b.flac", speech_clips[0][0])  # new content
    changed = run(corpus, idx)
    assert (changed.indexed, changed.unchanged) == (1, 3)

    (corpus / "sub" / "deeper" / "c.ogg").unlink()
    deleted = run(corpus, idx)
    assert (deleted.indexed, deleted.unchanged, deleted.removed) == (0, 3, 1)

    fresh = tmp_path / "fresh"
    run(corpus, fresh)
    assert_same_index(idx, fresh)  # no stale, duplicate or missing windows
    assert len(IndexStore.open(idx).load_files()) == 3


def test_other_roots_are_kept_until_deleted(corpus, tmp_path, speech_clips):
    idx = tmp_path / "idx"
    other = tmp_path / "other"
    write_audio(other / "x.wav", speech_clips[0][0])
    run(corpus, idx)
    report = run(other, idx)
    assert report.indexed == 1 and report.removed == 0
    assert len(IndexStore.open(idx).load_files()) == 4
    (corpus / "a.wav").unlink()
    assert run(other, idx).removed == 1  # gone from disk: dropped whatever root is scanned


@pytest.mark.slow
def test_chunked_matches_unchunked(tmp_path, speech_clips, monkeypatch):
    audio = np.concatenate([c[0] for c in speech_clips] * 2)  # ~30 s: four 8 s chunks
    root = tmp_path / "long"
    write_audio(root / "long.wav", audio)
    run(root, tmp_path / "whole")
    monkeypatch.setattr(embed, "CHUNK_S", 8.0)
    run(root, tmp_path / "chunked")
    whole, chunked = rows_and_vectors(tmp_path / "whole"), rows_and_vectors(tmp_path / "chunked")  # no duplicates
    a = np.array([k[1:] for k in whole])
    b = np.array([k[1:] for k in chunked])
    # VAD edges move by a frame or two with the context a chunk gives, and the boundary grid moves with them,
    # but never by more than the 0.1 s the windows promise
    near = lambda x, y: (np.abs(x[:, None, :] - y[None, :, :]).max(axis=2) <= 0.1 + 1e-6).any(axis=1)  # noqa: E731
    assert near(a, b).mean() > 0.95 and near(b, a).mean() > 0.95
    shared = set(whole) & set(chunked)
    assert len(shared) > 50
    for k in shared:
        np.testing.assert_allclose(whole[k], chunked[k], atol=2e-2)  # each window got its full context


def test_odd_files_are_skipped_with_reasons(corpus, tmp_path, monkeypatch):
    (corpus / "empty.wav").write_bytes(b"")
    truncate(write_audio(corpus / "trunc.wav", tone(2.0)), 0.5)
    (corpus / "notes.mp3").write_text("not audio at all\n" * 50)
    os.symlink(corpus / "gone.flac", corpus / "link.flac")
    (corpus / "readme.txt").write_text("ignored: not an audio extension")
    write_audio(corpus / "hum.wav", tone(3.0, 120.0, amp=0.05))  # audio without speech
    locked = write_audio(corpus / "locked.wav", tone(1.0))
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, m: False if Path(p) == locked else real_access(p, m))

    report = run(corpus, tmp_path / "idx")
    reasons = {Path(s.path).name: s.reason for s in report.skipped}
    assert set(reasons) == {"empty.wav", "trunc.wav", "notes.mp3", "link.flac", "locked.wav"}
    assert "empty" in reasons["empty.wav"] and "truncated" in reasons["trunc.wav"]
    assert "not decodable" in reasons["notes.mp3"] and "broken symlink" in reasons["link.flac"]
    assert "permission denied" in reasons["locked.wav"]
    assert all("\n" not in r for r in reasons.values())
    assert report.ok and report.indexed == 4  # three speech files and the hum
    files = {Path(f.path).name: f for f in IndexStore.open(tmp_path / "idx").load_files()}
    assert files["hum.wav"].status == STATUS_INDEXED and files["hum.wav"].windows == 0
    assert files["notes.mp3"].status == STATUS_SKIPPED and files["notes.mp3"].error == reasons["notes.mp3"]


def test_nothing_indexable(tmp_path):
    root = tmp_path / "bad"
    root.mkdir()
    (root / "empty.wav").write_bytes(b"")
    report = run(root, tmp_path / "idx")
    assert not report.ok and len(report.skipped) == 1
    with pytest.raises(AwesearchError, match="no such file"):
        run(tmp_path / "missing", tmp_path / "idx")


def test_other_encoder_is_refused(corpus, tmp_path):
    import json

    idx = tmp_path / "idx"
    run(corpus, idx)
    m = json.loads((idx / "manifest.json").read_text())
    m["encoder_checksum"] = "0" * 64
    (idx / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(IndexFormatError, match="re-index"):
        run(corpus, idx)


KILL_SCRIPT = """
import sys
sys.path.insert(0, sys.argv[3])
from awesearch.indexer import index_paths
index_paths([sys.argv[1]], sys.argv[2], model="random", commit_interval_s=0.0)
"""


@pytest.mark.slow
def test_sigkill_mid_run_then_resume(tmp_path, speech_clips):
    root = tmp_path / "many"
    for i in range(8):
        audio, _ = speech_clips[i % 3]
        write_audio(root / f"f{i}.wav", np.concatenate([noise(0.2 * i, seed=i), audio]))
    idx = tmp_path / "idx"
    env = {**os.environ, pipeline.TEST_PAUSE_ENV: "0.25"}
    generations = []
    for delay in (0.0, 0.3):  # kill twice, at different moments after a commit
        proc = subprocess.Popen([sys.executable, "-c", KILL_SCRIPT, str(root), str(idx), str(REPO)], env=env)
        base = IndexStore.open(idx).manifest.generation if (idx / "manifest.json").exists() else 0
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if (idx / "manifest.json").exists() and IndexStore.open(idx).manifest.generation > base:
                break
            time.sleep(0.02)
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert proc.returncode == -signal.SIGKILL, "the indexer finished before it was killed"
        store = IndexStore.open(idx)  # the index is usable right after the kill
        data = store.load_search_data()
        n_files = len([f for f in store.load_files() if f.status == STATUS_INDEXED])
        assert 0 < n_files < 8 and data.index.ntotal == sum(f.windows for f in store.load_files())
        generations.append(n_files)
    report = run(root, idx)
    assert report.indexed == 8 - generations[-1] and report.unchanged == generations[-1]
    clean = tmp_path / "clean"
    run(root, clean)
    assert_same_index(idx, clean)
    leftovers = {p.name for p in idx.iterdir()} - IndexStore.open(idx).referenced_names() - {"index.lock"}
    assert not leftovers or all(n.startswith("files-") for n in leftovers)  # the previous files table at most


def test_indexed_window_queried_by_example_finds_itself(corpus, tmp_path):
    """A clip cut from the archive at an indexed window's times embeds as that window did (same frame grid,
    full context), so query by example returns the window itself; with the windows' 0.1 s grid (see
    tests/test_audio.py) any clip is then found within 0.1 s by a trained encoder."""
    from awesearch.search import SearchEngine

    idx = tmp_path / "idx"
    run(corpus, idx)
    data = IndexStore.open(idx).load_search_data()
    engine = SearchEngine.open(idx)
    rng = np.random.default_rng(0)
    for i in rng.choice(data.index.ntotal, 6, replace=False):
        path, start, end = data.paths[int(data.file_ids[i])], float(data.starts[i]), float(data.ends[i])
        hit = engine.search_audio(path, start, end, k=1)[0]
        assert (hit.path, hit.start, hit.end) == (path, pytest.approx(start, abs=1e-6), pytest.approx(end, abs=1e-6))
        assert hit.score > 0.99
