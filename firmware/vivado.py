"""``eprop build vivado``: a Vivado batch-mode project for a PYNQ board (PYNQ-Z2 or KV260) that builds the block
design, synthesises and implements it, and copies ``<name>.bit`` and ``<name>.hwh`` side by side for the pynq
driver (``pynq.Overlay("<name>.bit")`` finds the ``.hwh`` by its base name).

Block design: the processing system with the board preset; a PL clock (100 MHz by default) and a processor system
reset for everything; the AXI DMA in simple (direct register) mode with a 26-bit buffer length register, 32-bit
streams, MM2S -> accelerator ``s_axis`` and accelerator ``m_axis`` -> S2MM, its memory masters through a
SmartConnect into a high-performance PS port; the PS's general-purpose master through a SmartConnect to the DMA's
and the accelerator's AXI4-Lite registers and an AXI interrupt controller (accelerator ``irq``, DMA MM2S and S2MM
interrupts, as PYNQ expects them); the accelerator is the wrapper of ``eprop build verilog`` used as a module
reference, its interfaces inferred from the X_INTERFACE_INFO attributes. The address window of the accelerator is
the register span of the top (``hdl.top.ADDR_BITS``), its registers those of ``golden_model.hw_interface``
(``address_map.json`` lists them at their board addresses).

Vivado is not available where this project is developed: the TCL is generated and checked by tests, never run here.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

from golden_model.config import NetworkConfig
from golden_model.hw_interface import COUNTERS, CONTRACT_VERSION, MAGIC, Reg

from .tools import BuildError, find_tool, run_tool
from .verilog import IP_NAME, address_span, write_verilog_outputs

__all__ = ["BOARDS", "Board", "ACCEL_CELL", "DMA_CELL", "INTC_CELL", "DMA_LENGTH_BITS", "build_tcl", "address_map",
           "build_vivado"]

ACCEL_CELL = "eprop_accel_0"
DMA_CELL = "axi_dma_0"
INTC_CELL = "axi_intc_0"
DMA_LENGTH_BITS = 26
BD_NAME = "eprop"


@dataclass(frozen=True)
class Board:
    name: str
    part: str
    board_part_glob: str  # matched against get_board_parts (the latest installed version is used)
    connections: tuple[tuple[str, str], ...]  # (connector, board part glob) of a carrier card
    ps_vlnv: str
    ps_rule: str
    ps_space: str  # the PS master's address space (relative to the PS cell)
    ps_master: str
    ps_master_clk: str
    ps_hp: str
    ps_hp_clk: str
    pl_clk: str
    pl_resetn: str
    ps_irq: str
    dma_addr_width: int
    base: dict  # cell -> base address


def _zynq7_config(freq: float) -> dict:
    return {"PCW_USE_M_AXI_GP0": 1, "PCW_USE_S_AXI_HP0": 1, "PCW_S_AXI_HP0_DATA_WIDTH": 64,
            "PCW_FPGA0_PERIPHERAL_FREQMHZ": f"{freq:g}", "PCW_USE_FABRIC_INTERRUPT": 1, "PCW_IRQ_F2P_INTR": 1}


def _zynqmp_config(freq: float) -> dict:
    return {"PSU__USE__M_AXI_GP0": 1, "PSU__USE__M_AXI_GP1": 0, "PSU__USE__M_AXI_GP2": 0,
            "PSU__USE__S_AXI_GP2": 1, "PSU__SAXIGP2__DATA_WIDTH": 64, "PSU__FPGA_PL0_ENABLE": 1,
            "PSU__CRL_APB__PL0_REF_CTRL__FREQMHZ": f"{freq:g}", "PSU__USE__IRQ0": 1}


BOARDS = {
    "pynq-z2": Board("pynq-z2", "xc7z020clg400-1", "*pynq-z2*", (), "xilinx.com:ip:processing_system7",
                     "xilinx.com:bd_rule:processing_system7", "Data", "M_AXI_GP0", "M_AXI_GP0_ACLK",
                     "S_AXI_HP0", "S_AXI_HP0_ACLK", "FCLK_CLK0", "FCLK_RESET0_N", "IRQ_F2P", 32,
                     {ACCEL_CELL: 0x43C0_0000, DMA_CELL: 0x4040_0000, INTC_CELL: 0x4180_0000}),
    "kv260": Board("kv260", "xck26-sfvc784-2LV-c", "*kv260_som*", (("som240_1_connector", "*kv260_carrier*"),),
                   "xilinx.com:ip:zynq_ultra_ps_e", "xilinx.com:bd_rule:zynq_ultra_ps_e", "Data",
                   "M_AXI_HPM0_FPD", "maxihpm0_fpd_aclk", "S_AXI_HP0_FPD", "saxihp0_fpd_aclk", "pl_clk0",
                   "pl_resetn0", "pl_ps_irq0", 64,
                   {ACCEL_CELL: 0xA000_0000, DMA_CELL: 0xA001_0000, INTC_CELL: 0xA002_0000}),
}


def _ps_config(board: Board, freq: float) -> dict:
    return _zynq7_config(freq) if board.ps_vlnv.endswith("processing_system7") else _zynqmp_config(freq)


def address_map(board: Board) -> dict:
    """Where everything sits on the board: the cells' windows, and every register of the hardware contract at its
    board address."""
    base = board.base[ACCEL_CELL]
    regs = {name: base + value for name, value in vars(Reg).items() if not name.startswith("_")}
    counters = {name: base + Reg.COUNTERS + 8 * i for i, name in enumerate(COUNTERS)}
    return {
        "board": board.name, "contract_version": CONTRACT_VERSION, "id_value": MAGIC | CONTRACT_VERSION,
        "cells": {ACCEL_CELL: {"base": base, "range": address_span()},
                  DMA_CELL: {"base": board.base[DMA_CELL], "range": 0x1_0000},
                  INTC_CELL: {"base": board.base[INTC_CELL], "range": 0x1_0000}},
        "registers": regs, "counters": counters, "dma_length_bits": DMA_LENGTH_BITS,
    }


def _tcl_dict(d: dict) -> str:
    return " ".join(f"CONFIG.{k} {{{v}}}" for k, v in d.items())


def build_tcl(board: Board, name: str, freq_mhz: float = 100.0, jobs: int = 2) -> str:
    """The batch TCL: project, block design, synthesis, implementation, bitstream, .bit + .hwh copied to out/."""
    amap = address_map(board)
    span = address_span()
    last_reg = max([*amap["registers"].values(), *amap["counters"].values()]) + 4 - board.base[ACCEL_CELL]
    if last_reg > span:
        raise ValueError(f"the register map needs {last_reg} bytes, the accelerator's window is {span}")
    ps = "ps"
    cfg = _ps_config(board, freq_mhz)
    conn = "\n".join(
        f'set cp [lindex [get_board_parts -quiet -latest_file_version "{glob}"] end]\n'
        f'if {{$cp eq ""}} {{ error "eprop: board files for {glob} are not installed (Vivado: Tools > Vivado Store > '
        f'Boards)" }}\n'
        f'set_property board_connections [list {connector} $cp] [current_project]'
        for connector, glob in board.connections)
    seg = lambda cell, intf: f"[get_bd_addr_segs -of_objects [get_bd_intf_pins {cell}/{intf}]]"  # noqa: E731
    return f"""# Generated by `eprop build vivado --board {board.name}`: batch-mode Vivado build of the e-prop accelerator
# for {board.name} ({board.part}). Run:  vivado -mode batch -nojournal -source build.tcl
# Outputs in this folder: {name}.bit and {name}.hwh (same base name, for pynq.Overlay), utilization.rpt, timing.rpt.
# Hardware contract version {CONTRACT_VERSION}: accelerator registers at 0x{board.base[ACCEL_CELL]:08X} (+0x000 ID ..
# +0x{last_reg - 4:03X}), window {span} bytes; see address_map.json.
set here [file normalize [file dirname [info script]]]
set proj_dir "$here/vivado"
set name {name}
set jobs {jobs}

create_project -force {BD_NAME}_{board.name.replace("-", "_")} $proj_dir -part {board.part}
set bp [lindex [get_board_parts -quiet -latest_file_version "{board.board_part_glob}"] end]
if {{$bp eq ""}} {{ error "eprop: board files for {board.board_part_glob} are not installed (PYNQ-Z2: TUL's board files in Vivado's data/boards; KV260: Vivado Store > Boards)" }}
set_property board_part $bp [current_project]
{conn}

# the accelerator: generated Verilog + the wrapper with interface attributes, used as a module reference
add_files -norecurse [list "$here/src/eprop_accel.v" "$here/src/{IP_NAME}.v"]
update_compile_order -fileset sources_1

create_bd_design {BD_NAME}
set ps [create_bd_cell -type ip -vlnv {board.ps_vlnv} {ps}]
apply_bd_automation -rule {board.ps_rule} -config {{make_external "FIXED_IO, DDR" apply_board_preset "1" Master "Disable" Slave "Disable"}} $ps
set_property -dict [list {_tcl_dict(cfg)}] $ps

set accel [create_bd_cell -type module -reference {IP_NAME} {ACCEL_CELL}]
foreach busif {{s_axi s_axis m_axis}} {{
  if {{[llength [get_bd_intf_pins -quiet {ACCEL_CELL}/$busif]] != 1}} {{
    error "eprop: the accelerator's $busif interface was not inferred (X_INTERFACE_INFO attributes)"
  }}
}}

# AXI DMA, simple mode: no scatter-gather, {DMA_LENGTH_BITS}-bit buffer length register, 32-bit streams
set dma [create_bd_cell -type ip -vlnv xilinx.com:ip:axi_dma {DMA_CELL}]
set_property -dict [list CONFIG.c_include_sg {{0}} CONFIG.c_sg_length_width {{{DMA_LENGTH_BITS}}} \\
  CONFIG.c_sg_include_stscntrl_strm {{0}} CONFIG.c_m_axi_mm2s_data_width {{32}} CONFIG.c_m_axis_mm2s_tdata_width {{32}} \\
  CONFIG.c_m_axi_s2mm_data_width {{32}} CONFIG.c_s_axis_s2mm_tdata_width {{32}} CONFIG.c_mm2s_burst_size {{16}} \\
  CONFIG.c_s2mm_burst_size {{16}} CONFIG.c_addr_width {{{board.dma_addr_width}}}] $dma

set intc [create_bd_cell -type ip -vlnv xilinx.com:ip:axi_intc {INTC_CELL}]
set_property -dict [list CONFIG.C_IRQ_CONNECTION {{1}}] $intc
set irqs [create_bd_cell -type ip -vlnv xilinx.com:ip:xlconcat irq_concat]
set_property -dict [list CONFIG.NUM_PORTS {{3}}] $irqs

set ctrl [create_bd_cell -type ip -vlnv xilinx.com:ip:smartconnect axi_ctrl]
set_property -dict [list CONFIG.NUM_SI {{1}} CONFIG.NUM_MI {{3}}] $ctrl
set mem [create_bd_cell -type ip -vlnv xilinx.com:ip:smartconnect axi_mem]
set_property -dict [list CONFIG.NUM_SI {{2}} CONFIG.NUM_MI {{1}}] $mem
set rst [create_bd_cell -type ip -vlnv xilinx.com:ip:proc_sys_reset rst_pl]

# one clock ({freq_mhz:g} MHz PL clock) and its reset for everything
set clk [get_bd_pins {ps}/{board.pl_clk}]
foreach pin [list {ps}/{board.ps_master_clk} {ps}/{board.ps_hp_clk} {DMA_CELL}/s_axi_lite_aclk {DMA_CELL}/m_axi_mm2s_aclk \\
    {DMA_CELL}/m_axi_s2mm_aclk {INTC_CELL}/s_axi_aclk axi_ctrl/aclk axi_mem/aclk rst_pl/slowest_sync_clk {ACCEL_CELL}/clk] {{
  connect_bd_net $clk [get_bd_pins $pin]
}}
connect_bd_net [get_bd_pins {ps}/{board.pl_resetn}] [get_bd_pins rst_pl/ext_reset_in]
foreach pin [list {DMA_CELL}/axi_resetn {INTC_CELL}/s_axi_aresetn axi_ctrl/aresetn axi_mem/aresetn] {{
  connect_bd_net [get_bd_pins rst_pl/peripheral_aresetn] [get_bd_pins $pin]
}}
# the accelerator's reset is active high (X_INTERFACE_PARAMETER POLARITY ACTIVE_HIGH)
connect_bd_net [get_bd_pins rst_pl/peripheral_reset] [get_bd_pins {ACCEL_CELL}/rst]

# control: PS master -> DMA registers, accelerator registers, interrupt controller
connect_bd_intf_net [get_bd_intf_pins {ps}/{board.ps_master}] [get_bd_intf_pins axi_ctrl/S00_AXI]
connect_bd_intf_net [get_bd_intf_pins axi_ctrl/M00_AXI] [get_bd_intf_pins {ACCEL_CELL}/s_axi]
connect_bd_intf_net [get_bd_intf_pins axi_ctrl/M01_AXI] [get_bd_intf_pins {DMA_CELL}/S_AXI_LITE]
connect_bd_intf_net [get_bd_intf_pins axi_ctrl/M02_AXI] [get_bd_intf_pins {INTC_CELL}/s_axi]
# data: DMA masters -> PS high-performance port; streams through the accelerator
connect_bd_intf_net [get_bd_intf_pins {DMA_CELL}/M_AXI_MM2S] [get_bd_intf_pins axi_mem/S00_AXI]
connect_bd_intf_net [get_bd_intf_pins {DMA_CELL}/M_AXI_S2MM] [get_bd_intf_pins axi_mem/S01_AXI]
connect_bd_intf_net [get_bd_intf_pins axi_mem/M00_AXI] [get_bd_intf_pins {ps}/{board.ps_hp}]
connect_bd_intf_net [get_bd_intf_pins {DMA_CELL}/M_AXIS_MM2S] [get_bd_intf_pins {ACCEL_CELL}/s_axis]
connect_bd_intf_net [get_bd_intf_pins {ACCEL_CELL}/m_axis] [get_bd_intf_pins {DMA_CELL}/S_AXIS_S2MM]
# interrupts: accelerator irq (level, high while waiting for input), DMA MM2S, DMA S2MM -> AXI INTC -> PS
connect_bd_net [get_bd_pins {ACCEL_CELL}/irq] [get_bd_pins irq_concat/In0]
connect_bd_net [get_bd_pins {DMA_CELL}/mm2s_introut] [get_bd_pins irq_concat/In1]
connect_bd_net [get_bd_pins {DMA_CELL}/s2mm_introut] [get_bd_pins irq_concat/In2]
connect_bd_net [get_bd_pins irq_concat/dout] [get_bd_pins {INTC_CELL}/intr]
connect_bd_net [get_bd_pins {INTC_CELL}/irq] [get_bd_pins {ps}/{board.ps_irq}]

# address map (hardware contract: the accelerator's window is {span} bytes)
set space [get_bd_addr_spaces {ps}/{board.ps_space}]
assign_bd_address -offset 0x{board.base[ACCEL_CELL]:08X} -range 0x{span:X} -target_address_space $space {seg(ACCEL_CELL, "s_axi")} -force
assign_bd_address -offset 0x{board.base[DMA_CELL]:08X} -range 0x10000 -target_address_space $space {seg(DMA_CELL, "S_AXI_LITE")} -force
assign_bd_address -offset 0x{board.base[INTC_CELL]:08X} -range 0x10000 -target_address_space $space {seg(INTC_CELL, "s_axi")} -force
assign_bd_address
validate_bd_design
save_bd_design

set bd_file [get_files {BD_NAME}.bd]
generate_target all $bd_file
set wrapper [make_wrapper -files $bd_file -top]
add_files -norecurse $wrapper
set_property top {BD_NAME}_wrapper [current_fileset]
update_compile_order -fileset sources_1

launch_runs synth_1 -jobs $jobs
wait_on_run synth_1
if {{[get_property PROGRESS [get_runs synth_1]] ne "100%"}} {{ error "eprop: synthesis failed (see $proj_dir)" }}
launch_runs impl_1 -to_step write_bitstream -jobs $jobs
wait_on_run impl_1
if {{[get_property PROGRESS [get_runs impl_1]] ne "100%"}} {{ error "eprop: implementation failed (see $proj_dir)" }}

open_run impl_1
report_utilization -file "$here/utilization.rpt"
report_timing_summary -file "$here/timing.rpt"
set wns [get_property SLACK [get_timing_paths -max_paths 1 -nworst 1 -setup]]
set whs [get_property SLACK [get_timing_paths -max_paths 1 -nworst 1 -hold]]
puts "eprop: WNS $wns ns, WHS $whs ns at {freq_mhz:g} MHz"
if {{$wns < 0 || $whs < 0}} {{ error "eprop: timing not met at {freq_mhz:g} MHz: WNS $wns ns, WHS $whs ns (timing.rpt)" }}

# .bit and .hwh under one base name for pynq.Overlay
set bit [lindex [glob -nocomplain "$proj_dir/*.runs/impl_1/*.bit"] 0]
set hwh [lindex [glob -nocomplain "$proj_dir/*.gen/sources_1/bd/{BD_NAME}/hw_handoff/{BD_NAME}.hwh" \\
                                  "$proj_dir/*.srcs/sources_1/bd/{BD_NAME}/hw_handoff/{BD_NAME}.hwh"] 0]
if {{$bit eq "" || $hwh eq ""}} {{ error "eprop: no bitstream or hardware handoff found under $proj_dir" }}
file copy -force $bit "$here/$name.bit"
file copy -force $hwh "$here/$name.hwh"
puts "eprop: wrote $here/$name.bit and $here/$name.hwh"
"""


def build_vivado(config: NetworkConfig, lanes: int, board_name: str, out: Path, freq_mhz: float = 100.0,
                 run: bool = True, jobs: int = 2, name: str | None = None) -> dict:
    """Generate the Vivado build in `out` (src/ Verilog, build.tcl, address_map.json) and, with `run`, run it.
    Without Vivado on PATH the files are written and a BuildError says how to run them elsewhere."""
    if board_name not in BOARDS:
        raise ValueError(f"--board {board_name!r}: known boards {', '.join(BOARDS)}")
    board = BOARDS[board_name]
    name = name or f"eprop_{board.name.replace('-', '_')}"
    out = Path(out)
    src = out / "src"
    t0 = time.monotonic()
    written = write_verilog_outputs(config, lanes, src, part=board.part)
    tcl = out / "build.tcl"
    tcl.write_text(build_tcl(board, name, freq_mhz, jobs))
    amap = address_map(board)
    (out / "address_map.json").write_text(json.dumps(
        {**amap, "cells": {k: {"base": f"0x{v['base']:08X}", "range": v["range"]} for k, v in amap["cells"].items()},
         "registers": {k: f"0x{v:08X}" for k, v in amap["registers"].items()},
         "counters": {k: f"0x{v:08X}" for k, v in amap["counters"].items()}}, indent=2) + "\n")
    result = {"board": board.name, "tcl": tcl, "address_map": out / "address_map.json", "src": src,
              "verilog": written["verilog"], "wrapper": written["wrapper"],
              "generate_s": round(time.monotonic() - t0, 1), "bit": None, "hwh": None}
    if not run:
        return result
    try:
        vivado = find_tool("vivado")
    except BuildError as exc:
        raise BuildError(f"{exc}. The project files are written: run `vivado -mode batch -nojournal -source "
                         f"{tcl.name}` in {out} on a machine with Vivado") from None
    result["vivado_s"] = round(run_tool(vivado, ["-mode", "batch", "-nojournal", "-log", "vivado.log", "-source",
                                                 tcl.name], out / "vivado.console", out, "Vivado build"), 1)
    for ext in ("bit", "hwh"):
        path = out / f"{name}.{ext}"
        if not path.exists():
            raise BuildError(f"Vivado finished without {path.name}; see {out / 'vivado.log'}")
        result[ext] = path
    return result
