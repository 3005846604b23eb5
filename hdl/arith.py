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


def _format_limits(lo: int, hi: int):
    """(width, signed) when [lo, hi] is exactly the range of a two's-complement or unsigned integer of that width,
    else None."""
    if lo == 0 and hi > 0 and (hi + 1) & hi == 0:
        return hi.bit_length(), False
    if lo < 0 and hi == -lo - 1 and (hi + 1) & hi == 0:
        return hi.bit_length() + 1, True
    return None


def _fits(x: Value, width: int, is_signed: bool) -> Value | None:
    """1 when x lies in the range of a `width`-bit integer (of `is_signed`), from x's top bits alone: an AND/OR of
    a few bits instead of two compares (carry chains as long as x, one behind the adder that makes x). None when
    x is no wider than that range needs (it always fits, or the compares are as cheap)."""
    xw = x.shape().width
    if is_signed:
        if xw <= width:
            return None
        top = x[width - 1:]  # the sign bit of the narrow value and every bit above it: all equal
        return (top == 0) | (top == (1 << len(top)) - 1) if x.shape().signed else top == 0
    if xw <= width and not x.shape().signed:
        return None
    return x[width:] == 0 if xw > width else ~x[-1]


def _fits_range(x: Value, lo: int, hi: int) -> Value | None:
    """_fits for [lo, hi] when that is a whole integer range, else None (the caller compares)."""
    limits = _format_limits(lo, hi)
    return _fits(x, *limits) if limits else None


def saturate(x: Value, lo: int, hi: int, shape: Shape) -> Value:
    """x clipped to [lo, hi], as a value of exactly `shape` (the format's shape)."""
    if x.shape().width > shape.width:  # within [lo, hi] the low bits are the value
        inner = x[: shape.width]
        inner = inner.as_signed() if shape.signed else inner.as_unsigned()
    else:  # narrower: extended by its own signedness
        inner = x
    fits = _fits_range(x, lo, hi)
    if fits is not None:  # [lo, hi] is a whole integer range: in it, or past the end on x's side of 0
        neg = x[-1] if x.shape().signed else Const(0)
        return Mux(fits, inner, Mux(neg, Const(lo, shape), Const(hi, shape)))
    return Mux(x > hi, Const(hi, shape), Mux(x < lo, Const(lo, shape), inner))


def sat_flag(x: Value, lo: int, hi: int) -> Value:
    """1 when x lies outside [lo, hi] (a saturation flag's raise condition)."""
    fits = _fits_range(x, lo, hi)
    if fits is not None:
        return ~fits
    return (x > hi) | (x < lo)
