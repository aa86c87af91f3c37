"""Variant plug-ins: composition (``BASE+a.py+b.py``), ``BASE`` resolved against the
plug-in's folder, declared new and imported functions, conflicting overrides, short
names; every broken composition is exit 2 with one line naming the argument."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest
from helpers import EXAMPLES
from test_cli import assert_one_line_error, replay, replay_json

from vmxfuzz.variants import VariantError, build, layer_names, short_name

SEED = EXAMPLES / "seed-nmi-in-list-add.json"
DROP = EXAMPLES / "plugins" / "drop_bitmap_only.py"

HEAD = "from vmxfuzz.plugin import new_function, override\n"


def plugin(folder: Path, name: str, body: str, base: str = "patched") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(f"{HEAD}BASE = {base!r}\n{inspect.cleandoc(body)}\n")
    return path


VM_INIT = """
def vmx_vm_init(k, vm):
    yield "vmx_vm_init:l1tf_check"
    return 0
"""
HAS_MSR = """
def vmx_has_emulated_msr(k):
    yield "vmx_has_emulated_msr:check"
    return 1
"""


def owner(ns: object, name: str) -> str:
    return str(getattr(ns, name).__code__.co_filename)


# ---- composition -------------------------------------------------------------------------------
def test_composition_applies_each_plugin_in_order(tmp_path: Path) -> None:
    a = plugin(tmp_path, "a.py", VM_INIT)
    b = plugin(tmp_path, "b.py", HAS_MSR)
    ns = build(f"patched+{a}+{b}")
    assert owner(ns, "vmx_vm_init") == str(a) and owner(ns, "vmx_has_emulated_msr") == str(b)
    patched = build("patched")
    changed = {n for n in vars(patched) if getattr(ns, n) is not getattr(patched, n)}
    assert changed == {"vmx_vm_init", "vmx_has_emulated_msr"}
    assert layer_names(f"patched+{a}+{b}") == [str(a), str(b)]


def test_composition_is_cached_and_shares_the_plugins_functions(tmp_path: Path) -> None:
    a = plugin(tmp_path, "a.py", VM_INIT)
    b = plugin(tmp_path, "b.py", HAS_MSR)
    assert build(f"patched+{a}+{b}") is build(f"patched+{a}+{b}")
    assert build(f"patched+{a}").vmx_vm_init is build(f"patched+{a}+{b}").vmx_vm_init


def test_composition_replays_like_the_plugin_alone(capsys: pytest.CaptureFixture[str]) -> None:
    """``reference+drop_bitmap_only.py`` is the plug-in on its own BASE: no divergence."""
    code, out, err = replay(capsys, str(SEED), "--variant", f"reference+{DROP},{DROP}")
    assert (code, err) == (0, "")
    assert "no divergence between reference+drop_bitmap_only and drop_bitmap_only" in out


def test_pair_with_a_composition_classifies(capsys: pytest.CaptureFixture[str]) -> None:
    code, doc = replay_json(capsys, str(SEED), "--variant", f"reference,reference+{DROP}")
    assert code == 1
    assert set(doc["variants"]) == {"reference", f"reference+{DROP}"}, "JSON keeps the path"
    (f,) = doc["findings"]
    assert (f["class"], f["variant"]) == ("fixed", "reference")


def test_short_names() -> None:
    assert short_name("patched") == "patched"
    assert short_name(str(DROP)) == "drop_bitmap_only"
    assert short_name(f"reference,patched+{DROP}") == "reference,patched+drop_bitmap_only"
    assert short_name("vmxfuzz.mutants.m03_drop_vmclear") == "m03_drop_vmclear"


# ---- BASE resolution -----------------------------------------------------------------------------
def test_base_resolves_against_the_plugins_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lib = tmp_path / "lib"
    plugin(lib, "b.py", HAS_MSR)
    a = plugin(lib, "a.py", VM_INIT, base="b.py")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # no b.py here: the old cwd-relative lookup would fail
    ns = build(str(a))
    assert owner(ns, "vmx_has_emulated_msr") == str(lib / "b.py")
    assert owner(ns, "vmx_vm_init") == str(a)


def test_a_plugin_based_on_another_builds_on_it(tmp_path: Path) -> None:
    """Its BASE may override the same function: that is what building on it means."""
    plugin(tmp_path, "b.py", VM_INIT)
    a = plugin(tmp_path, "a.py", VM_INIT, base="b.py")
    assert owner(build(f"patched+{tmp_path / 'b.py'}+{a}"), "vmx_vm_init") == str(a)
    assert owner(build(str(a)), "vmx_vm_init") == str(a)


def test_base_cycle_is_bad_input(tmp_path: Path) -> None:
    plugin(tmp_path, "a.py", VM_INIT, base="b.py")
    plugin(tmp_path, "b.py", HAS_MSR, base="a.py")
    with pytest.raises(VariantError, match="BASE"):
        build(str(tmp_path / "a.py"))


# ---- declarations ----------------------------------------------------------------------------
def test_new_functions_are_declared_one_by_one(tmp_path: Path) -> None:
    new = "@new_function\ndef kvm_x86_vendor_init(k):\n    yield 'x:y'"
    good = plugin(tmp_path, "good.py", new)
    assert owner(build(str(good)), "kvm_x86_vendor_init") == str(good)
    typo = plugin(
        tmp_path,
        "typo.py",
        "@new_function\ndef kvm_x86_vendor_init(k):\n    yield 'x:y'\n"
        "def hardwre_enable(k):\n    yield 'x:y'",
    )
    with pytest.raises(VariantError, match="hardwre_enable overrides nothing"):
        build(str(typo))


def test_imported_function_must_be_declared(tmp_path: Path) -> None:
    body = "from vmxfuzz.reference.vmx import crash_vmclear_local_loaded_vmcss"
    silent = plugin(tmp_path, "silent.py", body)
    with pytest.raises(VariantError, match="crash_vmclear_local_loaded_vmcss: imported"):
        build(str(silent))
    declare = "override(crash_vmclear_local_loaded_vmcss)"
    declared = plugin(tmp_path, "declared.py", f"{body}\n{declare}")
    from vmxfuzz.reference import vmx

    ns = build(str(declared))
    assert ns.crash_vmclear_local_loaded_vmcss is vmx.crash_vmclear_local_loaded_vmcss
    # Shared code and plain helpers may be imported and called without a declaration.
    helper = plugin(tmp_path, "helper.py", "from vmxfuzz.kernel.list import deref\nimport math")
    assert vars(build(str(helper))) == vars(build("patched"))


def test_new_function_that_exists_is_bad_input(tmp_path: Path) -> None:
    p = plugin(tmp_path, "dup.py", "@new_function" + VM_INIT)
    with pytest.raises(VariantError, match="declared @new_function but patched already has it"):
        build(str(p))


# ---- conflicts ---------------------------------------------------------------------------------
def test_conflicting_overrides_name_both(tmp_path: Path) -> None:
    a = plugin(tmp_path, "a.py", VM_INIT)
    b = plugin(tmp_path, "b.py", VM_INIT)
    with pytest.raises(VariantError) as e:
        build(f"patched+{a}+{b}")
    assert str(b) in str(e.value) and str(a) in str(e.value) and "vmx_vm_init" in str(e.value)


def test_builds_on_allows_the_second_override(tmp_path: Path) -> None:
    a = plugin(tmp_path, "a.py", VM_INIT)
    b = plugin(tmp_path, "b.py", f"BUILDS_ON = 'a.py'\n{VM_INIT}")
    assert owner(build(f"patched+{a}+{b}"), "vmx_vm_init") == str(b)
    c = plugin(tmp_path, "c.py", f"@override(builds_on='a.py'){VM_INIT}")
    assert owner(build(f"patched+{a}+{c}"), "vmx_vm_init") == str(c)
    with pytest.raises(VariantError, match="which comes after it"):
        build(f"patched+{b}+{a}")


# ---- bad input on the command line ------------------------------------------------------------
def test_broken_compositions_exit_2_naming_the_argument(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a = plugin(tmp_path, "a.py", VM_INIT)
    b = plugin(tmp_path, "b.py", VM_INIT)
    missing = tmp_path / "missing.py"
    cases = {
        f"patched+{a}+{missing}": (str(missing), "no such variant file"),
        f"reference,patched+{a}+{b}": (str(a), str(b), "vmx_vm_init"),
        f"patched+{a}+reference": ("reference", "only come first"),
        f"patched++{a}": ("empty name",),
    }
    imported = plugin(tmp_path, "imp.py", "from vmxfuzz.patched.vmx import hardware_enable")
    cases[f"reference+{imported}"] = (str(imported), "hardware_enable", "override(")
    old = plugin(tmp_path, "old.py", "NEW_FUNCTIONS = True")
    cases[str(old)] = (str(old), "NEW_FUNCTIONS", "@new_function")
    base = plugin(tmp_path, "base.py", VM_INIT, base="nowhere.py")
    cases[str(base)] = (str(base), "BASE", "nowhere.py")
    for variant, needles in cases.items():
        assert_one_line_error(*replay(capsys, str(SEED), "--variant", variant), *needles)
