"""N-MNIST event files: reading, checking, and binning onto the network's input channels and time steps.

File format (Orchard et al. 2015, the dataset's own reader ``Read_Ndataset.m`` / ``eventvision.py``): 5 bytes per
event, big-endian bit fields::

    byte 0: x (0..33)        byte 1: y (0..33)
    byte 2: bit 7 polarity (1 = ON), bits 6..0 timestamp bits 22..16
    bytes 3, 4: timestamp bits 15..0 (microseconds, 23 bits in all)

An event with ``y == 240`` is a timestamp-overflow marker, not an event: every later timestamp grows by
``2**13`` us (the dataset's reader, copied by tonic). N-MNIST recordings last at most 336,040 us < 2**23 us, so
no N-MNIST file holds one; other recordings in this format can.

Binning (NEST 3.10's example, ``load_image``): input channel = index of pixel
``polarity * 34 * 34 + y * 34 + x`` among the pixels not in NEST's blocklist (1,196 remain), step =
``np.around(t_us * sequence / time_max_us)`` (round half to even) in ``[0, sequence]``. Events of one channel in
the same step stay separate here; the engines deliver them as one spike with multiplicity, as NEST does.

Where NEST's example reader differs: it keeps no overflow markers (a ``y == 240`` row falls outside every
active pixel and is dropped, later timestamps are not shifted; its comment calls the 23-bit mask "22 bit"), and
it neither checks the file length nor the coordinates: a bad coordinate aliases onto another pixel or vanishes.
Here both are errors that name the file, the byte offset and the value.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

__all__ = [
    "NMNISTError",
    "SENSOR_SIZE",
    "N_PIXELS",
    "Recording",
    "read_events",
    "load_blocklist",
    "active_pixels",
    "bin_events",
    "read_binned",
    "bundled_dir",
]

SENSOR_SIZE = 34
N_POLARITIES = 2
N_PIXELS = SENSOR_SIZE * SENSOR_SIZE * N_POLARITIES
EVENT_BYTES = 5
OVERFLOW_MARKER_Y = 240
OVERFLOW_INCREMENT_US = 2**13


class NMNISTError(ValueError):
    """Unusable N-MNIST input; the message names the file (or sample id), where and what."""


@dataclass(frozen=True)
class Recording:
    """Events of one file, overflow markers removed and timestamps corrected."""

    path: Path
    x: np.ndarray  # uint8
    y: np.ndarray  # uint8
    polarity: np.ndarray  # uint8, 1 = ON
    t_us: np.ndarray  # int64


def bundled_dir() -> Path:
    """The N-MNIST subset shipped with the project (1,000 train + 100 test, CC BY-SA 4.0)."""
    return Path(str(resources.files("golden_model.datasets").joinpath("nmnist_small")))


def read_events(path: str | Path) -> Recording:
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise NMNISTError(f"{path}: cannot read ({exc.strerror})") from exc
    if len(raw) == 0:
        raise NMNISTError(f"{path}: empty file (no events)")
    if len(raw) % EVENT_BYTES:
        whole = len(raw) - len(raw) % EVENT_BYTES
        raise NMNISTError(f"{path}: length {len(raw)} bytes is not a multiple of {EVENT_BYTES}; "
                          f"{len(raw) % EVENT_BYTES} trailing bytes from byte offset {whole}")
    data = np.frombuffer(raw, dtype=np.uint8).reshape(-1, EVENT_BYTES)
    x, y = data[:, 0], data[:, 1]
    polarity = data[:, 2] >> 7
    t_us = ((data[:, 2].astype(np.int64) & 0x7F) << 16) | (data[:, 3].astype(np.int64) << 8) | data[:, 4]

    overflow = y == OVERFLOW_MARKER_Y
    if overflow.any():
        # every event after the i-th marker is later by i * 2**13 us
        t_us = t_us + OVERFLOW_INCREMENT_US * np.cumsum(overflow)
    keep = ~overflow
    bad = keep & ((x >= SENSOR_SIZE) | (y >= SENSOR_SIZE))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise NMNISTError(f"{path}: event {i} at byte offset {i * EVENT_BYTES} has x={int(x[i])}, y={int(y[i])}, "
                          f"outside the {SENSOR_SIZE}x{SENSOR_SIZE} sensor")
    if not keep.any():
        raise NMNISTError(f"{path}: holds only timestamp-overflow markers, no events")
    return Recording(path, x[keep].copy(), y[keep].copy(), polarity[keep].astype(np.uint8), t_us[keep])


def load_blocklist(path: str | Path | None = None) -> np.ndarray:
    """NEST's N-MNIST pixel blocklist (pixel indices never or rarely active), as sorted int64."""
    path = Path(path) if path is not None else bundled_dir() / "NMNIST_pixels_blocklist.txt"
    try:
        values = np.loadtxt(path)
    except (OSError, ValueError) as exc:
        raise NMNISTError(f"{path}: cannot read the pixel blocklist ({exc})") from exc
    values = np.atleast_1d(values)
    if np.any(values != np.round(values)) or np.any(values < 0) or np.any(values >= N_PIXELS):
        raise NMNISTError(f"{path}: blocklist entries must be pixel indices in [0, {N_PIXELS})")
    return np.unique(values.astype(np.int64))


def active_pixels(blocklist: np.ndarray) -> np.ndarray:
    """Pixel index of each input channel: all pixels minus the blocklist, ascending (NEST's order)."""
    return np.setdiff1d(np.arange(N_PIXELS, dtype=np.int64), blocklist)


def bin_events(rec: Recording, channel_of_pixel: np.ndarray, sequence: int, time_max_us: int
               ) -> tuple[np.ndarray, np.ndarray]:
    """(channel, step) of every event on an active pixel, in file order.

    `channel_of_pixel` maps a pixel index to its input channel, -1 for blocked pixels.
    """
    if rec.t_us.size and int(rec.t_us.max()) > time_max_us:
        i = int(np.argmax(rec.t_us))
        raise NMNISTError(f"{rec.path}: event {i} has timestamp {int(rec.t_us[i])} us, beyond "
                          f"time_max_us = {time_max_us} that maps a recording onto {sequence} steps")
    pixel = rec.polarity.astype(np.int64) * SENSOR_SIZE * SENSOR_SIZE + rec.y.astype(np.int64) * SENSOR_SIZE \
        + rec.x.astype(np.int64)
    channel = channel_of_pixel[pixel]
    # NEST's example: np.around(times * duration["sequence"] / time_max), with duration a float in ms
    steps = np.around(rec.t_us * float(sequence) / time_max_us).astype(np.int64)
    on = channel >= 0
    return channel[on].astype(np.int32), steps[on].astype(np.int32)


def read_binned(path: str | Path, channel_of_pixel: np.ndarray, sequence: int, time_max_us: int
                ) -> tuple[np.ndarray, np.ndarray]:
    """bin_events(read_events(path), ...) in one compiled pass over the file's bytes: the same (channel, step)
    arrays for a valid file (tests compare both on every bundled file), about a fifth of the time (loading took
    a tenth of the golden engine's time per training sample). A file the pass finds anything wrong with goes
    through read_events and bin_events, which raise the error naming the file, the offset and the value."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError:
        raw = b""
    try:  # Numba is imported only here (a board's driver path is numpy only); without it, the two numpy steps
        from .nmnist_compiled import decode_and_bin
    except ImportError:
        decode_and_bin = None
    if decode_and_bin is None or len(raw) == 0 or len(raw) % EVENT_BYTES:
        return bin_events(read_events(path), channel_of_pixel, sequence, time_max_us)
    channels, steps, n = decode_and_bin(np.frombuffer(raw, np.uint8), channel_of_pixel, sequence, time_max_us)
    if n < 0:
        return bin_events(read_events(path), channel_of_pixel, sequence, time_max_us)
    return channels[:n], steps[:n]

