"""Scenario x {reference, patched} -> classified findings (spec section 9).

Classes are by cause (vmxfuzz/causes.py): ``fixed``: reference violates an invariant
with a cause patched does not show; ``regression``: the reverse; ``shared``: both
violate it with the same cause; a consequence (a hang behind a task an oops killed)
is folded under the finding it follows from; ``behaviour``: no violation differs but the
observable results (op return values, how the run ended) do.  Intended differences
are reported like any other, with an explanation built from both runs.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from .executor import Result, run
from .oracle import Violation
from .scenario import Scenario

CLASSES = ("fixed", "regression", "shared", "behaviour")


Pair = tuple[tuple[str, str | None], ...]  # (variant name, site) for each variant
# (variant name, cause, site) of each variant's violation of the invariant, if any
Causes = tuple[tuple[str, str | None, str | None], ...]


@dataclass(frozen=True)
class Finding:
    """One finding: a (class, invariant, cause).  ``site`` is where the misbehaving
    variant's CPU was interrupted (the first variant's, for ``shared``); ``sites`` gives
    each variant's site of this cause (``None``: not this cause there) and is the
    finding's *window* (one cause has many windows); ``causes`` gives each variant's
    cause and site for the invariant, whatever the cause."""

    cls: str
    invariant: str | None
    variant: str  # which variant misbehaved: reference | patched | both
    site: str
    explanation: str
    cause: str = ""
    cause_text: str = ""
    sites: Pair = ()
    causes: Causes = ()
    consequences: tuple[str, ...] = ()  # later violations this one caused

    @property
    def key(self) -> tuple[str, str, str]:
        """Deduplication key: class, invariant and cause."""
        return (self.cls, self.invariant or "-", self.cause)

    @property
    def window(self) -> tuple[str | None, ...]:
        return tuple(s for _, s in self.sites)

    def to_json(self) -> dict[str, Any]:
        return {
            "key": key_text(self.key),
            "class": self.cls,
            "invariant": self.invariant,
            "variant": self.variant,
            "site": self.site,
            "cause": self.cause,
            "cause_text": self.cause_text,
            "explanation": self.explanation,
            "variants": {n: {"cause": c, "site": s} for n, c, s in self.causes},
            "windows": [{"sites": dict(self.sites), "reproducer": None}],
            "consequences": list(self.consequences),
        }


def key_text(key: tuple[str, ...]) -> str:
    """A finding key as one string (``summary.json``, ``--json``): ``class invariant cause``."""
    return " ".join(key)


def roots(r: Result) -> tuple[list[Violation], dict[str, list[str]]]:
    """A run's violations that are not consequences of another one in the same run,
    and, per cause, the consequences folded under it (``invariant cause at site``)."""
    present = {v.cause for v in r.violations}
    out: list[Violation] = []
    folded: dict[str, list[str]] = {}
    for v in r.violations:
        if v.consequence_of and v.consequence_of in present and v.consequence_of != v.cause:
            note = f"{v.invariant} {v.cause} at {v.site}"
            if note not in folded.setdefault(v.consequence_of, []):
                folded[v.consequence_of].append(note)
        else:
            out.append(v)
    return out, folded


def _by_cause(vs: list[Violation]) -> dict[tuple[str, str], Violation]:
    """The first violation of each (invariant, cause)."""
    out: dict[tuple[str, str], Violation] = {}
    for v in vs:
        out.setdefault((v.invariant, v.cause), v)
    return out


def _of_invariant(vs: dict[tuple[str, str], Violation], inv: str) -> Violation | None:
    return next((v for (i, _), v in vs.items() if i == inv), None)


def _ops(r: Result, op_names: list[str] | None) -> str:
    """A run's op results as a reader writes them: ``create_vm=0, run_vcpu=-EFAULT``."""
    names = op_names or []
    return ", ".join(
        f"{names[i] if i < len(names) else f'op {i}'}={res}" for i, res in enumerate(r.op_results)
    )


def _injection_note(ref: Result, pat: Result, names: tuple[str, str]) -> str:
    """Say when an NMI or fault fired in one variant only (its point exists there only)."""
    notes = []
    for what, a, b in (
        ("NMI", ref.nmis_fired, pat.nmis_fired),
        ("fault", ref.faults_fired, pat.faults_fired),
    ):
        for i in sorted(set(a) ^ set(b)):
            where = names[0] if i in a else names[1]
            notes.append(f"{what} #{i} fired only in {where}")
    return f" [{'; '.join(notes)}]" if notes else ""


def classify(
    ref: Result,
    pat: Result,
    op_names: list[str] | None = None,
    names: tuple[str, str] = ("reference", "patched"),
) -> list[Finding]:
    """Classify one scenario's two results by (invariant, cause); ``op_names`` labels
    behaviour sites and ``names`` are the two variants (the first plays the
    reference's part).  Same invariant with different causes is two findings: what
    the second variant fixed, and what it introduced."""
    rn, pn = names
    note = _injection_note(ref, pat, names)
    rroots, rfold = roots(ref)
    proots, pfold = roots(pat)
    rby, pby = _by_cause(rroots), _by_cause(proots)
    out: list[Finding] = []
    for inv, cause in sorted(rby.keys() | pby.keys()):
        in_ref, in_pat = (inv, cause) in rby, (inv, cause) in pby
        # Each variant's violation of this cause, else of this invariant (another cause).
        a = rby.get((inv, cause)) or _of_invariant(rby, inv)
        b = pby.get((inv, cause)) or _of_invariant(pby, inv)
        sites = ((rn, a.site if in_ref and a else None), (pn, b.site if in_pat and b else None))
        causes = tuple(
            (n, x.cause if x else None, x.site if x else None) for n, x in ((rn, a), (pn, b))
        )
        cons = tuple(dict.fromkeys([*rfold.get(cause, []), *pfold.get(cause, [])]))
        if in_ref and in_pat:
            assert a is not None and b is not None
            cls, variant, site, text = "shared", "both", a.site, a.cause_text
            expl = f"{rn}: {a.detail}; {pn}: {b.detail}" + (
                "" if a.site == b.site else f" ({pn} site {b.site})"
            )
        elif in_ref:
            assert a is not None
            cls, variant, site, text = "fixed", rn, a.site, a.cause_text
            other = f"{inv} of another cause ({b.cause})" if b else f"no {inv}"
            expl = (
                f"{rn}: {a.detail}; {pn}: {other} (ops: {_ops(pat, op_names)}; ended: {pat.ended})"
            )
        else:
            assert b is not None
            cls, variant, site, text = "regression", pn, b.site, b.cause_text
            other = f"{inv} of another cause ({a.cause})" if a else f"no {inv}"
            expl = (
                f"{pn}: {b.detail}; {rn}: {other} (ops: {_ops(ref, op_names)}; ended: {ref.ended})"
            )
        out.append(Finding(cls, inv, variant, site, expl, cause, text, sites, causes, cons))
    if not out and ref.observable() != pat.observable():
        diffs = []
        site = ""
        for i, (x, y) in enumerate(zip(ref.op_results, pat.op_results, strict=False)):
            if x != y:
                name = op_names[i] if op_names and i < len(op_names) else f"op {i}"
                diffs.append(f"op {i} ({name}): {rn} {x}, {pn} {y}")
                site = site or f"{name}:{x}->{y}"
        if ref.ended != pat.ended:
            diffs.append(f"run ended: {rn} {ref.ended!r}, {pn} {pat.ended!r}")
            site = site or f"ended:{ref.ended}->{pat.ended}"
        text = "the observable results differ: " + "; ".join(diffs)
        pair = ((rn, site), (pn, site))
        out.append(
            Finding(
                "behaviour", None, "both", site, "; ".join(diffs), f"behaviour/{site}", text, pair
            )
        )
    return [replace(f, explanation=f.explanation + note) for f in out]


@dataclass
class Differential:
    reference: Result
    patched: Result
    findings: list[Finding]

    def to_json(self, trace: bool = False) -> dict[str, Any]:
        return {
            "reference": self.reference.to_json(trace),
            "patched": self.patched.to_json(trace),
            "findings": [f.to_json() for f in self.findings],
        }


def run_both(
    scenario: Scenario,
    keep_trace: bool = True,
    pair: tuple[str, str] = ("reference", "patched"),
) -> Differential:
    """Run both variants of ``pair`` (default: reference, patched) and classify.

    Both run the scenario's anchored meaning (:func:`vmxfuzz.anchor.anchor`: the
    first variant's run, its schedule written down as runs between anchors)."""
    from .anchor import anchor

    scenario, ref = anchor(scenario, pair[0], keep_trace=keep_trace)
    pat = run(scenario, pair[1], keep_trace=keep_trace)
    return Differential(ref, pat, classify(ref, pat, [o.op for o in scenario.ops], pair))
