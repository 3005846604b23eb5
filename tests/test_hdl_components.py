"""Each gateware component alone in Amaranth's simulator, against a small Python model of what it must do.

The models are written from the hardware contract's parameters (the fixed engine's ``ip`` array), the way
``fixed_kernels`` states the arithmetic, not from the Amaranth code: a component that drifts from the contract
fails here before it fails the whole-accelerator tests.
"""

from __future__ import annotations

import random
from collections import deque

import numpy as np
import pytest
from amaranth.sim import Simulator

from golden_model.config import load_preset
from golden_model.engines import fixed_kernels as K
from golden_model.engines.fixed import FixedEngine
from golden_model.hw_contract import shift_round_nearest_even as rr
from golden_model.network import build_network
from hdl.lane import LAT, PIPE, PassMode, UpdateLane
from hdl.neuron import NEURON_STAGES, RecurrentNeurons
from hdl.params import HardwareParams
from hdl.spikes import CompletionQueue, SpikeLists


def _run(dut, bench):
    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()


@pytest.mark.parametrize("out_reg, gated", [(False, False), (True, False), (True, True)])
def test_banked_ram_reads_every_bank_back_to_back(out_reg, gated):
    """Three banks of 16 words (the last one short), two slices: random words written through the registered write
    port, then read one address per clock in a random order: each word arrives two clocks after its address, three
    with out_reg (the slices' plain output registers and the bank chosen behind them, or, gated, registers holding 0
    unless their bank was read and an OR behind them)."""
    from amaranth.hdl import Module

    from hdl.lane import BankedRAM

    m = Module()
    ram = BankedRAM(m, "t", 12, 40, bank_log2=4, slices=2, out_reg=out_reg, gated=gated)
    rng = random.Random(7)
    words = [rng.randrange(1 << 12) for _ in range(40)]
    order = [rng.randrange(40) for _ in range(120)]
    lat = 3 if out_reg else 2

    async def bench(ctx):
        for a, w in enumerate(words):
            ctx.set(ram.w.addr, a)
            ctx.set(ram.w.data, w)
            ctx.set(ram.w.en, 1)
            await ctx.tick()
        ctx.set(ram.w.en, 0)
        await ctx.tick().repeat(2)  # the last write lands
        got = []
        for i in range(len(order) + lat):
            if i < len(order):
                ctx.set(ram.raddr, order[i])
            if i >= lat:
                got.append(ctx.get(ram.data))
            await ctx.tick()
        assert got == [words[a] for a in order]

    _run(m, bench)


def test_registered_stream_passes_every_word_in_order_at_full_rate():
    """RegisteredStream between a source that offers a word on 70 % of clocks and a sink ready on 60 %: every word
    comes out once, in order; `i.ready` is low only while a word waits in the second register; with both sides
    always willing it passes one word per clock."""
    from hdl.top import RegisteredStream

    dut = RegisteredStream(16)
    rng = random.Random(3)
    sent = [rng.randrange(1 << 16) for _ in range(300)]

    async def bench(ctx):
        got, i, stalls = [], 0, 0
        for clock in range(2000):
            offer = i < len(sent) and (clock > 1500 or rng.random() < 0.7)
            take = clock > 1500 or rng.random() < 0.6
            ctx.set(dut.i.valid, offer)
            ctx.set(dut.i.payload, sent[i] if offer else 0)
            ctx.set(dut.o.ready, take)
            if ctx.get(dut.o.valid) and take:
                got.append(ctx.get(dut.o.payload))
            if offer and ctx.get(dut.i.ready):
                i += 1
            stalls += not ctx.get(dut.i.ready)
            assert ctx.get(dut.pending) == (ctx.get(dut.o.valid) or not ctx.get(dut.i.ready))
            await ctx.tick()
        assert got == sent and stalls > 0
        # both sides always willing: a word a clock
        burst = list(range(100, 140))
        ctx.set(dut.o.ready, 1)
        out = []
        for clock in range(len(burst) + 2):
            ctx.set(dut.i.valid, clock < len(burst))
            ctx.set(dut.i.payload, burst[clock] if clock < len(burst) else 0)
            if clock < len(burst):
                assert ctx.get(dut.i.ready)
            if ctx.get(dut.o.valid):
                out.append(ctx.get(dut.o.payload))
            await ctx.tick()
        assert out == burst

    _run(dut, bench)


def _clip(x, lo, hi):
    return max(lo, min(hi, x))


def _params(overrides=(), lanes=1):
    config = load_preset("tiny", list(overrides))
    network = build_network(config)
    p = HardwareParams.from_config(config, network, lanes=lanes)
    engine = FixedEngine(config)
    engine.load(network)
    return p, engine.ip


# ---- spike lists and completion queue -------------------------------------------------------------------------------
def test_spike_lists_deliver_last_steps_spikes_and_flag_overflow():
    depth = 6
    dut = SpikeLists(src_bits=8, depth=depth)
    rng = random.Random(3)
    steps = [[rng.randrange(200) for _ in range(rng.randrange(0, 9))] for _ in range(12)]

    async def bench(ctx):
        filled = []
        for spikes in steps:
            ctx.set(dut.swap, 1)  # start of a step: what was filled is delivered now
            await ctx.tick()
            ctx.set(dut.swap, 0)
            delivered = []
            n = ctx.get(dut.count)
            for k in range(n + 2):  # an index per clock; its word arrives two clocks later
                if k < n:
                    ctx.set(dut.read_index, k)
                if k >= 2:
                    delivered.append(ctx.get(dut.read_data))
                await ctx.tick()
            assert delivered == filled[:depth]
            overflow = False
            for s in spikes:
                ctx.set(dut.append.valid, 1)
                ctx.set(dut.append.payload, s)
                overflow |= bool(ctx.get(dut.overflow))
                await ctx.tick()
            ctx.set(dut.append.valid, 0)
            assert overflow == (len(spikes) > depth)
            filled = spikes

    _run(dut, bench)


@pytest.mark.parametrize("step_bits", [32, 6])
def test_completion_queue_is_a_fifo_that_drops_and_flags_when_full(step_bits):
    """With step_bits < 32 the queue keeps the steps' low bits (the core's entries are never older than the
    cutoff, so they tell them apart)."""
    depth = 4
    dut = CompletionQueue(src_bits=8, depth=depth, step_bits=step_bits)
    rng = random.Random(5)

    async def bench(ctx):
        model = deque()
        for _ in range(300):
            if rng.random() < 0.55:
                src, step = rng.randrange(256), rng.randrange(1 << 20)
                ctx.set(dut.push.valid, 1)
                ctx.set(dut.push.payload.src, src)
                ctx.set(dut.push.payload.step, step)
                assert ctx.get(dut.overflow) == (len(model) == depth)
                if len(model) < depth:
                    model.append((src, step & ((1 << step_bits) - 1)))
                await ctx.tick()
                ctx.set(dut.push.valid, 0)
            await ctx.tick().repeat(3)  # the head shows three clocks after a push into an empty queue
            assert ctx.get(dut.empty) == (not model)
            if model:
                assert (ctx.get(dut.head_src), ctx.get(dut.head_step)) == model[0]
                if rng.random() < 0.5:
                    ctx.set(dut.pop, 1)
                    await ctx.tick()
                    ctx.set(dut.pop, 0)
                    model.popleft()

    _run(dut, bench)


# ---- one lane of the update pipeline --------------------------------------------------------------------------------
def _lane_model(ip, kind, weights, targets, e_bar, hist, err, zbars, h0, eta):
    """A walk over len(zbars) entries from h0, then gradient descent and transmission (fixed_kernels.group_walk,
    gradient_step)."""
    n = len(weights)
    e_bar, grad = list(e_bar), [0] * n
    for it, z in enumerate(zbars):
        h = h0 + it
        for q in range(n):
            if kind == 0:
                psi, lam = hist[(targets[q], h)]
                e_bar[q] = min(rr(ip[K.I_KAPPA_M] * e_bar[q], ip[K.I_KAPPA_S]) + rr(psi * z, ip[K.I_S_F] + ip[K.I_Z_F]
                                                                                   - ip[K.I_EB_F]), ip[K.I_EB_MAX])
                term = (lam * e_bar[q]) << (ip[K.I_G_F] - ip[K.I_L_F] - ip[K.I_EB_F])
            else:
                term = (err[(targets[q], h)] * z) << (ip[K.I_G_F] - ip[K.I_E_F] - ip[K.I_Z_F])
            grad[q] = _clip(grad[q] + term, ip[K.I_G_MIN], ip[K.I_G_MAX])
    eta_m, eta_s = eta
    new_w = []
    for q in range(n):
        w = _clip(weights[q] - rr(eta_m * grad[q], eta_s), ip[K.I_W_MIN], ip[K.I_W_MAX])
        new_w.append(_clip(w, ip[K.I_WCLAMP_MIN], ip[K.I_WCLAMP_MAX]))
    x = {}
    for q in range(n):
        x[targets[q]] = x.get(targets[q], 0) + new_w[q]
    return new_w, e_bar, x


@pytest.mark.parametrize("kind,n", [(0, 1), (0, 2), (0, 3), (0, 4), (0, 5), (0, 6), (0, 7), (0, 8), (1, 1), (1, 3)])
def test_lane_walk_then_gradient_descent_matches_the_contract(kind, n):
    """Short groups too: an entry of n < LAT synapses takes LAT clocks and the e_bar of the previous entry is
    forwarded from the pipeline (n = 3 to 7 exercise every forwarding distance, n = 8 the first read from memory)."""
    p, ip = _params()
    dut = UpdateLane(p)
    rng = random.Random(100 * kind + n)
    f = p.fx.formats
    H, WB = p.hist_len, p.weight_bits
    n_targets = p.rec_per_lane if kind == 0 else p.out_per_lane
    base = 5
    weights = [rng.randrange(f["weight"].min_int // 4, f["weight"].max_int // 4) for _ in range(n)]
    targets = [rng.randrange(n_targets) for _ in range(n)]
    e_bar = [rng.randrange(0, f["e_bar"].max_int // 8) for _ in range(n)]
    h0, n_steps = H - 2, 5  # the walk wraps around the ring
    entries = [(h0 + i) % H for i in range(n_steps)]
    hist = {(t, h): (rng.randrange(0, 1 << f["surrogate"].frac_bits),
                     rng.randrange(f["learning_signal"].min_int // 64, f["learning_signal"].max_int // 64))
            for t in range(n_targets) for h in range(H)}
    err = {(t, h): rng.randrange(f["error"].min_int // 4, f["error"].max_int // 4)
           for t in range(n_targets) for h in range(H)}
    zbars = [rng.randrange(0, 4 << f["z_bar"].frac_bits) for _ in range(n_steps)]
    eta = p.fx.eta_constant(1e-2)  # large enough that every weight moves
    want_w, want_eb, want_x = _lane_model(ip, kind, weights, targets, e_bar,
                                          {(t, h0 + i): hist[(t, e)] for t in range(n_targets)
                                           for i, e in enumerate(entries)},
                                          {(t, h0 + i): err[(t, e)] for t in range(n_targets)
                                           for i, e in enumerate(entries)}, zbars, h0, eta)
    ps, lw = f["surrogate"].bits, f["learning_signal"].bits

    async def write(ctx, port, addr, value):
        ctx.set(port.waddr, addr)
        ctx.set(port.wdata, value)
        ctx.set(port.we, 1)
        await ctx.tick()
        ctx.set(port.we, 0)

    async def bench(ctx):
        for q in range(n):
            await write(ctx, dut.syn, base + q, (weights[q] & ((1 << WB) - 1)) | (targets[q] << WB))
            await write(ctx, dut.eb, base + q, e_bar[q])
        for (t, h), (psi, lam) in hist.items():
            await write(ctx, dut.hist, t * H + h, psi | ((lam & ((1 << lw) - 1)) << ps))
        for (t, h), e in err.items():
            await write(ctx, dut.err, t * H + h, e & ((1 << f["error"].bits) - 1))
        ctx.set(dut.kind, kind)
        ctx.set(dut.group_len, n)
        ctx.set(dut.owns, 1)
        ctx.set(dut.clear_gradients, 1)
        await ctx.tick()
        ctx.set(dut.clear_gradients, 0)
        # the walk: entries x synapses, at least LAT clocks per entry (the sequencer's WALK_MIN_CYC)
        ctx.set(dut.mode, PassMode.WALK)
        cyc = max(n, LAT)
        for i, h in enumerate(entries):
            for q in range(cyc):
                ctx.set(dut.issue_valid, 1)
                ctx.set(dut.issue_q, q)
                ctx.set(dut.issue_a, base + q)  # the group's start + q (the sequencer keeps it)
                ctx.set(dut.issue_h, h)
                ctx.set(dut.issue_zbar, zbars[i])
                await ctx.tick()
        ctx.set(dut.issue_valid, 0)
        await ctx.tick().repeat(PIPE)
        # gradient descent, transmitting the new weights
        ctx.set(dut.mode, PassMode.GD)
        ctx.set(dut.transmit, 1)
        ctx.set(dut.eta_mantissa, eta[0])
        ctx.set(dut.eta_shift, eta[1])
        for q in range(n):
            ctx.set(dut.issue_valid, 1)
            ctx.set(dut.issue_q, q)
            ctx.set(dut.issue_a, base + q)
            await ctx.tick()
        ctx.set(dut.issue_valid, 0)
        await ctx.tick().repeat(PIPE)
        ctx.set(dut.owns, 0)
        got_w, got_eb = [], []
        for q in range(n):
            ctx.set(dut.syn.raddr, base + q)
            # the lane registers the address, the memory reads, its output is registered (BankedRAM out_reg)
            await ctx.tick().repeat(3)
            word = ctx.get(dut.syn.rdata)
            w = word & ((1 << WB) - 1)
            got_w.append(w - (1 << WB) if w >> (WB - 1) else w)
            got_eb.append(ctx.get(dut.eb.rdata))
        assert got_w == want_w
        if kind == 0:
            assert got_eb == want_eb
        take, index, value = (dut.take_rec, dut.take_rec_index, dut.x_rec) if kind == 0 else \
            (dut.take_out, dut.take_out_index, dut.x_out)
        for t, x in want_x.items():
            if kind == 0:  # the lane registers its accumulators' read address a clock ahead
                ctx.set(dut.take_rec_index_next, t)
                await ctx.tick()
            ctx.set(index, t)
            if kind == 1:  # the lane registers the readout accumulator at the index every clock
                await ctx.tick()
            assert ctx.get(value) == x
            ctx.set(take, 1)
            await ctx.tick()
            ctx.set(take, 0)
            if kind == 1:
                await ctx.tick()
            assert ctx.get(value) == 0  # taken: zeroed for the next step

    _run(dut, bench)


# ---- recurrent neurons ----------------------------------------------------------------------------------------------
def _neuron_model(ip, state, x_in, force, rom):
    """One step of one neuron (fixed_kernels.simulate, recurrent loop): returns (state', psi, Lambda, spike)."""
    v, ref, fav = state
    ref = ref - 1 if ref > 0 else 0
    x = _clip(x_in, ip[K.I_X_MIN], ip[K.I_X_MAX])
    v = _clip(rr(ip[K.I_ALPHA_M] * v, ip[K.I_ALPHA_S]) + rr(x, ip[K.I_W_F] - ip[K.I_M_F]) + ip[K.I_I_E],
              ip[K.I_M_MIN], ip[K.I_M_MAX])
    v = max(v, ip[K.I_V_MIN])
    if force and v < ip[K.I_V_TH]:
        v = ip[K.I_V_TH]
    psi = 0
    if ref == 0:
        d = abs(v - ip[K.I_V_TH])
        if ip[K.I_SG_KIND] == 0:
            psi = max(0, ip[K.I_SG_HEIGHT] - rr(ip[K.I_SG_SLOPE_M] * d, ip[K.I_SG_SLOPE_S]))
        else:
            idx = d >> ip[K.I_SG_SHIFT]
            psi = int(rom[idx]) if idx < rom.size else 0
    z = int(v >= ip[K.I_V_TH] and ref == 0)
    if z:
        v -= ip[K.I_V_TH]
        ref = ip[K.I_REF_COUNTS]
    fav = _clip(rr(ip[K.I_KREG_M] * fav, ip[K.I_KREG_S]) + z * ip[K.I_F_SPIKE], 0, ip[K.I_F_MAX])
    lam = _clip(rr(ip[K.I_CFR_M] * (fav - ip[K.I_F_TARGET]), ip[K.I_CFR_S] + ip[K.I_F_F] - ip[K.I_L_F]),
                ip[K.I_L_MIN], ip[K.I_L_MAX])
    return (v, ref, fav), psi, lam, z


@pytest.mark.parametrize("surrogate", ["piecewise_linear", "exponential"])
def test_recurrent_neurons_step_like_the_contract(surrogate):
    p, ip = _params([f"recurrent.surrogate_gradient_function={surrogate}", "recurrent.t_ref=2.0"])
    dut = RecurrentNeurons(p)
    rng = np.random.default_rng(7)
    n = p.n_rec
    one = 1 << p.fx.formats["weight"].frac_bits
    steps = [(rng.integers(-one // 2, 3 * one, n), False) for _ in range(5)] + [(np.zeros(n, np.int64), True)]
    # inputs far beyond the membrane format both ways (its saturation and the floor), then back
    big = 1 << (p.shape("input").width - 3)
    steps += [(rng.choice([-big, big, 0, one], n), False) for _ in range(3)] + [(rng.choice([-big, 0], n), True)]
    rom = p.fx.surrogate_rom.get("table", np.zeros(0))
    states = [(p.fx.membrane_consts["v0"], 0, 0)] * n

    async def bench(ctx):
        for x, force in steps:
            ctx.set(dut.force, int(force))
            out = []
            for j in range(n + NEURON_STAGES):
                ctx.set(dut.issue, int(j < n))
                ctx.set(dut.j, j if j < n else 0)
                ctx.set(dut.j_next, j + 1 if j + 1 < n else 0)
                ctx.set(dut.x, int(x[j]) if j < n else 0)
                if ctx.get(dut.valid):
                    out.append((ctx.get(dut.out_j), ctx.get(dut.psi), ctx.get(dut.lam), ctx.get(dut.spike)))
                await ctx.tick()
            ctx.set(dut.issue, 0)
            want = []
            for j in range(n):
                states[j], psi, lam, z = _neuron_model(ip, states[j], int(x[j]), force, rom)
                want.append((j, psi, lam, z))
            assert out == want

    _run(dut, bench)


@pytest.mark.parametrize("height, mantissa, shift", [(32768, 111411, 3), (100, 7, 2), (100, -7, 2), (5, 3, 0),
                                                     (0, 5, 1), (-4, -3, 1), (1, 0, 4), (2, 1, -2)])
def test_surrogate_positive_edge_is_where_psi_turns_zero(height, mantissa, shift):
    """N2b decides psi > 0 by comparing the argument with one constant: for every argument of a small width, the
    compare says what the rounding and subtraction it replaces say."""
    from hdl.neuron import surrogate_positive_edge

    width = 12
    first, edge = surrogate_positive_edge(width, height, mantissa, shift)
    for d in range(1 << width):
        want = height - rr(d * mantissa, shift) > 0
        got = first if edge is None else (d < edge) == first
        assert got == want, (d, edge)


@pytest.mark.parametrize("overrides, words", [
    (["fixed.weight_rounding=stochastic"], "stochastic rounding"),
    (["optimizer.type=adam", "fixed.weight_rounding=stochastic"], "the Adam build rounds to nearest"),
    (["optimizer.type=adam", "optimizer.optimize_each_step=true"], "optimizes once per walk")])
def test_builds_refuse_what_the_gateware_does_not_compute(overrides, words):
    """Stochastic rounding is a fixed-engine study option, not gateware, and Adam is built once per walk only: a
    build says so."""
    with pytest.raises(ValueError, match=words):
        HardwareParams.from_config(load_preset("tiny").with_overrides(overrides))
    assert HardwareParams.from_config(load_preset("tiny", ["optimizer.type=adam"])).adam
    assert not HardwareParams.from_config(load_preset("tiny")).adam


# ---- Adam (the Adam build's optimizer pass) -----------------------------------------------------------------------
def test_adam_unit_equals_the_contract_step_for_step():
    """AdamUnit, one synapse per clock, against hw_contract.AdamContract.synapse_step: weights, moments and the
    saturation flags, over gradients of every magnitude, zero state (the eps floor) and saturating inputs."""
    from hdl.adam import ADAM_LAT, AdamUnit

    p, _ = _params(["optimizer.type=adam", "optimizer.eta=1e-3"])
    ad, f = p.fx.adam, p.fx.formats
    fm, fv, fw, fg = f["adam_m"], f["adam_v"], f["weight"], f["gradient"]
    eta_m, eta_s = p.fx.eta_constant(3e-3)
    rng = random.Random(5)
    clamp = (max(fw.min_int, int(fw.quantize(p.config.optimizer.Wmin)[0])),
             min(fw.max_int, int(fw.quantize(p.config.optimizer.Wmax)[0])))
    cases = []
    for i in range(300):
        g = rng.randrange(fg.min_int, fg.max_int) >> rng.randrange(0, 46)
        m = 0 if i < 20 else rng.randrange(fm.min_int, fm.max_int) >> rng.randrange(0, 18)
        s = 0 if i < 20 else rng.randrange(0, fv.max_int) >> rng.randrange(0, 18)
        if i < 10:
            g = 0
        if i % 37 == 0:
            g = fg.max_int  # beyond m's range
        w = rng.randrange(fw.min_int, fw.max_int)
        t = rng.randrange(0, ad.bias_rom.size)
        cases.append((g, w, m, s, ad.step_size(eta_m, t)))
    want = [ad.synapse_step(g, m, s, w, a, eta_s, clamp) for g, w, m, s, a in cases]
    assert any("adam_m" in x[3] for x in want) and any(x[0] != c[1] for x, c in zip(want, cases))
    dut = AdamUnit(p)

    async def bench(ctx):
        ctx.set(dut.eta_shift, eta_s)
        got = []
        for clock in range(len(cases) + ADAM_LAT + 2):
            if clock < len(cases):
                g, w, m, s, a = cases[clock]
                ctx.set(dut.valid, 1)
                ctx.set(dut.g, g)
                ctx.set(dut.w, w)
                ctx.set(dut.m, m)
                ctx.set(dut.sigma, s)
                ctx.set(dut.step, a)
            else:
                ctx.set(dut.valid, 0)
            if ctx.get(dut.out_valid):
                flags = {name for name, sig in (("adam_m", dut.sat_m), ("adam_v", dut.sat_v),
                                                ("weight", dut.sat_weight)) if ctx.get(sig)}
                got.append((ctx.get(dut.out_w), ctx.get(dut.out_m), ctx.get(dut.out_sigma), flags))
                assert clock - len(got) + 1 == ADAM_LAT
            await ctx.tick()
        assert len(got) == len(cases)
        for k, (g_, w_) in enumerate(zip(got, want)):
            assert g_ == w_, (k, cases[k])

    _run(dut, bench)
