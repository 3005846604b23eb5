"""The golden engine against hand-derivable numbers and against itself (invariances that must hold exactly)."""

import math

import numba
import numpy as np
import pytest

from golden_model.config import NetworkConfig, load_preset
from golden_model.engines import golden_kernels as K
from golden_model.engines.golden import GoldenEngine
from golden_model.network import Network
from golden_model.tasks import Sample

from .conftest import run_engine


def _single_neuron(recurrent: dict, sequence: int = 20) -> tuple[NetworkConfig, Network]:
    config = NetworkConfig.from_dict({
        "network": {"n_in": 1, "n_rec": 1, "n_out": 1},
        "recurrent": recurrent,
        "task": {"name": "patterns", "sequence": sequence, "learning_window": 1},
        "simulation": {"total_num_virtual_procs": 1},
    })
    one, zero = np.array([[0.3]]), np.zeros((1, 1))
    net = Network(W_in=one, W_rec=zero.copy(), W_out=zero.copy(), B=zero.copy(), mask_in=one != 0,
                  mask_rec=zero != 0, mask_out=zero != 0, seed=0)
    return config, net


def _sample(steps, sequence=20, channels=None):
    steps = np.asarray(steps, np.int32)
    channels = np.zeros_like(steps) if channels is None else np.asarray(channels, np.int32)
    return Sample("s", 0, channels, steps, np.zeros((sequence, 1)), np.zeros(sequence))


# NEST 3.10 testsuite/pytests/synapses/test_eprop_plasticity.py::test_eprop_surrogate_gradients: one eprop_iaf
# (defaults, C_m 1, E_L 0, V_th 0.6, t_ref 3, height 0.5, width 1/1.7) driven through a parrot with weight 0.3 by
# spikes at 1, 2, 3, 5, 9, 11 ms; the last five recorded surrogate gradients (printed to 14 digits).
NEST_SURROGATE_REFERENCE = {
    "piecewise_linear": [0.21030100902759, 0.18933659619924, 0.17036721102500, 0.15320300152221,
                         0.13767218251307],
    "exponential": [0.28011776848615, 0.26861558105999, 0.25861553046549, 0.24988832085299, 0.24224569105944],
    "fast_sigmoid_derivative": [0.20044113201621, 0.19020804299944, 0.18160934703950, 0.17432167613232,
                                0.16809903522604],
    "arctan_derivative": [0.37433498786304, 0.36073812744784, 0.34852165076370, 0.33759316659435,
                          0.32784181049728],
}


@pytest.mark.parametrize("surrogate", sorted(NEST_SURROGATE_REFERENCE))
def test_surrogate_gradients_match_nests_own_reference(surrogate):
    config, net = _single_neuron({"C_m": 1.0, "c_reg": 0.0, "E_L": 0.0, "I_e": 0.0, "V_m": 0.0, "V_th": 0.6,
                                  "t_ref": 3.0, "surrogate_gradient_function": surrogate,
                                  "surrogate_gradient_height": 0.5, "surrogate_gradient_width": 1.0 / 1.7})
    engine = GoldenEngine(config)
    engine.load(net)
    # spike generator times s ms are emitted by the input neuron in step s: sample step s - 1
    engine.run([_sample([0, 1, 2, 4, 8, 10])], learn=True)
    # NEST's multimeter reports steps 0..18 of a 20-step Simulate; the last five are steps 14..18
    psi = [engine.hist["psi"][t & (engine.hist["psi"].shape[0] - 1), 0] for t in range(14, 19)]
    # the reference values are printed with 14 significant digits: compare to that precision
    np.testing.assert_allclose(psi, NEST_SURROGATE_REFERENCE[surrogate], rtol=1e-12, atol=0)


def test_multiplicity_adds_each_copy_and_counts_one_spike():
    """Ten events of one input in one step: NEST unrolls them into ten deliveries (v += w ten times), while the
    eligibility trace counts one spike (z_bar += 1)."""
    config, net = _single_neuron({"C_m": 1.0, "E_L": 0.0, "V_m": 0.0, "V_th": 100.0, "t_ref": 0.0})
    w = 0.1  # 0.1 added ten times is 0.9999999999999999, 10 * 0.1 is 1.0
    v = 0.0
    for _ in range(10):
        v += w
    assert v != 10 * w
    net.W_in[0, 0] = w
    engine = GoldenEngine(config)
    engine.load(net)
    engine.run([_sample([0] * 10)], learn=False)  # emitted in step 1, delivered in step 2
    alpha = math.exp(-1.0 / config.recurrent.tau_m)
    for _ in range(2, 20):  # decays from step 3 on (no further input)
        v = alpha * v if _ > 2 else v
    assert engine.rec_f[0, K.R_V] == v
    assert engine.grp_i[0, K.G_TPREV] == 2
    engine2 = GoldenEngine(config)
    engine2.load(net)
    engine2.run([_sample([0])], learn=False)
    # the repeats have isi 0: the trace state is that of a single spike and the weight is unchanged (NEST's
    # repeats do call the optimizer, with a zero gradient, exactly as these do)
    assert np.array_equal(engine.grp_f[:, [K.G_ZBUF, K.G_ZBAR]], engine2.grp_f[:, [K.G_ZBUF, K.G_ZBAR]])
    assert engine.grp_i[0, K.G_TPREV] == engine2.grp_i[0, K.G_TPREV]
    assert np.array_equal(engine.syn, engine2.syn)


def _optimizer_arrays(opt: str, eta_changes=1):
    fp = np.zeros(K.N_FP)
    ip = np.zeros(K.N_IP, np.int64)
    fp[K.P_ETA], fp[K.P_ETA_FIRST] = 0.25, 0.5
    fp[K.P_BETA1], fp[K.P_BETA2], fp[K.P_EPSILON] = 0.9, 0.999, 1e-7
    fp[K.P_WMIN], fp[K.P_WMAX] = -1.0, 1.0
    ip[K.IP_OPTIMIZER] = K.OPTIMIZER_CODES[opt]
    ip[K.IP_BATCH] = 1
    ip[K.IP_ETA_CHANGES] = eta_changes
    syn = np.zeros((K.N_SYN_ROWS, 2))
    syn[K.S_W] = [0.2, 0.9]
    grp_f = np.zeros((1, K.N_GRP_F))
    grp_f[0, [K.G_ETA, K.G_B1P, K.G_B2P]] = [1e-4, 1.0, 1.0]
    grp_i = np.zeros((1, K.N_GRP_I), np.int64)
    grp_i[0, K.G_OPT_STEP] = 1
    return syn, grp_f, grp_i, fp, ip


def test_gradient_descent_step_by_hand():
    syn, grp_f, grp_i, fp, ip = _optimizer_arrays("gradient_descent")
    syn[K.S_CUM] = [0.1, -0.5]
    counters = np.zeros(K.N_COUNTERS, np.int64)
    K.group_optimize(0, 0, 2, 4, syn, grp_f, grp_i, fp, ip, counters)
    # first optimization uses the first eta ever set (0.5), then the synapse takes the current one (0.25)
    assert syn[K.S_W].tolist() == [0.2 - 0.5 * 0.1, 1.0]  # 0.9 + 0.25 clamps at Wmax
    assert grp_f[0, K.G_ETA] == 0.25 and grp_i[0, K.G_OPT_STEP] == 5 and grp_i[0, K.G_N_OPT] == 1
    assert syn[K.S_CUM].tolist() == [0.0, 0.0]
    K.group_optimize(0, 0, 2, 4, syn, grp_f, grp_i, fp, ip, counters)  # same idx: no new optimization step
    assert grp_i[0, K.G_N_OPT] == 1


def test_adam_catch_up_iterations_by_hand():
    syn, grp_f, grp_i, fp, ip = _optimizer_arrays("adam")
    syn[K.S_CUM] = [0.1, 0.0]
    counters = np.zeros(K.N_COUNTERS, np.int64)
    K.group_optimize(0, 0, 2, 2, syn, grp_f, grp_i, fp, ip, counters)  # idx 2: steps 1 and 2 -> 2 iterations
    w, m, v, b1, b2, g = 0.2, 0.0, 0.0, 1.0, 1.0, 0.1
    for _ in range(2):
        b1 *= 0.9
        b2 *= 0.999
        alpha = 0.5 * math.sqrt(1.0 - b2) / (1.0 - b1)
        m = 0.9 * m + (1.0 - 0.9) * g
        v = 0.999 * v + (1.0 - 0.999) * g * g
        w -= alpha * m / (math.sqrt(v) + 1e-7)
        g = 0.0  # the accumulated gradient goes into the first iteration only
    assert syn[K.S_W, 0] == w and syn[K.S_W, 1] == 0.9
    assert counters[K.C_ADAM_STEPS] == 4


def _assert_same_run(a, b, implementation=("memory_flush_walks",)):
    """Two runs computed the same: every weight, readout trace and spike, and every counter except those that
    only count how the implementation scheduled its work."""
    for name in ("W_in", "W_rec", "W_out"):
        assert np.array_equal(getattr(a.weights, name), getattr(b.weights, name))
    assert np.array_equal(a.y, b.y) and np.array_equal(a.spikes, b.spikes)
    assert {k: v for k, v in a.counters.items() if k not in implementation} == \
        {k: v for k, v in b.counters.items() if k not in implementation}


def test_memory_flushes_do_not_change_any_number(monkeypatch):
    config = load_preset("tiny")
    monkeypatch.setattr(GoldenEngine, "CREW", False)  # no walk advances ahead of time: only flushes split walks
    monkeypatch.setattr(GoldenEngine, "MEMORY_FLUSH_EVERY", 16)  # walks silent for 32 steps are flushed
    a = run_engine("golden", config, 6, 2, block=3)
    monkeypatch.setattr(GoldenEngine, "MEMORY_FLUSH_EVERY", 1 << 14)  # no flush within this run
    b = run_engine("golden", config, 6, 2, block=3)
    assert a.counters["memory_flushes"] > 0 and b.counters["memory_flushes"] == 0
    assert a.counters["memory_flush_walks"] > 0 and b.counters["memory_flush_walks"] == 0
    # the flushes split walks but add no work of the algorithm: every other counter is unchanged
    _assert_same_run(a, b, implementation=("memory_flushes", "memory_flush_walks"))


def test_results_do_not_depend_on_thread_count_or_block_size(monkeypatch):
    config = load_preset("tiny", ["optimizer.type=adam"])
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = run_engine("golden", config, 5, 2, block=1)
    finally:
        numba.set_num_threads(before)
    # every step's plasticity on the worker threads, however little (tiny alone never reaches the threshold)
    monkeypatch.setattr(GoldenEngine, "PARALLEL_MIN_UPDATES", 0)
    many = run_engine("golden", config, 5, 2, block=4)
    # counted per thread, summed: the same whatever the split, except how often walks were advanced ahead of time
    _assert_same_run(one, many)


@pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2, reason="walk advances need a second thread")
@pytest.mark.parametrize("preset", ["tiny", "sine"])
def test_walk_advances_ahead_of_time_change_no_number(monkeypatch, preset):
    config = load_preset(preset)
    monkeypatch.setattr(GoldenEngine, "CREW", False)
    plain = run_engine("golden", config, 4, 2, block=2)
    monkeypatch.setattr(GoldenEngine, "CREW", True)
    monkeypatch.setattr(GoldenEngine, "CREW_HORIZON", 64)  # advance whatever a long look-ahead holds
    ahead = run_engine("golden", config, 4, 2, block=2)
    _assert_same_run(plain, ahead)


@pytest.mark.parametrize("preset, n_train, extra", [
    ("nmnist", 5, []),  # 1,500 steps: the 1,024-entry rings wrap; 37-synapse groups, walks of tens of entries
    ("nmnist", 4, ["optimizer.type=adam", "recurrent.eprop_isi_trace_cutoff=40"]),
    ("tiny", 6, ["recurrent.eprop_isi_trace_cutoff=20"]),
])
def test_vector_walk_changes_no_number(monkeypatch, preset, n_train, extra):
    """The vector walk (simd.py) against the scalar walk in the running engine: every weight, readout trace,
    spike and counter identical, with gradient descent and Adam, with and without a cutoff."""
    config = load_preset(preset, extra)
    monkeypatch.setattr(GoldenEngine, "VECTOR_WALK", False)
    scalar = run_engine("golden", config, n_train, 1, block=2)
    monkeypatch.setattr(GoldenEngine, "VECTOR_WALK", True)
    vector = run_engine("golden", config, n_train, 1, block=2)
    assert vector.counters["trace_updates"] > 100_000 or preset == "tiny"
    _assert_same_run(scalar, vector)




@pytest.mark.parametrize("preset, n_train, extra", [
    ("nmnist", 3, []),  # inputs silent for more than the 100-step cutoff: decays of hundreds of steps
    ("sine", 3, ["recurrent.eprop_isi_trace_cutoff=5", "readout.eprop_isi_trace_cutoff=5"]),
])
def test_decay_power_table_changes_no_number(monkeypatch, preset, n_train, extra):
    """Decays read base ** m from the table after the parameters (decay_powers) or call pow: the same numbers."""
    config = load_preset(preset, extra)
    monkeypatch.setattr(GoldenEngine, "DECAY_POWERS", 0)
    computed = run_engine("golden", config, n_train, 1, block=2)
    monkeypatch.setattr(GoldenEngine, "DECAY_POWERS", 4096)
    table = run_engine("golden", config, n_train, 1, block=2)
    assert table.counters["plasticity_fp_special"] > 0  # decays happened
    _assert_same_run(computed, table)


def test_decay_power_table_holds_what_pow_gives():
    fp = np.zeros(K.N_FP)
    fp[[K.P_OUT_PV, K.P_REC_PV, K.P_KAPPA, K.P_KAPPA_REG]] = [math.exp(-1 / 100), math.exp(-1 / 30), 0.99, 0.97]
    table = K.decay_powers(fp, 300)
    assert np.array_equal(table[:K.N_FP], fp)
    for m in (0, 1, 2, 7, 100, 299):
        row = table[K.N_FP + K.N_POW * m: K.N_FP + K.N_POW * (m + 1)]
        assert row.tolist() == [math.pow(fp[K.P_OUT_PV], float(m)), math.pow(fp[K.P_REC_PV], float(m)),
                                math.pow(fp[K.P_KAPPA], float(m)), math.pow(fp[K.P_KAPPA_REG], float(m))]

@pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2, reason="the crew needs a second thread")
@pytest.mark.parametrize("preset, n_train, extra, lead", [
    ("nmnist", 5, [], 2),  # the flushes split between the threads, the rings wrap
    ("nmnist", 3, ["optimizer.type=adam", "recurrent.eprop_isi_trace_cutoff=40"], 1),
    ("sine", 4, [], 1),
    ("tiny", 6, ["recurrent.eprop_isi_trace_cutoff=20"], 1),
])
def test_crew_changes_no_number(monkeypatch, preset, n_train, extra, lead):
    """One parallel region per block (simulate_crew: the leader steps, the helper advances the next inputs' walks)
    against no walk advances at all: every weight, readout trace, spike and counter identical. Lead 1: the helper
    advances walks that send in the leader's next step, so the leader often finds the source it is about to send
    taken (crew_wait)."""
    config = load_preset(preset, extra)
    monkeypatch.setattr(GoldenEngine, "CREW", False)
    plain = run_engine("golden", config, n_train, 1, block=2)
    monkeypatch.setattr(GoldenEngine, "CREW", True)
    monkeypatch.setattr(GoldenEngine, "CREW_LEAD", lead)
    crew = run_engine("golden", config, n_train, 1, block=2)
    if preset == "nmnist":  # the helper advanced walks (on the small presets it may find none in time)
        assert crew.counters["memory_flush_walks"] > plain.counters["memory_flush_walks"]
    _assert_same_run(plain, crew)


@pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2, reason="the crew needs a second thread")
def test_crew_at_the_start_of_every_call(monkeypatch):
    """Every sample its own run() call: the first step of each call sends the inputs whose events the call before
    consumed, which the helper cannot see in its event list. Before the helper left that step alone, it advanced
    such a source while the leader sent it, in 25 of 40 repetitions of this schedule (measured); five repetitions
    here, each compared with a run without the crew."""
    from tests.conftest import run_schedule

    config = load_preset("tiny", ["recurrent.flush_event_send_interval=inf"])
    schedule = [(6, True), (2, False), (6, True)]
    monkeypatch.setattr(GoldenEngine, "CREW", False)
    plain = run_schedule("golden", config, schedule, 1)
    monkeypatch.setattr(GoldenEngine, "CREW", True)
    monkeypatch.setattr(GoldenEngine, "CREW_LEAD", 1)
    for _ in range(5):
        _assert_same_run(plain, run_schedule("golden", config, schedule, 1))

_RUN_AND_SAVE = """
import sys, numpy as np
from golden_model.config import load_preset
from tests.conftest import run_engine
run = run_engine("golden", load_preset("sine"), 4, 1, block=2)
np.savez(sys.argv[1], W_in=run.weights.W_in, W_rec=run.weights.W_rec, W_out=run.weights.W_out, y=run.y,
         spikes=run.spikes, **{"c_" + k: v for k, v in run.counters.items()})
"""


def test_more_threads_than_cores_compute_what_one_thread_does(tmp_path):
    # 4 threads (one stepping, three advancing walks on disjoint sources) on however many cores: the same numbers
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    out = {}
    for threads in (1, 4):
        env = dict(os.environ, NUMBA_NUM_THREADS=str(threads), PYTHONPATH=str(root))
        path = tmp_path / f"run{threads}.npz"
        subprocess.run([sys.executable, "-c", _RUN_AND_SAVE, str(path)], env=env, cwd=root, check=True, timeout=600)
        out[threads] = np.load(path)
    one, four = out[1], out[4]
    assert four["c_memory_flush_walks"] > one["c_memory_flush_walks"]  # the advancing threads did work
    for key in one.files:
        if key != "c_memory_flush_walks":
            assert np.array_equal(one[key], four[key]), key


def _split(split, costs, n_threads):
    n = len(costs)
    work = np.zeros((4, max(n, 1)), np.int64)
    work[K.W_ITEM, :n] = np.arange(100, 100 + n)  # item ids unlike their positions
    work[K.W_COST, :n] = costs
    threads = np.zeros((2, n_threads + 1), np.int64)
    split(n, work, threads)
    return [list(work[K.W_ORDER, threads[0, k]:threads[0, k + 1]]) for k in range(n_threads)]


@pytest.mark.parametrize("n_threads", [1, 2, 3])
def test_split_work_gives_each_item_to_one_thread_largest_first(n_threads):
    costs = [90, 70, 40, 40, 30, 20, 5, 1]  # sorted largest first, as plasticity_order hands them out
    lists = _split(K.split_work, costs, n_threads)
    assert sorted(i for items in lists for i in items) == list(range(100, 108))
    # LPT: each item, in turn, to the thread with the least work so far (the lowest-numbered on a tie)
    expected, loads = [[] for _ in range(n_threads)], [0] * n_threads
    for i, cost in enumerate(costs):
        k = loads.index(min(loads))
        expected[k].append(100 + i)
        loads[k] += cost
    assert lists == expected
    assert max(loads) <= 4 / 3 * sum(costs) / n_threads + max(costs)


@pytest.mark.parametrize("n_threads", [1, 2, 4])
def test_split_contiguous_gives_runs_of_about_equal_cost(n_threads):
    rng = np.random.default_rng(n_threads)
    costs = list(rng.integers(1, 50, 300))
    lists = _split(K.split_contiguous, costs, n_threads)
    assert [i for items in lists for i in items] == list(range(100, 400))  # runs, in order, all items once
    loads = [sum(costs[i - 100] for i in items) for items in lists]
    assert max(loads) - min(loads) <= 2 * max(costs)
    assert _split(K.split_contiguous, [], n_threads) == [[]] * n_threads


def test_counter_rows_do_not_share_cache_lines():
    from golden_model import counters as CT

    rows = CT.new_counter_rows(3)
    assert rows.ctypes.data % 64 == 0 and rows.strides[0] % 64 == 0 and rows.shape[1] >= CT.N_COUNTERS
    rows[1, 0] = 2
    rows[2, CT.N_COUNTERS - 1] = 5
    rows[0, -1] = 7  # padding: not a counter
    counts = CT.as_dict(rows)
    assert counts[CT.COUNTER_NAMES[0]] == 2 and counts[CT.COUNTER_NAMES[-1]] == 5 and sum(counts.values()) == 7


def test_final_update_applies_every_pending_gradient():
    config = load_preset("tiny")
    from golden_model.network import build_network
    from golden_model.tasks import make_task

    engine = GoldenEngine(config)
    engine.load(build_network(config))
    task = make_task(config)
    engine.run([task.train(i) for i in range(3)], learn=True)
    n_in = config.network.n_in
    inputs = slice(0, 2 * n_in, 2)  # groups of the inputs onto recurrent targets
    spiked = engine.grp_i[inputs, K.G_TPREV] != 0
    assert spiked.any()
    n_opt = engine.grp_i[inputs, K.G_N_OPT].copy()
    trace = engine.finish()
    t_force = engine.timeline.final_block()[2]
    # the forced spike reaches every input last: each one that had spiked runs its optimizer at least once more
    # (events of the last sample's final steps can add one), the others only start their trace
    assert np.all(engine.grp_i[inputs, K.G_TPREV] == t_force + 1)
    assert np.all(engine.grp_i[inputs, K.G_N_OPT][spiked] >= n_opt[spiked] + 1)
    assert np.array_equal(engine.grp_i[inputs, K.G_N_OPT][~spiked], n_opt[~spiked])
    assert trace.y.shape[0] == 6
    with pytest.raises(RuntimeError, match="already called"):
        engine.finish()
