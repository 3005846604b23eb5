"""Numba kernels of the golden engine: NEST 3.10's event-driven e-prop, operation for operation.

Every floating-point expression below is written in the order NEST's C++ evaluates it (``models/eprop_iaf.cpp``,
``eprop_readout.cpp``, ``eprop_synapse.h``, ``weight_optimizer.cpp``, ``nestkernel/eprop_archiving_node*``), and
sums run in NEST's delivery order; that, not tolerance, is what makes the results bit-identical. No fastmath:
reassociation or FMA contraction would break it. ``../shared/spec/eprop-nest.md`` explains the algorithm; the
comments here point at the C++ they transcribe.

Synapse groups. All synapses of one presynaptic source onto one kind of target (recurrent neurons, or readouts)
receive exactly the same sequence of ``eprop_synapse::send`` calls: the same spike stamps, the same flush events.
Every state variable that depends only on that sequence is therefore identical across the group, and is stored
once per group: the previous spike time, the flush flag, the remaining cutoff and pending decay steps, the
one-step spike buffer and z_bar (both kinds of target share the target's alpha within a kind), and the optimizer's
schedule (optimization step, number of optimizations, the synapse's current eta, Adam's beta powers). Only
e_bar, e_bar_reg, the gradient, the optimizer's cumulative gradient, Adam's m and v and the weight are per
synapse. Each synapse's own operations keep NEST's order exactly; only the loop nesting changes (synapses
innermost: independent dependency chains).

Layout: groups ``2 s`` (recurrent targets) and ``2 s + 1`` (readouts) of source ``s`` (inputs 0..n_in-1, then
recurrent neurons) hold synapses ``[grp_ptr[g], grp_ptr[g + 1])``; per-synapse values in rows of ``syn``
(``syn[S_W, k]`` ...); histories as rings of power-of-two length, time-major (one step of all neurons is
contiguous): ``hist_psi``, ``hist_ls``, ``hist_fr`` (n_hist, n_rec) and ``hist_err`` (n_hist, n_out); and
``tiles`` (3, n_hist // 8, n_rec, 8), copies of psi, L and fr in complete tiles of eight entries, neuron-major, for
the vector walk (build_tile, simd.py).

The network half of a step (learning signals, transmission, neuron updates, input events) is written as kernels
of its own, shared with the time-driven engine (timedriven_kernels), so both run the very same neurons.
Operations are counted into the shared counters (golden_model/counters.py, whose cost sheet says what each
kernel adds) per step, per group walk and per optimizer call, never inside the synapse loops.

The kernels allocate nothing, so they are compiled without Numba's reference counting (``_nrt=False``): with it,
every call increments and decrements the reference count of each array argument and each view, an atomic
operation on a counter shared by both worker threads. On ``nmnist`` that was about a third of the time spent in
the plasticity (measured; see README "Performance").
"""

from __future__ import annotations

import math

import numpy as np
from numba import get_thread_id, njit, prange

from .. import counters as CT
from ..counters import (  # noqa: F401  (indices used by the kernels)
    C_ADAM_STEPS, C_FLUSH_EVENTS, C_GRAD_CALLS, C_GRAD_TERMS, C_HIST_READS, C_HIST_WRITES, C_INPUT_EVENTS,
    C_INPUT_SPIKES, C_LS_TERMS, C_MEM_B_R, C_MEM_CONN_R, C_MEM_HIST_R, C_MEM_HIST_W, C_MEM_NEURON_R,
    C_MEM_NEURON_W, C_MEM_OPT_R, C_MEM_OPT_W, C_MEM_PRE_R, C_MEM_PRE_W, C_MEM_TR_R, C_MEM_TR_W, C_MEM_W_R,
    C_MEM_W_W, C_MEMORY_FLUSH_WALKS, C_MEMORY_FLUSHES, C_NET_ADD, C_NET_DIV, C_NET_MUL, C_NET_SPECIAL,
    C_OPT_CALLS, C_OUT_UPDATES, C_PL_ADD, C_PL_DIV, C_PL_MUL, C_PL_SPECIAL, C_PRE_TRACE_UPDATES,
    C_REC_SPIKES, C_REC_UPDATES, C_STEPS, C_SYN_EVENTS, C_TRACE_UPDATES, C_WEIGHT_WRITES,
)
from .atomics import atomic_load, atomic_store, compare_and_swap, relax
from .simd import TILE, walk_recurrent_block

# ---- per-synapse values (rows of `syn`) --------------------------------------------------------------------------
S_W, S_EBAR, S_EBAR_REG, S_GRAD, S_CUM, S_M, S_V = range(7)
N_SYN_ROWS = 7
# ---- per-group state -----------------------------------------------------------------------------------------------
G_ZBUF, G_ZBAR, G_ETA, G_B1P, G_B2P = range(5)
N_GRP_F = 5
G_TPREV, G_PREV_FLUSH, G_REMAIN, G_DECAY, G_OPT_STEP, G_N_OPT = range(6)
N_GRP_I = 6
# ---- neuron state --------------------------------------------------------------------------------------------------
R_V, R_I_IN, R_F_AV = range(3)
N_REC_F = 3
RI_REF, RI_LAST_EVENT = range(2)
N_REC_I = 2
O_V, O_I_IN = range(2)
N_OUT_F = 2

# ---- parameters (float array `fp`, int array `ip`) ------------------------------------------------------------------
(P_REC_PV, P_REC_PI, P_REC_VTH, P_REC_VMIN, P_REC_IE, P_SG_HEIGHT, P_SG_WIDTH, P_KAPPA, P_KAPPA_REG,
 P_ONE_MINUS_KAPPA_REG, P_C_REG, P_F_TARGET_STEP, P_DT, P_OUT_PV, P_OUT_PI, P_OUT_EL, P_OUT_VMIN, P_OUT_IE,
 P_ETA, P_ETA_FIRST, P_BETA1, P_BETA2, P_EPSILON, P_WMIN, P_WMAX, P_FORCE_WEIGHT) = range(26)
N_FP = 26
#: after the N_FP parameters, fp may hold the decay powers base ** m for m = 0, 1, ... (decay_powers): N_POW
#: values per m, in this order
POW_OUT_PV, POW_REC_PV, POW_KAPPA, POW_KAPPA_REG = range(4)
N_POW = 4
(IP_SURROGATE, IP_REF_COUNTS, IP_CUTOFF_REC, IP_CUTOFF_OUT, IP_FLUSH_INTERVAL, IP_OPTIMIZER, IP_BATCH,
 IP_EACH_STEP, IP_ETA_CHANGES, IP_MEMORY_FLUSH_EVERY, IP_VECTOR_WALK) = range(11)
N_IP = 11

SURROGATE_CODES = {"piecewise_linear": 0, "exponential": 1, "fast_sigmoid_derivative": 2, "arctan_derivative": 3}
OPTIMIZER_CODES = {"gradient_descent": 0, "adam": 1}
#: Time(Time::ms(inf)).get_steps() in NEST is a huge positive step count; any value > every ISI behaves the same.
INF_STEPS = 1 << 62
NO_FORCE = -1

# ---- operation counters: the shared set (golden_model/counters.py documents what each one counts) ---------------
N_COUNTERS = CT.N_COUNTERS
COUNTER_NAMES = CT.COUNTER_NAMES
#: surrogate-gradient arithmetic per evaluation, by SURROGATE_CODES (counters.py: neuron update)
SG_ADD = (2, 1, 2, 2)
SG_MUL = (1, 1, 1, 0)
SG_DIV = (1, 1, 1, 2)
SG_SPECIAL = (0, 1, 1, 1)
#: G_PREV_FLUSH values: the group's last send was a spike, a NEST flush event, or a memory flush (after a spike)
PREV_SPIKE, PREV_NEST_FLUSH, PREV_MEMORY_FLUSH = 0, 1, 2
#: walks of groups onto recurrent targets with at least this many synapses, over at least this many entries of
#: complete tiles, run in vector blocks (simd.py); the rest in the scalar loop (measured, README "Performance")
SIMD_MIN_SYNAPSES = 4
SIMD_MIN_ENTRIES = 8
#: a memory flush advances the walks that have not moved for this many flush intervals (memory_flush)
FLUSH_AGE = 2


@njit(cache=True)
def compiled_counter_layout():
    """The counter indices this module was compiled with (see counters.check_compiled_layout)."""
    return (C_STEPS, C_TRACE_UPDATES, C_PL_SPECIAL, C_MEM_HIST_R, C_MEMORY_FLUSH_WALKS, N_COUNTERS)


@njit(cache=True)
def decay_powers(fp, n):
    """fp[:N_FP] followed by P_OUT_PV ** m, P_REC_PV ** m, P_KAPPA ** m, P_KAPPA_REG ** m for m = 0 .. n-1, each
    computed as group_gradient computes it (math.pow with a double exponent, compiled the same way), so a decay
    reads exactly the value it would compute: a decay (an ISI beyond the cutoff, about 800 per nmnist sample)
    costs three pow calls otherwise."""
    out = np.empty(N_FP + N_POW * n)
    out[:N_FP] = fp[:N_FP]
    for m in range(n):
        e = float(m)
        out[N_FP + N_POW * m + POW_OUT_PV] = math.pow(fp[P_OUT_PV], e)
        out[N_FP + N_POW * m + POW_REC_PV] = math.pow(fp[P_REC_PV], e)
        out[N_FP + N_POW * m + POW_KAPPA] = math.pow(fp[P_KAPPA], e)
        out[N_FP + N_POW * m + POW_KAPPA_REG] = math.pow(fp[P_KAPPA_REG], e)
    return out


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


@njit(cache=True, _nrt=False)
def group_optimize(g, a, b, idx, syn, grp_f, grp_i, fp, ip, counters):
    """``WeightOptimizer::optimized_weight`` for the synapses [a, b) of group g, after each synapse's
    ``cumulative_gradient_ += gradient``; then gradient descent's or Adam's ``optimize_`` and the clamp.
    Counted per call (counters.py: optimizer call)."""
    n = b - a
    counters[C_OPT_CALLS] += n
    if ip[IP_ETA_CHANGES] != 0 and grp_i[g, G_N_OPT] == 0:
        grp_f[g, G_ETA] = fp[P_ETA_FIRST]
    if grp_i[g, G_OPT_STEP] == 0:
        grp_i[g, G_OPT_STEP] = idx
    batch = ip[IP_BATCH]
    current_step = 1 + idx if batch == 1 else 1 + idx // batch
    if grp_i[g, G_OPT_STEP] >= current_step:
        return
    if batch != 1:  # x / 1.0 == x: skipped when it cannot change anything
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
            # std::clamp(w, Wmin, Wmax)
            if w < w_min:
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


@njit(cache=True, _nrt=False)
def walk_recurrent_vector(e_bar, e_bar_reg, grad, posts, tile_psi, tile_ls, tile_fr, ls_zero, t_begin, t_end, mask,
                          z_prev, z_current, z_bar, pv, kappa, kappa_reg, one_minus_kappa_reg):
    """group_gradient's walk over entries [t_begin, t_end) of a group onto recurrent targets (optimize_each_step
    false) in blocks of eight synapses (simd.py), from the tiled copies of the histories."""
    n = posts.size
    for q in range(0, n, TILE):
        walk_recurrent_block(e_bar, e_bar_reg, grad, posts, q, min(TILE, n - q), tile_psi, tile_ls, tile_fr, ls_zero,
                             t_begin, t_end, mask, z_prev, z_current, z_bar, pv, kappa, kappa_reg,
                             one_minus_kappa_reg)


@njit(cache=True, _nrt=False)
def build_tile(t, hist_psi, hist_ls, hist_fr, tiles, mask):
    """At the start of step t, after the learning signals of entry t - 2: when t - 2 ends a tile (entries
    8 c .. 8 c + 7, all final now: psi and fr written in their step, L two steps later), copy it into the tiled
    histories ``tiles`` (3, n_hist // 8, n_rec, 8) that the vector walk reads (simd.py). The walks of short,
    recent stretches read the row-major rings: their few rows stay in the first-level cache, a tile's 150 lines
    per history do not (measured)."""
    last = t - 2
    if last < 7 or (last & 7) != 7:
        return
    n_rec = hist_psi.shape[1]
    c = (last & mask) >> 3
    h0 = (last - 7) & mask
    for k in range(TILE):
        psi_row, ls_row, fr_row = hist_psi[h0 + k], hist_ls[h0 + k], hist_fr[h0 + k]
        for j in range(n_rec):
            tiles[0, c, j, k] = psi_row[j]
            tiles[1, c, j, k] = ls_row[j]
            tiles[2, c, j, k] = fr_row[j]


@njit(cache=True, _nrt=False)
def group_gradient(g, a, b, to_readout, t_spike, is_flush, memory_flush, syn, syn_post, syn_target, grp_f, grp_i,
                   n_rec, hist_psi, hist_ls, hist_fr, tiles, hist_err, ls_zero, mask, fp, ip, counters):
    """``eprop_iaf::compute_gradient`` / ``eprop_readout::compute_gradient`` (v3.10, including the flush-event
    bookkeeping) for the synapses [a, b) of group g, called only when a previous spike exists. ``memory_flush``:
    the call is the golden engine's own bit-neutral walk advance (a flush event to NEST's algorithm; its overhead
    is counted apart, see counters.py)."""
    n = b - a
    each_step = ip[IP_EACH_STEP] != 0
    t_prev = grp_i[g, G_TPREV]
    isi_steps = t_spike - t_prev
    prev_kind = grp_i[g, G_PREV_FLUSH]
    prev_flush = prev_kind != PREV_SPIKE
    remaining = grp_i[g, G_REMAIN]
    z_current = 0.0
    if not prev_flush:
        remaining = ip[IP_CUTOFF_OUT] if to_readout else ip[IP_CUTOFF_REC]
        z_current = 1.0
        for k in range(a, b):
            syn[S_GRAD, k] = 0.0
    t_begin = t_prev - 1
    t_steps = min(remaining, isi_steps)
    t_end = t_begin + t_steps
    z_prev = grp_f[g, G_ZBUF]
    z_bar = grp_f[g, G_ZBAR]
    grad = syn[S_GRAD]
    quiet_entries = 0  # entries walked through the cheaper branch (no learning signal)
    if to_readout:
        pv = fp[P_OUT_PV]
        for t in range(t_begin, t_end):
            z = z_prev
            z_prev = z_current
            z_current = 0.0
            z_bar = pv * z_bar + z
            err_row = hist_err[t & mask]
            if each_step:
                for k in range(a, b):
                    grad[k] = err_row[syn_post[k] - n_rec] * z_bar
                    syn[S_CUM, k] += grad[k]
                group_optimize(g, a, b, t + 1, syn, grp_f, grp_i, fp, ip, counters)
            else:
                for k in range(a, b):
                    grad[k] += err_row[syn_post[k] - n_rec] * z_bar
    else:
        pv = fp[P_REC_PV]
        kappa = fp[P_KAPPA]
        kappa_reg = fp[P_KAPPA_REG]
        one_minus_kappa_reg = fp[P_ONE_MINUS_KAPPA_REG]
        e_bar = syn[S_EBAR]
        e_bar_reg = syn[S_EBAR_REG]
        # views of the group, made once (making a view has a reference-count cost)
        posts = syn_target[a:b]
        e_bar_group = e_bar[a:b]
        e_bar_reg_group = e_bar_reg[a:b]
        grad_group = grad[a:b]
        cum_group = syn[S_CUM, a:b]
        t_scalar = t_begin  # entries before t_scalar are walked in vector blocks
        if ip[IP_VECTOR_WALK] != 0 and not each_step and n >= SIMD_MIN_SYNAPSES and ip[IP_MEMORY_FLUSH_EVERY] != 0:
            # entries in complete tiles (build_tile: tile c is complete from step 8 c + 9 on, and t_spike is at
            # most the current step); ip[IP_MEMORY_FLUSH_EVERY] != 0: the rings never grow (tiles stay valid)
            t_vector = min(t_end, ((t_spike - 1) >> 3) << 3)
            if t_vector - t_begin >= SIMD_MIN_ENTRIES:
                walk_recurrent_vector(e_bar_group, e_bar_reg_group, grad_group, posts, tiles[0], tiles[1], tiles[2],
                                      ls_zero, t_begin, t_vector, mask, z_prev, z_current, z_bar, pv, kappa,
                                      kappa_reg, one_minus_kappa_reg)
                for t in range(t_begin, t_vector):  # the presynaptic trace and the quiet entries, as below
                    z = z_prev
                    z_prev = z_current
                    z_current = 0.0
                    z_bar = pv * z_bar + z
                    if ls_zero[t & mask]:
                        quiet_entries += 1
                t_scalar = t_vector
        for t in range(t_scalar, t_end):
            z = z_prev
            z_prev = z_current
            z_current = 0.0
            z_bar = pv * z_bar + z
            h = np.uint64(t & mask)
            if each_step:
                for q in range(n):
                    j = posts[q]
                    e = hist_psi[h, j] * z_bar
                    e_bar_group[q] = kappa * e_bar_group[q] + e
                    e_bar_reg_group[q] = kappa_reg * e_bar_reg_group[q] + one_minus_kappa_reg * e
                    grad_group[q] = hist_ls[h, j] * e_bar_group[q] + hist_fr[h, j] * e_bar_reg_group[q]
                    cum_group[q] += grad_group[q]
                group_optimize(g, a, b, t + 1, syn, grp_f, grp_i, fp, ip, counters)
            elif ls_zero[h]:
                # all learning signals of this entry are +0.0 (outside the learning window): L * e_bar is +0.0
                # and +0.0 + fr * e_bar_reg equals fr * e_bar_reg up to the sign of a zero, which cannot reach
                # the weight (the gradient sum starts at +0.0 and only enters w - eta * g)
                quiet_entries += 1
                for q in range(n):
                    j = posts[q]
                    e = hist_psi[h, j] * z_bar
                    e_bar_group[q] = kappa * e_bar_group[q] + e
                    e_bar_reg_group[q] = kappa_reg * e_bar_reg_group[q] + one_minus_kappa_reg * e
                    grad_group[q] += hist_fr[h, j] * e_bar_reg_group[q]
            else:
                for q in range(n):
                    j = posts[q]
                    e = hist_psi[h, j] * z_bar
                    e_bar_group[q] = kappa * e_bar_group[q] + e
                    e_bar_reg_group[q] = kappa_reg * e_bar_reg_group[q] + one_minus_kappa_reg * e
                    grad_group[q] += hist_ls[h, j] * e_bar_group[q] + hist_fr[h, j] * e_bar_reg_group[q]
    remaining -= t_steps
    remaining_until_event = isi_steps - t_steps
    decay_steps = grp_i[g, G_DECAY] + remaining_until_event
    decayed = not is_flush and decay_steps > 0
    if decayed:
        if decay_steps < (fp.size - N_FP) // N_POW:
            # the same powers, computed once (decay_powers: the same libm pow, the same arguments)
            powers = N_FP + N_POW * decay_steps
            if to_readout:
                z_bar *= fp[powers + POW_OUT_PV]
            else:
                z_bar *= fp[powers + POW_REC_PV]
            decay_kappa = fp[powers + POW_KAPPA]
            decay_kappa_reg = fp[powers + POW_KAPPA_REG]
        else:
            m = float(decay_steps)  # std::pow(double, long) promotes the exponent to double
            if to_readout:
                z_bar *= math.pow(fp[P_OUT_PV], m)
            else:
                z_bar *= math.pow(fp[P_REC_PV], m)
            decay_kappa = math.pow(fp[P_KAPPA], m)
            decay_kappa_reg = math.pow(fp[P_KAPPA_REG], m)
        if not to_readout:
            for k in range(a, b):
                syn[S_EBAR, k] *= decay_kappa
                syn[S_EBAR_REG, k] *= decay_kappa_reg
        decay_steps = 0
    grp_i[g, G_REMAIN] = remaining
    grp_i[g, G_DECAY] = decay_steps
    grp_f[g, G_ZBUF] = z_prev
    grp_f[g, G_ZBAR] = z_bar
    hands_over = not is_flush and not each_step
    if hands_over:
        for k in range(a, b):
            syn[S_CUM, k] += grad[k]

    # ---- counting (counters.py: eligibility-trace update, presynaptic trace update, event-driven walk) -------
    c = counters
    entries = n * t_steps
    c[C_TRACE_UPDATES] += entries
    c[C_GRAD_TERMS] += entries
    c[C_HIST_READS] += entries
    c[C_PRE_TRACE_UPDATES] += t_steps
    c[C_PL_MUL] += t_steps
    c[C_PL_ADD] += t_steps
    if to_readout:
        c[C_PL_MUL] += entries
        c[C_PL_ADD] += entries
        c[C_MEM_HIST_R] += entries
    else:
        quiet = n * quiet_entries
        c[C_PL_MUL] += 6 * entries - quiet
        c[C_PL_ADD] += 4 * entries - quiet
        c[C_MEM_HIST_R] += 3 * entries - quiet
        if not each_step:
            c[C_MEM_HIST_R] += t_steps  # the entry's "no learning signal" flag
    if each_step:
        c[C_MEM_OPT_R] += entries  # cum += g at every entry
        c[C_MEM_OPT_W] += entries
    if decayed:
        c[C_PL_SPECIAL] += 1 if to_readout else 3
        c[C_PL_MUL] += 1 if to_readout else 1 + 2 * n
    if hands_over:
        c[C_PL_ADD] += n
        c[C_MEM_OPT_R] += n
        c[C_MEM_OPT_W] += n
    if memory_flush:
        c[C_MEMORY_FLUSH_WALKS] += 1
    else:
        c[C_GRAD_CALLS] += n
        c[C_MEM_PRE_R] += 3
        c[C_MEM_PRE_W] += 3
        c[C_MEM_CONN_R] += 2 + n
        trace_words = 0 if to_readout else 2
        c[C_MEM_TR_R] += n * (trace_words + (1 if prev_kind == PREV_NEST_FLUSH else 0))
        c[C_MEM_TR_W] += n * (trace_words + (1 if is_flush else 0))

    if hands_over:
        group_optimize(g, a, b, t_end + remaining_until_event, syn, grp_f, grp_i, fp, ip, counters)


@njit(cache=True, _nrt=False)
def source_send(s, t_spike, is_flush, memory_flush, grp_ptr, syn, syn_post, syn_target, grp_f, grp_i, n_rec,
                hist_psi, hist_ls, hist_fr, tiles, hist_err, ls_zero, mask, fp, ip, counters):
    """eprop_synapse::send for every outgoing synapse of source s: plasticity if a previous spike exists, then the
    spike time becomes the previous one. Transmission is the caller's."""
    for g in range(2 * s, 2 * s + 2):
        a, b = grp_ptr[g], grp_ptr[g + 1]
        if b == a:
            continue
        if grp_i[g, G_TPREV] != 0:
            group_gradient(g, a, b, g % 2 == 1, t_spike, is_flush, memory_flush, syn, syn_post, syn_target, grp_f,
                           grp_i, n_rec, hist_psi, hist_ls, hist_fr, tiles, hist_err, ls_zero, mask, fp, ip, counters)
        grp_i[g, G_TPREV] = t_spike
        if memory_flush:
            # a memory flush continues the walk of the last real event; remember whether that was a NEST flush
            # (only for counting: any non-zero value means "continue the walk")
            if grp_i[g, G_PREV_FLUSH] != PREV_NEST_FLUSH:
                grp_i[g, G_PREV_FLUSH] = PREV_MEMORY_FLUSH
        else:
            grp_i[g, G_PREV_FLUSH] = PREV_NEST_FLUSH if is_flush else PREV_SPIKE


# ---- sharing the plasticity between the worker threads ------------------------------------------------------------
# Numba's parallel loops split their range into equal contiguous parts, one per thread, whatever the chunk size
# (measured with numba 0.68's OpenMP layer): with work lists sorted largest first, one thread got all the large
# walks and two threads ran no faster than one. So the kernels split the work themselves, by each walk's exact
# cost (walk_cost), and run one parallel iteration per thread. Work arrays: ``work`` (4, n_src) int64, rows below;
# ``threads`` (2, n_threads + 1) int64: row 0 the list bounds of each thread, row 1 scratch (work handed out).
W_ITEM, W_COST, W_OWNER, W_ORDER = range(4)


@njit(cache=True, _nrt=False)
def walk_cost(s, t, grp_ptr, grp_i, ip):
    """(synapse, entry) updates of a send of source s at stamp t: the entries group_gradient walks, times the
    group's synapses."""
    cost = 0
    for g in range(2 * s, 2 * s + 2):
        t_prev = grp_i[g, G_TPREV]
        if t_prev != 0 and t_prev < t:
            if grp_i[g, G_PREV_FLUSH] != PREV_SPIKE:
                remaining = grp_i[g, G_REMAIN]  # a walk flushed before continues where it stopped
            else:
                remaining = ip[IP_CUTOFF_OUT] if g % 2 == 1 else ip[IP_CUTOFF_REC]
            cost += (grp_ptr[g + 1] - grp_ptr[g]) * min(remaining, t - t_prev)
    return cost


@njit(cache=True, _nrt=False)
def split_work(n, work, threads):
    """Hands the items work[W_ITEM, 0:n] (costs work[W_COST, 0:n]) out in that order, each to the thread with the
    least work so far: with the items sorted by decreasing cost, LPT scheduling (at most 4/3 of the best split).
    Thread k's items end up in work[W_ORDER, threads[0, k]:threads[0, k + 1]], in hand-out order."""
    n_threads = threads.shape[1] - 1
    for k in range(n_threads + 1):
        threads[0, k] = 0
        threads[1, k] = 0
    for i in range(n):
        best = 0
        for k in range(1, n_threads):
            if threads[1, k] < threads[1, best]:
                best = k
        threads[1, best] += work[W_COST, i]
        work[W_OWNER, i] = best
        threads[0, best + 1] += 1
    for k in range(n_threads):
        threads[0, k + 1] += threads[0, k]
        threads[1, k] = threads[0, k]  # fill position of thread k
    for i in range(n):
        k = work[W_OWNER, i]
        work[W_ORDER, threads[1, k]] = work[W_ITEM, i]
        threads[1, k] += 1


@njit(cache=True, _nrt=False)
def split_contiguous(n, work, threads):
    """Hands the items work[W_ITEM, 0:n] (costs work[W_COST, 0:n]) out as contiguous runs of about equal cost, one
    run per thread, in the same layout as split_work. For many small items in source order: neighbouring
    sources share cache lines (synapse rows, group state), and two threads writing them at once would move those
    lines between the cores at every entry of their walks."""
    n_threads = threads.shape[1] - 1
    total = 0
    for i in range(n):
        total += work[W_COST, i]
    k = 0
    done = 0
    threads[0, 0] = 0
    for i in range(n):
        work[W_ORDER, i] = work[W_ITEM, i]
        # item i starts a new run once the runs so far hold their share of the total
        while k < n_threads - 1 and done * n_threads >= (k + 1) * total:
            k += 1
            threads[0, k] = i
        done += work[W_COST, i]
    for k2 in range(k + 1, n_threads + 1):
        threads[0, k2] = n


@njit(cache=True, _nrt=False)
def list_flush_work(t, grp_ptr, grp_i, ip, work):
    """The sources a memory flush at stamp t advances (a walk that has not moved for FLUSH_AGE flush intervals),
    with their costs, into work[W_ITEM] / work[W_COST]; returns their number."""
    oldest = t - FLUSH_AGE * ip[IP_MEMORY_FLUSH_EVERY]
    n = 0
    for s in range((grp_ptr.size - 1) // 2):
        pending = False
        for g in range(2 * s, 2 * s + 2):
            if grp_ptr[g + 1] > grp_ptr[g] and grp_i[g, G_TPREV] != 0 and grp_i[g, G_TPREV] < oldest:
                pending = True
        if pending:
            work[W_ITEM, n] = s
            work[W_COST, n] = 1 + walk_cost(s, t, grp_ptr, grp_i, ip)  # + 1: the send's own bookkeeping
            n += 1
    return n


@njit(cache=True, parallel=True, _nrt=False)
def memory_flush(t, grp_ptr, syn, syn_post, syn_target, grp_f, grp_i, n_rec, hist_psi, hist_ls, hist_fr, tiles,
                 hist_err, ls_zero, mask, fp, ip, counters, work, threads):
    """Advance every walk that has not moved for FLUSH_AGE flush intervals to entry t-2, as a NEST flush event
    with stamp t would, so that no walk ever reads history older than FLUSH_AGE + 1 intervals (the rings hold
    four, see GoldenEngine.load) and the rings can be reused. Exactly equivalent to not flushing when
    ``optimize_each_step`` is false (the optimizer then runs only at real spikes); not used otherwise. Walks
    that moved more recently are left to their next spike or a later flush: a walk's entries are the same
    however it is split, and every call costs its fixed part (on nmnist, advancing every walk was about 5,400
    calls per flush; most inputs fire within two intervals).
    Sources are independent (disjoint synapses and groups): they run in parallel, each thread a contiguous run
    of sources of about equal cost (split_contiguous)."""
    counters[0, C_MEMORY_FLUSHES] += 1
    n = list_flush_work(t, grp_ptr, grp_i, ip, work)
    split_contiguous(n, work, threads)
    for k in prange(threads.shape[1] - 1):
        for r in range(threads[0, k], threads[0, k + 1]):
            source_send(work[W_ORDER, r], t, True, True, grp_ptr, syn, syn_post, syn_target, grp_f, grp_i, n_rec,
                        hist_psi, hist_ls, hist_fr, tiles, hist_err, ls_zero, mask, fp, ip, counters[get_thread_id()])


@njit(cache=True, _nrt=False)
def plasticity_order(t, n_spk, spk_src, grp_ptr, grp_i, ip, work, threads):
    """Splits the spiking sources' plasticity between the threads, largest walk first (see split_work); returns
    the number of updates. The order of the plasticity of different sources changes no number: they touch
    disjoint synapses and groups."""
    total = 0
    for i in range(n_spk):
        cost = walk_cost(spk_src[i], t, grp_ptr, grp_i, ip)
        total += cost
        # insertion sort, descending by cost (a few tens of sources per step)
        k = i
        while k > 0 and work[W_COST, k - 1] < cost:
            work[W_COST, k] = work[W_COST, k - 1]
            work[W_ITEM, k] = work[W_ITEM, k - 1]
            k -= 1
        work[W_COST, k] = cost
        work[W_ITEM, k] = i
    split_work(n_spk, work, threads)
    return total


@njit(cache=True, parallel=True, _nrt=False)
def deliver_plasticity(t, spk_src, spk_mult, spk_flush, work, threads, grp_ptr, syn, syn_post, syn_target,
                       grp_f, grp_i, n_rec, hist_psi, hist_ls, hist_fr, tiles, hist_err, ls_zero, mask, fp, ip,
                       counters):
    """The plasticity half of delivering this step's spikes: eprop_synapse::send, once per unrolled event, for
    every outgoing synapse of every spiking source. Different sources touch disjoint synapses and groups, and
    only read the histories, so they run in parallel, each thread its list from plasticity_order; transmission
    stays serial, in NEST's order."""
    for k in prange(threads.shape[1] - 1):
        for r in range(threads[0, k], threads[0, k + 1]):
            i = work[W_ORDER, r]
            s = spk_src[i]
            for _ in range(spk_mult[i]):
                source_send(s, t, spk_flush[i] != 0, False, grp_ptr, syn, syn_post, syn_target, grp_f, grp_i,
                            n_rec, hist_psi, hist_ls, hist_fr, tiles, hist_err, ls_zero, mask, fp, ip,
                            counters[get_thread_id()])


@njit(cache=True, _nrt=False)
def deliver_plasticity_serial(t, n_spk, spk_src, spk_mult, spk_flush, grp_ptr, syn, syn_post, syn_target, grp_f,
                              grp_i, n_rec, hist_psi, hist_ls, hist_fr, tiles, hist_err, ls_zero, mask, fp, ip, c):
    """deliver_plasticity on the calling thread, for steps with little plasticity work."""
    for i in range(n_spk):
        s = spk_src[i]
        for _ in range(spk_mult[i]):
            source_send(s, t, spk_flush[i] != 0, False, grp_ptr, syn, syn_post, syn_target, grp_f, grp_i, n_rec,
                        hist_psi, hist_ls, hist_fr, tiles, hist_err, ls_zero, mask, fp, ip, c)


@njit(cache=True, _nrt=False)
def list_emitted(n_in, mult, ev_chan, p0, p1, listed, pending):
    """The sources that emitted a spike or flush event in this step (to be delivered in the next), after the
    neurons' update and the input events ev_chan[p0:p1]; returns their number. Unordered, without repeats."""
    n = 0
    for p in range(p0, p1):
        s = ev_chan[p]
        if listed[s] == 0:
            listed[s] = 1
            pending[n] = s
            n += 1
    for s in range(n_in, mult.size):
        if mult[s] != 0:
            pending[n] = s
            n += 1
    return n



# ---- the crew: one parallel region per block of steps instead of one per step -----------------------------------
# Starting and joining a parallel region costs about 1 us (an empty two-iteration prange, measured) and, with the
# first accesses of the woken thread, about 1.5 us per step in the engine: with a region per step (the design
# before this one: thread 0 ran the step, the others advanced walks meanwhile) that was 1.2 M of the 5.7 M cycles
# the regions took per nmnist sample. The crew runs a whole block of steps in one region: the leader (thread 0)
# runs the steps exactly as simulate does on one thread, and publishes each step; the helper advances, meanwhile,
# the walks of the inputs that send in the next steps (bit-neutral, see memory_flush), as close to their spikes as
# it gets, so that the leader's walks at those spikes are a few entries long. Nobody waits for a step to start: the
# threads meet only over a source both might touch (Dekker-style, below) and at memory flushes, which they split.
#
# Words of `crew` (int64, one cache line each). X_STEP: the leader's step, published after its learning signals
# and tiles (every entry up to X_STEP - 2 is final then); -1 before the leader starts. X_BUSY: the source whose
# walk the helper is advancing, or -1. X_FLUSH: a memory flush is under way (the helper advances nothing);
# X_FLUSH_STATE / X_FLUSH_STEP: its second half, handed to the helper (IDLE -> POSTED -> TAKEN -> DONE).
# X_EXIT: the leader is done. X_ON: crew mode (the engine's switch).
#
# Why no source is walked by both threads. The helper stores X_BUSY = s, then loads X_STEP (= u); the leader
# stores X_STEP = t, then loads X_BUSY before its sends of step t. Both sequentially consistent: either the
# leader sees s (and waits until the helper is done with it, crew_wait) or the helper sees u >= t. The helper
# advances s only if s does not send in step u (it has no input event in step u - 1) and u is not the block's
# first step (whose sends come from events of an earlier call, not in its list); in later steps the leader sees
# X_BUSY first. The helper advances only inputs (recurrent neurons' spikes are not known ahead), and only in
# blocks without the final update's extra spikes (the engine's choice). Memory flushes: the leader stores
# X_FLUSH = 1, then waits for X_BUSY = -1; the helper checks X_FLUSH after storing X_BUSY, the same hand-shake; the
# leader then sends nothing until both halves of the flush (any source, recurrent ones too) are done.
# Deadlock-free however the two iterations are scheduled: the leader waits only for work the helper has started
# (an advance, or a flush half it claimed by compare-and-swap; a half not claimed the leader runs itself), and a
# helper that finds no leader within HELPER_PATIENCE spins leaves.
X_STEP, X_BUSY, X_FLUSH, X_FLUSH_STATE, X_FLUSH_STEP, X_EXIT, X_ON = 0, 8, 16, 24, 25, 32, 40
N_CREW_WORDS = 48
F_IDLE, F_POSTED, F_TAKEN, F_DONE = range(4)
HELPER_PATIENCE = 1 << 26


@njit(cache=True, _nrt=False)
def crew_wait(crew, n_spk, spk_src):
    """The leader, before the sends of its step: wait while the helper advances one of this step's sources."""
    busy = atomic_load(crew, X_BUSY)
    if busy < 0:
        return
    for i in range(n_spk):
        if spk_src[i] == busy:
            spins = 0
            while atomic_load(crew, X_BUSY) == busy:
                relax(spins)
                spins += 1
            return


@njit(cache=True, _nrt=False)
def crew_flush(t, crew, crew_threads, grp_ptr, syn, syn_post, syn_target, grp_f, grp_i, n_rec, hist_psi, hist_ls,
               hist_fr, tiles, hist_err, ls_zero, mask, fp, ip, c, work):
    """memory_flush for the crew's leader: the helper stops advancing, takes the second half of the sources if it
    claims it in time, and the leader runs the first (and the second, if unclaimed)."""
    atomic_store(crew, X_FLUSH, 1)
    spins = 0
    while atomic_load(crew, X_BUSY) >= 0:
        relax(spins)
        spins += 1
    c[C_MEMORY_FLUSHES] += 1
    n = list_flush_work(t, grp_ptr, grp_i, ip, work)
    split_contiguous(n, work, crew_threads)
    crew[X_FLUSH_STEP] = t
    atomic_store(crew, X_FLUSH_STATE, F_POSTED)
    for r in range(crew_threads[0, 0], crew_threads[0, 1]):
        source_send(work[W_ORDER, r], t, True, True, grp_ptr, syn, syn_post, syn_target, grp_f, grp_i, n_rec,
                    hist_psi, hist_ls, hist_fr, tiles, hist_err, ls_zero, mask, fp, ip, c)
    if compare_and_swap(crew, X_FLUSH_STATE, F_POSTED, F_IDLE):
        for r in range(crew_threads[0, 1], crew_threads[0, 2]):
            source_send(work[W_ORDER, r], t, True, True, grp_ptr, syn, syn_post, syn_target, grp_f, grp_i, n_rec,
                        hist_psi, hist_ls, hist_fr, tiles, hist_err, ls_zero, mask, fp, ip, c)
    else:
        spins = 0
        while atomic_load(crew, X_FLUSH_STATE) != F_DONE:
            relax(spins)
            spins += 1
        atomic_store(crew, X_FLUSH_STATE, F_IDLE)
    atomic_store(crew, X_FLUSH, 0)


@njit(cache=True, _nrt=False)
def sends_in(s, now, step, p, known, ev_step, ev_chan):
    """The helper: whether input s sends in step `now` (has an event in step now - 1). The helper's pass started at
    the leader's step `step` <= now; the events before `step` were recorded in known[1] (each input's last
    delivery), those from `step` on start at ev_step[p]."""
    if now == step:
        return known[1, s] == now
    q = p
    while q < ev_step.size and ev_step[q] < now - 1:
        q += 1
    while q < ev_step.size and ev_step[q] == now - 1:
        if ev_chan[q] == s:
            return True
        q += 1
    return False


@njit(cache=True, _nrt=False)
def crew_helper(t0, crew, crew_threads, work, known, ev_step, ev_chan, horizon, lead, min_gap, grp_ptr, syn, syn_post,
                syn_target, grp_f, grp_i, n_rec, hist_psi, hist_ls, hist_fr, tiles, hist_err, ls_zero, mask, fp, ip,
                c):
    """The crew's helper: until the leader is done, advance the walks of the inputs with events in the leader's
    next `horizon` steps that send at least `lead` steps after the leader's current one, soonest first, each when
    its walk is at least `min_gap` entries behind; take a memory flush's second half when one is posted. t0: the
    block's first step (the events before it are not in ev_step)."""
    spins = 0
    while atomic_load(crew, X_STEP) < 0:
        if atomic_load(crew, X_EXIT) != 0 or spins >= HELPER_PATIENCE:
            return
        relax(spins)
        spins += 1
    n_ev = ev_step.size
    p = 0
    spins = 0
    while atomic_load(crew, X_EXIT) == 0:
        if atomic_load(crew, X_FLUSH) != 0:
            if atomic_load(crew, X_FLUSH_STATE) == F_POSTED and compare_and_swap(crew, X_FLUSH_STATE, F_POSTED,
                                                                                  F_TAKEN):
                t = crew[X_FLUSH_STEP]
                for r in range(crew_threads[0, 1], crew_threads[0, 2]):
                    source_send(work[W_ORDER, r], t, True, True, grp_ptr, syn, syn_post, syn_target, grp_f, grp_i,
                                n_rec, hist_psi, hist_ls, hist_fr, tiles, hist_err, ls_zero, mask, fp, ip, c)
                atomic_store(crew, X_FLUSH_STATE, F_DONE)
            relax(spins)
            spins += 1
            continue
        step = atomic_load(crew, X_STEP)
        while p < n_ev and ev_step[p] < step:
            s = ev_chan[p]
            known[0, s] = known[1, s] = ev_step[p] + 1  # sent (or being sent) by the leader in that step
            p += 1
        advanced = False
        moved = False
        q = p
        # one pass over the events ahead; an event in step e is delivered (sent) in step e + 1
        while q < n_ev and ev_step[q] < step + horizon:
            e = ev_step[q]
            s = ev_chan[q]
            q += 1
            if e + 1 - step < lead:
                continue
            if step - known[0, s] < min_gap:  # known[0, s] = 0: no earlier spike in this block, nor an advance
                continue
            atomic_store(crew, X_BUSY, s)
            now = atomic_load(crew, X_STEP)
            if atomic_load(crew, X_FLUSH) != 0:
                atomic_store(crew, X_BUSY, -1)
                moved = True
                break
            # the leader may be sending it now; in the block's first step it sends the inputs of the step before,
            # whose events an earlier call consumed (ev_step starts at t0): no advance then
            if now == t0 or sends_in(s, now, step, p, known, ev_step, ev_chan):
                atomic_store(crew, X_BUSY, -1)
                continue
            if walk_cost(s, now, grp_ptr, grp_i, ip) > 0:
                source_send(s, now, True, True, grp_ptr, syn, syn_post, syn_target, grp_f, grp_i, n_rec, hist_psi,
                            hist_ls, hist_fr, tiles, hist_err, ls_zero, mask, fp, ip, c)
                advanced = True
            known[0, s] = now
            atomic_store(crew, X_BUSY, -1)
            if now != step:  # the leader moved on: start a new pass from its step
                moved = True
                break
        if advanced or moved:
            spins = 0
        else:  # nothing to do until the leader moves on
            while atomic_load(crew, X_STEP) == step and atomic_load(crew, X_EXIT) == 0 and \
                    atomic_load(crew, X_FLUSH) == 0:
                relax(spins)
                spins += 1


@njit(cache=True, _nrt=False)
def collect_listed(n_pending, pending, delivery_rank, listed, mult, flush_flag, spk_src, spk_mult, spk_flush):
    """collect_spikes for the listed sources only (a few tens per step instead of all sources): sorted into
    NEST's delivery order, then handed out as the same work lists; returns their number."""
    for i in range(1, n_pending):  # insertion sort by delivery rank
        s = pending[i]
        r = delivery_rank[s]
        k = i
        while k > 0 and delivery_rank[pending[k - 1]] > r:
            pending[k] = pending[k - 1]
            k -= 1
        pending[k] = s
    for i in range(n_pending):
        s = pending[i]
        spk_src[i] = s
        spk_mult[i] = mult[s]
        spk_flush[i] = flush_flag[s]
        mult[s] = 0
        flush_flag[s] = 0
        listed[s] = 0
    return n_pending


@njit(cache=True)
def raster_spikes(t0, raster):
    """(global step, neuron) of every spike of a (steps, n_rec) raster, step-major: ``np.nonzero`` in the same
    order, for the mostly-zero rasters of a run without numpy's general-purpose pass (measured on a 3,000-step
    nmnist block: 0.25 ms instead of 1.8 ms)."""
    n = 0
    for v in raster.ravel():
        if v != 0:
            n += 1
    steps = np.empty(n, np.int64)
    neurons = np.empty(n, np.int64)
    k = 0
    for row in range(raster.shape[0]):
        for j in range(raster.shape[1]):
            if raster[row, j] != 0:
                steps[k] = t0 + row
                neurons[k] = j
                k += 1
    return steps, neurons


# ---- the network half of a step, shared by every engine that runs NEST's neurons (golden, timedriven) -----------

@njit(cache=True, _nrt=False)
def deliver_learning_signals(t, hist_err, hist_ls, ls_zero, B_T, mask, c):
    """Secondary events, delivered first in step t: readout errors of step t-1 become learning signals of entry
    t-2 = stamp - (delay_rec_out + delay_out_rec); NEST adds them readout by readout, in node-id order."""
    if t < 2:
        return
    n_out, n_rec = B_T.shape
    err_row = hist_err[(t - 1) & mask]
    ls_row = hist_ls[(t - 2) & mask]
    any_error = False
    for k in range(n_out):
        if err_row[k] != 0.0:
            any_error = True
    c[C_MEM_HIST_R] += n_out
    if any_error:  # else every L stays +0.0 (0.0 + B * +-0.0 == +0.0)
        for k in range(n_out):  # per neuron j the readouts are added in ascending k, as NEST does
            e_k = err_row[k]
            B_k = B_T[k]
            for j in range(n_rec):
                ls_row[j] += B_k[j] * e_k
        ls_zero[(t - 2) & mask] = 0
        terms = n_rec * n_out
        c[C_LS_TERMS] += terms
        c[C_NET_MUL] += terms
        c[C_NET_ADD] += terms
        c[C_MEM_B_R] += terms
        c[C_MEM_HIST_R] += terms
        c[C_MEM_HIST_W] += terms


@njit(cache=True, _nrt=False)
def collect_spikes(delivery_order, mult, flush_flag, spk_src, spk_mult, spk_flush):
    """The sources whose spikes (or flush events) of the previous step are delivered now, in NEST's delivery
    order, as work lists; returns their number."""
    n_spk = 0
    for pos in range(delivery_order.size):
        s = delivery_order[pos]
        if mult[s] != 0:
            spk_src[n_spk] = s
            spk_mult[n_spk] = mult[s]
            spk_flush[n_spk] = flush_flag[s]
            n_spk += 1
            mult[s] = 0
            flush_flag[s] = 0
    return n_spk


@njit(cache=True, _nrt=False)
def transmit(n_spk, spk_src, spk_mult, spk_flush, grp_ptr, weights, syn_post, x_in, n_in, c):
    """Spikes travel with the (new) weights into the targets' input accumulators, source by source in NEST's
    order. A spike of multiplicity m is m deliveries (m additions of w). Flush events are not transmitted."""
    for i in range(n_spk):
        if spk_flush[i] != 0:
            continue
        s = spk_src[i]
        a, b = grp_ptr[2 * s], grp_ptr[2 * s + 2]
        m = spk_mult[i]
        for _ in range(m):
            for k in range(a, b):
                x_in[syn_post[k]] += weights[k] * 1.0
        events = (b - a) * m
        c[C_SYN_EVENTS] += events
        c[C_NET_ADD] += events
        c[C_MEM_W_R] += events
        c[C_MEM_CONN_R] += events + 2 * m
        c[C_MEM_NEURON_R] += events
        c[C_MEM_NEURON_W] += events
        if s < n_in:
            c[C_INPUT_SPIKES] += m


@njit(cache=True, _nrt=False)
def update_neurons(t, row, fp, ip, rec_f, rec_i, out_f, hist_psi, hist_ls, hist_fr, hist_err, ls_zero, mask, mult,
                   flush_flag, x_in, n_in, target, window, y_trace, spike_raster, c):
    """eprop_iaf::update of every recurrent neuron, then eprop_readout::update of every readout, for step t;
    writes history entry t. Spikes (and NEST flush events) are registered in mult / flush_flag for delivery in
    step t+1."""
    n_rec = rec_f.shape[0]
    n_out = out_f.shape[0]
    pv_rec = fp[P_REC_PV]
    pi_rec = fp[P_REC_PI]
    v_th = fp[P_REC_VTH]
    v_min = fp[P_REC_VMIN]
    ref_counts = ip[IP_REF_COUNTS]
    flush_interval = ip[IP_FLUSH_INTERVAL]
    code = ip[IP_SURROGATE]
    h_now = t & mask
    psi_row = hist_psi[h_now]
    ls_row = hist_ls[h_now]
    fr_row = hist_fr[h_now]
    evaluated = 0  # surrogate gradients computed (not refractory)
    spikes = 0
    for j in range(n_rec):
        if rec_i[j, RI_REF] > 0:
            rec_i[j, RI_REF] -= 1
        z_in = x_in[j]
        x_in[j] = 0.0
        v = pi_rec * rec_f[j, R_I_IN] + z_in + pv_rec * rec_f[j, R_V]
        if v < v_min:
            v = v_min
        r = rec_i[j, RI_REF]
        if r == 0:
            evaluated += 1
        psi = surrogate_gradient(code, r, v, v_th, fp[P_SG_HEIGHT], fp[P_SG_WIDTH])
        z = 0.0
        if v >= v_th and r == 0:
            z = 1.0
            v -= v_th * z
            rec_i[j, RI_REF] = ref_counts
            rec_i[j, RI_LAST_EVENT] = t
            mult[n_in + j] = 1
            spike_raster[row, j] = 1
            spikes += 1
        elif rec_i[j, RI_LAST_EVENT] > 0 and t - rec_i[j, RI_LAST_EVENT] >= flush_interval:
            # FlushEventMechanism: no spike for flush_event_send_interval -> a flush event to the synapses
            mult[n_in + j] = 1
            flush_flag[n_in + j] = 1
            rec_i[j, RI_LAST_EVENT] = t
            c[C_FLUSH_EVENTS] += 1
        rec_f[j, R_V] = v
        # history entry t: surrogate gradient, firing-rate regularisation, learning signal 0 (filled later)
        f_av = fp[P_KAPPA_REG] * rec_f[j, R_F_AV] + fp[P_ONE_MINUS_KAPPA_REG] * z / fp[P_DT]
        rec_f[j, R_F_AV] = f_av
        psi_row[j] = psi
        fr_row[j] = fp[P_C_REG] * (f_av - fp[P_F_TARGET_STEP])
        ls_row[j] = 0.0
        rec_f[j, R_I_IN] = 0.0 + fp[P_REC_IE]
    ls_zero[h_now] = 1
    # readouts (eprop_readout::update)
    err_now = hist_err[h_now]
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
        err_now[k] = error
        y_trace[row, k] = readout_signal
        out_f[k, O_I_IN] = 0.0 + fp[P_OUT_IE]
    # ---- counting (counters.py: recurrent neuron update, readout update) ----
    c[C_REC_UPDATES] += n_rec
    c[C_OUT_UPDATES] += n_out
    c[C_REC_SPIKES] += spikes
    c[C_NET_MUL] += 5 * n_rec + SG_MUL[code] * evaluated + spikes + 3 * n_out
    c[C_NET_ADD] += 5 * n_rec + SG_ADD[code] * evaluated + spikes + 5 * n_out
    c[C_NET_DIV] += n_rec + SG_DIV[code] * evaluated
    c[C_NET_SPECIAL] += SG_SPECIAL[code] * evaluated
    c[C_MEM_NEURON_R] += 5 * n_rec + 3 * n_out
    c[C_MEM_NEURON_W] += 5 * n_rec + 3 * n_out
    c[C_HIST_WRITES] += n_rec + n_out
    c[C_MEM_HIST_W] += 3 * n_rec + n_out


@njit(cache=True, _nrt=False)
def take_input_events(t, ev_step, ev_chan, ev_pos, mult, force_step, n_in, c):
    """Input neurons (parrots) fire in step t the events of this step (their spikes travel in step t+1); at the
    final update every input neuron gets one more spike."""
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


@njit(cache=True, _nrt=False)
def simulate(t0, t1, fp, ip,
             grp_ptr, syn, syn_post, syn_target, grp_f, grp_i, delivery_order,
             rec_f, rec_i, out_f, hist_psi, hist_ls, hist_fr, tiles, hist_err, ls_zero, B_T,
             mult, flush_flag, x_in,
             ev_step, ev_chan, ev_pos,
             target, window, force_step,
             y_trace, spike_raster, counters, spk_src, spk_mult, spk_flush, work, threads, parallel_min_updates,
             delivery_rank, pending, listed, crew, crew_threads):
    """Advance the network over steps [t0, t1).

    mult[s] / flush_flag[s]: spike multiplicity (0 = none) / flush event of source s emitted in the previous
    step, delivered at the start of this one. ev_step/ev_chan: input events as (emission step of the input
    neuron, channel), sorted by step, consumed from ev_pos[0]. target/window: readout target and learning
    window per step (rows t - t0). y_trace[t - t0] gets each readout's signal (V_m), spike_raster[t - t0, j] the
    recurrent spikes. counters has one row per thread (sum them); spk_* are work lists of n_src entries; work
    (4, n_src) and threads (2, n_threads + 1) the threads' shares (see split_work). A step runs its plasticity on
    the worker threads when its number of (synapse, entry) updates is at least parallel_min_updates, else on the
    calling thread. delivery_rank: each source's position in delivery_order; pending, listed: scratch (n_src
    entries, listed all 0 between calls). crew: the crew's words (crew[X_ON] != 0: this call is the crew's leader,
    see simulate_crew; it runs every step on this thread and starts no parallel region), crew_threads (2, 3): the
    two halves of a memory flush.
    """
    c = counters[0]
    n_rec = rec_f.shape[0]
    n_src = (grp_ptr.size - 1) // 2
    n_in = n_src - n_rec
    mask = hist_err.shape[0] - 1
    flush_every = ip[IP_MEMORY_FLUSH_EVERY]
    weights = syn[S_W]
    leader = crew[X_ON] != 0
    scan_all = True  # spikes emitted before this call are found by a scan of mult
    n_pending = 0
    for t in range(t0, t1):
        row = t - t0
        c[C_STEPS] += 1
        # 1. secondary events (delivered first): learning signals of entry t-2
        deliver_learning_signals(t, hist_err, hist_ls, ls_zero, B_T, mask, c)
        build_tile(t, hist_psi, hist_ls, hist_fr, tiles, mask)
        if leader:  # entries up to t-2 are final: the helper may advance walks that far (crew_helper)
            atomic_store(crew, X_STEP, t)
        # memory management: walks advanced to entry t-2 (bit-neutral, see memory_flush)
        if flush_every > 0 and t > 0 and t % flush_every == 0:
            if leader:
                crew_flush(t, crew, crew_threads, grp_ptr, syn, syn_post, syn_target, grp_f, grp_i, n_rec, hist_psi,
                           hist_ls, hist_fr, tiles, hist_err, ls_zero, mask, fp, ip, c, work)
            else:
                memory_flush(t, grp_ptr, syn, syn_post, syn_target, grp_f, grp_i, n_rec, hist_psi, hist_ls, hist_fr,
                             tiles, hist_err, ls_zero, mask, fp, ip, counters, work, threads)
        # the final-update generator's spike reaches the recurrent neurons' ring buffers before any other
        if t == force_step:
            for j in range(n_rec):
                x_in[j] += fp[P_FORCE_WEIGHT]
        # 2. spikes emitted in step t-1 (stamp t), source by source in NEST's delivery order: plasticity first
        #    (eprop_synapse::send), then the spike travels with the new weight. A spike of multiplicity m is
        #    delivered as m separate events (EventDeliveryManager::send_remote "unrolls spike multiplicity as
        #    plastic synapses only handle individual spikes"): m calls of send, m additions of w to the target.
        #    The repeats have isi 0: they add nothing to the traces (the spike counts once in z_bar) and leave
        #    the weight unchanged.
        if scan_all:  # the first step of a call and after the final update's spike into every input
            n_spk = collect_spikes(delivery_order, mult, flush_flag, spk_src, spk_mult, spk_flush)
            scan_all = False
        else:
            n_spk = collect_listed(n_pending, pending, delivery_rank, listed, mult, flush_flag, spk_src, spk_mult,
                                   spk_flush)
        if leader:  # on this thread; the helper advances other walks meanwhile (crew_helper)
            crew_wait(crew, n_spk, spk_src)
            deliver_plasticity_serial(t, n_spk, spk_src, spk_mult, spk_flush, grp_ptr, syn, syn_post, syn_target,
                                      grp_f, grp_i, n_rec, hist_psi, hist_ls, hist_fr, tiles, hist_err, ls_zero, mask,
                                      fp, ip, c)
        elif n_spk:
            updates = 0
            for i in range(n_spk):
                updates += walk_cost(spk_src[i], t, grp_ptr, grp_i, ip)
            if updates >= parallel_min_updates:
                plasticity_order(t, n_spk, spk_src, grp_ptr, grp_i, ip, work, threads)
                deliver_plasticity(t, spk_src, spk_mult, spk_flush, work, threads, grp_ptr, syn, syn_post,
                                   syn_target, grp_f, grp_i, n_rec, hist_psi, hist_ls, hist_fr, tiles, hist_err,
                                   ls_zero, mask, fp, ip, counters)
            else:
                deliver_plasticity_serial(t, n_spk, spk_src, spk_mult, spk_flush, grp_ptr, syn, syn_post,
                                          syn_target, grp_f, grp_i, n_rec, hist_psi, hist_ls, hist_fr, tiles,
                                          hist_err, ls_zero, mask, fp, ip, c)
        transmit(n_spk, spk_src, spk_mult, spk_flush, grp_ptr, weights, syn_post, x_in, n_in, c)
        # 3. recurrent neurons and readouts; then the input neurons fire
        update_neurons(t, row, fp, ip, rec_f, rec_i, out_f, hist_psi, hist_ls, hist_fr, hist_err, ls_zero,
                       mask, mult, flush_flag, x_in, n_in, target, window, y_trace, spike_raster, c)
        p0 = ev_pos[0]
        take_input_events(t, ev_step, ev_chan, ev_pos, mult, force_step, n_in, c)
        if t == force_step:
            scan_all = True
        else:
            n_pending = list_emitted(n_in, mult, ev_chan, p0, ev_pos[0], listed, pending)
    # the next call starts with a scan of mult: leave no source marked as listed
    for i in range(n_pending):
        listed[pending[i]] = 0


@njit(cache=True, parallel=True, _nrt=False)
def simulate_crew(t0, t1, fp, ip,
                  grp_ptr, syn, syn_post, syn_target, grp_f, grp_i, delivery_order,
                  rec_f, rec_i, out_f, hist_psi, hist_ls, hist_fr, tiles, hist_err, ls_zero, B_T,
                  mult, flush_flag, x_in,
                  ev_step, ev_chan, ev_pos,
                  target, window, force_step,
                  y_trace, spike_raster, counters, spk_src, spk_mult, spk_flush, work, threads, parallel_min_updates,
                  delivery_rank, pending, listed, crew, crew_threads, known, horizon, lead, min_gap):
    """simulate over [t0, t1) by a crew of two threads in one parallel region (see the crew's notes above):
    iteration 0 the leader (simulate with crew[X_ON] set), iteration 1 the helper (crew_helper) on its own
    counter row. ev_step/ev_chan: the events the helper may look ahead into. Not for blocks with the final
    update's extra spikes (force_step)."""
    crew[X_STEP] = -1
    crew[X_BUSY] = -1
    crew[X_FLUSH] = 0
    crew[X_FLUSH_STATE] = F_IDLE
    crew[X_EXIT] = 0
    crew[X_ON] = 1
    known[:, :] = 0
    for k in prange(2):
        if k == 0:
            simulate(t0, t1, fp, ip, grp_ptr, syn, syn_post, syn_target, grp_f, grp_i, delivery_order, rec_f, rec_i,
                     out_f, hist_psi, hist_ls, hist_fr, tiles, hist_err, ls_zero, B_T, mult, flush_flag, x_in, ev_step,
                     ev_chan, ev_pos, target, window, force_step, y_trace, spike_raster, counters, spk_src, spk_mult,
                     spk_flush, work, threads, parallel_min_updates, delivery_rank, pending, listed, crew,
                     crew_threads)
            atomic_store(crew, X_EXIT, 1)
        else:
            crew_helper(t0, crew, crew_threads, work, known, ev_step, ev_chan, horizon, lead, min_gap, grp_ptr, syn,
                        syn_post, syn_target, grp_f, grp_i, hist_psi.shape[1], hist_psi, hist_ls, hist_fr, tiles,
                        hist_err, ls_zero, hist_err.shape[0] - 1, fp, ip, counters[1])
    crew[X_ON] = 0
