"""Bytes <-> scenarios: a total, structure-aware decoder and an exact encoder.

Every byte string decodes to a valid scenario and decoding never raises (libFuzzer
may hand the harness any bytes, including truncated or corrupt corpus files).  Each
choice consumes one byte from the front; an exhausted input reads as zero bytes.  A
choice among options maps the byte onto a weighted table (``byte % total`` falls in
one option's slice), so the common case takes most byte values and every option
keeps at least one; :func:`encode` writes the first byte of the wanted option's slice.
That is what makes the encoder exact: the shipped examples and every reproducer become
corpus entries that decode back to the same scenario (up to renaming VMs and vCPUs),
so the seed corpus and ``vmxfuzz replay <artifact>`` agree with JSON scenarios.  It is
deliberately not ``atheris.FuzzedDataProvider``: that consumes integers from the end
of the buffer in a layout we could not invert, and artifacts must decode the same
where atheris is not installed.

Why structure-aware (layout version 3 and after): libFuzzer mutates bytes and keeps
what adds coverage, so it only gets deep if *most* byte strings, short ones included, already
decode to plausible programs.  Layout v2 mapped each byte uniformly onto its range:
half of random machines had kexec unloaded and most had VMX disabled by the firmware
on some CPU, op kinds were uniform over 19 kinds (nested ones included), names were
uniform over a fixed list whether created or not, and a random schedule length ate
the bytes before the NMIs; random inputs loaded the module in 18% of cases, created a
vCPU in under 1% and had an NMI in under 1% (``benchmarks/decoder_reach.py``).  v3
draws like the Hypothesis strategies (:mod:`vmxfuzz.engines.strategies`): the default
machine most of the time and quirks rarely; a usual prefix (module load, a VM); op
kinds weighted by category (vCPU ops first, rare ops, L1's VMX instructions mostly
following L1's protocol); names drawn from what the program already named (a creation
mostly takes a fresh name, every other op mostly an existing one); a terminal crash,
kexec or reboot; faults mostly at a site the program passes; NMIs placed at the k-th
step of a window pool of a recorded first run
(:mod:`vmxfuzz.engines.windows`, the pools and weights of the strategies), so a byte
means "the k-th IRQs-off step", not an absolute label; and the schedule last, as runs
(one byte: a CPU and how many choice points it keeps), taking the rest of the input.

Layout (version 4), in order.  Where a byte has a common case, a zero byte means
it (an exhausted input reads zeros, so a short input is a plain program, not an
empty one):

1. machine: ``cpus`` (weighted 2 > 1 > 3, 4), ``nested``, ``quirks`` (1 in 8: then a
   flags byte -- bit 1 kexec not loaded, bit 2 no shadow VMCS, bit 3 no EPT, bit 4 a
   ``panic_timeout`` byte (signed) follows the masks -- a firmware-disabled CPU mask
   and an offline CPU mask), ``weak memory`` (1 in 8, with
   two or more CPUs), ``schedule mode`` (runs or PCT: then a depth byte, a
   priority-order byte and ``depth - 1`` change-point bytes, :mod:`vmxfuzz.engines.pct`);
2. ops: a prefix (module load and a VM mostly), a body count (0..12, 4 for a zero
   byte), per op a kind byte (a weighted table that depends on whether a VM and a vCPU
   have been created yet; with nested on, an ``L1 next`` pseudo-kind followed by the
   protocol step byte), a placement byte (CPU ``(b & 63) % cpus``, parallel when
   ``b >= 192``), a name byte per VM/vCPU the kind takes (fresh when ``b % 8`` is in
   the kind's fresh range, else the ``(b // 8)``-th name used so far, created ones
   first), a target byte for hotplug; then a terminal byte (panic, none, kexec,
   reboot, emergency restart) and its placement;
3. faults: a count, per fault a mode byte (3 in 4: at a site the fault-free run of
   the program checked, the ``b``-th of those by name, at an occurrence it reached;
   else any site), a site byte, an nth byte (1..4), a kind byte and a CPU byte
   (``b < 128``: any CPU);
4. NMIs: a count, per NMI a kind byte, a pool byte (a window step the CPU ran before,
   every common step, IRQs-off or IPI context, after a hardware change, inside a
   function, or a raw ``(label, cpu, nth)``), and two index bytes counted from the
   pool's end (the latest step: the deepest state) (raw: label index, CPU and nth);
5. schedule (runs mode): the rest of the input, up to :data:`MAX_RUNS` run bytes:
   CPU ``(b >> 6) % cpus`` for ``(b & 63) + 1`` choice points; with weak memory each
   run byte is ``b & 63`` points (0..63) and is followed by a store-buffer entry byte
   (below 64: none; ``sbC``, ``sbC.I``, ``lateC`` above, so format v3 round-trips).

Version 2 inputs (one uniform byte per choice) and version 3 (faults at any site,
a PCT schedule chosen with the faults in place) decode differently; the seed corpus
was re-encoded (``vmxfuzz encode``) at each change and still decodes to the same
scenarios.  A PCT schedule is chosen on the fault-free program, as the strategies do.

Format v5 (issue 14: the ``emergency_restart`` op, ``config.panic_timeout``) extends
layout 3 without moving a byte an encoder writes: ``emergency_restart`` is the last
option of the terminal table and of the op-kind table (weight 1, as any op kind the
categories do not name), and flags bit 4 adds
the ``panic_timeout`` byte.  Every option kept the first byte of its slice, so every
encoded input decodes as before; only bytes past the old table sums changed meaning.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from functools import cache
from itertools import permutations
from typing import Generic, TypeVar

from vmxfuzz.engines.pct import Pct, pct_schedule
from vmxfuzz.engines.strategies import L1_AFTER, L1_NEXT, _reached_sites
from vmxfuzz.engines.windows import NmiTargets
from vmxfuzz.kernel.state import Config
from vmxfuzz.labels import known_labels
from vmxfuzz.machine.faults import SITES, FaultSpec
from vmxfuzz.scenario import NESTED_OPS, OPS, Op, Scenario
from vmxfuzz.sched import NmiSpec

LAYOUT = 4
VMS = ("vm0", "vm1")
VCPUS = ("v0", "v1", "v2", "v3")
SITE_NAMES = tuple(sorted(SITES))
MAX_OPS, MAX_FAULTS, MAX_NMIS, MAX_RUNS = 12, 2, 2, 255
L1_STEP = "l1 next"  # the pseudo-kind: what L1's protocol issues next for the vCPU

T = TypeVar("T")


@dataclass(frozen=True)
class Weighted(Generic[T]):
    """A one-byte choice: option ``i`` owns ``weights[i]`` of every ``sum(weights)``
    byte values (``byte % sum``), in order; every option keeps at least one."""

    options: tuple[T, ...]
    weights: tuple[int, ...]

    def __post_init__(self) -> None:
        assert len(self.options) == len(self.weights) and all(w > 0 for w in self.weights)
        assert sum(self.weights) <= 256

    def pick(self, b: int) -> T:
        b %= sum(self.weights)
        for option, w in zip(self.options, self.weights, strict=True):
            if b < w:
                return option
            b -= w
        raise AssertionError("unreachable: b < sum(weights)")

    def byte(self, value: T) -> int:
        i = self.options.index(value)
        return sum(self.weights[:i])


CPUS = Weighted((2, 1, 3, 4), (4, 2, 1, 1))
COIN = Weighted((False, True), (1, 1))
RARELY = Weighted((False, True), (7, 1))
SCHEDULE_MODE = Weighted(("runs", "pct"), (1, 1))
# (prefix ops) none, a module load, a module load and a VM: mostly the last.
PREFIX = Weighted((3, 1, 0), (6, 1, 1))
BODY = Weighted(
    (4, 0, 1, 2, 3, *range(5, MAX_OPS + 1)), (3, 1, 3, 3, 3, 3, 3, 3, 3, *[1] * (MAX_OPS - 8))
)
TERMINAL = Weighted(("panic", None, "kexec", "reboot", "emergency_restart"), (3, 2, 2, 1, 1))
FAULTS = Weighted((0, 1, 2), (5, 2, 1))
# A fault mostly at a site the fault-free run checked, at an occurrence it reached
# (the strategies' ``reached_faults``): with sixteen sites, a fault at a site the
# program never passes is a no-op.  ``any`` keeps every site and nth 1..4 encodable.
FAULT_AT = Weighted(("reached", "any"), (3, 1))
NMIS = Weighted((1, 0, 2), (2, 1, 1))
NMI_KIND = Weighted(("panic", "benign"), (2, 1))
# The strategies' pools (vmxfuzz.engines.strategies.POOLS: repeat three times the
# others), and raw labels rarely: they keep every NMI of a reproducer encodable.
NMI_POOL = Weighted(("repeat", "all", "masked", "after_hw", "interior", "raw"), (6, 2, 2, 2, 2, 1))
# A name byte means a fresh name when ``b % 8`` is in the range: a creation mostly
# names something new, a use mostly something that exists (both stay possible:
# -EEXIST and -ENOENT paths are code too).  A zero byte means the common case.
FRESH_CREATE, FRESH_USE = range(0, 6), range(7, 8)

# Op kinds by category, as the strategies draw them (vCPU ops first, then rare ops;
# a crash/kexec/reboot mostly as the terminal op), each kind at least once.
_BASIC = {"create_vcpu": 14, "run_vcpu": 20, "destroy_vm": 7, "create_vm": 7}
_RARE = {k: 3 for k in ("cpu_offline", "cpu_online", "suspend", "module_unload", "module_load")}
_TERMINAL = {"panic": 2, "kexec": 2, "reboot": 2}


@cache
def kinds(nested: bool, vm: bool = True, vcpu: bool = True) -> Weighted[str]:
    """The op-kind table, by what the program has created so far: with nested on, L1's
    protocol step takes a third of it; while no VM (no vCPU) exists, creating one takes
    the weight of the ops that would need it (they stay possible: -ENOENT is code too)."""
    table = {**_BASIC, **_RARE, **_TERMINAL}
    table.update({k: 2 if nested else 1 for k in NESTED_OPS})
    if nested:
        table[L1_STEP] = 40
    # An op kind the categories do not name yet (one added to the scenario format
    # later) is drawn rarely and stays encodable; the corpus tests then ask for a
    # re-encode, as for any layout change.
    table.update({k: 1 for k in sorted(OPS) if k not in table})
    users = ("run_vcpu", *NESTED_OPS, L1_STEP) if not vcpu else ()
    if not vm:
        users = (*users, "destroy_vm", "create_vcpu")
    for k in users:
        if k in table:
            table["create_vcpu" if vm else "create_vm"] += table[k] - 1
            table[k] = 1
    return Weighted(tuple(table), tuple(table.values()))


@cache
def labels() -> tuple[str, ...]:
    return tuple(sorted(known_labels()))


@dataclass
class Reader:
    data: bytes
    pos: int = 0

    def byte(self) -> int:
        b = self.data[self.pos] if self.pos < len(self.data) else 0
        self.pos += 1
        return b

    def number(self, lo: int, hi: int) -> int:
        """One byte, always (even for a one-value range), so the layout is fixed."""
        b = self.byte()
        return lo + b % (hi - lo + 1) if hi > lo else lo

    def big(self, n: int) -> int:
        """An index in ``range(n)`` from two bytes (n may exceed 256)."""
        hi, lo = self.byte(), self.byte()
        return (hi * 256 + lo) % n if n else 0

    def pick(self, table: Weighted[T]) -> T:
        return table.pick(self.byte())

    @property
    def left(self) -> bytes:
        return self.data[self.pos :]


@dataclass
class _Names:
    """The VMs and vCPUs the program has named so far (canonical order of first use),
    those a creation op named, and the state of L1's VMX protocol per vCPU."""

    vms: list[str] = field(default_factory=list)
    vcpus: list[str] = field(default_factory=list)
    made: set[str] = field(default_factory=set)
    l1: dict[str, str] = field(default_factory=dict)

    def _existing(self, pool: list[str]) -> list[str]:
        """Names to reuse: the created ones first (in canonical order), then the rest."""
        return sorted(pool, key=lambda n: (n not in self.made, pool.index(n)))

    def decode(
        self, b: int, pool: list[str], names: tuple[str, ...], fresh: range, make: bool
    ) -> str:
        if len(pool) < len(names) and (not pool or b % 8 in fresh):
            name = names[len(pool)]
            pool.append(name)
        else:
            name = self._existing(pool)[(b // 8) % len(pool)]
        if make:
            self.made.add(name)
        return name

    def encode(
        self, name: str, pool: list[str], names: tuple[str, ...], fresh: range, make: bool
    ) -> int:
        if name in pool:
            b = 8 * self._existing(pool).index(name) + next(i for i in range(8) if i not in fresh)
        elif name == names[len(pool)]:
            pool.append(name)
            b = fresh[0]
        else:
            raise Unencodable(f"name {name!r} is not canonical")
        if make:
            self.made.add(name)
        return b

    def step(self, vcpu: str, kind: str) -> None:
        """L1's protocol state after ``kind`` (anything off-protocol keeps it)."""
        state = self.l1.get(vcpu, "off")
        self.l1[vcpu] = L1_AFTER.get((state, kind), state)

    def kinds(self, nested: bool) -> Weighted[str]:
        return kinds(
            nested, any(n in self.made for n in self.vms), any(n in self.made for n in self.vcpus)
        )


def _where(b: int, cpus: int, first: bool) -> tuple[int, bool]:
    """A placement byte: the CPU, and parallel (a quarter of the values; never for the
    first op)."""
    return (b & 63) % cpus, b >= 192 and not first


def _op(r: Reader, kind: str, cpus: int, first: bool, names: _Names) -> Op | None:
    """The rest of one op after its kind byte (None: not on this machine)."""
    cpu, parallel = _where(r.byte(), cpus, first)
    need = OPS.get(kind, ("vcpu",))
    vm = vcpu = target = None
    if "vm" in need:
        make = kind == "create_vm"
        vm = names.decode(r.byte(), names.vms, VMS, FRESH_CREATE if make else FRESH_USE, make)
    if "vcpu" in need:
        make = kind == "create_vcpu"
        vcpu = names.decode(r.byte(), names.vcpus, VCPUS, FRESH_CREATE if make else FRESH_USE, make)
    if kind == L1_STEP:
        assert vcpu is not None
        options = L1_NEXT[names.l1.get(vcpu, "off")]
        kind = options[r.byte() % len(options)]
    if kind in NESTED_OPS:
        assert vcpu is not None
        names.step(vcpu, kind)
    if "target" in need:
        target = r.number(0, cpus - 1)
        if cpus < 2:
            return None
        if target == cpu:
            cpu = (target + 1) % cpus
    return Op(kind, cpu, parallel, vm=vm, vcpu=vcpu, target=target)


_TARGETS: dict[tuple[object, ...], NmiTargets] = {}
_REACHED: dict[tuple[object, ...], dict[str, int]] = {}


def _reached(sc: Scenario) -> dict[str, int]:
    """The fallible sites a fault-free run of ``sc`` (no NMIs) checks on reference, and
    how often (the strategies' ``_reached_sites``); cached like the NMI pools."""
    key = (sc.ops, repr(sc.config), sc.schedule)
    if key not in _REACHED:
        if len(_REACHED) >= 512:
            del _REACHED[next(iter(_REACHED))]
        plain = replace(sc, faults=(), nmis=())
        _REACHED[key] = {s: n for s, n in _reached_sites(plain, "reference").items() if n}
    return _REACHED[key]


def _nmi_targets(sc: Scenario) -> NmiTargets:
    """The NMI pools of one scenario without NMIs (two recorded runs).  Cached: most of
    libFuzzer's mutations change the NMI or schedule bytes of an input it has run, so
    the same base comes back (the pools depend on nothing else)."""
    key = (sc.ops, repr(sc.config), sc.schedule, sc.faults)
    if key not in _TARGETS:
        if len(_TARGETS) >= 512:
            del _TARGETS[next(iter(_TARGETS))]  # the oldest
        _TARGETS[key] = NmiTargets.of(sc, ("reference", "patched"))
    return _TARGETS[key]


def decode(data: bytes) -> Scenario:
    """The scenario a byte string stands for.  Total: never raises."""
    r = Reader(bytes(data))
    cpus = r.pick(CPUS)
    nested = r.pick(COIN)
    config = Config(cpus=cpus, nested=nested)
    if r.pick(RARELY):
        flags, bios, offline = r.byte(), r.byte(), r.byte()
        t = r.byte() if flags & 16 else 0
        config = replace(
            config,
            panic_timeout=t - 256 if t > 127 else t,
            kexec_loaded=not flags & 2,
            shadow_vmcs=not flags & 4,
            ept=not flags & 8,
            bios_disabled=tuple(c for c in range(cpus) if bios >> c & 1),
            offline=tuple(c for c in range(1, cpus) if offline >> c & 1),
        )
    config = replace(config, weak_memory=r.pick(RARELY) and cpus > 1)
    pct = None
    if r.pick(SCHEDULE_MODE) == "pct":
        depth = r.number(1, 3)
        orders = list(permutations(range(cpus)))
        pct = Pct(orders[r.byte() % len(orders)], tuple(r.byte() for _ in range(depth - 1)))

    names = _Names()
    ops: list[Op] = []
    prefix = r.pick(PREFIX)
    if prefix & 1:
        ops.append(Op("module_load"))
    if prefix & 2:
        ops.append(Op("create_vm", vm=names.decode(0, names.vms, VMS, FRESH_CREATE, True)))
    for _ in range(r.pick(BODY)):
        op = _op(r, r.pick(names.kinds(nested)), cpus, not ops, names)
        if op is not None:
            ops.append(op)
    terminal = r.pick(TERMINAL)
    where = r.byte() if terminal is not None else 0
    if terminal is not None:
        cpu, parallel = _where(where, cpus, not ops)
        ops.append(Op(terminal, cpu, parallel))

    raw_faults = [
        (r.pick(FAULT_AT), r.byte(), r.byte(), r.byte(), r.byte()) for _ in range(r.pick(FAULTS))
    ]

    raw_nmis: list[tuple[str, str, tuple[int, ...]]] = []
    for _ in range(r.pick(NMIS)):
        kind = r.pick(NMI_KIND)
        pool = r.pick(NMI_POOL)
        if pool == "raw":
            raw_nmis.append(
                (pool, kind, (r.big(len(labels())), r.number(0, cpus - 1), r.number(1, 4)))
            )
        else:
            raw_nmis.append((pool, kind, (r.byte(), r.byte())))

    schedule = _schedule(r.left, cpus, config.weak_memory) if pct is None else ()
    base = Scenario(tuple(ops), config, schedule)
    if pct is not None:
        base = replace(base, schedule=pct_schedule(base, "reference", pct))
    reached = _reached(base) if any(f[0] == "reached" for f in raw_faults) else {}
    hit = sorted(reached)
    faults = []
    for at, site_b, nth_b, kind_b, where_b in raw_faults:
        if at == "reached" and hit:
            site = hit[site_b % len(hit)]
            nth = 1 + nth_b % min(reached[site], 4)
        else:
            site, nth = SITE_NAMES[site_b % len(SITE_NAMES)], 1 + nth_b % 4
        site_kinds = SITES[site][0]
        kind = site_kinds[kind_b % len(site_kinds)]
        on = None if where_b < 128 else (where_b - 128) % cpus
        faults.append(FaultSpec(site, nth, on, kind))
    base = replace(base, faults=tuple(faults))
    nmis: list[NmiSpec] = []
    targets = _nmi_targets(base) if any(p != "raw" for p, _, _ in raw_nmis) else None
    for pool, kind, args in raw_nmis:
        if pool == "raw":
            label_i, cpu, nth = args
            nmis.append(NmiSpec(cpu, labels()[label_i], nth, kind))
            continue
        assert targets is not None
        points = targets.pool(pool)
        if points:
            cpu, label, nth = points[-1 - (args[0] * 256 + args[1]) % len(points)]
            nmis.append(NmiSpec(cpu, label, nth, kind))
    return replace(base, nmis=tuple(nmis))


def _schedule(data: bytes, cpus: int, weak: bool) -> tuple[int | str, ...]:
    """The run bytes (and, with weak memory, entry bytes) at the end of the input."""
    out: list[int | str] = []
    step = 2 if weak else 1
    for i in range(0, min(len(data), MAX_RUNS * step), step):
        b = data[i]
        n = b & 63 if weak else (b & 63) + 1
        out += [(b >> 6) % cpus] * n
        if weak and i + 1 < len(data) and data[i + 1] >= 64:
            out.append(_entry(data[i + 1], cpus))
    return tuple(out)


def _entry(b: int, cpus: int) -> str:
    """A store-buffer entry byte (>= 64): 64..127 ``sbC``, 128..191 ``sbC.I`` with
    I = 1 + (b - 128) // 4, 192.. ``lateC``."""
    if b < 128:
        return f"sb{(b - 64) % cpus}"
    if b < 192:
        return f"sb{(b - 128) % 4 % cpus}.{(b - 128) // 4 + 1}"
    return f"late{(b - 192) % cpus}"


def _entry_byte(e: str) -> int:
    """The byte :func:`_entry` decodes to ``e`` (CPUs are < 4 in the layout)."""
    m = re.fullmatch(r"sb(\d)", e) or re.fullmatch(r"late(\d)", e)
    if m is not None:
        return (64 if e.startswith("sb") else 192) + int(m.group(1))
    m = re.fullmatch(r"sb(\d)\.(\d+)", e)
    if m is None or not 1 <= int(m.group(2)) <= 16:
        raise Unencodable(f"schedule entry {e!r} is outside the byte layout")
    return 128 + (int(m.group(2)) - 1) * 4 + int(m.group(1))


def _schedule_bytes(schedule: Sequence[object], weak: bool) -> list[int]:
    """Run bytes :func:`_schedule` decodes back to ``schedule``."""
    out: list[int] = []
    i, longest = 0, 63 if weak else 64
    while i < len(schedule):
        e = schedule[i]
        if not weak or isinstance(e, int):
            if not isinstance(e, int):
                raise Unencodable(f"schedule entry {e!r} needs weak memory")
            n = 1
            while n < longest and i + n < len(schedule) and schedule[i + n] == e:
                n += 1
            out.append(e << 6 | (n - 1 if not weak else n))
            i += n
        else:
            out.append(0)  # a run of no points: a store-buffer entry right after another
        if weak:
            nxt = schedule[i] if i < len(schedule) else None
            if isinstance(nxt, str):
                out.append(_entry_byte(nxt))
                i += 1
            else:
                out.append(0)
    if len(out) > MAX_RUNS * (2 if weak else 1):
        raise Unencodable("schedule has more runs than the byte layout holds")
    if weak:
        while out[-2:] == [0, 0]:
            del out[-2:]  # a trailing empty run
    return out


class Unencodable(ValueError):
    """A scenario uses something the byte layout cannot express."""


def canonical(sc: Scenario) -> Scenario:
    """Rename VMs and vCPUs to the decoder's names, in order of first use, and spell
    out default fault kinds."""
    vms: dict[str, str] = {}
    vcpus: dict[str, str] = {}
    ops = []
    for o in sc.ops:
        vm = vms.setdefault(o.vm, VMS[min(len(vms), len(VMS) - 1)]) if o.vm else None
        vc = vcpus.setdefault(o.vcpu, VCPUS[min(len(vcpus), len(VCPUS) - 1)]) if o.vcpu else None
        ops.append(replace(o, vm=vm, vcpu=vc))
    faults = tuple(replace(f, kind=f.kind or SITES[f.site][0][0]) for f in sc.faults)
    return replace(sc, ops=tuple(ops), faults=faults, name="", description="", expect=None)


def lowered(sc: Scenario, variant: str = "reference") -> Scenario:
    """``sc`` in the byte layout's terms: an anchored schedule (format v4) becomes the
    step-indexed schedule it has on ``variant`` (:func:`vmxfuzz.anchor.lower`), so the
    decoded scenario replays to the same run on that variant; anything else as it is."""
    if not sc.anchored:
        return sc
    from vmxfuzz.anchor import lower

    return lower(sc, variant)[0]


def _op_bytes(o: Op, cpus: int, first: bool, names: _Names, nested: bool) -> list[int]:
    """The bytes :func:`_op` (after the kind byte, which comes first) decodes to ``o``."""
    if o.parallel and first:
        raise Unencodable("a first op cannot be parallel")
    kind = o.op
    table = names.kinds(nested)
    step = None
    if kind in NESTED_OPS and L1_STEP in table.options:
        assert o.vcpu is not None
        state = names.l1.get(o.vcpu, "off") if o.vcpu in names.vcpus else "off"
        if kind in L1_NEXT[state]:
            step = L1_NEXT[state].index(kind)
    out = [table.byte(L1_STEP if step is not None else kind), (192 if o.parallel else 0) | o.cpu]
    if o.vm is not None:
        make = kind == "create_vm"
        out.append(names.encode(o.vm, names.vms, VMS, FRESH_CREATE if make else FRESH_USE, make))
    if o.vcpu is not None:
        make = kind == "create_vcpu"
        fresh = FRESH_CREATE if make else FRESH_USE
        out.append(names.encode(o.vcpu, names.vcpus, VCPUS, fresh, make))
    if step is not None:
        out.append(step)
    if kind in NESTED_OPS:
        assert o.vcpu is not None
        names.step(o.vcpu, kind)
    if o.target is not None:
        out.append(o.target)
    return out


def encode(sc: Scenario, variant: str = "reference") -> bytes:
    """Bytes that :func:`decode` turns into ``canonical(lowered(sc, variant))``.

    ``variant`` matters only for an anchored scenario: the byte layout holds step
    indices, so it is encoded as the schedule it has on that variant (the first of
    the pair a campaign anchors on; the harness' differential re-anchors the decoded
    scenario on that same first variant)."""
    sc = canonical(lowered(sc, variant))
    c = sc.config
    if c.cpus > 4 or c.cr4_mismatch or c.vmx_caps_mismatch or c.no_vmx:
        raise Unencodable("config outside the byte layout (cpus > 4 or mismatch lists)")
    if sc.preempts:
        raise Unencodable("preemptions (format v3) are not in the byte layout")
    if len(sc.faults) > MAX_FAULTS or len(sc.nmis) > MAX_NMIS:
        raise Unencodable("too many faults or NMIs for the byte layout")
    if c.weak_memory and c.cpus < 2:
        raise Unencodable("weak memory on one CPU is outside the byte layout")
    out = [CPUS.byte(c.cpus), COIN.byte(c.nested)]
    if not -128 <= c.panic_timeout <= 127:
        raise Unencodable("panic_timeout outside a signed byte")
    quirks = (
        not c.kexec_loaded
        or not c.shadow_vmcs
        or not c.ept
        or c.bios_disabled
        or c.offline
        or c.panic_timeout
    )
    out.append(RARELY.byte(bool(quirks)))
    if quirks:
        flags = (0 if c.kexec_loaded else 2) | (0 if c.shadow_vmcs else 4) | (0 if c.ept else 8)
        out.append(flags | (16 if c.panic_timeout else 0))
        out.append(sum(1 << x for x in c.bios_disabled))
        out.append(sum(1 << x for x in c.offline))
        if c.panic_timeout:
            out.append(c.panic_timeout & 0xFF)
    out += [RARELY.byte(c.weak_memory), SCHEDULE_MODE.byte("runs")]

    names = _Names()
    ops = list(sc.ops)
    prefix = 0
    if ops[:1] == [Op("module_load")]:
        prefix = 3 if ops[1:2] == [Op("create_vm", vm=VMS[0])] else 1
    out.append(PREFIX.byte(prefix))
    if prefix == 3:
        names.encode(VMS[0], names.vms, VMS, FRESH_CREATE, True)
    body = ops[(prefix + 1) // 2 :]
    terminal = body.pop() if body and body[-1].op in TERMINAL.options else None
    if len(body) > MAX_OPS:
        raise Unencodable("too many ops for the byte layout")
    out.append(BODY.byte(len(body)))
    done = len(ops) - len(body) - (terminal is not None)
    for i, o in enumerate(body):
        if o.target is not None and c.cpus < 2:
            raise Unencodable("a hotplug op needs two CPUs")
        out += _op_bytes(o, c.cpus, done + i == 0, names, c.nested)
    out.append(TERMINAL.byte(terminal.op if terminal is not None else None))
    if terminal is not None:
        if terminal.parallel and len(ops) == 1:
            raise Unencodable("a first op cannot be parallel")
        out.append((192 if terminal.parallel else 0) | terminal.cpu)

    out.append(FAULTS.byte(len(sc.faults)))
    reached = _reached(replace(sc, nmis=(), faults=())) if sc.faults else {}
    hit = sorted(reached)
    for f in sc.faults:
        if not 1 <= f.nth <= 4:
            raise Unencodable("faults are encoded with nth 1..4")
        site_kinds = SITES[f.site][0]
        where = 0 if f.cpu is None else 128 + f.cpu
        if f.site in reached and f.nth <= min(reached[f.site], 4):
            out += [FAULT_AT.byte("reached"), hit.index(f.site)]
        else:
            out += [FAULT_AT.byte("any"), SITE_NAMES.index(f.site)]
        out += [
            f.nth - 1,
            site_kinds.index(f.kind or site_kinds[0]),
            where,
        ]

    out.append(NMIS.byte(len(sc.nmis)))
    targets = _nmi_targets(replace(sc, nmis=())) if sc.nmis else None
    for m in sc.nmis:
        assert targets is not None
        out.append(NMI_KIND.byte(m.kind))
        point = (m.cpu, m.before, m.nth)
        pool = next((p for p in NMI_POOL.options[:-1] if point in targets.pool(p)), None)
        if pool is not None:
            pts = targets.pool(pool)
            i = len(pts) - 1 - pts.index(point)
            out += [NMI_POOL.byte(pool), i // 256, i % 256]
        else:
            if not 1 <= m.nth <= 4:
                raise Unencodable("raw NMIs are encoded with nth 1..4")
            i = labels().index(m.before)
            out += [NMI_POOL.byte("raw"), i // 256, i % 256, m.cpu, m.nth - 1]
    out += _schedule_bytes(sc.schedule, c.weak_memory)
    return bytes(out)
