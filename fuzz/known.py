"""The findings a fuzzer run already knows: only a finding beyond them stops it.

A reviewer's run (``python -m vmxfuzz.fuzz``, or the ClusterFuzzLite bundle of
``scenario_fuzzer.py``) stops on a new ``regression``; the findings the project has
recorded (``docs/findings.md``, each pinned by a reproducer in ``tests/regressions``)
must not stop it, or it would stop at once on F04 every time.  They are listed, by
campaign key, in ``known-findings.json`` beside this module (package data, so the
bundle carries it).  The list is derived from the reproducers, never written by hand:

    python -m vmxfuzz.fuzz.known tests/regressions    # rewrite known-findings.json

and a test fails when it is out of date.  ``VMXFUZZ_KNOWN=FILE`` reads another list
of the same format instead (a project of one's own); ``VMXFUZZ_KNOWN=`` none.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import cast

from vmxfuzz.campaign import Key, keys
from vmxfuzz.scenario import load

KNOWN_FILE = Path(__file__).with_name("known-findings.json")
VARIANT = "both"


def compute(files: Iterable[Path], variant: str = VARIANT) -> list[Key]:
    """Every campaign key the scenario files show under ``variant``, sorted."""
    found: set[Key] = set()
    for f in files:
        found |= keys(load(f), variant)
    return sorted(found, key=lambda k: tuple(str(x) for x in k))


def document(files: Iterable[Path], variant: str = VARIANT) -> dict[str, object]:
    files = sorted(files)
    return {
        "variant": variant,
        "derived_from": [f.name for f in files],
        "keys": [list(k) for k in compute(files, variant)],
    }


def load_known(variant: str, path: Path | None = None) -> set[Key]:
    """The known keys for runs of ``variant`` (none for another variant: the list is
    about the pair it was derived from)."""
    if path is None:
        env = os.environ.get("VMXFUZZ_KNOWN")
        if env == "":
            return set()
        path = Path(env) if env else KNOWN_FILE
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        if doc.get("variant", VARIANT) != variant:
            return set()
        return {cast(Key, tuple(k)) for k in doc["keys"]}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return set()


def main(argv: list[str]) -> int:
    if len(argv) != 1 or not Path(argv[0]).is_dir():
        print("usage: python -m vmxfuzz.fuzz.known REGRESSIONS_DIR", file=sys.stderr)
        return 2
    doc = document(Path(argv[0]).glob("*.json"))
    KNOWN_FILE.write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
    print(f"{KNOWN_FILE}: {len(doc['keys'])} known finding key(s)")  # type: ignore[arg-type]
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
