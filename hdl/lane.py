"""One lane of the e-prop update pipeline: the synapses whose target lives on this lane, their traces, the
targets' history rings and input accumulators, and the pipeline that walks them.

A lane holds the synapses onto recurrent neuron j (j % lanes == lane) and readout k (k % lanes == lane). The
sequencer (``core.py``) runs *passes* over one group (the synapses of one source onto one kind of target, a
contiguous range [group_start, group_start + group_len) of this lane's synapse memory); every lane runs the same
pass at once on its own memories, so no port is shared between lanes.

Passes (``PassMode``), one synapse per clock, issue position q in the group:

  WALK    for each history entry h of the walk (outer) and each synapse q (inner): e_bar = sat(round(kappa e_bar)
          + round(psi_h z_bar_h)) for synapses onto recurrent targets, gradient g_q += Lambda_h e_bar (onto
          readouts: g_q += err_h z_bar_h); ``fixed_kernels.walk_group`` step for step;
  GD      the optimizer pass: w = clamp(sat(w - round(eta g_q))), written back; with ``transmit`` the new weight is
          also delivered. In the Adam build (``p.adam``) the same pass runs ``adam.AdamUnit`` instead: the synapse
          word, the moments word (m | sigma) and g_q enter it at stage 1 and weight and moments are written back
          (and the weight delivered) ADAM_LAT clocks later; drain ADAM_PIPE clocks after the last issue;
  TX      the stored weight is delivered: x[target] += w;
  DECAY   after a walk completed at the cutoff: e_bar = round(kappa^m e_bar), and with ``transmit`` delivery.

Pipeline (stage 0 is the sequencer's issue registered, stage 0a a clock after it, stage i >= 1 i + 1 clocks after it):

  0  issue: synapse and trace read address = group start + q (the sequencer's register), registered in each bank
  0a the synapse and trace block RAMs read; their outputs registered (BankedRAM out_reg: a block RAM's output
     arrives 5.8 ns after the clock on the ECP5, and through the bank multiplexer into the history's address it
     was the nmnist build's longest path); GD: the gradient (read at stage 0) in parts times eta
  1  synapse word (weight, local target) and e_bar arrive through the bank multiplexers; history / error read
     address registered; GD: the parts' products summed: eta * g
  2  history / error read; GD: round(eta g)
  3  psi, Lambda (history) or err arrive from the history's output registers, err registered; e_bar (forwarded
     from stages 6 to 11 when the same synapse's previous entry is still in flight, else the memory's word);
     kappa * e_bar; GD: w - round(eta g)
  4  psi * z_bar; err registered again (0 unless readouts are the targets); DECAY writes e_bar here; GD writes the
     weight (and transmits it)
  5  e_bar' = sat(round(kappa e_bar) + round(psi z_bar)); err * z_bar
  6  WALK writes e_bar'; Lambda * e_bar'
  7  g_q + Lambda e_bar' (recurrent targets) or err z_bar (readouts), saturated
  8  g_q written back

Transmissions (x[target] += w) are delivered at stage 1 (TX, DECAY) or 4 (GD), registered, and land two clocks
later (stages 3, 6): the accumulator read, then the add and the write-back (onto recurrent targets and readouts).

The sequencer must keep consecutive entries of the same synapse at least ``LAT`` clocks apart (onto readouts too:
their gradient is read a clock before it is written) and wait ``PIPE`` clocks after a pass's last issue before the
next pass or phase (its drain lasts PIPE + 1 clocks: the last writes, the gradient written at stage 8 and e_bar'
at stage 6, are driven by its last clock; the gradient's lands as the next pass issues, whose first read of it is
a clock later).
The sequencer's own reads of the synapse and trace memories (``syn.raddr``) go through the same address registers
and output registers: their words come three clocks after the address; history reads (``hist.raddr``) likewise.
"""

from __future__ import annotations

from amaranth.hdl import Array, Cat, Const, Module, Mux, Shape, Signal, Value, signed, unsigned
from amaranth.lib import enum, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from .adam import ADAM_LAT, AdamUnit
from .memory import COLLISION_X, KEEP, SlicedRAM, collision_read
from .arith import round_shift, sat_flag, saturate
from .params import HardwareParams

__all__ = ["UpdateLane", "PassMode", "MemoryAccess", "ClearableRAM", "RegisteredWrite", "BankedRAM", "SYN_BANK_LOG2",
           "HIST_BANK_LOG2", "LAT", "PIPE", "ADAM_PIPE"]

#: clocks per walk entry at least, for synapses onto recurrent targets: an entry's e_bar leaves stage 5 and is
#: forwarded from stages 6 to 10 to the same synapse's next entry at stage 3, memory serves it after that
LAT = 3
#: clocks for a pass's last issue to leave the pipeline (stage 0 a clock after the issue, stage 0a, stage 7 in the
#: drain's last clock; the walk's gradient write at stage 8 lands as the next pass (gradient descent) issues, which
#: reads it a clock later)
PIPE = 8
#: the same for the Adam build's optimizer pass: stages 0a and 1, the Adam unit, the write-back stage
ADAM_PIPE = 2 + ADAM_LAT + 2


class PassMode(enum.Enum, shape=2):
    WALK = 0
    GD = 1
    TX = 2
    DECAY = 3


class MemoryAccess(wiring.Signature):
    """The sequencer's access to one of a lane's memories (seen from the sequencer): a synchronous read port
    (data one clock after the address) and a write port. A pass in progress owns the read address."""

    def __init__(self, addr_bits: int, data_bits: int, readable: bool = True):
        members = {"waddr": Out(addr_bits), "wdata": Out(data_bits), "we": Out(1)}
        if readable:
            members.update({"raddr": Out(addr_bits), "rdata": In(data_bits)})
        super().__init__(members)


class UpdateLane(wiring.Component):
    def __init__(self, p: HardwareParams, index: int = 0):
        self.p, self.index = p, index
        slot = p.slot_bits
        super().__init__({
            # the pass (held constant by the sequencer while it runs)
            "mode": In(PassMode), "kind": In(1), "transmit": In(1), "decay_k": In(unsigned(p.decay_bits)),
            "group_len": In(slot),
            "eta_mantissa": In(signed(p.eta_bits)), "eta_shift": In(8),
            "clear_gradients": In(1),
            # one issue per clock: position in the group, history entry, the group's z_bar for that entry
            "issue_valid": In(1), "issue_q": In(slot + 1), "issue_h": In(p.hist_log2), "issue_zbar": In(p.shape("z_bar")),
            # the issue's synapse address, the group's start + issue_q, kept by the sequencer in a register
            "issue_a": In(slot),
            "owns": In(1),  # the pass drives the read addresses (else the sequencer does)
            # the sequencer's memory access (load, dump, weight window, clear, learning signals, neuron updates)
            "syn": In(MemoryAccess(slot, p.synapse_word_bits)),
            "eb": In(MemoryAccess(slot, p.shape("e_bar").width)),  # read address: the synapse memory's
            "hist": In(MemoryAccess(max(1, (p.hist_depth - 1).bit_length()),
                                    p.shape("surrogate").width + p.shape("learning_signal").width)),
            "err": In(MemoryAccess(max(1, (p.err_depth - 1).bit_length()), p.shape("error").width, readable=False)),
            "gptr": In(MemoryAccess(max(1, (p.gptr_depth - 1).bit_length()), slot)),
            # input accumulators of this lane's neurons: the sequencer takes one (reads it and zeroes it)
            "take_rec": In(1), "take_rec_index": In(p.local_bits), "x_rec": Out(p.shape("input")),
            "take_rec_index_next": In(p.local_bits),  # what take_rec_index will be in the next clock
            "take_out": In(1), "take_out_index": In(p.local_bits), "x_out": Out(p.shape("input")),
            "clear_inputs": In(1),
            # saturation flags raised this clock
            "sat_e_bar": Out(1), "sat_gradient": Out(1), "sat_weight": Out(1),
            # the Adam build: the group's step size, the moments memory (sequencer writes: clearing), flags
            **({"adam_step": In(p.adam_step_shape), "mom": In(MemoryAccess(slot, p.moment_bits, readable=False)),
                "sat_adam_m": Out(1), "sat_adam_v": Out(1)} if p.adam else {}),
        })

    def elaborate(self, platform):  # noqa: C901 - one pipeline, read top to bottom
        p = self.p
        f, c = p.fx.formats, p.fx.constants
        m = Module()
        WB, LOC, SLOT, HB = p.weight_bits, p.local_bits, p.slot_bits, p.hist_log2
        RPL, OPL, RB, OB = p.rec_per_lane, p.out_per_lane, p.rec_index_bits, p.out_index_bits
        S_W, S_EB, S_Z, S_PSI = p.shape("weight"), p.shape("e_bar"), p.shape("z_bar"), p.shape("surrogate")
        S_L, S_E, S_G, S_X = p.shape("learning_signal"), p.shape("error"), p.shape("gradient"), p.shape("input")

        # ---- memories: port A for the pass or the sequencer, writes from either ---------------------------------
        # the synapse, trace and history memories in banks (and slices), each behind its own read and write
        # registers (see BankedRAM); the read address is driven a clock before the memory reads it
        syn_r = BankedRAM(m, "syn", p.synapse_word_bits, p.syn_depth, slices=4, out_reg=True)
        eb_r = BankedRAM(m, "eb", S_EB.width, p.syn_depth, slices=2, out_reg=True)
        hist_r = BankedRAM(m, "hist", S_PSI.width + S_L.width, p.hist_depth, bank_log2=HIST_BANK_LOG2, out_reg=True,
                           gated=True)
        syn_w, eb_w, hist_w = syn_r.w, eb_r.w, hist_r.w
        mems = {}
        for name, width, depth in (("gptr", SLOT, p.gptr_depth), ("err", S_E.width, p.err_depth)):
            mem = Memory(shape=unsigned(width), depth=depth, init=[], attrs=COLLISION_X)
            m.submodules[name] = mem
            rd, wr = mem.read_port(), mem.write_port()
            mems[name] = (rd, RegisteredWrite(m, wr, name), collision_read(m, rd, wr, name))
        (gptr_r, gptr_w, gptr_data), (err_r, err_w, err_data) = mems["gptr"], mems["err"]
        m.d.comb += [self.syn.rdata.eq(syn_r.data), self.eb.rdata.eq(eb_r.data), self.hist.rdata.eq(hist_r.data),
                     self.gptr.rdata.eq(gptr_data), gptr_r.addr.eq(self.gptr.raddr)]
        # sequencer writes; the pass's writes (below) come later in this module and take precedence.
        # The sequencer writes the synapse and trace memories only between steps (LOAD, the weight window, CLEAR):
        # those writes are registered here once more, a clock before the banks' own registers, so that the
        # sequencer's choice of address, word and enable has a clock to itself (its states' multiplexers into the
        # banks' write registers were the nmnist ECP5 build's longest paths, 17-20 ns). Nothing reads a word in the
        # clocks before such a write lands.
        for name, port, acc in (("syn", syn_w, self.syn), ("eb", eb_w, self.eb)):
            addr, data, en = (Signal.like(port.addr, name=f"{name}_seq_waddr"),
                              Signal.like(port.data, name=f"{name}_seq_wdata"), Signal(name=f"{name}_seq_we"))
            m.d.sync += [addr.eq(acc.waddr), data.eq(acc.wdata), en.eq(acc.we)]
            m.d.comb += [port.addr.eq(addr), port.data.eq(data), port.en.eq(en)]
        for port, acc in ((gptr_w, self.gptr), (hist_w, self.hist), (err_w, self.err)):
            m.d.comb += [port.addr.eq(acc.waddr), port.data.eq(acc.wdata), port.en.eq(acc.we)]

        # input accumulators of the recurrent targets and the gradients: RAMs with an asynchronous read (LUT RAM).
        # The accumulators are zeroed through their write port (a take writes 0 behind its read, and the soft reset
        # sweeps them), not by "written" bits: the bits' 150-way select behind the read address, on the way from a
        # transmission's target to the neurons' input register, was the nmnist ECP5 build's longest path (16.96 ns,
        # 14.49 of it routing). The gradients keep their bits (cleared in one clock before each walk).
        x_acc = SlicedRAM(m, "x_rec", RPL, S_X, slices=2)
        x_out = Array(Signal(S_X, name=f"x_o{i}") for i in range(OPL))
        grad = ClearableRAM(m, "grad", max(RPL, OPL), S_G, slices=4)

        # ---- the pass's settings, registered here ---------------------------------------------------------------
        # The sequencer sets mode, kind, transmit and decay_k in the clock before a pass's first issue, or with it,
        # and holds them through the pass's drain; the group's start is set clocks before, eta for the whole step.
        # Every stage from 0 on sees them through one register in the lane: from the sequencer's registers, far
        # across the die, into a whole lane's write multiplexers, gradient read and write and rounding masks they
        # were the nmnist ECP5 build's widest classes of failing paths (kind -> the gradient LUT RAM's write: 470
        # endpoints, 6.30 ns short of 10 ns; mode -> the bank write registers: 549, 5.39 ns short). Only the
        # issue clock itself (stage 0's registers) reads the sequencer's own mode.
        mode, kind, transmit = Signal(PassMode, name="mode"), Signal(name="kind"), Signal(name="transmit")
        decay_k = Signal.like(self.decay_k, name="decay_k")
        eta_m, eta_s = Signal.like(self.eta_mantissa, name="eta_m"), Signal.like(self.eta_shift, name="eta_s")
        m.d.sync += [mode.eq(self.mode), kind.eq(self.kind), transmit.eq(self.transmit), decay_k.eq(self.decay_k),
                     eta_m.eq(self.eta_mantissa), eta_s.eq(self.eta_shift)]

        # ---- issue and stage registers ----------------------------------------------------------------------------
        walk = mode == PassMode.WALK
        gd = mode == PassMode.GD
        # stage 0: the issue registered, the synapse / trace (/ moments) read address with it: registers (one per
        # bank, BankedRAM) drive the block RAMs directly (the issue's adder and the sequencer's multiplexer in front
        # of one register driving all ~130 block RAMs of an nmnist lane were the nmnist ECP5 build's longest path)
        # chain[i]: the issue's registers i + 1 clocks after it; st[k] those of stage k (chain[1] is stage 0a's)
        chain = [dict(v=Signal(name=f"v{i}"), a=Signal(SLOT, name=f"a{i}"), q=Signal.like(self.issue_q, name=f"q{i}"),
                      h=Signal(HB, name=f"h{i}"), z=Signal(S_Z, name=f"z{i}"), walk=Signal(name=f"walk{i}"))
                 for i in range(11)]
        st = [chain[0]] + chain[2:]
        # (the address a register in the sequencer: the group start + issue_q adder in front of the banks' address
        # registers was 11-270 endpoints up to 3.19 ns short of 10 ns, issue_q -> their address registers)
        a_in = self.issue_a
        m.d.sync += [st[0]["v"].eq(self.issue_valid & (self.issue_q < self.group_len)), st[0]["a"].eq(a_in),
                     st[0]["q"].eq(self.issue_q), st[0]["h"].eq(self.issue_h), st[0]["z"].eq(self.issue_zbar),
                     st[0]["walk"].eq(self.mode == PassMode.WALK)]
        for i in range(1, len(chain)):
            for key in ("v", "a", "q", "h", "z", "walk"):
                m.d.sync += chain[i][key].eq(chain[i - 1][key])
        # (registered in each bank of the synapse and trace memories: BankedRAM)
        syn_raddr = Signal(SLOT)
        m.d.comb += [syn_raddr.eq(Mux(self.owns, a_in, self.syn.raddr)), syn_r.raddr.eq(syn_raddr),
                     eb_r.raddr.eq(syn_raddr)]

        k_s = c["kappa"].shift
        to_eb = f["surrogate"].frac_bits + f["z_bar"].frac_bits - f["e_bar"].frac_bits
        up_l = f["gradient"].frac_bits - f["learning_signal"].frac_bits - f["e_bar"].frac_bits
        up_e = f["gradient"].frac_bits - f["error"].frac_bits - f["z_bar"].frac_bits
        g_lo, g_hi = f["gradient"].min_int, f["gradient"].max_int
        w_lo, w_hi = f["weight"].min_int, f["weight"].max_int
        clamp_lo = max(w_lo, int(f["weight"].quantize(p.config.optimizer.Wmin)[0]))
        clamp_hi = min(w_hi, int(f["weight"].quantize(p.config.optimizer.Wmax)[0]))

        # ---- stage 1: synapse word and e_bar arrive from their block RAMs' output registers (stage 0a: out_reg) -----
        # which e_bar the entry takes at stage 3: the same synapse's previous entry 3 to 8 clocks ahead (then at
        # stage 6 to 11: e_bar' leaves stage 5, is written back at stage 6 and lands two clocks later, in the banks'
        # write registers, then the block RAM: after this entry's read at stage 0a when 9 or more clocks ahead) or
        # the memory's word
        FWD = (3, 4, 5, 6, 7, 8)
        w1, t1 = Signal(S_W, name="w1"), Signal(LOC, name="t1")
        ebs = {i: Signal(S_EB, name=f"eb{i}") for i in range(6, 6 + len(FWD))}
        walk_rec = walk & (kind == 0)
        m.d.comb += [w1.eq(syn_r.data[:WB]), t1.eq(syn_r.data[WB:WB + LOC])]
        e_mem1, e_mem2 = Signal(S_EB, name="e_mem1"), Signal(S_EB, name="e_mem2")
        fwd2 = [Signal(name=f"fwd{d}_2") for d in FWD]
        fwd3 = Signal(name=f"fwd{FWD[0]}_3")
        m.d.comb += e_mem1.eq(eb_r.data)
        m.d.sync += e_mem2.eq(e_mem1)
        m.d.sync += [fwd2[i].eq(st[1 + d]["v"] & walk_rec & (st[1 + d]["a"] == st[1]["a"])) for i, d in enumerate(FWD)]
        m.d.sync += fwd3.eq(fwd2[0])
        w2, t2 = Signal(S_W, name="w2"), Signal(LOC, name="t2")
        m.d.sync += [w2.eq(w1), t2.eq(t1)]
        # history rings: address local * H + h (H a power of two: exactly H * neurons deep), registered at stage 1
        # from the synapse word's target (registers, one per bank, drive the history memory's block RAMs)
        err_addr2 = Signal.like(err_r.addr)
        hist_a = Cat(st[1]["h"], t1[:RB]) if RPL > 1 else st[1]["h"]
        m.d.comb += hist_r.raddr.eq(Mux(self.owns, hist_a, self.hist.raddr))
        m.d.sync += err_addr2.eq(Cat(st[1]["h"], t1[:OB]) if OPL > 1 else st[1]["h"])
        m.d.comb += err_r.addr.eq(err_addr2)

        # ---- stage 3: history or error arrive and are registered; e_bar; kappa * e_bar --------------------------------
        # (the history memory's block RAMs and their output multiplexer into the psi * z_bar multiplier in one clock
        # were the nmnist ECP5 build's longest path)
        # (err4 plain: the ECP5 flow makes it the error block RAM's output register)
        psi4, lam4 = Signal(S_PSI, name="psi4"), Signal(S_L, name="lam4")
        err4 = Signal(S_E, name="err4", reset_less=True)
        # (psi and Lambda: the history memory's output registers, out_reg)
        m.d.comb += [psi4.eq(hist_r.data[:S_PSI.width]), lam4.eq(hist_r.data[S_PSI.width:])]
        m.d.sync += err4.eq(err_data)
        # the choice among the memory's word and the entries 4 to 8 clocks ahead made at stage 2 (their e_bar' is in
        # ebs[6..10] then, ebs[7..11] at stage 3) and registered; stage 3 only chooses between it and the entry 3
        # clocks ahead (ebs[6], leaving stage 5 as this entry reaches stage 2): the 7-way choice in front of the
        # multipliers was 66 endpoints 5.70 ns short of 10 ns in the nmnist ECP5 build
        e3, e_sel3 = Signal(S_EB, name="e3"), Signal(S_EB, name="e_sel3")
        sel = e_mem2
        for i in reversed(range(1, len(FWD))):
            sel = Mux(fwd2[i], ebs[5 + i], sel)
        m.d.sync += e_sel3.eq(sel)
        m.d.comb += e3.eq(Mux(fwd3, ebs[6], e_sel3))
        pke4 = Signal(signed(S_EB.width + c["kappa"].mantissa.bit_length() + 1))
        pdec4 = Signal(signed(S_EB.width + p.decay_bits + 1))
        m.d.sync += [pke4.eq(e3 * c["kappa"].mantissa), pdec4.eq(e3 * decay_k)]

        # ---- stage 4: psi * z_bar, err registered again; DECAY writes e_bar ---------------------------------------
        ppz5 = Signal(signed(S_PSI.width + S_Z.width + 1))
        # err * z_bar a stage later (stage 5, into ge6), from err5: the error's block RAM is far from the
        # multipliers, and its output across the die into the multiplier's input register was 18 endpoints 2.13 ns
        # short of 10 ns (err -> pez5, nmnist ECP5 build). err5 is 0 unless readouts are this pass's targets (the
        # term the gradient does not take, zeroed as ge6 was)
        err5 = Signal(S_E, name="err5")
        pke5, lam5 = Signal.like(pke4, name="pke5"), Signal(S_L, name="lam5")
        m.d.sync += [ppz5.eq(psi4 * st[4]["z"]), err5.eq(Mux(kind == 0, 0, err4)), pke5.eq(pke4), lam5.eq(lam4)]
        # which of the pass's writes a stage does, decided a stage ahead (registers select the banks' write inputs)
        dec_w4, gd_w4, walk_w6 = Signal(name="dec_w4"), Signal(name="gd_w4"), Signal(name="walk_w6")
        m.d.sync += [dec_w4.eq(st[3]["v"] & (mode == PassMode.DECAY) & (kind == 0)),
                     gd_w4.eq(st[3]["v"] & gd & (eta_m != 0)), walk_w6.eq(st[5]["v"] & walk_rec)]
        with m.If(dec_w4):  # e_bar <- round(kappa^m e_bar)
            m.d.comb += [eb_w.addr.eq(st[4]["a"]), eb_w.data.eq(round_shift(pdec4, k_s)), eb_w.en.eq(1)]

        # ---- stage 5: e_bar' ----------------------------------------------------------------------------------------
        eb_sum = Signal(signed(pke5.shape().width + 2))
        m.d.comb += eb_sum.eq(round_shift(pke5, k_s) + round_shift(ppz5, to_eb))
        lam6 = Signal(S_L)
        ge6 = Signal(signed(S_E.width + S_Z.width + 1 + max(0, up_e)))
        # the term the gradient does not take is zeroed here (kind is the pass's; the error's at stage 4, in err5),
        # so that stage 7 adds the OR of the two: kind's choice in front of the add and its 475 write pins was 3.72 ns
        # short of 10 ns (nmnist ECP5)
        m.d.sync += [ebs[6].eq(saturate(eb_sum, 0, f["e_bar"].max_int, S_EB)), lam6.eq(Mux(kind == 0, lam5, 0)),
                     ge6.eq((err5 * st[5]["z"]) << up_e)]
        m.d.sync += [ebs[i].eq(ebs[i - 1]) for i in range(7, 6 + len(FWD))]
        sat_e_bar = st[5]["v"] & walk_rec & sat_flag(eb_sum, 0, f["e_bar"].max_int)

        # ---- stage 6: e_bar' written back, Lambda * e_bar' -----------------------------------------------------------
        with m.If(walk_w6):
            m.d.comb += [eb_w.addr.eq(st[6]["a"]), eb_w.data.eq(ebs[6]), eb_w.en.eq(1)]
        ple7 = Signal(signed(S_L.width + S_EB.width + 1))
        ge7 = Signal.like(ge6)
        m.d.sync += [ple7.eq(lam6 * ebs[6]), ge7.eq(ge6)]

        # ---- stage 7: gradient accumulation --------------------------------------------------------------------------
        # one read port: the walk's accumulation, or gradient descent (below) during its pass
        # read a clock ahead and registered (the read-add-write in one clock was the ECP5's longest path): at stage
        # 6 for the walk's stage 7 (the same synapse's previous entry wrote it at least 2 clocks before, as entries
        # last WALK_MIN_CYC >= 3), at stage 0 for gradient descent's product (stages 0a to 2)
        # (the address a register of its own, loaded with what the walk's st[6] or the issue's st[0] will hold: the
        # choice between them was in front of the LUT RAM's read)
        g_read = Signal(S_G)

        m.d.sync += g_read.eq(grad.read_data)
        g_new = Signal(signed(S_G.width + 2))
        term = Signal(signed(max((ple7 << up_l).shape().width, ge7.shape().width)), name="g_term")
        m.d.comb += [term.eq((ple7 << up_l) | ge7), g_new.eq(g_read + term)]
        # the saturated sum registered and written a clock later, at stage 8 (the add, the saturation and the LUT
        # RAM's ~420 write pins in one clock were 421 endpoints 3.67 ns short of 10 ns, the longest, in 216505c's
        # nmnist ECP5 build): the same synapse's next entry reads it at its stage 6, at least 3 clocks later (LAT),
        # gradient descent at its stage 0, after the walk's drain; the written bits see the write as it is driven.
        # (The walk's last entry is at stage 8 in the drain's last clock: its own flag, not the pass's mode)
        g_sat8 = Signal(S_G, name="g_sat8")
        m.d.sync += g_sat8.eq(saturate(g_new, g_lo, g_hi, S_G))
        with m.If(st[8]["v"] & st[8]["walk"]):
            grad.write(st[8]["q"], g_sat8)
        sat_gradient = st[7]["v"] & st[7]["walk"] & sat_flag(g_new, g_lo, g_hi)
        with m.If(self.clear_gradients):
            grad.clear_all()
        grad.finish(self.mode == PassMode.WALK, st[5]["q"], self.issue_q)

        # ---- gradient descent (stages 1-4): w' = clamp(sat(w - round(eta g))) --------------------------------------
        # eta * g in two clocks: the gradient (read at stage 0, here at 0a) in 17-bit parts, each part's product (one
        # 18 x 18 multiplier each) registered at stage 1, their sum at stage 2 (the 48 x 16 product's multipliers
        # and the adders behind them in one clock: 51 endpoints 5.12 ns short of 10 ns in the nmnist ECP5 build)
        g1 = Signal(S_G)
        m.d.sync += g1.eq(g_read)  # (the Adam unit's gradient)
        parts = [(lo, min(lo + 17, S_G.width)) for lo in range(0, S_G.width, 17)]
        pp1 = [Signal(signed(hi - lo + 1 + eta_m.shape().width), name=f"gd_pp{lo}") for lo, hi in parts]
        for (lo, hi), pp in zip(parts, pp1):
            g_part = g_read[lo:hi].as_signed() if hi == S_G.width else Cat(g_read[lo:hi], Const(0, 1)).as_signed()
            m.d.sync += pp.eq(g_part * eta_m)
        pg2 = Signal(signed(S_G.width + eta_m.shape().width))
        pg_sum = pp1[0]
        for (lo, _), pp in zip(parts[1:], pp1[1:]):
            pg_sum = pg_sum + (pp << lo)
        m.d.sync += pg2.eq(pg_sum)
        # round(pg2 / 2**eta_s), ties to even, for the step's shift (held by the sequencer for the whole step):
        # the floor shift q = pg2 >> s and, beside it, whether to round up: the guard bit (s - 1) set and the kept
        # lowest bit (s) or a bit below the guard set (s = 0: never), from masks registered from the shift; the
        # round-up is a carry into stage 3's subtraction. (The bias add in front of the barrel shift, both in this
        # clock, was the ECP5 tiny build's longest path.) Shifts beyond the product's width all round to 0.
        XW = pg2.shape().width + 2
        s_max = XW - 1
        # (the shift limited to the product's width and registered first, then its masks: the limit's compare and
        # the masks' compares behind it in one clock were up to 31 endpoints 2.49 ns short of 10 ns, eta_s ->
        # gd_below_guard, nmnist ECP5 build; eta_s holds for the whole step, set clocks before its first pass)
        s_in, s_eff = Signal(range(XW), name="s_in"), Signal(range(XW), name="s_eff")
        m.d.sync += s_in.eq(Mux(eta_s > s_max, s_max, eta_s))
        # the masks as one compare of the shift per bit (bit i: i == s, i == s - 1, i < s - 1), not a shifter and a
        # subtraction (the nmnist ECP5 build: eta_shift -> gd_below_guard, 80 endpoints 3.74 ns short of 10 ns)
        bit_s, bit_guard, below_guard = (Signal(XW, name=n) for n in ("gd_bit_s", "gd_bit_guard", "gd_below_guard"))
        s_nonzero = Signal()
        m.d.sync += [s_eff.eq(s_in), bit_s.eq(Cat(s_in == i for i in range(XW))),
                     bit_guard.eq(Cat(s_in == i + 1 for i in range(XW))),
                     below_guard.eq(Cat(s_in > i + 1 for i in range(XW))), s_nonzero.eq(s_in != 0)]
        xe = Signal(signed(XW))
        m.d.comb += xe.eq(pg2)
        up = Signal()
        m.d.comb += up.eq(s_nonzero & (xe & bit_guard).any() & ((xe & bit_s).any() | (xe & below_guard).any()))
        q3, up3 = Signal(signed(XW), name="q3"), Signal(name="up3")
        w3, t3 = Signal(S_W, name="w3"), Signal(LOC, name="t3")
        m.d.sync += [q3.eq(xe >> s_eff), up3.eq(up), w3.eq(w2), t3.eq(t2)]
        # w3 - (q3 + up3) in one carry chain: (2 w3 - (2 q3 + up3)) >> 1
        diff = Signal(signed(XW + 4))
        m.d.comb += diff.eq(Cat(Const(0, 1), w3).as_signed() - Cat(up3, q3).as_signed())
        wnew = Signal(signed(XW + 3))
        m.d.comb += wnew.eq(diff >> 1)
        sat_weight = st[3]["v"] & gd & (eta_m != 0) & sat_flag(wnew, w_lo, w_hi)
        w4, t4 = Signal(S_W, name="w4"), Signal(LOC, name="t4")
        if w_lo <= clamp_lo <= clamp_hi <= w_hi:
            # saturation to the format, then the clamp inside it, is the clamp: two compares of the difference side
            # by side (the saturation's compares, then the clamp's behind them, made a long chain)
            wcl = Mux(wnew < clamp_lo, clamp_lo, Mux(wnew > clamp_hi, clamp_hi, wnew[:S_W.width].as_signed()))
        else:
            wsat = saturate(wnew, w_lo, w_hi, S_W)
            wcl = Mux(wsat < clamp_lo, clamp_lo, Mux(wsat > clamp_hi, clamp_hi, wsat))
        m.d.sync += [w4.eq(Mux(eta_m == 0, w3, wcl)), t4.eq(t3)]
        if not p.adam:
            with m.If(gd_w4):
                m.d.comb += [syn_w.addr.eq(st[4]["a"]), syn_w.data.eq(Cat(w4, t4)), syn_w.en.eq(1)]
            opt_v, opt_w, opt_t = st[4]["v"], w4, t4
        else:
            # the Adam unit raises the weight's flag (self._adam_sat_w) in place of gradient descent's
            opt_v, opt_w, opt_t = self._adam(m, p, syn_r, syn_w, st, w1, t1, g1, gd, eta_m)

        # ---- transmission: the optimizer's new weight (stage 4, Adam: later), else the stored one (stage 1),
        # registered before its accumulator's read-add-write (the synapse RAM's output feeding the accumulator RAM's
        # address in the same clock was the nmnist design's longest path on the ECP5)
        tx_v, tx_w, tx_t = Signal(name="tx_v"), Signal(S_W, name="tx_w"), Signal(LOC, name="tx_t")
        tx_v_d, tx_t_d = Signal(name="tx_v_d"), Signal(LOC, name="tx_t_d")
        m.d.comb += [tx_v_d.eq(Mux(gd, opt_v & transmit,
                                   st[1]["v"] & ((mode == PassMode.TX) | ((mode == PassMode.DECAY) & transmit)))),
                     tx_t_d.eq(Mux(gd, opt_t, t1))]
        # the readout target also one-hot, registered beside tx_t: the readouts' accumulator is chosen by an AND-OR
        # on it, not a 10-way multiplexer decoding tx_t (tx_t -> ot_x, 45 endpoints 2.71 ns short, nmnist ECP5)
        tx_oh = Signal(OPL, name="tx_oh")
        m.d.sync += [tx_v.eq(tx_v_d), tx_w.eq(Mux(gd, opt_w, w1)), tx_t.eq(tx_t_d),
                     tx_oh.eq(Cat(*(tx_t_d == i for i in range(OPL))))]
        # one read port: transmissions read their target, the neuron updates (a later phase) take theirs. (A second
        # port for the take, a copy of the LUT RAM, removed the transmission target -> neurons' input register path,
        # seed 1's longest at 52.52 MHz, but cost 1,290 LUT4, and the nmnist builds were slower with it: seeds 1-3
        # 52.12, 55.29, 54.90 MHz, against 58.01, 54.51, 58.96 MHz without it.)
        # A transmission onto a recurrent target reads its accumulator (registered), then adds and writes it back a
        # clock later; a transmission to the same target in the clock behind it takes the sum being written
        # (forwarded). The read and the add-write in one clock was the nmnist ECP5 build's longest path.
        # The read address is a register of its own, loaded with the next clock's (the transmission's target, else
        # the take's index): from the sequencer's take index through the choice into the LUT RAM it was 48 + 48
        # endpoints 4.76 ns short of 10 ns in the nmnist ECP5 build (to the neurons' x1 and to acc_x). Takes and
        # transmissions never share a clock (the neuron phase follows the passes' drains).
        x_acc.load_read_address(Mux(tx_v_d, tx_t_d, self.take_rec_index_next))
        acc_v, acc_fwd = Signal(name="acc_v"), Signal(name="acc_fwd")
        acc_t, acc_w, acc_x = Signal(LOC, name="acc_t"), Signal(S_W, name="acc_w"), Signal(S_X, name="acc_x")
        acc_sum, acc_last = Signal(S_X, name="acc_sum"), Signal(S_X, name="acc_last")
        m.d.sync += [acc_v.eq(tx_v & (kind == 0)), acc_t.eq(tx_t), acc_w.eq(tx_w), acc_x.eq(x_acc.read_data),
                     acc_fwd.eq(acc_v & (acc_t == tx_t)), acc_last.eq(acc_sum)]
        # the sum wraps to the accumulator's width, as the one-clock read-add-write did
        m.d.comb += acc_sum.eq(Mux(acc_fwd, acc_last, acc_x) + acc_w)
        with m.If(acc_v):
            x_acc.write(acc_t, acc_sum)
        # onto readouts (registers) the same way: the target's accumulator chosen and registered, then added and
        # written back a clock later, forwarded back to back (the read multiplexer, the add and the write-back in one
        # clock were the nmnist ECP5 build's longest path, seed 2: 57.36 MHz, 17.44 ns)
        ot_v, ot_fwd = Signal(name="ot_v"), Signal(name="ot_fwd")
        ot_t, ot_w, ot_x = Signal(LOC, name="ot_t"), Signal(S_W, name="ot_w"), Signal(S_X, name="ot_x")
        ot_sum, ot_last = Signal(S_X, name="ot_sum"), Signal(S_X, name="ot_last")
        tx_x = 0
        for i in range(OPL):
            tx_x = tx_x | Mux(tx_oh[i], x_out[i], 0)
        m.d.sync += [ot_v.eq(tx_v & (kind == 1)), ot_t.eq(tx_t), ot_w.eq(tx_w), ot_x.eq(tx_x),
                     ot_fwd.eq(ot_v & (ot_t == tx_t)), ot_last.eq(ot_sum)]
        m.d.comb += ot_sum.eq(Mux(ot_fwd, ot_last, ot_x) + ot_w)
        with m.If(ot_v):
            m.d.sync += x_out[ot_t].eq(ot_sum)

        # ---- input accumulators: taken by the neuron updates (after this step's transmissions), or cleared ------
        # (a take and a transmission's write never share a clock: the neuron phase follows the passes' drains; the
        # soft reset holds clear_inputs for more clocks than there are accumulators, plus one)
        # the readout accumulator at take_out_index, registered every clock (the sequencer keeps the index on the
        # readout it works on, and takes it a clock later: the state decode and the 10-way choice into the
        # sequencer's register were 12 endpoints 3.21 ns short, take_out -> ro_x, nmnist ECP5)
        m.d.comb += self.x_rec.eq(x_acc.read_data)
        m.d.sync += self.x_out.eq(x_out[self.take_out_index])
        with m.If(self.take_rec):
            x_acc.write(self.take_rec_index, 0)
        # the soft reset's clear a clock late, from a register of the lane's own: the sequencer's state decode across
        # the die into the accumulator LUT RAM's write pins was up to 815 endpoints 1.87 ns short of 10 ns (nmnist
        # ECP5 build, clear_inputs -> x_rec). The soft reset outlasts the sweep by more than that clock (core.py).
        clear_l = Signal(name="clear_inputs_l")
        m.d.sync += clear_l.eq(self.clear_inputs)
        sweep = Signal(range(RPL), name="x_rec_sweep")
        m.d.sync += sweep.eq(Mux(clear_l & (sweep != RPL - 1), sweep + 1, 0))
        with m.If(self.take_out):
            m.d.sync += x_out[self.take_out_index].eq(0)
        with m.If(clear_l):
            x_acc.write(sweep, 0)
            for x in x_out:
                m.d.sync += x.eq(0)

        m.d.comb += [self.sat_e_bar.eq(sat_e_bar), self.sat_gradient.eq(sat_gradient),
                     self.sat_weight.eq(self._adam_sat_w if p.adam else sat_weight)]
        return m

    def _adam(self, m, p, syn_r, syn_w, st, w1, t1, g1, gd, eta_m):
        """The Adam build's optimizer pass: synapse word, moments and gradient into the Adam unit at stage 1,
        weight and moments written back when they leave it; learning off (eta 0) writes nothing, and a
        transmitting pass then delivers the stored weight (the fixed engine skips Adam entirely)."""
        S_M = p.shape("adam_m")
        SLOT, LOC = p.slot_bits, p.local_bits
        mom_r = BankedRAM(m, "mom", p.moment_bits, p.syn_depth, slices=2, out_reg=True)
        mom_w = mom_r.w
        m.d.comb += [mom_r.raddr.eq(syn_r.raddr),
                     mom_w.addr.eq(self.mom.waddr), mom_w.data.eq(self.mom.wdata), mom_w.en.eq(self.mom.we)]
        m.submodules.adam = unit = AdamUnit(p)
        m.d.comb += [unit.valid.eq(st[1]["v"] & gd), unit.g.eq(g1), unit.w.eq(w1),
                     unit.m.eq(mom_r.data[:S_M.width].as_signed()), unit.sigma.eq(mom_r.data[S_M.width:]),
                     unit.step.eq(self.adam_step), unit.eta_shift.eq(self.eta_shift)]
        # address, target and stored weight ride beside the unit
        a = [Signal(SLOT, name=f"adam_a{i}") for i in range(ADAM_LAT + 1)]
        t = [Signal(LOC, name=f"adam_t{i}") for i in range(ADAM_LAT + 1)]
        w = [Signal(p.shape("weight"), name=f"adam_w{i}") for i in range(ADAM_LAT + 1)]
        m.d.comb += [a[0].eq(st[1]["a"]), t[0].eq(t1), w[0].eq(w1)]
        for i in range(1, ADAM_LAT + 1):
            m.d.sync += [a[i].eq(a[i - 1]), t[i].eq(t[i - 1]), w[i].eq(w[i - 1])]
        learning = eta_m != 0
        with m.If(unit.out_valid & learning):
            m.d.comb += [syn_w.addr.eq(a[-1]), syn_w.data.eq(Cat(unit.out_w, t[-1])), syn_w.en.eq(1),
                         mom_w.addr.eq(a[-1]), mom_w.data.eq(Cat(unit.out_m, unit.out_sigma)), mom_w.en.eq(1)]
        m.d.comb += [self.sat_adam_m.eq(unit.sat_m & learning), self.sat_adam_v.eq(unit.sat_v & learning)]
        self._adam_sat_w = unit.sat_weight & learning
        return unit.out_valid, Mux(learning, unit.out_w, w[-1]), t[-1]


#: words per bank (log2) of a lane's synapse, trace (and moments) memories: the depth of an ECP5 block RAM
#: (DP16KD) as 16384 x 1, the shape Yosys maps them to (an nmnist lane's synapse memory, 47420 x 28, to 3 x 28
#: DP16KD, its trace memory to 3 x 16), so banking and slicing costs no block RAM and adds no multiplexer
SYN_BANK_LOG2 = 14
#: the same for the history memory: 4096 words (an nmnist lane's, 19200 x 36, maps to 5 banks of 8 (the last 6)
#: DP16KD, as many as unbanked)
HIST_BANK_LOG2 = 12


class BankedRAM:
    """A memory of `depth` words with one synchronous read port and one write port, in banks of 2**`bank_log2`
    words (one bank, a plain memory, when it is no deeper), each bank in `slices` memories of a slice of the word's
    bits, each slice behind its own address registers.

    Drive ``raddr`` (combinationally): it is registered, and the word arrives on ``data`` a clock after the
    register, two after ``raddr`` (as a register in front of a memory's synchronous read port). ``w`` behaves as
    a RegisteredWrite: what is driven on ``w.addr``, ``w.data``, ``w.en`` is written a clock later.

    Why: a single address register of an nmnist lane's synapse and trace memories drove ~130 block RAMs spread over
    the die (its net was the ECP5 build's longest path, almost all routing). Here each slice of each bank has its
    own read address, write address, write data and write-enable registers, each driving a few block RAMs that
    placement can keep together. They are copies of one another, loaded every clock; Yosys would merge them into one
    again, so they are marked KEEP (the ECP5 flow gives them Yosys's ``keep``). They once loaded only when the
    address fell into their bank (or one of its bits was set), to make them differ: that compare and the enable
    behind it were the nmnist build's widest failing class (group_start -> the address registers, 110 endpoints,
    3.16 ns short of 10 ns), and one write-enable register per bank drove its ~20 block RAMs across the die (13.6
    ns, 12.9 of them wire: the longest path). The read data is chosen by the bank index, registered with the
    address and again with the read (the multiplexer Yosys builds behind the block RAMs of a deep memory anyway).

    With ``out_reg`` every slice's output is registered before the bank multiplexer and the word arrives a clock
    later (three after ``raddr``): a block RAM's output leaves it 5.8 ns after the clock on the ECP5 without its
    output register, and across the die through the multiplexer into its reader it made the nmnist build's longest
    paths (history -> psi, 6.16 ns short of 10 ns; history -> the learning signal's read, traces -> the DUMP
    register). The registers are plain (no reset, no enable, nothing in front of them), so the ECP5 flow moves them
    into the block RAMs' own output registers (0.9 ns after the clock; firmware/netlist.py), and the bank
    multiplexer behind them chooses by the bank index registered a third time. For that the memories are marked
    COLLISION_X: a read at the edge that writes its address is never used (collision_read), so Yosys need
    not put a bypass between the block RAM and the register.

    ``gated``: each slice's register loads 0 unless its bank is the one read, so the multiplexer behind them is an
    OR of the registers, with no bank select; the register stays in the fabric (behind the multiplexer Yosys puts
    on a block RAM deeper than one DP16KD, as the history memory's 4096-word banks of 2048 x 9 DP16KD). With the
    multiplexer behind plain registers the history's word reached the psi * z_bar multiplier 4.46 ns short of 10 ns
    (bank select -> ppz5, nmnist ECP5 build, seed 4), against 2.22 ns with the OR."""

    def __init__(self, m: Module, name: str, width: int, depth: int, bank_log2: int = SYN_BANK_LOG2,
                 slices: int = 1, out_reg: bool = False, gated: bool = False):
        bank = 1 << bank_log2
        n = max(1, -(-depth // bank))
        addr_bits = max(1, (depth - 1).bit_length())
        self.raddr = Signal(addr_bits, name=f"{name}_raddr")
        self.data = Signal(width, name=f"{name}_rdata")
        self.w = w = WriteSignals(addr_bits, width, name)
        if n == 1:
            mem = Memory(shape=unsigned(width), depth=depth, init=[], attrs=COLLISION_X)
            m.submodules[name] = mem
            rd, wr = mem.read_port(), mem.write_port()
            m.d.sync += [rd.addr.eq(self.raddr), wr.addr.eq(w.addr), wr.data.eq(w.data), wr.en.eq(w.en)]
            if out_reg:
                q = Signal(width, name=f"{name}_q", reset_less=True)  # the block RAM's output register
                m.d.sync += q.eq(collision_read(m, rd, wr, name))
                m.d.comb += self.data.eq(q)
            else:
                m.d.comb += self.data.eq(rd.data)
            return
        slices = max(1, min(slices, width))
        edges = [k * width // slices for k in range(slices + 1)]
        banks = []
        sel0 = Signal(range(n), name=f"{name}_bank0")  # the bank read: with the address registers, then the read
        sel1 = Signal(range(n), name=f"{name}_bank1")
        for i in range(n):
            wsel = Signal(name=f"{name}_wsel{i}")  # the write address falls into the bank (written or not)
            m.d.comb += wsel.eq(w.addr[bank_log2:] == i)
            parts = []
            for k in range(slices):
                lo, hi = edges[k], edges[k + 1]
                mem = Memory(shape=unsigned(hi - lo), depth=min(bank, depth - i * bank), init=[], attrs=COLLISION_X)
                m.submodules[f"{name}_b{i}s{k}" if slices > 1 else f"{name}_b{i}"] = mem
                rd, wr = mem.read_port(), mem.write_port()
                # the slice's own address, data and write-enable registers, loaded every clock (copies of the other
                # slices', kept apart in synthesis: KEEP)
                raddr = Signal(bank_log2, name=f"{name}_raddr{i}s{k}", attrs=KEEP)
                waddr = Signal(bank_log2, name=f"{name}_waddr{i}s{k}", attrs=KEEP)
                wdata = Signal(hi - lo, name=f"{name}_wdata{i}s{k}", attrs=KEEP)
                we = Signal(name=f"{name}_we{i}s{k}", attrs=KEEP)
                m.d.sync += [raddr.eq(self.raddr[:bank_log2]), waddr.eq(w.addr[:bank_log2]),
                             wdata.eq(w.data[lo:hi]), we.eq(w.en & wsel)]
                m.d.comb += [rd.addr.eq(raddr), wr.addr.eq(waddr), wr.data.eq(wdata), wr.en.eq(we)]
                if out_reg:
                    # a plain register: the ECP5 flow moves it into the block RAM (firmware/netlist.py); gated: the
                    # bank's word or 0, in the fabric
                    q = Signal(hi - lo, name=f"{name}_q{i}s{k}", reset_less=True)
                    word = collision_read(m, rd, wr, f"{name}_b{i}s{k}")
                    m.d.sync += q.eq(Mux(sel1 == i, word, 0) if gated else word)
                    parts.append(q)
                else:
                    parts.append(rd.data)
            banks.append(Cat(*parts))
        m.d.sync += [sel0.eq(self.raddr[bank_log2:]), sel1.eq(sel0)]
        if out_reg and gated:
            word = banks[0]
            for b in banks[1:]:
                word = word | b
            m.d.comb += self.data.eq(word)
        elif out_reg:
            sel2 = Signal(range(n), name=f"{name}_bank2")
            m.d.sync += sel2.eq(sel1)
            m.d.comb += self.data.eq(Array(banks)[sel2])
        else:
            m.d.comb += self.data.eq(Array(banks)[sel1])


class WriteSignals:
    """A write port's address, data and enable, as signals to drive (the memory behind them registers them)."""

    def __init__(self, addr_bits: int, data_bits: int, name: str):
        self.addr = Signal(addr_bits, name=f"{name}_waddr")
        self.data = Signal(data_bits, name=f"{name}_wdata")
        self.en = Signal(name=f"{name}_we")


class RegisteredWrite:
    """A block RAM's write port behind registers: what is driven on ``addr``, ``data`` and ``en`` is written a clock
    later. The write address of an nmnist lane's synapse and trace memories reaches ~130 block RAMs across the die;
    the multiplexers that choose it (pass stages, sequencer states) are kept out of that net's clock."""

    def __init__(self, m: Module, port, name: str):
        self.addr = Signal.like(port.addr, name=f"{name}_waddr")
        self.data = Signal.like(port.data, name=f"{name}_wdata")
        self.en = Signal.like(port.en, name=f"{name}_we")
        m.d.sync += [port.addr.eq(self.addr), port.data.eq(self.data), port.en.eq(self.en)]


class ClearableRAM:
    """`depth` signed accumulators (the gradients) in a RAM with one asynchronous read port and one write port (LUT
    RAM on an FPGA), plus a bit per word that says whether the word was written since all were last cleared; a
    cleared word reads as 0. Clearing all of them in a clock only touches the bits.

    As arrays of registers, the 150 input accumulators and 150 gradients of 48 bits of an `nmnist` lane were most
    of the design's flip-flops, each array behind two 150-way multiplexers: the ECP5 router could not route that.
    Reads and writes behave as the registers did: the read sees the last clock's write, a later statement in the
    module wins (a clear after a write in the same clock clears). The read's written bit is looked up a clock
    ahead (``finish``)."""

    def __init__(self, m: Module, name: str, depth: int, shape, slices: int = 1):
        # kept out of block RAM (Yosys would fold the gradients' registered read into one): a block RAM's output
        # arrives 5.8 ns after the clock on the ECP5, far across a die whose block RAMs are all used
        self._ram = SlicedRAM(m, name, depth, shape, slices)
        self._m, self._name, self._depth = m, name, depth
        self._written = Signal(depth, name=f"{name}_written")
        self._ops = []  # (op, taken this clock, address) in the order of the calls: the written bits' next value
        self.read_data = Signal(shape, name=f"{name}_data")

    def write(self, addr, value):
        self._ram.write(addr, value)
        self._m.d.sync += self._written.bit_select(addr, 1).eq(1)
        self._op("set", addr)

    def clear_all(self):
        self._m.d.sync += self._written.eq(0)
        self._op("clear_all", 0)

    def _op(self, op, addr):
        i = len(self._ops)
        now = Signal(name=f"{self._name}_{op}{i}_now")
        a = Signal(max(1, len(Value.cast(addr))), name=f"{self._name}_{op}{i}_a")  # (as wide as the write's)
        self._m.d.comb += [now.eq(1), a.eq(addr)]  # under the caller's conditions: 1 when the operation happens
        self._ops.append((op, now, a))

    def finish(self, when, addr_if, addr_else):
        """Call after the last write or clear. The address to read in the next clock is `addr_if` when `when`, else
        `addr_else`: each slice's read address is a register of its own loaded with it (KEEP: one register drove the
        gradients' 120 LUT RAM cells across a lane, 6.85 ns of wire, 30 endpoints 2.49 ns short of 10 ns in the
        nmnist ECP5 build), and the written bit of the word read is looked up a clock ahead, from this clock's bits
        and this clock's writes and clears in their order, and registered. The read's path is then the RAM's and one
        gate, not also a `depth`-way select of the bits behind the address (the gradients': mode -> the read
        address -> the select -> g1 was the nmnist ECP5 build's second longest path, 6.91 ns short of 10 ns). Both
        addresses are looked up and `when` chooses between the two bits: `when` (the pass's mode) in front of the
        `depth`-way select was the longest path left (mode -> grad_hit, 3.53 ns short)."""
        nxt = Signal(range(self._depth), name=f"{self._name}_raddr_next")
        self._m.d.comb += nxt.eq(Mux(when, addr_if, addr_else))
        self._ram.load_read_address(nxt)

        def written_next(addr):
            ahead = self._written.bit_select(addr, 1)
            for op, now, a in self._ops:
                ahead = ahead | (now & (a == addr)) if op == "set" else ahead & ~now
            return ahead

        hit = Signal(name=f"{self._name}_hit")
        self._m.d.sync += hit.eq(Mux(when, written_next(addr_if), written_next(addr_else)))
        self._m.d.comb += self.read_data.eq(Mux(hit, self._ram.read_data, 0))
