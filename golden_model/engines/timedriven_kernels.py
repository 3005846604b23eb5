"""Numba kernels of the time-driven engine: the golden engine's mathematics in the "equivalent time-driven
statement" of ``../shared/spec/eprop-nest.md`` section 5.

Instead of replaying a target's history when a presynaptic spike arrives (``compute_gradient``), every synapse
advances its traces by one history entry at every step, as soon as that entry is complete. Entry ``h`` (written
by the neuron update of step ``h``) receives its learning signal in step ``h + 2`` (the readouts' errors of step
``h + 1`` arrive as secondary events), so in step ``t`` every synapse of source ``i`` onto target ``j`` does::

    zbar_i  = alpha zbar_i + s_i[h]                  (h = t - 2; s_i[h] = 1 iff a spike of i with stamp h)
    e       = psi_j[h] zbar_i
    ebar    = kappa ebar + e
    ebar_reg = kappa_reg ebar_reg + (1 - kappa_reg) e
    grad   += L_j[h] ebar + FR_j[h] ebar_reg          (readout target k: grad += err_k[h] zbar_i)

and a spike with stamp ``T`` that follows one with stamp ``P`` hands ``grad`` = the sum of entries
``P - 1 ... T - 2`` to the optimizer exactly as ``compute_gradient`` does (``cumulative_gradient += grad``,
``optimized_weight(idx = T - 1)``, the same :func:`golden_kernels.group_optimize` with NEST's eta-lag and
eta_first_change rules, once per unrolled copy of a spike of multiplicity m), then resets it; the first spike of
a synapse only starts its sum. Every product and sum is the golden engine's expression, in the same order and
starting from the same +0.0, so with no cutoff the weights are the same to the last bit:

* zbar (and with it e, ebar, ebar_reg, g) is exactly +0.0 before a source's first spike, as the golden engine's
  untouched state is (psi >= 0, so ``psi * +0.0`` is +0.0 and every sum of signed zeros onto +0.0 stays +0.0);
* NEST's flush events only split a walk: with no cutoff and the optimizer run only at spikes they change no
  number, and here they do nothing;
* the cutoff is not applied: time-driven e-prop has none. With a finite ``eprop_isi_trace_cutoff`` the results
  differ from the golden engine's by exactly what the cutoff drops (tested).

Storage: the per-synapse rows and per-group state of ``golden_kernels`` (``S_GRAD`` holds the running gradient
sum, ``G_ZBAR`` the source's zbar per kind of target); the histories are 4-entry rings (entries t-2 .. t are
live); ``spiked[stamp & 3, s]`` flags a real spike of source s with that stamp until its entry is processed.
"""

from __future__ import annotations

from numba import get_thread_id, njit, prange

from ..counters import (  # noqa: F401  (indices used by the kernels)
    C_GRAD_TERMS, C_HIST_READS, C_MEM_CONN_R, C_MEM_HIST_R, C_MEM_OPT_R, C_MEM_OPT_W, C_MEM_PRE_R, C_MEM_PRE_W,
    C_MEM_TR_R, C_MEM_TR_W, C_MEMORY_FLUSH_WALKS, C_PL_ADD, C_PL_MUL, C_PL_SPECIAL, C_PRE_TRACE_UPDATES, C_STEPS,
    C_TRACE_UPDATES, N_COUNTERS,
)
from .golden_kernels import (
    G_TPREV, G_ZBAR, P_FORCE_WEIGHT, P_KAPPA, P_KAPPA_REG, P_ONE_MINUS_KAPPA_REG, P_OUT_PV, P_REC_PV, S_CUM,
    S_EBAR, S_EBAR_REG, S_GRAD, S_W, collect_spikes, deliver_learning_signals, group_optimize, take_input_events,
    transmit, update_neurons,
)

#: history ring length: entries t-2, t-1, t are live in step t
HISTORY_DEPTH = 4
#: rows of ``tally``: synapses onto recurrent targets, onto readouts, non-empty groups of each kind, sources
T_REC_SYN, T_OUT_SYN, T_REC_GRP, T_OUT_GRP, T_SOURCES = range(5)


@njit(cache=True)
def compiled_counter_layout():
    """The counter indices this module was compiled with (see counters.check_compiled_layout)."""
    return (C_STEPS, C_TRACE_UPDATES, C_PL_SPECIAL, C_MEM_HIST_R, C_MEMORY_FLUSH_WALKS, N_COUNTERS)


@njit(cache=True, parallel=True)
def update_traces(h, chunk_ptr, grp_ptr, syn, syn_post, syn_target, grp_f, n_rec, hist_psi, hist_ls, hist_fr,
                  hist_err, ls_zero, mask, fp, spiked):
    """Advance every synapse over history entry h. Sources are independent; they run in parallel in chunks of
    about equal synapse counts (chunk_ptr: source boundaries)."""
    pv_rec = fp[P_REC_PV]
    pv_out = fp[P_OUT_PV]
    kappa = fp[P_KAPPA]
    kappa_reg = fp[P_KAPPA_REG]
    one_minus_kappa_reg = fp[P_ONE_MINUS_KAPPA_REG]
    row = h & mask
    quiet = ls_zero[row] != 0
    psi_row = hist_psi[row]
    ls_row = hist_ls[row]
    fr_row = hist_fr[row]
    err_row = hist_err[row]
    slot = h & (HISTORY_DEPTH - 1)
    e_bar = syn[S_EBAR]
    e_bar_reg = syn[S_EBAR_REG]
    grad = syn[S_GRAD]
    for chunk in prange(chunk_ptr.size - 1):
        for s in range(chunk_ptr[chunk], chunk_ptr[chunk + 1]):
            z = 1.0 if spiked[slot, s] != 0 else 0.0
            spiked[slot, s] = 0
            a, b = grp_ptr[2 * s], grp_ptr[2 * s + 1]
            if b > a:  # onto recurrent neurons
                z_bar = pv_rec * grp_f[2 * s, G_ZBAR] + z
                grp_f[2 * s, G_ZBAR] = z_bar
                if quiet:
                    # the golden engine's branch for entries without learning signal (see group_gradient)
                    for k in range(a, b):
                        j = syn_target[k]
                        e = psi_row[j] * z_bar
                        e_bar[k] = kappa * e_bar[k] + e
                        e_bar_reg[k] = kappa_reg * e_bar_reg[k] + one_minus_kappa_reg * e
                        grad[k] += fr_row[j] * e_bar_reg[k]
                else:
                    for k in range(a, b):
                        j = syn_target[k]
                        e = psi_row[j] * z_bar
                        e_bar[k] = kappa * e_bar[k] + e
                        e_bar_reg[k] = kappa_reg * e_bar_reg[k] + one_minus_kappa_reg * e
                        grad[k] += ls_row[j] * e_bar[k] + fr_row[j] * e_bar_reg[k]
            a, b = grp_ptr[2 * s + 1], grp_ptr[2 * s + 2]
            if b > a:  # onto readouts
                z_bar = pv_out * grp_f[2 * s + 1, G_ZBAR] + z
                grp_f[2 * s + 1, G_ZBAR] = z_bar
                for k in range(a, b):
                    grad[k] += err_row[syn_post[k] - n_rec] * z_bar


@njit(cache=True)
def count_trace_step(quiet, tally, c):
    """What update_traces did for one entry (counters.py: eligibility-trace update, time-driven step)."""
    n_rec_syn = tally[T_REC_SYN]
    n_out_syn = tally[T_OUT_SYN]
    n_syn = n_rec_syn + n_out_syn
    n_grp = tally[T_REC_GRP] + tally[T_OUT_GRP]
    c[C_TRACE_UPDATES] += n_syn
    c[C_GRAD_TERMS] += n_syn
    c[C_HIST_READS] += n_syn
    c[C_PRE_TRACE_UPDATES] += n_grp
    c[C_PL_MUL] += n_grp + (5 if quiet else 6) * n_rec_syn + n_out_syn
    c[C_PL_ADD] += n_grp + (3 if quiet else 4) * n_rec_syn + n_out_syn
    c[C_MEM_HIST_R] += (2 if quiet else 3) * n_rec_syn + n_out_syn + 1  # + the entry's "no learning signal" flag
    c[C_MEM_TR_R] += 3 * n_rec_syn + n_out_syn
    c[C_MEM_TR_W] += 3 * n_rec_syn + n_out_syn
    c[C_MEM_CONN_R] += n_syn + 2 * n_grp
    c[C_MEM_PRE_R] += n_grp + tally[T_SOURCES]  # zbar per group, the spike flag per source
    c[C_MEM_PRE_W] += n_grp + tally[T_SOURCES]


@njit(cache=True)
def source_apply(s, t, grp_ptr, syn, grp_f, grp_i, fp, ip, counters):
    """One delivered copy of a spike of source s with stamp t: each group with a previous spike hands its gradient
    sums (entries t_prev - 1 ... t - 2) to the optimizer with idx = t - 1, as compute_gradient does; the sums
    restart. Counted per group (counters.py: time-driven step, handing the gradient to the optimizer)."""
    for g in range(2 * s, 2 * s + 2):
        a, b = grp_ptr[g], grp_ptr[g + 1]
        if b == a:
            continue
        n = b - a
        if grp_i[g, G_TPREV] != 0:
            for k in range(a, b):
                syn[S_CUM, k] += syn[S_GRAD, k]
                syn[S_GRAD, k] = 0.0
            counters[C_PL_ADD] += n
            counters[C_MEM_TR_R] += n
            counters[C_MEM_OPT_R] += n
            counters[C_MEM_OPT_W] += n
            group_optimize(g, a, b, t - 1, syn, grp_f, grp_i, fp, ip, counters)
        else:
            for k in range(a, b):
                syn[S_GRAD, k] = 0.0
        counters[C_MEM_TR_W] += n
        grp_i[g, G_TPREV] = t
        counters[C_MEM_PRE_R] += 1
        counters[C_MEM_PRE_W] += 1


@njit(cache=True, parallel=True)
def apply_updates(t, n_spk, spk_src, spk_mult, spk_flush, grp_ptr, syn, grp_f, grp_i, fp, ip, spiked, counters):
    """The plasticity half of delivering this step's spikes: the optimizer runs once per unrolled copy (the
    repeats hand over an empty sum and leave the weight unchanged, as in NEST); the spike is flagged once for
    the traces. Flush events do nothing here. Sources touch disjoint synapses and groups: parallel."""
    slot = t & (HISTORY_DEPTH - 1)
    for i in prange(n_spk):
        if spk_flush[i] != 0:
            continue
        s = spk_src[i]
        c = counters[get_thread_id()]
        spiked[slot, s] = 1
        c[C_MEM_PRE_W] += 1
        for _ in range(spk_mult[i]):
            source_apply(s, t, grp_ptr, syn, grp_f, grp_i, fp, ip, c)


@njit(cache=True)
def simulate(t0, t1, fp, ip,
             grp_ptr, syn, syn_post, syn_target, grp_f, grp_i, delivery_order,
             rec_f, rec_i, out_f, hist_psi, hist_ls, hist_fr, hist_err, ls_zero, B_T,
             mult, flush_flag, x_in,
             ev_step, ev_chan, ev_pos,
             target, window, force_step,
             y_trace, spike_raster, counters, spk_src, spk_mult, spk_flush,
             spiked, chunk_ptr, tally):
    """Advance the network over steps [t0, t1): golden_kernels.simulate's step with the plasticity done
    time-driven (see the module docstring). Arguments as golden_kernels.simulate, plus ``spiked`` (4, n_src),
    ``chunk_ptr`` (source chunks for the parallel trace update) and ``tally`` (synapse and group counts)."""
    c = counters[0]
    n_rec = rec_f.shape[0]
    n_src = (grp_ptr.size - 1) // 2
    n_in = n_src - n_rec
    mask = hist_err.shape[0] - 1
    weights = syn[S_W]
    for t in range(t0, t1):
        row = t - t0
        c[C_STEPS] += 1
        # 1. secondary events: the learning signals of entry t-2 complete it ...
        deliver_learning_signals(t, hist_err, hist_ls, ls_zero, B_T, mask, c)
        # ... so every synapse advances over entry t-2 now, before this step's spikes read the weights
        if t >= 2:
            update_traces(t - 2, chunk_ptr, grp_ptr, syn, syn_post, syn_target, grp_f, n_rec, hist_psi, hist_ls,
                          hist_fr, hist_err, ls_zero, mask, fp, spiked)
            count_trace_step(ls_zero[(t - 2) & mask] != 0, tally, c)
        if t == force_step:
            for j in range(n_rec):
                x_in[j] += fp[P_FORCE_WEIGHT]
        # 2. spikes of step t-1 (stamp t) in NEST's delivery order: weight updates, then transmission
        n_spk = collect_spikes(delivery_order, mult, flush_flag, spk_src, spk_mult, spk_flush)
        if n_spk:
            apply_updates(t, n_spk, spk_src, spk_mult, spk_flush, grp_ptr, syn, grp_f, grp_i, fp, ip, spiked,
                          counters)
        transmit(n_spk, spk_src, spk_mult, spk_flush, grp_ptr, weights, syn_post, x_in, n_in, c)
        # 3. neurons, then the input neurons fire
        update_neurons(t, row, fp, ip, rec_f, rec_i, out_f, hist_psi, hist_ls, hist_fr, hist_err, ls_zero, mask,
                       mult, flush_flag, x_in, n_in, target, window, y_trace, spike_raster, c)
        take_input_events(t, ev_step, ev_chan, ev_pos, mult, force_step, n_in, c)
