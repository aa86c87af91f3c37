"""Generate the golden results of every shipped scenario from a base commit.

    python tests/goldens/generate.py BASE_REV        # writes tests/goldens/results.json

Why: the stepping core was rewritten for speed (issue 13); every existing scenario
must replay to the identical :class:`~vmxfuzz.executor.Result` (trace, op results,
violations, steps) as on the base.  This script imports ``BASE_REV``'s vmxfuzz (a
temporary worktree, see ``benchmarks/basetree.py``), runs each scenario there and
writes one short hash per (file, variant); ``tests/test_goldens.py`` recomputes them
with the working tree.  It also draws a fixed sample of Hypothesis scenarios with the
base's strategy and stores them in ``sample.json``, so the comparison covers NMIs,
faults, parallel ops and weak memory beyond the shipped files.  Run it once per
base; the outputs are committed.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
SAMPLE = 300


def main() -> None:
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from basetree import BaseTree

    rev = sys.argv[1]
    with BaseTree(rev) as base:
        subprocess.run(
            [sys.executable, str(HERE / "compute.py"), "--sample", str(SAMPLE), "--write"],
            cwd=base.tmp,
            env=base.env(),
            check=True,
        )
    doc = json.loads((HERE / "results.json").read_text())
    doc["base"] = rev
    (HERE / "results.json").write_text(json.dumps(doc, indent=0, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
