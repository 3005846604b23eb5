"""Input-activity thinning: a validated [task] option, seeded per sample, the same in every engine and epoch."""

import numpy as np
import pytest

from golden_model.config import ConfigError, load_preset
from golden_model.tasks import ThinnedTask, make_task, thin_events


def test_keep_fraction_one_leaves_samples_untouched():
    config = load_preset("nmnist")
    assert config.task.event_keep_fraction == 1.0
    assert not isinstance(make_task(config), ThinnedTask)


@pytest.mark.parametrize("fraction", [0.5, 0.25, 0.1])
def test_thinning_keeps_a_seeded_subset_of_each_samples_events(fraction):
    full = make_task(load_preset("nmnist"))
    thinned = make_task(load_preset("nmnist", [f"task.event_keep_fraction={fraction}"]))
    again = make_task(load_preset("nmnist", [f"task.event_keep_fraction={fraction}"]))
    other_seed = make_task(load_preset("nmnist", [f"task.event_keep_fraction={fraction}",
                                                 "task.event_thinning_seed=7"]))
    kept, total = 0, 0
    for i in range(20):
        a, b = full.train(i), thinned.train(i)
        # a subset, in the original order: the kept events are the original events at a set of positions
        pairs_a = list(zip(a.channels.tolist(), a.steps.tolist()))
        pairs_b = list(zip(b.channels.tolist(), b.steps.tolist()))
        it = iter(pairs_a)
        assert all(p in it for p in pairs_b)
        assert np.array_equal(b.target, a.target) and b.label == a.label
        # deterministic for a given seed, different for another
        c = again.train(i)
        assert np.array_equal(b.channels, c.channels) and np.array_equal(b.steps, c.steps)
        kept += b.channels.size
        total += a.channels.size
        if i == 0:
            assert not np.array_equal(other_seed.train(i).channels, b.channels)
    # about the requested fraction (20 samples of ~4,000 events: within 2 %)
    assert abs(kept / total - fraction) < 0.02
    assert "thinned to" in thinned.description


def test_thin_events_draws_per_sample_id():
    sample = make_task(load_preset("tiny")).train(0)
    a = thin_events(sample, 0.5, seed=3)
    b = thin_events(sample, 0.5, seed=3)
    assert np.array_equal(a.channels, b.channels) and a.channels.size < sample.channels.size


@pytest.mark.parametrize("value", [0.0, -0.5, 1.5])
def test_keep_fraction_is_validated(value):
    with pytest.raises(ConfigError, match=rf"\[task\] event_keep_fraction = {value}: must lie in \(0, 1\]"):
        load_preset("nmnist", [f"task.event_keep_fraction={value}"])


def test_thinning_seed_is_validated():
    with pytest.raises(ConfigError, match=r"\[task\] event_thinning_seed = -1: must be >= 0"):
        load_preset("nmnist", ["task.event_thinning_seed=-1"])
