"""What a run of the accelerator must produce, from the fixed-point engine, in the accelerator's own terms:
weight integers in synapse order, counters (hw_interface.COUNTERS names), saturation flags and the output
words. Every testbench (Amaranth simulator, cocotb on Verilator or Icarus, the simulated board) compares the
hardware against this."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from golden_model.config import NetworkConfig
from golden_model.engines.fixed import FixedEngine
from golden_model.hw_interface import COUNTERS
from golden_model.network import Network

__all__ = ["Expected", "expected_run", "sample_schedule"]


@dataclass
class Expected:
    weight_ints: np.ndarray
    counters: dict
    saturation_flags: int
    outputs: list[int] = field(default_factory=list)  # output words (membrane ints), in order
    after_each_run: list[dict] = field(default_factory=list)


def sample_schedule(task, n_train: int, n_test: int, block: int = 1):
    """[(samples, learn)]: the task's first training then test samples, `block` per run."""
    runs = []
    for split, n, learn in (("train", n_train, True), ("test", n_test, False)):
        samples = [task.train(i) if split == "train" else task.test(i) for i in range(n)]
        runs += [(samples[i:i + block], learn) for i in range(0, n, block)]
    return runs


def expected_run(config: NetworkConfig, network: Network, runs, trace_all: bool = False) -> Expected:
    """The fixed engine over `runs` then the final update, seen as the accelerator reports it."""
    engine = FixedEngine(config)
    engine.load(network)
    fm = engine.fx.formats["membrane"]
    outputs, snapshots = [], []
    sample_index = 0
    traces = []
    for samples, learn in runs:
        traces.append(engine.run(samples, learn))
        snapshots.append({"weights": engine.weight_ints(), "counters": engine.counters()})
        sample_index += len(samples)
    traces.append(engine.finish())
    # output words: readout values of the steps of each sample inside its window (all its steps with trace_all)
    y = np.concatenate([t.y for t in traces])
    T, LW = config.task.sequence, config.task.learning_window
    for n in range(sample_index):
        first = n * T + 2 + (0 if trace_all else T - LW)
        for step in range(first, (n + 1) * T + 2):
            outputs.extend(int(v) for v in fm.quantize(y[step])[0])
    counters = {name: engine.counters().get(name, 0) for name in COUNTERS if name in engine.counters()}
    return Expected(engine.weight_ints(), counters, engine.saturation_flags(), outputs, snapshots)
