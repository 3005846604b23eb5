"""``eprop build report``: Yosys (YoWASP) synthesis for a Xilinx part, resources against the part's capacity.

The design is read by Yosys as RTLIL, which Amaranth writes from the same elaborated design as the Verilog of
``eprop build verilog`` (its Verilog is Yosys's ``write_verilog`` of that RTLIL). Reading the Verilog gives the
same netlist but takes Yosys's Verilog front end minutes on the memories' initial blocks.

Counts: LUTs (logic and LUTs used as memory), flip-flops, block RAM in BRAM36 equivalents (a RAMB18 is half of
one), DSPs and (UltraScale+) URAM, against the part's capacity from ``golden_model.budget.PARTS``, beside the
budget's BRAM estimate. Every memory of the design is listed with what Yosys mapped it to: a memory left in LUTs
or flip-flops is flagged, biggest first.
"""

from __future__ import annotations

import json
import math
import re
import time
from pathlib import Path

from golden_model.budget import PARTS, fit, memory_map
from golden_model.config import NetworkConfig

from .tools import find_tool, run_tool, tool_version
from .verilog import build_info, hardware_params

__all__ = ["XILINX_PARTS", "synth_xilinx", "xilinx_resources", "memory_mapping", "rtlil_memories",
           "format_report", "write_rtlil", "LIMITS"]

#: part name -> (synth_xilinx -family, the part's full name for Vivado)
XILINX_PARTS = {
    "xc7z020": ("xc7", "xc7z020clg400-1"),
    "xck26": ("xcup", "xck26-sfvc784-2LV-c"),
}
PART_ALIASES = {"xczu": "xck26", "kv260": "xck26", "pynq-z2": "xc7z020"}

#: default limits (per cent of the part): the issue's routability margins for LUT and BRAM, the part for the rest
LIMITS = {"lut": 70.0, "bram36": 90.0, "ff": 100.0, "dsp": 100.0, "uram": 100.0}

#: LUTs taken by one LUT-RAM / SRL cell
_LUTRAM = {"RAM16X1S": 1, "RAM32X1S": 1, "RAM64X1S": 1, "RAM128X1S": 2, "RAM256X1S": 4, "RAM512X1S": 8,
           "RAM16X1D": 2, "RAM32X1D": 2, "RAM64X1D": 2, "RAM128X1D": 4, "RAM256X1D": 8,
           "RAM32M": 4, "RAM64M": 4, "RAM32M16": 8, "RAM64M8": 8, "RAM64X8SW": 8,
           "SRL16E": 1, "SRLC16E": 1, "SRLC32E": 1}
_FF = ("FDRE", "FDSE", "FDCE", "FDPE", "LDCE", "LDPE", "FDRE_1", "FDSE_1", "FDCE_1", "FDPE_1")


def resolve_part(name: str) -> str:
    name = PART_ALIASES.get(name.lower(), name.lower())
    if name not in XILINX_PARTS:
        raise ValueError(f"--part {name!r}: known Xilinx parts {', '.join(XILINX_PARTS)} (aliases "
                         f"{', '.join(f'{k}={v}' for k, v in PART_ALIASES.items())}); the ECP5 report is "
                         f"`eprop build ecp5`")
    return name


def write_rtlil(p, path: Path, name: str = "eprop_accel") -> Path:
    from amaranth.back import rtlil  # noqa: PLC0415

    from hdl.top import Accelerator  # noqa: PLC0415

    path.write_text(rtlil.convert(Accelerator(p), name=name, emit_src=False))
    return path


def xilinx_resources(cells: dict[str, int]) -> dict:
    """Resource counts from a synth_xilinx cell census."""
    # INV and BUF cells become LUT1s in Vivado
    lut_logic = sum(n for c, n in cells.items() if re.fullmatch(r"LUT[1-6]|INV", c))
    lut_mem = sum(n * _LUTRAM[c] for c, n in cells.items() if c in _LUTRAM)
    ff = sum(n for c, n in cells.items() if c in _FF)
    ramb36 = sum(n for c, n in cells.items() if c.startswith("RAMB36") or c.startswith("FIFO36"))
    ramb18 = sum(n for c, n in cells.items() if c.startswith("RAMB18") or c.startswith("FIFO18"))
    dsp = sum(n for c, n in cells.items() if c.startswith("DSP48"))
    uram = sum(n for c, n in cells.items() if c.startswith("URAM"))
    carry = sum(n for c, n in cells.items() if c.startswith("CARRY"))
    muxf = sum(n for c, n in cells.items() if c.startswith("MUXF"))
    return {"lut": lut_logic + lut_mem, "lut_logic": lut_logic, "lut_memory": lut_mem, "ff": ff,
            "ramb36": ramb36, "ramb18": ramb18, "bram36": ramb36 + 0.5 * ramb18, "dsp": dsp, "uram": uram,
            "carry": carry, "muxf": muxf}


def rtlil_memories(rtlil_text: str) -> dict[str, dict]:
    """Every memory of the design (module.memory, as Yosys names it after flattening -> depth, width, whether
    anything writes it)."""
    mems = {}
    written = set()
    module = None
    in_memwr = False
    for line in rtlil_text.splitlines():
        m = re.match(r"module \\(\S+)", line)
        if m:
            module = m.group(1)
            continue
        m = re.match(r"\s*memory width (\d+) size (\d+)(?: offset \d+)? \\(\S+)", line)
        if m and module is not None:
            width, depth, name = int(m.group(1)), int(m.group(2)), m.group(3)
            mems[f"{module}.{name}"] = {"depth": depth, "width": width, "bits": depth * width}
            continue
        if re.match(r"\s*cell \$memwr", line):
            in_memwr = True
            continue
        if in_memwr:
            m = re.match(r'\s*parameter \\MEMID "\\\\(\S+)"', line)
            if m:
                written.add(f"{module}.{m.group(1)}")
                in_memwr = False
            elif line.strip() == "end":
                in_memwr = False
    for name, mem in mems.items():
        mem["rom"] = name not in written
    return mems


def memory_mapping(log_text: str) -> dict[str, str]:
    """memory_libmap's decisions from a Yosys log: memory -> cell type, "FF" (flip-flops and LUT muxes)."""
    out = {}
    for line in log_text.splitlines():
        m = re.match(r"mapping memory (\S+) via (\S+)", line)
        if m:
            out[m.group(1)] = m.group(2)
            continue
        m = re.match(r"using FF mapping for memory (\S+)", line)
        if m:
            out[m.group(1)] = "FF"
    return out


def _kind(cell: str) -> str:
    # ECP5: DP16KD (true dual port) and PDPW16KD (the same block, pseudo dual port, 36 bits wide)
    if "BLOCKRAM" in cell or "BRAM" in cell or "DP16KD" in cell or "PDPW16KD" in cell or "EBR" in cell:
        return "block RAM"
    if "URAM" in cell:
        return "UltraRAM"
    if "LUTRAM" in cell or "TRELLIS_DPR16X4" in cell or "DPR16X4" in cell:
        return "LUT RAM"
    return "flip-flops + LUTs"


#: a RAM this big (bits) in LUT RAM is worth a look (half a BRAM36 = one RAMB18); any RAM in flip-flops too
LUTRAM_FLAG_BITS = 18 * 1024
FF_FLAG_BITS = 1024


def _lookup(name: str, mapping: dict[str, str]) -> str | None:
    """The mapping of a memory named `top.path.mem` in the design, whatever the synthesised top is called."""
    if name in mapping:
        return mapping[name]
    rel = name[name.index("."):] if "." in name else "." + name
    hits = [k for k in mapping if k.endswith(rel)]
    return mapping[hits[0]] if len(hits) == 1 else None


def classify_memories(mems: dict[str, dict], mapping: dict[str, str]) -> list[dict]:
    """Per memory: size and what it became, biggest first, `flag` set on a RAM left in flip-flops or a large
    RAM in LUT RAM; anonymous ROMs Yosys extracted from case statements are summed into one row."""
    rows = []
    for name, mem in mems.items():
        cell = _lookup(name, mapping)
        kind = _kind(cell) if cell else "unknown"
        flag = not mem.get("rom", False) and (
            (kind == "flip-flops + LUTs" and mem["bits"] >= FF_FLAG_BITS)
            or (kind == "LUT RAM" and mem["bits"] >= LUTRAM_FLAG_BITS))
        rows.append({"memory": name, **mem, "mapped_to": cell or "not found in the log", "kind": kind,
                     "flag": flag})
    known = {k for k in mapping if any(k == n or k.endswith(n[n.index("."):]) for n in mems if "." in n)}
    anon = [n for n in mapping if n not in known]
    if anon:
        rows.append({"memory": f"({len(anon)} small ROMs Yosys extracted from case statements)", "depth": 0,
                     "width": 0, "bits": 0, "rom": True, "mapped_to": ", ".join(sorted(set(mapping[n] for n in anon))),
                     "kind": ", ".join(sorted(set(_kind(mapping[n]) for n in anon))), "flag": False})
    rows.sort(key=lambda r: -r["bits"])
    return rows


def _utilisation(res: dict, part) -> dict:
    cap = {"lut": part.luts, "ff": part.ffs, "bram36": part.blocks, "dsp": part.dsps, "uram": part.uram}
    return {k: {"used": res[k], "available": cap[k], "percent": (100.0 * res[k] / cap[k]) if cap[k] else
                (0.0 if res[k] == 0 else math.inf)} for k in cap}


def synth_xilinx(config: NetworkConfig, lanes: int, part_name: str, out: Path, uram: bool = False,
                 nice: int = 10, limits: dict | None = None) -> dict:
    """Synthesise the accelerator for a Xilinx part in `out`; returns the report (also written as report.json).
    `report["fits"]` says whether every resource is within `limits` (per cent; default LIMITS)."""
    part_name = resolve_part(part_name)
    family, full_part = XILINX_PARTS[part_name]
    part = PARTS[part_name]
    limits = {**LIMITS, **(limits or {})}
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    yosys = find_tool("yosys")
    t0 = time.monotonic()
    p = hardware_params(config, lanes)
    il = write_rtlil(p, out / "eprop_accel.il")
    t_gen = time.monotonic() - t0
    flags = f"-family {family} -top eprop_accel -flatten -noiopad -noclkbuf" + (" -uram" if uram else "")
    script = out / f"synth_{part_name}.ys"
    script.write_text(f"read_rtlil {il.name}\nsynth_xilinx {flags}\ntee -q -o stat_{part_name}.json stat -json\n")
    log = out / f"synth_{part_name}.log"
    # -l: the full log (the console's output after ABC is not kept); -q: nothing else on the console
    t_syn = run_tool(yosys, ["-q", "-l", log.name, "-s", script.name], out / f"synth_{part_name}.console",
                     out, f"yosys synth_xilinx for {part_name}", nice=nice)
    stat = json.loads((out / f"stat_{part_name}.json").read_text())
    cells = {k: int(v) for k, v in stat["design"]["num_cells_by_type"].items()}
    res = xilinx_resources(cells)
    util = _utilisation(res, part)
    mems = classify_memories(rtlil_memories(il.read_text()), memory_mapping(log.read_text(errors="replace")))
    not_bram = [r for r in mems if r["flag"]]
    budget = fit(memory_map(config, _network(config), lanes=lanes), part)
    over = {k: v["percent"] for k, v in util.items() if v["percent"] > limits.get(k, 100.0)}
    report = {
        "flow": "yosys synth_xilinx", "part": part_name, "vivado_part": full_part, "family": family,
        "lanes": lanes, "uram": uram, "resources": res, "utilisation": util, "limits_percent": limits,
        "fits": not over, "over_limit": over, "cells": cells, "memories": mems,
        "ram_not_in_block_ram": [r["memory"] for r in not_bram],
        "budget_estimate_bram36": budget["used"], "budget_estimate_fits": budget["fits"],
        "tool": tool_version(yosys), "synth_command": f"synth_xilinx {flags}",
        "time_s": {"generate": round(t_gen, 1), "yosys": round(t_syn, 1)},
        "build": build_info(config, p), "log": str(log),
    }
    (out / f"report_{part_name}.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    return report


def _network(config):
    from golden_model.network import build_network  # noqa: PLC0415

    return build_network(config)


def format_report(r: dict) -> str:
    u = r["utilisation"]
    lines = [f"Yosys synthesis for {r['part']} ({r['synth_command']}), lanes {r['lanes']}, "
             f"{r['build']['n_in']}-{r['build']['n_rec']}-{r['build']['n_out']} network",
             f"{'resource':10s} {'used':>10s} {'available':>10s} {'%':>7s} {'limit %':>8s}"]
    names = {"lut": "LUT", "ff": "FF", "bram36": "BRAM36", "dsp": "DSP", "uram": "URAM"}
    for k, label in names.items():
        if k == "uram" and not u[k]["available"]:
            continue
        lines.append(f"{label:10s} {u[k]['used']:>10g} {u[k]['available']:>10g} {u[k]['percent']:>7.1f} "
                     f"{r['limits_percent'][k]:>8g}")
    res = r["resources"]
    lines.append(f"  LUT = {res['lut_logic']} logic + {res['lut_memory']} as memory; BRAM36 = {res['ramb36']} "
                 f"RAMB36 + {res['ramb18']} RAMB18 / 2; {res['carry']} carry cells, {res['muxf']} MUXF")
    lines.append(f"budget estimate (`eprop budget`): {r['budget_estimate_bram36']:g} BRAM36; synthesised "
                 f"{res['bram36']:g} ({res['bram36'] - r['budget_estimate_bram36']:+g})")
    lines.append("memories (biggest first):")
    for m in r["memories"]:
        flag = ("   <-- RAM NOT in block RAM" if m["flag"] else
                "   (ROM in logic)" if m.get("rom") and m["kind"] == "flip-flops + LUTs" else "")
        size = f"{m['depth']}x{m['width']}" if m["depth"] else ""
        lines.append(f"  {m['memory']:40s} {size:>10s} {m['bits'] / 1024:8.1f} kbit  {m['mapped_to']}{flag}")
    lines.append(f"{r['tool']}; generate {r['time_s']['generate']} s, yosys {r['time_s']['yosys']} s; "
                 f"log {r['log']}")
    if r["fits"]:
        lines.append(f"fits {r['part']} within the limits")
    else:
        lines.append(f"DOES NOT FIT {r['part']}: " + ", ".join(
            f"{names[k]} {v:.1f} % > {r['limits_percent'][k]:g} %" for k, v in r["over_limit"].items()))
    return "\n".join(lines)
