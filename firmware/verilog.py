"""``eprop build verilog``: the accelerator as Verilog, a wrapper whose interface attributes Vivado's IP integrator
recognises, and a TCL script that packages both as an IP (optional: the Vivado project uses the wrapper as a module
reference and needs no packaged IP).

The port list is read from the Accelerator's signature (``hdl/top.py``), the address width from ``hdl.top``: a port
the wrapper does not know how to label stops the build instead of being left out of an interface.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from golden_model.config import NetworkConfig
from golden_model.hw_interface import COUNTERS, CONTRACT_VERSION, IP_LIBRARY, IP_NAME, IP_VENDOR, IP_VERSION, Reg

__all__ = ["Port", "accelerator_ports", "IP_NAME", "BUSES", "xilinx_wrapper", "package_ip_tcl", "write_verilog_outputs",
           "hardware_params", "address_span"]

# the Vivado-facing wrapper module's name and the IP's VLNV parts come from the contract (IP_NAME, IP_VENDOR, ...)


@dataclass(frozen=True)
class Port:
    name: str
    direction: str  # "input" | "output"
    width: int

    def decl(self) -> str:
        rng = f"[{self.width - 1}:0] " if self.width > 1 else ""
        return f"{self.direction} wire {rng}{self.name}"


def hardware_params(config: NetworkConfig, lanes: int):
    from hdl.params import HardwareParams  # noqa: PLC0415 - Amaranth only when building

    return HardwareParams.from_config(config, lanes=lanes)


def accelerator_ports(p) -> list[Port]:
    """clk, rst, then the Accelerator's signature members in order."""
    from amaranth.lib.wiring import In  # noqa: PLC0415

    from hdl.top import Accelerator  # noqa: PLC0415

    top = Accelerator(p)
    top._MustUse__silence = True  # only its signature is read here
    ports = [Port("clk", "input", 1), Port("rst", "input", 1)]
    for path, member in top.signature.members.flatten():
        name = "__".join(str(x) for x in path)
        width = member.shape.width if hasattr(member.shape, "width") else int(member.shape)
        ports.append(Port(name, "input" if member.flow == In else "output", width))
    return ports


def address_span() -> int:
    """Bytes of the AXI4-Lite register window (from the top's address width)."""
    from hdl.top import ADDR_BITS  # noqa: PLC0415

    return 1 << ADDR_BITS


#: interface prefix -> (Vivado bus type, X_INTERFACE_PARAMETER of the first port without the name and widths)
BUSES = {
    "s_axi": ("xilinx.com:interface:aximm:1.0",
              "PROTOCOL AXI4LITE, DATA_WIDTH 32, ADDR_WIDTH {addr_width}, READ_WRITE_MODE READ_WRITE, "
              "HAS_BURST 0, HAS_LOCK 0, HAS_PROT 0, HAS_CACHE 0, HAS_QOS 0, HAS_REGION 0, HAS_WSTRB 1, "
              "HAS_BRESP 1, HAS_RRESP 1, SUPPORTS_NARROW_BURST 0, MAX_BURST_LENGTH 1, "
              "NUM_READ_OUTSTANDING 1, NUM_WRITE_OUTSTANDING 1"),
    "s_axis": ("xilinx.com:interface:axis:1.0",
               "TDATA_NUM_BYTES 4, HAS_TLAST 1, HAS_TREADY 1, HAS_TKEEP 0, HAS_TSTRB 0, TUSER_WIDTH 0, "
               "TID_WIDTH 0, TDEST_WIDTH 0"),
    "m_axis": ("xilinx.com:interface:axis:1.0",
               "TDATA_NUM_BYTES 4, HAS_TLAST 1, HAS_TREADY 1, HAS_TKEEP 0, HAS_TSTRB 0, TUSER_WIDTH 0, "
               "TID_WIDTH 0, TDEST_WIDTH 0"),
}
#: single-signal interfaces: port -> (type, logical name, parameter)
SIGNALS = {
    "clk": ("xilinx.com:signal:clock:1.0", "CLK",
            "ASSOCIATED_BUSIF {busif}, ASSOCIATED_RESET rst"),
    "rst": ("xilinx.com:signal:reset:1.0", "RST", "POLARITY ACTIVE_HIGH"),
    "irq": ("xilinx.com:signal:interrupt:1.0", "INTERRUPT", "SENSITIVITY LEVEL_HIGH"),
}


def _bus_of(name: str) -> tuple[str, str] | None:
    for prefix in sorted(BUSES, key=len, reverse=True):
        if name.startswith(prefix + "_"):
            return prefix, name[len(prefix) + 1:].upper()
    return None


def xilinx_wrapper(ports: list[Port], core: str = "eprop_accel", name: str = IP_NAME) -> str:
    """A Verilog module with the core's ports, each labelled with Vivado's X_INTERFACE_INFO (and, on an interface's
    first port, X_INTERFACE_PARAMETER), instantiating the core."""
    from hdl.top import ADDR_BITS  # noqa: PLC0415

    seen: set[str] = set()
    decls = []
    buses = [b for b in BUSES if any(_bus_of(p.name) and _bus_of(p.name)[0] == b for p in ports)]
    for port in ports:
        attrs = []
        bus = _bus_of(port.name)
        if bus is not None:
            prefix, logical = bus
            vlnv, param = BUSES[prefix]
            attrs.append(f'(* X_INTERFACE_INFO = "{vlnv} {prefix} {logical}" *)')
            if prefix not in seen:
                seen.add(prefix)
                attrs.append(f'(* X_INTERFACE_PARAMETER = "XIL_INTERFACENAME {prefix}, '
                             f'{param.format(addr_width=ADDR_BITS)}" *)')
        elif port.name in SIGNALS:
            vlnv, logical, param = SIGNALS[port.name]
            attrs.append(f'(* X_INTERFACE_INFO = "{vlnv} {port.name} {logical}" *)')
            attrs.append(f'(* X_INTERFACE_PARAMETER = "XIL_INTERFACENAME {port.name}, '
                         f'{param.format(busif=":".join(buses))}" *)')
        else:
            raise ValueError(f"port {port.name!r} of the accelerator belongs to no interface the Vivado wrapper "
                             f"knows ({', '.join([*BUSES, *SIGNALS])}): label it in firmware/verilog.py")
        decls.append("\n".join(f"  {a}" for a in attrs) + f"\n  {port.decl()}")
    conns = ",\n".join(f"    .{p.name}({p.name})" for p in ports)
    return (f"// Generated by `eprop build verilog`: the accelerator with Vivado interface attributes (IP integrator\n"
            f"// infers s_axi (AXI4-Lite), s_axis / m_axis (AXI4-Stream), clk, rst (active high), irq).\n"
            f"// Hardware contract version {CONTRACT_VERSION}; registers 0x{Reg.ID:03x}..0x"
            f"{Reg.COUNTERS + 8 * len(COUNTERS) - 4:03x}.\n"
            f"`timescale 1ns / 1ps\n"
            f"module {name} (\n" + ",\n".join(decls) + "\n);\n"
            f"  {core} core (\n{conns}\n  );\n"
            f"endmodule\n")


def package_ip_tcl(part: str, files: list[str], name: str = IP_NAME) -> str:
    """Vivado batch TCL that packages the wrapper as an IP (interfaces inferred from the attributes)."""
    span = address_span()
    file_list = " ".join(f'"$here/{f}"' for f in files)
    return f"""# Generated by `eprop build verilog`: package the accelerator as a Vivado IP (optional; the block design
# built by `eprop build vivado` uses the wrapper as a module reference instead).
#   vivado -mode batch -source package_ip.tcl          -> ./ip/ (add it to an IP repository)
set here [file normalize [file dirname [info script]]]
create_project -force {name}_pkg "$here/ip_project" -part {part}
add_files -norecurse [list {file_list}]
set_property top {name} [current_fileset]
update_compile_order -fileset sources_1
ipx::package_project -root_dir "$here/ip" -vendor {IP_VENDOR} -library {IP_LIBRARY} -taxonomy /UserIP \\
    -import_files -set_current true
set core [ipx::current_core]
set_property name {name} $core
set_property version {IP_VERSION} $core
set_property display_name "e-prop accelerator" $core
set_property description "Event-driven e-prop spiking network accelerator (eprop-fpga)" $core
foreach busif {{s_axi s_axis m_axis}} {{
  if {{[llength [ipx::get_bus_interfaces $busif -of_objects $core]] != 1}} {{
    error "eprop: interface $busif was not inferred from the X_INTERFACE_INFO attributes"
  }}
}}
ipx::associate_bus_interfaces -busif s_axi -clock clk $core
ipx::associate_bus_interfaces -busif s_axis -clock clk $core
ipx::associate_bus_interfaces -busif m_axis -clock clk $core
# the register window: {span} bytes (hdl.top.ADDR_BITS)
set mm [ipx::get_memory_maps s_axi -of_objects $core]
if {{[llength $mm] == 0}} {{ set mm [ipx::add_memory_map s_axi $core] }}
set_property slave_memory_map_ref s_axi [ipx::get_bus_interfaces s_axi -of_objects $core]
set blk [ipx::get_address_blocks -of_objects $mm]
if {{[llength $blk] == 0}} {{ set blk [ipx::add_address_block reg0 $mm] }}
set_property range {span} $blk
set_property width 32 $blk
ipx::create_xgui_files $core
ipx::update_checksums $core
ipx::check_integrity $core
ipx::save_core $core
close_project
"""


def write_verilog_outputs(config: NetworkConfig, lanes: int, out: Path, part: str = "xc7z020clg400-1") -> dict:
    """eprop_accel.v, the Vivado wrapper, package_ip.tcl and build_info.json in `out`; returns what was written."""
    from hdl.build import TOP_NAME, generate_verilog  # noqa: PLC0415

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    p = hardware_params(config, lanes)
    text = generate_verilog(p)
    core = out / f"{TOP_NAME}.v"
    core.write_text(text)
    ports = accelerator_ports(p)
    _check_ports_match(text, ports, TOP_NAME)
    wrapper = out / f"{IP_NAME}.v"
    wrapper.write_text(xilinx_wrapper(ports, TOP_NAME))
    tcl = out / "package_ip.tcl"
    tcl.write_text(package_ip_tcl(part, [core.name, wrapper.name]))
    info = build_info(config, p)
    (out / "build_info.json").write_text(json.dumps(info, indent=2, default=str) + "\n")
    return {"verilog": core, "wrapper": wrapper, "package_ip": tcl, "info": out / "build_info.json", "params": p}


def build_info(config: NetworkConfig, p) -> dict:
    """What a build was made from (kept beside every output)."""
    return {"contract_version": CONTRACT_VERSION, "lanes": p.lanes, "n_in": p.n_in, "n_rec": p.n_rec,
            "n_out": p.n_out, "synapse_slots_per_lane": p.syn_depth, "history_length": p.hist_len,
            "weight_bits": p.weight_bits, "fixed": {k: str(v) for k, v in p.fx.formats.items()},
            "register_span": address_span(), "config": config.to_dict()}


def _check_ports_match(verilog: str, ports: list[Port], top: str) -> None:
    """The generated module's ports are the signature's (names, directions, widths)."""
    import re  # noqa: PLC0415

    body = verilog[verilog.index(f"module {top}("):]
    body = body[: body.index("endmodule")]
    found = {}
    for line in body.splitlines():
        m = re.match(r"\s*(input|output)\s+(?:\[(\d+):0\]\s+)?(\w+);", line)
        if m:
            found[m.group(3)] = (m.group(1), int(m.group(2)) + 1 if m.group(2) else 1)
    expected = {p.name: (p.direction, p.width) for p in ports}
    if found != expected:
        raise ValueError(f"the generated {top} ports differ from the Accelerator signature: "
                         f"{sorted(set(found.items()) ^ set(expected.items()))}")
