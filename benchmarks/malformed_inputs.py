"""Malformed-input robustness: generate inputs, replay each one in-process, count outcomes.

    python benchmarks/malformed_inputs.py [--count 10500] [--seed 0] [--json] [--kinds K,..]

Inputs are built from the shipped examples and regressions by type confusion (floats,
booleans, strings where integers belong ...), out-of-range values, huge arrays, deep
nesting, bad UTF-8, lone surrogates, duplicate keys, wrong versions and formats,
structural damage (truncation, top-level non-objects, NaN), text files that are not
scenarios, random bytes, random mutations of valid files and non-files (FIFO,
``/dev/zero``, directories, symlink loops).  Each is replayed with ``vmxfuzz replay``
by calling :func:`vmxfuzz.cli.main` in this process (``SystemExit`` caught), with
stdout and stderr strict UTF-8 streams like a terminal's, and a per-input alarm so a
hang is counted rather than waited for.

An input is *expected* to be rejected (exit 2) when it is malformed by construction;
random mutations and random bytes may stay valid, so any of 0, 1, 2 is right for
them.  Outcomes counted: the exit code, an exception escaping ``main`` or a traceback
printed (a crash), a hang, and "accepted" (exit 0/1 where exit 2 was expected).

To measure a checkout other than the installed one (for a before/after comparison),
put it first on ``PYTHONPATH`` with ``fuzz``, ``reference``, ``patched`` and
``mutants`` copied under its ``vmxfuzz/`` (the package layout the wheel installs).
:func:`generate` is also used by ``tests/test_bad_input.py`` on a few hundred inputs.
"""

from __future__ import annotations

import argparse
import copy
import io
import json
import os
import random
import signal
import string
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
HANG_S = 20  # an input still running after this long is counted as a hang


@dataclass
class Input:
    """One generated input: file content, or a special non-file, and what is right."""

    kind: str
    content: bytes | None = None
    suffix: str = ".json"
    special: str = ""  # fifo, devzero, devnull, dir, loop, proc
    must_reject: bool = True  # malformed by construction: only exit 2 is right
    args: tuple[str, ...] = ()
    note: str = ""


@dataclass
class Outcome:
    code: int | None  # None: an exception escaped main, or a hang
    crash: str = ""  # exception type and message head, when one escaped or was printed
    hang: bool = False
    seconds: float = 0.0


@dataclass
class Tally:
    n: int = 0
    codes: Counter[int] = field(default_factory=Counter)
    crashes: int = 0
    hangs: int = 0
    accepted: int = 0  # exit 0/1 although the input is malformed
    multiline: int = 0  # exit 2 with more than one stderr line (or none)
    examples: dict[str, str] = field(default_factory=dict)

    def add(self, inp: Input, out: Outcome, err_lines: int) -> None:
        self.n += 1
        if out.hang:
            self.hangs += 1
        elif out.code is not None:
            self.codes[out.code] += 1
        if out.crash:
            self.crashes += 1
            self.examples.setdefault(out.crash[:90], inp.note or inp.kind)
        if inp.must_reject and out.code in (0, 1):
            self.accepted += 1
            self.examples.setdefault(f"accepted: {inp.note or inp.kind}"[:90], inp.kind)
        if out.code == 2 and err_lines != 1:
            self.multiline += 1


# ---- the base scenarios ------------------------------------------------------------------
def bases(root: Path = ROOT) -> list[dict[str, Any]]:
    files = sorted((root / "examples").glob("*.json")) + sorted(
        (root / "tests" / "regressions").glob("*.json")
    )
    return [json.loads(p.read_text()) for p in files]


INT_FIELDS = {
    ("config", "cpus"),
    ("ops", "*", "cpu"),
    ("ops", "*", "target"),
    ("nmis", "*", "cpu"),
    ("nmis", "*", "nth"),
    ("faults", "*", "nth"),
    ("faults", "*", "cpu"),
    ("schedule", "*"),
    ("config", "bios_disabled", "*"),
    ("config", "offline", "*"),
}
BOOL_FIELDS = {
    ("config", "kexec_loaded"),
    ("config", "ept"),
    ("config", "shadow_vmcs"),
    ("config", "nested"),
    ("ops", "*", "parallel"),
}
STR_FIELDS = {
    ("name",),
    ("description",),
    ("ops", "*", "op"),
    ("ops", "*", "vm"),
    ("ops", "*", "vcpu"),
    ("nmis", "*", "before"),
    ("nmis", "*", "kind"),
    ("faults", "*", "site"),
    ("faults", "*", "kind"),
}


def _paths(doc: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Every pointer (as a tuple) into ``doc``, parents before children."""
    if isinstance(doc, dict):
        for k, v in doc.items():
            yield (*prefix, k)
            yield from _paths(v, (*prefix, k))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            yield (*prefix, i)
            yield from _paths(v, (*prefix, i))


def _shape(path: tuple[Any, ...]) -> tuple[Any, ...]:
    return tuple("*" if isinstance(p, int) else p for p in path)


def _get(doc: Any, path: tuple[Any, ...]) -> Any:
    for p in path:
        doc = doc[p]
    return doc


def _set(doc: Any, path: tuple[Any, ...], value: Any) -> Any:
    doc = copy.deepcopy(doc)
    parent = _get(doc, path[:-1])
    parent[path[-1]] = value
    return doc


def _dump(doc: Any) -> bytes:
    return json.dumps(doc, indent=2).encode("utf-8")


def _with_fields(rng: random.Random, docs: list[dict[str, Any]], shapes: set[Any]) -> Any:
    """A base document and one of its pointers whose shape is in ``shapes``."""
    while True:
        doc = rng.choice(docs)
        ptrs = [p for p in _paths(doc) if _shape(p) in shapes]
        if ptrs:
            return doc, rng.choice(ptrs)


def _valid_filled(rng: random.Random, docs: list[dict[str, Any]]) -> dict[str, Any]:
    """A base with every optional list present, so each field kind has a place."""
    doc = copy.deepcopy(rng.choice(docs))
    doc.setdefault("schedule", [])
    doc.setdefault("nmis", [])
    doc.setdefault("faults", [])
    cfg = doc.setdefault("config", {})
    cfg.setdefault("cpus", 2)
    cfg.setdefault("kexec_loaded", True)
    cfg.setdefault("ept", True)
    cfg.setdefault("bios_disabled", [])
    if not doc["schedule"]:
        doc["schedule"] = [0, 1, 0]
    if not doc["faults"]:
        doc["faults"] = [{"site": "vmxon", "nth": 1, "kind": "GP"}]
    return doc


# ---- the generators, one per kind --------------------------------------------------------
Gen = Callable[[random.Random, list[dict[str, Any]]], Input]


def type_confusion(rng: random.Random, docs: list[dict[str, Any]]) -> Input:
    docs = [_valid_filled(rng, docs)]
    which = rng.choice(["int", "int", "bool", "str"])
    shapes = {"int": INT_FIELDS, "bool": BOOL_FIELDS, "str": STR_FIELDS}[which]
    doc, ptr = _with_fields(rng, docs, shapes)
    old = _get(doc, ptr)
    if which == "int":
        bad = rng.choice(
            [float(old), float(old), old + 0.5, True, False, str(old), None, [], {}, 1e308, -0.0]
        )
    elif which == "bool":
        bad = rng.choice([0, 1, 1.0, "true", "false", None, [], {}])
    else:
        bad = rng.choice([0, 1, 1.5, True, None, [], {"a": 1}, ["x"]])
    return Input("type-confusion", _dump(_set(doc, ptr, bad)), note=f"{ptr}={bad!r}")


def out_of_range(rng: random.Random, docs: list[dict[str, Any]]) -> Input:
    doc = _valid_filled(rng, docs)
    cpus = doc["config"]["cpus"]
    choice = rng.randrange(6)
    if choice == 0:
        ptr, bad = ("config", "cpus"), rng.choice([0, -1, 9, 64, 10**20, 2**63])
    elif choice == 1:
        _, ptr = _with_fields(rng, [doc], {("ops", "*", "cpu"), ("nmis", "*", "cpu")})
        bad = rng.choice([cpus, cpus + 1, -1, 10**6, 2**64, -(2**63)])
    elif choice == 2:
        ptr, bad = ("schedule", 0), rng.choice([cpus, -1, 10**9, 2**70])
    elif choice == 3:
        ptr, bad = ("faults", 0, "nth"), rng.choice([0, -1, -(10**12)])
    elif choice == 4:  # an integer with more digits than Python converts by default
        ptr, bad = ("schedule", 0), None
        text = _dump(doc).decode()
        digits = "9" * rng.choice([4301, 5000, 20000])
        text = text.replace('"schedule": [\n    ', f'"schedule": [\n    {digits}, ', 1)
        return Input("out-of-range", text.encode(), note=f"schedule/0 = {len(digits)} digits")
    else:
        ptr, bad = ("config", "offline"), rng.choice([[0], [cpus], [-1], [1, 1]])
    return Input("out-of-range", _dump(_set(doc, ptr, bad)), note=f"{ptr}={bad!r}"[:80])


def wrong_version(rng: random.Random, docs: list[dict[str, Any]]) -> Input:
    doc = copy.deepcopy(rng.choice(docs))
    choice = rng.randrange(3)
    if choice == 0:
        bad: Any = rng.choice(
            [0, 99, 1000, -1, 1.0, 2.0, 3.0, True, False, "1", "3", None, [], {}, 1.5, 10**30]
        )
        doc["version"] = bad
        note = f"version={bad!r}"
    elif choice == 1:
        bad = rng.choice(["vmxfuzz-scenari", "", None, 1, "VMXFUZZ-SCENARIO", ["vmxfuzz-scenario"]])
        doc["format"] = bad
        note = f"format={bad!r}"
    else:
        key = rng.choice(["version", "format", "ops"])
        del doc[key]
        note = f"no {key}"
    if rng.random() < 0.2 and "version" in doc:  # not JSON; Python's parser accepts it
        old = f'"version": {json.dumps(doc["version"])}'
        text = _dump(doc).decode().replace(old, '"version": Infinity', 1)
        return Input("wrong-version", text.encode(), note="version=Infinity")
    return Input("wrong-version", _dump(doc), note=note)


def surrogate(rng: random.Random, docs: list[dict[str, Any]]) -> Input:
    doc = copy.deepcopy(rng.choice(docs))
    lone = rng.choice(["\ud800", "\udfff", "\udc80", "\ud83d"])
    where = rng.choice(["name", "description", "name", "vm", "before", "site", "expect"])
    if where in ("name", "description"):
        doc[where] = rng.choice(["x", "", "a\u2028b\x1b[31m"]) + lone + "tail"
        return Input("surrogate", _dump(doc), must_reject=False, note=f"{where} with {lone!r}")
    if where == "vm":
        ops = [o for o in doc["ops"] if "vm" in o]
        rng.choice(ops or doc["ops"])["vm"] = "vm" + lone
    elif where == "before" and doc.get("nmis"):
        doc["nmis"][0]["before"] = "list_add" + lone
    elif where == "site":
        doc["faults"] = [{"site": "vmx" + lone}]
    else:
        doc["expect"] = {"reference": ["kexec" + lone], "classes": [lone]}
    return Input("surrogate", _dump(doc), note=f"{where} with {lone!r}")


def bad_utf8(rng: random.Random, docs: list[dict[str, Any]]) -> Input:
    text = _dump(rng.choice(docs))
    bad = rng.choice(
        [b"\xff", b"\xc0\xaf", b"\xed\xa0\x80", b"\x80", b"\xf8\x88\x80\x80\x80", b"\xe2\x82"]
    )
    choice = rng.randrange(4)
    if choice == 0:  # inside a string value
        i = text.index(b'"name": "') + 9 if b'"name": "' in text else text.index(b'"op": "') + 7
        return Input("bad-utf8", text[:i] + bad + text[i:], note=f"invalid {bad!r} in a string")
    if choice == 1:
        return Input("bad-utf8", b"\xef\xbb\xbf" + text, must_reject=False, note="UTF-8 BOM")
    if choice == 2:
        enc = rng.choice(["utf-16", "utf-32", "utf-16-le"])
        return Input("bad-utf8", text.decode().encode(enc), note=enc)
    i = rng.randrange(len(text))
    return Input("bad-utf8", text[:i] + bad + text[i:], note=f"invalid {bad!r} anywhere")


def duplicate_key(rng: random.Random, docs: list[dict[str, Any]]) -> Input:
    doc = rng.choice(docs)
    text = _dump(doc).decode()
    choice = rng.randrange(4)
    if choice == 0:
        text = text.replace("{\n", '{\n  "version": 1,\n', 1)
        note = "version twice"
    elif choice == 1 and '"config": {' in text:
        text = text.replace('"config": {', '"config": {"cpus": 3, "cpus": 2,', 1)
        note = "config.cpus twice"
    elif choice == 2 and '"op": ' in text:
        text = text.replace('"op": ', '"cpu": 0, "cpu": 1, "op": ', 1)
        note = "op cpu twice"
    else:
        text = text.rstrip().rstrip("}") + ',\n  "ops": []\n}'
        note = "ops twice"
    return Input("duplicate-key", text.encode(), note=note)


def huge(rng: random.Random, docs: list[dict[str, Any]]) -> Input:
    doc = copy.deepcopy(rng.choice(docs))
    n = rng.choice([100_000, 200_000, 30_000])
    part = rng.choice(["schedule", "ops", "nmis", "faults", "name", "expect", "file"])
    if part == "schedule":
        doc["schedule"] = [i % 2 for i in range(n)]
    elif part == "ops":
        doc["ops"] = [{"op": "module_load", "cpu": 0}] * n
    elif part == "nmis":
        doc["nmis"] = [{"cpu": 0, "before": "list_add:publish"}] * (n // 10)
    elif part == "faults":
        doc["faults"] = [{"site": "vmxon"}] * (n // 10)
    elif part == "name":
        doc["name"] = [0] * n
    elif part == "expect":
        doc["expect"] = {"reference": ["x"] * n}
        return Input("huge", _dump(doc), must_reject=False, note="expect with many items")
    else:  # a file over any sane size: a valid scenario padded with whitespace
        return Input("huge", _dump(doc) + b" " * (48 << 20), note="48 MiB of whitespace")
    return Input("huge", _dump(doc), note=f"{part} x {n}")


def deep(rng: random.Random, docs: list[dict[str, Any]]) -> Input:
    doc = rng.choice(docs)
    depth = rng.choice([20, 64, 500, 990, 5000, 100_000])
    nest = "[" * depth + "]" * depth if rng.random() < 0.5 else '{"a":' * depth + "1" + "}" * depth
    where = rng.choice(["name", "expect", "ops", "top", "op"])
    text = _dump({k: v for k, v in doc.items() if k != where}).decode()
    if where == "top":
        text = nest
    elif where == "op":
        text = text.replace('"op": ', f'"deep": {nest}, "op": ', 1)
    else:
        text = text.replace("{\n", f'{{\n  "{where}": {nest},\n', 1)
    return Input("deep", text.encode(), note=f"{where} nested {depth}")


def structural(rng: random.Random, docs: list[dict[str, Any]]) -> Input:
    text = _dump(rng.choice(docs))
    choice = rng.randrange(9)
    if choice == 0:
        return Input("structural", text[: rng.randrange(len(text))], note="truncated")
    if choice == 1:
        return Input("structural", text + b"garbage", note="trailing garbage")
    if choice == 2:
        top = rng.choice([b"[]", b"null", b"1", b'"s"', b"true", b"[{}]", b"{}", b"1.5"])
        return Input("structural", top, note=f"top level {top!r}")
    if choice == 3:
        return Input("structural", b"", note="empty file")
    if choice == 4:
        return Input("structural", b" \n\t", note="whitespace only")
    if choice == 5:
        const = rng.choice([b"NaN", b"Infinity", b"-Infinity"])
        return Input(
            "structural", text.replace(b'"cpu": 0', b'"cpu": ' + const, 1), note=const.decode()
        )
    if choice == 6:
        return Input("structural", b"// comment\n" + text, note="comment")
    if choice == 7:
        return Input("structural", text.replace(b'"', b"'"), note="single quotes")
    doc = copy.deepcopy(rng.choice(docs))
    what = rng.randrange(5)
    if what == 0:
        doc[rng.choice(["extra", "Ops", "", "config "])] = 1
    elif what == 1:
        doc["ops"][0]["op"] = rng.choice(["module_laod", "", "MODULE_LOAD", "exec"])
    elif what == 2:
        doc["ops"] = [{"cpu": 0}]
    elif what == 3:
        doc["nmis"] = [{"cpu": 0, "before": rng.choice(["nowhere:x", "list_add", ""])}]
    else:
        doc["faults"] = [{"site": rng.choice(["vmxon", "nosuch"]), "kind": "NOPE"}]
    return Input("structural", _dump(doc), note="schema violation")


def text_file(rng: random.Random, docs: list[dict[str, Any]]) -> Input:
    """A text file that is not a scenario, without the .json suffix (README.md, code)."""
    sources = [ROOT / "README.md", ROOT / "pyproject.toml", ROOT / "vmxfuzz" / "cli.py"]
    choice = rng.randrange(3)
    if choice == 0:
        path = rng.choice([p for p in sources if p.exists()])
        return Input("text-file", path.read_bytes(), suffix=path.suffix, note=path.name)
    if choice == 1:
        words = " ".join(
            "".join(rng.choices(string.ascii_letters, k=rng.randint(1, 9)))
            for _ in range(rng.randint(1, 200))
        )
        return Input("text-file", words.encode() + b"\n", suffix=rng.choice(["", ".txt", ".md"]))
    return Input(
        "text-file",
        "Überprüfung — ünïcödé text\n".encode() * rng.randint(1, 20),
        suffix=".txt",
        note="non-ASCII text",
    )


def random_bytes(rng: random.Random, docs: list[dict[str, Any]]) -> Input:
    data = bytes(rng.randrange(256) for _ in range(rng.choice([1, 8, 64, 512, 4096])))
    if rng.random() < 0.3:
        return Input("random-bytes", data, suffix=".json", note="random bytes named .json")
    return Input("random-bytes", data, suffix=rng.choice(["", ".bin"]), must_reject=False)


def mutation(rng: random.Random, docs: list[dict[str, Any]]) -> Input:
    text = bytearray(_dump(rng.choice(docs)))
    for _ in range(rng.randint(1, 6)):
        i = rng.randrange(len(text))
        what = rng.randrange(4)
        if what == 0:
            text[i] = rng.randrange(256)
        elif what == 1:
            del text[i]
        elif what == 2:
            text.insert(i, rng.choice(b'{}[],:"0123456789.-etrufalsn '))
        else:
            j = rng.randrange(len(text))
            text[i:i] = text[j : j + rng.randint(1, 40)]
    return Input("mutation", bytes(text), must_reject=False)


_VALUES: list[Any] = [0, 1, -1, 2, 1.0, 0.0, True, False, None, "", "x", [], {}, [0], {"a": 0}]


def random_value(rng: random.Random, docs: list[dict[str, Any]]) -> Input:
    doc = rng.choice(docs)
    ptrs = list(_paths(doc))
    ptr = rng.choice(ptrs)
    bad = rng.choice([*_VALUES, rng.randint(-(2**40), 2**40), rng.random()])
    return Input("random-value", _dump(_set(doc, ptr, bad)), must_reject=False, note=f"{ptr}")


def non_file(rng: random.Random, docs: list[dict[str, Any]]) -> Input:
    special = rng.choice(["fifo", "devzero", "devnull", "dir", "loop", "proc", "devrandom"])
    suffix = rng.choice([".json", ""])
    return Input("non-file", special=special, suffix=suffix, note=f"{special}{suffix}")


KINDS: dict[str, tuple[Gen, int]] = {  # kind -> generator, share per 10,500
    "type-confusion": (type_confusion, 2000),
    "out-of-range": (out_of_range, 800),
    "wrong-version": (wrong_version, 600),
    "surrogate": (surrogate, 500),
    "bad-utf8": (bad_utf8, 500),
    "duplicate-key": (duplicate_key, 400),
    "huge": (huge, 40),
    "deep": (deep, 300),
    "structural": (structural, 1200),
    "text-file": (text_file, 300),
    "random-bytes": (random_bytes, 1200),
    "mutation": (mutation, 1700),
    "random-value": (random_value, 900),
    "non-file": (non_file, 60),
}


def generate(
    count: int, seed: int, kinds: list[str] | None = None, root: Path = ROOT
) -> Iterator[Input]:
    """``count`` inputs in the kinds' proportions (at least one each), deterministic
    for a given seed and set of base files (``root``'s examples and regressions)."""
    rng = random.Random(seed)
    docs = bases(root)
    chosen = kinds or list(KINDS)
    total = sum(KINDS[k][1] for k in chosen)
    for k in chosen:
        gen, share = KINDS[k]
        for _ in range(max(1, round(count * share / total))):
            yield gen(rng, docs)


# ---- running one input -------------------------------------------------------------------
class Hang(BaseException):
    pass


def _alarm(signum: int, frame: Any) -> None:
    raise Hang


def materialise(inp: Input, tmp: Path, i: int) -> Path:
    """Write the input where ``replay`` will read it; non-files are made or linked."""
    path = tmp / f"in{i}{inp.suffix}"
    if inp.special == "fifo":
        os.mkfifo(path)
    elif inp.special in ("devzero", "devnull", "devrandom"):
        os.symlink(f"/dev/{inp.special[3:]}", path)
    elif inp.special == "proc":
        os.symlink("/proc/self/status", path)
    elif inp.special == "dir":
        path.mkdir()
        (path / "sub").mkdir()
    elif inp.special == "loop":
        os.symlink(path, path)
    else:
        path.write_bytes(inp.content or b"")
    return path


def run_one(path: Path, args: tuple[str, ...] = ()) -> tuple[Outcome, str, str]:
    """Replay in-process with strict UTF-8 stdout/stderr (like a terminal's)."""
    from vmxfuzz.cli import main

    out_b, err_b = io.BytesIO(), io.BytesIO()
    out = io.TextIOWrapper(out_b, encoding="utf-8", errors="strict", write_through=True)
    err = io.TextIOWrapper(err_b, encoding="utf-8", errors="strict", write_through=True)
    saved = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = out, err
    old = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(HANG_S)
    t0 = time.perf_counter()
    result = Outcome(None)
    try:
        code = main(["replay", str(path), *args])
        result = Outcome(code)
    except SystemExit as e:
        result = Outcome(e.code if isinstance(e.code, int) else 2)
    except Hang:
        result = Outcome(None, hang=True)
    except BaseException as e:  # a crash: the exception escaped main
        result = Outcome(None, crash=f"{type(e).__name__}: {str(e)[:60]}")
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
        sys.stdout, sys.stderr = saved
        result.seconds = time.perf_counter() - t0
    text_out = out_b.getvalue().decode("utf-8", "replace")
    text_err = err_b.getvalue().decode("utf-8", "replace")
    if not result.crash and "Traceback (most recent call last)" in text_err:
        last = [ln for ln in text_err.splitlines() if ln and not ln.startswith(" ")]
        result.crash = "printed: " + (last[-1][:70] if last else "traceback")
    return result, text_out, text_err


def run_all(inputs: list[Input]) -> dict[str, Tally]:
    tallies: dict[str, Tally] = {}
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        for i, inp in enumerate(inputs):
            path = materialise(inp, tmp, i)
            if inp.special in ("fifo", "devzero", "devrandom"):
                # the unfixed reader blocks or reads without end: a child process, so
                # a hang is counted and its memory returned
                out, err_lines = _in_child(path, inp.args)
            else:
                out, _, err = run_one(path, inp.args)
                err_lines = len(err.splitlines())
            for key in (inp.kind, "total"):
                tallies.setdefault(key, Tally()).add(inp, out, err_lines)
            if path.is_dir() and not path.is_symlink():
                (path / "sub").rmdir()
                path.rmdir()
            else:
                path.unlink()
    return tallies


def _in_child(path: Path, args: tuple[str, ...]) -> tuple[Outcome, int]:
    import multiprocessing as mp

    ctx = mp.get_context("fork")
    q: Any = ctx.Queue()
    p = ctx.Process(target=_child, args=(path, args, q))
    p.start()
    p.join(HANG_S)
    if p.is_alive():
        p.kill()
        p.join()
        return Outcome(None, hang=True), 0
    try:
        out, lines = q.get(timeout=1)
        return out, lines
    except Exception:
        return Outcome(None, crash=f"child died (exit {p.exitcode})"), 0


def _child(path: Path, args: tuple[str, ...], q: Any) -> None:
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))
    out, _, err = run_one(path, args)
    q.put((out, len(err.splitlines())))


def table(tallies: dict[str, Tally]) -> str:
    head = "| kind | inputs | exit 0 | exit 1 | exit 2 | exit 4 | crash | hang | accepted |"
    rows = [head, "|" + "---|" * 9]
    for kind, t in sorted(tallies.items(), key=lambda kt: kt[0] == "total"):
        rows.append(
            f"| {kind} | {t.n} | {t.codes[0]} | {t.codes[1]} | {t.codes[2]} | {t.codes[4]} "
            f"| {t.crashes} | {t.hangs} | {t.accepted} |"
        )
    return "\n".join(rows)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--count", type=int, default=10_500)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--kinds", help="comma-separated kinds (default all)")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--root", type=Path, default=ROOT, help="checkout whose files are the bases")
    ap.add_argument("--hang", type=int, default=HANG_S, help="seconds before a hang is counted")
    a = ap.parse_args()
    globals()["HANG_S"] = a.hang
    kinds = a.kinds.split(",") if a.kinds else None
    t0 = time.perf_counter()
    inputs = list(generate(a.count, a.seed, kinds, a.root))
    tallies = run_all(inputs)
    total = tallies["total"]
    if a.json:
        doc = {
            k: {
                "n": t.n,
                "codes": dict(t.codes),
                "crashes": t.crashes,
                "hangs": t.hangs,
                "accepted": t.accepted,
                "multiline": t.multiline,
            }
            for k, t in tallies.items()
        }
        print(json.dumps(doc, indent=2))
    else:
        import vmxfuzz.cli

        print(f"vmxfuzz from {Path(vmxfuzz.cli.__file__).parent}")
        print(table(tallies))
        print(
            f"\n{total.n} inputs in {time.perf_counter() - t0:.0f} s; exit 2 with other "
            f"than one stderr line: {total.multiline}"
        )
        for what, kind in list(total.examples.items())[:40]:
            print(f"  {what}  [{kind}]")
    return 1 if total.crashes or total.hangs else 0


if __name__ == "__main__":
    sys.exit(main())
