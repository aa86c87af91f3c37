"""Campaign output folders: a campaign writes only into a folder that is its own.

``vmxfuzz fuzz``, ``explore`` and ``mutants`` write many files (reproducers,
summaries, corpora) and rewrite them on resume, so pointed at a folder of the user's
they would overwrite whatever shares a name.  A folder is a campaign's when it is new
or empty (then the marker file :data:`MARKER` is written into it first) or already
carries the marker of the same kind of campaign; anything else is refused before a
single file is written.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

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
            doc = json.loads(marker.read_text())
            theirs = doc["kind"]
        except (OSError, ValueError, KeyError, TypeError):
            raise FolderRefused(f"{out / MARKER}: (file): not a vmxfuzz campaign marker") from None
        if theirs != kind:
            raise FolderRefused(
                f"{out}: ({option}): the folder of a `vmxfuzz {theirs}` campaign, not of "
                f"`vmxfuzz {kind}`; choose another folder"
            )
        return
    if out.is_dir() and any(out.iterdir()):
        raise FolderRefused(
            f"{out}: ({option}): not empty and not a vmxfuzz campaign folder (no {MARKER}); "
            "choose a new or empty folder"
        )
    doc = {
        "format": "vmxfuzz-campaign",
        "kind": kind,
        "vmxfuzz": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    write_text_atomic(marker, json.dumps(doc, indent=2) + "\n")  # creates the folder
