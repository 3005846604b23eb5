"""Numba kernels of the bellec engine: NEST 3.10's time-driven ``_bsshslm_2020`` e-prop, operation for operation.

Transcribed from ``models/eprop_iaf_bsshslm_2020.cpp``, ``eprop_readout_bsshslm_2020.cpp``,
``eprop_synapse_bsshslm_2020.h``, ``weight_optimizer.cpp`` and ``nestkernel/eprop_archiving_node*`` (v3.10). As in
the golden kernels, every floating-point expression keeps NEST's evaluation order, sums run in NEST's delivery
order, and there is no fastmath: that is what makes the results bit-identical rather than close.

The rule (dt = 1 step; T = eprop_update_interval, LW = eprop_learning_window; "shift" is 2 for recurrent
targets, 3 for readouts: offset_gen + delay_in_rec (+ delay_rec_out)):

* update intervals of a target are [k T + shift, (k + 1) T + shift); at an interval start the neurons reset
  (if eprop_reset_neurons_on_update) and a spike arriving at a recurrent neuron is dropped: not transmitted,
  not seen by the plasticity (``eprop_synapse_bsshslm_2020::send`` returns false);
* a synapse's gradient for interval k is one walk over its target's history from its first spike in the
  interval (the "trigger") to the interval's end: z_bar = alpha z_bar + zeta z, e = psi z_bar,
  e_bar = kappa e_bar + (1 - kappa) e, g += L e_bar, sum_e += e; then g += FR sum_e (FR: the interval's
  spike-count regularisation), g /= LW if average_gradient. Readout synapses: g += err z_bar;
* the weight changes (optimizer call with idx = the interval index of the spike) at the synapse's first spike
  after the interval's end, before that spike is transmitted.

When NEST computes the walk. NEST walks lazily, at that first spike after the interval's end. A walk reads the
history as it is at that moment; the history of interval k is final two steps after its end (the learning signal
of entry h arrives with the readout errors of step h + 2, in step h + 3), except that a recurrent synapse whose
next spike arrives in step k T + T + shift + 1 (one step after the end; the end step itself is dropped) walks
while the learning signal of the interval's last entry is still 0. This engine therefore walks, before the spikes are
delivered, the recurrent synapse groups whose source spikes in step (k + 1) T + 3 (the early ones, with the
same incomplete history NEST reads then) and in step (k + 1) T + 4 every other pending group of interval k (the
first step at which any later walk reads the same numbers); the optimizer call stays at the spike. That runs
all walks in two parallel batches per interval and bounds the history to one interval plus a few steps,
without changing a bit.

Synapse groups as in the golden engine: groups ``2 s`` (recurrent targets) and ``2 s + 1`` (readouts) of source
``s`` receive the same sequence of ``send`` calls, so the spike bookkeeping and the optimizer schedule are stored
once per group; weights, gradients and optimizer moments per synapse.

Operations are counted into the shared counters (golden_model/counters.py; its cost sheet's "Bellec schedule"
says what each kernel adds) per step, per group walk, per send and per optimizer call, never inside the synapse
loops.
"""

from __future__ import annotations

import math

import numpy as np
from numba import get_thread_id, njit, prange

from .. import counters as CT
from ..counters import (  # noqa: F401  (indices used by the kernels)
    C_ADAM_STEPS, C_DROPPED_SPIKES, C_GRAD_CALLS, C_GRAD_TERMS, C_HIST_READS, C_HIST_WRITES, C_INPUT_EVENTS,
    C_INPUT_SPIKES, C_LS_TERMS, C_MEM_B_R, C_MEM_CONN_R, C_MEM_HIST_R, C_MEM_HIST_W, C_MEM_NEURON_R,
    C_MEM_NEURON_W, C_MEM_OPT_R, C_MEM_OPT_W, C_MEM_PRE_R, C_MEM_PRE_W, C_MEM_TR_R, C_MEM_TR_W, C_MEM_W_R,
    C_MEM_W_W, C_MEMORY_FLUSH_WALKS, C_NET_ADD, C_NET_DIV, C_NET_MUL, C_NET_SPECIAL, C_NORM_TERMS, C_OPT_CALLS,
    C_OUT_UPDATES, C_PL_ADD, C_PL_DIV, C_PL_MUL, C_PL_SPECIAL, C_PRE_TRACE_UPDATES, C_REC_SPIKES, C_REC_UPDATES,
    C_STEPS, C_SYN_EVENTS, C_TRACE_UPDATES, C_WEIGHT_WRITES,
)
from .golden_kernels import SG_ADD, SG_DIV, SG_MUL, SG_SPECIAL, surrogate_gradient

# ---- per-synapse values (rows of `syn`) --------------------------------------------------------------------------
# weight, the synapse's gradient_, the optimizer's cumulative_gradient_, Adam's m and v, and three walk registers
# (compute_gradient's locals e_bar, sum_e and gradient)
S_W, S_GRAD, S_CUM, S_M, S_V, S_EBAR, S_SUM_E, S_WALK = range(8)
N_SYN_ROWS = 8
# ---- per-group state -----------------------------------------------------------------------------------------------
# t_previous_trigger_spike_, t_spike_previous_, t_next_update_ + shift (the end of the pending interval), walk done,
# the optimizer's optimization_step_ and n_optimize_
G_TRIGGER, G_TPREV, G_BOUND, G_WALKED, G_OPT_STEP, G_N_OPT = range(6)
N_GRP_I = 6
G_ETA, G_B1P, G_B2P = range(3)
N_GRP_F = 3
# ---- neuron state --------------------------------------------------------------------------------------------------
R_V, R_I_IN, R_Z = range(3)
N_REC_F = 3
RI_REF, RI_N_SPIKES = range(2)
N_REC_I = 2
O_V, O_I_IN, O_UNNORM = range(3)
N_OUT_F = 3

# ---- parameters ------------------------------------------------------------------------------------------------------
(P_REC_PV, P_REC_PI, P_REC_PZ, P_REC_VTH, P_REC_VMIN, P_REC_IE, P_SG_HEIGHT, P_SG_WIDTH, P_C_REG,
 P_F_TARGET_STEP, P_KAPPA, P_OUT_PV, P_OUT_PI, P_OUT_PZ, P_OUT_EL, P_OUT_VMIN, P_OUT_IE, P_ETA, P_ETA_FIRST,
 P_BETA1, P_BETA2, P_EPSILON, P_WMIN, P_WMAX, P_FORCE_WEIGHT) = range(25)
N_FP = 25
(IP_SURROGATE, IP_REF_COUNTS, IP_INTERVAL, IP_WINDOW, IP_RESET, IP_CROSS_ENTROPY, IP_AVERAGE, IP_OPTIMIZER,
 IP_BATCH, IP_ETA_CHANGES) = range(10)
N_IP = 10
OPTIMIZER_CODES = {"gradient_descent": 0, "adam": 1}
NO_FORCE = -1
#: get_shift() of the targets: offset_gen + delay_in_rec (eprop_iaf_bsshslm_2020) + delay_rec_out (readout)
SHIFT_REC = 2
SHIFT_OUT = 3
#: the interval steps (of the readouts' signal timing, shift 4) at which the early recurrent walks and all other
#: walks of the previous interval run (see the module doc)
EARLY_WALK_STEP = 3
WALK_STEP = 4

# ---- operation counters: the shared set (golden_model/counters.py) ----------------------------------------------
N_COUNTERS = CT.N_COUNTERS
COUNTER_NAMES = CT.COUNTER_NAMES


@njit(cache=True)
def compiled_counter_layout():
    """The counter indices this module was compiled with (see counters.check_compiled_layout)."""
    return (C_STEPS, C_TRACE_UPDATES, C_PL_SPECIAL, C_MEM_HIST_R, C_MEMORY_FLUSH_WALKS, N_COUNTERS)


@njit(cache=True)
def cpp_mod(a, b):
    """C++'s ``a % b`` (truncated division: the sign of a), not Python's floor modulo. NEST's interval steps
    ``(t - shift) % update_interval`` are negative before the first interval start, and that matters."""
    r = a % b
    if r != 0 and a < 0:
        r -= b
    return r


@njit(cache=True, error_model="numpy")
def walk_recurrent(g, a, b, src, t_begin, t_end, syn, syn_target, spk_ring, hist_psi, hist_ls, ls_zero, fr_last,
                   mask, fp, ip, counters):
    """``eprop_iaf_bsshslm_2020::compute_gradient`` for the synapses [a, b) of group g over the entries
    [t_begin, t_end), a spike of the source starting a new ISI segment (z = 1) at every stamp in the ring; the
    result is added to each synapse's gradient_ (``gradient_ += target->compute_gradient(...)``)."""
    pv = fp[P_REC_PV]
    pz = fp[P_REC_PZ]
    kappa = fp[P_KAPPA]
    n = b - a
    posts = syn_target[a:b]
    e_bar = syn[S_EBAR, a:b]
    sum_e = syn[S_SUM_E, a:b]
    grad = syn[S_WALK, a:b]
    for q in range(n):
        e_bar[q] = 0.0
        sum_e[q] = 0.0
        grad[q] = 0.0
    z_bar = 0.0
    quiet_entries = 0  # entries walked without a learning signal (for counting)
    for t in range(t_begin, t_end):
        h = np.uint64(t & mask)
        z = 1.0 if spk_ring[h, src] != 0 else 0.0
        z_bar = pv * z_bar + pz * z
        if ls_zero[h]:
            # every learning signal of this entry is +0.0 (outside the learning window, or not arrived yet):
            # gradient += 0.0 * e_bar adds a zero to a sum that started at +0.0 and so can never be -0.0: a no-op
            quiet_entries += 1
            for q in range(n):
                e = hist_psi[h, posts[q]] * z_bar
                e_bar[q] = kappa * e_bar[q] + (1.0 - kappa) * e
                sum_e[q] += e
        else:
            for q in range(n):
                j = posts[q]
                e = hist_psi[h, j] * z_bar
                e_bar[q] = kappa * e_bar[q] + (1.0 - kappa) * e
                grad[q] += hist_ls[h, j] * e_bar[q]
                sum_e[q] += e
    average = ip[IP_AVERAGE] != 0
    window = float(ip[IP_WINDOW])
    for q in range(n):
        gradient = grad[q] + fr_last[posts[q]] * sum_e[q]
        if average:
            gradient /= window
        syn[S_GRAD, a + q] += gradient
    # ---- counting (counters.py: Bellec schedule, walk) ----
    c = counters
    steps = t_end - t_begin
    entries = steps * n
    loud = (steps - quiet_entries) * n  # synapse-entries with a learning signal
    c[C_GRAD_CALLS] += n
    c[C_TRACE_UPDATES] += entries
    c[C_HIST_READS] += entries
    c[C_GRAD_TERMS] += loud + n
    c[C_PRE_TRACE_UPDATES] += steps
    c[C_PL_MUL] += 2 * steps + 3 * entries + loud + n
    c[C_PL_ADD] += steps + 2 * entries + loud + 2 * n
    if average:
        c[C_PL_DIV] += n
    c[C_MEM_HIST_R] += entries + loud + steps + n  # psi, L where it is non-zero, the flag per entry, FR
    c[C_MEM_PRE_R] += 2 + steps
    c[C_MEM_CONN_R] += 2 + n
    c[C_MEM_TR_R] += n
    c[C_MEM_TR_W] += n


@njit(cache=True, error_model="numpy")
def walk_readout(g, a, b, src, t_begin, t_end, syn, syn_post, n_rec, spk_ring, hist_err, mask, fp, ip, counters):
    """``eprop_readout_bsshslm_2020::compute_gradient``: g += err z_bar over the readout's entries."""
    pv = fp[P_OUT_PV]
    pz = fp[P_OUT_PZ]
    grad = syn[S_WALK, a:b]
    for q in range(b - a):
        grad[q] = 0.0
    z_bar = 0.0
    for t in range(t_begin, t_end):
        h = t & mask
        z = 1.0 if spk_ring[h, src] != 0 else 0.0
        z_bar = pv * z_bar + pz * z
        err_row = hist_err[h]
        for q in range(b - a):
            grad[q] += err_row[syn_post[a + q] - n_rec] * z_bar
    average = ip[IP_AVERAGE] != 0
    window = float(ip[IP_WINDOW])
    for q in range(b - a):
        gradient = grad[q]
        if average:
            gradient /= window
        syn[S_GRAD, a + q] += gradient
    # ---- counting (counters.py: Bellec schedule, walk) ----
    c = counters
    n = b - a
    steps = t_end - t_begin
    entries = steps * n
    c[C_GRAD_CALLS] += n
    c[C_TRACE_UPDATES] += entries
    c[C_HIST_READS] += entries
    c[C_GRAD_TERMS] += entries
    c[C_PRE_TRACE_UPDATES] += steps
    c[C_PL_MUL] += 2 * steps + entries
    c[C_PL_ADD] += steps + entries + n
    if average:
        c[C_PL_DIV] += n
    c[C_MEM_HIST_R] += entries
    c[C_MEM_PRE_R] += 2 + steps
    c[C_MEM_CONN_R] += 2 + n
    c[C_MEM_TR_R] += n
    c[C_MEM_TR_W] += n


@njit(cache=True)
def optimize(g, a, b, idx, syn, grp_f, grp_i, fp, ip, counters):
    """``weight_ = optimizer_->optimized_weight(cp, idx, gradient_, weight_); gradient_ = 0.0`` for the synapses
    [a, b) of group g (``WeightOptimizer::optimized_weight`` and the gradient-descent / Adam ``optimize_``).
    Counted per call (counters.py: Bellec schedule, optimizer; then the optimizer call as golden's)."""
    n = b - a
    counters[C_OPT_CALLS] += n
    counters[C_PL_ADD] += n  # cum += gradient_
    counters[C_MEM_TR_R] += n
    counters[C_MEM_TR_W] += n
    counters[C_MEM_OPT_R] += n
    counters[C_MEM_OPT_W] += n
    if ip[IP_ETA_CHANGES] != 0 and grp_i[g, G_N_OPT] == 0:
        grp_f[g, G_ETA] = fp[P_ETA_FIRST]
    for k in range(a, b):
        syn[S_CUM, k] += syn[S_GRAD, k]
        syn[S_GRAD, k] = 0.0
    if grp_i[g, G_OPT_STEP] == 0:
        grp_i[g, G_OPT_STEP] = idx
    batch = ip[IP_BATCH]
    current_step = 1 + idx // batch
    if grp_i[g, G_OPT_STEP] >= current_step:
        return
    if batch != 1:  # x / 1.0 == x: skipped where it cannot change anything
        for k in range(a, b):
            syn[S_CUM, k] /= float(batch)
        counters[C_PL_DIV] += n
    eta = grp_f[g, G_ETA]
    w_min = fp[P_WMIN]
    w_max = fp[P_WMAX]
    if ip[IP_OPTIMIZER] == 0:
        for k in range(a, b):
            w = syn[S_W, k] - eta * syn[S_CUM, k]
            syn[S_CUM, k] = 0.0
            if w < w_min:  # std::clamp(w, Wmin, Wmax)
                w = w_min
            elif w_max < w:
                w = w_max
            syn[S_W, k] = w
        counters[C_PL_MUL] += n
        counters[C_PL_ADD] += n
    else:
        beta1 = fp[P_BETA1]
        beta2 = fp[P_BETA2]
        epsilon = fp[P_EPSILON]
        step = grp_i[g, G_OPT_STEP]
        iterations = current_step - step
        while step < current_step:
            grp_f[g, G_B1P] *= beta1
            grp_f[g, G_B2P] *= beta2
            alpha = eta * math.sqrt(1.0 - grp_f[g, G_B2P]) / (1.0 - grp_f[g, G_B1P])
            for k in range(a, b):
                cum = syn[S_CUM, k]
                syn[S_M, k] = beta1 * syn[S_M, k] + (1.0 - beta1) * cum
                syn[S_V, k] = beta2 * syn[S_V, k] + (1.0 - beta2) * cum * cum
                syn[S_W, k] -= alpha * syn[S_M, k] / (math.sqrt(syn[S_V, k]) + epsilon)
                syn[S_CUM, k] = 0.0
            step += 1
        for k in range(a, b):
            w = syn[S_W, k]
            if w < w_min:
                w = w_min
            elif w_max < w:
                w = w_max
            syn[S_W, k] = w
        counters[C_ADAM_STEPS] += iterations * n
        counters[C_PL_MUL] += iterations * (6 * n + 3)
        counters[C_PL_ADD] += iterations * (6 * n + 2)
        counters[C_PL_DIV] += iterations * (n + 1)
        counters[C_PL_SPECIAL] += iterations * (n + 1)
        counters[C_MEM_OPT_R] += iterations * 2 * n
        counters[C_MEM_OPT_W] += iterations * 2 * n
    grp_f[g, G_ETA] = fp[P_ETA]
    grp_i[g, G_N_OPT] += 1
    grp_i[g, G_OPT_STEP] = current_step
    counters[C_WEIGHT_WRITES] += n
    counters[C_MEM_W_R] += n
    counters[C_MEM_W_W] += n


@njit(cache=True)
def recurrent_drops(t, interval):
    """A spike with stamp t reaching a recurrent neuron at its interval step 0 is dropped."""
    return cpp_mod(t - SHIFT_REC, interval) == 0


@njit(cache=True, error_model="numpy")
def source_send(s, t_spike, grp_ptr, syn, syn_post, syn_target, grp_f, grp_i, n_rec, spk_ring, hist_psi, hist_ls,
                ls_zero, fr_last, hist_err, mask, fp, ip, counters):
    """``eprop_synapse_bsshslm_2020::send`` of every outgoing synapse of source s for one unrolled event, up to
    the transmission (the caller's): the drop at a recurrent target's interval step 0, the first-spike trigger,
    and at the first spike after the pending interval's end the walk (unless done already) and the optimizer
    call with the spike's interval index. The engine sends no flush events (NEST's change no number here: the
    parity tests run NEST with them), so their branches are absent. Returns -1, or the group at which NEST 3.10
    would throw."""
    interval = ip[IP_INTERVAL]
    for g in range(2 * s, 2 * s + 2):
        a, b = grp_ptr[g], grp_ptr[g + 1]
        if b == a:
            continue
        to_readout = g % 2 == 1
        shift = SHIFT_OUT if to_readout else SHIFT_REC
        if not to_readout and cpp_mod(t_spike - shift, interval) == 0:
            counters[C_DROPPED_SPIKES] += b - a
            continue
        counters[C_MEM_PRE_R] += 3  # the group's spike record (counters.py: Bellec schedule, spike record)
        counters[C_MEM_PRE_W] += 3
        if grp_i[g, G_TRIGGER] == 0:
            grp_i[g, G_TRIGGER] = t_spike
        bound = grp_i[g, G_BOUND]
        if t_spike > bound:
            idx = (t_spike - shift) // interval  # > 0 here: C++'s truncating division agrees
            trigger = grp_i[g, G_TRIGGER]
            if grp_i[g, G_TPREV] > 0 and trigger < bound and grp_i[g, G_WALKED] == 0:
                # NEST walks here; simulate() has walked this group already, in a batch before delivery, unless
                # its first spike arrived before the target's first update interval: NEST erased those history
                # entries at the interval start and throws in compute_gradient (require_eprop_history_entry)
                if trigger < shift:
                    return g
                if to_readout:
                    walk_readout(g, a, b, s, trigger, bound, syn, syn_post, n_rec, spk_ring, hist_err, mask, fp,
                                 ip, counters)
                else:
                    walk_recurrent(g, a, b, s, trigger, bound, syn, syn_target, spk_ring, hist_psi, hist_ls,
                                   ls_zero, fr_last, mask, fp, ip, counters)
            grp_i[g, G_WALKED] = 0
            optimize(g, a, b, idx, syn, grp_f, grp_i, fp, ip, counters)
            grp_i[g, G_BOUND] = idx * interval + interval + shift
            grp_i[g, G_TRIGGER] = t_spike
        grp_i[g, G_TPREV] = t_spike
    return -1


@njit(cache=True, parallel=True, error_model="numpy")
def walk_pending(t, todo, n_todo, grp_ptr, syn, syn_post, syn_target, grp_i, n_rec, spk_ring, hist_psi, hist_ls,
                 ls_zero, fr_last, hist_err, mask, fp, ip, counters):
    """The walks of every group whose interval ended before step t and that has not walked yet (groups listed in
    todo[:n_todo]); groups are disjoint, so they run in parallel."""
    for i in prange(n_todo):
        g = todo[i]
        a, b = grp_ptr[g], grp_ptr[g + 1]
        c = counters[get_thread_id()]
        if g % 2 == 1:
            walk_readout(g, a, b, g // 2, grp_i[g, G_TRIGGER], grp_i[g, G_BOUND], syn, syn_post, n_rec, spk_ring,
                         hist_err, mask, fp, ip, c)
        else:
            walk_recurrent(g, a, b, g // 2, grp_i[g, G_TRIGGER], grp_i[g, G_BOUND], syn, syn_target, spk_ring,
                           hist_psi, hist_ls, ls_zero, fr_last, mask, fp, ip, c)
        grp_i[g, G_WALKED] = 1


@njit(cache=True, error_model="numpy")
def simulate(t0, t1, fp, ip,
             grp_ptr, syn, syn_post, syn_target, grp_f, grp_i, delivery_order,
             rec_f, rec_i, out_f, hist_psi, hist_ls, ls_zero, fr_last, hist_err, spk_ring, B_T,
             mult, x_in, norm_in, todo,
             ev_step, ev_chan, ev_pos,
             target, force_step,
             readout_signal, in_window, error_signal, spike_raster, counters, status):
    """Advance the network over steps [t0, t1).

    mult[s]: spike multiplicity of source s emitted in the previous step (0 = none), delivered at the start of
    this one. ev_step/ev_chan: input events as (emission step of the input neuron, channel), sorted by step,
    consumed from ev_pos[0]. target[t - t0]: the readout targets delivered in step t. Per step the readouts'
    readout_signal before the learning window is applied (readout_signal, NaN where NEST divides 0 by 0),
    whether the window is open, and error_signal (after the window) are recorded, as are the recurrent spikes.
    counters has one row per thread (sum them); todo is a work list. status[0] != 0: the run stopped in step
    status[2] where NEST 3.10 throws (see the check below).
    """
    c = counters[0]
    n_rec = rec_f.shape[0]
    n_out = out_f.shape[0]
    n_src = (grp_ptr.size - 1) // 2
    n_in = n_src - n_rec
    n_grp = grp_ptr.size - 1
    mask = hist_err.shape[0] - 1
    interval = ip[IP_INTERVAL]
    window = ip[IP_WINDOW]
    reset = ip[IP_RESET] != 0
    cross_entropy = ip[IP_CROSS_ENTROPY] != 0
    pv_rec = fp[P_REC_PV]
    pi_rec = fp[P_REC_PI]
    pz_rec = fp[P_REC_PZ]
    v_th = fp[P_REC_VTH]
    v_min = fp[P_REC_VMIN]
    ref_counts = ip[IP_REF_COUNTS]
    code = ip[IP_SURROGATE]
    interval_f = float(interval)
    weights = syn[S_W]
    sg_add, sg_mul, sg_div, sg_special = SG_ADD[code], SG_MUL[code], SG_DIV[code], SG_SPECIAL[code]
    for t in range(t0, t1):
        row = t - t0
        c[C_STEPS] += 1
        h_now = t & mask
        spk_ring[h_now, :] = 0
        c[C_MEM_PRE_W] += n_src  # this step's spike flags (counters.py: Bellec schedule, spike record)
        # 1. secondary events, delivered first (SimulationManager::update_, "Deliver secondary events before
        #    primary events"). Readout errors of step t-1 (readout entry t-2) become the learning signals of
        #    recurrent entry t-3 = stamp - (delay_rec_out + delay_out_rec + delay_out_norm), readout by readout in
        #    node-id order (EpropArchivingNodeRecurrent::write_learning_signal_to_history, hist_shift_required).
        if t >= 3:
            err_row = hist_err[(t - 2) & mask]
            any_error = False
            for k in range(n_out):
                if err_row[k] != 0.0:
                    any_error = True
            c[C_MEM_HIST_R] += n_out
            if any_error:  # else every L stays +0.0 (0.0 + B * +-0.0 == +0.0)
                ls_row = hist_ls[(t - 3) & mask]
                for k in range(n_out):
                    e_k = err_row[k]
                    B_k = B_T[k]
                    for j in range(n_rec):
                        ls_row[j] += B_k[j] * e_k
                ls_zero[(t - 3) & mask] = 0
                terms = n_rec * n_out  # counters.py: learning signal
                c[C_LS_TERMS] += terms
                c[C_NET_MUL] += terms
                c[C_NET_ADD] += terms
                c[C_MEM_B_R] += terms
                c[C_MEM_HIST_R] += terms
                c[C_MEM_HIST_W] += terms
        #    cross-entropy: each readout receives the others' readout_signal_unnorm of step t-1 (weight 1.0,
        #    rate_connection_delayed, no autapses) into normalization_rate_, in node-id order
        if cross_entropy:
            for k in range(n_out):
                norm = 0.0
                for k2 in range(n_out):
                    if k2 != k:
                        norm += 1.0 * out_f[k2, O_UNNORM]
                norm_in[k] = norm
            terms = n_out * (n_out - 1)  # counters.py: Bellec schedule, cross-entropy normaliser
            c[C_NORM_TERMS] += terms
            c[C_NET_ADD] += terms
            c[C_MEM_NEURON_R] += terms
            c[C_MEM_NEURON_W] += n_out
        # 2. the walks NEST does while delivering this step's spikes, or later with the same numbers (module doc):
        #    the recurrent groups of sources spiking one step after their interval's end (the end step itself is
        #    dropped), then two steps after it every other group of that interval
        early = t > EARLY_WALK_STEP and cpp_mod(t - EARLY_WALK_STEP, interval) == 0
        final = t > WALK_STEP and cpp_mod(t - WALK_STEP, interval) == 0
        if early or final:
            n_todo = 0
            for g in range(n_grp):
                if early and (g % 2 == 1 or mult[g // 2] == 0):
                    continue
                if (grp_ptr[g + 1] > grp_ptr[g] and grp_i[g, G_WALKED] == 0 and grp_i[g, G_TPREV] > 0
                        and grp_i[g, G_TRIGGER] < grp_i[g, G_BOUND] < t):
                    if grp_i[g, G_TRIGGER] < (SHIFT_OUT if g % 2 == 1 else SHIFT_REC):
                        continue  # NEST cannot walk this group: left to source_send, which reports it
                    todo[n_todo] = g
                    n_todo += 1
            if n_todo:
                walk_pending(t, todo, n_todo, grp_ptr, syn, syn_post, syn_target, grp_i, n_rec, spk_ring, hist_psi,
                             hist_ls, ls_zero, fr_last, hist_err, mask, fp, ip, counters)
        # the final-update generator's spike reaches the recurrent neurons' ring buffers before any other
        if t == force_step:
            for j in range(n_rec):
                x_in[j] += fp[P_FORCE_WEIGHT]
        # 3. spikes emitted in step t-1 (stamp t), source by source in NEST's delivery order: plasticity first,
        #    then transmission with the new weight; multiplicity unrolled into separate events
        #    (EventDeliveryManager::send_remote), dropped at recurrent targets at their interval step 0. Without
        #    walks (done above) a send is a few comparisons and at most one optimizer call: serial.
        drop_rec = recurrent_drops(t, interval)
        for pos in range(n_src):
            s = delivery_order[pos]
            m = mult[s]
            if m == 0:
                continue
            mult[s] = 0
            spk_ring[h_now, s] = 1
            for _ in range(m):
                failed = source_send(s, t, grp_ptr, syn, syn_post, syn_target, grp_f, grp_i, n_rec, spk_ring,
                                     hist_psi, hist_ls, ls_zero, fr_last, hist_err, mask, fp, ip, c)
                if failed >= 0:
                    status[0] = 1
                    status[1] = failed
                    status[2] = t
                    return
            a, mid, b = grp_ptr[2 * s], grp_ptr[2 * s + 1], grp_ptr[2 * s + 2]
            if drop_rec:
                a = mid  # only the readouts receive it
            for _ in range(m):
                for k in range(a, b):
                    x_in[syn_post[k]] += weights[k] * 1.0
            if s < n_in:
                c[C_INPUT_SPIKES] += m
            if b > a:  # counters.py: transmission
                events = (b - a) * m
                c[C_SYN_EVENTS] += events
                c[C_NET_ADD] += events
                c[C_MEM_W_R] += events
                c[C_MEM_CONN_R] += events + 2 * m
                c[C_MEM_NEURON_R] += events
                c[C_MEM_NEURON_W] += events
        # 4. recurrent neurons (eprop_iaf_bsshslm_2020::update)
        interval_step = cpp_mod(t - SHIFT_REC, interval)
        psi_row = hist_psi[h_now]
        ls_row = hist_ls[h_now]
        evaluated = 0  # surrogate gradients computed (not refractory)
        spikes = 0
        for j in range(n_rec):
            if interval_step == 0 and reset:
                rec_f[j, R_V] = 0.0
                rec_i[j, RI_REF] = 0
                rec_f[j, R_Z] = 0.0
            if rec_i[j, RI_REF] > 0:
                rec_i[j, RI_REF] -= 1
            z_in = x_in[j]
            x_in[j] = 0.0
            v = pi_rec * rec_f[j, R_I_IN] + pz_rec * z_in + pv_rec * rec_f[j, R_V]
            v -= v_th * rec_f[j, R_Z]
            if v < v_min:
                v = v_min
            z = 0.0
            r = rec_i[j, RI_REF]
            if r == 0:
                evaluated += 1
            psi = surrogate_gradient(code, r, v, v_th, fp[P_SG_HEIGHT], fp[P_SG_WIDTH])
            if v >= v_th and r == 0:
                rec_i[j, RI_N_SPIKES] += 1  # count_spike
                z = 1.0
                rec_i[j, RI_REF] = ref_counts
                mult[n_in + j] = 1
                spike_raster[row, j] = 1
                spikes += 1
            rec_f[j, R_V] = v
            rec_f[j, R_Z] = z
            psi_row[j] = psi  # history entry t: surrogate gradient, learning signal 0 (filled in step t + 3)
            ls_row[j] = 0.0
            if interval_step == interval - 1:
                # write_firing_rate_reg_to_history(t, f_target, c_reg): the interval's spike count
                f_av = float(rec_i[j, RI_N_SPIKES]) / interval_f
                fr_last[j] = fp[P_C_REG] * (f_av - fp[P_F_TARGET_STEP]) / interval_f
                rec_i[j, RI_N_SPIKES] = 0
            rec_f[j, R_I_IN] = 0.0 + fp[P_REC_IE]
        ls_zero[h_now] = 1
        # counters.py: Bellec schedule, recurrent neuron update
        c[C_REC_UPDATES] += n_rec
        c[C_REC_SPIKES] += spikes
        c[C_NET_MUL] += 4 * n_rec + sg_mul * evaluated
        c[C_NET_ADD] += 4 * n_rec + sg_add * evaluated
        c[C_NET_DIV] += sg_div * evaluated
        c[C_NET_SPECIAL] += sg_special * evaluated
        c[C_MEM_NEURON_R] += 6 * n_rec
        c[C_MEM_NEURON_W] += 6 * n_rec
        c[C_HIST_WRITES] += n_rec
        c[C_MEM_HIST_W] += 2 * n_rec
        if interval_step == interval - 1:  # the interval's regularisation
            c[C_NET_MUL] += n_rec
            c[C_NET_ADD] += n_rec
            c[C_NET_DIV] += 2 * n_rec
            c[C_MEM_HIST_W] += n_rec
        # 5. readouts (eprop_readout_bsshslm_2020::update); the error goes to readout entry t - 1
        interval_step = cpp_mod(t - SHIFT_OUT, interval)
        signals_open = not (cpp_mod(t - SHIFT_OUT - 1, interval) < interval - window)
        in_window[row] = 1 if signals_open else 0
        err_now = hist_err[(t - 1) & mask]
        for k in range(n_out):
            if interval_step == 0 and reset:
                out_f[k, O_V] = 0.0
            z_in = x_in[n_rec + k]
            x_in[n_rec + k] = 0.0
            v = fp[P_OUT_PI] * out_f[k, O_I_IN] + fp[P_OUT_PZ] * z_in + fp[P_OUT_PV] * out_f[k, O_V]
            if v < fp[P_OUT_VMIN]:
                v = fp[P_OUT_VMIN]
            out_f[k, O_V] = v
            if cross_entropy:  # compute_error_signal_cross_entropy
                norm_rate = norm_in[k] + out_f[k, O_UNNORM]
                signal = out_f[k, O_UNNORM] / norm_rate
                out_f[k, O_UNNORM] = math.exp(v + fp[P_OUT_EL])
            else:  # compute_error_signal_mean_squared_error
                signal = out_f[k, O_UNNORM]
                out_f[k, O_UNNORM] = v + fp[P_OUT_EL]
            error = signal - target[row, k]
            readout_signal[row, k] = signal
            if not signals_open:
                error = 0.0
            err_now[k] = error
            error_signal[row, k] = error
            out_f[k, O_I_IN] = 0.0 + fp[P_OUT_IE]
        # counters.py: Bellec schedule, readout update
        c[C_OUT_UPDATES] += n_out
        c[C_NET_MUL] += 3 * n_out
        c[C_HIST_WRITES] += n_out
        c[C_MEM_HIST_W] += n_out
        c[C_MEM_NEURON_W] += 4 * n_out
        if cross_entropy:
            c[C_NET_ADD] += 6 * n_out
            c[C_NET_DIV] += n_out
            c[C_NET_SPECIAL] += n_out
            c[C_MEM_NEURON_R] += 5 * n_out
        else:
            c[C_NET_ADD] += 5 * n_out
            c[C_MEM_NEURON_R] += 4 * n_out
        # 6. input neurons (parrots) fire in step t: their events travel in step t+1
        p = ev_pos[0]
        p0 = p
        while p < ev_step.size and ev_step[p] == t:
            mult[ev_chan[p]] += 1
            p += 1
        ev_pos[0] = p
        c[C_INPUT_EVENTS] += p - p0
        if t == force_step:
            for i in range(n_in):
                mult[i] += 1
