"""Passes over Yosys's ECP5 netlist (its JSON, as nextpnr reads it), run between synthesis and place and route:
``absorb_bram_output_registers`` and ``absorb_dsp_input_registers`` (below, each in its docstring), and, before
synthesis, ``declare_collisions_undefined`` over the RTLIL.

``absorb_bram_output_registers``: a DP16KD block RAM read without its output register (REGMODE NOREG) has its data
5.8 ns after the clock on a speed-6 LFE5U (nextpnr's timing model); with it (REGMODE OUTREG) 0.9 ns, the read a
clock later. Yosys maps a memory's synchronous read port onto the block RAM's read latch, but a register behind it
stays a fabric flip-flop, usually placed away from the RAM: in the nmnist build (block RAMs 97.6 % used, spread over
the whole die) the RAM -> register paths were 408 of the 1,732 endpoints that missed 10 ns. The pass moves such a
register into the RAM when doing so cannot change what the design computes.

The OUTREG register (Lattice FPGA-TN-02204, ECP5 memory usage guide, "output register"): on a rising edge of the
port's clock it loads the read latch's word when OCE is high; RST (with RESETMODE) clears it. A port is absorbed
only when every data output it drives (DO bits with no reader are ignored) feeds exactly one flip-flop, and every
such flip-flop

- is a TRELLIS_FF on the port's clock net, not inverted (CLKMUX CLK);
- has no set/reset: LSR tied to 0; and powers up at 0 (REGSET RESET, GSR DISABLED), as the RAM's register does;
- has the same clock enable as the others (a net, or none): it becomes the port's OCE;

and the port's own RST is tied to 0, its OCE to 1, and its output is not inverted or already registered. The
flip-flops are removed; their outputs are driven by the RAM's DO pins instead.
"""

from __future__ import annotations

import re
from collections import defaultdict

from hdl.memory import COLLISION_X_ATTR

__all__ = ["absorb_bram_output_registers", "absorb_dsp_input_registers", "declare_collisions_undefined", "top_module"]


def top_module(netlist: dict) -> tuple[str, dict]:
    """The module Yosys marked as the top (attribute ``top``, a binary string)."""
    for name, mod in netlist["modules"].items():
        if str(mod.get("attributes", {}).get("top", "0")).strip("0"):
            return name, mod
    raise ValueError("the netlist has no top module")


def _readers(mod: dict) -> dict:
    """Net bit -> [(cell, port)] of every cell input on it; a top-level output counts as a reader ("<port>", name)."""
    readers = defaultdict(list)
    for name, cell in mod["cells"].items():
        dirs = cell.get("port_directions", {})
        for port, bits in cell["connections"].items():
            if dirs.get(port) != "output":
                for b in bits:
                    if isinstance(b, int):
                        readers[b].append((name, port))
    for pname, port in mod.get("ports", {}).items():
        if port["direction"] != "input":
            for b in port["bits"]:
                if isinstance(b, int):
                    readers[b].append(("<port>", pname))
    return readers


def _remove(mod: dict, cells: list[str], nets: set[int]) -> None:
    """Delete `cells`; `nets` (left with no driver and no reader) lose their names rather than dangle."""
    for name in cells:
        del mod["cells"][name]
    for net in mod.get("netnames", {}).values():
        if any(b in nets for b in net["bits"] if isinstance(b, int)):
            net["bits"] = ["x" if b in nets else b for b in net["bits"]]


def _const(bits: list) -> str | None:
    """'0' / '1' for a constant one-bit connection, None for a net."""
    return bits[0] if bits and isinstance(bits[0], str) else None


def _ff_enable(ff: dict) -> str | int | None:
    """A flip-flop's clock enable: its CE net, "1" when always enabled, None when inverted or constant 0."""
    mux = str(ff["parameters"].get("CEMUX", "1")).strip()
    if mux == "1" or (mux == "CE" and _const(ff["connections"].get("CE", ["1"])) == "1"):
        return "1"
    if mux == "CE" and _const(ff["connections"]["CE"]) is None:
        return ff["connections"]["CE"][0]
    return None


def _absorbable(ff: dict, clock) -> bool:
    p, c = ff["parameters"], ff["connections"]
    return (ff["type"] == "TRELLIS_FF" and c.get("CLK") == [clock] and str(p.get("CLKMUX", "CLK")) == "CLK"
            and _const(c.get("LSR", ["0"])) == "0" and str(p.get("REGSET", "RESET")) == "RESET"
            and str(p.get("GSR", "DISABLED")) == "DISABLED")


def absorb_bram_output_registers(netlist: dict) -> dict:
    """Move the registers behind DP16KD read ports into the RAMs' output registers (see the module docstring), in
    place. Returns {"ports": ports absorbed, "registers": flip-flops removed, "skipped": {reason: ports}} where
    skipped counts the read ports (with a reader) left as they were."""
    _, mod = top_module(netlist)
    cells = mod["cells"]
    readers = _readers(mod)
    removed, gone, absorbed, skipped = [], set(), 0, defaultdict(int)
    for cell in list(cells.values()):
        if cell["type"] != "DP16KD":
            continue
        p, c = cell["parameters"], cell["connections"]
        for port in "AB":
            outs = [(i, c[f"DO{port}{i}"][0]) for i in range(18)
                    if isinstance(c.get(f"DO{port}{i}", [None])[0], int) and readers.get(c[f"DO{port}{i}"][0])]
            if not outs:
                continue
            why = None
            if str(p.get(f"REGMODE_{port}", "NOREG")) != "NOREG":
                why = "output register in use"
            elif _const(c.get(f"RST{port}", ["0"])) != "0" or _const(c.get(f"OCE{port}", ["1"])) != "1":
                why = "reset or output enable in use"
            elif any(str(p.get(f"{pin}{port}MUX", f"{pin}{port}")) != f"{pin}{port}" for pin in ("CLK", "OCE", "RST")):
                why = "inverted clock, reset or output enable"
            flops = []
            for _, bit in outs:
                if why:
                    break
                rd = readers[bit]
                if len(rd) != 1 or rd[0][0] == "<port>" or rd[0][1] != "DI" or cells[rd[0][0]]["type"] != "TRELLIS_FF":
                    why = "an output not read by a lone flip-flop"
                elif not _absorbable(cells[rd[0][0]], c[f"CLK{port}"][0]):
                    why = "a flip-flop with a reset, another clock or a set power-up value"
                else:
                    flops.append(rd[0][0])
            enables = {_ff_enable(cells[f]) for f in flops}
            if not why and (len(enables) != 1 or None in enables):
                why = "flip-flops with different clock enables"
            if why:
                skipped[why] += 1
                continue
            enable = enables.pop()
            p[f"REGMODE_{port}"] = "OUTREG"
            c[f"OCE{port}"] = [enable]
            for (i, bit), f in zip(outs, flops):
                c[f"DO{port}{i}"] = cells[f]["connections"]["Q"]
                gone.add(bit)
                removed.append(f)
            absorbed += 1
    _remove(mod, removed, gone)  # (the latches' old nets)
    return {"ports": absorbed, "registers": len(removed), "skipped": dict(skipped)}


_MODULE = re.compile(r"^module (\S+)\n(.*?)^end\n", re.S | re.M)
_MEMORY = re.compile(r"((?:^  attribute [^\n]*\n)*)^  memory [^\n]*? (\S+)\n", re.M)
_MEMRD = re.compile(r"^  cell \$memrd_v2 \S+\n(?:    [^\n]*\n)*?  end\n", re.M)
_MASK = re.compile(r"(    parameter \\COLLISION_X_MASK )(\d+)'([01x]+)")


def declare_collisions_undefined(rtlil: str) -> tuple[str, list[str]]:
    """The RTLIL with every read port of a memory marked COLLISION_X (hdl/memory.py: the design never uses such a
    read, checked by simulation with ``EPROP_POISON_COLLISIONS=1``) declared undefined when it reads the
    address written at the same edge (``COLLISION_X_MASK`` all ones). Yosys otherwise keeps the read's old word on
    such a collision; a DP16KD read on one port while the other writes the same address does not (Lattice leaves
    it undefined), so Yosys delays the write by a clock and puts a bypass multiplexer behind the block RAM's output,
    which also keeps the register behind it out of the RAM's output register. Returns the text and the memories
    declared ("module/memory")."""
    declared = []

    def module(mm: re.Match) -> str:
        body = mm.group(2)
        names = {name for attrs, name in _MEMORY.findall(body) if f"\\{COLLISION_X_ATTR} " in attrs}
        if not names:
            return mm.group(0)

        def cell(cm: re.Match) -> str:
            text = cm.group(0)
            memid = re.search(r'parameter \\MEMID "\\(\S+)"', text)
            if not memid or memid.group(1) not in names:
                return text
            return _MASK.sub(lambda k: f"{k.group(1)}{k.group(2)}'{'1' * int(k.group(2))}", text)

        declared.extend(f"{mm.group(1).lstrip(chr(92))}/{n.lstrip(chr(92))}" for n in sorted(names))
        return mm.group(0).replace(body, _MEMRD.sub(cell, body))

    return _MODULE.sub(module, rtlil), declared


def _drivers(mod: dict) -> dict:
    """Net bit -> (cell, port) of the cell output driving it."""
    drivers = {}
    for name, cell in mod["cells"].items():
        for port, bits in cell["connections"].items():
            if cell.get("port_directions", {}).get(port) == "output":
                for b in bits:
                    if isinstance(b, int):
                        drivers[b] = (name, port)
    return drivers


def _plain_input_flop(ff: dict) -> bool:
    """A flip-flop a MULT18X18D input register can stand in for: always enabled, rising edge, powering up at 0,
    reset (if any) synchronous and to 0."""
    p, c = ff["parameters"], ff["connections"]
    return (ff["type"] == "TRELLIS_FF" and str(p.get("CLKMUX", "CLK")) == "CLK"
            and str(p.get("CEMUX", "1")).strip() == "1" and str(p.get("LSRMUX", "LSR")) == "LSR"
            and str(p.get("REGSET", "RESET")) == "RESET" and str(p.get("GSR", "DISABLED")) == "DISABLED"
            and (_const(c.get("LSR", ["0"])) == "0" or str(p.get("SRMODE", "LSR_OVER_CE")) != "ASYNC"))


def absorb_dsp_input_registers(netlist: dict) -> dict:
    """Move the flip-flops in front of MULT18X18D multipliers into the multipliers' input registers, in place.

    Yosys maps a product onto MULT18X18D with none of its registers; the registers that feed it stay flip-flops,
    and the wire from them into the DSP block was ~3 ns of each multiply's path in the nmnist build (lam6 ->
    ple7, d2 -> psl3, fav4 -> plam5). A multiplier is changed only when every input bit of A and B that is not a
    constant comes from a flip-flop (``_plain_input_flop``), all on one clock, each operand's on one reset (or
    none): its A and B
    registers (REG_INPUTA/B on CLK0, CE0 tied to 1, RST0 / RST1 the A / B flip-flops' reset, RESETMODE SYNC) load what
    those flip-flops load, the pins take the flip-flops' D nets, and a flip-flop read only by such pins is removed.
    Constant bits (and the SIGNED inputs) are registered too; they hold 0 only until the first clock after power-up
    or reset, when the registered data bits are 0 as well, so every product is the one the flip-flops gave.
    (The output register is left alone: nextpnr configures its clock enable and reset on two of the eight
    multiplier sites only.) Returns {"multipliers": changed, "registers": flip-flops removed, "skipped": {why: n}}."""
    _, mod = top_module(netlist)
    cells = mod["cells"]
    readers, drivers = _readers(mod), _drivers(mod)
    changed, skipped, absorbed_pins = 0, defaultdict(int), defaultdict(set)
    for cell in cells.values():
        if cell["type"] != "MULT18X18D":
            continue
        p, c = cell["parameters"], cell["connections"]
        pins = [k for k in c if re.fullmatch(r"[AB]\d+", k) and isinstance(c[k][0], int)]
        if any(str(p.get(f"REG_INPUT{x}_CLK", "NONE")) != "NONE" for x in "AB"):
            skipped["input registers in use"] += 1
            continue
        flops = {k: drivers.get(c[k][0], (None, None)) for k in pins}
        if not pins or any(port != "Q" or not _plain_input_flop(cells[f]) for f, port in flops.values()):
            skipped["an input not from a plain flip-flop"] += 1
            continue
        clocks = {tuple(cells[f]["connections"]["CLK"]) for f, _ in flops.values()}
        resets = {x: {tuple(cells[f]["connections"].get("LSR", ["0"])) for k, (f, _) in flops.items() if k[0] == x}
                  for x in "AB"}
        if len(clocks) != 1 or any(len(r) > 1 for r in resets.values()):
            skipped["inputs on different clocks, or one operand's on different resets"] += 1
            continue
        # A's register reset by RST0, B's by RST1 (each operand's flip-flops' reset; a constant operand: none)
        for x, rst in (("A", "RST0"), ("B", "RST1")):
            p.update({f"REG_INPUT{x}_CLK": "CLK0", f"REG_INPUT{x}_CE": "CE0", f"REG_INPUT{x}_RST": rst})
            c[rst] = list(resets[x].pop()) if resets[x] else ["0"]
        p.update({"RESETMODE": "SYNC", "GSR": "DISABLED"})
        c.update({"CLK0": list(clocks.pop()), "CE0": ["1"]})
        for port in ("CLK0", "CE0", "RST0", "RST1"):
            cell.setdefault("port_directions", {})[port] = "input"
        for k, (f, _) in flops.items():
            c[k] = list(cells[f]["connections"]["DI"])
            absorbed_pins[f].add((id(cell), k))
        changed += 1
    # a flip-flop whose every reader was a multiplier input now registered inside: nothing reads it any more
    removed = [f for f, pins in absorbed_pins.items()
               if all(r[0] != "<port>" and cells[r[0]]["type"] == "MULT18X18D"
                      and (id(cells[r[0]]), r[1]) in pins for r in readers[cells[f]["connections"]["Q"][0]])]
    _remove(mod, removed, {cells[f]["connections"]["Q"][0] for f in removed})
    return {"multipliers": changed, "registers": len(removed), "skipped": dict(skipped)}
