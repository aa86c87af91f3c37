"""The replay command: exit codes, JSON shape, and bad input (exit 2, one line, no
traceback, nothing on stdout)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from vmxfuzz.cli import main

ROOT = Path(__file__).resolve().parent.parent
SEED = ROOT / "examples" / "seed-nmi-in-list-add.json"
CLEAN = ROOT / "examples" / "clean-vcpu-migration.json"


def test_clean_scenario_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["replay", str(CLEAN)]) == 0
    out = capsys.readouterr().out
    assert "no divergence" in out and "CPU0" in out  # the per-CPU trace is printed


def test_finding_exits_1_and_prints_trace_and_class(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["replay", str(SEED), "--variant", "both"]) == 1
    out = capsys.readouterr().out
    assert "FINDING fixed: kexec-active-vmcs in reference" in out
    assert "<nmi:NMI(panic)>" in out


def test_single_variant(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["replay", str(SEED), "--variant", "patched", "--no-trace"]) == 0
    assert main(["replay", str(SEED), "--variant", "reference", "--no-trace"]) == 1


def test_json_shape(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["replay", str(SEED), "--json"]) == 1
    doc = json.loads(capsys.readouterr().out)
    assert set(doc["variants"]) == {"reference", "patched"}
    (v,) = doc["variants"]["reference"]["violations"]
    assert v["invariant"] == "kexec-active-vmcs"
    assert doc["variants"]["patched"]["violations"] == []
    (f,) = doc["findings"]
    assert f["class"] == "fixed" and f["invariant"] == "kexec-active-vmcs"


def test_directory_json_lists_every_scenario(capsys: pytest.CaptureFixture[str]) -> None:
    main(["replay", str(ROOT / "examples"), "--json"])
    doc = json.loads(capsys.readouterr().out)
    assert len(doc["scenarios"]) == len(list((ROOT / "examples").glob("*.json")))


def _scenario(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "bad.json"
    p.write_text(text)
    return p


GOOD = json.loads(SEED.read_text())


def _mutate(**changes: object) -> str:
    d = json.loads(json.dumps(GOOD))
    for key, value in changes.items():
        d[key] = value
    return json.dumps(d)


BAD = {
    "not-json": ("{", "(line 1 column 2)"),
    "unknown-op": (_mutate(ops=[{"op": "frobnicate"}]), "/ops/0/op"),
    "missing-field": (_mutate(ops=[{"op": "create_vm"}]), "/ops/0/vm"),
    "cpu-range": (_mutate(ops=[{"op": "module_load", "cpu": 7}]), "/ops/0/cpu"),
    "nmi-label": (
        _mutate(nmis=[{"cpu": 0, "before": "list_add:publsh"}]),
        "/nmis/0/before",
    ),
    "fault-site": (_mutate(faults=[{"site": "vmxoff"}]), "/faults/0/site"),
    "fault-kind": (_mutate(faults=[{"site": "vmxon", "kind": "ENOMEM"}]), "/faults/0/kind"),
    "version": (_mutate(version=99), "/version"),
    "extra-field": (_mutate(colour="blue"), "(top level)"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input_exits_2_with_one_line(
    case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text, pointer = BAD[case]
    path = _scenario(tmp_path, text)
    assert main(["replay", str(path), "--json"]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1
    assert str(path) in lines[0] and pointer in lines[0]
    assert "Traceback" not in err


def test_bad_file_in_a_batch_prints_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = _scenario(tmp_path, BAD["unknown-op"][0])
    assert main(["replay", str(SEED), str(bad)]) == 2
    out, err = capsys.readouterr()
    assert out == "" and str(bad) in err


def test_missing_file(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["replay", "/nonexistent/x.json"]) == 2
    assert "/nonexistent/x.json" in capsys.readouterr().err


def test_unknown_variant_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["replay", str(SEED), "--variant", "nope"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and "nope" in err and err.count("\n") == 1


def test_broken_plugin_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("BASE = 'patched'\nraise RuntimeError('boom')\n")
    assert main(["replay", str(SEED), "--variant", str(bad)]) == 2
    err = capsys.readouterr().err
    assert str(bad) in err and "boom" in err and "Traceback" not in err
    typo = tmp_path / "typo.py"
    typo.write_text("BASE = 'patched'\ndef hardwre_enable(k):\n    yield 'x:y'\n")
    assert main(["replay", str(SEED), "--variant", str(typo)]) == 2
    assert "hardwre_enable" in capsys.readouterr().err


def test_plugin_pair_classifies_against_the_plugin(capsys: pytest.CaptureFixture[str]) -> None:
    plugin = ROOT / "examples" / "plugins" / "drop_bitmap_only.py"
    assert main(["replay", str(SEED), "--variant", f"reference,{plugin}", "--json"]) == 1
    doc = json.loads(capsys.readouterr().out)
    (f,) = doc["findings"]
    assert (f["class"], f["variant"]) == ("fixed", "reference")
    assert set(doc["variants"]) == {"reference", str(plugin)}


def test_subprocess_has_no_traceback(tmp_path: Path) -> None:
    path = _scenario(tmp_path, BAD["unknown-op"][0])
    p = subprocess.run(
        [sys.executable, "-m", "vmxfuzz", "replay", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert p.returncode == 2
    assert p.stdout == ""
    assert "Traceback" not in p.stderr and "/ops/0/op" in p.stderr
