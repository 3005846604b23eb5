"""report.png: learning curves and one sample seen through the network."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def plot_report(run, path: str | Path) -> None:
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    fig = plt.figure(figsize=(12, 11), constrained_layout=True)
    grid = fig.add_gridspec(4, 2, height_ratios=[1.0, 1.1, 1.1, 1.1])
    ax_loss, ax_acc = fig.add_subplot(grid[0, 0]), fig.add_subplot(grid[0, 1])
    for phase, marker in (("train", "o"), ("test", "s")):
        its = [it for it in run.iterations if it["phase"] == phase]
        if not its:
            continue
        x = np.arange(len(its)) if phase == "train" else len([i for i in run.iterations if i["phase"] == "train"]) \
            + np.arange(len(its))
        ax_loss.plot(x, [it["loss"] for it in its], marker=marker, ms=3, label=phase)
        if its[0]["accuracy"] is not None:
            ax_acc.plot(x, [it["accuracy"] for it in its], marker=marker, ms=3, label=phase)
    group = run.config.task.group_size
    ax_loss.set(xlabel=f"iteration ({group} samples)", ylabel=f"loss ({run.loss_function})", yscale="log",
                title=f"{run.engine} engine, {run.task}: loss")
    ax_acc.set(xlabel=f"iteration ({group} samples)", ylabel="accuracy", ylim=(0, 1),
               title=f"accuracy (test: {_fmt(run.summary('test')['accuracy'])})")
    ax_loss.legend()
    ax_acc.legend()

    rs = run.report_sample
    ax_in = fig.add_subplot(grid[1, :])
    ax_rec = fig.add_subplot(grid[2, :], sharex=ax_in)
    ax_out = fig.add_subplot(grid[3, :], sharex=ax_in)
    if rs is not None:
        sample, y, spikes = rs["sample"], rs["y"], rs["spikes"]
        ax_in.scatter(sample.steps, sample.channels, s=1, c="k", marker="|")
        ax_in.set(ylabel="input channel", title=f"{rs['phase']} sample {sample.sample_id} (label "
                  f"{sample.label}): input events")
        ax_rec.scatter(spikes[0], spikes[1], s=2, c="tab:blue", marker="|")
        ax_rec.set(ylabel="recurrent neuron", ylim=(-0.5, run.config.network.n_rec - 0.5),
                   title=f"recurrent spikes ({spikes.shape[1]})")
        steps = np.arange(y.shape[0])
        for k in range(y.shape[1]):
            line, = ax_out.plot(steps, y[:, k], lw=1, label=f"y{k}" if y.shape[1] <= 10 else None)
            ax_out.plot(steps, sample.target[:, k], lw=0.8, ls="--", color=line.get_color())
        on = np.flatnonzero(sample.window)
        if on.size:
            ax_out.axvspan(on[0], on[-1], color="0.9", zorder=0, label="learning window")
        ax_out.set(xlabel="step of the sample (1 ms)", ylabel="readout y (dashed: target)",
                   title="readout signals")
        ax_out.legend(ncol=6, fontsize=7, loc="upper left")
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _fmt(value) -> str:
    return "n/a" if value is None else f"{value:.3f}"
