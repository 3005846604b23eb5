"""Arithmetic of the hardware contract as Amaranth expressions (``golden_model/hw_contract.py``).

Each helper builds the exact integer operation the fixed-point engine (``engines/fixed_kernels.py``) performs,
so that the two agree bit for bit: round-to-nearest-ties-to-even right shifts, saturation to a format, and
format conversions. Widths are made explicit so nothing wraps silently.
"""

from __future__ import annotations

from amaranth.hdl import Const, Mux, Shape, Value, signed, unsigned

__all__ = ["round_shift", "saturate", "sat_flag", "fmt_shape", "sext"]


def fmt_shape(q) -> Shape:
    """The Amaranth shape of a hw_contract.QFormat."""
    return signed(q.bits) if q.signed else unsigned(q.bits)


def sext(v: Value, width: int) -> Value:
    """v as a signed value of `width` bits (sign- or zero-extended by its own signedness)."""
    return v.as_signed() if v.shape().signed else v.as_unsigned()


def round_shift(x: Value, s: int) -> Value:
    """round(x / 2**s), ties to even, for a constant s (s <= 0: exact left shift). Matches
    fixed_kernels.rshift_round: (x + 2**(s-1) - 1 + bit_s(x)) >> s, arithmetic."""
    if s <= 0:
        return x << (-s)
    bias = Const((1 << (s - 1)) - 1, unsigned(max(1, s)))
    lsb = x[s].as_unsigned() if s < x.shape().width else x[-1].as_unsigned()
    total = x + bias + lsb  # exact: Amaranth widens the sum
    return total >> s  # arithmetic when x is signed


def saturate(x: Value, lo: int, hi: int, shape: Shape) -> Value:
    """x clipped to [lo, hi], as a value of exactly `shape` (the format's shape)."""
    if x.shape().width > shape.width:  # within [lo, hi] the low bits are the value
        inner = x[: shape.width]
        inner = inner.as_signed() if shape.signed else inner.as_unsigned()
    else:  # narrower: extended by its own signedness
        inner = x
    return Mux(x > hi, Const(hi, shape), Mux(x < lo, Const(lo, shape), inner))


def sat_flag(x: Value, lo: int, hi: int) -> Value:
    """1 when x lies outside [lo, hi] (a saturation flag's raise condition)."""
    return (x > hi) | (x < lo)
