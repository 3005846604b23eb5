"""The bellec engine on its own: invariances that must hold exactly, its interval structure, and its errors.
(Its equality with NEST's _bsshslm_2020 models is tests/test_parity_bellec.py.)"""

import numba
import numpy as np
import pytest

from golden_model.config import load_preset
from golden_model.engines import bellec_kernels as K
from golden_model.engines.bellec import BellecEngine
from golden_model.network import build_network
from golden_model.tasks import make_task
from host.training import run_training, sample_loss

from .conftest import run_engine


def test_cpp_modulo_keeps_the_sign_of_the_dividend():
    # NEST's (t - shift) % update_interval is negative before the first interval start: no interval step 0 or
    # T - 1 there, unlike Python's floor modulo
    assert [K.cpp_mod(a, 5) for a in (-7, -5, -2, 0, 3, 5, 12)] == [-2, 0, -2, 0, 3, 0, 2]


def test_results_do_not_depend_on_thread_count_or_block_size():
    config = load_preset("tiny", ["bellec.loss=cross_entropy", "optimizer.type=adam", "optimizer.eta=1e-3"])
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = run_engine("bellec", config, 5, 2, block=1)
    finally:
        numba.set_num_threads(before)
    many = run_engine("bellec", config, 5, 2, block=4)
    for name in ("W_in", "W_rec", "W_out"):
        assert np.array_equal(getattr(one.weights, name), getattr(many.weights, name))
    assert np.array_equal(one.y, many.y) and np.array_equal(one.spikes, many.spikes)
    assert one.counters == many.counters  # counted per thread, summed: the same whatever the split
    assert one.counters["trace_updates"] > 0 and one.counters["normaliser_terms"] > 0


def test_one_weight_update_per_interval_applied_at_the_next_spike():
    """With one interval per sample, a synapse's weight changes at most once per sample, never during the first
    (its gradient is applied at the first spike after the interval) and only after learning has started."""
    config = load_preset("tiny")
    engine = BellecEngine(config)
    engine.load(build_network(config))
    task = make_task(config)
    initial = engine.syn[K.S_W].copy()
    engine.run([task.train(0)], learn=True)
    # sample 0's interval ends two steps after the run() (sample n occupies steps n*T+2 ... (n+1)*T+1)
    assert np.array_equal(engine.syn[K.S_W], initial)
    changed_before = 0
    for n in range(1, 4):
        engine.run([task.train(n)], learn=True)
        n_opt = engine.grp_i[:, K.G_N_OPT]
        assert n_opt.max() <= n  # one optimizer call per elapsed interval at most
        changed = int(np.sum(engine.syn[K.S_W] != initial))
        assert changed > changed_before
        changed_before = changed


def test_cross_entropy_readout_is_a_softmax_and_the_loss_is_cross_entropy():
    config = load_preset("tiny", ["bellec.loss=cross_entropy"])
    run = run_training(config, "bellec", train_samples=4, test_samples=2, epochs=1, progress=False)
    y = run.report_sample["y"]
    np.testing.assert_allclose(y.sum(axis=1), 1.0, rtol=1e-12)
    assert np.all(y > 0)
    sample = run.report_sample["sample"]
    on = sample.window != 0
    expected = -np.mean(np.log(y[on, sample.label]))
    result = next(r for r in run.results if r.phase == "test" and r.sample_id == sample.sample_id)
    assert result.loss == pytest.approx(expected, rel=1e-12)
    assert run.loss_function == "cross_entropy" and run.metrics()["loss_function"] == "cross_entropy"
    assert sample_loss(y, sample) != result.loss  # the MSE of the same values differs


def test_update_interval_must_leave_room_for_the_walks():
    with pytest.raises(ValueError, match=r"\[bellec\] eprop_update_interval: 3 steps; the bellec engine needs at "
                                         r"least 4"):
        BellecEngine(load_preset("tiny", ["bellec.eprop_update_interval=3", "bellec.eprop_learning_window=2"]))


def test_nmnist_preset_learns_with_its_bellec_defaults():
    """The preset's [bellec] and [bellec_optimizer] (Adam 1e-3): the loss of the same 20 samples falls when they
    are seen a second time."""
    config = load_preset("nmnist", ["task.group_size=20"])
    run = run_training(config, "bellec", train_samples=20, test_samples=0, epochs=2, progress=False)
    first, second = [it["loss"] for it in run.iterations if it["phase"] == "train"]
    assert second < first
    assert run.counters["trace_updates"] > 0 and run.counters["dropped_spikes"] >= 0
