"""Modelled energy: operation counts (golden_model/counters.py) times a per-operation energy table.

Always *modelled*, never measured: the numbers say what the counted operations would cost on a chip whose
operations cost what the table says, nothing about the CPU that ran the model.

Source of every quoted number: M. Horowitz, "Computing's energy problem (and what we can do about it)", ISSCC
2014, Digest of Technical Papers, pp. 10-14 (its table of rough energy costs per operation, 45 nm, 0.9 V):

    32-bit float add 0.9 pJ, 32-bit float multiply 3.7 pJ          (16-bit float: 0.4 / 1.1 pJ)
    32-bit int add 0.1 pJ, 32-bit int multiply 3.1 pJ             (8-bit: 0.03 / 0.2 pJ)
    SRAM cache, 64-bit access: 8 KB 10 pJ, 32 KB 20 pJ, 1 MB 100 pJ; DRAM 1.3-2.6 nJ per 64-bit access

What the tables use, and which numbers are derived rather than quoted:

* ``fp_add`` 0.9 pJ, ``fp_mul`` 3.7 pJ: quoted (32-bit float; the hardware this project targets computes in
  32 bits or less: the counts do not depend on the width).
* ``fp_div``, ``fp_special`` (exp, pow, sqrt): not in the source. Priced as one 32-bit float multiply each
  (3.7 pJ), a lower bound (a divider or a polynomial exp costs several multiplies). They occur in the neuron
  updates (the same in every engine), in Adam and in the event-driven cutoff decay only.
* memories: every access of one word (a value of at most 64 bits) costs one 64-bit access of an 8 KB SRAM,
  10 pJ (quoted), whatever the memory's total size: on an FPGA a large memory is many block RAMs of a few KB,
  and one access touches one of them.
* ``horowitz45-fp64``: 64-bit float add and multiply derived from the 32-bit ones: the adder scaled with the
  significand width (53 / 24 bits: 0.9 * 53 / 24 = 1.9875 pJ), the multiplier with its square (an array
  multiplier: 3.7 * (53 / 24)^2 = 18.04 pJ); divisions and specials as one such multiply.
* ``horowitz45-dram``: the per-synapse memories (weights, eligibility traces, optimizer state) off chip, at the
  low end of the quoted DRAM range, 1.3 nJ per 64-bit access; everything else as ``horowitz45``.

A TOML file selects a table and overrides entries (``eprop bench updates --energy-table FILE``)::

    base = "horowitz45"   # optional: the named table to start from (default horowitz45)
    name = "my-45nm"      # optional
    [pj]                  # energy per operation / per word accessed, in pJ
    fp_mul = 4.0
    weights = 20.0
"""

from __future__ import annotations

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10 (the PYNQ 3.1 board image): tomllib's origin, the tomli package
    import tomli as tomllib
from dataclasses import dataclass, field
from pathlib import Path

from .counters import MEMORIES

__all__ = ["EnergyTable", "TABLES", "DEFAULT_TABLE", "ENERGY_KEYS", "energy_table", "load_energy_table",
           "model_energy", "EnergyError", "MODELLED"]

#: the label every output of this module carries
MODELLED = "modelled (operation counts x per-operation energies, Horowitz ISSCC 2014, 45 nm), not measured"

ARITHMETIC_KEYS = ("fp_add", "fp_mul", "fp_div", "fp_special")
ENERGY_KEYS = ARITHMETIC_KEYS + MEMORIES

HOROWITZ = "Horowitz, ISSCC 2014, 45 nm"
_FP32 = {"fp_add": 0.9, "fp_mul": 3.7, "fp_div": 3.7, "fp_special": 3.7}
_FP32_SOURCE = {"fp_add": f"{HOROWITZ}: 32-bit float add", "fp_mul": f"{HOROWITZ}: 32-bit float multiply",
                "fp_div": "derived: priced as one 32-bit float multiply (lower bound)",
                "fp_special": "derived: priced as one 32-bit float multiply (lower bound)"}
_SRAM_PJ = 10.0
_SRAM_SOURCE = f"{HOROWITZ}: 8 KB SRAM, 64-bit access (per word)"
_DRAM_PJ = 1300.0
_DRAM_SOURCE = f"{HOROWITZ}: DRAM 1.3-2.6 nJ per 64-bit access, low end (per word)"
_FP64_ADD = 0.9 * 53 / 24
_FP64_MUL = 3.7 * (53 / 24) ** 2


class EnergyError(ValueError):
    """An energy table that cannot be used; the message names the file, key and value."""


@dataclass(frozen=True)
class EnergyTable:
    name: str
    description: str
    pj: dict[str, float]  # energy per operation / per word accessed (read or write), pJ
    sources: dict[str, str] = field(default_factory=dict)  # where each number comes from

    def with_overrides(self, overrides: dict[str, float], name: str | None = None,
                       source: str = "override") -> "EnergyTable":
        pj = dict(self.pj)
        sources = dict(self.sources)
        for key, value in overrides.items():
            pj[key] = float(value)
            sources[key] = source
        return EnergyTable(name or f"{self.name}+overrides", self.description, pj, sources)


def _table(name: str, description: str, arithmetic: dict, arithmetic_source: dict, memories: dict,
           memory_sources: dict) -> EnergyTable:
    return EnergyTable(name, description, {**arithmetic, **memories}, {**arithmetic_source, **memory_sources})


TABLES: dict[str, EnergyTable] = {
    "horowitz45": _table(
        "horowitz45", "32-bit float ops, every memory an on-chip SRAM (10 pJ per word)",
        _FP32, _FP32_SOURCE, {m: _SRAM_PJ for m in MEMORIES}, {m: _SRAM_SOURCE for m in MEMORIES}),
    "horowitz45-fp64": _table(
        "horowitz45-fp64", "64-bit float ops (derived), every memory an on-chip SRAM",
        {"fp_add": _FP64_ADD, "fp_mul": _FP64_MUL, "fp_div": _FP64_MUL, "fp_special": _FP64_MUL},
        {"fp_add": "derived: 32-bit add x 53/24 (significand width)",
         "fp_mul": "derived: 32-bit multiply x (53/24)^2 (array multiplier)",
         "fp_div": "derived: priced as one 64-bit float multiply (lower bound)",
         "fp_special": "derived: priced as one 64-bit float multiply (lower bound)"},
        {m: _SRAM_PJ for m in MEMORIES}, {m: _SRAM_SOURCE for m in MEMORIES}),
    "horowitz45-dram": _table(
        "horowitz45-dram", "32-bit float ops, per-synapse memories in DRAM (1.3 nJ per word), the rest SRAM",
        _FP32, _FP32_SOURCE,
        {m: (_DRAM_PJ if m in ("weights", "synapse_traces", "optimizer_state") else _SRAM_PJ) for m in MEMORIES},
        {m: (_DRAM_SOURCE if m in ("weights", "synapse_traces", "optimizer_state") else _SRAM_SOURCE)
         for m in MEMORIES}),
}
DEFAULT_TABLE = "horowitz45"


def energy_table(name_or_path: str | Path | None = None) -> EnergyTable:
    """A named table (see TABLES), or a TOML file (see the module docstring); None: the default table."""
    if name_or_path is None:
        return TABLES[DEFAULT_TABLE]
    if str(name_or_path) in TABLES:
        return TABLES[str(name_or_path)]
    path = Path(name_or_path)
    if path.suffix == ".toml" or path.exists():
        return load_energy_table(path)
    raise EnergyError(f"energy table {str(name_or_path)!r}: not a known table ({', '.join(TABLES)}) "
                      f"nor a TOML file")


def load_energy_table(path: str | Path) -> EnergyTable:
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except OSError as exc:
        raise EnergyError(f"energy table file {path}: cannot read ({exc.strerror})") from exc
    except tomllib.TOMLDecodeError as exc:
        raise EnergyError(f"energy table file {path}: not valid TOML ({exc})") from exc
    unknown = set(data) - {"base", "name", "pj"}
    if unknown:
        raise EnergyError(f"energy table file {path}: unknown key {sorted(unknown)[0]!r} (known: base, name, pj)")
    base = data.get("base", DEFAULT_TABLE)
    if base not in TABLES:
        raise EnergyError(f"energy table file {path}: base = {base!r}: not a known table ({', '.join(TABLES)})")
    name = data.get("name", f"{base}+{path.stem}")
    if not isinstance(name, str):
        raise EnergyError(f"energy table file {path}: name = {name!r}: expected a string")
    overrides = data.get("pj", {})
    if not isinstance(overrides, dict):
        raise EnergyError(f"energy table file {path}: pj must be a table of key = pJ, got {overrides!r}")
    for key, value in overrides.items():
        if key not in ENERGY_KEYS:
            raise EnergyError(f"energy table file {path}: [pj] unknown key {key!r} (known: {', '.join(ENERGY_KEYS)})")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
            raise EnergyError(f"energy table file {path}: [pj] {key} = {value!r}: expected a number of pJ >= 0")
    return TABLES[base].with_overrides(overrides, name=name, source=f"{path}")


def model_energy(counts: dict[str, float], table: EnergyTable | None = None, per: float = 1.0) -> dict:
    """Modelled energy of the counted operations, in pJ, with a breakdown by operation: ``network_*`` and
    ``plasticity_*`` arithmetic, ``mem_<memory>`` (reads + writes). ``per`` divides every figure (e.g. the
    number of samples the counts cover). Implementation-detail counters never enter."""
    table = table or TABLES[DEFAULT_TABLE]
    breakdown: dict[str, float] = {}
    for part in ("network", "plasticity"):
        for op in ARITHMETIC_KEYS:
            key = f"{part}_{op}"
            breakdown[key] = counts.get(key, 0) * table.pj[op] / per
    for memory in MEMORIES:
        words = counts.get(f"mem_{memory}_reads", 0) + counts.get(f"mem_{memory}_writes", 0)
        breakdown[f"mem_{memory}"] = words * table.pj[memory] / per
    return {
        "kind": MODELLED,
        "table": table.name,
        "total_pj": sum(breakdown.values()),
        "arithmetic_pj": sum(v for k, v in breakdown.items() if not k.startswith("mem_")),
        "memory_pj": sum(v for k, v in breakdown.items() if k.startswith("mem_")),
        "breakdown_pj": breakdown,
    }
