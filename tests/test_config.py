import math

import pytest

from golden_model.config import ConfigError, NetworkConfig, load_config, load_preset, parse_override


def test_presets_load_and_validate():
    for name in ("nmnist", "sine", "tiny"):
        config = load_preset(name)
        assert config.source == f"preset {name}"


def test_nmnist_preset_is_nests_example_value_for_value():
    c = load_preset("nmnist")
    s = 1.0 - 0.99  # the example's scale_factor = 1 - kappa
    assert (c.network.n_in, c.network.n_rec, c.network.n_out) == (1196, 150, 10)
    assert (c.network.p_in, c.network.p_rec, c.network.p_out) == (0.25, 0.01, 1.0)
    assert 1.0 - c.network.p_in == 0.75 and 1.0 - c.network.p_rec == 0.99  # the example's sparsity levels
    r = c.recurrent
    assert (r.C_m, r.E_L, r.V_m, r.V_th, r.t_ref, r.tau_m) == (1.0, 0.0, 0.0, 0.6, 0.0, 30.0)
    # derived values must be the example's doubles, not approximations
    assert r.c_reg == 2.0 / 300.0 / s**2
    assert r.surrogate_gradient_width == 1.0 / 1.7
    assert (r.surrogate_gradient_height, r.kappa, r.kappa_reg, r.f_target) == (0.5, 0.99, 0.99, 10.0)
    assert (r.eprop_isi_trace_cutoff, r.flush_event_send_interval) == (100.0, 300.0)
    assert (c.readout.tau_m, c.readout.eprop_isi_trace_cutoff) == (100.0, 100.0)
    o = c.optimizer
    assert o.eta == 5e-3 * s**2
    assert (o.type, o.batch_size, o.optimize_each_step, o.Wmin, o.Wmax) == ("gradient_descent", 1, False, -100.0,
                                                                            100.0)
    assert (c.task.sequence, c.task.learning_window, c.task.group_size, c.task.time_max_us) == (300, 10, 100,
                                                                                                336040)


def test_sine_preset_is_nests_example():
    c = load_preset("sine")
    s = 1.0 - 0.97
    assert c.recurrent.surrogate_gradient_width == 1.0 / 33.3
    assert c.optimizer.eta == 1e-4 * s**2
    assert c.recurrent.c_reg == 300.0 / 1000.0
    assert (c.network.init, c.network.weight_dtype) == ("sine", "float32")


def test_unknown_key_is_refused_with_its_name():
    with pytest.raises(ConfigError, match=r"\[recurrent\].*'tau_mem'"):
        NetworkConfig.from_dict({"recurrent": {"tau_mem": 10.0}})
    with pytest.raises(ConfigError, match=r"unknown section \[neurons\]"):
        NetworkConfig.from_dict({"neurons": {}})


@pytest.mark.parametrize("override, fragment", [
    ("recurrent.tau_m=0", r"\[recurrent\] tau_m = 0.0: must be > 0"),
    ("readout.tau_m=-5", r"\[readout\] tau_m = -5.0: must be > 0"),
    ("network.p_in=1.5", r"\[network\] p_in = 1.5: is a probability"),
    ("network.p_rec=-0.1", r"\[network\] p_rec = -0.1"),
    ("network.n_rec=-3", r"\[network\] n_rec = -3: must be a positive integer"),
    ("recurrent.surrogate_gradient_function=sigmoid", r"'sigmoid': unknown surrogate"),
    ("optimizer.type=sgd", r"\[optimizer\] type = 'sgd'"),
    ("optimizer.Wmin=200", r"Wmin = 200.0: must be <= Wmax"),
    ("network.n_in=100", r"n_in = 100: must be 1196 for the nmnist task"),
    ("task.learning_window=400", r"learning_window = 400"),
    ("recurrent.t_ref=0.5", r"t_ref = 0.5: must be a whole number of steps"),
    ("network.n_rec=1.5", r"n_rec = 1.5: expected an integer"),
    ("optimizer.optimize_each_step=maybe", r"expected true or false"),
])
def test_invalid_values_are_refused_naming_key_and_value(override, fragment):
    with pytest.raises(ConfigError, match=fragment):
        load_preset("nmnist", [override])


def test_overrides_apply_and_parse_toml_values():
    c = load_preset("tiny", ["optimizer.type=adam", "optimizer.eta=1e-3", "recurrent.eprop_isi_trace_cutoff=inf",
                             "optimizer.optimize_each_step=true", "task.periods=[100, 50]"])
    assert c.optimizer.type == "adam" and c.optimizer.eta == 1e-3
    assert math.isinf(c.recurrent.eprop_isi_trace_cutoff)
    assert c.optimizer.optimize_each_step is True
    assert c.task.periods == (100, 50)
    assert parse_override("optimizer.type=adam") == ("optimizer.type", "adam")
    with pytest.raises(ConfigError, match="expected section.key=value"):
        parse_override("no-equals-sign")
    with pytest.raises(ConfigError, match="unknown section"):
        load_preset("tiny", ["solver.eta=1"])


def test_round_trip_through_dict_and_file(tmp_path):
    c = load_preset("sine", ["recurrent.eprop_isi_trace_cutoff=inf"])
    again = NetworkConfig.from_dict(c.to_dict())
    assert again.to_dict() == c.to_dict()
    path = tmp_path / "c.toml"
    path.write_text('[network]\nn_in = 4\nn_rec = 3\nn_out = 1\ninit = "sine"\n[task]\nname = "sine"\n'
                    'sequence = 20\nlearning_window = 20\n')
    loaded = load_config(path, ["network.n_rec=5"])
    assert loaded.network.n_rec == 5 and loaded.network.n_in == 4
    path.write_text("[network\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(path)
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.toml")


def test_bellec_section_follows_the_task_by_default():
    c = load_preset("nmnist")
    assert c.bellec_steps() == {"update_interval": 300, "learning_window": 10}
    assert c.bellec_tau_m_readout() == c.readout.tau_m == 100.0
    c = c.with_overrides(["task.sequence=200", "task.learning_window=20"])
    assert c.bellec_steps() == {"update_interval": 200, "learning_window": 20}
    c = c.with_overrides(["bellec.eprop_update_interval=400", "bellec.eprop_learning_window=50",
                          "bellec.tau_m_readout=20"])
    assert c.bellec_steps() == {"update_interval": 400, "learning_window": 50} and c.bellec_tau_m_readout() == 20.0


def test_bellec_optimizer_inherits_unset_keys():
    c = load_preset("nmnist")
    b = c.bellec_optimizer_resolved()
    assert (b.type, b.eta) == ("adam", 1e-3)  # the preset's own Bellec optimizer
    assert (b.batch_size, b.Wmin, b.Wmax, b.epsilon) == (c.optimizer.batch_size, -100.0, 100.0, 1e-7)
    assert (c.optimizer.type, c.optimizer.eta) == ("gradient_descent", 5e-3 * (1.0 - 0.99) ** 2)  # untouched
    t = load_preset("tiny", ["optimizer.eta=3e-6"])
    assert t.bellec_optimizer_resolved() == t.optimizer  # no [bellec_optimizer] in tiny: all inherited
    assert t.to_dict()["bellec_optimizer"]["eta"] is None
    assert t.with_overrides(["bellec_optimizer.batch_size=4"]).bellec_optimizer_resolved().batch_size == 4


@pytest.mark.parametrize("override, fragment", [
    ("bellec.loss=hinge", r"\[bellec\] loss = 'hinge': must be one of"),
    ("bellec.eprop_update_interval=0.5", r"\[bellec\] eprop_update_interval = 0.5: must be 0 \(follow the task\)"),
    ("bellec.eprop_update_interval=10.5", r"\[bellec\] eprop_update_interval = 10.5: must be a whole number"),
    ("bellec.eprop_learning_window=400", r"\[bellec\] eprop_learning_window = 400.0: resolves to 400 steps, more "
                                         r"than the update interval \(300 steps"),
    ("bellec.tau_m_readout=-1", r"\[bellec\] tau_m_readout = -1.0: must be > 0"),
    ("bellec.average_gradient=maybe", r"\[bellec\] average_gradient = 'maybe': expected true or false"),
    ("bellec_optimizer.eta=-1", r"\[bellec_optimizer\] eta = -1.0: must be >= 0"),
    ("bellec_optimizer.type=sgd", r"\[bellec_optimizer\] type = 'sgd'"),
    ("bellec_optimizer.optimize_each_step=true", r"\[bellec_optimizer\]: unknown key 'optimize_each_step'"),
])
def test_bellec_values_are_refused_with_section_key_and_value(override, fragment):
    with pytest.raises(ConfigError, match=fragment):
        load_preset("nmnist", [override])
