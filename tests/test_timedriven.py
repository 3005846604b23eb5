"""The time-driven engine computes the golden engine's e-prop: bit for bit without a cutoff, and with a cutoff
differs from it by exactly what the cutoff drops."""

import math

import numba
import numpy as np
import pytest

from golden_model.config import ConfigError, NetworkConfig, load_preset
from golden_model.engines.golden import GoldenEngine
from golden_model.engines.timedriven import TimeDrivenEngine
from golden_model.network import Network, build_network
from golden_model.tasks import Sample

from .conftest import run_schedule

NO_CUTOFF = ["recurrent.eprop_isi_trace_cutoff=inf", "readout.eprop_isi_trace_cutoff=inf"]

CASES = {
    # name: (preset, overrides, schedule [(n_samples, learn), ...], samples per run() call)
    "tiny-gd-phases-eta-changes-flush-events": ("tiny", [], [(3, True), (2, False), (3, True), (1, False)], 2),
    "tiny-adam": ("tiny", ["optimizer.type=adam", "optimizer.eta=1e-3"], [(5, True), (2, False)], 3),
    "tiny-adam-batch-arctan-EL-currents": (
        "tiny", ["optimizer.type=adam", "optimizer.eta=1e-3", "optimizer.batch_size=4",
                 "recurrent.surrogate_gradient_function=arctan_derivative", "recurrent.E_L=-70.0",
                 "recurrent.V_m=-69.5", "recurrent.V_th=-68.5", "recurrent.I_e=0.02", "recurrent.V_min=-70.5",
                 "recurrent.C_m=2.0", "readout.E_L=0.25", "readout.I_e=0.01", "readout.V_min=-0.5"],
        [(4, True), (1, False)], 1),
    "tiny-gd-tref0-exponential-one-vp-sparse-readout": (
        "tiny", ["recurrent.t_ref=0.0", "recurrent.surrogate_gradient_function=exponential",
                 "simulation.total_num_virtual_procs=1", "network.p_out=0.5"], [(4, True), (2, False)], 4),
    "sine-gd": ("sine", [], [(3, True), (1, False)], 1),
    "nmnist-gd": ("nmnist", [], [(3, True), (1, False)], 2),
    "nmnist-adam": ("nmnist", ["optimizer.type=adam"], [(2, True)], 1),
}


@pytest.mark.parametrize("case", list(CASES))
def test_timedriven_equals_golden_without_cutoff(case):
    preset, overrides, schedule, block = CASES[case]
    config = load_preset(preset, overrides + NO_CUTOFF)
    network = build_network(config)
    golden = run_schedule("golden", config, schedule, block, network)
    timed = run_schedule("timedriven", config, schedule, block, network)
    for name in ("W_in", "W_rec", "W_out"):
        g, t = getattr(golden.weights, name), getattr(timed.weights, name)
        assert np.array_equal(g, t), f"{name}: max |dW| = {np.max(np.abs(g - t))!r}"
        assert not np.array_equal(g, getattr(network, name)), f"{name} did not learn: the comparison is vacuous"
    assert np.array_equal(golden.y, timed.y)
    assert golden.spikes.shape == timed.spikes.shape and np.array_equal(golden.spikes, timed.spikes)
    assert golden.spikes.shape[1] > 0
    # the same optimizer calls at the same spikes, and every synapse updated at every step instead of on demand
    for key in ("optimizer_calls", "weight_writes", "adam_steps", "synaptic_events", "recurrent_spikes"):
        assert golden.counters[key] == timed.counters[key], key
    assert timed.counters["compute_gradient_calls"] == 0
    assert timed.counters["trace_updates"] > golden.counters["trace_updates"] > 0


def test_results_and_counts_do_not_depend_on_thread_count_or_block_size():
    config = load_preset("tiny", ["optimizer.type=adam"])
    schedule = [(5, True), (2, False)]
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = run_schedule("timedriven", config, schedule, 1)
    finally:
        numba.set_num_threads(before)
    many = run_schedule("timedriven", config, schedule, 4)
    for name in ("W_in", "W_rec", "W_out"):
        assert np.array_equal(getattr(one.weights, name), getattr(many.weights, name))
    assert np.array_equal(one.y, many.y) and np.array_equal(one.spikes, many.spikes)
    assert one.counters == many.counters


def test_timedriven_refuses_optimize_each_step():
    with pytest.raises(ConfigError, match=r"\[optimizer\] optimize_each_step = True"):
        TimeDrivenEngine(load_preset("tiny", ["optimizer.optimize_each_step=true"]))


def test_a_cutoff_no_isi_reaches_changes_nothing():
    """The tiny run's intervals between consecutive sends of a source are far below 10^6 steps: with that
    (finite) cutoff the golden engine drops nothing, and agrees with the time-driven engine to the last bit;
    with a 10-step cutoff it drops contributions and the weights differ."""
    schedule = [(4, True), (1, False)]
    for cutoff, identical in ((1e6, True), (10.0, False)):
        config = load_preset("tiny", [f"recurrent.eprop_isi_trace_cutoff={cutoff}",
                                      f"readout.eprop_isi_trace_cutoff={cutoff}"])
        network = build_network(config)
        golden = run_schedule("golden", config, schedule, 2, network)
        timed = run_schedule("timedriven", config, schedule, 2, network)
        same = all(np.array_equal(getattr(golden.weights, n), getattr(timed.weights, n))
                   for n in ("W_in", "W_rec", "W_out"))
        assert same == identical, cutoff


# ---- the precise statement: which synapses the cutoff changes ---------------------------------------------------
#
# A network whose activity cannot depend on its weights, so that every synapse's gradient depends only on its own
# source's spike times and on histories that are the same in both engines:
# * input weights are negative and V_min = E_L = V_m = 0: every recurrent membrane potential is clamped at exactly
#   V_min (0) whatever the input weights are, until the final update's forced spike; psi (exponential surrogate)
#   and FR (no spikes: the rate trace stays 0) are therefore constant and non-zero;
# * the readouts receive nothing until the recurrent neurons spike (the final update): their error is -target in
#   the learning window, the learning signals B err are non-zero there;
# * recurrent and readout synapses see one spike (the forced one): they never learn in either engine.
# With a cutoff of C steps the golden engine walks at most C entries after a spike and only decays the traces over
# the rest (spec section 5); the time-driven engine adds every entry. A synapse whose every inter-spike interval is
# <= C is walked over exactly the entries the time-driven engine adds, in the same order, with the same
# arithmetic: its weight is identical to the last bit. A synapse with an interval > C loses the terms of the entries
# beyond C (non-zero here: psi > 0, z_bar > 0, FR != 0): its weight differs.

CUTOFF_STEPS = 20
SEQUENCE = 60
# per input channel, the sample steps of its events in sample 0 and sample 1. Stamps (delivery steps) are
# n * SEQUENCE + step + 2; the final update delivers a spike into every input at 2 * SEQUENCE + 5 = 125.
CHANNEL_EVENTS = {
    0: ([0, 10, 20, 30, 40, 50], [0, 10, 20, 30, 40, 50]),  # intervals 10, and 125 - 112 = 13: all <= 20
    1: ([0, 5], []),                                         # 2 -> 7 (5), then 7 -> 125 (118 > 20)
    2: ([0, 15, 30, 45], [15, 30, 45]),                      # ... 47 -> 77 (30 > 20) ..., 107 -> 125 (18)
    3: ([4, 4, 19, 34, 49], [4, 4, 19, 34, 49]),             # a double event (multiplicity 2, interval 0), 15, 15,
}                                                            # 51 -> 66 (15), 111 -> 125 (14): all <= 20
LONG_INTERVAL = {0: False, 1: True, 2: True, 3: False}


def _isolated_network() -> tuple[NetworkConfig, Network]:
    n_in, n_rec, n_out = 4, 3, 2
    config = NetworkConfig.from_dict({
        "network": {"n_in": n_in, "n_rec": n_rec, "n_out": n_out},
        "recurrent": {"C_m": 1.0, "E_L": 0.0, "V_m": 0.0, "V_min": 0.0, "V_th": 1.0, "t_ref": 0.0, "tau_m": 20.0,
                      "c_reg": 1.0, "surrogate_gradient_function": "exponential",
                      "surrogate_gradient_height": 0.3, "surrogate_gradient_width": 1.0,
                      "eprop_isi_trace_cutoff": float(CUTOFF_STEPS)},
        "readout": {"C_m": 1.0, "E_L": 0.0, "V_m": 0.0, "tau_m": 20.0, "eprop_isi_trace_cutoff": float(CUTOFF_STEPS)},
        "optimizer": {"type": "gradient_descent", "eta": 1e-3, "optimize_each_step": False},
        "task": {"name": "patterns", "sequence": SEQUENCE, "learning_window": 10},
        "simulation": {"total_num_virtual_procs": 1},
    })
    rng = np.random.default_rng(11)
    W_in = -rng.uniform(0.1, 0.3, (n_rec, n_in))
    W_rec = np.array([[0.0, 0.2, 0.0], [0.0, 0.0, 0.3], [0.4, 0.0, 0.0]])
    W_out = rng.uniform(0.1, 0.3, (n_out, n_rec))
    B = rng.normal(size=(n_rec, n_out))
    net = Network(W_in=W_in, W_rec=W_rec, W_out=W_out, B=B, mask_in=W_in != 0, mask_rec=W_rec != 0,
                  mask_out=W_out != 0, seed=0)
    return config, net


def _hand_sample(index: int) -> Sample:
    channels, steps = [], []
    for channel, per_sample in CHANNEL_EVENTS.items():
        steps += per_sample[index]
        channels += [channel] * len(per_sample[index])
    order = np.argsort(steps, kind="stable")
    target = np.zeros((SEQUENCE, 2))
    target[:, index % 2] = 1.0
    window = np.zeros(SEQUENCE)
    window[-10:] = 1.0
    return Sample(f"hand/{index}", index % 2, np.asarray(channels, np.int32)[order],
                  np.asarray(steps, np.int32)[order], target, window)


def _isi_exceeds(events: tuple[list[int], list[int]], cutoff: int) -> bool:
    """Recompute the intervals between a channel's sends from its events (independent of the engines)."""
    stamps = sorted({n * SEQUENCE + s + 2 for n, steps in enumerate(events) for s in steps})
    stamps.append(2 * SEQUENCE + 5)  # the final update's forced spike
    return any(b - a > cutoff for a, b in zip(stamps, stamps[1:]))


def test_finite_cutoff_changes_exactly_the_synapses_with_an_interval_beyond_it():
    config, net = _isolated_network()
    assert {c: _isi_exceeds(ev, CUTOFF_STEPS) for c, ev in CHANNEL_EVENTS.items()} == LONG_INTERVAL
    results = {}
    for cls in (GoldenEngine, TimeDrivenEngine):
        engine = cls(config)
        engine.load(net)
        traces = [engine.run([_hand_sample(0), _hand_sample(1)], learn=True), engine.finish()]
        results[cls.name] = (engine.weights(), np.concatenate([t.y for t in traces]),
                             np.concatenate([t.spike_steps for t in traces]))
    (w_g, y_g, s_g), (w_t, y_t, s_t) = results["golden"], results["timedriven"]
    # the premise: the activity is the same in both engines (no spike before the final update's forced one) ...
    assert np.array_equal(y_g, y_t) and np.array_equal(s_g, s_t)
    assert s_g.size and s_g.min() == 2 * SEQUENCE + 4
    # ... because the input weights stayed negative (potentials clamped at V_min) ...
    assert np.all(w_g.W_in < 0) and np.all(w_t.W_in < 0)
    # ... and the weights did learn
    assert not np.array_equal(w_t.W_in, net.W_in)
    # the statement: per synapse, identical iff every interval of its source is within the cutoff
    for channel, long_interval in LONG_INTERVAL.items():
        differs = w_g.W_in[:, channel] != w_t.W_in[:, channel]
        if long_interval:
            assert differs.all(), f"channel {channel}: an interval exceeds the cutoff, every synapse must differ"
        else:
            assert not differs.any(), f"channel {channel}: every interval is within the cutoff, nothing may differ"
    # recurrent and readout synapses saw only their first spike: untouched in both
    assert np.array_equal(w_g.W_rec, net.W_rec) and np.array_equal(w_t.W_rec, net.W_rec)
    assert np.array_equal(w_g.W_out, net.W_out) and np.array_equal(w_t.W_out, net.W_out)


def test_finite_cutoff_difference_is_what_the_cutoff_drops():
    """Without the cutoff the same isolated network is identical in both engines: the differences above come
    from the cutoff and nothing else."""
    config, net = _isolated_network()
    config = config.with_overrides({"recurrent.eprop_isi_trace_cutoff": math.inf,
                                    "readout.eprop_isi_trace_cutoff": math.inf})
    weights = []
    for cls in (GoldenEngine, TimeDrivenEngine):
        engine = cls(config)
        engine.load(net)
        engine.run([_hand_sample(0), _hand_sample(1)], learn=True)
        engine.finish()
        weights.append(engine.weights().W_in)
    assert np.array_equal(weights[0], weights[1])
