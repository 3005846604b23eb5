"""``eprop sim top``: the cocotb suites of the accelerator top on Verilator or Icarus, with a readable verdict.

A scenario is one cocotb test of ``cocotb_tests/test_accel.py`` run on a build of the accelerator for the
config and lanes asked for:

  train       stream real samples (N-MNIST for the nmnist preset), learning on; after every sample every weight
              and every counter equals the fixed-point engine's; then the final update, the readout values and
              the saturation flags;
  robustness  a malformed word, an out-of-range channel, an input stalled for thousands of cycles, output
              back-pressure and a soft reset in the middle of a sample.

The testbench writes a JSON report (cycles per sample, per-run matches, first mismatches); this module turns it
into the summary the command prints and the numbers the README quotes.
"""

from __future__ import annotations

import json
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

from golden_model.config import NetworkConfig

from .runner import SCENARIO_TESTS, SimSpec, run_cocotb

__all__ = ["SimResult", "simulate_top", "format_result", "CLOCK_HZ"]

#: the clock the real-time factor is quoted at
CLOCK_HZ = 100e6


@dataclass
class SimResult:
    scenario: str
    simulator: str
    lanes: int
    passed: bool
    failures: list[str] = field(default_factory=list)
    report: dict = field(default_factory=dict)
    wall_seconds: float = 0.0
    results_xml: str = ""

    def cycles_per_sample(self) -> list[float]:
        return [r["cycles_per_sample"] for r in self.report.get("runs", []) if r.get("learn", True)]

    def to_dict(self) -> dict:
        return {"scenario": self.scenario, "simulator": self.simulator, "lanes": self.lanes, "passed": self.passed,
                "failures": self.failures, "wall_seconds": self.wall_seconds, "report": self.report,
                "results_xml": self.results_xml}


def _verdict(results_xml: Path) -> tuple[int, list[str]]:
    """(tests run, failure messages) from cocotb's JUnit XML."""
    root = ET.parse(results_xml).getroot()
    cases = root.findall(".//testcase")
    failures = []
    for case in cases:
        for tag in ("failure", "error"):
            for node in case.findall(tag):
                failures.append(f"{case.get('name')}: {(node.get('message') or '').strip()}")
    return len(cases), failures


def simulate_top(config: NetworkConfig, *, scenario: str = "train", lanes: int = 1, train_samples: int = 1,
                 test_samples: int = 0, simulator: str = "verilator", waves: bool = False,
                 work_dir: str | Path = "sim_build", trace_all: bool = False,
                 check_every_run: bool = True, data_dir: str | Path | None = None,
                 stress: bool = False) -> SimResult:
    if scenario not in SCENARIO_TESTS:
        raise ValueError(f"unknown scenario {scenario!r} (known: {', '.join(SCENARIO_TESTS)})")
    spec = SimSpec(config, lanes=lanes, train_samples=train_samples, test_samples=test_samples,
                   check_every_run=check_every_run, trace_all=trace_all, scenario=scenario,
                   data_dir=str(data_dir) if data_dir else None, stress=stress)
    t = time.perf_counter()
    xml = run_cocotb(spec, simulator, work_dir, waves)
    wall = time.perf_counter() - t
    n_tests, failures = _verdict(xml)
    if n_tests == 0:
        failures.append(f"no cocotb test ran for scenario {scenario!r} (see {xml})")
    report_path = xml.parent / f"report-{scenario}.json"
    report = json.loads(report_path.read_text()) if report_path.exists() else {}
    return SimResult(scenario, simulator, lanes, not failures, failures, report, wall, str(xml))


def _mismatch_lines(report: dict) -> list[str]:
    lines = []
    for r in report.get("runs", []):
        where = f"run {r['run']} (sample {r['samples']}, steps {r.get('steps', '?')})"
        if r.get("weight_mismatch"):
            lines.append(f"  {where}: {r['weight_mismatch']}")
        for name, v in (r.get("counter_mismatch") or {}).items():
            lines.append(f"  {where}: counter {name}: RTL {v['rtl']}, fixed {v['fixed']}")
        if lines:
            return lines  # the first run that differs is the one to look at
    if report.get("final_weight_mismatch"):
        lines.append(f"  after the final update: {report['final_weight_mismatch']}")
    for name, v in (report.get("final_counter_mismatch") or {}).items():
        lines.append(f"  after the final update: counter {name}: RTL {v['rtl']}, fixed {v['fixed']}")
    if report.get("output_mismatch"):
        o = report["output_mismatch"]
        lines.append(f"  readout output word {o['index']}: RTL {o['rtl']}, fixed {o['fixed']}")
    return lines


def format_result(res: SimResult, sequence_steps: int, resolution_ms: float = 1.0) -> str:
    """What `eprop sim top` prints: verdict, cycles per sample and the real-time factor at 100 MHz."""
    lines = [f"{res.scenario} on {res.simulator}, lanes {res.lanes}: {'PASS' if res.passed else 'FAIL'} "
             f"({res.wall_seconds:.1f} s wall)"]
    cps = res.cycles_per_sample()
    if cps:
        sample_ms = sequence_steps * resolution_ms
        mean = sum(cps) / len(cps)
        compute_ms = mean / CLOCK_HZ * 1e3
        lines.append(f"cycles per training sample: {', '.join(f'{c:,.0f}' for c in cps)} (mean {mean:,.0f}); "
                     f"at {CLOCK_HZ / 1e6:.0f} MHz {compute_ms:.2f} ms per {sample_ms:.0f} ms sample: "
                     f"{sample_ms / compute_ms:.1f}x real time")
    ii = res.report.get("initiation_interval")
    if ii:
        lines.append(f"update pipeline: {ii['walk_entries']:,} synapse-entries walked in {ii['walk_cycles']:,} cycles, "
                     f"{ii['walk_issue_cycles']:,} of them issuing: measured initiation interval {ii['ii']:.3f} "
                     f"clocks per issue, lane occupancy {100 * ii['lane_occupancy']:.1f} %")
    if res.report.get("runs"):
        ok_runs = sum(bool(r.get("weights_match") and r.get("counters_match")) for r in res.report["runs"])
        lines.append(f"weights and counters equal the fixed engine's after {ok_runs} of "
                     f"{len(res.report['runs'])} runs; final update: weights "
                     f"{'==' if res.report.get('final_weights_match') else '!='}, counters "
                     f"{'==' if res.report.get('final_counters_match') else '!='}, readout outputs "
                     f"{'==' if res.report.get('outputs_match') else '!='}")
    if not res.passed:
        lines += _mismatch_lines(res.report)
        lines += [f"  {f.splitlines()[0]}" for f in res.failures]
        lines.append(f"  (cocotb results: {res.results_xml}; simulator log: "
                     f"{Path(res.results_xml).parent / f'sim-{res.scenario}.log'})")
    return "\n".join(lines)
