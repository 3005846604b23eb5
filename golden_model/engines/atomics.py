"""Atomic operations on int64 array words, for the two threads of the golden engine's crew (golden_kernels,
``simulate_crew``): LLVM atomics through Numba intrinsics (Numba has none of its own).

Loads and stores are sequentially consistent (the crew's hand-shakes are Dekker-style: each thread stores its own
word, then loads the other's, and at least one of them sees the other's store), so every plain write before a
store is visible to a thread after its load of that value. The compare-and-swap is sequentially consistent too.
"""

from __future__ import annotations

import platform

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

__all__ = ["atomic_load", "atomic_store", "compare_and_swap", "relax"]

#: spins (each with the CPU's pause hint) before a waiting thread yields its core to the scheduler
SPINS_BEFORE_YIELD = 2000

_I64 = ir.IntType(64)
_X86 = platform.machine().lower() in ("x86_64", "amd64", "i686", "x86")


def _word(context, builder, array_type, array, index):
    ary = context.make_array(array_type)(context, builder, array)
    return cgutils.get_item_pointer(context, builder, array_type, ary, [index], wraparound=False)


@intrinsic
def atomic_load(typingctx, array, index):
    """array[index] (int64), sequentially consistent"""
    def codegen(context, builder, signature, args):
        ptr = _word(context, builder, signature.args[0], args[0], args[1])
        return builder.load_atomic(ptr, "seq_cst", 8)
    return types.int64(array, index), codegen


@intrinsic
def atomic_store(typingctx, array, index, value):
    """array[index] = value (int64), sequentially consistent"""
    def codegen(context, builder, signature, args):
        ptr = _word(context, builder, signature.args[0], args[0], args[1])
        builder.store_atomic(args[2], ptr, "seq_cst", 8)
        return context.get_dummy_value()
    return types.void(array, index, value), codegen


@intrinsic
def compare_and_swap(typingctx, array, index, expected, new):
    """array[index]: expected -> new, atomically; True if it was expected"""
    def codegen(context, builder, signature, args):
        ptr = _word(context, builder, signature.args[0], args[0], args[1])
        pair = builder.cmpxchg(ptr, args[2], args[3], "seq_cst", "seq_cst")
        return builder.extract_value(pair, 1)
    return types.boolean(array, index, expected, new), codegen


@intrinsic
def relax(typingctx, spins):
    """one turn of a spin wait: the CPU's pause hint, and every SPINS_BEFORE_YIELD turns sched_yield()"""
    def codegen(context, builder, signature, args):
        module = builder.module
        if _X86:
            fn = cgutils.get_or_insert_function(module, ir.FunctionType(ir.VoidType(), []), "llvm.x86.sse2.pause")
            builder.call(fn, [])
        due = builder.icmp_signed("==", builder.srem(args[0], ir.Constant(_I64, SPINS_BEFORE_YIELD)),
                                  ir.Constant(_I64, SPINS_BEFORE_YIELD - 1))
        with builder.if_then(due, likely=False):
            fn = cgutils.get_or_insert_function(module, ir.FunctionType(ir.IntType(32), []), "sched_yield")
            builder.call(fn, [])
        return context.get_dummy_value()
    return types.void(spins), codegen
