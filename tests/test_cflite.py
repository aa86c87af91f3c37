"""The ClusterFuzzLite build, reproduced: ``.clusterfuzzlite/build.sh`` run as the
OSS-Fuzz builder runs it, then the bundle it makes run by libFuzzer on the seed corpus.

The builder's two commands are emulated: ``pip3 install .`` installs the project (not
editable, as in the image) into a folder of its own, and ``compile_python_fuzzer``
does what OSS-Fuzz's does outside coverage builds: ``pyinstaller --distpath $OUT
--workpath ... --onefile --name NAME.pkg [extra args] FUZZER.py`` and a wrapper
script ``$OUT/NAME`` that runs the package.  The bundle then runs a few hundred
executions from the seed corpus the build zipped: the known findings in that corpus
(F04 is a `regression`) must not stop it.

Slow (a PyInstaller build): ``tox -e cflite`` or ``python -m pytest -m slow
tests/test_cflite.py``; ``.ci/run`` runs it.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        importlib.util.find_spec("PyInstaller") is None or shutil.which("pyinstaller") is None,
        reason="PyInstaller is not installed (pip install -e '.[cflite]')",
    ),
    pytest.mark.skipif(importlib.util.find_spec("atheris") is None, reason="needs atheris"),
]

PIP3 = """#!/bin/sh
# the builder's `pip3 install .`: the project, not editable, into $CFLITE_SITE
[ "$1 $2" = "install ." ] || { echo "pip3 emulation: only 'install .'" >&2; exit 2; }
exec "{python}" -m pip install --quiet --no-deps --target "$CFLITE_SITE" .
"""

COMPILE = r"""#!/bin/sh
# OSS-Fuzz's compile_python_fuzzer, outside coverage builds
set -eu
fuzzer_path=$1
shift 1
name=$(basename -s .py "$fuzzer_path")
mkdir -p "$CFLITE_WORK/$name"
PYTHONPATH="$CFLITE_SITE" pyinstaller --noconfirm --log-level WARN --distpath "$OUT" \
    --workpath="$CFLITE_WORK/$name" --specpath "$CFLITE_WORK/$name" --onefile \
    --name "$name.pkg" "$@" "$fuzzer_path"
{
  echo '#!/bin/sh'
  echo '# LLVMFuzzerTestOneInput for fuzzer detection.'
  echo "exec \"\$(dirname \"\$0\")/$name.pkg\" \"\$@\""
} > "$OUT/$name"
chmod +x "$OUT/$name"
"""


def test_the_clusterfuzzlite_bundle_runs_the_seed_corpus(tmp_path: Path) -> None:
    src, out, work, site, tools = (tmp_path / d for d in ("src", "out", "work", "site", "bin"))
    for d in (src, out, work, site, tools):
        d.mkdir()
    # $SRC/vmxfuzz is the checkout, as the Dockerfile lays it out (a copy of the tracked
    # files: no virtualenv, build output or symlink of the developer's).
    files = subprocess.run(
        ["git", "-C", str(ROOT), "ls-files", "-z"], capture_output=True, check=False
    )
    repo = src / "vmxfuzz"
    if files.returncode == 0 and files.stdout:
        for rel in files.stdout.decode().split("\0"):
            if rel and (ROOT / rel).is_file():
                (repo / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(ROOT / rel, repo / rel)
    else:
        shutil.copytree(ROOT, repo, ignore=shutil.ignore_patterns(".venv*", ".tox", ".git"))
    (tools / "pip3").write_text(PIP3.replace("{python}", sys.executable))
    (tools / "compile_python_fuzzer").write_text(COMPILE)
    for tool in tools.iterdir():
        tool.chmod(0o755)
    env = dict(
        os.environ,
        SRC=str(src),
        OUT=str(out),
        CFLITE_SITE=str(site),
        CFLITE_WORK=str(work),
        PATH=f"{tools}{os.pathsep}{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
    )
    env["PYTHONPATH"] = str(site)  # what `pip3 install .` installed is what Python sees
    build = subprocess.run(
        ["bash", str(repo / ".clusterfuzzlite" / "build.sh")],
        cwd=repo,  # the Dockerfile's WORKDIR: where the source tree would shadow
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert build.returncode == 0, build.stderr[-4000:]
    fuzzer = out / "scenario_fuzzer"
    assert fuzzer.is_file() and (out / "scenario_fuzzer.pkg").is_file()
    corpus = tmp_path / "corpus"
    with zipfile.ZipFile(out / "scenario_fuzzer_seed_corpus.zip") as z:
        z.extractall(corpus)
    seeds = sorted(p.name for p in corpus.iterdir())
    assert seeds == sorted(p.name for p in (ROOT / "corpora" / "seed").iterdir())
    # Run where no source tree is near, with the harness' own defaults (VMXFUZZ_FAIL_ON
    # regression): the known F04 in the corpus must not stop the run.
    run_env = {k: v for k, v in os.environ.items() if not k.startswith("VMXFUZZ_")}
    run_env["VMXFUZZ_OUT"] = str(tmp_path / "findings")
    runs = subprocess.run(
        [str(fuzzer), "-runs=300", "-seed=1", str(corpus)],
        cwd=tmp_path,
        env=run_env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert runs.returncode == 0, runs.stderr[-4000:]
    assert "Done 300 runs" in runs.stderr
    pending = list((tmp_path / "findings" / ".pending").glob("*.json"))
    assert pending, "the known findings were still saved"
