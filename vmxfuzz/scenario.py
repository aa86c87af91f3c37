"""Scenarios: plain data, versioned JSON, and validation with precise errors.

A scenario is the only input of a run (spec section 10).  Every engine produces
:class:`Scenario` objects; files are only a serialisation of them.  Loading checks
the JSON Schema shipped in ``vmxfuzz/schema/`` and then the cross-field rules the
schema cannot state (CPU numbers within range, fault sites and kinds, NMI labels
that exist in the models), and names the file and field of the first problem.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from .kernel.state import Config
from .machine.faults import SITES, FaultSpec
from .machine.weakmem import action_cpu
from .sched import NmiSpec, RunEntry

FORMAT = "vmxfuzz-scenario"
VERSION = 4  # the newest format this reader knows; files are written at the lowest that fits
VERSIONS = (1, 2, 3, 4)

# op -> the fields it needs besides "cpu"
OPS: dict[str, tuple[str, ...]] = {
    "module_load": (),
    "module_unload": (),
    "create_vm": ("vm",),
    "destroy_vm": ("vm",),
    "create_vcpu": ("vm", "vcpu"),
    "run_vcpu": ("vcpu",),
    "cpu_online": ("target",),
    "cpu_offline": ("target",),
    "suspend": (),
    "reboot": (),
    "kexec": (),
    "panic": (),
}
# Added in format version 2: L1's VMX instructions and L2 exits (spec section 6.4).
NESTED_OPS: dict[str, tuple[str, ...]] = {
    name: ("vcpu",)
    for name in (
        "l1_vmxon",
        "l1_vmptrld",
        "l1_vmclear",
        "l1_vmlaunch",
        "l1_vmresume",
        "l1_vmxoff",
        "l2_exit",
    )
}
OPS.update(NESTED_OPS)


class ScenarioError(ValueError):
    """Bad input: names the file and the field (JSON pointer) at fault."""

    def __init__(self, where: str, field: str, msg: str) -> None:
        super().__init__(f"{where}: {field}: {msg}")
        self.where = where
        self.field = field
        self.msg = msg


@dataclass(frozen=True)
class Op:
    op: str
    cpu: int = 0
    parallel: bool = False
    vm: str | None = None
    vcpu: str | None = None
    target: int | None = None

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {"op": self.op, "cpu": self.cpu}
        if self.parallel:
            d["parallel"] = True
        for f in ("vm", "vcpu", "target"):
            v = getattr(self, f)
            if v is not None:
                d[f] = v
        return d

    def describe(self) -> str:
        args = [
            f"{f}={getattr(self, f)}"
            for f in ("vm", "vcpu", "target")
            if getattr(self, f) is not None
        ]
        par = " (parallel)" if self.parallel else ""
        return f"{self.op}({', '.join(args)}) on CPU {self.cpu}{par}"


@dataclass(frozen=True)
class Scenario:
    ops: tuple[Op, ...]
    config: Config = field(default_factory=Config)
    # Step-indexed entries (CPU numbers; weak memory: "sbC", "lateC"), or anchored
    # runs (format v4, :class:`RunEntry`): never both.
    schedule: tuple[int | str | RunEntry, ...] = ()
    nmis: tuple[NmiSpec, ...] = ()
    faults: tuple[FaultSpec, ...] = ()
    name: str = ""
    description: str = ""
    expect: dict[str, list[str]] | None = None

    def to_json(self) -> dict[str, Any]:
        cfg = asdict(self.config)
        for key in ("bios_disabled", "offline", "cr4_mismatch", "vmx_caps_mismatch", "no_vmx"):
            cfg[key] = list(cfg[key])
        if not cfg["weak_memory"]:
            del cfg["weak_memory"]  # format v3 only
        d: dict[str, Any] = {"format": FORMAT, "version": self.version}
        if self.name:
            d["name"] = self.name
        if self.description:
            d["description"] = self.description
        d["config"] = cfg
        d["ops"] = [o.to_json() for o in self.ops]
        d["schedule"] = [e.to_json() if isinstance(e, RunEntry) else e for e in self.schedule]
        d["nmis"] = [asdict(n) for n in self.nmis]
        d["faults"] = [{k: v for k, v in asdict(f).items() if v is not None} for f in self.faults]
        if self.expect is not None:
            d["expect"] = self.expect
        return d

    @property
    def version(self) -> int:
        """The lowest format version that can express this scenario."""
        if self.anchored:
            return 4
        if self.config.weak_memory or any(isinstance(e, str) for e in self.schedule):
            return 3
        return 2 if any(o.op in NESTED_OPS for o in self.ops) else 1

    @property
    def anchored(self) -> bool:
        """The schedule is a list of anchored runs (format v4)."""
        return any(isinstance(e, RunEntry) for e in self.schedule)

    def dumps(self) -> str:
        return json.dumps(self.to_json(), indent=2) + "\n"


@cache
def schema(version: int = VERSION) -> dict[str, Any]:
    text = resources.files("vmxfuzz").joinpath(f"schema/scenario-v{version}.json").read_text()
    return json.loads(text)


def _pointer(path: Any) -> str:
    parts = [str(p) for p in path]
    return "/" + "/".join(parts) if parts else "(top level)"


def from_json(data: Any, where: str = "<scenario>") -> Scenario:
    """Validate and convert parsed JSON; raises :class:`ScenarioError`."""
    import jsonschema

    version = data.get("version") if isinstance(data, dict) else None
    if (
        isinstance(data, dict)
        and data.get("format") == FORMAT
        and "version" in data
        and version not in VERSIONS
    ):
        raise ScenarioError(
            where,
            "/version",
            f"unsupported format version {version!r} (this reader knows {list(VERSIONS)})",
        )
    validator = jsonschema.Draft202012Validator(schema(version if version in VERSIONS else 1))
    errors = sorted(validator.iter_errors(data), key=lambda e: list(e.absolute_path))
    if errors:
        e = errors[0]
        raise ScenarioError(where, _pointer(e.absolute_path), e.message)
    cfg_in = data.get("config", {})
    config = Config(
        cpus=cfg_in.get("cpus", 2),
        kexec_loaded=cfg_in.get("kexec_loaded", True),
        bios_disabled=tuple(cfg_in.get("bios_disabled", ())),
        offline=tuple(cfg_in.get("offline", ())),
        cr4_mismatch=tuple(cfg_in.get("cr4_mismatch", ())),
        vmx_caps_mismatch=tuple(cfg_in.get("vmx_caps_mismatch", ())),
        no_vmx=tuple(cfg_in.get("no_vmx", ())),
        ept=cfg_in.get("ept", True),
        shadow_vmcs=cfg_in.get("shadow_vmcs", True),
        nested=cfg_in.get("nested", False),
        weak_memory=cfg_in.get("weak_memory", False),
    )
    n = config.cpus

    def cpu_ok(value: int, ptr: str) -> None:
        if not 0 <= value < n:
            raise ScenarioError(where, ptr, f"CPU {value} out of range (config.cpus = {n})")

    for key in ("bios_disabled", "offline", "cr4_mismatch", "vmx_caps_mismatch", "no_vmx"):
        for i, c in enumerate(getattr(config, key)):
            cpu_ok(c, f"/config/{key}/{i}")
    if 0 in config.offline:
        raise ScenarioError(where, "/config/offline", "the boot CPU 0 cannot start offline")
    ops = []
    for i, o in enumerate(data["ops"]):
        for need in OPS[o["op"]]:
            if need not in o:
                raise ScenarioError(where, f"/ops/{i}/{need}", f"op {o['op']!r} needs {need!r}")
        cpu_ok(o.get("cpu", 0), f"/ops/{i}/cpu")
        if "target" in o:
            cpu_ok(o["target"], f"/ops/{i}/target")
            if o["target"] == o.get("cpu", 0):
                raise ScenarioError(
                    where,
                    f"/ops/{i}/target",
                    "a hotplug op must run on another CPU than its target",
                )
        ops.append(
            Op(
                op=o["op"],
                cpu=o.get("cpu", 0),
                parallel=o.get("parallel", False),
                vm=o.get("vm"),
                vcpu=o.get("vcpu"),
                target=o.get("target"),
            )
        )
    schedule: list[int | str | RunEntry] = []
    for i, c in enumerate(data.get("schedule", [])):
        if isinstance(c, dict) != isinstance(data["schedule"][0], dict):
            raise ScenarioError(
                where, f"/schedule/{i}", "a schedule is either step entries or runs, not both"
            )
        if isinstance(c, dict):  # an anchored run (format v4)
            cpu_ok(c["cpu"], f"/schedule/{i}/cpu")
            if "nth" in c and "until" not in c:
                raise ScenarioError(where, f"/schedule/{i}/nth", "nth needs until")
            schedule.append(RunEntry(c["cpu"], c.get("until"), c.get("nth", 1)))
            continue
        schedule.append(c)
        if isinstance(c, str):  # a store-buffer commit (format v3, weak memory)
            if not config.weak_memory:
                raise ScenarioError(
                    where, f"/schedule/{i}", "store-buffer entries need config.weak_memory"
                )
            cpu_ok(action_cpu(c), f"/schedule/{i}")  # the schema checked the pattern
        else:
            cpu_ok(c, f"/schedule/{i}")
    from .labels import known_labels

    labels = known_labels()
    nmis = []
    for i, m in enumerate(data.get("nmis", [])):
        cpu_ok(m["cpu"], f"/nmis/{i}/cpu")
        if m["before"] not in labels:
            raise ScenarioError(where, f"/nmis/{i}/before", f"unknown step label {m['before']!r}")
        nmis.append(NmiSpec(m["cpu"], m["before"], m.get("nth", 1), m.get("kind", "panic")))
    faults = []
    for i, f in enumerate(data.get("faults", [])):
        site = f["site"]
        if site not in SITES:
            raise ScenarioError(
                where,
                f"/faults/{i}/site",
                f"unknown fault site {site!r} (known: {', '.join(SITES)})",
            )
        kind = f.get("kind")
        if kind is not None and kind not in SITES[site][0]:
            raise ScenarioError(
                where,
                f"/faults/{i}/kind",
                f"site {site!r} takes kinds {list(SITES[site][0])}, not {kind!r}",
            )
        if "cpu" in f:
            cpu_ok(f["cpu"], f"/faults/{i}/cpu")
        faults.append(FaultSpec(site, f.get("nth", 1), f.get("cpu"), kind))
    return Scenario(
        ops=tuple(ops),
        config=config,
        schedule=tuple(schedule),
        nmis=tuple(nmis),
        faults=tuple(faults),
        name=data.get("name", ""),
        description=data.get("description", ""),
        expect=data.get("expect"),
    )


def load(path: str | Path) -> Scenario:
    """Read a scenario file; every problem is a :class:`ScenarioError`."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ScenarioError(str(p), "(file)", f"cannot read: {e}") from None
    try:
        data = json.loads(text)
    except RecursionError:
        raise ScenarioError(str(p), "(file)", "not a scenario: JSON nested too deeply") from None
    except json.JSONDecodeError as e:
        raise ScenarioError(
            str(p), f"(line {e.lineno} column {e.colno})", f"not JSON: {e.msg}"
        ) from None
    return from_json(data, str(p))


def save(scenario: Scenario, path: str | Path) -> None:
    """Write atomically: a killed writer never leaves a half-written scenario."""
    from .atomic import write_text_atomic

    write_text_atomic(Path(path), scenario.dumps())
