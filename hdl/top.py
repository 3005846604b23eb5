"""Top level: the core behind an AXI4-Lite register file and AXI4-Stream ports, flat single-underscore port names
(``s_axi_awaddr``, ``s_axis_tdata``, ``m_axis_tdata`` ...) so that Vivado's IP packager and cocotbext-axi find
the interfaces. Addresses and bits come from ``golden_model.hw_interface``.

AXI4-Lite: one outstanding write and one outstanding read, OKAY responses, 32-bit registers; a write needs both
AW and W (either order). A read of a 64-bit counter's low word latches its high word for the next read. A read or
write of WEIGHT_DATA waits until the core is between steps (the core serves the weight window then).
"""

from __future__ import annotations

from amaranth.hdl import Array, Cat, Const, Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from golden_model.hw_interface import (CONTRACT_VERSION, COUNTERS, MAGIC, OPTIMIZER_CODES, Control, Reg, Status,
                                       sizes_words)

from .core import Core
from .params import HardwareParams

__all__ = ["Accelerator", "ADDR_BITS", "RegisteredStream"]

ADDR_BITS = 12


class RegisteredStream(wiring.Component):
    """A stream through registers at full rate (a skid buffer): ``o``'s payload and valid and ``i``'s ready are
    registers, so nothing on ``o``'s side reaches back to ``i`` in the same clock. A word taken on ``i`` is on ``o``
    the next clock; when ``o`` stalls, the word taken meanwhile waits in the second register. ``pending``: a word is
    inside.

    Why: the core decodes each input word in the clock it takes it (op, channel compare, the spike list's count);
    straight from the AXI4-Stream's data, from wherever its source sits, that decode was among the nmnist ECP5
    build's longest paths (s_axis_tdata -> the spike list's count, 2.72 ns short of 10 ns)."""

    def __init__(self, width: int):
        super().__init__({"i": In(stream.Signature(width)), "o": Out(stream.Signature(width)), "pending": Out(1)})

    def elaborate(self, platform):
        m = Module()
        skid, skid_valid = Signal.like(self.i.payload, name="skid"), Signal(name="skid_valid")
        m.d.comb += [self.i.ready.eq(~skid_valid), self.pending.eq(self.o.valid | skid_valid)]
        with m.If(self.o.ready | ~self.o.valid):
            with m.If(skid_valid):
                m.d.sync += [self.o.payload.eq(skid), self.o.valid.eq(1), skid_valid.eq(0)]
            with m.Else():
                m.d.sync += [self.o.payload.eq(self.i.payload), self.o.valid.eq(self.i.valid)]
        with m.Elif(self.i.valid & ~skid_valid):
            m.d.sync += [skid.eq(self.i.payload), skid_valid.eq(1)]
        return m


class Accelerator(wiring.Component):
    def __init__(self, p: HardwareParams):
        self.p = p
        super().__init__({
            # AXI4-Lite slave
            "s_axi_awaddr": In(ADDR_BITS), "s_axi_awvalid": In(1), "s_axi_awready": Out(1),
            "s_axi_wdata": In(32), "s_axi_wstrb": In(4), "s_axi_wvalid": In(1), "s_axi_wready": Out(1),
            "s_axi_bresp": Out(2), "s_axi_bvalid": Out(1), "s_axi_bready": In(1),
            "s_axi_araddr": In(ADDR_BITS), "s_axi_arvalid": In(1), "s_axi_arready": Out(1),
            "s_axi_rdata": Out(32), "s_axi_rresp": Out(2), "s_axi_rvalid": Out(1), "s_axi_rready": In(1),
            # AXI4-Stream in: commands and events
            "s_axis_tdata": In(32), "s_axis_tvalid": In(1), "s_axis_tready": Out(1), "s_axis_tlast": In(1),
            # AXI4-Stream out: readout values, dumps
            "m_axis_tdata": Out(32), "m_axis_tvalid": Out(1), "m_axis_tready": In(1), "m_axis_tlast": Out(1),
            # level interrupt: the core waits for input (between steps)
            "irq": Out(1),
        })

    def elaborate(self, platform):
        p = self.p
        m = Module()
        m.submodules.core = core = Core(p)
        m.submodules.words = words = RegisteredStream(32)
        # idle: the core waits for input and, while it runs, no input word is inside the buffer (a host that saw
        # its last word taken and then reads IDLE sees that word's effect; with RUN off nothing is taken)
        idle = Signal()
        m.d.comb += idle.eq(core.idle & ~(words.pending & core.run))
        wiring.connect(m, words.o, core.words)
        m.d.comb += [
            words.i.payload.eq(self.s_axis_tdata), words.i.valid.eq(self.s_axis_tvalid),
            self.s_axis_tready.eq(words.i.ready),
            self.m_axis_tdata.eq(core.results.payload.data), self.m_axis_tvalid.eq(core.results.valid),
            self.m_axis_tlast.eq(core.results.payload.last), core.results.ready.eq(self.m_axis_tready),
            self.irq.eq(idle),
        ]

        control = Signal(32)
        eta_m = Signal(32)
        eta_s = Signal(8)
        win_addr = Signal(32)
        reset_pending = Signal()
        m.d.comb += [core.run.eq(control & Control.RUN), core.trace_all.eq((control & Control.TRACE_ALL) != 0),
                     core.eta_mantissa.eq(eta_m), core.eta_shift.eq(eta_s), core.win_addr.eq(win_addr),
                     core.soft_reset.eq(reset_pending)]
        # a soft-reset request is kept until the core, between steps, takes it
        with m.If(core.soft_reset & core.idle):
            m.d.sync += reset_pending.eq(0)

        status = Signal(32)
        m.d.comb += status.eq(
            (idle * Status.IDLE) | (core.busy * Status.BUSY) | (core.bad_word * Status.BAD_WORD)
            | (core.bad_channel * Status.BAD_CHANNEL) | (core.overflow * Status.OVERFLOW)
            | (core.bad_load * Status.BAD_LOAD) | ((core.saturation != 0) * Status.SATURATED))

        # ---- writes ----------------------------------------------------------------------------------------------
        # The address is decoded when it is taken (which register; WEIGHT_DATA has a flag of its own), and the
        # weight window's write request to the core is a register: the twelve-bit compares behind aw_addr, then the
        # core's IDLE decision and the window's write, in one clock were the longest path of the tiny ECP5 build and
        # of one nmnist seed. A window write reaches the core a clock after both halves are in.
        writable = [Reg.CONTROL, Reg.STATUS, Reg.SATURATION, Reg.ETA_MANTISSA, Reg.ETA_SHIFT, Reg.WEIGHT_ADDR]
        aw_sel = Signal(len(writable))  # one-hot: the register written; none set: WEIGHT_DATA or no register
        aw_wd = Signal()                # the write is to WEIGHT_DATA
        aw_have = Signal()
        w_data = Signal(32)
        w_have = Signal()
        b_pending = Signal()
        win_we = Signal()               # a window write waits for the core (registered)
        m.d.comb += [self.s_axi_awready.eq(~aw_have & ~b_pending), self.s_axi_wready.eq(~w_have & ~b_pending),
                     self.s_axi_bvalid.eq(b_pending), self.s_axi_bresp.eq(0)]
        with m.If(self.s_axi_awvalid & self.s_axi_awready):
            m.d.sync += [aw_have.eq(1), aw_wd.eq(self.s_axi_awaddr == Reg.WEIGHT_DATA),
                         aw_sel.eq(Cat(self.s_axi_awaddr == a for a in writable))]
        with m.If(self.s_axi_wvalid & self.s_axi_wready):
            m.d.sync += [w_data.eq(self.s_axi_wdata), w_have.eq(1)]
        with m.If(b_pending & self.s_axi_bready):
            m.d.sync += b_pending.eq(0)
        write_now = aw_have & w_have & ~b_pending
        m.d.sync += win_we.eq(write_now & aw_wd & ~core.win_ack)
        m.d.comb += [core.clear_errors.eq(0), core.clear_saturation.eq(0), core.win_we.eq(win_we),
                     core.win_wdata.eq(w_data)]
        done = [aw_have.eq(0), w_have.eq(0), b_pending.eq(1)]
        with m.If(write_now):
            with m.If(aw_wd):
                # wait for the core to take the write between steps
                with m.If(win_we & core.win_ack):
                    m.d.sync += [win_addr.eq(win_addr + 1), *done]
            with m.Else():
                m.d.sync += done
            sel = dict(zip(writable, aw_sel))
            with m.If(sel[Reg.CONTROL]):
                m.d.sync += control.eq(w_data & ~Control.SOFT_RESET)
                with m.If(w_data & Control.SOFT_RESET):
                    m.d.sync += reset_pending.eq(1)
            with m.If(sel[Reg.STATUS]):
                m.d.comb += core.clear_errors.eq(Cat(w_data.bit_select(Status.BAD_WORD.bit_length() - 1, 1),
                                                     w_data.bit_select(Status.BAD_CHANNEL.bit_length() - 1, 1),
                                                     w_data.bit_select(Status.OVERFLOW.bit_length() - 1, 1),
                                                     w_data.bit_select(Status.BAD_LOAD.bit_length() - 1, 1)))
            with m.If(sel[Reg.SATURATION]):
                m.d.comb += core.clear_saturation.eq(w_data)
            with m.If(sel[Reg.ETA_MANTISSA]):
                m.d.sync += eta_m.eq(w_data)
            with m.If(sel[Reg.ETA_SHIFT]):
                m.d.sync += eta_s.eq(w_data)
            with m.If(sel[Reg.WEIGHT_ADDR]):
                m.d.sync += win_addr.eq(w_data)

        # ---- reads -----------------------------------------------------------------------------------------------
        # in four clocks: the address taken and decoded (a counter's word: in range and word-aligned, high word,
        # index; else which register), the chosen value registered, then the response. The decoders and the
        # multiplexers of all registers and counters behind the address in one clock were the nmnist ECP5 build's
        # longest paths (the counter decode into counter_hi's enable, then the register read into the read data).
        ar_have = Signal()
        ar_wait = Signal()  # the value is being chosen
        r_pending = Signal()
        r_data = Signal(32)
        counter_hi = Signal(32)
        win_re = Signal()  # a window read waits for the core (registered, as win_we)
        m.d.comb += [self.s_axi_arready.eq(~ar_have & ~r_pending), self.s_axi_rvalid.eq(r_pending),
                     self.s_axi_rdata.eq(r_data), self.s_axi_rresp.eq(0), core.win_re.eq(win_re)]
        sizes = sizes_words(p.n_in, p.n_rec, p.n_out, p.lanes, p.hist_log2,
                            OPTIMIZER_CODES["adam" if p.adam else "gradient_descent"])
        regs = {
            Reg.ID: Const(MAGIC | CONTRACT_VERSION, 32),
            Reg.CONTROL: control,
            Reg.STATUS: status,
            Reg.SATURATION: core.saturation,
            Reg.ETA_MANTISSA: eta_m,
            Reg.ETA_SHIFT: eta_s,
            Reg.STEP_LO: core.step,
            Reg.STEP_HI: Const(0, 32),
            Reg.SIZES: Const(sizes[0], 32),
            Reg.SIZES2: Const(sizes[1], 32),
            Reg.LAST_ERROR: core.last_error,
            Reg.WEIGHT_ADDR: win_addr,
        }
        ar_cnt, ar_cnt_hi, ar_wd = Signal(), Signal(), Signal()
        ar_cnt_idx = Signal(range(len(COUNTERS)))
        ar_sel = Signal(range(len(regs) + 1))  # the register's position in regs; len(regs): none (reads 0)
        cnt_off = Signal(ADDR_BITS + 1)
        araddr = self.s_axi_araddr
        m.d.comb += cnt_off.eq(araddr - Reg.COUNTERS)
        with m.If(self.s_axi_arvalid & self.s_axi_arready):
            m.d.sync += [ar_have.eq(1), ar_wait.eq(1),
                         ar_cnt.eq((araddr >= Reg.COUNTERS) & (araddr < Reg.COUNTERS + 8 * len(COUNTERS))
                                   & (araddr[:2] == 0)),
                         ar_cnt_hi.eq(cnt_off[2]), ar_cnt_idx.eq(cnt_off[3:]), ar_wd.eq(araddr == Reg.WEIGHT_DATA),
                         ar_sel.eq(len(regs))]
            for i, addr in enumerate(regs):
                with m.If(araddr == addr):
                    m.d.sync += ar_sel.eq(i)
        with m.If(r_pending & self.s_axi_rready):
            m.d.sync += r_pending.eq(0)
        # the value chosen in the two clocks after the address: a counter's two words (among each 8 counters, then
        # among the 8s: the 64-bit multiplexer of all counters, spread over the die, in one clock was 64 endpoints
        # 4.68 ns short of 10 ns in the nmnist ECP5 build), or a register's
        cnt_lo_q, cnt_hi_q, reg_q = Signal(32, name="cnt_lo_q"), Signal(32, name="cnt_hi_q"), Signal(32, name="reg_q")
        ar_wait2 = Signal()
        G = 8
        n_cnt = len(COUNTERS)
        grp_lo = [Signal(32, name=f"cnt_lo_g{g}") for g in range(-(-n_cnt // G))]
        grp_hi = [Signal(32, name=f"cnt_hi_g{g}") for g in range(-(-n_cnt // G))]
        with m.If(ar_wait):
            m.d.sync += [ar_wait.eq(0), ar_wait2.eq(1), reg_q.eq(Array([*regs.values(), Const(0, 32)])[ar_sel])]
            for g, (lo, hi) in enumerate(zip(grp_lo, grp_hi)):
                group = core.counters[g * G:(g + 1) * G]
                m.d.sync += [lo.eq(Array(c[:32] for c in group)[ar_cnt_idx[:3]]),
                             hi.eq(Array(c[32:] for c in group)[ar_cnt_idx[:3]])]
        with m.If(ar_wait2):
            m.d.sync += [ar_wait2.eq(0), cnt_lo_q.eq(Array(grp_lo)[ar_cnt_idx[3:]]),
                         cnt_hi_q.eq(Array(grp_hi)[ar_cnt_idx[3:]])]
        # raised as the value would be chosen (ar_wait), so a window read takes as many clocks as before
        m.d.sync += win_re.eq(ar_have & ~r_pending & ar_wd & ~(win_re & core.win_ack))
        with m.If(ar_have & ~ar_wait & ~ar_wait2 & ~r_pending & ar_cnt):
            with m.If(ar_cnt_hi):
                m.d.sync += [r_data.eq(counter_hi), ar_have.eq(0), r_pending.eq(1)]
            with m.Else():
                m.d.sync += [r_data.eq(cnt_lo_q), counter_hi.eq(cnt_hi_q), ar_have.eq(0), r_pending.eq(1)]
        with m.Elif(ar_have & ~ar_wait & ~ar_wait2 & ~r_pending & ar_wd):
            with m.If(win_re & core.win_ack):
                m.d.sync += [r_data.eq(core.win_rdata), win_addr.eq(win_addr + 1), ar_have.eq(0), r_pending.eq(1)]
        with m.Elif(ar_have & ~ar_wait & ~ar_wait2 & ~r_pending):
            m.d.sync += [r_data.eq(reg_q), ar_have.eq(0), r_pending.eq(1)]
        return m
