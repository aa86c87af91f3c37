"""Engine-agnostic campaign bookkeeping: judge scenarios, deduplicate findings,
minimise each new one, and write reproducers and ``summary.json`` as they arrive.

A finding is identified by (class, invariant, site); for a single-variant campaign
the class is ``violation``.  Every write is atomic (temp file + rename), and
``summary.json`` is rewritten after each new finding, so a campaign killed at any
moment leaves a valid summary and only complete reproducers.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .anchor import anchor
from .atomic import write_text_atomic
from .confirm import DEFAULT_MAX_RUNS, confirm_behaviour
from .coverage import Stats
from .differential import classify
from .executor import run
from .minimize import minimize
from .scenario import Scenario
from .variants import split_pair

Key = tuple[str, str, str]


@dataclass(frozen=True)
class Hit:
    cls: str
    invariant: str
    variant: str
    site: str
    explanation: str

    @property
    def key(self) -> Key:
        return (self.cls, self.invariant, self.site)


def judge(sc: Scenario, variant: str) -> list[Hit]:
    """Every finding one scenario shows, in the campaign's terms."""
    pair = split_pair(variant)
    if pair is not None:
        sc, ref = anchor(sc, pair[0])  # both variants run the anchored meaning
        pat = run(sc, pair[1], keep_trace=False)
        return [
            Hit(f.cls, f.invariant or "-", f.variant, f.site, f.explanation)
            for f in classify(ref, pat, [o.op for o in sc.ops], pair)
        ]
    r = run(sc, variant, keep_trace=False)
    return [Hit("violation", v.invariant, variant, v.site, v.detail) for v in r.violations]


def keys(sc: Scenario, variant: str) -> set[Key]:
    return {h.key for h in judge(sc, variant)}


def slug(key: Key) -> str:
    text = "-".join(key).lower()
    return re.sub(r"[^a-z0-9]+", "-", text).strip("-")[:80]


@dataclass
class Campaign:
    """Collects findings for one output directory."""

    out: Path
    variant: str
    engine: str = "hypothesis"
    seed: int = 0
    minimize_findings: bool = True
    started: float = field(default_factory=time.monotonic)
    examples: int = 0
    findings: dict[Key, dict[str, Any]] = field(default_factory=dict)
    # ``behaviour`` divergences the confirmation search showed to be scheduling
    # artefacts (vmxfuzz/confirm.py): counted, not reported.
    unconfirmed: dict[Key, dict[str, Any]] = field(default_factory=dict)
    confirm_runs: int = DEFAULT_MAX_RUNS
    confirm_seconds: float = 0.0
    confirm_checks: int = 0
    stats: Stats = field(default_factory=Stats)  # shapes and coverage (vmxfuzz.coverage)

    def __post_init__(self) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        self._load_existing()

    def _load_existing(self) -> None:
        """Resume: findings already in ``summary.json`` are known, not re-reported."""
        path = self.out / "summary.json"
        if not path.exists():
            return
        try:
            doc = json.loads(path.read_text())
            for f in doc.get("findings", []):
                key = (f["class"], f["invariant"], f["site"])
                self.findings[key] = f
            for f in doc.get("unconfirmed", []):
                self.unconfirmed[(f["class"], f["invariant"], f["site"])] = f
        except (OSError, ValueError, KeyError, TypeError):
            return  # a foreign or damaged summary is rewritten from what we find

    def known(self, key: Key) -> bool:
        return key in self.findings or key in self.unconfirmed

    def new_hits(self, sc: Scenario) -> list[Hit]:
        self.examples += 1
        return [h for h in judge(sc, self.variant) if not self.known(h.key)]

    def record(self, hit: Hit, sc: Scenario) -> dict[str, Any]:
        """Minimise (1-minimal), save the reproducer, update the summary."""
        if self.known(hit.key):
            return self.findings[hit.key]
        pair = split_pair(self.variant)
        if pair is not None:  # the reproducer stores the anchored form
            sc = anchor(sc, pair[0])[0]
        if self.minimize_findings:
            sc = minimize(sc, lambda c: hit.key in keys(c, self.variant))
        final = {h.key: h for h in judge(sc, self.variant)}.get(hit.key, hit)
        confirmation = self._confirm(final, sc)
        if confirmation is not None and not confirmation["confirmed"]:
            return self.unconfirmed[hit.key]
        name = f"{len(self.findings) + 1:03d}-{slug(hit.key)}.json"
        path = self.out / name
        sc = Scenario(
            sc.ops,
            sc.config,
            sc.schedule,
            sc.nmis,
            sc.faults,
            name=path.stem,
            description=f"{final.cls} {final.invariant} at {final.site}: {final.explanation}",
        )
        write_text_atomic(path, sc.dumps())
        entry: dict[str, Any] = {
            "class": final.cls,
            "invariant": final.invariant,
            "variant": final.variant,
            "site": final.site,
            "reproducer": str(path),
            "explanation": final.explanation,
            "engine": self.engine,
            "found_after_s": round(time.monotonic() - self.started, 3),
            "ops": len(sc.ops),
        }
        if confirmation is not None:
            entry["explanation"] += f" ({confirmation['statement']})"
            entry["confirmation"] = confirmation
        self.findings[hit.key] = entry
        self.write_summary()
        return entry

    def _confirm(self, hit: Hit, sc: Scenario) -> dict[str, Any] | None:
        """A ``behaviour`` hit of a pair: search the second variant's schedules for
        the first one's behaviour; an artefact is kept in ``unconfirmed``."""
        pair = split_pair(self.variant)
        if hit.cls != "behaviour" or pair is None:
            return None
        conf = confirm_behaviour(sc, pair, self.confirm_runs)
        self.confirm_checks += 1
        self.confirm_seconds += conf.seconds
        doc = conf.to_json()
        if not conf.confirmed:
            self.unconfirmed[hit.key] = {
                "class": hit.cls,
                "invariant": hit.invariant,
                "site": hit.site,
                "explanation": hit.explanation,
                "confirmation": doc,
            }
            self.write_summary()
        return doc

    def summary(self) -> dict[str, Any]:
        return {
            "engine": self.engine,
            "variant": self.variant,
            "seed": self.seed,
            "elapsed_s": round(time.monotonic() - self.started, 3),
            "examples": self.examples,
            "findings": sorted(
                self.findings.values(), key=lambda f: (f["class"], f["invariant"], f["site"])
            ),
            "unconfirmed_behaviour": len(self.unconfirmed),
            "unconfirmed": sorted(self.unconfirmed.values(), key=lambda f: f["site"]),
            "confirmation": {
                "checked": self.confirm_checks,
                "seconds": round(self.confirm_seconds, 3),
                "max_runs": self.confirm_runs,
            },
            "shapes": self.stats.shapes_json(),
            "coverage": self.stats.coverage.to_json(),
        }

    def write_summary(self) -> None:
        write_text_atomic(self.out / "summary.json", json.dumps(self.summary(), indent=2) + "\n")
