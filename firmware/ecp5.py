"""``eprop build ecp5``: the open flow to a real ECP5 bitstream (Yosys synth_ecp5 -> nextpnr-ecp5 -> ecppack), with
utilisation and the routed Fmax of the accelerator's clock, for an LFE5U-85F board (``BOARDS``): the ULX3S
(LFE5U-85F-6BG381C, speed grade 6, the default) or the OrangeCrab 85F (LFE5U-85F-8MG285C, speed grade 8). The two
are the same die; nextpnr's timing model of the speed-8 part is faster, and the same netlist routes ~25 % faster
on it.

Pins. The accelerator has 179 I/O bits (AXI4-Lite, two AXI4-Streams, irq) and no bus to talk to on this board, so
the bitstream wraps it in a pin-limited serialiser (``eprop_ecp5_top``): every core input comes from a register
loaded by a shift chain (4 header pins: shift clock, data in, latch, data out; synchronised into the core clock)
and every core output is captured into a register shifted back out. Nothing of the core can be optimised away
(every input is controllable, every output observable), all of its I/O paths are register to register inside the
fabric, and the serialiser adds only ~180 flip-flops and their muxes, outside the core's own paths. The core
clock comes from the board's oscillator (25 MHz on the ULX3S, 48 MHz on the OrangeCrab) through an EHXPLLL at the
target frequency (100 MHz by default, parameters from ``ecppll``), so the bitstream runs the core at the frequency
it was timed for. It is a real bitstream that loads on the board and clocks the accelerator; the serialiser is not
a usable host interface (a host would have to bit-bang AXI handshakes through it); the board path for training is
the PYNQ flow. (The OrangeCrab's bootloader loads a bitstream over USB DFU, with a DFU suffix: ``cp
eprop_orangecrab-85f.bit eprop.dfu && dfu-suffix -v 1209 -p 5af0 -a eprop.dfu && dfu-util -a 0 -D eprop.dfu``.)
"""

from __future__ import annotations

import json
import re
import shutil
import time
from pathlib import Path

from golden_model.budget import PARTS, fit, memory_map
from golden_model.config import NetworkConfig
from hdl.memory import KEEP_ATTR

from .netlist import absorb_bram_output_registers, absorb_dsp_input_registers, declare_collisions_undefined
from .report import classify_memories, memory_mapping, rtlil_memories, write_rtlil
from .sta import analyse, format_classes, parse_sdf
from .tools import BuildError, ToolTimeout, find_tool, run_tool, tool_version
from .verilog import accelerator_ports, build_info, hardware_params

__all__ = ["BOARDS", "ecp5_wrapper", "board_lpf", "build_ecp5", "format_ecp5", "parse_nextpnr_report", "timing_error",
           "pack_bitstream", "place_and_route", "pnr_timeout_message"]

TOP = "eprop_ecp5_top"

#: the LFE5U-85F boards: nextpnr's device, package and speed grade, the oscillator, and the wrapper's pins (ball,
#: I/O standard) from the boards' schematics and reference constraints. The button resets the core; led[0] shows
#: the PLL's lock, led[1] the core's interrupt; the four serial pins are header I/O.
BOARDS = {
    "ulx3s": {
        "name": "ulx3s", "device": "--85k", "package": "CABGA381", "speed": "6", "part": "lfe5u-85f",
        "part_number": "LFE5U-85F-6BG381C", "osc_mhz": 25.0,
        "pins": {"clk_osc": ("G2", "LVCMOS33"), "btn": ("R1", "LVCMOS33"), "ser_clk": ("B11", "LVCMOS33"),
                 "ser_in": ("C11", "LVCMOS33"), "ser_latch": ("A10", "LVCMOS33"), "ser_out": ("A11", "LVCMOS33"),
                 "led[0]": ("B2", "LVCMOS33"), "led[1]": ("C2", "LVCMOS33")},
        "pulldown": ("btn", "ser_clk", "ser_in", "ser_latch"), "active_low": (),
    },
    # OrangeCrab r0.2 / r0.2.1 85F: the user button is on the DDR3's 1.35 V bank (SSTL135_I, a pull-up on the
    # board, pressed low); the RGB LED's red and green are common-anode (lit low); the serial pins are the header's
    # IO_0, IO_1, IO_5 and IO_6 (3.3 V banks)
    "orangecrab-85f": {
        "name": "orangecrab-85f", "device": "--85k", "package": "CSFBGA285", "speed": "8", "part": "lfe5u-85f",
        "part_number": "LFE5U-85F-8MG285C", "osc_mhz": 48.0,
        "pins": {"clk_osc": ("A9", "LVCMOS33"), "btn": ("J17", "SSTL135_I"), "ser_clk": ("N17", "LVCMOS33"),
                 "ser_in": ("M18", "LVCMOS33"), "ser_latch": ("B10", "LVCMOS33"), "ser_out": ("B9", "LVCMOS33"),
                 "led[0]": ("K4", "LVCMOS33"), "led[1]": ("M3", "LVCMOS33")},
        "pulldown": ("ser_clk", "ser_in", "ser_latch"), "active_low": ("btn", "led"),
    },
}


def ecp5_wrapper(ports, core: str = "eprop_accel", pll: str = "eprop_pll", board: str = "ulx3s") -> str:
    """The board top: PLL, reset, the serialiser and the core (see the module docstring)."""
    low = BOARDS[board]["active_low"]
    pressed = "~btn" if "btn" in low else "btn"
    led_inv = "~" if "led" in low else ""
    ins = [p for p in ports if p.direction == "input" and p.name not in ("clk", "rst")]
    outs = [p for p in ports if p.direction == "output"]
    n_in = sum(p.width for p in ins)
    n_out = sum(p.width for p in outs)
    conns, pos = [], 0
    for p in ins:
        conns.append(f"    .{p.name}(in_reg[{pos + p.width - 1}:{pos}])")
        pos += p.width
    out_wires = []
    pos = 0
    for p in outs:
        conns.append(f"    .{p.name}(core_out[{pos + p.width - 1}:{pos}])")
        out_wires.append(p.name)
        pos += p.width
    irq_bit = None
    pos = 0
    for p in outs:
        if p.name == "irq":
            irq_bit = pos
        pos += p.width
    irq = f"core_out[{irq_bit}]" if irq_bit is not None else "1'b0"
    core_conns = ",\n".join(conns)
    return f"""// Generated by `eprop build ecp5`: the accelerator on the {board} behind a pin-limited serialiser.
// {n_in} core input bits come from in_reg (loaded from a shift chain on ser_latch), {n_out} core output bits
// are captured into a shift chain on ser_latch and shifted out on ser_out. The serial pins are synchronised
// into the core clock: everything runs in the one PLL clock domain.
`default_nettype none
module {TOP} (
  input wire clk_osc,
  input wire btn,
  input wire ser_clk,
  input wire ser_in,
  input wire ser_latch,
  output wire ser_out,
  output wire [1:0] led
);
  wire clk, locked;
  {pll} pll (.clkin(clk_osc), .clkout0(clk), .locked(locked));

  // synchronous reset, held while the PLL is unlocked or the button is pressed, distributed on a global network
  // (a DCCA, as the clock): routed through the fabric to the core's ~7,700 reset registers, it was one seed's longest
  // path (15.6 ns of wire from the synchroniser into one register's reset logic)
  reg [3:0] rst_sync;
  always @(posedge clk) rst_sync <= {{rst_sync[2:0], ~locked | {pressed}}};
  wire rst;
  DCCA rst_global (.CLKI(rst_sync[3]), .CE(1'b1), .CLKO(rst));

  reg [2:0] sclk_s, slat_s;
  reg [1:0] sin_s;
  always @(posedge clk) begin
    sclk_s <= {{sclk_s[1:0], ser_clk}};
    slat_s <= {{slat_s[1:0], ser_latch}};
    sin_s <= {{sin_s[0], ser_in}};
  end
  wire shift = sclk_s[1] & ~sclk_s[2];
  wire latch = slat_s[1] & ~slat_s[2];

  reg [{n_in - 1}:0] shift_in, in_reg;
  reg [{n_out - 1}:0] shift_out;
  wire [{n_out - 1}:0] core_out;
  always @(posedge clk) begin
    if (rst) begin
      in_reg <= {n_in}'d0;
    end else if (latch) begin
      in_reg <= shift_in;
    end
    if (shift) shift_in <= {{shift_in[{n_in - 2}:0], sin_s[1]}};
    if (latch) shift_out <= core_out;
    else if (shift) shift_out <= {{shift_out[{n_out - 2}:0], 1'b0}};
  end
  assign ser_out = shift_out[{n_out - 1}];
  assign led = {led_inv}{{locked, {irq}}};

  {core} core (
    .clk(clk),
    .rst(rst),
{core_conns}
  );
endmodule
`default_nettype wire
"""


def board_lpf(freq_mhz: float, board: str = "ulx3s") -> str:
    b = BOARDS[board]
    lines = [f"# Generated by `eprop build ecp5`: {b['name']} ({b['part_number']}) pins of {TOP}",
             f'FREQUENCY PORT "clk_osc" {b["osc_mhz"]:g} MHZ;',
             f"# the accelerator's clock (EHXPLLL output): {freq_mhz:g} MHz, propagated by nextpnr from the input",
             ]
    for port, (site, io_type) in b["pins"].items():
        pull = "DOWN" if port in b["pulldown"] else "NONE"
        lines.append(f'LOCATE COMP "{port}" SITE "{site}";')
        lines.append(f'IOBUF PORT "{port}" IO_TYPE={io_type} PULLMODE={pull};')
    return "\n".join(lines) + "\n"


def parse_nextpnr_report(report: dict) -> dict:
    """Utilisation, the Fmax of each clock and the critical paths' endpoints from nextpnr's --report JSON."""
    util = {k: {"used": v["used"], "available": v["available"]} for k, v in report.get("utilization", {}).items()}
    fmax = {k: {"achieved_mhz": v["achieved"], "constraint_mhz": v["constraint"]}
            for k, v in report.get("fmax", {}).items()}
    paths = []
    for cp in report.get("critical_paths", []):
        segs = cp.get("path", [])
        if not segs:
            continue
        total = sum(s.get("delay", 0.0) for s in segs)
        logic = sum(s.get("delay", 0.0) for s in segs if s.get("type") != "routing")
        nets = []
        for s in segs:
            if s.get("type") == "routing" and s.get("net"):
                stem = re.split(r"_TRELLIS|_LUT4|_CCU2C|_MULT18|_DP16KD|_DPR16X4|\$CCU2|\[|\.\d+\.\d+_D", s["net"])[0]
                if stem not in nets:
                    nets.append(stem)
        paths.append({"from": cp.get("from"), "to": cp.get("to"), "delay_ns": round(total, 3),
                      "logic_ns": round(logic, 3), "routing_ns": round(total - logic, 3),
                      "cells": len([s for s in segs if s.get("type") == "logic"]),
                      "start": segs[0].get("from", {}).get("cell"), "end": segs[-1].get("to", {}).get("cell"),
                      "through": nets})
    return {"utilisation": util, "fmax": fmax, "critical_paths": paths}


def _core_clock(fmax: dict) -> tuple[str, dict]:
    """The PLL output clock (the accelerator's) among nextpnr's clocks."""
    for name, v in fmax.items():
        if "clk_osc" not in name:
            return name, v
    if fmax:
        return next(iter(fmax.items()))
    raise BuildError("nextpnr reported no clock")


def pnr_timeout_message(error: str, log_text: str, seed: int) -> str:
    """What to tell a user whose place and route was stopped: where router2 was (its last iteration and overused
    wires, from the log) and what to try."""
    iters = re.findall(r"iter=(\d+) wires=\d+ overused=(\d+)", log_text)
    state = f"; router2 was at iteration {iters[-1][0]} with {iters[-1][1]} overused wires" if iters else ""
    return (f"{error}{state} (seed {seed}): place and route did not converge in time; try another --pnr-seed, or a "
            f"longer --pnr-timeout")


def place_and_route(nextpnr, seeds: list[int], out: Path, name: str, router: str = "router2", nice: int = 10,
                    timeout_min: float | None = 60.0, lanes: int = 1, board: str = "ulx3s") -> list[dict]:
    """nextpnr-ecp5 on out/<name>.json for each seed: with one seed in `out`, with several each in out/seed<N>.
    Returns per seed {"seed", "fmax_mhz", "nextpnr_s"}, or {"seed", "error", "exception"} when it failed (did not fit,
    did not route, ran longer than `timeout_min`)."""
    b = BOARDS[board]
    tried = []
    for s in seeds:
        where = out if len(seeds) == 1 else out / f"seed{s}"
        where.mkdir(exist_ok=True)
        up = "" if where == out else "../"
        pnr_args = [b["device"], "--package", b["package"], "--speed", b["speed"], "--json", f"{up}{name}.json",
                    "--lpf", f"{up}{board}.lpf", "--textcfg", f"{name}.config", "--report", "nextpnr_report.json",
                    "--sdf", "routed.sdf", "--seed", str(s), "--router", router, "--timing-allow-fail",
                    "-l", "nextpnr.log"]
        try:
            t = run_tool(nextpnr, pnr_args, where / "nextpnr.console", where, "nextpnr-ecp5 place and route", nice=nice,
                         timeout_s=None if timeout_min is None else 60 * timeout_min)
        except BuildError as exc:
            text = (where / "nextpnr.log").read_text(errors="replace") if (where / "nextpnr.log").exists() else ""
            if isinstance(exc, ToolTimeout):
                # router2 on a nearly full die sometimes does not converge (its overused wires grow from iteration
                # to iteration; seen with seed 2 of the nmnist build): say so, and what to try
                exc = ToolTimeout(pnr_timeout_message(str(exc), text, s))
            else:
                over = re.findall(r"(Design uses \d+ \S+ cells?, but device contains only \d+|Unable to place cell.*|"
                                  r"Failed to route.*)", text)
                exc = (BuildError(f"the design does not fit the LFE5U-85F: {over[0]} (lanes {lanes}); "
                                  f"report {out / 'report_ecp5.json'}, log {where / 'nextpnr.log'}") if over
                       else BuildError(f"seed {s}: {exc}"))
            tried.append({"seed": s, "error": str(exc), "exception": exc})
            continue
        fm = _core_clock(parse_nextpnr_report(json.loads((where / "nextpnr_report.json").read_text()))["fmax"])[1]
        tried.append({"seed": s, "fmax_mhz": fm["achieved_mhz"], "nextpnr_s": round(t, 1)})
    return tried


def build_ecp5(config: NetworkConfig, lanes: int, out: Path, freq_mhz: float = 100.0, seed: int | list[int] = 1,
               nice: int = 10, allow_timing_fail: bool = False, name: str | None = None,
               router: str = "router2", pnr_timeout_min: float | None = 60.0, board: str = "ulx3s") -> dict:
    """Run the flow in `out`; returns the report (also report_ecp5.json). BuildError when a tool fails, the design
    does not fit, place and route runs longer than `pnr_timeout_min` (None: no limit) or timing is not met (the
    report is written first). `seed`: nextpnr's seed, or a list of seeds: each is placed and routed, and the bitstream
    is made from the one with the highest routed Fmax (a seed that does not route or converge in time is skipped;
    the report lists every seed's result). `board`: a key of BOARDS; `name`: the files' base name (default
    eprop_<board>)."""
    if board not in BOARDS:
        raise BuildError(f"--board {board!r}: known ECP5 boards {', '.join(BOARDS)}")
    b = BOARDS[board]
    name = name or f"eprop_{board}"
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    yosys, nextpnr, ecppack, ecppll = (find_tool(t) for t in ("yosys", "nextpnr-ecp5", "ecppack", "ecppll"))
    times = {}
    t0 = time.monotonic()
    p = hardware_params(config, lanes)
    il = write_rtlil(p, out / "eprop_accel.il")
    text, collision_x = declare_collisions_undefined(il.read_text())
    il.write_text(text)
    ports = accelerator_ports(p)
    (out / f"{TOP}.v").write_text(ecp5_wrapper(ports, board=board))
    (out / f"{board}.lpf").write_text(board_lpf(freq_mhz, board))
    times["generate"] = round(time.monotonic() - t0, 1)
    run_tool(ecppll, ["-n", "eprop_pll", "--clkin_name", "clkin", "--clkout0_name", "clkout0", "-i",
                      f"{b['osc_mhz']:g}", "-o", f"{freq_mhz:g}", "-f", "eprop_pll.v"],
             out / "ecppll.log", out, "ecppll")
    pll_text = (out / "eprop_pll.v").read_text()
    m = re.search(r"achieved[^\d]*([\d.]+)\s*MHz", (out / "ecppll.log").read_text() + pll_text, re.I)
    pll_mhz = float(m.group(1)) if m else freq_mhz

    script = out / "synth_ecp5.ys"
    # The state registers of Amaranth's FSMs (`fsm_state`) one-hot and without their initial value: Yosys leaves a
    # register with one as it is (fsm_detect: "Register has an initialization value", and its `auto` encoding keeps
    # a packed binary one), so the sequencer's 41 states stayed a 6-bit register whose decoders sat at the head of
    # the nmnist build's longest paths. Nothing depends on the power-up value: the wrapper holds the core in reset
    # until the PLL locks, and the FSMs' reset is their initial state.
    # Registers marked KEEP (hdl/memory.py) are copies of one register, each by the block RAMs it drives: Yosys's
    # keep stops opt_merge from making them one again.
    script.write_text(f"read_rtlil {il.name}\nread_verilog eprop_pll.v {TOP}.v\n"
                      f"setattr -unset init -set fsm_encoding \"one-hot\" w:fsm_state\n"
                      f"select -set kept a:{KEEP_ATTR} %ci1:+[Q] t:$*dff* %i\nsetattr -set keep 1 @kept\n"
                      f"tee -q -o kept_registers.txt select -list @kept\n"
                      f"synth_ecp5 -top {TOP} -json {name}.json\ntee -q -o stat_ecp5.json stat -json\n")
    log = out / "synth_ecp5.log"
    times["yosys"] = round(run_tool(yosys, ["-q", "-l", log.name, "-s", script.name], out / "synth_ecp5.console",
                                    out, "yosys synth_ecp5", nice=nice), 1)
    # the registers behind block RAM reads moved into the RAMs, those in front of multipliers into the multipliers
    # (firmware/netlist.py), before place and route
    t0 = time.monotonic()
    netlist = json.loads((out / f"{name}.json").read_text())
    absorbed = absorb_bram_output_registers(netlist)
    multipliers = absorb_dsp_input_registers(netlist)
    (out / f"{name}.json").write_text(json.dumps(netlist))
    times["netlist"] = round(time.monotonic() - t0, 1)
    stat = json.loads((out / "stat_ecp5.json").read_text())
    cells = {k: int(v) for k, v in stat["design"]["num_cells_by_type"].items()}
    mems = classify_memories(rtlil_memories(il.read_text()), memory_mapping(log.read_text(errors="replace")))

    budget = fit(memory_map(config, _network(config), lanes=lanes), PARTS[b["part"]])
    base = {"flow": "yosys synth_ecp5 -> nextpnr-ecp5 -> ecppack", "board": b["name"], "device": b["part_number"],
            "lanes": lanes, "target_mhz": freq_mhz, "pll_mhz": pll_mhz, "seed": seed, "router": router,
            "synth_cells": cells, "collision_x_memories": collision_x, "bram_output_registers": absorbed,
            "dsp_input_registers": multipliers,
            "memories": mems, "ram_not_in_block_ram": [r["memory"] for r in mems if r["flag"]],
            "budget_estimate_ebr": budget["used"], "time_s": times, "build": build_info(config, p), "wrapper": TOP}
    # hard blocks the synthesised netlist needs beyond the device's: no place and route can fix that
    part = PARTS[b["part"]]
    need = {"EBR (DP16KD)": (cells.get("DP16KD", 0) + cells.get("PDPW16KD", 0), int(part.blocks)),
            "MULT18X18D": (cells.get("MULT18X18D", 0), part.dsps)}
    over = {k: v for k, v in need.items() if v[0] > v[1]}
    if over:
        (out / "report_ecp5.json").write_text(json.dumps({**base, "error": "does not fit", "over": over}, indent=2,
                                                         default=str) + "\n")
        raise BuildError("the design does not fit the LFE5U-85F: " + ", ".join(
            f"{k} {u} needed, {a} on the device" for k, (u, a) in over.items())
            + f" (lanes {lanes}; budget estimate {budget['used']:g} EBR); report {out / 'report_ecp5.json'}")
    seeds = [seed] if isinstance(seed, int) else list(seed)
    report = {**base, "tools": {"yosys": tool_version(yosys), "nextpnr": tool_version(nextpnr),
                                "ecppack": tool_version(ecppack)}}
    tried = place_and_route(nextpnr, seeds, out, name, router, nice, pnr_timeout_min, lanes, board)
    routed = [r for r in tried if "fmax_mhz" in r]
    report["seeds"] = [{k: v for k, v in r.items() if k != "exception"} for r in tried]
    if not routed:
        report["error"] = tried[0]["error"]
        (out / "report_ecp5.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
        raise tried[0]["exception"]
    best = max(routed, key=lambda r: r["fmax_mhz"])
    report["seed"] = best["seed"]
    times["nextpnr"] = best["nextpnr_s"] if len(seeds) == 1 else round(sum(r.get("nextpnr_s", 0) for r in tried), 1)
    if len(seeds) > 1:
        for f in (f"{name}.config", "nextpnr_report.json", "nextpnr.log", "routed.sdf"):
            shutil.copyfile(out / f"seed{best['seed']}" / f, out / f)
    parsed = parse_nextpnr_report(json.loads((out / "nextpnr_report.json").read_text()))
    clock, fm = _core_clock(parsed["fmax"])
    report.update(parsed)
    report["core_clock"] = clock
    report["fmax_mhz"] = fm["achieved_mhz"]
    report["timing_met"] = fm["achieved_mhz"] >= fm["constraint_mhz"]
    # every endpoint's slack at the target, by launch -> capture class (nextpnr names only the worst path)
    t0 = time.monotonic()
    report["timing_paths"] = analyse(parse_sdf((out / "routed.sdf").read_text()), 1000.0 / fm["constraint_mhz"])
    times["sta"] = round(time.monotonic() - t0, 1)
    report["bitstream"] = None
    if report["timing_met"] or allow_timing_fail:
        bit, t = pack_bitstream(ecppack, out, name, nice)
        times["ecppack"] = t
        report["bitstream"] = str(bit)
        report["bitstream_bytes"] = bit.stat().st_size
    (out / "report_ecp5.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    error = timing_error(report, allow_timing_fail)
    if error:
        raise BuildError(f"{error}; report {out / 'report_ecp5.json'}\n{format_ecp5(report)}")
    return report


def pack_bitstream(ecppack, out: Path, name: str, nice: int = 10) -> tuple[Path, float]:
    """ecppack: the routed textual configuration -> <name>.bit (compressed)."""
    t = run_tool(ecppack, ["--compress", "--input", f"{name}.config", "--bit", f"{name}.bit"], out / "ecppack.log",
                 out, "ecppack", nice=nice)
    return out / f"{name}.bit", round(t, 1)


def timing_error(report: dict, allow_timing_fail: bool = False) -> str | None:
    """The message a build whose routed clock misses its target ends with (None when timing is met or allowed)."""
    if report["timing_met"] or allow_timing_fail:
        return None
    return (f"timing not met: the accelerator's clock reaches {report['fmax_mhz']:.2f} MHz after routing, target "
            f"{report['target_mhz']:g} MHz; no bitstream written (--freq lower, or --allow-timing-fail to pack it "
            f"anyway)")


def _network(config):
    from golden_model.network import build_network  # noqa: PLC0415

    return build_network(config)


def format_ecp5(r: dict) -> str:
    lines = [f"ECP5 flow on {r['board']} ({r['device']}), lanes {r['lanes']}, "
             f"{r['build']['n_in']}-{r['build']['n_rec']}-{r['build']['n_out']} network, serialiser wrapper "
             f"{r['wrapper']}"]
    lines.append(f"{'resource':16s} {'used':>8s} {'available':>10s} {'%':>6s}")
    for k in ("TRELLIS_COMB", "TRELLIS_FF", "TRELLIS_RAMW", "DP16KD", "MULT18X18D", "TRELLIS_IO", "EHXPLLL"):
        if k in r["utilisation"]:
            u = r["utilisation"][k]
            lines.append(f"{k:16s} {u['used']:>8d} {u['available']:>10d} {100 * u['used'] / u['available']:>6.1f}")
    lines.append(f"block RAM: {r['utilisation'].get('DP16KD', {}).get('used', 0)} DP16KD (EBR); budget estimate "
                 f"{r['budget_estimate_ebr']:g} EBR")
    for m in r["memories"]:
        if m["kind"] != "block RAM" and m["bits"]:
            lines.append(f"  not in block RAM: {m['memory']} ({m['depth']}x{m['width']}, {m['bits'] / 1024:.1f} kbit"
                         f"{', ROM' if m.get('rom') else ''}) -> {m['mapped_to']}{'   <-- check' if m['flag'] else ''}")
    if "bram_output_registers" in r:
        a = r["bram_output_registers"]
        lines.append(f"  output registers moved into block RAM: {a['registers']} flip-flops, {a['ports']} read ports"
                     + "".join(f"; {n} left ({why})" for why, n in a["skipped"].items()))
    if "dsp_input_registers" in r:
        a = r["dsp_input_registers"]
        lines.append(f"  input registers moved into multipliers: {a['multipliers']} MULT18X18D, {a['registers']} "
                     f"flip-flops removed" + "".join(f"; {n} left ({why})" for why, n in a["skipped"].items()))
    lines.append(f"routed Fmax of {r['core_clock']}: {r['fmax_mhz']:.2f} MHz (target {r['target_mhz']:g} MHz, "
                 f"PLL {r['pll_mhz']:g} MHz, seed {r['seed']}): {'met' if r['timing_met'] else 'NOT MET'}")
    if len(r.get("seeds", [])) > 1:
        lines.append("  seeds: " + "; ".join(f"{x['seed']}: {x['fmax_mhz']:.2f} MHz" if "fmax_mhz" in x
                                             else f"{x['seed']}: {x['error'].splitlines()[0][:120]}"
                                             for x in r["seeds"]))
    for cp in r["critical_paths"][:3]:
        lines.append(f"  critical path {cp['from']} -> {cp['to']}: {cp['delay_ns']} ns ({cp['logic_ns']} logic, "
                     f"{cp['routing_ns']} routing, {cp['cells']} cells) {cp['start']} -> {cp['end']}")
        if cp["through"]:
            lines.append(f"    through {', '.join(cp['through'][:10])}")
    if r.get("timing_paths"):
        lines += format_classes(r["timing_paths"])
    lines.append("tools: " + "; ".join(f"{v}" for v in r["tools"].values()))
    lines.append("time (s): " + ", ".join(f"{k} {v}" for k, v in r["time_s"].items()))
    lines.append(f"bitstream: {r['bitstream']}" if r["bitstream"] else "bitstream: none")
    return "\n".join(lines)
