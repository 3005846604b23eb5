"""Numba kernels of the fixed-point engine: the hardware contract (``golden_model/hw_contract.py``) in int64.

The algorithm is the golden engine's (NEST's event-driven e-prop, same step order, same synapse groups), with
the differences a hardware design needs, all deliberate and documented in ``engines/fixed.py``:

* every value is an integer in its format; products are rounded (ties to even, or stochastic for the weight
  update) and every stored result saturates with a sticky flag;
* a walk ends at the next presynaptic spike or when the cutoff expires, whichever is first: at step
  ``P + cutoff`` a group whose source has not spiked again walks its ``cutoff`` entries and applies gradient
  descent then, so that the history ring needs only ``cutoff + 3`` entries (NEST: the gradient waits in the
  synapse until the next spike; with a constant learning rate the weight is the same);
* the learning rate is the one in force when the optimizer runs (no NEST eta-lag);
* the optimizer runs once per walk: gradient descent, or one Adam step (hw_contract.AdamContract: m and
  sigma = sqrt(v) per synapse, a step count per group, an integer reciprocal square root);
* a spike of multiplicity m adds m * w to the target (exact in integers) and runs the plasticity once;
* one trace per synapse: e_bar_reg = (1 - kappa) e_bar (kappa_reg == kappa), the regularisation folded into the
  history's Lambda = L + (1 - kappa_reg) FR (see hw_contract).

Parameters travel in ``ip`` (int64) with the names ``I_*`` below; constants are (mantissa, shift) pairs.
"""

from __future__ import annotations

import numpy as np
from numba import get_thread_id, njit, prange

# ---- per-synapse rows of `syn` and per-group state -------------------------------------------------------------
S_W, S_EBAR, S_ADAM_M, S_ADAM_V = range(4)  # Adam's rows stay zero under gradient descent
N_SYN_ROWS = 4
G_TPREV, G_DONE, G_ZBAR, G_ZBUF, G_ADAM_T = range(5)
N_GRP = 5
# ---- neuron state ----------------------------------------------------------------------------------------------------
R_V, R_REF, R_FAV = range(3)
N_REC = 3

# ---- saturation flags (bit index = position in hw_contract.QUANTITIES) ---------------------------------------------
(Q_WEIGHT, Q_E_BAR, Q_Z_BAR, Q_MEMBRANE, Q_SURROGATE, Q_LS, Q_FAV, Q_ERROR, Q_FEEDBACK, Q_GRADIENT, Q_INPUT,
 Q_ADAM_M, Q_ADAM_V) = range(13)
N_Q = 13

# ---- parameters (int64 array `ip`) ------------------------------------------------------------------------------------
(I_ALPHA_M, I_ALPHA_S, I_ALPHA_OUT_M, I_ALPHA_OUT_S, I_KAPPA_M, I_KAPPA_S, I_KREG_M, I_KREG_S, I_CFR_M, I_CFR_S,
 I_W_F, I_W_MIN, I_W_MAX, I_WCLAMP_MIN, I_WCLAMP_MAX,
 I_EB_F, I_EB_MAX, I_Z_F, I_Z_MAX,
 I_M_F, I_M_MIN, I_M_MAX, I_S_F, I_S_MAX, I_L_F, I_L_MIN, I_L_MAX,
 I_F_F, I_F_MAX, I_E_F, I_E_MIN, I_E_MAX, I_B_F, I_G_F, I_G_MIN, I_G_MAX, I_X_MIN, I_X_MAX,
 I_V_TH, I_V_MIN, I_I_E, I_OUT_I_E, I_OUT_V_MIN, I_OUT_E_L, I_F_SPIKE, I_F_TARGET,
 I_SG_KIND, I_SG_HEIGHT, I_SG_SLOPE_M, I_SG_SLOPE_S, I_SG_SHIFT,
 I_REF_COUNTS, I_CUTOFF_REC, I_CUTOFF_OUT, I_ETA_M, I_ETA_S, I_WEIGHT_ROUNDING,
 # Adam (hw_contract.AdamContract): formats, constants, table sizes; I_OPTIMIZER 0 gradient descent, 1 Adam
 I_OPTIMIZER, I_AM_F, I_AM_MIN, I_AM_MAX, I_AV_F, I_AV_MAX, I_B1_M, I_B1_S, I_C1_M, I_C1_S, I_B2_M, I_B2_S,
 I_C2_M, I_C2_S, I_EPS_V, I_LUT_BITS, I_LUT_SIZE, I_BIAS_S, I_BIAS_N, I_RATIO_MIN, I_RATIO_MAX) = range(78)
N_IP = 78
#: hw_contract's RSQRT_FRAC_BITS and RATIO_FRAC_BITS (U = R)
RSQRT_R = 16
RATIO_Q = 16

# ---- counters ----------------------------------------------------------------------------------------------------------
(C_STEPS, C_REC_UPDATES, C_OUT_UPDATES, C_REC_SPIKES, C_INPUT_SPIKES, C_INPUT_EVENTS, C_SYN_EVENTS,
 C_GRAD_CALLS, C_HIST_READS, C_HIST_WRITES, C_LS_WRITES, C_OPT_CALLS, C_WEIGHT_WRITES, C_COMPLETIONS) = range(14)
N_COUNTERS = 14
COUNTER_NAMES = (
    "steps", "recurrent_updates", "readout_updates", "recurrent_spikes", "input_spikes", "input_events",
    "synaptic_events", "gradient_calls", "history_reads", "history_writes", "learning_signal_writes",
    "optimizer_calls", "weight_writes", "cutoff_completions",
)


@njit(cache=True, inline="always")
def rshift_round(x, s):
    """round(x / 2**s), ties to even, for any int64 x and s >= 0 (s < 0: exact left shift).

    Branch-free form: adding 2**(s-1) - 1 plus the lowest kept bit before the floor shift rounds halves up when
    that bit is odd and down when it is even; every other case to the nearest."""
    if s <= 0:
        return x << (-s)
    return (x + ((np.int64(1) << (s - 1)) - 1) + ((x >> s) & 1)) >> s


@njit(cache=True, inline="always")
def sat(x, lo, hi, q, sat_counts):
    if x > hi:
        sat_counts[q] += 1
        return hi
    if x < lo:
        sat_counts[q] += 1
        return lo
    return x


@njit(cache=True, inline="always")
def clamp_weight(w, ip):
    """The optimizer's [Wmin, Wmax] clamp (after the weight format's saturation), for either optimizer."""
    if w < ip[I_WCLAMP_MIN]:
        return ip[I_WCLAMP_MIN]
    if w > ip[I_WCLAMP_MAX]:
        return ip[I_WCLAMP_MAX]
    return w


@njit(cache=True, inline="always")
def dither(synapse, step, bits):
    """hw_contract.dither: random bits as a pure function of (synapse, step)."""
    x = (synapse * 0x9E3779B1 + step * 0x85EBCA77 + 0x27D4EB2F) & 0xFFFFFFFF
    x ^= x >> 16
    x = (x * 0x7FEB352D) & 0xFFFFFFFF
    x ^= x >> 15
    x = (x * 0x846CA68B) & 0xFFFFFFFF
    x ^= x >> 16
    return x >> (32 - bits) if bits > 0 else np.int64(0)


@njit(cache=True)
def gradient_step(a, b, grad, syn, syn_post, source, n_post, step, ip, counters, sat_counts):
    """Gradient descent on synapses [a, b) of `source`: w <- clamp(w - round(eta * g)), eta * g =
    (mantissa * g) >> shift. Stochastic rounding draws its bits from (source * n_post + target, step): what a
    hardware lane knows about a synapse, whatever memory layout the lanes use."""
    counters[C_OPT_CALLS] += b - a
    eta_m = ip[I_ETA_M]
    if eta_m == 0:
        return
    shift = ip[I_ETA_S]
    stochastic = ip[I_WEIGHT_ROUNDING] != 0
    for k in range(a, b):
        p = eta_m * grad[k - a]
        if stochastic and shift > 0:
            bits = shift if shift < 32 else 32
            # floor, then +1 with probability (remainder / 2**shift), the remainder compared on its top bits
            q = p >> shift
            r = (p - (q << shift)) >> (shift - bits)
            if r > dither(source * n_post + syn_post[k], step, bits):
                q += 1
            delta = q
        else:
            delta = rshift_round(p, shift)
        w = sat(syn[S_W, k] - delta, ip[I_W_MIN], ip[I_W_MAX], Q_WEIGHT, sat_counts)
        syn[S_W, k] = clamp_weight(w, ip)
    counters[C_WEIGHT_WRITES] += b - a


@njit(cache=True, inline="always")
def bit_length(x):
    """Bits of x > 0 (the position of its leading one, plus one): the normaliser of rsqrt."""
    n = np.int64(0)
    for k in (32, 16, 8, 4, 2, 1):
        if (x >> (n + k)) != 0:
            n += k
    return n + 1


@njit(cache=True)
def rsqrt(x, lut, lut_bits):
    """hw_contract.AdamContract.rsqrt: (y, e, u) for x >= 1, x ~ u 2^(e - U), y ~ 2^R / sqrt(u 2^-U)."""
    R = RSQRT_R
    n = bit_length(x)
    e = n + (n & 1)
    u = x >> (e - R) if e >= R else x << (R - e)
    y0 = lut[(u >> (R - lut_bits)) - (np.int64(1) << (lut_bits - 2))]
    s = rshift_round(y0 * y0, R)
    p = rshift_round(u * s, R)
    y = rshift_round(y0 * ((np.int64(3) << R) - p), R + 1)
    return y, e, u


@njit(cache=True)
def adam_step(g, a, b, grad, syn, grp, ip, adam_rom, counters, sat_counts):
    """One Adam step (hw_contract.AdamContract) on synapses [a, b) of group g: m, sigma = sqrt(v) and the weight;
    with learning off (eta = 0) nothing changes, as under gradient descent."""
    counters[C_OPT_CALLS] += b - a
    eta_m = ip[I_ETA_M]
    if eta_m == 0:
        return
    lut_size = ip[I_LUT_SIZE]
    t = grp[g, G_ADAM_T]
    step = rshift_round(eta_m * adam_rom[lut_size + t], ip[I_BIAS_S])
    if t + 1 < ip[I_BIAS_N]:
        grp[g, G_ADAM_T] = t + 1
    R, Q = RSQRT_R, RATIO_Q
    fm, fv = ip[I_AM_F], ip[I_AV_F]
    m_lo, m_hi, v_hi = ip[I_AM_MIN], ip[I_AM_MAX], ip[I_AV_MAX]
    to_m = ip[I_G_F] - fm
    s1 = max(ip[I_B1_S], ip[I_C1_S])
    up_b1, up_c1 = s1 - ip[I_B1_S], s1 - ip[I_C1_S]
    gsq_shift = ip[I_C2_S] + 2 * fm - 2 * fv
    lut_bits = ip[I_LUT_BITS]
    for k in range(a, b):
        gm = sat(rshift_round(grad[k - a], to_m), m_lo, m_hi, Q_ADAM_M, sat_counts)
        acc = ((ip[I_B1_M] * syn[S_ADAM_M, k]) << up_b1) + ((ip[I_C1_M] * gm) << up_c1)
        m_new = sat(rshift_round(acc, s1), m_lo, m_hi, Q_ADAM_M, sat_counts)
        sigma = syn[S_ADAM_V, k]
        v_new = rshift_round(ip[I_B2_M] * sigma * sigma, ip[I_B2_S]) + rshift_round(ip[I_C2_M] * gm * gm, gsq_shift)
        x = max(v_new, ip[I_EPS_V])
        y, e, u = rsqrt(x, adam_rom, lut_bits)
        syn[S_ADAM_V, k] = sat(rshift_round(u * y, 2 * R - e // 2), 0, v_hi, Q_ADAM_V, sat_counts)
        ratio = sat(rshift_round(m_new * y, fm + R + e // 2 - fv - Q), ip[I_RATIO_MIN], ip[I_RATIO_MAX], Q_ADAM_V,
                    sat_counts)
        syn[S_ADAM_M, k] = m_new
        w = sat(syn[S_W, k] - rshift_round(ratio * step, ip[I_ETA_S]), ip[I_W_MIN], ip[I_W_MAX], Q_WEIGHT,
                sat_counts)
        syn[S_W, k] = clamp_weight(w, ip)
    counters[C_WEIGHT_WRITES] += b - a


@njit(cache=True)
def optimize(g, a, b, grad, syn, syn_post, grp, source, n_post, step, ip, adam_rom, counters, sat_counts):
    """The optimizer of the build: gradient descent or Adam, once per walk."""
    if ip[I_OPTIMIZER] == 1:
        adam_step(g, a, b, grad, syn, grp, ip, adam_rom, counters, sat_counts)
    else:
        gradient_step(a, b, grad, syn, syn_post, source, n_post, step, ip, counters, sat_counts)


@njit(cache=True)
def group_walk(g, a, b, to_readout, n_steps, syn, syn_post, grp, hist_psi, hist_lam, hist_err, mask,
               ip, counters, sat_counts, grad):
    n_rec = hist_psi.shape[1]
    """The walk of group g over its n_steps history entries from t_prev - 1 (golden_kernels.group_gradient with
    integer arithmetic); leaves the gradient of each synapse in grad[0 : b - a]."""
    n = b - a
    for q in range(n):
        grad[q] = 0
    t_begin = grp[g, G_TPREV] - 1
    z_prev = grp[g, G_ZBUF]
    z_current = np.int64(1)
    z_bar = grp[g, G_ZBAR]
    one_z = np.int64(1) << ip[I_Z_F]
    g_lo, g_hi = ip[I_G_MIN], ip[I_G_MAX]
    counters[C_GRAD_CALLS] += n
    counters[C_HIST_READS] += n_steps * n
    if to_readout:
        a_m, a_s = ip[I_ALPHA_OUT_M], ip[I_ALPHA_OUT_S]
        up = ip[I_G_F] - ip[I_E_F] - ip[I_Z_F]
        for t in range(t_begin, t_begin + n_steps):
            z = z_prev
            z_prev = z_current
            z_current = 0
            z_bar = sat(rshift_round(a_m * z_bar, a_s) + z * one_z, 0, ip[I_Z_MAX], Q_Z_BAR, sat_counts)
            h = np.uint64(t & mask)
            for q in range(n):
                k = a + q
                grad[q] = sat(grad[q] + ((hist_err[h, syn_post[k] - n_rec] * z_bar) << up), g_lo, g_hi, Q_GRADIENT,
                              sat_counts)
    else:
        a_m, a_s = ip[I_ALPHA_M], ip[I_ALPHA_S]
        k_m, k_s = ip[I_KAPPA_M], ip[I_KAPPA_S]
        to_eb = ip[I_S_F] + ip[I_Z_F] - ip[I_EB_F]  # psi * z_bar -> e_bar fraction bits
        up_l = ip[I_G_F] - ip[I_L_F] - ip[I_EB_F]
        eb_max = ip[I_EB_MAX]
        e_bar = syn[S_EBAR]
        n_eb = np.int64(0)
        n_g = np.int64(0)
        for t in range(t_begin, t_begin + n_steps):
            z = z_prev
            z_prev = z_current
            z_current = 0
            z_bar = sat(rshift_round(a_m * z_bar, a_s) + z * one_z, 0, ip[I_Z_MAX], Q_Z_BAR, sat_counts)
            h = np.uint64(t & mask)
            for q in range(n):
                k = a + q
                j = syn_post[k]
                # e_bar >= 0 (psi, z_bar >= 0): only the upper limit can be reached
                eb = rshift_round(k_m * e_bar[k], k_s) + rshift_round(hist_psi[h, j] * z_bar, to_eb)
                n_eb += eb > eb_max
                eb = min(eb, eb_max)
                e_bar[k] = eb
                gr = grad[q] + ((hist_lam[h, j] * eb) << up_l)
                n_g += (gr > g_hi) + (gr < g_lo)
                grad[q] = max(min(gr, g_hi), g_lo)
        sat_counts[Q_E_BAR] += n_eb
        sat_counts[Q_GRADIENT] += n_g
    grp[g, G_ZBUF] = z_prev
    grp[g, G_ZBAR] = z_bar


@njit(cache=True)
def group_decay(g, a, b, to_readout, m, syn, grp, decay_alpha, decay_alpha_out, decay_kappa, ip):
    """Traces decay over the m steps between the end of a cutoff-limited walk and the next spike (NEST: one pow
    each); factors from the decay ROMs, 0 beyond them."""
    if m <= 0:
        return
    if to_readout:
        rom, s = decay_alpha_out, ip[I_ALPHA_OUT_S]
        grp[g, G_ZBAR] = rshift_round(rom[m] * grp[g, G_ZBAR], s) if m < rom.size else 0
        return
    grp[g, G_ZBAR] = rshift_round(decay_alpha[m] * grp[g, G_ZBAR], ip[I_ALPHA_S]) if m < decay_alpha.size else 0
    for k in range(a, b):
        syn[S_EBAR, k] = rshift_round(decay_kappa[m] * syn[S_EBAR, k], ip[I_KAPPA_S]) \
            if m < decay_kappa.size else 0


@njit(cache=True)
def source_spike(s, t, grp_ptr, syn, syn_post, grp, hist_psi, hist_lam, hist_err, mask, decay_alpha,
                 decay_alpha_out, decay_kappa, ip, adam_rom, counters, sat_counts, grad):
    """Plasticity of source s's groups for a spike delivered in step t."""
    for g in range(2 * s, 2 * s + 2):
        a, b = grp_ptr[g], grp_ptr[g + 1]
        if b == a:
            continue
        to_readout = g % 2 == 1
        t_prev = grp[g, G_TPREV]
        if t_prev == t:
            continue  # a repeat in the same step (multiplicity): nothing to learn
        if t_prev != 0:
            if grp[g, G_DONE] != 0:
                cutoff = ip[I_CUTOFF_OUT] if to_readout else ip[I_CUTOFF_REC]
                group_decay(g, a, b, to_readout, t - t_prev - cutoff, syn, grp, decay_alpha, decay_alpha_out,
                            decay_kappa, ip)
            else:
                group_walk(g, a, b, to_readout, t - t_prev, syn, syn_post, grp, hist_psi, hist_lam, hist_err, mask,
                           ip, counters, sat_counts, grad)
                optimize(g, a, b, grad, syn, syn_post, grp, s, hist_psi.shape[1] + hist_err.shape[1], t, ip,
                         adam_rom, counters, sat_counts)
        grp[g, G_TPREV] = t
        grp[g, G_DONE] = 0


@njit(cache=True)
def complete_walks(t, kind, n_due, due, grp_ptr, syn, syn_post, grp, hist_psi, hist_lam, hist_err, mask,
                   ip, adam_rom, counters, sat_counts, grad):
    """Groups (of kind 0: onto recurrent neurons, 1: onto readouts) whose source spiked at t - cutoff and not
    since: walk the cutoff's entries and apply gradient descent now."""
    cutoff = ip[I_CUTOFF_OUT] if kind == 1 else ip[I_CUTOFF_REC]
    for i in range(n_due):
        g = 2 * due[i] + kind
        a, b = grp_ptr[g], grp_ptr[g + 1]
        if b == a or grp[g, G_TPREV] != t - cutoff or grp[g, G_DONE] != 0:
            continue
        group_walk(g, a, b, kind == 1, cutoff, syn, syn_post, grp, hist_psi, hist_lam, hist_err, mask, ip,
                   counters, sat_counts, grad)
        optimize(g, a, b, grad, syn, syn_post, grp, due[i], hist_psi.shape[1] + hist_err.shape[1], t, ip, adam_rom,
                 counters, sat_counts)
        grp[g, G_DONE] = 1
        counters[C_COMPLETIONS] += 1


@njit(cache=True, parallel=True)
def deliver_plasticity(t, n_spk, spk_src, grp_ptr, syn, syn_post, grp, hist_psi, hist_lam, hist_err, mask,
                       decay_alpha, decay_alpha_out, decay_kappa, ip, adam_rom, counters, sat_counts, grad):
    """Plasticity of this step's spiking sources, in parallel (disjoint synapses and groups, read-only
    histories); integer results do not depend on the order."""
    for i in prange(n_spk):
        tid = get_thread_id()
        source_spike(spk_src[i], t, grp_ptr, syn, syn_post, grp, hist_psi, hist_lam, hist_err, mask,
                     decay_alpha, decay_alpha_out, decay_kappa, ip, adam_rom, counters[tid], sat_counts[tid],
                     grad[tid])


@njit(cache=True)
def simulate(t0, t1, ip, grp_ptr, syn, syn_post, grp, rec, out_v, hist_psi, hist_lam, hist_err, B,
             surrogate_rom, decay_alpha, decay_alpha_out, decay_kappa, adam_rom,
             mult, x_in, ev_step, ev_chan, ev_pos, target, window, force_step,
             y_trace, spike_raster, counters, sat_counts, grad, spk_src, spiked_ring, n_spiked_ring):
    """Advance the network over steps [t0, t1) (the golden engine's step order).

    target (rows t - t0, n_out): readout targets in the membrane format; window: 0/1 learning window.
    spiked_ring[t % R, :n_spiked_ring[t % R]]: the sources delivered in step t (for cutoff completions).
    y_trace gets each readout's signal (membrane format, E_L added), spike_raster the recurrent spikes.
    """
    n_rec = rec.shape[0]
    n_out = out_v.shape[0]
    n_src = (grp_ptr.size - 1) // 2
    n_in = n_src - n_rec
    mask = hist_err.shape[0] - 1
    ring = spiked_ring.shape[0]
    c = counters[0]
    sc = sat_counts[0]
    m_lo, m_hi = ip[I_M_MIN], ip[I_M_MAX]
    x_to_m = ip[I_W_F] - ip[I_M_F]
    for t in range(t0, t1):
        row = t - t0
        c[C_STEPS] += 1
        # 1. learning signals join entry t-2 from the readout errors of step t-1: Lambda_j += round(sum_k B_jk
        #    err_k) (exact sum, one rounding), only when some error is non-zero (else the sum is 0)
        if t >= 2:
            h_err = np.uint64((t - 1) & mask)
            h_ls = np.uint64((t - 2) & mask)
            any_error = False
            for k in range(n_out):
                if hist_err[h_err, k] != 0:
                    any_error = True
            if any_error:
                to_l = ip[I_B_F] + ip[I_E_F] - ip[I_L_F]
                for j in range(n_rec):
                    acc = np.int64(0)
                    for k in range(n_out):
                        acc += B[j, k] * hist_err[h_err, k]
                    hist_lam[h_ls, j] = sat(hist_lam[h_ls, j] + rshift_round(acc, to_l), ip[I_L_MIN], ip[I_L_MAX],
                                            Q_LS, sc)
                c[C_LS_WRITES] += n_rec * n_out
        # 2. walks whose cutoff expired (the source spiked at t - cutoff and not since)
        for kind in range(2):
            cutoff = ip[I_CUTOFF_OUT] if kind == 1 else ip[I_CUTOFF_REC]
            if t - cutoff >= 1:
                slot = (t - cutoff) % ring
                complete_walks(t, kind, n_spiked_ring[slot], spiked_ring[slot], grp_ptr, syn, syn_post, grp,
                               hist_psi, hist_lam, hist_err, mask, ip, adam_rom, c, sc, grad[0])
        # 3. spikes emitted in step t-1: plasticity, then transmission (m * w, exact)
        n_spk = 0
        for s in range(n_src):
            if mult[s] != 0:
                spk_src[n_spk] = s
                n_spk += 1
        if n_spk:
            deliver_plasticity(t, n_spk, spk_src, grp_ptr, syn, syn_post, grp, hist_psi, hist_lam, hist_err,
                               mask, decay_alpha, decay_alpha_out, decay_kappa, ip, adam_rom, counters, sat_counts,
                               grad)
        slot = t % ring
        n_spiked_ring[slot] = n_spk
        for i in range(n_spk):
            s = spk_src[i]
            spiked_ring[slot, i] = s
            m = mult[s]
            a, b = grp_ptr[2 * s], grp_ptr[2 * s + 2]
            for k in range(a, b):
                x_in[syn_post[k]] += syn[S_W, k] * m
            c[C_SYN_EVENTS] += (b - a) * m
            if s < n_in:
                c[C_INPUT_SPIKES] += m
            mult[s] = 0
        # 4. recurrent neurons
        h_now = np.uint64(t & mask)
        a_m, a_s = ip[I_ALPHA_M], ip[I_ALPHA_S]
        for j in range(n_rec):
            if rec[j, R_REF] > 0:
                rec[j, R_REF] -= 1
            x = sat(x_in[j], ip[I_X_MIN], ip[I_X_MAX], Q_INPUT, sc)
            x_in[j] = 0
            v = sat(rshift_round(a_m * rec[j, R_V], a_s) + rshift_round(x, x_to_m) + ip[I_I_E], m_lo, m_hi,
                    Q_MEMBRANE, sc)
            if v < ip[I_V_MIN]:
                v = ip[I_V_MIN]
            if t == force_step and v < ip[I_V_TH]:
                # the final update's strong input (weight 1000 in NEST's examples) is a control action: it
                # takes the membrane to threshold, so every non-refractory neuron spikes, without saturating
                v = ip[I_V_TH]
            r = rec[j, R_REF]
            psi = np.int64(0)
            if r == 0:
                d = v - ip[I_V_TH]
                if d < 0:
                    d = -d
                if ip[I_SG_KIND] == 0:
                    psi = ip[I_SG_HEIGHT] - rshift_round(ip[I_SG_SLOPE_M] * d, ip[I_SG_SLOPE_S])
                    if psi < 0:
                        psi = 0
                else:
                    idx = d >> ip[I_SG_SHIFT]
                    psi = surrogate_rom[idx] if idx < surrogate_rom.size else 0
            z = 0
            if v >= ip[I_V_TH] and r == 0:
                z = 1
                v -= ip[I_V_TH]
                rec[j, R_REF] = ip[I_REF_COUNTS]
                mult[n_in + j] = 1
                spike_raster[row, j] = 1
                c[C_REC_SPIKES] += 1
            rec[j, R_V] = v
            f_av = sat(rshift_round(ip[I_KREG_M] * rec[j, R_FAV], ip[I_KREG_S]) + z * ip[I_F_SPIKE], 0,
                       ip[I_F_MAX], Q_FAV, sc)
            rec[j, R_FAV] = f_av
            hist_psi[h_now, j] = psi
            # Lambda starts as (1 - kappa_reg) c_reg (f_av - f_target); the learning signal joins two steps later
            hist_lam[h_now, j] = sat(rshift_round(ip[I_CFR_M] * (f_av - ip[I_F_TARGET]),
                                                  ip[I_CFR_S] + ip[I_F_F] - ip[I_L_F]),
                                     ip[I_L_MIN], ip[I_L_MAX], Q_LS, sc)
        c[C_REC_UPDATES] += n_rec
        c[C_HIST_WRITES] += n_rec
        # readouts
        ao_m, ao_s = ip[I_ALPHA_OUT_M], ip[I_ALPHA_OUT_S]
        e_shift = ip[I_M_F] - ip[I_E_F]
        for k in range(n_out):
            x = sat(x_in[n_rec + k], ip[I_X_MIN], ip[I_X_MAX], Q_INPUT, sc)
            x_in[n_rec + k] = 0
            v = sat(rshift_round(ao_m * out_v[k], ao_s) + rshift_round(x, x_to_m) + ip[I_OUT_I_E], m_lo, m_hi,
                    Q_MEMBRANE, sc)
            if v < ip[I_OUT_V_MIN]:
                v = ip[I_OUT_V_MIN]
            out_v[k] = v
            y = v + ip[I_OUT_E_L]
            y_trace[row, k] = y
            err = np.int64(0)
            if window[row] != 0:
                err = sat(rshift_round(y - target[row, k], e_shift), ip[I_E_MIN], ip[I_E_MAX], Q_ERROR, sc)
            hist_err[h_now, k] = err
        c[C_OUT_UPDATES] += n_out
        # input neurons fire in step t
        p = ev_pos[0]
        while p < ev_step.size and ev_step[p] == t:
            mult[ev_chan[p]] += 1
            c[C_INPUT_EVENTS] += 1
            p += 1
        ev_pos[0] = p
        if t == force_step:
            for i in range(n_in):
                mult[i] += 1
