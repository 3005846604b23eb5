"""Shared helpers: run an engine through a short schedule and collect everything comparable."""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import pytest

os.environ.setdefault("PYNEST_QUIET", "1")

from golden_model.config import NetworkConfig, load_preset  # noqa: E402
from golden_model.network import Network, build_network  # noqa: E402
from golden_model.tasks import make_task  # noqa: E402


@dataclass
class EngineRun:
    weights: Network
    y: np.ndarray  # readout signal per reported step
    spikes: np.ndarray  # (2, n) step, neuron
    counters: dict


def run_engine(name: str, config: NetworkConfig, n_train: int, n_test: int, block: int = 1,
               network: Network | None = None) -> EngineRun:
    """n_train training samples then n_test test samples (learning off), `block` samples per run() call, then the
    final update. The samples are the task's first ones, in order."""
    return run_schedule(name, config, [(n_train, True), (n_test, False)], block, network)


def run_schedule(name: str, config: NetworkConfig, schedule: list[tuple[int, bool]], block: int = 1,
                 network: Network | None = None) -> EngineRun:
    """Phases of (n_samples, learn) in order (training samples and test samples each continue where the
    previous phase of their kind stopped), `block` samples per run() call, then the final update."""
    from host.registry import create_engine

    task = make_task(config)
    network = network if network is not None else build_network(config)
    engine = create_engine(name, config)
    engine.load(network)
    y, spikes = drive(engine, task, schedule, block)
    return EngineRun(engine.weights(), y, spikes, engine.counters())


def drive(engine, task, schedule: list[tuple[int, bool]], block: int) -> tuple[np.ndarray, np.ndarray]:
    """Run a loaded engine through `schedule`, then its final update: (readout signal per reported step,
    (2, n) array of spike step and neuron). Training and test samples each continue where their kind stopped."""
    traces, n_train, n_test = [], 0, 0
    for count, learn in schedule:
        samples = []
        for _ in range(count):
            if learn:
                samples.append(task.train(n_train))
                n_train += 1
            else:
                samples.append(task.test(n_test))
                n_test += 1
        for i in range(0, count, block):
            traces.append(engine.run(samples[i:i + block], learn))
    traces.append(engine.finish())
    y = np.concatenate([t.y for t in traces])
    spikes = np.concatenate([np.stack([t.spike_steps, t.spike_neurons]) for t in traces], axis=1)
    return y, spikes


@pytest.fixture
def tiny() -> NetworkConfig:
    return load_preset("tiny")
