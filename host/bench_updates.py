"""``eprop bench updates``: event-driven vs time-driven e-prop on the same network and the same samples.

The seed paper (Korcsak-Gorzo et al. 2025) reports that event-driven e-prop needs far fewer synaptic updates
(~62 %) and less compute energy (~47 %) than time-driven e-prop at the same accuracy. This benchmark measures the
project's own version of that claim from operation counts made where the work happens
(golden_model/counters.py), priced by a stated energy table (golden_model/energy.py, *modelled*):

* event-driven: the golden engine (NEST 3.10's algorithm, the config's cutoff);
* time-driven: the timedriven engine (the same mathematics with every synapse updated every step; no cutoff);
* time-driven, Bellec: the bellec engine (Bellec et al. 2020 as NEST's ``_bsshslm_2020`` models compute it: one
  walk per synapse and update interval, the weight written once per interval). It is a different learning rule
  (interval reset, (1 - kappa) filter, interval regularisation) trained with the config's ``[bellec]`` and
  ``[bellec_optimizer]`` sections (for ``nmnist``: one interval per sample, Adam 1e-3), so its accuracy is its own,
  not that of the same computation on another schedule;
* for attribution, the golden engine without cutoff (at keep fraction 1 only): how much of the saving is the
  cutoff, how much the event-driven schedule itself.

Each variant trains on the same ``--train-samples`` for ``--epochs`` (in the same order, from the same initial
weights), then tests on ``--test-samples`` with learning off; per training sample it reports the
eligibility-trace updates (the synaptic update operations), weight writes, history and per-synapse trace
traffic, modelled energy and engine wall time, and the reductions of event-driven against each other variant.
The same is repeated with the input events thinned (``[task] event_keep_fraction``) to show how the saving
depends on input activity. As a check of the whole comparison, the no-cutoff event-driven run and the
time-driven run must end with identical weights, losses and spike counts (they compute the same thing;
``checks`` in the JSON).
"""

from __future__ import annotations

import json
import math
import platform
import time
from pathlib import Path

from golden_model.config import NetworkConfig
from golden_model.energy import MODELLED, energy_table, model_energy
from golden_model.network import build_network

from .bench import compare_runs
from .registry import ENGINES
from .training import run_training

__all__ = ["bench_updates", "format_bench_updates", "plot_bench_updates", "METRICS", "DEFAULT_KEEP_FRACTIONS"]

DEFAULT_KEEP_FRACTIONS = (1.0, 0.5, 0.25, 0.1)
EVENT_DRIVEN = "event-driven"
TIME_DRIVEN = "time-driven"
NO_CUTOFF = "event-driven, no cutoff"
BELLEC = "time-driven, Bellec"

#: per-training-sample figures of a run: (key, label, how to get it from the run's metrics)
METRICS = (
    ("trace_updates", "eligibility-trace updates", lambda m, e: m["counters_per_training_sample"]["trace_updates"]),
    ("weight_writes", "weight writes", lambda m, e: m["counters_per_training_sample"]["weight_writes"]),
    ("history_words", "history traffic (words)",
     lambda m, e: m["counters_per_training_sample"]["mem_history_reads"]
     + m["counters_per_training_sample"]["mem_history_writes"]),
    ("synapse_trace_words", "synapse-trace traffic (words)",
     lambda m, e: m["counters_per_training_sample"]["mem_synapse_traces_reads"]
     + m["counters_per_training_sample"]["mem_synapse_traces_writes"]),
    ("energy_uj", "modelled energy (uJ)", lambda m, e: e["total_pj"] / 1e6),
    ("wall_ms", "engine wall time (ms)", lambda m, e: m["seconds_per_training_sample"] * 1e3),
)


def _variants(config: NetworkConfig, fraction: float) -> list[tuple[str, str, dict]]:
    """(label, engine, config overrides) of the runs at one keep fraction."""
    variants = [(EVENT_DRIVEN, "golden", {}), (TIME_DRIVEN, "timedriven", {})]
    if "bellec" in ENGINES:  # registered unless a trimmed registry (e.g. on a board) leaves it out
        variants.append((BELLEC, "bellec", {}))
    if fraction == 1.0 and not (math.isinf(config.recurrent.eprop_isi_trace_cutoff)
                                and math.isinf(config.readout.eprop_isi_trace_cutoff)):
        variants.append((NO_CUTOFF, "golden", {"recurrent.eprop_isi_trace_cutoff": math.inf,
                                               "readout.eprop_isi_trace_cutoff": math.inf}))
    return variants


def _warm_up(config: NetworkConfig, engines: set[str]) -> None:
    """Compile (or load from cache) the engines' kernels outside the timed runs."""
    warm = config.with_overrides({"training.epochs": 1})
    for engine in sorted(engines):
        try:
            run_training(warm, engine, train_samples=2, test_samples=1, progress=False)
        except (ValueError, RuntimeError):
            pass  # reported by the real run


def bench_updates(config: NetworkConfig, train_samples: int = 100, test_samples: int = 100,
                  keep_fractions=DEFAULT_KEEP_FRACTIONS, table: str | Path | None = None, data_dir=None,
                  out_dir: str | Path | None = None, progress: bool = True, command: str | None = None,
                  epochs: int = 1) -> dict:
    table = energy_table(table)
    network = build_network(config)
    _warm_up(config, {engine for f in keep_fractions for _, engine, _ in _variants(config, f)})
    sweep = []
    for fraction in keep_fractions:
        cfg = config.with_overrides({"task.event_keep_fraction": fraction})
        point = {"keep_fraction": fraction, "runs": {}, "skipped": {}, "checks": {}}
        finished = {}
        for label, engine, overrides in _variants(config, fraction):
            if progress:
                print(f"[bench updates] keep {fraction:g}: {label} ({engine}), {epochs} x {train_samples} "
                      f"training + {test_samples} test samples ...", flush=True)
            try:
                run = run_training(cfg.with_overrides(overrides) if overrides else cfg, engine,
                                   train_samples=train_samples, test_samples=test_samples, epochs=epochs,
                                   data_dir=data_dir, progress=progress, network=network)
            except (ValueError, RuntimeError) as exc:  # e.g. an engine that does not support this config
                point["skipped"][label] = f"{engine}: {exc}"
                print(f"[bench updates] {label} skipped: {exc}", flush=True)
                continue
            point["runs"][label] = _summarise(run, engine, table)
            finished[label] = run
        if NO_CUTOFF in finished and TIME_DRIVEN in finished:
            same = compare_runs(finished[NO_CUTOFF], finished[TIME_DRIVEN])
            point["checks"][f"{NO_CUTOFF} == {TIME_DRIVEN}"] = {
                k: same[k] for k in ("weights_identical", "losses_identical", "spike_counts_identical")}
        point["reductions"] = _reductions(point["runs"])
        sweep.append(point)
    result = {
        "benchmark": "event-driven vs time-driven (and Bellec) e-prop: per training sample, same network and "
                     "samples",
        "command": command,
        "preset": config.source,
        "train_samples": train_samples,
        "epochs": epochs,
        "test_samples": test_samples,
        "cutoff_ms": {"recurrent": config.recurrent.eprop_isi_trace_cutoff,
                      "readout": config.readout.eprop_isi_trace_cutoff},
        "energy": {"kind": MODELLED, "table": table.name, "pj": table.pj, "sources": table.sources},
        "machine": {"cpu_count": _cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                    "note": "wall times are of a shared machine: indicative only"},
        "metrics": {key: label for key, label, _ in METRICS},
        "sweep": sweep,
    }
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / "bench_updates.json").write_text(json.dumps(_json_safe(result), indent=2, allow_nan=False) + "\n")
        plot_bench_updates(result, out / "bench_updates.png")
    return result


def _summarise(run, engine: str, table) -> dict:
    m = run.metrics()
    n = run.epochs * run.n_train
    energy = model_energy(run.counters_by_phase.get("train", {}), table, per=n)
    out = {"engine": engine, "per_training_sample": {key: get(m, energy) for key, _, get in METRICS}}
    out["test_accuracy"] = m["test_accuracy"]
    out["train_accuracy"] = m["train"]["accuracy"]
    out["test_loss"] = m["test_loss"]
    out["input_spikes_per_training_sample"] = m["counters_per_training_sample"]["input_spikes"]
    out["recurrent_rate_hz"] = m["recurrent_rate_hz"]
    out["energy_breakdown_pj_per_training_sample"] = energy["breakdown_pj"]
    out["counters_per_training_sample"] = m["counters_per_training_sample"]
    return out


def _reductions(runs: dict) -> dict:
    """Per metric, 100 * (1 - event-driven / other) for every other variant: the saving of event-driven."""
    if EVENT_DRIVEN not in runs:
        return {}
    ours = runs[EVENT_DRIVEN]["per_training_sample"]
    out = {}
    for label, other in runs.items():
        if label == EVENT_DRIVEN:
            continue
        theirs = other["per_training_sample"]
        out[f"vs {label}"] = {k: (100.0 * (1.0 - ours[k] / theirs[k]) if theirs[k] else None) for k in ours}
    return out


def format_bench_updates(result: dict) -> str:
    cutoff = result["cutoff_ms"]["recurrent"]
    lines = [f"event-driven vs time-driven (and Bellec) e-prop ({result['preset']}, cutoff {cutoff} ms event-driven "
             f"only), "
             f"{result['epochs']} x {result['train_samples']} training + {result['test_samples']} test samples, "
             f"same network and samples; per training sample; energy {result['energy']['kind']}, table "
             f"{result['energy']['table']}"]
    for point in result["sweep"]:
        runs = point["runs"]
        labels = list(runs)
        if not labels:
            continue
        spikes = runs[labels[0]]["input_spikes_per_training_sample"]
        lines.append(f"\ninput events kept: {point['keep_fraction']:g} ({spikes:,.0f} input spikes per training "
                     f"sample)")
        width = max(14, *(len(lb) for lb in labels)) + 2
        lines.append(" " * 32 + "".join(f"{lb:>{width}}" for lb in labels))
        for key, label, _ in METRICS:
            row = f"  {label:30s}" + "".join(f"{runs[lb]['per_training_sample'][key]:>{width},.1f}" for lb in labels)
            lines.append(row)
        lines.append(f"  {'  of which memory (uJ)':30s}" + "".join(f"{_memory_uj(runs[lb]):>{width},.1f}"
                                                                 for lb in labels))
        lines.append(f"  {'test accuracy':30s}" + "".join(f"{_acc(runs[lb]['test_accuracy']):>{width}}"
                                                         for lb in labels))
        for check, outcome in point["checks"].items():
            lines.append(f"  check {check}: " + ", ".join(f"{k} {v}" for k, v in outcome.items()))
        for versus, red in point["reductions"].items():
            lines.append(f"  event-driven saving {versus}: " + ", ".join(
                f"{k} {v + 0.0:.1f} %" for k, v in red.items() if v is not None))
        for label, why in point["skipped"].items():
            lines.append(f"  ({label} skipped: {why})")
    return "\n".join(lines)


def _memory_uj(run: dict) -> float:
    return sum(v for k, v in run["energy_breakdown_pj_per_training_sample"].items() if k.startswith("mem_")) / 1e6


def _acc(x) -> str:
    return "n/a" if x is None else f"{x:.3f}"


def plot_bench_updates(result: dict, path: str | Path) -> None:
    """Left: each metric of every variant relative to time-driven (= 1) at the full input; right: the
    event-driven saving (trace updates, modelled energy) against the fraction of input events kept."""
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415
    import numpy as np  # noqa: PLC0415

    fig, (ax_bar, ax_sweep) = plt.subplots(1, 2, figsize=(15, 5.5), constrained_layout=True,
                                           gridspec_kw={"width_ratios": [1.6, 1.0]})
    full = next((p for p in result["sweep"] if p["keep_fraction"] == 1.0), result["sweep"][0])
    runs = full["runs"]
    labels = list(runs)
    keys = [k for k, _, _ in METRICS]
    names = [lb for _, lb, _ in METRICS]
    x = np.arange(len(keys))
    width = 0.8 / max(1, len(labels))
    base = runs.get(TIME_DRIVEN)
    for i, label in enumerate(labels):
        values = [runs[label]["per_training_sample"][k] / base["per_training_sample"][k]
                  if base and base["per_training_sample"][k] else np.nan for k in keys]
        bars = ax_bar.bar(x + (i - (len(labels) - 1) / 2) * width, values, width, label=label)
        for bar, key in zip(bars, keys):
            v = runs[label]["per_training_sample"][key]
            ax_bar.annotate(f"{v:,.3g}", (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                            ha="center", va="bottom", fontsize=7, rotation=90)
    ax_bar.set_xticks(x, [n.replace(" (", "\n(") for n in names], fontsize=8)
    ax_bar.set(ylabel="per training sample, relative to time-driven (log)", yscale="log",
               title=f"{result['preset']}, {result['epochs']} x {result['train_samples']} training samples, all "
                     f"input events\n(bar labels: absolute values per training sample; energy modelled, table "
                     f"{result['energy']['table']})")
    ax_bar.set_ylim(top=ax_bar.get_ylim()[1] * 6)  # room for the labels
    ax_bar.axhline(1.0, color="k", lw=0.6)
    ax_bar.legend(fontsize=8)

    fractions = [p["keep_fraction"] for p in result["sweep"]]
    series = (("trace_updates", "eligibility-trace updates"), ("energy_uj", "modelled energy"),
              ("synapse_trace_words", "synapse-trace traffic"))
    xs = np.arange(len(fractions))
    w = 0.8 / len(series)
    for i, (key, label) in enumerate(series):
        vals = [p["reductions"].get(f"vs {TIME_DRIVEN}", {}).get(key) for p in result["sweep"]]
        vals = [np.nan if v is None else v for v in vals]
        ax_sweep.bar(xs + (i - (len(series) - 1) / 2) * w, vals, w, label=label)
    ax_sweep.set_xticks(xs, [f"{f:g}" for f in fractions])
    ax_sweep.set(xlabel="fraction of input events kept", ylabel="event-driven saving vs time-driven (%)",
                 title="saving and test accuracy against input activity", ylim=(0, 100))
    ax_sweep.legend(fontsize=8, loc="lower left")
    ax_acc = ax_sweep.twinx()
    for label, marker, ls in ((EVENT_DRIVEN, "o", "-"), (TIME_DRIVEN, "s", "--"), (BELLEC, "^", ":")):
        acc = [p["runs"].get(label, {}).get("test_accuracy") for p in result["sweep"]]
        if all(a is None for a in acc):
            continue
        acc = [np.nan if a is None else a for a in acc]
        ax_acc.plot(xs, acc, marker=marker, color="k", ls=ls, label=f"test accuracy, {label}")
    ax_acc.set(ylabel="test accuracy", ylim=(0, 1))
    ax_acc.legend(fontsize=8, loc="lower right")
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _json_safe(value):
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


def _cpu_count() -> int:
    import os  # noqa: PLC0415

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
