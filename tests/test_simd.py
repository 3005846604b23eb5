"""The vector walk (golden_model/engines/simd.py) against the scalar walk it replaces, bit for bit."""

import numpy as np
import pytest
from numba import njit

from golden_model.engines import golden_kernels as K
from golden_model.engines.simd import TILE

N_HIST, N_REC = 64, 21
MASK = N_HIST - 1


@njit(cache=False, _nrt=False)
def _scalar_walk(e_bar, e_bar_reg, grad, posts, psi, ls, fr, ls_zero, t_begin, t_end, z_prev, z_current, z_bar, pv,
                 kappa, kappa_reg, omk):
    """group_gradient's scalar loop (optimize_each_step false), written out again as the reference"""
    for t in range(t_begin, t_end):
        z = z_prev
        z_prev = z_current
        z_current = 0.0
        z_bar = pv * z_bar + z
        h = t & MASK
        for q in range(posts.size):
            j = posts[q]
            e = psi[h, j] * z_bar
            e_bar[q] = kappa * e_bar[q] + e
            e_bar_reg[q] = kappa_reg * e_bar_reg[q] + omk * e
            if ls_zero[h]:
                grad[q] += fr[h, j] * e_bar_reg[q]
            else:
                grad[q] += ls[h, j] * e_bar[q] + fr[h, j] * e_bar_reg[q]


def _histories(rng):
    psi = np.where(rng.random((N_HIST, N_REC)) < 0.5, 0.0, rng.random((N_HIST, N_REC)) * 0.3)
    fr = rng.normal(size=(N_HIST, N_REC)) * 1e-3
    ls_zero = (rng.random(N_HIST) < 0.7).astype(np.uint8)
    ls_zero[8:16] = 1  # one tile without any learning signal
    ls = np.where(ls_zero[:, None] == 1, 0.0, rng.normal(size=(N_HIST, N_REC)))
    tiles = np.zeros((3, N_HIST // TILE, N_REC, TILE))
    for t in range(9, 9 + N_HIST + 8):  # every tile, through build_tile
        K.build_tile(t, psi, ls, fr, tiles, MASK)
    return psi, ls, fr, ls_zero, tiles


@pytest.mark.parametrize("n", [1, 3, 4, 7, 8, 9, 16, 21])
@pytest.mark.parametrize("t_begin, t_end", [(0, 1), (3, 5), (5, 13), (8, 16), (13, 40), (50, 75), (60, 130)])
def test_vector_walk_equals_scalar_walk(n, t_begin, t_end):
    """Any number of synapses (whole and partial blocks), walks starting and ending inside tiles, across the ring's
    end, through tiles with and without learning signals: every e_bar, e_bar_reg and gradient bit-identical."""
    rng = np.random.default_rng(n * 1000 + t_begin)
    psi, ls, fr, ls_zero, tiles = _histories(rng)
    posts = np.sort(rng.choice(N_REC, n, replace=False)).astype(np.uint32)
    state0 = [rng.random(n) * 0.5, rng.random(n) * 0.1, rng.normal(size=n)]
    z = (1.0, 0.0, 0.4)  # z_prev, z_current, z_bar: a spike in the pipeline
    params = (0.95, 0.9, 0.99, 1.0 - 0.99)
    ref = [a.copy() for a in state0]
    _scalar_walk(*ref, posts, psi, ls, fr, ls_zero, t_begin, t_end, *z, *params)
    got = [a.copy() for a in state0]
    K.walk_recurrent_vector(*got, posts, tiles[0], tiles[1], tiles[2], ls_zero, t_begin, t_end, MASK, *z, *params)
    for name, a, b in zip(("e_bar", "e_bar_reg", "grad"), ref, got):
        np.testing.assert_array_equal(a, b, err_msg=name)


def test_build_tile_copies_complete_tiles_only():
    rng = np.random.default_rng(0)
    psi, ls, fr = (rng.random((N_HIST, N_REC)) for _ in range(3))
    tiles = np.zeros((3, N_HIST // TILE, N_REC, TILE))
    for t in range(0, 17):  # steps 0..16: entry 14 is the last final one; tile 0 (entries 0..7) is complete
        K.build_tile(t, psi, ls, fr, tiles, MASK)
    np.testing.assert_array_equal(tiles[0, 0], psi[0:8].T)
    np.testing.assert_array_equal(tiles[1, 0], ls[0:8].T)
    np.testing.assert_array_equal(tiles[2, 0], fr[0:8].T)
    assert not tiles[:, 1:].any()  # tile 1 (entries 8..15) completes at step 17
    K.build_tile(17, psi, ls, fr, tiles, MASK)
    np.testing.assert_array_equal(tiles[0, 1], psi[8:16].T)
