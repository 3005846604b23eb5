"""Spike routing state: which sources fire, when their walks complete.

The spike router of the accelerator is three pieces: ``SpikeLists`` below (who spiked in step t - 1: input
events and recurrent spikes, delivered in step t), the group pointers in each lane's ``gptr`` memory (CSR row
pointers: a source's synapses onto one kind of target, per lane) and the lanes' transmission pass, which adds each
synapse's weight into its target's input accumulator (``lane.py``). ``CompletionQueue`` remembers every delivered
source with its spike step so that its walk is completed when it stays silent for the cutoff.

Both take entries on an always-ready ``lib.stream`` port: producers (the input word decoder, the neuron pipeline,
the final update) cannot wait, so a full memory drops the entry and pulses ``overflow`` (a sticky status bit).
"""

from __future__ import annotations

from amaranth.hdl import Array, Cat, Module, Mux, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from .memory import COLLISION_X, collision_read

__all__ = ["SpikeLists", "CompletionQueue"]


def _bits(n: int) -> int:
    return max(1, int(n).bit_length())


class SpikeLists(wiring.Component):
    """Two lists of source ids, ping-pong: during step t, `append` fills the list of step t while the sequencer
    reads (`read_index` -> `read_data` two clocks later, `count` entries) the list of step t - 1. `swap` at the
    start of a step turns the filled list into the delivered one and empties the other.

    Each list's read is registered before the choice of list (plain registers: the ECP5 flow moves them into the
    block RAMs' output registers, firmware/netlist.py): a list's block RAM word, 5.8 ns after the clock without
    it, through the choice into the sequencer's register was up to 8 endpoints 2.87 ns short of 10 ns (nmnist
    ECP5 build, spikes.list -> pf_src). For that the appends are written a clock late, from registers, and a read
    of the word written at the same edge is never used (COLLISION_X: the delivered list is never the one filled)."""

    def __init__(self, src_bits: int, depth: int):
        self.src_bits, self.depth = src_bits, depth
        super().__init__({
            "append": In(stream.Signature(src_bits, always_ready=True)),
            "swap": In(1), "clear": In(1),
            "read_index": In(_bits(depth)), "read_data": Out(src_bits), "count": Out(_bits(depth)),
            "overflow": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        lists = [Memory(shape=unsigned(self.src_bits), depth=self.depth, init=[], attrs=COLLISION_X)
                 for _ in range(2)]
        m.submodules.list0, m.submodules.list1 = lists
        rd = [lst.read_port() for lst in lists]
        wr = [lst.write_port() for lst in lists]
        cur = Signal()  # the list delivered this step
        count = Array(Signal(_bits(self.depth), name=f"count{i}") for i in range(2))
        nxt = ~cur
        w_addr = Signal(_bits(self.depth), name="w_addr")
        w_data = Signal(self.src_bits, name="w_data")
        w_en = [Signal(name=f"w_en{i}") for i in range(2)]
        m.d.sync += [w_en[0].eq(0), w_en[1].eq(0)]
        with m.If(self.append.valid):
            with m.If(count[nxt] < self.depth):
                m.d.sync += [w_addr.eq(count[nxt]), w_data.eq(self.append.payload)]
                for i in range(2):
                    with m.If(nxt == i):
                        m.d.sync += w_en[i].eq(1)
                m.d.sync += count[nxt].eq(count[nxt] + 1)
            with m.Else():
                m.d.comb += self.overflow.eq(1)
        with m.If(self.swap):
            m.d.sync += [cur.eq(~cur), count[cur].eq(0)]
        with m.If(self.clear):
            m.d.sync += [cur.eq(0), count[0].eq(0), count[1].eq(0)]
        words = []
        for i in range(2):
            q = Signal(self.src_bits, name=f"list{i}_q", reset_less=True)
            m.d.comb += [rd[i].addr.eq(self.read_index), wr[i].addr.eq(w_addr), wr[i].data.eq(w_data),
                         wr[i].en.eq(w_en[i])]
            m.d.sync += q.eq(collision_read(m, rd[i], wr[i], f"list{i}"))
            words.append(q)
        cur_q = Signal(name="cur_q")  # the list chosen as the words were read
        m.d.sync += cur_q.eq(cur)
        m.d.comb += [self.read_data.eq(Mux(cur_q, words[1], words[0])), self.count.eq(count[cur])]
        return m


class CompletionQueue(wiring.Component):
    """FIFO of (source, spike step) in delivery order. `head_src` / `head_step` show the oldest entry two clocks
    after the head moves, three after a push into an empty queue (the sequencer reads it many clocks after either);
    `pop` removes it.

    The head word is registered (a plain register: the ECP5 flow makes it the block RAMs' output register,
    firmware/netlist.py), and the pushes are written from registers, a clock late, so that a read of the word being
    written need not be defined (COLLISION_X): the block RAM's word, 5.8 ns after the clock without the register,
    into the sequencer's due-step compare was 1.7 to 2.9 ns short of 10 ns on every seed (completions.fifo ->
    head_due, nmnist ECP5 build).

    Only the low `step_bits` bits of the step are kept: the sequencer pops every entry exactly `cutoff` steps after
    its push, so no entry is older than that and steps modulo 2**step_bits > cutoff tell them apart. (The full
    32-bit steps made the FIFO 43 bits wide: 10 of the LFE5U-85F's 208 block RAMs instead of 5 on `nmnist`.)"""

    def __init__(self, src_bits: int, depth: int, step_bits: int = 32):
        self.src_bits, self.depth, self.step_bits = src_bits, depth, step_bits
        self.entry = data.StructLayout({"src": src_bits, "step": step_bits})
        super().__init__({
            "push": In(stream.Signature(self.entry, always_ready=True)),
            "pop": In(1), "clear": In(1),
            "empty": Out(1), "head_src": Out(src_bits), "head_step": Out(step_bits),
            "overflow": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.fifo = fifo = Memory(shape=unsigned(self.src_bits + self.step_bits), depth=self.depth,
                                          init=[], attrs=COLLISION_X)
        rd, wr = fifo.read_port(), fifo.write_port()
        head = Signal(_bits(self.depth - 1))
        tail = Signal(_bits(self.depth - 1))
        count = Signal(_bits(self.depth))
        push_ok = Signal()
        m.d.sync += wr.en.eq(0)
        with m.If(self.push.valid):
            with m.If(count < self.depth):
                m.d.sync += [wr.addr.eq(tail), wr.data.eq(Cat(self.push.payload.src, self.push.payload.step)),
                             wr.en.eq(1)]
                m.d.comb += push_ok.eq(1)
                m.d.sync += tail.eq(Mux(tail == self.depth - 1, 0, tail + 1))
            with m.Else():
                m.d.comb += self.overflow.eq(1)
        with m.If(self.pop):
            m.d.sync += head.eq(Mux(head == self.depth - 1, 0, head + 1))
        m.d.sync += count.eq(count + push_ok - self.pop)
        with m.If(self.clear):
            m.d.sync += [head.eq(0), tail.eq(0), count.eq(0)]
        head_word = Signal.like(rd.data, name="head_word", reset_less=True)
        m.d.sync += head_word.eq(collision_read(m, rd, wr, "fifo"))
        m.d.comb += [rd.addr.eq(head), self.empty.eq(count == 0), self.head_src.eq(head_word[:self.src_bits]),
                     self.head_step.eq(head_word[self.src_bits:])]
        return m
