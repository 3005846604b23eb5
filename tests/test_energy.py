"""The energy model: named tables, TOML overrides with clear errors, and an energy computed by hand."""

import pytest

from golden_model import counters as CT
from golden_model.energy import (DEFAULT_TABLE, ENERGY_KEYS, MODELLED, TABLES, EnergyError, energy_table,
                                 load_energy_table, model_energy)


def test_tables_quote_horowitz_and_cover_every_key():
    assert DEFAULT_TABLE == "horowitz45"
    t = TABLES["horowitz45"]
    assert (t.pj["fp_add"], t.pj["fp_mul"]) == (0.9, 3.7)  # 32-bit float add / multiply, 45 nm
    assert all(t.pj[m] == 10.0 for m in CT.MEMORIES)  # 8 KB SRAM, 64-bit access
    assert TABLES["horowitz45-dram"].pj["weights"] == 1300.0 and TABLES["horowitz45-dram"].pj["history"] == 10.0
    assert TABLES["horowitz45-fp64"].pj["fp_add"] == 0.9 * 53 / 24
    for table in TABLES.values():
        assert set(table.pj) == set(ENERGY_KEYS) == set(table.sources)
        assert all("Horowitz" in src or src.startswith("derived") for src in table.sources.values())


def test_energy_by_hand():
    counts = CT.zero_counts()
    counts.update({"plasticity_fp_add": 100, "plasticity_fp_mul": 50, "network_fp_mul": 10, "network_fp_div": 2,
                   "mem_synapse_traces_reads": 30, "mem_synapse_traces_writes": 20, "mem_weights_reads": 5,
                   "trace_updates": 10**9, "memory_flush_walks": 10**9})  # not priced
    # arithmetic 100*0.9 + 50*3.7 + 10*3.7 + 2*3.7 = 90 + 185 + 37 + 7.4 = 319.4; memory (30+20+5)*10 = 550
    e = model_energy(counts, TABLES["horowitz45"])
    assert e["kind"] == MODELLED and "not measured" in e["kind"]
    assert e["arithmetic_pj"] == pytest.approx(319.4, rel=1e-12)
    assert e["memory_pj"] == pytest.approx(550.0, rel=1e-12)
    assert e["total_pj"] == pytest.approx(869.4, rel=1e-12)
    assert e["breakdown_pj"]["mem_synapse_traces"] == pytest.approx(500.0)
    assert e["breakdown_pj"]["plasticity_fp_mul"] == pytest.approx(185.0)
    # per sample: every figure divided by the number of samples
    assert model_energy(counts, TABLES["horowitz45"], per=4)["total_pj"] == pytest.approx(869.4 / 4)
    # with the DRAM table the 50 trace words and 5 weight words cost 1.3 nJ each
    assert model_energy(counts, TABLES["horowitz45-dram"])["memory_pj"] == pytest.approx(55 * 1300.0)


def test_toml_override(tmp_path):
    path = tmp_path / "mine.toml"
    path.write_text('base = "horowitz45-dram"\nname = "mine"\n[pj]\nfp_mul = 4.0\nhistory = 25\n')
    t = load_energy_table(path)
    assert t.name == "mine" and t.pj["fp_mul"] == 4.0 and t.pj["history"] == 25.0
    assert t.pj["weights"] == 1300.0 and t.pj["fp_add"] == 0.9  # the rest from the base table
    assert t.sources["fp_mul"] == str(path) and "Horowitz" in t.sources["fp_add"]
    assert energy_table(path).pj == t.pj and energy_table("horowitz45") is TABLES["horowitz45"]
    assert energy_table(None) is TABLES[DEFAULT_TABLE]


@pytest.mark.parametrize("text, message", [
    ("[pj]\nfp_mull = 1.0\n", "[pj] unknown key 'fp_mull'"),
    ("[pj]\nfp_mul = -1.0\n", "[pj] fp_mul = -1.0: expected a number of pJ >= 0"),
    ("[pj]\nfp_mul = \"cheap\"\n", "[pj] fp_mul = 'cheap'"),
    ('base = "tsmc5"\n', "base = 'tsmc5': not a known table"),
    ("colour = 1\n", "unknown key 'colour'"),
    ("[pj\n", "not valid TOML"),
])
def test_toml_errors_name_the_key_and_value(tmp_path, text, message):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(EnergyError, match=message.replace("[", r"\[").replace("]", r"\]").replace("(", r"\(")):
        load_energy_table(path)


def test_unknown_table_name():
    with pytest.raises(EnergyError, match="not a known table"):
        energy_table("nope")
