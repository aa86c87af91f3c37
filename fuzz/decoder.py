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

Layout (version 1): ``cpus-1, flags, bios_disabled mask, offline mask, prefix,
nops, 6 bytes per op, nfaults, 4 bytes per fault, nsched, 1 byte per entry, nnmis,
then per NMI a mode byte, a kind byte and two index bytes (plus cpu and nth for a
raw NMI)``.  An NMI is either the i-th step both variants execute (mode 0,
two index bytes) or a raw ``(cpu, label index, nth)`` (mode 1).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import cache

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
MAX_OPS, MAX_FAULTS, MAX_SCHED, MAX_NMIS = 12, 2, 64, 2


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


def _nmi_points(sc: Scenario) -> list[tuple[int, str, int]]:
    from vmxfuzz.engines.strategies import nmi_points

    return nmi_points(sc, ("reference", "patched"))


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
    schedule = tuple(r.number(0, cpus - 1) for _ in range(r.number(0, MAX_SCHED)))
    base = Scenario(tuple(ops), config, schedule, (), tuple(faults))
    nmis: list[NmiSpec] = []
    n = r.number(0, MAX_NMIS)
    points = _nmi_points(base) if n else []
    for _ in range(n):
        mode = r.number(0, 1)
        kind = NMI_KINDS[r.number(0, 1)]
        if mode == 0:
            i = r.big(len(points))
            if points:
                cpu, label, nth = points[i]
                nmis.append(NmiSpec(cpu, label, nth, kind))
        else:
            label = labels()[r.big(len(labels()))]
            nmis.append(NmiSpec(r.number(0, cpus - 1), label, r.number(1, 4), kind))
    return replace(base, nmis=tuple(nmis))


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


def encode(sc: Scenario) -> bytes:
    """Bytes that :func:`decode` turns into ``canonical(sc)``."""
    sc = canonical(sc)
    c = sc.config
    if c.cpus > 4 or c.cr4_mismatch or c.vmx_caps_mismatch or c.no_vmx:
        raise Unencodable("config outside the byte layout (cpus > 4 or mismatch lists)")
    if c.weak_memory:
        raise Unencodable("weak-memory scenarios (format v3) are not in the byte layout")
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
    out += [int(e) for e in sc.schedule]  # ints only: weak memory was refused above
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
    return bytes(out)
