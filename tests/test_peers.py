"""The Spin peer (benchmarks/peers/): the Promela model parses and gives the expected
verdicts when spin (and gcc) are installed, and the state its `init` writes is the one
vmxfuzz's setup ops leave (checked without spin)."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest

from vmxfuzz.executor import start
from vmxfuzz.kernel.list import ring
from vmxfuzz.kernel.structs import LoadedVmcs
from vmxfuzz.scenario import load

ROOT = Path(__file__).resolve().parent.parent
PEERS = ROOT / "benchmarks" / "peers"
MODEL = PEERS / "vmx_core.pml"
PROGRAM = PEERS / "core-program.json"
SEED = ROOT / "examples" / "seed-nmi-in-list-add.json"
VARIANTS = {"reference": [], "patched": ["-DPATCHED"]}

needs_spin = pytest.mark.skipif(
    shutil.which("spin") is None,
    reason="spin is not installed (optional peer tool: apt-get install -y spin)",
)
_missing = [t for t in ("spin", "gcc") if shutil.which(t) is None]
needs_spin_and_gcc = pytest.mark.skipif(
    bool(_missing),
    reason=f"{' and '.join(_missing)} not installed (optional peer tool: "
    "apt-get install -y spin gcc)",
)


def _spin_a(tmp: Path, variant: str) -> subprocess.CompletedProcess[str]:
    shutil.copy(MODEL, tmp / MODEL.name)
    return subprocess.run(
        ["spin", *VARIANTS[variant], "-a", MODEL.name],
        cwd=tmp,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


@needs_spin
@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_promela_model_parses(tmp_path: Path, variant: str) -> None:
    p = _spin_a(tmp_path, variant)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "error" not in (p.stdout + p.stderr).lower(), p.stdout + p.stderr
    assert (tmp_path / "pan.c").exists()


@needs_spin_and_gcc
@pytest.mark.parametrize(("variant", "violates"), [("reference", True), ("patched", False)])
def test_pan_verdicts(tmp_path: Path, variant: str, violates: bool) -> None:
    """Reference: the kexec check fails (the seed's bug); patched: the full search is
    clean. -O0 keeps the compile short (the benchmark uses -O2)."""
    assert _spin_a(tmp_path, variant).returncode == 0
    cc = ["gcc", "-O0", "-w", "-DSAFETY", "-o", "pan", "pan.c"]
    subprocess.run(cc, cwd=tmp_path, check=True, timeout=60)
    p = subprocess.run(
        ["./pan", "-n", "-w16"], cwd=tmp_path, capture_output=True, text=True, timeout=30
    )
    out = p.stdout
    if violates:
        assert "errors: 1" in out, out
        assert "assertion violated ((vmcs_cache[0]==0)&&(vmcs_cache[1]==0))" in out, out
    else:
        assert "errors: 0" in out, out
        assert "Search not completed" not in out, out


def test_core_program_is_the_seed_program() -> None:
    """The peer program is the seed scenario's ops and machine, without its NMI."""
    core, seed = load(PROGRAM), load(SEED)
    assert core.ops == seed.ops
    assert core.config == seed.config
    assert not core.nmis and not core.faults and not core.schedule


@pytest.mark.parametrize("variant", ["reference", "patched"])
def test_promela_init_is_the_state_after_setup(variant: str) -> None:
    """What vmx_core.pml's `init` writes is what the four setup ops leave: CPU c's list
    holds exactly vcpu c's vmcs01, whose VMCS is active and current on CPU c only, and
    (5.6) both crash_vmclear_enabled bits are set."""
    sc = load(PROGRAM)
    r = start(replace(sc, ops=sc.ops[:4]), variant)
    r.sched.run()
    k = r.k
    assert r.oracle.violations == []
    for c in (0, 1):
        entries = ring(k.loaded_vmcss_on_cpu[c])
        assert entries is not None
        owners = [e.owner for e in entries]
        assert all(isinstance(lv, LoadedVmcs) for lv in owners)
        assert [getattr(lv, "name", None) for lv in owners] == [f"vcpu{c}.vmcs01"]
        lv = owners[0]
        assert isinstance(lv, LoadedVmcs)
        assert lv.cpu == c
        assert not lv.launched
        assert k.current_vmcs[c] is lv.vmcs
        assert list(k.hw.cpus[c].cache) == [lv.vmcs]
        assert k.hw.cpus[c].vmx_root
        assert k.hw.cpus[c].irqs_enabled
    if variant == "reference":
        assert k.crash_vmclear_enabled_bitmap == {0, 1}
