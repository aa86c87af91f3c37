"""Bad input never crashes: exit 2 with one line naming the file and field; a bug in
vmxfuzz is exit 4 with its traceback; output paths that cannot be written are exit 2;
files are written with the user's umask.

The generated-input test replays a few hundred inputs from
``benchmarks/malformed_inputs.py`` (fixed seed) in this process.
"""

from __future__ import annotations

import io
import json
import os
import stat
import sys
from pathlib import Path
from typing import Any

import pytest
from helpers import EXAMPLES, ROOT

from vmxfuzz import scenario as scenario_mod
from vmxfuzz.atomic import write_text_atomic
from vmxfuzz.cli import main

sys.path.insert(0, str(ROOT / "benchmarks"))
import malformed_inputs

SEED = EXAMPLES / "seed-nmi-in-list-add.json"


def base() -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(SEED.read_text())
    return doc


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    try:
        code = main(list(argv))
    except SystemExit as e:
        code = int(e.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def one_line(code: int, err: str, *needles: str) -> str:
    assert code == 2, err
    assert "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("vmxfuzz: error: ")
    for n in needles:
        assert n in lines[0], lines[0]
    return lines[0]


def write(tmp_path: Path, doc: Any, name: str = "s.json") -> Path:
    p = tmp_path / name
    p.write_text(doc if isinstance(doc, str) else json.dumps(doc))
    return p


# ---- integers are integers, versions are known integers -----------------------------------
@pytest.mark.parametrize(
    ("change", "pointer"),
    [
        (lambda d: d["config"].update(cpus=2.0), "/config/cpus"),
        (lambda d: d["config"].update(cpus=True), "/config/cpus"),
        (lambda d: d["ops"][0].update(cpu=0.0), "/ops/0/cpu"),
        (lambda d: d.update(schedule=[0, 1.0]), "/schedule/1"),
        (lambda d: d["nmis"][0].update(nth=2.0), "/nmis/0/nth"),
        (lambda d: d["ops"][0].update(cpu=False), "/ops/0/cpu"),
        (lambda d: d.update(version=1.0), "/version"),
        (lambda d: d.update(version=True), "/version"),
        (lambda d: d.update(version=99), "/version"),
        (lambda d: d.update(version="1"), "/version"),
    ],
)
def test_integers_and_versions(
    change: Any, pointer: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    doc = base()
    change(doc)
    path = write(tmp_path, doc)
    code, out, err = run(capsys, "replay", str(path))
    one_line(code, err, f"{path}: {pointer}:")
    assert out == ""


def test_lone_surrogate_in_name_prints_escaped(tmp_path: Path) -> None:
    doc = base()
    doc["name"] = "bad\ud800name"
    doc["description"] = "x\udfff\x1b[31m"
    path = write(tmp_path, doc)
    out_b = io.BytesIO()
    saved = sys.stdout
    strict = io.TextIOWrapper(out_b, encoding="utf-8", errors="strict", write_through=True)
    sys.stdout = strict
    try:
        code = main(["replay", str(path)])
    finally:
        sys.stdout = saved
    assert code == 1  # the seed's finding, output complete
    text = out_b.getvalue().decode("utf-8")
    assert "bad\\ud800name" in text and "replay: vmxfuzz replay" in text
    page = tmp_path / "p.html"
    assert main(["replay", str(path), "--html", str(page)]) == 1
    assert "bad\\ud800name" in page.read_text()


def test_duplicate_keys_are_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = SEED.read_text().replace('"cpus": 2', '"cpus": 2, "cpus": 3', 1)
    code, _, err = run(capsys, "replay", str(write(tmp_path, text)))
    one_line(code, err, "/config/cpus: duplicate key")


@pytest.mark.parametrize("const", ["NaN", "Infinity", "-Infinity"])
def test_non_json_constants(const: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = SEED.read_text().replace('"nth": 2', f'"nth": {const}', 1)
    code, _, err = run(capsys, "replay", str(write(tmp_path, text)))
    one_line(code, err, "not JSON")


def test_huge_integer(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = SEED.read_text().replace('"nth": 2', f'"nth": {"9" * 5000}', 1)
    code, _, err = run(capsys, "replay", str(write(tmp_path, text)))
    one_line(code, err, "not JSON")


def test_deep_nesting(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    doc = base()
    doc["name"] = [[[[[[[[["x"]]]]]]]]]
    code, _, err = run(capsys, "replay", str(write(tmp_path, doc)))
    one_line(code, err, "nested deeper than")


# ---- limits: checked before the schema, so a huge file is refused at once ---------------
@pytest.mark.parametrize(
    ("part", "item"),
    [
        ("schedule", 0),
        ("ops", {"op": "module_load"}),
        ("nmis", {"cpu": 0, "before": "list_add:publish"}),
        ("faults", {"site": "vmxon"}),
    ],
)
def test_limits_refuse_before_the_schema(
    part: str,
    item: Any,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    doc = base()
    n = 100_000 if part == "schedule" else 5_000  # under the file size cap
    doc[part] = [item] * n

    def no_schema(version: int) -> Any:
        raise AssertionError("the schema ran on an over-limit file")

    monkeypatch.setattr(scenario_mod, "_validator", no_schema)
    code, _, err = run(capsys, "replay", str(write(tmp_path, doc)))
    one_line(code, err, f"/{part}: {n} entries, more than the limit of")


def test_file_size_cap(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "big.json"
    path.write_bytes(SEED.read_bytes() + b" " * (scenario_mod.MAX_FILE_BYTES + 1))
    code, _, err = run(capsys, "replay", str(path))
    one_line(code, err, f"{path}: (file): larger than the limit")


# ---- only regular files -----------------------------------------------------------------
@pytest.mark.parametrize("suffix", [".json", ""])
def test_fifo_is_refused_without_blocking(
    suffix: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fifo = tmp_path / f"pipe{suffix}"
    os.mkfifo(fifo)
    code, _, err = run(capsys, "replay", str(fifo))
    one_line(code, err, f"{fifo}: (file): not a regular file")


@pytest.mark.parametrize("dev", ["/dev/zero", "/dev/null"])
def test_devices_are_refused(dev: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "replay", dev)
    one_line(code, err, f"{dev}: (file): not a regular file")
    code, _, err = run(capsys, "decode", dev)
    one_line(code, err, f"{dev}: (file): not a regular file")


# ---- text is not silently decoded as libFuzzer bytes ----------------------------------------
def test_text_file_is_not_decoded(capsys: pytest.CaptureFixture[str]) -> None:
    readme = ROOT / "README.md"
    code, _, err = run(capsys, "replay", str(readme))
    one_line(code, err, f"{readme}: (file): a text file", "--bytes")
    code, out, err = run(capsys, "replay", str(readme), "--bytes", "--no-trace")
    assert code in (0, 1) and err == "" and out.startswith(f"== {readme}")


def test_json_without_suffix_and_binary_inputs_still_load(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plain = tmp_path / "scenario"
    plain.write_bytes(SEED.read_bytes())
    assert run(capsys, "replay", str(plain), "--no-trace")[0] == 1
    corpus = sorted((ROOT / "corpora" / "seed").iterdir())
    assert corpus, "the seed corpus is shipped"
    for entry in corpus[:5]:
        code, _, err = run(capsys, "replay", str(entry), "--no-trace")
        assert code in (0, 1), err
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    assert run(capsys, "replay", str(empty), "--no-trace")[0] in (0, 1)


# ---- --time ---------------------------------------------------------------------------------
@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "-1", "0"])
@pytest.mark.parametrize("command", ["fuzz", "explore"])
def test_time_must_be_finite_and_positive(
    command: str, value: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    code, _, err = run(capsys, command, f"--time={value}", "--out", str(out))
    one_line(code, err, "--time: must be a finite positive number")
    assert not out.exists()


# ---- internal errors ------------------------------------------------------------------------
def test_internal_error_exits_4_with_traceback(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import vmxfuzz.cli as cli

    def broken(*a: Any, **k: Any) -> Any:
        raise KeyError("a bug")

    monkeypatch.setattr(cli, "replay_one", broken)
    code, _, err = run(capsys, "replay", str(SEED))
    assert code == 4
    assert err.startswith("vmxfuzz: internal error\n")
    assert "Traceback (most recent call last)" in err and "KeyError: 'a bug'" in err
    assert "please report it" in err.splitlines()[-1]


# ---- output paths ---------------------------------------------------------------------------
def test_output_path_problems_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    afile = tmp_path / "afile"
    afile.write_text("mine\n")
    adir = tmp_path / "adir"
    adir.mkdir()
    blob = sorted((ROOT / "corpora" / "seed").iterdir())[0]
    cases = [
        (["fuzz", "--time", "1", "--out", str(afile / "sub")], str(afile)),
        (["fuzz", "--time", "1", "--out", str(afile)], str(afile)),
        (["replay", str(SEED), "--html", str(adir)], str(adir)),
        (["replay", str(SEED), "--html", str(afile / "x.html")], str(afile)),
        (["decode", str(blob), "-o", str(afile)], str(afile)),
        (["decode", str(blob), "-o", str(adir)], str(adir)),
        (["encode", str(SEED), "-o", str(afile)], str(afile)),
        (["report", str(EXAMPLES), "-o", str(afile)], str(afile)),
        (["explore", "--time", "1", "--out", str(afile / "sub")], str(afile)),
    ]
    for argv, needle in cases:
        code, _, err = run(capsys, *argv)
        one_line(code, err, needle)
    assert afile.read_text() == "mine\n" and not any(adir.iterdir())


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only directories")
def test_read_only_out_dir(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        code, _, err = run(capsys, "fuzz", "--time", "1", "--out", str(ro / "out"))
        one_line(code, err, str(ro))
    finally:
        ro.chmod(0o700)


# ---- umask ----------------------------------------------------------------------------------
@pytest.mark.parametrize("mask", [0o022, 0o077, 0o002])
def test_files_get_the_umask(mask: int, tmp_path: Path) -> None:
    old = os.umask(mask)
    try:
        write_text_atomic(tmp_path / "a.json", "{}\n")
        assert stat.S_IMODE((tmp_path / "a.json").stat().st_mode) == 0o666 & ~mask
    finally:
        os.umask(old)
    (tmp_path / "a.json").chmod(0o640)
    write_text_atomic(tmp_path / "a.json", "{}\n")  # a replaced file keeps its mode
    assert stat.S_IMODE((tmp_path / "a.json").stat().st_mode) == 0o640


def test_campaign_files_get_the_umask(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    old = os.umask(0o022)
    try:
        run(capsys, "replay", str(SEED), "--html", str(tmp_path / "t.html"))
        code, _, _ = run(capsys, "promote", str(SEED), "--dest", str(tmp_path / "reg"))
    finally:
        os.umask(old)
    assert code == 0
    for p in [tmp_path / "t.html", *(tmp_path / "reg").iterdir()]:
        assert stat.S_IMODE(p.stat().st_mode) == 0o644, p


# ---- generated malformed inputs -------------------------------------------------------------
def test_generated_malformed_inputs_never_crash(tmp_path: Path) -> None:
    inputs = [
        i
        for i in malformed_inputs.generate(400, seed=1)
        if i.special not in ("devrandom",) and i.kind != "huge"
    ]
    assert len(inputs) > 300
    bad = []
    for n, inp in enumerate(inputs):
        path = malformed_inputs.materialise(inp, tmp_path, n)
        out, _, err = malformed_inputs.run_one(path, inp.args)
        lines = err.splitlines()
        if out.crash or out.hang or out.code not in (0, 1, 2):
            bad.append((inp.kind, inp.note, out))
        elif inp.must_reject and out.code != 2:
            bad.append((inp.kind, inp.note, "accepted"))
        elif out.code == 2 and (len(lines) != 1 or not lines[0].startswith("vmxfuzz: error: ")):
            bad.append((inp.kind, inp.note, err[:200]))
    assert not bad, bad[:10]
