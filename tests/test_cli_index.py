"""The `index` and `info` commands and help texts, through typer's CliRunner."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from awesearch.cli import app

runner = CliRunner()


def invoke(*args, env=None):
    return runner.invoke(app, [str(a) for a in args], env=env)


def test_help_texts():
    top = invoke("--help")
    assert top.exit_code == 0 and "index" in top.output and "info" in top.output
    idx = invoke("index", "--help")
    assert idx.exit_code == 0
    for word in ("--index", "--model", "AWESEARCH_INDEX", "recursively"):
        assert word in idx.output
    info = invoke("info", "--help")
    assert info.exit_code == 0 and "skipped" in info.output and "--index" in info.output


def test_index_then_info(corpus, tmp_path):
    idx = tmp_path / "idx"
    (corpus / "notes.mp3").write_text("not audio\n" * 30)
    result = invoke("index", corpus, "--index", idx, "--model", "random", "--quiet")
    assert result.exit_code == 0, result.output
    assert "3 indexed, 0 unchanged, 0 removed, 1 skipped" in result.output
    assert "real time" in result.output and "notes.mp3" in result.output
    again = invoke("index", corpus, "--index", idx, "--model", "random", "--quiet")
    assert again.exit_code == 0 and "0 indexed, 3 unchanged" in again.output

    info = invoke("info", "--index", idx)
    assert info.exit_code == 0, info.output
    assert "3 indexed, 1 skipped" in info.output
    assert "encoder:  random" in info.output and "windows:" in info.output and "on disk" in info.output
    assert "scores:   cosine similarities" in info.output  # the random encoder has no phonetic store
    assert "notes.mp3: not decodable as audio" in info.output


def test_index_dir_from_environment(corpus, tmp_path):
    idx = tmp_path / "from-env"
    result = invoke("index", corpus / "a.wav", "--model", "random", "-q", env={"AWESEARCH_INDEX": str(idx)})
    assert result.exit_code == 0, result.output
    assert (idx / "manifest.json").is_file()
    info = invoke("info", env={"AWESEARCH_INDEX": str(idx)})
    assert info.exit_code == 0 and "1 indexed" in info.output


def test_info_without_index(tmp_path):
    result = invoke("info", "--index", tmp_path / "none")
    assert result.exit_code == 1
    assert result.output.strip().count("\n") == 0 and "no index at" in result.output
    assert "Traceback" not in result.output


def test_nothing_indexable_exits_1(tmp_path):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "zero.wav").write_bytes(b"")
    result = invoke("index", bad, "--index", tmp_path / "idx", "--model", "random", "-q")
    assert result.exit_code == 1
    assert "zero.wav: empty file" in result.output and "nothing could be indexed" in result.output


def test_library_errors_are_one_line(corpus, tmp_path):
    from awesearch.indexer.writer import IndexWriter
    from awesearch.encoder import load_encoder

    idx = tmp_path / "idx"
    missing = invoke("index", tmp_path / "nope", "--index", idx, "--model", "random")
    assert missing.exit_code == 1 and "no such file or directory" in missing.output and "Traceback" not in missing.output

    with IndexWriter.open(idx, load_encoder("random")):
        locked = invoke("index", corpus, "--index", idx, "--model", "random", "-q")
    assert locked.exit_code == 1 and "index is locked" in locked.output and "Traceback" not in locked.output

    assert invoke("index", corpus, "--index", idx, "--model", "random", "-q").exit_code == 0
    manifest = json.loads((idx / "manifest.json").read_text())
    manifest["format_version"] += 1
    (idx / "manifest.json").write_text(json.dumps(manifest))
    for args in (("index", corpus, "--index", idx, "--model", "random", "-q"), ("info", "--index", idx)):
        result = invoke(*args)
        assert result.exit_code == 1 and "re-index" in result.output and "Traceback" not in result.output
