"""Reports: the summary table, the HTML timelines and index (self-contained pages),
the ``docs/findings.md`` matching, and what a real browser renders of them."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from vmxfuzz.cli import main
from vmxfuzz.report.align import align
from vmxfuzz.report.findings_doc import load_doc, parse, slug
from vmxfuzz.report.table import table_lines, wrap_identifier
from vmxfuzz.sched import TraceEvent

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
    # each regression file is its own docs/findings.md entry
    assert "findings.md#f04-" in index and "findings.md#f12-" in index


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
        check=True,
    )
    assert shot.stat().st_size > 20_000  # a real page, not a blank one


# ---- the summary table ------------------------------------------------------------------
LONG = [
    {
        "class": "regression",
        "invariant": "vmcs-active-on-two-cpus",
        "variant": "/home/me/plugins/my-very-long-fix-v2.py",
        "site": "machine_kexec:shadow@copy_shadow_to_vmcs12:vmptrld_shadow_vmcs",
        "cause": "crash-walk-on-uninitialised-list-head-of-an-idle-cpu",
        "reproducer": "findings/001-regression-x.json",
    },
    {
        "class": "fixed",
        "invariant": "kexec-active-vmcs",
        "variant": "reference",
        "site": "machine_kexec:vmcs@list_add:publish",
        "reproducer": "findings/002-fixed-kexec-active-vmcs-machine-kexec-vmcs-list-add-"
        "publish.json",
    },
]


def test_the_summary_table_fits_80_columns_and_splits_no_identifier() -> None:
    lines = list(table_lines(LONG, 80))
    for f in LONG:
        (path_line,) = [line for line in lines if f["reproducer"] in line]  # once, whole
        assert path_line.strip().endswith(f["reproducer"])
    assert all(len(line) <= 80 for line in lines if ".json" not in line), lines
    # the site's pieces, read in order down its column, give the site back
    start = lines[1].index("machine_kexec")
    pieces = [lines[1][start:]] + [
        line[start:] for line in lines[2:] if line[:start].strip() == "" and line[start:]
    ]
    site = LONG[0]["site"]
    assert "".join(p.strip() for p in pieces).startswith(site)
    assert any("cause:" in line for line in lines)
    assert "…" in lines[1], "a variant too long for its column is shortened"


def test_identifiers_wrap_after_separators() -> None:
    assert wrap_identifier("machine_kexec:vmcs@list_add:publish", 20) == [
        "machine_kexec:vmcs@",
        "list_add:publish",
    ]
    assert wrap_identifier("short", 20) == ["short"]
    assert "".join(wrap_identifier("x" * 50, 20)) == "x" * 50  # cut only as a last resort


# ---- docs/findings.md ------------------------------------------------------------------
DOC = """# Findings

| id | class | invariant | site | reproducer |
|---|---|---|---|---|
| F01 | fixed | kexec-active-vmcs | machine_kexec:start (NMI at `list_add:publish`) | `F01-a.json` |
| F02 | shared + regression | oops; hang | kvm_cpu_vmxon:vmxon | `F02-b.json` |
| F03 | shared | oops | kvm_cpu_vmxon:vmxon | `F03-c.json` |

## F01: the first one

Cause `bitmap-window`.

## F02, F03: the others
"""


def test_findings_are_matched_with_their_docs_entry() -> None:
    doc = parse(DOC, Path("findings.md"))
    assert [e.id for e in doc.entries] == ["F01", "F02", "F03"]
    assert doc.entries[0].anchor == "f01-the-first-one" == slug("F01: the first one")

    def ids(**f: str) -> tuple[list[str], str]:
        entries, how = doc.match(f)
        return [e.id for e in entries], how

    assert ids(reproducer="tests/regressions/F03-c.json") == (["F03"], "reproducer")
    assert ids(cause="bitmap-window", invariant="oops") == (["F01"], "cause")
    kexec = {"invariant": "kexec-active-vmcs", "class": "fixed"}
    assert ids(**kexec, site="machine_kexec:vmcs@list_add:publish") == (["F01"], "site")
    assert ids(**kexec, site="machine_kexec:vmcs@list_add:new_next") == (["F01"], "related")
    assert ids(**kexec, site="machine_kexec:vmcs@idle") == ([], "")
    oops = {"invariant": "oops", "site": "kvm_cpu_vmxon:vmxon"}
    assert ids(**oops, **{"class": "regression"}) == (["F02"], "site")  # the class decides
    assert ids(**oops, **{"class": "shared"}) == (["F02", "F03"], "site")  # both say shared


def test_the_shipped_findings_doc_parses() -> None:
    doc = load_doc()
    assert doc is not None
    by_id = {e.id: e for e in doc.entries}
    assert {"F01", "F04", "F12"} <= set(by_id)
    assert all(e.title and e.anchor for e in doc.entries), "every row has its section"
    for e in doc.entries:  # every row's reproducer is a pinned regression file
        assert (ROOT / "tests" / "regressions" / e.reproducer).is_file(), e.reproducer


# ---- aligned timelines --------------------------------------------------------------------
def test_steps_are_aligned_across_variants() -> None:
    def trace(labels: list[str]) -> list[TraceEvent]:
        return [TraceEvent(i, 0, "task", "t", lab, 1) for i, lab in enumerate(labels)]

    a = trace(["a:x", "b:y", "c:z", "d:w"])
    b = trace(["a:x", "n:new", "c:z", "d:w"])
    rows = [(ea.label if ea else None, eb.label if eb else None) for ea, eb in align(a, b)]
    assert rows == [("a:x", "a:x"), ("b:y", None), (None, "n:new"), ("c:z", "c:z"), ("d:w", "d:w")]


# ---- the index and the finding pages --------------------------------------------------------
def _campaign_folder(tmp_path: Path) -> Path:
    """A campaign folder as a campaign with causes and windows writes it."""
    out = tmp_path / "camp"
    out.mkdir()
    first, second = out / "001-a.json", out / "002-b.json"
    shutil.copy(
        ROOT / "tests" / "regressions" / "F01-crash-nmi-in-list-add-skips-vmclear.json", first
    )
    shutil.copy(ROOT / "tests" / "regressions" / "F02-crash-nmi-in-loaded-vmcs-clear.json", second)
    common = {"class": "fixed", "invariant": "kexec-active-vmcs", "variant": "reference"}
    findings = [
        {
            **common,
            "site": "machine_kexec:vmcs@list_add:publish",
            "reproducer": str(first),
            "explanation": "the first window",
            "key": "k1",
            "cause": "crash-skips-vmclear-window",
            "cause_text": "the crash path skips VMCLEAR while the list changes",
            "windows": [
                {"sites": {"reference": "list_add:publish"}, "reproducer": str(first)},
                {"sites": {"reference": "list_del:unlink"}, "reproducer": str(second)},
            ],
        },
        {
            **common,
            "site": "machine_kexec:vmcs@list_del:unlink",
            "reproducer": str(second),
            "explanation": "the second window",
            "cause": "crash-skips-vmclear-window",
            "cause_text": "the crash path skips VMCLEAR while the list changes",
        },
    ]
    summary = {
        "engine": "hypothesis",
        "variant": "both",
        "seed": 7,
        "elapsed_s": 12.5,
        "examples": 321,
        "findings": findings,
    }
    (out / "summary.json").write_text(json.dumps(summary))
    return out


def test_the_index_has_run_details_legend_and_findings_grouped_by_cause(tmp_path: Path) -> None:
    src = _campaign_folder(tmp_path)
    assert main(["report", str(src)]) == 0
    index = (src / "report" / "index.html").read_text()
    for detail in ("engine", "hypothesis", "seed", ">7<", "examples", ">321<", "date"):
        assert detail in index, detail
    assert "vmxfuzz version" in index
    assert 'id="legend"' in index and "patched violates an invariant" in index
    assert index.count("<section class='group'>") == 1, "one cause, one group"
    assert "the crash path skips VMCLEAR while the list changes" in index
    assert index.count("class='finding-row'") == 2
    assert "list_del:unlink" in index and "the second window" in index
    assert "href='001-a.html'" in index and "href='002-b.html'" in index
    assert "findings.md#f01-f02-" in index, "the docs/findings.md entry is linked"
    page = (src / "report" / "001-a.html").read_text()
    assert 'href="index.html"' in page and 'id="legend"' in page
    assert "ops ['" not in page and "module_load</code> on CPU 0: <b>0</b>" in page


def test_a_folder_without_summary_is_described_by_replaying_it(tmp_path: Path) -> None:
    out = tmp_path / "r"
    assert main(["report", str(ROOT / "examples"), "-o", str(out), "--variant", "reference"]) == 0
    index = (out / "index.html").read_text()
    assert "variant(s)" in index and ">reference<" in index and "report written" in index


def _chromium(profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    assert CHROMIUM is not None
    return subprocess.run(
        [CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *args],
        capture_output=True,
        text=True,
        check=True,
    )


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (.ci/run installs it)")
def test_a_reader_finds_what_they_need_in_the_rendered_report(tmp_path: Path) -> None:
    src = _campaign_folder(tmp_path)
    assert main(["report", str(src)]) == 0
    index, page = src / "report" / "index.html", src / "report" / "001-a.html"
    profile = tmp_path / "profile"
    dom = _chromium(profile, "--dump-dom", index.as_uri()).stdout
    run = re.search(r'<dl class="run" id="run">(.*?)</dl>', dom, re.S)
    assert run, "the run's details are on the page"
    for label in ("engine", "variant(s)", "seed", "time taken (s)", "examples", "date"):
        assert f"<dt>{label}</dt>" in run.group(1), label
    assert "<dt>vmxfuzz version</dt>" in run.group(1)
    legend = re.search(r'<dl class="legend" id="legend">(.*?)</dl>', dom, re.S)
    assert legend and all(c in legend.group(1) for c in ("fixed", "regression", "shared"))
    groups = re.findall(r'<section class="group">(.*?)</section>', dom, re.S)
    assert len(groups) == 1 and groups[0].count('class="finding-row"') == 2
    assert "crash-skips-vmclear-window" in groups[0] and "list_del:unlink" in groups[0]
    assert re.search(r'href="[^"]*findings\.md#f01-f02-[^"]*"', groups[0]), "docs entry linked"
    dom = _chromium(profile, "--dump-dom", page.as_uri()).stdout
    assert re.search(r'<a class="back" href="index.html">', dom), "a link back to the index"
    assert '<dl class="legend" id="legend">' in dom and "crash shootdown" in dom
    assert {"reference", "patched"} <= set(re.findall(r'<th class="variant"[^>]*>(\w+)<', dom))
    assert 'class="seq absent"' in dom, "steps one variant lacks are shown as such"
    for name, target in (("index", index), ("page", page)):
        shot = tmp_path / f"{name}.png"
        _chromium(profile, "--window-size=1280,1400", f"--screenshot={shot}", target.as_uri())
        assert shot.stat().st_size > 20_000, name  # a real page, not a blank one


def test_docs_link_text_shows_code_spans_as_code() -> None:
    from vmxfuzz.report.html import _md_code

    assert _md_code("F10: found by `vmxfuzz fuzz`") == "F10: found by <code>vmxfuzz fuzz</code>"
    assert _md_code("a <b> `x") == "a &lt;b&gt; `x"  # unpaired: left as written, escaped
