"""Operation counters: one set of names and definitions, shared by every engine.

The counters say what a run did in the units a hardware engineer budgets: events, neuron and synapse updates,
optimizer steps, floating-point operations and words moved to and from each memory. Every engine counts where
the work happens (per step, per group walk, per optimizer call; never per innermost loop iteration, so counting
costs nothing measurable) and reports all of :data:`COUNTER_NAMES` (zero where an engine does not do a thing).
The energy model (:mod:`golden_model.energy`) prices the ``*_fp_*`` and ``mem_*`` counters.

A new engine (the fixed-point engine, the board) plugs in the way the golden, time-driven and Bellec engines
do: allocate rows with :func:`new_counter_rows`, add to them with the ``C_*`` indices following the cost sheet
below (adding a bullet for its own schedule, as the Bellec engine's), return :func:`as_dict` from
``counters()``, and check its kernels' layout with :func:`check_compiled_layout`; ``eprop bench updates`` then
compares it like the others. A thing only one engine does gets a counter of its own, appended at the end of
:data:`COUNTERS` (zero in the other engines).

A Numba kernel indexes a per-thread ``int64`` row with the ``C_*`` constants below; Numba freezes them into the
compiled code. Numba's on-disk cache is keyed on the kernel's own source file, not on this one: after changing an
index here, :func:`check_compiled_layout` (called by every engine at load) notices a stale cache and says so.
Counters are therefore only ever appended: a kernel compiled before an append still indexes correctly (the rows
are allocated with the current length) and passes the check.

What is counted (the cost sheet; the engines' kernels cite these rules where they count):

**Network** (identical in every engine that simulates the same network; NEST's arithmetic as transcribed):

* recurrent neuron update (``eprop_iaf::update``), per neuron and step: ``v = P_i i_in + x + alpha v`` 2 mul
  2 add; firing-rate trace ``f = kappa_reg f + (1 - kappa_reg) z / dt`` 2 mul 1 add 1 div; ``FR = c_reg (f -
  f_target)`` 1 mul 1 add; ``i_in = 0 + I_e`` 1 add. Surrogate gradient when not refractory: piecewise_linear
  2 add 1 div 1 mul, exponential 1 add 1 div 1 special 1 mul, fast_sigmoid_derivative 2 add 1 div 1 special
  1 mul, arctan_derivative 2 add 2 div 1 special. On a spike ``v -= v_th z`` 1 mul 1 add. Memory: neuron state
  (v, i_in, f, refractory count, input accumulator) 5 words read, 5 written; one history entry written
  (psi, FR, L = 0: 3 words).
* readout update (``eprop_readout::update``), per readout and step: ``v = P_i i_in + x + kappa v`` 2 mul 2 add,
  ``y = v + E_L`` 1 add, ``err = (y - y*) lambda`` 1 add 1 mul, ``i_in = 0 + I_e`` 1 add; neuron state
  (v, i_in, input accumulator) 3 read, 3 written; one history entry (err: 1 word) written.
* learning signal, per step: the previous step's ``n_out`` errors are read from history (1 word each); if any
  is non-zero, ``L_j += B_jk err_k`` for every (j, k): 1 mul 1 add, 1 feedback word read, 1 history word read
  and written each (``learning_signal_terms``).
* transmission, per delivered event (a spike of multiplicity m is m events, as NEST unrolls it): 2 row-pointer
  words of connectivity, then per outgoing synapse (``synaptic_events``) 1 connectivity word (the target), 1
  weight word read, 1 add into the target's input accumulator (1 neuron-state word read and written). NEST's
  ``weight * multiplicity`` with multiplicity 1 is an identity and not counted.

**Plasticity** (what differs between engines):

* eligibility-trace update (``trace_updates``; the "synaptic update operation" of the event- vs time-driven
  comparison), per synapse and history entry: recurrent target ``e = psi zbar``, ``ebar = kappa ebar + e``,
  ``ebar_reg = kappa_reg ebar_reg + (1 - kappa_reg) e``, ``g = L ebar + FR ebar_reg``, ``grad += g``: 6 mul 4 add,
  3 history words (psi, L, FR) read; where every learning signal of the entry is +0.0 (outside the learning
  window) the ``L ebar`` term is skipped: 5 mul 3 add, 2 history words (the entry's flag word is read once per
  group and entry in an event-driven walk, once per step time-driven).
  Readout target ``grad += err zbar``: 1 mul 1 add, 1 history word. Each is also one ``gradient_terms`` and one
  ``history_reads`` (entries; the words are in ``mem_history_reads``).
* presynaptic trace update (``presynaptic_trace_updates``), per source group (all synapses of one source onto
  one kind of target share ``zbar``) and entry: ``zbar = alpha zbar + z`` 1 mul 1 add.
* event-driven walk (golden; ``compute_gradient_calls``), per synapse: the synapse's traces are loaded once and
  stored once (recurrent target: ebar, ebar_reg 2 words each way; a walk that continues one cut by a NEST flush
  event also reads the partial gradient, a walk cut by one writes it: 1 word); per group 2 connectivity pointer
  words, the group's presynaptic state (zbar, the spike buffer, t_prev) 3 words read and written, and per
  synapse its target (1 connectivity word). Decay beyond the cutoff: 1 (readout) or 3 ``pow`` (special) per
  group, 1 mul per group and 2 per recurrent-target synapse.
* time-driven step (timedriven), per synapse and step: its traces loaded and stored (recurrent target ebar,
  ebar_reg, gradient sum: 3 words each way; readout target: the gradient sum, 1 word), its target (1
  connectivity word); per group and step 2 pointer words and zbar read and written; per source and step its
  spike flag read and cleared; per step the entry's "no learning signal" flag read once. Per delivered copy of a
  spike and group: t_prev read and written, and per synapse the gradient sum read and reset (1 word each way; at
  a synapse's first spike only reset); per spike and source the spike flag set (1 word).
* handing the gradient to the optimizer (``cum += grad``), per synapse: 1 add, 1 optimizer-state word read and
  written.
* optimizer call (``WeightOptimizer::optimized_weight``; ``optimizer_calls``), per synapse. When it optimizes
  (``weight_writes``): 1 weight word read and written; batch_size > 1: 1 div; gradient descent
  ``w - eta G``: 1 mul 1 add; Adam, per iteration (``adam_steps``) and synapse: m 2 mul 2 add, v 3 mul 2 add,
  ``w -= alpha m / (sqrt(v) + eps)`` 1 mul 2 add 1 div 1 special, m and v read and written (2 words each way),
  and per group and iteration (beta powers, alpha): 3 mul 2 add 1 div 1 special.

* Bellec schedule (bellec: NEST's ``_bsshslm_2020`` models, Bellec et al. 2020). The network and plasticity
  differ from the above as follows; I = eprop_update_interval, LW = eprop_learning_window (steps).

  - recurrent neuron update (``eprop_iaf_bsshslm_2020::update``), per neuron and step: ``v = P_i i_in +
    zeta z_in + alpha v`` 3 mul 2 add; ``v -= v_th z`` (z of the previous step, every step) 1 mul 1 add;
    ``i_in = 0 + I_e`` 1 add; the surrogate gradient as above when not refractory; no firing-rate trace. Neuron
    state (v, i_in, z, refractory count, the interval's spike count, input accumulator) 6 words read, 6 written
    (the reset at an interval start writes words written anyway: not counted apart); one history entry
    written (psi, L = 0: 2 words). At an interval's last step, per neuron, the interval regularisation ``FR =
    c_reg (n_spikes / I - f_target dt) / I`` 1 mul 1 add 2 div, 1 history word written (one FR per neuron and
    interval, not a history entry).
  - readout update (``eprop_readout_bsshslm_2020::update``), per readout and step: ``v = P_i i_in + zeta z_in +
    kappa v`` 3 mul 2 add; mean_squared_error: ``y`` = the stored ``V_m + E_L`` of the previous step, this
    step's stored 1 add; cross_entropy: ``norm = norm_in + own`` 1 add, ``y = own / norm`` 1 div, ``own =
    exp(v + E_L)`` 1 add 1 special; ``err = y - y*`` 1 add (the learning window is a branch, no multiply);
    ``i_in = 0 + I_e`` 1 add. Neuron state (v, i_in, the stored signal, input accumulator) 4 words read, 4
    written, cross_entropy one more read (the normaliser input); one history entry (err, 1 word) written.
  - cross-entropy normaliser (``normaliser_terms``), per step: every readout receives the other readouts'
    exp(V_m) of the previous step (NEST's rate events, weight 1.0: that multiply is an identity and not
    counted): n_out (n_out - 1) adds and neuron-state words read, n_out words written.
  - learning signal: as above, from step 3 on (the errors of step t - 1 are stored at readout entry t - 2 and
    go to recurrent entry t - 3).
  - transmission: as above; a spike reaching the recurrent neurons at their interval step 0 is dropped there
    (``dropped_spikes``, in synapse-deliveries; no weight, connectivity or accumulator access; the readouts
    still receive it). A delivery that reaches no synapse at all reads no row pointers.
  - spike record, per step: each source's spike flag of this step written into the interval's ring (n_src
    presynaptic words). Per send (a delivered copy of a spike and a non-empty group, unless dropped): the
    group's record (previous spike, the interval's first spike, the pending interval's end) read and written,
    3 presynaptic words each way.
  - walk (``compute_gradient_calls``), once per update interval for each synapse whose source spiked in it,
    over its target's entries from the source's first spike in the interval to the interval's end; traces
    restart at +0.0 each interval and live in the walk's registers (no trace memory). Per group: the record's
    first spike and interval end (2 presynaptic words), 2 connectivity pointer words, and per synapse its
    target (1 word). Per group and entry: the spike flag (1 presynaptic word), ``zbar = alpha zbar + zeta z``
    2 mul 1 add (``presynaptic_trace_updates``). Recurrent target, per synapse and entry (``trace_updates``,
    ``history_reads``): ``e = psi zbar`` 1 mul, ``ebar = kappa ebar + (1 - kappa) e`` 2 mul 1 add (1 - kappa is
    a constant, as 1 - kappa_reg above), ``sum_e += e`` 1 add, psi read (1 history word); where the entry has
    a learning signal also ``grad += L ebar`` 1 mul 1 add and L read (1 history word; one ``gradient_terms``),
    neither where every L of the entry is +0.0 (skipped, exact); per group and entry the entry's "no learning
    signal" flag (1 history word). Readout target, per synapse and entry: ``grad += err zbar`` 1 mul 1 add, err
    read (1 history word; one trace update, history read and gradient term). Per recurrent synapse and walk,
    the interval regularisation ``grad + FR sum_e`` 1 mul 1 add, FR read (1 history word; a gradient term);
    per synapse, average_gradient ``/ LW`` 1 div, and ``gradient_ += grad`` 1 add, 1 synapse-trace word read and
    written.
  - optimizer, at the synapse's first spike after the interval (``optimizer_calls``): ``cum += gradient_`` 1 add,
    gradient_ read and reset (1 synapse-trace word each way), cum read and written (1 optimizer-state word
    each way); then as the optimizer call above (a weight write when it optimizes: once per interval, or per
    batch of intervals, at most).
  - not counted: how the engine schedules NEST's lazy walks on the CPU (the two batches per interval, the scan
    for pending groups, the walked flag; NEST walks inside ``send``).

Comparisons, clamps, integer index arithmetic and loop control are not counted.

**Implementation detail, not work of the algorithm**: the golden engine advances pending walks that have not
moved for two flush intervals every 256 steps (``memory_flushes``) to bound its history memory on the CPU, and its
crew's helper advances the walks of inputs about to spike. A split walk computes the same entries (they are
counted once, in ``trace_updates`` and friends, whichever call walks them); the split calls' own overhead
(state loads and stores, the partial gradient) is counted only in ``memory_flush_walks`` and never enters the
energy model or the comparison.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["COUNTERS", "COUNTER_NAMES", "N_COUNTERS", "MEMORIES", "Counter", "new_counter_rows", "as_dict",
           "zero_counts", "check_compiled_layout", "per_sample", "HEADLINE"]


@dataclass(frozen=True)
class Counter:
    name: str
    unit: str
    group: str  # network | plasticity | arithmetic | memory | implementation
    definition: str


#: Every counter, in index order. The engines' kernels use the C_* indices below.
COUNTERS: tuple[Counter, ...] = (
    # ---- network --------------------------------------------------------------------------------------------------
    Counter("steps", "steps", "network", "simulated time steps"),
    Counter("recurrent_updates", "neuron-steps", "network", "eprop_iaf updates (neurons x steps)"),
    Counter("readout_updates", "neuron-steps", "network", "eprop_readout updates (readouts x steps)"),
    Counter("recurrent_spikes", "spikes", "network", "spikes of recurrent neurons"),
    Counter("input_events", "events", "network", "events arriving at input neurons (N-MNIST events, ...)"),
    Counter("input_spikes", "deliveries", "network",
            "deliveries of input-neuron spikes, multiplicity unrolled as NEST does"),
    Counter("flush_events", "events", "network", "NEST 3.10 flush events sent by recurrent neurons"),
    Counter("synaptic_events", "synapse-deliveries", "network",
            "(synapse, delivery) pairs transmitted into a target (weight read, one add)"),
    Counter("learning_signal_terms", "terms", "network", "B_jk err_k products added into learning signals"),
    # ---- plasticity -----------------------------------------------------------------------------------------------
    Counter("compute_gradient_calls", "synapse-calls", "plasticity",
            "walks (compute_gradient) per synapse: event-driven at a spike (memory flushes excluded); bellec once "
            "per update interval"),
    Counter("trace_updates", "synapse-entries", "plasticity",
            "eligibility-trace updates: one synapse advanced over one history entry (the synaptic update op)"),
    Counter("gradient_terms", "synapse-entries", "plasticity", "gradient terms g_h added to a gradient sum"),
    Counter("presynaptic_trace_updates", "group-entries", "plasticity",
            "zbar updates, once per source group (shared by its synapses) and entry"),
    Counter("history_writes", "entries", "plasticity", "history entries written (one per neuron and step)"),
    Counter("history_reads", "synapse-entries", "plasticity", "history entries read by synapse updates"),
    Counter("optimizer_calls", "synapse-calls", "plasticity", "WeightOptimizer::optimized_weight calls"),
    Counter("weight_writes", "synapse-writes", "plasticity", "optimizations that wrote a weight"),
    Counter("adam_steps", "synapse-steps", "plasticity", "Adam iterations (catch-up iterations included)"),
    # ---- arithmetic -----------------------------------------------------------------------------------------------
    Counter("network_fp_add", "ops", "arithmetic", "float adds/subtracts of neurons, transmission, learning signal"),
    Counter("network_fp_mul", "ops", "arithmetic", "float multiplies of neurons, transmission, learning signal"),
    Counter("network_fp_div", "ops", "arithmetic", "float divisions of neurons"),
    Counter("network_fp_special", "ops", "arithmetic", "exp / pow of neurons (surrogate gradients)"),
    Counter("plasticity_fp_add", "ops", "arithmetic", "float adds/subtracts of traces, gradients, optimizer"),
    Counter("plasticity_fp_mul", "ops", "arithmetic", "float multiplies of traces, gradients, optimizer"),
    Counter("plasticity_fp_div", "ops", "arithmetic", "float divisions of the optimizer"),
    Counter("plasticity_fp_special", "ops", "arithmetic", "pow / sqrt of cutoff decays and Adam"),
    # ---- memory traffic, in words (one value: a float, an index or a flag) ---------------------------------------
    Counter("mem_weights_reads", "words", "memory", "synaptic weights read (transmission, optimizer)"),
    Counter("mem_weights_writes", "words", "memory", "synaptic weights written (optimizer)"),
    Counter("mem_feedback_reads", "words", "memory", "feedback weights B read (learning signal)"),
    Counter("mem_feedback_writes", "words", "memory", "feedback weights B written (never, B is fixed)"),
    Counter("mem_synapse_traces_reads", "words", "memory", "per-synapse ebar, ebar_reg, gradient sums read"),
    Counter("mem_synapse_traces_writes", "words", "memory", "per-synapse ebar, ebar_reg, gradient sums written"),
    Counter("mem_optimizer_state_reads", "words", "memory", "cumulative gradient, Adam m and v read"),
    Counter("mem_optimizer_state_writes", "words", "memory", "cumulative gradient, Adam m and v written"),
    Counter("mem_presynaptic_traces_reads", "words", "memory", "per-group zbar, spike buffer, t_prev read"),
    Counter("mem_presynaptic_traces_writes", "words", "memory", "per-group zbar, spike buffer, t_prev written"),
    Counter("mem_history_reads", "words", "memory", "history words (psi, L, FR, err, flags) read"),
    Counter("mem_history_writes", "words", "memory", "history words written"),
    Counter("mem_connectivity_reads", "words", "memory", "CSR row pointers and target indices read"),
    Counter("mem_connectivity_writes", "words", "memory", "connectivity written (never)"),
    Counter("mem_neuron_state_reads", "words", "memory", "neuron state and input accumulators read"),
    Counter("mem_neuron_state_writes", "words", "memory", "neuron state and input accumulators written"),
    # ---- implementation detail (not algorithm work; excluded from energy and comparisons) ------------------------
    Counter("memory_flushes", "flushes", "implementation", "golden engine: bit-neutral walk advances (CPU memory)"),
    Counter("memory_flush_walks", "group-walks", "implementation",
            "golden engine: group walks split off by memory flushes (their overhead is counted nowhere else)"),
    # ---- appended after the first release of the table (kernels freeze the indices above; only append) --------
    Counter("dropped_spikes", "synapse-deliveries", "network",
            "bellec: (synapse, delivery) pairs dropped at a recurrent target's interval step 0 (not transmitted)"),
    Counter("normaliser_terms", "terms", "network",
            "bellec, cross-entropy: another readout's exp(V_m) added into a readout's normaliser"),
)

COUNTER_NAMES: tuple[str, ...] = tuple(c.name for c in COUNTERS)
N_COUNTERS = len(COUNTERS)
MEMORIES = ("weights", "feedback", "synapse_traces", "optimizer_state", "presynaptic_traces", "history",
            "connectivity", "neuron_state")
#: the counters the event- vs time-driven comparison leads with
HEADLINE = ("trace_updates", "weight_writes", "history_reads", "mem_synapse_traces_reads", "synaptic_events")

# Indices for the kernels (module-level ints: Numba compiles them in as constants).
(C_STEPS, C_REC_UPDATES, C_OUT_UPDATES, C_REC_SPIKES, C_INPUT_EVENTS, C_INPUT_SPIKES, C_FLUSH_EVENTS,
 C_SYN_EVENTS, C_LS_TERMS,
 C_GRAD_CALLS, C_TRACE_UPDATES, C_GRAD_TERMS, C_PRE_TRACE_UPDATES, C_HIST_WRITES, C_HIST_READS, C_OPT_CALLS,
 C_WEIGHT_WRITES, C_ADAM_STEPS,
 C_NET_ADD, C_NET_MUL, C_NET_DIV, C_NET_SPECIAL, C_PL_ADD, C_PL_MUL, C_PL_DIV, C_PL_SPECIAL,
 C_MEM_W_R, C_MEM_W_W, C_MEM_B_R, C_MEM_B_W, C_MEM_TR_R, C_MEM_TR_W, C_MEM_OPT_R, C_MEM_OPT_W, C_MEM_PRE_R,
 C_MEM_PRE_W, C_MEM_HIST_R, C_MEM_HIST_W, C_MEM_CONN_R, C_MEM_CONN_W, C_MEM_NEURON_R, C_MEM_NEURON_W,
 C_MEMORY_FLUSHES, C_MEMORY_FLUSH_WALKS,
 C_DROPPED_SPIKES, C_NORM_TERMS) = range(46)
assert N_COUNTERS == 46
assert COUNTER_NAMES[C_MEM_W_R] == "mem_weights_reads" and COUNTER_NAMES[C_MEMORY_FLUSH_WALKS] == "memory_flush_walks"
assert COUNTER_NAMES[C_DROPPED_SPIKES] == "dropped_spikes" and COUNTER_NAMES[C_NORM_TERMS] == "normaliser_terms"
assert [f"mem_{m}_{d}" for m in MEMORIES for d in ("reads", "writes")] == \
    list(COUNTER_NAMES[C_MEM_W_R:C_MEM_NEURON_W + 1])

#: what a layout check compares: a few indices spread over the table, and the count (a kernel compiled before
#: counters were appended has a smaller count and is still right)
LAYOUT = (C_STEPS, C_TRACE_UPDATES, C_PL_SPECIAL, C_MEM_HIST_R, C_MEMORY_FLUSH_WALKS, N_COUNTERS)


#: counter rows are padded to whole 64-byte cache lines: two threads adding to their own rows must not share a
#: line (each increment would move it between the cores)
ROW_WIDTH = -(-N_COUNTERS // 8) * 8


def new_counter_rows(n_rows: int) -> np.ndarray:
    """One int64 row per worker thread (kernels add to their thread's row; :func:`as_dict` sums them), each on
    cache lines of its own."""
    return aligned_zeros((n_rows, ROW_WIDTH), np.int64)


def aligned_zeros(shape, dtype) -> np.ndarray:
    """np.zeros whose first element starts a 64-byte cache line."""
    dtype = np.dtype(dtype)
    n = int(np.prod(shape))
    raw = np.zeros(n * dtype.itemsize + 64, np.uint8)
    offset = -raw.ctypes.data % 64
    return raw[offset:offset + n * dtype.itemsize].view(dtype).reshape(shape)


def as_dict(rows: np.ndarray) -> dict[str, int]:
    total = rows.reshape(-1, rows.shape[-1])[:, :N_COUNTERS].sum(axis=0)
    return {name: int(v) for name, v in zip(COUNTER_NAMES, total)}


def zero_counts() -> dict[str, int]:
    return {name: 0 for name in COUNTER_NAMES}


def per_sample(counts: dict[str, int], n_samples: int) -> dict[str, float]:
    return {k: v / n_samples for k, v in counts.items()} if n_samples else {}


def check_compiled_layout(compiled: tuple, module: str) -> None:
    """Raise if a kernel module was compiled (and cached) against another counter layout. Its compiled count may
    be smaller than the current one (counters appended since; the indices it uses are unchanged), not larger."""
    compiled = tuple(int(x) for x in compiled)
    if len(compiled) != len(LAYOUT) or compiled[:-1] != LAYOUT[:-1] or not compiled[-1] <= LAYOUT[-1]:
        raise RuntimeError(f"{module} was compiled with another counter layout than golden_model/counters.py "
                           f"(a stale Numba cache): delete the __pycache__ folders under golden_model/engines")
