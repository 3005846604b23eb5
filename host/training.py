"""The training loop that drives any engine, and what it writes.

Schedule (NEST's N-MNIST example, generalised): ``epochs`` passes over the training samples (a fixed subset of
the task's training set, reshuffled each epoch), then one pass over the test samples with learning off
(eta = 0); samples follow each other without reset. Every ``group_size`` consecutive samples of a phase form an
iteration, the unit of the per-iteration loss and accuracy. Per sample, as in the example: loss
``0.5 * mean_k sum_t (lambda_t (y_k - y*_k))^2`` over the learning window, prediction ``argmax_k`` of the mean
readout over the window. Engines trained with a cross-entropy readout (``Engine.loss``, the bellec engines'
``[bellec] loss``) report ``-mean_t sum_k y*_k log y_k`` over the window instead, y being the softmax, as NEST's
evidence-accumulation example does.

Operation counts (golden_model/counters.py) and engine time are attributed to the phase of the ``run()`` call
that did them (the final update is its own phase, "final"); per-training-sample figures divide the training
phase's by the number of training samples run. (A call also finishes the previous call's last sample: two steps
of 300 on N-MNIST may land in the neighbouring phase.)
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from golden_model.config import NetworkConfig
from golden_model.energy import model_energy
from golden_model.engines.base import SampleWindows
from golden_model.network import Network, build_network
from golden_model.tasks import Sample, Task, make_task

from .registry import create_engine

__all__ = ["TrainingRun", "SampleResult", "run_training", "sample_loss", "sample_prediction", "write_outputs",
           "training_order"]


def sample_loss(y: np.ndarray, sample: Sample, loss: str = "mean_squared_error") -> float:
    """mean_squared_error: 0.5 * mean over readouts of the summed squared windowed error (NEST N-MNIST example's
    loss of one sample); cross_entropy: mean over the window of -sum_k y*_k log y_k (NEST's bsshslm
    evidence-accumulation example; terms with y*_k = 0 count as 0)."""
    if loss == "cross_entropy":
        on = sample.window != 0
        target, p = sample.target[on], y[on]
        terms = np.where(target != 0, target * np.log(np.where(target != 0, p, 1.0)), 0.0)
        return float(-np.mean(np.sum(terms, axis=1)))
    lam = sample.window[:, None]
    d = lam * y - lam * sample.target
    on = sample.window != 0
    return float(0.5 * np.mean(np.sum(d[on] ** 2, axis=0)))


def sample_prediction(y: np.ndarray, sample: Sample) -> int:
    on = sample.window != 0
    return int(np.argmax(np.mean(y[on], axis=0)))


@dataclass
class SampleResult:
    index: int  # position in the run
    phase: str  # "train" | "test"
    epoch: int
    iteration: int
    sample_id: str
    label: int
    loss: float
    prediction: int
    n_spikes: int

    @property
    def correct(self) -> bool:
        return self.label >= 0 and self.prediction == self.label


@dataclass
class TrainingRun:
    config: NetworkConfig
    engine: str
    task: str
    dataset: str
    epochs: int
    n_train: int
    n_test: int
    results: list[SampleResult] = field(default_factory=list)
    iterations: list[dict] = field(default_factory=list)
    initial: Network | None = None
    final: Network | None = None
    counters: dict[str, int] = field(default_factory=dict)
    #: what the per-sample loss measures (the engine's loss)
    loss_function: str = "mean_squared_error"
    #: counters and engine seconds per phase ("train", "test", "final")
    counters_by_phase: dict[str, dict[str, int]] = field(default_factory=dict)
    phase_time_s: dict[str, float] = field(default_factory=dict)
    wall_time_s: float = 0.0
    load_time_s: float = 0.0
    run_time_s: float = 0.0
    report_sample: dict | None = None
    #: the engine's own section(s) of metrics.json (the board engines: {"board": ...})
    engine_metrics: dict = field(default_factory=dict)
    #: False for engines that return no spike trains (the board): the rate comes from their counter
    spikes_streamed: bool = True

    def phase(self, name: str) -> list[SampleResult]:
        return [r for r in self.results if r.phase == name]

    def summary(self, name: str) -> dict:
        rs = self.phase(name)
        if not rs:
            return {"samples": 0, "loss": None, "accuracy": None}
        classification = rs[0].label >= 0
        return {"samples": len(rs), "loss": float(np.mean([r.loss for r in rs])),
                "accuracy": float(np.mean([r.correct for r in rs])) if classification else None}

    def metrics(self) -> dict:
        n_samples = len(self.results)
        steps = n_samples * self.config.task.sequence
        spikes = sum(r.n_spikes for r in self.results)
        if not self.spikes_streamed:  # the recurrent_spikes counter over the samples' runs
            spikes = sum(self.counters_by_phase.get(p, {}).get("recurrent_spikes", 0) for p in ("train", "test"))
        last_train = [it for it in self.iterations if it["phase"] == "train"][-1:] or [None]
        n_train_run = self.epochs * self.n_train
        train_counts = self.counters_by_phase.get("train", {})
        per_train_sample = {k: v / n_train_run for k, v in train_counts.items()} if n_train_run else {}
        # the energy model prices the shared counters' arithmetic and memory words; engines that do not count them
        # (the fixed-point engine and the hardware count integer operations and cycles) get no modelled energy
        priced = any(k.startswith("mem_") or "_fp_" in k for k in train_counts)
        energy = model_energy(train_counts, per=n_train_run) if priced and n_train_run else None
        return {
            "engine": self.engine,
            "task": self.task,
            "dataset": self.dataset,
            "epochs": self.epochs,
            "train_samples": self.n_train,
            "test_samples": self.n_test,
            "iterations": self.iterations,
            "final_train_iteration": last_train[0],
            "loss_function": self.loss_function,
            "train": self.summary("train"),
            "test": self.summary("test"),
            "test_accuracy": self.summary("test")["accuracy"],
            "test_loss": self.summary("test")["loss"],
            "wall_time_s": self.wall_time_s,
            "load_time_s": self.load_time_s,
            "run_time_s": self.run_time_s,
            "samples_per_s": n_samples / self.run_time_s if self.run_time_s > 0 else None,
            "recurrent_rate_hz": spikes / max(1, steps) / self.config.network.n_rec * 1000.0,
            "seconds_per_training_sample": (self.phase_time_s.get("train", 0.0) / n_train_run
                                            if n_train_run else None),
            "phase_time_s": self.phase_time_s,
            "counters": self.counters,
            "counters_by_phase": self.counters_by_phase,
            "counters_per_training_sample": per_train_sample,
            "modelled_energy_per_training_sample": energy,
            "config": self.config.to_dict(),
            "config_source": self.config.source,
            **self.engine_metrics,
        }


def training_order(n_train: int, n_available: int, epochs: int, seed: int) -> list[np.ndarray]:
    """Training-sample indices per epoch: a seeded subset of the available samples, reshuffled each epoch."""
    rng = np.random.default_rng(seed)
    subset = rng.permutation(n_available)[:n_train] if n_train < n_available else np.arange(n_available)
    return [rng.permutation(subset) for _ in range(epochs)]


def _resolve_counts(config: NetworkConfig, task: Task, train_samples, test_samples, epochs):
    epochs = epochs if epochs is not None else config.training.epochs
    n_train = train_samples if train_samples is not None else config.training.train_samples
    n_test = test_samples if test_samples is not None else config.training.test_samples
    if not n_train:
        if task.n_train is None:
            raise ValueError(f"the {task.name} task has no fixed training set: give --train-samples")
        n_train = task.n_train
    if not n_test and test_samples is None:
        n_test = task.n_test or 0
    if task.n_train is not None and n_train > task.n_train:
        raise ValueError(f"--train-samples {n_train}: the {task.description} has {task.n_train} training samples")
    if task.n_test is not None and n_test > task.n_test:
        raise ValueError(f"--test-samples {n_test}: the {task.description} has {task.n_test} test samples")
    if epochs < 1 or n_train < 0 or n_test < 0:
        raise ValueError("epochs must be >= 1 and sample counts >= 0")
    return int(n_train), int(n_test), int(epochs)


def run_training(config: NetworkConfig, engine_name: str = "golden", *, train_samples: int | None = None,
                 test_samples: int | None = None, epochs: int | None = None, data_dir=None,
                 progress: bool = True, network: Network | None = None, engine=None) -> TrainingRun:
    t_start = time.perf_counter()
    task = make_task(config, data_dir)
    n_train, n_test, epochs = _resolve_counts(config, task, train_samples, test_samples, epochs)
    network = network if network is not None else build_network(config)
    if engine is None:
        engine = create_engine(engine_name, config)
    engine.load(network)
    t_loaded = time.perf_counter()

    run = TrainingRun(config=config, engine=engine.name, task=task.name, dataset=task.description,
                      epochs=epochs, n_train=n_train, n_test=n_test, initial=network.copy(),
                      loss_function=engine.loss)
    schedule: list[tuple[str, int, Sample]] = []
    if n_train:
        available = task.n_train if task.n_train is not None else n_train
        for epoch, order in enumerate(training_order(n_train, available, epochs, config.network.seed)):
            schedule += [("train", epoch, task.train(int(i))) for i in order]
    schedule += [("test", 0, task.test(i)) for i in range(n_test)]
    report_index = next((n for n, (phase, _, _) in enumerate(schedule) if phase == "test"), len(schedule) - 1)

    windows = SampleWindows(config)
    group = config.task.group_size
    counts = {"train": 0, "test": 0}
    bar = _progress_bar(len(schedule), engine.name, progress)

    def collect():
        for n, y, spikes in windows.complete():
            phase, epoch, sample = schedule[n]
            k = counts[phase]
            counts[phase] += 1
            result = SampleResult(n, phase, epoch, k // group, sample.sample_id, sample.label,
                                  sample_loss(y, sample, engine.loss), sample_prediction(y, sample),
                                  int(spikes.shape[1]))
            run.results.append(result)
            if k % group == group - 1:
                _close_iteration(run, phase)
            if n == report_index:
                run.report_sample = {"sample": sample, "y": y, "spikes": spikes, "phase": phase}
            if bar is not None:
                bar.update(1)
                recent = [r for r in run.results[-group:] if r.phase == phase]
                postfix = {"phase": phase, "loss": f"{np.mean([r.loss for r in recent]):.4f}"}
                if recent and recent[0].label >= 0:
                    postfix["acc"] = f"{np.mean([r.correct for r in recent]):.3f}"
                bar.set_postfix(postfix, refresh=False)

    def timed(phase: str, call):
        before, t = engine.counters(), time.perf_counter()
        trace = call()
        run.phase_time_s[phase] = run.phase_time_s.get(phase, 0.0) + time.perf_counter() - t
        bucket = run.counters_by_phase.setdefault(phase, {})
        for key, value in engine.counters().items():
            bucket[key] = bucket.get(key, 0) + value - before.get(key, 0)
        return trace

    try:
        for phase, block in _blocks(schedule, group, engine.block_samples or group):
            windows.add(timed(phase, lambda: engine.run(block, learn=(phase == "train"))))
            collect()
        windows.add(timed("final", engine.finish))
        collect()
    finally:
        if bar is not None:
            bar.close()
    for phase in ("train", "test"):
        if counts[phase] % group:
            _close_iteration(run, phase)
    t_end = time.perf_counter()
    run.final = engine.weights()
    run.counters = engine.counters()
    run.engine_metrics = engine.run_metrics() if hasattr(engine, "run_metrics") else {}
    run.spikes_streamed = getattr(engine, "streams_spikes", True)
    engine.close()
    run.load_time_s = t_loaded - t_start
    run.run_time_s = t_end - t_loaded
    run.wall_time_s = time.perf_counter() - t_start
    return run


def _blocks(schedule, group: int, size: int):
    """Consecutive samples of one phase, at most `size` per block, never across an iteration boundary."""
    block, phase, count = [], None, {"train": 0, "test": 0}
    for p, _, sample in schedule:
        if block and (p != phase or len(block) == size or count[p] % group == 0):
            yield phase, block
            block = []
        phase = p
        block.append(sample)
        count[p] += 1
    if block:
        yield phase, block


def _close_iteration(run: TrainingRun, phase: str) -> None:
    done = {it["iteration"] for it in run.iterations if it["phase"] == phase}
    rs = [r for r in run.results if r.phase == phase]
    iteration = rs[-1].iteration
    if iteration in done:
        return
    members = [r for r in rs if r.iteration == iteration]
    entry = {"phase": phase, "iteration": iteration, "epoch": members[-1].epoch, "samples": len(members),
             "loss": float(np.mean([r.loss for r in members])),
             "accuracy": float(np.mean([r.correct for r in members])) if members[0].label >= 0 else None}
    run.iterations.append(entry)


def _progress_bar(total: int, engine: str, enabled: bool):
    if not enabled:
        return None
    from tqdm import tqdm  # noqa: PLC0415

    return tqdm(total=total, unit="sample", desc=f"eprop train [{engine}]", dynamic_ncols=True)


def write_outputs(run: TrainingRun, out_dir: str | Path, report: bool = True) -> dict[str, Path]:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"metrics": out / "metrics.json", "weights": out / "weights.npz"}
    paths["metrics"].write_text(json.dumps(_json_safe(run.metrics()), indent=2, default=_json_default,
                                                   allow_nan=False) + "\n")
    w = run.final
    np.savez(paths["weights"], W_in=w.W_in, W_rec=w.W_rec, W_out=w.W_out, B=w.B, mask_in=w.mask_in,
             mask_rec=w.mask_rec, mask_out=w.mask_out, W_in_initial=run.initial.W_in,
             W_rec_initial=run.initial.W_rec, W_out_initial=run.initial.W_out)
    if report:
        from .report import plot_report  # noqa: PLC0415

        paths["report"] = out / "report.png"
        plot_report(run, paths["report"])
    return paths


def _json_safe(value):
    """inf and nan are not JSON: written as strings ("inf" is read back by the config loader)."""
    if isinstance(value, np.floating):
        value = float(value)
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, float) and not np.isfinite(value):
        return str(value)
    return value


def _json_default(value):
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    if isinstance(value, tuple):
        return list(value)
    raise TypeError(f"not JSON serialisable: {type(value)}")
