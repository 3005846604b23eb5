"""firmware/: Verilog + Vivado wrapper, Yosys reports, the ECP5 open flow, the Vivado project (generated files only).

Fast tests check generated text and the parsers on hand-made inputs; the `slow` ones run the real tools (YoWASP
Yosys and nextpnr-ecp5, from the build extra) on the `tiny` preset.
"""

from __future__ import annotations

import json
import re

import pytest

from golden_model.config import load_preset
from golden_model.hw_interface import COUNTERS, CONTRACT_VERSION, MAGIC, Reg

amaranth = pytest.importorskip("amaranth")

from firmware import tools  # noqa: E402
from firmware.ecp5 import BOARDS as ECP5_BOARDS, board_lpf, ecp5_wrapper, parse_nextpnr_report, timing_error  # noqa: E402
from firmware.report import (classify_memories, format_report, memory_mapping, rtlil_memories,  # noqa: E402
                             xilinx_resources)
from firmware.verilog import BUSES, Port, accelerator_ports, address_span, xilinx_wrapper  # noqa: E402
from firmware.vivado import ACCEL_CELL, BOARDS, DMA_CELL, DMA_LENGTH_BITS, address_map, build_tcl  # noqa: E402
from hdl.top import ADDR_BITS  # noqa: E402
from host.cli import main  # noqa: E402


@pytest.fixture(scope="module")
def tiny_verilog(tmp_path_factory):
    out = tmp_path_factory.mktemp("verilog")
    assert main(["build", "verilog", "--preset", "tiny", "--out", str(out)]) == 0
    return out


# ---- eprop build verilog ----------------------------------------------------------------------------------------
def test_verilog_outputs_and_wrapper_ports_match_the_core(tiny_verilog):
    core = (tiny_verilog / "eprop_accel.v").read_text()
    wrapper = (tiny_verilog / "eprop_accel_ip.v").read_text()
    assert "module eprop_accel(" in core and "module eprop_accel_ip (" in wrapper
    decl = re.findall(r"^\s*(?:input|output) wire (?:\[\d+:0\] )?(\w+)", wrapper, re.M)
    core_ports = re.findall(r"^\s*(?:input|output)\s+(?:\[\d+:0\]\s+)?(\w+);", core[: core.index("endmodule")], re.M)
    assert sorted(decl) == sorted(core_ports) and len(core_ports) == 28
    # every port is connected by name in the instance
    for name in core_ports:
        assert f".{name}({name})" in wrapper
    info = json.loads((tiny_verilog / "build_info.json").read_text())
    assert info["contract_version"] == CONTRACT_VERSION and info["lanes"] == 1 and info["n_rec"] == 16


def test_wrapper_interface_attributes(tiny_verilog):
    text = (tiny_verilog / "eprop_accel_ip.v").read_text()
    blocks = re.findall(r"((?:\s*\(\*[^\n]*\*\)\n)+)\s*(input|output) wire (?:\[(\d+):0\] )?(\w+)", text)
    attrs = {name: a for a, _, _, name in blocks}
    assert len(attrs) == 28
    for name, a in attrs.items():
        assert "X_INTERFACE_INFO" in a, name
    for prefix in ("s_axi", "s_axis", "m_axis"):
        members = [n for n in attrs if n.startswith(prefix + "_")]
        vlnv = BUSES[prefix][0]
        for n in members:
            assert f'"{vlnv} {prefix} {n[len(prefix) + 1:].upper()}"' in attrs[n]
        # exactly one port of each bus carries the interface's parameters
        assert sum(f"XIL_INTERFACENAME {prefix}," in attrs[n] for n in members) == 1
    assert f"PROTOCOL AXI4LITE, DATA_WIDTH 32, ADDR_WIDTH {ADDR_BITS}," in text
    assert '"xilinx.com:signal:clock:1.0 clk CLK"' in attrs["clk"]
    assert "ASSOCIATED_BUSIF s_axi:s_axis:m_axis, ASSOCIATED_RESET rst" in attrs["clk"]
    assert '"xilinx.com:signal:reset:1.0 rst RST"' in attrs["rst"] and "POLARITY ACTIVE_HIGH" in attrs["rst"]
    assert '"xilinx.com:signal:interrupt:1.0 irq INTERRUPT"' in attrs["irq"]
    assert "SENSITIVITY LEVEL_HIGH" in attrs["irq"]
    assert "HAS_TLAST 1" in attrs["s_axis_tdata"] and "TDATA_NUM_BYTES 4" in attrs["m_axis_tdata"]
    tcl = (tiny_verilog / "package_ip.tcl").read_text()
    assert "ipx::package_project" in tcl and f"set_property range {address_span()}" in tcl


def test_wrapper_refuses_a_port_it_cannot_label():
    ports = [Port("clk", "input", 1), Port("rst", "input", 1), Port("debug_bus", "output", 8)]
    with pytest.raises(ValueError, match="debug_bus"):
        xilinx_wrapper(ports)


def test_accelerator_ports_follow_the_signature():
    from hdl.params import HardwareParams

    p = HardwareParams.from_config(load_preset("tiny"), lanes=2)
    ports = {q.name: q for q in accelerator_ports(p)}
    assert ports["s_axi_awaddr"].width == ADDR_BITS and ports["s_axi_awaddr"].direction == "input"
    assert ports["m_axis_tdata"].width == 32 and ports["m_axis_tdata"].direction == "output"
    assert address_span() == 1 << ADDR_BITS


def test_wrapper_elaborates_with_the_core_in_yosys(tiny_verilog, tmp_path):
    """Yosys reads the wrapper against the core (RTLIL) and finds every port: a renamed port fails here."""
    from firmware.report import write_rtlil
    from hdl.params import HardwareParams

    write_rtlil(HardwareParams.from_config(load_preset("tiny")), tmp_path / "core.il")
    (tmp_path / "w.v").write_text((tiny_verilog / "eprop_accel_ip.v").read_text())
    yosys = tools.find_tool("yosys")
    tools.run_tool(yosys, ["-q", "-p", "read_rtlil core.il; read_verilog w.v; hierarchy -check -top eprop_accel_ip"],
                   tmp_path / "log", tmp_path, "yosys hierarchy check")
    bad = (tiny_verilog / "eprop_accel_ip.v").read_text().replace(".s_axis_tlast(s_axis_tlast)",
                                                                  ".s_axis_tlst(s_axis_tlast)")
    (tmp_path / "w.v").write_text(bad)
    with pytest.raises(tools.BuildError, match="failed"):
        tools.run_tool(yosys, ["-q", "-p", "read_rtlil core.il; read_verilog w.v; hierarchy -check -top "
                               "eprop_accel_ip"], tmp_path / "log", tmp_path, "yosys hierarchy check")


def test_a_tool_that_runs_too_long_is_stopped_with_the_routers_state(tmp_path):
    """A place and route that does not converge ends with a ToolTimeout (a BuildError) after the limit, and the
    message says where router2 was and what to try."""
    import sys
    import time

    from firmware.ecp5 import pnr_timeout_message

    script = tmp_path / "slow_tool.py"
    script.write_text("import time\nprint('iter=7 wires=1 overused=12', flush=True)\ntime.sleep(30)\n")
    t0 = time.monotonic()
    with pytest.raises(tools.ToolTimeout, match="did not finish in 0.03 min and was stopped"):
        tools.run_tool(tools.Tool("python", sys.executable), [str(script)], tmp_path / "log", tmp_path, "slow tool",
                       timeout_s=1.8)
    assert time.monotonic() - t0 < 20
    assert issubclass(tools.ToolTimeout, tools.BuildError)
    log = ("Info:     iter=69 wires=411921 overused=614 overuse=616 archfail=NA\n"
           "Info:     iter=70 wires=412254 overused=682 overuse=685 archfail=NA\n")
    msg = pnr_timeout_message("nextpnr-ecp5 place and route did not finish in 60 min", log, 2)
    assert "router2 was at iteration 70 with 682 overused wires (seed 2)" in msg and "another --pnr-seed" in msg
    assert "router2 was" not in pnr_timeout_message("x", "", 1)


def test_several_seeds_keep_the_fastest_and_skip_those_that_fail(tmp_path):
    """place_and_route with seeds 1-4 and a stand-in for nextpnr-ecp5 that reaches 50 MHz with seed 1 and 58 MHz
    with seed 3, fails with seed 2 and does not converge in time with seed 4: every seed is tried in its own folder,
    and the results say which routed, how fast, and why the others did not."""
    import sys

    from firmware.ecp5 import place_and_route

    fake = tmp_path / "fake_nextpnr.py"
    fake.write_text(
        "import json, sys, time\n"
        "a = sys.argv[1:]\n"
        "seed = int(a[a.index('--seed') + 1])\n"
        "import os\n"
        "up = '../' if os.path.basename(os.getcwd()).startswith('seed') else ''\n"
        "assert a[a.index('--json') + 1] == up + 'd.json' and a[a.index('--lpf') + 1] == up + 'ulx3s.lpf'\n"
        "log = open(a[a.index('-l') + 1], 'w')\n"
        "if seed == 2:\n"
        "    log.write('ERROR: Failed to route net x\\n'); sys.exit(1)\n"
        "if seed == 4:\n"
        "    log.write('Info:     iter=9 wires=5 overused=40 overuse=41\\n'); log.flush(); time.sleep(30)\n"
        "fmax = {1: 50.0, 3: 58.0}[seed]\n"
        "json.dump({'fmax': {'$glbnet$clk': {'achieved': fmax, 'constraint': 100.0}}, 'utilization': {},\n"
        "           'critical_paths': []}, open(a[a.index('--report') + 1], 'w'))\n"
        "open(a[a.index('--textcfg') + 1], 'w').write(f'seed {seed}')\n")
    wrapper = tmp_path / "nextpnr"
    wrapper.write_text(f"#!/bin/sh\nexec {sys.executable} {fake} \"$@\"\n")
    wrapper.chmod(0o755)
    tried = place_and_route(tools.Tool("nextpnr-ecp5", str(wrapper)), [1, 2, 3, 4], tmp_path, "d", nice=0,
                            timeout_min=0.05)
    assert [t["seed"] for t in tried] == [1, 2, 3, 4]
    assert tried[0]["fmax_mhz"] == 50.0 and tried[2]["fmax_mhz"] == 58.0
    assert "does not fit" in tried[1]["error"] and "Failed to route" in tried[1]["error"]
    assert isinstance(tried[3]["exception"], tools.ToolTimeout)
    assert "iteration 9 with 40 overused wires (seed 4)" in tried[3]["error"]
    assert (tmp_path / "seed3" / "d.config").read_text() == "seed 3"
    # one seed (the default): in the output folder itself
    one = tmp_path / "one"
    one.mkdir()
    assert place_and_route(tools.Tool("nextpnr-ecp5", str(wrapper)), [3], one, "d", nice=0)[0]["fmax_mhz"] == 58.0
    assert (one / "d.config").read_text() == "seed 3" and not (one / "seed3").exists()


# ---- eprop build vivado -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("board", sorted(BOARDS))
def test_vivado_address_map_is_the_hardware_contract(board):
    amap = address_map(BOARDS[board])
    base = BOARDS[board].base[ACCEL_CELL]
    assert amap["cells"][ACCEL_CELL] == {"base": base, "range": 1 << ADDR_BITS}
    assert amap["registers"]["ID"] == base + Reg.ID and amap["registers"]["WEIGHT_DATA"] == base + Reg.WEIGHT_DATA
    assert amap["registers"]["COUNTERS"] == base + 0x100
    for i, name in enumerate(COUNTERS):
        assert amap["counters"][name] == base + Reg.COUNTERS + 8 * i
    top = max(amap["counters"].values()) + 8  # the high word of the last counter
    assert top - base <= amap["cells"][ACCEL_CELL]["range"]
    assert amap["id_value"] == MAGIC | CONTRACT_VERSION
    # windows do not overlap
    spans = sorted((c["base"], c["base"] + c["range"]) for c in amap["cells"].values())
    assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:]))


@pytest.mark.parametrize("board", sorted(BOARDS))
def test_vivado_tcl(board):
    b = BOARDS[board]
    tcl = build_tcl(b, "eprop_x", freq_mhz=100.0)
    assert f"-part {b.part}" in tcl and b.board_part_glob in tcl and "apply_board_preset" in tcl
    assert f"create_bd_cell -type module -reference eprop_accel_ip {ACCEL_CELL}" in tcl
    # the .hwh then types the cell xilinx.com:module_ref:eprop_accel_ip:1.0: a VLNV the PYNQ driver binds to
    from golden_model.hw_interface import IP_VLNVS  # noqa: PLC0415
    assert "xilinx.com:module_ref:eprop_accel_ip:1.0" in IP_VLNVS
    # AXI DMA in simple mode with a 26-bit length register
    assert DMA_LENGTH_BITS == 26
    assert "CONFIG.c_include_sg {0}" in tcl and "CONFIG.c_sg_length_width {26}" in tcl
    assert f"xilinx.com:ip:axi_dma {DMA_CELL}" in tcl
    # streams through the accelerator, AXI-Lite control, active-high reset, interrupt
    assert f"{DMA_CELL}/M_AXIS_MM2S] [get_bd_intf_pins {ACCEL_CELL}/s_axis]" in tcl
    assert f"{ACCEL_CELL}/m_axis] [get_bd_intf_pins {DMA_CELL}/S_AXIS_S2MM]" in tcl
    assert f"[get_bd_intf_pins axi_ctrl/M00_AXI] [get_bd_intf_pins {ACCEL_CELL}/s_axi]" in tcl
    assert f"rst_pl/peripheral_reset] [get_bd_pins {ACCEL_CELL}/rst]" in tcl
    assert f"{ACCEL_CELL}/irq]" in tcl and b.ps_irq in tcl
    freq_key = "PCW_FPGA0_PERIPHERAL_FREQMHZ" if board == "pynq-z2" else "PSU__CRL_APB__PL0_REF_CTRL__FREQMHZ"
    assert f"CONFIG.{freq_key} {{100}}" in tcl and f"get_bd_pins ps/{b.pl_clk}]" in tcl
    # the accelerator's window at its address, the register span from the top
    m = re.search(r"assign_bd_address -offset 0x([0-9A-F]+) -range 0x([0-9A-F]+) .*"
                  rf"{ACCEL_CELL}/s_axi", tcl)
    assert m and int(m.group(1), 16) == b.base[ACCEL_CELL] and int(m.group(2), 16) == 1 << ADDR_BITS
    # the run fails on timing, and .bit / .hwh land under one base name
    assert "if {$wns < 0 || $whs < 0} { error" in tcl
    assert 'file copy -force $bit "$here/$name.bit"' in tcl and 'file copy -force $hwh "$here/$name.hwh"' in tcl
    assert "set name eprop_x" in tcl and "launch_runs impl_1 -to_step write_bitstream" in tcl


def test_vivado_cli_writes_files_and_fails_clearly_without_vivado(tmp_path, capsys, monkeypatch):
    out = tmp_path / "viv"
    assert main(["build", "vivado", "--preset", "tiny", "--board", "kv260", "--out", str(out), "--tcl-only"]) == 0
    assert (out / "build.tcl").exists() and (out / "src" / "eprop_accel.v").exists()
    assert (out / "src" / "eprop_accel_ip.v").exists()
    amap = json.loads((out / "address_map.json").read_text())
    assert amap["registers"]["CONTROL"] == f"0x{BOARDS['kv260'].base[ACCEL_CELL] + Reg.CONTROL:08X}"
    monkeypatch.setitem(tools.TOOLS, "vivado", (("no-such-vivado-binary",), "install Vivado"))
    code = main(["build", "vivado", "--preset", "tiny", "--board", "pynq-z2", "--out", str(tmp_path / "v2")])
    assert code != 0
    err = capsys.readouterr().err
    assert "vivado not found" in err and "build.tcl" in err
    assert (tmp_path / "v2" / "build.tcl").exists()


def test_bad_build_arguments_are_errors(tmp_path, capsys):
    assert main(["build", "vivado", "--preset", "tiny", "--board", "zedboard", "--out", str(tmp_path)]) == 2
    assert "known boards" in capsys.readouterr().err
    assert main(["build", "report", "--preset", "tiny", "--part", "xc7a35t", "--out", str(tmp_path)]) == 2
    assert "known Xilinx parts" in capsys.readouterr().err
    assert main(["build", "verilog", "--preset", "tiny", "--lanes", "3", "--out", str(tmp_path)]) == 2
    assert "--lanes 3" in capsys.readouterr().err


def test_missing_tool_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(tools.TOOLS, "yosys", (("no-such-yosys",), "pip install it"))
    with pytest.raises(tools.BuildError, match="yosys not found.*pip install it"):
        tools.find_tool("yosys")


# ---- report parsing -----------------------------------------------------------------------------------------------
def test_xilinx_resource_counts():
    cells = {"LUT1": 1, "LUT2": 2, "LUT6": 10, "INV": 3, "RAM64M": 2, "RAM32X1D": 1, "SRLC32E": 1, "FDRE": 5,
             "FDSE": 1, "RAMB36E1": 3, "RAMB18E1": 3, "DSP48E1": 4, "CARRY4": 7, "MUXF7": 2}
    r = xilinx_resources(cells)
    assert r["lut_logic"] == 16 and r["lut_memory"] == 4 * 2 + 2 + 1 and r["lut"] == 27
    assert r["ff"] == 6 and r["bram36"] == 4.5 and r["dsp"] == 4 and r["carry"] == 7


RTLIL = """module \\top.core
  memory width 28 size 47420 \\syn
  memory width 18 size 375 \\rom_alpha
  memory width 50 size 80 \\grp
  memory width 49 size 16 \\nstate
  cell $memwr_v2 $1
    parameter \\MEMID "\\\\syn"
  end
  cell $memwr_v2 $2
    parameter \\MEMID "\\\\grp"
  end
  cell $memwr_v2 $3
    parameter \\MEMID "\\\\nstate"
  end
end
"""
LOG = """mapping memory top.core.syn via $__XILINX_BLOCKRAM_TDP_
using FF mapping for memory top.core.rom_alpha
using FF mapping for memory top.core.grp
mapping memory top.core.nstate via $__XILINX_LUTRAM_SDP_
using FF mapping for memory top.$auto$proc_rom.cc:155:do_switch$1
"""


def test_memory_mapping_flags_rams_left_in_logic():
    mems = rtlil_memories(RTLIL)
    assert mems["top.core.syn"] == {"depth": 47420, "width": 28, "bits": 47420 * 28, "rom": False}
    assert mems["top.core.rom_alpha"]["rom"] and not mems["top.core.grp"]["rom"]
    rows = {r["memory"]: r for r in classify_memories(mems, memory_mapping(LOG))}
    assert rows["top.core.syn"]["kind"] == "block RAM" and not rows["top.core.syn"]["flag"]
    assert rows["top.core.grp"]["kind"] == "flip-flops + LUTs" and rows["top.core.grp"]["flag"]  # 4 kbit RAM in FFs
    assert not rows["top.core.rom_alpha"]["flag"]  # a ROM in logic is Yosys's choice
    assert rows["top.core.nstate"]["kind"] == "LUT RAM" and not rows["top.core.nstate"]["flag"]  # small
    assert any("small ROMs" in k for k in rows)
    # names are matched whatever the synthesised top is called (the ECP5 flow wraps the core)
    ecp5 = {r["memory"]: r for r in classify_memories(mems, memory_mapping(LOG.replace("top.core.", "board.core.core.")))}
    assert ecp5["top.core.syn"]["kind"] == "block RAM"
    pdp = memory_mapping("mapping memory top.core.grp via $__PDPW16KD_\n")  # ECP5's 36-bit pseudo dual port EBR
    assert {r["memory"]: r for r in classify_memories(mems, pdp)}["top.core.grp"]["kind"] == "block RAM"


def test_format_report_says_when_it_does_not_fit():
    from firmware.report import LIMITS

    util = {k: {"used": 10, "available": 100, "percent": 10.0} for k in ("lut", "ff", "bram36", "dsp", "uram")}
    util["lut"] = {"used": 80, "available": 100, "percent": 80.0}
    r = {"part": "xc7z020", "synth_command": "synth_xilinx", "lanes": 1, "utilisation": util, "limits_percent": LIMITS,
         "resources": {"lut_logic": 80, "lut_memory": 0, "ramb36": 10, "ramb18": 0, "bram36": 10, "carry": 0,
                       "muxf": 0},
         "budget_estimate_bram36": 9.5, "memories": [], "tool": "Yosys", "time_s": {"generate": 1, "yosys": 2},
         "log": "x", "fits": False, "over_limit": {"lut": 80.0}, "build": {"n_in": 1, "n_rec": 2, "n_out": 3}}
    text = format_report(r)
    assert "DOES NOT FIT xc7z020: LUT 80.0 % > 70 %" in text and "(+0.5)" in text


NEXTPNR = {
    "utilization": {"TRELLIS_COMB": {"used": 100, "available": 83640}, "DP16KD": {"used": 3, "available": 208}},
    "fmax": {"$glbnet$clk_osc$TRELLIS_IO_IN": {"achieved": 400.0, "constraint": 25.0},
             "$glbnet$clk": {"achieved": 87.5, "constraint": 100.0}},
    "critical_paths": [{"from": "posedge $glbnet$clk", "to": "posedge $glbnet$clk", "path": [
        {"type": "clk-to-q", "from": {"cell": "core.a_TRELLIS_FF_Q", "port": "CLK"}, "to": {"cell": "x"},
         "delay": 0.5},
        {"type": "routing", "net": "core.core.g_cur_LUT4_Z[2]", "from": {"cell": "x"}, "to": {"cell": "y"},
         "delay": 1.0},
        {"type": "logic", "from": {"cell": "y"}, "to": {"cell": "core.b_TRELLIS_FF_Q"}, "delay": 0.25}]}],
}


def test_nextpnr_report_and_timing_verdict():
    from firmware.ecp5 import _core_clock

    r = parse_nextpnr_report(NEXTPNR)
    name, fm = _core_clock(r["fmax"])
    assert name == "$glbnet$clk" and fm["achieved_mhz"] == 87.5
    cp = r["critical_paths"][0]
    assert cp["delay_ns"] == 1.75 and cp["routing_ns"] == 1.0 and cp["through"] == ["core.core.g_cur"]
    report = {"timing_met": False, "fmax_mhz": 87.5, "target_mhz": 100.0}
    assert "timing not met" in timing_error(report) and "87.50 MHz" in timing_error(report)
    assert timing_error(report, allow_timing_fail=True) is None
    assert timing_error({**report, "timing_met": True}) is None


SDF = r"""(DELAYFILE
  (SDFVERSION "3.0")
  (DIVIDER /)
  (TIMESCALE 1ps)
  (CELL
    (CELLTYPE "top")
    (INSTANCE )
    (DELAY
      (ABSOLUTE
        (INTERCONNECT \$gbuf\$clk/CLKO core.core.a_TRELLIS_FF_Q/CLK (0:0:0) (0:0:0))
        (INTERCONNECT \$gbuf\$clk/CLKO core.core.b_TRELLIS_FF_Q_3/CLK (0:0:0) (0:0:0))
        (INTERCONNECT core.core.a_TRELLIS_FF_Q/Q lut/A (1000:1500:2000) (1000:1500:2000))
        (INTERCONNECT core.core.lane0.syn_b2s1.0.4/DOA0 lut/B (3000:3500:4000) (3000:3500:4000))
        (INTERCONNECT lut/Z core.core.b_TRELLIS_FF_Q_3/M (500:700:1000) (500:700:1000))
        (INTERCONNECT lut/Z core.core.c\[2\]_TRELLIS_FF_Q/M (100:100:100) (100:100:100))
        (INTERCONNECT core.core.a_TRELLIS_FF_Q/Q core.core.d_TRELLIS_FF_Q/M (100:100:100) (100:100:100))
      )
    )
  )
  (CELL
    (CELLTYPE "TRELLIS_FF")
    (INSTANCE core.core.a_TRELLIS_FF_Q)
    (DELAY (ABSOLUTE (IOPATH CLK Q (400:450:500) (400:450:500))))
  )
  (CELL
    (CELLTYPE "DP16KD")
    (INSTANCE core.core.lane0.syn_b2s1.0.4)
    (DELAY (ABSOLUTE (IOPATH CLKA DOA0 (5000:5500:5830) (5000:5500:5830))))
    (TIMINGCHECK (SETUPHOLD (posedge ADA5) (posedge CLKA) (0:0:200) (0:0:0)))
  )
  (CELL
    (CELLTYPE "TRELLIS_COMB")
    (INSTANCE lut)
    (DELAY (ABSOLUTE (IOPATH A Z (200:300:400) (200:300:400)) (IOPATH B Z (200:300:420) (200:300:420))))
  )
  (CELL
    (CELLTYPE "TRELLIS_FF")
    (INSTANCE core.core.b_TRELLIS_FF_Q_3)
    (TIMINGCHECK (SETUPHOLD (posedge M) (posedge CLK) (0:0:300) (0:0:0))
      (SETUPHOLD (negedge M) (posedge CLK) (0:0:300) (0:0:0)))
  )
  (CELL
    (CELLTYPE "TRELLIS_FF")
    (INSTANCE core.core.c\[2\]_TRELLIS_FF_Q)
    (TIMINGCHECK (SETUPHOLD (posedge M) (posedge CLK) (0:0:100) (0:0:0)))
  )
  (CELL
    (CELLTYPE "TRELLIS_FF")
    (INSTANCE core.core.d_TRELLIS_FF_Q)
    (TIMINGCHECK (SETUPHOLD (posedge M) (posedge CLK) (0:0:100) (0:0:0)))
  )
)
"""


def test_static_timing_over_the_sdf_finds_every_failing_endpoint_and_its_launch():
    from firmware.sta import analyse, parse_sdf, signal_class

    g = parse_sdf(SDF)
    assert g.launch == {"core.core.a_TRELLIS_FF_Q/Q": 0.5, "core.core.lane0.syn_b2s1.0.4/DOA0": 5.83}
    # the clock network is not a data path
    assert not any(b.endswith("/CLK") for sinks in g.edges.values() for b, _ in sinks)
    t = analyse(g, 10.0)
    # b: the block RAM's path 5.83 + 4.0 + 0.42 + 1.0 = 11.25 (the flip-flop's: 0.5 + 2.0 + 0.4 + 1.0 = 3.9), setup
    # 0.3: slack -1.55; c: 5.83 + 4.0 + 0.42 + 0.1 + 0.1 = 10.45: -0.45; d: 0.5 + 0.1 + 0.1: 9.3
    assert t["endpoints"] == 3 and t["failing_endpoints"] == 2 and t["worst_slack_ns"] == -1.55
    assert t["failing_by_slack_ns"] == {"< -6": 0, "< -4": 0, "< -2": 0, "< -1": 1, "< 0": 2}
    assert [(c["from"], c["to"], c["endpoints"], c["worst_slack_ns"]) for c in t["classes"]] == [
        ("lane0.syn (block RAM banks)", "b", 1, -1.55), ("lane0.syn (block RAM banks)", "c", 1, -0.45)]
    # at 12 ns nothing fails
    assert analyse(g, 12.0)["failing_endpoints"] == 0
    assert signal_class("core.core.lane0.grad.0.98$DPRAM_COMB1/WD0") == "lane0.grad (RAM)"
    # a combinational loop is an error, not a silent underestimate
    sink = "(INTERCONNECT lut/Z core.core.b_TRELLIS_FF_Q_3/M"
    loop = SDF.replace(sink, "(INTERCONNECT lut/Z lut/A (1:1:1) (1:1:1))\n        " + sink)
    with pytest.raises(ValueError, match="combinational loop"):
        analyse(parse_sdf(loop), 10.0)


def _bram_netlist(ff_overrides: dict | None = None) -> dict:
    """A DP16KD whose port B drives 4 bits, each into its own flip-flop (bits: clk 2, ce 3, rst 4, DO 10-13, Q 20-23);
    port A only writes. `ff_overrides`: {flip-flop index: {"parameters"/"connections": changes}}."""
    def ff(i):
        cell = {"type": "TRELLIS_FF", "port_directions": {"CLK": "input", "LSR": "input", "CE": "input",
                                                          "DI": "input", "Q": "output"},
                "parameters": {"CEMUX": "CE", "CLKMUX": "CLK", "GSR": "DISABLED", "LSRMUX": "LSR", "REGSET": "RESET"},
                "connections": {"CLK": [2], "LSR": ["0"], "CE": [3], "DI": [10 + i], "Q": [20 + i]}}
        for part, changes in (ff_overrides or {}).get(i, {}).items():
            cell[part].update(changes)
        return cell

    ram_conns = {"CLKA": [2], "CLKB": [2], "WEA": [5], "RSTA": ["0"], "RSTB": ["0"], "OCEA": ["1"], "OCEB": ["1"],
                 **{f"DOB{i}": [10 + i] for i in range(4)}, **{f"DOA{i}": [30 + i] for i in range(4)}}
    ram = {"type": "DP16KD", "parameters": {"REGMODE_A": "NOREG", "REGMODE_B": "NOREG", "RESETMODE": "ASYNC"},
           "port_directions": {k: "output" if k.startswith("DO") else "input" for k in ram_conns},
           "connections": ram_conns}
    return {"modules": {"top": {
        "attributes": {"top": "00000000000000000000000000000001"},
        "ports": {"clk": {"direction": "input", "bits": [2]}, "ce": {"direction": "input", "bits": [3]},
                  "q": {"direction": "output", "bits": [20, 21, 22, 23]}},
        "cells": {"ram": ram, **{f"ff{i}": ff(i) for i in range(4)}},
        "netnames": {"ram_do": {"bits": [10, 11, 12, 13]}, "q": {"bits": [20, 21, 22, 23]}}}}}


def test_block_ram_output_registers_move_into_the_ram_only_when_nothing_changes():
    import copy

    from firmware.netlist import absorb_bram_output_registers

    n = _bram_netlist()
    assert absorb_bram_output_registers(n) == {"ports": 1, "registers": 4, "skipped": {}}
    top = n["modules"]["top"]
    ram = top["cells"]["ram"]
    assert ram["parameters"]["REGMODE_B"] == "OUTREG" and ram["parameters"]["REGMODE_A"] == "NOREG"
    # each DO pin now drives its flip-flop's output net; the flip-flops' enable is the output register's
    assert [ram["connections"][f"DOB{i}"] for i in range(4)] == [[20], [21], [22], [23]]
    assert ram["connections"]["OCEB"] == [3] and ram["connections"]["OCEA"] == ["1"]
    assert set(top["cells"]) == {"ram"} and top["netnames"]["ram_do"]["bits"] == ["x"] * 4
    # a second run finds the register in use
    assert absorb_bram_output_registers(n) == {"ports": 0, "registers": 0, "skipped": {"output register in use": 1}}

    # always enabled flip-flops: OCE stays 1
    n = _bram_netlist({i: {"parameters": {"CEMUX": "1"}} for i in range(4)})
    absorb_bram_output_registers(n)
    assert n["modules"]["top"]["cells"]["ram"]["connections"]["OCEB"] == ["1"]

    # anything the RAM's register would do differently leaves the whole port as it was
    lone = "an output not read by a lone flip-flop"
    unlike = "a flip-flop with a reset, another clock or a set power-up value"
    cases = {
        "reset": (_bram_netlist({2: {"connections": {"LSR": [4]}}}), unlike),
        "other clock": (_bram_netlist({0: {"connections": {"CLK": [6]}}}), unlike),
        "inverted clock": (_bram_netlist({0: {"parameters": {"CLKMUX": "INV"}}}), unlike),
        "powers up at 1": (_bram_netlist({3: {"parameters": {"REGSET": "SET"}}}), unlike),
        "global reset": (_bram_netlist({3: {"parameters": {"GSR": "ENABLED"}}}), unlike),
        "two enables": (_bram_netlist({1: {"connections": {"CE": [7]}}}), "flip-flops with different clock enables"),
        "inverted enable": (_bram_netlist({i: {"parameters": {"CEMUX": "INV"}} for i in range(4)}),
                            "flip-flops with different clock enables"),
    }
    fanout = _bram_netlist()
    fanout["modules"]["top"]["cells"]["lut"] = {"type": "LUT4", "port_directions": {"A": "input", "Z": "output"},
                                                "parameters": {}, "connections": {"A": [12], "Z": [40]}}
    cases["a second reader"] = (fanout, lone)
    at_port = _bram_netlist()
    at_port["modules"]["top"]["ports"]["raw"] = {"direction": "output", "bits": [11]}
    cases["a top-level output"] = (at_port, lone)
    ram_reset = _bram_netlist()
    ram_reset["modules"]["top"]["cells"]["ram"]["connections"]["RSTB"] = [4]
    cases["the RAM's reset in use"] = (ram_reset, "reset or output enable in use")
    for what, (n, why) in cases.items():
        before = copy.deepcopy(n)
        assert absorb_bram_output_registers(n) == {"ports": 0, "registers": 0, "skipped": {why: 1}}, what
        assert n == before, what


def _mult_netlist(changes: dict | None = None) -> dict:
    """A MULT18X18D: A0-A2 from flip-flops fa0-fa2 (D nets 10-12, Q 20-22; fa0's Q also read by a LUT), A3 tied to
    0, B0-B1 from fb0-fb1 (D 13-14, Q 23-24) reset by net 4; A's flip-flops have no reset; clock 2.
    `changes`: {cell: {"parameters"/"connections": updates}}."""
    def ff(d, q, lsr):
        return {"type": "TRELLIS_FF", "port_directions": {"CLK": "input", "LSR": "input", "DI": "input", "Q": "output"},
                "parameters": {"CEMUX": "1", "CLKMUX": "CLK", "GSR": "DISABLED", "LSRMUX": "LSR", "REGSET": "RESET",
                               "SRMODE": "LSR_OVER_CE"},
                "connections": {"CLK": [2], "LSR": [lsr], "DI": [d], "Q": [q]}}

    mult_conns = {"A0": [20], "A1": [21], "A2": [22], "A3": ["0"], "B0": [23], "B1": [24], "SIGNEDA": ["0"],
                  "SIGNEDB": ["0"], **{f"P{i}": [30 + i] for i in range(4)}}
    cells = {"mult": {"type": "MULT18X18D", "parameters": {}, "connections": mult_conns,
                      "port_directions": {k: "output" if k[0] == "P" else "input" for k in mult_conns}},
             **{f"fa{i}": ff(10 + i, 20 + i, "0") for i in range(3)},
             **{f"fb{i}": ff(13 + i, 23 + i, 4) for i in range(2)},
             "lut": {"type": "LUT4", "port_directions": {"A": "input", "Z": "output"}, "parameters": {},
                     "connections": {"A": [20], "Z": [40]}}}
    for name, parts in (changes or {}).items():
        for part, upd in parts.items():
            cells[name][part].update(upd)
    return {"modules": {"top": {"attributes": {"top": "00000000000000000000000000000001"},
                                "ports": {"p": {"direction": "output", "bits": [30, 31, 32, 33, 40]}},
                                "cells": cells, "netnames": {"fa_q": {"bits": [20, 21, 22]}}}}}


def test_multiplier_input_flip_flops_move_into_the_multiplier_only_when_nothing_changes():
    import copy

    from firmware.netlist import absorb_dsp_input_registers

    n = _mult_netlist()
    assert absorb_dsp_input_registers(n) == {"multipliers": 1, "registers": 4, "skipped": {}}
    top = n["modules"]["top"]
    mult = top["cells"]["mult"]
    # the pins read the flip-flops' inputs, through the DSP's registers on the flip-flops' clock and resets
    assert [mult["connections"][k] for k in ("A0", "A1", "A2", "A3", "B0", "B1")] == [[10], [11], [12], ["0"], [13],
                                                                                        [14]]
    assert {k: mult["parameters"][k] for k in ("REG_INPUTA_CLK", "REG_INPUTB_CLK", "REG_INPUTA_RST", "REG_INPUTB_RST",
                                               "RESETMODE")} == {"REG_INPUTA_CLK": "CLK0", "REG_INPUTB_CLK": "CLK0",
                                                                 "REG_INPUTA_RST": "RST0", "REG_INPUTB_RST": "RST1",
                                                                 "RESETMODE": "SYNC"}
    assert {k: mult["connections"][k] for k in ("CLK0", "CE0", "RST0", "RST1")} == {
        "CLK0": [2], "CE0": ["1"], "RST0": ["0"], "RST1": [4]}
    # fa0 stays (the LUT reads it); the others had no other reader
    assert set(top["cells"]) == {"mult", "fa0", "lut"} and top["netnames"]["fa_q"]["bits"] == [20, "x", "x"]
    assert absorb_dsp_input_registers(n)["skipped"] == {"input registers in use": 1}

    plain = "an input not from a plain flip-flop"
    cases = {
        "enable": ({"fb1": {"parameters": {"CEMUX": "CE"}, "connections": {"CE": [7]}}}, plain),
        "async reset": ({"fb0": {"parameters": {"SRMODE": "ASYNC"}}}, plain),
        "powers up at 1": ({"fa2": {"parameters": {"REGSET": "SET"}}}, plain),
        "from logic": ({"mult": {"connections": {"A1": [40]}}}, plain),
        "from the flip-flop's other output": ({"mult": {"connections": {"B0": [13]}}}, plain),
        "two clocks": ({"fa1": {"connections": {"CLK": [3]}}}, "inputs on different clocks, or one operand's on "
                                                                "different resets"),
        "two resets in A": ({"fa1": {"connections": {"LSR": [5]}}}, "inputs on different clocks, or one operand's "
                                                                    "on different resets"),
    }
    for what, (changes, why) in cases.items():
        n = _mult_netlist(changes)
        if what == "from the flip-flop's other output":
            n["modules"]["top"]["cells"]["drv"] = {"type": "LUT4", "port_directions": {"Z": "output"},
                                                   "parameters": {}, "connections": {"Z": [13]}}
        before = copy.deepcopy(n)
        assert absorb_dsp_input_registers(n) == {"multipliers": 0, "registers": 0, "skipped": {why: 1}}, what
        assert n == before, what


def test_marked_memories_reads_are_declared_undefined_on_a_collision():
    """declare_collisions_undefined sets COLLISION_X_MASK on the read ports of the memories marked
    eprop_collision_x (hdl/lane.py's BankedRAM), in any module, and on no other memory's."""
    from amaranth.back import rtlil
    from amaranth.hdl import Elaboratable, Module, Signal
    from amaranth.lib.memory import Memory

    from firmware.netlist import declare_collisions_undefined
    from hdl.memory import COLLISION_X

    class Two(Elaboratable):
        def __init__(self):
            self.a, self.d = Signal(4), Signal(8)

        def elaborate(self, platform):
            m = Module()
            for name, attrs in (("marked", COLLISION_X), ("plain", {})):
                mem = Memory(shape=8, depth=16, init=[], attrs=attrs)
                m.submodules[name] = mem
                rd, wr = mem.read_port(), mem.write_port()
                m.d.comb += [rd.addr.eq(self.a), wr.addr.eq(self.a), wr.data.eq(self.d), wr.en.eq(1)]
            inner = Module()
            mem = Memory(shape=8, depth=16, init=[], attrs=COLLISION_X)
            inner.submodules.deep = mem
            rd = mem.read_port()
            inner.d.comb += rd.addr.eq(self.a)
            m.submodules.inner = inner
            return m

    t = Two()
    text = rtlil.convert(t, ports=[t.a, t.d])
    assert text.count("parameter \\COLLISION_X_MASK 1'0") == 2  # two read ports with a write port
    out, declared = declare_collisions_undefined(text)
    assert sorted(d.split("/")[1] for d in declared) == ["deep", "marked"]
    memrds = re.findall(r"cell \$memrd_v2 .*?\n  end", out, re.S)
    masks = {re.search(r'MEMID "\\\\(\w+)"', c).group(1): re.search(r"COLLISION_X_MASK (\S+)", c).group(1)
             for c in memrds}
    assert masks == {"marked": "1'1", "plain": "1'0", "deep": "0'"}
    assert declare_collisions_undefined(out)[0] == out


@pytest.mark.parametrize("board, clock_site, osc, low", [("ulx3s", "G2", "25", False),
                                                        ("orangecrab-85f", "A9", "48", True)])
def test_ecp5_wrapper_and_pins(board, clock_site, osc, low):
    """Every core port wired, each wrapper port on its own ball, the oscillator's frequency; the OrangeCrab's button
    and LEDs are active low (its button on the DDR3's 1.35 V bank, SSTL135_I)."""
    from hdl.params import HardwareParams

    ports = accelerator_ports(HardwareParams.from_config(load_preset("tiny")))
    text = ecp5_wrapper(ports, board=board)
    n_in = sum(p.width for p in ports if p.direction == "input") - 2  # clk, rst come from the board
    n_out = sum(p.width for p in ports if p.direction == "output")
    assert f"reg [{n_in - 1}:0] shift_in, in_reg;" in text and f"reg [{n_out - 1}:0] shift_out;" in text
    for p in ports:
        if p.name not in ("clk", "rst"):
            assert f".{p.name}(" in text
    assert ("~locked | ~btn" in text) == low and ("assign led = ~{locked" in text) == low
    lpf = board_lpf(100.0, board)
    assert f'LOCATE COMP "clk_osc" SITE "{clock_site}";' in lpf and f'FREQUENCY PORT "clk_osc" {osc} MHZ;' in lpf
    sites = re.findall(r'SITE "(\w+)"', lpf)
    assert len(sites) == len(set(sites)) == 8
    ports_in_lpf = set(re.findall(r'LOCATE COMP "([\w\[\]]+)"', lpf))
    assert ports_in_lpf == set(ECP5_BOARDS[board]["pins"]) and {"clk_osc", "btn", "ser_out", "led[1]"} <= ports_in_lpf
    assert ('IOBUF PORT "btn" IO_TYPE=SSTL135_I' in lpf) == (board == "orangecrab-85f")


# ---- the real tools on tiny (CI runs these) -------------------------------------------------------------------------
@pytest.mark.slow
def test_yosys_report_tiny_xc7z020(tmp_path, capsys):
    out = tmp_path / "rep"
    assert main(["build", "report", "--preset", "tiny", "--part", "xc7z020", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    r = json.loads((out / "report_xc7z020.json").read_text())
    res = r["resources"]
    assert res["lut"] > 1000 and res["ff"] > 1000 and res["bram36"] >= 1 and res["dsp"] >= 1
    assert r["utilisation"]["lut"]["available"] == 53200 and r["fits"]
    # the synapse, trace and history memories are block RAM
    kinds = {m["memory"].removeprefix("eprop_accel.core."): m["kind"] for m in r["memories"]}
    for name in ("lane0.syn", "lane0.eb", "lane0.hist", "completions.fifo"):
        assert kinds[name] == "block RAM", (name, kinds)
    assert r["budget_estimate_bram36"] > 0 and "budget estimate" in text
    assert "Yosys" in r["tool"]
    # the same run with a limit it cannot meet exits non-zero with the reason
    assert main(["build", "report", "--preset", "tiny", "--part", "xc7z020", "--max-lut", "1", "--out",
                 str(tmp_path / "rep2")]) == 1
    cap = capsys.readouterr()
    assert "DOES NOT FIT xc7z020: LUT" in cap.out and "does not fit xc7z020" in cap.err


@pytest.mark.slow
def test_ecp5_flow_tiny_makes_a_bitstream(tmp_path, capsys):
    out = tmp_path / "ecp5"
    code = main(["build", "ecp5", "--preset", "tiny", "--allow-timing-fail", "--pnr-seed", "1,2", "--out", str(out)])
    text = capsys.readouterr()
    assert code == 0, text.err
    r = json.loads((out / "report_ecp5.json").read_text())
    # two seeds, each placed and routed in its own folder; the bitstream from the faster
    assert [x["seed"] for x in r["seeds"]] == [1, 2] and all("fmax_mhz" in x for x in r["seeds"])
    assert r["fmax_mhz"] == max(x["fmax_mhz"] for x in r["seeds"])
    assert r["seed"] == max(r["seeds"], key=lambda x: x["fmax_mhz"])["seed"]
    assert (out / "eprop_ulx3s.config").read_bytes() == (out / f"seed{r['seed']}" / "eprop_ulx3s.config").read_bytes()
    assert "seeds: 1: " in text.out
    assert r["utilisation"]["TRELLIS_COMB"]["used"] > 1000 and r["utilisation"]["DP16KD"]["used"] >= 1
    assert r["utilisation"]["TRELLIS_COMB"]["available"] == 83640  # the LFE5U-85F
    assert 1.0 < r["fmax_mhz"] < 1000.0 and r["timing_met"] == (r["fmax_mhz"] >= 100.0)
    assert "routed Fmax" in text.out and r["critical_paths"]
    # every endpoint's slack from the routed SDF: its worst path is nextpnr's critical path
    t = r["timing_paths"]
    assert t["period_ns"] == 10.0 and t["endpoints"] > 1000
    assert abs(1000.0 / (t["period_ns"] - t["worst_slack_ns"]) - r["fmax_mhz"]) < 0.05, (t, r["fmax_mhz"])
    assert (t["failing_endpoints"] > 0) == (not r["timing_met"]) and "launch -> capture classes" in text.out
    # the netlist passes ran on the real netlist (tiny: 6 block RAM read ports, 9 multipliers) and nextpnr took it
    assert r["bram_output_registers"]["ports"] > 0 and r["dsp_input_registers"]["multipliers"] > 0
    assert "eprop_accel.core.lane0/syn" in r["collision_x_memories"]
    assert "moved into block RAM" in text.out and "moved into multipliers" in text.out
    bit = (out / "eprop_ulx3s.bit").read_bytes()
    assert len(bit) > 10_000 and b"\xff\xff\xbd\xb3" in bit[:4096]  # the ECP5 preamble
    if not r["timing_met"]:
        assert "timing not met" in text.err


@pytest.mark.slow
def test_ecp5_flow_tiny_orangecrab_85f(tmp_path, capsys):
    """The second board: the OrangeCrab 85F's package (csfBGA285), pins and I/O standards go through nextpnr and
    ecppack; the report names the speed-8 part."""
    out = tmp_path / "oc"
    code = main(["build", "ecp5", "--preset", "tiny", "--board", "orangecrab-85f", "--allow-timing-fail",
                 "--out", str(out)])
    text = capsys.readouterr()
    assert code == 0, text.err
    r = json.loads((out / "report_ecp5.json").read_text())
    assert r["board"] == "orangecrab-85f" and r["device"] == "LFE5U-85F-8MG285C"
    assert "ECP5 flow on orangecrab-85f (LFE5U-85F-8MG285C)" in text.out
    log = (out / "nextpnr.log").read_text()
    assert r["utilisation"]["TRELLIS_IO"]["used"] == 8 and r["utilisation"]["TRELLIS_COMB"]["available"] == 83640
    assert 'IO_TYPE=SSTL135_I' in (out / "orangecrab-85f.lpf").read_text() and "ERROR" not in log
    bit = (out / "eprop_orangecrab-85f.bit").read_bytes()
    assert len(bit) > 10_000 and b"\xff\xff\xbd\xb3" in bit[:4096]
