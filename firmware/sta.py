"""Every failing path of a routed design, not only the worst: static timing over nextpnr's SDF.

nextpnr reports one critical path per clock and a slack histogram. Closing timing on a design whose routed clock is
far from its target needs the whole picture: how many endpoints miss the period, and which register-to-register
classes they belong to (a control register fanning out into a whole lane, a block RAM feeding an address...). The
routed design's delays are in the SDF nextpnr writes (``--sdf``): interconnect delays from each driver pin to each
sink pin, and per cell the combinational arcs, clock-to-output arcs and setup checks. This module reads them into a
pin graph, computes each pin's latest arrival from any register launch (one clock, all registers on the same edge:
the accelerator's single-clock design), and for each setup endpoint its slack against the period, with the launch
register its worst path starts at. Endpoints are then grouped by (launching register, capturing register), named
after the signals Yosys named the cells by, with bit and bank indices folded.

Checked against nextpnr: the worst slack equals nextpnr's critical path delay minus the period (tests).
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass, field

__all__ = ["TimingGraph", "parse_sdf", "analyse", "signal_class", "format_classes"]

_DELAY = r"\(([-\d.]*):([-\d.]*):([-\d.]*)\)"
_INTERCONNECT = re.compile(r"\(INTERCONNECT (\S+) (\S+) " + _DELAY + " " + _DELAY + r"\)")
_IOPATH = re.compile(r"\(IOPATH (\S+) (\S+) " + _DELAY + " " + _DELAY + r"\)")
_SETUP = re.compile(r"\(SETUPHOLD \(posedge (\S+?)\) \((?:posedge|negedge) (\S+?)\) " + _DELAY + " " + _DELAY + r"\)")
_INSTANCE = re.compile(r"\(INSTANCE ([^)]*)\)")


def _unescape(name: str) -> str:
    return re.sub(r"\\(.)", r"\1", name)


def _ns(fields: tuple[str, ...]) -> float:
    """The max of an SDF (min:typ:max) triple in ps, as ns ('' counts as 0)."""
    return float(fields[2] or 0) / 1000


@dataclass
class TimingGraph:
    """Pins are "cell/port". ``edges``: pin -> [(pin, delay ns)] (interconnect and combinational arcs);
    ``launch``: register output pin -> clock-to-output (ns); ``setup``: register input pin -> setup time (ns)."""

    edges: dict[str, list[tuple[str, float]]] = field(default_factory=lambda: defaultdict(list))
    launch: dict[str, float] = field(default_factory=dict)
    setup: dict[str, float] = field(default_factory=dict)


def parse_sdf(text: str) -> TimingGraph:
    """nextpnr's SDF (``common/kernel/sdf.cc``'s layout: the design's interconnect as one CELL, then one CELL per
    placed cell). Clock pins are the clock ends of setup checks (or CLK*/WCK): arcs from them launch; interconnect
    into them (the clock network) is left out."""
    g = TimingGraph()
    cells = re.split(r"\n\s*\(CELL\s*\n", text)
    clock_pins = set()
    for cell in cells[2:]:
        inst = _INSTANCE.search(cell)
        if not inst:
            continue
        name = _unescape(inst.group(1))
        clocks = {_unescape(c) for _, c, *_ in _SETUP.findall(cell)}
        for a, b, *d in _IOPATH.findall(cell):
            a, b = _unescape(a), _unescape(b)
            delay = max(_ns(d[:3]), _ns(d[3:]))
            if a in clocks or re.fullmatch(r"CLK[AB]?\d?|WCK", a):
                pin = f"{name}/{b}"
                g.launch[pin] = max(g.launch.get(pin, 0.0), delay)
                clock_pins.add(f"{name}/{a}")
            else:
                g.edges[f"{name}/{a}"].append((f"{name}/{b}", delay))
        for port, clock, *d in _SETUP.findall(cell):
            pin = f"{name}/{_unescape(port)}"
            g.setup[pin] = max(g.setup.get(pin, 0.0), _ns(d[:3]))
            clock_pins.add(f"{name}/{_unescape(clock)}")
    for a, b, *d in _INTERCONNECT.findall(cells[1] if len(cells) > 1 else text):
        a, b = _unescape(a), _unescape(b)
        if b in clock_pins:
            continue
        g.edges[a].append((b, max(_ns(d[:3]), _ns(d[3:]))))
    return g


def _arrivals(g: TimingGraph) -> tuple[dict[str, float], dict[str, str]]:
    """Latest arrival at each pin reachable from a launch, and the launch pin of that latest path."""
    indeg: dict[str, int] = defaultdict(int)
    for sinks in g.edges.values():
        for b, _ in sinks:
            indeg[b] += 1
    arrival: dict[str, float] = dict(g.launch)
    origin: dict[str, str] = {p: p for p in g.launch}
    pins = set(g.edges) | set(indeg) | set(g.launch)
    ready = [p for p in pins if indeg[p] == 0]
    seen = 0
    while ready:
        a = ready.pop()
        seen += 1
        for b, d in g.edges.get(a, ()):
            if a in arrival and arrival[a] + d > arrival.get(b, float("-inf")):
                arrival[b] = arrival[a] + d
                origin[b] = origin[a]
            indeg[b] -= 1
            if indeg[b] == 0:
                ready.append(b)
    if seen < len(pins):
        raise ValueError(f"combinational loop: {len(pins) - seen} pins on cycles")
    return arrival, origin


def signal_class(pin: str) -> str:
    """A launch or capture pin as the signal its cell was named after, indices folded: Yosys names a flip-flop
    ``<signal>_TRELLIS_FF_Q_<n>``, a LUT RAM ``<memory>.0.<n>$DPRAM...``, a block RAM ``<memory>.0.<n>``; banks
    (``_b2s3``) and numbered copies fold into one class."""
    cell = pin.rsplit("/", 1)[0]
    cell = re.sub(r"^core\.core\.", "", cell)
    cell = re.sub(r"_(TRELLIS_FF|TRELLIS_COMB|TRELLIS_RAMW|DP16KD|MULT18X18D)\w*$", "", cell)
    cell = re.sub(r"_b\d+(s\d+)?\.0\.\d+\w*$", " (block RAM banks)", cell)
    cell = re.sub(r"\.0\.\d+(\$\w+)?$", " (RAM)", cell)
    cell = re.sub(r"\[\d+\]", "", cell)
    cell = re.sub(r"\$\d+$", "", cell)
    return cell


def analyse(g: TimingGraph, period_ns: float, classes: int = 30) -> dict:
    """Slack of every setup endpoint against `period_ns`: counts, a coarse histogram, and the failing endpoints
    grouped by (launch signal, capture signal), worst first."""
    arrival, origin = _arrivals(g)
    slacks = []
    groups: dict[tuple[str, str], list[float]] = defaultdict(list)
    for pin, setup in g.setup.items():
        if pin not in arrival:
            continue  # driven by constants or inputs only
        slack = period_ns - setup - arrival[pin]
        slacks.append(slack)
        if slack < 0:
            groups[(signal_class(origin[pin]), signal_class(pin))].append(slack)
    worst = min(slacks) if slacks else 0.0
    rows = sorted(groups.items(), key=lambda kv: min(kv[1]))
    return {
        "period_ns": period_ns,
        "endpoints": len(slacks),
        "failing_endpoints": sum(1 for s in slacks if s < 0),
        "worst_slack_ns": round(worst, 3),
        "failing_by_slack_ns": {f"< {lim:g}": sum(1 for s in slacks if s < lim) for lim in (-6, -4, -2, -1, 0)},
        "failing_classes": len(groups),
        "classes": [{"from": a, "to": b, "endpoints": len(s), "worst_slack_ns": round(min(s), 3)}
                    for (a, b), s in rows[:classes]],
    }


def format_classes(t: dict, n: int = 10) -> list[str]:
    lines = [f"endpoints missing {t['period_ns']:g} ns: {t['failing_endpoints']} of {t['endpoints']} (worst slack "
             f"{t['worst_slack_ns']:.2f} ns; " + ", ".join(f"{k} ns: {v}" for k, v in t["failing_by_slack_ns"].items())
             + f"), in {t['failing_classes']} launch -> capture classes, the worst:"]
    for c in t["classes"][:n]:
        lines.append(f"  {c['worst_slack_ns']:7.2f} ns {c['endpoints']:5d} endpoints  {c['from']} -> {c['to']}")
    return lines
