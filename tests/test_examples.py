"""The shipped examples: each replays on both variants with exactly the ``expect`` block
it carries, validates against the JSON Schema of its format version, and replays
deterministically (same trace, same results; also across processes and hash seeds).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from helpers import EXAMPLES, ROOT, assert_causes, example_files

from vmxfuzz.causes import is_cause_id
from vmxfuzz.differential import CLASSES, run_both
from vmxfuzz.oracle import INVARIANTS
from vmxfuzz.scenario import FORMAT, NESTED_OPS, RESTART_OPS, load

FILES = example_files()
IDS = [p.stem for p in FILES]
CLEAN = [
    p
    for p in FILES
    if not any(json.loads(p.read_text())["expect"].get(k) for k in ("reference", "patched"))
]
SCHEMA_DIR = ROOT / "vmxfuzz" / "schema"


def _schema(version: int) -> dict[str, Any]:
    return json.loads((SCHEMA_DIR / f"scenario-v{version}.json").read_text())


def test_the_examples_are_there() -> None:
    names = {p.stem for p in FILES}
    assert {"seed-nmi-in-list-add", "vmxon-gp"} <= names
    assert len(FILES) >= 10
    assert len(CLEAN) >= 8, "most examples show correct paths, not findings"


@pytest.mark.parametrize("path", FILES, ids=IDS)
def test_expect_block_is_well_formed(path: Path) -> None:
    expect = json.loads(path.read_text())["expect"]
    assert set(expect) == {"reference", "patched", "classes", "causes"}
    for key in ("reference", "patched"):
        assert set(expect[key]) <= set(INVARIANTS)
        assert len(expect[key]) == len(set(expect[key]))
        assert all(is_cause_id(c) for c in expect["causes"][key])
    assert set(expect["classes"]) <= set(CLASSES)


@pytest.mark.parametrize("path", FILES, ids=IDS)
def test_replays_with_exactly_its_expect_block(path: Path) -> None:
    sc = load(path)
    assert sc.expect is not None
    d = run_both(sc, keep_trace=False)
    assert sorted(d.reference.invariants) == sorted(sc.expect["reference"])
    assert sorted(d.patched.invariants) == sorted(sc.expect["patched"])
    assert sorted({f.cls for f in d.findings}) == sorted(set(sc.expect["classes"]))
    assert_causes(sc, d)
    if not sc.expect["classes"]:
        assert d.findings == [], "a clean example has no behaviour difference either"


@pytest.mark.parametrize("path", CLEAN, ids=[p.stem for p in CLEAN])
def test_clean_examples_reach_their_end(path: Path) -> None:
    """A clean example is not clean because it stopped early: every op ran."""
    d = run_both(load(path), keep_trace=False)
    for r in (d.reference, d.patched):
        assert "not run" not in r.op_results
        assert r.ended in ("idle", "kexec (crash)", "kexec (kexec -e)", "restart (emergency)")


@pytest.mark.parametrize("path", FILES, ids=IDS)
def test_validates_against_the_schema_of_its_version(path: Path) -> None:
    data = json.loads(path.read_text())
    assert data["format"] == FORMAT
    jsonschema.Draft202012Validator(_schema(data["version"])).validate(data)


@pytest.mark.parametrize("path", FILES, ids=IDS)
def test_written_at_the_lowest_version_that_fits(path: Path) -> None:
    """Version 1 unless it needs the nested ops of version 2 (or the preemptions of
    version 3): so every example that can be a v1 file validates against
    ``scenario-v1.json``, and the rest cannot."""
    data = json.loads(path.read_text())
    nested = any(o["op"] in NESTED_OPS for o in data["ops"])
    if data.get("preempts"):  # preemptions are format v3
        assert data["version"] == 3
        return
    restart = any(o["op"] in RESTART_OPS for o in data["ops"])
    if restart or data["config"].get("panic_timeout"):  # format v5
        assert data["version"] == 5
        return
    assert data["version"] == (2 if nested else 1)
    v1 = jsonschema.Draft202012Validator(_schema(1))
    if nested:
        data1 = {**data, "version": 1}
        bad = {tuple(e.absolute_path) for e in v1.iter_errors(data1)}
        assert bad and all(p[0] == "ops" and p[-1] == "op" for p in bad)
    else:
        v1.validate(data)


@pytest.mark.parametrize("path", FILES, ids=IDS)
def test_replay_is_deterministic(path: Path) -> None:
    sc = load(path)
    a, b = run_both(sc), run_both(sc)
    for x, y in ((a.reference, b.reference), (a.patched, b.patched)):
        assert [e.as_list() for e in x.trace] == [e.as_list() for e in y.trace]
        assert x.violations == y.violations
        assert x.op_results == y.op_results
        assert (x.ended, x.steps, x.warnings, x.caches) == (y.ended, y.steps, y.warnings, y.caches)
        assert x.to_json(trace=True) == y.to_json(trace=True)
    assert a.findings == b.findings
    assert len(a.reference.trace) > 0


def _replay_in_a_process(hashseed: str) -> Any:
    env = {**os.environ, "PYTHONHASHSEED": hashseed, "PYTHONPATH": str(ROOT)}
    p = subprocess.run(
        [sys.executable, "-m", "vmxfuzz", "replay", str(EXAMPLES), "--json", "--trace"],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
        env=env,
    )
    assert p.returncode == 1, p.stderr  # the examples include findings
    return json.loads(p.stdout)


def test_replay_is_deterministic_across_processes_and_hash_seeds() -> None:
    a, b = _replay_in_a_process("1"), _replay_in_a_process("4242")
    assert a == b
    assert len(a["scenarios"]) == len(FILES)
    assert all(doc["variants"]["reference"]["trace"] for doc in a["scenarios"])
