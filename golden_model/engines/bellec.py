"""The bellec engine: the time-driven e-prop of Bellec et al. 2020, bit-identical to NEST 3.10's ``_bsshslm_2020``
models (``eprop_iaf_bsshslm_2020``, ``eprop_readout_bsshslm_2020``, ``eprop_synapse_bsshslm_2020``,
``eprop_learning_signal_connection_bsshslm_2020``). Kernels and the rule in ``bellec_kernels``.

It is the baseline the event-driven golden engine is an alternative to: weights change once per update interval
(not at every spike), traces restart at every interval, the eligibility trace is filtered with (1 - kappa) and
kappa from the synapse's ``tau_m_readout``, firing-rate regularisation uses each interval's spike count, neurons
reset at every interval start, and the readout can learn with a cross-entropy (softmax) loss.

Timeline. The engines share the project's convention (``engines/base.py``): sample n occupies steps
``n * T + 2 ... (n + 1) * T + 1`` at the recurrent neurons, its input event at sample step s reaching them in step
``n * T + s + 2``. NEST's ``_bsshslm_2020`` models place their update intervals at ``k * I + shift`` with shift
= offset_gen + delay_in_rec = 2 steps for the recurrent neurons (and their incoming synapses) and one step more
for the readouts, so with ``eprop_update_interval`` I = T (the [bellec] default) every interval is exactly one
sample: the neurons reset when a sample starts, each sample's gradient is applied before the next sample's
first spike is transmitted, and the learning window is the last ``eprop_learning_window`` steps of the sample.
That is how NEST's bsshslm examples align them (spike times ``sequence start + step + offset_gen``, targets from
``sequence start + total_offset``). Consequences the examples work around by removing every input spike at
sample step 0: such a spike (and N-MNIST's rounding to step T, which is the next sample's step 0) reaches the
recurrent neurons at their interval step 0 and NEST drops it; here, like in NEST, it is dropped.

The readout's error at step t compares its signal of step t - 1 with the target of step t, and the target
generators are wired like the examples' (``amplitude_times`` at ``sequence start + total_offset``, total_offset
= offset_gen + delay_in_rec + delay_rec_out + delay_out_norm = 4 steps): the target of sample step tau is in
force in step ``n * T + 4 + tau``, two steps later than the event-driven engines'. The readout signal an engine
reports in its Trace (``y``) is the one compared with that target, moved back onto the sample's steps:
``y[n * T + 2 + tau]`` = the ``readout_signal`` NEST computes in step ``n * T + 4 + tau`` (for
``mean_squared_error`` V_m of step ``n * T + 3 + tau``, for ``cross_entropy`` the softmax), before the learning
window zeroes it. The sample's own ``window`` is not used: the window is the kernel's ``eprop_learning_window``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numba
import numpy as np

from .. import counters as CT
from ..config import NetworkConfig
from ..network import Network, spike_delivery_order
from ..tasks import Sample
from . import bellec_kernels as K
from .base import FINAL_UPDATE, Engine, Trace
from .golden import NEST_DEFAULT_ETA, SynapseTable
from .golden_kernels import SURROGATE_CODES

__all__ = ["BellecEngine", "SIGNAL_DELAY", "REPORT_LAG", "MIN_UPDATE_INTERVAL"]

#: steps by which the targets of the _bsshslm_2020 readout come later than the event-driven engines' (total_offset
#: 4 of the bsshslm examples against the 2 steps of base.INPUT_DELAY)
SIGNAL_DELAY = 2
#: y of step g is NEST's readout_signal of step g + 2: a block [t0, t1) reports y for steps up to t1 - 2
REPORT_LAG = 2
#: intervals shorter than this would need the regularisation of two intervals at once (see bellec_kernels)
MIN_UPDATE_INTERVAL = 4


def ring_capacity(update_interval: int) -> int:
    """History rings hold one interval and the steps until its walks are final, as a power of two."""
    return 1 << int(math.ceil(math.log2(update_interval + 8)))


class BellecEngine(Engine):
    name = "bellec"

    def __init__(self, config: NetworkConfig):
        super().__init__(config)
        steps = config.bellec_steps()
        if steps["update_interval"] < MIN_UPDATE_INTERVAL:
            raise ValueError(f"config [bellec] eprop_update_interval: {steps['update_interval']} steps; the bellec "
                             f"engine needs at least {MIN_UPDATE_INTERVAL}")
        self.interval = steps["update_interval"]
        self.window = steps["learning_window"]
        self.loss = config.bellec.loss
        self.network: Network | None = None
        self._counters = CT.new_counter_rows(numba.config.NUMBA_NUM_THREADS)
        self.eta = NEST_DEFAULT_ETA
        self.eta_first_change = NEST_DEFAULT_ETA
        self.eta_changes = 0
        self._reported = 0
        self._pending_spikes = (np.zeros(0, np.int64), np.zeros(0, np.int64))
        #: set to keep NEST's per-step readout recordables (readout_signal and error_signal after the learning
        #: window, as a multimeter records them) for comparisons: signals()
        self.record_signals = False
        self._signals: dict[str, list[np.ndarray]] = {"readout_signal": [], "error_signal": []}

    # ---- set-up ----------------------------------------------------------------------------------------------------
    def load(self, network: Network) -> None:
        cfg = self.config
        if (network.n_in, network.n_rec, network.n_out) != (cfg.network.n_in, cfg.network.n_rec, cfg.network.n_out):
            raise ValueError(f"network sizes {(network.n_in, network.n_rec, network.n_out)} do not match the "
                             f"config {(cfg.network.n_in, cfg.network.n_rec, cfg.network.n_out)}")
        network.check()
        CT.check_compiled_layout(K.compiled_counter_layout(), K.__name__)
        self.network = network.copy()
        self.table = SynapseTable(network)
        n_in, n_rec, n_out = network.n_in, network.n_rec, network.n_out
        n_src = n_in + n_rec

        self.syn = np.zeros((K.N_SYN_ROWS, self.table.post.size))
        self.syn[K.S_W] = self.table.weight
        n_grp = self.table.grp_ptr.size - 1
        self.grp_i = np.zeros((n_grp, K.N_GRP_I), np.int64)
        # eprop_synapse_bsshslm_2020's copy constructor: t_next_update_ = eprop_update_interval; the pending
        # interval ends at t_next_update_ + the target's shift
        self.grp_i[0::2, K.G_BOUND] = self.interval + K.SHIFT_REC
        self.grp_i[1::2, K.G_BOUND] = self.interval + K.SHIFT_OUT
        self.grp_i[:, K.G_OPT_STEP] = 1
        self.grp_f = np.zeros((n_grp, K.N_GRP_F))
        self.grp_f[:, K.G_ETA] = NEST_DEFAULT_ETA
        self.grp_f[:, K.G_B1P] = 1.0
        self.grp_f[:, K.G_B2P] = 1.0

        rank = spike_delivery_order(n_in, n_rec, cfg.simulation.total_num_virtual_procs)
        self.delivery_order = np.argsort(rank).astype(np.int64)
        rec, out = cfg.recurrent, cfg.readout
        self.rec_f = np.zeros((n_rec, K.N_REC_F))
        self.rec_f[:, K.R_V] = rec.V_m - rec.E_L
        self.rec_i = np.zeros((n_rec, K.N_REC_I), np.int64)
        self.out_f = np.zeros((n_out, K.N_OUT_F))
        self.out_f[:, K.O_V] = out.V_m - out.E_L
        self.B_T = np.ascontiguousarray(network.B.T, dtype=np.float64)
        self.syn_target = self.table.post.astype(np.uint32)

        capacity = ring_capacity(self.interval)
        self.hist_psi = np.zeros((capacity, n_rec))
        self.hist_ls = np.zeros((capacity, n_rec))
        self.ls_zero = np.ones(capacity, np.uint8)
        self.hist_err = np.zeros((capacity, n_out))
        self.spk_ring = np.zeros((capacity, n_src), np.uint8)
        self.fr_last = np.zeros(n_rec)

        self.mult = np.zeros(n_src, np.int64)
        self.todo = np.zeros(n_grp, np.int64)
        self.x_in = np.zeros(n_rec + n_out)
        self.norm_in = np.zeros(n_out)
        self.fp, self.ip = self._parameters()

    def _parameters(self) -> tuple[np.ndarray, np.ndarray]:
        cfg = self.config
        rec, out, opt, bel = cfg.recurrent, cfg.readout, cfg.bellec_optimizer_resolved(), cfg.bellec
        dt = cfg.simulation.resolution
        fp = np.zeros(K.N_FP)
        ip = np.zeros(K.N_IP, np.int64)
        # eprop_iaf_bsshslm_2020::pre_run_hook
        fp[K.P_REC_PV] = math.exp(-dt / rec.tau_m)
        fp[K.P_REC_PI] = rec.tau_m / rec.C_m * (1.0 - fp[K.P_REC_PV])
        fp[K.P_REC_PZ] = 1.0 if bel.recurrent_regular_spike_arrival else 1.0 - fp[K.P_REC_PV]
        fp[K.P_REC_VTH] = rec.V_th - rec.E_L  # stored relative to E_L, as NEST does
        fp[K.P_REC_VMIN] = rec.V_min - rec.E_L
        fp[K.P_REC_IE] = rec.I_e
        fp[K.P_SG_HEIGHT] = rec.surrogate_gradient_height
        fp[K.P_SG_WIDTH] = rec.surrogate_gradient_width
        fp[K.P_C_REG] = rec.c_reg
        fp[K.P_F_TARGET_STEP] = rec.f_target / 1000.0 * dt  # f_target_ in spikes/ms, times dt
        # eprop_synapse_bsshslm_2020: kappa_ = exp(-dt / tau_m_readout)
        fp[K.P_KAPPA] = math.exp(-dt / cfg.bellec_tau_m_readout())
        # eprop_readout_bsshslm_2020::pre_run_hook
        fp[K.P_OUT_PV] = math.exp(-dt / out.tau_m)
        fp[K.P_OUT_PI] = out.tau_m / out.C_m * (1.0 - fp[K.P_OUT_PV])
        fp[K.P_OUT_PZ] = 1.0 if bel.readout_regular_spike_arrival else 1.0 - fp[K.P_OUT_PV]
        fp[K.P_OUT_EL] = out.E_L
        fp[K.P_OUT_VMIN] = out.V_min - out.E_L
        fp[K.P_OUT_IE] = out.I_e
        fp[K.P_BETA1] = opt.beta_1
        fp[K.P_BETA2] = opt.beta_2
        fp[K.P_EPSILON] = opt.epsilon
        fp[K.P_WMIN] = opt.Wmin
        fp[K.P_WMAX] = opt.Wmax
        fp[K.P_FORCE_WEIGHT] = FINAL_UPDATE["weight"]
        ip[K.IP_SURROGATE] = SURROGATE_CODES[rec.surrogate_gradient_function]
        ip[K.IP_REF_COUNTS] = cfg.steps(rec.t_ref)
        ip[K.IP_INTERVAL] = self.interval
        ip[K.IP_WINDOW] = self.window
        ip[K.IP_RESET] = int(bel.eprop_reset_neurons_on_update)
        ip[K.IP_CROSS_ENTROPY] = int(bel.loss == "cross_entropy")
        ip[K.IP_AVERAGE] = int(bel.average_gradient)
        ip[K.IP_OPTIMIZER] = K.OPTIMIZER_CODES[opt.type]
        ip[K.IP_BATCH] = opt.batch_size
        return fp, ip

    def eta_for(self, learn: bool) -> float:
        return self.config.bellec_optimizer_resolved().eta if learn else 0.0

    # ---- running -----------------------------------------------------------------------------------------------------
    def _set_eta(self, eta: float) -> None:
        # WeightOptimizerCommonProperties::set_status: only a changed value counts as a change
        if eta != self.eta:
            if self.eta_changes == 0:
                self.eta_first_change = eta
            self.eta_changes += 1
            self.eta = eta
        self.fp[K.P_ETA] = self.eta
        self.fp[K.P_ETA_FIRST] = self.eta_first_change
        self.ip[K.IP_ETA_CHANGES] = self.eta_changes

    def run(self, samples: Sequence[Sample], learn: bool) -> Trace:
        if self.network is None:
            raise RuntimeError("load a network before running")
        tl = self.timeline
        tl.check(samples)
        self._set_eta(self.eta_for(learn))
        t0 = tl.step
        t1 = t0 + len(samples) * tl.sequence
        ev_step, ev_chan = tl.input_events(samples, t1)
        target, _ = tl.step_signals(samples, t0 - SIGNAL_DELAY, t1 - SIGNAL_DELAY)
        trace = self._simulate(t0, t1, ev_step, ev_chan, target, K.NO_FORCE)
        tl.advance(samples)
        return trace

    def finish(self) -> Trace:
        tl = self.timeline
        if tl.finished:
            raise RuntimeError("finish() was already called")
        t0, t1, force_step = tl.final_block()
        ev_step, ev_chan = tl.input_events([], t1)
        target, _ = tl.step_signals([], t0 - SIGNAL_DELAY, t1 - SIGNAL_DELAY)
        trace = self._simulate(t0, t1, ev_step, ev_chan, target, force_step)
        tl.finished = True
        return trace

    def _simulate(self, t0, t1, ev_step, ev_chan, target, force_step) -> Trace:
        n_steps = t1 - t0
        n_out, n_rec = self.network.n_out, self.network.n_rec
        readout_signal = np.zeros((n_steps, n_out))
        error_signal = np.zeros((n_steps, n_out))
        in_window = np.zeros(n_steps, np.uint8)
        raster = np.zeros((n_steps, n_rec), np.uint8)
        ev_pos = np.zeros(1, np.int64)
        status = np.zeros(3, np.int64)
        # NB: under the OpenMP threading layer (numba 0.68) each thread still gets one equal contiguous part of a
        # parallel loop whatever the chunk size (measured; golden_kernels splits its work itself, see split_work)
        numba.set_parallel_chunksize(1)  # groups differ a lot in work: hand them out one by one
        K.simulate(t0, t1, self.fp, self.ip, self.table.grp_ptr, self.syn, self.table.post, self.syn_target,
                   self.grp_f, self.grp_i, self.delivery_order, self.rec_f, self.rec_i, self.out_f, self.hist_psi,
                   self.hist_ls, self.ls_zero, self.fr_last, self.hist_err, self.spk_ring, self.B_T, self.mult,
                   self.x_in, self.norm_in, self.todo, np.ascontiguousarray(ev_step, np.int64),
                   np.ascontiguousarray(ev_chan, np.int64), ev_pos, np.ascontiguousarray(target), force_step,
                   readout_signal, in_window, error_signal, raster, self._counters, status)
        if status[0]:
            self._raise_like_nest(int(status[1]), int(status[2]))
        if self.record_signals:
            self._signals["readout_signal"].append(np.where(in_window[:, None] != 0, readout_signal, 0.0))
            self._signals["error_signal"].append(error_signal)
        # y of step g is the readout_signal of step g + REPORT_LAG (module doc)
        r0, r1 = self._reported, t1 - REPORT_LAG
        y = readout_signal[r0 + REPORT_LAG - t0: r1 + REPORT_LAG - t0]
        steps, neurons = np.nonzero(raster)
        steps = np.concatenate([self._pending_spikes[0], steps.astype(np.int64) + t0])
        neurons = np.concatenate([self._pending_spikes[1], neurons.astype(np.int64)])
        now = steps < r1
        self._pending_spikes = (steps[~now], neurons[~now])
        self._reported = r1
        return Trace(r0, y.copy(), steps[now], neurons[now])

    def _raise_like_nest(self, group: int, step: int) -> None:
        source = group // 2
        n_in = self.network.n_in
        what = f"input {source}" if source < n_in else f"recurrent neuron {source - n_in}"
        target = "readout" if group % 2 else "recurrent"
        first = K.SHIFT_OUT if group % 2 else K.SHIFT_REC
        trigger = int(self.grp_i[group, K.G_TRIGGER])
        raise RuntimeError(
            f"step {step}: a spike of {what} reached its {target} targets in step {trigger}, before their first "
            f"e-prop update interval (step {first}); NEST 3.10 erases that history at the interval start and then "
            f"stops ('Expected in neuron with ID ... e-prop history entry at t={trigger}'), so the bellec engine "
            f"stops too. Such early spikes need a current (I_e) or an initial V_m above threshold.")

    # ---- results -----------------------------------------------------------------------------------------------------
    def weights(self) -> Network:
        W_in, W_rec, W_out = self.table.dense(self.syn[K.S_W])
        net = self.network
        return Network(W_in=W_in, W_rec=W_rec, W_out=W_out, B=net.B.copy(), mask_in=net.mask_in.copy(),
                       mask_rec=net.mask_rec.copy(), mask_out=net.mask_out.copy(), seed=net.seed)

    def counters(self) -> dict[str, int]:
        """The shared operation counters (golden_model/counters.py; the cost sheet's "Bellec schedule")."""
        return CT.as_dict(self._counters)

    def signals(self) -> dict[str, np.ndarray]:
        """Per-step readout recordables since load (record_signals must have been set): readout_signal and
        error_signal as NEST's multimeter records them (after the learning window), rows = steps."""
        return {name: np.concatenate(blocks) if blocks else np.zeros((0, self.config.network.n_out))
                for name, blocks in self._signals.items()}
