"""``vmxfuzz replay``: exit codes (0 clean, 1 finding, 2 bad input), the ``--json``
document, and bad input: exit 2, one stderr line naming the file and the field (a
JSON pointer), no traceback, nothing on stdout.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from helpers import EXAMPLES, ROOT, example_files

from vmxfuzz.cli import main
from vmxfuzz.differential import CLASSES
from vmxfuzz.oracle import INVARIANTS

SEED = EXAMPLES / "seed-nmi-in-list-add.json"
VMXON_GP = EXAMPLES / "vmxon-gp.json"
CLEAN = EXAMPLES / "clean-vcpu-migration.json"
PLUGIN = EXAMPLES / "plugins" / "drop_bitmap_only.py"


def replay(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["replay", *args])
    out, err = capsys.readouterr()
    return code, out, err


def replay_json(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, Any]:
    code, out, err = replay(capsys, *args, "--json")
    assert err == ""
    return code, json.loads(out)


# ---- exit codes ----
@pytest.mark.parametrize("variant", ["both", "reference", "patched", "reference,patched"])
def test_clean_example_exits_0(variant: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = replay(capsys, str(CLEAN), "--variant", variant)
    assert code == 0 and err == ""
    assert f"== {CLEAN}: clean-vcpu-migration" in out


def test_clean_example_text_output(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = replay(capsys, str(CLEAN))
    assert code == 0
    assert "no divergence between reference and patched" in out
    assert "CPU0" in out, "a single scenario prints its per-CPU trace"
    assert f"replay: vmxfuzz replay {CLEAN} --variant both" in out


@pytest.mark.parametrize(
    ("path", "variant", "code"),
    [
        (SEED, "both", 1),
        (SEED, "reference", 1),
        (SEED, "patched", 0),
        (VMXON_GP, "both", 1),
        (VMXON_GP, "reference", 1),
        (VMXON_GP, "patched", 0),
    ],
    ids=lambda v: v.stem if isinstance(v, Path) else str(v),
)
def test_finding_exits_1(
    path: Path, variant: str, code: int, capsys: pytest.CaptureFixture[str]
) -> None:
    assert replay(capsys, str(path), "--variant", variant, "--no-trace")[0] == code


def test_finding_text_names_class_invariant_and_nmi(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = replay(capsys, str(SEED))
    assert code == 1
    assert "FINDING fixed: kexec-active-vmcs in reference" in out
    assert "<nmi:NMI(panic)>" in out


def test_a_directory_with_a_finding_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    assert replay(capsys, str(EXAMPLES), "--no-trace")[0] == 1


def test_several_clean_files_exit_0(capsys: pytest.CaptureFixture[str]) -> None:
    clean = [
        str(p)
        for p in example_files()
        if not json.loads(p.read_text())["expect"]["classes"]
        and not json.loads(p.read_text())["expect"]["reference"]
    ]
    assert len(clean) >= 5
    code, out, _ = replay(capsys, *clean, "--no-trace")
    assert code == 0
    assert out.count("== ") == len(clean)


# ---- --json ----
def test_json_single_file_structure(capsys: pytest.CaptureFixture[str]) -> None:
    code, doc = replay_json(capsys, str(SEED))
    assert code == 1
    assert set(doc) == {"file", "name", "variants", "findings"}
    assert (doc["file"], doc["name"]) == (str(SEED), "seed-nmi-in-list-add")
    assert set(doc["variants"]) == {"reference", "patched"}
    for name, res in doc["variants"].items():
        assert res["variant"] == name
        assert isinstance(res["violations"], list)
        for v in res["violations"]:
            assert v["invariant"] in INVARIANTS
            assert {"site", "cpu", "context", "objects", "detail"} <= set(v)
        assert "trace" not in res, "the trace is only in --json output with --trace"
    (v,) = doc["variants"]["reference"]["violations"]
    assert (v["invariant"], v["site"], v["cpu"], v["context"]) == (
        "kexec-active-vmcs",
        "machine_kexec:vmcs@list_add:publish",
        0,
        "crash",
    )
    assert doc["variants"]["patched"]["violations"] == []
    (f,) = doc["findings"]
    assert (f["class"], f["invariant"], f["variant"]) == ("fixed", "kexec-active-vmcs", "reference")
    assert f["class"] in CLASSES and f["site"] == v["site"]


def test_json_vmxon_gp(capsys: pytest.CaptureFixture[str]) -> None:
    code, doc = replay_json(capsys, str(VMXON_GP))
    assert code == 1
    ref, pat = doc["variants"]["reference"], doc["variants"]["patched"]
    assert [(v["invariant"], v["site"]) for v in ref["violations"]] == [
        ("oops", "kvm_cpu_vmxon:vmxon")
    ]
    assert ref["op_results"] == ["0", "oops"]
    assert pat["violations"] == [] and pat["op_results"] == ["0", "-EBUSY"]
    assert [(f["class"], f["invariant"]) for f in doc["findings"]] == [("fixed", "oops")]


def test_json_single_variant_has_no_findings(capsys: pytest.CaptureFixture[str]) -> None:
    code, doc = replay_json(capsys, str(SEED), "--variant", "reference")
    assert code == 1
    assert set(doc["variants"]) == {"reference"}
    assert doc["findings"] == []
    assert [v["invariant"] for v in doc["variants"]["reference"]["violations"]] == [
        "kexec-active-vmcs"
    ]


def test_json_trace(capsys: pytest.CaptureFixture[str]) -> None:
    code, doc = replay_json(capsys, str(SEED), "--trace")
    assert code == 1
    trace = doc["variants"]["reference"]["trace"]
    assert trace[0][0] == 0 and trace[0][1] == "task"
    assert ["0", "nmi", "NMI(panic)"] in [[str(e[0]), e[1], e[2]] for e in trace]


def test_json_directory_lists_every_example_with_its_expect(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, doc = replay_json(capsys, str(EXAMPLES))
    assert code == 1
    files = example_files()
    assert [Path(s["file"]).name for s in doc["scenarios"]] == [p.name for p in files]
    for s, path in zip(doc["scenarios"], files, strict=True):
        expect = json.loads(path.read_text())["expect"]
        for name in ("reference", "patched"):
            got = sorted({v["invariant"] for v in s["variants"][name]["violations"]})
            assert got == sorted(expect[name]), path.name
        assert sorted({f["class"] for f in s["findings"]}) == sorted(expect["classes"])
        for f in s["findings"]:
            assert f["class"] in CLASSES
            assert f["invariant"] is None or f["invariant"] in INVARIANTS


# ---- bad input ----
GOOD = json.loads(SEED.read_text())


def _with(**changes: Any) -> str:
    d = json.loads(json.dumps(GOOD))
    d.update(changes)
    return json.dumps(d, indent=2)


def _config(**changes: Any) -> str:
    return _with(config={**GOOD["config"], **changes})


# case -> (file text, the field the message must name)
BAD: dict[str, tuple[str | bytes, str]] = {
    "malformed-json": ('{\n  "format": "vmxfuzz-scenario",\n  "version": ', "(line 3 column"),
    "empty-file": ("", "(line 1 column 1)"),
    "not-utf8": (b"\xff\xfe{}", "(file)"),
    "top-level-not-object": ("[1, 2]", "(top level)"),
    "extra-top-level-field": (_with(colour="blue"), "(top level)"),
    "wrong-format": (_with(format="other-format"), "/format"),
    "wrong-version": (_with(version=99), "/version"),
    "version-as-string": (_with(version="1"), "/version"),
    "nested-op-in-version-1": (_with(ops=[{"op": "l1_vmxon", "vcpu": "v"}]), "/ops/0/op"),
    "unknown-op": (_with(ops=[{"op": "module_load"}, {"op": "frobnicate"}]), "/ops/1/op"),
    "missing-op-field": (_with(ops=[{"op": "create_vm"}]), "/ops/0/vm"),
    "unknown-op-field": (_with(ops=[{"op": "module_load", "colour": 1}]), "/ops/0"),
    "unknown-nmi-label": (
        _with(nmis=[{"cpu": 0, "before": "list_add:publsh"}]),
        "/nmis/0/before",
    ),
    "bad-nmi-kind": (
        _with(nmis=[{"cpu": 0, "before": "list_add:publish", "kind": "loud"}]),
        "/nmis/0/kind",
    ),
    "nmi-nth-zero": (
        _with(nmis=[{"cpu": 0, "before": "list_add:publish", "nth": 0}]),
        "/nmis/0/nth",
    ),
    "unknown-fault-site": (_with(faults=[{"site": "vmxoff"}]), "/faults/0/site"),
    "wrong-fault-kind": (_with(faults=[{"site": "vmxon", "kind": "ENOMEM"}]), "/faults/0/kind"),
    "alloc-fault-kind": (_with(faults=[{"site": "alloc_vmcs", "kind": "GP"}]), "/faults/0/kind"),
    "cpu-out-of-range-op": (_with(ops=[{"op": "module_load", "cpu": 2}]), "/ops/0/cpu"),
    "cpu-out-of-range-target": (
        _with(ops=[{"op": "cpu_online", "cpu": 0, "target": 4}]),
        "/ops/0/target",
    ),
    "hotplug-target-is-self": (
        _with(ops=[{"op": "cpu_offline", "cpu": 1, "target": 1}]),
        "/ops/0/target",
    ),
    "cpu-out-of-range-nmi": (
        _with(nmis=[{"cpu": 5, "before": "list_add:publish"}]),
        "/nmis/0/cpu",
    ),
    "cpu-out-of-range-fault": (_with(faults=[{"site": "vmxon", "cpu": 2}]), "/faults/0/cpu"),
    "cpu-out-of-range-schedule": (_with(schedule=[0, 1, 2]), "/schedule/2"),
    "cpu-out-of-range-config": (_config(bios_disabled=[3]), "/config/bios_disabled/0"),
    "negative-cpu": (_with(ops=[{"op": "module_load", "cpu": -1}]), "/ops/0/cpu"),
    "too-many-cpus": (_config(cpus=9), "/config/cpus"),
    "boot-cpu-offline": (_config(offline=[0]), "/config/offline"),
}


def _write(tmp_path: Path, content: str | bytes, name: str = "bad.json") -> Path:
    p = tmp_path / name
    if isinstance(content, bytes):
        p.write_bytes(content)
    else:
        p.write_text(content)
    return p


def assert_one_line_error(code: int, out: str, err: str, *needles: str) -> None:
    assert code == 2
    assert out == "", "nothing on stdout"
    assert "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("vmxfuzz: error: ")
    for needle in needles:
        assert needle in lines[0]


@pytest.mark.parametrize("case", sorted(BAD))
@pytest.mark.parametrize("as_json", [False, True], ids=["text", "json"])
def test_bad_scenario_exits_2_with_one_line(
    case: str, as_json: bool, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    content, field = BAD[case]
    path = _write(tmp_path, content)
    code, out, err = replay(capsys, str(path), *(["--json"] if as_json else []))
    assert_one_line_error(code, out, err, f"{path}: {field}")


def test_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "nope.json"
    assert_one_line_error(*replay(capsys, str(path)), f"{path}: (file)")


def test_directory_without_scenarios(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert_one_line_error(*replay(capsys, str(tmp_path)), f"{tmp_path}: (directory)")


def test_unknown_variant(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = replay(capsys, str(SEED), "--variant", "nope")
    assert_one_line_error(code, out, err, "nope: (variant)")


def test_unknown_variant_in_a_pair(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = replay(capsys, str(SEED), "--variant", "reference,nope")
    assert_one_line_error(code, out, err, "nope: (variant)")


def test_broken_plugins(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    boom = _write(tmp_path, "BASE = 'patched'\nraise RuntimeError('boom')\n", "boom.py")
    assert_one_line_error(*replay(capsys, str(SEED), "--variant", str(boom)), str(boom), "boom")
    typo = _write(tmp_path, "BASE = 'patched'\ndef hardwre_enable(k):\n    yield 'x:y'\n", "t.py")
    assert_one_line_error(*replay(capsys, str(SEED), "--variant", str(typo)), "hardwre_enable")
    nobase = _write(tmp_path, "def hardware_enable(k):\n    yield 'x:y'\n", "nobase.py")
    assert_one_line_error(*replay(capsys, str(SEED), "--variant", str(nobase)), "BASE")
    missing = tmp_path / "missing.py"
    assert_one_line_error(*replay(capsys, str(SEED), "--variant", str(missing)), str(missing))


def test_one_bad_file_in_a_batch_runs_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Every file is validated before anything runs: no half output."""
    bad = _write(tmp_path, BAD["unknown-op"][0])
    code, out, err = replay(capsys, str(SEED), str(bad), "--json")
    assert_one_line_error(code, out, err, f"{bad}: /ops/1/op")


def test_deeply_nested_json_is_bad_input(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """json.loads raises RecursionError (not JSONDecodeError) on deep nesting."""
    for text in ("[" * 100_000, '{"a": ' * 50_000):
        path = _write(tmp_path, text)
        code, out, err = replay(capsys, str(path))
        assert_one_line_error(code, out, err, f"{path}: ")


@pytest.mark.parametrize(
    "argv",
    [
        ["replay"],
        ["replay", str(SEED), "--bogus"],
        ["frobnicate"],
        ["replay", str(SEED), "--trace=maybe"],
    ],
    ids=["no-scenario", "unknown-option", "unknown-command", "bad-flag-value"],
)
def test_usage_errors_exit_2_without_traceback(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as e:
        main(argv)
    out, err = capsys.readouterr()
    assert e.value.code == 2
    assert out == "" and "Traceback" not in err
    assert err.splitlines()[-1].startswith(("vmxfuzz: error: ", "vmxfuzz replay: error: "))


# ---- plug-in variants ----
def test_plugin_pair_classifies_against_the_plugin(capsys: pytest.CaptureFixture[str]) -> None:
    code, doc = replay_json(capsys, str(SEED), "--variant", f"reference,{PLUGIN}")
    assert code == 1
    assert set(doc["variants"]) == {"reference", str(PLUGIN)}
    (f,) = doc["findings"]
    assert (f["class"], f["invariant"], f["variant"]) == ("fixed", "kexec-active-vmcs", "reference")


# ---- a real process ----
def _vmxfuzz(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "vmxfuzz", *args],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
        env=env,
    )


def test_subprocess_bad_input_has_no_traceback(tmp_path: Path) -> None:
    path = _write(tmp_path, BAD["unknown-nmi-label"][0])
    p = _vmxfuzz("replay", str(path), "--json")
    assert p.returncode == 2
    assert p.stdout == ""
    assert "Traceback" not in p.stderr
    assert p.stderr.splitlines() == [
        f"vmxfuzz: error: {path}: /nmis/0/before: unknown step label 'list_add:publsh'"
    ]


def test_subprocess_exit_codes() -> None:
    assert _vmxfuzz("replay", str(CLEAN), "--no-trace").returncode == 0
    p = _vmxfuzz("replay", str(VMXON_GP), "--json")
    assert p.returncode == 1 and p.stderr == ""
    assert json.loads(p.stdout)["findings"][0]["class"] == "fixed"
