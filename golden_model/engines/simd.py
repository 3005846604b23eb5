"""The golden engine's eligibility walk, eight synapses at a time, in LLVM vector instructions.

Why this exists. Most of the golden engine's time is the walk of ``eprop_iaf::compute_gradient``: for each synapse
of a group and each history entry h of the walk,

    e        = psi[h, j] * z_bar_h
    e_bar    = kappa * e_bar + e
    e_bar_reg = kappa_reg * e_bar_reg + (1 - kappa_reg) * e
    grad    += L[h, j] * e_bar + fr[h, j] * e_bar_reg

(j the synapse's target). Numba's scalar loop runs this at the CPU's multiply throughput (about 0.75 ns per
update, README "Performance"); LLVM does not vectorise it, because j is gathered. Vector gathers measured slower
still on this CPU (three gathers per eight updates cost more than the scalar loop). So every complete tile of eight
history entries is also copied neuron-major, ``tiles[h >> 3, j, h & 7]`` (golden_kernels.build_tile): the eight
entries of one neuron are one 64-byte vector. A block of eight synapses loads its eight targets' vectors (one load
each), transposes the 8 x 8 tile in registers (entries become vectors over the eight synapses) and runs the
recurrence with the block's e_bar, e_bar_reg and gradient held in registers for the whole walk. The entries after
the last complete tile, and short walks, stay with the scalar loop on the row-major rings.

Bit-exactness. The lanes are eight independent synapses; each lane runs exactly the scalar code's operations in the
same order: IEEE multiplies and adds without fast-math flags, so no reassociation and no FMA contraction. The
shuffles of the transpose move values without touching them. Entries of a tile outside the walk, and lanes past
the block's last synapse, are computed and discarded (selects, masked stores), never written.

One shortcut, the same the scalar walk takes: a tile whose eight entries all have no learning signal
(``ls_zero``) drops the ``L * e_bar`` term (+0.0 + x equals x up to the sign of a zero, which cannot reach the
weight; golden_kernels.group_gradient). Tiles with a learning signal anywhere run NEST's full expression.

``walk_recurrent_block`` is a Numba intrinsic: it emits its LLVM IR straight into the calling kernel, so the loop,
the vectors and the transposes compile with the kernel (cached with it) and need no other compiler. On a CPU
without 512-bit vectors LLVM splits each vector operation into narrower ones; the results are the same. Numba's
on-disk cache is keyed to the source file of the cached function, golden_kernels.py, not to this one: after
editing this file remove the cached kernels (golden_model/engines/__pycache__/golden_kernels.*.nbi and .nbc), or
they keep the old code.
"""

from __future__ import annotations

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

__all__ = ["TILE", "walk_recurrent_block"]

#: history entries per tile (and synapses per block): one 64-byte vector of float64
TILE = 8

_F64 = ir.DoubleType()
_I64 = ir.IntType(64)
_I32 = ir.IntType(32)
_VF = ir.VectorType(_F64, TILE)
_VI = ir.VectorType(_I64, TILE)
_V_I32 = ir.VectorType(_I32, TILE)
#: ls_zero of a whole tile read as one 64-bit word: all eight entries flagged "no learning signal"
_ALL_QUIET = int.from_bytes(bytes([1] * TILE), "little")


def _const_i64(value: int) -> ir.Constant:
    return ir.Constant(_I64, value)


def _broadcast(builder, value):
    """a vector whose every lane is `value` (a float64 scalar)"""
    vector = builder.insert_element(ir.Constant(_VF, ir.Undefined), value, ir.Constant(_I32, 0))
    return builder.shuffle_vector(vector, ir.Constant(_VF, ir.Undefined), ir.Constant(_V_I32, [0] * TILE))


def _shuffle(builder, a, b, lanes):
    return builder.shuffle_vector(a, b, ir.Constant(_V_I32, lanes))


def _transpose(builder, rows):
    """8 x 8 transpose in three rounds of two-input shuffles: rows[l][k] -> out[k][l]"""
    pairs = []
    for i in range(0, TILE, 2):  # round 1: interleave rows 2i, 2i+1 -> even entries, odd entries
        pairs.append(_shuffle(builder, rows[i], rows[i + 1], [0, 8, 2, 10, 4, 12, 6, 14]))
        pairs.append(_shuffle(builder, rows[i], rows[i + 1], [1, 9, 3, 11, 5, 13, 7, 15]))
    quads = {}
    for base in (0, 4):  # round 2: rows base..base+3, entries par + {0, 4} and par + {2, 6}
        for par in (0, 1):
            x, y = pairs[base + par], pairs[base + 2 + par]
            quads[base, par, 0] = _shuffle(builder, x, y, [0, 1, 8, 9, 4, 5, 12, 13])
            quads[base, par, 1] = _shuffle(builder, x, y, [2, 3, 10, 11, 6, 7, 14, 15])
    out = [None] * TILE
    for par in (0, 1):  # round 3: rows 0..3 with rows 4..7
        for high in (0, 1):
            x, y = quads[0, par, high], quads[4, par, high]
            k = par + 2 * high
            out[k] = _shuffle(builder, x, y, [0, 1, 2, 3, 8, 9, 10, 11])
            out[k + 4] = _shuffle(builder, x, y, [4, 5, 6, 7, 12, 13, 14, 15])
    return out


def _lanes_below(builder, n):
    """<8 x i1>: lane l is set when l < n"""
    nv = builder.insert_element(ir.Constant(_VI, ir.Undefined), n, ir.Constant(_I32, 0))
    nv = builder.shuffle_vector(nv, ir.Constant(_VI, ir.Undefined), ir.Constant(_V_I32, [0] * TILE))
    return builder.icmp_signed("<", ir.Constant(_VI, [_const_i64(k) for k in range(TILE)]), nv)


def _masked_load(builder, ptr, mask):
    fnty = ir.FunctionType(_VF, [ptr.type, _I32, mask.type, _VF])
    fn = cgutils.get_or_insert_function(builder.module, fnty, "llvm.masked.load.v8f64.p0")
    return builder.call(fn, [ptr, ir.Constant(_I32, 8), mask, ir.Constant(_VF, [0.0] * TILE)])


def _masked_store(builder, value, ptr, mask):
    fnty = ir.FunctionType(ir.VoidType(), [_VF, ptr.type, _I32, mask.type])
    fn = cgutils.get_or_insert_function(builder.module, fnty, "llvm.masked.store.v8f64.p0")
    builder.call(fn, [value, ptr, ir.Constant(_I32, 8), mask])


def _pointer(context, builder, array_type, array, indices):
    ary = context.make_array(array_type)(context, builder, array)
    return cgutils.get_item_pointer(context, builder, array_type, ary, indices, wraparound=False)


@intrinsic
def walk_recurrent_block(typingctx, e_bar, e_bar_reg, grad, posts, q, n_lanes, hist_psi, hist_ls, hist_fr, ls_zero,
                         t_begin, t_end, mask, z_prev, z_current, z_bar, pv, kappa, kappa_reg, one_minus_kappa_reg):
    """Walk entries [t_begin, t_end) (t_end > t_begin) for synapses q .. q + n_lanes - 1 (n_lanes <= 8) of a group
    onto recurrent targets ``posts``; e_bar, e_bar_reg, grad are the group's arrays (updated in place). The
    presynaptic trace starts from (z_prev, z_current, z_bar) as in group_gradient. Histories tiled
    (n_hist // 8, n_rec, 8), ``mask`` = n_hist - 1; ls_zero (n_hist,) uint8."""
    sig = types.void(e_bar, e_bar_reg, grad, posts, q, n_lanes, hist_psi, hist_ls, hist_fr, ls_zero, t_begin, t_end,
                     mask, z_prev, z_current, z_bar, pv, kappa, kappa_reg, one_minus_kappa_reg)

    def codegen(context, builder, signature, args):
        (eb_a, ebr_a, g_a, posts_a, q_, n_, psi_a, ls_a, fr_a, lz_a, tb, te, mask_, zp0, zc0, zb0, pv_,
         kap_, kapr_, omk_) = args
        ty = signature.args
        kappa_v, kappa_reg_v, omk_v = (_broadcast(builder, x) for x in (kap_, kapr_, omk_))
        lanes = _lanes_below(builder, n_)
        p_eb = _pointer(context, builder, ty[0], eb_a, [q_])
        p_ebr = _pointer(context, builder, ty[1], ebr_a, [q_])
        p_g = _pointer(context, builder, ty[2], g_a, [q_])
        # state in allocas: LLVM promotes them to registers for the whole walk
        s_eb, s_ebr, s_g = (cgutils.alloca_once(builder, _VF) for _ in range(3))
        s_zb, s_zp, s_zc = (cgutils.alloca_once(builder, _F64) for _ in range(3))
        builder.store(_masked_load(builder, p_eb, lanes), s_eb)
        builder.store(_masked_load(builder, p_ebr, lanes), s_ebr)
        builder.store(_masked_load(builder, p_g, lanes), s_g)
        builder.store(zb0, s_zb)
        builder.store(zp0, s_zp)
        builder.store(zc0, s_zc)
        # the block's targets; lanes past the last synapse repeat it (loaded, computed, never stored)
        last = builder.sub(builder.add(q_, n_), _const_i64(1))
        targets = []
        for lane in range(TILE):
            pos = builder.add(q_, _const_i64(lane))
            pos = builder.select(builder.icmp_signed(">", pos, last), last, pos)
            j = builder.load(_pointer(context, builder, ty[3], posts_a, [pos]))
            if j.type != _I64:
                j = builder.sext(j, _I64) if ty[3].dtype.signed else builder.zext(j, _I64)
            targets.append(j)
        first = builder.ashr(tb, _const_i64(3))
        last_tile = builder.ashr(builder.sub(te, _const_i64(1)), _const_i64(3))
        n_tiles = builder.sub(last_tile, builder.sub(first, _const_i64(1)))
        tile_mask = builder.ashr(mask_, _const_i64(3))
        with cgutils.for_range(builder, n_tiles) as loop:
            tile = builder.add(first, loop.index)
            entry0 = builder.shl(tile, _const_i64(3))
            k_lo = builder.sub(tb, entry0)  # entries k_lo <= k < k_hi of this tile are walked
            k_hi = builder.sub(te, entry0)
            ring_tile = builder.and_(tile, tile_mask)
            flags_at = _pointer(context, builder, ty[9], lz_a, [builder.shl(ring_tile, _const_i64(3))])
            flags = builder.load(builder.bitcast(flags_at, _I64.as_pointer()), align=1)
            quiet = builder.icmp_unsigned("==", flags, _const_i64(_ALL_QUIET))
            partial = builder.or_(builder.icmp_signed(">", k_lo, _const_i64(0)),
                                  builder.icmp_signed("<", k_hi, _const_i64(TILE)))

            def load_tile(array_type, array):
                starts = [_pointer(context, builder, array_type, array, [ring_tile, j, _const_i64(0)]) for j in targets]
                rows = [builder.load(builder.bitcast(start, _VF.as_pointer()), align=8) for start in starts]
                return _transpose(builder, rows)

            def walk_tile(with_signal: bool, whole: bool):
                psi = load_tile(ty[6], psi_a)
                fr = load_tile(ty[8], fr_a)
                ls = load_tile(ty[7], ls_a) if with_signal else None
                eb, ebr, g = builder.load(s_eb), builder.load(s_ebr), builder.load(s_g)
                zb, zp, zc = builder.load(s_zb), builder.load(s_zp), builder.load(s_zc)
                for k in range(TILE):
                    # the presynaptic trace (group_gradient's z pipeline), then the eight synapses
                    z = zp
                    n_zp, n_zc = zc, ir.Constant(_F64, 0.0)
                    n_zb = builder.fadd(builder.fmul(pv_, zb), z)
                    e = builder.fmul(psi[k], _broadcast(builder, n_zb))
                    n_eb = builder.fadd(builder.fmul(kappa_v, eb), e)
                    n_ebr = builder.fadd(builder.fmul(kappa_reg_v, ebr), builder.fmul(omk_v, e))
                    if with_signal:
                        n_g = builder.fadd(g, builder.fadd(builder.fmul(ls[k], n_eb), builder.fmul(fr[k], n_ebr)))
                    else:
                        n_g = builder.fadd(g, builder.fmul(fr[k], n_ebr))
                    if whole:
                        eb, ebr, g, zb, zp, zc = n_eb, n_ebr, n_g, n_zb, n_zp, n_zc
                    else:
                        kk = _const_i64(k)
                        on = builder.and_(builder.icmp_signed("<=", k_lo, kk), builder.icmp_signed(">", k_hi, kk))
                        eb, ebr, g = (builder.select(on, new, old) for new, old in ((n_eb, eb), (n_ebr, ebr), (n_g, g)))
                        zb, zp, zc = (builder.select(on, new, old) for new, old in ((n_zb, zb), (n_zp, zp), (n_zc, zc)))
                for value, slot in ((eb, s_eb), (ebr, s_ebr), (g, s_g), (zb, s_zb), (zp, s_zp), (zc, s_zc)):
                    builder.store(value, slot)

            with builder.if_else(quiet) as (no_signal, signal):
                for branch, with_signal in ((no_signal, False), (signal, True)):
                    with branch:
                        with builder.if_else(partial) as (part, whole):
                            with part:
                                walk_tile(with_signal, False)
                            with whole:
                                walk_tile(with_signal, True)
        _masked_store(builder, builder.load(s_eb), p_eb, lanes)
        _masked_store(builder, builder.load(s_ebr), p_ebr, lanes)
        _masked_store(builder, builder.load(s_g), p_g, lanes)
        return context.get_dummy_value()

    return sig, codegen
