"""Bytes <-> scenarios: a total decoder and an exact encoder.

Every byte string decodes to a valid scenario and decoding never raises (libFuzzer
may hand the harness any bytes, including truncated or corrupt corpus files).  Each
choice consumes one byte from the front (``value = lo + byte % (hi - lo + 1)``); an
exhausted input reads as zero bytes.  That layout is what makes :func:`encode` exact:
the shipped examples and every reproducer can be turned into corpus entries that
decode back to the same scenario (up to renaming VMs and vCPUs), so the seed corpus
and ``vmxfuzz replay <artifact>`` agree with JSON scenarios.  It is deliberately not
``atheris.FuzzedDataProvider``: that consumes integers from the end of the buffer in a
layout we could not invert, and artifacts must decode the same where atheris is not
installed.

Layout (version 2): ``cpus-1, flags, bios_disabled mask, offline mask, prefix,
nops, 6 bytes per op, nfaults, 4 bytes per fault, nsched, 1 byte per entry, nnmis,
then per NMI a mode byte, a kind byte and two index bytes (plus cpu and nth for a
raw NMI), then an extension byte``.  An NMI is the i-th step both variants execute
(mode 0), a raw ``(cpu, label index, nth)`` (mode 1), or the i-th step of the
windows a first run shows (mode 2: :mod:`vmxfuzz.engines.windows`).  The extension
byte (version 2) switches on weak memory (bit 0: schedule bytes 64.. are then
store-buffer entries ``sbC``, ``sbC.I``, ``lateC``, so format v3 round-trips) and a
PCT schedule (bit 1: a depth byte, a priority-order byte and ``depth - 1``
change-point bytes follow; the schedule bytes are then ignored and the scenario
carries the schedule PCT chose, :mod:`vmxfuzz.engines.pct`).  A version 1 input
reads a zero extension byte (an exhausted input reads as zeros), so it decodes as
before.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from functools import cache
from itertools import permutations

from vmxfuzz.engines.pct import Pct, pct_schedule
from vmxfuzz.engines.windows import NmiTargets
from vmxfuzz.kernel.state import Config
from vmxfuzz.labels import known_labels
from vmxfuzz.machine.faults import SITES, FaultSpec
from vmxfuzz.scenario import OPS, Op, Scenario
from vmxfuzz.sched import NmiSpec

KINDS: tuple[str, ...] = tuple(sorted(OPS))
VMS = ("vm0", "vm1")
VCPUS = ("v0", "v1", "v2", "v3")
SITE_NAMES = tuple(sorted(SITES))
NMI_KINDS = ("panic", "benign")
# MAX_SCHED is what one count byte holds (64 in layout v1: the same bytes decode alike).
MAX_OPS, MAX_FAULTS, MAX_SCHED, MAX_NMIS = 12, 2, 255, 2


@cache
def labels() -> tuple[str, ...]:
    return tuple(sorted(known_labels()))


@dataclass
class Reader:
    data: bytes
    pos: int = 0

    def number(self, lo: int, hi: int) -> int:
        """One byte, always (even for a one-value range), so the layout is fixed."""
        b = self.data[self.pos] if self.pos < len(self.data) else 0
        self.pos += 1
        return lo + b % (hi - lo + 1) if hi > lo else lo

    def big(self, n: int) -> int:
        """An index in ``range(n)`` from two bytes (n may exceed 256)."""
        hi, lo = self.number(0, 255), self.number(0, 255)
        return (hi * 256 + lo) % n if n else 0


def _nmi_targets(sc: Scenario) -> NmiTargets:
    return NmiTargets.of(sc, ("reference", "patched"))


def _nmi_points(sc: Scenario) -> list[tuple[int, str, int]]:
    return _nmi_targets(sc).all


def decode(data: bytes) -> Scenario:
    """The scenario a byte string stands for.  Total: never raises."""
    r = Reader(bytes(data))
    cpus = r.number(1, 4)
    flags = r.number(0, 255)
    bios = r.number(0, 255)
    offline = r.number(0, 255)
    config = Config(
        cpus=cpus,
        nested=bool(flags & 1),
        kexec_loaded=not flags & 2,
        shadow_vmcs=not flags & 4,
        ept=not flags & 8,
        bios_disabled=tuple(c for c in range(cpus) if bios >> c & 1),
        offline=tuple(c for c in range(1, cpus) if offline >> c & 1),
    )
    prefix = r.number(0, 3)
    ops: list[Op] = []
    if prefix & 1:
        ops.append(Op("module_load"))
    if prefix & 2:
        ops.append(Op("create_vm", vm="vm0"))
    for _ in range(r.number(0, MAX_OPS)):
        kind = KINDS[r.number(0, len(KINDS) - 1)]
        cpu = r.number(0, cpus - 1)
        parallel = r.number(0, 1) == 1 and bool(ops)
        vm = VMS[r.number(0, len(VMS) - 1)]
        vcpu = VCPUS[r.number(0, len(VCPUS) - 1)]
        target = r.number(0, cpus - 1)
        need = OPS[kind]
        if "target" in need:
            if cpus < 2:
                continue
            if target == cpu:
                cpu = (target + 1) % cpus
        ops.append(
            Op(
                kind,
                cpu,
                parallel,
                vm=vm if "vm" in need else None,
                vcpu=vcpu if "vcpu" in need else None,
                target=target if "target" in need else None,
            )
        )
    faults = []
    for _ in range(r.number(0, MAX_FAULTS)):
        site = SITE_NAMES[r.number(0, len(SITE_NAMES) - 1)]
        nth = r.number(1, 4)
        kinds = SITES[site][0]
        kind = kinds[r.number(0, len(kinds) - 1)]
        where = r.number(0, cpus)  # 0: any CPU, else CPU where-1
        faults.append(FaultSpec(site, nth, where - 1 if where else None, kind))
    raw_schedule = [r.number(0, 255) for _ in range(r.number(0, MAX_SCHED))]
    raw_nmis: list[tuple[int, str, tuple[int, ...]]] = []
    for _ in range(r.number(0, MAX_NMIS)):
        mode = r.number(0, 2)
        kind = NMI_KINDS[r.number(0, 1)]
        if mode == 1:
            raw_nmis.append(
                (mode, kind, (r.big(len(labels())), r.number(0, cpus - 1), r.number(1, 4)))
            )
        else:
            raw_nmis.append((mode, kind, (r.number(0, 255), r.number(0, 255))))
    ext = r.number(0, 255)  # layout v2: bit 0 weak memory, bit 1 a PCT schedule
    config = replace(config, weak_memory=bool(ext & 1) and cpus > 1)
    pct = None
    if ext & 2:
        depth = r.number(1, 3)
        orders = list(permutations(range(cpus)))
        pct = Pct(
            orders[r.number(0, 255) % len(orders)],
            tuple(r.number(0, 255) for _ in range(depth - 1)),
        )
    schedule = tuple(_entry(b, cpus, config.weak_memory) for b in raw_schedule)
    base = Scenario(tuple(ops), config, schedule, (), tuple(faults))
    if pct is not None:
        base = replace(base, schedule=pct_schedule(base, "reference", pct))
    nmis: list[NmiSpec] = []
    targets = _nmi_targets(base) if any(m != 1 for m, _, _ in raw_nmis) else None
    for mode, kind, args in raw_nmis:
        if mode == 1:
            label_i, cpu, nth = args
            nmis.append(NmiSpec(cpu, labels()[label_i], nth, kind))
            continue
        assert targets is not None
        points = targets.all if mode == 0 else targets.pool("window")
        if points:
            cpu, label, nth = points[(args[0] * 256 + args[1]) % len(points)]
            nmis.append(NmiSpec(cpu, label, nth, kind))
    return replace(base, nmis=tuple(nmis))


def _entry(b: int, cpus: int, weak: bool) -> int | str:
    """A schedule byte: a CPU, or with weak memory also a store-buffer entry
    (64..127 ``sbC``, 128..191 ``sbC.I`` with I = 1 + (b - 128) // 4, 192.. ``lateC``)."""
    if not weak or b < 64:
        return b % cpus
    if b < 128:
        return f"sb{(b - 64) % cpus}"
    if b < 192:
        return f"sb{(b - 128) % 4 % cpus}.{(b - 128) // 4 + 1}"
    return f"late{(b - 192) % cpus}"


def _entry_byte(e: object) -> int:
    """The byte :func:`_entry` decodes to ``e`` (CPUs are < 4 in the layout)."""
    if isinstance(e, int):
        return e
    if not isinstance(e, str):
        raise Unencodable(f"schedule entry {e!r} is outside the byte layout")
    m = re.fullmatch(r"sb(\d)", e) or re.fullmatch(r"late(\d)", e)
    if m is not None:
        return (64 if e.startswith("sb") else 192) + int(m.group(1))
    m = re.fullmatch(r"sb(\d)\.(\d+)", e)
    if m is None or not 1 <= int(m.group(2)) <= 16:
        raise Unencodable(f"schedule entry {e!r} is outside the byte layout")
    return 128 + (int(m.group(2)) - 1) * 4 + int(m.group(1))


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
    if len(sc.ops) > MAX_OPS or len(sc.faults) > MAX_FAULTS or len(sc.nmis) > MAX_NMIS:
        raise Unencodable("too many ops, faults or NMIs for the byte layout")
    if len(sc.schedule) > MAX_SCHED:
        raise Unencodable("schedule longer than the byte layout allows")
    out = [c.cpus - 1]
    out.append(
        (1 if c.nested else 0)
        | (0 if c.kexec_loaded else 2)
        | (0 if c.shadow_vmcs else 4)
        | (0 if c.ept else 8)
    )
    out.append(sum(1 << x for x in c.bios_disabled))
    out.append(sum(1 << x for x in c.offline))
    out.append(0)  # no implicit prefix: every op is explicit
    out.append(len(sc.ops))
    for i, o in enumerate(sc.ops):
        if o.parallel and i == 0:
            raise Unencodable("a first op cannot be parallel")
        out += [
            KINDS.index(o.op),
            o.cpu,
            1 if o.parallel else 0,
            VMS.index(o.vm) if o.vm else 0,
            VCPUS.index(o.vcpu) if o.vcpu else 0,
            o.target if o.target is not None else 0,
        ]
    out.append(len(sc.faults))
    for f in sc.faults:
        if not 1 <= f.nth <= 4:
            raise Unencodable("faults are encoded with nth 1..4")
        kinds = SITES[f.site][0]
        where = 0 if f.cpu is None else f.cpu + 1
        out += [SITE_NAMES.index(f.site), f.nth - 1, kinds.index(f.kind or kinds[0]), where]
    out.append(len(sc.schedule))
    out += [_entry_byte(e) for e in sc.schedule]
    out.append(len(sc.nmis))
    points = _nmi_points(replace(sc, nmis=())) if sc.nmis else []
    for m in sc.nmis:
        kind = NMI_KINDS.index(m.kind)
        key = (m.cpu, m.before, m.nth)
        if key in points:
            i = points.index(key)
            out += [0, kind, i // 256, i % 256]
        else:
            if not 1 <= m.nth <= 4:
                raise Unencodable("raw NMIs are encoded with nth 1..4")
            i = labels().index(m.before)
            out += [1, kind, i // 256, i % 256, m.cpu, m.nth - 1]
    if c.weak_memory:
        out.append(1)  # the extension byte; without it (0) layout v1 files decode as before
    return bytes(out)
