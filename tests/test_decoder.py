"""The libFuzzer byte decoder: total, deterministic, exactly invertible on the corpus."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vmxfuzz.anchor import anchor, lower
from vmxfuzz.campaign import keys
from vmxfuzz.cli import main
from vmxfuzz.engines.strategies import scenarios
from vmxfuzz.executor import run
from vmxfuzz.fuzz.decoder import Unencodable, canonical, decode, encode, lowered
from vmxfuzz.scenario import Scenario, from_json, load

ROOT = Path(__file__).resolve().parent.parent
SCENARIOS = sorted((ROOT / "examples").glob("*.json")) + sorted(
    (ROOT / "tests" / "regressions").glob("*.json")
)
CORPUS = ROOT / "corpora" / "seed"


@given(st.binary(max_size=300))
def test_every_byte_string_decodes_to_a_valid_scenario(data: bytes) -> None:
    sc = decode(data)
    assert from_json(sc.to_json()) == sc  # valid by the file format's own rules
    assert decode(data) == sc  # deterministic


@pytest.mark.parametrize("path", SCENARIOS, ids=lambda p: p.stem)
def test_shipped_scenarios_encode_exactly(path: Path) -> None:
    sc = load(path)
    if sc.preempts:
        with pytest.raises(Unencodable):
            encode(sc)
        return
    back = decode(encode(sc))
    assert back == canonical(lowered(sc))
    assert keys(back, "both") == keys(sc, "both")


@given(scenarios())
def test_generated_scenarios_round_trip_when_encodable(sc: Scenario) -> None:
    try:
        data = encode(sc)
    except Unencodable:
        return
    assert decode(data) == canonical(lowered(sc))  # a window schedule is anchored (v4)


def _encodable(path: Path) -> bool:
    try:
        encode(load(path))
    except Unencodable:
        return False  # e.g. preemptions: not in the byte layout
    return True


def test_seed_corpus_holds_every_shipped_scenario() -> None:
    entries = {p.name.rsplit("-", 1)[0] for p in CORPUS.iterdir()}
    assert {p.stem for p in SCENARIOS if _encodable(p)} <= entries


@pytest.mark.parametrize("entry", sorted(CORPUS.iterdir()), ids=lambda p: p.name)
def test_corpus_entries_decode_to_their_scenario(entry: Path) -> None:
    stem = entry.name.rsplit("-", 1)[0]
    src = next(p for p in SCENARIOS if p.stem == stem)
    assert decode(entry.read_bytes()) == canonical(lowered(load(src)))


def test_truncated_and_corrupt_inputs_still_decode() -> None:
    data = (CORPUS / next(iter(sorted(p.name for p in CORPUS.iterdir())))).read_bytes()
    for cut in range(len(data) + 1):
        decode(data[:cut])
    decode(bytes(reversed(data)))
    decode(b"\xff" * 1000)


def test_replay_accepts_an_artifact_and_decode_writes_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    seed = next(p for p in CORPUS.iterdir() if p.name.startswith("seed-nmi-in-list-add"))
    art = tmp_path / "crash-0123"
    art.write_bytes(seed.read_bytes())
    assert main(["replay", str(art), "--no-trace"]) == 1
    assert "FINDING fixed: kexec-active-vmcs" in capsys.readouterr().out
    out = tmp_path / "decoded.json"
    assert main(["decode", str(art), "-o", str(out)]) == 0
    assert load(out) == decode(seed.read_bytes())


def test_encode_command_writes_corpus_entries(tmp_path: Path) -> None:
    assert main(["encode", str(ROOT / "examples" / "vmxon-gp.json"), "-o", str(tmp_path)]) == 0
    (entry,) = tmp_path.iterdir()
    assert decode(entry.read_bytes()) == canonical(load(ROOT / "examples" / "vmxon-gp.json"))


def _outcome(sc: Scenario, variant: str) -> dict[str, object]:
    d = run(sc, variant, keep_trace=False).to_json()
    d.pop("trace", None)
    return d


@pytest.mark.parametrize("variant", ["reference", "patched"])
@pytest.mark.parametrize(
    "stem", ["F07-vm-survives-failed-module-init", "F12-reboot-ipi-between-vmptrld-and-set-cpu"]
)
def test_an_anchored_reproducer_encodes_as_its_schedule_on_the_variant(
    stem: str, variant: str
) -> None:
    """A v4 reproducer (as campaigns store them) is encoded as the step-indexed schedule
    it has on ``variant``: the decoded scenario replays there to the same result."""
    sc, _ = anchor(load(ROOT / "tests" / "regressions" / f"{stem}.json"), variant)
    assert sc.anchored and sc.version == 4
    back = decode(encode(sc, variant))
    assert not back.anchored
    assert _outcome(back, variant) == _outcome(canonical(sc), variant)
    assert back.schedule and _outcome(back, variant)["violations"]  # not vacuous


def test_encode_command_lowers_an_anchored_scenario(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = ROOT / "tests" / "regressions" / "F12-reboot-ipi-between-vmptrld-and-set-cpu.json"
    sc, _ = anchor(load(src), "reference")
    v4 = tmp_path / "v4.json"
    v4.write_text(sc.dumps(), encoding="utf-8")
    out = tmp_path / "corpus"
    assert main(["encode", str(v4), "-o", str(out), "--variant", "reference,patched"]) == 0
    assert "encoded as the one it has on reference" in capsys.readouterr().err
    (entry,) = out.iterdir()
    assert decode(entry.read_bytes()) == canonical(lower(sc, "reference")[0])


@pytest.mark.parametrize(
    "path", sorted((ROOT / "tests" / "weak-memory").glob("*.json")), ids=lambda p: p.stem
)
def test_weak_memory_scenarios_round_trip_exactly(path: Path) -> None:
    """Format v3 (store-buffer entries) is in the byte layout: decode(encode(sc)) is sc."""
    from vmxfuzz.fuzz.decoder import canonical, encode

    sc = load(path)
    assert decode(encode(sc)) == canonical(sc)


def test_the_machine_bytes_select_weak_memory_and_pct() -> None:
    """Byte 3 (no quirks) selects weak memory, byte 4 a PCT schedule (depth, order and
    change-point bytes follow) whose realised list replays like any other."""
    from vmxfuzz.fuzz.decoder import RARELY, SCHEDULE_MODE, encode

    sc = load(ROOT / "tests" / "regressions" / "F12-reboot-ipi-between-vmptrld-and-set-cpu.json")
    data = encode(replace(sc, nmis=()))
    assert data[2] == RARELY.byte(False) and data[3] == RARELY.byte(False)
    assert not decode(data).config.weak_memory
    weak = decode(data[:3] + bytes([RARELY.byte(True)]) + data[4:])
    assert weak.config.weak_memory and weak.version == 3
    pct = decode(data[:4] + bytes([SCHEDULE_MODE.byte("pct"), 1, 1, 0]) + data[5:])
    assert pct.schedule and pct.schedule != decode(data).schedule
    assert decode(encode(pct)) == pct


def test_weighted_choices_invert_and_keep_every_option() -> None:
    from vmxfuzz.fuzz.decoder import BODY, NMI_POOL, TERMINAL, kinds

    for table in (
        BODY,
        NMI_POOL,
        TERMINAL,
        *(kinds(n, m, v) for n in (0, 1) for m in (0, 1) for v in (0, 1)),
    ):
        seen = {table.pick(b) for b in range(256)}
        assert seen == set(table.options)
        for option in table.options:
            assert table.pick(table.byte(option)) == option


def test_random_bytes_decode_to_plausible_programs() -> None:
    """Layout v3's point: most short random inputs are programs that load the module,
    name VMs and vCPUs they created, and place an NMI at a step the run executes.
    (Layout v2, measured the same way: 18% loaded the module, under 1% created a vCPU
    and under 1% had an NMI; benchmarks/decoder_reach.py.)"""
    import random

    from vmxfuzz.scenario import NESTED_OPS

    rng = random.Random(12)
    n = 150
    loads = creates = nmis = dangling = uses = 0
    for _ in range(n):
        sc = decode(bytes(rng.randrange(256) for _ in range(rng.randint(0, 48))))
        loads += sc.ops[:1] == (sc.ops[0].__class__("module_load"),) if sc.ops else 0
        created: set[str] = set()
        for o in sc.ops:
            if o.op == "create_vcpu" and o.vcpu:
                created.add(o.vcpu)
            elif o.op == "run_vcpu" or o.op in NESTED_OPS:
                uses += 1
                dangling += o.vcpu not in created
        creates += bool(created)
        nmis += bool(sc.nmis)
    assert loads > 0.7 * n and creates > 0.6 * n and nmis > 0.6 * n
    assert dangling < 0.25 * uses
