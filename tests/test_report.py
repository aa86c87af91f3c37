"""HTML timelines: self-contained pages, and what a real browser renders of them."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from vmxfuzz.cli import main

ROOT = Path(__file__).resolve().parent.parent
SEED = ROOT / "examples" / "seed-nmi-in-list-add.json"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def test_replay_html_is_self_contained(tmp_path: Path) -> None:
    page = tmp_path / "seed.html"
    assert main(["replay", str(SEED), "--no-trace", "--html", str(page)]) == 1
    text = page.read_text()
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", text), "no network resources"
    assert 'data-variant="reference"' in text and 'data-variant="patched"' in text
    assert "NMI(panic)" in text and "NMI(crash shootdown)" in text
    assert text.count('class="step crash violation"') == 1  # reference only
    assert "VMCS vcpu0.vmcs01" in text  # the cache table names the leaked VMCS


def test_report_writes_an_index_and_a_page_per_reproducer(tmp_path: Path) -> None:
    out = tmp_path / "report"
    assert main(["report", str(ROOT / "tests" / "regressions"), "-o", str(out)]) == 0
    pages = sorted(p.name for p in out.glob("*.html"))
    assert "index.html" in pages and len(pages) == 1 + len(
        list((ROOT / "tests" / "regressions").rglob("*.json"))
    )
    index = (out / "index.html").read_text()
    assert "F01-crash-nmi-in-list-add-skips-vmclear.html" in index and ">fixed<" in index


def test_report_of_a_campaign_directory(tmp_path: Path) -> None:
    from vmxfuzz.campaign import Campaign
    from vmxfuzz.scenario import load

    c = Campaign(out=tmp_path, variant="both", minimize_findings=False)
    sc = load(SEED)
    for h in c.new_hits(sc):
        c.record(h, sc)
    assert main(["report", str(tmp_path)]) == 0
    assert (tmp_path / "report" / "index.html").exists()


def test_report_rejects_a_non_directory(tmp_path: Path) -> None:
    assert main(["report", str(tmp_path / "nope")]) == 2


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (.ci/run installs it)")
def test_rendered_in_headless_chromium(tmp_path: Path) -> None:
    page = tmp_path / "seed.html"
    main(["replay", str(SEED), "--no-trace", "--html", str(page)])
    profile = tmp_path / "profile"
    assert CHROMIUM is not None
    dom = subprocess.run(
        [CHROMIUM, *FLAGS, f"--user-data-dir={profile}", "--dump-dom", page.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    cpus = set(re.findall(r'class="lane" data-cpu="(\d+)"', dom))
    assert cpus == {"0", "1"}, "one lane per CPU in the rendered page"
    assert 'class="step crash violation"' in dom
    shot = tmp_path / "shot.png"
    subprocess.run(
        [
            CHROMIUM,
            *FLAGS,
            f"--user-data-dir={profile}",
            "--window-size=1200,900",
            f"--screenshot={shot}",
            page.as_uri(),
        ],
        capture_output=True,
        timeout=120,
        check=True,
    )
    assert shot.stat().st_size > 20_000  # a real page, not a blank one
