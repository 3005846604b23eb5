"""Run the core in Amaranth's own simulator: no Verilog build, for small configs and fast unit tests."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from amaranth.sim import Simulator

from golden_model.hw_interface import (COUNTERS, Op, Region, StreamBuilder, control_word, lane_layout,
                                       network_load_words)
from hdl.core import Core
from hdl.params import HardwareParams

__all__ = ["CoreRun", "simulate_core", "words_to_ints"]


@dataclass
class CoreRun:
    weight_ints: np.ndarray
    counters: dict
    saturation_flags: int
    outputs: list[int]
    cycles: int
    status: dict


def words_to_ints(words) -> list[int]:
    """32-bit output words as signed integers."""
    return [int(w) - (1 << 32) if int(w) & 0x80000000 else int(w) for w in words]


def simulate_core(p: HardwareParams, network, runs, trace_all: bool = False, max_cycles: int = 50_000_000,
                  extra_words: list[int] | None = None) -> CoreRun:
    """Load `network`, stream the runs and the final update, dump the synapses; everything the core reports."""
    core = Core(p)
    config = p.config
    builder = StreamBuilder(config, trace_all)
    words = [network_load_words(network, p.fx, p.lanes, p.syn_depth)]
    for samples, learn in runs:
        words.append(builder.run_words(samples, learn))
    words.append(builder.finish_words())
    if extra_words:
        words.append(np.array(extra_words, np.uint32))
    words.append(np.array([control_word(Op.DUMP, Region.SYNAPSES << 24)], np.uint32))
    stream = np.concatenate(words)
    eta_m, eta_s = p.fx.eta_constant(config.optimizer.eta)
    n_dump = p.lanes * p.syn_depth
    collected: list[tuple[int, int]] = []
    result = {}

    sim = Simulator(core)
    sim.add_clock(1e-8)

    async def feeder(ctx):
        ctx.set(core.run, 1)
        ctx.set(core.trace_all, int(trace_all))
        ctx.set(core.eta_mantissa, eta_m)
        ctx.set(core.eta_shift, eta_s)
        cycles = 0
        for w in stream:
            ctx.set(core.words.payload, int(w))
            ctx.set(core.words.valid, 1)
            while True:
                _, _, ready = await ctx.tick().sample(core.words.ready)
                cycles += 1
                if ready:
                    break
                if cycles > max_cycles:
                    raise TimeoutError(f"the core took more than {max_cycles} cycles")
        ctx.set(core.words.valid, 0)
        # the dump ends with TLAST; wait for it
        while not (len(collected) >= n_dump and collected[-1][1]):
            await ctx.tick()
            cycles += 1
            if cycles > max_cycles:
                raise TimeoutError("the dump did not complete")
        result["cycles"] = cycles
        result["counters"] = {name: ctx.get(core.counters[i]) for i, name in enumerate(COUNTERS)}
        result["saturation"] = ctx.get(core.saturation)
        result["status"] = {k: ctx.get(getattr(core, k)) for k in ("idle", "bad_word", "bad_channel", "overflow",
                                                                    "bad_load")}

    async def collector(ctx):
        ctx.set(core.results.ready, 1)
        async for _, _, valid, data, last in ctx.tick().sample(core.results.valid, core.results.payload.data,
                                                               core.results.payload.last):
            if valid:
                collected.append((int(data), int(last)))

    sim.add_testbench(feeder)
    sim.add_process(collector)
    sim.run()
    dump = [d for d, _ in collected[-n_dump:]]
    values = [d for d, _ in collected[:-n_dump]]
    layout = lane_layout(network, p.lanes)
    per_lane = [np.array(dump[i * p.syn_depth:(i + 1) * p.syn_depth], np.int64) for i in range(p.lanes)]
    weights = layout.weights_from_words(per_lane, p.weight_bits, sum(s.size for s in layout.slots))
    return CoreRun(weights, result["counters"], result["saturation"], words_to_ints(values), result["cycles"],
                   result["status"])
