"""The NEST engine: the same config, network and samples run in NEST 3.10, wired as NEST's e-prop examples wire
them. It is the golden engine's parity oracle and the scale-out path (NEST runs across machines with MPI).

Wiring (connections numbered as in the N-MNIST example): spike_generator -> parrot_neuron (1, static), parrot ->
eprop_iaf (2), eprop_iaf -> eprop_iaf (3), eprop_iaf -> eprop_readout (4), all ``eprop_synapse`` with delay 1;
readout -> eprop_iaf ``eprop_learning_signal_connection`` with weights B (5); ``step_rate_generator``s for the
targets (6, receptor 2) and the learning window (7, receptor 1) via ``rate_connection_delayed``; the
final-update spike generator into every parrot and recurrent neuron (weight 1000). Only existing synapses are
created (one_to_one over the mask's non-zeros), with the network's weights.

One difference from the example, on purpose: at a phase boundary the example replaces every generator's spike
times, which drops an input spike that N-MNIST's rounding put on the last sample's step 300 (emitted after the
boundary); here such spikes, and pending rate-generator changes, are carried into the next phase.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from ..config import NO_LOWER_BOUND, NetworkConfig
from ..network import Network, nest_node_ids
from ..tasks import Sample
from .base import FINAL_UPDATE, Engine, Trace

__all__ = ["NestEngine", "import_nest"]


def import_nest():
    """Import PyNEST quietly; a clear error when it is missing."""
    os.environ.setdefault("PYNEST_QUIET", "1")
    try:
        import nest  # noqa: PLC0415
    except ImportError as exc:  # pragma: no cover - exercised only without NEST
        raise RuntimeError("the nest engine needs NEST 3.10: pip install 'nest-simulator==3.10.0' "
                           "(Python 3.11), or the project's [nest] extra") from exc
    if not nest.__version__.startswith("3.10"):
        raise RuntimeError(f"the nest engine is written against NEST 3.10, found {nest.__version__}")
    return nest


class NestEngine(Engine):
    name = "nest"
    block_samples = None  # one Simulate per iteration, as NEST's example does: its fastest mode

    def __init__(self, config: NetworkConfig):
        super().__init__(config)
        self.nest = import_nest()
        self.network: Network | None = None
        self._pending_rates: list[tuple[np.ndarray, np.ndarray]] = []
        self._pending_spikes = (np.zeros(0, np.int64), np.zeros(0, np.int64))
        self._reported = 0  # first step whose records have not been reported

    # ---- set-up ----------------------------------------------------------------------------------------------------
    def load(self, network: Network) -> None:
        nest, cfg = self.nest, self.config
        n_in, n_rec, n_out = network.n_in, network.n_rec, network.n_out
        network.check()
        self.network = network.copy()
        dt = cfg.simulation.resolution
        nest.ResetKernel()
        nest.set(resolution=dt, total_num_virtual_procs=cfg.simulation.total_num_virtual_procs, print_time=False)
        try:
            nest.verbosity = nest.VerbosityLevel.FATAL
        except AttributeError:  # pragma: no cover
            nest.set_verbosity("M_FATAL")

        self.gen_in = nest.Create("spike_generator", n_in)
        self.inputs = nest.Create("parrot_neuron", n_in)
        self.rec = nest.Create("eprop_iaf", n_rec, self._recurrent_params())
        self.out = nest.Create("eprop_readout", n_out, self._readout_params())
        self.gen_target = nest.Create("step_rate_generator", n_out)
        self.gen_window = nest.Create("step_rate_generator")
        expected = nest_node_ids(n_in, n_rec, n_out)
        for name, nodes in (("generators", self.gen_in), ("inputs", self.inputs), ("recurrent", self.rec),
                            ("readouts", self.out)):
            if not np.array_equal(np.array(nodes.tolist()), expected[name]):
                raise RuntimeError(f"NEST created {name} with unexpected node ids; the golden engine's delivery "
                                   f"order assumes {expected[name][:3]}...")
        self.spike_recorder = nest.Create("spike_recorder")
        self.multimeter = nest.Create("multimeter", {"interval": dt, "record_from": ["V_m"]})
        self.gen_final = nest.Create("spike_generator")

        opt = cfg.optimizer
        optimizer = {"type": opt.type, "batch_size": opt.batch_size, "optimize_each_step": opt.optimize_each_step,
                     "Wmin": opt.Wmin, "Wmax": opt.Wmax}
        if opt.type == "adam":
            optimizer.update(beta_1=opt.beta_1, beta_2=opt.beta_2, epsilon=opt.epsilon)
        # like the example, eta is not set here: it stays NEST's default until the first phase sets it
        nest.SetDefaults("eprop_synapse", {"optimizer": optimizer})

        static = {"synapse_model": "static_synapse", "delay": dt}
        nest.Connect(self.gen_in, self.inputs, {"rule": "one_to_one"}, static)
        self._connect_sparse(network.W_in, network.mask_in, self.inputs, self.rec)
        self._connect_sparse(network.W_rec, network.mask_rec, self.rec, self.rec)
        self._connect_sparse(network.W_out, network.mask_out, self.rec, self.out)
        nest.Connect(self.out, self.rec, {"rule": "all_to_all"},
                     {"synapse_model": "eprop_learning_signal_connection", "delay": dt, "weight": network.B})
        nest.Connect(self.gen_target, self.out, {"rule": "one_to_one"},
                     {"synapse_model": "rate_connection_delayed", "delay": dt, "receptor_type": 2})
        nest.Connect(self.gen_window, self.out, {"rule": "all_to_all"},
                     {"synapse_model": "rate_connection_delayed", "delay": dt, "receptor_type": 1})
        nest.Connect(self.rec, self.spike_recorder, {"rule": "all_to_all"}, static)
        nest.Connect(self.multimeter, self.out, {"rule": "all_to_all"}, static)
        nest.Connect(self.gen_final, self.inputs + self.rec, {"rule": "all_to_all"},
                     {"weight": FINAL_UPDATE["weight"], "delay": dt})
        self._first = {"inputs": int(self.inputs[0].global_id), "recurrent": int(self.rec[0].global_id),
                       "readouts": int(self.out[0].global_id)}

    def _recurrent_params(self) -> dict:
        rec = self.config.recurrent
        params = {key: getattr(rec, key) for key in (
            "C_m", "E_L", "V_m", "V_th", "I_e", "t_ref", "tau_m", "c_reg", "f_target", "kappa", "kappa_reg",
            "surrogate_gradient_function", "surrogate_gradient_height", "surrogate_gradient_width",
            "eprop_isi_trace_cutoff", "flush_event_send_interval")}
        if rec.V_min != NO_LOWER_BOUND:
            params["V_min"] = rec.V_min
        return params

    def _readout_params(self) -> dict:
        out = self.config.readout
        params = {key: getattr(out, key) for key in ("C_m", "E_L", "V_m", "I_e", "tau_m", "eprop_isi_trace_cutoff")}
        if out.V_min != NO_LOWER_BOUND:
            params["V_min"] = out.V_min
        return params

    def _connect_sparse(self, W, mask, pre, post) -> None:
        # the example's sparsely_connect: one_to_one over the (target, source) pairs of the non-zero weights
        targets, sources = np.nonzero(mask)
        if targets.size == 0:
            return
        pre_ids = np.array(pre.tolist())
        post_ids = np.array(post.tolist())
        dt = self.config.simulation.resolution
        self.nest.Connect(pre_ids[sources], post_ids[targets], {"rule": "one_to_one"},
                          {"synapse_model": "eprop_synapse", "delay": np.full(targets.size, dt),
                           "weight": W[targets, sources]})

    # ---- running -----------------------------------------------------------------------------------------------------
    def run(self, samples: Sequence[Sample], learn: bool) -> Trace:
        if self.network is None:
            raise RuntimeError("load a network before running")
        tl, nest = self.timeline, self.nest
        tl.check(samples)
        nest.SetDefaults("eprop_synapse", {"optimizer": {"eta": self.eta_for(learn)}})
        t0 = tl.step
        t1 = t0 + len(samples) * tl.sequence
        # a generator fires spike time s in step s - 1; the parrot repeats it in step s
        steps, chans = tl.input_events(samples, t1 + 1)
        self._set_input_spikes(steps, chans)
        self._set_rates(samples, t0, t1)
        trace = self._simulate(t0, t1)
        tl.advance(samples)
        return trace

    def finish(self) -> Trace:
        tl = self.timeline
        if tl.finished:
            raise RuntimeError("finish() was already called")
        t0, t1, force_step = tl.final_block()
        # the final generator fires in step force_step - 1: the inputs and recurrent neurons get it in force_step
        self.gen_final.set({"spike_times": [float(force_step) * self.config.simulation.resolution]})
        steps, chans = tl.input_events([], t1 + 1)
        if steps.size:
            self._set_input_spikes(steps, chans)
        trace = self._simulate(t0, t1)
        tl.finished = True
        return trace

    def _set_input_spikes(self, steps: np.ndarray, chans: np.ndarray) -> None:
        dt = self.config.simulation.resolution
        n_in = self.network.n_in
        order = np.lexsort((steps, chans))
        steps, chans = steps[order], chans[order]
        bounds = np.searchsorted(chans, np.arange(n_in + 1))
        self.gen_in.set([{"spike_times": (steps[bounds[i]:bounds[i + 1]] * dt).tolist()} for i in range(n_in)])

    def _set_rates(self, samples: Sequence[Sample], t0: int, t1: int) -> None:
        """Step-rate generators change value at time g (ms) so that the readout uses it from step g on; a change
        is registered one step before, so changes after this block's end are re-sent with the next block."""
        dt = self.config.simulation.resolution
        target, window = self.timeline.step_signals(samples, t0 + 1, t1 + 2)
        g = np.arange(t0 + 2, t1 + 2)
        signals = [target[:, k] for k in range(target.shape[1])] + [window]
        gens = list(self.gen_target) + [self.gen_window]
        if not self._pending_rates:
            self._pending_rates = [(np.zeros(0, np.int64), np.zeros(0))] * len(gens)
        for i, (gen, values) in enumerate(zip(gens, signals)):
            changed = values[1:] != values[:-1]
            p_times, p_amps = self._pending_rates[i]
            times = np.concatenate([p_times, g[changed]])
            amps = np.concatenate([p_amps, values[1:][changed]])
            if times.size:
                gen.set({"amplitude_times": (times * dt).tolist(), "amplitude_values": amps.tolist()})
            later = times > t1
            self._pending_rates[i] = (times[later], amps[later])

    def _simulate(self, t0: int, t1: int) -> Trace:
        """Simulate [t0, t1) and report the steps whose records are complete. NEST's multimeter delivers a step's
        sample with the next step, so each block reports up to t1 - 1 and the run's very last step is never
        reported (it lies after the final update, in no sample)."""
        nest = self.nest
        dt = self.config.simulation.resolution
        nest.Simulate((t1 - t0) * dt)
        mm = self.multimeter.get("events")
        sr = self.spike_recorder.get("events")
        self.multimeter.n_events = 0
        self.spike_recorder.n_events = 0
        r0, r1 = self._reported, t1 - 1
        times = np.round(np.asarray(mm["times"]) / dt).astype(np.int64) - 1  # stamp t + 1 -> step t
        senders = np.asarray(mm["senders"], np.int64) - self._first["readouts"]
        values = np.asarray(mm["V_m"], np.float64)
        y = np.full((r1 - r0, self.network.n_out), np.nan)
        inside = (times >= r0) & (times < r1)
        y[times[inside] - r0, senders[inside]] = values[inside]
        if np.isnan(y).any():
            raise RuntimeError(f"NEST multimeter: readout values missing for steps [{r0}, {r1})")
        s_steps = np.concatenate([self._pending_spikes[0],
                                  np.round(np.asarray(sr["times"]) / dt).astype(np.int64) - 1])
        s_neurons = np.concatenate([self._pending_spikes[1],
                                    np.asarray(sr["senders"], np.int64) - self._first["recurrent"]])
        now = s_steps < r1
        self._pending_spikes = (s_steps[~now], s_neurons[~now])
        s_steps, s_neurons = s_steps[now], s_neurons[now]
        order = np.lexsort((s_neurons, s_steps))
        self._reported = r1
        return Trace(r0, y, s_steps[order], s_neurons[order])

    # ---- results -----------------------------------------------------------------------------------------------------
    def weights(self) -> Network:
        nest, net = self.nest, self.network
        W = {}
        for name, pre, post, first_pre, first_post, shape in (
                ("W_in", self.inputs, self.rec, self._first["inputs"], self._first["recurrent"],
                 (net.n_rec, net.n_in)),
                ("W_rec", self.rec, self.rec, self._first["recurrent"], self._first["recurrent"],
                 (net.n_rec, net.n_rec)),
                ("W_out", self.rec, self.out, self._first["recurrent"], self._first["readouts"],
                 (net.n_out, net.n_rec))):
            matrix = np.zeros(shape)
            conns = nest.GetConnections(pre, post, synapse_model="eprop_synapse")
            if len(conns):
                data = conns.get(["source", "target", "weight"])
                matrix[np.asarray(data["target"]) - first_post, np.asarray(data["source"]) - first_pre] = \
                    np.asarray(data["weight"])
            W[name] = matrix
        return Network(**W, B=net.B.copy(), mask_in=net.mask_in.copy(), mask_rec=net.mask_rec.copy(),
                       mask_out=net.mask_out.copy(), seed=net.seed)

    def counters(self) -> dict[str, int]:
        n_rec_spikes = int(self.nest.GetKernelStatus("local_spike_counter"))
        return {"local_spike_counter": n_rec_spikes}
