"""The hardware contract: the integer arithmetic the accelerator computes, defined once.

The fixed-point engine (``engines/fixed.py``) implements exactly this, the gateware (``hdl/``) must reproduce the
fixed-point engine bit for bit, and the host driver packs words with it. Nothing here is a float at run time:
floats appear only when a config is turned into integers (formats, constants, ROM contents), once, here.

Formats. Every stored quantity has a two's-complement or unsigned fixed-point format written ``sI.F`` / ``uI.F``:
I integer bits (excluding the sign bit of a signed format), F fractional bits; a value v is held as the integer
``round(v * 2**F)``, and the word has ``I + F (+1 if signed)`` bits.

Arithmetic. Sums of integers are exact (accumulators are wide enough by construction). A product of a value by a
constant or by another value is formed exactly, then brought to the destination format by an arithmetic right
shift with rounding: round-to-nearest, ties to even (default), or, for the weight update only, stochastic
rounding whose random bits are a pure function of (source * (n_rec + n_out) + target, time step) (see
:func:`dither`), so the result does not depend on how hardware lanes lay out or order the synapses. A result outside its format saturates to
the format's limit and sets that quantity's sticky overflow flag; nothing wraps.

Constants (decay factors alpha, kappa, kappa_reg, ...) are ``mantissa * 2**-shift`` with a signed mantissa of
``constant_bits`` bits (18 by default: one DSP48 operand), shift chosen for the most precision.

One trace per synapse. NEST keeps e_bar (filtered with kappa) and e_bar_reg (filtered with kappa_reg, scaled by
1 - kappa_reg) per synapse, and the gradient term ``L e_bar + FR e_bar_reg``. With kappa_reg == kappa (NEST's
examples, every preset) ``e_bar_reg = (1 - kappa) e_bar`` exactly in real arithmetic (same linear filter, same
input, same start, same decays), so the contract keeps e_bar only and folds the regularisation into the history:
``Lambda = L + (1 - kappa_reg) FR`` per neuron and step, gradient term ``Lambda e_bar``. Half the per-synapse
trace memory, one product per synapse and history entry; the results differ from NEST's only by rounding.
Configs with kappa_reg != kappa are refused by the fixed-point engine (they would need the second trace).

History entry t of recurrent neuron j holds psi and Lambda: when the neuron updates in step t,
``Lambda = round(c_fr * (f_av - f_target))`` with the constant ``c_fr = (1 - kappa_reg) c_reg``; when the readout
errors of step t+1 are known (start of step t+2) and any is non-zero, ``Lambda += round(sum_k B_jk err_k)``.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np

__all__ = [
    "QFormat",
    "Constant",
    "FixedPoint",
    "QUANTITIES",
    "ROUND_NEAREST_EVEN",
    "ROUND_STOCHASTIC",
    "dither",
    "shift_round_nearest_even",
    "AdamContract",
    "RATIO_INT_BITS",
    "RATIO_FRAC_BITS",
    "RSQRT_FRAC_BITS",
]

ROUND_NEAREST_EVEN = 0
ROUND_STOCHASTIC = 1
ROUNDING_MODES = {"nearest_even": ROUND_NEAREST_EVEN, "stochastic": ROUND_STOCHASTIC}

#: the stored quantities, in the order of their saturation-flag bits (the status register reports this bitmask)
QUANTITIES = (
    "weight",            # per synapse
    "e_bar",             # per synapse onto a recurrent target
    "z_bar",             # per synapse group (source x kind of target)
    "membrane",          # per neuron: v of recurrent neurons and readouts
    "surrogate",         # history: psi
    "learning_signal",   # history: Lambda = L + (1 - kappa_reg) FR
    "firing_rate",       # per recurrent neuron: the firing-rate average f_av
    "error",             # readout history: err
    "feedback",          # B, per (recurrent, readout) pair
    "gradient",          # the walk's accumulator (register)
    "input",             # the per-step synaptic input sum (register)
    "adam_m",            # Adam build: first moment m per synapse (and the gradient brought to m's format)
    "adam_v",            # Adam build: sigma = sqrt(v) per synapse, and the step ratio m / sigma (see AdamContract)
)

_FORMAT = re.compile(r"^([su])(\d+)\.(\d+)$")


@dataclass(frozen=True)
class QFormat:
    signed: bool
    int_bits: int
    frac_bits: int

    @classmethod
    def parse(cls, text: str) -> "QFormat":
        m = _FORMAT.match(text.strip())
        if not m:
            raise ValueError(f"{text!r} is not a fixed-point format like 's3.20' or 'u0.16'")
        return cls(m.group(1) == "s", int(m.group(2)), int(m.group(3)))

    def __str__(self) -> str:
        return f"{'s' if self.signed else 'u'}{self.int_bits}.{self.frac_bits}"

    @property
    def bits(self) -> int:
        return self.int_bits + self.frac_bits + (1 if self.signed else 0)

    @property
    def max_int(self) -> int:
        return (1 << (self.int_bits + self.frac_bits)) - 1

    @property
    def min_int(self) -> int:
        return -(1 << (self.int_bits + self.frac_bits)) if self.signed else 0

    @property
    def lsb(self) -> float:
        return 2.0 ** -self.frac_bits

    @property
    def max_value(self) -> float:
        return self.max_int * self.lsb

    def quantize(self, values) -> tuple[np.ndarray, int]:
        """float -> integers (nearest, ties to even), saturated; returns (ints, number saturated)."""
        scaled = np.rint(np.asarray(values, dtype=np.float64) * 2.0 ** self.frac_bits)  # rint: ties to even
        clipped = np.clip(scaled, self.min_int, self.max_int)
        return clipped.astype(np.int64), int(np.count_nonzero(clipped != scaled))

    def to_float(self, ints) -> np.ndarray:
        return np.asarray(ints, dtype=np.float64) * self.lsb


@dataclass(frozen=True)
class Constant:
    """A real constant as ``mantissa * 2**-shift`` with a signed mantissa of `bits` bits."""

    value: float
    mantissa: int
    shift: int

    @classmethod
    def make(cls, value: float, bits: int = 18, max_shift: int = 62) -> "Constant":
        if value == 0.0:
            return cls(0.0, 0, 0)
        # largest shift with |round(value * 2**shift)| < 2**(bits - 1)
        shift = bits - 2 - math.floor(math.log2(abs(value)))
        shift = min(shift, max_shift)
        mantissa = round(value * 2.0 ** shift)
        while abs(mantissa) >= 1 << (bits - 1):
            shift -= 1
            mantissa = round(value * 2.0 ** shift)
        return cls(value, int(mantissa), int(shift))

    @property
    def approx(self) -> float:
        return self.mantissa * 2.0 ** -self.shift


def shift_round_nearest_even(x: int, shift: int) -> int:
    """round(x / 2**shift), ties to even, for Python ints (the reference the kernels are tested against)."""
    if shift <= 0:
        return x << -shift
    q = x >> shift  # floor
    r = x - (q << shift)
    half = 1 << (shift - 1)
    if r > half or (r == half and q & 1):
        q += 1
    return q


def dither(synapse: int, step: int, bits: int) -> int:
    """Uniform random bits for stochastic rounding: a pure function of (synapse, step) so that lanes may process
    synapses in any order. xorshift-multiply mixing of a 32-bit seed; `bits` <= 32 bits returned."""
    x = (synapse * 0x9E3779B1 + step * 0x85EBCA77 + 0x27D4EB2F) & 0xFFFFFFFF
    x ^= x >> 16
    x = (x * 0x7FEB352D) & 0xFFFFFFFF
    x ^= x >> 15
    x = (x * 0x846CA68B) & 0xFFFFFFFF
    x ^= x >> 16
    return x >> (32 - bits) if bits > 0 else 0


class FixedPoint:
    """Formats, constants and ROM contents derived from a NetworkConfig's [fixed] section (and its neuron
    parameters); raises ValueError naming the key when a format cannot hold what the config implies."""

    def __init__(self, config):
        fx = config.fixed
        self.config = config
        self.formats: dict[str, QFormat] = {}
        for name in QUANTITIES:
            if name in ("gradient", "input"):
                continue
            text = getattr(fx, name)
            try:
                self.formats[name] = QFormat.parse(text)
            except ValueError as exc:
                raise ValueError(f"config [fixed] {name} = {text!r}: {exc}") from None
        f = self.formats
        # accumulators: exact sums of products (gradient) and of weights (input), sized by gradient_bits
        grad_frac = max(f["learning_signal"].frac_bits + f["e_bar"].frac_bits,
                        f["error"].frac_bits + f["z_bar"].frac_bits)
        self.formats["gradient"] = QFormat(True, fx.gradient_bits - 1 - grad_frac, grad_frac)
        self.formats["input"] = QFormat(True, fx.gradient_bits - 1 - f["weight"].frac_bits, f["weight"].frac_bits)
        self.rounding = ROUND_NEAREST_EVEN
        self.weight_rounding = ROUNDING_MODES[fx.weight_rounding]
        self._check(config)

        rec, out, dt = config.recurrent, config.readout, config.simulation.resolution
        cb = fx.constant_bits
        alpha = math.exp(-dt / rec.tau_m)
        alpha_out = math.exp(-dt / out.tau_m)
        self.constants = {
            "alpha": Constant.make(alpha, cb),
            "alpha_out": Constant.make(alpha_out, cb),
            "kappa": Constant.make(rec.kappa, cb),
            "kappa_reg": Constant.make(rec.kappa_reg, cb),
            "c_fr": Constant.make((1.0 - rec.kappa_reg) * rec.c_reg, cb),
        }
        # per-step input currents enter v as P_i * I_e (a constant in the membrane format)
        p_i = rec.tau_m / rec.C_m * (1.0 - alpha)
        p_i_out = out.tau_m / out.C_m * (1.0 - alpha_out)
        fm = f["membrane"]
        self.membrane_consts = {
            "v_th": int(fm.quantize(rec.V_th - rec.E_L)[0]),
            "v_min": int(fm.quantize(max(rec.V_min - rec.E_L, -fm.max_value))[0]),
            "v_reset_sub": int(fm.quantize(rec.V_th - rec.E_L)[0]),
            "i_e": int(fm.quantize(p_i * rec.I_e)[0]),
            "v0": int(fm.quantize(rec.V_m - rec.E_L)[0]),
            "out_i_e": int(fm.quantize(p_i_out * out.I_e)[0]),
            "out_v_min": int(fm.quantize(max(out.V_min - out.E_L, -fm.max_value))[0]),
            "out_e_l": int(fm.quantize(out.E_L)[0]),
            "out_v0": int(fm.quantize(out.V_m - out.E_L)[0]),
        }
        ff = f["firing_rate"]
        # f_av = kappa_reg f_av + (1 - kappa_reg) z / dt: the spike term is a constant in f_av's format
        self.f_av_spike = int(ff.quantize((1.0 - rec.kappa_reg) / dt)[0])
        self.f_target = int(ff.quantize(rec.f_target / 1000.0 * dt)[0])
        # learning rate: a constant whose shift also moves gradient units to weight units
        self.cutoff_rec = config.steps(rec.eprop_isi_trace_cutoff)
        self.cutoff_out = config.steps(out.eprop_isi_trace_cutoff)
        self.history_length = 1 << max(2, math.ceil(math.log2(max(self.cutoff_rec, self.cutoff_out) + 3)))
        self.surrogate_rom = self._surrogate_rom(config)
        self.decay_roms = self._decay_roms(cb)
        #: the Adam build's constants and ROMs (None for gradient descent)
        self.adam = AdamContract(config, self.formats) if config.optimizer.type == "adam" else None

    # ---- checks -----------------------------------------------------------------------------------------------------
    def _check(self, config) -> None:
        f, rec = self.formats, config.recurrent
        alpha = math.exp(-config.simulation.resolution / rec.tau_m)

        def need(name, value, why):
            if abs(value) > f[name].max_value:
                raise ValueError(f"config [fixed] {name} = '{f[name]}': holds at most {f[name].max_value:g}, "
                                 f"but {why} reaches {value:g}")

        if rec.kappa_reg != rec.kappa:
            raise ValueError(f"config [recurrent] kappa_reg = {rec.kappa_reg!r} differs from kappa = {rec.kappa!r}: "
                             f"the fixed-point contract keeps one trace per synapse, exact only when they are equal")
        for name in ("weight", "membrane", "learning_signal", "error", "feedback"):
            if not f[name].signed:
                raise ValueError(f"config [fixed] {name} = '{f[name]}': must be signed (s...)")
        need("surrogate", rec.surrogate_gradient_height, "the surrogate gradient height")
        alpha_out = math.exp(-config.simulation.resolution / config.readout.tau_m)
        need("z_bar", 1.0 / (1.0 - max(alpha, alpha_out)),
             "z_bar (at most 1 / (1 - alpha) of the recurrent or readout target)")
        need("firing_rate", 1.0, "the firing-rate average (at most 1 spike per step)")
        need("membrane", abs(rec.V_th - rec.E_L), "the threshold V_th - E_L")
        for name, cutoff in (("recurrent", rec.eprop_isi_trace_cutoff),
                             ("readout", config.readout.eprop_isi_trace_cutoff)):
            if math.isinf(cutoff):
                raise ValueError(f"config [{name}] eprop_isi_trace_cutoff = inf: the fixed-point engine (and the "
                                 f"hardware) keep a history ring of cutoff + 3 entries; give a finite cutoff")
        if config.optimizer.type not in ("gradient_descent", "adam"):
            raise ValueError(f"config [optimizer] type = {config.optimizer.type!r}: the fixed-point engine "
                             f"implements gradient_descent and adam")
        if config.optimizer.type == "adam":
            AdamContract.check(config, f, self.formats["gradient"])
        if config.optimizer.optimize_each_step or config.optimizer.batch_size != 1:
            raise ValueError("config [optimizer]: the fixed-point engine optimizes once per walk "
                             "(optimize_each_step = false, batch_size = 1)")
        for key in ("weight", "e_bar", "z_bar", "membrane", "surrogate", "learning_signal", "firing_rate", "error",
                    "feedback"):
            if f[key].bits > 32:
                raise ValueError(f"config [fixed] {key} = '{f[key]}': at most 32 bits")
        if self.formats["gradient"].int_bits < 8:
            raise ValueError(f"config [fixed] gradient_bits = {config.fixed.gradient_bits}: too narrow for the "
                             f"product formats (fraction bits {self.formats['gradient'].frac_bits})")
        # every intermediate must fit the 64-bit integers of the reference (and sizes the hardware's multipliers):
        # magnitude bits (integer + fraction) of the operands, plus the left shift into the accumulator
        g = self.formats["gradient"]
        cb, eb = config.fixed.constant_bits - 1, config.fixed.eta_bits - 1

        def mag(name):
            return f[name].int_bits + f[name].frac_bits

        def up(a, b):
            return g.frac_bits - f[a].frac_bits - f[b].frac_bits

        products = {
            "learning_signal x e_bar": mag("learning_signal") + mag("e_bar") + up("learning_signal", "e_bar"),
            "error x z_bar": mag("error") + mag("z_bar") + up("error", "z_bar"),
            "surrogate x z_bar": mag("surrogate") + mag("z_bar"),
            "constant x firing_rate": cb + mag("firing_rate") + 1,
            "constant x e_bar": cb + mag("e_bar"),
            "constant x membrane": cb + mag("membrane"),
            "feedback x error (summed over readouts)": mag("feedback") + mag("error")
            + math.ceil(math.log2(max(2, config.network.n_out))),
            "eta x gradient": eb + g.int_bits + g.frac_bits,
        }
        for what, bits in products.items():
            if bits > 62:
                raise ValueError(f"config [fixed]: {what} needs {bits} magnitude bits, more than the 62 the "
                                 f"contract allows; narrow the formats involved")

    # ---- ROMs -------------------------------------------------------------------------------------------------------
    def _surrogate_rom(self, config) -> dict:
        """The surrogate gradient as the hardware computes it.

        piecewise_linear: no ROM. psi = max(0, h - round(k * |v - v_th|)) with the constant k = h / w: a subtract, a
        constant multiply and a clamp. The others: a ROM of `surrogate_lut_size` entries indexed by
        ``|v - v_th| >> rom_shift`` (entries beyond the ROM read 0), each entry the surrogate at the centre of its
        bin, rounded to the surrogate format.
        """
        rec, f = config.recurrent, self.formats
        h, w = rec.surrogate_gradient_height, rec.surrogate_gradient_width
        fm, fs = f["membrane"], f["surrogate"]
        name = rec.surrogate_gradient_function
        if name == "piecewise_linear":
            slope = Constant.make(h / w, config.fixed.constant_bits)
            return {"kind": 0, "height": int(fs.quantize(h)[0]), "slope": slope, "shift": 0,
                    "table": np.zeros(1, np.int64)}
        funcs = {
            "exponential": lambda d: h * np.exp(-d / w),
            "fast_sigmoid_derivative": lambda d: h * (1.0 + d / w) ** -2,
            "arctan_derivative": lambda d: h / (1.0 + (d / w) ** 2),
        }
        psi = funcs[name]
        size = config.fixed.surrogate_lut_size
        # cover |d| up to where psi falls below half an LSB (or the whole membrane range)
        d_max = fm.max_value * 2
        lo, hi = 0.0, d_max
        if psi(np.array([d_max]))[0] < fs.lsb / 2:
            for _ in range(200):
                mid = (lo + hi) / 2
                lo, hi = (mid, hi) if psi(np.array([mid]))[0] >= fs.lsb / 2 else (lo, mid)
            d_max = hi
        bin_ints = max(1.0, d_max * 2.0 ** fm.frac_bits / size)
        shift = max(0, math.ceil(math.log2(bin_ints)))
        centres = (np.arange(size) + 0.5) * 2.0 ** (shift - fm.frac_bits)
        table, _ = fs.quantize(psi(centres))
        return {"kind": 1, "height": int(fs.quantize(h)[0]), "slope": Constant(0.0, 0, 0), "shift": shift,
                "table": table}

    def _decay_roms(self, bits: int) -> dict[str, np.ndarray]:
        """alpha**m (recurrent and readout targets) and kappa**m for the steps m beyond the cutoff (mantissas with
        the constant's shift), until they round to 0; longer gaps decay the traces to 0."""
        roms = {}
        for name in ("alpha", "alpha_out", "kappa"):
            c = self.constants[name]
            values = []
            m = 0
            while True:
                v = round(c.value ** m * 2.0 ** c.shift)
                if v == 0 or m > 1 << 16:
                    break
                values.append(v)
                m += 1
            roms[name] = np.array(values, dtype=np.int64)
        return roms

    # ---- conversions ------------------------------------------------------------------------------------------------
    def describe(self) -> list[tuple[str, str, int, float, float]]:
        """(quantity, format, bits, lsb, max) rows."""
        return [(n, str(q), q.bits, q.lsb, q.max_value) for n, q in self.formats.items()]

    def eta_constant(self, eta: float) -> tuple[int, int]:
        """The learning rate as (mantissa, shift) such that delta_w_int = round(mantissa * g_int >> shift), i.e.
        eta * g with g in gradient units and the result in weight units."""
        if eta == 0.0:
            return 0, 0
        c = Constant.make(eta, self.config.fixed.eta_bits, max_shift=120)
        if self.adam is not None:
            # Adam: delta_w = round(ratio * A >> shift), the ratio m / sigma with RATIO_FRAC_BITS fraction bits and
            # A = eta * bias correction with eta's own (see AdamContract.synapse_step)
            return c.mantissa, c.shift + RATIO_FRAC_BITS - self.formats["weight"].frac_bits
        shift = c.shift + self.formats["gradient"].frac_bits - self.formats["weight"].frac_bits
        return c.mantissa, shift


# ---- Adam ---------------------------------------------------------------------------------------------------------
#: the step ratio m / sqrt(v) as a signed fixed-point value sRATIO_INT_BITS.RATIO_FRAC_BITS (saturated)
RATIO_INT_BITS = 6
RATIO_FRAC_BITS = 16
#: fraction bits of the reciprocal square root y in (1, 2] (an unsigned value of RSQRT_FRAC_BITS + 2 bits)
RSQRT_FRAC_BITS = 16


class AdamContract:
    """Adam in integers: one Adam step per optimizer call (per walk), bit-exact and reproducible by the RTL.

    State. Per synapse: the first moment m (format ``[fixed] adam_m``, gradient units) and the second moment as its
    square root sigma = sqrt(v) (format ``[fixed] adam_v``, gradient units too: it needs the range of m, not the
    square of it, which is what lets v live at weight width). Per synapse group (one source onto one kind of
    target, whose synapses are optimized together): the number t of Adam steps taken, saturating at the last entry
    of the bias-correction ROM.

    One call on a group whose learning rate is eta (mantissa e_m, shift e_s; eta = 0 skips the optimizer: no
    state changes, as gradient descent writes nothing then):

    * A = round(e_m * bias[t] >> bias_shift), the group's step size, bias[t] = sqrt(1 - b2^(t+1)) / (1 - b1^(t+1))
      (Keras' a = eta sqrt(1 - b2^t) / (1 - b1^t) at the group's (t+1)-th step); then t <- min(t + 1, N - 1);
    * per synapse, with g the walk's gradient (gradient format):
        gm    = sat_m(round(g >> (F_g - F_m)))                          the gradient in m's format
        m'    = sat_m(round(b1 m + (1 - b1) gm))                        one rounding (constants aligned exactly)
        v'    = round(b2 sigma^2) + round((1 - b2) gm^2)               integer, in units of sigma's LSB squared
        x     = max(v', eps_v)                                         eps_v = max(1, round(eps^2 2^(2 F_v)))
        y, e  = rsqrt(x)                                               x ~ u 2^(e - U), y ~ 2^R / sqrt(u 2^-U)
        sigma'= sat_v(round(u y >> (U + R - e/2)))                     = sqrt(x)
        ratio = sat_r(round(m' y >> (F_m + R + e/2 - F_v - Q)))        = m' / sqrt(x), sQ_I.Q
        dw    = round(ratio A >> (e_s + Q - F_w))                      eta_constant's shift for Adam
        w'    = clamp(sat_w(w - dw))                                   as gradient descent
      all rounding to nearest, ties to even (weights too: stochastic rounding is refused with Adam).

    rsqrt(x), x >= 1: n = bit length of x, e = n rounded up to even, u = x >> (e - U) (floor; exact left shift
    when e < U), so u in [2^(U-2), 2^U); y0 = LUT[u >> (U - L)] (the table's entries: round(2^R / sqrt(c)) at the
    centre c of each of the 3/4 * 2^L bins of [1/4, 1)); one Newton step y = round(y0 (3 2^R - round(u
    round(y0^2 >> R) >> U)) >> (R + 1)). U = R = RSQRT_FRAC_BITS, L = ``[fixed] adam_lut_bits``.

    Versus NEST (Keras Adam, optimize_each_step = false): NEST runs one Adam step per elapsed time step since the
    synapse's previous optimization, the accumulated gradient in the first and zeros in the rest (so m decays
    and w keeps moving by a m / (sqrt(v) + eps) in every catch-up step), with per-synapse powers advanced per time
    step. Here: one step per walk with the walk's gradient, bias correction counted in walks of the group, eps
    inside the root as a floor on v (sqrt(max(v, eps^2)) against sqrt(v) + eps), and no optimizer state change while
    learning is off (NEST keeps updating m and v with eta = 0). The catch-up has no closed form for the weight (the
    step ratio m / sqrt(v) changes every catch-up step), so the hardware does not attempt it; the effective step
    size differs from NEST's by up to the catch-up's factor (about 1 / (1 - b1 / sqrt(b2)) ~ 10 for long gaps at
    the default betas), which the learning rate absorbs (``eprop bench fixed`` measures both).
    """

    U = RSQRT_FRAC_BITS
    R = RSQRT_FRAC_BITS
    Q = RATIO_FRAC_BITS

    @staticmethod
    def check(config, f: dict, gradient: QFormat) -> None:
        opt, fx = config.optimizer, config.fixed
        m, v = f["adam_m"], f["adam_v"]
        if not m.signed:
            raise ValueError(f"config [fixed] adam_m = '{m}': must be signed (s...)")
        if v.signed:
            raise ValueError(f"config [fixed] adam_v = '{v}': must be unsigned (u...): it holds sqrt(v) >= 0")
        for name, q in (("adam_m", m), ("adam_v", v)):
            if q.bits > 32:
                raise ValueError(f"config [fixed] {name} = '{q}': at most 32 bits")
        if m.frac_bits > gradient.frac_bits:
            raise ValueError(f"config [fixed] adam_m = '{m}': more fraction bits than the gradient "
                             f"({gradient.frac_bits}); the gradient is rounded into m's format")
        if fx.weight_rounding != "nearest_even":
            raise ValueError(f"config [fixed] weight_rounding = {fx.weight_rounding!r}: the Adam build rounds to "
                             f"nearest, ties to even")
        cb = fx.constant_bits - 1
        mag_m, mag_v = m.int_bits + m.frac_bits, v.int_bits + v.frac_bits
        # (1 - beta_2) gm^2 is shifted right by its constant's shift + 2 (F_m - F_v): a left shift if negative
        align = max(0, -(Constant.make(1.0 - opt.beta_2, fx.constant_bits).shift
                         + 2 * (m.frac_bits - v.frac_bits)))
        products = {
            "beta x adam_m": cb + mag_m + 1,
            "beta_2 x adam_v^2": cb + 2 * mag_v,
            "(1 - beta_2) x adam_m^2": cb + 2 * mag_m + align,
            "adam_m x rsqrt": mag_m + RSQRT_FRAC_BITS + 1 + max(0, v.frac_bits + RATIO_FRAC_BITS - m.frac_bits
                                                               - RSQRT_FRAC_BITS),
            "ratio x step size": RATIO_INT_BITS + RATIO_FRAC_BITS + fx.eta_bits - 1,
        }
        for what, bits in products.items():
            if bits > 62:
                raise ValueError(f"config [fixed] adam_m = '{m}', adam_v = '{v}': {what} needs {bits} magnitude "
                                 f"bits, more than the 62 the contract allows")

    def __init__(self, config, formats: dict):
        opt, fx = config.optimizer, config.fixed
        cb = fx.constant_bits
        self.formats = formats
        self.beta_1 = Constant.make(opt.beta_1, cb)
        self.one_minus_beta_1 = Constant.make(1.0 - opt.beta_1, cb)
        self.beta_2 = Constant.make(opt.beta_2, cb)
        self.one_minus_beta_2 = Constant.make(1.0 - opt.beta_2, cb)
        fv = formats["adam_v"]
        self.eps_v = max(1, round(opt.epsilon ** 2 * 2.0 ** (2 * fv.frac_bits)))
        self.lut_bits = fx.adam_lut_bits
        self.rsqrt_lut = self._rsqrt_lut(self.lut_bits)
        self.bias_rom, self.bias_shift = self._bias_rom(opt.beta_1, opt.beta_2, fx.adam_bias_steps, cb)
        self.ratio_min = -(1 << (RATIO_INT_BITS + RATIO_FRAC_BITS))
        self.ratio_max = (1 << (RATIO_INT_BITS + RATIO_FRAC_BITS)) - 1

    @property
    def step_bits(self) -> int:
        """Bits of a group's Adam step count (0 .. len(bias_rom) - 1)."""
        return max(1, (self.bias_rom.size - 1).bit_length())

    @staticmethod
    def _rsqrt_lut(lut_bits: int) -> np.ndarray:
        """Entry i - 2^(L-2) for i in [2^(L-2), 2^L): round(2^R / sqrt((i + 1/2) / 2^L))."""
        i = np.arange(1 << (lut_bits - 2), 1 << lut_bits, dtype=np.float64)
        return np.rint(2.0 ** RSQRT_FRAC_BITS / np.sqrt((i + 0.5) / 2.0 ** lut_bits)).astype(np.int64)

    @staticmethod
    def _bias_rom(b1: float, b2: float, steps: int, bits: int) -> tuple[np.ndarray, int]:
        t = np.arange(1, steps + 1, dtype=np.float64)
        c = np.sqrt(1.0 - b2 ** t) / (1.0 - b1 ** t)
        top = float(max(c.max(), 1.0))
        shift = bits - 2 - math.floor(math.log2(top))
        rom = np.rint(c * 2.0 ** shift).astype(np.int64)
        # entries that have converged to the limit (1) add nothing: the ROM ends at the first of them
        hit = np.nonzero(rom == 1 << shift)[0]
        if hit.size and np.all(rom[hit[0]:] == 1 << shift):
            rom = rom[:hit[0] + 1]
        return rom, shift

    # ---- the reference arithmetic (Python ints): the Numba kernels and the RTL must equal these ----------------
    def rsqrt(self, x: int) -> tuple[int, int, int]:
        """(y, e, u) for x >= 1: x ~ u 2^(e - U), y ~ 2^R / sqrt(u 2^-U), see the class docstring."""
        U, R, L = self.U, self.R, self.lut_bits
        n = int(x).bit_length()
        e = n + (n & 1)
        u = x >> (e - U) if e >= U else x << (U - e)
        y0 = int(self.rsqrt_lut[(u >> (U - L)) - (1 << (L - 2))])
        s = shift_round_nearest_even(y0 * y0, R)
        p = shift_round_nearest_even(u * s, U)
        y = shift_round_nearest_even(y0 * ((3 << R) - p), R + 1)
        return y, e, u

    def step_size(self, eta_mantissa: int, t: int) -> int:
        """A of a group at its step count t (eta's fraction bits)."""
        return shift_round_nearest_even(eta_mantissa * int(self.bias_rom[t]), self.bias_shift)

    def synapse_step(self, g: int, m: int, sigma: int, w: int, a: int, eta_shift: int,
                     w_clamp: tuple[int, int]) -> tuple[int, int, int, set]:
        """One synapse's Adam step: (w', m', sigma', saturated quantities)."""
        f = self.formats
        fm, fv, fw, fg = f["adam_m"], f["adam_v"], f["weight"], f["gradient"]
        U, R, Q = self.U, self.R, self.Q
        sats = set()

        def sat(value, lo, hi, name):
            if value < lo or value > hi:
                sats.add(name)
                return max(lo, min(hi, value))
            return value

        gm = sat(shift_round_nearest_even(g, fg.frac_bits - fm.frac_bits), fm.min_int, fm.max_int, "adam_m")
        b1, c1 = self.beta_1, self.one_minus_beta_1
        s1 = max(b1.shift, c1.shift)
        acc = ((b1.mantissa * m) << (s1 - b1.shift)) + ((c1.mantissa * gm) << (s1 - c1.shift))
        m_new = sat(shift_round_nearest_even(acc, s1), fm.min_int, fm.max_int, "adam_m")
        b2, c2 = self.beta_2, self.one_minus_beta_2
        v_new = (shift_round_nearest_even(b2.mantissa * sigma * sigma, b2.shift)
                 + shift_round_nearest_even(c2.mantissa * gm * gm, c2.shift + 2 * fm.frac_bits - 2 * fv.frac_bits))
        x = max(v_new, self.eps_v)
        y, e, u = self.rsqrt(x)
        sigma_new = sat(shift_round_nearest_even(u * y, U + R - e // 2), 0, fv.max_int, "adam_v")
        ratio = sat(shift_round_nearest_even(m_new * y, fm.frac_bits + R + e // 2 - fv.frac_bits - Q),
                    self.ratio_min, self.ratio_max, "adam_v")
        dw = shift_round_nearest_even(ratio * a, eta_shift)
        w_new = sat(w - dw, fw.min_int, fw.max_int, "weight")
        w_new = max(w_clamp[0], min(w_clamp[1], w_new))
        return w_new, m_new, sigma_new, sats
