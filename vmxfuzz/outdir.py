"""Campaign output folders: a campaign writes only into a folder that is its own.

``vmxfuzz fuzz``, ``explore`` and ``mutants`` write many files (reproducers,
summaries, corpora) and rewrite them on resume, so pointed at a folder of the user's
they would overwrite whatever shares a name.  A folder is a campaign's when it is new
or empty (then the marker file :data:`MARKER` is written into it first) or already
carries the marker of the same kind of campaign; anything else is refused before a
single file is written.

Folders written before the marker existed (vmxfuzz before 9270220) are recognised by
what they hold (:func:`legacy_kind`): a ``summary.json`` of a shape vmxfuzz wrote
(``fuzz``, or ``explore`` beside its ``explore.json``) or a ``kill-matrix.json``
(``mutants``), and nothing but names vmxfuzz writes there.  Such a folder is adopted:
the marker is written (saying so) and the campaign resumes from what is there.  A
folder with anything else in it is still refused; nothing is deleted or rewritten to
decide.
"""

from __future__ import annotations

import json
import re
import stat
import time
from pathlib import Path
from typing import Any

from . import __version__
from .atomic import write_text_atomic

MARKER = ".vmxfuzz-campaign"


class FolderRefused(ValueError):
    """The output folder is not one a campaign may write into (bad output path)."""


def claim(out: Path, kind: str, option: str = "--out") -> None:
    """Make ``out`` a ``kind`` campaign folder, or raise :class:`FolderRefused`."""
    marker = out / MARKER
    if out.exists() and not out.is_dir():
        raise FolderRefused(f"{out}: ({option}): exists and is not a directory")
    if marker.is_file():
        try:
            theirs = json.loads(marker.read_text())["kind"]
        except (OSError, ValueError, KeyError, TypeError):
            raise FolderRefused(f"{out / MARKER}: (file): not a vmxfuzz campaign marker") from None
        if theirs != kind:
            raise FolderRefused(
                f"{out}: ({option}): the folder of a `vmxfuzz {theirs}` campaign, not of "
                f"`vmxfuzz {kind}`; choose another folder"
            )
        return
    doc: dict[str, str] = {
        "format": "vmxfuzz-campaign",
        "kind": kind,
        "vmxfuzz": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    if out.is_dir() and any(out.iterdir()):
        theirs, stranger = legacy_kind(out)
        if theirs is None:
            raise FolderRefused(
                f"{out}: ({option}): not empty and not a vmxfuzz campaign folder (no "
                f"{MARKER}); choose a new or empty folder"
            )
        if stranger is not None:
            raise FolderRefused(
                f"{out / stranger}: ({option}): the folder looks like an earlier `vmxfuzz "
                f"{theirs}` campaign's but holds this, which vmxfuzz does not write; "
                "choose another folder"
            )
        if theirs != kind:
            raise FolderRefused(
                f"{out}: ({option}): the folder of an earlier `vmxfuzz {theirs}` campaign, "
                f"not of `vmxfuzz {kind}`; choose another folder"
            )
        doc["adopted"] = f"written by an earlier vmxfuzz (no {MARKER}); resumed"
    write_text_atomic(marker, json.dumps(doc, indent=2) + "\n")  # creates the folder


# ---- folders of earlier versions ----------------------------------------------------------
# The summary.json every earlier fuzz and explore campaign wrote (vmxfuzz/campaign.py,
# Campaign.summary, from bfc12f5 on): these keys always, the optional ones as they were
# added (confirmation 6689e9b, shapes and coverage 0fda9e6).
_SUMMARY_REQUIRED = {"engine", "variant", "seed", "elapsed_s", "examples", "findings"}
_SUMMARY_OPTIONAL = {"unconfirmed_behaviour", "unconfirmed", "confirmation", "shapes", "coverage"}
_FINDING_REQUIRED = ("class", "invariant", "site")  # every finding entry, first to last
_ENGINE_KIND = {"hypothesis": "fuzz", "atheris": "fuzz", "explore": "explore"}

# Names a campaign of each kind writes at the top of its folder: reproducers
# ``NNN-<key>[-wK].json``, the atomic writer's temporary files ``.<name>.*.tmp`` (left by
# a kill), the Hypothesis database, atheris' corpus, crash artifacts, log, pending
# scenarios and statistics, and the HTML report ``vmxfuzz report DIR`` writes.
_TEMP = r"|\..+\.tmp"
_OWN = {
    "fuzz": re.compile(
        r"summary\.json|\d{3}-[a-z0-9-]+\.json|\.hypothesis|corpus|artifacts|atheris\.log"
        r"|\.pending|\.stats|report" + _TEMP
    ),
    "explore": re.compile(r"summary\.json|explore\.json|\d{3}-[a-z0-9-]+\.json|report" + _TEMP),
    "mutants": re.compile(r"kill-matrix\.(json|md)|reproducers|work" + _TEMP),
}
_DIRS = {".hypothesis", "corpus", "artifacts", ".pending", ".stats", "report"}
_DIRS |= {"reproducers", "work"}
_LARGEST = 256 * 1024 * 1024  # a summary with a coverage map is large, never this large


def _json_file(path: Path) -> Any:
    """The JSON in ``path`` if it is a plain regular file of sane size, else None."""
    try:
        st = path.lstat()
        if not stat.S_ISREG(st.st_mode) or st.st_size > _LARGEST:
            return None
        return json.loads(path.read_bytes())
    except (OSError, ValueError):
        return None


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def summary_kind(doc: Any) -> str | None:
    """The kind of campaign (``fuzz`` or ``explore``) whose ``summary.json`` ``doc`` is,
    or None when it is not of a shape vmxfuzz ever wrote."""
    if not isinstance(doc, dict) or not set(doc) >= _SUMMARY_REQUIRED:
        return None
    if not set(doc) <= _SUMMARY_REQUIRED | _SUMMARY_OPTIONAL:
        return None
    if not (
        isinstance(doc["variant"], str)
        and _is_int(doc["seed"])
        and _is_int(doc["examples"])
        and isinstance(doc["elapsed_s"], int | float)
        and not isinstance(doc["elapsed_s"], bool)
        and isinstance(doc["findings"], list)
    ):
        return None
    for f in doc["findings"]:
        if not isinstance(f, dict) or not all(isinstance(f.get(k), str) for k in _FINDING_REQUIRED):
            return None
    return _ENGINE_KIND.get(doc["engine"]) if isinstance(doc["engine"], str) else None


def legacy_kind(out: Path) -> tuple[str | None, str | None]:
    """(kind, stranger): the kind of campaign an earlier vmxfuzz left in ``out`` (no
    marker) or None, and the first entry (sorted) that such a campaign never writes
    there, or None.  Only names and the two summary files are looked at."""
    kind: str | None = None
    matrix = _json_file(out / "kill-matrix.json")
    if isinstance(matrix, dict) and matrix.get("format") == "vmxfuzz-kill-matrix":
        kind = "mutants"
    else:
        kind = summary_kind(_json_file(out / "summary.json"))
        if kind == "explore" and not isinstance(_json_file(out / "explore.json"), dict):
            kind = None
    if kind is None:
        return None, None
    for entry in sorted(out.iterdir()):
        if not _OWN[kind].fullmatch(entry.name):
            return kind, entry.name
        mode = entry.lstat().st_mode
        plain = stat.S_ISDIR(mode) if entry.name in _DIRS else stat.S_ISREG(mode)
        if not plain:
            return kind, entry.name  # a symlink, or a file where a folder belongs
    return kind, None
