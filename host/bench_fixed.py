"""``eprop bench fixed``: what each bit costs. The float golden engine and the fixed-point engine on the same
training and test samples, over a grid of weight and trace widths (integer bits kept from the config, fraction
bits varied), with test accuracy, loss, saturations and the memory the widths need. With ``optimizer.type =
adam`` both engines run Adam (golden: NEST's, one step per elapsed time step; fixed: the contract's, one step
per walk) and the grid also varies the widths of Adam's m and sigma = sqrt(v) (``moment_bits``)."""

from __future__ import annotations

import json
import time
from pathlib import Path

from golden_model.budget import PARTS, fit, memory_map
from golden_model.config import NetworkConfig
from golden_model.hw_contract import QFormat
from golden_model.network import build_network

from .training import run_training

__all__ = ["bench_fixed", "format_bench_fixed", "width_overrides"]


def width_overrides(config: NetworkConfig, weight_bits: int, trace_bits: int, rounding: str,
                    moment_bits: int | None = None) -> list[str]:
    """Overrides giving weights `weight_bits` and the trace `trace_bits` bits (and Adam's m and sigma
    `moment_bits` each), integer bits unchanged."""
    fx = config.fixed
    w, eb = QFormat.parse(fx.weight), QFormat.parse(fx.e_bar)
    out = [f"fixed.weight=s{w.int_bits}.{weight_bits - 1 - w.int_bits}",
           f"fixed.e_bar=u{eb.int_bits}.{trace_bits - eb.int_bits}"]
    if moment_bits is not None:
        am, av = QFormat.parse(fx.adam_m), QFormat.parse(fx.adam_v)
        out += [f"fixed.adam_m=s{am.int_bits}.{moment_bits - 1 - am.int_bits}",
                f"fixed.adam_v=u{av.int_bits}.{moment_bits - av.int_bits}"]
    out.append(f"fixed.weight_rounding={rounding}")
    for o in out[:-1]:
        if int(o.rsplit(".", 1)[1]) < 0:
            raise ValueError(f"{o}: fewer bits than the integer part of the config's format")
    return out


def bench_fixed(config: NetworkConfig, weight_bits: list[int], trace_bits: list[int], roundings: list[str],
                epochs: int | None = None, train_samples: int | None = None, test_samples: int | None = None,
                part: str = "xc7z020", out_dir: str | Path | None = None, progress: bool = True,
                moment_bits: list[int] | None = None) -> dict:
    network = build_network(config)
    kwargs = dict(train_samples=train_samples, test_samples=test_samples, epochs=epochs, network=network,
                  progress=False)
    t = time.perf_counter()
    golden = run_training(config, "golden", **kwargs)
    adam = config.optimizer.type == "adam"
    moments = (moment_bits or [None]) if adam else [None]
    result = {"benchmark": "fixed-point widths vs float golden", "preset": config.source,
              "optimizer": config.optimizer.type, "eta": config.optimizer.eta,
              "epochs": golden.epochs, "train_samples": golden.n_train, "test_samples": golden.n_test,
              "golden": {"test_accuracy": golden.summary("test")["accuracy"],
                         "test_loss": golden.summary("test")["loss"], "seconds": time.perf_counter() - t},
              "part": part, "points": []}
    if progress:
        print(f"[bench fixed] golden: test accuracy {result['golden']['test_accuracy']}", flush=True)
    n_syn = sum(network.n_synapses.values())
    n_trace = network.n_synapses["in"] + network.n_synapses["rec"]
    if adam:
        roundings = [r for r in roundings if r == "nearest_even"]  # the Adam contract rounds to nearest
    grid = [(r, wb, tb, mb) for r in roundings for wb in weight_bits for tb in trace_bits for mb in moments]
    for rounding, wb, tb, mb in grid:
        overrides = width_overrides(config, wb, tb, rounding, mb)
        cfg = config.with_overrides(overrides)
        t = time.perf_counter()
        run = run_training(cfg, "fixed", **kwargs)
        saturations = {k[len("saturations_"):]: v for k, v in run.counters.items()
                       if k.startswith("saturations_") and v}
        budget = fit(memory_map(cfg, network), PARTS[part])
        point = {"weight_bits": wb, "trace_bits": tb, "moment_bits": mb, "rounding": rounding,
                 "overrides": overrides,
                 "test_accuracy": run.summary("test")["accuracy"], "test_loss": run.summary("test")["loss"],
                 "train_accuracy": run.summary("train")["accuracy"], "saturations": saturations,
                 "bits_per_synapse": (wb * n_syn + tb * n_trace + (2 * mb * n_syn if mb else 0)) / n_syn,
                 "blocks": budget["used"], "fits": budget["fits"], "seconds": time.perf_counter() - t}
        result["points"].append(point)
        if progress:
            print(f"[bench fixed] {rounding:12s} weight {wb:2d} b, traces {tb:2d} b"
                  f"{f', moments {mb} b' if mb else ''}: test accuracy "
                  f"{point['test_accuracy']}, {budget['used']:.1f} {budget['block']}", flush=True)
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / "bench_fixed.json").write_text(json.dumps(result, indent=2) + "\n")
        _plot(result, out / "bench_fixed.png")
    return result


def _plot(result: dict, path: Path) -> None:
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    fig, axes = plt.subplots(1, 2, figsize=(11, 4), constrained_layout=True)
    points = result["points"]
    curves = sorted({(p["rounding"], p["trace_bits"], p.get("moment_bits") or 0) for p in points})
    for rounding, tb, mb in curves:
        sel = sorted((p for p in points if (p["rounding"], p["trace_bits"], p.get("moment_bits") or 0)
                      == (rounding, tb, mb)), key=lambda p: p["weight_bits"])
        x = [p["weight_bits"] for p in sel]
        style = "-o" if rounding == "nearest_even" else "--s"
        label = f"traces {tb} b{f', moments {mb} b' if mb else ''}, {rounding}"
        axes[0].plot(x, [p["test_accuracy"] for p in sel], style, label=label)
        axes[1].plot(x, [p["test_loss"] for p in sel], style, label=label)
    axes[0].axhline(result["golden"]["test_accuracy"], color="k", lw=1, label="float golden")
    axes[1].axhline(result["golden"]["test_loss"], color="k", lw=1, label="float golden")
    axes[0].set(xlabel="weight bits", ylabel="test accuracy", title=f"{result['preset']}: fixed point vs float")
    axes[1].set(xlabel="weight bits", ylabel="test loss")
    axes[0].legend(fontsize=7)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def format_bench_fixed(result: dict) -> str:
    g = result["golden"]
    lines = [f"{result['preset']}: {result['epochs']} epochs x {result['train_samples']} training samples, "
             f"{result['test_samples']} test samples, {result.get('optimizer', 'gradient_descent')} eta "
             f"{result.get('eta')}; float golden test accuracy {g['test_accuracy']}, loss {g['test_loss']:.5f}",
             f"{'rounding':12s} {'w bits':>6s} {'trace b':>7s} {'mom. b':>6s} {'bits/syn':>8s} {'accuracy':>8s} "
             f"{'loss':>8s} {'blocks':>7s}  saturations"]
    for p in result["points"]:
        mb = p.get("moment_bits")
        lines.append(f"{p['rounding']:12s} {p['weight_bits']:6d} {p['trace_bits']:7d} {mb if mb else '-':>6} "
                     f"{p['bits_per_synapse']:8.1f} "
                     f"{p['test_accuracy']:8.3f} {p['test_loss']:8.5f} {p['blocks']:7.1f}  "
                     f"{p['saturations'] or '-'}")
    return "\n".join(lines)
