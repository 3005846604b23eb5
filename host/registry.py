"""Engine registry: a name on the command line -> the class that implements it, imported only when asked for
(so that ``host`` imports nothing heavier than numpy until an engine is chosen, e.g. on a PYNQ board)."""

from __future__ import annotations

from importlib import import_module

__all__ = ["ENGINES", "create_engine", "engine_names"]

#: name -> (module, class, what it is)
ENGINES: dict[str, tuple[str, str, str]] = {
    "golden": ("golden_model.engines.golden", "GoldenEngine",
               "float64 event-driven e-prop, bit-identical to NEST 3.10 (Numba)"),
    "timedriven": ("golden_model.engines.timedriven", "TimeDrivenEngine",
                   "the golden engine's e-prop with every synapse updated every step (baseline; no cutoff)"),
    "nest": ("golden_model.engines.nest_engine", "NestEngine",
             "NEST 3.10 itself (parity oracle; MPI scale-out)"),
    "fixed": ("golden_model.engines.fixed", "FixedEngine",
              "integer arithmetic of the hardware contract: what the RTL computes, bit for bit"),
    "bellec": ("golden_model.engines.bellec", "BellecEngine",
               "time-driven e-prop of Bellec et al. 2020, bit-identical to NEST 3.10's _bsshslm_2020 models (Numba)"),
    "nest-bellec": ("golden_model.engines.nest_engine", "NestBellecEngine",
                    "NEST 3.10's _bsshslm_2020 models (the bellec engine's parity oracle)"),
    "rtl": ("host.board.engine", "RtlEngine",
            "the simulated board: the Verilated gateware behind the PYNQ driver's calls (== fixed, bit for bit)"),
    "pynq": ("host.board.engine", "PynqEngine",
             "a PYNQ board running the accelerator's bitstream (--bitstream PATH.bit), through the same driver"),
}


def engine_names() -> list[str]:
    return list(ENGINES)


def create_engine(name: str, config, **options):
    """An engine for `config`; `options` go to its constructor (e.g. the pynq engine's bitstream)."""
    if name not in ENGINES:
        raise ValueError(f"unknown engine {name!r} (known: {', '.join(ENGINES)})")
    module, cls, _ = ENGINES[name]
    return getattr(import_module(module), cls)(config, **options)
