"""The Engine protocol and the timeline every engine shares.

An engine simulates one continuous run, as NEST's examples do: samples follow each other without reset, and
each call to :meth:`Engine.run` appends ``len(samples)`` samples of ``sequence`` steps (global steps
``[n0 * T, (n0 + len) * T)``), training when ``learn`` is true. Like the example's phases, a call first sets the
learning rate (``eta`` of the config when learning, 0 otherwise; NEST's rule for when a changed ``eta`` takes
effect in a synapse is part of the algorithm) and the inputs of its samples, then simulates. :meth:`Engine.finish`
runs NEST's end-of-task "final update": 3 more steps, then a strong spike into every presynaptic neuron so that
every synapse applies its pending gradient, then 3 steps; weights read afterwards are complete.

Because of the two one-step delays (generator -> input neuron -> recurrent neuron), sample ``n`` occupies steps
``n * T + 2 ... (n + 1) * T + 1``: the last two steps of a call's last sample are simulated by the next call (or
by ``finish``). Engines therefore return raw per-step :class:`Trace` blocks; :class:`SampleWindows` cuts them
into samples.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from ..config import NetworkConfig
from ..network import Network
from ..tasks import Sample

__all__ = ["Engine", "Trace", "Timeline", "SampleWindows", "INPUT_DELAY", "FINAL_UPDATE"]

#: steps from a sample's start to its effect on the recurrent neurons (offset_gen + delay_in_rec)
INPUT_DELAY = 2
#: NEST example's final update: Simulate(total_offset + extension_sim) = 3 steps, then a spike generator fires at
#: task + extension + 1 ms into every input and recurrent neuron (weight 1000), then Simulate(final_update = 3).
FINAL_UPDATE = {"pre_steps": 3, "force_step_offset": 4, "post_steps": 3, "weight": 1000.0}


@dataclass
class Trace:
    """What an engine reports for a block of global steps [t0, t0 + len(y))."""

    t0: int
    y: np.ndarray  # (n_steps, n_out) readout signal y = V_m (before the learning window)
    spike_steps: np.ndarray  # int64, step of each recurrent spike, ascending
    spike_neurons: np.ndarray  # int64, recurrent neuron index of each spike

    @property
    def t1(self) -> int:
        return self.t0 + self.y.shape[0]


class Engine(abc.ABC):
    """load(network) / run(samples, learn) / finish() / weights() / counters()."""

    name: str = "engine"
    #: samples per run() call the training loop should use (None: a whole iteration, NEST's Simulate per group)
    block_samples: int | None = 10
    #: what the readout signal y is trained on: mean_squared_error (y is the readout's V_m) or cross_entropy
    #: (y is the softmax over the readouts)
    loss: str = "mean_squared_error"

    def __init__(self, config: NetworkConfig):
        self.config = config
        self.timeline = Timeline(config)

    @abc.abstractmethod
    def load(self, network: Network) -> None: ...

    @abc.abstractmethod
    def run(self, samples: Sequence[Sample], learn: bool) -> Trace: ...

    @abc.abstractmethod
    def finish(self) -> Trace: ...

    @abc.abstractmethod
    def weights(self) -> Network: ...

    def counters(self) -> dict[str, int]:
        return {}

    def close(self) -> None:
        """Release what the engine holds (processes, kernels); the engine cannot run afterwards."""

    def eta_for(self, learn: bool) -> float:
        return self.config.optimizer.eta if learn else 0.0


@dataclass
class Timeline:
    """Global step bookkeeping shared by the engines: where each sample's inputs, targets and window fall."""

    config: NetworkConfig
    n_samples: int = 0
    finished: bool = False
    _last: Sample | None = None
    _pending_steps: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    _pending_chans: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int32))

    @property
    def sequence(self) -> int:
        return self.config.task.sequence

    @property
    def step(self) -> int:
        """The next global step to simulate."""
        return self.n_samples * self.sequence

    def check(self, samples: Sequence[Sample]) -> None:
        if self.finished:
            raise RuntimeError("engine finished: no more samples can be run after the final update")
        n_in, n_out = self.config.network.n_in, self.config.network.n_out
        for sample in samples:
            if sample.sequence != self.sequence:
                raise ValueError(f"sample {sample.sample_id}: {sample.sequence} steps, the config's task has "
                                 f"{self.sequence}")
            if sample.target.shape != (self.sequence, n_out):
                raise ValueError(f"sample {sample.sample_id}: target shape {sample.target.shape}, expected "
                                 f"{(self.sequence, n_out)}")
            if sample.channels.size and (sample.channels.min() < 0 or sample.channels.max() >= n_in):
                bad = int(sample.channels[(sample.channels < 0) | (sample.channels >= n_in)][0])
                raise ValueError(f"sample {sample.sample_id}: input channel {bad} outside [0, {n_in})")
            if sample.steps.size and (sample.steps.min() < 0 or sample.steps.max() > self.sequence):
                raise ValueError(f"sample {sample.sample_id}: event step outside [0, {self.sequence}]")

    def input_events(self, samples: Sequence[Sample], t1: int) -> tuple[np.ndarray, np.ndarray]:
        """(emission step, channel) of every input-neuron spike before `t1`, in time order; later ones (the last
        sample's final steps) are kept for the next block. Events of one channel in one step are separate
        entries: together they form one spike with multiplicity."""
        steps = [self._pending_steps]
        chans = [self._pending_chans]
        for i, sample in enumerate(samples):
            n = self.n_samples + i
            steps.append(n * self.sequence + sample.steps.astype(np.int64) + (INPUT_DELAY - 1))
            chans.append(sample.channels.astype(np.int32))
        steps = np.concatenate(steps)
        chans = np.concatenate(chans)
        order = np.argsort(steps, kind="stable")
        steps, chans = steps[order], chans[order]
        now = steps < t1
        self._pending_steps, self._pending_chans = steps[~now], chans[~now]
        return steps[now], chans[now]

    def step_signals(self, samples: Sequence[Sample], t0: int, t1: int) -> tuple[np.ndarray, np.ndarray]:
        """Readout target (t1-t0, n_out) and learning window (t1-t0) in force at each step of [t0, t1)."""
        n_out, T = self.config.network.n_out, self.sequence
        target = np.zeros((t1 - t0, n_out))
        window = np.zeros(t1 - t0)
        g = np.arange(t0, t1)
        n, tau = np.divmod(g - INPUT_DELAY, T)
        i = n - self.n_samples
        started = g >= INPUT_DELAY  # before, NEST's rate generators are at 0
        for idx, sample in enumerate(samples):
            rows = started & (i == idx)
            target[rows] = sample.target[tau[rows]]
            window[rows] = sample.window[tau[rows]]
        if self._last is not None:
            # the final steps of the previous block's last sample; after the last sample the generators hold
            rows = started & (i < 0)
            target[rows] = self._last.target[tau[rows]]
            window[rows] = self._last.window[tau[rows]]
            rows = started & (i >= len(samples))
            target[rows] = self._last.target[T - 1] if not samples else samples[-1].target[T - 1]
            window[rows] = self._last.window[T - 1] if not samples else samples[-1].window[T - 1]
        return target, window

    def advance(self, samples: Sequence[Sample]) -> None:
        self.n_samples += len(samples)
        if samples:
            self._last = samples[-1]

    def final_block(self) -> tuple[int, int, int]:
        """(t0, t1, force_step) of the final update."""
        t0 = self.step
        t1 = t0 + FINAL_UPDATE["pre_steps"] + FINAL_UPDATE["post_steps"]
        return t0, t1, t0 + FINAL_UPDATE["force_step_offset"]


class SampleWindows:
    """Collects Trace blocks and hands out each sample's readout signal and spike count once complete."""

    def __init__(self, config: NetworkConfig):
        self.sequence = config.task.sequence
        self.n_out = config.network.n_out
        self.n_rec = config.network.n_rec
        self._y = np.zeros((0, self.n_out))
        self._y0 = 0
        self._spike_steps: list[np.ndarray] = []
        self._spike_neurons: list[np.ndarray] = []
        self.next_sample = 0

    def add(self, trace: Trace) -> None:
        if trace.t0 != self._y0 + self._y.shape[0]:
            raise ValueError(f"trace starts at step {trace.t0}, expected {self._y0 + self._y.shape[0]}")
        self._y = np.concatenate([self._y, trace.y])
        self._spike_steps.append(trace.spike_steps)
        self._spike_neurons.append(trace.spike_neurons)

    def complete(self) -> list[tuple[int, np.ndarray, np.ndarray]]:
        """(sample index, y (sequence, n_out), spikes (steps, neurons) relative to the sample start) of every
        newly complete sample."""
        out = []
        steps = np.concatenate(self._spike_steps) if self._spike_steps else np.zeros(0, np.int64)
        neurons = np.concatenate(self._spike_neurons) if self._spike_neurons else np.zeros(0, np.int64)
        while True:
            n = self.next_sample
            g0 = n * self.sequence + INPUT_DELAY
            g1 = g0 + self.sequence
            if g1 > self._y0 + self._y.shape[0]:
                break
            y = self._y[g0 - self._y0: g1 - self._y0]
            sel = (steps >= g0) & (steps < g1)
            out.append((n, y.copy(), np.stack([steps[sel] - g0, neurons[sel]])))
            self.next_sample += 1
        # drop what no later sample needs
        keep_from = self.next_sample * self.sequence + INPUT_DELAY
        if keep_from > self._y0:
            self._y = self._y[keep_from - self._y0:]
            self._y0 = keep_from
            keep = steps >= keep_from
            self._spike_steps, self._spike_neurons = [steps[keep]], [neurons[keep]]
        return out
