"""Make an old commit of vmxfuzz importable beside the working tree.

Why a symlink farm: the package maps the checkout's top-level ``reference/``,
``patched/``, ``fuzz/`` and ``mutants/`` folders into ``vmxfuzz.*`` (pyproject's
``package-dir``), so a plain ``PYTHONPATH=CHECKOUT`` does not import an old commit.
:func:`prepare` checks ``rev`` out as a detached git worktree in a temporary folder
and builds ``<tmp>/import/vmxfuzz`` from links to its files; a subprocess started
with ``PYTHONPATH=<tmp>/import`` then imports the old code (and nothing of the
working tree's).  Used by ``benchmarks/compare.py`` and by the generator of the
golden results in ``tests/goldens/``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MAPPED = {"reference": "reference", "patched": "patched", "fuzz": "fuzz", "mutants": "mutants"}


def import_farm(checkout: Path, dest: Path) -> Path:
    """``dest/vmxfuzz`` built from links into ``checkout``; returns ``dest``."""
    pkg = dest / "vmxfuzz"
    pkg.mkdir(parents=True)
    for entry in (checkout / "vmxfuzz").iterdir():
        (pkg / entry.name).symlink_to(entry)
    for name, src in MAPPED.items():
        if (checkout / src).is_dir() and not (pkg / name).exists():
            (pkg / name).symlink_to(checkout / src)
    return dest


def import_env(path: Path) -> dict[str, str]:
    """The environment of a subprocess importing vmxfuzz from ``path`` (run it with a
    working directory outside any checkout: ``''`` on sys.path would win)."""
    return {**os.environ, "PYTHONPATH": str(path), "PYTHONDONTWRITEBYTECODE": "1"}


class BaseTree:
    """A checkout of ``rev`` and an import path for it; remove with :meth:`close`."""

    def __init__(self, rev: str) -> None:
        self.rev = rev
        self.tmp = Path(tempfile.mkdtemp(prefix="vmxfuzz-base-"))
        self.checkout = self.tmp / "tree"
        subprocess.run(
            ["git", "-C", str(ROOT), "worktree", "add", "--detach", str(self.checkout), rev],
            check=True,
            capture_output=True,
        )
        self.path = import_farm(self.checkout, self.tmp / "import")

    def env(self) -> dict[str, str]:
        """The environment of a subprocess that imports this tree's vmxfuzz."""
        return import_env(self.path)

    def close(self) -> None:
        subprocess.run(
            ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(self.checkout)],
            check=False,
            capture_output=True,
        )
        shutil.rmtree(self.tmp, ignore_errors=True)

    def __enter__(self) -> BaseTree:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
