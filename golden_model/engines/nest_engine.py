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

:class:`NestBellecEngine` (``nest-bellec``) wires NEST's time-driven ``_bsshslm_2020`` models the same way, as
NEST's bsshslm examples do: the kernel's e-prop update interval, learning window and reset switch instead of a
learning-window generator, the synapse's ``tau_m_readout`` and ``average_gradient``, targets two steps later
(the examples' ``total_offset``), and for the cross-entropy loss the readouts connected to each other
(``rate_connection_delayed``, receptor 1, weight 1, no autapses) for the softmax normaliser. It is the parity
oracle of the bellec engine (``engines/bellec.py`` explains the alignment of intervals and samples).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence

import numpy as np

from ..config import NO_LOWER_BOUND, NetworkConfig
from ..network import Network, nest_node_ids
from ..tasks import Sample
from .base import FINAL_UPDATE, Engine, Trace

__all__ = ["NestEngine", "NestBellecEngine", "import_nest"]


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
    #: the NEST models this engine wires (connections 2-5 of the examples)
    RECURRENT_MODEL = "eprop_iaf"
    READOUT_MODEL = "eprop_readout"
    SYNAPSE_MODEL = "eprop_synapse"
    FEEDBACK_MODEL = "eprop_learning_signal_connection"
    #: steps by which the targets reach the readouts later than base.INPUT_DELAY after a sample's start
    SIGNAL_DELAY = 0
    #: the readouts' recordables, read from the multimeter every block
    READOUT_RECORDABLES = ("V_m",)
    #: a block [t0, t1) reports y (and spikes) up to step t1 - REPORT_LAG: the multimeter delivers a step's
    #: sample with the next step
    REPORT_LAG = 1

    def __init__(self, config: NetworkConfig):
        super().__init__(config)
        self.nest = import_nest()
        self.network: Network | None = None
        self._pending_rates: list[tuple[np.ndarray, np.ndarray]] = []
        self._pending_spikes = (np.zeros(0, np.int64), np.zeros(0, np.int64))
        self._reported = 0  # first step whose y has not been reported
        self._recorded = 0  # first step whose multimeter records have not been read

    # ---- set-up ----------------------------------------------------------------------------------------------------
    def load(self, network: Network) -> None:
        nest, cfg = self.nest, self.config
        n_in, n_rec, n_out = network.n_in, network.n_rec, network.n_out
        network.check()
        self.network = network.copy()
        dt = cfg.simulation.resolution
        nest.ResetKernel()
        nest.set(**self._kernel_params())
        try:
            nest.verbosity = nest.VerbosityLevel.FATAL
        except AttributeError:  # pragma: no cover
            nest.set_verbosity("M_FATAL")

        self.gen_in = nest.Create("spike_generator", n_in)
        self.inputs = nest.Create("parrot_neuron", n_in)
        self.rec = nest.Create(self.RECURRENT_MODEL, n_rec, self._recurrent_params())
        self.out = nest.Create(self.READOUT_MODEL, n_out, self._readout_params())
        self.gen_target = nest.Create("step_rate_generator", n_out)
        self.gen_window = self._create_window_generator()
        expected = nest_node_ids(n_in, n_rec, n_out)
        for name, nodes in (("generators", self.gen_in), ("inputs", self.inputs), ("recurrent", self.rec),
                            ("readouts", self.out)):
            if not np.array_equal(np.array(nodes.tolist()), expected[name]):
                raise RuntimeError(f"NEST created {name} with unexpected node ids; the golden engine's delivery "
                                   f"order assumes {expected[name][:3]}...")
        self.spike_recorder = nest.Create("spike_recorder")
        self.multimeter = nest.Create("multimeter", {"interval": dt, "record_from": list(self.READOUT_RECORDABLES)})
        self.gen_final = nest.Create("spike_generator")

        # like the example, eta is not set here: it stays NEST's default until the first phase sets it
        nest.SetDefaults(self.SYNAPSE_MODEL, self._synapse_defaults())

        static = {"synapse_model": "static_synapse", "delay": dt}
        nest.Connect(self.gen_in, self.inputs, {"rule": "one_to_one"}, static)
        self._connect_sparse(network.W_in, network.mask_in, self.inputs, self.rec)
        self._connect_sparse(network.W_rec, network.mask_rec, self.rec, self.rec)
        self._connect_sparse(network.W_out, network.mask_out, self.rec, self.out)
        nest.Connect(self.out, self.rec, {"rule": "all_to_all"},
                     {"synapse_model": self.FEEDBACK_MODEL, "delay": dt, "weight": network.B})
        nest.Connect(self.gen_target, self.out, {"rule": "one_to_one"},
                     {"synapse_model": "rate_connection_delayed", "delay": dt, "receptor_type": 2})
        self._connect_readout_signals()
        nest.Connect(self.rec, self.spike_recorder, {"rule": "all_to_all"}, static)
        nest.Connect(self.multimeter, self.out, {"rule": "all_to_all"}, static)
        nest.Connect(self.gen_final, self.inputs + self.rec, {"rule": "all_to_all"},
                     {"weight": FINAL_UPDATE["weight"], "delay": dt})
        self._first = {"inputs": int(self.inputs[0].global_id), "recurrent": int(self.rec[0].global_id),
                       "readouts": int(self.out[0].global_id)}

    def _kernel_params(self) -> dict:
        sim = self.config.simulation
        return {"resolution": sim.resolution, "total_num_virtual_procs": sim.total_num_virtual_procs,
                "print_time": False}

    def _create_window_generator(self):
        return self.nest.Create("step_rate_generator")

    def _connect_readout_signals(self) -> None:
        """Connection 7: the learning-window generator into every readout (receptor 1)."""
        self.nest.Connect(self.gen_window, self.out, {"rule": "all_to_all"},
                          {"synapse_model": "rate_connection_delayed", "delay": self.config.simulation.resolution,
                           "receptor_type": 1})

    def _synapse_defaults(self) -> dict:
        opt = self.config.optimizer
        optimizer = {"type": opt.type, "batch_size": opt.batch_size, "optimize_each_step": opt.optimize_each_step,
                     "Wmin": opt.Wmin, "Wmax": opt.Wmax}
        if opt.type == "adam":
            optimizer.update(beta_1=opt.beta_1, beta_2=opt.beta_2, epsilon=opt.epsilon)
        return {"optimizer": optimizer}

    def _synapse_params(self) -> dict:
        """Per-connection parameters of the e-prop synapses besides weight and delay."""
        return {}

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
                          {"synapse_model": self.SYNAPSE_MODEL, "delay": np.full(targets.size, dt),
                           "weight": W[targets, sources], **self._synapse_params()})

    # ---- running -----------------------------------------------------------------------------------------------------
    def run(self, samples: Sequence[Sample], learn: bool) -> Trace:
        if self.network is None:
            raise RuntimeError("load a network before running")
        tl, nest = self.timeline, self.nest
        tl.check(samples)
        nest.SetDefaults(self.SYNAPSE_MODEL, {"optimizer": {"eta": self.eta_for(learn)}})
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
        if self.SIGNAL_DELAY:
            # the last sample's final targets fall after its block: send them (the generators then hold)
            self._set_rates([], t0, t1)
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
        d = self.SIGNAL_DELAY
        target, window = self.timeline.step_signals(samples, t0 + 1 - d, t1 + 2 - d)
        g = np.arange(t0 + 2, t1 + 2)
        signals = [target[:, k] for k in range(target.shape[1])]
        gens = list(self.gen_target)
        if self.gen_window is not None:
            signals.append(window)
            gens.append(self.gen_window)
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
        sample with the next step, so each block reports up to t1 - REPORT_LAG and the run's very last steps are
        never reported (they lie after the final update, in no sample)."""
        nest = self.nest
        dt = self.config.simulation.resolution
        nest.Simulate((t1 - t0) * dt)
        records = self._read_multimeter(t1 - 1)
        sr = self.spike_recorder.get("events")
        self.spike_recorder.n_events = 0
        r0, r1 = self._reported, t1 - self.REPORT_LAG
        y = self._readout_y(records, r0, r1)
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

    def _read_multimeter(self, r1: int) -> dict[str, np.ndarray]:
        """The readouts' recordables of steps [self._recorded, r1), rows = steps (a multimeter sample of step t
        carries the stamp t + 1)."""
        dt = self.config.simulation.resolution
        mm = self.multimeter.get("events")
        self.multimeter.n_events = 0
        r0 = self._recorded
        times = np.round(np.asarray(mm["times"]) / dt).astype(np.int64) - 1  # stamp t + 1 -> step t
        senders = np.asarray(mm["senders"], np.int64) - self._first["readouts"]
        inside = (times >= r0) & (times < r1)
        records = {}
        for name in self.READOUT_RECORDABLES:
            values = np.full((r1 - r0, self.network.n_out), np.nan)
            values[times[inside] - r0, senders[inside]] = np.asarray(mm[name], np.float64)[inside]
            if np.isnan(values).any():
                raise RuntimeError(f"NEST multimeter: readout {name} missing for steps [{r0}, {r1})")
            records[name] = values
        self._recorded = r1
        return records

    def _readout_y(self, records: dict[str, np.ndarray], r0: int, r1: int) -> np.ndarray:
        """y of steps [r0, r1) from this block's records: the readouts' V_m."""
        return records["V_m"]

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
            conns = nest.GetConnections(pre, post, synapse_model=self.SYNAPSE_MODEL)
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


class NestBellecEngine(NestEngine):
    """NEST 3.10's time-driven ``_bsshslm_2020`` models, wired as NEST's bsshslm examples wire them."""

    name = "nest-bellec"
    RECURRENT_MODEL = "eprop_iaf_bsshslm_2020"
    READOUT_MODEL = "eprop_readout_bsshslm_2020"
    SYNAPSE_MODEL = "eprop_synapse_bsshslm_2020"
    FEEDBACK_MODEL = "eprop_learning_signal_connection_bsshslm_2020"
    SIGNAL_DELAY = 2  # the examples' targets start at total_offset = 4 steps
    READOUT_RECORDABLES = ("V_m", "readout_signal", "readout_signal_unnorm", "error_signal")
    #: y of step g is the readout_signal of step g + 2 (engines/bellec.py), computed from readout_signal_unnorm of
    #: step g + 1, which the multimeter delivers in step g + 2
    REPORT_LAG = 2

    def __init__(self, config: NetworkConfig):
        super().__init__(config)
        self.loss = config.bellec.loss
        #: set to keep the multimeter's per-step readout_signal and error_signal for comparisons: signals()
        self.record_signals = False
        self._signals: dict[str, list[np.ndarray]] = {"readout_signal": [], "error_signal": []}

    def _kernel_params(self) -> dict:
        cfg = self.config
        dt = cfg.simulation.resolution
        steps = cfg.bellec_steps()
        # eprop_update_interval first: NEST checks the learning window against the interval in force
        return {**super()._kernel_params(), "eprop_update_interval": steps["update_interval"] * dt,
                "eprop_learning_window": steps["learning_window"] * dt,
                "eprop_reset_neurons_on_update": cfg.bellec.eprop_reset_neurons_on_update}

    def _create_window_generator(self):
        return None  # the learning window is the kernel's eprop_learning_window

    def _connect_readout_signals(self) -> None:
        if self.config.bellec.loss == "cross_entropy":
            # connection 7 of the evidence-accumulation example: each readout's readout_signal_unnorm to the others
            self.nest.Connect(self.out, self.out, {"rule": "all_to_all", "allow_autapses": False},
                              {"synapse_model": "rate_connection_delayed", "delay": self.config.simulation.resolution,
                               "receptor_type": 1, "weight": 1.0})

    def eta_for(self, learn: bool) -> float:
        return self.config.bellec_optimizer_resolved().eta if learn else 0.0

    def _synapse_defaults(self) -> dict:
        opt = self.config.bellec_optimizer_resolved()  # eprop_synapse_bsshslm_2020's own optimizer
        optimizer = {"type": opt.type, "batch_size": opt.batch_size, "Wmin": opt.Wmin, "Wmax": opt.Wmax}
        if opt.type == "adam":
            optimizer.update(beta_1=opt.beta_1, beta_2=opt.beta_2, epsilon=opt.epsilon)
        return {"optimizer": optimizer, "average_gradient": self.config.bellec.average_gradient}

    def _synapse_params(self) -> dict:
        return {"tau_m_readout": self.config.bellec_tau_m_readout()}

    def _recurrent_params(self) -> dict:
        rec = self.config.recurrent
        params = {key: getattr(rec, key) for key in (
            "C_m", "E_L", "V_m", "V_th", "I_e", "t_ref", "tau_m", "c_reg", "f_target",
            "surrogate_gradient_function", "surrogate_gradient_height", "surrogate_gradient_width")}
        params["regular_spike_arrival"] = self.config.bellec.recurrent_regular_spike_arrival
        # flush events (memory only, as in the event-driven models) where NEST allows them: the bsshslm neurons
        # require flush_event_send_interval >= eprop_update_interval; shorter intervals leave them off
        interval_ms = self.config.bellec_steps()["update_interval"] * self.config.simulation.resolution
        if interval_ms <= rec.flush_event_send_interval < math.inf:
            params["flush_event_send_interval"] = rec.flush_event_send_interval
        if rec.V_min != NO_LOWER_BOUND:
            params["V_min"] = rec.V_min
        return params

    def _readout_params(self) -> dict:
        out = self.config.readout
        params = {key: getattr(out, key) for key in ("C_m", "E_L", "V_m", "I_e", "tau_m")}
        params.update(loss=self.config.bellec.loss,
                      regular_spike_arrival=self.config.bellec.readout_regular_spike_arrival)
        if out.V_min != NO_LOWER_BOUND:
            params["V_min"] = out.V_min
        return params

    def _readout_y(self, records: dict[str, np.ndarray], r0: int, r1: int) -> np.ndarray:
        """y[g] = the readout_signal of step g + 2 before the learning window: from readout_signal_unnorm of step
        g + 1 (this block's records start at step r0 + 1). Cross-entropy: NEST's softmax, normaliser summed as
        the readout does (the others' values in node-id order, then its own)."""
        if self.record_signals:
            self._signals["readout_signal"].append(records["readout_signal"])
            self._signals["error_signal"].append(records["error_signal"])
        unnorm = records["readout_signal_unnorm"]
        first = self._recorded - unnorm.shape[0]
        u = unnorm[r0 + 1 - first: r1 + 1 - first]
        if self.loss != "cross_entropy":
            return u.copy()
        y = np.empty_like(u)
        n_out = u.shape[1]
        for row in range(u.shape[0]):
            for k in range(n_out):
                norm = 0.0
                for k2 in range(n_out):
                    if k2 != k:
                        norm += 1.0 * float(u[row, k2])
                y[row, k] = u[row, k] / (norm + u[row, k])
        return y

    def signals(self) -> dict[str, np.ndarray]:
        """Per-step readout_signal and error_signal as NEST's multimeter recorded them (record_signals must have
        been set), rows = steps from 0."""
        return {name: np.concatenate(blocks) if blocks else np.zeros((0, self.config.network.n_out))
                for name, blocks in self._signals.items()}
