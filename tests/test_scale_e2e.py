"""Integrity and approximate search on an index with a phonetic store (shipped encoder and phoneme head)."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from awesearch import approx
from awesearch.store import IndexStore
from awesearch.cli import app
from helpers import speech, write_audio
from awesearch.indexer import index_paths
from test_integrity import flip_byte

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def shipped(tmp_path_factory):
    root = tmp_path_factory.mktemp("scale-e2e")
    for name, text in (("a.wav", "the prince spoke to us"), ("b.wav", "the print shop was closed"), ("c.wav", "a prince and a doctor")):
        write_audio(root / "audio" / name, speech([text])[0])
    report = index_paths([root / "audio"], root / "index", commit_interval_s=0.0)
    assert report.indexed == 3
    return root / "audio", root / "index"


def test_phonetic_files_are_checksummed_and_repaired(shipped):
    audio, idx = shipped
    store = IndexStore.open(idx)
    phon = sorted(n for n in store.manifest.checksums if n.startswith("phon-"))
    assert len(phon) == 3 and store.verify(full=True) == []
    b = next(f for f in store.load_files() if f.path.endswith("b.wav"))
    name = f"phon-{b.file_id:08d}.awp"
    flip_byte(idx / name, 0.9)
    result = CliRunner().invoke(app, ["check", "--index", str(idx)])
    assert result.exit_code == 1 and f"damaged: {name} fails its checksum" in result.output
    report = index_paths([audio], idx)
    assert [Path(p).name for p in report.repaired] == ["b.wav"] and report.indexed == 1 and report.unchanged == 2
    assert IndexStore.open(idx).verify(full=True) == []


def test_approximate_index_serves_the_second_stage(shipped, monkeypatch):
    from awesearch.search import SearchEngine

    audio, idx = shipped
    exact = SearchEngine.open(idx).search(text="prince")
    monkeypatch.setattr(approx, "APPROX_MIN_WINDOWS", 1)
    monkeypatch.setattr(approx, "NPROBE", approx.MIN_LISTS)  # every list: exact up to the int8 re-ranking
    index_paths([audio], idx)  # nothing to embed; the run ends by building the approximate index
    engine = SearchEngine.open(idx)
    assert isinstance(engine.table.index, approx.ApproxIndex) and engine.calibrated
    hits = engine.search(text="prince")
    assert [(Path(h.path).name, round(h.start, 1)) for h in hits] == [(Path(h.path).name, round(h.start, 1)) for h in exact]
    assert {Path(h.path).name for h in hits} >= {"a.wav", "c.wav"}
    for h, e in zip(hits, exact):
        assert h.score == pytest.approx(e.score, abs=0.05)
