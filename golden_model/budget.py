"""Memory budget of the accelerator: every memory the hardware contract implies, in bits and in block RAMs.

A memory is (depth, width). It maps onto a part's block RAM by the best of the block's aspect ratios (e.g. a
Xilinx BRAM36 is 32Kx1 ... 1Kx36 ... 512x72, a BRAM18 half of one), each bank read by at most two lanes (the
blocks are true dual-port), so ``lanes`` parallel update lanes split the per-synapse memories into
``ceil(lanes / 2)`` banks. Register-sized state (a few neurons' worth) is counted as flip-flops.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .config import NetworkConfig
from .hw_contract import AdamContract, FixedPoint
from .network import Network

__all__ = ["PARTS", "Part", "Memory", "memory_map", "fit", "format_budget"]


@dataclass(frozen=True)
class Part:
    name: str
    family: str
    block_name: str
    blocks: float  # in units of the full block (BRAM36, EBR)
    #: (depth, width, cost in blocks) of each configuration of one block and of its half (when it has one)
    shapes: tuple[tuple[int, int, float], ...]
    luts: int
    ffs: int
    dsps: int
    uram: int = 0  # UltraRAM blocks of 4K x 72 (Zynq UltraScale+)


_XILINX = ((32768, 1, 1.0), (16384, 2, 1.0), (8192, 4, 1.0), (4096, 9, 1.0), (2048, 18, 1.0), (1024, 36, 1.0),
           (512, 72, 1.0), (16384, 1, 0.5), (8192, 2, 0.5), (4096, 4, 0.5), (2048, 9, 0.5), (1024, 18, 0.5),
           (512, 36, 0.5))
_ECP5 = ((16384, 1, 1.0), (8192, 2, 1.0), (4096, 4, 1.0), (2048, 9, 1.0), (1024, 18, 1.0), (512, 36, 1.0))

PARTS = {
    # Zynq-7020 (PYNQ-Z2): 140 BRAM36, 53,200 LUT, 106,400 FF, 220 DSP48E1
    "xc7z020": Part("xc7z020", "zynq7", "BRAM36", 140, _XILINX, 53200, 106400, 220),
    # Zynq UltraScale+ K26 SOM (KV260, XCK26 = ZU5EV class): 144 BRAM36, 64 URAM, 117,120 LUT, 1,248 DSP48E2
    "xck26": Part("xck26", "zynqmp", "BRAM36", 144, _XILINX, 117120, 234240, 1248, uram=64),
    # Lattice ECP5 LFE5U-85F: 208 EBR of 18 Kbit, 83,640 LUT4, 156 18x18 multipliers
    "lfe5u-85f": Part("lfe5u-85f", "ecp5", "EBR", 208, _ECP5, 83640, 83640, 156),
}


@dataclass(frozen=True)
class Memory:
    name: str
    depth: int
    width: int
    banks: int = 1
    what: str = ""

    @property
    def bits(self) -> int:
        return self.depth * self.width


def _blocks(depth: int, width: int, part: Part) -> float:
    if depth == 0 or width == 0:
        return 0.0
    return min(math.ceil(depth / d) * math.ceil(width / w) * cost for d, w, cost in part.shapes)


def memory_map(config: NetworkConfig, network: Network | None = None, lanes: int = 1, optimizer: str | None = None,
               completion_fifo: int = 4096) -> list[Memory]:
    """The memories of the accelerator for this config (sizes from the network when given, else expected)."""
    fx = FixedPoint(config.with_overrides({"optimizer.type": "gradient_descent"}))
    f = fx.formats
    n_in, n_rec, n_out = config.network.n_in, config.network.n_rec, config.network.n_out
    if network is not None:
        n_syn_in, n_syn_rec, n_syn_out = (int(network.mask_in.sum()), int(network.mask_rec.sum()),
                                          int(network.mask_out.sum()))
    else:
        n_syn_in = round(config.network.p_in * n_in * n_rec)
        n_syn_rec = round(config.network.p_rec * n_rec * (n_rec - 1))
        n_syn_out = round(config.network.p_out * n_rec * n_out)
    n_syn = n_syn_in + n_syn_rec + n_syn_out
    n_trace = n_syn_in + n_syn_rec
    n_src = n_in + n_rec
    banks = max(1, math.ceil(lanes / 2))
    target_bits = math.ceil(math.log2(n_rec + n_out))
    step_bits = 32
    mems = [
        Memory("weights", n_syn, f["weight"].bits + target_bits, banks,
               f"weight {f['weight']} + target index ({target_bits} b), one word per synapse (CSR order)"),
        Memory("traces", n_trace, f["e_bar"].bits, banks,
               f"e_bar {f['e_bar']} per synapse onto a recurrent neuron (e_bar_reg = (1 - kappa) e_bar)"),
        Memory("csr_rows", n_src + 1, 2 * math.ceil(math.log2(n_syn + 1)), 1,
               "first synapse of each source and of its readout group"),
        Memory("group_state", 2 * n_src, step_bits + 1 + f["z_bar"].bits + 1, 1,
               f"per source and kind of target: previous spike step, walk done, z_bar {f['z_bar']}, z buffer"),
        Memory("history", n_rec * fx.history_length, f["surrogate"].bits + f["learning_signal"].bits, 1,
               f"{fx.history_length}-entry ring per recurrent neuron: psi and Lambda = L + (1 - kappa_reg) FR"),
        Memory("readout_history", n_out * fx.history_length, f["error"].bits, 1,
               f"{fx.history_length}-entry ring per readout: error"),
        Memory("feedback", n_rec * n_out, f["feedback"].bits, 1, f"B {f['feedback']}"),
        Memory("completion_fifo", completion_fifo, math.ceil(math.log2(n_src)) + step_bits, 1,
               "sources awaiting the end of their cutoff window"),
    ]
    rom = fx.surrogate_rom
    if rom["kind"] == 1:
        mems.append(Memory("surrogate_rom", rom["table"].size, f["surrogate"].bits, 1, "surrogate gradient ROM"))
    decay = sum(r.size for r in fx.decay_roms.values())
    mems.append(Memory("decay_roms", decay, config.fixed.constant_bits, 1, "alpha^m and kappa^m ROMs"))
    if (optimizer or config.optimizer.type) == "adam":
        # hw_contract.AdamContract: m and sigma = sqrt(v) per synapse, a step count per group, two ROMs
        ad = AdamContract(config.with_overrides({"optimizer.type": "adam"}), f)
        fm, fv = f["adam_m"], f["adam_v"]
        mems.append(Memory("adam_moments", n_syn, fm.bits + fv.bits, banks,
                           f"Adam m {fm} and sigma = sqrt(v) {fv} per synapse"))
        mems.append(Memory("adam_steps", 2 * n_src, ad.step_bits, 1,
                           "Adam step count per synapse group (bias-correction ROM index)"))
        mems.append(Memory("adam_roms", ad.rsqrt_lut.size + ad.bias_rom.size, config.fixed.constant_bits, 1,
                           f"reciprocal-square-root table ({ad.rsqrt_lut.size}) and bias correction "
                           f"({ad.bias_rom.size})"))
    return mems


def registers_bits(config: NetworkConfig) -> int:
    """Neuron state and counters: flip-flops or distributed RAM, not block RAM."""
    fx = FixedPoint(config.with_overrides({"optimizer.type": "gradient_descent"}))
    f = fx.formats
    n_rec, n_out = config.network.n_rec, config.network.n_out
    return n_rec * (f["membrane"].bits + f["firing_rate"].bits + 8) + n_out * f["membrane"].bits + 32 * 48


def fit(mems: list[Memory], part: Part) -> dict:
    rows = []
    total = 0.0
    for m in mems:
        per_bank = math.ceil(m.depth / m.banks)
        blocks = m.banks * _blocks(per_bank, m.width, part)
        total += blocks
        rows.append({"memory": m.name, "depth": m.depth, "width": m.width, "banks": m.banks, "bits": m.bits,
                     "blocks": blocks, "what": m.what})
    return {"part": part.name, "block": part.block_name, "available": part.blocks, "used": total,
            "utilisation": total / part.blocks, "fits": total <= part.blocks, "memories": rows,
            "bits": sum(m.bits for m in mems)}


def format_budget(result: dict, extra: dict | None = None) -> str:
    lines = [f"{'memory':16s} {'depth':>8s} {'width':>6s} {'banks':>5s} {'kbit':>9s} {result['block']:>8s}  what"]
    for r in result["memories"]:
        lines.append(f"{r['memory']:16s} {r['depth']:8d} {r['width']:6d} {r['banks']:5d} {r['bits'] / 1024:9.1f} "
                     f"{r['blocks']:8.1f}  {r['what']}")
    lines.append(f"{'total':16s} {'':8s} {'':6s} {'':5s} {result['bits'] / 1024:9.1f} {result['used']:8.1f}  "
                 f"of {result['available']:g} {result['block']} on {result['part']} "
                 f"({100 * result['utilisation']:.1f} %): {'fits' if result['fits'] else 'DOES NOT FIT'}")
    if extra:
        for k, v in extra.items():
            lines.append(f"{k}: {v}")
    return "\n".join(lines)
