"""A campaign killed with SIGKILL leaves valid output and resumes from it."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from vmxfuzz.scenario import load


@pytest.mark.parametrize("engine", ["hypothesis", "atheris"])
def test_sigkill_then_resume(engine: str, tmp_path: Path) -> None:
    if engine == "atheris":
        pytest.importorskip("atheris")
    out = tmp_path / "out"
    cmd = [
        sys.executable,
        "-m",
        "vmxfuzz",
        "fuzz",
        "--engine",
        engine,
        "--time",
        "60",
        "--out",
        str(out),
        "--seed",
        "5",
    ]
    p = subprocess.Popen(
        cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    # Wait for the first finding however long the machine takes (no test budget: the
    # campaign's own --time ends the wait if it never finds anything).
    while p.poll() is None:
        if (out / "summary.json").exists() and json.loads(
            (out / "summary.json").read_text() or "{}"
        ).get("findings"):
            break
        time.sleep(0.2)
    with contextlib.suppress(ProcessLookupError):  # gone already: nothing to kill
        os.killpg(p.pid, signal.SIGKILL)
    p.wait()
    before = json.loads((out / "summary.json").read_text())["findings"]
    assert before, "the campaign found something before it was killed"
    for f in before:
        assert Path(f["reproducer"]).exists()
        load(f["reproducer"])
    # resume: the old findings are kept and not reported again
    again = subprocess.run([*cmd[:7], "3", *cmd[8:]], check=False, capture_output=True)
    assert again.returncode == 1, again.stderr[-2000:]
    after = json.loads((out / "summary.json").read_text())["findings"]
    keys_before = {f["key"] for f in before}
    keys_after = [f["key"] for f in after]
    assert keys_before <= set(keys_after) and len(keys_after) == len(set(keys_after))
