"""Tasks: what the network sees and what it should answer, one sample at a time.

A :class:`Sample` is ``sequence`` steps long. Its input events are ``(channel, step)`` pairs with ``step`` in
``[0, sequence]`` (N-MNIST's rounding can put an event on step ``sequence``: it then coincides with the next
sample's step 0, as in NEST's example). Its ``target`` (sequence x n_out) and learning ``window`` (sequence) are
the values of NEST's step-rate generators.

Timing convention shared by every engine (NEST's examples, ``offset_gen = delay_in_rec = 1``): sample ``n`` of a
run occupies steps ``n * sequence + 2 + tau``, ``tau`` in ``[0, sequence)``; an input event at ``step`` is emitted
by its input neuron in step ``n * sequence + step + 1`` and reaches the recurrent neurons in step
``n * sequence + step + 2``; ``target[tau]`` and ``window[tau]`` hold from step ``n * sequence + 2 + tau`` on.

Tasks:
* ``nmnist``: N-MNIST files, one-hot target over the whole sample, error only in the last ``learning_window``
  steps (NEST's N-MNIST example). Default data: the bundled subset; ``data_dir``: a full N-MNIST download.
* ``sine``: NEST's sine-wave regression example: one frozen Poisson input sequence and a sum of four sines as
  target, error at every step, the same sequence every iteration.
* ``patterns``: a small synthetic classification task for fast tests: each class has its own frozen
  Poisson-rate profile, every sample a fresh draw from its class profile, N-MNIST-like time structure.

Any task's input activity can be thinned (``[task] event_keep_fraction`` < 1): each input event of a sample is
kept with that probability, independently, from a random stream seeded by ``event_thinning_seed`` and the
sample's id, so every engine, epoch and run sees the same thinned sample (:class:`ThinnedTask`).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from .config import NetworkConfig
from .network import draw_network
from .nmnist import NMNISTError, active_pixels, bundled_dir, load_blocklist, read_binned

__all__ = ["Sample", "Task", "make_task", "NMNISTTask", "SineTask", "PatternsTask", "ThinnedTask",
           "thin_events"]


@dataclass
class Sample:
    sample_id: str
    label: int  # class index; -1 for regression
    channels: np.ndarray  # int32, input channel of each event
    steps: np.ndarray  # int32, step of each event in [0, sequence]
    target: np.ndarray  # float64 (sequence, n_out)
    window: np.ndarray  # float64 (sequence,), the learning-window signal lambda

    @property
    def sequence(self) -> int:
        return self.window.shape[0]


def one_hot_sample(sample_id: str, label: int, channels, steps, sequence: int, learning_window: int,
                   n_out: int) -> Sample:
    target = np.zeros((sequence, n_out))
    target[:, label] = 1.0
    window = np.zeros(sequence)
    window[sequence - learning_window:] = 1.0
    return Sample(sample_id, int(label), np.asarray(channels, np.int32), np.asarray(steps, np.int32), target,
                  window)


@dataclass
class Task:
    """A source of training and test samples. ``n_train``/``n_test`` are None when unbounded."""

    name: str
    classification: bool
    n_train: int | None
    n_test: int | None
    description: str = ""
    _cache: dict = field(default_factory=dict, repr=False)

    def train(self, index: int) -> Sample:
        raise NotImplementedError

    def test(self, index: int) -> Sample:
        raise NotImplementedError


class NMNISTTask(Task):
    def __init__(self, config: NetworkConfig, data_dir: str | Path | None = None):
        self.config = config
        self.blocklist = load_blocklist()
        pixels = active_pixels(self.blocklist)
        if pixels.size != config.network.n_in:
            raise NMNISTError(f"blocklist leaves {pixels.size} input channels, config has n_in = "
                              f"{config.network.n_in}")
        self.channel_of_pixel = np.full(2 * 34 * 34, -1, dtype=np.int64)
        self.channel_of_pixel[pixels] = np.arange(pixels.size)
        if data_dir is None:
            root = bundled_dir()
            train = _read_label_file(root, "train1K.txt")
            test = _read_label_file(root, "test100.txt")
            description = f"bundled N-MNIST subset ({root})"
        else:
            train, test, root = _scan_full_dataset(Path(data_dir))
            description = f"N-MNIST at {root}"
        self._train_entries, self._test_entries = train, test
        super().__init__("nmnist", True, len(train), len(test), description)

    def _load(self, entry: tuple[str, Path, int]) -> Sample:
        sample_id, path, label = entry
        if sample_id not in self._cache:
            task = self.config.task
            channels, steps = read_binned(path, self.channel_of_pixel, task.sequence, task.time_max_us)
            self._cache[sample_id] = one_hot_sample(sample_id, label, channels, steps, task.sequence,
                                                    task.learning_window, self.config.network.n_out)
        return self._cache[sample_id]

    def train(self, index: int) -> Sample:
        return self._load(self._train_entries[index])

    def test(self, index: int) -> Sample:
        return self._load(self._test_entries[index])


def _read_label_file(root: Path, name: str) -> list[tuple[str, Path, int]]:
    path = root / name
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise NMNISTError(f"{path}: cannot read the label file ({exc.strerror})") from exc
    entries = []
    for lineno, line in enumerate(lines, 1):
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        fields = text.split()
        if len(fields) < 2:
            raise NMNISTError(f"{path}:{lineno}: sample {fields[0]} has no label")
        sample_id, label = fields[0], fields[1]
        if not label.isdigit() or not 0 <= int(label) <= 9:
            raise NMNISTError(f"{path}:{lineno}: sample {sample_id} has label {label!r}, expected 0..9")
        file = root / f"{sample_id}.bs2"
        if not file.exists():
            raise NMNISTError(f"{path}:{lineno}: sample {sample_id}: event file {file} does not exist")
        entries.append((sample_id, file, int(label)))
    if not entries:
        raise NMNISTError(f"{path}: no samples listed")
    return entries


def _scan_full_dataset(data_dir: Path) -> tuple[list, list, Path]:
    """A full N-MNIST download: ``Train/<label>/*.bin`` and ``Test/<label>/*.bin`` under `data_dir`, or under
    ``data_dir/NMNIST`` (tonic's layout) or ``data_dir/468j46mzdv-1`` (NEST's download)."""
    for root in (data_dir, data_dir / "NMNIST", data_dir / "468j46mzdv-1"):
        if (root / "Train").is_dir() and (root / "Test").is_dir():
            break
    else:
        raise NMNISTError(f"{data_dir}: no N-MNIST here (expected Train/ and Test/ folders with one folder per "
                          f"label, directly or under NMNIST/)")
    splits = []
    for split in ("Train", "Test"):
        entries = []
        for label in range(10):
            folder = root / split / str(label)
            if not folder.is_dir():
                raise NMNISTError(f"{folder}: missing label folder")
            for file in sorted(folder.iterdir()):  # NEST's loader: labels in order, files sorted
                if file.suffix in (".bin", ".bs2"):
                    entries.append((f"{split.lower()}/{label}/{file.stem}", file, label))
        if not entries:
            raise NMNISTError(f"{root / split}: no event files")
        splits.append(entries)
    return splits[0], splits[1], root


class SineTask(Task):
    """NEST's sine-wave example: the draws continue the weight RNG exactly as the example's script does."""

    def __init__(self, config: NetworkConfig):
        self.config = config
        task, n_in = config.task, config.network.n_in
        rng = np.random.RandomState(config.network.seed)
        draw_network(config, rng)  # the example draws its inputs and target right after the weights
        bools = (rng.rand(task.sequence, n_in) < task.input_spike_prob).swapaxes(0, 1)
        channels, steps = [], []
        for channel, row in enumerate(bools):
            s = np.flatnonzero(row)
            channels.append(np.full(s.size, channel))
            steps.append(s)
        channels = np.concatenate(channels)
        steps = np.concatenate(steps)
        order = np.lexsort((channels, steps))
        target = _superimposed_sines(rng, task.sequence, task.periods)
        window = np.ones(task.sequence)
        self.sample = Sample("sine", -1, channels[order].astype(np.int32), steps[order].astype(np.int32),
                             target[:, None].repeat(config.network.n_out, axis=1), window)
        super().__init__("sine", False, None, None, "NEST's sine-wave regression (frozen Poisson input)")

    def train(self, index: int) -> Sample:
        return self.sample

    def test(self, index: int) -> Sample:
        return self.sample


def _superimposed_sines(rng: np.random.RandomState, steps: int, periods: tuple[int, ...]) -> np.ndarray:
    amplitudes = rng.uniform(low=0.5, high=2.0, size=len(periods))
    phases = rng.uniform(low=0.0, high=2.0 * np.pi, size=len(periods))
    sines = [A * np.sin(np.linspace(phi, phi + 2.0 * np.pi * (steps // T), steps))
             for A, phi, T in zip(amplitudes, phases, periods)]
    superposition = sum(sines)
    superposition -= superposition[0]
    superposition /= max(np.abs(superposition).max(), 1e-6)
    return superposition


class PatternsTask(Task):
    """Synthetic classes: class c drives its own random half of the inputs at 3x the base rate."""

    N_TRAIN = 600
    N_TEST = 120

    def __init__(self, config: NetworkConfig):
        self.config = config
        n_in, n_out = config.network.n_in, config.network.n_out
        rng = np.random.RandomState(config.network.seed + 7919)
        self.rates = np.full((n_out, n_in), config.task.input_spike_prob / 2)
        for c in range(n_out):
            self.rates[c, rng.permutation(n_in)[: max(1, n_in // 2)]] *= 3.0
        self.rates = np.minimum(self.rates, 1.0)
        super().__init__("patterns", True, self.N_TRAIN, self.N_TEST, f"{n_out} frozen-rate Poisson classes")

    def _sample(self, split: str, index: int, offset: int) -> Sample:
        key = (split, index)
        if key not in self._cache:
            task, n_out = self.config.task, self.config.network.n_out
            rng = np.random.RandomState([self.config.network.seed, offset + index])
            label = index % n_out
            spikes = rng.rand(task.sequence, self.rates.shape[1]) < self.rates[label]
            steps, channels = np.nonzero(spikes)
            self._cache[key] = one_hot_sample(f"{split}/{index}", label, channels, steps, task.sequence,
                                              task.learning_window, n_out)
        return self._cache[key]

    def train(self, index: int) -> Sample:
        return self._sample("train", index, 0)

    def test(self, index: int) -> Sample:
        return self._sample("test", index, 1_000_000)


def thin_events(sample: Sample, keep_fraction: float, seed: int) -> Sample:
    """The sample with each input event kept with probability keep_fraction (independently; events of one channel
    in one step are separate events), drawn from a stream seeded by (seed, crc32 of the sample id)."""
    rng = np.random.default_rng([seed, zlib.crc32(sample.sample_id.encode())])
    keep = rng.random(sample.channels.size) < keep_fraction
    return replace(sample, channels=sample.channels[keep], steps=sample.steps[keep])


class ThinnedTask(Task):
    """A task whose samples keep a seeded random fraction of their input events (see thin_events)."""

    def __init__(self, task: Task, keep_fraction: float, seed: int):
        self.inner, self.keep_fraction, self.seed = task, keep_fraction, seed
        super().__init__(task.name, task.classification, task.n_train, task.n_test,
                         f"{task.description}, input events thinned to {keep_fraction:g} (seed {seed})")

    def _thinned(self, key, sample: Sample) -> Sample:
        if key not in self._cache:
            self._cache[key] = thin_events(sample, self.keep_fraction, self.seed)
        return self._cache[key]

    def train(self, index: int) -> Sample:
        return self._thinned(("train", index), self.inner.train(index))

    def test(self, index: int) -> Sample:
        return self._thinned(("test", index), self.inner.test(index))


def make_task(config: NetworkConfig, data_dir: str | Path | None = None) -> Task:
    task = _make_task(config, data_dir)
    if config.task.event_keep_fraction < 1.0:
        return ThinnedTask(task, config.task.event_keep_fraction, config.task.event_thinning_seed)
    return task


def _make_task(config: NetworkConfig, data_dir: str | Path | None) -> Task:
    name = config.task.name
    if name == "nmnist":
        return NMNISTTask(config, data_dir)
    if data_dir is not None:
        raise NMNISTError(f"--data is only used by the nmnist task, the config's task is {name!r}")
    if name == "sine":
        return SineTask(config)
    if name == "patterns":
        return PatternsTask(config)
    raise AssertionError(name)
