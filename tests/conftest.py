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
    from host.registry import create_engine

    task = make_task(config)
    network = network if network is not None else build_network(config)
    engine = create_engine(name, config)
    engine.load(network)
    schedule = [(task.train(i), True) for i in range(n_train)] + [(task.test(i), False) for i in range(n_test)]
    traces = []
    i = 0
    while i < len(schedule):
        learn = schedule[i][1]
        chunk = []
        while i < len(schedule) and schedule[i][1] == learn and len(chunk) < block:
            chunk.append(schedule[i][0])
            i += 1
        traces.append(engine.run(chunk, learn))
    traces.append(engine.finish())
    y = np.concatenate([t.y for t in traces])
    spikes = np.concatenate([np.stack([t.spike_steps, t.spike_neurons]) for t in traces], axis=1)
    return EngineRun(engine.weights(), y, spikes, engine.counters())


@pytest.fixture
def tiny() -> NetworkConfig:
    return load_preset("tiny")
