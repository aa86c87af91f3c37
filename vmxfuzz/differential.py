"""Scenario x {reference, patched} -> classified findings (spec section 9).

``fixed``: reference violates an invariant patched does not; ``regression``: the
reverse; ``shared``: both violate it; ``behaviour``: no violation differs but the
observable results (op return values, how the run ended) do.  Intended differences
are reported like any other, with an explanation built from both runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .executor import Result, run
from .scenario import Scenario

CLASSES = ("fixed", "regression", "shared", "behaviour")


@dataclass(frozen=True)
class Finding:
    cls: str
    invariant: str | None
    variant: str  # which variant misbehaved: reference | patched | both
    site: str
    explanation: str

    @property
    def key(self) -> tuple[str, str | None, str]:
        """Deduplication key: class, invariant and site."""
        return (self.cls, self.invariant, self.site)

    def to_json(self) -> dict[str, Any]:
        return {
            "class": self.cls,
            "invariant": self.invariant,
            "variant": self.variant,
            "site": self.site,
            "explanation": self.explanation,
        }


def _sites(r: Result, inv: str) -> list[str]:
    out: list[str] = []
    for v in r.violations:
        if v.invariant == inv and v.site not in out:
            out.append(v.site)
    return out


def _first(r: Result, inv: str) -> str:
    for v in r.violations:
        if v.invariant == inv:
            return v.detail
    return ""


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
    """Classify one scenario's two results; ``op_names`` labels behaviour sites and
    ``names`` are the two variants (the first plays the reference's part)."""
    rn, pn = names
    note = _injection_note(ref, pat, names)
    out: list[Finding] = []
    for inv in sorted(ref.invariants | pat.invariants):
        in_ref, in_pat = inv in ref.invariants, inv in pat.invariants
        if in_ref and in_pat:
            site = _sites(ref, inv)[0]
            psite = _sites(pat, inv)[0]
            out.append(
                Finding(
                    "shared",
                    inv,
                    "both",
                    site,
                    f"{rn}: {_first(ref, inv)}; {pn}: {_first(pat, inv)}"
                    + ("" if site == psite else f" ({pn} site {psite})"),
                )
            )
        elif in_ref:
            out.append(
                Finding(
                    "fixed",
                    inv,
                    rn,
                    _sites(ref, inv)[0],
                    f"{rn}: {_first(ref, inv)}; {pn}: no {inv} "
                    f"(ops: {_ops(pat, op_names)}; ended: {pat.ended})",
                )
            )
        else:
            out.append(
                Finding(
                    "regression",
                    inv,
                    pn,
                    _sites(pat, inv)[0],
                    f"{pn}: {_first(pat, inv)}; {rn}: no {inv} "
                    f"(ops: {_ops(ref, op_names)}; ended: {ref.ended})",
                )
            )
    if not out and ref.observable() != pat.observable():
        diffs = []
        site = ""
        for i, (a, b) in enumerate(zip(ref.op_results, pat.op_results, strict=False)):
            if a != b:
                name = op_names[i] if op_names and i < len(op_names) else f"op {i}"
                diffs.append(f"op {i} ({name}): {rn} {a}, {pn} {b}")
                site = site or f"{name}:{a}->{b}"
        if ref.ended != pat.ended:
            diffs.append(f"run ended: {rn} {ref.ended!r}, {pn} {pat.ended!r}")
            site = site or f"ended:{ref.ended}->{pat.ended}"
        out.append(Finding("behaviour", None, "both", site, "; ".join(diffs)))
    return [Finding(f.cls, f.invariant, f.variant, f.site, f.explanation + note) for f in out]


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
