"""The accelerator core: the sequencer of the fixed-point engine's step, driving the components.

A STEP word starts a step; the phases are those of ``golden_model/engines/fixed_kernels.simulate``, in order:

  LS        learning signals join history entry t-2: Lambda_j += round(sum_k B_jk err_k[t-1]) (only when some
            error of step t-1 is non-zero), one multiply-accumulate per clock over the feedback memory;
  COMPLETE  groups whose source spiked at t - cutoff and not since (CompletionQueue): walk the cutoff's
            entries, gradient descent;
  DELIVER   each spike of step t-1 (SpikeLists: EVENT words, recurrent spikes, forced inputs): per group of its
            source (CSR pointers in the lanes' gptr memories), plasticity (walk + gradient descent, or trace
            decay after a completed walk), then transmission (x[target] += w); the source joins the queue;
  NEURON    RecurrentNeurons, one per clock: membrane, surrogate gradient, spike, firing-rate term, history
            entry t (psi, Lambda); then the readouts one by one: membrane, error, output words;
  FORCE     in the final update's step every input fires;
  IDLE      input: stream words until the next STEP (events of step t, SAMPLE, LEARN, FORCE, LOAD, DUMP) and
            weight-window accesses.

Lanes (``lane.py``). A synapse lives on the lane of its target (recurrent neuron j on lane j % lanes, readout k
on k % lanes): each lane has its own synapse, trace, history and error memories and input accumulators, so a
group's walk runs on every lane at once with no shared port. A walk iterates history entries (outer) and the
lane's synapses (inner), one synapse per lane per clock; an entry of a group onto recurrent targets takes
max(longest lane, LAT) clocks, the e_bar of a synapse's previous entry forwarded inside the pipeline (onto
readouts: the longest lane); the pipeline accepts one synapse-entry per lane per clock (initiation interval 1).

The Adam build (``optimizer.type = adam``, ``HardwareParams.adam``): the optimizer pass after a walk runs the
lanes' Adam unit instead of gradient descent; each group's state word also holds its Adam step count, which
indexes the bias-correction ROM for the pass's step size A = round(eta bias[t]) and advances while learning
(``hw_contract.AdamContract``); the pass drains ADAM_PIPE clocks. Nothing of this is built for gradient descent.
"""

from __future__ import annotations

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from golden_model.hw_contract import QUANTITIES
from golden_model.hw_interface import COUNTERS, Op, Region

from .arith import fmt_shape, round_shift, sat_flag, saturate
from .lane import ADAM_PIPE, LAT, PIPE, PassMode, UpdateLane, WriteSignals
from .memory import COLLISION_X, KEEP, collision_read
from .neuron import NEURON_STAGES, RecurrentNeurons
from .spikes import CompletionQueue, SpikeLists
from .params import HardwareParams

#: clocks the NEURON state runs past the last count: the neurons' pipeline drained (issued a clock after the count,
#: the last neuron's history entry and spike leave in the state's last clock) and the lanes' input path
NEURON_DRAIN = max(PIPE, NEURON_STAGES)
#: the group memory's banks: 1024 words, one DP16KD deep (1024 x 18)
GRP_BANK_LOG2 = 10
GRP_BANK = 1 << GRP_BANK_LOG2
#: clocks from a walk entry's (z_bar, z) to the next entry's z_bar (the sequencer's z_bar pipeline)
ZBAR_STAGES = 2
#: clocks per walk entry at least: the e_bar write-back of recurrent targets (LAT), the z_bar pipeline, and the
#: lanes' gradient read a clock before the write (2 clocks; for readout groups too)
WALK_MIN_CYC = max(LAT, ZBAR_STAGES + 1)

__all__ = ["Core", "LAT", "PIPE", "RESULT"]

#: an output word: a readout value (membrane format, sign-extended) or a dumped word; `last` ends a packet
RESULT = data.StructLayout({"data": 32, "last": 1})



def _bits(n: int) -> int:
    """Bits to count 0 .. n."""
    return max(1, int(n).bit_length())


class Core(wiring.Component):
    def __init__(self, p: HardwareParams):
        self.p = p
        # the saturation flags this build can raise: Adam's two (the last QUANTITIES) only in the Adam build
        self.n_flags = n_flags = len(QUANTITIES) if p.adam else QUANTITIES.index("adam_m")
        super().__init__({
            # stream words in (hw_interface: events and commands); readout values and dumps out, `last` ending a
            # step's values or a dump
            "words": In(stream.Signature(32)),
            "results": Out(stream.Signature(RESULT)),
            "run": In(1), "soft_reset": In(1), "trace_all": In(1),
            "eta_mantissa": In(signed(p.config.fixed.eta_bits)), "eta_shift": In(8),
            "idle": Out(1), "busy": Out(1), "step": Out(32),
            "bad_word": Out(1), "bad_channel": Out(1), "overflow": Out(1), "bad_load": Out(1),
            # write-1-to-clear of the sticky error bits: bad_word, bad_channel, overflow, bad_load
            "clear_errors": In(4), "last_error": Out(32),
            "saturation": Out(n_flags), "clear_saturation": In(n_flags),
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
        D, SLOT, SRC = p.syn_depth, p.slot_bits, p.src_bits
        # history and error rings: one ring of H entries per local neuron, address local * H + h (lane.py)
        RB, OB = p.rec_index_bits, p.out_index_bits
        cutoff = p.cutoff
        T, LW = p.sequence, p.learning_window
        shape = {name: fmt_shape(q) for name, q in f.items()}
        S_Z, S_M = shape["z_bar"], shape["membrane"]
        S_PSI, S_L, S_E = shape["surrogate"], shape["learning_signal"], shape["error"]
        S_B, S_X = shape["feedback"], shape["input"]
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
        # step - cutoff, kept beside step (the decay's exponent and the completions' due step subtract it from a
        # group's last step: two subtractions in one clock were 32 endpoints 4.26 ns short of 10 ns, gs -> decay_mm)
        step_mc = Signal(signed(34), init=-cutoff)
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
        bad_word, bad_channel = Signal(name="bad_word"), Signal(name="bad_channel")
        overflow, bad_load = Signal(name="overflow"), Signal(name="bad_load")
        last_error = Signal(32)
        m.d.comb += [self.step.eq(step), self.bad_word.eq(bad_word), self.bad_channel.eq(bad_channel),
                     self.overflow.eq(overflow), self.bad_load.eq(bad_load), self.last_error.eq(last_error)]

        # ---- lanes: synapses, traces, history rings and input accumulators, with the update pipeline -------------
        lanes = []
        for ln in range(L):
            lane = UpdateLane(p, ln)
            m.submodules[f"lane{ln}"] = lane
            lanes.append(lane)

        GS_W = 32 + 1 + 1 + S_Z.width  # t_prev | done | zbuf | z_bar
        # the Adam build appends the group's Adam step count (bias-correction ROM index)
        ADAM_T = fx.adam.step_bits if p.adam else 0
        # (the feedback memory is not COLLISION_X: its writes come straight from logic, and the write Yosys delays by
        # a clock to keep a colliding read's old word is the register that path needs; without it, load_count ->
        # feedback was 42 endpoints 4.13 ns short. The spike lists and the completion FIFO are, with their writes
        # registered in spikes.py: unregistered, the window's write enable -> the lists' block RAMs was 5.94 ns short)
        feedback = Memory(shape=unsigned(S_B.width), depth=max(1, n_rec * n_out), init=[])
        m.submodules.feedback = feedback
        # the group memory's read address is g_cur in every state (read in GROUP, registered in GROUP_PTR, used in
        # GROUP_LEN) and its writes are registered: few block RAMs are left free, so it may sit far across the die,
        # and the state machine's multiplexers in front of its pins were the nmnist ECP5 build's longest path.
        # In banks of GRP_BANK words (one DP16KD deep), each read into a plain register the ECP5 flow moves into
        # the block RAMs (firmware/netlist.py), the bank chosen behind them in GROUP_LEN: the multiplexer Yosys puts
        # behind a deeper memory kept the block RAMs' outputs (5.8 ns after the clock) in the fabric, on across
        # the die into gs (grp -> gs, up to 46 endpoints 2.50 ns short of 10 ns, nmnist ECP5 build)
        grp_w = WriteSignals(_bits(n_groups), GS_W + ADAM_T, "grp")
        grp_banks = []
        for i in range(-(-n_groups // GRP_BANK)):
            mem = Memory(shape=unsigned(GS_W + ADAM_T), depth=min(GRP_BANK, n_groups - i * GRP_BANK), init=[],
                         attrs=COLLISION_X)
            m.submodules[f"grp_b{i}"] = mem
            rd, wr = mem.read_port(), mem.write_port()
            q = Signal(GS_W + ADAM_T, name=f"grp_q{i}", reset_less=True)
            m.d.sync += [wr.addr.eq(grp_w.addr), wr.data.eq(grp_w.data),
                         wr.en.eq(grp_w.en & (grp_w.addr >> GRP_BANK_LOG2 == i)),
                         q.eq(collision_read(m, rd, wr, f"grp_b{i}"))]
            grp_banks.append((rd, q))
        fb_r, fb_w = feedback.read_port(), feedback.write_port()
        fb_data = fb_r.data
        rom_r = {}
        for name, values in fx.decay_roms.items():
            mem = Memory(shape=unsigned(_bits(int(values.max()))), depth=values.size, init=[int(v) for v in values])
            m.submodules[f"rom_{name}"] = mem
            rom_r[name] = mem.read_port()
        m.submodules.neurons = neurons = RecurrentNeurons(p)
        m.d.comb += [grp_w.en.eq(0), fb_w.en.eq(0)]

        # ---- spike lists of steps t-1 / t and the completion queue (spikes.py) ------------------------------------
        m.submodules.spikes = spikes = SpikeLists(SRC, p.spike_list_depth)
        # steps in the queue modulo 2**STEP_LOW (> 2 cutoff): entries are never older than the cutoff
        STEP_LOW = _bits(cutoff) + 1
        m.submodules.completions = completions = CompletionQueue(SRC, p.completion_depth, STEP_LOW)
        # the queue's head is due (COMPLETE), its source
        head_due, head_src_q = Signal(name="head_due"), Signal(SRC, name="head_src_q")
        append_req = Signal()
        append_src = Signal(SRC)
        m.d.comb += [spikes.append.valid.eq(append_req), spikes.append.payload.eq(append_src)]
        with m.If(spikes.overflow | completions.overflow):
            m.d.sync += overflow.eq(1)

        # ---- output FIFO ------------------------------------------------------------------------------------------
        m.submodules.ofifo = ofifo = SyncFIFOBuffered(width=33, depth=max(16, 4 * n_out))
        m.d.comb += [self.results.payload.eq(ofifo.r_data), self.results.valid.eq(ofifo.r_rdy),
                     ofifo.r_en.eq(self.results.ready), ofifo.w_en.eq(0)]
        # room for a word in the output FIFO, from a register: at least two free entries a clock ago leave one now
        # (at most one write a clock). The FIFO's level compare (w_rdy) in front of the readout's stall decision and
        # the enables behind it was ~150 endpoints up to 3.17 ns short of 10 ns (nmnist ECP5, ofifo -> err_last)
        ofifo_room = Signal(name="ofifo_room")
        m.d.sync += ofifo_room.eq(ofifo.level <= ofifo.depth - 2)

        # ---- the pass every lane runs (lane.py), driven by the sequencer ------------------------------------------
        pass_mode = Signal(PassMode)
        pass_kind = Signal()   # 0: synapses onto recurrent neurons, 1: onto readouts
        pass_tx = Signal()     # the gradient-descent / decay pass also transmits
        # the pass drives the lanes' read addresses: in WALK, WALK_DRAIN, PASS and PASS_DRAIN, a register set on the
        # way in and cleared on the way out (decoded from the state, in front of every bank's read address register,
        # it was 369 endpoints up to 3.85 ns short of 10 ns in the nmnist ECP5 build)
        pass_owns = Signal()
        iss_valid = Signal()
        iss_q = Signal(SLOT + 1)
        # iss_q + 1 has reached the pass's length (cyc in WALK, maxlen in PASS), registered beside iss_q: the add and
        # compare decided the issue's next state and the walk's next entry in one clock (issue_q -> issue_q, drain,
        # new_zbar: up to 4.01 ns short of 10 ns in the nmnist ECP5 build)
        iss_last = Signal()
        iss_h = Signal(HB)
        iss_zbar = Signal(S_Z)
        decay_k = Signal(unsigned(p.decay_bits))
        ga = [Signal(SLOT, name=f"ga{i}") for i in range(L)]
        glen = [Signal(SLOT, name=f"glen{i}") for i in range(L)]
        g_clear = Signal()
        # the sequencer's own synapse / trace read address: the window's (IDLE and the window's states) or the dump's
        # (DUMP_ISSUE to DUMP_REG), chosen by a register rather than by the states (the state decode in front of the
        # lanes' address registers, placed by their block RAMs, was 12 to 92 endpoints up to 3.53 ns short of 10 ns,
        # fsm_state -> the synapse banks' read address, nmnist ECP5 build); no other state reads through it
        seq_syn_addr = Signal(SLOT)
        seq_dumping = Signal()
        seq_hist_addr = Signal(max(1, (p.hist_depth - 1).bit_length()))
        # the group pointers' read address, a register loaded a clock ahead (g_cur in GROUP, g_cur + 1 in GROUP_PTR,
        # dump_idx in DUMP): chosen by the state in front of the block RAMs it was up to 4.98 ns short of 10 ns
        gptr_addr = Signal(_bits(n_groups), name="gptr_addr")
        # each lane's issue address, its group start + iss_q, kept beside iss_q (restarted with it, advanced with it),
        # and each lane's copy of iss_q (KEEP): the one register, placed by the lane's gradient memory it addresses,
        # was 8 ns of wire from the sequencer's compare behind it (issue_q -> iss_last, 1.5 to 2.8 ns short of 10 ns
        # on every seed, nmnist ECP5 build)
        iss_a = [Signal(SLOT, name=f"iss_a{ln}") for ln in range(L)]
        iss_ql = [Signal(SLOT + 1, name=f"iss_q{ln}", attrs=KEEP) for ln in range(L)]

        def issue_restart():
            m.d.sync += [iss_q.eq(0), *(iss_a[ln].eq(ga[ln]) for ln in range(L)), *(q.eq(0) for q in iss_ql)]

        def issue_advance():
            m.d.sync += [iss_q.eq(iss_q + 1), *(iss_a[ln].eq(iss_a[ln] + 1) for ln in range(L)),
                         *(q.eq(q + 1) for q in iss_ql)]

        for ln, lane in enumerate(lanes):
            m.d.comb += [lane.mode.eq(pass_mode), lane.kind.eq(pass_kind), lane.transmit.eq(pass_tx),
                         lane.decay_k.eq(decay_k), lane.issue_a.eq(iss_a[ln]), lane.group_len.eq(glen[ln]),
                         lane.eta_mantissa.eq(eta_m), lane.eta_shift.eq(eta_s), lane.clear_gradients.eq(g_clear),
                         lane.issue_valid.eq(iss_valid), lane.issue_q.eq(iss_ql[ln]), lane.issue_h.eq(iss_h),
                         lane.issue_zbar.eq(iss_zbar), lane.owns.eq(pass_owns),
                         lane.syn.raddr.eq(seq_syn_addr), lane.hist.raddr.eq(seq_hist_addr),
                         lane.gptr.raddr.eq(gptr_addr)]
            saturated("e_bar", lane.sat_e_bar)
            saturated("gradient", lane.sat_gradient)
            saturated("weight", lane.sat_weight)
        x_to_m = f["weight"].frac_bits - f["membrane"].frac_bits
        M_WALK, M_GD, M_TX, M_DECAY = PassMode.WALK, PassMode.GD, PassMode.TX, PassMode.DECAY

        # ---- sequencer registers ----------------------------------------------------------------------------------
        word = self.words.payload
        op = word[28:32]
        g_cur = Signal(_bits(n_groups))
        for rd, _ in grp_banks:
            m.d.comb += rd.addr.eq(g_cur)
        grp_data = Array(q for _, q in grp_banks)[g_cur >> GRP_BANK_LOG2]  # (GROUP_LEN's: the registers of GROUP_PTR)
        g_complete = Signal()          # completion walk (no transmission) rather than a delivery
        g_pstep = Signal(32)           # completion: the spike step of the walk
        gs = Signal(GS_W + ADAM_T)
        gs_tprev, gs_done, gs_zbuf, gs_zbar = gs[:32], gs[32], gs[33], gs[34:GS_W].as_signed()
        new_tprev, new_done, new_zbuf = Signal(32, name="new_tprev"), Signal(name="new_done"), Signal(name="new_zbuf")
        new_zbar = Signal(S_Z)

        # ---- the Adam build: the group's step count, its bias-correction ROM, the step size A of its pass ---------
        adam_state = []
        if p.adam:
            ad = fx.adam
            gs_adam_t = gs[GS_W:]
            new_adam_t = Signal(ADAM_T)
            adam_a = Signal(p.adam_step_shape)
            bias = Memory(shape=unsigned(_bits(int(ad.bias_rom.max()))), depth=ad.bias_rom.size,
                          init=[int(v) for v in ad.bias_rom])
            m.submodules.adam_bias = bias
            bias_r = bias.read_port()
            # gs is stable from GROUP_PTR on: the ROM's word is ready long before the optimizer pass
            m.d.comb += bias_r.addr.eq(gs_adam_t)
            for lane in lanes:
                m.d.comb += lane.adam_step.eq(adam_a)
                saturated("adam_m", lane.sat_adam_m)
                saturated("adam_v", lane.sat_adam_v)
            adam_state = [new_adam_t]

            def adam_begin():
                # A = round(eta_m bias[t] >> bias_shift); the step count advances only when learning (eta 0 skips
                # the optimizer: hw_contract.AdamContract)
                m.d.sync += adam_a.eq(round_shift(eta_m * bias_r.data, ad.bias_shift))
                with m.If((eta_m != 0) & (gs_adam_t + 1 < ad.bias_rom.size)):
                    m.d.sync += new_adam_t.eq(gs_adam_t + 1)

        write_state = Signal()
        n_steps = Signal(_bits(cutoff))
        it = Signal(_bits(cutoff))
        cyc = Signal(SLOT + 1)         # clocks per walk entry / pass
        total_len = Signal(SLOT + _bits(L))
        g_empty = Signal()             # the group has no synapse on any lane (GROUP_DECIDE)
        gb = [Signal(SLOT, name=f"gb{i}") for i in range(L)]  # the lanes' group ends (GROUP_LEN)
        maxlen = Signal(SLOT)
        zbar_it = Signal(S_Z)
        z_next = Signal()              # z entering z_bar at the next entry
        # the Adam build's optimizer pass drains longer (ADAM_PIPE): one more bit then
        pass_pipe = ADAM_PIPE if p.adam else PIPE
        drain = Signal(range(max(16, pass_pipe + 1)))
        lptr = Signal(_bits(p.spike_list_depth))
        entry_src = Signal(SRC)
        decay_mm = Signal(32)
        clr = Signal(_bits(max(D, H * RPL, H * OPL, n_groups, n_rec)) + 1)
        clr_last = Signal()  # clr == last in CLEAR (last >= 1)
        load_region = Signal(4)
        load_addr = Signal(24)
        load_count = Signal(24)
        ls_j = Signal(_bits(n_rec))
        ls_k = Signal(_bits(n_out))
        ls_acc = Signal(signed(S_B.width + S_E.width + _bits(n_out) + 1))
        # the feedback memory's read address, presented a clock before the word is used: B_jk arrives in the LS_MAC
        # clock of k. It is 0 in LS (set in START), row j's address of k + 1 in the LS_MAC clock of k (k < n_out - 1),
        # then the next row's first, presented through the row's drain, LS_READ and LS_WRITE
        ls_fb_addr = Signal(_bits(n_rec * n_out + 1))
        m.d.comb += fb_r.addr.eq(ls_fb_addr)  # (DUMP loads it with dump_idx: a register in front of the memory)
        to_l = f["feedback"].frac_bits + f["error"].frac_bits - f["learning_signal"].frac_bits
        ls_old = Signal(S_PSI.width + S_L.width)
        ls_add = Signal(signed(ls_acc.shape().width + 2 + max(0, -to_l)))  # round(ls_acc / 2**to_l), exactly
        nj = Signal(_bits(n_rec + PIPE))
        rk = Signal(_bits(n_out))
        fin = Signal(_bits(n_in))
        h_now = Signal(HB)
        m.d.comb += h_now.eq(step[:HB])
        tau = Signal(_bits(T))
        nx_ge2, nx_gt2, nx_eq2 = Signal(name="nx_ge2"), Signal(name="nx_gt2"), Signal(name="nx_eq2")
        nx_tau = Signal.like(tau, name="nx_tau")
        # tau of the current step in its sample: (step - 2) % T, kept incrementally
        one_m = 1 << f["membrane"].frac_bits

        def lane_of(x):
            return x % L if L > 1 else Const(0)

        def local_of(x):
            return x // L if L > 1 else x

        alpha = {0: c["alpha"], 1: c["alpha_out"]}
        # the readout's membrane, chosen among the n_out a clock before READOUT_A (when rk is set): the multiplexer
        # on rk in front of the alpha_out multiplier was the nmnist ECP5 build's longest path (seed 2)
        ro_vin = Signal(S_M)
        ro_is_target = Signal()
        ro_p = Signal(signed(S_M.width + _bits(c["alpha_out"].mantissa) + 1))
        ro_x = Signal(S_X)
        ro_y = Signal(signed(S_M.width + 1))
        ro_v = Signal(S_M)
        ro_vsum = Signal(signed(S_M.width + S_X.width + 4))
        ro_err = Signal(S_E)
        n_issue = Signal()

        # the weight window's and DUMP's word, registered after the lanes' (and feedback memory's) read data
        win_q = Signal(32)
        dump_gptr = [Signal(SLOT, name=f"dump_gptr{ln}") for ln in range(L)]
        dump_fb = Signal.like(fb_r.data, name="dump_fb")
        win_wr = Signal(L)  # the weight window writes the word to lane i
        dump_len = Signal(32)
        with m.Switch(load_region):
            with m.Case(Region.SYNAPSES, Region.TRACES):
                m.d.comb += dump_len.eq(L * D)
            with m.Case(Region.GROUPS):
                m.d.comb += dump_len.eq(L * (n_groups + 1))
            with m.Case(Region.FEEDBACK):
                m.d.comb += dump_len.eq(n_rec * n_out)
        # DUMP walks the region in order from address 0, so (lane, index) advance with it: no divider (a
        # combinational divide by D or n_groups + 1 was the design's longest path)
        dump_lane = Signal(_bits(L))
        dump_idx = Signal(24)
        # (the window's address through a register of the core's: the AXI-Lite register across the die into the
        # lanes' address registers was 11 endpoints 4.42 ns short, seed 4; the host's address is set clocks before
        # its access, and increments only as one is acknowledged)
        win_addr_r = Signal(SLOT, name="win_addr_r")
        m.d.sync += win_addr_r.eq(self.win_addr[:SLOT])
        m.d.comb += seq_syn_addr.eq(Mux(seq_dumping, dump_idx, win_addr_r))
        dump_per_lane = Signal(24)
        with m.Switch(load_region):
            with m.Case(Region.GROUPS):
                m.d.comb += dump_per_lane.eq(n_groups + 1)
            with m.Case(Region.FEEDBACK):
                m.d.comb += dump_per_lane.eq(n_rec * n_out)
            with m.Default():
                m.d.comb += dump_per_lane.eq(D)

        ls_lane = lane_of(ls_j)
        ls_local = local_of(ls_j)
        h_ls = Signal(HB)
        m.d.comb += h_ls.eq(step - 2)
        ls_hist_addr = Cat(h_ls, ls_local[:RB]) if RPL > 1 else h_ls
        # the learning signal's history write, a clock after LS_WRITE (see there)
        ls_wv, ls_wlane = Signal(name="ls_wv"), Signal(_bits(L), name="ls_wlane")
        ls_waddr = Signal(max(1, (p.hist_depth - 1).bit_length()))
        ls_wdata = Signal(S_PSI.width + S_L.width)
        m.d.sync += ls_wv.eq(0)

        # the delivered list is read ahead: pf_idx is the next entry to deliver (0 from the step's start, lptr + 1
        # from an entry's delivery on, many clocks before the next DELIVER_ENTRY) and its word arrives registered
        # two clocks later (SpikeLists); the list's block RAM word through the choice of list into g_cur, the group
        # pointers' address and the counters in DELIVER_ENTRY was the nmnist ECP5 build's longest path (4.83 ns
        # short of 10 ns)
        pf_idx = Signal.like(lptr, name="pf_idx")
        pf_src = spikes.read_data
        m.d.comb += spikes.read_index.eq(pf_idx)

        kind = g_cur[0]

        # the group's z_bar recurrence, z_bar' = sat(round(alpha z_bar) + z), as a two-stage pipeline that runs every
        # clock on (zbar_it, z_next): the product registered, then rounding, the spike and saturation. In one clock
        # (with the walk's entry counter selecting the operands of a multiplier Yosys shares) it was the design's
        # longest path.
        # The group kind's alpha is a register (a clock behind g_cur: a group's walk starts clocks after it is
        # chosen), the multiplier's operand, not a choice between two products behind the multipliers (zbar_it ->
        # zbar_prod, up to 22 endpoints 2.84 ns short of 10 ns, nmnist ECP5 build).
        a_bits = max(_bits(alpha[0].mantissa), _bits(alpha[1].mantissa))
        zbar_prod = Signal(signed(S_Z.width + a_bits + 2))
        zbar_alpha, zbar_kind = Signal(a_bits, name="zbar_alpha"), Signal(name="zbar_kind")
        m.d.sync += [zbar_alpha.eq(Mux(kind, alpha[1].mantissa, alpha[0].mantissa)), zbar_kind.eq(kind)]
        zbar_prod_kind, zbar_prod_z = Signal(name="zbar_prod_kind"), Signal(name="zbar_prod_z")
        m.d.sync += [zbar_prod.eq(zbar_it * zbar_alpha), zbar_prod_kind.eq(zbar_kind), zbar_prod_z.eq(z_next)]
        zbar_sum = Signal(signed(zbar_prod.shape().width + 2))
        m.d.comb += zbar_sum.eq(Mux(zbar_prod_kind, round_shift(zbar_prod, alpha[1].shift),
                                    round_shift(zbar_prod, alpha[0].shift))
                                + Mux(zbar_prod_z, 1 << f["z_bar"].frac_bits, 0))
        zbar_next, zbar_next_sat = Signal(S_Z, name="zbar_next"), Signal(name="zbar_next_sat")
        m.d.sync += [zbar_next.eq(saturate(zbar_sum, 0, f["z_bar"].max_int, S_Z)),
                     zbar_next_sat.eq(sat_flag(zbar_sum, 0, f["z_bar"].max_int))]
        zbar_wait = Signal(range(ZBAR_STAGES + 1))
        # the decay of a group after a completed walk (DECAY_READ .. DECAY_APPLY)
        dec_alpha = Signal(max(_bits(int(fx.decay_roms["alpha"].max())), _bits(int(fx.decay_roms["alpha_out"].max()))))
        dec_kappa = Signal.like(decay_k)
        dec_prod = Signal(signed(S_Z.width + dec_alpha.shape().width + 1))
        dec_pos, dec_in_a = Signal(name="dec_pos"), Signal(name="dec_in_a")

        m.d.sync += g_clear.eq(0)


        for name, port in rom_r.items():
            m.d.comb += port.addr.eq(decay_mm)

        # the readout's error and the learning signal's sum, outside the states that register them: a comb
        # assignment inside a state is 0 in the others, and the state decode at the head of the adders' chain was
        # the nmnist ECP5 build's longest path (fsm_state -> ro_err, 15.50 ns)
        ro_y_full = Signal(signed(S_M.width + 1), name="ro_y_full")
        ro_diff = Signal(signed(S_M.width + 3), name="ro_diff")
        ro_err_full = Signal(signed(S_M.width + 4), name="ro_err_full")
        m.d.comb += [ro_y_full.eq(ro_v + mc["out_e_l"]), ro_diff.eq(ro_y_full - Mux(ro_is_target, one_m, 0)),
                     ro_err_full.eq(round_shift(ro_diff, f["membrane"].frac_bits - f["error"].frac_bits))]
        ls_total = Signal(signed(S_L.width + ls_add.shape().width + 2), name="ls_total")
        m.d.comb += ls_total.eq(ls_old[S_PSI.width:].as_signed() + ls_add)

        # a group's lane lengths, their max and sum, and whether all are 0, from the registered pointer words, for
        # GROUP_DECIDE (outside it, for the same reason as the readout's error)
        g_lengths = [Signal(SLOT, name=f"glen_d{ln}") for ln in range(L)]
        g_maxlen, g_total = Signal(SLOT, name="g_maxlen"), Signal(SLOT + _bits(L), name="g_total")
        mx, tot = Const(0, SLOT), Const(0, SLOT + _bits(L))
        for ln in range(L):
            m.d.comb += g_lengths[ln].eq((gb[ln] - ga[ln])[:SLOT])
            mx = Mux(g_lengths[ln] > mx, g_lengths[ln], mx)
            tot = tot + g_lengths[ln]
        # (whether all are 0 from the words' XOR, not their difference: Yosys took the compare from the subtractor's
        # carry chain, and that chain in front of GROUP_DECIDE's choice and the ~100 registers it loads was 32
        # endpoints 1.60 ns short of 10 ns, ga -> new_tprev, nmnist ECP5 build)
        g_diff = [Signal(SLOT, name=f"g_diff{ln}") for ln in range(L)]
        m.d.comb += [g_diff[ln].eq(gb[ln][:SLOT] ^ ga[ln]) for ln in range(L)]
        m.d.comb += [g_maxlen.eq(mx), g_total.eq(tot), g_empty.eq(~Cat(d.any() for d in g_diff).any())]
        # the readouts' accumulators: each lane keeps the one at rk in a register (its take_out_index is rk's in
        # every state); ro_x is the one of rk's lane, read in READOUT_B
        for lane in lanes:
            m.d.comb += lane.take_out_index.eq(local_of(rk))
        m.d.comb += ro_x.eq(Array(lane.x_out for lane in lanes)[lane_of(rk)] if L > 1 else lanes[0].x_out)
        # the sequencer's history reads are the learning signal's only (other states: nothing reads them)
        m.d.comb += seq_hist_addr.eq(ls_hist_addr)

        with m.FSM(init="CLEAR"):
            # ---- soft reset: clear state, keep synapses, group pointers and B --------------------------------------
            with m.State("CLEAR"):
                count("cycles_busy")
                m.d.comb += self.busy.eq(1)
                last = max(D, H * RPL, H * OPL, n_groups, n_rec)
                # (the lanes sweep their input accumulators a clock behind clear_inputs: RPL words, one clock late)
                assert last >= RPL + 1, "the soft reset must outlast the lanes' accumulator sweep"
                for lane in lanes:
                    m.d.comb += [lane.eb.waddr.eq(clr), lane.eb.wdata.eq(0), lane.eb.we.eq(clr < D),
                                 lane.hist.waddr.eq(clr), lane.hist.wdata.eq(0),
                                 lane.hist.we.eq(clr < H * RPL),
                                 lane.err.waddr.eq(clr), lane.err.wdata.eq(0),
                                 lane.err.we.eq(clr < H * OPL)]
                    m.d.comb += lane.clear_inputs.eq(1)
                    if p.adam:
                        m.d.comb += [lane.mom.waddr.eq(clr), lane.mom.wdata.eq(0), lane.mom.we.eq(clr < D)]
                m.d.comb += [grp_w.addr.eq(clr), grp_w.data.eq(0), grp_w.en.eq(clr < n_groups),
                             neurons.clear.eq(clr < n_rec), neurons.clear_index.eq(clr)]
                # (the end decided a clock ahead, into one register: clr == last into the enables of the ~40
                # registers it resets was up to 4.96 ns short of 10 ns in the nmnist ECP5 build)
                m.d.sync += [clr.eq(clr + 1), clr_last.eq(clr + 1 == last)]
                with m.If(clr_last):
                    m.d.sync += [clr.eq(0), step.eq(0), step_mc.eq(-cutoff), first_step.eq(1), learn_next.eq(0),
                                 label.eq(0), have_target.eq(0), window.eq(0), sample_active.eq(0),
                                 pending_sample.eq(0),
                                 force_next.eq(0), force_now.eq(0), any_err.eq(0), tau.eq(0)]
                    m.d.comb += [spikes.clear.eq(1), completions.clear.eq(1)]
                    for k in range(n_out):
                        m.d.sync += [out_v[k].eq(mc["out_v0"]), err_last[k].eq(0)]
                    m.next = "IDLE"

            # ---- input phase -----------------------------------------------------------------------------------------
            with m.State("IDLE"):
                # the window's word is addressed in every idle clock, whether or not the host asks for it (a read
                # changes nothing): behind the decision below, the address was the nmnist ECP5 build's longest path
                # (AXI read request -> IDLE -> the lanes' read address registers, seed 1: 55.08 MHz, 18.16 ns)
                m.d.comb += self.idle.eq(1)
                # the next step's number and position in the sample, as START needs them (step, tau and first_step
                # change only in START and CLEAR): the step's increment and compares in START were 8 to 20 endpoints
                # up to 4.17 ns short of 10 ns in the nmnist ECP5 build (step -> label, have_target)
                m.d.sync += [nx_ge2.eq(~first_step & (step >= 1)), nx_gt2.eq(~first_step & (step >= 2)),
                             nx_eq2.eq(~first_step & (step == 1)), nx_tau.eq(Mux(tau == T - 1, 0, tau + 1))]
                with m.If(self.soft_reset):
                    m.next = "CLEAR"
                with m.Elif(self.win_we | self.win_re):
                    m.next = "WINDOW_WAIT"
                with m.Elif(self.run):
                    m.d.comb += self.words.ready.eq(1)
                    count("cycles_idle", 1, ~self.words.valid)
                    with m.If(self.words.valid):
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
                                m.d.sync += [load_region.eq(word[24:28]), load_addr.eq(0), dump_lane.eq(0),
                                             dump_idx.eq(0), seq_dumping.eq(1)]
                                m.next = "DUMP_ISSUE"
                            with m.Default():
                                m.d.sync += [bad_word.eq(1), last_error.eq(word)]
                with m.Else():
                    count("cycles_idle")

            # ---- weight window: the lanes register the address, the word arrives three clocks after it (the block
            # RAMs' outputs are registered too, lane.BankedRAM out_reg) and is registered here before it goes to the
            # AXI read data (a synapse block RAM's output, through the banks' and lanes' multiplexers, across the die
            # into the AXI read register was the nmnist ECP5 build's longest path); an access takes five clocks
            with m.State("WINDOW_WAIT"):
                m.next = "WINDOW_WAIT2"
            with m.State("WINDOW_WAIT2"):
                m.next = "WINDOW_READ"
            # (a write's decode registered here too: the AXI-Lite write decode behind it, into the synapse banks'
            # write enables, was the nmnist ECP5 build's longest path, seed 3: 57.19 MHz, 17.49 ns; the host holds
            # win_we, win_addr and win_wdata until win_ack)
            with m.State("WINDOW_READ"):
                for ln, lane in enumerate(lanes):
                    m.d.sync += win_wr[ln].eq(self.win_we & (self.win_addr[24:32] == ln) & (self.win_addr[:24] < D))
                    with m.If(self.win_addr[24:32] == ln):
                        m.d.sync += win_q.eq(lane.syn.rdata)
                m.next = "WINDOW"
            with m.State("WINDOW"):
                for ln, lane in enumerate(lanes):
                    with m.If(win_wr[ln]):
                        m.d.comb += [lane.syn.waddr.eq(self.win_addr[:SLOT]),
                                     lane.syn.wdata.eq(self.win_wdata), lane.syn.we.eq(1)]
                m.d.comb += [self.win_rdata.eq(win_q), self.win_ack.eq(1)]
                m.next = "IDLE"

            # ---- LOAD ------------------------------------------------------------------------------------------------
            with m.State("LOAD_COUNT"):
                m.d.comb += self.words.ready.eq(1)
                with m.If(self.words.valid):
                    m.d.sync += load_count.eq(word[:24])
                    m.next = "LOAD_DATA"
            with m.State("LOAD_DATA"):
                with m.If(load_count == 0):
                    m.next = "IDLE"
                with m.Else():
                    m.d.comb += self.words.ready.eq(1)
                    with m.If(self.words.valid):
                        m.d.sync += [load_addr.eq(load_addr + 1), load_count.eq(load_count - 1)]
                        with m.Switch(load_region):
                            with m.Case(Region.SYNAPSES):
                                for ln, lane in enumerate(lanes):
                                    with m.If((load_addr >= ln * D) & (load_addr < (ln + 1) * D)):
                                        m.d.comb += [lane.syn.waddr.eq(load_addr - ln * D),
                                                     lane.syn.wdata.eq(word), lane.syn.we.eq(1)]
                                with m.If(load_addr >= L * D):
                                    m.d.sync += bad_load.eq(1)
                            with m.Case(Region.GROUPS):
                                for ln, lane in enumerate(lanes):
                                    lo = ln * (n_groups + 1)
                                    with m.If((load_addr >= lo) & (load_addr < lo + n_groups + 1)):
                                        m.d.comb += [lane.gptr.waddr.eq(load_addr - lo),
                                                     lane.gptr.wdata.eq(word), lane.gptr.we.eq(1)]
                                with m.If(load_addr >= L * (n_groups + 1)):
                                    m.d.sync += bad_load.eq(1)
                            with m.Case(Region.FEEDBACK):
                                with m.If(load_addr < n_rec * n_out):
                                    m.d.comb += [fb_w.addr.eq(load_addr), fb_w.data.eq(word), fb_w.en.eq(1)]
                                with m.Else():
                                    m.d.sync += bad_load.eq(1)
                            with m.Default():
                                m.d.sync += bad_load.eq(1)

            # ---- DUMP: five clocks per word (address, read, wait, register, push: the lanes register the synapse /
            # trace address; the word is registered before the output FIFO, as the weight window's) ----------------
            with m.State("DUMP_ISSUE"):
                # (registers in front of the group pointers and feedback: valid from DUMP_READ on; dump_idx holds until
                # DUMP_PUSH)
                m.d.sync += [gptr_addr.eq(dump_idx), ls_fb_addr.eq(dump_idx)]
                with m.If(dump_len == 0):
                    m.d.sync += [bad_load.eq(1), seq_dumping.eq(0)]
                    m.next = "IDLE"
                with m.Elif(load_addr >= dump_len):
                    m.d.sync += seq_dumping.eq(0)
                    m.next = "IDLE"
                with m.Else():
                    m.next = "DUMP_READ"
            with m.State("DUMP_READ"):
                m.next = "DUMP_WAIT"
            # (the synapse and trace memories' words arrive three clocks after the address: their block RAMs'
            # outputs are registered, lane.BankedRAM(out_reg=True))
            with m.State("DUMP_WAIT"):
                # (the group pointers' block RAM word registered here first: its output through the lanes' and
                # regions' choice into win_q was the nmnist ECP5 build's longest path, 5.50 ns short of 10 ns)
                for ln, lane in enumerate(lanes):
                    m.d.sync += dump_gptr[ln].eq(lane.gptr.rdata)
                m.d.sync += dump_fb.eq(fb_data)  # (likewise the feedback memory's: 2.87 ns short)
                m.next = "DUMP_REG"
            with m.State("DUMP_REG"):
                with m.Switch(load_region):
                    for region, port in ((Region.SYNAPSES, "syn"), (Region.TRACES, "eb"), (Region.GROUPS, "gptr")):
                        with m.Case(region):
                            for ln, lane in enumerate(lanes):
                                with m.If(dump_lane == ln):
                                    word = dump_gptr[ln] if port == "gptr" else getattr(lane, port).rdata
                                    m.d.sync += win_q.eq(word)
                    with m.Case(Region.FEEDBACK):
                        m.d.sync += win_q.eq(dump_fb)
                m.next = "DUMP_PUSH"
            with m.State("DUMP_PUSH"):
                with m.If(ofifo_room):
                    m.d.comb += [ofifo.w_data.eq(Cat(win_q, load_addr == dump_len - 1)), ofifo.w_en.eq(1)]
                    m.d.sync += load_addr.eq(load_addr + 1)
                    with m.If(dump_idx == dump_per_lane - 1):
                        m.d.sync += [dump_idx.eq(0), dump_lane.eq(dump_lane + 1)]
                    with m.Else():
                        m.d.sync += dump_idx.eq(dump_idx + 1)
                    m.next = "DUMP_ISSUE"

            # ---- a step begins -----------------------------------------------------------------------------------
            with m.State("START"):
                count("cycles_busy")
                m.d.comb += self.busy.eq(1)
                new_step = Mux(first_step, 0, step + 1)  # (its compares with 2: nx_*, registered in IDLE)
                m.d.comb += spikes.swap.eq(1)
                m.d.sync += pf_idx.eq(0)
                m.d.sync += [step.eq(new_step), step_mc.eq(new_step - cutoff), first_step.eq(0),
                             force_now.eq(force_next),
                             force_next.eq(0), eta_m.eq(Mux(learn_next, self.eta_mantissa, 0)),
                             eta_s.eq(self.eta_shift), any_err_acc.eq(0), ls_fb_addr.eq(0)]
                # targets and window: engines/base.Timeline for one-hot tasks
                new_tau = nx_tau
                with m.If(nx_ge2):
                    with m.If(nx_gt2):
                        m.d.sync += tau.eq(new_tau)
                    starts = nx_eq2 | (new_tau == 0)
                    win_on = Mux(nx_eq2, 0, new_tau) == T - LW
                    with m.If(starts):
                        with m.If(pending_sample):
                            m.d.sync += [label.eq(pending_label), have_target.eq(1), pending_sample.eq(0),
                                         sample_active.eq(1), window.eq(1 if LW == T else 0)]
                        with m.Else():
                            m.d.sync += sample_active.eq(0)
                    with m.Elif(win_on & sample_active):
                        m.d.sync += window.eq(1)
                    m.d.sync += last_of_sample.eq(Mux(nx_eq2, 0, new_tau) == T - 1)
                count("steps")
                count("recurrent_updates", n_rec)
                count("readout_updates", n_out)
                count("history_writes", n_rec)
                m.next = "LS"

            # ---- learning signals of entry t-2 -----------------------------------------------------------------------
            with m.State("LS"):
                count("cycles_busy")
                m.d.comb += self.busy.eq(1)
                m.d.sync += [ls_j.eq(0), ls_k.eq(0), ls_acc.eq(0), ls_fb_addr.eq(1)]
                with m.If((step >= 2) & any_err):
                    count("learning_signal_writes", n_rec * n_out)
                    m.next = "LS_MAC"
                with m.Else():
                    m.next = "COMPLETE"
            with m.State("LS_MAC"):
                count("cycles_busy")
                # three stages: B_jk (B is row-major, j * n_out + k: a running address, read a clock ahead) and err_k
                # registered, their product registered, the accumulation
                m.d.comb += self.busy.eq(1)
                # err_k chosen among the n_out with the address and registered beside the feedback word (the
                # multiplexer on k in front of the multiplier, behind the feedback block RAM, made a long path); the
                # feedback word registered before the multiplier (the block RAM's output into it was the longest
                # path, seed 3: 53.45 MHz, 18.71 ns): its address is presented a clock ahead (ls_fb_addr, above)
                ls_err = Signal(S_E)
                ls_b = Signal(S_B.width)
                reading, adding = Signal(name="reading"), Signal(name="adding")
                ls_prod = Signal(signed(S_B.width + S_E.width))
                m.d.sync += [ls_err.eq(err_last[ls_k]), ls_b.eq(fb_data), reading.eq(ls_k < n_out),
                             adding.eq(reading), ls_prod.eq(ls_b.as_signed() * ls_err)]
                with m.If(adding):
                    m.d.sync += ls_acc.eq(ls_acc + ls_prod)
                with m.If(ls_k < n_out):
                    m.d.sync += ls_k.eq(ls_k + 1)
                with m.If(ls_k + 1 < n_out):
                    m.d.sync += ls_fb_addr.eq(ls_fb_addr + 1)
                with m.Elif(~reading & ~adding):
                    m.next = "LS_READ"
            # the history entry read back and registered before the add (a block RAM's output, far across the die,
            # into an add, a saturation and the flags was the nmnist ECP5 build's longest path)
            with m.State("LS_READ"):
                count("cycles_busy")
                m.d.comb += self.busy.eq(1)
                for ln, lane in enumerate(lanes):
                    with m.If(ls_lane == ln):
                        m.d.sync += ls_old.eq(lane.hist.rdata)
                m.d.sync += ls_add.eq(round_shift(ls_acc, to_l))
                m.next = "LS_WRITE"
            # the entry's new word registered here and written in the next clock (below, after the FSM): the add and
            # saturation behind the state's decode and the history write multiplexer, into the write registers of
            # every history bank, were the nmnist ECP5 build's longest path. The next clock is LS_MAC (the next
            # neuron's entry, another address) or COMPLETE: nothing reads or writes the history there
            with m.State("LS_WRITE"):
                count("cycles_busy")
                m.d.comb += self.busy.eq(1)
                total = ls_total
                saturated("learning_signal", sat_flag(total, f["learning_signal"].min_int,
                                                      f["learning_signal"].max_int))
                m.d.sync += [ls_wv.eq(1), ls_wlane.eq(ls_lane), ls_waddr.eq(ls_hist_addr),
                             ls_wdata.eq(Cat(ls_old[:S_PSI.width],
                                             saturate(total, f["learning_signal"].min_int,
                                                      f["learning_signal"].max_int, S_L)))]
                with m.If(ls_j + 1 < n_rec):
                    m.d.sync += [ls_j.eq(ls_j + 1), ls_k.eq(0), ls_acc.eq(0), ls_fb_addr.eq(ls_fb_addr + 1)]
                    m.next = "LS_MAC"
                with m.Else():
                    m.next = "COMPLETE"

            # ---- completions: head of the queue spiked at t - cutoff -------------------------------------------------
            # the queue's head (a block RAM's word, valid: the head last moved clocks ago) compared with the due step
            # here and registered for COMPLETE_HEAD: the block RAM's output through the compare into the pop, the
            # queue's count and the state was the nmnist ECP5 build's longest path (seed 3: 56.30 MHz, 17.76 ns)
            with m.State("COMPLETE"):
                count("cycles_busy")
                m.d.comb += self.busy.eq(1)
                m.d.sync += [head_due.eq(completions.head_step == step_mc[:STEP_LOW]),
                             head_src_q.eq(completions.head_src)]
                with m.If(completions.empty):
                    m.d.sync += lptr.eq(0)
                    m.next = "DELIVER"
                with m.Else():
                    m.next = "COMPLETE_HEAD"
            with m.State("COMPLETE_HEAD"):
                count("cycles_busy")
                m.d.comb += self.busy.eq(1)
                with m.If(head_due):
                    m.d.comb += completions.pop.eq(1)
                    m.d.sync += [entry_src.eq(head_src_q),
                                 g_cur.eq(head_src_q << 1), gptr_addr.eq(head_src_q << 1), g_complete.eq(1),
                                 g_pstep.eq(step_mc)]
                    m.next = "GROUP"
                with m.Else():
                    m.d.sync += lptr.eq(0)
                    m.next = "DELIVER"

            # ---- deliveries: the list of step t-1 --------------------------------------------------------------------
            with m.State("DELIVER"):
                count("cycles_busy")
                m.d.comb += self.busy.eq(1)
                with m.If(lptr < spikes.count):
                    m.next = "DELIVER_ENTRY"
                with m.Else():
                    m.d.sync += nj.eq(0)
                    m.next = "NEURON"
            with m.State("DELIVER_ENTRY"):
                count("cycles_busy")
                m.d.comb += self.busy.eq(1)
                src = pf_src
                m.d.sync += [entry_src.eq(src), g_cur.eq(src << 1), gptr_addr.eq(src << 1), g_complete.eq(0),
                             pf_idx.eq(lptr + 1)]
                count("input_spikes", 1, src < n_in)
                m.next = "GROUP"

            # ---- one group: read state and lane ranges, decide, pass(es), write state ----------------------------
            with m.State("GROUP"):
                count("cycles_busy")
                m.d.comb += self.busy.eq(1)
                m.d.sync += gptr_addr.eq(g_cur + 1)  # (GROUP_PTR's; GROUP's is g_cur, loaded with it)
                m.next = "GROUP_PTR"
            with m.State("GROUP_PTR"):
                count("cycles_busy")
                m.d.comb += self.busy.eq(1)
                for ln, lane in enumerate(lanes):
                    m.d.sync += ga[ln].eq(lane.gptr.rdata)
                m.next = "GROUP_LEN"
            # the lanes' group ends registered straight from the pointer memory's block RAMs; the lengths, whether
            # all are 0, their longest and sum from registers in GROUP_DECIDE (the lengths' max and sum behind the
            # block RAMs' outputs in one clock were a long path, then the all-zero compare: seed 2, 60.08 MHz,
            # 16.64 ns). The lengths and their max and sum are registered for the states after it
            with m.State("GROUP_LEN"):
                count("cycles_busy")
                m.d.comb += self.busy.eq(1)
                for ln, lane in enumerate(lanes):
                    m.d.sync += gb[ln].eq(lane.gptr.rdata)
                m.d.sync += gs.eq(grp_data)
                m.next = "GROUP_DECIDE"
            with m.State("GROUP_DECIDE"):
                count("cycles_busy")
                m.d.comb += self.busy.eq(1)
                for ln in range(L):
                    m.d.sync += glen[ln].eq(g_lengths[ln])
                m.d.sync += [maxlen.eq(g_maxlen), total_len.eq(g_total), iss_last.eq(g_maxlen <= 1)]
                m.d.sync += [pass_kind.eq(kind), new_tprev.eq(gs_tprev), new_done.eq(gs_done),
                             new_zbuf.eq(gs_zbuf), new_zbar.eq(gs_zbar), write_state.eq(0), it.eq(0),
                             drain.eq(0)]
                issue_restart()
                if p.adam:
                    m.d.sync += new_adam_t.eq(gs_adam_t)
                with m.If(g_empty):
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
                    m.d.sync += pass_owns.eq(1)
                    m.next = "PASS"
                with m.Elif(gs_tprev == 0):
                    m.d.sync += [pass_mode.eq(M_TX), pass_tx.eq(1), new_tprev.eq(step), write_state.eq(1)]
                    m.d.sync += pass_owns.eq(1)
                    m.next = "PASS"
                with m.Elif(gs_done):
                    m.d.sync += [decay_mm.eq(step_mc - gs_tprev), new_tprev.eq(step), new_done.eq(0),
                                 write_state.eq(1), pass_tx.eq(1)]
                    m.next = "DECAY_ROM"
                with m.Else():
                    m.d.sync += [n_steps.eq(step - gs_tprev), new_tprev.eq(step), new_done.eq(0),
                                 write_state.eq(1), pass_tx.eq(1), g_clear.eq(1)]
                    m.next = "WALK_PRE"
            # decay after a completed walk: factors alpha^m (group z_bar) and kappa^m (each e_bar), 0 beyond the ROMs.
            # The ROMs' words are registered, then the product, then rounded and chosen: ROM, multiplier, rounding
            # and choice in one clock were the nmnist ECP5 build's longest path
            with m.State("DECAY_ROM"):
                count("cycles_busy")
                m.d.comb += self.busy.eq(1)
                m.next = "DECAY_READ"
            with m.State("DECAY_READ"):
                count("cycles_busy")
                m.d.comb += self.busy.eq(1)
                mm = decay_mm
                a_size = Mux(kind, fx.decay_roms["alpha_out"].size, fx.decay_roms["alpha"].size)
                m.d.sync += [dec_alpha.eq(Mux(kind, rom_r["alpha_out"].data, rom_r["alpha"].data)),
                             dec_kappa.eq(Mux(mm < fx.decay_roms["kappa"].size, rom_r["kappa"].data, 0)),
                             dec_pos.eq(mm.as_signed() > 0), dec_in_a.eq(mm < a_size)]
                m.next = "DECAY_MUL"
            with m.State("DECAY_MUL"):
                count("cycles_busy")
                m.d.comb += self.busy.eq(1)
                m.d.sync += dec_prod.eq(gs_zbar * dec_alpha)
                m.next = "DECAY_APPLY"
            with m.State("DECAY_APPLY"):
                count("cycles_busy")
                m.d.comb += self.busy.eq(1)
                zb_dec = Mux(kind, round_shift(dec_prod, alpha[1].shift), round_shift(dec_prod, alpha[0].shift))
                m.d.sync += iss_last.eq(maxlen <= 1)
                with m.If(dec_pos):
                    m.d.sync += new_zbar.eq(Mux(dec_in_a, zb_dec, 0))
                    m.d.sync += decay_k.eq(dec_kappa)
                    m.d.sync += pass_mode.eq(Mux(kind, M_TX, M_DECAY))
                with m.Else():
                    m.d.sync += pass_mode.eq(M_TX)
                m.d.sync += pass_owns.eq(1)
                m.next = "PASS"

            # walk: z_bar of entry 0 first (from the stored z_bar and z buffer), then entries x synapses
            with m.State("WALK_PRE"):
                count("cycles_busy")
                m.d.comb += self.busy.eq(1)
                # an entry of synapses onto recurrent targets waits for each e_bar to be written back (LAT); synapses
                # onto readouts carry no trace (their gradient sums err * z_bar), but every entry lasts long enough
                # for the next z_bar to leave its two-clock pipeline and the lanes' gradient reads to see the last
                # entry's writes (WALK_MIN_CYC)
                m.d.sync += [pass_mode.eq(M_WALK), cyc.eq(Mux(maxlen > WALK_MIN_CYC, maxlen, WALK_MIN_CYC))]
                # entry 0's z_bar comes out of the same pipeline, from the stored z_bar and z buffer
                m.d.sync += [zbar_it.eq(gs_zbar), z_next.eq(gs_zbuf), zbar_wait.eq(0)]
                count("gradient_calls", total_len)
                m.next = "WALK_ZBAR0"
            with m.State("WALK_ZBAR0"):
                count("cycles_busy")
                m.d.comb += self.busy.eq(1)
                m.d.sync += [zbar_wait.eq(zbar_wait + 1), iss_last.eq(cyc <= 1)]
                with m.If(zbar_wait == ZBAR_STAGES):
                    m.d.sync += [zbar_it.eq(zbar_next), z_next.eq(1)]
                    saturated("z_bar", zbar_next_sat)
                    m.d.sync += pass_owns.eq(1)
                    m.next = "WALK"
            with m.State("WALK"):
                count("cycles_busy")
                count("cycles_walk")
                count("walk_issue_cycles", 1, iss_q < maxlen)
                m.d.comb += [self.busy.eq(1), iss_valid.eq(1),
                             iss_h.eq(gs_tprev - 1 + it), iss_zbar.eq(zbar_it)]
                # the next entry's z_bar leaves its pipeline ZBAR_STAGES clocks after the entry starts (cyc >=
                # WALK_MIN_CYC), in time for the entry's last clock
                # the history reads (total_len * n_steps per walk) counted entry by entry: the product into the
                # counters' increments was 23 endpoints 4.00 ns short of 10 ns in the nmnist ECP5 build
                count("history_reads", total_len, iss_last)
                with m.If(~iss_last):
                    m.d.sync += iss_last.eq(iss_q + 2 >= cyc)
                    issue_advance()
                with m.Else():
                    m.d.sync += iss_last.eq(cyc <= 1)
                    issue_restart()
                    with m.If(it + 1 < n_steps):
                        m.d.sync += [it.eq(it + 1), zbar_it.eq(zbar_next), z_next.eq(0)]
                        saturated("z_bar", zbar_next_sat)
                    with m.Else():
                        # z buffer after the walk: the spike that started it if the walk was one entry long
                        m.d.sync += [new_zbar.eq(zbar_it), new_zbuf.eq(n_steps == 1), drain.eq(0)]
                        m.next = "WALK_DRAIN"
            with m.State("WALK_DRAIN"):
                count("cycles_busy")
                m.d.comb += self.busy.eq(1)
                m.d.sync += drain.eq(drain + 1)
                with m.If(drain == PIPE):
                    m.d.sync += [pass_mode.eq(M_GD), drain.eq(0), iss_last.eq(maxlen <= 1)]
                    issue_restart()
                    if p.adam:
                        adam_begin()
                    count("optimizer_calls", total_len)
                    count("weight_writes", total_len, eta_m != 0)
                    m.d.sync += pass_owns.eq(1)
                    m.next = "PASS"

            # one pass over the group's synapses (gradient descent, transmission or decay), then drain
            with m.State("PASS"):
                count("cycles_busy")
                m.d.comb += [self.busy.eq(1), iss_valid.eq(1)]
                with m.If(~iss_last):
                    m.d.sync += iss_last.eq(iss_q + 2 >= maxlen)
                    issue_advance()
                with m.Else():
                    m.d.sync += drain.eq(0)
                    issue_restart()
                    m.next = "PASS_DRAIN"
                count("synaptic_events", total_len, (iss_q == 0) & (pass_tx | (pass_mode == M_TX)))
            with m.State("PASS_DRAIN"):
                count("cycles_busy")
                m.d.comb += self.busy.eq(1)
                m.d.sync += drain.eq(drain + 1)
                with m.If(drain == (Mux(pass_mode == M_GD, pass_pipe, PIPE) if p.adam else PIPE)):
                    m.d.sync += pass_owns.eq(0)
                    m.next = "GROUP_WRITE"
            with m.State("GROUP_WRITE"):
                count("cycles_busy")
                m.d.comb += self.busy.eq(1)
                with m.If(write_state):
                    m.d.comb += [grp_w.addr.eq(g_cur), grp_w.data.eq(Cat(new_tprev, new_done, new_zbuf, new_zbar,
                                                                         *adam_state)),
                                 grp_w.en.eq(1)]
                m.next = "GROUP_END"
            with m.State("GROUP_END"):
                count("cycles_busy")
                m.d.comb += self.busy.eq(1)
                with m.If(~g_cur[0]):
                    m.d.sync += [g_cur.eq(g_cur + 1), gptr_addr.eq(g_cur + 1)]
                    m.next = "GROUP"
                with m.Elif(g_complete):
                    m.next = "COMPLETE"
                with m.Else():
                    # the source joins the completion queue; next list entry
                    m.d.comb += [completions.push.valid.eq(1), completions.push.payload.src.eq(entry_src),
                                 completions.push.payload.step.eq(step[:STEP_LOW])]
                    m.d.sync += lptr.eq(lptr + 1)
                    m.next = "DELIVER"

            # ---- recurrent neurons: a 7-stage pipeline, one neuron per clock ---------------------------------------
            with m.State("NEURON"):
                count("cycles_busy")
                m.d.comb += [self.busy.eq(1), n_issue.eq(nj < n_rec)]
                m.d.sync += nj.eq(nj + 1)
                with m.If(nj == n_rec + NEURON_DRAIN):
                    m.d.sync += [rk.eq(0), ro_vin.eq(out_v[0])]
                    m.next = "READOUT_A"

            # ---- readouts, one at a time ----------------------------------------------------------------------------
            with m.State("READOUT_A"):
                count("cycles_busy")
                m.d.comb += self.busy.eq(1)
                m.d.sync += ro_p.eq(ro_vin * c["alpha_out"].mantissa)
                # (the lane registers its accumulator at rk as this clock ends, ro_x: the take zeroes it then)
                for ln, lane in enumerate(lanes):
                    with m.If(lane_of(rk) == ln):
                        m.d.comb += lane.take_out.eq(1)
                m.next = "READOUT_B"
            with m.State("READOUT_B"):
                count("cycles_busy")
                m.d.comb += self.busy.eq(1)
                xs = saturate(ro_x, f["input"].min_int, f["input"].max_int, S_X)
                saturated("input", sat_flag(ro_x, f["input"].min_int, f["input"].max_int))
                m.d.sync += ro_vsum.eq(round_shift(ro_p, c["alpha_out"].shift) + round_shift(xs, x_to_m)
                                       + mc["out_i_e"])
                m.next = "READOUT_SAT"
            # the membrane's sum saturated and floored a clock after the sum (as the recurrent neurons' stage 2a)
            with m.State("READOUT_SAT"):
                count("cycles_busy")
                m.d.comb += self.busy.eq(1)
                saturated("membrane", sat_flag(ro_vsum, f["membrane"].min_int, f["membrane"].max_int))
                # saturation to the format then the floor V_min, as one clamp to [max(lo, V_min), hi]: both compares
                # on the sum, side by side (the floor's compare behind the saturation's was 2.25 to 2.50 ns short of
                # 10 ns on every seed, ro_vsum -> ro_v, nmnist ECP5 build)
                m_lo, m_hi = f["membrane"].min_int, f["membrane"].max_int
                assert mc["out_v_min"] <= m_hi, "V_min above the membrane format"
                v2 = saturate(ro_vsum, max(m_lo, mc["out_v_min"]), m_hi, S_M)
                # (into ro_v only: the saturation, the floor and the write decode on rk into the ten membranes in one
                # clock were 70 endpoints up to 4.36 ns short of 10 ns in the nmnist ECP5 build; the membrane is
                # stored in READOUT_ERR, and nothing reads it before the next step. Whether this readout is the
                # target is decided here too, for READOUT_ERR's error)
                m.d.sync += [ro_v.eq(v2), ro_is_target.eq(have_target & (label == rk))]
                m.next = "READOUT_ERR"
            # the readout's error a clock after its membrane: one chain of adders per clock
            with m.State("READOUT_ERR"):
                count("cycles_busy")
                m.d.comb += self.busy.eq(1)
                m.d.sync += out_v[rk].eq(ro_v)
                y, err_full = ro_y_full, ro_err_full  # (computed outside the FSM, below its declaration)
                saturated("error", window & sat_flag(err_full, f["error"].min_int, f["error"].max_int))
                err = Mux(window, saturate(err_full, f["error"].min_int, f["error"].max_int, S_E), 0)
                m.d.sync += [ro_y.eq(y), ro_err.eq(err)]
                m.next = "READOUT_C"
            with m.State("READOUT_C"):
                count("cycles_busy")
                m.d.comb += self.busy.eq(1)
                emit = sample_active & (window | self.trace_all)
                with m.If(emit & ~ofifo_room):
                    count("cycles_stalled")
                with m.Else():
                    for ln, lane in enumerate(lanes):
                        with m.If(lane_of(rk) == ln):
                            addr = Cat(h_now, local_of(rk)[:OB]) if OPL > 1 else h_now
                            m.d.comb += [lane.err.waddr.eq(addr), lane.err.wdata.eq(ro_err),
                                         lane.err.we.eq(1)]
                    m.d.sync += [err_last[rk].eq(ro_err), any_err_acc.eq(any_err_acc | (ro_err != 0))]
                    with m.If(emit):
                        y32 = Signal(signed(32))
                        m.d.comb += [y32.eq(ro_y),
                                     ofifo.w_data.eq(Cat(y32, rk == n_out - 1)),
                                     ofifo.w_en.eq(1)]
                    with m.If(rk + 1 < n_out):
                        m.d.sync += [rk.eq(rk + 1), ro_vin.eq(out_v[rk + 1])]
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

        # ---- recurrent neurons (neuron.py), issued by the NEURON state: the input taken from the neuron's lane -------
        # issued a clock after the NEURON state counts them, from registers: the neuron's index (its count compare,
        # lane and local index) into the lane's accumulator read in one clock was the nmnist ECP5 build's longest path
        nt_issue, nt_j = Signal(name="nt_issue"), Signal(_bits(n_rec), name="nt_j")
        nt_lane, nt_local = Signal(_bits(L), name="nt_lane"), Signal(p.local_bits, name="nt_local")
        m.d.sync += [nt_issue.eq(n_issue), nt_j.eq(nj), nt_lane.eq(lane_of(nj))]
        # the local index (the accumulator's read address) loads only when a neuron issues, so that it stays a
        # register of its own beside the lane's accumulators: with one lane it equals nt_j, Yosys merged the two,
        # and the one register, placed by the neuron state memory, across the die into the accumulator LUT RAM's
        # read and on into the neurons' input register was the nmnist ECP5 build's longest path (seed 3)
        with m.If(n_issue):
            m.d.sync += nt_local.eq(local_of(nj))
        x0 = Signal(S_X)
        for ln, lane in enumerate(lanes):
            # (the lane registers its accumulators' read address from this: the take's index of the next clock)
            m.d.comb += lane.take_rec_index_next.eq(local_of(nj))
            with m.If(nt_issue & (nt_lane == ln)):
                m.d.comb += [lane.take_rec_index.eq(nt_local), lane.take_rec.eq(1), x0.eq(lane.x_rec)]
        m.d.comb += [neurons.issue.eq(nt_issue), neurons.j.eq(nt_j), neurons.j_next.eq(nj), neurons.x.eq(x0),
                     neurons.force.eq(force_now)]
        for name in ("input", "membrane", "firing_rate", "learning_signal"):
            saturated(name, getattr(neurons, f"sat_{name}"))
        # the learning signal's write of LS_WRITE (registered there): no neuron is in flight then
        with m.If(ls_wv):
            for ln, lane in enumerate(lanes):
                with m.If(ls_wlane == ln):
                    m.d.comb += [lane.hist.waddr.eq(ls_waddr), lane.hist.wdata.eq(ls_wdata), lane.hist.we.eq(1)]
        # history entry t of the neuron, and its spike joins the list of step t
        nj5 = neurons.out_j
        with m.If(neurons.valid):
            for ln, lane in enumerate(lanes):
                with m.If(lane_of(nj5) == ln):
                    addr = Cat(h_now, local_of(nj5)[:RB]) if RPL > 1 else h_now
                    m.d.comb += [lane.hist.waddr.eq(addr), lane.hist.wdata.eq(Cat(neurons.psi, neurons.lam)),
                                 lane.hist.we.eq(1)]
            with m.If(neurons.spike):
                m.d.comb += [append_req.eq(1), append_src.eq(n_in + nj5)]
        count("recurrent_spikes", 1, neurons.spike)

        # ---- combine counter increments and saturation raises ---------------------------------------------------
        # Increments and raises are registered once before they land: the conditions come from deep in the
        # pipelines, and the sums and ORs behind them were the longest paths. Counters and flags lag one clock,
        # which no reader sees (the host reads them over AXI, many clocks after the step that raised them).
        counters = [Signal(64, name=f"ctr_{name}") for name in COUNTERS]
        for name, ctr in zip(COUNTERS, counters):
            total = Const(0, 32)
            for sig in incr[name]:
                total = total + sig
            total_r = Signal(32, name=f"inc_{name}")
            m.d.sync += [total_r.eq(total), ctr.eq(ctr + total_r)]
        for i, ctr in enumerate(counters):
            m.d.comb += self.counters[i].eq(ctr)
        raise_bits = Signal(self.n_flags)
        for bit in range(self.n_flags):
            sources = [sig for b, sig in sat_raise if b == bit]
            if sources:
                any_raise = sources[0]
                for sig in sources[1:]:
                    any_raise = any_raise | sig
                m.d.comb += raise_bits[bit].eq(any_raise)
        saturation, raise_r = Signal(self.n_flags, name="saturation"), Signal(self.n_flags, name="raise_r")
        m.d.sync += [raise_r.eq(raise_bits), saturation.eq((saturation | raise_r) & ~self.clear_saturation)]
        m.d.comb += self.saturation.eq(saturation)
        # last in the module: a clear wins over an error raised in the same cycle (the host reads LAST_ERROR first)
        for bit, flag in enumerate((bad_word, bad_channel, overflow, bad_load)):
            with m.If(self.clear_errors[bit]):
                m.d.sync += flag.eq(0)
        return m
