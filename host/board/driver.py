"""The accelerator's host driver: registers, DMA transfers and stream words, in pynq's terms.

It takes what a PYNQ overlay provides (see ``pynq_overlay.py``): the accelerator IP (``read(offset)`` /
``write(offset, value)`` of its AXI4-Lite registers: a ``pynq.DefaultIP``), the AXI DMA between the PS's memory and
the accelerator's streams (``sendchannel`` / ``recvchannel``: ``transfer(buffer, start, nbytes)``, ``idle``,
``wait()``, ``transferred``) and ``pynq.allocate``. On the simulated board (``sim/board.py``) the same calls reach
the Verilated gateware, so this file is the code under test either way. Every address, opcode and bit comes from
``golden_model.hw_interface``; this module needs numpy only.

Transfers. The AXI DMA's length register (26 bits unless configured narrower: ``buffer_max_size``) bounds one
transfer, so the input stream goes out in transfers of at most ``max_transfer_bytes`` (each ends with TLAST; the
accelerator reads TLAST on its input as nothing). In simple mode an S2MM transfer ends at TLAST and must be at
least as long as the packet, and the accelerator ends every output step (and every DUMP reply) with TLAST, so
outputs are received one packet per transfer, while the input flows: both channels are serviced in one loop.

Waiting. Nothing waits without a deadline: a stage that makes no progress (no transfer completes and the step
register does not move) for ``timeout_s`` raises :class:`BoardTimeout` naming the stage, the transfers done and
what the status register says.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from golden_model.hw_interface import (CONTRACT_VERSION, COUNTERS, MAGIC, Control, Op, Reg, Region, Status,
                                       StreamBuilder, control_word, sizes_fields)

__all__ = ["AcceleratorDriver", "BoardError", "BoardTimeout", "ContractMismatch", "StreamStats", "describe_status",
           "DMA_MAX_TRANSFER_BYTES"]

#: the AXI DMA's default buffer length register: 26 bits
DMA_MAX_TRANSFER_BYTES = (1 << 26) - 1
REGION_NAMES = {v: k for k, v in vars(Region).items() if not k.startswith("_")}
STATUS_BITS = [(name, bit) for name, bit in vars(Status).items() if not name.startswith("_")]


class BoardError(RuntimeError):
    """The board did something the contract does not allow, or cannot do what is asked."""


class BoardTimeout(BoardError):
    """A stage made no progress within the driver's timeout."""


class ContractMismatch(BoardError):
    """The bitstream implements another hardware contract (or is not this accelerator)."""


def describe_status(value: int) -> str:
    """``0x00000101 (IDLE, BAD_WORD)``: the status register with its bits named (hw_interface.Status)."""
    names = [name for name, bit in STATUS_BITS if value & bit]
    return f"{value:#010x} ({', '.join(names) if names else 'no bit set'})"


@dataclass
class StreamStats:
    """What the transfers cost: wall seconds, bytes and transfers per direction, per stage name."""

    seconds: dict = field(default_factory=dict)
    bytes_in: dict = field(default_factory=dict)
    bytes_out: dict = field(default_factory=dict)
    transfers_in: dict = field(default_factory=dict)
    transfers_out: dict = field(default_factory=dict)

    def add(self, stage: str, seconds: float, bytes_in: int, bytes_out: int, n_in: int, n_out: int) -> None:
        for d, v in ((self.seconds, seconds), (self.bytes_in, bytes_in), (self.bytes_out, bytes_out),
                     (self.transfers_in, n_in), (self.transfers_out, n_out)):
            d[stage] = d.get(stage, 0) + v


class AcceleratorDriver:
    """The accelerator behind `ip` (registers) and `dma` (streams), with buffers from `allocate`.

    ``max_transfer_bytes`` caps one DMA transfer (default: the DMA's ``buffer_max_size``, else 2**26 - 1);
    ``timeout_s`` is how long a stage may make no progress."""

    def __init__(self, ip, dma, allocate, *, max_transfer_bytes: int | None = None, timeout_s: float = 10.0):
        self.ip = ip
        self.dma = dma
        self.allocate = allocate
        limit = int(getattr(dma, "buffer_max_size", DMA_MAX_TRANSFER_BYTES))
        cap = limit if max_transfer_bytes is None else min(limit, int(max_transfer_bytes))
        self.max_transfer_bytes = cap - cap % 4
        if self.max_transfer_bytes < 4:
            raise ValueError(f"max_transfer_bytes = {max_transfer_bytes}: a transfer must hold a 32-bit word")
        self.timeout_s = timeout_s
        self.stats = StreamStats()
        self._bufs: dict[str, object] = {}
        self.control = 0

    # ---- registers --------------------------------------------------------------------------------------------------
    def read(self, reg: int) -> int:
        return int(self.ip.read(reg)) & 0xFFFFFFFF

    def write(self, reg: int, value: int) -> None:
        self.ip.write(reg, int(value) & 0xFFFFFFFF)

    def status(self) -> int:
        return self.read(Reg.STATUS)

    def check_contract(self) -> int:
        """Refuse a bitstream that is not this accelerator or implements another contract version."""
        ident = self.read(Reg.ID)
        if ident & 0xFFFF0000 != MAGIC:
            raise ContractMismatch(f"the IP's ID register reads {ident:#010x}: not the e-prop accelerator "
                                   f"(expected magic {MAGIC:#010x} in the high half)")
        version = ident & 0xFFFF
        if version != CONTRACT_VERSION:
            raise ContractMismatch(f"the bitstream implements hardware contract version {version}, this host "
                                   f"expects version {CONTRACT_VERSION} (golden_model/hw_interface.py): rebuild "
                                   f"the bitstream from this source tree, or run the host of its version")
        return version

    def sizes(self) -> dict[str, int]:
        return sizes_fields(self.read(Reg.SIZES), self.read(Reg.SIZES2))

    def counters(self) -> dict[str, int]:
        """The 64-bit hardware counters (COUNTERS order; reading the low word latches the high word)."""
        out = {}
        for i, name in enumerate(COUNTERS):
            lo = self.read(Reg.COUNTERS + 8 * i)
            hi = self.read(Reg.COUNTERS + 8 * i + 4)
            out[name] = lo | (hi << 32)
        return out

    def saturation_flags(self) -> int:
        return self.read(Reg.SATURATION)

    def set_eta(self, mantissa: int, shift: int) -> None:
        self.write(Reg.ETA_MANTISSA, mantissa)
        self.write(Reg.ETA_SHIFT, shift)

    def set_control(self, run: bool = True, trace_all: bool = False) -> None:
        self.control = (Control.RUN if run else 0) | (Control.TRACE_ALL if trace_all else 0)
        self.write(Reg.CONTROL, self.control)

    def clear_flags(self) -> None:
        """Clear the sticky error and saturation flags (write 1s)."""
        self.write(Reg.STATUS, Status.BAD_WORD | Status.BAD_CHANNEL | Status.OVERFLOW | Status.BAD_LOAD)
        self.write(Reg.SATURATION, 0xFFFFFFFF)

    def soft_reset(self) -> None:
        """Neuron, trace, queue and step state back to rest (weights, group pointers and B stay)."""
        self.write(Reg.CONTROL, self.control | Control.SOFT_RESET)
        self.wait_idle("soft reset")
        if self.read(Reg.STEP_LO) != 0:
            raise BoardError(f"soft reset: the step register reads {self.read(Reg.STEP_LO)}, not 0; status "
                             f"{describe_status(self.status())}")

    def wait_idle(self, stage: str) -> None:
        """Until the accelerator waits for input (between steps), with the driver's timeout on progress."""
        last_step, last_progress = None, time.monotonic()
        while True:
            status = self.status()
            if status & Status.IDLE and not status & Status.BUSY:
                return
            step = self.read(Reg.STEP_LO)
            now = time.monotonic()
            if step != last_step:
                last_step, last_progress = step, now
            elif now - last_progress > self.timeout_s:
                raise BoardTimeout(f"{stage}: the accelerator did not return to idle within {self.timeout_s:g} s "
                                   f"of no progress; {self._state()}")

    def _state(self) -> str:
        """Status, step, control and the last offending word, for error messages (never raises)."""
        try:
            status = self.status()
            text = (f"status {describe_status(status)}, step {self.read(Reg.STEP_LO)}, control "
                    f"{self.read(Reg.CONTROL):#x}, last error word {self.read(Reg.LAST_ERROR):#010x}")
            if not self.read(Reg.CONTROL) & Control.RUN:
                text += "; CONTROL.RUN is off: the accelerator does not consume its input stream"
            elif status & Status.IDLE:
                text += "; the accelerator waits for input words that do not arrive (DMA or link stalled)"
            elif status & Status.BUSY:
                text += "; the accelerator is computing (or blocked on its output stream)"
            return text
        except Exception as exc:  # noqa: BLE001 - a message about a broken board must not hide the first error
            return f"the status register could not be read ({exc})"

    # ---- buffers ----------------------------------------------------------------------------------------------------
    def _buffer(self, name: str, words: int):
        buf = self._bufs.get(name)
        if buf is None or buf.shape[0] < words:
            if buf is not None and hasattr(buf, "freebuffer"):
                buf.freebuffer()
            size = max(1024, 1 << max(0, int(words - 1).bit_length()))
            buf = self.allocate(shape=(size,), dtype=np.uint32)
            self._bufs[name] = buf
        return buf

    def close(self) -> None:
        for buf in self._bufs.values():
            if hasattr(buf, "freebuffer"):
                buf.freebuffer()
        self._bufs.clear()

    # ---- streams ----------------------------------------------------------------------------------------------------
    def stream(self, words, packets: int = 0, packet_words: int = 0, stage: str = "stream") -> np.ndarray:
        """Send `words` to the accelerator and receive `packets` output packets of `packet_words` words each
        (each packet ends with TLAST: one S2MM transfer per packet); returns the received words (uint32)."""
        words = np.asarray(words, dtype=np.uint32)
        n_out_words = packets * packet_words
        if packet_words * 4 > self.max_transfer_bytes:
            raise BoardError(f"{stage}: an output packet of {packet_words * 4} bytes exceeds the DMA's transfer "
                             f"limit of {self.max_transfer_bytes} bytes (the S2MM length register must hold a "
                             f"whole packet)")
        t = time.perf_counter()
        inbuf = self._buffer("in", max(1, words.size))
        inbuf[: words.size] = words
        # one packet at a time lands in a small DMA buffer and is copied out at once (pynq invalidates the whole
        # buffer of each S2MM transfer: a small one keeps that cheap)
        outbuf = self._buffer("out", packet_words) if n_out_words else None
        result = np.zeros(n_out_words, np.uint32)
        send, recv = self.dma.sendchannel, self.dma.recvchannel
        chunk = self.max_transfer_bytes
        n_bytes = 4 * words.size
        chunks = [(off, min(chunk, n_bytes - off)) for off in range(0, n_bytes, chunk)]
        next_chunk = next_packet = 0
        sending = receiving = False
        last_step, last_progress = None, time.monotonic()
        while True:
            progressed = False
            if sending and send.idle:
                send.wait()
                sending, progressed = False, True
            if not sending and next_chunk < len(chunks):
                start, size = chunks[next_chunk]
                send.transfer(inbuf, start, size)
                next_chunk += 1
                sending = progressed = True
            if receiving and recv.idle:
                recv.wait()
                got = int(recv.transferred)
                if got != 4 * packet_words:
                    raise BoardError(f"{stage}: output packet {next_packet - 1} of {packets} carried {got} bytes, "
                                     f"expected {4 * packet_words}; {self._state()}")
                result[packet_words * (next_packet - 1):packet_words * next_packet] = outbuf[:packet_words]
                receiving, progressed = False, True
            if not receiving and next_packet < packets:
                recv.transfer(outbuf, 0, 4 * packet_words)
                next_packet += 1
                receiving = progressed = True
            if not (sending or receiving) and next_chunk == len(chunks) and next_packet == packets:
                break
            now = time.monotonic()
            if progressed:
                last_progress = now
                continue
            if now - last_progress > self.timeout_s:
                step = self.read(Reg.STEP_LO)
                if step != last_step:
                    last_step, last_progress = step, now
                    continue
                raise BoardTimeout(
                    f"{stage}: no progress for {self.timeout_s:g} s: DMA in (MM2S) "
                    f"{next_chunk - sending}/{len(chunks)} transfers complete ({n_bytes} bytes in all), DMA out "
                    f"(S2MM) {next_packet - receiving}/{packets} packets of {4 * packet_words} bytes; "
                    f"{self._state()}")
        self.stats.add(stage, time.perf_counter() - t, n_bytes, 4 * n_out_words, len(chunks), packets)
        return result if n_out_words else np.zeros(0, np.uint32)

    # ---- memories ---------------------------------------------------------------------------------------------------
    def load(self, region: int, address: int, data, stage: str | None = None) -> None:
        """LOAD `data` into `region` from `address`; refuses what the accelerator flags as outside the region."""
        stage = stage or f"load {REGION_NAMES.get(region, region)}"
        self.stream(StreamBuilder.load_words(region, address, data), stage=stage)
        self.wait_idle(stage)
        status = self.status()
        if status & Status.BAD_LOAD:
            raise BoardError(f"{stage}: the accelerator flagged the LOAD of {np.size(data)} words at {address} as "
                             f"outside the region; status {describe_status(status)}")

    def dump(self, region: int, n_words: int, stage: str | None = None) -> np.ndarray:
        """The whole of `region` (`n_words` words), as the accelerator streams it (one packet)."""
        stage = stage or f"dump {REGION_NAMES.get(region, region)}"
        if 4 * n_words > self.max_transfer_bytes:
            raise BoardError(f"{stage}: the region's {4 * n_words} bytes exceed one DMA transfer "
                             f"({self.max_transfer_bytes} bytes) and a DUMP reply is one packet; read the weights "
                             f"through the register window (read_window) instead")
        return self.stream([control_word(Op.DUMP, region << 24)], 1, n_words, stage=stage)

    def region_size(self, region: int = Region.SYNAPSES, address_bits: int = 24) -> int:
        """Words in `region`, found by probing: a one-word LOAD at address a is flagged BAD_LOAD exactly when
        a >= the region's size. Overwrites region words: call before uploading."""
        stage = f"probe {REGION_NAMES.get(region, region)}"

        def fits(address: int) -> bool:
            self.stream(StreamBuilder.load_words(region, address, [0]), stage=stage)
            self.wait_idle(stage)
            bad = bool(self.status() & Status.BAD_LOAD)
            if bad:
                self.write(Reg.STATUS, Status.BAD_LOAD)
            return not bad

        lo, hi = 0, 1 << address_bits  # fits(lo), size <= hi
        if not fits(0):
            raise BoardError(f"{stage}: the region refuses address 0; status {describe_status(self.status())}")
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if fits(mid):
                lo = mid
            else:
                hi = mid
        return hi

    def write_window(self, lane: int, index: int, words) -> None:
        """Write synapse words through the register window (WEIGHT_ADDR, then WEIGHT_DATA auto-increments)."""
        self.write(Reg.WEIGHT_ADDR, (lane << 24) | index)
        for w in np.asarray(words, np.int64):
            self.write(Reg.WEIGHT_DATA, int(w))

    def read_window(self, lane: int, index: int, count: int) -> np.ndarray:
        self.write(Reg.WEIGHT_ADDR, (lane << 24) | index)
        return np.array([self.read(Reg.WEIGHT_DATA) for _ in range(count)], np.uint32)
