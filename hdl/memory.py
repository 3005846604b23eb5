"""What the memories of the gateware share: markings for synthesis and the collision check.

``COLLISION_X`` marks a memory whose reads at the clock edge that writes their address the design never uses;
``collision_read`` returns a read port's data, inverted on exactly those reads when the design is elaborated with
``EPROP_POISON_COLLISIONS=1`` (tests/test_rtl.py runs the core so and checks it stays bit-exact). The ECP5 flow
then lets Yosys leave such reads undefined (firmware/netlist.py, declare_collisions_undefined): a DP16KD read on
one port while the other writes the same address is undefined, and Yosys otherwise delays the write and puts a
bypass multiplexer behind the block RAM. ``KEEP`` marks registers that are copies of one another, each placed
by what it drives; the ECP5 flow gives them Yosys's ``keep`` so that they are not merged.
"""

from __future__ import annotations

import os

from amaranth.hdl import Const, Module, Mux, Signal, Value

__all__ = ["COLLISION_X", "COLLISION_X_ATTR", "KEEP", "KEEP_ATTR", "collision_read"]


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
