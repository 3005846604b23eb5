"""Numba kernels of the golden engine: NEST 3.10's event-driven e-prop, operation for operation.

Every floating-point expression below is written in the order NEST's C++ evaluates it (``models/eprop_iaf.cpp``,
``eprop_readout.cpp``, ``eprop_synapse.h``, ``weight_optimizer.cpp``, ``nestkernel/eprop_archiving_node*``), and
sums run in NEST's delivery order; that, not tolerance, is what makes the results bit-identical. No fastmath:
reassociation or FMA contraction would break it. The notes at ``../shared/spec/eprop-nest.md`` explain the
algorithm; comments here point at the C++ they transcribe.

State lives in plain arrays so that one kernel call advances the whole network by a block of steps:

* synapses, grouped by presynaptic source (CSR ``src_ptr``): ``syn_post`` (0..n_rec-1 recurrent targets,
  n_rec.. readouts), ``syn_f[k, F_*]`` float state, ``syn_i[k, I_*]`` integer state;
* neurons: ``rec_f[j, R_*]``, ``rec_i[j, RI_*]``, ``out_f[k, O_*]``;
* histories as rings of power-of-two length indexed by ``step & mask``: ``hist_rec[j, h, H_PSI|H_L|H_FR]``
  (surrogate gradient, learning signal, firing-rate regularisation) and ``hist_out[k, h]`` (error).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

# ---- synapse state columns -------------------------------------------------------------------------------------
F_W, F_ZBUF, F_ZBAR, F_EBAR, F_EBAR_REG, F_GRAD, F_CUM, F_ETA, F_M, F_V, F_B1P, F_B2P = range(12)
N_SYN_F = 12
I_TPREV, I_PREV_FLUSH, I_REMAIN, I_DECAY, I_OPT_STEP, I_N_OPT = range(6)
N_SYN_I = 6

# ---- neuron state ------------------------------------------------------------------------------------------------
R_V, R_I_IN, R_F_AV = range(3)
N_REC_F = 3
RI_REF, RI_LAST_EVENT = range(2)
N_REC_I = 2
O_V, O_I_IN = range(2)
N_OUT_F = 2
H_PSI, H_L, H_FR = range(3)

# ---- parameters (float array `fp`, int array `ip`) ------------------------------------------------------------------
(P_REC_PV, P_REC_PI, P_REC_VTH, P_REC_VMIN, P_REC_IE, P_SG_HEIGHT, P_SG_WIDTH, P_KAPPA, P_KAPPA_REG,
 P_ONE_MINUS_KAPPA_REG, P_C_REG, P_F_TARGET_STEP, P_DT, P_OUT_PV, P_OUT_PI, P_OUT_EL, P_OUT_VMIN, P_OUT_IE,
 P_ETA, P_ETA_FIRST, P_BETA1, P_BETA2, P_EPSILON, P_WMIN, P_WMAX, P_FORCE_WEIGHT) = range(26)
N_FP = 26
(IP_SURROGATE, IP_REF_COUNTS, IP_CUTOFF_REC, IP_CUTOFF_OUT, IP_FLUSH_INTERVAL, IP_OPTIMIZER, IP_BATCH,
 IP_EACH_STEP, IP_ETA_CHANGES, IP_MEMORY_FLUSH_EVERY) = range(10)
N_IP = 10

SURROGATE_CODES = {"piecewise_linear": 0, "exponential": 1, "fast_sigmoid_derivative": 2, "arctan_derivative": 3}
OPTIMIZER_CODES = {"gradient_descent": 0, "adam": 1}
#: Time(Time::ms(inf)).get_steps() in NEST is a huge positive step count; any value > every ISI behaves the same.
INF_STEPS = 1 << 62
NO_FORCE = -1

# ---- operation counters (see ``counter_names``) ----------------------------------------------------------------------
(C_STEPS, C_REC_UPDATES, C_OUT_UPDATES, C_REC_SPIKES, C_INPUT_SPIKES, C_INPUT_EVENTS, C_FLUSH_EVENTS,
 C_SYN_EVENTS, C_GRAD_CALLS, C_HIST_READS, C_HIST_WRITES, C_LS_WRITES, C_OPT_CALLS, C_WEIGHT_WRITES,
 C_ADAM_STEPS, C_MEMORY_FLUSHES) = range(16)
N_COUNTERS = 16
COUNTER_NAMES = (
    "steps", "recurrent_updates", "readout_updates", "recurrent_spikes", "input_spikes", "input_events",
    "flush_events", "synaptic_events", "gradient_calls", "history_reads", "history_writes",
    "learning_signal_writes", "optimizer_calls", "weight_writes", "adam_steps", "memory_flushes",
)


@njit(cache=True)
def surrogate_gradient(code, r, v_m, v_th, height, width):
    """``compute_*_surrogate_gradient`` of ``eprop_archiving_node_recurrent_impl.h`` (r is passed as a double)."""
    if float(r) > 0.0:
        return 0.0
    if code == 0:
        return height * max(0.0, 1.0 - abs(v_m - v_th) / width)
    if code == 1:
        return height * math.exp(-abs(v_m - v_th) / width)
    if code == 2:
        return height * math.pow(1.0 + abs(v_m - v_th) / width, -2.0)
    return height / (1.0 + math.pow((v_m - v_th) / width, 2.0))


@njit(cache=True)
def optimized_weight(syn_f, syn_i, k, idx, gradient, weight, fp, ip, counters):
    """``WeightOptimizer::optimized_weight`` + ``optimize_`` of gradient descent and Adam."""
    if ip[IP_ETA_CHANGES] != 0 and syn_i[k, I_N_OPT] == 0:
        syn_f[k, F_ETA] = fp[P_ETA_FIRST]
    syn_f[k, F_CUM] += gradient
    if syn_i[k, I_OPT_STEP] == 0:
        syn_i[k, I_OPT_STEP] = idx
    counters[C_OPT_CALLS] += 1
    current_step = 1 + idx // ip[IP_BATCH]
    if syn_i[k, I_OPT_STEP] < current_step:
        syn_f[k, F_CUM] /= float(ip[IP_BATCH])
        if ip[IP_OPTIMIZER] == 0:
            weight -= syn_f[k, F_ETA] * syn_f[k, F_CUM]
            syn_f[k, F_CUM] = 0.0
        else:
            beta1 = fp[P_BETA1]
            beta2 = fp[P_BETA2]
            step = syn_i[k, I_OPT_STEP]
            while step < current_step:
                syn_f[k, F_B1P] *= beta1
                syn_f[k, F_B2P] *= beta2
                alpha = syn_f[k, F_ETA] * math.sqrt(1.0 - syn_f[k, F_B2P]) / (1.0 - syn_f[k, F_B1P])
                cum = syn_f[k, F_CUM]
                syn_f[k, F_M] = beta1 * syn_f[k, F_M] + (1.0 - beta1) * cum
                syn_f[k, F_V] = beta2 * syn_f[k, F_V] + (1.0 - beta2) * cum * cum
                weight -= alpha * syn_f[k, F_M] / (math.sqrt(syn_f[k, F_V]) + fp[P_EPSILON])
                syn_f[k, F_CUM] = 0.0
                step += 1
                counters[C_ADAM_STEPS] += 1
        # std::clamp(w, Wmin, Wmax)
        if weight < fp[P_WMIN]:
            weight = fp[P_WMIN]
        elif fp[P_WMAX] < weight:
            weight = fp[P_WMAX]
        syn_f[k, F_ETA] = fp[P_ETA]
        syn_i[k, I_N_OPT] += 1
        syn_i[k, I_OPT_STEP] = current_step
        counters[C_WEIGHT_WRITES] += 1
    return weight


@njit(cache=True)
def compute_gradient(syn_f, syn_i, k, post, n_rec, t_spike, is_flush, hist_rec, hist_out, mask, fp, ip, counters):
    """``eprop_iaf::compute_gradient`` / ``eprop_readout::compute_gradient`` for synapse k (v3.10, with the
    flush-event bookkeeping: ``I_PREV_FLUSH``, the carried gradient, ``I_REMAIN`` and ``I_DECAY``)."""
    counters[C_GRAD_CALLS] += 1
    to_readout = post >= n_rec
    each_step = ip[IP_EACH_STEP] != 0
    t_prev = syn_i[k, I_TPREV]
    isi_steps = t_spike - t_prev
    prev_flush = syn_i[k, I_PREV_FLUSH] != 0
    if not prev_flush:
        syn_i[k, I_REMAIN] = ip[IP_CUTOFF_OUT] if to_readout else ip[IP_CUTOFF_REC]
    z_current = 0.0
    if not prev_flush:
        syn_f[k, F_GRAD] = 0.0
        z_current = 1.0
    t_begin = t_prev - 1
    t_steps = min(syn_i[k, I_REMAIN], isi_steps)
    t_end = t_begin + t_steps
    weight = syn_f[k, F_W]
    z_prev = syn_f[k, F_ZBUF]
    z_bar = syn_f[k, F_ZBAR]
    gradient = syn_f[k, F_GRAD]
    if to_readout:
        kout = post - n_rec
        pv = fp[P_OUT_PV]
        for t in range(t_begin, t_end):
            z = z_prev
            z_prev = z_current
            z_current = 0.0
            err = hist_out[kout, t & mask]
            z_bar = pv * z_bar + z
            increment = err * z_bar
            if each_step:
                gradient = increment
                weight = optimized_weight(syn_f, syn_i, k, t + 1, gradient, weight, fp, ip, counters)
            else:
                gradient += increment
    else:
        pv = fp[P_REC_PV]
        kappa = fp[P_KAPPA]
        kappa_reg = fp[P_KAPPA_REG]
        one_minus_kappa_reg = fp[P_ONE_MINUS_KAPPA_REG]
        e_bar = syn_f[k, F_EBAR]
        e_bar_reg = syn_f[k, F_EBAR_REG]
        for t in range(t_begin, t_end):
            z = z_prev
            z_prev = z_current
            z_current = 0.0
            h = t & mask
            psi = hist_rec[post, h, H_PSI]
            learning_signal = hist_rec[post, h, H_L]
            fr_reg = hist_rec[post, h, H_FR]
            z_bar = pv * z_bar + z
            e = psi * z_bar
            e_bar = kappa * e_bar + e
            e_bar_reg = kappa_reg * e_bar_reg + one_minus_kappa_reg * e
            increment = learning_signal * e_bar + fr_reg * e_bar_reg
            if each_step:
                gradient = increment
                weight = optimized_weight(syn_f, syn_i, k, t + 1, gradient, weight, fp, ip, counters)
            else:
                gradient += increment
        syn_f[k, F_EBAR] = e_bar
        syn_f[k, F_EBAR_REG] = e_bar_reg
    counters[C_HIST_READS] += t_steps
    syn_i[k, I_REMAIN] -= t_steps
    remaining_until_event = isi_steps - t_steps
    syn_i[k, I_DECAY] += remaining_until_event
    decay_steps = syn_i[k, I_DECAY]
    if not is_flush and decay_steps > 0:
        m = float(decay_steps)  # std::pow(double, long) promotes the exponent to double
        if to_readout:
            z_bar *= math.pow(fp[P_OUT_PV], m)
        else:
            z_bar *= math.pow(fp[P_REC_PV], m)
            syn_f[k, F_EBAR] *= math.pow(fp[P_KAPPA], m)
            syn_f[k, F_EBAR_REG] *= math.pow(fp[P_KAPPA_REG], m)
        syn_i[k, I_DECAY] = 0
    syn_f[k, F_ZBUF] = z_prev
    syn_f[k, F_ZBAR] = z_bar
    syn_f[k, F_GRAD] = gradient
    if not is_flush and not each_step:
        weight = optimized_weight(syn_f, syn_i, k, t_end + remaining_until_event, gradient, weight, fp, ip,
                                  counters)
    syn_f[k, F_W] = weight


@njit(cache=True)
def memory_flush(t, syn_f, syn_i, syn_post, n_rec, hist_rec, hist_out, mask, fp, ip, counters):
    """Advance every synapse's walk to entry t-2, as a NEST flush event with stamp t would, so that history older
    than t-1 is never read again and the rings can be reused. Exactly equivalent to not flushing when
    ``optimize_each_step`` is false (the optimizer then runs only at real spikes); not used otherwise."""
    counters[C_MEMORY_FLUSHES] += 1
    for k in range(syn_post.size):
        t_prev = syn_i[k, I_TPREV]
        if t_prev != 0 and t_prev < t:
            compute_gradient(syn_f, syn_i, k, syn_post[k], n_rec, t, True, hist_rec, hist_out, mask, fp, ip,
                             counters)
            syn_i[k, I_TPREV] = t
            syn_i[k, I_PREV_FLUSH] = 1


@njit(cache=True)
def simulate(t0, t1, fp, ip,
             src_ptr, syn_post, syn_f, syn_i, delivery_order,
             rec_f, rec_i, out_f, hist_rec, hist_out, B,
             mult, flush_flag, x_in,
             ev_step, ev_chan, ev_pos,
             target, window, force_step,
             y_trace, spike_raster, counters):
    """Advance the network over steps [t0, t1).

    mult[s] / flush_flag[s]: spike multiplicity (0 = none) / flush event of source s emitted in the previous
    step, delivered at the start of this one. ev_step/ev_chan: input events as (emission step of the input
    neuron, channel), sorted by step, consumed from ev_pos[0]. target/window: readout target and learning
    window per step (rows t - t0). Returns nothing; y_trace[t - t0] gets each readout's signal (V_m),
    spike_raster[t - t0, j] the recurrent spikes.
    """
    n_rec = rec_f.shape[0]
    n_out = out_f.shape[0]
    n_src = src_ptr.size - 1
    mask = hist_out.shape[1] - 1
    flush_every = ip[IP_MEMORY_FLUSH_EVERY]
    pv_rec = fp[P_REC_PV]
    pi_rec = fp[P_REC_PI]
    v_th = fp[P_REC_VTH]
    v_min = fp[P_REC_VMIN]
    ref_counts = ip[IP_REF_COUNTS]
    flush_interval = ip[IP_FLUSH_INTERVAL]
    code = ip[IP_SURROGATE]
    for t in range(t0, t1):
        row = t - t0
        counters[C_STEPS] += 1
        # 1. secondary events (delivered first): readout errors of step t-1 become learning signals of entry
        #    t-2 = stamp - (delay_rec_out + delay_out_rec); NEST adds them readout by readout, in node-id order.
        if t >= 2:
            h_err = (t - 1) & mask
            h_ls = (t - 2) & mask
            for j in range(n_rec):
                acc = hist_rec[j, h_ls, H_L]
                for k in range(n_out):
                    acc += B[j, k] * hist_out[k, h_err]
                hist_rec[j, h_ls, H_L] = acc
            counters[C_LS_WRITES] += n_rec * n_out
        # memory management: walks advanced to entry t-2 (bit-neutral, see memory_flush)
        if flush_every > 0 and t > 0 and t % flush_every == 0:
            memory_flush(t, syn_f, syn_i, syn_post, n_rec, hist_rec, hist_out, mask, fp, ip, counters)
        # the final-update generator's spike reaches the recurrent neurons' ring buffers before any other
        if t == force_step:
            for j in range(n_rec):
                x_in[j] += fp[P_FORCE_WEIGHT]
        # 2. spikes emitted in step t-1 (stamp t), source by source in NEST's delivery order: plasticity first
        #    (eprop_synapse::send), then the spike travels with the new weight. A spike of multiplicity m is
        #    delivered as m separate events (EventDeliveryManager::send_remote "unrolls spike multiplicity as
        #    plastic synapses only handle individual spikes"): m calls of send, m additions of w to the target.
        #    The repeats have isi 0, so they add nothing to the traces: the spike counts once in z_bar.
        for pos in range(n_src):
            s = delivery_order[pos]
            m = mult[s]
            if m == 0:
                continue
            is_flush = flush_flag[s] != 0
            for _ in range(m):
                for k in range(src_ptr[s], src_ptr[s + 1]):
                    post = syn_post[k]
                    if syn_i[k, I_TPREV] != 0:
                        compute_gradient(syn_f, syn_i, k, post, n_rec, t, is_flush, hist_rec, hist_out, mask,
                                         fp, ip, counters)
                    syn_i[k, I_TPREV] = t
                    syn_i[k, I_PREV_FLUSH] = 1 if is_flush else 0
                    if not is_flush:
                        x_in[post] += syn_f[k, F_W] * 1.0
                if not is_flush:
                    counters[C_SYN_EVENTS] += src_ptr[s + 1] - src_ptr[s]
                    if s < n_src - n_rec:
                        counters[C_INPUT_SPIKES] += 1
            mult[s] = 0
            flush_flag[s] = 0
        # 3. recurrent neurons (eprop_iaf::update)
        h_now = t & mask
        for j in range(n_rec):
            if rec_i[j, RI_REF] > 0:
                rec_i[j, RI_REF] -= 1
            z_in = x_in[j]
            x_in[j] = 0.0
            v = pi_rec * rec_f[j, R_I_IN] + z_in + pv_rec * rec_f[j, R_V]
            if v < v_min:
                v = v_min
            r = rec_i[j, RI_REF]
            psi = surrogate_gradient(code, r, v, v_th, fp[P_SG_HEIGHT], fp[P_SG_WIDTH])
            z = 0.0
            if v >= v_th and r == 0:
                z = 1.0
                v -= v_th * z
                rec_i[j, RI_REF] = ref_counts
                rec_i[j, RI_LAST_EVENT] = t
                mult[n_src - n_rec + j] = 1
                spike_raster[row, j] = 1
                counters[C_REC_SPIKES] += 1
            elif rec_i[j, RI_LAST_EVENT] > 0 and t - rec_i[j, RI_LAST_EVENT] >= flush_interval:
                s = n_src - n_rec + j
                mult[s] = 1
                flush_flag[s] = 1
                rec_i[j, RI_LAST_EVENT] = t
                counters[C_FLUSH_EVENTS] += 1
            rec_f[j, R_V] = v
            # history entry t: surrogate gradient, firing-rate regularisation, learning signal 0 (filled later)
            f_av = fp[P_KAPPA_REG] * rec_f[j, R_F_AV] + fp[P_ONE_MINUS_KAPPA_REG] * z / fp[P_DT]
            rec_f[j, R_F_AV] = f_av
            hist_rec[j, h_now, H_PSI] = psi
            hist_rec[j, h_now, H_FR] = fp[P_C_REG] * (f_av - fp[P_F_TARGET_STEP])
            hist_rec[j, h_now, H_L] = 0.0
            rec_f[j, R_I_IN] = 0.0 + fp[P_REC_IE]
        counters[C_REC_UPDATES] += n_rec
        counters[C_HIST_WRITES] += n_rec
        # readouts (eprop_readout::update)
        for k in range(n_out):
            z_in = x_in[n_rec + k]
            x_in[n_rec + k] = 0.0
            v = fp[P_OUT_PI] * out_f[k, O_I_IN] + z_in + fp[P_OUT_PV] * out_f[k, O_V]
            if v < fp[P_OUT_VMIN]:
                v = fp[P_OUT_VMIN]
            out_f[k, O_V] = v
            readout_signal = v + fp[P_OUT_EL]
            error = readout_signal - target[row, k]
            error *= window[row]
            hist_out[k, h_now] = error
            y_trace[row, k] = readout_signal
            out_f[k, O_I_IN] = 0.0 + fp[P_OUT_IE]
        counters[C_OUT_UPDATES] += n_out
        # input neurons (parrots) fire in step t: their events travel in step t+1
        p = ev_pos[0]
        while p < ev_step.size and ev_step[p] == t:
            mult[ev_chan[p]] += 1
            counters[C_INPUT_EVENTS] += 1
            p += 1
        ev_pos[0] = p
        if t == force_step:
            for i in range(n_src - n_rec):
                mult[i] += 1
