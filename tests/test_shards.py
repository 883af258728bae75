"""`awesearch query --index A --index B`: shards searched as one equal one index over everything."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from awesearch.store import MANIFEST_NAME
from awesearch.cli import app
from awesearch.indexer import index_paths

runner = CliRunner()


def hits(*args) -> list[dict]:
    result = runner.invoke(app, ["query", *map(str, args), "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_two_shards_merge_like_one_index(corpus, tmp_path):
    a, b, whole = tmp_path / "a", tmp_path / "b", tmp_path / "whole"
    index_paths([corpus / "a.wav"], a, model="random")
    index_paths([corpus / "sub"], b, model="random")
    index_paths([corpus], whole, model="random")
    for query in (["--text", "prince"], ["--text", "sea shells", "-k", "25"]):
        merged = hits(*query, "--index", a, "--index", b)
        single = hits(*query, "--index", whole)
        assert len(merged) == len(single) > 0
        assert [(h["path"], h["start"], h["end"]) for h in merged] == [(h["path"], h["start"], h["end"]) for h in single]
        assert [h["score"] for h in merged] == [h["score"] for h in single]
        assert {h["path"] for h in hits(*query, "-k", "25", "--index", a, "--index", b)} > {str(corpus / "a.wav")}

    manifest = json.loads((b / MANIFEST_NAME).read_text())
    manifest["encoder_checksum"] = "0" * 64
    (b / MANIFEST_NAME).write_text(json.dumps(manifest))
    result = runner.invoke(app, ["query", "--text", "prince", "--index", str(a), "--index", str(b)])
    assert result.exit_code == 1 and "different encoders" in result.output and result.output.count("\n") == 1
