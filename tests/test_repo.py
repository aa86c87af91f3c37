"""The repository itself: nothing generated is tracked, and the README's Quick start is
what CI runs (``.ci/run`` extracts it with ``.ci/quickstart.py``)."""

from __future__ import annotations

import fnmatch
import importlib.util
import json
import shutil
import subprocess
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parent.parent

# Virtualenvs, build outputs, caches and run outputs: each pattern is matched against
# every component of every tracked path (a file named `.venv` broke `python3 -m venv`).
GENERATED = (
    ".venv*",
    "venv",
    ".tox",
    "build",
    "dist",
    "__pycache__",
    "*.py[cod]",
    "*.egg-info",
    ".hypothesis",
    ".pytest_cache",
    ".mypy_cache",
    ".ruff_cache",
    ".coverage",
    ".coverage.*",
    "htmlcov",
    "findings",
    "explore-out",
    "mutants-out",
)


def generated(path: str) -> str | None:
    """The pattern a tracked path matches, if it is something generated."""
    for part in path.split("/"):
        for pattern in GENERATED:
            if fnmatch.fnmatchcase(part, pattern):
                return pattern
    return None


def test_the_patterns_match_what_they_are_for() -> None:
    assert generated(".venv") == ".venv*" and generated("a/.venv-ci/bin/python")
    assert generated("vmxfuzz.egg-info/PKG-INFO") and generated("tests/__pycache__/x.pyc")
    assert generated("findings/summary.json") and generated("dist/vmxfuzz-0.1.tar.gz")
    assert generated("docs/findings.md") is None and generated("vmxfuzz/report/html.py") is None


def test_the_repository_tracks_nothing_generated() -> None:
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout (an unpacked sdist or wheel): nothing to check")
    files = subprocess.run(
        ["git", "-C", str(ROOT), "ls-files", "-z"], check=True, capture_output=True
    ).stdout.decode()
    tracked = [f for f in files.split("\0") if f]
    assert tracked, "git ls-files listed nothing"
    bad = [f"{f} ({generated(f)})" for f in tracked if generated(f)]
    assert not bad, f"tracked generated files: {bad}"


def _quickstart() -> ModuleType:
    spec = importlib.util.spec_from_file_location("quickstart", ROOT / ".ci" / "quickstart.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_ci_reads_the_readme_quick_start() -> None:
    cmds = _quickstart().commands(ROOT / "README.md")
    assert len(cmds) == 2, cmds
    main, tests = cmds
    assert main.startswith("python3 -m venv .venv") and "vmxfuzz fuzz" in main
    assert "vmxfuzz report findings" in main
    assert tests.endswith("python -m pytest -n auto")


def test_ci_judges_the_campaign_by_its_outputs(tmp_path: Path, monkeypatch) -> None:
    qs = _quickstart()
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "findings"
    (out / "report").mkdir(parents=True)
    (out / "001-x.json").write_text("{}")
    summary = {"findings": [{"reproducer": str(out / "001-x.json")}]}
    (out / "summary.json").write_text(json.dumps(summary))
    log = tmp_path / "log"
    fuzz = '1\t["fuzz", "--time", "60", "--out", "findings"]\n'
    report = '0\t["report", "findings"]\n'
    log.write_text(fuzz + report)
    assert qs.judge(log) == 1, "the index page is missing"
    (out / "report" / "index.html").write_text("<a href='001-x.html'>x</a>")
    (out / "report" / "001-x.html").write_text("<p>x</p>")
    assert qs.judge(log) == 0, "exit 1 of a campaign that wrote its outputs is a pass"
    log.write_text(fuzz.replace("1", "2", 1) + report)
    assert qs.judge(log) == 1, "exit 2 (bad input) fails"
    log.write_text(fuzz + report.replace("0", "4", 1))
    assert qs.judge(log) == 1, "a failed report fails"
    (out / "summary.json").write_text("{")
    log.write_text(fuzz)
    assert qs.judge(log) == 1, "a broken summary fails"
