"""Line up the traces of two variants of one scenario, step for step.

The same scenario takes different numbers of steps in two variants wherever a patch
adds, removes or moves steps, so step *numbers* say nothing across variants.  Steps are
matched instead by what they are (CPU, context, label) with a longest-matching-blocks
diff: a row holds a step of each variant that correspond, or a step of one variant
that has no counterpart in the other.
"""

from __future__ import annotations

from collections.abc import Sequence
from difflib import SequenceMatcher

from ..sched import TraceEvent

Row = tuple[TraceEvent | None, TraceEvent | None]


def _key(e: TraceEvent) -> tuple[int, str, str]:
    return (e.cpu, e.context, e.label)


def align(a: Sequence[TraceEvent], b: Sequence[TraceEvent]) -> list[Row]:
    """Rows in the order both variants ran; a step unmatched in ``b`` is ``(ea, None)``."""
    sm = SequenceMatcher(None, [_key(e) for e in a], [_key(e) for e in b], autojunk=False)
    rows: list[Row] = []
    for tag, i1, i2, j1, j2 in sm.get_opcodes():
        if tag == "equal":
            rows.extend(zip(a[i1:i2], b[j1:j2], strict=True))
        else:  # replace, delete, insert: one side's steps, then the other's
            rows.extend((e, None) for e in a[i1:i2])
            rows.extend((None, e) for e in b[j1:j2])
    return rows
