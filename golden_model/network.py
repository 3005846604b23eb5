"""A network instance: the weights, masks and feedback matrix one config + seed produce.

The draws, their order, the scalings and the masks are those of NEST 3.10's e-prop examples, so NEST and every
engine of this project start from the same weights, bit for bit:

* ``init = "nmnist"`` (N-MNIST example): ``W_in = randn(n_in, n_rec).T / sqrt(n_in)``,
  ``W_rec = randn(n_rec, n_rec).T / sqrt(n_rec)`` with a zero diagonal, ``W_out = glorot_uniform(n_rec, n_out).T * s``,
  ``B = randn(n_rec, n_out) / s``, then Bernoulli masks (``choice([0, 1], p=[1 - p, p])``) in the order in, rec, out.
* ``init = "sine"`` (sine-wave example): the same normal draws divided by ``sqrt(fan-in)`` (readout and B by
  ``sqrt(n_rec)``), cast to ``weight_dtype``, then ``W_in, W_rec, B *= s`` and ``W_out *= s``; all-to-all.

with ``s = 1 - kappa``. A synapse exists where its weight is non-zero (NEST's examples create only those).

Shapes follow the usual post x pre convention: ``W_in`` is (n_rec, n_in), ``W_rec`` (n_rec, n_rec),
``W_out`` (n_out, n_rec), ``B`` (n_rec, n_out) (``L_j = sum_k B_jk err_k``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .config import NetworkConfig

__all__ = ["Network", "build_network", "draw_network", "nest_node_ids", "spike_delivery_order"]


@dataclass
class Network:
    W_in: np.ndarray
    W_rec: np.ndarray
    W_out: np.ndarray
    B: np.ndarray
    mask_in: np.ndarray
    mask_rec: np.ndarray
    mask_out: np.ndarray
    seed: int

    @property
    def n_in(self) -> int:
        return self.W_in.shape[1]

    @property
    def n_rec(self) -> int:
        return self.W_in.shape[0]

    @property
    def n_out(self) -> int:
        return self.W_out.shape[0]

    @property
    def n_synapses(self) -> dict[str, int]:
        return {"in": int(self.mask_in.sum()), "rec": int(self.mask_rec.sum()), "out": int(self.mask_out.sum())}

    def copy(self) -> "Network":
        return Network(*(a.copy() for a in self._arrays()), seed=self.seed)

    def _arrays(self):
        return (self.W_in, self.W_rec, self.W_out, self.B, self.mask_in, self.mask_rec, self.mask_out)

    def save(self, path: str | Path) -> None:
        np.savez(path, W_in=self.W_in, W_rec=self.W_rec, W_out=self.W_out, B=self.B, mask_in=self.mask_in,
                 mask_rec=self.mask_rec, mask_out=self.mask_out, seed=np.int64(self.seed))

    @classmethod
    def load(cls, path: str | Path) -> "Network":
        with np.load(path) as data:
            missing = {"W_in", "W_rec", "W_out", "B", "mask_in", "mask_rec", "mask_out"} - set(data.files)
            if missing:
                raise ValueError(f"network file {path}: missing arrays {sorted(missing)}")
            net = cls(**{k: data[k] for k in ("W_in", "W_rec", "W_out", "B")},
                      **{k: data[k].astype(bool) for k in ("mask_in", "mask_rec", "mask_out")},
                      seed=int(data["seed"]) if "seed" in data.files else -1)
        net.check()
        return net

    def check(self) -> None:
        """Shapes agree, weights are zero exactly where no synapse exists, no autapses."""
        n_rec, n_in, n_out = self.n_rec, self.n_in, self.n_out
        expected = {"W_in": (n_rec, n_in), "W_rec": (n_rec, n_rec), "W_out": (n_out, n_rec), "B": (n_rec, n_out)}
        for name, shape in expected.items():
            if getattr(self, name).shape != shape:
                raise ValueError(f"network: {name} has shape {getattr(self, name).shape}, expected {shape}")
        for w, m, name in ((self.W_in, self.mask_in, "in"), (self.W_rec, self.mask_rec, "rec"),
                           (self.W_out, self.mask_out, "out")):
            if m.shape != w.shape:
                raise ValueError(f"network: mask_{name} has shape {m.shape}, expected {w.shape}")
            if np.any(w[~m] != 0.0):
                raise ValueError(f"network: W_{name} has non-zero weights where mask_{name} has no synapse")
        if np.any(np.diag(self.mask_rec)):
            raise ValueError("network: mask_rec has autapses (eprop networks have none)")


def _glorot_uniform(rng: np.random.RandomState, fan_in: int, fan_out: int) -> np.ndarray:
    scale = 1.0 / max(1.0, (fan_in + fan_out) / 2.0)
    limit = np.sqrt(3.0 * scale)
    return rng.uniform(low=-limit, high=limit, size=(fan_in, fan_out))


def _mask(rng: np.random.RandomState, shape: tuple[int, int], p_keep: float) -> np.ndarray:
    # Exactly the example's create_mask(weights, sparsity_level) with sparsity_level = 1 - p_keep.
    sparsity = 1.0 - p_keep
    return rng.choice([0, 1], shape, p=[sparsity, 1 - sparsity])


def draw_network(config: NetworkConfig, rng: np.random.RandomState) -> Network:
    """Draw a network from `rng` (seeded by the caller); leaves `rng` where NEST's example leaves it."""
    net = config.network
    n_in, n_rec, n_out = net.n_in, net.n_rec, net.n_out
    scale = 1.0 - config.recurrent.kappa
    if net.init == "nmnist":
        W_in = np.array(rng.randn(n_in, n_rec).T / np.sqrt(n_in))
        W_rec = np.array(rng.randn(n_rec, n_rec).T / np.sqrt(n_rec))
        np.fill_diagonal(W_rec, 0.0)
        W_out = np.array(_glorot_uniform(rng, n_rec, n_out).T) * scale
        B = np.array(rng.randn(n_rec, n_out)) / scale
        W_in *= _mask(rng, W_in.shape, net.p_in)
        W_rec *= _mask(rng, W_rec.shape, net.p_rec)
        W_out *= _mask(rng, W_out.shape, net.p_out)
    elif net.init == "sine":
        dtype = np.dtype(net.weight_dtype)
        W_in = np.array(rng.randn(n_in, n_rec).T / np.sqrt(n_in), dtype=dtype)
        W_rec = np.array(rng.randn(n_rec, n_rec).T / np.sqrt(n_rec), dtype=dtype)
        np.fill_diagonal(W_rec, 0.0)
        W_out = np.array(rng.randn(n_rec, n_out).T / np.sqrt(n_rec), dtype=dtype) * dtype.type(scale)
        B = np.array(rng.randn(n_rec, n_out) / np.sqrt(n_rec), dtype=dtype)
        W_in *= dtype.type(scale)
        W_rec *= dtype.type(scale)
        B *= dtype.type(scale)
        # The example connects all-to-all; masks are drawn (after every weight) only if asked for.
        for W, p in ((W_in, net.p_in), (W_rec, net.p_rec), (W_out, net.p_out)):
            if p < 1.0:
                W *= _mask(rng, W.shape, p).astype(dtype)
    else:  # validated in NetworkConfig
        raise AssertionError(net.init)
    W_in, W_rec, W_out, B = (np.asarray(a, dtype=np.float64) for a in (W_in, W_rec, W_out, B))
    network = Network(W_in=W_in, W_rec=W_rec, W_out=W_out, B=B, mask_in=W_in != 0.0, mask_rec=W_rec != 0.0,
                      mask_out=W_out != 0.0, seed=net.seed)
    # -0.0 from masking counts as "no synapse"; store it as +0.0 so dense arrays compare cleanly.
    for W, m in ((network.W_in, network.mask_in), (network.W_rec, network.mask_rec),
                 (network.W_out, network.mask_out)):
        W[~m] = 0.0
    network.check()
    return network


def build_network(config: NetworkConfig) -> Network:
    """The network NEST's example builds for this config and seed."""
    return draw_network(config, np.random.RandomState(config.network.seed))


# ---- NEST's node layout and delivery order -------------------------------------------------------------------

def nest_node_ids(n_in: int, n_rec: int, n_out: int) -> dict[str, np.ndarray]:
    """Node ids the NEST engine creates, in its creation order (the order of NEST's examples):
    spike generators, parrot neurons (the inputs), eprop_iaf, eprop_readout."""
    first = 1
    ids = {}
    for name, n in (("generators", n_in), ("inputs", n_in), ("recurrent", n_rec), ("readouts", n_out)):
        ids[name] = np.arange(first, first + n, dtype=np.int64)
        first += n
    return ids


def spike_delivery_order(n_in: int, n_rec: int, n_vp: int) -> np.ndarray:
    """Rank of each presynaptic source (inputs 0..n_in-1, then recurrent n_in..) in NEST's spike delivery.

    NEST 3.10 delivers the spikes of one step from a buffer filled thread by thread (virtual process
    ``node_id % n_vp``), each thread's spikes in its update order (ascending node id); a neuron's input
    ``x[t]`` is the floating-point sum of ``w * multiplicity`` in that order. Summing in the same order is what
    makes the golden engine bit-identical to NEST, not only close.
    """
    ids = nest_node_ids(n_in, n_rec, 1)
    node_ids = np.concatenate([ids["inputs"], ids["recurrent"]])
    order = np.lexsort((node_ids, node_ids % n_vp))  # sources sorted by (vp, node id)
    rank = np.empty_like(order)
    rank[order] = np.arange(order.size)
    return rank
