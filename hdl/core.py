"""The accelerator core: event-driven e-prop in fixed point, the fixed-point engine's step in hardware.

A STEP word starts a step; the phases are those of ``golden_model/engines/fixed_kernels.simulate``, in order:

  LS        learning signals join history entry t-2: Lambda_j += round(sum_k B_jk err_k[t-1]) (only when some
            error of step t-1 is non-zero);
  COMPLETE  groups whose source spiked at t - cutoff and not since: walk the cutoff's entries, gradient descent;
  DELIVER   each spike of step t-1 (list entries: EVENT words, recurrent spikes, forced inputs): per group of
            its source, plasticity (walk + gradient descent, or trace decay after a completed walk), then
            transmission (x[target] += w); the source joins the completion queue;
  NEURON    recurrent neurons (pipelined, one per clock): membrane, surrogate gradient, spike, firing-rate
            average, history entry t (psi, Lambda); readouts: membrane, error, output words;
  FORCE     in the final update's step every input fires;
  IDLE      input: stream words until the next STEP (events of step t, SAMPLE, LEARN, FORCE, LOAD, DUMP) and
            weight-window accesses.

Lanes. A synapse lives on the lane of its target (recurrent neuron j on lane j % lanes, readout k on k % lanes):
each lane has its own synapse, trace, history and error memories and input accumulators, so a group's walk runs
on every lane at once with no shared port. A walk iterates history entries (outer) and the lane's synapses
(inner), one synapse per lane per clock; an entry of a group onto recurrent targets takes max(longest lane, LAT)
clocks so that a synapse's e_bar is written back before it is read for the next entry (onto readouts: the longest
lane); the pipeline accepts one synapse-entry per lane per clock (initiation interval 1) whenever groups are long
enough.
"""

from __future__ import annotations

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from golden_model.hw_contract import QUANTITIES
from golden_model.hw_interface import COUNTERS, Op, Region

from .arith import fmt_shape, round_shift, sat_flag, saturate
from .params import HardwareParams

__all__ = ["Core", "LAT", "PIPE"]

#: clocks per walk entry at least, for synapses onto recurrent targets: an entry's e_bar leaves stage 3 and is
#: forwarded from stages 4 and 5 to the same synapse's next entry at stage 1, memory serves it after that
LAT = 3
#: clocks for a pass's last issue to leave the lane pipeline
PIPE = 7


def _bits(n: int) -> int:
    """Bits to count 0 .. n."""
    return max(1, int(n).bit_length())


class Core(wiring.Component):
    def __init__(self, p: HardwareParams):
        self.p = p
        super().__init__({
            "in_data": In(32), "in_valid": In(1), "in_ready": Out(1),
            "out_data": Out(32), "out_last": Out(1), "out_valid": Out(1), "out_ready": In(1),
            "run": In(1), "soft_reset": In(1), "trace_all": In(1),
            "eta_mantissa": In(signed(p.config.fixed.eta_bits)), "eta_shift": In(8),
            "idle": Out(1), "busy": Out(1), "step": Out(32),
            "bad_word": Out(1), "bad_channel": Out(1), "overflow": Out(1), "bad_load": Out(1),
            # write-1-to-clear of the sticky error bits: bad_word, bad_channel, overflow, bad_load
            "clear_errors": In(4), "last_error": Out(32),
            "saturation": Out(len(QUANTITIES)), "clear_saturation": In(len(QUANTITIES)),
            "counters": Out(64).array(len(COUNTERS)),
            "win_addr": In(32), "win_wdata": In(32), "win_we": In(1), "win_re": In(1),
            "win_rdata": Out(32), "win_ack": Out(1),
        })

    def elaborate(self, platform):  # noqa: C901 - one sequencer, kept in one place on purpose
        p = self.p
        fx = p.fx
        f = fx.formats
        c = fx.constants
        mc = fx.membrane_consts
        m = Module()
        L = p.lanes
        RPL, OPL = p.rec_per_lane, p.out_per_lane
        H, HB = p.hist_len, p.hist_log2
        n_in, n_rec, n_out = p.n_in, p.n_rec, p.n_out
        n_groups = p.n_groups
        WB, SW, D = p.weight_bits, p.synapse_word_bits, p.syn_depth
        LOC, SLOT, SRC = p.local_bits, p.slot_bits, p.src_bits
        # history and error rings: one ring of H entries per local neuron, address local * H + h (H is a power of two,
        # so the memory is exactly H * neurons deep whatever the neuron count)
        RB = max(1, (RPL - 1).bit_length())  # local recurrent index bits in a history address
        OB = max(1, (OPL - 1).bit_length())
        cutoff = p.cutoff
        T, LW = p.sequence, p.learning_window
        shape = {name: fmt_shape(q) for name, q in f.items()}
        S_W, S_EB, S_Z, S_M = shape["weight"], shape["e_bar"], shape["z_bar"], shape["membrane"]
        S_PSI, S_L, S_F, S_E = shape["surrogate"], shape["learning_signal"], shape["firing_rate"], shape["error"]
        S_B, S_G, S_X = shape["feedback"], shape["gradient"], shape["input"]
        Q = {name: i for i, name in enumerate(QUANTITIES)}

        # ---- counters and flags -----------------------------------------------------------------------------------
        incr = {name: [] for name in COUNTERS}

        def count(name, value=1, cond=None):
            sig = Signal(32, name=f"c_{name}_{len(incr[name])}")
            m.d.comb += sig.eq(Mux(cond, value, 0) if cond is not None else value)
            incr[name].append(sig)

        sat_raise = []

        def saturated(name, cond):
            sig = Signal(name=f"sat_{name}_{len(sat_raise)}")
            m.d.comb += sig.eq(cond)
            sat_raise.append((Q[name], sig))

        # ---- global state -----------------------------------------------------------------------------------------
        step = Signal(32)
        first_step = Signal(init=1)
        learn_next = Signal()
        eta_m = Signal(signed(p.config.fixed.eta_bits))
        eta_s = Signal(8)
        label = Signal(8)
        have_target = Signal()
        window = Signal()
        sample_active = Signal()
        last_of_sample = Signal()
        pending_label = Signal(8)
        pending_sample = Signal()
        force_next = Signal()
        force_now = Signal()
        any_err = Signal()
        any_err_acc = Signal()
        err_last = Array(Signal(S_E, name=f"err_last{k}") for k in range(n_out))
        out_v = Array(Signal(S_M, name=f"out_v{k}", init=mc["out_v0"]) for k in range(n_out))
        bad_word, bad_channel, overflow, bad_load = Signal(), Signal(), Signal(), Signal()
        last_error = Signal(32)
        m.d.comb += [self.step.eq(step), self.bad_word.eq(bad_word), self.bad_channel.eq(bad_channel),
                     self.overflow.eq(overflow), self.bad_load.eq(bad_load), self.last_error.eq(last_error)]

        # ---- memories ---------------------------------------------------------------------------------------------
        lanes = []
        for ln in range(L):
            lane = {"mem": {}}
            for name, width, depth in (("syn", SW, D), ("eb", S_EB.width, D), ("gptr", SLOT, n_groups + 1),
                                       ("hist", S_PSI.width + S_L.width, H * RPL), ("err", S_E.width, H * OPL)):
                mem = Memory(shape=unsigned(width), depth=depth, init=[])
                m.submodules[f"lane{ln}_{name}"] = mem
                lane[name + "_r"] = mem.read_port()
                lane[name + "_w"] = mem.write_port()
                m.d.comb += lane[name + "_w"].en.eq(0)
            lane["x_rec"] = Array(Signal(S_X, name=f"x{ln}_r{i}") for i in range(RPL))
            lane["x_out"] = Array(Signal(S_X, name=f"x{ln}_o{i}") for i in range(OPL))
            lane["g"] = Array(Signal(S_G, name=f"g{ln}_{i}") for i in range(max(RPL, OPL)))
            lanes.append(lane)

        GS_W = 32 + 1 + 1 + S_Z.width  # t_prev | done | zbuf | z_bar
        grp = Memory(shape=unsigned(GS_W), depth=n_groups, init=[])
        feedback = Memory(shape=unsigned(S_B.width), depth=max(1, n_rec * n_out), init=[])
        v0_bits = mc["v0"] & ((1 << S_M.width) - 1)
        nstate = Memory(shape=unsigned(S_M.width + 8 + S_F.width), depth=n_rec, init=[v0_bits] * n_rec)
        lists = [Memory(shape=unsigned(SRC), depth=p.spike_list_depth, init=[]) for _ in range(2)]
        cfifo = Memory(shape=unsigned(SRC + 32), depth=p.completion_depth, init=[])
        for name, mem in (("grp", grp), ("feedback", feedback), ("nstate", nstate), ("list0", lists[0]),
                          ("list1", lists[1]), ("cfifo", cfifo)):
            m.submodules[name] = mem
        grp_r, grp_w = grp.read_port(), grp.write_port()
        fb_r, fb_w = feedback.read_port(), feedback.write_port()
        ns_r, ns_w = nstate.read_port(), nstate.write_port()
        list_r = [lst.read_port() for lst in lists]
        list_w = [lst.write_port() for lst in lists]
        cf_r, cf_w = cfifo.read_port(), cfifo.write_port()
        rom_r = {}
        for name, values in fx.decay_roms.items():
            mem = Memory(shape=unsigned(_bits(int(values.max()))), depth=values.size, init=[int(v) for v in values])
            m.submodules[f"rom_{name}"] = mem
            rom_r[name] = mem.read_port()
        sg = fx.surrogate_rom
        if sg["kind"] == 1:
            sgrom = Memory(shape=unsigned(S_PSI.width), depth=sg["table"].size, init=[int(v) for v in sg["table"]])
            m.submodules.sgrom = sgrom
            sg_r = sgrom.read_port()
        m.d.comb += [grp_w.en.eq(0), fb_w.en.eq(0), ns_w.en.eq(0), cf_w.en.eq(0)] + [w.en.eq(0) for w in list_w]

        # spike lists (ping-pong: `cur` delivered this step, the other filled for the next) and completion queue
        cur = Signal()
        list_count = Array(Signal(_bits(p.spike_list_depth), name=f"list_count{i}") for i in range(2))
        cf_head = Signal(_bits(p.completion_depth - 1))
        cf_tail = Signal(_bits(p.completion_depth - 1))
        cf_count = Signal(_bits(p.completion_depth))

        append_req = Signal()
        append_src = Signal(SRC)
        nxt = Signal()
        m.d.comb += nxt.eq(~cur)
        with m.If(append_req):
            with m.If(list_count[nxt] < p.spike_list_depth):
                for i in range(2):
                    with m.If(nxt == i):
                        m.d.comb += [list_w[i].addr.eq(list_count[i]), list_w[i].data.eq(append_src),
                                     list_w[i].en.eq(1)]
                m.d.sync += list_count[nxt].eq(list_count[nxt] + 1)
            with m.Else():
                m.d.sync += overflow.eq(1)

        # ---- output FIFO ------------------------------------------------------------------------------------------
        m.submodules.ofifo = ofifo = SyncFIFOBuffered(width=33, depth=max(16, 4 * n_out))
        m.d.comb += [self.out_data.eq(ofifo.r_data[:32]), self.out_last.eq(ofifo.r_data[32]),
                     self.out_valid.eq(ofifo.r_rdy), ofifo.r_en.eq(self.out_ready), ofifo.w_en.eq(0)]

        # ---- the lane pass engine ---------------------------------------------------------------------------------
        M_WALK, M_GD, M_TX, M_DECAY = range(4)
        pass_mode = Signal(2)
        pass_kind = Signal()   # 0: synapses onto recurrent neurons, 1: onto readouts
        pass_tx = Signal()     # the gradient-descent / decay pass also transmits
        iss_valid = Signal()
        iss_q = Signal(SLOT + 1)
        iss_h = Signal(HB)
        iss_zbar = Signal(S_Z)
        decay_k = Signal(unsigned(_bits(int(fx.decay_roms["kappa"].max()))))
        ga = [Signal(SLOT, name=f"ga{i}") for i in range(L)]
        glen = [Signal(SLOT, name=f"glen{i}") for i in range(L)]
        g_clear = Signal()

        k_s = c["kappa"].shift
        to_eb = f["surrogate"].frac_bits + f["z_bar"].frac_bits - f["e_bar"].frac_bits
        up_l = f["gradient"].frac_bits - f["learning_signal"].frac_bits - f["e_bar"].frac_bits
        up_e = f["gradient"].frac_bits - f["error"].frac_bits - f["z_bar"].frac_bits
        g_lo, g_hi = f["gradient"].min_int, f["gradient"].max_int
        w_lo, w_hi = f["weight"].min_int, f["weight"].max_int
        clamp_lo = max(w_lo, int(f["weight"].quantize(p.config.optimizer.Wmin)[0]))
        clamp_hi = min(w_hi, int(f["weight"].quantize(p.config.optimizer.Wmax)[0]))
        x_to_m = f["weight"].frac_bits - f["membrane"].frac_bits

        for ln, lane in enumerate(lanes):
            v0 = Signal(name=f"l{ln}_v0")
            a0 = Signal(SLOT, name=f"l{ln}_a0")
            m.d.comb += [v0.eq(iss_valid & (iss_q < glen[ln])), a0.eq(ga[ln] + iss_q)]
            st = [dict(v=Signal(name=f"l{ln}_v{i}"), a=Signal(SLOT, name=f"l{ln}_a{i}"),
                       q=Signal.like(iss_q, name=f"l{ln}_q{i}"), h=Signal(HB, name=f"l{ln}_h{i}"),
                       z=Signal(S_Z, name=f"l{ln}_z{i}")) for i in range(6)]
            m.d.sync += [st[1]["v"].eq(v0), st[1]["a"].eq(a0), st[1]["q"].eq(iss_q), st[1]["h"].eq(iss_h),
                         st[1]["z"].eq(iss_zbar)]
            for i in range(2, 6):
                for key in ("v", "a", "q", "h", "z"):
                    m.d.sync += st[i][key].eq(st[i - 1][key])
            lane["a0"] = a0
            # stage 1: synapse word and trace
            w1, t1, e1 = Signal(S_W, name=f"l{ln}_w1"), Signal(LOC, name=f"l{ln}_t1"), Signal(S_EB, name=f"l{ln}_e1")
            # e_bar of the synapse's previous entry: still in flight at stage 4 or 5 when entries are shorter than
            # the write-back (3 or 4 clocks), else in memory; forwarding lets an entry take LAT = 3 clocks
            eb4, eb5 = Signal(S_EB, name=f"l{ln}_eb4"), Signal(S_EB, name=f"l{ln}_eb5")
            walk_rec = (pass_mode == M_WALK) & (pass_kind == 0)
            fwd4 = st[4]["v"] & walk_rec & (st[4]["a"] == st[1]["a"])
            fwd5 = st[5]["v"] & walk_rec & (st[5]["a"] == st[1]["a"])
            m.d.comb += [w1.eq(lane["syn_r"].data[:WB]), t1.eq(lane["syn_r"].data[WB:WB + LOC]),
                         e1.eq(Mux(fwd4, eb4, Mux(fwd5, eb5, lane["eb_r"].data)))]
            lane["hist_pass_addr"] = Cat(st[1]["h"], t1[:RB]) if RPL > 1 else st[1]["h"]
            lane["err_pass_addr"] = Cat(st[1]["h"], t1[:OB]) if OPL > 1 else st[1]["h"]
            w2, t2 = Signal(S_W, name=f"l{ln}_w2"), Signal(LOC, name=f"l{ln}_t2")
            pke2 = Signal(signed(S_EB.width + _bits(c["kappa"].mantissa) + 1), name=f"l{ln}_pke2")
            pdec2 = Signal(signed(S_EB.width + decay_k.shape().width + 1), name=f"l{ln}_pdec2")
            m.d.sync += [w2.eq(w1), t2.eq(t1), pke2.eq(e1 * c["kappa"].mantissa), pdec2.eq(e1 * decay_k)]
            # stage 2: history / error
            psi2, lam2, err2 = Signal(S_PSI, name=f"l{ln}_psi2"), Signal(S_L, name=f"l{ln}_lam2"), \
                Signal(S_E, name=f"l{ln}_err2")
            m.d.comb += [psi2.eq(lane["hist_r"].data[:S_PSI.width]), lam2.eq(lane["hist_r"].data[S_PSI.width:]),
                         err2.eq(lane["err_r"].data)]
            ppz3 = Signal(signed(S_PSI.width + S_Z.width + 1), name=f"l{ln}_ppz3")
            pez3 = Signal(signed(S_E.width + S_Z.width + 1), name=f"l{ln}_pez3")
            pke3, lam3 = Signal.like(pke2, name=f"l{ln}_pke3"), Signal(S_L, name=f"l{ln}_lam3")
            w3, t3 = Signal(S_W, name=f"l{ln}_w3"), Signal(LOC, name=f"l{ln}_t3")
            m.d.sync += [ppz3.eq(psi2 * st[2]["z"]), pez3.eq(err2 * st[2]["z"]), pke3.eq(pke2), lam3.eq(lam2),
                         w3.eq(w2), t3.eq(t2)]
            # decay pass (stage 2): e_bar <- round(kappa^m e_bar)
            with m.If(st[2]["v"] & (pass_mode == M_DECAY) & (pass_kind == 0)):
                m.d.comb += [lane["eb_w"].addr.eq(st[2]["a"]), lane["eb_w"].data.eq(round_shift(pdec2, k_s)),
                             lane["eb_w"].en.eq(1)]
            # stage 3: e_bar' = sat(round(kappa e_bar) + round(psi z_bar))
            eb_sum = Signal(signed(pke3.shape().width + 2), name=f"l{ln}_ebsum")
            m.d.comb += eb_sum.eq(round_shift(pke3, k_s) + round_shift(ppz3, to_eb))
            walk = pass_mode == M_WALK
            saturated("e_bar", st[3]["v"] & walk & (pass_kind == 0) & sat_flag(eb_sum, 0, f["e_bar"].max_int))
            lam4 = Signal(S_L, name=f"l{ln}_lam4")
            ge4 = Signal(signed(pez3.shape().width + max(0, up_e)), name=f"l{ln}_ge4")
            m.d.sync += [eb4.eq(saturate(eb_sum, 0, f["e_bar"].max_int, S_EB)), eb5.eq(eb4), lam4.eq(lam3),
                         ge4.eq(pez3 << up_e)]
            # stage 4: write e_bar back, Lambda * e_bar
            with m.If(st[4]["v"] & walk & (pass_kind == 0)):
                m.d.comb += [lane["eb_w"].addr.eq(st[4]["a"]), lane["eb_w"].data.eq(eb4), lane["eb_w"].en.eq(1)]
            ple5 = Signal(signed(S_L.width + S_EB.width + 1), name=f"l{ln}_ple5")
            ge5 = Signal.like(ge4, name=f"l{ln}_ge5")
            m.d.sync += [ple5.eq(lam4 * eb4), ge5.eq(ge4)]
            # stage 5: gradient accumulation
            g_slot = lane["g"][st[5]["q"]]
            g_new = Signal(signed(S_G.width + 2), name=f"l{ln}_gnew")
            m.d.comb += g_new.eq(g_slot + Mux(pass_kind == 0, ple5 << up_l, ge5))
            with m.If(st[5]["v"] & walk):
                m.d.sync += g_slot.eq(saturate(g_new, g_lo, g_hi, S_G))
            saturated("gradient", st[5]["v"] & walk & sat_flag(g_new, g_lo, g_hi))
            with m.If(g_clear):
                for g in lane["g"]:
                    m.d.sync += g.eq(0)

            # gradient descent (stages 1-4): w' = clamp(sat(w - round(eta g)))
            g1 = Signal(S_G, name=f"l{ln}_g1")
            m.d.comb += g1.eq(lane["g"][st[1]["q"]])
            pg2 = Signal(signed(S_G.width + eta_m.shape().width), name=f"l{ln}_pg2")
            m.d.sync += pg2.eq(g1 * eta_m)
            bias = Signal(signed(pg2.shape().width + 1), name=f"l{ln}_bias")
            m.d.comb += bias.eq(Mux(eta_s == 0, 0,
                                    (Const(1, signed(pg2.shape().width + 1)) << (eta_s - 1)[:8].as_unsigned()) - 1))
            rounded = Signal(signed(pg2.shape().width + 2), name=f"l{ln}_rnd")
            m.d.comb += rounded.eq(pg2 + bias + pg2.bit_select(eta_s, 1).as_unsigned())
            delta3 = Signal(signed(pg2.shape().width + 2), name=f"l{ln}_d3")
            m.d.sync += delta3.eq(rounded >> eta_s)
            wnew = Signal(signed(delta3.shape().width + 2), name=f"l{ln}_wnew")
            m.d.comb += wnew.eq(w3 - delta3)
            gd = pass_mode == M_GD
            saturated("weight", st[3]["v"] & gd & (eta_m != 0) & sat_flag(wnew, w_lo, w_hi))
            wsat = Signal(S_W, name=f"l{ln}_wsat")
            m.d.comb += wsat.eq(saturate(wnew, w_lo, w_hi, S_W))
            w4, t4 = Signal(S_W, name=f"l{ln}_w4"), Signal(LOC, name=f"l{ln}_t4")
            m.d.sync += [w4.eq(Mux(eta_m == 0, w3, Mux(wsat < clamp_lo, clamp_lo,
                                                         Mux(wsat > clamp_hi, clamp_hi, wsat)))), t4.eq(t3)]
            with m.If(st[4]["v"] & gd & (eta_m != 0)):
                m.d.comb += [lane["syn_w"].addr.eq(st[4]["a"]), lane["syn_w"].data.eq(Cat(w4, t4)),
                             lane["syn_w"].en.eq(1)]
            # transmission: the new weight after gradient descent (stage 4), else the stored one (stage 1)
            tx_v, tx_w, tx_t = Signal(name=f"l{ln}_txv"), Signal(S_W, name=f"l{ln}_txw"), \
                Signal(LOC, name=f"l{ln}_txt")
            m.d.comb += [
                tx_v.eq(Mux(gd, st[4]["v"] & pass_tx,
                            st[1]["v"] & ((pass_mode == M_TX) | ((pass_mode == M_DECAY) & pass_tx)))),
                tx_w.eq(Mux(gd, w4, w1)),
                tx_t.eq(Mux(gd, t4, t1)),
            ]
            with m.If(tx_v):
                with m.If(pass_kind == 0):
                    m.d.sync += lane["x_rec"][tx_t].eq(lane["x_rec"][tx_t] + tx_w)
                with m.Else():
                    m.d.sync += lane["x_out"][tx_t].eq(lane["x_out"][tx_t] + tx_w)

        # internal signals for testbenches that want to look inside (the Amaranth simulator can read them)
        self.debug = {"lanes": lanes, "pass_kind": pass_kind, "pass_mode": pass_mode}

        # ---- port ownership: the pass engine or the sequencer -----------------------------------------------------
        pass_owns = Signal()
        seq_syn_addr = Signal(SLOT)
        seq_hist_addr = Signal(max(1, (H * RPL - 1).bit_length()))
        seq_gptr_addr = Signal(_bits(n_groups))
        for lane in lanes:
            m.d.comb += [
                lane["syn_r"].addr.eq(Mux(pass_owns, lane["a0"], seq_syn_addr)),
                lane["eb_r"].addr.eq(Mux(pass_owns, lane["a0"], seq_syn_addr)),
                lane["hist_r"].addr.eq(Mux(pass_owns, lane["hist_pass_addr"], seq_hist_addr)),
                lane["err_r"].addr.eq(lane["err_pass_addr"]),
                lane["gptr_r"].addr.eq(seq_gptr_addr),
            ]

        # ---- sequencer registers ----------------------------------------------------------------------------------
        word = self.in_data
        op = word[28:32]
        g_cur = Signal(_bits(n_groups))
        g_complete = Signal()          # completion walk (no transmission) rather than a delivery
        g_pstep = Signal(32)           # completion: the spike step of the walk
        gs = Signal(GS_W)
        gs_tprev, gs_done, gs_zbuf, gs_zbar = gs[:32], gs[32], gs[33], gs[34:].as_signed()
        new_tprev, new_done, new_zbuf = Signal(32), Signal(), Signal()
        new_zbar = Signal(S_Z)
        write_state = Signal()
        n_steps = Signal(_bits(cutoff))
        it = Signal(_bits(cutoff))
        cyc = Signal(SLOT + 1)         # clocks per walk entry / pass
        total_len = Signal(SLOT + _bits(L))
        maxlen = Signal(SLOT)
        zbar_it = Signal(S_Z)
        pz = Signal(signed(S_Z.width + _bits(max(c["alpha"].mantissa, c["alpha_out"].mantissa)) + 1))
        z_next = Signal()              # z entering z_bar at the next entry
        drain = Signal(4)
        lptr = Signal(_bits(p.spike_list_depth))
        entry_src = Signal(SRC)
        decay_mm = Signal(32)
        clr = Signal(_bits(max(D, H * RPL, H * OPL, n_groups, n_rec)) + 1)
        load_region = Signal(4)
        load_addr = Signal(24)
        load_count = Signal(24)
        ls_j = Signal(_bits(n_rec))
        ls_k = Signal(_bits(n_out))
        ls_acc = Signal(signed(S_B.width + S_E.width + _bits(n_out) + 1))
        nj = Signal(_bits(n_rec + PIPE))
        rk = Signal(_bits(n_out))
        fin = Signal(_bits(n_in))
        h_now = Signal(HB)
        m.d.comb += h_now.eq(step[:HB])
        tau = Signal(_bits(T))
        # tau of the current step in its sample: (step - 2) % T, kept incrementally
        rec_lane = (lambda j: j % L) if L > 1 else (lambda j: 0)
        one_m = 1 << f["membrane"].frac_bits

        def lane_of(x):
            return x % L if L > 1 else Const(0)

        def local_of(x):
            return x // L if L > 1 else x

        alpha = {0: c["alpha"], 1: c["alpha_out"]}
        ro_p = Signal(signed(S_M.width + _bits(c["alpha_out"].mantissa) + 1))
        ro_x = Signal(S_X)
        ro_y = Signal(signed(S_M.width + 1))
        ro_err = Signal(S_E)
        n_issue = Signal()

        def zbar_step(zb, z, kind):
            """One entry of the group's z_bar, before saturation: round(alpha z_bar) + z (alpha of the targets)."""
            return Mux(kind, round_shift(zb * alpha[1].mantissa, alpha[1].shift),
                       round_shift(zb * alpha[0].mantissa, alpha[0].shift)) + Mux(z, 1 << f["z_bar"].frac_bits, 0)

        dump_len = Signal(32)
        with m.Switch(load_region):
            with m.Case(Region.SYNAPSES, Region.TRACES):
                m.d.comb += dump_len.eq(L * D)
            with m.Case(Region.GROUPS):
                m.d.comb += dump_len.eq(L * (n_groups + 1))
            with m.Case(Region.FEEDBACK):
                m.d.comb += dump_len.eq(n_rec * n_out)
        dump_lane = Signal(_bits(L))
        dump_idx = Signal(24)
        with m.Switch(load_region):
            with m.Case(Region.GROUPS):
                m.d.comb += [dump_lane.eq(load_addr // (n_groups + 1)), dump_idx.eq(load_addr % (n_groups + 1))]
            with m.Case(Region.FEEDBACK):
                m.d.comb += [dump_lane.eq(0), dump_idx.eq(load_addr)]
            with m.Default():
                m.d.comb += [dump_lane.eq(load_addr // D), dump_idx.eq(load_addr % D)]

        ls_lane = lane_of(ls_j)
        ls_local = local_of(ls_j)
        h_ls = Signal(HB)
        m.d.comb += h_ls.eq(step - 2)
        ls_hist_addr = Cat(h_ls, ls_local[:RB]) if RPL > 1 else h_ls

        for i in range(2):
            m.d.comb += list_r[i].addr.eq(lptr)

        kind = g_cur[0]

        m.d.sync += g_clear.eq(0)


        for name, port in rom_r.items():
            m.d.comb += port.addr.eq(decay_mm)

        with m.FSM(init="CLEAR"):
            # ---- soft reset: clear state, keep synapses, group pointers and B --------------------------------------
            with m.State("CLEAR"):
                count("cycles_busy")
                m.d.comb += self.busy.eq(1)
                last = max(D, H * RPL, H * OPL, n_groups, n_rec)
                for lane in lanes:
                    m.d.comb += [lane["eb_w"].addr.eq(clr), lane["eb_w"].data.eq(0), lane["eb_w"].en.eq(clr < D),
                                 lane["hist_w"].addr.eq(clr), lane["hist_w"].data.eq(0),
                                 lane["hist_w"].en.eq(clr < H * RPL),
                                 lane["err_w"].addr.eq(clr), lane["err_w"].data.eq(0),
                                 lane["err_w"].en.eq(clr < H * OPL)]
                    for x in list(lane["x_rec"]) + list(lane["x_out"]):
                        m.d.sync += x.eq(0)
                m.d.comb += [grp_w.addr.eq(clr), grp_w.data.eq(0), grp_w.en.eq(clr < n_groups),
                             ns_w.addr.eq(clr), ns_w.data.eq(v0_bits), ns_w.en.eq(clr < n_rec)]
                m.d.sync += clr.eq(clr + 1)
                with m.If(clr == last):
                    m.d.sync += [clr.eq(0), step.eq(0), first_step.eq(1), learn_next.eq(0), label.eq(0),
                                 have_target.eq(0), window.eq(0), sample_active.eq(0), pending_sample.eq(0),
                                 force_next.eq(0), force_now.eq(0), any_err.eq(0), cur.eq(0),
                                 list_count[0].eq(0), list_count[1].eq(0), cf_head.eq(0), cf_tail.eq(0),
                                 cf_count.eq(0), tau.eq(0)]
                    for k in range(n_out):
                        m.d.sync += [out_v[k].eq(mc["out_v0"]), err_last[k].eq(0)]
                    m.next = "IDLE"

            # ---- input phase -----------------------------------------------------------------------------------------
            with m.State("IDLE"):
                m.d.comb += self.idle.eq(1)
                with m.If(self.soft_reset):
                    m.next = "CLEAR"
                with m.Elif(self.win_we | self.win_re):
                    m.d.comb += seq_syn_addr.eq(self.win_addr[:SLOT])
                    m.next = "WINDOW"
                with m.Elif(self.run):
                    m.d.comb += self.in_ready.eq(1)
                    count("cycles_idle", 1, ~self.in_valid)
                    with m.If(self.in_valid):
                        with m.Switch(op):
                            with m.Case(Op.EVENT):
                                with m.If(word[:16] < n_in):
                                    m.d.comb += [append_req.eq(1), append_src.eq(word[:SRC])]
                                    count("input_events")
                                with m.Else():
                                    m.d.sync += [bad_channel.eq(1), last_error.eq(word)]
                            with m.Case(Op.STEP):
                                m.next = "START"
                            with m.Case(Op.SAMPLE):
                                m.d.sync += [pending_label.eq(word[:8]), pending_sample.eq(1)]
                            with m.Case(Op.FORCE):
                                m.d.sync += force_next.eq(1)
                            with m.Case(Op.LEARN):
                                m.d.sync += learn_next.eq(word[0])
                            with m.Case(Op.LOAD):
                                m.d.sync += [load_region.eq(word[24:28]), load_addr.eq(word[:24])]
                                m.next = "LOAD_COUNT"
                            with m.Case(Op.DUMP):
                                m.d.sync += [load_region.eq(word[24:28]), load_addr.eq(0)]
                                m.next = "DUMP_ISSUE"
                            with m.Default():
                                m.d.sync += [bad_word.eq(1), last_error.eq(word)]
                with m.Else():
                    count("cycles_idle")

            # ---- weight window --------------------------------------------------------------------------------------
            with m.State("WINDOW"):
                m.d.comb += seq_syn_addr.eq(self.win_addr[:SLOT])
                rdata = Signal(32)
                for ln, lane in enumerate(lanes):
                    with m.If(self.win_addr[24:32] == ln):
                        m.d.comb += rdata.eq(lane["syn_r"].data)
                        with m.If(self.win_we & (self.win_addr[:24] < D)):
                            m.d.comb += [lane["syn_w"].addr.eq(self.win_addr[:SLOT]),
                                         lane["syn_w"].data.eq(self.win_wdata), lane["syn_w"].en.eq(1)]
                m.d.comb += [self.win_rdata.eq(rdata), self.win_ack.eq(1)]
                m.next = "IDLE"

            # ---- LOAD ------------------------------------------------------------------------------------------------
            with m.State("LOAD_COUNT"):
                m.d.comb += self.in_ready.eq(1)
                with m.If(self.in_valid):
                    m.d.sync += load_count.eq(word[:24])
                    m.next = "LOAD_DATA"
            with m.State("LOAD_DATA"):
                with m.If(load_count == 0):
                    m.next = "IDLE"
                with m.Else():
                    m.d.comb += self.in_ready.eq(1)
                    with m.If(self.in_valid):
                        m.d.sync += [load_addr.eq(load_addr + 1), load_count.eq(load_count - 1)]
                        with m.Switch(load_region):
                            with m.Case(Region.SYNAPSES):
                                for ln, lane in enumerate(lanes):
                                    with m.If((load_addr >= ln * D) & (load_addr < (ln + 1) * D)):
                                        m.d.comb += [lane["syn_w"].addr.eq(load_addr - ln * D),
                                                     lane["syn_w"].data.eq(word), lane["syn_w"].en.eq(1)]
                                with m.If(load_addr >= L * D):
                                    m.d.sync += bad_load.eq(1)
                            with m.Case(Region.GROUPS):
                                for ln, lane in enumerate(lanes):
                                    lo = ln * (n_groups + 1)
                                    with m.If((load_addr >= lo) & (load_addr < lo + n_groups + 1)):
                                        m.d.comb += [lane["gptr_w"].addr.eq(load_addr - lo),
                                                     lane["gptr_w"].data.eq(word), lane["gptr_w"].en.eq(1)]
                                with m.If(load_addr >= L * (n_groups + 1)):
                                    m.d.sync += bad_load.eq(1)
                            with m.Case(Region.FEEDBACK):
                                with m.If(load_addr < n_rec * n_out):
                                    m.d.comb += [fb_w.addr.eq(load_addr), fb_w.data.eq(word), fb_w.en.eq(1)]
                                with m.Else():
                                    m.d.sync += bad_load.eq(1)
                            with m.Default():
                                m.d.sync += bad_load.eq(1)

            # ---- DUMP: two clocks per word (read, then push) ------------------------------------------------------
            with m.State("DUMP_ISSUE"):
                m.d.comb += [seq_syn_addr.eq(dump_idx), seq_gptr_addr.eq(dump_idx), fb_r.addr.eq(dump_idx)]
                with m.If(dump_len == 0):
                    m.d.sync += bad_load.eq(1)
                    m.next = "IDLE"
                with m.Elif(load_addr >= dump_len):
                    m.next = "IDLE"
                with m.Else():
                    m.next = "DUMP_PUSH"
            with m.State("DUMP_PUSH"):
                m.d.comb += [seq_syn_addr.eq(dump_idx), seq_gptr_addr.eq(dump_idx), fb_r.addr.eq(dump_idx)]
                data = Signal(32)
                with m.Switch(load_region):
                    for region, port in ((Region.SYNAPSES, "syn_r"), (Region.TRACES, "eb_r"),
                                         (Region.GROUPS, "gptr_r")):
                        with m.Case(region):
                            for ln, lane in enumerate(lanes):
                                with m.If(dump_lane == ln):
                                    m.d.comb += data.eq(lane[port].data)
                    with m.Case(Region.FEEDBACK):
                        m.d.comb += data.eq(fb_r.data)
                with m.If(ofifo.w_rdy):
                    m.d.comb += [ofifo.w_data.eq(Cat(data, load_addr == dump_len - 1)), ofifo.w_en.eq(1)]
                    m.d.sync += load_addr.eq(load_addr + 1)
                    m.next = "DUMP_ISSUE"

            # ---- a step begins -----------------------------------------------------------------------------------
            with m.State("START"):
                count("cycles_busy")
                m.d.comb += self.busy.eq(1)
                new_step = Mux(first_step, 0, step + 1)
                m.d.sync += [step.eq(new_step), first_step.eq(0), cur.eq(~cur), force_now.eq(force_next),
                             force_next.eq(0), eta_m.eq(Mux(learn_next, self.eta_mantissa, 0)),
                             eta_s.eq(self.eta_shift), list_count[cur].eq(0), any_err_acc.eq(0)]
                # targets and window: engines/base.Timeline for one-hot tasks
                new_tau = Mux(tau == T - 1, 0, tau + 1)
                with m.If(new_step >= 2):
                    with m.If(new_step > 2):
                        m.d.sync += tau.eq(new_tau)
                    starts = (new_step == 2) | (new_tau == 0)
                    win_on = Mux(new_step == 2, 0, new_tau) == T - LW
                    with m.If(starts):
                        with m.If(pending_sample):
                            m.d.sync += [label.eq(pending_label), have_target.eq(1), pending_sample.eq(0),
                                         sample_active.eq(1), window.eq(1 if LW == T else 0)]
                        with m.Else():
                            m.d.sync += sample_active.eq(0)
                    with m.Elif(win_on & sample_active):
                        m.d.sync += window.eq(1)
                    m.d.sync += last_of_sample.eq(Mux(new_step == 2, 0, new_tau) == T - 1)
                count("steps")
                count("recurrent_updates", n_rec)
                count("readout_updates", n_out)
                count("history_writes", n_rec)
                m.next = "LS"

            # ---- learning signals of entry t-2 -----------------------------------------------------------------------
            with m.State("LS"):
                count("cycles_busy")
                m.d.comb += self.busy.eq(1)
                m.d.sync += [ls_j.eq(0), ls_k.eq(0), ls_acc.eq(0)]
                with m.If((step >= 2) & any_err):
                    count("learning_signal_writes", n_rec * n_out)
                    m.next = "LS_MAC"
                with m.Else():
                    m.next = "COMPLETE"
            with m.State("LS_MAC"):
                count("cycles_busy")
                m.d.comb += [self.busy.eq(1), fb_r.addr.eq(ls_j * n_out + ls_k), seq_hist_addr.eq(ls_hist_addr)]
                prev_k = Signal.like(ls_k)
                reading = Signal()
                m.d.sync += [prev_k.eq(ls_k), reading.eq(ls_k < n_out)]
                with m.If(reading):
                    m.d.sync += ls_acc.eq(ls_acc + fb_r.data.as_signed() * err_last[prev_k])
                with m.If(ls_k < n_out):
                    m.d.sync += ls_k.eq(ls_k + 1)
                with m.Elif(~reading):
                    m.next = "LS_WRITE"
            with m.State("LS_WRITE"):
                count("cycles_busy")
                m.d.comb += [self.busy.eq(1), seq_hist_addr.eq(ls_hist_addr)]
                to_l = f["feedback"].frac_bits + f["error"].frac_bits - f["learning_signal"].frac_bits
                for ln, lane in enumerate(lanes):
                    with m.If(ls_lane == ln):
                        old = lane["hist_r"].data
                        total = Signal(signed(S_L.width + ls_acc.shape().width + 2), name=f"ls_total{ln}")
                        m.d.comb += total.eq(old[S_PSI.width:].as_signed() + round_shift(ls_acc, to_l))
                        m.d.comb += [lane["hist_w"].addr.eq(ls_hist_addr),
                                     lane["hist_w"].data.eq(Cat(old[:S_PSI.width],
                                                                saturate(total, f["learning_signal"].min_int,
                                                                         f["learning_signal"].max_int, S_L))),
                                     lane["hist_w"].en.eq(1)]
                        saturated("learning_signal", sat_flag(total, f["learning_signal"].min_int,
                                                              f["learning_signal"].max_int))
                with m.If(ls_j + 1 < n_rec):
                    m.d.sync += [ls_j.eq(ls_j + 1), ls_k.eq(0), ls_acc.eq(0)]
                    m.next = "LS_MAC"
                with m.Else():
                    m.next = "COMPLETE"

            # ---- completions: head of the queue spiked at t - cutoff -------------------------------------------------
            with m.State("COMPLETE"):
                count("cycles_busy")
                m.d.comb += [self.busy.eq(1), cf_r.addr.eq(cf_head)]
                with m.If(cf_count == 0):
                    m.d.sync += lptr.eq(0)
                    m.next = "DELIVER"
                with m.Else():
                    m.next = "COMPLETE_HEAD"
            with m.State("COMPLETE_HEAD"):
                count("cycles_busy")
                m.d.comb += [self.busy.eq(1), cf_r.addr.eq(cf_head)]
                head_src, head_step = cf_r.data[:SRC], cf_r.data[SRC:]
                with m.If(head_step + cutoff == step):
                    m.d.sync += [cf_head.eq(cf_head + 1), cf_count.eq(cf_count - 1), entry_src.eq(head_src),
                                 g_cur.eq(head_src << 1), g_complete.eq(1), g_pstep.eq(head_step)]
                    m.next = "GROUP"
                with m.Else():
                    m.d.sync += lptr.eq(0)
                    m.next = "DELIVER"

            # ---- deliveries: the list of step t-1 --------------------------------------------------------------------
            with m.State("DELIVER"):
                count("cycles_busy")
                m.d.comb += self.busy.eq(1)
                with m.If(lptr < list_count[cur]):
                    m.next = "DELIVER_ENTRY"
                with m.Else():
                    m.d.sync += nj.eq(0)
                    m.next = "NEURON"
            with m.State("DELIVER_ENTRY"):
                count("cycles_busy")
                m.d.comb += self.busy.eq(1)
                src = Mux(cur, list_r[1].data, list_r[0].data)
                m.d.sync += [entry_src.eq(src), g_cur.eq(src << 1), g_complete.eq(0)]
                count("input_spikes", 1, src < n_in)
                m.next = "GROUP"

            # ---- one group: read state and lane ranges, decide, pass(es), write state ----------------------------
            with m.State("GROUP"):
                count("cycles_busy")
                m.d.comb += [self.busy.eq(1), grp_r.addr.eq(g_cur), seq_gptr_addr.eq(g_cur)]
                m.next = "GROUP_PTR"
            with m.State("GROUP_PTR"):
                count("cycles_busy")
                m.d.comb += [self.busy.eq(1), grp_r.addr.eq(g_cur), seq_gptr_addr.eq(g_cur + 1)]
                m.d.sync += gs.eq(grp_r.data)
                for ln, lane in enumerate(lanes):
                    m.d.sync += ga[ln].eq(lane["gptr_r"].data)
                m.next = "GROUP_LEN"
            with m.State("GROUP_LEN"):
                count("cycles_busy")
                m.d.comb += self.busy.eq(1)
                mx = Const(0, SLOT)
                tot = Const(0, SLOT + _bits(L))
                for ln, lane in enumerate(lanes):
                    length = (lane["gptr_r"].data - ga[ln])[:SLOT]
                    m.d.sync += glen[ln].eq(length)
                    mx = Mux(length > mx, length, mx)
                    tot = tot + length
                m.d.sync += [maxlen.eq(mx), total_len.eq(tot)]
                m.next = "GROUP_DECIDE"
            with m.State("GROUP_DECIDE"):
                count("cycles_busy")
                m.d.comb += self.busy.eq(1)
                m.d.sync += [pass_kind.eq(kind), new_tprev.eq(gs_tprev), new_done.eq(gs_done),
                             new_zbuf.eq(gs_zbuf), new_zbar.eq(gs_zbar), write_state.eq(0), it.eq(0),
                             iss_q.eq(0), drain.eq(0)]
                with m.If(total_len == 0):
                    m.next = "GROUP_END"
                with m.Elif(g_complete):
                    with m.If((gs_tprev != g_pstep) | gs_done):
                        m.next = "GROUP_END"
                    with m.Else():
                        m.d.sync += [n_steps.eq(cutoff), new_done.eq(1), write_state.eq(1), pass_tx.eq(0),
                                     g_clear.eq(1)]
                        count("cutoff_completions")
                        m.next = "WALK_PRE"
                with m.Elif(gs_tprev == step):
                    m.d.sync += [pass_mode.eq(M_TX), pass_tx.eq(1)]
                    m.next = "PASS"
                with m.Elif(gs_tprev == 0):
                    m.d.sync += [pass_mode.eq(M_TX), pass_tx.eq(1), new_tprev.eq(step), write_state.eq(1)]
                    m.next = "PASS"
                with m.Elif(gs_done):
                    m.d.sync += [decay_mm.eq(step - gs_tprev - cutoff), new_tprev.eq(step), new_done.eq(0),
                                 write_state.eq(1), pass_tx.eq(1)]
                    m.next = "DECAY_ROM"
                with m.Else():
                    m.d.sync += [n_steps.eq(step - gs_tprev), new_tprev.eq(step), new_done.eq(0),
                                 write_state.eq(1), pass_tx.eq(1), g_clear.eq(1)]
                    m.next = "WALK_PRE"
            # decay after a completed walk: factors alpha^m (group z_bar) and kappa^m (each e_bar), 0 beyond the ROMs
            with m.State("DECAY_ROM"):
                count("cycles_busy")
                m.d.comb += self.busy.eq(1)
                m.next = "DECAY_APPLY"
            with m.State("DECAY_APPLY"):
                count("cycles_busy")
                m.d.comb += self.busy.eq(1)
                mm = decay_mm
                a_size = Mux(kind, fx.decay_roms["alpha_out"].size, fx.decay_roms["alpha"].size)
                zb_dec = Mux(kind, round_shift(gs_zbar * rom_r["alpha_out"].data, alpha[1].shift),
                             round_shift(gs_zbar * rom_r["alpha"].data, alpha[0].shift))
                with m.If(mm.as_signed() > 0):
                    m.d.sync += new_zbar.eq(Mux(mm < a_size, zb_dec, 0))
                    m.d.sync += decay_k.eq(Mux(mm < fx.decay_roms["kappa"].size, rom_r["kappa"].data, 0))
                    m.d.sync += pass_mode.eq(Mux(kind, M_TX, M_DECAY))
                with m.Else():
                    m.d.sync += pass_mode.eq(M_TX)
                m.next = "PASS"

            # walk: z_bar of entry 0 first (from the stored z_bar and z buffer), then entries x synapses
            with m.State("WALK_PRE"):
                count("cycles_busy")
                m.d.comb += self.busy.eq(1)
                # an entry of synapses onto recurrent targets waits for each e_bar to be written back (LAT); synapses
                # onto readouts carry no trace (their gradient sums err * z_bar in registers): no wait
                m.d.sync += [pass_mode.eq(M_WALK), cyc.eq(Mux(kind | (maxlen > LAT), maxlen, LAT))]
                z0_total = Signal(signed(S_Z.width + 3))
                m.d.comb += z0_total.eq(zbar_step(gs_zbar, gs_zbuf, kind))
                m.d.sync += [zbar_it.eq(saturate(z0_total, 0, f["z_bar"].max_int, S_Z)), z_next.eq(1)]
                saturated("z_bar", sat_flag(z0_total, 0, f["z_bar"].max_int))
                count("gradient_calls", total_len)
                count("history_reads", total_len * n_steps)
                m.next = "WALK"
            with m.State("WALK"):
                count("cycles_busy")
                count("cycles_walk")
                count("walk_issue_cycles", 1, iss_q < maxlen)
                m.d.comb += [self.busy.eq(1), pass_owns.eq(1), iss_valid.eq(1),
                             iss_h.eq(gs_tprev - 1 + it), iss_zbar.eq(zbar_it)]
                # the next entry's z_bar, ready long before the entry starts (cyc >= LAT)
                zn_total = Signal(signed(S_Z.width + 3))
                m.d.comb += zn_total.eq(zbar_step(zbar_it, z_next, kind))
                with m.If(iss_q + 1 < cyc):
                    m.d.sync += iss_q.eq(iss_q + 1)
                with m.Else():
                    m.d.sync += iss_q.eq(0)
                    with m.If(it + 1 < n_steps):
                        m.d.sync += [it.eq(it + 1), zbar_it.eq(saturate(zn_total, 0, f["z_bar"].max_int, S_Z)),
                                     z_next.eq(0)]
                        saturated("z_bar", sat_flag(zn_total, 0, f["z_bar"].max_int))
                    with m.Else():
                        # z buffer after the walk: the spike that started it if the walk was one entry long
                        m.d.sync += [new_zbar.eq(zbar_it), new_zbuf.eq(n_steps == 1), drain.eq(0)]
                        m.next = "WALK_DRAIN"
            with m.State("WALK_DRAIN"):
                count("cycles_busy")
                m.d.comb += [self.busy.eq(1), pass_owns.eq(1)]
                m.d.sync += drain.eq(drain + 1)
                with m.If(drain == PIPE):
                    m.d.sync += [pass_mode.eq(M_GD), iss_q.eq(0), drain.eq(0)]
                    count("optimizer_calls", total_len)
                    count("weight_writes", total_len, eta_m != 0)
                    m.next = "PASS"

            # one pass over the group's synapses (gradient descent, transmission or decay), then drain
            with m.State("PASS"):
                count("cycles_busy")
                m.d.comb += [self.busy.eq(1), pass_owns.eq(1), iss_valid.eq(1)]
                with m.If(iss_q + 1 < maxlen):
                    m.d.sync += iss_q.eq(iss_q + 1)
                with m.Else():
                    m.d.sync += [iss_q.eq(0), drain.eq(0)]
                    m.next = "PASS_DRAIN"
                count("synaptic_events", total_len, (iss_q == 0) & (pass_tx | (pass_mode == M_TX)))
            with m.State("PASS_DRAIN"):
                count("cycles_busy")
                m.d.comb += [self.busy.eq(1), pass_owns.eq(1)]
                m.d.sync += drain.eq(drain + 1)
                with m.If(drain == PIPE):
                    m.next = "GROUP_WRITE"
            with m.State("GROUP_WRITE"):
                count("cycles_busy")
                m.d.comb += self.busy.eq(1)
                with m.If(write_state):
                    m.d.comb += [grp_w.addr.eq(g_cur), grp_w.data.eq(Cat(new_tprev, new_done, new_zbuf, new_zbar)),
                                 grp_w.en.eq(1)]
                m.next = "GROUP_END"
            with m.State("GROUP_END"):
                count("cycles_busy")
                m.d.comb += self.busy.eq(1)
                with m.If(~g_cur[0]):
                    m.d.sync += g_cur.eq(g_cur + 1)
                    m.next = "GROUP"
                with m.Elif(g_complete):
                    m.next = "COMPLETE"
                with m.Else():
                    # the source joins the completion queue; next list entry
                    with m.If(cf_count < p.completion_depth):
                        m.d.comb += [cf_w.addr.eq(cf_tail), cf_w.data.eq(Cat(entry_src, step)), cf_w.en.eq(1)]
                        m.d.sync += [cf_tail.eq(cf_tail + 1), cf_count.eq(cf_count + 1)]
                    with m.Else():
                        m.d.sync += overflow.eq(1)
                    m.d.sync += lptr.eq(lptr + 1)
                    m.next = "DELIVER"

            # ---- recurrent neurons: a 6-stage pipeline, one neuron per clock ---------------------------------------
            with m.State("NEURON"):
                count("cycles_busy")
                m.d.comb += [self.busy.eq(1), n_issue.eq(nj < n_rec)]
                m.d.sync += nj.eq(nj + 1)
                with m.If(nj == n_rec + PIPE):
                    m.d.sync += rk.eq(0)
                    m.next = "READOUT_A"

            # ---- readouts, one at a time ----------------------------------------------------------------------------
            with m.State("READOUT_A"):
                count("cycles_busy")
                m.d.comb += self.busy.eq(1)
                m.d.sync += ro_p.eq(out_v[rk] * c["alpha_out"].mantissa)
                xo = Signal(S_X)
                for ln, lane in enumerate(lanes):
                    with m.If(lane_of(rk) == ln):
                        m.d.comb += xo.eq(lane["x_out"][local_of(rk)])
                        m.d.sync += lane["x_out"][local_of(rk)].eq(0)
                m.d.sync += ro_x.eq(xo)
                m.next = "READOUT_B"
            with m.State("READOUT_B"):
                count("cycles_busy")
                m.d.comb += self.busy.eq(1)
                xs = saturate(ro_x, f["input"].min_int, f["input"].max_int, S_X)
                saturated("input", sat_flag(ro_x, f["input"].min_int, f["input"].max_int))
                vsum = Signal(signed(S_M.width + S_X.width + 4))
                m.d.comb += vsum.eq(round_shift(ro_p, c["alpha_out"].shift) + round_shift(xs, x_to_m)
                                    + mc["out_i_e"])
                saturated("membrane", sat_flag(vsum, f["membrane"].min_int, f["membrane"].max_int))
                vs = saturate(vsum, f["membrane"].min_int, f["membrane"].max_int, S_M)
                v2 = Mux(vs < mc["out_v_min"], mc["out_v_min"], vs)
                y = Signal(signed(S_M.width + 1))
                m.d.comb += y.eq(v2 + mc["out_e_l"])
                target = Mux(have_target & (label == rk), one_m, 0)
                diff = Signal(signed(S_M.width + 3))
                m.d.comb += diff.eq(y - target)
                e_shift = f["membrane"].frac_bits - f["error"].frac_bits
                err_full = Signal(signed(S_M.width + 4))
                m.d.comb += err_full.eq(round_shift(diff, e_shift))
                saturated("error", window & sat_flag(err_full, f["error"].min_int, f["error"].max_int))
                err = Mux(window, saturate(err_full, f["error"].min_int, f["error"].max_int, S_E), 0)
                m.d.sync += [out_v[rk].eq(v2), ro_y.eq(y), ro_err.eq(err)]
                m.next = "READOUT_C"
            with m.State("READOUT_C"):
                count("cycles_busy")
                m.d.comb += self.busy.eq(1)
                emit = sample_active & (window | self.trace_all)
                with m.If(emit & ~ofifo.w_rdy):
                    count("cycles_stalled")
                with m.Else():
                    for ln, lane in enumerate(lanes):
                        with m.If(lane_of(rk) == ln):
                            addr = Cat(h_now, local_of(rk)[:OB]) if OPL > 1 else h_now
                            m.d.comb += [lane["err_w"].addr.eq(addr), lane["err_w"].data.eq(ro_err),
                                         lane["err_w"].en.eq(1)]
                    m.d.sync += [err_last[rk].eq(ro_err), any_err_acc.eq(any_err_acc | (ro_err != 0))]
                    with m.If(emit):
                        y32 = Signal(signed(32))
                        m.d.comb += [y32.eq(ro_y),
                                     ofifo.w_data.eq(Cat(y32, rk == n_out - 1)),
                                     ofifo.w_en.eq(1)]
                    with m.If(rk + 1 < n_out):
                        m.d.sync += rk.eq(rk + 1)
                        m.next = "READOUT_A"
                    with m.Else():
                        m.d.sync += [any_err.eq(any_err_acc | (ro_err != 0)), fin.eq(0)]
                        m.next = "FORCE"

            # ---- the final update: every input fires in this step ----------------------------------------------
            with m.State("FORCE"):
                count("cycles_busy")
                m.d.comb += self.busy.eq(1)
                with m.If(force_now & (fin < n_in)):
                    m.d.comb += [append_req.eq(1), append_src.eq(fin)]
                    m.d.sync += fin.eq(fin + 1)
                with m.Else():
                    m.next = "IDLE"

        # ---- neuron pipeline (issued by the NEURON state): fixed_kernels.simulate's recurrent-neuron loop ------------
        nv = [Signal(name=f"n{i}_v") for i in range(6)]
        nj_s = [Signal(_bits(n_rec), name=f"n{i}_j") for i in range(6)]
        m.d.sync += [nv[1].eq(n_issue), nj_s[1].eq(nj)]
        for i in range(2, 6):
            m.d.sync += [nv[i].eq(nv[i - 1]), nj_s[i].eq(nj_s[i - 1])]
        m.d.comb += ns_r.addr.eq(nj)
        # N0: the neuron's input, cleared once taken
        x0 = Signal(S_X)
        for ln, lane in enumerate(lanes):
            with m.If(n_issue & (lane_of(nj) == ln)):
                m.d.comb += x0.eq(lane["x_rec"][local_of(nj)])
                m.d.sync += lane["x_rec"][local_of(nj)].eq(0)
        x1 = Signal(S_X)
        m.d.sync += x1.eq(x0)
        # N1: state arrives
        v1 = ns_r.data[:S_M.width].as_signed()
        ref1 = ns_r.data[S_M.width:S_M.width + 8]
        fav1 = ns_r.data[S_M.width + 8:]
        ref2 = Signal(8)
        xs2 = Signal(S_X)
        pav2 = Signal(signed(S_M.width + _bits(c["alpha"].mantissa) + 1))
        pfav2 = Signal(signed(S_F.width + _bits(c["kappa_reg"].mantissa) + 2))
        m.d.sync += [ref2.eq(Mux(ref1 > 0, ref1 - 1, 0)),
                     xs2.eq(saturate(x1, f["input"].min_int, f["input"].max_int, S_X)),
                     pav2.eq(v1 * c["alpha"].mantissa), pfav2.eq(fav1 * c["kappa_reg"].mantissa)]
        saturated("input", nv[1] & sat_flag(x1, f["input"].min_int, f["input"].max_int))
        # N2: membrane, threshold, surrogate argument
        vsum2 = Signal(signed(S_M.width + S_X.width + 4))
        m.d.comb += vsum2.eq(round_shift(pav2, c["alpha"].shift) + round_shift(xs2, x_to_m) + mc["i_e"])
        saturated("membrane", nv[2] & sat_flag(vsum2, f["membrane"].min_int, f["membrane"].max_int))
        vs2 = Signal(S_M)
        m.d.comb += vs2.eq(saturate(vsum2, f["membrane"].min_int, f["membrane"].max_int, S_M))
        vb2 = Signal(S_M)
        m.d.comb += vb2.eq(Mux(vs2 < mc["v_min"], mc["v_min"], vs2))
        vf2 = Signal(S_M)  # the final update takes every membrane to threshold
        m.d.comb += vf2.eq(Mux(force_now & (vb2 < mc["v_th"]), mc["v_th"], vb2))
        d2 = Signal(unsigned(S_M.width + 1))
        dd = Signal(signed(S_M.width + 2))
        m.d.comb += [dd.eq(vf2 - mc["v_th"]), d2.eq(Mux(dd < 0, -dd, dd))]
        spike2 = Signal()
        m.d.comb += spike2.eq((vf2 >= mc["v_th"]) & (ref2 == 0))
        v3, ref3, spike3, refz3 = Signal(S_M), Signal(8), Signal(), Signal()
        psl3 = Signal(signed(d2.shape().width + _bits(abs(sg["slope"].mantissa)) + 2))
        rom_ok3 = Signal()
        pfav3 = Signal.like(pfav2)
        m.d.sync += [v3.eq(Mux(spike2, vf2 - mc["v_th"], vf2)), ref3.eq(Mux(spike2, p.ref_counts, ref2)),
                     spike3.eq(spike2), refz3.eq(ref2 == 0), psl3.eq(d2 * sg["slope"].mantissa), pfav3.eq(pfav2)]
        if sg["kind"] == 1:
            idx2 = d2 >> sg["shift"]
            m.d.comb += sg_r.addr.eq(idx2)
            m.d.sync += rom_ok3.eq(idx2 < sg["table"].size)
        # N3: surrogate gradient, firing-rate average
        slope_s = sg["slope"].shift + f["membrane"].frac_bits - f["surrogate"].frac_bits
        psi3 = Signal(S_PSI)
        if sg["kind"] == 0:
            pw = Signal(signed(S_PSI.width + psl3.shape().width + 2))
            m.d.comb += pw.eq(sg["height"] - round_shift(psl3, slope_s))
            m.d.comb += psi3.eq(Mux(refz3 & (pw > 0), pw, 0))
        else:
            m.d.comb += psi3.eq(Mux(refz3 & rom_ok3, sg_r.data, 0))
        fsum3 = Signal(signed(pfav3.shape().width + 2))
        m.d.comb += fsum3.eq(round_shift(pfav3, c["kappa_reg"].shift) + Mux(spike3, fx.f_av_spike, 0))
        saturated("firing_rate", nv[3] & sat_flag(fsum3, 0, f["firing_rate"].max_int))
        v4, ref4, spike4, psi4, fav4 = Signal(S_M), Signal(8), Signal(), Signal(S_PSI), Signal(S_F)
        m.d.sync += [v4.eq(v3), ref4.eq(ref3), spike4.eq(spike3), psi4.eq(psi3),
                     fav4.eq(saturate(fsum3, 0, f["firing_rate"].max_int, S_F))]
        # N4: Lambda's start, (1 - kappa_reg) c_reg (f_av - f_target)
        plam5 = Signal(signed(S_F.width + 2 + _bits(abs(c["c_fr"].mantissa)) + 1))
        v5, ref5, spike5, psi5, fav5 = Signal(S_M), Signal(8), Signal(), Signal(S_PSI), Signal(S_F)
        m.d.sync += [plam5.eq((fav4 - fx.f_target) * c["c_fr"].mantissa), v5.eq(v4), ref5.eq(ref4),
                     spike5.eq(spike4), psi5.eq(psi4), fav5.eq(fav4)]
        # N5: write the state and history entry t, emit the spike
        lam_full = Signal(signed(plam5.shape().width + 2))
        m.d.comb += lam_full.eq(round_shift(plam5, c["c_fr"].shift + f["firing_rate"].frac_bits
                                            - f["learning_signal"].frac_bits))
        saturated("learning_signal", nv[5] & sat_flag(lam_full, f["learning_signal"].min_int,
                                                      f["learning_signal"].max_int))
        lam5 = saturate(lam_full, f["learning_signal"].min_int, f["learning_signal"].max_int, S_L)
        with m.If(nv[5]):
            m.d.comb += [ns_w.addr.eq(nj_s[5]), ns_w.data.eq(Cat(v5, ref5, fav5)), ns_w.en.eq(1)]
            for ln, lane in enumerate(lanes):
                with m.If(lane_of(nj_s[5]) == ln):
                    addr = Cat(h_now, local_of(nj_s[5])[:RB]) if RPL > 1 else h_now
                    m.d.comb += [lane["hist_w"].addr.eq(addr), lane["hist_w"].data.eq(Cat(psi5, lam5)),
                                 lane["hist_w"].en.eq(1)]
            with m.If(spike5):
                m.d.comb += [append_req.eq(1), append_src.eq(n_in + nj_s[5])]
        count("recurrent_spikes", 1, nv[5] & spike5)

        # ---- combine counter increments and saturation raises ---------------------------------------------------
        counters = [Signal(64, name=f"ctr_{name}") for name in COUNTERS]
        for name, ctr in zip(COUNTERS, counters):
            total = Const(0, 32)
            for sig in incr[name]:
                total = total + sig
            m.d.sync += ctr.eq(ctr + total)
        for i, ctr in enumerate(counters):
            m.d.comb += self.counters[i].eq(ctr)
        raise_bits = Signal(len(QUANTITIES))
        for bit in range(len(QUANTITIES)):
            sources = [sig for b, sig in sat_raise if b == bit]
            if sources:
                any_raise = sources[0]
                for sig in sources[1:]:
                    any_raise = any_raise | sig
                m.d.comb += raise_bits[bit].eq(any_raise)
        saturation = Signal(len(QUANTITIES))
        m.d.sync += saturation.eq((saturation | raise_bits) & ~self.clear_saturation)
        m.d.comb += self.saturation.eq(saturation)
        # last in the module: a clear wins over an error raised in the same cycle (the host reads LAST_ERROR first)
        for bit, flag in enumerate((bad_word, bad_channel, overflow, bad_load)):
            with m.If(self.clear_errors[bit]):
                m.d.sync += flag.eq(0)
        return m
