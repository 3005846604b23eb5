"""Build parameters of the accelerator: sizes, widths, constants and ROM contents, all derived from the hardware
contract (``golden_model.hw_contract`` / ``hw_interface``) for one config, network and lanes count."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from golden_model.config import NetworkConfig
from golden_model.hw_contract import ROUND_NEAREST_EVEN, FixedPoint, QFormat
from golden_model.hw_interface import LaneLayout, lane_layout
from golden_model.network import Network, build_network

__all__ = ["HardwareParams"]


def _bits(n: int) -> int:
    """Bits to hold 0 .. n."""
    return max(1, int(n).bit_length())


@dataclass
class HardwareParams:
    config: NetworkConfig
    fx: FixedPoint
    lanes: int
    n_in: int
    n_rec: int
    n_out: int
    syn_depth: int  # synapse slots per lane (the build's capacity)
    layout: LaneLayout | None = None
    spike_list_depth: int = 4096
    completion_depth: int = 4096
    extra: dict = field(default_factory=dict)

    @classmethod
    def from_config(cls, config: NetworkConfig, network: Network | None = None, lanes: int = 1,
                    headroom: float = 0.02) -> "HardwareParams":
        fx = FixedPoint(config)
        if config.task.name not in ("nmnist", "patterns"):
            raise ValueError(f"config [task] name = {config.task.name!r}: the accelerator takes one-hot "
                             f"classification tasks (targets from SAMPLE labels)")
        if fx.weight_rounding != ROUND_NEAREST_EVEN:
            raise ValueError(f"config [fixed] weight_rounding = {config.fixed.weight_rounding!r}: the gateware "
                             f"rounds weights to nearest, ties to even; stochastic rounding is a fixed-engine "
                             f"study option, not built in hardware")
        if fx.cutoff_rec != fx.cutoff_out:
            raise ValueError("config: the accelerator walks both kinds of synapse group with one cutoff; "
                             "[recurrent] and [readout] eprop_isi_trace_cutoff must be equal")
        if lanes < 1 or lanes > 16:
            raise ValueError(f"lanes = {lanes}: must lie in [1, 16]")
        network = network if network is not None else build_network(config)
        layout = lane_layout(network, lanes)
        depth = int(math.ceil(layout.depth * (1.0 + headroom)))
        return cls(config, fx, lanes, network.n_in, network.n_rec, network.n_out, max(depth, 1), layout)

    # ---- sizes ------------------------------------------------------------------------------------------------------
    @property
    def n_src(self) -> int:
        return self.n_in + self.n_rec

    @property
    def n_groups(self) -> int:
        return 2 * self.n_src

    @property
    def rec_per_lane(self) -> int:
        return -(-self.n_rec // self.lanes)

    @property
    def out_per_lane(self) -> int:
        return -(-self.n_out // self.lanes)

    @property
    def local_bits(self) -> int:
        return _bits(max(self.rec_per_lane, self.out_per_lane) - 1)

    @property
    def slot_bits(self) -> int:
        return _bits(self.syn_depth)

    @property
    def src_bits(self) -> int:
        return _bits(self.n_src - 1)

    @property
    def hist_len(self) -> int:
        return self.fx.history_length

    @property
    def hist_log2(self) -> int:
        return int(math.log2(self.hist_len))

    @property
    def cutoff(self) -> int:
        return self.fx.cutoff_rec

    @property
    def sequence(self) -> int:
        return self.config.task.sequence

    @property
    def learning_window(self) -> int:
        return self.config.task.learning_window

    @property
    def ref_counts(self) -> int:
        return self.config.steps(self.config.recurrent.t_ref)

    def fmt(self, name: str) -> QFormat:
        return self.fx.formats[name]

    @property
    def weight_bits(self) -> int:
        return self.fmt("weight").bits

    @property
    def synapse_word_bits(self) -> int:
        return self.weight_bits + self.local_bits

    def check_fits(self, network: Network) -> LaneLayout:
        """The lane layout of `network`, refusing one that does not fit this build."""
        layout = lane_layout(network, self.lanes)
        if layout.depth > self.syn_depth:
            raise ValueError(f"network needs {layout.depth} synapse slots on a lane, the build has {self.syn_depth}")
        if (network.n_in, network.n_rec, network.n_out) != (self.n_in, self.n_rec, self.n_out):
            raise ValueError("network sizes differ from the build's")
        if self.synapse_word_bits > 32:
            raise ValueError(f"synapse word of {self.synapse_word_bits} bits: weight + target must fit 32")
        return layout

    def decay_rom(self, name: str) -> np.ndarray:
        return self.fx.decay_roms[name]

    # ---- shapes and address widths the components share (defined once, here) ------------------------------------------
    def shape(self, name: str):
        """The Amaranth shape of a contract quantity (weight, e_bar, z_bar, membrane, ...)."""
        from .arith import fmt_shape  # noqa: PLC0415 - amaranth only where shapes are asked for

        return fmt_shape(self.fmt(name))

    @property
    def rec_index_bits(self) -> int:
        """Bits of a recurrent neuron's index within its lane (history ring addresses)."""
        return max(1, (self.rec_per_lane - 1).bit_length())

    @property
    def out_index_bits(self) -> int:
        return max(1, (self.out_per_lane - 1).bit_length())

    @property
    def hist_depth(self) -> int:
        """History ring words per lane: one ring of hist_len entries per local neuron, address local * H + h."""
        return self.hist_len * self.rec_per_lane

    @property
    def err_depth(self) -> int:
        return self.hist_len * self.out_per_lane

    @property
    def gptr_depth(self) -> int:
        """Group pointers per lane: CSR row pointers of the 2 * n_src groups (targets recurrent / readout)."""
        return self.n_groups + 1

    @property
    def decay_bits(self) -> int:
        return _bits(int(self.fx.decay_roms["kappa"].max()))

    @property
    def eta_bits(self) -> int:
        return self.config.fixed.eta_bits

    @property
    def adam(self) -> bool:
        """The Adam build (hw_contract.AdamContract): the optimizer pass runs Adam instead of gradient descent."""
        return self.fx.adam is not None

    @property
    def adam_step_shape(self):
        """Adam: the shape of a group's step size A = round(eta_m bias[t] >> bias_shift): eta's mantissa times a
        bias correction that reaches 2**(bit length - shift) at most (1 at the default betas)."""
        from amaranth.hdl import signed  # noqa: PLC0415 - amaranth only where shapes are asked for

        ad = self.fx.adam
        return signed(self.eta_bits + 1 + max(0, int(ad.bias_rom.max()).bit_length() - ad.bias_shift))

    @property
    def moment_bits(self) -> int:
        """Adam: bits of a synapse's moments word, m | sigma."""
        return self.shape("adam_m").width + self.shape("adam_v").width
