import json
import os

import numpy as np
import pytest

from host.cli import main


def test_train_writes_metrics_weights_and_report(tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["train", "--preset", "tiny", "--train-samples", "9", "--test-samples", "4", "--epochs", "2",
                 "--set", "task.group_size=5", "--seed", "5", "--out", str(out), "--no-progress"])
    assert code == 0
    text = capsys.readouterr().out
    assert "test:  loss" in text and "samples/s" in text
    m = json.loads((out / "metrics.json").read_text())
    assert m["engine"] == "golden" and m["epochs"] == 2 and m["train_samples"] == 9 and m["test_samples"] == 4
    train_its = [it for it in m["iterations"] if it["phase"] == "train"]
    assert [it["samples"] for it in train_its] == [5, 5, 5, 3]  # 18 training samples in groups of 5
    assert all(np.isfinite(it["loss"]) and 0 <= it["accuracy"] <= 1 for it in m["iterations"])
    assert m["test"]["samples"] == 4 and m["test_accuracy"] is not None
    assert m["config"]["network"]["seed"] == 5 and m["config"]["task"]["group_size"] == 5
    assert m["samples_per_s"] > 0 and m["wall_time_s"] > 0
    assert m["counters"]["synaptic_events"] > 0
    with np.load(out / "weights.npz") as w:
        assert w["W_in"].shape == (16, 24) and w["W_rec"].shape == (16, 16) and w["W_out"].shape == (3, 16)
        assert w["W_in"].dtype == np.float64 and w["mask_in"].dtype == bool
        assert np.all(w["W_in"][~w["mask_in"]] == 0) and np.all(w["W_rec"][~w["mask_rec"]] == 0)
        assert not np.array_equal(w["W_in"], w["W_in_initial"])
    assert (out / "report.png").stat().st_size > 10_000


def test_config_errors_exit_2_with_the_key(tmp_path, capsys):
    assert main(["train", "--preset", "tiny", "--set", "recurrent.tau_m=-1", "--out", str(tmp_path)]) == 2
    assert "[recurrent] tau_m = -1.0: must be > 0" in capsys.readouterr().err
    assert main(["train", "--preset", "tiny", "--set", "recurrent.tau_mem=1", "--out", str(tmp_path)]) == 2
    assert "unknown key 'tau_mem'" in capsys.readouterr().err
    assert main(["train", "--preset", "nope", "--out", str(tmp_path)]) == 2
    assert "unknown preset 'nope'" in capsys.readouterr().err
    assert main(["train", "--preset", "tiny", "--engine", "gpu", "--out", str(tmp_path)]) == 2
    assert "unknown engine 'gpu'" in capsys.readouterr().err
    assert main(["train", "--preset", "nmnist", "--train-samples", "2000", "--out", str(tmp_path)]) == 2
    assert "has 1000 training samples" in capsys.readouterr().err


def test_bad_data_folder_is_reported(tmp_path, capsys):
    assert main(["train", "--preset", "nmnist", "--data", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    assert "no N-MNIST here" in capsys.readouterr().err


@pytest.mark.nest
def test_nest_engine_through_the_training_loop_matches_golden(tmp_path):
    metrics = {}
    for engine in ("golden", "nest"):
        out = tmp_path / engine
        assert main(["train", "--preset", "tiny", "--engine", engine, "--train-samples", "6", "--test-samples",
                     "3", "--epochs", "1", "--out", str(out), "--no-progress", "--no-report"]) == 0
        metrics[engine] = json.loads((out / "metrics.json").read_text())
        with np.load(out / "weights.npz") as w:
            metrics[engine]["W"] = {k: w[k] for k in ("W_in", "W_rec", "W_out")}
    g, n = metrics["golden"], metrics["nest"]
    assert [it["loss"] for it in g["iterations"]] == [it["loss"] for it in n["iterations"]]
    assert g["test_accuracy"] == n["test_accuracy"]
    for k in ("W_in", "W_rec", "W_out"):
        assert np.array_equal(g["W"][k], n["W"][k])


@pytest.mark.nest
def test_bench_nest_reports_ratio_and_identity(tmp_path, capsys):
    code = main(["bench", "nest", "--preset", "tiny", "--train-samples", "4", "--test-samples", "2", "--out",
                 str(tmp_path), "--no-progress", "--repeats", "2"])
    assert code == 0
    result = json.loads((tmp_path / "bench_nest.json").read_text())
    assert result["comparison"]["weights_identical"] and result["comparison"]["spike_counts_identical"]
    assert result["comparison"]["weights_identical_every_run"]
    assert result["seconds_per_sample"]["golden"] > 0 and result["speedup_golden_over_nest"] > 0
    # alternating runs: every run on record, the reported time is their median
    each = result["seconds_per_sample_each_run"]
    assert len(each["golden"]) == len(each["nest"]) == 2 and len(result["speedup_each_run"]) == 2
    assert result["seconds_per_sample"]["nest"] == (each["nest"][0] + each["nest"][1]) / 2
    # the OpenMP setting both engines ran with is on record (golden_model sets it unless the user did)
    assert result["openmp_environment"]["GOMP_SPINCOUNT"] == os.environ["GOMP_SPINCOUNT"]
    assert "golden faster" in capsys.readouterr().out


def test_presets_and_engines_listing(capsys):
    assert main(["presets"]) == 0 and "nmnist" in capsys.readouterr().out
    assert main(["engines"]) == 0
    listing = capsys.readouterr().out
    assert "NEST 3.10" in listing and "bellec" in listing and "nest-bellec" in listing


@pytest.mark.nest
def test_bellec_engines_through_the_training_loop_agree(tmp_path):
    metrics = {}
    for engine in ("bellec", "nest-bellec"):
        out = tmp_path / engine
        assert main(["train", "--preset", "tiny", "--engine", engine, "--train-samples", "6", "--test-samples",
                     "3", "--epochs", "1", "--set", "bellec.loss=cross_entropy", "--out", str(out), "--no-progress",
                     "--no-report"]) == 0
        metrics[engine] = json.loads((out / "metrics.json").read_text())
        with np.load(out / "weights.npz") as w:
            metrics[engine]["W"] = {k: w[k] for k in ("W_in", "W_rec", "W_out")}
    b, n = metrics["bellec"], metrics["nest-bellec"]
    assert b["loss_function"] == n["loss_function"] == "cross_entropy"
    assert [it["loss"] for it in b["iterations"]] == [it["loss"] for it in n["iterations"]]
    assert b["test_accuracy"] == n["test_accuracy"]
    for k in ("W_in", "W_rec", "W_out"):
        assert np.array_equal(b["W"][k], n["W"][k])
    assert b["counters"]["trace_updates"] > 0


def test_train_reports_the_shared_counters_and_modelled_energy(tmp_path, capsys):
    from golden_model.counters import COUNTER_NAMES

    out = tmp_path / "run"
    assert main(["train", "--preset", "tiny", "--engine", "timedriven", "--train-samples", "3", "--test-samples",
                 "2", "--epochs", "1", "--out", str(out), "--no-progress", "--no-report"]) == 0
    text = capsys.readouterr().out
    assert "per training sample: synaptic_events" in text and "trace_updates" in text
    assert "modelled energy per training sample" in text and "modelled, not measured" in text
    m = json.loads((out / "metrics.json").read_text())
    assert m["engine"] == "timedriven"
    assert set(m["counters"]) == set(COUNTER_NAMES)
    phases = m["counters_by_phase"]
    assert set(phases) == {"train", "test", "final"}
    # the phases add up to the run
    assert all(sum(phases[p][k] for p in phases) == m["counters"][k] for k in COUNTER_NAMES)
    assert m["counters_per_training_sample"]["trace_updates"] == phases["train"]["trace_updates"] / 3
    assert "not measured" in m["modelled_energy_per_training_sample"]["kind"]
    assert m["seconds_per_training_sample"] > 0


def test_bench_updates_compares_event_and_time_driven(tmp_path, capsys):
    code = main(["bench", "updates", "--preset", "tiny", "--train-samples", "4", "--test-samples", "2",
                 "--keep-fractions", "1,0.5", "--out", str(tmp_path), "--no-progress"])
    assert code == 0
    text = capsys.readouterr().out
    assert "event-driven saving vs time-driven: trace_updates" in text
    result = json.loads((tmp_path / "bench_updates.json").read_text())
    assert "not measured" in result["energy"]["kind"] and result["energy"]["table"] == "horowitz45"
    assert [p["keep_fraction"] for p in result["sweep"]] == [1.0, 0.5]
    full = result["sweep"][0]
    assert set(full["runs"]) == {"event-driven", "time-driven", "time-driven, Bellec", "event-driven, no cutoff"}
    ed, td = full["runs"]["event-driven"], full["runs"]["time-driven"]
    assert ed["engine"] == "golden" and td["engine"] == "timedriven"
    assert 0 < ed["per_training_sample"]["trace_updates"] < td["per_training_sample"]["trace_updates"]
    saving = full["reductions"]["vs time-driven"]
    expected = 100 * (1 - ed["per_training_sample"]["trace_updates"] / td["per_training_sample"]["trace_updates"])
    assert saving["trace_updates"] == expected and 0 < expected < 100
    # the Bellec engine, with its own counts: a synapse's weight is written at most once per interval (here one
    # sample), the event-driven engine's at every presynaptic spike
    from golden_model.config import load_preset
    from golden_model.network import build_network

    net = build_network(load_preset("tiny"))
    n_synapses = int(net.mask_in.sum() + net.mask_rec.sum() + net.mask_out.sum())
    bel = full["runs"]["time-driven, Bellec"]
    assert bel["engine"] == "bellec"
    assert bel["per_training_sample"]["trace_updates"] > 0 and bel["per_training_sample"]["energy_uj"] > 0
    assert 0 < bel["per_training_sample"]["weight_writes"] <= n_synapses
    assert bel["per_training_sample"]["weight_writes"] < ed["per_training_sample"]["weight_writes"]
    versus = full["reductions"]["vs time-driven, Bellec"]
    assert versus["weight_writes"] == 100 * (1 - ed["per_training_sample"]["weight_writes"]
                                             / bel["per_training_sample"]["weight_writes"]) < 0
    assert bel["input_spikes_per_training_sample"] == ed["input_spikes_per_training_sample"]
    assert "time-driven, Bellec" in result["sweep"][1]["runs"]
    # the same samples: both engines saw the same input spikes
    assert ed["input_spikes_per_training_sample"] == td["input_spikes_per_training_sample"]
    half = result["sweep"][1]
    assert half["runs"]["event-driven"]["input_spikes_per_training_sample"] < ed["input_spikes_per_training_sample"]
    assert "event-driven, no cutoff" not in half["runs"]
    # the whole comparison checks itself: without cutoff the event-driven engine computes what time-driven does
    assert full["checks"]["event-driven, no cutoff == time-driven"] == {
        "weights_identical": True, "losses_identical": True, "spike_counts_identical": True}
    assert "check event-driven, no cutoff == time-driven: weights_identical True" in text
    assert (tmp_path / "bench_updates.png").stat().st_size > 10_000


def test_bench_updates_rejects_a_bad_fraction_and_table(tmp_path, capsys):
    assert main(["bench", "updates", "--preset", "tiny", "--keep-fractions", "1,0", "--out", str(tmp_path)]) == 2
    assert "[task] event_keep_fraction = 0.0" in capsys.readouterr().err
    assert main(["bench", "updates", "--preset", "tiny", "--train-samples", "1", "--test-samples", "0",
                 "--keep-fractions", "1", "--energy-table", "nope", "--out", str(tmp_path), "--no-progress"]) == 2
    assert "energy table 'nope'" in capsys.readouterr().err
