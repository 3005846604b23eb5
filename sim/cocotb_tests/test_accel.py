"""cocotb testbench of the accelerator top (eprop_tb: eprop_accel with a timescale; the clock comes from here).

The scoreboard is the fixed-point engine: the testbench streams the schedule the spec asks for (real N-MNIST
samples for the nmnist preset) through AXI4-Stream, and after each run reads every weight back (DUMP) and every
counter (AXI4-Lite) and compares them with the fixed engine's, exactly. Mismatches name the first differing
synapse (source, target, value on both sides) or counter. A JSON report (cycles per sample, matches) is written
next to the results for ``eprop sim``.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import random
import time
from pathlib import Path

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles
from cocotbext.axi import AxiLiteBus, AxiLiteMaster, AxiStreamBus, AxiStreamFrame, AxiStreamSink, AxiStreamSource

from golden_model.config import NetworkConfig
from golden_model.hw_interface import (COUNTERS, Control, Op, Reg, Region, Status, StreamBuilder, control_word,
                                       event_word, lane_layout, synapse_order)
from golden_model.network import Network, build_network
from golden_model.tasks import make_task
from hdl.params import HardwareParams
from golden_model.hw_interface import network_load_words
from sim.model import expected_run, sample_schedule


def _spec():
    data = json.loads(os.environ["EPROP_SIM_SPEC"])
    config = NetworkConfig.from_dict(data["config"], source="eprop sim")
    return config, data


class TB:
    def __init__(self, dut, p: HardwareParams, network: Network):
        self.dut, self.p, self.network = dut, p, network
        # reset from time 0: on Icarus registers are X until the first reset, and the bus models sample them
        dut.rst.setimmediatevalue(1)
        cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())  # 100 MHz; see hdl/build.py SIM_WRAPPER
        for bus in ("s_axi", "s_axis", "m_axis"):  # cocotbext-axi logs every transfer at INFO
            logging.getLogger(f"cocotb.{dut._name}.{bus}").setLevel(logging.WARNING)
        self.axil = AxiLiteMaster(AxiLiteBus.from_prefix(dut, "s_axi"), dut.clk, dut.rst)
        self.source = AxiStreamSource(AxiStreamBus.from_prefix(dut, "s_axis"), dut.clk, dut.rst, byte_size=32)
        self.sink = AxiStreamSink(AxiStreamBus.from_prefix(dut, "m_axis"), dut.clk, dut.rst, byte_size=32)
        self.layout = lane_layout(network, p.lanes)
        self.sources, self.posts = synapse_order(network)

    async def reset(self):
        self.dut.rst.value = 1
        await ClockCycles(self.dut.clk, 5)
        self.dut.rst.value = 0
        await self.wait_idle()

    async def write(self, addr, value):
        await self.axil.write_dword(addr, int(value) & 0xFFFFFFFF)

    async def read(self, addr) -> int:
        return await self.axil.read_dword(addr)

    async def wait_idle(self, poll=64, timeout=200_000_000):
        """Until the core waits for input with nothing left to consume (between steps)."""
        waited = 0
        report = 1_000_000
        while True:
            await ClockCycles(self.dut.clk, poll)
            waited += poll
            if int(self.dut.irq.value) and self.source.idle():
                return
            if waited >= report:
                report += 1_000_000
                self.dut._log.info(f"waiting for idle: {waited} cycles, irq {int(self.dut.irq.value)}, "
                                   f"source queue {self.source.count()}, step {await self.read(Reg.STEP_LO)}")
            if waited > timeout:
                raise TimeoutError("the accelerator did not return to idle")

    async def send(self, words):
        await self.source.send(AxiStreamFrame([int(w) for w in words]))

    async def counters(self) -> dict[str, int]:
        out = {}
        for i, name in enumerate(COUNTERS):
            lo = await self.read(Reg.COUNTERS + 8 * i)
            hi = await self.read(Reg.COUNTERS + 8 * i + 4)
            out[name] = lo | (hi << 32)
        return out

    async def read_words(self, count) -> list[int]:
        words = []
        while len(words) < count:
            frame = await self.sink.read(count - len(words))
            words.extend(int(w) for w in frame)
        return words

    async def drain(self, quiet=200):
        """Discard pending output words (readout values) until the output has been quiet for `quiet` clocks."""
        still = 0
        while still < quiet:
            await ClockCycles(self.dut.clk, 10)
            still = still + 10 if not int(self.dut.m_axis_tvalid.value) else 0
        self.sink.clear()

    async def dump_weights(self) -> np.ndarray:
        await self.send([control_word(Op.DUMP, Region.SYNAPSES << 24)])
        n = self.p.lanes * self.p.syn_depth
        words = await self.read_words(n)
        per_lane = [np.array(words[i * self.p.syn_depth:(i + 1) * self.p.syn_depth], np.int64)
                    for i in range(self.p.lanes)]
        return self.layout.weights_from_words(per_lane, self.p.weight_bits, self.sources.size)

    def first_weight_mismatch(self, got: np.ndarray, want: np.ndarray) -> str | None:
        bad = np.flatnonzero(got != want)
        if bad.size == 0:
            return None
        k = int(bad[0])
        return (f"{bad.size} weights differ; first: synapse {k} (source {self.sources[k]} -> post "
                f"{self.posts[k]}): RTL {got[k]}, fixed {want[k]}")


def _output_count(config, n_samples_started: int, last_step: int, trace_all: bool) -> int:
    """Output words emitted once steps up to `last_step` are done, for samples [0, n_samples_started)."""
    T, LW = config.task.sequence, config.task.learning_window
    n_out = config.network.n_out
    total = 0
    for n in range(n_samples_started):
        first = n * T + 2 + (0 if trace_all else T - LW)
        last = (n + 1) * T + 1
        if last_step >= first:
            total += (min(last, last_step) - first + 1) * n_out
    return total


async def _start(dut, config, data):
    p = HardwareParams.from_config(config, lanes=data["lanes"])
    network = build_network(config)
    tb = TB(dut, p, network)
    await tb.reset()
    if await tb.read(Reg.ID) != (0xE9A0_0000 | 1):
        raise AssertionError("ID register does not carry the contract's magic and version")
    mant, shift = p.fx.eta_constant(config.optimizer.eta)
    await tb.write(Reg.ETA_MANTISSA, mant)
    await tb.write(Reg.ETA_SHIFT, shift)
    await tb.write(Reg.CONTROL, Control.RUN | (Control.TRACE_ALL if data["trace_all"] else 0))
    await tb.send(network_load_words(network, p.fx, p.lanes, p.syn_depth))
    await tb.wait_idle()
    return tb, p, network


@cocotb.test()
async def test_train_matches_fixed_engine(dut):
    """Stream the schedule; after every run, every weight and every counter equal the fixed engine's."""
    config, data = _spec()
    tb, p, network = await _start(dut, config, data)
    task = make_task(config, data.get("data_dir"))
    runs = sample_schedule(task, data["train_samples"], data["test_samples"])
    expected = expected_run(config, network, runs, trace_all=data["trace_all"])
    builder = StreamBuilder(config, data["trace_all"])
    report = {"lanes": p.lanes, "runs": [], "samples": len(runs), "stress": bool(data.get("stress"))}
    if data.get("stress"):
        # seeded, so a failure replays: input words arrive with gaps, the output is read in bursts
        rng = random.Random(1234)
        tb.source.set_pause_generator(rng.random() < 0.3 for _ in itertools.count())
        tb.sink.set_pause_generator(rng.random() < 0.5 for _ in itertools.count())
    n_started = 0
    outputs = []
    t_wall = time.perf_counter()
    for index, (samples, learn) in enumerate(runs):
        before = await tb.counters()
        first_step = builder.timeline.step
        await tb.send(builder.run_words(samples, learn))
        await tb.wait_idle()
        n_started += len(samples)
        after = await tb.counters()
        last_step = builder.timeline.step - 1
        n_expected = _output_count(config, n_started, last_step, data["trace_all"])
        outputs.extend(await tb.read_words(n_expected - len(outputs)))
        cycles = after["cycles_busy"] - before["cycles_busy"]
        entry = {"run": index, "learn": learn, "samples": [s.sample_id for s in samples],
                 "steps": f"{first_step}..{builder.timeline.step - 1}", "busy_cycles": cycles,
                 "cycles_per_sample": cycles / len(samples),
                 "walk_cycles": after["cycles_walk"] - before["cycles_walk"],
                 "walk_issue_cycles": after["walk_issue_cycles"] - before["walk_issue_cycles"],
                 "history_reads": after["history_reads"] - before["history_reads"]}
        if data["check_every_run"]:
            weights = await tb.dump_weights()
            want = expected.after_each_run[index]
            entry["weights_match"] = (mismatch := tb.first_weight_mismatch(weights, want["weights"])) is None
            entry["weight_mismatch"] = mismatch
            bad = {k: (after[k], want["counters"][k]) for k in COUNTERS
                   if k in want["counters"] and after[k] != want["counters"][k]}
            entry["counters_match"] = not bad
            entry["counter_mismatch"] = {k: {"rtl": a, "fixed": b} for k, (a, b) in bad.items()}
            dut._log.info(f"run {index} ({'train' if learn else 'test'} {entry['samples']}): "
                          f"{cycles} busy cycles, weights {'==' if entry['weights_match'] else '!='} fixed, "
                          f"counters {'==' if not bad else bad}")
        report["runs"].append(entry)
        if data["check_every_run"] and not (entry["weights_match"] and entry["counters_match"]):
            # later runs only inherit the difference: stop at the first one, with its details
            Path(os.environ.get("EPROP_SIM_REPORT", "eprop_sim_report.json")).write_text(json.dumps(report, indent=2))
            raise AssertionError(f"run {index}, steps {entry['steps']}: {entry['weight_mismatch'] or ''} "
                                 f"{entry['counter_mismatch'] or ''}".strip())
    await tb.send(builder.finish_words())
    await tb.wait_idle()
    final = await tb.counters()
    _, final_end, _ = builder.timeline.final_block()  # the final update's steps complete the last sample
    n_expected = _output_count(config, n_started, final_end - 1, data["trace_all"])
    outputs.extend(await tb.read_words(n_expected - len(outputs)))
    weights = await tb.dump_weights()
    report["final_weights_match"] = (mismatch := tb.first_weight_mismatch(weights, expected.weight_ints)) is None
    report["final_weight_mismatch"] = mismatch
    bad = {k: {"rtl": final[k], "fixed": expected.counters[k]} for k in COUNTERS
           if k in expected.counters and final[k] != expected.counters[k]}
    report["final_counters_match"] = not bad
    report["final_counter_mismatch"] = bad
    signed = [w - (1 << 32) if w & 0x80000000 else w for w in outputs]
    report["outputs_match"] = signed == expected.outputs
    if not report["outputs_match"]:
        i = next((i for i, (a, b) in enumerate(zip(signed, expected.outputs)) if a != b), min(len(signed),
                                                                                              len(expected.outputs)))
        report["output_mismatch"] = {"index": i, "rtl": signed[i] if i < len(signed) else None,
                                     "fixed": expected.outputs[i] if i < len(expected.outputs) else None}
    saturation = await tb.read(Reg.SATURATION)
    report["saturation_flags"] = {"rtl": saturation, "fixed": expected.saturation_flags}
    report["counters"] = final
    if final["walk_issue_cycles"]:
        report["initiation_interval"] = {
            "walk_cycles": final["cycles_walk"], "walk_issue_cycles": final["walk_issue_cycles"],
            "walk_entries": final["history_reads"], "ii": final["cycles_walk"] / final["walk_issue_cycles"],
            "lane_occupancy": final["history_reads"] / (final["walk_issue_cycles"] * p.lanes)}
    report["wall_seconds"] = time.perf_counter() - t_wall
    Path(os.environ.get("EPROP_SIM_REPORT", "eprop_sim_report.json")).write_text(json.dumps(report, indent=2))
    assert all(r.get("weights_match", True) and r.get("counters_match", True) for r in report["runs"]), report["runs"]
    assert report["final_weights_match"], mismatch
    assert report["final_counters_match"], bad
    assert report["outputs_match"], report.get("output_mismatch")
    assert saturation == expected.saturation_flags, report["saturation_flags"]


@cocotb.test()
async def test_robustness(dut):
    """A malformed word, an out-of-range channel, a stream that stalls for thousands of cycles, output
    back-pressure, and a soft reset in the middle of a sample: each leaves a defined state the status register
    reports, and nothing learned is lost."""
    config, data = _spec()
    tb, p, network = await _start(dut, config, data)
    task = make_task(config, data.get("data_dir"))
    samples = [task.train(i) for i in range(2)]
    runs = [([samples[0]], True), ([samples[1]], True)]
    expected = expected_run(config, network, runs)
    builder = StreamBuilder(config)
    # run 1 with a malformed word and an out-of-range event in the middle, the input stalled in bursts and the
    # output throttled: the bad words are dropped and flagged, nothing else changes
    words = list(builder.run_words(*runs[0]))
    bad_word = 0xF000_1234
    bad_event = event_word(p.n_in + 5)
    words[len(words) // 2:len(words) // 2] = [bad_word, bad_event]
    tb.source.set_pause_generator(itertools.cycle([False] * 200 + [True] * 3000))
    tb.sink.set_pause_generator(itertools.cycle([False, True, True]))
    await tb.send(words)
    await tb.wait_idle()
    tb.source.clear_pause_generator()
    tb.source.pause = False  # clearing the generator leaves its last value
    status = await tb.read(Reg.STATUS)
    assert status & Status.BAD_WORD and status & Status.BAD_CHANNEL, f"status {status:#x}"
    assert status & Status.IDLE
    assert await tb.read(Reg.LAST_ERROR) == bad_event  # the last offending word
    counters = await tb.counters()
    assert counters["cycles_idle"] > 3000, counters["cycles_idle"]
    tb.sink.clear_pause_generator()
    tb.sink.pause = False
    dut._log.info("robustness: bad word and channel flagged, stall counted; draining the output")
    await tb.drain()
    weights = await tb.dump_weights()
    assert tb.first_weight_mismatch(weights, expected.after_each_run[0]["weights"]) is None
    dut._log.info("robustness: run 1 weights equal the fixed engine's; now a soft reset mid-sample")
    await tb.write(Reg.STATUS, Status.BAD_WORD | Status.BAD_CHANNEL)  # write 1 to clear
    assert not (await tb.read(Reg.STATUS) & (Status.BAD_WORD | Status.BAD_CHANNEL))
    # run 2, interrupted half way by a soft reset: the weights learned so far stay, the state restarts
    words = list(builder.run_words(*runs[1]))
    half = words[: len(words) // 2]
    await tb.send(half)
    await tb.wait_idle()
    await tb.drain()
    before_reset = await tb.dump_weights()
    step_before = await tb.read(Reg.STEP_LO)
    await tb.write(Reg.CONTROL, Control.RUN | Control.SOFT_RESET)
    await ClockCycles(tb.dut.clk, 10)
    await tb.wait_idle()
    assert await tb.read(Reg.STEP_LO) == 0 and step_before > 0
    assert await tb.read(Reg.STATUS) & Status.IDLE
    after_reset = await tb.dump_weights()
    assert np.array_equal(before_reset, after_reset), "a soft reset lost learned weights"
    # the network restarts from rest with the learned weights: exactly a fixed engine loaded with them
    learned = network.copy()
    q = p.fx.formats["weight"]
    floats = q.to_float(after_reset)
    for name, mask in (("W_in", learned.mask_in), ("W_rec", learned.mask_rec), ("W_out", learned.mask_out)):
        getattr(learned, name)[:] = 0.0
    sources, posts = synapse_order(network)
    n_in, n_rec = network.n_in, network.n_rec
    for k, (s, t) in enumerate(zip(sources, posts)):
        if s < n_in:
            learned.W_in[t, s] = floats[k]
        elif t < n_rec:
            learned.W_rec[t, s - n_in] = floats[k]
        else:
            learned.W_out[t - n_rec, s - n_in] = floats[k]
    resumed = expected_run(config, learned, [([samples[1]], True)])
    builder2 = StreamBuilder(config)
    await tb.send(builder2.run_words([samples[1]], True))
    await tb.wait_idle()
    await tb.drain()
    weights = await tb.dump_weights()
    assert tb.first_weight_mismatch(weights, resumed.after_each_run[0]["weights"]) is None
    dut._log.info("robustness: bad word, bad channel, stalls, back-pressure and a mid-sample reset all handled")
