"""The atheris harness and the atheris campaign (skipped without atheris)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

atheris = pytest.importorskip("atheris")

from helpers import assert_summary_sound, campaign  # noqa: E402

from vmxfuzz.campaign import keys  # noqa: E402
from vmxfuzz.scenario import load  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT / "corpora" / "seed"


def _entry(prefix: str) -> bytes:
    return next(p for p in CORPUS.iterdir() if p.name.startswith(prefix)).read_bytes()


def _run(
    code: str, out: Path, fail_on: str, known: str | None = ""
) -> subprocess.CompletedProcess[str]:
    """Run harness code; ``known`` is VMXFUZZ_KNOWN (default: no known findings)."""
    env = dict(os.environ, VMXFUZZ_OUT=str(out), VMXFUZZ_FAIL_ON=fail_on)
    if known is not None:
        env["VMXFUZZ_KNOWN"] = known
    return subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=False
    )


def test_harness_saves_new_findings_and_raises_only_on_fail_on(tmp_path: Path) -> None:
    code = (
        "from vmxfuzz.fuzz.harness import TestOneInput\n"
        f"TestOneInput({_entry('seed-nmi-in-list-add')!r})\n"
        f"TestOneInput({_entry('clean-vcpu-migration')!r})\n"
        "print('survived')\n"
    )
    p = _run(code, tmp_path, "regression")
    assert p.returncode == 0 and "survived" in p.stdout  # `fixed` is counted, not fatal
    (pending,) = (tmp_path / ".pending").iterdir()
    assert ("fixed", "kexec-active-vmcs", "kexec-active-vmcs/crash-vmclear-disabled") in keys(
        load(pending), "both"
    )
    p = _run(code.replace("'seed-nmi", "'x"), tmp_path / "b", "fixed")
    assert p.returncode != 0 and "Finding: fixed kexec-active-vmcs" in p.stderr


def test_known_findings_are_saved_but_do_not_stop_a_run(tmp_path: Path) -> None:
    """F04 (a regression the project has recorded) stops a run only without the list."""
    code = (
        "from vmxfuzz.fuzz.harness import TestOneInput\n"
        f"TestOneInput({_entry('F04-')!r})\n"
        "print('survived')\n"
    )
    env_default = None  # the packaged fuzz/known-findings.json
    p = _run(code, tmp_path / "a", "regression", known=env_default)
    assert p.returncode == 0 and "survived" in p.stdout, p.stderr[-2000:]
    assert list((tmp_path / "a" / ".pending").iterdir()), "still saved for the campaign"
    p = _run(code, tmp_path / "b", "regression")
    assert p.returncode != 0 and "Finding: regression oops" in p.stderr


def test_the_known_findings_list_is_derived_from_the_regressions() -> None:
    from vmxfuzz.fuzz.known import KNOWN_FILE, document

    regressions = sorted((ROOT / "tests" / "regressions").glob("*.json"))
    current = json.loads(KNOWN_FILE.read_text())
    assert current == json.loads(json.dumps(document(regressions))), (
        "fuzz/known-findings.json is out of date: python -m vmxfuzz.fuzz.known tests/regressions"
    )


def test_libfuzzer_command_line_runs(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "seed").write_bytes(_entry("clean-orderly-kexec"))
    env = dict(os.environ, VMXFUZZ_OUT=str(tmp_path / "out"), VMXFUZZ_FAIL_ON="")
    p = subprocess.run(
        [sys.executable, "-m", "vmxfuzz.fuzz", "-runs=200", "-seed=1", str(corpus)],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert p.returncode == 0, p.stderr[-2000:]
    assert "Done 200 runs" in p.stderr


def test_atheris_campaign_merges_into_summary(tmp_path: Path) -> None:
    # a count budget (libFuzzer -runs=300): the same run on any machine, however loaded
    code, doc = campaign(tmp_path, "atheris", "both", 300, 2)
    assert doc["examples"] == 300, "every execution counted, the last ones too"
    assert not list((tmp_path / ".pending").glob("*.json")), "everything pending was merged"
    assert_summary_sound(tmp_path, doc, code, "both")


def test_libfuzzer_sees_the_code_under_test_and_not_the_engine(tmp_path: Path) -> None:
    """The models, machine, stepping core and oracle are instrumented; the decoder,
    the campaign's statistics and the NMI-window analysis are not (their branches are
    how an input is read or counted, not what the kernel did)."""
    code = (
        "import inspect\n"
        "import vmxfuzz.fuzz.harness as h\n"
        "from vmxfuzz import campaign, coverage, oracle, sched\n"
        "from vmxfuzz.engines import windows\n"
        "from vmxfuzz.fuzz import decoder\n"
        "from vmxfuzz.kernel import vmx\n"
        "import vmxfuzz.reference.vmx as ref, vmxfuzz.patched.vmx as pat\n"
        "def on(m):\n"
        "    mine = [x for x in vars(m).values() if getattr(x, '__module__', '') == m.__name__]\n"
        "    mine += [f for c in mine if inspect.isclass(c) for f in vars(c).values()]\n"
        "    fns = [f for f in mine if inspect.isfunction(f)]\n"
        "    assert fns, m\n"
        "    return any('_trace_branch' in f.__code__.co_names for f in fns)\n"
        "print([on(m) for m in (vmx, ref, pat, sched, oracle)])\n"
        "print([on(m) for m in (decoder, campaign, coverage, windows)])\n"
    )
    p = _run(code, tmp_path, "")
    assert p.returncode == 0, p.stderr[-2000:]
    under_test, engine = p.stdout.strip().splitlines()[-2:]
    assert under_test == "[True, True, True, True, True]"
    assert engine == "[False, False, False, False]"


def test_libfuzzer_defaults_unless_the_command_line_gives_them(tmp_path: Path) -> None:
    """-len_control=0 and a -max_len that holds every corpus entry are added only
    where the command line does not set them."""
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "big").write_bytes(bytes(300))
    code = (
        "from vmxfuzz.fuzz.harness import with_defaults, MAX_LEN\n"
        "print(with_defaults(['f', '-runs=1']))\n"
        f"print(with_defaults(['f', '-len_control=5', '-max_len=9', {str(corpus)!r}]))\n"
        f"print(with_defaults(['f', {str(corpus)!r}]))\n"
    )
    p = _run(code, tmp_path, "")
    assert p.returncode == 0, p.stderr[-2000:]
    plain, given, big = p.stdout.strip().splitlines()[-3:]
    assert plain == str(["f", "-len_control=0", "-max_len=128", "-runs=1"])
    assert given == str(["f", "-len_control=5", "-max_len=9", str(corpus)])
    assert big == str(["f", "-len_control=0", "-max_len=300", str(corpus)])
