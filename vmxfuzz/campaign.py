"""Engine-agnostic campaign bookkeeping: judge scenarios, deduplicate findings,
minimise each new one, and write reproducers and ``summary.json`` as they arrive.

A finding is identified by (class, invariant, cause) (vmxfuzz/causes.py); the sites
where CPUs were interrupted are its *windows*, each kept with its first reproducer.
For a single-variant campaign the class is ``violation``.  Every write is atomic
(temp file + rename), and
``summary.json`` is rewritten after each new finding, so a campaign killed at any
moment leaves a valid summary and only complete reproducers.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from .anchor import anchor
from .atomic import write_text_atomic
from .confirm import DEFAULT_MAX_RUNS, confirm_behaviour
from .coverage import Stats
from .differential import Causes, Pair, classify, key_text, roots
from .executor import run
from .minimize import minimize
from .scenario import Scenario
from .variants import split_pair

Key = tuple[str, str, str]
# A window of a finding: each variant's site of its cause, (variant, site) pairs.
Window = tuple[tuple[str, str | None], ...]


@dataclass(frozen=True)
class Hit:
    """One finding a scenario shows: (class, invariant, cause) and its window."""

    cls: str
    invariant: str
    variant: str
    site: str
    explanation: str
    cause: str = ""
    cause_text: str = ""
    sites: Pair = ()
    causes: Causes = ()
    consequences: tuple[str, ...] = ()

    @property
    def key(self) -> Key:
        return (self.cls, self.invariant, self.cause or self.site)

    @property
    def window(self) -> Window:
        return self.sites or ((self.variant, self.site),)

    @property
    def ident(self) -> tuple[Key, Window]:
        """What makes a hit new: its key, and for a known key, its window."""
        return (self.key, self.window)

    def variants_json(self) -> dict[str, Any]:
        return {n: {"cause": c, "site": s} for n, c, s in self.causes}


def judge(sc: Scenario, variant: str) -> list[Hit]:
    """Every finding one scenario shows, in the campaign's terms."""
    pair = split_pair(variant)
    if pair is not None:
        sc, ref = anchor(sc, pair[0])  # both variants run the anchored meaning
        pat = run(sc, pair[1], keep_trace=False)
        return [
            Hit(
                f.cls,
                f.invariant or "-",
                f.variant,
                f.site,
                f.explanation,
                f.cause,
                f.cause_text,
                f.sites,
                f.causes,
                f.consequences,
            )
            for f in classify(ref, pat, [o.op for o in sc.ops], pair)
        ]
    r = run(sc, variant, keep_trace=False)
    vs, folded = roots(r)
    return [
        Hit(
            "violation",
            v.invariant,
            variant,
            v.site,
            v.detail,
            v.cause,
            v.cause_text,
            ((variant, v.site),),
            ((variant, v.cause, v.site),),
            tuple(folded.get(v.cause, ())),
        )
        for v in vs
    ]


def keys(sc: Scenario, variant: str) -> set[Key]:
    return {h.key for h in judge(sc, variant)}


def idents(sc: Scenario, variant: str) -> set[tuple[Key, Window]]:
    return {h.ident for h in judge(sc, variant)}


def _window_of(w: dict[str, Any]) -> Window:
    return tuple((str(n), s) for n, s in dict(w.get("sites") or {}).items())


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
    # ``time.monotonic()`` when the run's ``--time`` ends: minimisation counts against
    # it and is cut there (the entry says ``"minimised": false``; the next run on the
    # folder finishes it, :meth:`finish_minimising`).
    deadline: float | None = None

    def __post_init__(self) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        self._load_existing()

    def _load_existing(self) -> None:
        """Resume: findings already in ``summary.json`` are known, not re-reported.
        A summary from before causes (no ``cause`` field) is read too: each finding's
        reproducer is judged again to find its cause; one that cannot be replayed is
        kept under its old site."""
        path = self.out / "summary.json"
        if not path.exists():
            return
        try:
            doc = json.loads(path.read_text())
            for f in doc.get("findings", []):
                if "cause" not in f:
                    f = self._upgrade(f)
                key = (f["class"], f["invariant"], f.get("cause") or f"site:{f['site']}")
                f.setdefault("key", key_text(key))
                f.setdefault(
                    "windows",
                    [{"sites": {f["variant"]: f["site"]}, "reproducer": f.get("reproducer")}],
                )
                self.findings[key] = f
            for f in doc.get("unconfirmed", []):
                cause = f.get("cause") or f"behaviour/{f['site']}"
                self.unconfirmed[(f["class"], f["invariant"], cause)] = f
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return  # a foreign or damaged summary is rewritten from what we find

    def _upgrade(self, f: dict[str, Any]) -> dict[str, Any]:
        """An old-format finding, with the cause its reproducer shows now."""
        from .scenario import ScenarioError, load

        try:
            sc = load(Path(f["reproducer"]))
            hits = judge(sc, self.variant)
        except (OSError, ScenarioError, KeyError, TypeError, ValueError):
            return f
        for h in hits:
            if (h.cls, h.invariant, h.site) == (f["class"], f["invariant"], f["site"]):
                win = {"sites": dict(h.window), "reproducer": f["reproducer"]}
                extra = {"cause": h.cause, "cause_text": h.cause_text, "windows": [win]}
                return {**f, **extra, "variants": h.variants_json()}
        return f

    def known(self, hit: Hit) -> bool:
        """Known: the hit's key is a finding with this window, or an artefact."""
        if hit.key in self.unconfirmed:
            return True
        entry = self.findings.get(hit.key)
        return entry is not None and hit.window in {_window_of(w) for w in entry["windows"]}

    def idents(self) -> list[Any]:
        """Every (key, window) recorded, and the keys of artefacts (workers skip these)."""
        wins = [(k, _window_of(w)) for k, e in self.findings.items() for w in e["windows"]]
        return [*wins, *self.unconfirmed]

    def new_hits(self, sc: Scenario) -> list[Hit]:
        self.examples += 1
        return [h for h in judge(sc, self.variant) if not self.known(h)]

    def record(self, hit: Hit, sc: Scenario) -> dict[str, Any]:
        """Minimise (1-minimal), save the reproducer, update the summary.  A new
        cause is a new finding (minimised keeping its key); a new window of a known
        cause is added to that finding with its own reproducer (minimised keeping
        the key and the window)."""
        if hit.key in self.unconfirmed:
            return self.unconfirmed[hit.key]
        # when the search saw it: minimising and confirming come after (they took
        # seconds per finding, and earlier ones' delayed every later timestamp)
        found_after = round(time.monotonic() - self.started, 3)
        pair = split_pair(self.variant)
        if pair is not None:  # the reproducer stores the anchored form
            sc = anchor(sc, pair[0])[0]
        entry = self.findings.get(hit.key)
        if entry is not None:
            return self._add_window(entry, hit, sc)
        complete = True
        if self.minimize_findings:
            sc, complete = self._minimise(sc, lambda c: hit.key in keys(c, self.variant))
        final = {h.key: h for h in judge(sc, self.variant)}.get(hit.key, hit)
        confirmation = self._confirm(final, sc)
        if confirmation is not None and not confirmation["confirmed"]:
            return self.unconfirmed[hit.key]
        path = self._save(sc, final, f"{len(self.findings) + 1:03d}-{slug(hit.key)}")
        entry = {
            "key": key_text(final.key),
            "class": final.cls,
            "invariant": final.invariant,
            "variant": final.variant,
            "site": final.site,
            "cause": final.cause,
            "cause_text": final.cause_text,
            "variants": final.variants_json(),
            "windows": [{"sites": dict(final.window), "reproducer": str(path)}],
            "consequences": list(final.consequences),
            "reproducer": str(path),
            "explanation": final.explanation,
            "engine": self.engine,
            "found_after_s": found_after,
            "ops": len(sc.ops),
        }
        if self.minimize_findings:
            entry["minimised"] = complete
        if confirmation is not None:
            entry["explanation"] += f" ({confirmation['statement']})"
            entry["confirmation"] = confirmation
        self.findings[hit.key] = entry
        self.write_summary()
        return entry

    def _add_window(self, entry: dict[str, Any], hit: Hit, sc: Scenario) -> dict[str, Any]:
        wins = entry["windows"]
        if hit.window in {_window_of(w) for w in wins}:
            return entry
        if self.minimize_findings:
            sc = self._minimise(sc, lambda c: hit.ident in idents(c, self.variant))[0]
        stem = Path(str(entry.get("reproducer") or slug(hit.key))).stem
        path = self._save(sc, hit, f"{stem}-w{len(wins) + 1}")
        wins.append({"sites": dict(hit.window), "reproducer": str(path)})
        for c in hit.consequences:
            if c not in entry.setdefault("consequences", []):
                entry["consequences"].append(c)
        self.write_summary()
        return entry

    def _save(self, sc: Scenario, hit: Hit, stem: str) -> Path:
        path = self.out / f"{stem}.json"
        sites = ", ".join(f"{n} {s}" for n, s in hit.window if s)
        sc = Scenario(
            sc.ops,
            sc.config,
            sc.schedule,
            sc.nmis,
            sc.faults,
            preempts=sc.preempts,
            name=path.stem,
            description=f"{hit.cls} {hit.invariant}, cause {hit.cause} (window: {sites}): "
            f"{hit.explanation}",
        )
        write_text_atomic(path, sc.dumps())
        return path

    def _minimise(self, sc: Scenario, holds: Callable[[Scenario], bool]) -> tuple[Scenario, bool]:
        """1-minimal, or cut at the deadline: from then on every candidate is refused,
        so the result (smaller or not) still reproduces; the flag says if it is done."""
        cut = [False]

        def keeps(c: Scenario) -> bool:
            if self.deadline is not None and time.monotonic() >= self.deadline:
                cut[0] = True
                return False
            return holds(c)

        return minimize(sc, keeps), not cut[0]

    def _shows(self, key: Key) -> Callable[[Scenario], bool]:
        return lambda c: key in keys(c, self.variant)

    def finish_minimising(self) -> int:
        """Resume the minimisation a previous run's deadline cut (``"minimised":
        false``), within this run's deadline; returns how many were finished."""
        from .scenario import ScenarioError, load

        done = 0
        for key, entry in list(self.findings.items()):
            if entry.get("minimised", True) is not False:
                continue
            path = Path(entry["reproducer"])
            try:
                old = load(path)
            except ScenarioError:
                continue  # gone or edited by hand: keep the entry as it is
            sc, complete = self._minimise(old, self._shows(key))
            if sc != old:
                kept = replace(sc, name=old.name, description=old.description)
                write_text_atomic(path, kept.dumps())
            entry.update(ops=len(sc.ops), minimised=complete)
            done += complete
            self.write_summary()
        return done

    def _confirm(self, hit: Hit, sc: Scenario) -> dict[str, Any] | None:
        """A ``behaviour`` hit of a pair: search the second variant's schedules for
        the first one's behaviour; an artefact is kept in ``unconfirmed``."""
        pair = split_pair(self.variant)
        if hit.cls != "behaviour" or pair is None:
            return None
        # within the campaign's budget: one weak-memory program's search took 177 s
        # of a 180 s campaign (4,272 runs) while the search for findings waited
        deadline = self.deadline if self.deadline is not None else float("inf")
        conf = confirm_behaviour(sc, pair, self.confirm_runs, deadline)
        self.confirm_checks += 1
        self.confirm_seconds += conf.seconds
        doc = conf.to_json()
        if not conf.confirmed:
            self.unconfirmed[hit.key] = {
                "key": key_text(hit.key),
                "class": hit.cls,
                "invariant": hit.invariant,
                "cause": hit.cause,
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
                self.findings.values(), key=lambda f: (f["class"], f["invariant"], f["key"])
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
