"""What the memories of the gateware share: markings for synthesis and the collision check.

``COLLISION_X`` marks a memory whose reads at the clock edge that writes their address the design never uses;
``collision_read`` returns a read port's data, inverted on exactly those reads when the design is elaborated with
``EPROP_POISON_COLLISIONS=1`` (tests/test_rtl.py runs the core so and checks it stays bit-exact). The ECP5 flow
then lets Yosys leave such reads undefined (firmware/netlist.py, declare_collisions_undefined): a DP16KD read on
one port while the other writes the same address is undefined, and Yosys otherwise delays the write and puts a
bypass multiplexer behind the block RAM. ``KEEP`` marks registers that are copies of one another, each placed
by what it drives; the ECP5 flow gives them Yosys's ``keep`` so that they are not merged. ``SlicedRAM`` is a LUT RAM
read at such copies.
"""

from __future__ import annotations

import os

from amaranth.hdl import Cat, Const, Module, Mux, Shape, Signal, Value, unsigned
from amaranth.lib.memory import Memory

__all__ = ["COLLISION_X", "COLLISION_X_ATTR", "KEEP", "KEEP_ATTR", "SlicedRAM", "collision_read"]


#: marks a memory whose reads at the edge that writes their address the design never uses (collision_read): the
#: ECP5 flow lets Yosys leave them undefined (firmware/netlist.py, declare_collisions_undefined)
COLLISION_X_ATTR = "eprop_collision_x"
COLLISION_X = {COLLISION_X_ATTR: 1}

#: marks a register that synthesis must not merge with its equals (the ECP5 flow sets Yosys's ``keep`` on it):
#: copies of one register, each placed by the block RAMs it drives
KEEP_ATTR = "eprop_keep"
KEEP = {KEEP_ATTR: 1}


def collision_read(m: Module, rd, wr, name: str) -> Value:
    """A memory's read data. With ``EPROP_POISON_COLLISIONS=1`` in the environment when the design is elaborated,
    the word read at the clock edge that also writes its address comes back inverted: a verification mode (see
    tests/test_rtl.py) showing the design never uses such a read, so the ECP5 flow may let Yosys treat it as
    undefined (``COLLISION_X_MASK``) instead of building a bypass behind the block RAM."""
    if os.environ.get("EPROP_POISON_COLLISIONS") != "1":
        return rd.data
    hit = Signal(name=f"{name}_collision")
    m.d.sync += hit.eq(wr.en & (wr.addr == rd.addr))
    return rd.data ^ Mux(hit, Const(-1, len(rd.data)), 0)


class SlicedRAM:
    """`depth` words of `shape` in LUT RAM (an asynchronous read, one write port), cut into `slices` column slices,
    each read at an address register of its own (KEEP) that ``load_read_address`` loads with the next clock's
    address. One address register driving all of a memory's LUT RAM cells was, in the nmnist ECP5 build, 4 to 7 ns
    of wire in front of the read (the neurons' state, the input accumulators, the gradients); each copy is placed by
    its slice. ``read_data`` is the word at the registered address, as the registers' contents were at the last
    clock edge (writes land at the edge)."""

    def __init__(self, m: Module, name: str, depth: int, shape, slices: int = 1, init: int | None = None):
        width = Shape.cast(shape).width
        edges = [k * width // slices for k in range(slices + 1)]
        self._m, self._name = m, name
        self._slices = []
        for k in range(slices):
            lo, hi = edges[k], edges[k + 1]
            words = [] if init is None else [(init >> lo) & ((1 << (hi - lo)) - 1)] * depth
            mem = Memory(shape=unsigned(hi - lo), depth=depth, init=words, attrs={"ram_style": "distributed"})
            m.submodules[f"{name}_s{k}" if slices > 1 else name] = mem
            self._slices.append((mem.read_port(domain="comb"), mem.write_port(), lo, hi))
        self.read_data = Signal(shape, name=f"{name}_rdata")
        m.d.comb += self.read_data.eq(Cat(*(rd.data for rd, _, _, _ in self._slices)))

    def load_read_address(self, addr_next):
        """The address read in the next clock (call once, unconditionally: the registers load every clock)."""
        for k, (rd, _, _, _) in enumerate(self._slices):
            addr = Signal.like(rd.addr, name=f"{self._name}_raddr{k}", attrs=KEEP)
            self._m.d.sync += addr.eq(addr_next)
            self._m.d.comb += rd.addr.eq(addr)

    def write(self, addr, value):
        """Write `value` at `addr` at the next clock edge (comb: under the caller's conditions; a later call in the
        module wins)."""
        value = Value.cast(value)
        for _, wr, lo, hi in self._slices:
            self._m.d.comb += [wr.addr.eq(addr), wr.data.eq(value[lo:hi]), wr.en.eq(1)]
