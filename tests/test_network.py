import numpy as np
import pytest

from golden_model.config import load_preset
from golden_model.network import Network, build_network, nest_node_ids, spike_delivery_order


def _spec_nmnist(config):
    """The draws of NEST's N-MNIST example as its text describes them (spec section 10), written independently."""
    rng = np.random.RandomState(config.network.seed)
    n_in, n_rec, n_out = config.network.n_in, config.network.n_rec, config.network.n_out
    s = 1.0 - config.recurrent.kappa
    w_in = rng.randn(n_in, n_rec).T / np.sqrt(n_in)
    w_rec = rng.randn(n_rec, n_rec).T / np.sqrt(n_rec)
    np.fill_diagonal(w_rec, 0.0)
    limit = np.sqrt(3.0 / max(1.0, (n_rec + n_out) / 2.0))
    w_out = rng.uniform(-limit, limit, size=(n_rec, n_out)).T * s
    b = rng.randn(n_rec, n_out) / s
    m_in = rng.choice([0, 1], w_in.shape, p=[1 - config.network.p_in, config.network.p_in])
    m_rec = rng.choice([0, 1], w_rec.shape, p=[1 - config.network.p_rec, config.network.p_rec])
    m_out = rng.choice([0, 1], w_out.shape, p=[1 - config.network.p_out, config.network.p_out])
    return w_in * m_in, w_rec * m_rec, w_out * m_out, b


@pytest.mark.parametrize("preset", ["nmnist", "tiny"])
def test_nmnist_recipe_reproduces_the_examples_draws(preset):
    config = load_preset(preset)
    net = build_network(config)
    w_in, w_rec, w_out, b = _spec_nmnist(config)
    assert np.array_equal(net.W_in, w_in) and np.array_equal(net.W_rec, w_rec)
    assert np.array_equal(net.W_out, w_out) and np.array_equal(net.B, b)
    assert np.array_equal(net.mask_in, w_in != 0) and np.array_equal(net.mask_rec, w_rec != 0)


def test_nmnist_network_shape_and_sparsity():
    net = build_network(load_preset("nmnist"))
    assert net.W_in.shape == (150, 1196) and net.W_rec.shape == (150, 150) and net.W_out.shape == (10, 150)
    assert net.B.shape == (150, 10)
    assert abs(net.mask_in.mean() - 0.25) < 0.01 and net.mask_rec.sum() < 0.02 * 150 * 150
    assert net.mask_out.all() and not np.diag(net.mask_rec).any()


def test_sine_recipe_draws_float32_all_to_all():
    config = load_preset("sine")
    net = build_network(config)
    rng = np.random.RandomState(1)
    s = np.float32(1.0 - 0.97)
    w_in = np.array(rng.randn(100, 100).T / np.sqrt(100), dtype=np.float32) * s
    assert np.array_equal(net.W_in, w_in.astype(np.float64))
    assert net.mask_in.all() and net.mask_rec.sum() == 100 * 99 and net.mask_out.all()


def test_save_load_round_trip(tmp_path):
    net = build_network(load_preset("tiny"))
    net.save(tmp_path / "net.npz")
    again = Network.load(tmp_path / "net.npz")
    for name in ("W_in", "W_rec", "W_out", "B", "mask_in", "mask_rec", "mask_out"):
        assert np.array_equal(getattr(net, name), getattr(again, name))


def test_check_refuses_inconsistent_networks():
    net = build_network(load_preset("tiny"))
    bad = net.copy()
    bad.W_in[~bad.mask_in] = 0.5
    with pytest.raises(ValueError, match="non-zero weights where mask_in has no synapse"):
        bad.check()
    bad = net.copy()
    bad.mask_rec[0, 0] = True
    bad.W_rec[0, 0] = 0.1
    with pytest.raises(ValueError, match="autapses"):
        bad.check()


def test_delivery_order_is_thread_then_node_id():
    ids = nest_node_ids(3, 2, 1)
    assert ids["inputs"].tolist() == [4, 5, 6] and ids["recurrent"].tolist() == [7, 8]
    # one virtual process: ascending node id
    assert spike_delivery_order(3, 2, 1).tolist() == [0, 1, 2, 3, 4]
    # two: even node ids (vp 0) first, then odd: nodes 4, 6, 8 then 5, 7
    rank = spike_delivery_order(3, 2, 2)
    sources_in_order = np.argsort(rank).tolist()
    assert sources_in_order == [0, 2, 4, 1, 3]
