"""The fixed-point engine and the hardware contract: rounding, saturation, determinism, tracking golden."""

import numba
import numpy as np
import pytest

from golden_model.config import load_preset
from golden_model.engines import fixed_kernels as K
from golden_model.engines.fixed import FixedEngine
from golden_model.hw_contract import QUANTITIES, Constant, FixedPoint, QFormat, dither, shift_round_nearest_even
from golden_model.network import build_network
from golden_model.tasks import make_task

from .conftest import run_engine


def test_formats_parse_and_limits():
    q = QFormat.parse("s3.20")
    assert (q.bits, q.max_int, q.min_int, q.lsb) == (24, 2**23 - 1, -(2**23), 2.0**-20)
    u = QFormat.parse("u0.16")
    assert (u.bits, u.min_int, u.max_int) == (16, 0, 2**16 - 1)
    ints, n_sat = q.quantize([0.5, 100.0, -100.0, 2.5 * 2**-20, 3.5 * 2**-20])
    assert ints.tolist() == [2**19, 2**23 - 1, -(2**23), 2, 4] and n_sat == 2  # ties to even: 2.5 -> 2, 3.5 -> 4
    with pytest.raises(ValueError, match="not a fixed-point format"):
        QFormat.parse("q3.20")


@pytest.mark.parametrize("x, s, expected", [
    (5, 1, 2), (7, 1, 4), (-5, 1, -2), (-7, 1, -4),  # halves go to the even neighbour
    (6, 2, 2), (10, 2, 2), (-6, 2, -2), (-10, 2, -2), (9, 2, 2), (11, 2, 3), (-9, 2, -2), (-11, 2, -3),
    (3, 0, 3), (3, -2, 12),
])
def test_rounding_is_nearest_ties_to_even(x, s, expected):
    assert shift_round_nearest_even(x, s) == expected
    assert K.rshift_round(np.int64(x), s) == expected


def test_kernel_rounding_equals_the_reference_on_random_values():
    rng = np.random.default_rng(0)
    xs = rng.integers(-2**55, 2**55, 20000)
    ss = rng.integers(0, 40, 20000)
    assert all(K.rshift_round(np.int64(x), int(s)) == shift_round_nearest_even(int(x), int(s)) for x, s in zip(xs, ss))


def test_dither_is_a_pure_function_and_uniform():
    assert dither(12, 345, 16) == dither(12, 345, 16) == K.dither(12, 345, 16)
    values = np.array([dither(k, 7, 8) for k in range(20000)])
    counts = np.bincount(values, minlength=256)
    assert values.min() >= 0 and values.max() < 256
    assert counts.min() > 40 and counts.max() < 120  # 20000 / 256 = 78 per bin


def test_constants_use_the_full_mantissa():
    c = Constant.make(0.99, 18)
    assert c.mantissa == round(0.99 * 2**17) and c.shift == 17 and abs(c.approx - 0.99) < 2**-17
    c = Constant.make(333.0, 18)
    assert 2**16 <= abs(c.mantissa) < 2**17


def test_config_limits_are_refused_by_name():
    with pytest.raises(ValueError, match=r"\[fixed\] surrogate = 'u0.16': holds at most 0.99.* height reaches 10"):
        FixedPoint(load_preset("sine", ["fixed.surrogate=u0.16"]))
    adam = ["optimizer.type=adam"]
    with pytest.raises(ValueError, match=r"\[fixed\] adam_v = 's14.6': must be unsigned"):
        FixedPoint(load_preset("tiny", adam + ["fixed.adam_v=s14.6"]))
    with pytest.raises(ValueError, match=r"\[fixed\] adam_m = 'u14.5': must be signed"):
        FixedPoint(load_preset("tiny", adam + ["fixed.adam_m=u14.5"]))
    with pytest.raises(ValueError, match=r"weight_rounding = 'stochastic': the Adam build rounds to nearest"):
        FixedPoint(load_preset("tiny", adam + ["fixed.weight_rounding=stochastic"]))
    with pytest.raises(ValueError, match=r"beta_2 x adam_v\^2 needs 65 magnitude bits"):
        FixedPoint(load_preset("tiny", adam + ["fixed.adam_v=u14.10"]))
    with pytest.raises(ValueError, match=r"optimizes once per walk"):
        FixedPoint(load_preset("tiny", adam + ["optimizer.optimize_each_step=true"]))
    with pytest.raises(ValueError, match=r"eprop_isi_trace_cutoff = inf"):
        FixedPoint(load_preset("tiny", ["recurrent.eprop_isi_trace_cutoff=inf"]))
    with pytest.raises(ValueError, match=r"learning_signal x e_bar needs .* magnitude bits"):
        FixedPoint(load_preset("tiny", ["fixed.learning_signal=s8.23", "fixed.e_bar=u9.23",
                                        "fixed.gradient_bits=62"]))
    with pytest.raises(ValueError, match=r"kappa_reg = 0.5 differs from kappa = 0.99"):
        FixedPoint(load_preset("tiny", ["recurrent.kappa_reg=0.5"]))
    with pytest.raises(ValueError, match=r"\[fixed\] weight = 'u2.17': must be signed"):
        FixedPoint(load_preset("tiny", ["fixed.weight=u2.17"]))


WIDE = ["fixed.weight=s2.28", "fixed.e_bar=u9.14", "fixed.z_bar=u7.12", "fixed.membrane=s5.26",
        "fixed.surrogate=u0.20", "fixed.learning_signal=s8.14", "fixed.firing_rate=u1.28", "fixed.error=s1.16",
        "fixed.feedback=s8.20", "fixed.constant_bits=24", "fixed.gradient_bits=50", "fixed.eta_bits=12"]


def _narrower(overrides, by):
    out = []
    for o in overrides:
        key, value = o.split("=")
        if value[0] in "su":
            q = QFormat.parse(value)
            out.append(f"{key}={value[0]}{q.int_bits}.{q.frac_bits - by}")
        elif key.endswith("constant_bits"):
            out.append(f"{key}={int(value) - by}")
        else:
            out.append(o)
    return out


def test_wide_formats_track_golden_and_the_error_shrinks_with_the_lsb():
    """With every fraction 6 bits wider (LSBs 64x finer) the weight error against the float golden engine must
    fall at least 16x, and at the wide formats stay below 1e-4 of the largest weight; spikes identical throughout.
    Training only (no learning-rate change: the fixed engine's update timing then gives NEST's weights)."""
    errors = {}
    golden = run_engine("golden", load_preset("tiny"), 2, 0)
    for name, overrides in (("wide", WIDE), ("narrow", _narrower(WIDE, 6))):
        fixed = run_engine("fixed", load_preset("tiny", overrides), 2, 0)
        assert np.array_equal(fixed.spikes, golden.spikes), name
        errors[name] = max(np.max(np.abs(getattr(fixed.weights, w) - getattr(golden.weights, w)))
                           for w in ("W_in", "W_rec", "W_out"))
    largest = max(np.max(np.abs(getattr(golden.weights, w))) for w in ("W_in", "W_rec", "W_out"))
    assert 0 < errors["wide"] <= errors["narrow"] / 16
    assert errors["wide"] < 1e-4 * largest


def test_weight_update_saturates_instead_of_wrapping():
    """One gradient step that overshoots each end of the weight format: the result sits at the limit, the
    saturation counter moves; two's-complement wrapping would land at the opposite end."""
    config = load_preset("tiny", ["fixed.weight=s1.12"])
    engine = FixedEngine(config)
    engine.load(build_network(config))
    engine._set_eta(1e-3)
    q = engine.fx.formats["weight"]
    syn = np.zeros((K.N_SYN_ROWS, 2), np.int64)
    syn[K.S_W] = [q.max_int - 3, q.min_int + 3]
    mant, shift = engine.fx.eta_constant(1e-3)
    step = 100 * (1 << shift) // mant  # gradient whose update is ~100 LSBs
    grad = np.array([-step, step], np.int64)  # w - eta * g: up for the first, down for the second
    counters = np.zeros(K.N_COUNTERS, np.int64)
    sat_counts = np.zeros(K.N_Q, np.int64)
    K.gradient_step(0, 2, grad, syn, np.array([0, 1]), 0, 19, 1, engine.ip, counters, sat_counts)
    assert syn[K.S_W].tolist() == [q.max_int, q.min_int]
    assert sat_counts[K.Q_WEIGHT] == 2


def test_saturation_in_a_run_sets_the_sticky_flag_and_stays_in_range():
    config = load_preset("tiny", ["fixed.weight=s1.12", "optimizer.eta=5e-3"])
    engine = FixedEngine(config)
    network = build_network(load_preset("tiny"))
    network.W_in = np.clip(network.W_in, -1.9, 1.9)
    network.W_rec = np.clip(network.W_rec, -1.9, 1.9)
    engine.load(network)
    task = make_task(config)
    engine.run([task.train(i) for i in range(4)], learn=True)
    w = engine.weight_ints()
    q = engine.fx.formats["weight"]
    assert engine.saturations()["weight"] > 0
    assert engine.saturation_flags() & (1 << QUANTITIES.index("weight"))
    assert w.min() >= q.min_int and w.max() <= q.max_int


def test_identical_across_runs_and_thread_counts():
    config = load_preset("tiny", ["fixed.weight_rounding=stochastic"])
    a = run_engine("fixed", config, 3, 2, block=1)
    b = run_engine("fixed", config, 3, 2, block=2)
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        c = run_engine("fixed", config, 3, 2, block=1)
    finally:
        numba.set_num_threads(before)
    for r in (b, c):
        for w in ("W_in", "W_rec", "W_out"):
            assert np.array_equal(getattr(a.weights, w), getattr(r.weights, w))
        assert np.array_equal(a.spikes, r.spikes) and np.array_equal(a.y, r.y)
        assert a.counters == r.counters


def test_stochastic_rounding_moves_weights_that_nearest_rounding_cannot():
    """Updates far below one weight LSB: nearest rounding leaves the weights, stochastic rounding moves them."""
    base = ["fixed.weight=s1.10", "optimizer.eta=1e-9"]
    nearest = run_engine("fixed", load_preset("tiny", base), 3, 0)
    stochastic = run_engine("fixed", load_preset("tiny", base + ["fixed.weight_rounding=stochastic"]), 3, 0)
    init = FixedPoint(load_preset("tiny", base)).formats["weight"]
    net = build_network(load_preset("tiny"))
    q0 = init.to_float(init.quantize(net.W_in)[0])
    assert np.array_equal(nearest.weights.W_in, q0)
    assert not np.array_equal(stochastic.weights.W_in, q0)


def _adam_fixed_point():
    return FixedPoint(load_preset("tiny", ["optimizer.type=adam", "optimizer.eta=1e-3"]))


def test_adam_rsqrt_is_accurate_over_the_whole_range():
    ad = _adam_fixed_point().adam
    rng = np.random.default_rng(1)
    xs = [1, 2, 3, 4, 5, 255, 256, 257, (1 << 40) + 1] + [int(x) for x in rng.integers(1, 1 << 61, 3000)]
    for x in xs:
        y, e, u = ad.rsqrt(x)
        assert e % 2 == 0 and (1 << (ad.U - 2)) <= u < (1 << ad.U)
        exact = 2.0 ** ad.R / np.sqrt(x) * 2.0 ** (e / 2)  # u ~ x 2^(U - e): y ~ 2^R sqrt(2^e / x)
        assert abs(y - exact) <= 2.0 ** -14 * exact + 1, x  # u keeps 16 bits of x; one Newton step from 10
        assert K.rsqrt(np.int64(x), ad.rsqrt_lut, ad.lut_bits) == (y, e, u)


def test_adam_kernel_equals_the_contract_reference():
    """fixed_kernels.adam_step against AdamContract.synapse_step, synapse by synapse, including saturation,
    the eps floor (zero state, zero gradient) and the step count."""
    fx = _adam_fixed_point()
    ad = fx.adam
    cfg = fx.config
    engine = FixedEngine(cfg)
    engine.load(build_network(cfg))
    engine._set_eta(1e-3)
    ip = engine.ip
    rng = np.random.default_rng(2)
    n = 400
    fm, fv, fg = fx.formats["adam_m"], fx.formats["adam_v"], fx.formats["gradient"]
    syn = np.zeros((K.N_SYN_ROWS, n), np.int64)
    syn[K.S_W] = rng.integers(-(1 << 17), 1 << 17, n)
    syn[K.S_ADAM_M] = rng.integers(fm.min_int, fm.max_int, n)
    syn[K.S_ADAM_V] = rng.integers(0, fv.max_int, n)
    syn[K.S_ADAM_M, :20] = 0
    syn[K.S_ADAM_V, :20] = 0
    grad = rng.integers(-(1 << 40), 1 << 40, n) >> rng.integers(0, 40, n)  # spread over magnitudes
    grad[:10] = 0
    grad[-5:] = fg.max_int  # beyond m's range: saturates
    grp = np.zeros((1, K.N_GRP), np.int64)
    grp[0, K.G_ADAM_T] = 3
    counters = np.zeros(K.N_COUNTERS, np.int64)
    sats = np.zeros(K.N_Q, np.int64)
    before = syn.copy()
    K.adam_step(0, 0, n, grad, syn, grp, ip, engine.adam_rom, counters, sats)
    a = ad.step_size(int(ip[K.I_ETA_M]), 3)
    clamp = (int(ip[K.I_WCLAMP_MIN]), int(ip[K.I_WCLAMP_MAX]))
    seen = set()
    for k in range(n):
        w, m, s, flags = ad.synapse_step(int(grad[k]), int(before[K.S_ADAM_M, k]), int(before[K.S_ADAM_V, k]),
                                         int(before[K.S_W, k]), a, int(ip[K.I_ETA_S]), clamp)
        assert (syn[K.S_W, k], syn[K.S_ADAM_M, k], syn[K.S_ADAM_V, k]) == (w, m, s), k
        seen |= flags
    assert grp[0, K.G_ADAM_T] == 4 and counters[K.C_OPT_CALLS] == n and counters[K.C_WEIGHT_WRITES] == n
    assert "adam_m" in seen and sats[K.Q_ADAM_M] > 0
    assert np.count_nonzero(syn[K.S_W] != before[K.S_W]) > n // 2
    # learning off: nothing changes, the call is counted, nothing is written
    after = syn.copy()
    engine._set_eta(0.0)
    K.adam_step(0, 0, n, grad, syn, grp, engine.ip, engine.adam_rom, counters, sats)
    assert np.array_equal(syn, after) and grp[0, K.G_ADAM_T] == 4 and counters[K.C_WEIGHT_WRITES] == n


def test_adam_bias_rom_and_step_size():
    ad = _adam_fixed_point().adam
    b1, b2 = 0.9, 0.999
    for t in (0, 1, 10, 100, ad.bias_rom.size - 1):
        exact = np.sqrt(1 - b2 ** (t + 1)) / (1 - b1 ** (t + 1))
        assert abs(ad.bias_rom[t] * 2.0 ** -ad.bias_shift - exact) <= 2.0 ** -ad.bias_shift
    # a ROM that converges ends at its first converged entry
    fx = FixedPoint(load_preset("tiny", ["optimizer.type=adam", "optimizer.beta_2=0.5"]))
    assert fx.adam.bias_rom.size < 128 and fx.adam.bias_rom[-1] == 1 << fx.adam.bias_shift


def test_bench_fixed_runs_adam_against_golden_adam(tmp_path):
    """`eprop bench fixed` with optimizer.type = adam: both engines run Adam, the grid varies the moments' widths
    (integer bits kept), points carry the memory the moments need, stochastic rounding is left out."""
    from host.bench_fixed import bench_fixed, format_bench_fixed, width_overrides

    config = load_preset("tiny", ["optimizer.type=adam", "optimizer.eta=1e-3"])
    assert width_overrides(config, 20, 16, "nearest_even", 16)[2:4] == ["fixed.adam_m=s14.1", "fixed.adam_v=u14.2"]
    result = bench_fixed(config, [20], [16], ["nearest_even", "stochastic"], epochs=1, train_samples=6,
                         test_samples=3, out_dir=tmp_path, progress=False, moment_bits=[16, 20])
    assert result["optimizer"] == "adam" and 0.0 <= result["golden"]["test_accuracy"] <= 1.0
    points = result["points"]
    assert [(p["moment_bits"], p["rounding"]) for p in points] == [(16, "nearest_even"), (20, "nearest_even")]
    assert points[0]["blocks"] < points[1]["blocks"] and points[0]["bits_per_synapse"] + 8 == points[1]["bits_per_synapse"]
    assert "adam eta 0.001" in format_bench_fixed(result) and (tmp_path / "bench_fixed.json").exists()
