"""Verilog for the accelerator (generated, never committed) and the simulation wrapper."""

from __future__ import annotations

import re
from pathlib import Path

from amaranth.back import verilog

from .params import HardwareParams
from .top import Accelerator

__all__ = ["TOP_NAME", "generate_verilog", "write_verilog", "SIM_WRAPPER"]

TOP_NAME = "eprop_accel"

#: the testbench top: the accelerator with a timescale. The clock comes from the testbench (cocotb's Clock):
#: with a clock made inside the simulation (`always #5 clk = ~clk`), Verilator shows cocotb's RisingEdge
#: callbacks the values *after* the edge, and the AXI-Stream models then count a transfer where the design saw
#: none (or the reverse) whenever ready or valid changed at that edge: a throttled output stream lost and
#: duplicated words. Icarus shows the values before the edge either way.
SIM_WRAPPER = """`timescale 1ns/1ps
module eprop_tb(
  input wire clk,
  input wire rst,
{ports}
);
  eprop_accel dut(.clk(clk), .rst(rst){connections});
endmodule
"""


def generate_verilog(p: HardwareParams, name: str = TOP_NAME) -> str:
    top = Accelerator(p)
    return verilog.convert(top, name=name, emit_src=False)


def _port_decls(top_verilog: str) -> tuple[str, str]:
    """Port declarations and connections of the generated top module (read from its Verilog)."""
    body = top_verilog[top_verilog.index(f"module {TOP_NAME}("):]
    body = body[: body.index("endmodule")]
    decls, conns = [], []
    for line in body.splitlines():
        m = re.match(r"\s*(input|output)\s+(\[\d+:\d+\]\s+)?(\w+);", line)
        if not m or m.group(3) in ("clk", "rst"):
            continue
        decls.append(f"  {m.group(1)} wire {m.group(2) or ''}{m.group(3)}")
        conns.append(f", .{m.group(3)}({m.group(3)})")
    return ",\n".join(decls), "".join(conns)


def write_verilog(p: HardwareParams, directory: str | Path, wrapper: bool = True) -> list[Path]:
    """Write eprop_accel.v (and the simulation wrapper eprop_tb.v); returns the paths."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    top = directory / f"{TOP_NAME}.v"
    text = generate_verilog(p)
    top.write_text(text)
    paths = [top]
    if wrapper:
        decls, conns = _port_decls(text)
        tb = directory / "eprop_tb.v"
        tb.write_text(SIM_WRAPPER.format(ports=decls, connections=conns))
        paths.append(tb)
    return paths
