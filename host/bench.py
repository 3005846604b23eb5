"""Benchmarks that put an engine beside its peer in one process run and report ratios.

``eprop bench nest``: the same training run (config, network, samples, order) on the golden engine and on
NEST 3.10; wall time per sample of each, their ratio, and whether every final weight and every recurrent spike
count agree exactly. With ``--repeats R`` the two engines run alternately R times each (golden, NEST, golden,
...): shared machines change speed over seconds (measured here: the same run 2.2 to 4.4 ms per sample within
a minute), and alternating puts both engines through the same phases; the ratio is that of the medians, and
every run's time is on record.
"""

from __future__ import annotations

import json
import os
import statistics
import platform
import time
from pathlib import Path

import numpy as np

from golden_model.config import NetworkConfig
from golden_model.network import build_network

from .training import run_training

__all__ = ["bench_nest", "compare_runs"]


def compare_runs(a, b) -> dict:
    """Exact comparison of two TrainingRuns: final weights, per-sample spike counts, losses, predictions."""
    out = {}
    for name in ("W_in", "W_rec", "W_out"):
        wa, wb = getattr(a.final, name), getattr(b.final, name)
        out[f"max_abs_diff_{name}"] = float(np.max(np.abs(wa - wb))) if wa.size else 0.0
    out["weights_identical"] = all(np.array_equal(getattr(a.final, n), getattr(b.final, n))
                                   for n in ("W_in", "W_rec", "W_out"))
    out["spike_counts_identical"] = [r.n_spikes for r in a.results] == [r.n_spikes for r in b.results]
    out["losses_identical"] = [r.loss for r in a.results] == [r.loss for r in b.results]
    out["predictions_identical"] = [r.prediction for r in a.results] == [r.prediction for r in b.results]
    out["recurrent_spikes"] = int(sum(r.n_spikes for r in a.results))
    return out


def _warm_up(config: NetworkConfig) -> None:
    """Compile (or load from cache) the golden kernels outside the timed region."""
    warm = config.with_overrides({"training.epochs": 1})
    run_training(warm, "golden", train_samples=1, test_samples=0, progress=False)


def bench_nest(config: NetworkConfig, train_samples: int, test_samples: int = 0, data_dir=None,
               out_dir: str | Path | None = None, progress: bool = True, repeats: int = 1) -> dict:
    if repeats < 1:
        raise ValueError(f"--repeats {repeats}: at least 1")
    network = build_network(config)
    _warm_up(config)
    n = train_samples + test_samples
    runs, times, identical = {}, {"golden": [], "nest": []}, []
    for r in range(repeats):
        for engine in ("golden", "nest"):
            if progress:
                print(f"[bench nest] {engine} (run {r + 1} of {repeats}): {train_samples} training + "
                      f"{test_samples} test samples ...", flush=True)
            run = run_training(config, engine, train_samples=train_samples, test_samples=test_samples,
                               epochs=1, data_dir=data_dir, progress=progress, network=network)
            times[engine].append(run.run_time_s / n)
            runs[engine] = run
        identical.append(compare_runs(runs["golden"], runs["nest"])["weights_identical"])
    per_sample = {e: statistics.median(times[e]) for e in times}
    comparison = compare_runs(runs["golden"], runs["nest"])
    comparison["weights_identical_every_run"] = all(identical)
    result = {
        "benchmark": "golden vs NEST 3.10, same run",
        "preset": config.source,
        "train_samples": train_samples,
        "test_samples": test_samples,
        "nest_virtual_processes": config.simulation.total_num_virtual_procs,
        "machine": {"cpu_count": _cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        # OpenMP settings both engines ran with (golden_model sets GOMP_SPINCOUNT unless the user did)
        "openmp_environment": {k: os.environ.get(k) for k in ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY",
                                                               "NUMBA_NUM_THREADS", "OMP_NUM_THREADS")},
        "repeats": repeats,
        # the median of the runs (each engine's runs alternate with the other's), and every run
        "seconds_per_sample": per_sample,
        "seconds_per_sample_each_run": times,
        "load_seconds": {e: runs[e].load_time_s for e in runs},
        "speedup_golden_over_nest": per_sample["nest"] / per_sample["golden"],
        "speedup_each_run": [nt / gt for gt, nt in zip(times["golden"], times["nest"])],
        "comparison": comparison,
        "test_accuracy": {e: runs[e].summary("test")["accuracy"] for e in runs},
    }
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / "bench_nest.json").write_text(json.dumps(result, indent=2) + "\n")
    return result


def format_bench_nest(result: dict) -> str:
    ps = result["seconds_per_sample"]
    cmp_ = result["comparison"]
    each = result["seconds_per_sample_each_run"]
    median = " (median)" if result["repeats"] > 1 else ""
    lines = [
        f"golden vs NEST 3.10 ({result['train_samples']} training + {result['test_samples']} test samples, "
        f"NEST on {result['nest_virtual_processes']} virtual processes, {result['machine']['cpu_count']} cores, "
        f"GOMP_SPINCOUNT={result['openmp_environment']['GOMP_SPINCOUNT']}"
        + (f", {result['repeats']} alternating runs each" if result["repeats"] > 1 else "") + ")",
        f"  golden  {ps['golden'] * 1e3:10.2f} ms per sample{median}",
        f"  nest    {ps['nest'] * 1e3:10.2f} ms per sample{median}",
        f"  ratio   {result['speedup_golden_over_nest']:10.2f} x (golden faster){median}",
    ]
    if result["repeats"] > 1:
        lines += [
            "  each run (ms per sample, golden / nest / ratio): "
            + "; ".join(f"{g * 1e3:.2f} / {n * 1e3:.2f} / {n / g:.2f}x" for g, n in zip(each["golden"], each["nest"])),
            f"  final weights identical in every run: {cmp_['weights_identical_every_run']}",
        ]
    lines += [
        f"  final weights identical: {cmp_['weights_identical']} "
        f"(max |dW| in {cmp_['max_abs_diff_W_in']!r}, rec {cmp_['max_abs_diff_W_rec']!r}, "
        f"out {cmp_['max_abs_diff_W_out']!r})",
        f"  per-sample spike counts identical: {cmp_['spike_counts_identical']} "
        f"({cmp_['recurrent_spikes']} recurrent spikes); losses identical: {cmp_['losses_identical']}",
    ]
    return "\n".join(lines)


def _cpu_count() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
