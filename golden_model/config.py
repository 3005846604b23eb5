"""NetworkConfig: one TOML file describes the network, its learning rule and its task.

Sections and keys use NEST 3.10's own parameter names (``eprop_iaf``, ``eprop_readout``, the ``eprop_synapse``
optimizer), so a preset reads like the NEST example it reproduces:

    [network]     sizes, connection probabilities, seed, the weight-initialisation recipe
    [recurrent]   eprop_iaf parameters (C_m, tau_m, V_th, ..., surrogate_gradient_*, eprop_isi_trace_cutoff)
    [readout]     eprop_readout parameters
    [optimizer]   eprop_synapse optimizer (type, eta, batch_size, optimize_each_step, beta_1, ..., Wmin, Wmax)
    [task]        what the network learns (nmnist, sine, patterns) and its time structure
    [simulation]  resolution and NEST's number of virtual processes
    [training]    default epochs and sample counts for ``eprop train``
    [bellec]      what only the time-driven ``_bsshslm_2020`` models (engines bellec, nest-bellec) read: the
                  kernel's eprop_update_interval / eprop_learning_window / eprop_reset_neurons_on_update, the
                  readout's loss, the synapse's tau_m_readout and average_gradient, regular_spike_arrival
    [bellec_optimizer]  the ``eprop_synapse_bsshslm_2020`` optimizer where it differs from [optimizer]

Everything is validated on load: an unknown section or key, or a value outside its domain, raises
:class:`ConfigError` naming the section, the key and the value.
"""

from __future__ import annotations

import dataclasses
import math
try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10 (the PYNQ 3.1 board image): tomllib's origin, the tomli package
    import tomli as tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

__all__ = [
    "ConfigError",
    "NetworkConfig",
    "PRESETS",
    "SURROGATE_FUNCTIONS",
    "load_config",
    "load_preset",
    "parse_override",
]

#: NEST 3.10's surrogate gradients (``eprop_archiving_node_recurrent_impl.h``), in the order of its table.
SURROGATE_FUNCTIONS = ("piecewise_linear", "exponential", "fast_sigmoid_derivative", "arctan_derivative")
OPTIMIZERS = ("gradient_descent", "adam")
#: ``eprop_readout_bsshslm_2020``'s losses (the event-driven ``eprop_readout`` has only the first)
LOSSES = ("mean_squared_error", "cross_entropy")
INIT_RECIPES = ("nmnist", "sine")
TASKS = ("nmnist", "sine", "patterns")
PRESETS = ("nmnist", "sine", "tiny")

#: NEST's V_min default, -DBL_MAX ("no lower bound").
NO_LOWER_BOUND = -1.7976931348623157e308


class ConfigError(ValueError):
    """A configuration key or value that cannot be used; the message names section, key and value."""


def _where(section: str, key: str, value: Any) -> str:
    return f"config [{section}] {key} = {value!r}"


@dataclass(frozen=True)
class NetworkSection:
    n_in: int = 1196
    n_rec: int = 150
    n_out: int = 10
    #: connection probabilities (fraction of possible synapses that exist): input->rec, rec->rec, rec->readout
    p_in: float = 0.25
    p_rec: float = 0.01
    p_out: float = 1.0
    #: seed of the weight draws (NEST's examples: numpy seed 1)
    seed: int = 1
    #: weight-initialisation recipe: the draws, scalings and masks of NEST's N-MNIST or sine-wave example
    init: str = "nmnist"
    #: dtype the recipe draws weights in (the sine-wave example uses float32 "to reproduce TF results")
    weight_dtype: str = "float64"
    recurrent_model: str = "eprop_iaf"


@dataclass(frozen=True)
class RecurrentSection:
    """``eprop_iaf`` parameters, NEST names and units (pF, mV, ms, pA, Hz)."""

    C_m: float = 250.0
    E_L: float = -70.0
    V_m: float = -70.0
    V_th: float = -55.0
    V_min: float = NO_LOWER_BOUND
    I_e: float = 0.0
    t_ref: float = 2.0
    tau_m: float = 10.0
    c_reg: float = 0.0
    f_target: float = 10.0
    kappa: float = 0.97
    kappa_reg: float = 0.97
    surrogate_gradient_function: str = "piecewise_linear"
    surrogate_gradient_height: float = 0.3
    surrogate_gradient_width: float = 1.0
    eprop_isi_trace_cutoff: float = math.inf
    #: NEST 3.10 flush events (memory only: they do not change any number); inf = off
    flush_event_send_interval: float = math.inf


@dataclass(frozen=True)
class ReadoutSection:
    """``eprop_readout`` parameters (mean-squared-error readout)."""

    C_m: float = 250.0
    E_L: float = 0.0
    V_m: float = 0.0
    V_min: float = NO_LOWER_BOUND
    I_e: float = 0.0
    tau_m: float = 10.0
    eprop_isi_trace_cutoff: float = math.inf


@dataclass(frozen=True)
class OptimizerSection:
    """The ``eprop_synapse`` common ``optimizer`` dictionary."""

    type: str = "gradient_descent"
    eta: float = 1e-4
    batch_size: int = 1
    optimize_each_step: bool = True
    beta_1: float = 0.9
    beta_2: float = 0.999
    epsilon: float = 1e-7
    Wmin: float = -100.0
    Wmax: float = 100.0


@dataclass(frozen=True)
class TaskSection:
    #: nmnist (event files), sine (NEST's sine-wave regression), patterns (synthetic frozen-Poisson classes)
    name: str = "nmnist"
    #: time steps per sample; consecutive samples follow each other without reset, as in NEST's examples
    sequence: int = 300
    #: the last `learning_window` steps of each sample carry the error (NEST's learning-window generator)
    learning_window: int = 10
    #: samples per iteration: the unit of the per-iteration loss and accuracy (NEST's group_size)
    group_size: int = 100
    #: nmnist: microseconds mapped onto `sequence` steps (longest recording in N-MNIST: 336040 us)
    time_max_us: int = 336040
    #: sine / patterns: per-step spike probability of the frozen Poisson inputs
    input_spike_prob: float = 0.05
    #: sine: periods (steps) of the superimposed sines of the target
    periods: tuple[int, ...] = (1000, 500, 333, 200)
    #: fraction of each sample's input events kept (each event independently, seeded per sample): sweeps of input
    #: activity on the same samples. 1 keeps every event (no random draw at all).
    event_keep_fraction: float = 1.0
    #: seed of the event thinning (with the sample id: every engine and epoch sees the same thinned sample)
    event_thinning_seed: int = 0


@dataclass(frozen=True)
class SimulationSection:
    #: ms; delays of e-prop connections are one step and the examples use 1 ms
    resolution: float = 1.0
    #: NEST's total_num_virtual_procs. It also fixes the order in which NEST sums the spikes arriving at a
    #: neuron in one step; the golden engine sums in the same order so the two agree bit for bit.
    total_num_virtual_procs: int = 2


@dataclass(frozen=True)
class FixedSection:
    """The fixed-point formats and rounding of the hardware contract (``golden_model/hw_contract.py``): ``sI.F``
    is signed with I integer and F fractional bits, ``uI.F`` unsigned."""

    weight: str = "s3.20"
    e_bar: str = "u11.9"
    z_bar: str = "u7.9"
    membrane: str = "s6.17"
    surrogate: str = "u0.16"
    #: the history's Lambda = L + (1 - kappa_reg) FR (see hw_contract)
    learning_signal: str = "s10.9"
    firing_rate: str = "u1.17"
    error: str = "s2.13"
    feedback: str = "s9.8"
    #: width of the exact accumulators (the walk's gradient, a step's synaptic input)
    gradient_bits: int = 48
    #: mantissa bits of the constants (decay factors, c_reg, ...): one DSP48 operand
    constant_bits: int = 18
    #: mantissa bits of the learning rate
    eta_bits: int = 16
    #: rounding of the weight update: nearest_even or stochastic (every other product: nearest_even)
    weight_rounding: str = "nearest_even"
    #: entries of the surrogate-gradient ROM (all surrogates but piecewise_linear)
    surrogate_lut_size: int = 1024
    #: Adam only (optimizer.type = adam): the first moment m per synapse, in gradient units
    adam_m: str = "s14.5"
    #: Adam only: the second moment, stored as its square root sigma = sqrt(v) (gradient units, see hw_contract)
    adam_v: str = "u14.6"
    #: Adam only: index bits of the reciprocal-square-root table (3/4 of 2**bits entries are used)
    adam_lut_bits: int = 10
    #: Adam only: entries of the bias-correction ROM; a group's optimizer calls beyond it use the last entry
    adam_bias_steps: int = 4096


@dataclass(frozen=True)
class BellecSection:
    """The time-driven e-prop of Bellec et al. 2020 as NEST 3.10's ``eprop_iaf_bsshslm_2020``,
    ``eprop_readout_bsshslm_2020`` and ``eprop_synapse_bsshslm_2020`` compute it (engines ``bellec`` and
    ``nest-bellec``; the event-driven engines ignore this section). The neuron and optimizer parameters these
    models share with the event-driven ones are read from [recurrent], [readout] and [optimizer]; of those,
    kappa, kappa_reg, eprop_isi_trace_cutoff, flush_event_send_interval and optimize_each_step do not exist in
    the ``_bsshslm_2020`` models and are not used.

    NEST's own names. A value of 0 for the three durations means "follow the task" (see the fields), so that
    ``--set task.sequence=...`` keeps one update interval per sample.
    """

    #: kernel ``eprop_update_interval`` (ms): weights change once per interval. 0 = the task's sequence, which
    #: with the project's timeline makes every interval exactly one sample (see engines/bellec.py)
    eprop_update_interval: float = 0.0
    #: kernel ``eprop_learning_window`` (ms): the error is non-zero only in the last steps of each interval.
    #: 0 = the task's learning_window
    eprop_learning_window: float = 0.0
    #: kernel ``eprop_reset_neurons_on_update``: membrane, refractoriness and spike state reset at each interval start
    eprop_reset_neurons_on_update: bool = True
    #: ``eprop_readout_bsshslm_2020`` ``loss``: mean_squared_error or cross_entropy (softmax over the readouts)
    loss: str = "mean_squared_error"
    #: ``eprop_synapse_bsshslm_2020`` ``tau_m_readout`` (ms): kappa = exp(-dt / tau_m_readout) filters the
    #: eligibility trace. 0 = the readout's tau_m (what NEST's examples pass "for technical reasons")
    tau_m_readout: float = 0.0
    #: ``eprop_synapse_bsshslm_2020`` ``average_gradient``: divide each interval's gradient by the learning window
    average_gradient: bool = False
    #: ``regular_spike_arrival`` of ``eprop_iaf_bsshslm_2020``: True: input enters with weight 1 (zeta = 1), False:
    #: with zeta = 1 - exp(-dt / tau_m)
    recurrent_regular_spike_arrival: bool = True
    #: ``regular_spike_arrival`` of ``eprop_readout_bsshslm_2020``
    readout_regular_spike_arrival: bool = True


@dataclass(frozen=True)
class BellecOptimizerSection:
    """The ``eprop_synapse_bsshslm_2020`` common ``optimizer`` dictionary. NEST keeps it apart from
    ``eprop_synapse``'s (every synapse model has its own common properties), so a config can train the Bellec
    engines differently from the event-driven ones. A key left unset takes its value from [optimizer];
    ``optimize_each_step`` does not exist here (the bsshslm synapse optimizes once per update interval)."""

    type: str | None = None
    eta: float | None = None
    batch_size: int | None = None
    beta_1: float | None = None
    beta_2: float | None = None
    epsilon: float | None = None
    Wmin: float | None = None
    Wmax: float | None = None


@dataclass(frozen=True)
class TrainingSection:
    epochs: int = 1
    #: 0 = all available samples
    train_samples: int = 0
    test_samples: int = 0


SECTIONS: dict[str, type] = {
    "network": NetworkSection,
    "recurrent": RecurrentSection,
    "readout": ReadoutSection,
    "optimizer": OptimizerSection,
    "task": TaskSection,
    "simulation": SimulationSection,
    "training": TrainingSection,
    "fixed": FixedSection,
    "bellec": BellecSection,
    "bellec_optimizer": BellecOptimizerSection,
}
#: sections whose unset (None) keys take the value of another section's key: types and checks come from there
INHERITS: dict[str, type] = {"bellec_optimizer": OptimizerSection}


@dataclass(frozen=True)
class NetworkConfig:
    network: NetworkSection = field(default_factory=NetworkSection)
    recurrent: RecurrentSection = field(default_factory=RecurrentSection)
    readout: ReadoutSection = field(default_factory=ReadoutSection)
    optimizer: OptimizerSection = field(default_factory=OptimizerSection)
    task: TaskSection = field(default_factory=TaskSection)
    simulation: SimulationSection = field(default_factory=SimulationSection)
    training: TrainingSection = field(default_factory=TrainingSection)
    fixed: FixedSection = field(default_factory=FixedSection)
    bellec: BellecSection = field(default_factory=BellecSection)
    bellec_optimizer: BellecOptimizerSection = field(default_factory=BellecOptimizerSection)
    #: where the config came from (preset name or file), for reports
    source: str = "defaults"

    # ---- construction -------------------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "dict") -> "NetworkConfig":
        sections = {}
        for name, values in data.items():
            if name not in SECTIONS:
                raise ConfigError(f"config: unknown section [{name}] (known: {', '.join(SECTIONS)})")
            if not isinstance(values, dict):
                raise ConfigError(f"config: [{name}] must be a table of keys, got {values!r}")
            sections[name] = _build_section(name, values)
        config = cls(**sections, source=source)
        config.validate()
        return config

    def to_dict(self) -> dict[str, dict[str, Any]]:
        out = {}
        for name in SECTIONS:
            section = dataclasses.asdict(getattr(self, name))
            out[name] = {k: (list(v) if isinstance(v, tuple) else v) for k, v in section.items()}
        return out

    def with_overrides(self, overrides: list[str] | dict[str, Any]) -> "NetworkConfig":
        """Apply ``section.key=value`` overrides (strings as on the command line, or a dict)."""
        if isinstance(overrides, dict):
            items = list(overrides.items())
        else:
            items = [parse_override(text) for text in overrides]
        data = self.to_dict()
        for dotted, value in items:
            section, _, key = dotted.partition(".")
            if not key:
                raise ConfigError(f"override {dotted!r}: expected section.key=value")
            if section not in SECTIONS:
                raise ConfigError(f"override {dotted!r}: unknown section [{section}] (known: {', '.join(SECTIONS)})")
            data[section][key] = value
        return NetworkConfig.from_dict(data, source=f"{self.source} + overrides")

    # ---- derived quantities -------------------------------------------------------------------------------
    def steps(self, ms: float) -> int | float:
        """A duration in ms as whole steps (inf stays inf), the way NEST's Time rounds it."""
        if math.isinf(ms):
            return math.inf
        return int(round(ms / self.simulation.resolution))

    def bellec_steps(self) -> dict[str, int]:
        """The [bellec] durations in steps, with the 0 = "follow the task" defaults resolved:
        update_interval, learning_window."""
        b = self.bellec
        update = self.steps(b.eprop_update_interval) if b.eprop_update_interval else self.task.sequence
        window = self.steps(b.eprop_learning_window) if b.eprop_learning_window else self.task.learning_window
        return {"update_interval": int(update), "learning_window": int(window)}

    def bellec_optimizer_resolved(self) -> OptimizerSection:
        """The optimizer of the Bellec engines: [optimizer] with the keys [bellec_optimizer] sets."""
        changes = {k: v for k, v in dataclasses.asdict(self.bellec_optimizer).items() if v is not None}
        return dataclasses.replace(self.optimizer, **changes)

    def bellec_tau_m_readout(self) -> float:
        """``tau_m_readout`` of the e-prop synapses (ms), 0 resolved to the readout's tau_m."""
        return self.bellec.tau_m_readout or self.readout.tau_m

    # ---- validation ---------------------------------------------------------------------------------------
    def validate(self) -> None:
        net, rec, out, opt, task, sim = (self.network, self.recurrent, self.readout, self.optimizer,
                                         self.task, self.simulation)
        for key in ("n_in", "n_rec", "n_out"):
            _require(getattr(net, key) >= 1, "network", key, getattr(net, key), "must be a positive integer")
        for key in ("p_in", "p_rec", "p_out"):
            value = getattr(net, key)
            _require(0.0 <= value <= 1.0, "network", key, value, "is a probability and must lie in [0, 1]")
        _require(net.init in INIT_RECIPES, "network", "init", net.init, f"must be one of {INIT_RECIPES}")
        _require(net.weight_dtype in ("float64", "float32"), "network", "weight_dtype", net.weight_dtype,
                 "must be float64 or float32")
        _require(net.recurrent_model == "eprop_iaf", "network", "recurrent_model", net.recurrent_model,
                 "only eprop_iaf is implemented")
        _require(net.seed >= 0, "network", "seed", net.seed, "must be >= 0")

        for name, section in (("recurrent", rec), ("readout", out)):
            _require(section.tau_m > 0, name, "tau_m", section.tau_m, "must be > 0")
            _require(section.C_m > 0, name, "C_m", section.C_m, "must be > 0")
            _require(section.eprop_isi_trace_cutoff >= 0, name, "eprop_isi_trace_cutoff",
                     section.eprop_isi_trace_cutoff, "must be >= 0 (inf = no cutoff)")
        _require(rec.V_th >= rec.V_min, "recurrent", "V_th", rec.V_th, f"must be >= V_min ({rec.V_min})")
        _require(rec.t_ref >= 0, "recurrent", "t_ref", rec.t_ref, "must be >= 0")
        _require(rec.c_reg >= 0, "recurrent", "c_reg", rec.c_reg, "must be >= 0")
        _require(rec.f_target >= 0, "recurrent", "f_target", rec.f_target, "must be >= 0")
        for key in ("kappa", "kappa_reg"):
            _require(0.0 <= getattr(rec, key) <= 1.0, "recurrent", key, getattr(rec, key), "must lie in [0, 1]")
        _require(rec.surrogate_gradient_function in SURROGATE_FUNCTIONS, "recurrent",
                 "surrogate_gradient_function", rec.surrogate_gradient_function,
                 f"unknown surrogate; NEST 3.10 has {', '.join(SURROGATE_FUNCTIONS)}")
        for key in ("surrogate_gradient_height", "surrogate_gradient_width"):
            _require(getattr(rec, key) > 0, "recurrent", key, getattr(rec, key), "must be > 0")
        _require(rec.flush_event_send_interval > 0, "recurrent", "flush_event_send_interval",
                 rec.flush_event_send_interval, "must be > 0 (inf = off)")

        _validate_optimizer("optimizer", opt)
        _validate_optimizer("bellec_optimizer", self.bellec_optimizer_resolved())

        _require(task.name in TASKS, "task", "name", task.name, f"must be one of {TASKS}")
        _require(task.sequence >= 1, "task", "sequence", task.sequence, "must be a positive number of steps")
        _require(1 <= task.learning_window <= task.sequence, "task", "learning_window", task.learning_window,
                 f"must lie in [1, sequence={task.sequence}]")
        _require(task.group_size >= 1, "task", "group_size", task.group_size, "must be >= 1")
        _require(task.time_max_us >= 1, "task", "time_max_us", task.time_max_us, "must be >= 1")
        _require(0.0 <= task.input_spike_prob <= 1.0, "task", "input_spike_prob", task.input_spike_prob,
                 "is a probability and must lie in [0, 1]")
        _require(all(p >= 1 for p in task.periods), "task", "periods", task.periods, "must be positive")
        _require(0.0 < task.event_keep_fraction <= 1.0, "task", "event_keep_fraction", task.event_keep_fraction,
                 "must lie in (0, 1] (1 keeps every event)")
        _require(task.event_thinning_seed >= 0, "task", "event_thinning_seed", task.event_thinning_seed,
                 "must be >= 0")
        if task.name == "nmnist":
            _require(net.n_in == 1196, "network", "n_in", net.n_in,
                     "must be 1196 for the nmnist task (2312 pixels x polarities minus NEST's 1116-pixel blocklist)")
            _require(net.n_out == 10, "network", "n_out", net.n_out, "must be 10 for the nmnist task")
        if task.name == "sine":
            _require(net.n_out == 1, "network", "n_out", net.n_out, "must be 1 for the sine task")

        _require(sim.resolution == 1.0, "simulation", "resolution", sim.resolution,
                 "only 1.0 ms is supported (e-prop's one-step delays and f_target units assume dt = 1 ms)")
        _require(sim.total_num_virtual_procs >= 1, "simulation", "total_num_virtual_procs",
                 sim.total_num_virtual_procs, "must be >= 1")
        t_ref_steps = rec.t_ref / sim.resolution
        _require(abs(t_ref_steps - round(t_ref_steps)) < 1e-9, "recurrent", "t_ref", rec.t_ref,
                 "must be a whole number of steps")
        fx = self.fixed
        from .hw_contract import QUANTITIES, QFormat  # noqa: PLC0415

        for key in QUANTITIES:
            if hasattr(fx, key):
                try:
                    QFormat.parse(getattr(fx, key))
                except ValueError as exc:
                    raise ConfigError(f"{_where('fixed', key, getattr(fx, key))}: {exc}") from None
        _require(fx.weight_rounding in ("nearest_even", "stochastic"), "fixed", "weight_rounding",
                 fx.weight_rounding, "must be nearest_even or stochastic")
        _require(16 <= fx.gradient_bits <= 62, "fixed", "gradient_bits", fx.gradient_bits, "must lie in [16, 62]")
        _require(4 <= fx.constant_bits <= 30, "fixed", "constant_bits", fx.constant_bits, "must lie in [4, 30]")
        _require(4 <= fx.eta_bits <= 24, "fixed", "eta_bits", fx.eta_bits, "must lie in [4, 24]")
        _require(fx.surrogate_lut_size >= 2, "fixed", "surrogate_lut_size", fx.surrogate_lut_size, "must be >= 2")
        _require(4 <= fx.adam_lut_bits <= 14, "fixed", "adam_lut_bits", fx.adam_lut_bits, "must lie in [4, 14]")
        _require(1 <= fx.adam_bias_steps <= 1 << 16, "fixed", "adam_bias_steps", fx.adam_bias_steps,
                 "must lie in [1, 65536]")
        bel = self.bellec
        for key in ("eprop_update_interval", "eprop_learning_window"):
            value = getattr(bel, key)
            _require(value == 0 or (value >= sim.resolution and not math.isinf(value)), "bellec", key, value,
                     f"must be 0 (follow the task) or a duration >= the resolution ({sim.resolution} ms)")
            if value:
                _require(abs(value / sim.resolution - round(value / sim.resolution)) < 1e-9, "bellec", key, value,
                         "must be a whole number of steps")
        resolved = self.bellec_steps()
        _require(resolved["learning_window"] <= resolved["update_interval"], "bellec", "eprop_learning_window",
                 bel.eprop_learning_window, f"resolves to {resolved['learning_window']} steps, more than the "
                 f"update interval ({resolved['update_interval']} steps; NEST requires "
                 "eprop_learning_window <= eprop_update_interval)")
        _require(bel.loss in LOSSES, "bellec", "loss", bel.loss, f"must be one of {LOSSES}")
        _require(bel.tau_m_readout >= 0 and not math.isinf(bel.tau_m_readout), "bellec", "tau_m_readout",
                 bel.tau_m_readout, "must be > 0 (or 0: the readout's tau_m)")

        tr = self.training
        _require(tr.epochs >= 1, "training", "epochs", tr.epochs, "must be >= 1")
        _require(tr.train_samples >= 0, "training", "train_samples", tr.train_samples, "must be >= 0")
        _require(tr.test_samples >= 0, "training", "test_samples", tr.test_samples, "must be >= 0")


def _validate_optimizer(section: str, opt: OptimizerSection) -> None:
    _require(opt.type in OPTIMIZERS, section, "type", opt.type, f"must be one of {OPTIMIZERS}")
    _require(opt.eta >= 0, section, "eta", opt.eta, "must be >= 0")
    _require(opt.batch_size >= 1, section, "batch_size", opt.batch_size, "must be >= 1")
    _require(opt.Wmin <= opt.Wmax, section, "Wmin", opt.Wmin, f"must be <= Wmax ({opt.Wmax})")
    for key in ("beta_1", "beta_2"):
        _require(0.0 <= getattr(opt, key) < 1.0, section, key, getattr(opt, key), "must lie in [0, 1)")
    _require(opt.epsilon >= 0, section, "epsilon", opt.epsilon, "must be >= 0")


def _require(ok: bool, section: str, key: str, value: Any, why: str) -> None:
    if not ok:
        raise ConfigError(f"{_where(section, key, value)}: {why}")


def _coerce(section: str, key: str, value: Any, default: Any) -> Any:
    """Coerce a TOML/override value to the type of the field's default, refusing what does not fit."""
    if isinstance(default, bool):
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        raise ConfigError(f"{_where(section, key, value)}: expected true or false")
    if isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or float(value) != int(value):
            raise ConfigError(f"{_where(section, key, value)}: expected an integer")
        return int(value)
    if isinstance(default, float):
        if isinstance(value, str) and value.lower() in ("inf", "+inf", "-inf"):
            return float(value)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{_where(section, key, value)}: expected a number")
        value = float(value)
        if math.isnan(value):
            raise ConfigError(f"{_where(section, key, value)}: NaN is not a value")
        return value
    if isinstance(default, str):
        if not isinstance(value, str):
            raise ConfigError(f"{_where(section, key, value)}: expected a string")
        return value
    if isinstance(default, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{_where(section, key, value)}: expected a list")
        return tuple(_coerce(section, key, v, default[0]) for v in value)
    raise AssertionError(f"unhandled field type for [{section}] {key}")


def _build_section(name: str, values: dict[str, Any]):
    cls = SECTIONS[name]
    known = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in values.items():
        if key not in known:
            raise ConfigError(f"config [{name}]: unknown key {key!r} (known: {', '.join(known)})")
        default = known[key].default
        if default is None:  # an inheriting section: typed like the key it inherits from; None = unset
            if value is None:
                continue
            default = getattr(INHERITS[name](), key)
        kwargs[key] = _coerce(name, key, value, default)
    return cls(**kwargs)


def parse_override(text: str) -> tuple[str, Any]:
    """Parse ``section.key=value``; the value is read as a TOML value, or taken as a bare string."""
    dotted, sep, raw = text.partition("=")
    if not sep or not dotted.strip():
        raise ConfigError(f"override {text!r}: expected section.key=value")
    raw = raw.strip()
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    return dotted.strip(), value


def load_config(path: str | Path, overrides: list[str] | None = None) -> NetworkConfig:
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except OSError as exc:
        raise ConfigError(f"config file {path}: cannot read ({exc.strerror})") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path}: not valid TOML ({exc})") from exc
    config = NetworkConfig.from_dict(data, source=str(path))
    return config.with_overrides(overrides) if overrides else config


def load_preset(name: str, overrides: list[str] | None = None) -> NetworkConfig:
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r} (known: {', '.join(PRESETS)})")
    text = resources.files("golden_model.presets").joinpath(f"{name}.toml").read_text()
    config = NetworkConfig.from_dict(tomllib.loads(text), source=f"preset {name}")
    return config.with_overrides(overrides) if overrides else config
