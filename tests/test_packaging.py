"""The wheel installs the awesearch package and nothing else (issue 19, point 3)."""

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    """A wheel built from a copy of the checkout (no build/ left over from an earlier build can leak into it)."""
    import shutil

    src = tmp_path_factory.mktemp("src") / "awesearch-src"
    shutil.copytree(REPO, src, ignore=shutil.ignore_patterns(".git", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache", ".awesearch"))
    out = tmp_path_factory.mktemp("wheel")
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out), str(src)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    (path,) = out.glob("awesearch-*.whl")
    return path


def test_the_wheel_holds_only_the_awesearch_package(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names}
    assert tops == {"awesearch", wheel.name.split("-")[0] + "-" + wheel.name.split("-")[1] + ".dist-info"}, tops
    assert "awesearch/indexer/pipeline.py" in names and "awesearch/cli.py" in names  # the indexer stage and the CLI inside it
    assert "awesearch/assets/phone-whisper-v2.pt" in names and "awesearch/web/static/index.html" in names
    entry = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("entry_points.txt"))).decode()
    assert "awesearch = awesearch.cli:main" in entry


@pytest.mark.slow
def test_the_installed_wheel_runs_the_readme_example_from_a_fresh_environment(wheel, tmp_path):
    """A fresh virtual environment (system site-packages for torch and the other dependencies, which the README
    installs first): the wheel adds only awesearch to its own site-packages, and index + query work from it."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], check=True)
    py = venv / "bin" / "python"
    subprocess.run([str(py), "-m", "pip", "install", "-q", "--no-deps", str(wheel)], check=True, capture_output=True)
    site = Path(subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())
    added = {p.name for p in site.iterdir()} - {"_distutils_hack", "distutils-precedence.pth", "pip", "setuptools", "pkg_resources"}
    assert {a for a in added if not a.startswith("pip-") and not a.startswith("setuptools-")} == {"awesearch", "awesearch-0.1.0.dist-info"}, added
    example = tmp_path / "example"
    env = {"PATH": f"{venv / 'bin'}:/usr/bin:/bin", "HOME": str(tmp_path)}
    run = lambda *args: subprocess.run([str(venv / "bin" / "awesearch"), *args], capture_output=True, text=True, cwd=tmp_path, env=env)  # noqa: E731
    r = subprocess.run([str(py), "-m", "awesearch.example", str(example)], capture_output=True, text=True, cwd=tmp_path, env=env)
    assert r.returncode == 0, r.stderr[-1500:]
    r = run("index", str(example), "--index", str(example / ".awesearch"), "--quiet")
    assert r.returncode == 0, r.stderr[-1500:]
    r = run("query", "--text", "prince", "--index", str(example / ".awesearch"), "--json")
    assert r.returncode == 0, r.stderr[-1500:]
    import json

    hits = json.loads(r.stdout)
    assert hits and all(str(site) not in h["path"] and h["path"].startswith(str(example)) for h in hits)
    loaded = subprocess.run([str(py), "-c", "import awesearch.indexer, awesearch.cli; print(awesearch.indexer.__file__)"],
                            capture_output=True, text=True, cwd=tmp_path, env=env).stdout
    assert loaded.startswith(str(site)), loaded
