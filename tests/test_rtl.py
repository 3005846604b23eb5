"""The gateware against the layer above it, the fixed-point engine, bit for bit.

Three levels, fastest first: the arithmetic helpers in Amaranth's simulator against the contract's integer
functions; the core in Amaranth's simulator against the fixed engine (no Verilog); the generated Verilog of the
whole accelerator (AXI4-Lite + AXI4-Stream top) under cocotb, on Verilator and on Icarus, against the fixed
engine after every sample. The `nmnist`-sized runs (5 real N-MNIST samples, lanes 1, 2, 4) are too long for CI;
the README quotes them with the command that produced them (`eprop sim top --samples 5 --lanes L`).
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from amaranth.hdl import Module, Signal, signed, unsigned
from amaranth.sim import Simulator

from golden_model.config import load_preset
from golden_model.engines.fixed import FixedEngine
from golden_model.engines.fixed_kernels import rshift_round
from golden_model.network import build_network
from golden_model.tasks import make_task
from hdl.arith import round_shift, sat_flag, saturate
from hdl.params import HardwareParams
from sim.amaranth_sim import simulate_core
from sim.model import expected_run, sample_schedule
from sim.top import format_result, simulate_top


def _comb_check(width: int, build, inputs: list[int]) -> list[int]:
    """Outputs of a combinational function of one signed input, evaluated in Amaranth's simulator."""
    m = Module()
    x = Signal(signed(width))
    y = build(x)
    out = Signal(y.shape())
    m.d.comb += out.eq(y)
    results = []
    sim = Simulator(m)

    async def bench(ctx):
        for v in inputs:
            ctx.set(x, v)
            results.append(ctx.get(out))

    sim.add_testbench(bench)
    sim.run()
    return results


@pytest.mark.parametrize("shift", [1, 2, 7, 17, 23])
def test_round_shift_is_the_contracts_ties_to_even_shift(shift):
    rng = np.random.default_rng(shift)
    width = 30
    values = [int(v) for v in rng.integers(-(1 << (width - 1)), 1 << (width - 1), 400)]
    # every tie and its neighbours, both signs
    for k in range(-6, 7):
        values += [k * (1 << shift) + (1 << (shift - 1)) + d for d in (-1, 0, 1)]
    got = _comb_check(width, lambda x: round_shift(x, shift), values)
    want = [int(rshift_round(np.int64(v), shift)) for v in values]
    assert got == want


def test_saturate_clips_and_flags_never_wraps():
    lo, hi = -(1 << 11), (1 << 11) - 1  # a 12-bit signed format
    values = list(range(-5000, 5000, 7)) + [lo - 1, lo, hi, hi + 1, -(1 << 19), (1 << 19) - 1]
    clipped = _comb_check(20, lambda x: saturate(x, lo, hi, signed(12)), values)
    flags = _comb_check(20, lambda x: sat_flag(x, lo, hi), values)
    assert clipped == [min(hi, max(lo, v)) for v in values]
    assert flags == [int(v < lo or v > hi) for v in values]


@pytest.mark.parametrize("in_shape, lo, hi, out_shape", [
    (signed(8), -8, 7, signed(4)), (signed(8), 0, 15, unsigned(4)), (unsigned(8), 0, 15, unsigned(4)),
    (unsigned(8), -8, 7, signed(4)), (signed(8), -5, 6, signed(4)), (signed(8), 0, 11, unsigned(4)),
    (signed(8), 0, 255, unsigned(8)), (unsigned(8), -128, 127, signed(8)), (signed(3), 0, 15, unsigned(4)),
    (signed(8), -128, 127, signed(8)), (unsigned(5), 0, 15, unsigned(4)), (signed(8), -1, 0, signed(1))])
def test_saturate_and_flag_over_every_input(in_shape, lo, hi, out_shape):
    """Every input of a small width, signed and unsigned, into ranges that are whole integer formats (where the
    fit is read off the top bits) and ranges that are not (two compares), wider, as wide and narrower."""
    m = Module()
    x = Signal(in_shape)
    y, flag = Signal(out_shape), Signal()
    m.d.comb += [y.eq(saturate(x, lo, hi, out_shape)), flag.eq(sat_flag(x, lo, hi))]
    first = -(1 << (in_shape.width - 1)) if in_shape.signed else 0
    values = range(first, first + (1 << in_shape.width))
    got = []

    async def bench(ctx):
        for v in values:
            ctx.set(x, v)
            got.append((ctx.get(y), ctx.get(flag)))

    sim = Simulator(m)
    sim.add_testbench(bench)
    sim.run()
    assert got == [(min(hi, max(lo, v)), int(v < lo or v > hi)) for v in values]


def _tiny(sequence: int, **extra):
    overrides = [f"task.sequence={sequence}"] + [f"{k}={v}" for k, v in extra.items()]
    return load_preset("tiny", overrides)


def test_core_in_amaranth_sim_equals_fixed_engine_with_uneven_lanes():
    """Three lanes over 16 recurrent neurons and 3 readouts: 6, 5 and 5 neurons per lane, not powers of two
    (history rings are addressed local * H + h), one readout per lane."""
    config = _tiny(30)
    network = build_network(config)
    p = HardwareParams.from_config(config, network, lanes=3)
    task = make_task(config)
    runs = sample_schedule(task, 2, 0)
    want = expected_run(config, network, runs)
    got = simulate_core(p, network, runs)
    assert got.status == {"idle": 1, "bad_word": 0, "bad_channel": 0, "overflow": 0, "bad_load": 0}
    assert np.array_equal(got.weight_ints, want.weight_ints)
    assert {k: got.counters[k] for k in want.counters} == want.counters
    assert got.outputs == want.outputs
    assert got.saturation_flags == want.saturation_flags
    assert want.counters["weight_writes"] > 0 and not np.array_equal(want.weight_ints, want.after_each_run[0]["weights"])


def test_core_dumps_the_group_pointers_and_feedback_it_was_loaded_with():
    """DUMP of the GROUPS and FEEDBACK regions (the group pointers' block RAM word is registered before the dump
    register, the feedback memory addressed from a register): every word as loaded, in order, over two lanes."""
    from golden_model.hw_interface import Op, Region, control_word, lane_layout

    config = _tiny(30)
    network = build_network(config)
    p = HardwareParams.from_config(config, network, lanes=2)
    dumps = [control_word(Op.DUMP, Region.GROUPS << 24), control_word(Op.DUMP, Region.FEEDBACK << 24)]
    got = simulate_core(p, network, [], extra_words=dumps)
    layout = lane_layout(network, p.lanes)
    groups = np.concatenate([np.asarray(layout.group_ptr[lane], np.int64) for lane in range(p.lanes)])
    feedback, _ = p.fx.formats["feedback"].quantize(network.B)
    bits = p.fx.formats["feedback"].bits
    n_g, n_fb = groups.size, feedback.size
    tail = np.array(got.outputs[-(n_g + n_fb):], np.int64)
    assert np.array_equal(tail[:n_g], groups)
    fb = tail[n_g:] & ((1 << bits) - 1)
    fb = np.where(fb >> (bits - 1), fb - (1 << bits), fb)
    assert np.array_equal(fb, feedback.reshape(-1).astype(np.int64)) and np.any(fb != 0)


def _check(result):
    assert result.passed, "\n".join(result.failures)
    runs = result.report["runs"]
    assert runs and all(r["weights_match"] and r["counters_match"] for r in runs)
    assert result.report["final_weights_match"] and result.report["final_counters_match"]
    assert result.report["outputs_match"]


@pytest.mark.rtl
def test_verilator_top_learns_like_the_fixed_engine(tmp_path_factory):
    """cocotb on Verilator: 3 training samples and a test sample, every weight and counter after each."""
    config = _tiny(60)
    res = simulate_top(config, scenario="train", lanes=2, train_samples=3, test_samples=1,
                       work_dir=tmp_path_factory.getbasetemp() / "sim_build")
    _check(res)
    ii = res.report["initiation_interval"]
    assert ii["walk_issue_cycles"] <= ii["walk_cycles"] and ii["walk_entries"] > 0
    text = format_result(res, config.task.sequence)
    assert "PASS" in text and "cycles per training sample" in text and "initiation interval" in text


def test_core_in_amaranth_sim_adam_build_equals_fixed_engine():
    """The Adam build (optimizer.type = adam) over two lanes: a training sample, then a test sample with
    learning off (Adam's state must not move then)."""
    config = _tiny(30, **{"optimizer.type": "adam", "optimizer.eta": 3e-3})
    network = build_network(config)
    p = HardwareParams.from_config(config, network, lanes=2)
    runs = sample_schedule(make_task(config), 1, 1)
    want = expected_run(config, network, runs)
    got = simulate_core(p, network, runs)
    assert p.adam and got.status["idle"] == 1 and got.status["overflow"] == 0
    assert np.array_equal(got.weight_ints, want.weight_ints)
    assert {k: got.counters[k] for k in want.counters} == want.counters
    assert got.outputs == want.outputs and got.saturation_flags == want.saturation_flags
    initial = FixedEngine(config)
    initial.load(network)
    assert want.counters["weight_writes"] > 0 and not np.array_equal(want.weight_ints, initial.weight_ints())


@pytest.mark.parametrize("optimizer, lanes", [("gradient_descent", 3), ("adam", 2)])
def test_reads_that_collide_with_a_write_are_never_used(optimizer, lanes, monkeypatch):
    """The ECP5 flow lets Yosys leave a block RAM read undefined when it reads the address written at the same edge
    (firmware/netlist.py, declare_collisions_undefined): the synapse, trace, history and Adam moment memories'. With
    EPROP_POISON_COLLISIONS=1 each such read returns its word inverted (hdl/memory.py, collision_read); the core still
    equals the fixed engine bit for bit, so the pipeline never uses one (its forwarding replaces them). They do
    happen: the trace memory's reads collide with its writes in most passes. The group memory is cut into banks
    of 32 words here (nmnist's are 1024: tiny has 80 groups), so that its bank choice is exercised too."""
    import hdl.core

    monkeypatch.setenv("EPROP_POISON_COLLISIONS", "1")
    monkeypatch.setattr(hdl.core, "GRP_BANK_LOG2", 5)
    monkeypatch.setattr(hdl.core, "GRP_BANK", 32)
    config = _tiny(30, **{"optimizer.type": optimizer, "optimizer.eta": 3e-3})
    network = build_network(config)
    p = HardwareParams.from_config(config, network, lanes=lanes)
    runs = sample_schedule(make_task(config), 1, 1)
    want = expected_run(config, network, runs)
    got = simulate_core(p, network, runs)
    assert got.status["idle"] == 1 and got.status["overflow"] == 0 and p.adam == (optimizer == "adam")
    assert np.array_equal(got.weight_ints, want.weight_ints)
    assert {k: got.counters[k] for k in want.counters} == want.counters
    assert got.outputs == want.outputs and got.saturation_flags == want.saturation_flags
    assert want.counters["weight_writes"] > 0


@pytest.mark.rtl
def test_verilator_top_adam_build_learns_like_the_fixed_engine(tmp_path_factory):
    """cocotb on Verilator, the Adam build (one lane: the smallest build to compile): 2 training samples and a
    test sample, every weight and counter after each."""
    config = _tiny(40, **{"optimizer.type": "adam", "optimizer.eta": 3e-3})
    res = simulate_top(config, scenario="train", lanes=1, train_samples=2, test_samples=1,
                       work_dir=tmp_path_factory.getbasetemp() / "sim_build")
    _check(res)
    assert res.report["runs"][0]["weights_match"]


@pytest.mark.rtl
def test_verilator_top_survives_bad_words_stalls_and_a_mid_sample_reset(tmp_path_factory):
    res = simulate_top(_tiny(60), scenario="robustness", lanes=2, train_samples=2,
                       work_dir=tmp_path_factory.getbasetemp() / "sim_build")
    assert res.passed, "\n".join(res.failures)


@pytest.mark.rtl
@pytest.mark.skipif(shutil.which("iverilog") is None, reason="Icarus Verilog not installed (.ci/run installs it)")
def test_icarus_top_with_input_gaps_and_output_backpressure(tmp_path_factory):
    res = simulate_top(_tiny(40), scenario="train", lanes=3, train_samples=2, simulator="icarus", stress=True,
                       work_dir=tmp_path_factory.getbasetemp() / "sim_build")
    _check(res)
    assert res.report["stress"]


def test_a_mismatch_is_reported_with_synapse_step_and_both_values():
    from sim.top import SimResult

    report = {"runs": [{"run": 0, "learn": True, "samples": [3], "steps": "0..59", "cycles_per_sample": 100.0,
                        "weights_match": False, "counters_match": False,
                        "weight_mismatch": "2 weights differ; first: synapse 17 (source 4 -> post 9): RTL 5, fixed 6",
                        "counter_mismatch": {"history_reads": {"rtl": 10, "fixed": 11}}}]}
    res = SimResult("train", "verilator", 1, False, ["test_train_matches_fixed_engine: run 0 ..."], report, 1.0,
                    "/x/results-train.xml")
    text = format_result(res, 60)
    assert "FAIL" in text
    assert "run 0 (sample [3], steps 0..59): 2 weights differ; first: synapse 17 (source 4 -> post 9): RTL 5, fixed 6" \
        in text
    assert "counter history_reads: RTL 10, fixed 11" in text
