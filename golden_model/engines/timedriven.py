"""The time-driven engine: the golden engine's e-prop, with every synapse's traces advanced at every step.

It is the baseline of the event-driven vs time-driven comparison (``eprop bench updates``): same network, same
neurons (the golden engine's own kernels), same delivery order, same optimizer calls at the same presynaptic
spikes; only the schedule of the synapse work differs. The event-driven engine walks a synapse's target history
when a spike arrives (silent sources cost nothing; a cutoff bounds the walk); this one updates every synapse at
every step, the form in which e-prop is usually written (Bellec et al. 2020) and which spec section 5 states as
the equivalent of NEST's algorithm without cutoff.

What it supports, and why not more:

* ``optimize_each_step = false`` only (NEST's N-MNIST and sine examples' setting). With ``true`` NEST applies one
  optimizer step per history entry, but lazily, at the next spike, with the learning rate in force then; a
  time-driven engine would need every synapse's per-step gradients since its last spike to reproduce that, which
  is the event-driven engine's history under another name. The engine refuses it rather than compute something
  else.
* ``eprop_isi_trace_cutoff`` is not applied (there is no cutoff in time-driven e-prop): with a finite cutoff
  the results differ from the golden engine's by what the cutoff drops (tests/test_timedriven.py says exactly
  how). NEST's flush events change nothing without a cutoff and are ignored by the synapses.

With ``eprop_isi_trace_cutoff = inf`` its weights, spikes and readout signals equal the golden engine's (and so
NEST's) to the last bit.
"""

from __future__ import annotations

import numba
import numpy as np

from .. import counters as CT
from ..config import ConfigError, NetworkConfig
from ..network import Network
from . import timedriven_kernels as TK
from .base import Trace
from .golden import GoldenEngine

__all__ = ["TimeDrivenEngine"]


class TimeDrivenEngine(GoldenEngine):
    """Shares the golden engine's state layout, parameters, neuron kernels and optimizer; replaces the
    event-driven walks by a per-step update of every synapse (timedriven_kernels)."""

    name = "timedriven"
    MEMORY_FLUSH_EVERY = 0  # no walks to advance: the traces are always current

    def __init__(self, config: NetworkConfig):
        if config.optimizer.optimize_each_step:
            raise ConfigError("config [optimizer] optimize_each_step = True: the timedriven engine applies the "
                              "optimizer at presynaptic spikes, as NEST does with optimize_each_step = false; use "
                              "that, or the golden engine")
        super().__init__(config)

    def load(self, network: Network) -> None:
        super().load(network)
        CT.check_compiled_layout(TK.compiled_counter_layout(), TK.__name__)
        self.hist = self._new_history(TK.HISTORY_DEPTH)
        n_src = network.n_in + network.n_rec
        self.spiked = np.zeros((TK.HISTORY_DEPTH, n_src), np.uint8)
        grp_ptr = self.table.grp_ptr
        sizes = np.diff(grp_ptr)
        rec_sizes, out_sizes = sizes[0::2], sizes[1::2]
        self.tally = np.zeros(5, np.int64)
        self.tally[TK.T_REC_SYN] = rec_sizes.sum()
        self.tally[TK.T_OUT_SYN] = out_sizes.sum()
        self.tally[TK.T_REC_GRP] = np.count_nonzero(rec_sizes)
        self.tally[TK.T_OUT_GRP] = np.count_nonzero(out_sizes)
        self.tally[TK.T_SOURCES] = np.count_nonzero(rec_sizes + out_sizes)
        self.chunk_ptr = _balanced_chunks(self.table.src_ptr, 4 * numba.config.NUMBA_NUM_THREADS)

    def _ensure_history(self, b0: int, b1: int) -> None:
        """Nothing to keep: an entry is used two steps after it is written, then never again."""

    def _simulate(self, t0, t1, ev_step, ev_chan, target, window, force_step) -> Trace:
        n_steps = t1 - t0
        y = np.zeros((n_steps, self.network.n_out))
        raster = np.zeros((n_steps, self.network.n_rec), np.uint8)
        ev_pos = np.zeros(1, np.int64)
        h = self.hist
        # NB: under the OpenMP threading layer (numba 0.68) each thread still gets one equal contiguous part of a
        # parallel loop whatever the chunk size (measured; golden_kernels splits its work itself, see split_work)
        numba.set_parallel_chunksize(1)  # chunks are pre-balanced; spiking sources differ a lot in work
        TK.simulate(t0, t1, self.fp, self.ip, self.table.grp_ptr, self.syn, self.table.post, self.syn_target,
                    self.grp_f, self.grp_i, self.delivery_order, self.rec_f, self.rec_i, self.out_f,
                    h["psi"], h["ls"], h["fr"], h["err"], h["ls_zero"], self.B_T, self.mult, self.flush_flag,
                    self.x_in, np.ascontiguousarray(ev_step, np.int64), np.ascontiguousarray(ev_chan, np.int64),
                    ev_pos, target, window, force_step, y, raster, self._counters, self.spk_src, self.spk_mult,
                    self.spk_flush, self.spiked, self.chunk_ptr, self.tally)
        steps, neurons = np.nonzero(raster)
        return Trace(t0, y, steps.astype(np.int64) + t0, neurons.astype(np.int64))


def _balanced_chunks(src_ptr: np.ndarray, n_chunks: int) -> np.ndarray:
    """Source boundaries splitting the synapses into about n_chunks runs of equal length (one per parallel task)."""
    n_src = src_ptr.size - 1
    total = int(src_ptr[-1])
    if total == 0 or n_src == 0:
        return np.array([0, n_src], np.int64)
    cuts = np.searchsorted(src_ptr, np.linspace(0, total, n_chunks + 1)[1:-1], side="left")
    return np.unique(np.concatenate([[0], cuts, [n_src]])).astype(np.int64)
