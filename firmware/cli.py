"""``eprop build {verilog,report,ecp5,vivado}``: the argparse wiring lives here so that ``host/cli.py`` only adds the
subcommand. Nothing heavy is imported until a build runs."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

__all__ = ["add_build_parser", "run_build"]


def add_build_parser(sub, config_arguments) -> None:
    build = sub.add_parser("build", help="Verilog, resource and timing reports, bitstreams (firmware/)")
    kinds = build.add_subparsers(dest="build")

    def common(p, out_help):
        config_arguments(p)
        p.add_argument("--lanes", type=int, default=1, help="parallel update lanes (1, 2, 4; default 1)")
        p.add_argument("--out", type=Path, help=out_help)

    v = kinds.add_parser("verilog", help="eprop_accel.v, the Vivado wrapper with interface attributes, "
                         "package_ip.tcl")
    common(v, "output folder (default build/firmware/<preset>-lanes<N>/verilog)")
    v.add_argument("--vivado-part", default="xc7z020clg400-1", help="part of package_ip.tcl's project")

    r = kinds.add_parser("report", help="Yosys synthesis for a Xilinx part: LUT, FF, BRAM, DSP vs capacity")
    common(r, "output folder (default build/firmware/<preset>-lanes<N>/report-<part>)")
    r.add_argument("--part", default="xc7z020", help="xc7z020 (PYNQ-Z2) or xck26 (KV260, Zynq UltraScale+; "
                   "alias xczu)")
    r.add_argument("--uram", action="store_true", help="let Yosys use UltraRAM for large memories (xck26)")
    r.add_argument("--max-lut", type=float, default=70.0, help="LUT limit in %% of the part (default 70)")
    r.add_argument("--max-bram", type=float, default=90.0, help="BRAM limit in %% of the part (default 90)")
    r.add_argument("--json", type=Path, help="also write the report here")
    r.add_argument("--nice", type=int, default=10, help="niceness of the tools (default 10)")

    e = kinds.add_parser("ecp5", help="yosys -> nextpnr-ecp5 -> ecppack for an LFE5U-85F board (ULX3S, OrangeCrab "
                         "85F): utilisation, routed Fmax, bitstream")
    common(e, "output folder (default build/firmware/<preset>-lanes<N>/ecp5, ecp5-<board> for other boards)")
    e.add_argument("--board", choices=["ulx3s", "orangecrab-85f"], default="ulx3s",
                   help="ulx3s (LFE5U-85F-6, the default) or orangecrab-85f (LFE5U-85F-8: the faster speed grade)")
    e.add_argument("--freq", type=float, default=100.0, help="target clock in MHz (default 100)")
    e.add_argument("--pnr-seed", type=_seeds, default=[1], metavar="SEED[,SEED...]",
                   help="nextpnr placement seed (default 1); several (1,2,3): each is placed and routed and the "
                   "bitstream is made from the one with the highest routed Fmax")
    e.add_argument("--router", choices=["router1", "router2"], default="router2",
                   help="nextpnr router (default router2; router1 routed under 10 %% of the nmnist design in 10 minutes)")
    e.add_argument("--pnr-timeout", type=float, default=60.0,
                   help="stop place and route after this many minutes (default 60; 0: no limit): router2 sometimes "
                   "does not converge on the nearly full nmnist die")
    e.add_argument("--allow-timing-fail", action="store_true", help="pack the bitstream even if timing fails")
    e.add_argument("--json", type=Path, help="also write the report here")
    e.add_argument("--nice", type=int, default=10, help="niceness of the tools (default 10)")

    vv = kinds.add_parser("vivado", help="Vivado batch project for PYNQ-Z2 / KV260: block design, bitstream, .hwh")
    common(vv, "output folder (default build/firmware/<preset>-lanes<N>/vivado-<board>)")
    vv.add_argument("--board", default="pynq-z2", help="pynq-z2 (default) or kv260")
    vv.add_argument("--freq", type=float, default=100.0, help="PL clock in MHz (default 100)")
    vv.add_argument("--jobs", type=int, default=2)
    vv.add_argument("--name", help="base name of the .bit / .hwh (default eprop_<board>)")
    vv.add_argument("--tcl-only", action="store_true", help="write the project files, do not run Vivado")


def _seeds(text: str) -> list[int]:
    try:
        seeds = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"seeds are integers separated by commas, not {text!r}") from None
    if not seeds or len(set(seeds)) != len(seeds):
        raise argparse.ArgumentTypeError(f"give one or more different seeds, not {text!r}")
    return seeds


def _default_out(args, kind: str) -> Path:
    stem = args.config.stem if args.config is not None else args.preset
    return Path("build") / "firmware" / f"{stem}-lanes{args.lanes}" / kind


def run_build(args, load_config, parser=None) -> int:
    if args.build is None:
        if parser is not None:
            parser.parse_args(["build", "--help"])
        return 2
    if args.lanes not in (1, 2, 4, 8, 16):
        raise ValueError(f"--lanes {args.lanes}: the builds take 1, 2, 4 (8, 16) lanes")
    config = load_config(args)
    if args.build == "verilog":
        from .verilog import write_verilog_outputs  # noqa: PLC0415

        out = args.out or _default_out(args, "verilog")
        w = write_verilog_outputs(config, args.lanes, out, part=args.vivado_part)
        print(f"wrote {w['verilog']} ({w['verilog'].stat().st_size / 1e6:.1f} MB), {w['wrapper']}, "
              f"{w['package_ip']}, {w['info']}")
        return 0
    if args.build == "report":
        from .report import format_report, resolve_part, synth_xilinx  # noqa: PLC0415

        part = resolve_part(args.part)
        out = args.out or _default_out(args, f"report-{part}")
        r = synth_xilinx(config, args.lanes, part, out, uram=args.uram, nice=args.nice,
                         limits={"lut": args.max_lut, "bram36": args.max_bram})
        print(format_report(r))
        _also_json(r, args.json)
        print(f"wrote {Path(out) / f'report_{part}.json'}")
        if not r["fits"]:
            print(f"eprop: error: the design does not fit {part} within the limits "
                  f"({', '.join(f'{k} {v:.1f} %' for k, v in r['over_limit'].items())})", file=sys.stderr)
            return 1
        return 0
    if args.build == "ecp5":
        from .ecp5 import build_ecp5, format_ecp5  # noqa: PLC0415

        out = args.out or _default_out(args, "ecp5" if args.board == "ulx3s" else f"ecp5-{args.board}")
        r = build_ecp5(config, args.lanes, out, freq_mhz=args.freq, seed=args.pnr_seed, router=args.router,
                       nice=args.nice, pnr_timeout_min=args.pnr_timeout or None,
                       allow_timing_fail=args.allow_timing_fail, board=args.board)
        print(format_ecp5(r))
        _also_json(r, args.json)
        print(f"wrote {Path(out) / 'report_ecp5.json'}")
        if not r["timing_met"]:
            print("eprop: warning: timing not met; the bitstream was packed because of --allow-timing-fail",
                  file=sys.stderr)
        return 0
    if args.build == "vivado":
        from .vivado import build_vivado  # noqa: PLC0415

        out = args.out or _default_out(args, f"vivado-{args.board}")
        r = build_vivado(config, args.lanes, args.board, out, freq_mhz=args.freq, run=not args.tcl_only,
                         jobs=args.jobs, name=args.name)
        print(f"wrote {r['tcl']}, {r['address_map']}, {r['verilog']}, {r['wrapper']}")
        if r["bit"]:
            print(f"wrote {r['bit']} and {r['hwh']}")
        return 0
    raise ValueError(f"unknown build {args.build!r}")


def _also_json(report: dict, path: Path | None) -> None:
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(report, indent=2, default=str) + "\n")
