"""A campaign killed with SIGKILL leaves valid output and resumes from it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import campaign

from vmxfuzz.scenario import load


@pytest.mark.parametrize("engine", ["hypothesis", "atheris"])
def test_sigkill_then_resume(engine: str, tmp_path: Path) -> None:
    if engine == "atheris":
        pytest.importorskip("atheris")
    out = tmp_path / "out"
    # Bounded by examples, not time: seed 5 finds its first cause within a few dozen
    # examples with either engine on any machine, and 1000 leave the campaign running
    # (minimising, searching on) when it is killed.
    cmd = [sys.executable, "-m", "vmxfuzz", "fuzz", "--engine", engine, "--seed", "5"]
    cmd += ["--out", str(out)]
    p = subprocess.Popen(
        [*cmd, "--max-examples", "1000"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    # Wait for the first finding however long the machine takes (no test budget: the
    # campaign's own count ends the wait if it never finds anything).
    killed = False
    while p.poll() is None:
        if (out / "summary.json").exists() and json.loads(
            (out / "summary.json").read_text() or "{}"
        ).get("findings"):
            break
        time.sleep(0.2)
    if p.poll() is None:
        os.killpg(p.pid, signal.SIGKILL)
        killed = True
    p.wait()
    assert killed and p.returncode == -signal.SIGKILL, "killed while it ran"
    before = json.loads((out / "summary.json").read_text())["findings"]
    assert before, "the campaign found something before it was killed"
    for f in before:
        assert Path(f["reproducer"]).exists()
        load(f["reproducer"])
    # resume: the old findings are kept and not reported again
    again = subprocess.run([*cmd, "--max-examples", "20"], check=False, capture_output=True)
    assert again.returncode == 1, again.stderr[-2000:]
    after = json.loads((out / "summary.json").read_text())["findings"]
    keys_before = {f["key"] for f in before}
    keys_after = [f["key"] for f in after]
    assert keys_before <= set(keys_after) and len(keys_after) == len(set(keys_after))


# ---- child processes die with their campaign ----------------------------------------------
def _descendants(pid: int) -> set[int]:
    """Every live process below ``pid`` (from /proc: pid -> parent)."""
    parents: dict[int, int] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                stat = (d / "stat").read_bytes().rsplit(b")", 1)[1].split()
            except (OSError, IndexError):
                continue
            if stat[0] not in (b"Z", b"X"):
                parents[int(d.name)] = int(stat[1])
    found: set[int] = set()
    frontier = {pid}
    while frontier:
        frontier = {p for p, pp in parents.items() if pp in frontier} - found
        found |= frontier
    return found


@pytest.mark.slow  # a -fork libFuzzer campaign started and killed (test_sigkill_then_resume
# kills an atheris campaign in the default run)
def test_sigkill_of_the_campaign_ends_its_libfuzzer_children(tmp_path: Path) -> None:
    pytest.importorskip("atheris")
    from vmxfuzz.lifeline import alive

    out = tmp_path / "out"
    # Bounded by executions, not time: far more than the -fork jobs start with, so the
    # campaign runs until it is killed however slow the machine is (and ends by itself,
    # failing the test, if the children never show up).
    cmd = [sys.executable, "-m", "vmxfuzz", "fuzz", "--engine", "atheris"]
    p = subprocess.Popen(
        [*cmd, "--max-examples", "20000", "--workers", "2", "--out", str(out)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    children: set[int] = set()
    while p.poll() is None:  # until the -fork children run the harness
        children = _descendants(p.pid)
        if len(children) >= 3 and len(list((out / ".stats").glob("*.json"))) >= 1:
            break
        time.sleep(0.1)
    assert p.poll() is None and len(children) >= 3, "libFuzzer and its -fork children started"
    p.kill()
    p.wait()
    left = children
    for _ in range(100):  # each poll 0.1 s: the lifeline checks every 0.5 s
        left = {c for c in left if alive(c)}
        if not left:
            break
        time.sleep(0.1)
    for c in left:  # do not leak them into the rest of the run
        os.kill(c, signal.SIGKILL)
    assert not left, f"children outlived their campaign: {sorted(left)}"


# ---- the output folder is the campaign's own --------------------------------------------
def test_a_campaign_refuses_a_foreign_folder_and_keeps_its_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from vmxfuzz.cli import main
    from vmxfuzz.outdir import MARKER

    user = tmp_path / "mine"
    user.mkdir()
    (user / "summary.json").write_text("my notes\n")
    (user / "001-x.json").write_text("{}\n")
    for command in ("fuzz", "explore"):
        assert main([command, "--time", "1", "--out", str(user)]) == 2
        err = capsys.readouterr().err.splitlines()
        assert len(err) == 1 and f"{user}: (--out): not empty and not a vmxfuzz" in err[0]
    assert sorted(p.name for p in user.iterdir()) == ["001-x.json", "summary.json"]
    assert (user / "summary.json").read_text() == "my notes\n"
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["explore", "--max-runs", "5", "--out", str(empty), "--nmis", "0"]) in (0, 1, 3)
    capsys.readouterr()
    assert json.loads((empty / MARKER).read_text())["kind"] == "explore"
    assert main(["fuzz", "--time", "1", "--out", str(empty)]) == 2  # an explore folder
    assert "a `vmxfuzz explore` campaign" in capsys.readouterr().err


def test_atheris_merge_deletes_only_what_the_harness_wrote(tmp_path: Path) -> None:
    from vmxfuzz.campaign import Campaign
    from vmxfuzz.fuzzcmd import merge_pending

    c = Campaign(out=tmp_path, variant="both", minimize_findings=False)
    pending = tmp_path / ".pending"
    pending.mkdir()
    seed = Path(__file__).parent.parent / "examples" / "seed-nmi-in-list-add.json"
    ours = pending / "fixed-kexec-active-vmcs-x-0123456789ab.json"
    ours.write_text(seed.read_text())
    theirs = [pending / "notes.json", pending / "fixed-0123456789ab.json.bak"]
    for t in theirs:
        t.write_text("user file\n")
    bad = pending / "broken-0123456789ab.json"
    bad.write_text("not json")
    merge_pending(c)
    assert not ours.exists() and c.findings
    assert all(t.read_text() == "user file\n" for t in theirs) and bad.exists()


# ---- --time: minimisation counts, is cut at the deadline and resumed ----------------------
def test_minimisation_is_cut_at_the_deadline_and_resumed(tmp_path: Path) -> None:
    from dataclasses import replace

    from vmxfuzz.campaign import Campaign, judge
    from vmxfuzz.scenario import Op

    seed = load(Path(__file__).parent.parent / "examples" / "seed-nmi-in-list-add.json")
    padded = replace(seed, ops=(Op("module_load", 1), *seed.ops, Op("suspend", 1)))
    hit = judge(padded, "both")[0]
    c = Campaign(out=tmp_path, variant="both")
    c.deadline = time.monotonic() - 1  # already spent: nothing is tried
    entry = c.record(hit, padded)
    assert entry["minimised"] is False and entry["ops"] == len(padded.ops)
    assert any(h.key == hit.key for h in judge(load(entry["reproducer"]), "both"))
    again = Campaign(out=tmp_path, variant="both")  # the next run on the folder
    assert again.finish_minimising() == 1
    (done,) = json.loads((tmp_path / "summary.json").read_text())["findings"]
    assert done["minimised"] is True and done["ops"] < len(padded.ops)
    assert load(done["reproducer"]).ops == load(entry["reproducer"]).ops
    assert any(h.key == hit.key for h in judge(load(done["reproducer"]), "both"))


# ---- count budgets: the same campaign on any machine --------------------------------------
@pytest.mark.parametrize(("engine", "examples"), [("hypothesis", 100), ("atheris", 150)])
def test_a_count_budget_is_the_same_campaign_twice(
    engine: str, examples: int, tmp_path: Path
) -> None:
    """Seeded and bounded by examples (Hypothesis with ``@seed``, libFuzzer ``-runs`` and
    ``-seed``), two campaigns in fresh folders find the same causes, whatever the load
    of the machine; with Hypothesis the same reproducers, byte for byte.  (The atheris
    campaign merges the harness' files as they come, in batches that depend on timing,
    so which of several scenarios showing a cause is minimised first may differ.)"""
    if engine == "atheris":
        pytest.importorskip("atheris")
    runs = []
    for name in ("one", "two"):
        code, doc = campaign(tmp_path / name, engine, "both", examples, 3)
        assert doc["examples"] == examples
        files = {p.name: p.read_text() for p in (tmp_path / name).glob("0*.json")}
        runs.append((code, [f["key"] for f in doc["findings"]], files))
    assert runs[0][1], "the budget is large enough to find something"
    assert runs[0][:2] == runs[1][:2]
    if engine == "hypothesis":
        assert runs[0][2] == runs[1][2]


def test_max_examples_from_the_command_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--max-examples`` alone has no time limit; with ``--time``, the count here
    comes first.  (``--time`` counts from the process start, here the test process's,
    which may be minutes old: hence a budget no test run reaches.)"""
    from vmxfuzz.cli import main

    assert main(["fuzz", "--max-examples", "5", "--out", str(tmp_path / "a"), "--json"]) in (0, 1)
    assert json.loads(capsys.readouterr().out)["examples"] == 5
    argv = ["fuzz", "--max-examples", "5", "--time", "1e9", "--out", str(tmp_path / "b")]
    assert main(argv) in (0, 1)
    assert json.loads((tmp_path / "b" / "summary.json").read_text())["examples"] == 5
    capsys.readouterr()
    for bad in ("0", "-1"):
        assert main(["fuzz", "--max-examples", bad, "--out", str(tmp_path / "c")]) == 2
        err = capsys.readouterr().err.splitlines()
        assert err == [f"vmxfuzz: error: --max-examples: must be a positive integer, not {bad}"]
    assert not (tmp_path / "c").exists()


# ---- folders of an earlier vmxfuzz (no marker) ----------------------------------------------
SEED = Path(__file__).parent.parent / "examples" / "seed-nmi-in-list-add.json"


def _legacy_fuzz_folder(root: Path) -> Path:
    """A folder as vmxfuzz wrote it before the marker (bfc12f5's summary: findings
    keyed by site, no cause), with what a killed atheris run leaves beside it."""
    from vmxfuzz.campaign import judge

    out = root / "old"
    out.mkdir()
    rep = out / "001-fixed-kexec-active-vmcs-machine-kexec.json"
    rep.write_text(SEED.read_text())
    hit = next(h for h in judge(load(SEED), "both") if h.cls == "fixed")
    finding = {"class": hit.cls, "invariant": hit.invariant, "variant": hit.variant}
    finding |= {"site": hit.site, "reproducer": str(rep), "explanation": hit.explanation}
    finding |= {"engine": "hypothesis", "found_after_s": 3.1, "ops": 4}
    summary = {"engine": "hypothesis", "variant": "both", "seed": 0, "elapsed_s": 60.2}
    summary |= {"examples": 900, "findings": [finding]}
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    (out / ".hypothesis").mkdir()
    (out / "atheris.log").write_text("INFO: Seed: 1\n")
    (out / ".summary.json.abc123.tmp").write_text("{")  # a write cut by SIGKILL
    return out


def _tree(out: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for p in out.rglob("*") if p.is_file()}


def test_a_folder_of_an_earlier_vmxfuzz_is_adopted_and_resumed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from vmxfuzz.cli import main
    from vmxfuzz.outdir import MARKER

    out = _legacy_fuzz_folder(tmp_path)
    before = _tree(out)
    assert main(["fuzz", "--max-examples", "5", "--out", str(out), "--json"]) == 1
    doc = json.loads(capsys.readouterr().out)
    marker = json.loads((out / MARKER).read_text())
    assert marker["kind"] == "fuzz" and "earlier vmxfuzz" in marker["adopted"]
    (old,) = [
        f
        for f in doc["findings"]
        if f["reproducer"].endswith("/001-fixed-kexec-active-vmcs-machine-kexec.json")
    ]
    assert old["cause"], "the old finding, read with the cause its reproducer shows"
    assert len({f["key"] for f in doc["findings"]}) == len(doc["findings"])
    after = _tree(out)
    for name in ("001-fixed-kexec-active-vmcs-machine-kexec.json", "atheris.log"):
        assert after[name] == before[name], "nothing of the old campaign rewritten"
    # adopted: a fuzz folder from now on, like any other
    assert main(["explore", "--max-runs", "5", "--out", str(out)]) == 2
    assert "a `vmxfuzz fuzz` campaign" in capsys.readouterr().err


def test_an_earlier_folder_with_anything_else_in_it_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from vmxfuzz.cli import main

    out = _legacy_fuzz_folder(tmp_path)
    (out / "notes.txt").write_text("mine\n")
    before = _tree(out)
    assert main(["fuzz", "--max-examples", "5", "--out", str(out)]) == 2
    (err,) = capsys.readouterr().err.splitlines()
    assert f"{out / 'notes.txt'}: (--out): the folder looks like an earlier `vmxfuzz fuzz`" in err
    assert _tree(out) == before, "nothing written, nothing deleted"
    (out / "notes.txt").unlink()
    (out / "corpus").symlink_to(tmp_path)  # vmxfuzz never writes a link
    assert main(["fuzz", "--max-examples", "5", "--out", str(out)]) == 2
    assert f"{out / 'corpus'}: (--out)" in capsys.readouterr().err
    (out / "corpus").unlink()
    summary = json.loads((out / "summary.json").read_text())
    for shape in ({**summary, "mine": 1}, {**summary, "seed": "0"}, [summary], {"notes": "x"}):
        (out / "summary.json").write_text(json.dumps(shape))
        assert main(["fuzz", "--max-examples", "5", "--out", str(out)]) == 2
        assert "not empty and not a vmxfuzz campaign folder" in capsys.readouterr().err
    assert not (out / ".vmxfuzz-campaign").exists()


def test_an_earlier_explore_folder_is_explores(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from vmxfuzz.cli import main
    from vmxfuzz.outdir import MARKER, legacy_kind

    out = tmp_path / "ex"
    out.mkdir()
    summary = {"engine": "explore", "variant": "both", "seed": 0, "elapsed_s": 1.5}
    summary |= {"examples": 0, "findings": []}
    (out / "summary.json").write_text(json.dumps(summary))
    (out / "explore.json").write_text(json.dumps({"variant": "both", "complete": False}))
    assert legacy_kind(out) == ("explore", None)
    assert main(["fuzz", "--max-examples", "5", "--out", str(out)]) == 2
    assert "an earlier `vmxfuzz explore` campaign" in capsys.readouterr().err
    assert main(["explore", "--max-runs", "5", "--nmis", "0", "--out", str(out)]) in (0, 1, 3)
    assert json.loads((out / MARKER).read_text())["kind"] == "explore"
    matrix = tmp_path / "mx"
    matrix.mkdir()
    (matrix / "kill-matrix.json").write_text(json.dumps({"format": "vmxfuzz-kill-matrix"}))
    (matrix / "kill-matrix.md").write_text("# Kill matrix\n")
    (matrix / "reproducers").mkdir()
    assert legacy_kind(matrix) == ("mutants", None)
