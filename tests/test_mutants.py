"""The mutant catalogue (``mutants/``, installed as ``vmxfuzz.mutants``) and ``vmxfuzz
mutants``: every mutant is a loadable variant that really changes ``patched``, says what
it is, and the shipped kill scenarios keep killing their mutant."""

from __future__ import annotations

import inspect
import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from vmxfuzz import mutation
from vmxfuzz.campaign import judge
from vmxfuzz.cli import main
from vmxfuzz.mutation import ENGINES, EngineResult, EngineUnavailable, Kill, Mutant, catalogue
from vmxfuzz.scenario import load, schema
from vmxfuzz.variants import build, module_functions

ROOT = Path(__file__).resolve().parent.parent
KILLS = sorted((ROOT / "mutants" / "kills").glob("*.json"))
MUTANTS = catalogue()
BY_ID = {m.id: m for m in MUTANTS}

# What each shipped kill scenario shows for ``patched,<mutant>``: (class, invariant,
# cause).  The kill files compare patched against the mutant, so the pin lives here
# rather than in an ``expect`` block (whose variants are reference and patched).
PINNED: dict[str, tuple[str, str | None, str]] = {
    "M01": ("behaviour", None, "behaviour/run_vcpu:interrupted->0"),
    "M02": ("regression", "oops", "oops/list-poison-deref"),
    "M03": (
        "regression",
        "vmcs-active-on-two-cpus",
        "vmcs-active-on-two-cpus/not-cleared-on-previous-cpu",
    ),
    "M04": ("regression", "list-corrupt", "list-corrupt/active-vmcs-not-listed"),
    "M06": ("regression", "vmxe-leak", "vmxe-leak/cr4-vmxe-cr4-shadow-vmxe-left-changed"),
    "M07": ("regression", "vmxe-leak", "vmxe-leak/pt-stopped-left-changed"),
    "M08": ("regression", "oops", "oops/invept-outside-vmx-after-vmxon-fault"),
    "M09": ("regression", "kexec-active-vmcs", "kexec-active-vmcs/listed-but-walk-missed-it"),
    "M10": ("regression", "kexec-active-vmcs", "kexec-active-vmcs/listed-but-walk-missed-it"),
    "M12": (
        "regression",
        "vmcs-active-on-two-cpus",
        "vmcs-active-on-two-cpus/not-cleared-on-previous-cpu",
    ),
    "M13": ("regression", "list-corrupt", "list-corrupt/active-vmcs-not-listed"),
    "M14": ("regression", "kexec-active-vmcs", "kexec-active-vmcs/listed-but-walk-missed-it"),
    "M15": ("regression", "kexec-active-vmcs", "kexec-active-vmcs/never-linked"),
    "M16": ("regression", "oops", "oops/vmptrld-outside-vmx-after-ignored-enable-failure"),
    "M17": ("regression", "oops", "oops/uninitialised-loaded-vmcs-list"),
    "M18": (
        "regression",
        "vmcs-active-on-two-cpus",
        "vmcs-active-on-two-cpus/not-cleared-on-previous-cpu",
    ),
    "M19": ("regression", "current-vmcs-stale", "current-vmcs-stale/variable-names-cleared-vmcs"),
    "M20": ("regression", "kexec-active-vmcs", "kexec-active-vmcs/unlinked-before-vmclear"),
    "M21": ("regression", "use-after-free", "use-after-free/freed-object-touched"),
    "M23": ("regression", "kexec-active-vmcs", "kexec-active-vmcs/no-crash-callback"),
    "M24": ("regression", "oops", "oops/uninitialised-loaded-vmcs-list"),
}


def _mutant_of(path: Path) -> Mutant:
    return BY_ID[path.name.split("-", 1)[0]]


# ---- the catalogue ------------------------------------------------------------------------------
def test_catalogue_size_and_ids() -> None:
    assert len(MUTANTS) >= 15
    ids = [m.id for m in MUTANTS]
    assert len(ids) == len(set(ids))
    for m in MUTANTS:
        assert re.fullmatch(r"M\d\d", m.id)
        assert m.module.startswith(f"vmxfuzz.mutants.m{m.id[1:]}_"), "file name carries the id"


@pytest.mark.parametrize("m", MUTANTS, ids=lambda m: m.id)
def test_mutant_is_a_variant_that_changes_patched(m: Mutant) -> None:
    import importlib

    mod = importlib.import_module(m.module)
    assert mod.BASE == "patched"
    base, mine = vars(build("patched")), vars(build(m.module))
    changed = sorted(n for n in base if mine[n] is not base[n])
    assert changed, "overrides at least one kernel function"
    defined = set(module_functions(mod))
    kernel_names = defined & set(base)
    assert all(n.startswith("_") for n in defined - kernel_names), "helpers are private"
    assert m.function in kernel_names, "MUTANT['function'] names what it overrides"
    # The mutant is one function: a small change of it, with the mutation marked.
    assert len(kernel_names) == 1
    assert "MUTATION" in inspect.getsource(mod)


@pytest.mark.parametrize("m", MUTANTS, ids=lambda m: m.id)
def test_mutant_is_documented(m: Mutant) -> None:
    doc = m.doc
    assert doc.startswith(f"{m.id}: ")
    assert "What changed" in doc and "Why plausible" in doc
    assert "should catch it" in doc or "quivalent" in doc, "says what kills it, or why nothing"
    assert m.summary
    if m.equivalent:  # the reason is stated, in the summary data and the docstring
        assert isinstance(m.equivalent, str) and "quivalent" in doc


def test_mutants_load_by_file_path_too() -> None:
    path = ROOT / "mutants" / "m03_drop_vmclear.py"
    ns = build(str(path))
    assert ns.__loaded_vmcs_clear is not build("patched").__loaded_vmcs_clear


# ---- the shipped kills --------------------------------------------------------------------------
def test_every_kill_file_is_pinned() -> None:
    assert len(KILLS) >= 5
    assert sorted(p.name.split("-", 1)[0] for p in KILLS) == sorted(PINNED)


@pytest.mark.parametrize("path", KILLS, ids=lambda p: p.stem)
def test_kill_replays_as_a_kill(path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    m = _mutant_of(path)
    code = main(["replay", str(path), "--variant", m.pair, "--json"])
    doc = json.loads(capsys.readouterr().out)
    assert code == 1
    shown = {(f["class"], f["invariant"], f["cause"]) for f in doc["findings"]}
    assert PINNED[m.id] in shown
    # and it is the mutant's doing: patched against itself shows nothing
    assert not mutation.kill_hits(load(path), "patched,patched")


@pytest.mark.parametrize("path", KILLS, ids=lambda p: p.stem)
def test_kill_file_validates(path: Path) -> None:
    data = json.loads(path.read_text())
    jsonschema.Draft202012Validator(schema(data["version"])).validate(data)
    assert data["name"] == path.stem and data["description"].startswith(path.name[:3])


@pytest.mark.parametrize("m", [m for m in MUTANTS if m.equivalent], ids=lambda m: m.id)
def test_equivalent_mutants_are_not_killed_by_any_shipped_scenario(m: Mutant) -> None:
    files = KILLS + sorted((ROOT / "examples").glob("*.json"))
    files += sorted((ROOT / "tests" / "regressions").glob("*.json"))
    for path in files:
        assert not mutation.kill_hits(load(path), m.pair), path.name


# ---- vmxfuzz mutants ----------------------------------------------------------------------
def test_smoke_two_mutants_hypothesis(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # A count budget: seed 0 kills both within 100 examples on any machine (M09 after
    # 41, M23 after 3), and M11 (equivalent) survives all of its 5.
    out = tmp_path / "mo"
    args = ["--examples-per", "100", "--only", "M09,M23", "--engines", "hypothesis"]
    code = main(["mutants", *args, "--out", str(out), "--json"])
    assert code == 0
    doc = json.loads((out / "kill-matrix.json").read_text())
    assert json.loads(capsys.readouterr().out) == doc
    assert doc["examples_per"] == 100 and doc["time_per_s"] is None
    assert [(c["mutant"], c["engine"], c["status"]) for c in doc["cells"]] == [
        ("M09", "hypothesis", "killed"),
        ("M23", "hypothesis", "killed"),
    ]
    md = (out / "kill-matrix.md").read_text()
    assert "| M09 |" in md and "| M23 |" in md and "at most 100 examples" in md
    for c in doc["cells"]:
        assert 0 < c["examples"] <= 100
        assert c["class"] in mutation.KILL_CLASSES
        assert Path(c["reproducer"]).is_file()
        hits = judge(load(c["reproducer"]), BY_ID[c["mutant"]].pair)
        assert (c["class"], c["site"]) in {(h.cls, h.site) for h in hits}
    survivor = tmp_path / "m11"
    args = ["--examples-per", "5", "--time-per", "600", "--only", "M11", "--engines"]
    assert main(["mutants", *args, "hypothesis,explore", "--out", str(survivor)]) == 0
    cells = json.loads((survivor / "kill-matrix.json").read_text())["cells"]
    assert [c["status"] for c in cells] == ["survived", "survived"]
    assert cells[0]["examples"] == 5, "the count, not the 600 s, ended the cell"


def _fake_engine(calls: list[str], out: Path) -> Any:
    kill_sc = load(next(p for p in KILLS if p.name.startswith("M09-")))

    def engine(pair: str, budget: float, seed: int, work: Path, count: int | None) -> EngineResult:
        calls.append(pair)
        assert work.is_dir()
        if len(calls) == 2:  # the matrix on disk is already valid, the first cell done
            doc = json.loads((out / "kill-matrix.json").read_text())
            assert [c["status"] for c in doc["cells"]] == ["killed", "pending"]
            assert "…" in (out / "kill-matrix.md").read_text()
            return EngineResult(None, examples=7)
        hit = mutation.kill_hits(kill_sc, pair)[0]
        return EngineResult(Kill(hit, kill_sc, 0.25))

    return engine


def test_matrix_is_rewritten_after_each_cell(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []
    monkeypatch.setitem(ENGINES, "fake", _fake_engine(calls, tmp_path))
    chosen = mutation.select(MUTANTS, "m09,M11")
    doc = mutation.run_matrix(
        chosen, ["fake"], time_per=1, seed=0, out=tmp_path, command="test", log=lambda s: None
    )
    assert calls == [BY_ID["M09"].pair, BY_ID["M11"].pair]
    killed, survived = doc["cells"]
    assert killed["status"] == "killed" and killed["seconds"] == 0.25
    assert killed["invariant"] == "kexec-active-vmcs" and killed["reproducer_minimal"]
    assert survived == {**survived, "status": "survived", "examples": 7}
    assert doc["survivors"] == ["M11"]
    md = (tmp_path / "kill-matrix.md").read_text()
    assert "✓ 0.2 s kexec-active-vmcs" in md or "✓ 0.3 s kexec-active-vmcs" in md
    assert "| M11 |" in md and "—" in md
    assert not (tmp_path / "work").exists()


def test_unavailable_engine_is_reported_not_raised(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def gone(pair: str, budget: float, seed: int, work: Path, count: int | None) -> EngineResult:
        raise EngineUnavailable("not here")

    def broken(pair: str, budget: float, seed: int, work: Path, count: int | None) -> EngineResult:
        raise RuntimeError("boom")

    monkeypatch.setitem(ENGINES, "gone", gone)
    monkeypatch.setitem(ENGINES, "broken", broken)
    m = BY_ID["M09"]
    assert mutation.run_cell(m, "gone", 1, 0, tmp_path)["status"] == "unavailable"
    cell = mutation.run_cell(m, "broken", 1, 0, tmp_path)
    assert cell["status"] == "error" and "boom" in cell["note"]


def test_explore_without_kill_search_is_unavailable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import vmxfuzz.explore

    monkeypatch.delattr(vmxfuzz.explore, "kill_search", raising=False)
    cell = mutation.run_cell(BY_ID["M09"], "explore", 1, 0, tmp_path)
    assert cell["status"] == "unavailable"
    assert "kill_search" in cell["note"]


@pytest.mark.parametrize(
    ("args", "option"),
    [
        (["--time-per", "0"], "--time-per"),
        (["--time-per", "soon"], "--time-per"),
        (["--time-per", "nan"], "--time-per"),
        (["--time-per", "1", "--only", "M01,M99"], "--only"),
        (["--time-per", "1", "--engines", "hypothesis,afl"], "--engines"),
        (["--time-per", "1", "--engines", ","], "--engines"),
        (["--time-per", "1", "--seed", "x"], "--seed"),
        (["--examples-per", "0"], "--examples-per"),
        (["--examples-per", "-2", "--time-per", "1"], "--examples-per"),
        (["--only", "M01"], "--time-per, --examples-per"),
    ],
)
def test_bad_input_exits_2_with_one_line(
    args: list[str], option: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "mo"
    assert main(["mutants", *args, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and option in err[0] and "Traceback" not in err[0]
    assert not out.exists(), "bad input writes nothing"
