"""Scenarios: plain data, versioned JSON, and validation with precise errors.

A scenario is the only input of a run (spec section 10).  Every engine produces
:class:`Scenario` objects; files are only a serialisation of them.  Loading checks
the JSON Schema shipped in ``vmxfuzz/schema/`` and then the cross-field rules the
schema cannot state (CPU numbers within range, fault sites and kinds, NMI labels
that exist in the models), and names the file and field of the first problem.
"""

from __future__ import annotations

import json
import os
import stat
from dataclasses import asdict, dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from .kernel.state import Config
from .machine.faults import SITES, FaultSpec
from .machine.weakmem import action_cpu
from .sched import NmiSpec, PreemptSpec, RunEntry

FORMAT = "vmxfuzz-scenario"
VERSION = 5  # the newest format this reader knows; files are written at the lowest that fits
VERSIONS = (1, 2, 3, 4, 5)

# Input limits (docs/scenarios.md, "Limits").  Far above anything an engine writes
# (reproducers have tens of ops and schedule entries), low enough that a hostile or
# broken file is refused in milliseconds instead of stalling validation or the models.
MAX_FILE_BYTES = 4 << 20  # a scenario file or libFuzzer input
MAX_OPS = 1_000
MAX_SCHEDULE = 10_000
MAX_NMIS = 100
MAX_FAULTS = 100
MAX_DEPTH = 8  # JSON nesting: a scenario needs 4 (top, expect, list, item)
MAX_ARRAY = 10_000  # any other array (``expect`` lists, CPU lists)
LIMITS = {"ops": MAX_OPS, "schedule": MAX_SCHEDULE, "nmis": MAX_NMIS, "faults": MAX_FAULTS}

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
# Added in format version 5: SysRq-B's emergency_restart() (issue 14, item 3).
RESTART_OPS: dict[str, tuple[str, ...]] = {"emergency_restart": ()}
OPS.update(RESTART_OPS)


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
    preempts: tuple[PreemptSpec, ...] = ()  # format v3: preemption inside an ioctl
    name: str = ""
    description: str = ""
    expect: dict[str, Any] | None = None  # reference, patched, classes; causes per variant

    def to_json(self) -> dict[str, Any]:
        cfg = asdict(self.config)
        for key in ("bios_disabled", "offline", "cr4_mismatch", "vmx_caps_mismatch", "no_vmx"):
            cfg[key] = list(cfg[key])
        if not cfg["weak_memory"]:
            del cfg["weak_memory"]  # format v3 only
        if not cfg["panic_timeout"]:
            del cfg["panic_timeout"]  # format v5 only
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
        if self.preempts:
            d["preempts"] = [asdict(p) for p in self.preempts]
        if self.expect is not None:
            d["expect"] = self.expect
        return d

    @property
    def version(self) -> int:
        """The lowest format version that can express this scenario."""
        if self.config.panic_timeout or any(o.op in RESTART_OPS for o in self.ops):
            return 5
        if self.anchored:
            return 4
        if (
            self.config.weak_memory
            or self.preempts
            or any(isinstance(e, str) for e in self.schedule)
        ):
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
    doc: dict[str, Any] = json.loads(text)
    return doc


def _pointer(path: Any) -> str:
    parts = [str(p).replace("~", "~0").replace("/", "~1") for p in path]
    return "/" + "/".join(parts) if parts else "(top level)"


def _is_integer(checker: Any, instance: Any) -> bool:
    """JSON Schema counts ``2.0`` as an integer; the models index lists with it, so
    only a literal integer (and never a boolean) is one here."""
    return isinstance(instance, int) and not isinstance(instance, bool)


@cache
def _validator(version: int) -> Any:
    import jsonschema

    base = jsonschema.Draft202012Validator
    cls = jsonschema.validators.extend(
        base, type_checker=base.TYPE_CHECKER.redefine("integer", _is_integer)
    )
    return cls(schema(version))


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number with a fraction or exponent"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return f"an array of {len(value)}"
    if isinstance(value, dict):
        return "an object"
    return "null"


def _short(value: Any) -> str:
    """A bounded, one-line rendering of a value for an error message."""
    if isinstance(value, list | dict):
        return _json_type(value)
    text = json.dumps(value)  # escapes control characters and lone surrogates
    return text if len(text) <= 40 else text[:37] + "..."


def _message(e: Any) -> str:
    """One short line for a schema error: jsonschema's own messages print the whole
    offending value (megabytes for a huge array)."""
    v, inst = e.validator, e.instance
    if v == "type":
        want = e.validator_value if isinstance(e.validator_value, list) else [e.validator_value]
        return f"must be {' or '.join(want)}, not {_json_type(inst)} ({_short(inst)})"
    if v == "const":
        return f"must be {json.dumps(e.validator_value)}, not {_short(inst)}"
    if v == "enum":
        allowed = ", ".join(json.dumps(x) for x in e.validator_value)
        return f"{_short(inst)} is not one of {allowed}"[:300]
    if v in ("oneOf", "anyOf"):
        subs = sorted({_message(c) for c in e.context if not c.relative_path})
        return f"{_short(inst)} matches none of the allowed forms: {'; '.join(subs)}"[:300]
    if v == "additionalProperties" and isinstance(inst, dict):
        props = set(e.schema.get("properties", {}))
        extra = [k for k in inst if k not in props]
        return f"unknown field {_short(extra[0]) if extra else '?'} (see docs/scenarios.md)"
    if v == "pattern":
        return f"{_short(inst)} does not match {e.validator_value}"
    msg = " ".join(str(e.message).split())
    return msg if len(msg) <= 200 else msg[:197] + "..."


def _error_order(e: Any) -> list[tuple[int, int, str]]:
    return [(0, p, "") if isinstance(p, int) else (1, 0, str(p)) for p in e.absolute_path]


def _check_limits(data: dict[str, Any], where: str) -> None:
    """Sizes first: before jsonschema (which takes seconds on 100,000 entries)."""
    for part, limit in LIMITS.items():
        items = data.get(part)
        if isinstance(items, list) and len(items) > limit:
            raise ScenarioError(
                where,
                f"/{part}",
                f"{len(items)} entries, more than the limit of {limit} (docs/scenarios.md)",
            )


def from_json(data: Any, where: str = "<scenario>") -> Scenario:
    """Validate and convert parsed JSON; raises :class:`ScenarioError`."""
    version = data.get("version") if isinstance(data, dict) else None
    known = type(version) is int and version in VERSIONS
    if isinstance(data, dict):
        if data.get("format") == FORMAT and "version" in data and not known:
            raise ScenarioError(
                where,
                "/version",
                f"unsupported format version {_short(version)} (this reader knows "
                f"the integers {', '.join(map(str, VERSIONS))})",
            )
        _check_limits(data, where)
    validator = _validator(version if known else 1)
    errors = sorted(validator.iter_errors(data), key=_error_order)
    if errors:
        e = errors[0]
        raise ScenarioError(where, _pointer(e.absolute_path), _message(e))
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
        panic_timeout=cfg_in.get("panic_timeout", 0),
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
    preempts = []
    for i, m in enumerate(data.get("preempts", [])):
        cpu_ok(m["cpu"], f"/preempts/{i}/cpu")
        cpu_ok(m["to"], f"/preempts/{i}/to")
        if m["at"] not in labels:
            raise ScenarioError(where, f"/preempts/{i}/at", f"unknown step label {m['at']!r}")
        preempts.append(PreemptSpec(m["cpu"], m["at"], m.get("nth", 1), m["to"]))
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
        preempts=tuple(preempts),
        name=data.get("name", ""),
        description=data.get("description", ""),
        expect=data.get("expect"),
    )


class _Duplicates(dict[str, Any]):
    """An object that had a key twice (``json`` keeps the last one silently)."""

    duplicate: str = ""


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    d = dict(pairs)
    if len(d) == len(pairs):
        return d
    out = _Duplicates(d)
    seen: set[str] = set()
    for k, _ in pairs:
        if k in seen:
            out.duplicate = k
            break
        seen.add(k)
    return out


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _check_tree(data: Any, where: str) -> None:
    """Duplicate keys, nesting deeper than :data:`MAX_DEPTH` and arrays longer than
    :data:`MAX_ARRAY`, with their pointer (one pass, before the schema)."""
    stack: list[tuple[Any, tuple[Any, ...]]] = [(data, ())]
    while stack:
        node, path = stack.pop()
        if len(path) >= MAX_DEPTH and isinstance(node, dict | list):
            raise ScenarioError(
                where, _pointer(path), f"nested deeper than {MAX_DEPTH} levels (docs/scenarios.md)"
            )
        if isinstance(node, list) and len(node) > MAX_ARRAY:
            raise ScenarioError(
                where,
                _pointer(path),
                f"{len(node)} entries, more than the limit of {MAX_ARRAY} (docs/scenarios.md)",
            )
        if isinstance(node, _Duplicates):
            raise ScenarioError(
                where, _pointer((*path, node.duplicate)), "duplicate key (each field once)"
            )
        if isinstance(node, dict):
            stack.extend((v, (*path, k)) for k, v in node.items())
        elif isinstance(node, list):
            stack.extend((v, (*path, i)) for i, v in enumerate(node))


def parse(text: str, where: str) -> Any:
    """Strict JSON: no NaN/Infinity, no duplicate keys, bounded nesting."""
    try:
        data = json.loads(text, object_pairs_hook=_pairs, parse_constant=_no_constant)
    except RecursionError:
        raise ScenarioError(where, "(file)", "not a scenario: JSON nested too deeply") from None
    except json.JSONDecodeError as e:
        raise ScenarioError(
            where, f"(line {e.lineno} column {e.colno})", f"not JSON: {e.msg}"
        ) from None
    except ValueError as e:  # NaN, Infinity, an integer of thousands of digits
        raise ScenarioError(where, "(file)", f"not JSON: {e}") from None
    _check_tree(data, where)
    return data


def read_input(path: str | Path, limit: int = MAX_FILE_BYTES) -> bytes:
    """The bytes of a regular file of at most ``limit`` bytes; anything else (a FIFO,
    a device, a directory, a file too large) is a :class:`ScenarioError`.  Opened
    non-blocking so a FIFO is refused instead of waiting for a writer."""
    where = str(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as e:
        raise ScenarioError(where, "(file)", f"cannot read: {e.strerror or e}") from None
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise ScenarioError(where, "(file)", "is a directory")
        if not stat.S_ISREG(st.st_mode):
            raise ScenarioError(
                where, "(file)", "not a regular file (a FIFO, device or socket is not read)"
            )
        chunks: list[bytes] = []
        size = 0
        while size <= limit:
            chunk = os.read(fd, min(1 << 20, limit + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    except OSError as e:
        raise ScenarioError(where, "(file)", f"cannot read: {e.strerror or e}") from None
    finally:
        os.close(fd)
    if size > limit:
        raise ScenarioError(
            where, "(file)", f"larger than the limit of {limit >> 20} MiB (docs/scenarios.md)"
        )
    return b"".join(chunks)


def loads(data: bytes, where: str) -> Scenario:
    """A scenario from the bytes of a JSON file."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ScenarioError(
            where, "(file)", f"not UTF-8 text: byte {e.start} ({data[e.start : e.start + 1]!r})"
        ) from None
    return from_json(parse(text, where), where)


def load(path: str | Path) -> Scenario:
    """Read a scenario file; every problem is a :class:`ScenarioError`."""
    return loads(read_input(path), str(path))


def save(scenario: Scenario, path: str | Path) -> None:
    """Write atomically: a killed writer never leaves a half-written scenario."""
    from .atomic import write_text_atomic

    write_text_atomic(Path(path), scenario.dumps())
