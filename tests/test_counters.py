"""Every counter of every engine (golden, timedriven, bellec) against numbers derived by hand on networks small
enough to follow spike by spike. The per-operation costs are golden_model/counters.py's cost sheet, restated here;
the event structure (which sends, which walks, which entries, which optimizations) is derived below from the
hand-placed spikes."""

import numpy as np
import pytest

from golden_model import counters as CT
from golden_model.config import NetworkConfig
from golden_model.engines.bellec import BellecEngine
from golden_model.engines.golden import GoldenEngine
from golden_model.engines.timedriven import TimeDrivenEngine
from golden_model.network import Network
from golden_model.tasks import Sample, one_hot_sample

# The network: 2 inputs, 2 recurrent neurons, 1 readout.
#   input 0 -> rec 0, rec 1     input 1 -> rec 1     rec 0 -> rec 1     rec 0, rec 1 -> readout
# Synapse groups (one source onto one kind of target): in0->rec (2 synapses), in1->rec (1), rec0->rec (1),
# rec0->out (1), rec1->out (1): 5 non-empty groups, 4 sources, 4 synapses onto recurrent neurons, 2 onto readouts.
# V_th = 500: the recurrent neurons only spike when the final update drives them with weight 1000.
SEQUENCE = 10
# sample steps of the input events: input 0 at 0, 3, 3 (two events in one step: multiplicity 2), input 1 at 5.
EVENTS = ([0, 1, 0, 0], [0, 5, 3, 3])  # (channels, steps)


def _config(cutoff_rec: float, optimizer: str) -> NetworkConfig:
    return NetworkConfig.from_dict({
        "network": {"n_in": 2, "n_rec": 2, "n_out": 1},
        "recurrent": {"C_m": 1.0, "E_L": 0.0, "V_m": 0.0, "V_th": 500.0, "t_ref": 0.0, "tau_m": 10.0,
                      "c_reg": 1.0, "surrogate_gradient_function": "piecewise_linear",
                      "eprop_isi_trace_cutoff": cutoff_rec, "flush_event_send_interval": float("inf")},
        "readout": {"C_m": 1.0, "E_L": 0.0, "V_m": 0.0, "tau_m": 10.0, "eprop_isi_trace_cutoff": float("inf")},
        "optimizer": {"type": optimizer, "eta": 1e-3, "optimize_each_step": False},
        "task": {"name": "patterns", "sequence": SEQUENCE, "learning_window": 2},
        "simulation": {"total_num_virtual_procs": 1},
    })


def _network() -> Network:
    W_in = np.array([[0.1, 0.0], [0.1, 0.1]])
    W_rec = np.array([[0.0, 0.0], [0.2, 0.0]])
    W_out = np.array([[0.3, 0.3]])
    B = np.array([[1.0], [2.0]])
    return Network(W_in=W_in, W_rec=W_rec, W_out=W_out, B=B, mask_in=W_in != 0, mask_rec=W_rec != 0,
                   mask_out=W_out != 0, seed=0)


def _sample() -> Sample:
    target = np.ones((SEQUENCE, 1))  # label 0 of the single readout, over the whole sample
    window = np.zeros(SEQUENCE)
    window[-2:] = 1.0  # learning window: the sample's last 2 steps
    channels, steps = EVENTS
    order = np.argsort(steps, kind="stable")
    return Sample("hand", 0, np.asarray(channels, np.int32)[order], np.asarray(steps, np.int32)[order], target,
                  window)


def _run(cls, cutoff_rec: float, optimizer: str = "gradient_descent") -> dict[str, int]:
    engine = cls(_config(cutoff_rec, optimizer))
    engine.load(_network())
    engine.run([_sample()], learn=True)
    engine.finish()
    return engine.counters()


# ---- the timeline, by hand ---------------------------------------------------------------------------------------
# run(): steps 0..9; finish(): steps 10..15 (3 + 3), the forced spikes into every input and recurrent neuron happen
# in step 14 and are delivered in step 15. 16 steps.
# Input events: an event at sample step s is emitted by its input neuron in step s + 1 and delivered (stamp) in
# step s + 2:  input 0 delivers at 2 (m=1), 5 (m=2), 15 (forced, m=1);  input 1 at 7 and 15 (forced).
# Recurrent neurons: both reach 1000 > V_th in step 14 (forced), spike, and deliver at 15. The reset leaves ~500,
# which decays below V_th (alpha = e^-0.1) in step 15: 2 recurrent spikes.
# Errors: sample 0 occupies steps 2..11; its window (the last 2 sample steps) holds in steps 10, 11 and the rate
# generators hold their last value (window 1, target 1) through 12..15. The readout is 0 until the recurrent spikes
# arrive in 15: err = -1 in 10..14, -0.4 in 15; zero before. Learning signals in step t use err[t - 1]: steps
# 11..15 carry them (5 steps), into entries 9..13; entries 0..8 have no learning signal ("quiet").
STEPS = 16
N_REC, N_OUT = 2, 1


def _network_counts() -> dict[str, int]:
    """What every engine does outside the plasticity (identical in both)."""
    deliveries = 4 + 2 + 1 + 1  # unrolled deliveries: input 0 (1 + 2 + 1), input 1 (2), rec 0 (1), rec 1 (1)
    syn_events = 2 * 4 + 1 * 2 + 2 * 1 + 1 * 1  # synapses per source x its deliveries = 13
    rec_updates, out_updates = N_REC * STEPS, N_OUT * STEPS  # 32, 16
    spikes = 2
    ls_steps = 5
    ls_terms = ls_steps * N_REC * N_OUT  # 10
    # recurrent update: 5 mul 5 add 1 div, piecewise-linear surrogate (never refractory: 32 evaluations)
    # 1 mul 2 add 1 div, a spike 1 mul 1 add; readout update 3 mul 5 add
    rec_mul = 5 * rec_updates + 1 * rec_updates + spikes
    rec_add = 5 * rec_updates + 2 * rec_updates + spikes
    return {
        "steps": STEPS, "recurrent_updates": rec_updates, "readout_updates": out_updates,
        "recurrent_spikes": spikes, "input_events": 4, "input_spikes": 4 + 2, "flush_events": 0,
        "synaptic_events": syn_events, "learning_signal_terms": ls_terms,
        "history_writes": rec_updates + out_updates,
        "network_fp_mul": rec_mul + 3 * out_updates + ls_terms,
        "network_fp_add": rec_add + 5 * out_updates + ls_terms + syn_events,
        "network_fp_div": rec_updates + rec_updates,
        "network_fp_special": 0,
        "mem_feedback_reads": ls_terms, "mem_feedback_writes": 0,
        # the previous step's error is read in every step t >= 2 (14 steps, 1 word), plus L += B err terms
        "_net_hist_reads": 14 * N_OUT + ls_terms,
        # entries psi, FR, L=0 (3 words) and err (1 word), plus the L updates
        "mem_history_writes": 3 * rec_updates + 1 * out_updates + ls_terms,
        "_net_weight_reads": syn_events,
        "_net_conn_reads": syn_events + 2 * deliveries,
        "mem_neuron_state_reads": 5 * rec_updates + 3 * out_updates + syn_events,
        "mem_neuron_state_writes": 5 * rec_updates + 3 * out_updates + syn_events,
        "mem_connectivity_writes": 0,
        "dropped_spikes": 0, "normaliser_terms": 0,  # only the Bellec engine drops spikes or normalises
    }


def _golden_counts(cutoff_rec: int) -> dict[str, int]:
    """The event-driven walks, send by send (in0/in1: the input groups onto recurrent targets):
    in0 @2: first spike, t_prev only.  in0 @5 copy 1: walk from P=2 over entries 1, 2, 3 (isi 3), all quiet.
    in0 @5 copy 2: isi 0, no entry, the optimizer finds the same step and does nothing.
    in0 @15: walk from P=5, isi 10: entries 4..8 with a 5-step cutoff (then 5 steps of decay), all quiet.
    in1 @7: first spike.  in1 @15: walk from P=7, isi 8: entries 6..10 with the cutoff (3 of decay); 6, 7, 8
    quiet, 9, 10 with learning signal.  rec0, rec1 @15: first spikes.
    With no cutoff the last two walks cover entries 4..13 (5 quiet) and 6..13 (3 quiet), without decay."""
    if cutoff_rec == 5:
        walks = [  # (synapses, entries, quiet entries, decayed, optimizes)
            (2, 3, 3, False, True), (2, 0, 0, False, False), (2, 5, 5, True, True), (1, 5, 3, True, True)]
    else:
        walks = [(2, 3, 3, False, True), (2, 0, 0, False, False), (2, 10, 5, False, True),
                 (1, 8, 3, False, True)]
    entries = sum(n * e for n, e, _, _, _ in walks)
    quiet = sum(n * q for n, _, q, _, _ in walks)
    group_entries = sum(e for _, e, _, _, _ in walks)
    syn_calls = sum(n for n, _, _, _, _ in walks)  # every walk ends at a spike: hands its sum over
    writes = sum(n for n, _, _, _, opt in walks if opt)
    decay_mul = sum(1 + 2 * n for n, _, _, d, _ in walks if d)
    net = _network_counts()
    c = {
        "compute_gradient_calls": syn_calls, "trace_updates": entries, "gradient_terms": entries,
        "history_reads": entries, "presynaptic_trace_updates": group_entries,
        "optimizer_calls": syn_calls, "weight_writes": writes, "adam_steps": 0,
        # zbar 1 mul 1 add per group-entry; 6 mul 4 add per synapse-entry (one mul, one add less when quiet);
        # decay; hand-over 1 add per synapse; gradient descent 1 mul 1 add per write
        "plasticity_fp_mul": group_entries + 6 * entries - quiet + decay_mul + writes,
        "plasticity_fp_add": group_entries + 4 * entries - quiet + syn_calls + writes,
        "plasticity_fp_div": 0,
        "plasticity_fp_special": 3 * sum(1 for w in walks if w[3]),
        "mem_weights_reads": net["_net_weight_reads"] + writes, "mem_weights_writes": writes,
        "mem_synapse_traces_reads": 2 * syn_calls, "mem_synapse_traces_writes": 2 * syn_calls,
        "mem_optimizer_state_reads": syn_calls, "mem_optimizer_state_writes": syn_calls,
        "mem_presynaptic_traces_reads": 3 * len(walks), "mem_presynaptic_traces_writes": 3 * len(walks),
        # 3 words per synapse-entry (2 when quiet) and the quiet flag per group-entry
        "mem_history_reads": net["_net_hist_reads"] + 3 * entries - quiet + group_entries,
        "mem_connectivity_reads": net["_net_conn_reads"] + sum(2 + n for n, _, _, _, _ in walks),
        "memory_flushes": 0, "memory_flush_walks": 0,
    }
    return c | {k: v for k, v in net.items() if not k.startswith("_")}


def _timedriven_counts() -> dict[str, int]:
    """Every synapse over every entry 0..13 (steps 2..15), whatever the cutoff; entries 0..8 quiet (9), 9..13 not
    (5). Spikes: the same sends as above; the optimizer runs at the same 4 hand-overs (7 synapse calls, 5 writes);
    first spikes only reset the sums: in0 @2 (2 synapses), in1 @7 (1), rec0 @15 (2), rec1 @15 (1)."""
    rec_syn, out_syn, groups, sources = 4, 2, 5, 4
    entries, quiet_entries = 14, 9
    loud = entries - quiet_entries
    syn_calls, writes, first_resets = 7, 5, 2 + 1 + 2 + 1
    copies_x_groups = 4 * 1 + 2 * 1 + 1 * 2 + 1 * 1  # delivered copies x non-empty groups of the source
    spike_sources = 3 + 2 + 1 + 1  # (source, delivery step) pairs with a real spike
    net = _network_counts()
    c = {
        "compute_gradient_calls": 0,
        "trace_updates": entries * (rec_syn + out_syn), "gradient_terms": entries * (rec_syn + out_syn),
        "history_reads": entries * (rec_syn + out_syn), "presynaptic_trace_updates": entries * groups,
        "optimizer_calls": syn_calls, "weight_writes": writes, "adam_steps": 0,
        "plasticity_fp_mul": entries * (groups + out_syn) + quiet_entries * 5 * rec_syn + loud * 6 * rec_syn + writes,
        "plasticity_fp_add": entries * (groups + out_syn) + quiet_entries * 3 * rec_syn + loud * 4 * rec_syn
        + syn_calls + writes,
        "plasticity_fp_div": 0, "plasticity_fp_special": 0,
        "mem_weights_reads": net["_net_weight_reads"] + writes, "mem_weights_writes": writes,
        "mem_synapse_traces_reads": entries * (3 * rec_syn + out_syn) + syn_calls,
        "mem_synapse_traces_writes": entries * (3 * rec_syn + out_syn) + syn_calls + first_resets,
        "mem_optimizer_state_reads": syn_calls, "mem_optimizer_state_writes": syn_calls,
        "mem_presynaptic_traces_reads": entries * (groups + sources) + copies_x_groups,
        "mem_presynaptic_traces_writes": entries * (groups + sources) + copies_x_groups + spike_sources,
        "mem_history_reads": net["_net_hist_reads"] + quiet_entries * (2 * rec_syn + out_syn + 1)
        + loud * (3 * rec_syn + out_syn + 1),
        "mem_connectivity_reads": net["_net_conn_reads"] + entries * (rec_syn + out_syn + 2 * groups),
        "memory_flushes": 0, "memory_flush_walks": 0,
    }
    return c | {k: v for k, v in net.items() if not k.startswith("_")}


def _with_adam(c: dict[str, int]) -> dict[str, int]:
    """Adam instead of gradient descent changes only the optimizations. The schedule's optimization step starts
    at 1 and an optimization at idx runs idx + 1 - step iterations: in0 at idx 4 (4 iterations) and idx 14 (10),
    in1 at idx 14 (14, its first). Per synapse and iteration 6 mul 6 add 1 div 1 special and m, v read and
    written; per group and iteration 3 mul 2 add 1 div 1 special; gradient descent's 1 mul 1 add per write go."""
    c = dict(c)
    writes = c["weight_writes"]
    synapse_iterations = 2 * 4 + 2 * 10 + 1 * 14
    group_iterations = 4 + 10 + 14
    c["adam_steps"] = synapse_iterations
    c["plasticity_fp_mul"] += 6 * synapse_iterations + 3 * group_iterations - writes
    c["plasticity_fp_add"] += 6 * synapse_iterations + 2 * group_iterations - writes
    c["plasticity_fp_div"] += synapse_iterations + group_iterations
    c["plasticity_fp_special"] += synapse_iterations + group_iterations
    c["mem_optimizer_state_reads"] += 2 * synapse_iterations
    c["mem_optimizer_state_writes"] += 2 * synapse_iterations
    return c


@pytest.mark.parametrize("optimizer", ["gradient_descent", "adam"])
@pytest.mark.parametrize("cutoff", [5, float("inf")])
def test_golden_counters_by_hand(cutoff, optimizer, monkeypatch):
    expected = _golden_counts(cutoff)
    expected = _with_adam(expected) if optimizer == "adam" else expected
    assert set(expected) == set(CT.COUNTER_NAMES)
    # walk advances ahead of time (two threads, the crew) split walks, which only memory_flush_walks sees
    advanced = _run(GoldenEngine, float(cutoff), optimizer)
    assert {k: v for k, v in advanced.items() if k != "memory_flush_walks"} == \
        {k: v for k, v in expected.items() if k != "memory_flush_walks"}
    monkeypatch.setattr(GoldenEngine, "CREW", False)
    assert _run(GoldenEngine, float(cutoff), optimizer) == expected


@pytest.mark.parametrize("optimizer", ["gradient_descent", "adam"])
@pytest.mark.parametrize("cutoff", [5, float("inf")])
def test_timedriven_counters_by_hand(cutoff, optimizer):
    expected = _timedriven_counts()
    expected = _with_adam(expected) if optimizer == "adam" else expected
    assert set(expected) == set(CT.COUNTER_NAMES)
    assert _run(TimeDrivenEngine, float(cutoff), optimizer) == expected


# ---- the Bellec engine (NEST's _bsshslm_2020 models): one weight update per interval ------------------------------
# The same 2 inputs and 2 recurrent neurons, with input 1 -> rec 1 strong enough (600 > V_th = 500) to make rec 1
# spike in the step input 1's spike arrives, and n_out readouts (1 for mean_squared_error, 2 for cross_entropy, so
# that the normaliser has terms), every recurrent neuron onto every readout.
#   groups: in0->rec (2 synapses), in1->rec (1), rec0->rec (1), rec0->out (n_out), rec1->out (n_out)
# Two samples of 10 steps in one run() call: sample 0 with input 0 at sample steps 0, 3, 3 and input 1 at 5 (the
# events of the hand network above), sample 1 without events. update interval = sequence = 10 steps, learning
# window 2 steps, neurons reset at each interval start; cross_entropy runs with average_gradient on.


def _bellec_config(optimizer: str, loss: str) -> NetworkConfig:
    return NetworkConfig.from_dict({
        "network": {"n_in": 2, "n_rec": 2, "n_out": 2 if loss == "cross_entropy" else 1},
        "recurrent": {"C_m": 1.0, "E_L": 0.0, "V_m": 0.0, "V_th": 500.0, "t_ref": 0.0, "tau_m": 10.0,
                      "c_reg": 1.0, "surrogate_gradient_function": "piecewise_linear"},
        "readout": {"C_m": 1.0, "E_L": 0.0, "V_m": 0.0, "tau_m": 10.0},
        "optimizer": {"type": optimizer, "eta": 1e-3, "optimize_each_step": False, "Wmin": -1000.0,
                      "Wmax": 1000.0},  # the weight of 600 stays (NEST's default Wmax of 100 would clamp it)
        "task": {"name": "patterns", "sequence": SEQUENCE, "learning_window": 2},
        "simulation": {"total_num_virtual_procs": 1},
        "bellec": {"loss": loss, "average_gradient": loss == "cross_entropy"},
    })


def _bellec_run(optimizer: str, loss: str) -> dict[str, int]:
    config = _bellec_config(optimizer, loss)
    n_out = config.network.n_out
    W_in = np.array([[0.1, 0.0], [0.1, 600.0]])
    W_rec = np.array([[0.0, 0.0], [0.2, 0.0]])
    W_out = np.full((n_out, 2), 0.3)
    B = np.arange(1.0, 2 * n_out + 1).reshape(2, n_out)
    network = Network(W_in=W_in, W_rec=W_rec, W_out=W_out, B=B, mask_in=W_in != 0, mask_rec=W_rec != 0,
                      mask_out=W_out != 0, seed=0)
    channels, steps = EVENTS
    order = np.argsort(steps, kind="stable")
    with_events = one_hot_sample("hand-0", 0, np.asarray(channels)[order], np.asarray(steps)[order], SEQUENCE, 2,
                                 n_out)
    silent = one_hot_sample("hand-1", 0, [], [], SEQUENCE, 2, n_out)
    engine = BellecEngine(config)
    engine.load(network)
    engine.run([with_events, silent], learn=True)
    engine.finish()
    return engine.counters()


# ---- the Bellec timeline, by hand ----------------------------------------------------------------------------------
# run(): steps 0..19; finish(): steps 20..25, the forced spikes happen in step 24 and are delivered in step 25. 26
# steps. Recurrent intervals (shift 2) [2, 12), [12, 22), [22, 32); readout intervals (shift 3) [3, 13), [13, 23), ...
# Deliveries (an event at sample step s arrives in step s + 2):
#   in0 @2 (m=1): the recurrent interval's step 0: dropped at both synapses (in0 has no readout synapses, so nothing
#                 is transmitted and no row is read); in0 @5 (m=2); in1 @7 (m=1);
#   rec 1: 600 arrives in step 7 -> v = 600.16 >= 500, spikes; in step 8 v = 0.905 * 600.16 - 500 = 43 (no spike);
#          its spike arrives at the readouts in step 8;
#   step 24: the final update gives rec 0 and rec 1 1000 (v was reset to 0 in step 22): both spike; the inputs fire;
#   step 25: in0, in1, rec0, rec1 deliver (m=1; weights changed by at most eta * gradient, about 1e-3). rec 1
#          gets 600 + 0.1 + 0.2 again, v = 600.3 + 0.905 * 1000 - 500 = 1005: spikes a 4th time (not delivered:
#          the run ends). rec 0: 0.1 + 904.8 - 500 = 405: no spike.
#   No delivery falls on step 12 or 22 (the other interval starts), none on 13 or 23 (no early walks).
# Errors: the window is open in readout steps t with (t - 4) % 10 in {8, 9}: 12, 13, 22, 23. MSE: the signal is
# V_m(t - 1) (0.3 e^-0.3 and ~0.2 in 12, 13 after rec 1's spike, 0 in 22, 23) against target 1: non-zero. Cross-
# entropy: both readouts see the same input, the signal is 0.5 against targets 1 and 0: non-zero. So the learning
# signals of steps 13, 14, 23, 24 (errors of the step before) are non-zero: recurrent entries 10, 11, 20, 21.
# Walks, in step 14 (two steps after interval 0's end; nothing is left for step 24):
#   in0->rec (2 synapses) from its first transmitted spike, entries 5..11 (7; 10 and 11 with learning signal);
#   in1->rec (1 synapse) entries 7..11 (5; 2 with learning signal); rec1->out (n_out synapses) entries 8..12 (5).
# Optimizer calls, at the sends of step 25 (idx = 2 for every group: (25 - 2) // 10 and (25 - 3) // 10), once per
# group: all 5 groups, 4 + 2 n_out synapses (rec 0's groups at their first spike too: the pending interval, which
# ends at 12 / 13, is over; they optimize with a zero gradient, as NEST does); the optimizer's step goes from 1 to
# 3: a weight write each, Adam 2 iterations each. Nothing is optimized earlier: no spike before 25 comes after the
# end of its group's interval.
BELLEC_STEPS = 26
N_SRC = 4


def _bellec_counts(optimizer: str, loss: str) -> dict[str, int]:
    ce = loss == "cross_entropy"
    n_out = 2 if ce else 1
    average = ce
    # network: (step, source, multiplicity, synapses onto recurrent targets, onto readouts), dropped: in0 @2
    deliveries = [(2, "in0", 1, 2, 0), (5, "in0", 2, 2, 0), (7, "in1", 1, 1, 0), (8, "rec1", 1, 0, n_out),
                  (25, "in0", 1, 2, 0), (25, "in1", 1, 1, 0), (25, "rec0", 1, 1, n_out), (25, "rec1", 1, 0, n_out)]
    dropped = [(2, "in0")]
    syn_events = sum(m * (out if (t, s) in dropped else rec + out) for t, s, m, rec, out in deliveries)
    dropped_pairs = sum(m * rec for t, s, m, rec, _ in deliveries if (t, s) in dropped)
    rows_read = sum(m for t, s, m, rec, out in deliveries if (out if (t, s) in dropped else rec + out) > 0)
    # sends: a delivered copy and a non-empty group, not dropped there
    sends = sum(m * ((rec > 0 and (t, s) not in dropped) + (out > 0)) for t, s, m, rec, out in deliveries)
    rec_updates, out_updates = N_REC * BELLEC_STEPS, n_out * BELLEC_STEPS
    spikes = 4
    interval_ends = 2  # steps 11 and 21: the interval regularisation of every recurrent neuron
    ls_steps = 4
    ls_terms = ls_steps * N_REC * n_out
    norm_terms = BELLEC_STEPS * n_out * (n_out - 1) if ce else 0
    # recurrent update 4 mul 4 add, piecewise-linear surrogate (never refractory) 1 mul 2 add 1 div; regularisation
    # 1 mul 1 add 2 div per neuron and interval end; readout 3 mul, 5 add (MSE) or 6 add 1 div 1 exp (CE)
    net = {
        "steps": BELLEC_STEPS, "recurrent_updates": rec_updates, "readout_updates": out_updates,
        "recurrent_spikes": spikes, "input_events": 4, "input_spikes": 1 + 2 + 1 + 1 + 1, "flush_events": 0,
        "synaptic_events": syn_events, "dropped_spikes": dropped_pairs, "learning_signal_terms": ls_terms,
        "normaliser_terms": norm_terms,
        "history_writes": rec_updates + out_updates,
        "network_fp_mul": 4 * rec_updates + 1 * rec_updates + N_REC * interval_ends + 3 * out_updates + ls_terms,
        "network_fp_add": 4 * rec_updates + 2 * rec_updates + N_REC * interval_ends + (6 if ce else 5) * out_updates
        + ls_terms + syn_events + norm_terms,
        "network_fp_div": 1 * rec_updates + 2 * N_REC * interval_ends + (out_updates if ce else 0),
        "network_fp_special": out_updates if ce else 0,
        "mem_feedback_reads": ls_terms, "mem_feedback_writes": 0,
        # psi and L = 0 per recurrent entry, FR per neuron and interval, err per readout entry, the L updates
        "mem_history_writes": 2 * rec_updates + N_REC * interval_ends + out_updates + ls_terms,
        "mem_neuron_state_reads": 6 * rec_updates + (5 if ce else 4) * out_updates + syn_events + norm_terms,
        "mem_neuron_state_writes": 6 * rec_updates + 4 * out_updates + syn_events + (out_updates if ce else 0),
        "mem_connectivity_writes": 0,
    }
    # the errors of the previous step are read in every step t >= 3 (23 steps)
    net_hist_reads = (BELLEC_STEPS - 3) * n_out + ls_terms
    # plasticity: (synapses, entries, entries with a learning signal, onto readouts)
    walks = [(2, 7, 2, False), (1, 5, 2, False), (n_out, 5, 0, True)]
    syn_walks = sum(n for n, _, _, _ in walks)
    entries = sum(n * e for n, e, _, _ in walks)
    group_entries = sum(e for _, e, _, _ in walks)
    rec_entries = sum(n * e for n, e, _, out in walks if not out)
    rec_loud = sum(n * loud for n, _, loud, out in walks if not out)
    rec_syn_walks = sum(n for n, _, _, out in walks if not out)
    out_entries = sum(n * e for n, e, _, out in walks if out)
    calls = 2 + 1 + 1 + n_out + n_out  # synapses of the 5 groups, each optimized once, in step 25
    groups_optimized = 5
    iterations = 2  # Adam, per call
    c = {
        "compute_gradient_calls": syn_walks, "trace_updates": entries, "history_reads": entries,
        # L ebar where the entry has a learning signal, the regularisation term per recurrent synapse, err zbar
        "gradient_terms": rec_loud + rec_syn_walks + out_entries,
        "presynaptic_trace_updates": group_entries,
        "optimizer_calls": calls, "weight_writes": calls, "adam_steps": 0,
        # zbar 2 mul 1 add per group-entry; recurrent e, ebar, sum_e 3 mul 2 add per synapse-entry, L ebar 1 mul
        # 1 add more with a learning signal, grad + FR sum_e 1 mul 1 add and gradient_ += 1 add per synapse;
        # readout 1 mul 1 add per synapse-entry, gradient_ += 1 add per synapse; cum += gradient_ 1 add per call;
        # gradient descent 1 mul 1 add per write
        "plasticity_fp_mul": 2 * group_entries + 3 * rec_entries + rec_loud + rec_syn_walks + out_entries + calls,
        "plasticity_fp_add": group_entries + 2 * rec_entries + rec_loud + 2 * rec_syn_walks + out_entries
        + (syn_walks - rec_syn_walks) + calls + calls,
        "plasticity_fp_div": syn_walks if average else 0,
        "plasticity_fp_special": 0,
        "mem_weights_reads": syn_events + calls, "mem_weights_writes": calls,
        # gradient_ += at each walk, read and reset by each call
        "mem_synapse_traces_reads": syn_walks + calls, "mem_synapse_traces_writes": syn_walks + calls,
        "mem_optimizer_state_reads": calls, "mem_optimizer_state_writes": calls,
        # record read and written per send; per walk the first spike and interval end, and a spike flag per entry;
        # each step every source's spike flag written
        "mem_presynaptic_traces_reads": 3 * sends + 2 * len(walks) + group_entries,
        "mem_presynaptic_traces_writes": 3 * sends + N_SRC * BELLEC_STEPS,
        # psi per recurrent synapse-entry, L where there is a learning signal, the flag per recurrent group-entry,
        # FR per recurrent synapse and walk; err per readout synapse-entry
        "mem_history_reads": net_hist_reads + rec_entries + rec_loud
        + sum(e for _, e, _, out in walks if not out) + rec_syn_walks + out_entries,
        "mem_connectivity_reads": syn_events + 2 * rows_read + sum(2 + n for n, _, _, _ in walks),
        "memory_flushes": 0, "memory_flush_walks": 0,
    }
    if optimizer == "adam":
        # per synapse and iteration 6 mul 6 add 1 div 1 sqrt, m and v read and written; per group and iteration
        # 3 mul 2 add 1 div 1 sqrt; gradient descent's 1 mul 1 add go
        syn_it, grp_it = iterations * calls, iterations * groups_optimized
        c["adam_steps"] = syn_it
        c["plasticity_fp_mul"] += 6 * syn_it + 3 * grp_it - calls
        c["plasticity_fp_add"] += 6 * syn_it + 2 * grp_it - calls
        c["plasticity_fp_div"] += syn_it + grp_it
        c["plasticity_fp_special"] += syn_it + grp_it
        c["mem_optimizer_state_reads"] += 2 * syn_it
        c["mem_optimizer_state_writes"] += 2 * syn_it
    return c | net


@pytest.mark.parametrize("loss", ["mean_squared_error", "cross_entropy"])
@pytest.mark.parametrize("optimizer", ["gradient_descent", "adam"])
def test_bellec_counters_by_hand(optimizer, loss):
    expected = _bellec_counts(optimizer, loss)
    assert set(expected) == set(CT.COUNTER_NAMES)
    assert _bellec_run(optimizer, loss) == expected


def test_counter_table_is_consistent():
    assert len(set(CT.COUNTER_NAMES)) == CT.N_COUNTERS
    assert {c.group for c in CT.COUNTERS} <= {"network", "plasticity", "arithmetic", "memory", "implementation"}
    for memory in CT.MEMORIES:
        assert f"mem_{memory}_reads" in CT.COUNTER_NAMES and f"mem_{memory}_writes" in CT.COUNTER_NAMES
    assert set(CT.HEADLINE) <= set(CT.COUNTER_NAMES)
    rows = CT.new_counter_rows(3)
    rows[0, CT.C_TRACE_UPDATES] = 2
    rows[2, CT.C_TRACE_UPDATES] = 5
    assert CT.as_dict(rows)["trace_updates"] == 7


def test_stale_layout_is_detected():
    with pytest.raises(RuntimeError, match="stale Numba cache"):
        CT.check_compiled_layout((0, 1, 2, 3, 4, 5), "some_kernels")
    # a kernel compiled before counters were appended indexes the same rows: accepted; one compiled against a
    # longer table (counters removed since) is not
    CT.check_compiled_layout(CT.LAYOUT[:-1] + (CT.LAYOUT[-1] - 2,), "older_kernels")
    with pytest.raises(RuntimeError, match="stale Numba cache"):
        CT.check_compiled_layout(CT.LAYOUT[:-1] + (CT.LAYOUT[-1] + 1,), "newer_kernels")
    # the counters appended after the first table come after every index the golden and time-driven kernels use
    assert CT.C_DROPPED_SPIKES == 44 and CT.C_NORM_TERMS == 45 and CT.COUNTER_NAMES[43] == "memory_flush_walks"
