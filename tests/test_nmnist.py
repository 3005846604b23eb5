import numpy as np
import pytest

from golden_model.config import load_preset
from golden_model.nmnist import (N_PIXELS, NMNISTError, active_pixels, bin_events, bundled_dir, load_blocklist,
                                 read_binned, read_events)
from golden_model.tasks import NMNISTTask, make_task


def _write_events(path, rows):
    """rows of (x, y, polarity, t_us) in the 5-byte format."""
    data = bytearray()
    for x, y, p, t in rows:
        data += bytes([x, y, (p << 7) | ((t >> 16) & 0x7F), (t >> 8) & 0xFF, t & 0xFF])
    path.write_bytes(bytes(data))
    return path


def test_reader_matches_tonic_on_bundled_files():
    tonic_io = pytest.importorskip("tonic.io")
    dtype = np.dtype([("x", np.int16), ("y", np.int16), ("t", np.int64), ("p", bool)])
    for name in ("1.bs2", "2.bs2", "500.bs2", "60001.bs2"):
        path = bundled_dir() / name
        ours = read_events(path)
        ref = tonic_io.read_mnist_file(str(path), dtype=dtype)
        assert np.array_equal(ours.x, ref["x"]) and np.array_equal(ours.y, ref["y"])
        assert np.array_equal(ours.t_us, ref["t"]) and np.array_equal(ours.polarity.astype(bool), ref["p"])


def test_blocklist_leaves_nests_1196_channels():
    blocklist = load_blocklist()
    assert blocklist.size == 1116
    pixels = active_pixels(blocklist)
    assert pixels.size == 1196 and pixels[0] >= 0 and pixels[-1] < N_PIXELS
    assert not np.isin(pixels, blocklist).any()


def test_binning_is_nests_formula(tmp_path):
    rows = [(0, 0, 0, 0), (33, 33, 1, 336040), (5, 7, 1, 560), (5, 7, 1, 561), (5, 7, 1, 1680), (2, 3, 0, 840)]
    rec = read_events(_write_events(tmp_path / "a.bs2", rows))
    channel_of_pixel = np.arange(N_PIXELS)  # identity map: channel = pixel
    channels, steps = bin_events(rec, channel_of_pixel, 300, 336040)
    pixel = [p * 34 * 34 + y * 34 + x for x, y, p, _ in rows]
    assert channels.tolist() == pixel
    # round half to even: 560 us -> 0.49994, 561 -> 0.50083, 1680 -> 1.49982, 840 -> 0.74991
    assert steps.tolist() == [0, 300, 0, 1, 1, 1]
    assert steps.tolist() == np.around(np.array([r[3] for r in rows]) * 300.0 / 336040).astype(int).tolist()


def test_blocked_pixels_are_dropped(tmp_path):
    rec = read_events(_write_events(tmp_path / "a.bs2", [(0, 0, 0, 10), (1, 0, 0, 20)]))
    channel_of_pixel = np.full(N_PIXELS, -1)
    channel_of_pixel[1] = 0
    channels, steps = bin_events(rec, channel_of_pixel, 300, 336040)
    assert channels.tolist() == [0] and steps.tolist() == [0]


def test_overflow_marker_shifts_later_timestamps(tmp_path):
    rows = [(1, 1, 0, 100), (0, 240, 0, 0), (2, 2, 1, 50), (0, 240, 0, 0), (3, 3, 0, 7)]
    rec = read_events(_write_events(tmp_path / "o.bs2", rows))
    assert rec.x.tolist() == [1, 2, 3]
    assert rec.t_us.tolist() == [100, 50 + 8192, 7 + 2 * 8192]


def test_corrupt_length_names_file_and_offset(tmp_path):
    path = tmp_path / "bad.bs2"
    path.write_bytes(bytes(12))
    with pytest.raises(NMNISTError, match=r"bad.bs2: length 12 bytes is not a multiple of 5; 2 trailing bytes "
                                          r"from byte offset 10"):
        read_events(path)


def test_coordinates_outside_sensor_name_offset(tmp_path):
    path = _write_events(tmp_path / "xy.bs2", [(1, 1, 0, 1), (3, 34, 0, 2)])
    with pytest.raises(NMNISTError, match=r"xy.bs2: event 1 at byte offset 5 has x=3, y=34, outside the 34x34"):
        read_events(path)


def test_empty_and_unreadable_files(tmp_path):
    empty = tmp_path / "empty.bs2"
    empty.write_bytes(b"")
    with pytest.raises(NMNISTError, match="empty.bs2: empty file"):
        read_events(empty)
    with pytest.raises(NMNISTError, match="missing.bs2: cannot read"):
        read_events(tmp_path / "missing.bs2")


def test_timestamp_beyond_time_max_is_an_error(tmp_path):
    rec = read_events(_write_events(tmp_path / "long.bs2", [(1, 1, 0, 400000)]))
    with pytest.raises(NMNISTError, match="400000 us, beyond time_max_us = 336040"):
        bin_events(rec, np.arange(N_PIXELS), 300, 336040)


def test_bundled_task_has_1000_train_and_100_test_samples():
    task = make_task(load_preset("nmnist"))
    assert (task.n_train, task.n_test) == (1000, 100)
    s = task.train(0)
    assert s.sample_id == "1" and s.label == 5  # first line of train1K.txt
    assert s.target.shape == (300, 10) and np.all(s.target[:, 5] == 1) and s.target.sum() == 300
    assert s.window.sum() == 10 and np.all(s.window[-10:] == 1)
    assert s.channels.min() >= 0 and s.channels.max() < 1196 and s.steps.max() <= 300
    assert task.test(0).sample_id == "60001" and task.test(0).label == 7


def _copy_subset(tmp_path, label_lines):
    root = tmp_path / "subset"
    root.mkdir()
    (root / "1.bs2").write_bytes((bundled_dir() / "1.bs2").read_bytes())
    (root / "train1K.txt").write_text("#sample #class\n" + label_lines)
    return root


def test_missing_label_names_sample(tmp_path, monkeypatch):
    from golden_model import tasks

    root = _copy_subset(tmp_path, "1\n")
    with pytest.raises(NMNISTError, match=r"train1K.txt:2: sample 1 has no label"):
        tasks._read_label_file(root, "train1K.txt")
    root2 = tmp_path / "s2"
    root2.mkdir()
    (root2 / "train1K.txt").write_text("7\t3\n")
    with pytest.raises(NMNISTError, match=r"sample 7: event file .*7.bs2 does not exist"):
        tasks._read_label_file(root2, "train1K.txt")


def test_full_dataset_layout(tmp_path):
    """--data DIR: Train/<label>/*.bin and Test/<label>/*.bin, directly or under NMNIST/ (tonic)."""
    for split in ("Train", "Test"):
        for label in range(10):
            folder = tmp_path / "NMNIST" / split / str(label)
            folder.mkdir(parents=True)
            (folder / f"{label:05d}.bin").write_bytes((bundled_dir() / f"{label + 1}.bs2").read_bytes())
    task = NMNISTTask(load_preset("nmnist"), tmp_path)
    assert (task.n_train, task.n_test) == (10, 10)
    assert task.train(3).label == 3 and task.train(3).sample_id == "train/3/00003"
    with pytest.raises(NMNISTError, match="no N-MNIST here"):
        NMNISTTask(load_preset("nmnist"), tmp_path / "NMNIST" / "Train")


def test_compiled_reader_bins_every_bundled_file_as_the_two_steps_do():
    task = make_task(load_preset("nmnist"))
    files = sorted(bundled_dir().glob("*.bs2"))
    assert len(files) == 1100
    from golden_model.nmnist_compiled import decode_and_bin

    for path in files:
        slow = bin_events(read_events(path), task.channel_of_pixel, 300, 336040)
        fast = read_binned(path, task.channel_of_pixel, 300, 336040)
        assert fast[0].dtype == slow[0].dtype and fast[1].dtype == slow[1].dtype
        assert np.array_equal(fast[0], slow[0]) and np.array_equal(fast[1], slow[1]), path.name
        # the compiled pass itself (read_binned would fall back to the two steps without it)
        channels, steps, n = decode_and_bin(np.fromfile(path, np.uint8), task.channel_of_pixel, 300, 336040)
        assert np.array_equal(channels[:n], slow[0]) and np.array_equal(steps[:n], slow[1]), path.name


def test_compiled_reader_on_markers_halves_and_blocked_pixels(tmp_path):
    rows = [(0, 0, 0, 0), (33, 33, 1, 336040), (5, 7, 1, 560), (5, 7, 1, 561), (0, 240, 0, 0), (5, 7, 1, 1680),
            (2, 3, 0, 840), (1, 0, 0, 20)]
    path = _write_events(tmp_path / "m.bs2", rows[:1] + rows[2:])  # the marker shifts the last three by 8192 us
    channel_of_pixel = np.arange(N_PIXELS)
    channel_of_pixel[1] = -1  # pixel 1 blocked
    slow = bin_events(read_events(path), channel_of_pixel, 300, 336040)
    fast = read_binned(path, channel_of_pixel, 300, 336040)
    assert fast[0].tolist() == slow[0].tolist() and fast[1].tolist() == slow[1].tolist()
    assert fast[1].tolist() == [0, 0, 1, 9, 8]


@pytest.mark.parametrize("rows, message", [
    ([(1, 1, 0, 1), (3, 34, 0, 2)], r"event 1 at byte offset 5 has x=3, y=34"),
    ([(0, 240, 0, 0)], "holds only timestamp-overflow markers"),
    ([(1, 1, 0, 400000)], "400000 us, beyond time_max_us = 336040"),
])
def test_compiled_reader_raises_what_the_two_steps_raise(tmp_path, rows, message):
    path = _write_events(tmp_path / "bad.bs2", rows)
    with pytest.raises(NMNISTError, match=message):
        read_binned(path, np.arange(N_PIXELS), 300, 336040)
    short = tmp_path / "short.bs2"
    short.write_bytes(bytes(7))
    with pytest.raises(NMNISTError, match="short.bs2: length 7 bytes"):
        read_binned(short, np.arange(N_PIXELS), 300, 336040)
    with pytest.raises(NMNISTError, match="missing.bs2: cannot read"):
        read_binned(tmp_path / "missing.bs2", np.arange(N_PIXELS), 300, 336040)
