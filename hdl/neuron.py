"""The recurrent neurons: ``eprop_iaf``'s update in the contract's integers, one neuron per clock.

``fixed_kernels.simulate``'s recurrent-neuron loop as an 8-stage pipeline over the neuron state memory (membrane,
refractory count, firing-rate average), issued by the sequencer once per step for j = 0 .. n_rec - 1:

  0  issue: the state read (at address registers loaded with j a clock ahead, from j_next); the neuron's summed
     input x (taken from its lane's accumulator)
  1  state arrives (registered): refractory count down, alpha * v, kappa_reg * f_av; x saturated to the input format
  2  round(alpha v) + round(x) + I_e
  2a v = that saturated, floored at V_min (the final update: at least V_th)
  3  spike when v >= V_th and not refractory; the surrogate argument |v - V_th| (computed at 2a) times the slope
     (a stage of its own: with the membrane sum before it, it was the design's longest path), and beside it
     whether psi will be above 0 (a compare of the argument with a constant)
  4  reset by subtraction on a spike; the surrogate's product rounded (or the ROM's word); f_av updated, and
     f_av - f_target beside it
  5  the firing-rate term (f_av - f_target) * c_fr; psi = height - the rounded product, or 0
  6  Lambda = round(that) saturated; the state is written back (landing a clock later); out: (j, psi, Lambda,
     spike) for history entry t

Everything the arithmetic needs (constants, shifts, ROM) comes from ``golden_model.hw_contract`` through
``HardwareParams``.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from golden_model.hw_contract import shift_round_nearest_even

from .arith import round_shift, sat_flag, saturate
from .memory import SlicedRAM
from .params import HardwareParams

__all__ = ["RecurrentNeurons", "NEURON_STAGES", "surrogate_positive_edge"]

#: stages from issue to the history entry (the sequencer waits this long after the last issue)
NEURON_STAGES = 7
#: column slices of the neuron state memory, each with its own read address register
STATE_SLICES = 4


def _bits(n: int) -> int:
    return max(1, int(n).bit_length())


def surrogate_positive_edge(width: int, height: int, mantissa: int, shift: int) -> tuple[bool, int | None]:
    """Where height - round_shift(d * mantissa, shift) > 0 holds for the unsigned `width`-bit argument d. The left
    side is monotonic in d, so that set is a prefix of d's range (mantissa >= 0) or a suffix (mantissa < 0). Returns
    (holds at d = 0, the first d where it stops being so, or None if it never does); found by bisection on the
    exact integer arithmetic."""
    def holds(v):
        return height - shift_round_nearest_even(v * mantissa, shift) > 0

    top = (1 << width) - 1
    first = holds(0)
    if holds(top) == first:
        return first, None
    lo, hi = 0, top  # holds(lo) == first != holds(hi)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if holds(mid) == first else (lo, mid)
    return first, hi


def _surrogate_positive(d, height: int, mantissa: int, shift: int):
    """height - round_shift(d * mantissa, shift) > 0, as one compare of d with a constant."""
    first, edge = surrogate_positive_edge(len(d), height, mantissa, shift)
    if edge is None:
        return Const(int(first))
    return d < edge if first else d >= edge


class RecurrentNeurons(wiring.Component):
    def __init__(self, p: HardwareParams):
        self.p = p
        jb = _bits(p.n_rec)
        super().__init__({
            "issue": In(1), "j": In(jb), "x": In(p.shape("input")),
            "j_next": In(jb),  # the j of the next clock: the state memory's read address registers load it
            "force": In(1),  # the final update's step: every membrane reaches threshold
            "clear": In(1), "clear_index": In(jb),  # soft reset: state of neuron clear_index back to rest
            # stage NEURON_STAGES: history entry t of neuron out_j, and its spike
            "valid": Out(1), "out_j": Out(jb), "psi": Out(p.shape("surrogate")),
            "lam": Out(p.shape("learning_signal")), "spike": Out(1),
            "sat_input": Out(1), "sat_membrane": Out(1), "sat_firing_rate": Out(1), "sat_learning_signal": Out(1),
        })

    def elaborate(self, platform):
        p = self.p
        fx = p.fx
        f, c, mc, sg = fx.formats, fx.constants, fx.membrane_consts, fx.surrogate_rom
        m = Module()
        n_rec = p.n_rec
        S_M, S_X, S_F = p.shape("membrane"), p.shape("input"), p.shape("firing_rate")
        S_PSI, S_L = p.shape("surrogate"), p.shape("learning_signal")
        x_to_m = f["weight"].frac_bits - f["membrane"].frac_bits

        v0_bits = mc["v0"] & ((1 << S_M.width) - 1)
        # in LUT RAM: a block RAM's output arrives late and (the ECP5's block RAMs nearly all used) far from the
        # multipliers it feeds at N1 (that path was the nmnist ECP5 build's longest); 150 x 49 bits are small. In
        # STATE_SLICES column slices, each read at an address register of its own (KEEP), loaded from j_next: one
        # address register (the sequencer's) drove all ~130 LUT RAM cells, 5.9 ns of wire, and on through the read
        # into the multiplier was 33 endpoints 2.56 ns short of 10 ns (n0_j -> pav2, nmnist ECP5 build, seed 1).
        # The read is asynchronous and its word registered (st1), as the synchronous read port did.
        state_w = S_M.width + 8 + S_F.width
        state = SlicedRAM(m, "state", n_rec, unsigned(state_w), slices=STATE_SLICES, init=v0_bits)
        state.load_read_address(self.j_next)
        st1 = Signal(state_w, name="st1")
        m.d.sync += st1.eq(state.read_data)
        if sg["kind"] == 1:
            m.submodules.surrogate = sgrom = Memory(shape=unsigned(S_PSI.width), depth=sg["table"].size,
                                                    init=[int(v) for v in sg["table"]])
            sg_r = sgrom.read_port()

        nv = [Signal(name=f"n{i}_v") for i in range(NEURON_STAGES + 1)]
        nj = [Signal(_bits(n_rec), name=f"n{i}_j") for i in range(NEURON_STAGES + 1)]
        m.d.comb += [nv[0].eq(self.issue), nj[0].eq(self.j)]
        for i in range(1, NEURON_STAGES + 1):
            m.d.sync += [nv[i].eq(nv[i - 1]), nj[i].eq(nj[i - 1])]
        x1 = Signal(S_X)
        m.d.sync += x1.eq(self.x)

        # N1: state arrives
        v1 = st1[:S_M.width].as_signed()
        ref1 = st1[S_M.width:S_M.width + 8]
        fav1 = st1[S_M.width + 8:]
        ref2 = Signal(8)
        xs2 = Signal(S_X)
        pav2 = Signal(signed(S_M.width + _bits(c["alpha"].mantissa) + 1))
        pfav2 = Signal(signed(S_F.width + _bits(c["kappa_reg"].mantissa) + 2))
        m.d.sync += [ref2.eq(Mux(ref1 > 0, ref1 - 1, 0)),
                     xs2.eq(saturate(x1, f["input"].min_int, f["input"].max_int, S_X)),
                     pav2.eq(v1 * c["alpha"].mantissa), pfav2.eq(fav1 * c["kappa_reg"].mantissa)]
        m.d.comb += self.sat_input.eq(nv[1] & sat_flag(x1, f["input"].min_int, f["input"].max_int))

        # N2: the membrane's sum, registered before its saturation, floor and the final update's threshold (the sum's
        # adders and the three compares after them in one clock were the nmnist ECP5 build's longest path)
        vsum_expr = round_shift(pav2, c["alpha"].shift) + round_shift(xs2, x_to_m) + mc["i_e"]
        vsuma, refa, pfava = (Signal(vsum_expr.shape(), name="vsuma"), Signal(8, name="refa"),
                              Signal.like(pfav2, name="pfava"))
        m.d.sync += [vsuma.eq(vsum_expr), refa.eq(ref2), pfava.eq(pfav2)]

        # N2a: saturation, floor, the final update's threshold, and beside them the surrogate argument |v - V_th|
        # (the argument's subtraction and absolute value in front of the slope's multiplier were the ECP5 tiny build's
        # longest path). Every compare is made on the sum itself, all side by side, and the constants' cases are
        # resolved here: saturation to [lo, hi] then the floor V_min is a clamp to [max(lo, V_min), hi], and
        # "clamped v < c" is a compare of the sum, true or false. (The compares one behind the other, saturation,
        # floor, threshold, were the ECP5 tiny build's longest path.) Whether the sum lies in the membrane format is
        # read off its top bits (arith.sat_flag); inside it the compares and the argument's subtractions take the
        # format's bits only, outside it the sum's sign decides: carry chains of ~25 bits, not of the sum's ~50
        # (vsuma -> d2 and vfb, up to 20 endpoints 2.40 ns short of 10 ns, nmnist ECP5 build).
        vth, m_lo, m_hi, v_min = mc["v_th"], f["membrane"].min_int, f["membrane"].max_int, mc["v_min"]
        lo_eff = max(m_lo, v_min)
        assert lo_eff <= m_hi, "V_min above the membrane format"
        outside = Signal(name="v_outside")
        m.d.comb += [outside.eq(sat_flag(vsuma, m_lo, m_hi)), self.sat_membrane.eq(nv[3] & outside)]
        v_in = vsuma[:S_M.width].as_signed()  # the sum, when it lies in the format
        v_neg = vsuma[-1]

        def below(c):
            """clamp(vsuma) < c"""
            return Const(1) if c > m_hi else Const(0) if c <= lo_eff else Mux(outside, v_neg, v_in < c)

        c_hi, c_lo = Signal(name="c_hi"), Signal(name="c_lo")
        m.d.comb += [c_hi.eq(outside & ~v_neg), c_lo.eq(Mux(outside, v_neg, v_in < lo_eff))]
        force_th = Signal()
        m.d.comb += force_th.eq(self.force & below(vth))
        vf2 = Signal(S_M)
        m.d.comb += vf2.eq(Mux(force_th, vth, Mux(c_hi, m_hi, Mux(c_lo, lo_eff, v_in))))
        d2 = Signal(unsigned(S_M.width + 1))
        dpos, dneg = (Signal(signed(S_M.width + 2), name="dpos"), Signal(signed(S_M.width + 2), name="dneg"))
        dsum = Signal.like(d2)
        m.d.comb += [dpos.eq(v_in - vth), dneg.eq(vth - v_in), dsum.eq(Mux(v_in < vth, dneg, dpos))]
        vfb, refb, pfavb = Signal(S_M, name="vfb"), Signal(8, name="refb"), Signal.like(pfav2, name="pfavb")
        m.d.sync += [vfb.eq(vf2), refb.eq(refa), pfavb.eq(pfava),
                     d2.eq(Mux(force_th, 0, Mux(c_hi, abs(m_hi - vth), Mux(c_lo, abs(lo_eff - vth), dsum))))]

        # N2b: spike, surrogate argument (registered above) and its product with the slope; beside the product,
        # whether psi will be above 0 (piecewise linear: a compare of the argument with a constant, see
        # _surrogate_positive), so that N3 only rounds the product and N4 subtracts it from the height (the rounding,
        # the subtraction, the compare and the clamp in one clock were 16 endpoints 3.28 ns short of 10 ns, psl3 ->
        # psi4, nmnist ECP5 build, seed 1)
        spike2 = Signal()
        m.d.comb += spike2.eq((vfb >= mc["v_th"]) & (refb == 0))
        v3, ref3 = Signal(S_M, name="v3"), Signal(8, name="ref3")
        spike3, refz3 = Signal(name="spike3"), Signal(name="refz3")
        psl3 = Signal(signed(d2.shape().width + _bits(abs(sg["slope"].mantissa)) + 2))
        rom_ok3 = Signal()
        pfav3 = Signal.like(pfav2)
        m.d.sync += [v3.eq(Mux(spike2, vfb - mc["v_th"], vfb)), ref3.eq(Mux(spike2, p.ref_counts, refb)),
                     spike3.eq(spike2), refz3.eq(refb == 0), psl3.eq(d2 * sg["slope"].mantissa), pfav3.eq(pfavb)]
        slope_s = sg["slope"].shift + f["membrane"].frac_bits - f["surrogate"].frac_bits
        if sg["kind"] == 0:
            psi_on3 = Signal(name="psi_on3")
            m.d.sync += psi_on3.eq((refb == 0) & _surrogate_positive(d2, sg["height"], sg["slope"].mantissa, slope_s))
        else:
            idx2 = d2 >> sg["shift"]
            m.d.comb += sg_r.addr.eq(idx2)
            m.d.sync += rom_ok3.eq(idx2 < sg["table"].size)

        # N3: the surrogate's rounded product (piecewise linear) or ROM word, the firing-rate average, and beside it
        # f_av - f_target, registered in front of N4's multiplier (the subtraction's carry chain, its wire to the
        # multiplier and the multiply in one clock were 35 endpoints 3.42 ns short, fav4 -> plam5, nmnist ECP5 build)
        psi4 = Signal(S_PSI, name="psi4")
        if sg["kind"] == 0:
            psr4, psi_on4 = Signal(signed(psl3.shape().width + 1), name="psr4"), Signal(name="psi_on4")
            m.d.sync += [psr4.eq(round_shift(psl3, slope_s)), psi_on4.eq(psi_on3)]
        else:
            m.d.sync += psi4.eq(Mux(refz3 & rom_ok3, sg_r.data, 0))
        f_max, f_tgt = f["firing_rate"].max_int, fx.f_target
        frnd3 = Signal(signed(pfav3.shape().width + 1), name="frnd3")
        fsum3 = Signal(signed(pfav3.shape().width + 2))
        fdiff3 = Signal(signed(pfav3.shape().width + 2), name="fdiff3")
        m.d.comb += [frnd3.eq(round_shift(pfav3, c["kappa_reg"].shift)),
                     fsum3.eq(frnd3 + Mux(spike3, fx.f_av_spike, 0)),
                     fdiff3.eq(frnd3 + Mux(spike3, fx.f_av_spike - f_tgt, -f_tgt))]
        m.d.comb += self.sat_firing_rate.eq(nv[5] & sat_flag(fsum3, 0, f_max))
        v4, ref4, spike4 = Signal(S_M, name="v4"), Signal(8, name="ref4"), Signal(name="spike4")
        fav4 = Signal(S_F, name="fav4")
        fdt4 = Signal(signed(S_F.width + 1), name="fdt4")  # f_av - f_target
        m.d.sync += [v4.eq(v3), ref4.eq(ref3), spike4.eq(spike3), fav4.eq(saturate(fsum3, 0, f_max, S_F)),
                     fdt4.eq(Mux(fsum3 > f_max, f_max - f_tgt, Mux(fsum3 < 0, -f_tgt, fdiff3)))]

        # N4: Lambda's start, (1 - kappa_reg) c_reg (f_av - f_target); psi = max(0, height - the rounded product)
        plam5 = Signal(signed(S_F.width + 2 + _bits(abs(c["c_fr"].mantissa)) + 1))
        v5, ref5, spike5 = Signal(S_M, name="v5"), Signal(8, name="ref5"), Signal(name="spike5")
        psi5, fav5 = Signal(S_PSI, name="psi5"), Signal(S_F, name="fav5")
        m.d.sync += [plam5.eq(fdt4 * c["c_fr"].mantissa), v5.eq(v4), ref5.eq(ref4), spike5.eq(spike4), fav5.eq(fav4)]
        if sg["kind"] == 0:
            m.d.sync += psi5.eq(Mux(psi_on4, sg["height"] - psr4, 0))
        else:
            m.d.sync += psi5.eq(psi4)

        # N5: the state written back, history entry t and the spike out
        lam_full = Signal(signed(plam5.shape().width + 2))
        m.d.comb += lam_full.eq(round_shift(plam5, c["c_fr"].shift + f["firing_rate"].frac_bits
                                            - f["learning_signal"].frac_bits))
        m.d.comb += self.sat_learning_signal.eq(nv[7] & sat_flag(lam_full, f["learning_signal"].min_int,
                                                                 f["learning_signal"].max_int))
        m.d.comb += [self.valid.eq(nv[7]), self.out_j.eq(nj[7]), self.psi.eq(psi5), self.spike.eq(nv[7] & spike5),
                     self.lam.eq(saturate(lam_full, f["learning_signal"].min_int, f["learning_signal"].max_int, S_L))]
        # the write is registered and lands a clock later: the sequencer's clear counter and its compare, chosen
        # against the pipeline's write, into the LUT RAM's ~1,900 write pins in one clock were the nmnist ECP5
        # build's widest class of failing paths (1,881 endpoints, 3.66 ns short of 10 ns). A neuron's state is read
        # again only in the next step's neuron phase, many clocks later.
        w_addr, w_data = Signal(range(max(2, n_rec)), name="w_addr"), Signal(state_w, name="w_data")
        w_en = Signal(name="w_en")
        m.d.sync += w_en.eq(0)
        with m.If(nv[7]):
            m.d.sync += [w_addr.eq(nj[7]), w_data.eq(Cat(v5, ref5, fav5)), w_en.eq(1)]
        with m.If(self.clear):  # the sequencer never clears while neurons are in flight
            m.d.sync += [w_addr.eq(self.clear_index), w_data.eq(v0_bits), w_en.eq(1)]
        with m.If(w_en):
            state.write(w_addr, w_data)
        return m
