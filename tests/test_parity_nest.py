"""Golden engine == NEST 3.10, bit for bit: every final weight, every recurrent spike, every readout value.

The cases cover gradient descent and Adam, optimize_each_step true and false, short, long and infinite cutoffs,
t_ref 0 and > 0, every surrogate gradient, batch_size > 1, potentials relative to a non-zero E_L with currents
and V_min, 1 and 2 virtual processes, learning-rate changes between phases, and the tiny, sine and nmnist
presets. NEST is installed by the test set-up ([test] extra); these tests are never skipped.
"""

import numpy as np
import pytest

from golden_model.config import load_preset
from golden_model.network import build_network

from .conftest import drive

pytestmark = pytest.mark.nest

CASES = {
    # name: (preset, overrides, schedule [(n_samples, learn), ...], samples per run() call)
    "tiny-default": ("tiny", [], [(6, True), (3, False)], 1),
    "tiny-adam-each-step-inf-cutoff-exponential": (
        "tiny", ["optimizer.type=adam", "optimizer.eta=1e-3", "optimizer.optimize_each_step=true",
                 "recurrent.eprop_isi_trace_cutoff=inf", "readout.eprop_isi_trace_cutoff=inf",
                 "recurrent.surrogate_gradient_function=exponential", "recurrent.t_ref=0.0",
                 "simulation.total_num_virtual_procs=1"], [(5, True), (2, False)], 2),
    "tiny-adam-short-cutoff-fast-sigmoid": (
        "tiny", ["optimizer.type=adam", "optimizer.eta=1e-3", "recurrent.eprop_isi_trace_cutoff=10",
                 "readout.eprop_isi_trace_cutoff=5",
                 "recurrent.surrogate_gradient_function=fast_sigmoid_derivative"], [(5, True), (2, False)], 3),
    "tiny-gd-each-step-arctan-batch-EL": (
        "tiny", ["optimizer.optimize_each_step=true", "optimizer.batch_size=4", "optimizer.eta=1e-4",
                 "recurrent.surrogate_gradient_function=arctan_derivative", "recurrent.eprop_isi_trace_cutoff=25",
                 "recurrent.E_L=-70.0", "recurrent.V_m=-69.5", "recurrent.V_th=-68.5", "recurrent.I_e=0.02",
                 "recurrent.V_min=-70.5", "recurrent.C_m=2.0", "readout.E_L=0.25", "readout.I_e=0.01",
                 "readout.V_min=-0.5"], [(5, True), (2, False)], 1),
    "tiny-phases-eta-changes-sparse-readout": (
        "tiny", ["network.p_out=0.5", "network.p_rec=0.6", "recurrent.c_reg=0.0",
                 "recurrent.flush_event_send_interval=inf"], [(3, True), (2, False), (3, True), (1, False)], 2),
    "sine-default": ("sine", [], [(4, True), (1, False)], 2),
    "sine-adam-each-step": ("sine", ["optimizer.type=adam", "optimizer.eta=1e-4",
                                     "optimizer.optimize_each_step=true"], [(3, True)], 1),
    "nmnist-default": ("nmnist", [], [(3, True), (2, False)], 1),
    "nmnist-adam-each-step-tref": ("nmnist", ["optimizer.type=adam", "optimizer.optimize_each_step=true",
                                              "recurrent.t_ref=2.0"], [(2, True), (1, False)], 2),
}


def _run(engine: str, config, schedule, block):
    from golden_model.tasks import make_task
    from host.registry import create_engine

    task = make_task(config)
    network = build_network(config)
    e = create_engine(engine, config)
    e.load(network)
    y, spikes = drive(e, task, schedule, block)
    return network, e.weights(), y, spikes


@pytest.mark.parametrize("case", list(CASES))
def test_golden_equals_nest(case):
    preset, overrides, schedule, block = CASES[case]
    config = load_preset(preset, overrides)
    initial, w_golden, y_golden, s_golden = _run("golden", config, schedule, block)
    _, w_nest, y_nest, s_nest = _run("nest", config, schedule, block)
    for name in ("W_in", "W_rec", "W_out"):
        g, n = getattr(w_golden, name), getattr(w_nest, name)
        assert np.array_equal(g, n), f"{name}: max |dW| = {np.max(np.abs(g - n))!r}"
        assert not np.array_equal(g, getattr(initial, name)) or getattr(initial, name).size == 0, \
            f"{name} did not learn: the comparison would be vacuous"
    # NEST's multimeter reports one step less (the run's last step, after the final update)
    steps = y_nest.shape[0]
    assert y_golden.shape[0] == steps + 1
    assert np.array_equal(y_golden[:steps], y_nest)
    s_golden = s_golden[:, s_golden[0] < steps]
    assert s_golden.shape == s_nest.shape and np.array_equal(s_golden, s_nest)
    assert s_nest.shape[1] > 0
