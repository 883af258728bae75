"""The web API of `awesearch serve` through Starlette's TestClient, on a small index built with the random encoder.

The random encoder cannot find words; these tests are about the API: the hit contract, that options reach the
engine, exports, audio bytes and ranges, and that every bad input is a 4xx with a one-line JSON error.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from helpers import write_audio
from typer.testing import CliRunner

from awesearch.cli import app as cli_app

pytestmark = pytest.mark.slow  # builds and opens an index (about 10 s for the module)


@pytest.fixture(scope="module")
def archive(web_archive):
    from awesearch.web.app import open_archive

    return open_archive(web_archive[1])


@pytest.fixture(scope="module")
def client(archive):
    from starlette.testclient import TestClient

    from awesearch.web.app import create_app

    with TestClient(create_app(archive)) as c:
        yield c


def fid(archive, name: str) -> int:
    return next(i for i, p in enumerate(archive.paths) if p.endswith(name))


def one_line_error(response, status: int, contains: str) -> None:
    assert response.status_code == status, (response.status_code, response.text)
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert set(body) == {"error"} and "\n" not in body["error"] and "Traceback" not in body["error"], body
    assert contains in body["error"], body


def index_snapshot(index_dir: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(index_dir.iterdir()) if p.is_file()}


# -- searches -----------------------------------------------------------------------------------------


def test_text_search_is_the_engines_answer_plus_audio_urls(client, archive):
    r = client.get("/api/search", params={"text": "The Prince!", "k": 4})
    assert r.status_code == 200, r.text
    hits = r.json()["hits"]
    expected = archive.engine.search(text="The Prince!", k=4)
    assert [(h["path"], h["start"], h["end"]) for h in hits] == [(h.path, h.start, h.end) for h in expected]
    assert [h["score"] for h in hits] == pytest.approx([h.score for h in expected], abs=1e-6)
    for h in hits:
        assert set(h) == {"path", "start", "end", "score", "file_id", "audio_url"}
        assert archive.paths[h["file_id"]] == h["path"] and h["audio_url"] == f"/api/audio/{h['file_id']}"


def test_within_keeps_one_recording_or_folder(client, archive, web_archive):
    files, _ = web_archive
    one = str(files / "doctor.flac")
    hits = client.get("/api/search", params={"text": "doctor", "k": 5, "within": one}).json()["hits"]
    assert hits and {h["path"] for h in hits} == {one}
    everywhere = client.get("/api/search", params={"text": "doctor", "k": 5, "within": str(files)}).json()["hits"]
    assert len({h["path"] for h in everywhere}) > 1
    r = client.get("/api/search", params={"text": "doctor", "within": "/nowhere/at/all"})
    assert r.status_code == 400 and "no indexed recording" in r.json()["error"]


def test_threshold_is_passed_through(client):
    hits = client.get("/api/search", params={"text": "seven apples", "k": 5}).json()["hits"]
    cut = (hits[0]["score"] + hits[-1]["score"]) / 2
    above = client.get("/api/search", params={"text": "seven apples", "k": 5, "threshold": cut}).json()["hits"]
    assert 0 < len(above) < 5 and all(h["score"] >= cut for h in above)
    assert client.get("/api/search", params={"text": "seven apples", "threshold": 1.01}).json()["hits"] == []


def test_more_like_this_finds_the_span_itself(client, archive):
    t = archive.engine.table
    row = int(np.flatnonzero(t.file_ids == fid(archive, "doctor.flac"))[7])
    r = client.get("/api/search", params={"file": int(t.file_ids[row]), "start": t.starts[row], "end": t.ends[row], "k": 3})
    assert r.status_code == 200, r.text
    top = r.json()["hits"][0]
    assert top["path"].endswith("doctor.flac") and top["score"] > 0.99
    assert abs(top["start"] - t.starts[row]) <= 0.02 and abs(top["end"] - t.ends[row]) <= 0.02


def test_uploaded_clip_finds_itself_and_fuses_with_text(client, archive, web_archive, tmp_path):
    files, _ = web_archive
    t = archive.engine.table
    row = int(np.flatnonzero(t.file_ids == fid(archive, "prince.wav"))[11])
    audio, _ = sf.read(files / "prince.wav", dtype="float32")
    clip = write_audio(tmp_path / "clip.flac", audio)
    params = {"start": t.starts[row], "end": t.ends[row], "k": 3}
    r = client.post("/api/search", params=params, content=clip.read_bytes(), headers={"Content-Type": "audio/flac"})
    assert r.status_code == 200, r.text
    top = r.json()["hits"][0]
    assert top["path"].endswith("prince.wav") and top["score"] > 0.99 and abs(top["start"] - t.starts[row]) <= 0.02
    fused = client.post("/api/search", params={**params, "text": "prince"}, content=clip.read_bytes(), headers={"Content-Type": "audio/flac"})
    assert fused.status_code == 200 and fused.json()["query"]["text"] == "prince"
    assert fused.json()["hits"][0]["score"] < top["score"]  # the mean with a (random) text score


# -- exports ----------------------------------------------------------------------------------------------


def test_csv_and_json_exports_hold_the_hits(client):
    hits = client.get("/api/search", params={"text": "doctor", "k": 5}).json()["hits"]
    r = client.get("/api/search", params={"text": "doctor", "k": 5, "format": "csv"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    assert 'filename="awesearch-doctor.csv"' in r.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert [(row["path"], float(row["start"])) for row in rows] == [(h["path"], pytest.approx(h["start"], abs=1e-3)) for h in hits]
    as_json = client.get("/api/search", params={"text": "doctor", "k": 5, "format": "json"}).json()
    assert [(h["query"], h["path"], h["start"]) for h in as_json] == [("doctor", h["path"], h["start"]) for h in hits]


def test_per_file_exports_are_one_file_or_a_zip(client, archive):
    hits = client.get("/api/search", params={"text": "doctor", "k": 6}).json()["hits"]
    names = {Path(h["path"]).stem for h in hits}
    assert len(names) >= 2  # the random encoder spreads hits over the recordings
    r = client.get("/api/search", params={"text": "doctor", "k": 6, "format": "vtt"})
    assert r.status_code == 200 and r.headers["content-type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(r.content)) as z:
        assert {n.split(".")[0] for n in z.namelist()} == names
        assert all(z.read(n).startswith(b"WEBVTT") for n in z.namelist())
    one = archive.engine.table
    row = int(np.flatnonzero(one.file_ids == fid(archive, "prince.wav"))[3])
    single = client.get("/api/search", params={"file": int(one.file_ids[row]), "start": one.starts[row], "end": one.ends[row], "k": 1, "format": "textgrid"})
    assert single.status_code == 200 and single.text.startswith('File type = "ooTextFile"')
    assert 'filename="prince.like-prince' in single.headers["content-disposition"]


# -- audio and peaks -----------------------------------------------------------------------------------------


def test_audio_whole_and_ranges(client, archive, web_archive):
    files, _ = web_archive
    data = (files / "doctor.flac").read_bytes()
    url = f"/api/audio/{fid(archive, 'doctor.flac')}"
    whole = client.get(url)
    assert whole.status_code == 200 and whole.content == data and whole.headers["content-type"] == "audio/flac"
    assert whole.headers["accept-ranges"] == "bytes"
    part = client.get(url, headers={"Range": "bytes=100-1099"})
    assert part.status_code == 206 and part.content == data[100:1100]
    assert part.headers["content-range"] == f"bytes 100-1099/{len(data)}"
    tail = client.get(url, headers={"Range": "bytes=-500"})
    assert tail.status_code == 206 and tail.content == data[-500:]
    open_end = client.get(url, headers={"Range": f"bytes={len(data) - 10}-"})
    assert open_end.content == data[-10:]


def test_a_container_browsers_cannot_play_is_transcoded_to_wav(client, archive, web_archive):
    from awesearch.audio import load_audio

    files, _ = web_archive
    url = f"/api/audio/{fid(archive, 'shells.mka')}"
    whole = client.get(url)
    assert whole.status_code == 200 and whole.headers["content-type"] == "audio/wav"
    samples, sr = sf.read(io.BytesIO(whole.content), dtype="float32")
    assert sr == 16000
    decoded = load_audio(files / "shells.mka")
    n = min(len(samples), len(decoded))
    assert abs(len(samples) - len(decoded)) <= 160 and np.max(np.abs(samples[:n] - decoded[:n])) < 2e-4
    # any byte range of the virtual file, odd offsets included, is the same bytes as the whole
    for first, last in [(0, 10), (43, 44), (1001, 20_000), (len(whole.content) - 7, len(whole.content) - 1)]:
        part = client.get(url, headers={"Range": f"bytes={first}-{last}"})
        assert part.status_code == 206 and part.content == whole.content[first : last + 1], (first, last)
    # a format the browser plays is also available transcoded (the page falls back to it on a codec error)
    wav = client.get(f"/api/audio/{fid(archive, 'doctor.flac')}?transcode=1")
    assert wav.status_code == 200 and sf.info(io.BytesIO(wav.content)).samplerate == 16000


def test_seeking_far_into_a_pyav_file_starts_at_the_right_sample(speech_clips, tmp_path):
    """Past SEEK_MIN_S the transcoder seeks the container instead of decoding from the start: same samples, within 2 ms."""
    from awesearch.audio import SAMPLE_RATE, load_audio, probe_duration
    from awesearch.web.media import SEEK_MIN_S, WAV_HEADER_BYTES, _pyav_seek_blocks, transcoded_source

    long = np.tile(speech_clips[0][0], int(np.ceil((SEEK_MIN_S + 10) * SAMPLE_RATE / len(speech_clips[0][0]))))
    path = write_audio(tmp_path / "long.webm", long).rename(tmp_path / "long.mka")
    source = transcoded_source(path, probe_duration(path))
    at = SEEK_MIN_S + 5.0
    assert next(_pyav_seek_blocks(path, at), None) is not None  # the seek path, not the decode-from-0 fallback
    offset = WAV_HEADER_BYTES + int(at * SAMPLE_RATE) * 2
    got = np.frombuffer(b"".join(source.read(offset, SAMPLE_RATE * 2)), "<i2").astype(np.float32) / 32767
    ref = load_audio(path, at - 0.1, at + 1.1)
    lag_max = int(0.002 * SAMPLE_RATE)
    errors = {lag: np.abs(ref[1600 + lag : 1600 + lag + SAMPLE_RATE] - got).max() for lag in range(-lag_max, lag_max + 1)}
    best = min(errors, key=errors.get)
    assert errors[best] < 1e-3, (best, errors[best])
    assert np.abs(ref).max() > 0.1  # speech there, not silence that matches anywhere


def test_peaks(client, archive, web_archive):
    from awesearch.audio import load_audio

    files, _ = web_archive
    r = client.get(f"/api/peaks/{fid(archive, 'prince.wav')}", params={"start": 1.0, "end": 2.0, "n": 10})
    assert r.status_code == 200, r.text
    peaks = np.array(r.json()["peaks"])
    audio = load_audio(files / "prince.wav", 1.0, 2.0)
    assert peaks.shape == (10, 2) and peaks[:, 0].min() == pytest.approx(audio.min(), abs=1e-3)
    assert peaks[:, 1].max() == pytest.approx(audio.max(), abs=1e-3)


def test_info_and_page(client):
    info = client.get("/api/info").json()
    assert info["files"] == 3 and info["encoder"] == "random" and len(info["recordings"]) == 3
    assert [Path(s["path"]).name for s in info["skipped"]] == ["junk.wav"] and info["skipped"][0]["error"]
    assert set(info["formats"]) == {"csv", "json", "vtt", "audacity", "textgrid", "eaf"}
    page = client.get("/?q=prince")
    assert page.status_code == 200 and '<script type="module" src="/static/app.js">' in page.text
    assert client.get("/static/app.js").status_code == 200


# -- bad input -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url, status, message",
    [
        ("/api/search", 400, "give text="),
        ("/api/search?text=", 400, "give text="),
        ("/api/search?text=%3F%21", 400, "no words"),
        ("/api/search?text=one+two+three+four+five", 400, "5 words"),
        ("/api/search?text=prince&k=0", 400, "k must be between"),
        ("/api/search?text=prince&k=100000", 400, "k must be between"),
        ("/api/search?text=prince&k=ten", 400, "whole number"),
        ("/api/search?text=prince&threshold=high", 400, "threshold must be a number"),
        ("/api/search?text=prince&threshold=inf", 400, "finite"),
        ("/api/search?text=prince&format=pdf", 400, "unknown export format"),
        ("/api/search?q=prince", 400, "unknown parameter 'q'"),
        ("/api/search?text=prince&start=1", 400, "need file="),
        ("/api/search?file=0", 400, "needs file, start and end"),
        ("/api/search?file=99&start=1&end=2", 404, "no recording with file id 99"),
        ("/api/search?file=../../etc/passwd&start=1&end=2", 400, "whole number"),
        ("/api/search?file=0&start=2&end=1", 400, "before --end"),
        ("/api/search?file=0&start=-1&end=1", 400, "start must be >= 0"),
        ("/api/search?file=0&start=1&end=9", 400, "one to four words"),
        ("/api/search?file=0&start=999&end=1000", 400, "past the end"),
        ("/api/audio/99", 404, "no recording with file id 99"),
        ("/api/audio/-1", 404, "no recording with file id -1"),
        ("/api/audio/1e3", 400, "whole number"),
        ("/api/audio/0?transcode=yes", 400, "transcode must be 0 or 1"),
        ("/api/audio/..%2F..%2Fetc%2Fpasswd", 404, "not found"),
        ("/api/audio/%2Fetc%2Fpasswd", 404, "not found"),
        ("/static/..%2F..%2Fcli.py", 404, "not found"),
        ("/static/../app.py", 404, "not found"),
        ("/api/peaks/0?start=2&end=1", 400, "start < end"),
        ("/api/peaks/0?start=0&end=100", 400, "at most 60 s"),
        ("/api/peaks/0?start=0&end=1&n=0", 400, "n must be between"),
        ("/api/info?verbose=1", 400, "unknown parameter"),
        ("/no/such/page", 404, "not found"),
    ],
)
def test_bad_requests_get_a_one_line_json_error(client, url, status, message):
    one_line_error(client.get(url), status, message)


@pytest.mark.parametrize("header, message", [("bytes=999999999-", "outside"), ("bytes=abc", "malformed"), ("bytes=-0", "no bytes"), ("lines=1-2", "malformed")])
def test_bad_ranges(client, header, message):
    one_line_error(client.get("/api/audio/0", headers={"Range": header}), 416, message)


def test_method_not_allowed(client):
    one_line_error(client.delete("/api/search?text=prince"), 405, "not allowed")
    one_line_error(client.put("/api/audio/0", content=b"x"), 405, "not allowed")


def test_bad_uploads(client, web_archive, speech_clips, tmp_path):
    from awesearch.web.app import MAX_UPLOAD_BYTES

    files, _ = web_archive
    post = lambda body, params=None, **kw: client.post("/api/search", params=params or {}, content=body, **kw)  # noqa: E731
    one_line_error(post(b""), 400, "needs an audio clip")
    one_line_error(post(b"\0" * (MAX_UPLOAD_BYTES + 1)), 413, "limit is 20 MB")
    one_line_error(post(iter([b"\0" * 1024 * 1024] * 21)), 413, "over the 20 MB limit")  # chunked, no Content-Length
    junk = post(b"RIFF, but not really a wave file" * 10, headers={"Content-Type": "audio/wav"})
    one_line_error(junk, 422, "uploaded clip: not decodable")
    assert "awesearch-upload" not in junk.text  # the temporary file's name stays inside
    silent = write_audio(tmp_path / "silent.wav", np.zeros(16000, np.float32))
    one_line_error(post(silent.read_bytes(), headers={"Content-Type": "audio/wav"}), 400, "silent")
    long = write_audio(tmp_path / "long.wav", np.tile(speech_clips[0][0], 8))  # over 30 s
    one_line_error(post(long.read_bytes(), headers={"Content-Type": "audio/wav"}), 400, "give --start and --end")
    clip = (files / "prince.wav").read_bytes()
    one_line_error(post(clip, {"start": "1", "end": "0.5"}, headers={"Content-Type": "audio/wav"}), 400, "before --end")
    one_line_error(post(clip, {"file": "0"}), 400, "unknown parameter 'file'")


def test_recordings_gone_or_damaged_after_indexing(client, archive, web_archive):
    files, _ = web_archive
    path = files / "prince.wav"
    saved = path.read_bytes()
    try:
        path.unlink()
        one_line_error(client.get(f"/api/audio/{fid(archive, 'prince.wav')}"), 404, "no longer on disk")
        one_line_error(client.get(f"/api/peaks/{fid(archive, 'prince.wav')}?start=0&end=1"), 404, "no longer on disk")
        path.write_bytes(b"garbage" * 100)
        one_line_error(client.get(f"/api/audio/{fid(archive, 'prince.wav')}?transcode=1"), 422, "not decodable")
    finally:
        path.write_bytes(saved)


def test_on_loopback_other_host_names_are_refused(archive):
    """DNS rebinding: a page from evil.example resolving to 127.0.0.1 sends Host: evil.example."""
    from starlette.testclient import TestClient

    from awesearch.web.app import LOOPBACK_HOSTS, create_app

    with TestClient(create_app(archive, LOOPBACK_HOSTS), base_url="http://127.0.0.1:8765") as c:
        assert c.get("/api/info").status_code == 200
        assert c.get("/api/info", headers={"Host": "localhost:8765"}).status_code == 200
        assert c.get("/api/info", headers={"Host": "[::1]:8765"}).status_code == 200
        one_line_error(c.get("/api/info", headers={"Host": "evil.example:8765"}), 421, "not host 'evil.example:8765'")
        one_line_error(c.get("/api/audio/0", headers={"Host": "127.0.0.1.evil.example"}), 421, "answers only for")


def test_the_server_never_writes_the_index(web_archive, archive):
    """Every kind of request, good and bad, against a fresh app: the index directory is byte-identical after."""
    from starlette.testclient import TestClient

    from awesearch.web.app import create_app

    _, index_dir = web_archive
    before = index_snapshot(index_dir)
    with TestClient(create_app(archive)) as c:
        for url in ["/api/info", "/api/search?text=prince&format=eaf", "/api/search?file=0&start=1&end=1.5", "/api/audio/0", "/api/search?text=x+y+z+w+v"]:
            c.get(url)
        c.post("/api/search", content=b"junk")
    assert index_snapshot(index_dir) == before


# -- the CLI ----------------------------------------------------------------------------------------------------

runner = CliRunner()


def test_serve_help_and_bad_options(tmp_path):
    result = runner.invoke(cli_app, ["serve", "--help"])
    assert result.exit_code == 0
    for option in ["--index", "--port", "--host", "--open"]:
        assert option in result.stdout
    bad_port = runner.invoke(cli_app, ["serve", "--index", str(tmp_path), "--port", "70000"])
    assert bad_port.exit_code == 1 and "--port must be 1..65535" in bad_port.stderr
    # another host: the warning comes first, then the missing index ends the run (nothing is served)
    exposed = runner.invoke(cli_app, ["serve", "--index", str(tmp_path / "none"), "--host", "0.0.0.0"])
    assert exposed.exit_code == 1
    lines = exposed.stderr.strip().splitlines()
    assert "WARNING" in lines[0] and "anyone who can reach this machine" in lines[0] and "no index at" in lines[1]
    local = runner.invoke(cli_app, ["serve", "--index", str(tmp_path / "none"), "--host", "127.0.0.1"])
    assert local.exit_code == 1 and "WARNING" not in local.stderr


def test_query_format_options(web_archive, tmp_path):
    _, index_dir = web_archive
    usage = runner.invoke(cli_app, ["query", "--help"]).stdout
    assert "--format" in usage and "--out" in usage and "textgrid" in usage
    q = ["query", "--index", str(index_dir), "--text", "prince", "-k", "4"]
    as_csv = runner.invoke(cli_app, [*q, "--format", "csv"])
    assert as_csv.exit_code == 0, as_csv.stderr
    rows = list(csv.DictReader(io.StringIO(as_csv.stdout)))
    as_json = json.loads(runner.invoke(cli_app, [*q, "--json"]).stdout)  # --json keeps its contract
    assert [(r["path"], float(r["start"])) for r in rows] == [(h["path"], pytest.approx(h["start"], abs=1e-3)) for h in as_json]
    assert set(as_json[0]) == {"path", "start", "end", "score"}
    spread = len({h["path"] for h in as_json})
    vtt = runner.invoke(cli_app, [*q, "--format", "vtt"])
    if spread > 1:
        assert vtt.exit_code == 1 and "give --out DIR" in vtt.stderr
    out = runner.invoke(cli_app, [*q, "--format", "eaf", "--out", str(tmp_path / "eaf")])
    assert out.exit_code == 0, out.stderr
    assert len(list((tmp_path / "eaf").glob("*.prince.eaf"))) == spread
    for args, message in [(["--format", "pdf"], "unknown export format"), (["--format", "csv", "--json"], "cannot be combined"), (["--out", "x"], "--out needs --format")]:
        bad = runner.invoke(cli_app, [*q, *args])
        assert bad.exit_code == 1 and message in bad.stderr and len(bad.stderr.strip().splitlines()) == 1
