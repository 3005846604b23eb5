"""The simulated board: the Verilated accelerator behind the objects the PYNQ driver talks to.

On a board the driver (``host/board/driver.py``) gets a ``DefaultIP`` (``read`` / ``write`` of AXI4-Lite
registers), an AXI DMA (``sendchannel`` / ``recvchannel`` with ``transfer``, ``wait``, ``idle``, ``transferred``;
``buffer_max_size``) and ``pynq.allocate``. :class:`SimBoard` gives it objects with the same methods and the same
checks (a transfer longer than the DMA's length register, an unaligned or busy channel), backed by the real
gateware: ``eprop_accel`` is Verilated together with a small C++ harness (``board_harness.cpp``: the clock, an
AXI4-Lite master and a model of the DMA's two channels) into a shared library loaded with ctypes. Time advances
only inside those calls: a register access runs the clock until its response, polling a channel's ``idle`` runs
it until a transfer completes or ``poll_cycles`` pass, as time passes on a board while its CPU polls.

Builds are cached per hardware (``SimSpec.hardware_key``: config, lanes and the gateware's sources) and harness,
under ``$EPROP_SIM_CACHE`` (default ``~/.cache/eprop-fpga``).
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np

from golden_model.config import NetworkConfig

__all__ = ["SimBoard", "SimBuffer", "SimDMA", "SimDMAChannel", "SimIP", "build_board", "board_cache_dir"]

HARNESS = Path(__file__).with_name("board_harness.cpp")
#: the AXI DMA's default "width of buffer length register" (26 bits): at most 2**26 - 1 bytes per transfer
DMA_LENGTH_BITS = 26


def board_cache_dir() -> Path:
    return Path(os.environ.get("EPROP_SIM_CACHE", Path.home() / ".cache" / "eprop-fpga"))


def _board_key(config: NetworkConfig, lanes: int, contract_version: int | None) -> str:
    from .runner import SimSpec  # noqa: PLC0415

    digest = hashlib.sha1(SimSpec(config, lanes=lanes).hardware_key().encode())
    digest.update(HARNESS.read_bytes())
    if contract_version is not None:
        digest.update(f"contract_version={contract_version}".encode())
    return digest.hexdigest()[:12]


def build_board(config: NetworkConfig, lanes: int = 1, cache_dir: str | Path | None = None,
                log=None, contract_version: int | None = None) -> Path:
    """The simulated board's shared library for `config` and `lanes` (built once, then reused).

    `contract_version` builds gateware whose ID register reports another hardware-contract version (a bitstream
    from another version of this project: what the driver must refuse)."""
    from .runner import _prepare, find_verilator  # noqa: PLC0415

    root = Path(cache_dir) if cache_dir is not None else board_cache_dir()
    target = root / f"board-{_board_key(config, lanes, contract_version)}"
    lib = target / "libeprop_board.so"
    if lib.exists():
        return lib
    from hdl.build import TOP_NAME, write_verilog  # noqa: PLC0415
    from hdl.params import HardwareParams  # noqa: PLC0415

    _prepare("verilator")
    verilator = find_verilator()
    work = target.with_name(target.name + f".tmp{os.getpid()}")
    shutil.rmtree(work, ignore_errors=True)
    t = time.perf_counter()
    params = HardwareParams.from_config(config, lanes=lanes)
    if contract_version is None:
        (verilog,) = write_verilog(params, work / "verilog", wrapper=False)
    else:
        import hdl.top  # noqa: PLC0415

        saved = hdl.top.CONTRACT_VERSION
        hdl.top.CONTRACT_VERSION = contract_version
        try:
            (verilog,) = write_verilog(params, work / "verilog", wrapper=False)
        finally:
            hdl.top.CONTRACT_VERSION = saved
    harness = work / HARNESS.name
    shutil.copy(HARNESS, harness)
    cmd = [str(verilator), "--cc", "--exe", "--build", "-O3", "-Wno-fatal", "-Wno-WIDTH", "--top-module", TOP_NAME,
           "--Mdir", str(work / "obj"), "-CFLAGS", "-fPIC -O2", "-LDFLAGS", "-shared",
           "-o", str(work / lib.name), "--build-jobs", "1", str(verilog), str(harness)]
    if log:
        log(f"building the simulated board (Verilator, {config.source}, {lanes} lane(s)) in {target}")
    proc = subprocess.run(cmd, capture_output=True, text=True, preexec_fn=lambda: os.nice(10))
    if proc.returncode != 0:
        raise RuntimeError(f"building the simulated board failed ({' '.join(cmd[:3])} ...):\n"
                           f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    (work / "built").write_text(f"{time.perf_counter() - t:.1f} s\n")
    shutil.rmtree(work / "obj", ignore_errors=True)
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        work.rename(target)
    except OSError:  # another process built it meanwhile
        shutil.rmtree(work, ignore_errors=True)
    return lib


def _load(lib_path: Path):
    lib = ctypes.CDLL(str(lib_path))
    vp, u64, u32, i32 = ctypes.c_void_p, ctypes.c_uint64, ctypes.c_uint32, ctypes.c_int
    sigs = {
        "board_new": ([], vp), "board_free": ([vp], None), "board_run": ([vp, u64, i32], u64),
        "board_reset": ([vp, u64], None), "board_cycle": ([vp], u64), "board_irq": ([vp], i32),
        "board_write": ([vp, u32, u32, u64], i32), "board_read": ([vp, u32, ctypes.POINTER(u32), u64], i32),
        "board_tx_start": ([vp, vp, u64], None), "board_rx_start": ([vp, vp, u64], None),
        "board_tx_state": ([vp, ctypes.POINTER(u64)], i32),
        "board_rx_state": ([vp, ctypes.POINTER(u64), ctypes.POINTER(i32)], i32),
        "board_tx_stop": ([vp], None), "board_rx_stop": ([vp], None), "board_block_input": ([vp, i32], None),
        "board_tx_pacing": ([vp, u32, u32], None),
        "board_wait_cycles": ([vp, ctypes.POINTER(u64), ctypes.POINTER(u64)], None),
    }
    for name, (args, res) in sigs.items():
        fn = getattr(lib, name)
        fn.argtypes, fn.restype = args, res
    return lib


class SimBuffer(np.ndarray):
    """``pynq.allocate``'s PynqBuffer: an ndarray with a physical address, flush/invalidate and freebuffer."""

    def __array_finalize__(self, obj):
        pass

    @property
    def physical_address(self) -> int:
        return self.ctypes.data

    def flush(self):
        pass

    def invalidate(self):
        pass

    def freebuffer(self):
        pass

    close = freebuffer

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.freebuffer()
        return False


class SimIP:
    """The accelerator's AXI4-Lite registers, as a pynq ``DefaultIP`` (``read`` / ``write``, ``mmio``)."""

    def __init__(self, board: "SimBoard"):
        self._board = board
        self.mmio = self

    def read(self, offset: int = 0) -> int:
        return self._board.register_read(offset)

    def write(self, offset: int, value: int) -> None:
        self._board.register_write(offset, value)


class SimDMAChannel:
    """One channel of the AXI DMA in simple mode, with pynq's ``_SDMAChannel`` interface and checks."""

    def __init__(self, board: "SimBoard", send: bool, max_size: int):
        self._board = board
        self._send = send
        self._max_size = max_size
        self._active_buffer = None
        self._running = True
        self.transferred = 0
        self.transfers = 0

    @property
    def running(self) -> bool:
        return self._running

    @property
    def error(self) -> bool:
        return False

    def _active(self) -> bool:
        return self._board._channel_active(self._send)

    @property
    def idle(self) -> bool:
        """True once the current transfer completed. Reading it lets the board run (up to ``poll_cycles``)."""
        if self._active():
            self._board._advance(self._board.poll_cycles)
        return not self._active()

    def start(self):
        self._running = True

    def stop(self):
        self._board._stop_channel(self._send)
        self._running = False

    def transfer(self, array, start: int = 0, nbytes: int = 0):
        if not self._running:
            raise RuntimeError("DMA channel not started")
        if self._active():
            raise RuntimeError("DMA channel not idle")
        if nbytes == 0:
            nbytes = array.nbytes - start
        if nbytes > self._max_size:
            raise ValueError(f"Transfer size is {nbytes} bytes, which exceeds the maximum DMA buffer size "
                             f"{self._max_size}.")
        if (array.physical_address + start) % 4 or nbytes % 4:
            raise RuntimeError("DMA does not support unaligned transfers; the stream is 32 bits wide: start and "
                               "length must be multiples of 4 bytes")
        if start + nbytes > array.nbytes:
            raise ValueError(f"transfer of {nbytes} bytes from offset {start} runs past the buffer "
                             f"({array.nbytes} bytes)")
        self._active_buffer = array
        self.transferred = 0
        self.transfers += 1
        self._board._start_channel(self._send, array.physical_address + start, nbytes // 4)

    def wait(self):
        if not self._running:
            raise RuntimeError("DMA channel not started")
        limit = self._board.wait_limit_cycles
        ran = 0
        while self._active():
            if ran >= limit:
                raise RuntimeError(f"simulated DMA: the {'MM2S' if self._send else 'S2MM'} transfer did not "
                                   f"complete within {limit} cycles")
            ran += self._board._advance(min(self._board.poll_cycles, limit - ran))
        self.transferred = 4 * self._board._channel_words(self._send)
        self._active_buffer = None


class SimDMA:
    """pynq.lib.dma.DMA: the two channels and the length register's limit."""

    def __init__(self, board: "SimBoard", length_bits: int = DMA_LENGTH_BITS):
        self.buffer_max_size = (1 << length_bits) - 1
        self.sendchannel = SimDMAChannel(board, True, self.buffer_max_size)
        self.recvchannel = SimDMAChannel(board, False, self.buffer_max_size)


class SimBoard:
    """The Verilated accelerator as a board: ``ip`` (registers), ``dma`` (channels), ``allocate`` (buffers).

    ``dma_length_bits`` sets the DMA's length register width (26, the IP's default; smaller in tests);
    ``poll_cycles`` is how far one poll of a channel's ``idle`` lets the board run."""

    def __init__(self, config: NetworkConfig, lanes: int = 1, *, cache_dir=None, dma_length_bits: int = DMA_LENGTH_BITS,
                 poll_cycles: int = 200_000, register_timeout_cycles: int = 100_000_000,
                 wait_limit_cycles: int = 10_000_000_000, clock_hz: float = 100e6, log=None,
                 contract_version: int | None = None):
        self.config = config
        self.lanes = lanes
        self.lib_path = build_board(config, lanes, cache_dir, log=log, contract_version=contract_version)
        self._lib = _load(self.lib_path)
        self._b = self._lib.board_new()
        self.poll_cycles = poll_cycles
        self.register_timeout_cycles = register_timeout_cycles
        self.wait_limit_cycles = wait_limit_cycles
        self.clock_hz = clock_hz
        self._words = {True: ctypes.c_uint64(), False: ctypes.c_uint64()}
        self._last = ctypes.c_int()
        self._reg = ctypes.c_uint32()
        self.register_accesses = 0
        self._lib.board_reset(self._b, 8)
        self.ip = SimIP(self)
        self.dma = SimDMA(self, dma_length_bits)

    # ---- what the driver sees -----------------------------------------------------------------------------------
    def allocate(self, shape, dtype=np.uint32, **_):
        return np.zeros(shape, dtype=dtype).view(SimBuffer)

    def register_read(self, offset: int) -> int:
        self.register_accesses += 1
        if self._lib.board_read(self._b, offset, ctypes.byref(self._reg), self.register_timeout_cycles) != 0:
            raise TimeoutError(f"AXI4-Lite read of register {offset:#x}: no response within "
                               f"{self.register_timeout_cycles} cycles")
        return int(self._reg.value)

    def register_write(self, offset: int, value: int) -> None:
        self.register_accesses += 1
        if self._lib.board_write(self._b, offset, int(value) & 0xFFFFFFFF, self.register_timeout_cycles) != 0:
            raise TimeoutError(f"AXI4-Lite write of register {offset:#x}: no response within "
                               f"{self.register_timeout_cycles} cycles")

    # ---- the board's own controls (faults and time) ---------------------------------------------------------------
    @property
    def cycle(self) -> int:
        return int(self._lib.board_cycle(self._b))

    @property
    def irq(self) -> bool:
        return bool(self._lib.board_irq(self._b))

    def block_input(self, on: bool = True) -> None:
        """A stalled link: the accelerator never sees the DMA's data (its input FIFO or interconnect hangs)."""
        self._lib.board_block_input(self._b, int(on))

    def pace_input(self, burst: int, gap: int) -> None:
        """The MM2S channel offers data `burst` cycles out of every `burst + gap` (0, 0: every cycle)."""
        self._lib.board_tx_pacing(self._b, burst, gap)

    def run_cycles(self, n: int) -> int:
        return int(self._lib.board_run(self._b, n, 0))

    def dma_wait_cycles(self) -> tuple[int, int]:
        """Cycles the MM2S channel held data the accelerator did not take; cycles the S2MM channel was armed and
        received nothing."""
        a, b = ctypes.c_uint64(), ctypes.c_uint64()
        self._lib.board_wait_cycles(self._b, ctypes.byref(a), ctypes.byref(b))
        return int(a.value), int(b.value)

    def close(self) -> None:
        if self._b is not None:
            self._lib.board_free(self._b)
            self._b = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    # ---- channel plumbing -------------------------------------------------------------------------------------------
    def _channel_active(self, send: bool) -> bool:
        if send:
            return bool(self._lib.board_tx_state(self._b, ctypes.byref(self._words[True])))
        return bool(self._lib.board_rx_state(self._b, ctypes.byref(self._words[False]), ctypes.byref(self._last)))

    def _channel_words(self, send: bool) -> int:
        self._channel_active(send)
        return int(self._words[send].value)

    def _start_channel(self, send: bool, address: int, words: int) -> None:
        if send:
            self._lib.board_tx_start(self._b, address, words)
        else:
            self._lib.board_rx_start(self._b, address, words)

    def _stop_channel(self, send: bool) -> None:
        (self._lib.board_tx_stop if send else self._lib.board_rx_stop)(self._b)

    def _advance(self, max_cycles: int) -> int:
        """Run until some active transfer completes, at most `max_cycles`."""
        until = (1 if self._channel_active(True) else 0) | (2 if self._channel_active(False) else 0)
        if not until:
            return 0
        return int(self._lib.board_run(self._b, max_cycles, until))
