"""The golden engine: float64 event-driven e-prop, bit-identical to NEST 3.10 (kernels in golden_kernels)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numba
import numpy as np

from .. import counters as CT
from ..config import NetworkConfig
from ..network import Network, spike_delivery_order
from ..tasks import Sample
from . import golden_kernels as K
from .simd import TILE
from .base import FINAL_UPDATE, Engine, Trace

__all__ = ["GoldenEngine", "SynapseTable"]

#: NEST's defaults of the per-synapse optimizer state and of the common ``eta`` before a script sets one
NEST_DEFAULT_ETA = 1e-4


class SynapseTable:
    """Synapses grouped by presynaptic source (inputs 0..n_in-1, then recurrent neurons), as CSR.

    ``post`` is the target: a recurrent neuron 0..n_rec-1, or readout ``n_rec + k``. Within one source the order
    does not change any number (each target receives one term per source).
    """

    def __init__(self, network: Network):
        n_in, n_rec, n_out = network.n_in, network.n_rec, network.n_out
        posts, weights = [], []
        counts = np.zeros(n_in + n_rec, np.int64)
        for i in range(n_in):
            (targets,) = np.nonzero(network.mask_in[:, i])
            posts.append(targets)
            weights.append(network.W_in[targets, i])
            counts[i] = targets.size
        for i in range(n_rec):
            (rec_targets,) = np.nonzero(network.mask_rec[:, i])
            (out_targets,) = np.nonzero(network.mask_out[:, i])
            posts.append(np.concatenate([rec_targets, n_rec + out_targets]))
            weights.append(np.concatenate([network.W_rec[rec_targets, i], network.W_out[out_targets, i]]))
            counts[n_in + i] = rec_targets.size + out_targets.size
        self.src_ptr = np.zeros(n_in + n_rec + 1, np.int64)
        np.cumsum(counts, out=self.src_ptr[1:])
        # groups 2s (recurrent targets, first) and 2s+1 (readouts) of source s: see golden_kernels
        self.grp_ptr = np.zeros(2 * (n_in + n_rec) + 1, np.int64)
        self.grp_ptr[0::2] = self.src_ptr
        self.grp_ptr[1::2] = self.src_ptr[1:]
        for i in range(n_rec):
            self.grp_ptr[2 * (n_in + i) + 1] = self.src_ptr[n_in + i] + int(network.mask_rec[:, i].sum())
        self.post = np.concatenate(posts).astype(np.int64) if posts else np.zeros(0, np.int64)
        self.weight = np.concatenate(weights).astype(np.float64)
        self.source = np.repeat(np.arange(n_in + n_rec), counts)
        self.n_in, self.n_rec, self.n_out = n_in, n_rec, n_out

    def dense(self, weight: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(W_in, W_rec, W_out) with `weight` (one value per synapse) scattered into the dense matrices."""
        n_in, n_rec, n_out = self.n_in, self.n_rec, self.n_out
        W_in, W_rec, W_out = np.zeros((n_rec, n_in)), np.zeros((n_rec, n_rec)), np.zeros((n_out, n_rec))
        from_input = self.source < n_in
        W_in[self.post[from_input], self.source[from_input]] = weight[from_input]
        to_rec = ~from_input & (self.post < n_rec)
        W_rec[self.post[to_rec], self.source[to_rec] - n_in] = weight[to_rec]
        to_out = ~from_input & (self.post >= n_rec)
        W_out[self.post[to_out] - n_rec, self.source[to_out] - n_in] = weight[to_out]
        return W_in, W_rec, W_out


class GoldenEngine(Engine):
    name = "golden"
    #: walks are advanced every this many steps when that is bit-neutral (optimize_each_step false)
    MEMORY_FLUSH_EVERY = 256
    #: a step's plasticity runs on the worker threads from this many estimated (synapse, entry) updates on: below,
    #: starting the parallel region (about 1-2 us, measured) costs as much as the work it would share
    PARALLEL_MIN_UPDATES = 2048
    #: with two or more threads and memory flushes on, each block of steps runs as one parallel region, a leader
    #: running the steps and a helper advancing the next inputs' walks (golden_kernels.simulate_crew) instead of a
    #: region per step; CREW_HORIZON: the helper looks this many steps ahead, CREW_LEAD: at walks that send at
    #: least this many steps after the leader's current one, CREW_MIN_GAP: each at least this many entries behind
    CREW = True
    CREW_HORIZON = 8
    CREW_LEAD = 2
    CREW_MIN_GAP = 1
    #: decays of up to this many steps read their powers from a table after the parameters
    #: (golden_kernels.decay_powers)
    DECAY_POWERS = 1024
    #: long walks onto recurrent targets in vector blocks from tiled history copies (simd.py); off: all scalar
    #: (the same numbers to the last bit, slower; for tests and comparisons)
    VECTOR_WALK = True

    def __init__(self, config: NetworkConfig):
        super().__init__(config)
        self.network: Network | None = None
        # one counter row per worker thread (the plasticity of different sources runs in parallel)
        self._counters = CT.new_counter_rows(numba.config.NUMBA_NUM_THREADS)
        # NEST's common optimizer properties: eta starts at NEST's default, changes are counted
        self.eta = NEST_DEFAULT_ETA
        self.eta_first_change = NEST_DEFAULT_ETA
        self.eta_changes = 0

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
        n_syn = self.table.post.size
        n_in, n_rec, n_out = network.n_in, network.n_rec, network.n_out

        self.syn = np.zeros((K.N_SYN_ROWS, n_syn))
        self.syn[K.S_W] = self.table.weight
        n_grp = self.table.grp_ptr.size - 1
        self.grp_f = np.zeros((n_grp, K.N_GRP_F))
        self.grp_f[:, K.G_ETA] = NEST_DEFAULT_ETA  # WeightOptimizer::eta_current_ starts at 1e-4
        self.grp_f[:, K.G_B1P] = 1.0
        self.grp_f[:, K.G_B2P] = 1.0
        self.grp_i = np.zeros((n_grp, K.N_GRP_I), np.int64)
        self.grp_i[:, K.G_OPT_STEP] = 1

        rank = spike_delivery_order(n_in, n_rec, cfg.simulation.total_num_virtual_procs)
        self.delivery_order = np.argsort(rank).astype(np.int64)
        self.delivery_rank = rank.astype(np.int64)
        self.pending = np.zeros(n_in + n_rec, np.int64)
        self.listed = np.zeros(n_in + n_rec, np.uint8)
        self.crew_known = np.zeros((2, n_in + n_rec), np.int64)  # the crew's helper's own records (crew_helper)

        rec, out = cfg.recurrent, cfg.readout
        self.rec_f = np.zeros((n_rec, K.N_REC_F))
        self.rec_f[:, K.R_V] = rec.V_m - rec.E_L
        self.rec_i = np.zeros((n_rec, K.N_REC_I), np.int64)
        self.out_f = np.zeros((n_out, K.N_OUT_F))
        self.out_f[:, K.O_V] = out.V_m - out.E_L
        self.B_T = np.ascontiguousarray(network.B.T, dtype=np.float64)  # (n_out, n_rec)
        self.syn_target = self.table.post.astype(np.uint32)

        self.mult = np.zeros(n_in + n_rec, np.int64)
        self.spk_src = np.zeros(n_in + n_rec, np.int64)
        self.spk_mult = np.zeros(n_in + n_rec, np.int64)
        self.spk_flush = np.zeros(n_in + n_rec, np.int8)
        self.work = np.zeros((4, n_in + n_rec), np.int64)
        self.flush_flag = np.zeros(n_in + n_rec, np.int8)
        self.x_in = np.zeros(n_rec + n_out)

        self.each_step = cfg.optimizer.optimize_each_step
        flush_every = 0 if self.each_step else self.MEMORY_FLUSH_EVERY
        fp, self.ip = self._parameters(flush_every)
        self.fp = K.decay_powers(fp, self.DECAY_POWERS)
        # with flushes, no walk reads entries older than K.FLUSH_AGE + 1 flush intervals (memory_flush): four
        # intervals leave one to spare for the crew's helper, which may read a little behind the leader
        capacity = (K.FLUSH_AGE + 2) * self.MEMORY_FLUSH_EVERY if flush_every else 1024
        self.hist = self._new_history(capacity)
        self.tiles: np.ndarray | None = None  # tiled copies of psi, ls, fr (golden_kernels.build_tile)

    def _new_history(self, capacity: int) -> dict[str, np.ndarray]:
        n_rec, n_out = self.network.n_rec, self.network.n_out
        return {"psi": np.zeros((capacity, n_rec)), "ls": np.zeros((capacity, n_rec)),
                "fr": np.zeros((capacity, n_rec)), "err": np.zeros((capacity, n_out)),
                "ls_zero": np.ones(capacity, np.uint8)}

    def _parameters(self, memory_flush_every: int) -> tuple[np.ndarray, np.ndarray]:
        cfg = self.config
        rec, out, opt = cfg.recurrent, cfg.readout, cfg.optimizer
        dt = cfg.simulation.resolution
        fp = np.zeros(K.N_FP)
        ip = np.zeros(K.N_IP, np.int64)
        # eprop_iaf::pre_run_hook: P_v_m = exp(-dt / tau_m), P_i_in = tau_m / C_m * (1 - P_v_m)
        fp[K.P_REC_PV] = math.exp(-dt / rec.tau_m)
        fp[K.P_REC_PI] = rec.tau_m / rec.C_m * (1.0 - fp[K.P_REC_PV])
        fp[K.P_REC_VTH] = rec.V_th - rec.E_L  # stored relative to E_L, as NEST does
        fp[K.P_REC_VMIN] = rec.V_min - rec.E_L
        fp[K.P_REC_IE] = rec.I_e
        fp[K.P_SG_HEIGHT] = rec.surrogate_gradient_height
        fp[K.P_SG_WIDTH] = rec.surrogate_gradient_width
        fp[K.P_KAPPA] = rec.kappa
        fp[K.P_KAPPA_REG] = rec.kappa_reg
        fp[K.P_ONE_MINUS_KAPPA_REG] = 1.0 - rec.kappa_reg
        fp[K.P_C_REG] = rec.c_reg
        fp[K.P_F_TARGET_STEP] = rec.f_target / 1000.0 * dt  # NEST stores f_target in spikes/ms
        fp[K.P_DT] = dt
        fp[K.P_OUT_PV] = math.exp(-dt / out.tau_m)
        fp[K.P_OUT_PI] = out.tau_m / out.C_m * (1.0 - fp[K.P_OUT_PV])
        fp[K.P_OUT_EL] = out.E_L
        fp[K.P_OUT_VMIN] = out.V_min - out.E_L
        fp[K.P_OUT_IE] = out.I_e
        fp[K.P_BETA1] = opt.beta_1
        fp[K.P_BETA2] = opt.beta_2
        fp[K.P_EPSILON] = opt.epsilon
        fp[K.P_WMIN] = opt.Wmin
        fp[K.P_WMAX] = opt.Wmax
        fp[K.P_FORCE_WEIGHT] = FINAL_UPDATE["weight"]
        ip[K.IP_SURROGATE] = K.SURROGATE_CODES[rec.surrogate_gradient_function]
        ip[K.IP_REF_COUNTS] = cfg.steps(rec.t_ref)
        ip[K.IP_CUTOFF_REC] = _steps_or_inf(cfg, rec.eprop_isi_trace_cutoff)
        ip[K.IP_CUTOFF_OUT] = _steps_or_inf(cfg, out.eprop_isi_trace_cutoff)
        ip[K.IP_FLUSH_INTERVAL] = _steps_or_inf(cfg, rec.flush_event_send_interval)
        ip[K.IP_OPTIMIZER] = K.OPTIMIZER_CODES[opt.type]
        ip[K.IP_BATCH] = opt.batch_size
        ip[K.IP_EACH_STEP] = int(opt.optimize_each_step)
        ip[K.IP_MEMORY_FLUSH_EVERY] = memory_flush_every
        ip[K.IP_VECTOR_WALK] = int(self.VECTOR_WALK)
        return fp, ip

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
        target, window = tl.step_signals(samples, t0, t1)
        trace = self._simulate(t0, t1, ev_step, ev_chan, target, window, K.NO_FORCE)
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
        n_steps = t1 - t0
        y = np.zeros((n_steps, self.network.n_out))
        raster = np.zeros((n_steps, self.network.n_rec), np.uint8)
        ev_pos = np.zeros(1, np.int64)
        ev_step = np.ascontiguousarray(ev_step, np.int64)
        ev_chan = np.ascontiguousarray(ev_chan, np.int64)
        block = 2048
        n_threads = numba.get_num_threads()
        threads = np.zeros((2, n_threads + 1), np.int64)  # the kernels split the work (split_work)
        crew = np.zeros(K.N_CREW_WORDS, np.int64)
        crew_threads = np.zeros((2, 3), np.int64)
        for b0 in range(t0, t1, block):
            b1 = min(b0 + block, t1)
            self._ensure_history(b0, b1)
            r0, r1 = b0 - t0, b1 - t0
            h = self.hist
            args = (b0, b1, self.fp, self.ip, self.table.grp_ptr, self.syn, self.table.post, self.syn_target,
                    self.grp_f, self.grp_i, self.delivery_order, self.rec_f, self.rec_i, self.out_f,
                    h["psi"], h["ls"], h["fr"], self._tiles(), h["err"], h["ls_zero"], self.B_T, self.mult,
                    self.flush_flag, self.x_in,
                    ev_step, ev_chan, ev_pos, target[r0:r1], window[r0:r1], force_step, y[r0:r1],
                    raster[r0:r1], self._counters, self.spk_src, self.spk_mult, self.spk_flush, self.work, threads,
                    self.PARALLEL_MIN_UPDATES if n_threads > 1 else K.INF_STEPS,
                    self.delivery_rank, self.pending, self.listed, crew, crew_threads)
            # the crew needs a second thread and bit-neutral walk advances, and leaves out the final update's
            # extra spikes into every input (the helper only knows the input events)
            if (self.CREW and n_threads > 1 and self._counters.shape[0] > 1 and self.ip[K.IP_MEMORY_FLUSH_EVERY]
                    and not b0 <= force_step < b1):
                K.simulate_crew(*args, self.crew_known, self.CREW_HORIZON, self.CREW_LEAD, self.CREW_MIN_GAP)
            else:
                K.simulate(*args)
        steps, neurons = K.raster_spikes(t0, raster)
        return Trace(t0, y, steps, neurons)

    def _tiles(self) -> np.ndarray:
        """The tiled copies of the psi, ls, fr rings (3, capacity // 8, n_rec, 8), cache-line aligned, for the vector
        walk (simd.py); made anew when the rings were grown (then only without memory flushes, where the vector
        walk is not used)."""
        capacity = self.hist["err"].shape[0]
        if self.tiles is None or self.tiles.shape[1] * TILE != capacity:
            assert capacity % TILE == 0, capacity
            self.tiles = CT.aligned_zeros((3, capacity // TILE, self.network.n_rec, TILE), np.float64)
        return self.tiles

    def _ensure_history(self, b0: int, b1: int) -> None:
        """The rings hold entries [step - capacity, step). Without memory flushes (optimize_each_step) a silent
        source pins old entries: grow the rings so that every entry a pending walk may still read survives the
        block [b0, b1)."""
        if self.ip[K.IP_MEMORY_FLUSH_EVERY]:
            return  # flushes every MEMORY_FLUSH_EVERY steps keep the oldest needed entry recent
        pending = self.grp_i[:, K.G_TPREV]
        pending = pending[pending > 0]
        oldest = int(pending.min()) - 1 if pending.size else b0 - 2
        needed = b1 - min(oldest, b0 - 2) + 2
        capacity = self.hist["err"].shape[0]
        if needed <= capacity:
            return
        new_capacity = 1 << int(math.ceil(math.log2(2 * needed)))
        kept = np.arange(max(0, b0 - capacity), b0)
        grown = self._new_history(new_capacity)
        for name, ring in self.hist.items():
            grown[name][kept & (new_capacity - 1)] = ring[kept & (capacity - 1)]
        self.hist = grown

    # ---- results -----------------------------------------------------------------------------------------------------
    def weights(self) -> Network:
        W_in, W_rec, W_out = self.table.dense(self.syn[K.S_W])
        net = self.network
        return Network(W_in=W_in, W_rec=W_rec, W_out=W_out, B=net.B.copy(), mask_in=net.mask_in.copy(),
                       mask_rec=net.mask_rec.copy(), mask_out=net.mask_out.copy(), seed=net.seed)

    def counters(self) -> dict[str, int]:
        return CT.as_dict(self._counters)


def _steps_or_inf(config: NetworkConfig, ms: float) -> int:
    steps = config.steps(ms)
    return K.INF_STEPS if math.isinf(steps) else int(steps)
