"""Engines that train on the accelerator through the host driver: ``rtl`` (the simulated board: the Verilated
gateware) and ``pynq`` (a board running a bitstream). Same protocol as every engine (``load`` / ``run`` /
``finish`` / ``weights`` / ``counters``), so ``eprop train`` drives them like the CPU engines.

What the board gives back: the readout values it streams (every step of every sample with ``trace_all``, the
default, else the learning-window steps only; the loss and accuracy only use the window), the weights (a DUMP of
the synapse memory, or the register window when a DUMP would exceed one DMA transfer), B, and the hardware's
counters. It does not stream recurrent spikes: per-sample spike counts and the report's raster are not available,
the ``recurrent_spikes`` counter is.

Per run the engine times the stages: pack (samples -> stream words, host), the stream (DMA in, compute and DMA out
overlap: the accelerator consumes input while it computes and emits readout values), unpack (words -> readout
values, host). The stream's wall time is split by the hardware's cycle counters over the same interval: cycles
computing (``cycles_busy`` minus ``cycles_stalled``) -> compute, cycles blocked on the output stream
(``cycles_stalled``) -> DMA out, cycles taking or waiting for input words (``cycles_idle`` plus one per word) -> DMA
in. The cycle counts at the fabric clock (100 MHz by default) also say how fast the fabric alone would be.
This module needs numpy only (the ``rtl`` engine imports the simulator when it is loaded).
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np

from golden_model.config import NetworkConfig
from golden_model.engines.base import Engine, Trace
from golden_model.hw_contract import QUANTITIES, FixedPoint
from golden_model.hw_interface import (COUNTERS, OPTIMIZER_CODES, Reg, Region, Status, StreamBuilder, lane_layout,
                                       network_load_words, synapse_order)
from golden_model.network import Network
from golden_model.tasks import Sample

from .driver import AcceleratorDriver, BoardError, describe_status

__all__ = ["BoardEngine", "RtlEngine", "PynqEngine", "format_board"]

STAGES = ("pack", "dma_in", "compute", "dma_out", "unpack")
CYCLE_COUNTERS = ("cycles_busy", "cycles_stalled", "cycles_idle")


def _signed(words: np.ndarray, bits: int) -> np.ndarray:
    raw = np.asarray(words, np.int64) & ((1 << bits) - 1)
    return np.where(raw >= 1 << (bits - 1), raw - (1 << bits), raw)


class BoardEngine(Engine):
    """The accelerator as an engine; subclasses say how to reach the board (:meth:`open_board`)."""

    name = "board"
    #: the readout values come back; recurrent spikes do not (the training loop counts them from the counter)
    streams_spikes = False
    #: what the board is, for the report
    board_kind = "board"

    def __init__(self, config: NetworkConfig, *, trace_all: bool = True, timeout_s: float = 10.0,
                 max_transfer_bytes: int | None = None, clock_hz: float = 100e6):
        super().__init__(config)
        self.fx = FixedPoint(config)  # refuses configs the contract cannot hold
        if config.task.name not in ("nmnist", "patterns"):
            raise ValueError(f"config [task] name = {config.task.name!r}: the accelerator takes one-hot "
                             f"classification tasks (targets from SAMPLE labels)")
        if self.fx.cutoff_rec != self.fx.cutoff_out:
            raise ValueError("config: the accelerator walks both kinds of synapse group with one cutoff; "
                             "[recurrent] and [readout] eprop_isi_trace_cutoff must be equal")
        self.trace_all = trace_all
        self.timeout_s = timeout_s
        self.max_transfer_bytes = max_transfer_bytes
        self.clock_hz = clock_hz
        self.builder = StreamBuilder(config, trace_all)
        self.timeline = self.builder.timeline
        self.driver: AcceleratorDriver | None = None
        self.network: Network | None = None
        self._baseline: dict[str, int] = {}
        self._stages = {s: 0.0 for s in STAGES}
        self._cycles = {c: 0 for c in CYCLE_COUNTERS}
        self._words_in = 0
        self._bytes = {"in": 0, "out": 0}
        self._transfers = {"in": 0, "out": 0}
        self._samples = 0
        self._load_s = 0.0

    # ---- the board ------------------------------------------------------------------------------------------------
    def open_board(self):
        """(ip, dma, allocate, description) of the board to use."""
        raise NotImplementedError

    def close_board(self) -> None:
        pass

    # ---- set-up -----------------------------------------------------------------------------------------------------
    def load(self, network: Network) -> None:
        t = time.perf_counter()
        cfg = self.config
        if (network.n_in, network.n_rec, network.n_out) != (cfg.network.n_in, cfg.network.n_rec, cfg.network.n_out):
            raise ValueError("network sizes do not match the config")
        network.check()
        self.network = network.copy()
        ip, dma, allocate, self.description = self.open_board()
        d = self.driver = AcceleratorDriver(ip, dma, allocate, max_transfer_bytes=self.max_transfer_bytes,
                                            timeout_s=self.timeout_s)
        d.check_contract()
        sizes = d.sizes()
        want = {"n_in": network.n_in, "n_rec": network.n_rec, "n_out": network.n_out,
                "history_log2": int(self.fx.history_length).bit_length() - 1,
                # an Adam bitstream reads ETA_SHIFT in other units than a gradient-descent one (eta_constant)
                "optimizer": OPTIMIZER_CODES[self.config.optimizer.type]}
        bad = {k: (sizes[k], v) for k, v in want.items() if sizes[k] != v}
        if bad:
            raise BoardError("the bitstream was built for another network: " + ", ".join(
                f"{k} {got} on the board, {v} in the config" for k, (got, v) in bad.items()))
        self.lanes = sizes["lanes"]
        d.set_control(run=True, trace_all=self.trace_all)
        d.soft_reset()
        d.clear_flags()
        region = d.region_size(Region.SYNAPSES)
        if region % self.lanes:
            raise BoardError(f"the synapse region has {region} words, not a multiple of {self.lanes} lanes")
        self.syn_depth = region // self.lanes
        self.layout = lane_layout(network, self.lanes)
        if self.layout.depth > self.syn_depth:
            raise BoardError(f"the network needs {self.layout.depth} synapse slots on a lane, the bitstream has "
                             f"{self.syn_depth}")
        self.sources, self.posts = synapse_order(network)
        d.stream(network_load_words(network, self.fx, self.lanes, self.syn_depth), stage="upload")
        d.wait_idle("upload")
        d.set_eta(*self.fx.eta_constant(cfg.optimizer.eta))
        self._check_flags("upload")
        self._baseline = d.counters()
        self._load_s = time.perf_counter() - t

    def _check_flags(self, stage: str, samples: Sequence[Sample] = ()) -> None:
        status = self.driver.status()
        bad = status & (Status.BAD_WORD | Status.BAD_CHANNEL | Status.OVERFLOW | Status.BAD_LOAD)
        if bad:
            which = f" (samples {', '.join(s.sample_id for s in samples)})" if samples else ""
            raise BoardError(f"{stage}{which}: the accelerator dropped input: status {describe_status(status)}, "
                             f"last offending word {self.driver.read(Reg.LAST_ERROR):#010x}")

    # ---- running ----------------------------------------------------------------------------------------------------
    def _output_steps(self, t0: int, t1: int) -> np.ndarray:
        """Steps of [t0, t1) for which the accelerator streams readout values."""
        T, LW = self.config.task.sequence, self.config.task.learning_window
        t = np.arange(t0, t1)
        rel = t - 2
        has = (t >= 2) & (rel // T < self.timeline.n_samples)
        if not self.trace_all:
            has &= rel % T >= T - LW
        return t[has]

    def _stream(self, words: np.ndarray, t0: int, t1: int, stage: str, samples=()) -> Trace:
        d = self.driver
        n_out = self.config.network.n_out
        steps = self._output_steps(t0, t1)
        before = self._cycle_counters()
        t = time.perf_counter()
        out = d.stream(words, steps.size, n_out, stage=stage)
        d.wait_idle(stage)
        stream_s = time.perf_counter() - t
        after = self._cycle_counters()
        t = time.perf_counter()
        y = np.zeros((t1 - t0, n_out))
        if steps.size:
            ints = out.view(np.int32).astype(np.int64).reshape(steps.size, n_out)
            y[steps - t0] = self.fx.formats["membrane"].to_float(ints)
        unpack_s = time.perf_counter() - t
        self._account(words.size, steps.size * n_out, stream_s, unpack_s, before, after)
        self._check_flags(stage, samples)
        empty = np.zeros(0, np.int64)
        return Trace(t0, y, empty, empty)

    def run(self, samples: Sequence[Sample], learn: bool) -> Trace:
        if self.driver is None:
            raise RuntimeError("load a network before running")
        t = time.perf_counter()
        t0 = self.timeline.step
        words = self.builder.run_words(samples, learn)  # checks the samples, advances the timeline
        self._stages["pack"] += time.perf_counter() - t
        self._samples += len(samples)
        return self._stream(words, t0, self.timeline.step, "run", samples)

    def finish(self) -> Trace:
        if self.timeline.finished:
            raise RuntimeError("finish() was already called")
        t = time.perf_counter()
        t0, t1, _ = self.timeline.final_block()
        words = self.builder.finish_words()
        self._stages["pack"] += time.perf_counter() - t
        return self._stream(words, t0, t1, "final update")

    def _cycle_counters(self) -> dict[str, int]:
        out = {}
        for name in CYCLE_COUNTERS:
            i = COUNTERS.index(name)
            lo = self.driver.read(Reg.COUNTERS + 8 * i)
            out[name] = lo | (self.driver.read(Reg.COUNTERS + 8 * i + 4) << 32)
        return out

    def _account(self, words_in, words_out, stream_s, unpack_s, before, after) -> None:
        delta = {k: after[k] - before[k] for k in CYCLE_COUNTERS}
        for k, v in delta.items():
            self._cycles[k] += v
        self._words_in += words_in
        compute = delta["cycles_busy"] - delta["cycles_stalled"]
        dma_in = delta["cycles_idle"] + words_in
        dma_out = delta["cycles_stalled"]
        total = compute + dma_in + dma_out
        if total > 0:
            self._stages["compute"] += stream_s * compute / total
            self._stages["dma_in"] += stream_s * dma_in / total
            self._stages["dma_out"] += stream_s * dma_out / total
        else:
            self._stages["dma_in"] += stream_s
        self._stages["unpack"] += unpack_s
        self._bytes["in"] += 4 * words_in
        self._bytes["out"] += 4 * words_out

    # ---- results ----------------------------------------------------------------------------------------------------
    def weight_ints(self, method: str = "dump") -> np.ndarray:
        """The weights as the board stores them, one per synapse in synapse_order (= the fixed engine's order).
        method: "dump" (one DMA packet) or "window" (the WEIGHT_ADDR / WEIGHT_DATA registers)."""
        d, D = self.driver, self.syn_depth
        bits = self.fx.formats["weight"].bits
        if method == "dump" and 4 * self.lanes * D > d.max_transfer_bytes:
            method = "window"
        if method == "dump":
            words = d.dump(Region.SYNAPSES, self.lanes * D)
            per_lane = [words[i * D:(i + 1) * D] for i in range(self.lanes)]
        elif method == "window":
            per_lane = [d.read_window(lane, 0, s.size) for lane, s in enumerate(self.layout.slots)]
        else:
            raise ValueError(f"method {method!r}: dump or window")
        return self.layout.weights_from_words(per_lane, bits, self.sources.size)

    def feedback_ints(self) -> np.ndarray:
        n_rec, n_out = self.config.network.n_rec, self.config.network.n_out
        words = self.driver.dump(Region.FEEDBACK, n_rec * n_out)
        return _signed(words, self.fx.formats["feedback"].bits).reshape(n_rec, n_out)

    def weights(self) -> Network:
        w = self.fx.formats["weight"].to_float(self.weight_ints())
        net = self.network
        n_in, n_rec = net.n_in, net.n_rec
        W_in, W_rec, W_out = np.zeros_like(net.W_in), np.zeros_like(net.W_rec), np.zeros_like(net.W_out)
        s, p = self.sources, self.posts
        from_in = s < n_in
        W_in[p[from_in], s[from_in]] = w[from_in]
        to_rec = ~from_in & (p < n_rec)
        W_rec[p[to_rec], s[to_rec] - n_in] = w[to_rec]
        to_out = ~from_in & (p >= n_rec)
        W_out[p[to_out] - n_rec, s[to_out] - n_in] = w[to_out]
        B = self.fx.formats["feedback"].to_float(self.feedback_ints())
        return Network(W_in=W_in, W_rec=W_rec, W_out=W_out, B=B, mask_in=net.mask_in.copy(),
                       mask_rec=net.mask_rec.copy(), mask_out=net.mask_out.copy(), seed=net.seed)

    def saturation_flags(self) -> int:
        return self.driver.saturation_flags()

    def counters(self) -> dict[str, int]:
        if self.driver is None:
            return {}
        now = self.driver.counters()
        out = {k: now[k] - self._baseline.get(k, 0) for k in COUNTERS}
        flags = self.saturation_flags()
        out.update({f"saturated_{q}": int(bool(flags & (1 << i))) for i, q in enumerate(QUANTITIES)})
        return out

    def run_metrics(self) -> dict:
        """The board's section of metrics.json: what it is, its counters' cycles, the stage breakdown."""
        st, cyc = self._stages, self._cycles
        total_s = sum(st.values())
        fabric_cycles = (cyc["cycles_busy"] + cyc["cycles_idle"] + self._words_in)

        def rate(nbytes, seconds):
            return nbytes / seconds / 1e6 if seconds > 0 else None

        stats = self.driver.stats
        transfers = {d: sum(getattr(stats, f"transfers_{d}").get(s, 0) for s in ("run", "final update"))
                     for d in ("in", "out")}
        stages = {
            "pack": {"seconds": st["pack"], "where": "host: samples -> stream words"},
            "dma_in": {"seconds": st["dma_in"], "bytes": self._bytes["in"], "MB_per_s": rate(self._bytes["in"],
                                                                                            st["dma_in"]),
                       "transfers": transfers["in"],
                       "where": "stream time the accelerator took or waited for input words"},
            "compute": {"seconds": st["compute"], "cycles": cyc["cycles_busy"] - cyc["cycles_stalled"],
                        "where": "stream time the accelerator computed"},
            "dma_out": {"seconds": st["dma_out"], "bytes": self._bytes["out"],
                        "MB_per_s": rate(self._bytes["out"], st["dma_out"]),
                        "transfers": transfers["out"],
                        "where": "stream time the accelerator was blocked on its output"},
            "unpack": {"seconds": st["unpack"], "where": "host: words -> readout values"},
        }
        stream_s = st["dma_in"] + st["compute"] + st["dma_out"]
        return {"board": {
            "engine": self.name,
            "board": self.description,
            "trace_all": self.trace_all,
            "lanes": self.lanes,
            "synapse_slots_per_lane": self.syn_depth,
            "max_transfer_bytes": self.driver.max_transfer_bytes,
            "samples": self._samples,
            "load_s": self._load_s,
            "seconds": total_s,
            "samples_per_s": self._samples / total_s if total_s > 0 else None,
            "stream_MB_per_s": rate(self._bytes["in"] + self._bytes["out"], stream_s),
            "stages": stages,
            "cycles": dict(cyc, words_in=self._words_in),
            "clock_hz": self.clock_hz,
            "fabric_seconds_at_clock": fabric_cycles / self.clock_hz,
            "fabric_samples_per_s_at_clock": (self._samples * self.clock_hz / fabric_cycles
                                              if fabric_cycles else None),
            "saturation_flags": self.saturation_flags(),
        }}

    def close(self) -> None:
        if self.driver is not None:
            self.driver.close()
        self.close_board()


class RtlEngine(BoardEngine):
    """The simulated board: the Verilated gateware behind the driver's calls (sim/board.py)."""

    name = "rtl"
    block_samples = 10

    def __init__(self, config: NetworkConfig, *, lanes: int = 1, dma_length_bits: int = 26, cache_dir=None,
                 timeout_s: float = 60.0, board=None, **options):
        super().__init__(config, timeout_s=timeout_s, **options)
        self.build_lanes = board.lanes if board is not None else lanes
        self.dma_length_bits = dma_length_bits
        self.cache_dir = cache_dir
        self.board = board
        self._own_board = board is None

    def open_board(self):
        if self.board is None:
            from sim.board import SimBoard  # noqa: PLC0415

            self.board = SimBoard(self.config, self.build_lanes, cache_dir=self.cache_dir,
                                  dma_length_bits=self.dma_length_bits, clock_hz=self.clock_hz)
        bits = int(self.board.dma.buffer_max_size).bit_length()
        return (self.board.ip, self.board.dma, self.board.allocate,
                f"simulated board: Verilated eprop_accel ({self.build_lanes} lane(s)) behind a model of the AXI "
                f"DMA ({bits}-bit length register); {self.board.lib_path.parent.name}")

    def close_board(self) -> None:
        if self.board is not None and self._own_board:
            self.board.close()
            self.board = None


class PynqEngine(BoardEngine):
    """A PYNQ board running the accelerator's bitstream (.bit with its .hwh beside it)."""

    name = "pynq"
    block_samples = 10

    def __init__(self, config: NetworkConfig, *, bitstream=None, download: bool = True, **options):
        super().__init__(config, **options)
        if not bitstream:
            raise ValueError("the pynq engine needs --bitstream PATH.bit (with PATH.hwh beside it)")
        self.bitstream = bitstream
        self.download = download
        self.overlay = None

    def open_board(self):
        from .pynq_overlay import EpropOverlay, allocate  # noqa: PLC0415 - needs pynq (on the board)

        self.overlay = EpropOverlay(str(self.bitstream), download=self.download)
        return (self.overlay.accel, self.overlay.dma, allocate,
                f"PYNQ overlay {self.bitstream}: {self.overlay.accel_name} + {self.overlay.dma_name}")


def format_board(board: dict) -> str:
    """The summary lines of a board run (cli's ``eprop train``)."""
    st = board["stages"]

    def mbs(x):
        return "-" if x is None else f"{x:,.2f} MB/s"

    per_sample = board["seconds"] / board["samples"] if board["samples"] else 0.0
    lines = [
        f"board: {board['board']}",
        f"board throughput: {board['samples_per_s'] or 0:,.2f} samples/s ({1e3 * per_sample:,.1f} ms per sample, "
        f"load {board['load_s']:.2f} s); pack {st['pack']['seconds']:.3f} s, DMA in {st['dma_in']['seconds']:.3f} s "
        f"({st['dma_in']['bytes']:,} B, {st['dma_in']['transfers']} transfers, {mbs(st['dma_in']['MB_per_s'])}), "
        f"compute {st['compute']['seconds']:.3f} s, DMA out {st['dma_out']['seconds']:.3f} s "
        f"({st['dma_out']['bytes']:,} B, {st['dma_out']['transfers']} transfers, {mbs(st['dma_out']['MB_per_s'])}), "
        f"unpack {st['unpack']['seconds']:.3f} s",
        f"hardware cycles: busy {board['cycles']['cycles_busy']:,} (stalled on output "
        f"{board['cycles']['cycles_stalled']:,}), idle {board['cycles']['cycles_idle']:,}, input words "
        f"{board['cycles']['words_in']:,}; at {board['clock_hz'] / 1e6:g} MHz the fabric alone: "
        f"{board['fabric_samples_per_s_at_clock'] or 0:,.1f} samples/s; saturation flags "
        f"{board['saturation_flags']:#x}",
    ]
    return "\n".join(lines)
