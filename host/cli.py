"""The ``eprop`` command line.

    eprop train                      the main job: nmnist preset, golden engine, bundled N-MNIST subset
    eprop train --preset sine --engine nest --train-samples 20 --set optimizer.type=adam
    eprop train --engine bellec --train-samples 20 --test-samples 10   Bellec et al.'s time-driven e-prop
    eprop bench nest --train-samples 100
    eprop bench updates --train-samples 100      event-driven vs time-driven e-prop: counts, modelled energy
    eprop sim top --samples 5 --lanes 2            the accelerator's RTL (cocotb, Verilator) vs the fixed engine
    eprop build verilog|report|ecp5|vivado       Verilog, Yosys reports, ECP5 bitstream, Vivado project
    eprop train --engine rtl --train-samples 5     train on the simulated board (Verilated gateware, PYNQ driver)
    eprop train --engine pynq --bitstream eprop_accel.bit   train on a PYNQ board
    eprop presets | eprop engines
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

__all__ = ["main"]


def _config_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--preset", default="nmnist", help="built-in configuration: nmnist (default), sine, tiny")
    p.add_argument("--config", type=Path, help="a TOML config file instead of a preset")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override one config key (repeatable), e.g. --set optimizer.eta=1e-6")
    p.add_argument("--seed", type=int, help="network seed (same as --set network.seed=S)")
    p.add_argument("--data", type=Path, help="a full N-MNIST download (Train/ and Test/, tonic's layout); "
                   "default: the bundled 1,000 + 100 sample subset")


def _load_config(args):
    from golden_model.config import load_config, load_preset  # noqa: PLC0415

    overrides = list(args.overrides)
    if args.seed is not None:
        overrides.append(f"network.seed={args.seed}")
    if args.config is not None:
        return load_config(args.config, overrides)
    return load_preset(args.preset, overrides)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="eprop", description="Event-driven e-prop: golden model, NEST parity, "
                                     "FPGA co-design flow.")
    sub = parser.add_subparsers(dest="command")

    train = sub.add_parser("train", help="train and test a network (default: the N-MNIST main job)")
    _config_arguments(train)
    train.add_argument("--engine", default="golden", help="golden (default), timedriven, fixed, nest, bellec, "
                       "nest-bellec, rtl (simulated board) or pynq (a board); see `eprop engines`")
    train.add_argument("--train-samples", type=int, help="training samples per epoch (default: the config's "
                       "[training], 0 = all)")
    train.add_argument("--test-samples", type=int, help="test samples (default: the config's [training])")
    train.add_argument("--epochs", type=int, help="passes over the training samples")
    train.add_argument("--bitstream", type=Path, help="--engine pynq: the accelerator's .bit (its .hwh beside it)")
    train.add_argument("--lanes", type=int, help="--engine rtl: parallel update lanes of the simulated build "
                       "(default 1)")
    train.add_argument("--out", type=Path, help="output folder (default: runs/<time>-<preset>-<engine>)")
    train.add_argument("--no-progress", action="store_true", help="no progress bar")
    train.add_argument("--no-report", action="store_true", help="skip report.png")

    bench = sub.add_parser("bench", help="benchmarks against a peer, in one run, as ratios")
    bench_sub = bench.add_subparsers(dest="bench")
    bnest = bench_sub.add_parser("nest", help="golden vs NEST 3.10 on the same run: time per sample, identity")
    _config_arguments(bnest)
    bnest.add_argument("--train-samples", type=int, default=100)
    bnest.add_argument("--test-samples", type=int, default=0)
    bnest.add_argument("--repeats", type=int, default=3,
                       help="run the engines alternately this many times each; report the medians (default 3)")
    bnest.add_argument("--out", type=Path, default=Path("runs/bench"))
    bnest.add_argument("--no-progress", action="store_true")

    bfix = bench_sub.add_parser("fixed", help="accuracy of the fixed-point engine vs float golden over widths")
    _config_arguments(bfix)
    bfix.add_argument("--weight-bits", default="12,16,20,24", help="comma-separated weight widths")
    bfix.add_argument("--trace-bits", default="12,16,20", help="comma-separated e_bar / e_bar_reg widths")
    bfix.add_argument("--rounding", default="nearest_even,stochastic", help="weight rounding modes to try")
    bfix.add_argument("--moment-bits", default="", help="with optimizer.type=adam: comma-separated widths of Adam's "
                      "m and sigma = sqrt(v) (default: the config's formats)")
    bfix.add_argument("--epochs", type=int)
    bfix.add_argument("--train-samples", type=int)
    bfix.add_argument("--test-samples", type=int)
    bfix.add_argument("--part", default="xc7z020")
    bfix.add_argument("--out", type=Path, default=Path("runs/bench"))
    bfix.add_argument("--no-progress", action="store_true")

    budget = sub.add_parser("budget", help="memory of the accelerator in block RAMs of a part")
    _config_arguments(budget)
    budget.add_argument("--part", default="xc7z020", help="xc7z020, xck26 or lfe5u-85f")
    budget.add_argument("--lanes", type=int, default=1, help="parallel update lanes (banks the synapse memories)")
    budget.add_argument("--optimizer", choices=["gradient_descent", "adam"], help="override the config's")
    budget.add_argument("--json", type=Path, help="also write the budget as JSON")
    bupd = bench_sub.add_parser("updates", help="event-driven (golden) vs time-driven e-prop on the same run: "
                                "synaptic updates, weight writes, memory traffic, modelled energy, time, accuracy")
    _config_arguments(bupd)
    bupd.add_argument("--train-samples", type=int, default=100)
    bupd.add_argument("--epochs", type=int, default=1, help="passes over the training samples (default 1)")
    bupd.add_argument("--test-samples", type=int, default=100)
    bupd.add_argument("--keep-fractions", default="1,0.5,0.25,0.1", metavar="F,F,...",
                      help="fractions of input events kept, one run of every engine each (default 1,0.5,0.25,0.1)")
    bupd.add_argument("--energy-table", default=None, metavar="NAME|FILE",
                      help="horowitz45 (default), horowitz45-fp64, horowitz45-dram, or a TOML file overriding one")
    bupd.add_argument("--out", type=Path, default=Path("runs/bench"))
    bupd.add_argument("--no-progress", action="store_true")

    simp = sub.add_parser("sim", help="RTL simulation of the accelerator (cocotb on Verilator or Icarus)")
    sim_sub = simp.add_subparsers(dest="sim")
    stop = sim_sub.add_parser("top", help="the accelerator top against the fixed-point engine, bit for bit")
    _config_arguments(stop)
    stop.add_argument("--samples", type=int, default=1, help="training samples streamed (default 1)")
    stop.add_argument("--test-samples", type=int, default=0, help="test samples after them, learning off")
    stop.add_argument("--lanes", type=int, default=1, help="parallel update lanes of the build (default 1)")
    stop.add_argument("--simulator", choices=["verilator", "icarus"], default="verilator")
    stop.add_argument("--scenario", choices=["train", "robustness", "all"], default="train",
                      help="train: weights and counters after every sample; robustness: bad words, stalls, "
                      "back-pressure, mid-sample reset; all: both")
    stop.add_argument("--waves", action="store_true", help="dump waveforms (FST on Verilator, VCD/FST on Icarus)")
    stop.add_argument("--trace-all", action="store_true", help="stream readout values at every step")
    stop.add_argument("--stress", action="store_true", help="train with random input gaps and output back-pressure")
    stop.add_argument("--build-dir", type=Path, default=Path("sim_build"), help="builds are cached here")
    stop.add_argument("--json", type=Path, help="also write the result as JSON")

    from firmware.cli import add_build_parser  # noqa: PLC0415 - eprop build: firmware/cli.py

    add_build_parser(sub, _config_arguments)
    sub.add_parser("presets", help="list the built-in configurations")
    sub.add_parser("engines", help="list the engines")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    try:
        if args.command == "train":
            return _train(args)
        if args.command == "bench":
            if args.bench == "nest":
                return _bench_nest(args)
            if args.bench == "fixed":
                return _bench_fixed(args)
            if args.bench == "updates":
                return _bench_updates(args, argv)
            parser.parse_args(["bench", "--help"])
        if args.command == "budget":
            return _budget(args)
        if args.command == "sim":
            if args.sim == "top":
                return _sim_top(args)
            parser.parse_args(["sim", "--help"])
        if args.command == "build":
            from firmware.cli import run_build  # noqa: PLC0415

            return run_build(args, _load_config, parser)
        if args.command == "presets":
            from golden_model.config import PRESETS, load_preset  # noqa: PLC0415

            for name in PRESETS:
                c = load_preset(name)
                print(f"{name:8s} {c.task.name:9s} n_in={c.network.n_in} n_rec={c.network.n_rec} "
                      f"n_out={c.network.n_out} optimizer={c.optimizer.type}")
            return 0
        if args.command == "engines":
            from .registry import ENGINES  # noqa: PLC0415

            for name, (_, _, what) in ENGINES.items():
                print(f"{name:12s} {what}")
            return 0
    except (ValueError, RuntimeError, OSError) as exc:  # ConfigError and NMNISTError are ValueErrors
        print(f"eprop: error: {exc}", file=sys.stderr)
        return 2
    return 0


def _train(args) -> int:
    from .training import run_training, write_outputs  # noqa: PLC0415

    config = _load_config(args)
    out = args.out or Path("runs") / f"{time.strftime('%Y%m%d-%H%M%S')}-{args.preset}-{args.engine}"
    engine = None
    if args.engine in ("rtl", "pynq") or args.bitstream or args.lanes:
        from .registry import create_engine  # noqa: PLC0415

        options = {"rtl": {"lanes": args.lanes or 1}, "pynq": {"bitstream": args.bitstream}}.get(args.engine)
        if options is None or (args.bitstream and args.engine != "pynq") or (args.lanes and args.engine != "rtl"):
            raise ValueError("--bitstream goes with --engine pynq, --lanes with --engine rtl")
        engine = create_engine(args.engine, config, **options)
    run = run_training(config, args.engine, train_samples=args.train_samples, test_samples=args.test_samples,
                       epochs=args.epochs, data_dir=args.data, progress=not args.no_progress, engine=engine)
    paths = write_outputs(run, out, report=not args.no_report)
    print(_summary(run, paths))
    return 0


def _summary(run, paths) -> str:
    m = run.metrics()
    train, test = m["train"], m["test"]
    per = m["counters_per_training_sample"]

    def acc(x):
        return "n/a" if x is None else f"{x:.3f}"

    lines = [
        f"engine {run.engine} | task {run.task} ({run.dataset}) | {run.epochs} epoch(s) x {run.n_train} training "
        f"samples, {run.n_test} test samples",
        f"train: loss {train['loss']:.5f}, accuracy {acc(train['accuracy'])} (running, while learning)"
        if train["samples"] else "train: none",
        f"test:  loss {test['loss']:.5f}, accuracy {acc(test['accuracy'])}" if test["samples"] else "test: none",
        f"time: {m['wall_time_s']:.1f} s wall ({m['load_time_s']:.1f} s set-up), "
        f"{m['samples_per_s']:.1f} samples/s; recurrent rate {m['recurrent_rate_hz']:.1f} Hz",
    ]
    if per:
        keys = [k for k in ("synaptic_events", "trace_updates", "history_reads", "weight_writes",
                            "mem_synapse_traces_reads") if k in per]
        if keys:
            lines.append("per training sample: " + ", ".join(f"{k} {per[k]:,.0f}" for k in keys))
        energy = m["modelled_energy_per_training_sample"]
        if energy is not None:
            lines.append(f"modelled energy per training sample: {energy['total_pj'] / 1e6:,.3f} uJ "
                         f"(arithmetic {energy['arithmetic_pj'] / 1e6:,.3f}, memory {energy['memory_pj'] / 1e6:,.3f}; "
                         f"table {energy['table']}; modelled, not measured)")
    if "board" in m:
        from .board.engine import format_board  # noqa: PLC0415

        lines.append(format_board(m["board"]))
    lines.append("wrote " + ", ".join(str(p) for p in paths.values()))
    return "\n".join(lines)


def _bench_nest(args) -> int:
    from .bench import bench_nest, format_bench_nest  # noqa: PLC0415

    config = _load_config(args)
    result = bench_nest(config, args.train_samples, args.test_samples, data_dir=args.data, out_dir=args.out,
                        progress=not args.no_progress, repeats=args.repeats)
    print(format_bench_nest(result))
    print(f"wrote {args.out / 'bench_nest.json'}")
    return 0 if result["comparison"]["weights_identical_every_run"] else 1


def _bench_fixed(args) -> int:
    from .bench_fixed import bench_fixed, format_bench_fixed  # noqa: PLC0415

    config = _load_config(args)

    def ints(text):
        return [int(x) for x in text.split(",") if x]

    result = bench_fixed(config, ints(args.weight_bits), ints(args.trace_bits),
                         [r for r in args.rounding.split(",") if r], epochs=args.epochs,
                         train_samples=args.train_samples, test_samples=args.test_samples, part=args.part,
                         out_dir=args.out, progress=not args.no_progress,
                         moment_bits=ints(args.moment_bits) or None)
    print(format_bench_fixed(result))
    print(f"wrote {args.out / 'bench_fixed.json'}, {args.out / 'bench_fixed.png'}")
    return 0


def _sim_top(args) -> int:
    import json  # noqa: PLC0415

    from sim.top import format_result, simulate_top  # noqa: PLC0415

    config = _load_config(args)
    scenarios = ["train", "robustness"] if args.scenario == "all" else [args.scenario]
    results = []
    for scenario in scenarios:
        res = simulate_top(config, scenario=scenario, lanes=args.lanes, train_samples=args.samples,
                           test_samples=args.test_samples, simulator=args.simulator, waves=args.waves,
                           work_dir=args.build_dir, trace_all=args.trace_all, data_dir=args.data,
                           stress=args.stress)
        print(format_result(res, config.task.sequence, config.simulation.resolution))
        results.append(res)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps([r.to_dict() for r in results], indent=2, default=str) + "\n")
    return 0 if all(r.passed for r in results) else 1


def _budget(args) -> int:
    import json  # noqa: PLC0415

    from golden_model.budget import PARTS, fit, format_budget, memory_map, registers_bits  # noqa: PLC0415
    from golden_model.network import build_network  # noqa: PLC0415

    config = _load_config(args)
    if args.part not in PARTS:
        raise ValueError(f"unknown part {args.part!r} (known: {', '.join(PARTS)})")
    network = build_network(config)
    part = PARTS[args.part]
    result = fit(memory_map(config, network, lanes=args.lanes, optimizer=args.optimizer), part)
    result["register_bits"] = registers_bits(config)
    extra = {"neuron state and counters (flip-flops / LUT RAM)": f"{result['register_bits']} bits"}
    if (args.optimizer or config.optimizer.type) != "adam":
        adam = fit(memory_map(config, network, lanes=args.lanes, optimizer="adam"), part)
        result["with_adam"] = {"used": adam["used"], "fits": adam["fits"], "utilisation": adam["utilisation"]}
        extra["with Adam"] = (f"{adam['used']:.1f} {adam['block']} ({100 * adam['utilisation']:.1f} %): "
                              f"{'fits' if adam['fits'] else 'does not fit'} (m and sigma = sqrt(v) per synapse at the "
                              f"[fixed] adam_m / adam_v formats)")
    print(format_budget(result, extra))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0 if result["fits"] else 1


def _bench_updates(args, argv) -> int:
    from .bench_updates import bench_updates, format_bench_updates  # noqa: PLC0415

    try:
        fractions = tuple(float(f) for f in args.keep_fractions.split(","))
    except ValueError:
        raise ValueError(f"--keep-fractions {args.keep_fractions!r}: expected numbers separated by commas") from None
    config = _load_config(args)
    for f in fractions:  # validated as the config would validate them, before any run starts
        config.with_overrides({"task.event_keep_fraction": f})
    result = bench_updates(config, args.train_samples, args.test_samples, fractions, table=args.energy_table,
                           data_dir=args.data, out_dir=args.out, progress=not args.no_progress,
                           command="eprop " + " ".join(argv), epochs=args.epochs)
    print(format_bench_updates(result))
    print(f"wrote {args.out / 'bench_updates.json'}, {args.out / 'bench_updates.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
