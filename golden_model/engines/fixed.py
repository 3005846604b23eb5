"""The fixed-point engine: the integer arithmetic of the hardware contract, the contract the RTL must match.

Same step order, synapse groups, timing and counters as the golden engine; integers throughout (kernels in
``fixed_kernels``). Where it departs from NEST's algorithm, it does so because hardware needs it, and the
departure vanishes with wide formats and a constant learning rate (tested):

1. arithmetic: formats, rounding and saturation of ``golden_model/hw_contract.py``;
2. a walk completes at the next spike or when its cutoff expires, whichever comes first, and gradient descent is
   applied then (NEST applies the gradient at the next spike; the transmitted weight is the same as long as the
   learning rate does not change in between). The history ring therefore holds ``cutoff + 3`` entries;
3. the learning rate is the current one (NEST lets a synapse use the rate of its previous update: a
   scheduling quirk without a hardware counterpart);
4. the optimizer runs once per walk (optimize_each_step false, batch_size 1): gradient descent, or one Adam step
   with the walk's gradient (``hw_contract.AdamContract``: NEST instead runs one Adam step per elapsed time step,
   zeros in all but the first, which has no closed form for the weight); NEST's flush events are not needed
   (cutoff completion bounds the memory) and are ignored;
5. a spike of multiplicity m adds m * w to its targets and runs the plasticity once (NEST: m deliveries; the
   repeats change no weight);
6. the final update's forced spike takes every membrane to threshold instead of adding 1000 (a control action:
   the same neurons spike, nothing saturates);
7. one trace per synapse (requires kappa_reg == kappa): e_bar_reg = (1 - kappa) e_bar, exact in real arithmetic,
   and the regularisation enters through the history's Lambda = L + (1 - kappa_reg) FR (hw_contract).
"""

from __future__ import annotations

from collections.abc import Sequence

import numba
import numpy as np

from ..config import NetworkConfig
from ..hw_contract import QUANTITIES, FixedPoint
from ..network import Network
from ..tasks import Sample
from . import fixed_kernels as K
from .base import Engine, Trace
from .golden import SynapseTable

__all__ = ["FixedEngine"]


class FixedEngine(Engine):
    name = "fixed"

    def __init__(self, config: NetworkConfig):
        super().__init__(config)
        self.fx = FixedPoint(config)  # validates the formats against the config
        self.network: Network | None = None
        n_threads = numba.config.NUMBA_NUM_THREADS
        self._counters = np.zeros((n_threads, K.N_COUNTERS), np.int64)
        self._saturations = np.zeros((n_threads, K.N_Q), np.int64)
        self.eta = 0.0

    # ---- set-up ----------------------------------------------------------------------------------------------------
    def load(self, network: Network) -> None:
        cfg, fx = self.config, self.fx
        f = fx.formats
        if (network.n_in, network.n_rec, network.n_out) != (cfg.network.n_in, cfg.network.n_rec, cfg.network.n_out):
            raise ValueError("network sizes do not match the config")
        network.check()
        self.network = network.copy()
        self.table = SynapseTable(network)
        n_in, n_rec, n_out = network.n_in, network.n_rec, network.n_out
        n_syn = self.table.post.size

        self.syn = np.zeros((K.N_SYN_ROWS, n_syn), np.int64)
        self.syn[K.S_W], n_sat = f["weight"].quantize(self.table.weight)
        self._saturations[0, K.Q_WEIGHT] += n_sat
        self.grp = np.zeros((self.table.grp_ptr.size - 1, K.N_GRP), np.int64)
        self.B, n_sat = f["feedback"].quantize(network.B)
        self._saturations[0, K.Q_FEEDBACK] += n_sat
        self.rec = np.zeros((n_rec, K.N_REC), np.int64)
        self.rec[:, K.R_V] = fx.membrane_consts["v0"]
        self.out_v = np.full(n_out, fx.membrane_consts["out_v0"], np.int64)

        H = fx.history_length
        self.hist = {"psi": np.zeros((H, n_rec), np.int64), "lam": np.zeros((H, n_rec), np.int64),
                     "err": np.zeros((H, n_out), np.int64)}
        ring = max(fx.cutoff_rec, fx.cutoff_out) + 2
        self.spiked_ring = np.zeros((ring, n_in + n_rec), np.int64)
        self.n_spiked_ring = np.zeros(ring, np.int64)
        self.mult = np.zeros(n_in + n_rec, np.int64)
        self.spk_src = np.zeros(n_in + n_rec, np.int64)
        self.x_in = np.zeros(n_rec + n_out, np.int64)
        fan_out = int(np.diff(self.table.grp_ptr).max()) if n_syn else 1
        self.grad = np.zeros((self._counters.shape[0], max(1, fan_out)), np.int64)
        self.ip = self._parameters()

    def _parameters(self) -> np.ndarray:
        cfg, fx = self.config, self.fx
        f, c, mc = fx.formats, fx.constants, fx.membrane_consts
        ip = np.zeros(K.N_IP, np.int64)
        for name, (im, is_) in {"alpha": (K.I_ALPHA_M, K.I_ALPHA_S), "alpha_out": (K.I_ALPHA_OUT_M, K.I_ALPHA_OUT_S),
                                "kappa": (K.I_KAPPA_M, K.I_KAPPA_S), "kappa_reg": (K.I_KREG_M, K.I_KREG_S),
                                "c_fr": (K.I_CFR_M, K.I_CFR_S)}.items():
            ip[im], ip[is_] = c[name].mantissa, c[name].shift
        for key, (i_f, i_min, i_max) in {
                "weight": (K.I_W_F, K.I_W_MIN, K.I_W_MAX), "e_bar": (K.I_EB_F, None, K.I_EB_MAX),
                "z_bar": (K.I_Z_F, None, K.I_Z_MAX),
                "membrane": (K.I_M_F, K.I_M_MIN, K.I_M_MAX), "surrogate": (K.I_S_F, None, K.I_S_MAX),
                "learning_signal": (K.I_L_F, K.I_L_MIN, K.I_L_MAX), "firing_rate": (K.I_F_F, None, K.I_F_MAX),
                "error": (K.I_E_F, K.I_E_MIN, K.I_E_MAX), "feedback": (K.I_B_F, None, None),
                "gradient": (K.I_G_F, K.I_G_MIN, K.I_G_MAX), "input": (None, K.I_X_MIN, K.I_X_MAX)}.items():
            q = f[key]
            if i_f is not None:
                ip[i_f] = q.frac_bits
            if i_min is not None:
                ip[i_min] = q.min_int
            if i_max is not None:
                ip[i_max] = q.max_int
        fw = f["weight"]
        ip[K.I_WCLAMP_MIN] = max(fw.min_int, int(fw.quantize(cfg.optimizer.Wmin)[0]))
        ip[K.I_WCLAMP_MAX] = min(fw.max_int, int(fw.quantize(cfg.optimizer.Wmax)[0]))
        ip[K.I_V_TH] = mc["v_th"]
        ip[K.I_V_MIN] = mc["v_min"]
        ip[K.I_I_E] = mc["i_e"]
        ip[K.I_OUT_I_E] = mc["out_i_e"]
        ip[K.I_OUT_V_MIN] = mc["out_v_min"]
        ip[K.I_OUT_E_L] = mc["out_e_l"]
        ip[K.I_F_SPIKE] = fx.f_av_spike
        ip[K.I_F_TARGET] = fx.f_target
        rom = fx.surrogate_rom
        ip[K.I_SG_KIND] = rom["kind"]
        ip[K.I_SG_HEIGHT] = rom["height"]
        ip[K.I_SG_SLOPE_M] = rom["slope"].mantissa
        # slope * |v - v_th|: constant fraction bits + membrane fraction bits -> surrogate fraction bits
        ip[K.I_SG_SLOPE_S] = rom["slope"].shift + f["membrane"].frac_bits - f["surrogate"].frac_bits
        ip[K.I_SG_SHIFT] = rom["shift"]
        self.surrogate_table = np.ascontiguousarray(rom["table"], np.int64)
        ip[K.I_REF_COUNTS] = cfg.steps(cfg.recurrent.t_ref)
        ip[K.I_CUTOFF_REC] = fx.cutoff_rec
        ip[K.I_CUTOFF_OUT] = fx.cutoff_out
        ip[K.I_WEIGHT_ROUNDING] = fx.weight_rounding
        self.adam_rom = np.zeros(1, np.int64)
        ad = fx.adam
        if ad is not None:
            ip[K.I_OPTIMIZER] = 1
            fm, fv = f["adam_m"], f["adam_v"]
            ip[K.I_AM_F], ip[K.I_AM_MIN], ip[K.I_AM_MAX] = fm.frac_bits, fm.min_int, fm.max_int
            ip[K.I_AV_F], ip[K.I_AV_MAX] = fv.frac_bits, fv.max_int
            for const, (im, is_) in ((ad.beta_1, (K.I_B1_M, K.I_B1_S)), (ad.one_minus_beta_1, (K.I_C1_M, K.I_C1_S)),
                                     (ad.beta_2, (K.I_B2_M, K.I_B2_S)), (ad.one_minus_beta_2, (K.I_C2_M, K.I_C2_S))):
                ip[im], ip[is_] = const.mantissa, const.shift
            ip[K.I_EPS_V] = ad.eps_v
            ip[K.I_LUT_BITS], ip[K.I_LUT_SIZE] = ad.lut_bits, ad.rsqrt_lut.size
            ip[K.I_BIAS_S], ip[K.I_BIAS_N] = ad.bias_shift, ad.bias_rom.size
            ip[K.I_RATIO_MIN], ip[K.I_RATIO_MAX] = ad.ratio_min, ad.ratio_max
            # one table for the kernels: the reciprocal-square-root LUT, then the bias-correction ROM
            self.adam_rom = np.concatenate([ad.rsqrt_lut, ad.bias_rom]).astype(np.int64)
        return ip

    def _set_eta(self, eta: float) -> None:
        self.eta = eta
        self.ip[K.I_ETA_M], self.ip[K.I_ETA_S] = self.fx.eta_constant(eta)

    # ---- running -----------------------------------------------------------------------------------------------------
    def run(self, samples: Sequence[Sample], learn: bool) -> Trace:
        if self.network is None:
            raise RuntimeError("load a network before running")
        tl = self.timeline
        tl.check(samples)
        for sample in samples:
            if not np.all((sample.window == 0) | (sample.window == 1)):
                raise ValueError(f"sample {sample.sample_id}: the fixed-point engine takes a 0/1 learning window")
        self._set_eta(self.eta_for(learn))
        t0 = tl.step
        t1 = t0 + len(samples) * tl.sequence
        ev_step, ev_chan = tl.input_events(samples, t1)
        target, window = tl.step_signals(samples, t0, t1)
        trace = self._simulate(t0, t1, ev_step, ev_chan, target, window, -1)
        tl.advance(samples)
        return trace

    def finish(self) -> Trace:
        tl = self.timeline
        if tl.finished:
            raise RuntimeError("finish() was already called")
        t0, t1, force_step = tl.final_block()
        ev_step, ev_chan = tl.input_events([], t1)
        target, window = tl.step_signals([], t0, t1)
        trace = self._simulate(t0, t1, ev_step, ev_chan, target, window, force_step)
        tl.finished = True
        return trace

    def _simulate(self, t0, t1, ev_step, ev_chan, target, window, force_step) -> Trace:
        fm = self.fx.formats["membrane"]
        n_steps = t1 - t0
        n_out, n_rec = self.network.n_out, self.network.n_rec
        target_int, n_sat = fm.quantize(target)
        self._saturations[0, K.Q_MEMBRANE] += n_sat
        window_int = (np.asarray(window) != 0).astype(np.int64)
        y = np.zeros((n_steps, n_out), np.int64)
        raster = np.zeros((n_steps, n_rec), np.uint8)
        ev_pos = np.zeros(1, np.int64)
        h = self.hist
        # NB: under the OpenMP threading layer (numba 0.68) each thread still gets one equal contiguous part of a
        # parallel loop whatever the chunk size (measured; golden_kernels splits its work itself, see split_work)
        numba.set_parallel_chunksize(1)
        K.simulate(t0, t1, self.ip, self.table.grp_ptr, self.syn, self.table.post, self.grp, self.rec, self.out_v,
                   h["psi"], h["lam"], h["err"], self.B, self.surrogate_table,
                   self.fx.decay_roms["alpha"], self.fx.decay_roms["alpha_out"], self.fx.decay_roms["kappa"],
                   self.adam_rom, self.mult, self.x_in,
                   np.ascontiguousarray(ev_step, np.int64), np.ascontiguousarray(ev_chan, np.int64), ev_pos,
                   np.ascontiguousarray(target_int), window_int, force_step, y, raster, self._counters,
                   self._saturations, self.grad, self.spk_src, self.spiked_ring, self.n_spiked_ring)
        steps, neurons = np.nonzero(raster)
        return Trace(t0, fm.to_float(y), steps.astype(np.int64) + t0, neurons.astype(np.int64))

    # ---- results -----------------------------------------------------------------------------------------------------
    def weights(self) -> Network:
        w = self.fx.formats["weight"].to_float(self.syn[K.S_W])
        W_in, W_rec, W_out = self.table.dense(w)
        net = self.network
        return Network(W_in=W_in, W_rec=W_rec, W_out=W_out, B=self.fx.formats["feedback"].to_float(self.B),
                       mask_in=net.mask_in.copy(), mask_rec=net.mask_rec.copy(), mask_out=net.mask_out.copy(),
                       seed=net.seed)

    def weight_ints(self) -> np.ndarray:
        """The weights as the hardware stores them, one per synapse in SynapseTable order."""
        return self.syn[K.S_W].copy()

    def adam_ints(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Adam's state as the hardware stores it: m and sigma per synapse (SynapseTable order), the step count
        per group (2 s: onto recurrent neurons, 2 s + 1: onto readouts)."""
        return self.syn[K.S_ADAM_M].copy(), self.syn[K.S_ADAM_V].copy(), self.grp[:, K.G_ADAM_T].copy()

    def saturations(self) -> dict[str, int]:
        return {name: int(v) for name, v in zip(QUANTITIES, self._saturations.sum(axis=0))}

    def saturation_flags(self) -> int:
        """Sticky overflow flags as the status register reports them: bit i = QUANTITIES[i] saturated."""
        return int(sum(1 << i for i, v in enumerate(self._saturations.sum(axis=0)) if v))

    def counters(self) -> dict[str, int]:
        out = {name: int(v) for name, v in zip(K.COUNTER_NAMES, self._counters.sum(axis=0))}
        out.update({f"saturations_{k}": v for k, v in self.saturations().items()})
        return out
