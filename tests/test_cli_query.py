"""`awesearch query` end to end: a tiny archive indexed by the pipeline with the random encoder.

The random encoder cannot find words in general; these tests are about plumbing: the JSON contract, option
handling, one-line errors, and that query by example of a clip that is in the archive finds it at the right
place (the exact-match path must be precise to the window grid).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from helpers import resample, write_audio
from typer.testing import CliRunner

from awesearch.windows import MAX_GAP_S
from awesearch.cli import app

runner = CliRunner()
TOLERANCE_S = MAX_GAP_S / 2 + 1e-6  # seconds: first-stage hits are windows, within half a grid step of a short word's edges


@pytest.fixture(autouse=True, scope="module")
def restore_threads():
    """The query command sets torch/FAISS to one thread for its process; keep that out of other test modules."""
    import faiss
    import torch

    torch_threads, faiss_threads = torch.get_num_threads(), faiss.omp_get_max_threads()
    yield
    torch.set_num_threads(torch_threads)
    faiss.omp_set_num_threads(faiss_threads)


def run(*args: str, env: dict | None = None):
    return runner.invoke(app, ["query", *args], env=env)


def one_line_error(result, contains: str) -> None:
    assert result.exit_code == 1, (result.exit_code, result.stdout, result.stderr)
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and contains in lines[0], result.stderr
    assert "Traceback" not in result.stderr


# -- fast: no index needed ---------------------------------------------------------------------------


def test_help_text():
    result = runner.invoke(app, ["query", "--help"])
    assert result.exit_code == 0
    for option in ["--text", "--audio", "--start", "--end", "--queries", "--index", "--top", "--threshold", "--json"]:
        assert option in result.stdout


@pytest.mark.parametrize(
    "args, message",
    [
        (["--text", ""], "no words"),
        (["--text", "?!"], "no words"),
        (["--text", "one two three four five"], "5 words"),
        (["--audio", "/nonexistent/x.wav"], "not found"),
        (["--audio", "/nonexistent/x.wav", "--start", "2", "--end", "1"], "before --end"),
        (["--text", "prince", "--start", "1"], "need --audio"),
        (["--audio", "/nonexistent/x.wav", "--start", "1"], "go together"),
        (["--audio", "/nonexistent/x.wav", "--start", "1", "--end", "9"], "one to four words"),
        (["--audio", "/nonexistent/x.wav", "--start", "-1", "--end", "1"], ">= 0"),
        (["--audio", "/nonexistent/x.wav", "--audio", "/nonexistent/y.wav", "--start", "1", "--end", "2"], "one pair per example"),
        (["--audio", "/nonexistent/x.wav", "--audio", "/nonexistent/y.wav"], "not found"),
        (["--text", "prince", "--index", "/nonexistent/b", "--within", "/tmp"], "--within works with"),
        ([], "give --text"),
        (["--text", "prince", "--queries", "q.txt"], "cannot be combined"),
        (["--queries", "/nonexistent/q.txt"], "cannot read queries file"),
    ],
)
def test_bad_queries_fail_with_one_line(tmp_path, args, message):
    one_line_error(run("--index", str(tmp_path / "idx"), *args), message)


def test_missing_index(tmp_path):
    one_line_error(run("--index", str(tmp_path / "nothing"), "--text", "prince"), "no index at")
    one_line_error(run("--text", "prince", env={"AWESEARCH_INDEX": str(tmp_path / "env")}), str(tmp_path / "env"))


def test_bad_queries_file_names_the_line(tmp_path):
    q = tmp_path / "q.txt"
    q.write_text("# names\nprince\n\nthis query has far too many words\n")
    one_line_error(run("--index", str(tmp_path / "idx"), "--queries", str(q)), "line 4")


# -- slow: an indexed archive --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def archive(tmp_path_factory, speech_clips):
    """(archive dir, index dir, {file name: words}) with one 16 kHz wav and one 44.1 kHz stereo flac."""
    from awesearch.indexer import index_paths

    root = tmp_path_factory.mktemp("archive")
    files = root / "audio"
    write_audio(files / "prince.wav", speech_clips[0][0])
    write_audio(files / "doctor.flac", resample(speech_clips[1][0], 16000, 44100), sr=44100, channels=2)
    silent = files / "silence.wav"
    write_audio(silent, np.zeros(16000, np.float32))
    index_dir = root / "idx"
    report = index_paths([str(files)], index_dir, model="random")
    assert report.indexed == 3
    words = {"prince.wav": speech_clips[0][1], "doctor.flac": speech_clips[1][1]}
    return files, index_dir, words


def nearest_window(index_dir: Path, path: Path, start: float, end: float) -> tuple[float, float]:
    """The indexed window of `path` whose boundaries are closest to start..end."""
    from awesearch.store import open_for_search

    table, _, _ = open_for_search(index_dir)
    fid = table.paths.index(str(path))
    rows = np.flatnonzero(table.file_ids == fid)
    err = np.maximum(np.abs(table.starts[rows] - start), np.abs(table.ends[rows] - end))
    best = rows[np.argmin(err)]
    return float(table.starts[best]), float(table.ends[best])


@pytest.mark.slow
@pytest.mark.parametrize("name, word", [("prince.wav", "prince"), ("doctor.flac", "doctor")])
def test_query_by_example_finds_the_clip_in_place(archive, name, word):
    files, index_dir, words = archive
    spoken = next(w for w in words[name] if w.word == word)
    # the window grid puts some window within half a grid step of a short word's boundaries (awesearch/windows.py)
    start, end = nearest_window(index_dir, files / name, spoken.start, spoken.end)
    assert abs(start - spoken.start) <= TOLERANCE_S and abs(end - spoken.end) <= TOLERANCE_S
    result = run("--index", str(index_dir), "--audio", str(files / name), "--start", str(start), "--end", str(end), "--json")
    assert result.exit_code == 0, result.stderr
    top = json.loads(result.stdout)[0]
    assert top["path"] == str(files / name)
    assert abs(top["start"] - spoken.start) <= TOLERANCE_S, (top, spoken)
    assert abs(top["end"] - spoken.end) <= TOLERANCE_S, (top, spoken)
    assert top["score"] > 0.99  # the same audio, stored as int8


@pytest.mark.slow
def test_every_sampled_window_finds_itself(archive):
    from awesearch.search import SearchEngine

    _, index_dir, _ = archive
    engine = SearchEngine.open(index_dir)
    t = engine.table
    rng = np.random.default_rng(0)
    for i in rng.choice(t.index.ntotal, 25, replace=False):
        top = engine.search_audio(t.paths[t.file_ids[i]], t.starts[i], t.ends[i], k=1)[0]
        assert top.path == t.paths[t.file_ids[i]]
        assert abs(top.start - t.starts[i]) <= 0.02 and abs(top.end - t.ends[i]) <= 0.02, (top, t.starts[i], t.ends[i])


@pytest.mark.slow
def test_json_contract(archive):
    files, index_dir, _ = archive
    result = run("--index", str(index_dir), "--text", "The Prince!", "-k", "7", "--json")
    assert result.exit_code == 0, result.stderr
    hits = json.loads(result.stdout)  # the whole of stdout is one JSON document
    assert isinstance(hits, list) and 1 <= len(hits) <= 7
    for h in hits:
        assert set(h) == {"path", "start", "end", "score"}
        assert Path(h["path"]).is_absolute() and Path(h["path"]).parent == files
        assert all(isinstance(h[key], float) for key in ("start", "end", "score"))
        assert 0 <= h["start"] < h["end"]
    scores = [h["score"] for h in hits]
    assert scores == sorted(scores, reverse=True)
    # NMS: no two hits in one file are the same occurrence
    from awesearch.search import overlaps_too_much

    for i, a in enumerate(hits):
        for b in hits[:i]:
            assert a["path"] != b["path"] or not overlaps_too_much(a["start"], a["end"], b["start"], b["end"])


@pytest.mark.slow
def test_threshold_top_and_env_index(archive):
    _, index_dir, _ = archive
    result = run("--text", "seven apples", "--top", "3", "--json", env={"AWESEARCH_INDEX": str(index_dir)})
    assert result.exit_code == 0, result.stderr
    hits = json.loads(result.stdout)
    assert len(hits) == 3
    cut = (hits[0]["score"] + hits[-1]["score"]) / 2
    above = json.loads(run("--index", str(index_dir), "--text", "seven apples", "--threshold", str(cut), "--json").stdout)
    assert above and all(h["score"] >= cut for h in above)
    assert json.loads(run("--index", str(index_dir), "--text", "seven apples", "--threshold", "1.01", "--json").stdout) == []


@pytest.mark.slow
def test_queries_file(archive, tmp_path):
    _, index_dir, _ = archive
    q = tmp_path / "queries.txt"
    q.write_text("# people\nprince\n\n  doctor  \n# places\nLondon, 2\n")
    result = run("--index", str(index_dir), "--queries", str(q), "-k", "2", "--json")
    assert result.exit_code == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [obj["query"] for obj in lines] == ["prince", "doctor", "London, 2"]
    assert all(set(obj) == {"query", "hits"} and len(obj["hits"]) == 2 for obj in lines)
    table = run("--index", str(index_dir), "--queries", str(q), "-k", "2")
    assert table.exit_code == 0 and "'doctor'" in table.stdout


@pytest.mark.slow
def test_fused_query_is_the_mean_of_both_scores(archive):
    from awesearch.search import SearchEngine

    files, index_dir, words = archive
    spoken = next(w for w in words["prince.wav"] if w.word == "prince")
    engine = SearchEngine.open(index_dir)
    t = engine.table
    tv = engine.text_vector("prince")
    av = engine.audio_vector(files / "prince.wav", spoken.start, spoken.end)
    hits = engine.search(text="prince", audio=files / "prince.wav", start=spoken.start, end=spoken.end, k=3)
    for h in hits:
        row = np.flatnonzero((t.starts == h.start) & (t.ends == h.end) & (np.asarray(t.paths)[t.file_ids] == h.path))[0]
        w = t.index.reconstruct(int(row))
        assert h.score == pytest.approx((float(tv @ w) + float(av @ w)) / 2, abs=1e-4)


@pytest.mark.slow
def test_table_output(archive):
    _, index_dir, _ = archive
    result = run("--index", str(index_dir), "--text", "prince", "-k", "3")
    assert result.exit_code == 0, result.stderr
    # the random encoder's index has no phonetic store: its scores are cosines, and the column says so
    assert "cosine" in result.stdout and "0:00:0" in result.stdout
    assert "prince.wav" in result.stdout or "doctor.flac" in result.stdout


@pytest.mark.slow
def test_bad_audio_queries_against_an_index(archive, tmp_path):
    files, index_dir, _ = archive
    idx = str(index_dir)
    one_line_error(run("--index", idx, "--audio", str(files / "silence.wav")), "silent")
    one_line_error(run("--index", idx, "--audio", str(files / "prince.wav"), "--start", "1.0", "--end", "1.05"), "at least 0.1 s")
    one_line_error(run("--index", idx, "--audio", str(files / "prince.wav"), "--start", "999", "--end", "1000"), "past the end")
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"this is not audio at all" * 100)
    one_line_error(run("--index", idx, "--audio", str(junk)), "junk.wav")


@pytest.mark.slow
def test_index_built_by_another_encoder_is_refused(archive, tmp_path):
    import shutil

    _, index_dir, _ = archive
    copy = tmp_path / "idx"
    shutil.copytree(index_dir, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["encoder_name"] = "awe-no-such-model"
    (copy / "manifest.json").write_text(json.dumps(manifest))
    one_line_error(run("--index", str(copy), "--text", "prince"), "awe-no-such-model")
    manifest["encoder_name"] = "random"
    manifest["encoder_checksum"] = "0" * 64
    (copy / "manifest.json").write_text(json.dumps(manifest))
    one_line_error(run("--index", str(copy), "--text", "prince"), "built with encoder")


@pytest.mark.slow
def test_batched_text_queries_match_single_ones(archive):
    from awesearch.search import SearchEngine

    _, index_dir, _ = archive
    engine = SearchEngine.open(index_dir)
    texts = ["prince", "seven apples", "the doctor", "London"]
    batched = engine.search_texts(texts, k=4)
    for text, hits in zip(texts, batched):
        single = engine.search_text(text, k=4)
        assert [(h.path, h.start, h.end) for h in hits] == [(h.path, h.start, h.end) for h in single]
        assert [h.score for h in hits] == pytest.approx([h.score for h in single], abs=1e-5)


@pytest.mark.slow
def test_whole_clip_query_is_trimmed_to_its_speech(archive, speech_clips, tmp_path):
    from awesearch.search import SearchEngine

    files, index_dir, words = archive
    audio, spoken = speech_clips[0]
    word = next(w for w in spoken if w.word == "prince")
    clip = np.concatenate([np.zeros(8000, np.float32), audio[int(word.start * 16000) : int(word.end * 16000)], np.zeros(8000, np.float32)])
    path = write_audio(tmp_path / "clip.wav", clip)
    engine = SearchEngine.open(index_dir)
    start, end = engine._speech_span(path)
    assert abs(start - 0.5) <= 0.15 and abs(end - (0.5 + word.end - word.start)) <= 0.15
    result = run("--index", str(index_dir), "--audio", str(path), "-k", "3", "--json")
    assert result.exit_code == 0, result.stderr
    assert len(json.loads(result.stdout)) == 3
    # a whole recording is not a query: too much speech
    one_line_error(run("--index", str(index_dir), "--audio", str(files / "prince.wav")), "give --start and --end")


@pytest.mark.slow
def test_demo_archive_indexes_and_finds_prince_by_example(tmp_path):
    """python -m awesearch.example: wav/flac/mp3 by several voices; an mp3 clip of it is found in place."""
    import soundfile as sf

    from awesearch.example import RECORDINGS, write_example
    from awesearch.indexer import index_paths

    spoken = write_example(tmp_path / "demo")
    assert {p.suffix for p in (tmp_path / "demo").iterdir()} == {".wav", ".flac", ".mp3", ".tsv"}
    princes = [w for w in spoken if w.word == "prince"]
    assert len({w.path for w in princes}) >= 3 and len({(r.voice, r.variant) for r in RECORDINGS}) >= 3
    for w in spoken:
        assert 0 <= w.start < w.end <= sf.info(str(w.path)).duration
    index_dir = tmp_path / "idx"
    index_paths([str(tmp_path / "demo")], index_dir, model="random")
    target = next(w for w in princes if w.path.suffix == ".mp3")
    start, end = nearest_window(index_dir, target.path, target.start, target.end)
    result = run("--index", str(index_dir), "--audio", str(target.path), "--start", str(start), "--end", str(end), "--json")
    assert result.exit_code == 0, result.stderr
    top = json.loads(result.stdout)[0]
    assert top["path"] == str(target.path)
    assert abs(top["start"] - target.start) <= TOLERANCE_S and abs(top["end"] - target.end) <= TOLERANCE_S
