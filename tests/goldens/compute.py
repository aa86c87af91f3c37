"""The result hash of every golden scenario, with whichever vmxfuzz is imported.

Shared by the generator (run under the base commit's import path) and by
``tests/test_goldens.py`` (the working tree).  Only APIs that exist on the base are
used: ``scenario.load``/``from_json``, ``executor.run`` and ``Result.to_json``.
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
PAIR = ("reference", "patched")


# Violation fields added after the goldens were generated: the cause analysis
# (vmxfuzz/causes.py) explains a run, it does not change it.
LATER_FIELDS = ("fault_kind", "cause", "cause_text", "consequence_of")


def digest(result: Any) -> str:
    doc = result.to_json(trace=True)
    doc.pop("not_applicable", None)  # added after the base (anchors, format v4)
    for v in doc["violations"]:
        for f in LATER_FIELDS:
            v.pop(f, None)
    text = json.dumps(doc, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def mutant_modules() -> dict[str, str]:
    from vmxfuzz.mutation import catalogue

    return {m.id: m.module for m in catalogue()}


def cases() -> Iterator[tuple[str, Any, tuple[str, ...]]]:
    """(name, scenario, variants) for every shipped scenario and the stored sample."""
    from vmxfuzz.fuzz.decoder import decode
    from vmxfuzz.scenario import from_json, load

    mutants = mutant_modules()
    for folder in ("examples", "tests/regressions", "tests/weak-memory", "mutants/kills"):
        for p in sorted((ROOT / folder).glob("*.json")):
            variants: tuple[str, ...] = PAIR
            if folder == "mutants/kills":
                variants = (*PAIR, mutants[p.name.split("-", 1)[0]])
            yield f"{folder}/{p.name}", load(p), variants
    for p in sorted((ROOT / "corpora" / "seed").iterdir()):
        if p.is_file():
            yield f"{p.relative_to(ROOT)}", decode(p.read_bytes()), PAIR
    sample = HERE / "sample.json"
    if sample.exists():
        for i, data in enumerate(json.loads(sample.read_text())):
            yield f"sample/{i}", from_json(data, f"sample/{i}"), PAIR


def compute() -> dict[str, dict[str, str]]:
    from vmxfuzz.executor import run

    out: dict[str, dict[str, str]] = {}
    for name, sc, variants in cases():
        out[name] = {v: digest(run(sc, v, keep_trace=True)) for v in variants}
    return out


def draw_sample(n: int) -> list[dict[str, Any]]:
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from sampling import derandomised

    out = [sc.to_json() for sc in derandomised(n)]
    return out + weak_variants(out[:80])


def weak_variants(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Weak-memory copies (the strategy draws none): store-buffer commits and late
    IPIs sprinkled into the schedule by a fixed-seed generator."""
    import random

    rng = random.Random(13)
    out = []
    for d in docs:
        if any(isinstance(e, dict) for e in d["schedule"]):
            continue  # an anchored (v4) schedule: store-buffer entries are step-indexed
        cpus = d["config"]["cpus"]
        sched: list[Any] = list(d["schedule"]) or [rng.randrange(cpus) for _ in range(30)]
        for _ in range(rng.randrange(4, 16)):
            c = rng.randrange(cpus)
            entry = rng.choice((f"sb{c}", f"sb{c}.1", f"late{c}"))
            sched.insert(rng.randrange(len(sched) + 1), entry)
        w = {**d, "version": 3, "config": {**d["config"], "weak_memory": True}}
        out.append({**w, "schedule": sched})
    return out


if __name__ == "__main__":
    if "--sample" in sys.argv:
        n = int(sys.argv[sys.argv.index("--sample") + 1])
        (HERE / "sample.json").write_text(json.dumps(draw_sample(n), separators=(",", ":")))
    doc = {"results": compute()}
    if "--write" in sys.argv:
        (HERE / "results.json").write_text(json.dumps(doc))
    else:
        json.dump(doc, sys.stdout)
