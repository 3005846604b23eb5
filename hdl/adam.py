"""The Adam step of one synapse per clock: ``hw_contract.AdamContract.synapse_step`` as a pipeline.

Built only when the config's optimizer is Adam (``HardwareParams.adam``); a lane feeds it the synapse's gradient,
weight and moments during its optimizer pass and writes back what leaves it ``ADAM_LAT`` clocks later. Each
stage is one step of the contract's arithmetic, in its order, with its rounding (ties to even) and saturation:

  0  in: g, w, m, sigma, the group's step size A      gm = sat_m(round(g >> (F_g - F_m)))
  1  b1 m + (1 - b1) gm (constants aligned), sigma^2, gm^2
  2  m' = sat_m(round(...)); b2 sigma^2, (1 - b2) gm^2
  3  v' = round(b2 sigma^2) + round((1 - b2) gm^2); x = max(v', eps_v)
  4  normalise x: e = bit length rounded up to even, u = x >> (e - U) (or << when e < U)
  5  LUT address (u's top L bits); the table is a synchronous ROM
  6  y0 arrives: round(y0^2 >> R)
  7  p = round(u round(y0^2 >> R) >> U)
  8  y = round(y0 (3 2^R - p) >> (R + 1))
  9  sigma' = sat_v(round(u y >> (U + R - e/2))), ratio = sat_r(round(m' y >> (F_m + R + e/2 - F_v - Q)))
 10  ratio * A
 11  dw = round(ratio A >> eta_shift); w' = clamp(sat_w(w - dw))  -> out

A value leaves at stage ADAM_LAT (``valid`` delayed alike); the unit accepts one synapse per clock.
"""

from __future__ import annotations

from amaranth.hdl import Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from golden_model.hw_contract import RATIO_FRAC_BITS, RATIO_INT_BITS, RSQRT_FRAC_BITS

from .arith import round_shift, sat_flag, saturate

__all__ = ["AdamUnit", "ADAM_LAT", "round_shift_var"]

#: clocks from a synapse entering the unit to its results leaving it
ADAM_LAT = 12


def round_shift_var(x, s, s_bits: int):
    """round(x / 2**s), ties to even, for a run-time shift 0 <= s < 2**s_bits (s = 0: x). fixed_kernels'
    rshift_round: (x + 2**(s-1) - 1 + bit_s(x)) >> s."""
    one = Const(1, signed(x.shape().width + 2))
    bias = Mux(s == 0, 0, (one << (s - 1)[:s_bits].as_unsigned()) - 1)
    total = x + bias + Mux(s == 0, 0, x.bit_select(s[:s_bits].as_unsigned(), 1).as_unsigned())
    return total >> s[:s_bits].as_unsigned()


class AdamUnit(wiring.Component):
    def __init__(self, p):
        self.p = p
        f = p.fx.formats
        S_W, S_M, S_V, S_G = (p.shape("weight"), p.shape("adam_m"), p.shape("adam_v"), p.shape("gradient"))
        super().__init__({
            "valid": In(1), "g": In(S_G), "w": In(S_W), "m": In(S_M), "sigma": In(S_V),
            "step": In(p.adam_step_shape),  # the group's A = round(eta_m bias[t] >> bias_shift)
            "eta_shift": In(8),
            "out_valid": Out(1), "out_w": Out(S_W), "out_m": Out(S_M), "out_sigma": Out(S_V),
            # saturation flags raised this clock (with out_valid)
            "sat_m": Out(1), "sat_v": Out(1), "sat_weight": Out(1),
        })
        self._f = f

    def elaborate(self, platform):  # noqa: C901 - one pipeline, read top to bottom
        p, f = self.p, self._f
        ad = p.fx.adam
        m = Module()
        fm, fv, fw, fg = f["adam_m"], f["adam_v"], f["weight"], f["gradient"]
        S_M, S_V, S_W = p.shape("adam_m"), p.shape("adam_v"), p.shape("weight")
        R = U = RSQRT_FRAC_BITS
        Q = RATIO_FRAC_BITS
        L = ad.lut_bits
        b1, c1, b2, c2 = ad.beta_1, ad.one_minus_beta_1, ad.beta_2, ad.one_minus_beta_2
        clamp_lo = max(fw.min_int, int(fw.quantize(p.config.optimizer.Wmin)[0]))
        clamp_hi = min(fw.max_int, int(fw.quantize(p.config.optimizer.Wmax)[0]))

        # values that ride along: valid, weight, step size, and the flags raised so far
        n = ADAM_LAT
        v = [Signal(name=f"av{i}") for i in range(n + 1)]
        w = [Signal(S_W, name=f"aw{i}") for i in range(n + 1)]
        a = [Signal.like(self.step, name=f"aa{i}") for i in range(n + 1)]
        fl_m = [Signal(name=f"afm{i}") for i in range(n + 1)]
        m.d.comb += [v[0].eq(self.valid), w[0].eq(self.w), a[0].eq(self.step)]
        for i in range(1, n + 1):
            m.d.sync += [v[i].eq(v[i - 1]), w[i].eq(w[i - 1]), a[i].eq(a[i - 1])]
        for i in range(4, n + 1):
            m.d.sync += fl_m[i].eq(fl_m[i - 1])

        # ---- 0: the gradient in m's format ------------------------------------------------------------------------
        gm_full = Signal(signed(fg.bits + 1))
        m.d.comb += gm_full.eq(round_shift(self.g, fg.frac_bits - fm.frac_bits))
        gm1, m1, s1 = Signal(S_M), Signal(S_M), Signal(S_V)
        sat_g1 = Signal()
        m.d.sync += [gm1.eq(saturate(gm_full, fm.min_int, fm.max_int, S_M)), m1.eq(self.m), s1.eq(self.sigma),
                     sat_g1.eq(self.valid & sat_flag(gm_full, fm.min_int, fm.max_int))]

        # ---- 1: b1 m + (1 - b1) gm, sigma^2, gm^2 -------------------------------------------------------------------
        sh1 = max(b1.shift, c1.shift)
        acc2 = Signal(signed(S_M.width + p.config.fixed.constant_bits + sh1 + 2))
        ss2 = Signal(unsigned(2 * S_V.width))
        gg2 = Signal(unsigned(2 * S_M.width))
        m.d.sync += [acc2.eq(((m1 * b1.mantissa) << (sh1 - b1.shift)) + ((gm1 * c1.mantissa) << (sh1 - c1.shift))),
                     ss2.eq(s1 * s1), gg2.eq((gm1 * gm1).as_unsigned()), fl_m[2].eq(sat_g1)]

        # ---- 2: m', b2 sigma^2, (1 - b2) gm^2 ---------------------------------------------------------------------
        m_full = Signal(signed(acc2.shape().width))
        m.d.comb += m_full.eq(round_shift(acc2, sh1))
        m3 = Signal(S_M)
        pb3 = Signal(unsigned(ss2.shape().width + b2.mantissa.bit_length()))
        pc3 = Signal(unsigned(gg2.shape().width + c2.mantissa.bit_length()))
        m.d.sync += [m3.eq(saturate(m_full, fm.min_int, fm.max_int, S_M)), pb3.eq(ss2 * b2.mantissa),
                     pc3.eq(gg2 * c2.mantissa),
                     fl_m[3].eq(fl_m[2] | (v[2] & sat_flag(m_full, fm.min_int, fm.max_int)))]

        # ---- 3: v' and the eps floor --------------------------------------------------------------------------------
        vsum = Signal(unsigned(max(pb3.shape().width, pc3.shape().width) + 1))
        m.d.comb += vsum.eq(round_shift(pb3, b2.shift) + round_shift(pc3, c2.shift + 2 * fm.frac_bits
                                                                      - 2 * fv.frac_bits))
        XW = vsum.shape().width
        x4 = Signal(unsigned(XW))
        m4 = Signal(S_M)
        m.d.sync += [x4.eq(Mux(vsum < ad.eps_v, ad.eps_v, vsum)), m4.eq(m3)]

        # ---- 4: normalise: e = bit length of x rounded up to even, u = x >> (e - U) -----------------------------
        nbits = Signal(range(XW + 2))
        for i in range(XW):
            with m.If(x4[i]):
                m.d.comb += nbits.eq(i + 1)  # the highest set bit wins (last assignment)
        e_c = Signal(range(XW + 3))
        m.d.comb += e_c.eq(nbits + nbits[0])
        u_c = Signal(unsigned(U))
        with m.If(e_c >= U):
            m.d.comb += u_c.eq(x4 >> (e_c - U)[:7])
        with m.Else():
            m.d.comb += u_c.eq(x4 << (U - e_c)[:6])
        u5, e5, m5 = Signal(unsigned(U)), Signal.like(e_c), Signal(S_M)
        m.d.sync += [u5.eq(u_c), e5.eq(e_c), m5.eq(m4)]

        # ---- 5: the table (synchronous ROM: y0 arrives at stage 6) -------------------------------------------------
        lut = Memory(shape=unsigned(R + 2), depth=ad.rsqrt_lut.size, init=[int(x) for x in ad.rsqrt_lut])
        m.submodules.rsqrt_lut = lut
        lut_r = lut.read_port()
        m.d.comb += lut_r.addr.eq((u5 >> (U - L)) - (1 << (L - 2)))
        u6, e6, m6 = Signal.like(u5), Signal.like(e5), Signal(S_M)
        m.d.sync += [u6.eq(u5), e6.eq(e5), m6.eq(m5)]

        # ---- 6: round(y0^2 >> R) --------------------------------------------------------------------------------------
        y0 = lut_r.data
        sq7, y07, u7, e7, m7 = (Signal(unsigned(R + 5)), Signal(unsigned(R + 2)), Signal.like(u5), Signal.like(e5),
                                Signal(S_M))
        m.d.sync += [sq7.eq(round_shift(y0 * y0, R)), y07.eq(y0), u7.eq(u6), e7.eq(e6), m7.eq(m6)]

        # ---- 7: p = round(u sq >> U) ---------------------------------------------------------------------------------
        p8, y08, u8, e8, m8 = (Signal(unsigned(R + 5)), Signal.like(y07), Signal.like(u5), Signal.like(e5),
                               Signal(S_M))
        m.d.sync += [p8.eq(round_shift(u7 * sq7, U)), y08.eq(y07), u8.eq(u7), e8.eq(e7), m8.eq(m7)]

        # ---- 8: one Newton step -----------------------------------------------------------------------------------
        newton = Signal(signed(R + 6))
        m.d.comb += newton.eq(Const(3 << R, signed(R + 6)) - p8)
        y9, u9, e9, m9 = Signal(unsigned(R + 2)), Signal.like(u5), Signal.like(e5), Signal(S_M)
        m.d.sync += [y9.eq(round_shift(y08 * newton, R + 1)), u9.eq(u8), e9.eq(e8), m9.eq(m8)]

        # ---- 9: sigma' and the ratio, shifts set by the exponent ----------------------------------------------------
        half_e = e9 >> 1
        s_sigma = Signal(signed(8))
        m.d.comb += s_sigma.eq(U + R - half_e)
        uy = Signal(signed(U + R + 4))  # u y >= 0, held signed for the shifter
        m.d.comb += uy.eq(u9 * y9)
        sig_full = Signal(signed(U + R + 4))
        m.d.comb += sig_full.eq(round_shift_var(uy, s_sigma, 6))
        k_ratio = fm.frac_bits + R - fv.frac_bits - Q
        s_ratio = Signal(signed(8))
        m.d.comb += s_ratio.eq(half_e + k_ratio)
        prod = Signal(signed(S_M.width + R + 3))
        m.d.comb += prod.eq(m9 * y9)
        left = max(0, -(k_ratio + 1))  # the most the ratio can shift left (e >= 2)
        ratio_full = Signal(signed(prod.shape().width + left + 1))
        with m.If(s_ratio < 0):
            m.d.comb += ratio_full.eq(prod << (-s_ratio)[:6].as_unsigned())
        with m.Else():
            m.d.comb += ratio_full.eq(round_shift_var(prod, s_ratio, 6))
        assert left < 32
        S_R = signed(RATIO_INT_BITS + RATIO_FRAC_BITS + 1)
        r_lo, r_hi = ad.ratio_min, ad.ratio_max
        ratio10, sig10, m10 = Signal(S_R), Signal(S_V), Signal(S_M)
        fl_v = [Signal(name=f"afv{i}") for i in range(n + 1)]
        m.d.sync += [ratio10.eq(saturate(ratio_full, r_lo, r_hi, S_R)),
                     sig10.eq(saturate(sig_full, 0, fv.max_int, S_V)), m10.eq(m9),
                     fl_v[10].eq(v[9] & (sat_flag(ratio_full, r_lo, r_hi) | sat_flag(sig_full, 0, fv.max_int)))]

        # ---- 10: ratio * A ----------------------------------------------------------------------------------------
        pr11 = Signal(signed(S_R.width + self.step.shape().width))
        sig11, m11 = Signal(S_V), Signal(S_M)
        m.d.sync += [pr11.eq(ratio10 * a[10]), sig11.eq(sig10), m11.eq(m10), fl_v[11].eq(fl_v[10])]

        # ---- 11: dw, w' ---------------------------------------------------------------------------------------------
        dw = Signal(signed(pr11.shape().width + 2))
        m.d.comb += dw.eq(round_shift_var(pr11, self.eta_shift, 8))
        wnew = Signal(signed(dw.shape().width + 2))
        m.d.comb += wnew.eq(w[11] - dw)
        wsat = Signal(S_W)
        m.d.comb += wsat.eq(saturate(wnew, fw.min_int, fw.max_int, S_W))
        ow, om, osg = Signal(S_W), Signal(S_M), Signal(S_V)
        sw, sm, sv = Signal(), Signal(), Signal()
        m.d.sync += [ow.eq(Mux(wsat < clamp_lo, clamp_lo, Mux(wsat > clamp_hi, clamp_hi, wsat))), om.eq(m11),
                     osg.eq(sig11), sw.eq(v[11] & sat_flag(wnew, fw.min_int, fw.max_int)), sm.eq(fl_m[11]),
                     sv.eq(fl_v[11])]
        m.d.comb += [self.out_valid.eq(v[12]), self.out_w.eq(ow), self.out_m.eq(om), self.out_sigma.eq(osg),
                     self.sat_weight.eq(sw), self.sat_m.eq(sm & v[12]), self.sat_v.eq(sv & v[12])]
        return m
