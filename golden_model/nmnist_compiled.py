"""nmnist.read_binned's compiled pass (apart, so that importing golden_model.nmnist does not import Numba)."""

from __future__ import annotations

import numpy as np
from numba import njit

from .nmnist import EVENT_BYTES, OVERFLOW_INCREMENT_US, OVERFLOW_MARKER_Y, SENSOR_SIZE


@njit(cache=True)
def decode_and_bin(data, channel_of_pixel, sequence, time_max_us):
    """(channels, steps, count) of the events on active pixels, as read_events then bin_events compute them;
    count -1 when read_events or bin_events would refuse the file (a coordinate outside the sensor, only
    overflow markers, a timestamp beyond time_max_us)."""
    n_events = data.size // EVENT_BYTES
    channels = np.empty(n_events, np.int32)
    steps = np.empty(n_events, np.int32)
    overflows = 0
    n = 0
    kept = 0
    for i in range(n_events):
        x = data[EVENT_BYTES * i]
        y = data[EVENT_BYTES * i + 1]
        b2 = data[EVENT_BYTES * i + 2]
        if y == OVERFLOW_MARKER_Y:
            overflows += 1
            continue
        if x >= SENSOR_SIZE or y >= SENSOR_SIZE:
            return channels, steps, -1
        kept += 1
        t_us = ((np.int64(b2) & 0x7F) << 16) | (np.int64(data[EVENT_BYTES * i + 3]) << 8) \
            | np.int64(data[EVENT_BYTES * i + 4])
        t_us += OVERFLOW_INCREMENT_US * overflows
        if t_us > time_max_us:
            return channels, steps, -1
        pixel = np.int64(b2 >> 7) * SENSOR_SIZE * SENSOR_SIZE + np.int64(y) * SENSOR_SIZE + np.int64(x)
        channel = channel_of_pixel[pixel]
        if channel >= 0:
            channels[n] = channel
            # np.around(t_us * float(sequence) / time_max_us): round half to even
            steps[n] = np.int32(np.rint(float(t_us) * float(sequence) / float(time_max_us)))
            n += 1
    if kept == 0:
        return channels, steps, -1
    return channels, steps, n
