"""The accelerator's interface, defined once: register map, stream words, memory regions, lane layout.

The gateware (``hdl/``), the cocotb testbenches and simulated board (``sim/``) and the PYNQ driver (``host/``) all
take their addresses, opcodes and bit positions from here. Arithmetic lives in ``hw_contract``.

AXI4-Stream in (32-bit words, one command or datum per word, opcode in bits 31..28):

    EVENT   0x1  bits 15..0: input channel that fires in the current step
    STEP    0x2  end of the current step's input: the accelerator runs the next step
    SAMPLE  0x3  bits 7..0: the label of the sample that starts with the next step (one-hot target from its
                 step 2 on, learning window on in its last `learning_window` steps)
    FORCE   0x4  the final update: in the next step every input fires and every recurrent neuron reaches
                 threshold (NEST's examples: a weight-1000 spike into every presynaptic neuron)
    LOAD    0x5  bits 27..24: region, bits 23..0: first address; followed by `count` data words, count in the
                 next word (bits 23..0)
    DUMP    0x6  bits 27..24: region; the accelerator streams the whole region out, TLAST on the last word
    LEARN   0x7  bit 0: learning on (eta from the ETA registers) or off (eta 0) from the next step on

AXI4-Stream out (32-bit): for each step of a sample inside its learning window (every step with TRACE_ALL), a
packet of the `n_out` readout values (membrane format, sign-extended), TLAST on the last; DUMP replies, one
packet, TLAST on the last word. Steps that belong to no sample (the final update) output nothing.

Targets and window follow the Timeline of ``engines/base.py`` for one-hot tasks: a SAMPLE word read before
step n*T switches the target to its label and the window off at step n*T + 2, the window turns on at step
n*T + 2 + T - learning_window; without a new SAMPLE both hold (as NEST's rate generators do).

Regions (LOAD / DUMP): SYNAPSES (per lane, lane-major: weight | local target), GROUPS (per lane: first synapse
of each group), FEEDBACK (B, j-major), TRACES and GROUP_STATE (dump only, for inspection).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["CONTRACT_VERSION", "MAGIC", "IP_NAME", "IP_VENDOR", "IP_LIBRARY", "IP_VERSION", "IP_VLNV", "IP_VLNVS",
           "Reg", "Op", "Region", "Status", "Control", "COUNTERS", "LaneLayout",
           "lane_layout", "event_word", "control_word", "network_load_words", "sizes_words", "sizes_fields",
           "OPTIMIZER_CODES"]

#: bump when anything here or in hw_contract changes meaning; the driver refuses a bitstream with another
CONTRACT_VERSION = 1
MAGIC = 0xE9A0_0000
#: the accelerator as Vivado sees it: the wrapper module of ``eprop build verilog`` (``firmware/verilog.py``) and
#: the IP its ``package_ip.tcl`` packages. The PYNQ driver (``host/board/pynq_overlay.py``) binds to the VLNVs a
#: ``.hwh`` can hold for it: the packaged IP's, or ``xilinx.com:module_ref:...`` when the block design instantiates
#: the wrapper as a module reference, which is what ``eprop build vivado`` does.
IP_NAME = "eprop_accel_ip"
IP_VENDOR = "eprop-fpga.org"
IP_LIBRARY = "user"
IP_VERSION = "1.0"
IP_VLNV = f"{IP_VENDOR}:{IP_LIBRARY}:{IP_NAME}:{IP_VERSION}"
IP_VLNVS = (IP_VLNV, f"xilinx.com:module_ref:{IP_NAME}:{IP_VERSION}")


class Reg:
    """AXI4-Lite register byte addresses (32-bit registers)."""

    ID = 0x00            # MAGIC | CONTRACT_VERSION
    CONTROL = 0x04       # Control bits
    STATUS = 0x08        # Status bits (sticky error bits clear on write-1)
    SATURATION = 0x0C    # sticky saturation flags, bit i = hw_contract.QUANTITIES[i]; write 1s to clear
    ETA_MANTISSA = 0x10  # learning rate (hw_contract.FixedPoint.eta_constant)
    ETA_SHIFT = 0x14
    STEP_LO = 0x18       # current step
    STEP_HI = 0x1C
    SIZES = 0x20         # n_in (15..0) | n_rec (31..16)
    SIZES2 = 0x24        # n_out (7..0) | lanes (15..8) | history length log2 (23..16) | optimizer (27..24)
    LAST_ERROR = 0x28    # the last offending stream word
    WEIGHT_ADDR = 0x30   # weight window: lane (31..24) | index (23..0)
    WEIGHT_DATA = 0x34   # reads/writes the synapse word at WEIGHT_ADDR, then WEIGHT_ADDR index += 1
    COUNTERS = 0x100     # 64-bit counters, two registers each (low, high), in COUNTERS order


class Control:
    RUN = 1 << 0         # 1: consume the input stream and compute
    SOFT_RESET = 1 << 1  # pulse: return to idle, clear neuron, trace, queue and step state; keep weights
    TRACE_ALL = 1 << 2   # stream readout values every step, not only inside the learning window


class Status:
    IDLE = 1 << 0          # waiting for input (between steps)
    BUSY = 1 << 1          # computing a step
    BAD_WORD = 1 << 8      # sticky: a word with an unknown opcode was dropped
    BAD_CHANNEL = 1 << 9   # sticky: an EVENT with a channel >= n_in was dropped
    OVERFLOW = 1 << 10     # sticky: a queue was full (an event or a completion was dropped)
    BAD_LOAD = 1 << 11     # sticky: a LOAD/DUMP outside its region
    SATURATED = 1 << 12    # some saturation flag is set


class Op:
    EVENT = 0x1
    STEP = 0x2
    SAMPLE = 0x3
    FORCE = 0x4
    LOAD = 0x5
    DUMP = 0x6
    LEARN = 0x7


class Region:
    SYNAPSES = 0
    GROUPS = 1
    FEEDBACK = 2
    TRACES = 3
    GROUP_STATE = 4


#: the RTL's counters: the fixed engine's (same names, same meaning) then the hardware's own
COUNTERS = ("steps", "recurrent_updates", "readout_updates", "recurrent_spikes", "input_spikes", "input_events",
            "synaptic_events", "gradient_calls", "history_reads", "history_writes", "learning_signal_writes",
            "optimizer_calls", "weight_writes", "cutoff_completions",
            "cycles_busy", "cycles_stalled", "cycles_idle", "cycles_walk", "walk_issue_cycles")
#: what the hardware's own counters count (clock cycles; the fixed engine has no clock)
HARDWARE_COUNTERS = {
    "cycles_busy": "cycles computing a step (or loading / dumping)",
    "cycles_stalled": "busy cycles waiting for the output stream (back-pressure)",
    "cycles_idle": "cycles waiting for input between steps",
    "cycles_walk": "cycles the e-prop update pipeline spends walking history entries",
    "walk_issue_cycles": "walk cycles that issue a synapse-entry into the pipeline (the rest pad an entry to the "
                         "pipeline latency); cycles_walk / walk_issue_cycles is the measured initiation interval",
}


#: the optimizer a build runs (SIZES2 bits 27..24): 0 for gradient descent keeps that build's register as it was
OPTIMIZER_CODES = {"gradient_descent": 0, "adam": 1}


def sizes_words(n_in: int, n_rec: int, n_out: int, lanes: int, history_log2: int,
                optimizer: int = 0) -> tuple[int, int]:
    """The read-only SIZES and SIZES2 registers of a build: how the host learns what the bitstream holds."""
    return n_in | (n_rec << 16), n_out | (lanes << 8) | (history_log2 << 16) | (optimizer << 24)


def sizes_fields(sizes: int, sizes2: int) -> dict[str, int]:
    """The fields of SIZES and SIZES2 (the inverse of :func:`sizes_words`)."""
    return {"n_in": sizes & 0xFFFF, "n_rec": sizes >> 16, "n_out": sizes2 & 0xFF, "lanes": (sizes2 >> 8) & 0xFF,
            "history_log2": (sizes2 >> 16) & 0xFF, "optimizer": (sizes2 >> 24) & 0xF}


def event_word(channel: int) -> int:
    return (Op.EVENT << 28) | (channel & 0xFFFF)


def control_word(op: int, value: int = 0) -> int:
    return (op << 28) | (value & 0x0FFF_FFFF)


def synapse_order(network) -> tuple[np.ndarray, np.ndarray]:
    """(source, post) of every synapse in the engines' order (golden SynapseTable): sources ascending (inputs,
    then recurrent neurons), per source its recurrent targets ascending, then its readouts (post n_rec + k).
    numpy only, so that the board's driver can lay out memories without the engines."""
    n_in, n_rec = network.n_in, network.n_rec
    sources, posts = [], []
    for i in range(n_in):
        (targets,) = np.nonzero(network.mask_in[:, i])
        sources.append(np.full(targets.size, i))
        posts.append(targets)
    for i in range(n_rec):
        (rec,) = np.nonzero(network.mask_rec[:, i])
        (out,) = np.nonzero(network.mask_out[:, i])
        sources.append(np.full(rec.size + out.size, n_in + i))
        posts.append(np.concatenate([rec, n_rec + out]))
    return np.concatenate(sources).astype(np.int64), np.concatenate(posts).astype(np.int64)


def synapse_weights(network, sources: np.ndarray, posts: np.ndarray) -> np.ndarray:
    """The float weight of each synapse of `synapse_order`."""
    n_in, n_rec = network.n_in, network.n_rec
    w = np.empty(sources.size)
    from_in = sources < n_in
    w[from_in] = network.W_in[posts[from_in], sources[from_in]]
    to_rec = ~from_in & (posts < n_rec)
    w[to_rec] = network.W_rec[posts[to_rec], sources[to_rec] - n_in]
    to_out = ~from_in & (posts >= n_rec)
    w[to_out] = network.W_out[posts[to_out] - n_rec, sources[to_out] - n_in]
    return w


@dataclass
class LaneLayout:
    """Synapses spread over lanes by target: recurrent neuron j on lane j % lanes (local index j // lanes),
    readout k on lane k % lanes (local k // lanes). Within a lane, synapses sorted by group (2 s for recurrent
    targets of source s, 2 s + 1 for readouts), then by target."""

    lanes: int
    n_groups: int
    #: per lane: synapse index (synapse_order) of each lane slot
    slots: list[np.ndarray]
    #: per lane: first slot of each group, n_groups + 1 entries
    group_ptr: list[np.ndarray]
    #: per lane: local target index of each slot
    local_target: list[np.ndarray]

    @property
    def depth(self) -> int:
        return max(s.size for s in self.slots)

    def synapse_words(self, weight_ints: np.ndarray, weight_bits: int) -> list[np.ndarray]:
        """Per lane: the 32-bit words of the SYNAPSES region: weight (two's complement) in the low
        `weight_bits` bits, the local target above."""
        mask = (1 << weight_bits) - 1
        return [((np.asarray(weight_ints, np.int64)[s] & mask) | (t << weight_bits)).astype(np.int64)
                for s, t in zip(self.slots, self.local_target)]

    def weights_from_words(self, words: list[np.ndarray], weight_bits: int, n_synapses: int) -> np.ndarray:
        """Inverse of synapse_words: weight integers in synapse_order."""
        out = np.zeros(n_synapses, np.int64)
        mask = (1 << weight_bits) - 1
        for s, wl in zip(self.slots, words):
            raw = np.asarray(wl[: s.size], np.int64) & mask
            out[s] = np.where(raw >= 1 << (weight_bits - 1), raw - (1 << weight_bits), raw)
        return out


def lane_layout(network, lanes: int) -> LaneLayout:
    """Lay the network's synapses (synapse_order) out over `lanes` lanes."""
    n_rec = network.n_rec
    sources, posts = synapse_order(network)
    n_groups = 2 * (network.n_in + n_rec)
    group = 2 * sources + (posts >= n_rec)
    index = np.where(posts < n_rec, posts, posts - n_rec)
    lane_of = index % lanes
    slots, ptrs, targets = [], [], []
    for lane in range(lanes):
        (mine,) = np.nonzero(lane_of == lane)  # already in group order, targets ascending within a group
        slots.append(mine.astype(np.int64))
        targets.append((index[mine] // lanes).astype(np.int64))
        ptrs.append(np.searchsorted(group[mine], np.arange(n_groups + 1)).astype(np.int64))
    return LaneLayout(lanes, n_groups, slots, ptrs, targets)


class StreamBuilder:
    """Turns the engines' timeline into stream words (the driver's "pack" stage).

    A run of samples covering steps [t0, t1) becomes: LEARN, then per step t: SAMPLE (before the first step of a
    sample), STEP, the EVENT words of the input neurons that fire in step t. The final update: 6 steps, FORCE
    before the step whose inputs all fire. Output words to expect are counted by `expected_outputs`.
    """

    def __init__(self, config, trace_all: bool = False):
        from .engines.base import Timeline  # noqa: PLC0415 - numpy-only module

        self.config = config
        self.timeline = Timeline(config)
        self.trace_all = trace_all

    def run_words(self, samples, learn: bool) -> np.ndarray:
        tl = self.timeline
        tl.check(samples)
        T = tl.sequence
        t0 = tl.step
        t1 = t0 + len(samples) * T
        steps, chans = tl.input_events(samples, t1)
        words = [control_word(Op.LEARN, 1 if learn else 0)]
        bounds = np.searchsorted(steps, np.arange(t0, t1 + 1))
        for t in range(t0, t1):
            if (t - t0) % T == 0:
                words.append(control_word(Op.SAMPLE, samples[(t - t0) // T].label))
            words.append(control_word(Op.STEP))
            words.extend(event_word(int(ch)) for ch in chans[bounds[t - t0]:bounds[t - t0 + 1]])
        tl.advance(samples)
        return np.array(words, dtype=np.uint32)

    def finish_words(self) -> np.ndarray:
        tl = self.timeline
        t0, t1, force_step = tl.final_block()
        steps, chans = tl.input_events([], t1)
        bounds = np.searchsorted(steps, np.arange(t0, t1 + 1))
        words = []
        for t in range(t0, t1):
            if t == force_step:
                words.append(control_word(Op.FORCE))
            words.append(control_word(Op.STEP))
            words.extend(event_word(int(ch)) for ch in chans[bounds[t - t0]:bounds[t - t0 + 1]])
        tl.finished = True
        return np.array(words, dtype=np.uint32)

    def output_steps(self, n_samples_before: int, n_samples: int) -> int:
        """Steps with output words among those a run of samples [n0, n0 + n) completes."""
        per_sample = self.config.task.sequence if self.trace_all else self.config.task.learning_window
        return n_samples * per_sample

    @staticmethod
    def load_words(region: int, address: int, data) -> np.ndarray:
        data = np.asarray(data, np.int64) & 0xFFFFFFFF
        head = [control_word(Op.LOAD, (region << 24) | (address & 0xFFFFFF)), int(data.size)]
        return np.concatenate([np.array(head, np.int64), data]).astype(np.uint32)


def network_load_words(network, fx, lanes: int, syn_depth: int) -> np.ndarray:
    """The LOAD words that put `network` into an accelerator of `lanes` lanes with `syn_depth` synapse slots per
    lane: per lane its synapse words (weights in the contract's format `fx`) and group pointers, then B. The one
    upload both the host driver and the testbenches send."""
    layout = lane_layout(network, lanes)
    sources, posts = synapse_order(network)
    weights, _ = fx.formats["weight"].quantize(synapse_weights(network, sources, posts))
    syn = layout.synapse_words(weights, fx.formats["weight"].bits)
    words = []
    for lane in range(lanes):
        if syn[lane].size:
            words.append(StreamBuilder.load_words(Region.SYNAPSES, lane * syn_depth, syn[lane]))
        words.append(StreamBuilder.load_words(Region.GROUPS, lane * (layout.n_groups + 1), layout.group_ptr[lane]))
    feedback, _ = fx.formats["feedback"].quantize(network.B)
    words.append(StreamBuilder.load_words(Region.FEEDBACK, 0, feedback.reshape(-1)))
    return np.concatenate(words).astype(np.uint32)
