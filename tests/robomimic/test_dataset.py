"""SequenceDataset against hand-computed windows on tiny generated robomimic files.

Every value in the files encodes where it came from: obs ``pos`` at step t of demo d
is ``[d, t, 0.5]``, next_obs ``pos`` is ``[d, t, 1.5]`` and action t is ``[d, t]``,
so a window's content says which steps it took.
"""

from __future__ import annotations

import itertools
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.needs import needs_module

needs_module("h5py")

from t2r.data.errors import DataError  # noqa: E402
from t2r.robomimic.dataset import SequenceDataset, detect_obs_modality  # noqa: E402
from t2r.robomimic.hdf5 import Demo, write_robomimic_hdf5  # noqa: E402

ENV_ARGS = {"env_name": "Lift", "type": 1, "env_kwargs": {}}


def coded_demo(d: int, n: int, image: bool = False, rewards: bool = True) -> Demo:
    t = np.arange(n, dtype=np.float64)
    obs = {"pos": np.stack([np.full(n, d), t, np.full(n, 0.5)], axis=1)}
    next_obs = {"pos": np.stack([np.full(n, d), t, np.full(n, 1.5)], axis=1)}
    if image:
        img = np.zeros((n, 4, 5, 3), dtype=np.uint8)
        img[:, 0, 0, 0] = d
        img[:, 0, 0, 1] = np.arange(n)
        obs["agentview_image"] = img
        next_obs["agentview_image"] = img + 100
    return Demo(
        obs=obs,
        next_obs=next_obs,
        actions=np.stack([np.full(n, d), t], axis=1).astype(np.float32),
        rewards=t * 10 if rewards else None,
    )


def write(path: Path, lengths: list[int], **kwargs: object) -> Path:
    demos = [coded_demo(d, n, **kwargs) for d, n in enumerate(lengths)]  # type: ignore[arg-type]
    masks = {"even": [f"demo_{d}" for d in range(0, len(lengths), 2)]}
    return write_robomimic_hdf5(path, demos, ENV_ARGS, masks=masks)


def steps_of(window: np.ndarray) -> list[int]:
    """The step each row of an action window came from."""
    return [int(v) for v in window[:, 1]]


# ------------------------------------------------------------ the worked check


@pytest.mark.parametrize("cache", ["all", "low_dim", None])
def test_worked_check_frame_stack_3_seq_length_4(tmp_path: Path, cache: str | None) -> None:
    path = write(tmp_path / "d.hdf5", [10, 7])
    padded = SequenceDataset(
        path, ["pos"], frame_stack=3, seq_length=4, get_pad_mask=True, hdf5_cache_mode=cache
    )
    item = padded[0]
    assert steps_of(item["actions"]) == [0, 0, 0, 1, 2, 3]  # a[[0,0,0,1,2,3]]
    assert item["pad_mask"][:, 0].astype(int).tolist() == [0, 0, 1, 1, 1, 1]
    assert item["pad_mask"].shape == (6, 1) and item["pad_mask"].dtype == bool
    unpadded = SequenceDataset(
        path,
        ["pos"],
        frame_stack=3,
        seq_length=4,
        pad_frame_stack=False,
        pad_seq_length=False,
        hdf5_cache_mode=cache,
    )
    # frame_stack-1 + seq_length-1 = 5 more items per demo with padding
    assert len(padded) == 10 + 7 and len(unpadded) == (10 - 5) + (7 - 5)
    assert len(padded) - len(unpadded) == 2 * 5
    assert steps_of(unpadded[0]["actions"]) == [0, 1, 2, 3, 4, 5]


def test_windows_by_hand(tmp_path: Path) -> None:
    path = write(tmp_path / "d.hdf5", [5, 3])
    # frame_stack 2, seq_length 3, padding only at the end: demo_0 gives items at
    # steps 1..4 (4 items), demo_1 steps 1..2 (2 items).
    ds = SequenceDataset(
        path, ["pos"], frame_stack=2, seq_length=3, pad_frame_stack=False, get_pad_mask=True
    )
    assert len(ds) == 6
    expected = [
        (0, [0, 1, 2, 3], [1, 1, 1, 1]),
        (0, [1, 2, 3, 4], [1, 1, 1, 1]),
        (0, [2, 3, 4, 4], [1, 1, 1, 0]),
        (0, [3, 4, 4, 4], [1, 1, 0, 0]),
        (1, [0, 1, 2, 2], [1, 1, 1, 0]),
        (1, [1, 2, 2, 2], [1, 1, 0, 0]),
    ]
    for i, (demo, steps, mask) in enumerate(expected):
        item = ds[i]
        assert item["index"] == i
        assert item["actions"][:, 0].tolist() == [demo] * 4, i
        assert steps_of(item["actions"]) == steps, i
        assert item["pad_mask"][:, 0].astype(int).tolist() == mask, i
        np.testing.assert_array_equal(item["obs"]["pos"][:, 1], steps)
        np.testing.assert_array_equal(item["next_obs"]["pos"][:, 2], 1.5)
        np.testing.assert_array_equal(item["rewards"], np.asarray(steps) * 10.0)
    # padding only at the start: items start at 0..N-seq_length
    ds = SequenceDataset(path, ["pos"], frame_stack=3, seq_length=2, pad_seq_length=False)
    assert len(ds) == 4 + 2
    assert steps_of(ds[0]["actions"]) == [0, 0, 0, 1]
    assert steps_of(ds[3]["actions"]) == [1, 2, 3, 4]
    assert steps_of(ds[5]["actions"]) == [0, 0, 1, 2]  # demo_1 (3 steps): its last item


def reference_windows(lengths: list[int], fs: int, sl: int, pfs: bool, psl: bool) -> list:
    """robomimic's index map written out plainly: (demo, steps, mask) per item."""
    out = []
    for d, n in enumerate(lengths):
        count = n - (0 if pfs else fs - 1) - (0 if psl else sl - 1)
        count = max(count, 1) if psl else count
        for k in range(count):
            t = k + (0 if pfs else fs - 1)
            raw = list(range(t - (fs - 1), t + sl))
            out.append((d, [min(max(s, 0), n - 1) for s in raw], [0 <= s < n for s in raw]))
    return out


@pytest.mark.parametrize(
    ("fs", "sl", "pfs", "psl"),
    [
        (fs, sl, pfs, psl)
        for fs, sl in [(1, 1), (1, 4), (3, 1), (3, 4)]
        for pfs, psl in itertools.product([True, False], repeat=2)
    ],
)
def test_every_item_matches_the_index_map(
    tmp_path: Path, fs: int, sl: int, pfs: bool, psl: bool
) -> None:
    lengths = [7, 6, 9]
    path = write(tmp_path / "d.hdf5", lengths)
    ds = SequenceDataset(
        path,
        ["pos"],
        frame_stack=fs,
        seq_length=sl,
        pad_frame_stack=pfs,
        pad_seq_length=psl,
        get_pad_mask=True,
        hdf5_cache_mode="all",
    )
    ref = reference_windows(lengths, fs, sl, pfs, psl)
    assert len(ds) == len(ref)
    batch = ds.get_batch(np.arange(len(ds)))
    for i, (demo, steps, mask) in enumerate(ref):
        assert batch["actions"][i, :, 0].tolist() == [demo] * (fs - 1 + sl)
        assert steps_of(batch["actions"][i]) == steps
        assert batch["pad_mask"][i, :, 0].tolist() == mask


def test_short_demos(tmp_path: Path) -> None:
    path = write(tmp_path / "d.hdf5", [2, 6])
    # padded: a demo shorter than the window still gives one item per step
    ds = SequenceDataset(path, ["pos"], frame_stack=1, seq_length=4)
    assert len(ds) == 2 + 6
    assert steps_of(ds[1]["actions"]) == [1, 1, 1, 1]
    with pytest.raises(DataError, match=r"data/demo_0 has 2 steps, too few for frame_stack=1"):
        SequenceDataset(path, ["pos"], seq_length=4, pad_seq_length=False)


# ------------------------------------------------------------- options


def test_goal_mode_last(tmp_path: Path) -> None:
    path = write(tmp_path / "d.hdf5", [5, 4])
    ds = SequenceDataset(path, ["pos"], seq_length=2, goal_mode="last")
    for i in range(len(ds)):
        item = ds[i]
        demo = int(item["actions"][0, 0])
        last = [5, 4][demo] - 1
        np.testing.assert_array_equal(item["goal_obs"]["pos"], [demo, last, 1.5])  # next_obs
    # without sequence padding the last reachable step is N - seq_length
    ds = SequenceDataset(path, ["pos"], seq_length=2, goal_mode="last", pad_seq_length=False)
    np.testing.assert_array_equal(ds[0]["goal_obs"]["pos"], [0, 3, 1.5])
    with pytest.raises(ValueError, match="needs load_next_obs"):
        SequenceDataset(path, ["pos"], goal_mode="last", load_next_obs=False)


def test_load_next_obs_false(tmp_path: Path) -> None:
    path = write(tmp_path / "d.hdf5", [3])
    item = SequenceDataset(path, ["pos"], load_next_obs=False, hdf5_cache_mode="all")[0]
    assert set(item) == {"obs", "actions", "rewards", "dones", "index"}


def test_filter_by_attribute_and_demo_limit(tmp_path: Path) -> None:
    path = write(tmp_path / "d.hdf5", [3, 4, 5, 6, 7])
    ds = SequenceDataset(path, ["pos"], filter_by_attribute="even")
    assert ds.demos == ["demo_0", "demo_2", "demo_4"] and len(ds) == 3 + 5 + 7
    assert sorted({int(ds[i]["actions"][0, 0]) for i in range(len(ds))}) == [0, 2, 4]
    ds = SequenceDataset(path, ["pos"], filter_by_attribute="even", demo_limit=2)
    assert ds.demos == ["demo_0", "demo_2"] and len(ds) == 3 + 5
    assert SequenceDataset(path, ["pos"], demo_limit=1).demos == ["demo_0"]
    with pytest.raises(DataError, match=r"no filter key 'mask/valid' \(the file has: \['even'\]\)"):
        SequenceDataset(path, ["pos"], filter_by_attribute="valid")


def test_demos_ordered_by_integer_suffix(tmp_path: Path) -> None:
    path = write(tmp_path / "d.hdf5", [2] * 12)
    ds = SequenceDataset(path, ["pos"])
    assert ds.demos[:3] == ["demo_0", "demo_1", "demo_2"] and ds.demos[-1] == "demo_11"
    assert [int(ds[i]["actions"][0, 0]) for i in range(0, 24, 2)] == list(range(12))


@pytest.mark.parametrize("cache", ["all", "low_dim", None])
def test_missing_dataset_keys_are_zero_filled(tmp_path: Path, cache: str | None) -> None:
    path = write(tmp_path / "d.hdf5", [4, 3], rewards=False)  # no rewards, no dones
    ds = SequenceDataset(
        path, ["pos"], ("actions", "rewards", "dones"), seq_length=3, hdf5_cache_mode=cache
    )
    item = ds[0]
    for key in ("rewards", "dones"):
        assert item[key].shape == (3, 1) and item[key].dtype == np.float32
        assert not item[key].any()
    _, labels = ds.specs()
    assert labels["rewards"].shape == (3, 1)


def test_cache_modes_give_the_same_items(tmp_path: Path) -> None:
    path = write(tmp_path / "d.hdf5", [6, 4], image=True)
    keys = ["pos", "agentview_image"]
    kwargs = dict(frame_stack=2, seq_length=3, get_pad_mask=True, goal_mode="last")
    datasets = {
        mode: SequenceDataset(path, keys, hdf5_cache_mode=mode, **kwargs)  # type: ignore[arg-type]
        for mode in ("all", "low_dim", None)
    }
    reference = datasets[None].get_batch(np.arange(10))
    assert reference["obs"]["agentview_image"].dtype == np.uint8
    assert reference["obs"]["agentview_image"].shape == (10, 4, 4, 5, 3)
    # image window of item 0: step 0 twice, then 0, 1, 2 (pixel [0, 0, 1] is the step)
    assert reference["obs"]["agentview_image"][0, :, 0, 0, 1].tolist() == [0, 0, 1, 2]
    assert reference["goal_obs"]["agentview_image"][0, 0, 0, 1] == 105
    for mode in ("all", "low_dim"):
        batch = datasets[mode].get_batch(np.arange(10))
        for group in ("obs", "next_obs", "goal_obs"):
            for key in keys:
                np.testing.assert_array_equal(batch[group][key], reference[group][key])
        for key in ("actions", "rewards", "dones", "pad_mask"):
            np.testing.assert_array_equal(batch[key], reference[key])
    # low_dim keeps images out of memory; "all" needs no file at all once built
    assert "obs/agentview_image" not in datasets["low_dim"]._cache
    assert "obs/pos" in datasets["low_dim"]._cache
    for ds in datasets.values():
        ds.close_and_delete_hdf5_handle()
    os.unlink(path)
    datasets["all"].get_batch(np.arange(10))
    assert datasets["all"]._hdf5_file is None
    with pytest.raises(DataError, match="no such robomimic HDF5 file"):
        datasets["low_dim"].get_batch(np.arange(10))


def test_modality_detection(tmp_path: Path) -> None:
    assert detect_obs_modality((84, 84, 3), np.dtype(np.uint8)) == "rgb"
    assert detect_obs_modality((84, 84, 3), np.dtype(np.float32)) == "low_dim"
    assert detect_obs_modality((7,), np.dtype(np.float64)) == "low_dim"
    path = write(tmp_path / "d.hdf5", [3], image=True)
    ds = SequenceDataset(
        path, ["pos", "agentview_image"], obs_modalities={"pos": "scan"}, hdf5_cache_mode="low_dim"
    )
    assert ds.obs_modalities == {"pos": "scan", "agentview_image": "rgb"}
    assert ds._cache.keys() == {"actions", "rewards", "dones"}  # nothing low_dim to cache


# -------------------------------------------------------------- normalization


def test_obs_normalization_stats(tmp_path: Path) -> None:
    path = write(tmp_path / "d.hdf5", [5, 3, 8], image=True)
    ds = SequenceDataset(path, ["pos", "agentview_image"], hdf5_normalize_obs=True)
    stats = ds.get_obs_normalization_stats()
    rows = np.concatenate(
        [coded_demo(d, n, image=True).obs["pos"] for d, n in enumerate([5, 3, 8])]
    )
    assert stats["pos"]["offset"].shape == (1, 3) and stats["pos"]["offset"].dtype == np.float32
    np.testing.assert_allclose(stats["pos"]["offset"][0], rows.mean(0), rtol=1e-6)
    np.testing.assert_allclose(stats["pos"]["scale"][0], rows.std(0) + 1e-3, rtol=1e-5)
    # a constant dimension gets scale 1e-3 (std 0 + the tolerance)
    assert stats["pos"]["scale"][0, 2] == pytest.approx(1e-3)
    # images as robomimic processes them: channels first, in [0, 1]
    assert stats["agentview_image"]["offset"].shape == (1, 3, 4, 5)
    steps = np.concatenate([np.arange(n) for n in [5, 3, 8]]) / 255.0
    assert stats["agentview_image"]["offset"][0, 1, 0, 0] == pytest.approx(steps.mean(), rel=1e-5)
    # items are not normalized: robomimic normalizes in the algorithm
    assert ds[1]["obs"]["pos"][0].tolist() == [0, 1, 0.5]
    with pytest.raises(ValueError, match="hdf5_normalize_obs=True"):
        SequenceDataset(path, ["pos"]).get_obs_normalization_stats()


def test_action_normalization(tmp_path: Path) -> None:
    lengths = [5, 3, 8]
    path = write(tmp_path / "d.hdf5", lengths)
    actions = np.concatenate([coded_demo(d, n).actions for d, n in enumerate(lengths)])
    plain = SequenceDataset(path, ["pos"])
    stats = plain.get_action_normalization_stats()
    np.testing.assert_array_equal(stats["actions"]["scale"], np.ones((1, 2)))
    np.testing.assert_array_equal(stats["actions"]["offset"], np.zeros((1, 2)))
    all_actions = plain.get_batch(np.arange(len(plain)))["actions"][:, 0]
    np.testing.assert_array_equal(all_actions, actions)

    gauss = SequenceDataset(path, ["pos"], action_config={"actions": {"normalization": "gaussian"}})
    normed = gauss.get_batch(np.arange(len(gauss)))["actions"][:, 0]
    np.testing.assert_allclose(normed.mean(0), 0, atol=1e-6)
    np.testing.assert_allclose(normed.std(0), 1, atol=1e-5)
    np.testing.assert_allclose(
        gauss.get_action_normalization_stats()["actions"]["offset"][0], actions.mean(0), rtol=1e-6
    )

    minmax = SequenceDataset(path, ["pos"], action_config={"actions": {"normalization": "min_max"}})
    normed = minmax.get_batch(np.arange(len(minmax)))["actions"][:, 0]
    np.testing.assert_allclose(normed.min(0), -0.999999, atol=1e-6)
    np.testing.assert_allclose(normed.max(0), 0.999999, atol=1e-6)
    with pytest.raises(ValueError, match=r"action_config\['actions'\].normalization: 'zscore'"):
        SequenceDataset(path, ["pos"], action_config={"actions": {"normalization": "zscore"}})


def test_min_max_on_a_constant_dimension_only_centres(tmp_path: Path) -> None:
    path = write(tmp_path / "d.hdf5", [4])  # action dim 0 is the demo index: constant 0
    ds = SequenceDataset(path, ["pos"], action_config={"actions": {"normalization": "min_max"}})
    stats = ds.get_action_normalization_stats()["actions"]
    assert stats["scale"][0, 0] == pytest.approx(1.0)
    assert stats["offset"][0, 0] == pytest.approx(0.0)
    assert ds[0]["actions"][0, 0] == pytest.approx(0.0)


def test_several_action_keys_are_concatenated_in_order(tmp_path: Path) -> None:
    demo = coded_demo(0, 4)
    path = write_robomimic_hdf5(tmp_path / "d.hdf5", [demo], ENV_ARGS)
    import h5py

    with h5py.File(path, "a") as f:
        f["data/demo_0/action_gripper"] = np.array([1.0, -1.0, 1.0, -1.0])  # 1-D: becomes (N, 1)
    ds = SequenceDataset(path, ["pos"], action_keys=("action_gripper", "actions"), seq_length=2)
    assert ds.action_dim == 3
    np.testing.assert_array_equal(ds[1]["actions"], [[-1, 0, 1], [1, 0, 2]])
    assert ds.specs()[1]["actions"].shape == (2, 3)


# ----------------------------------------------------------------- specs


def test_specs_follow_the_file(tmp_path: Path) -> None:
    path = write(tmp_path / "d.hdf5", [5], image=True)
    ds = SequenceDataset(
        path,
        ["pos", "agentview_image"],
        frame_stack=2,
        seq_length=3,
        get_pad_mask=True,
        goal_mode="last",
    )
    features, labels = ds.specs()
    assert list(features) == [
        "obs/pos",
        "obs/agentview_image",
        "next_obs/pos",
        "next_obs/agentview_image",
        "goal_obs/pos",
        "goal_obs/agentview_image",
    ]
    assert features["obs/pos"].shape == (4, 3) and features["obs/pos"].dtype == torch.float32
    assert features["obs/agentview_image"].shape == (4, 4, 5, 3)
    assert features["obs/agentview_image"].dtype == torch.uint8
    assert features["goal_obs/pos"].shape == (3,)
    assert list(labels) == ["actions", "rewards", "dones", "pad_mask"]
    assert labels["actions"].shape == (4, 2) and labels["pad_mask"].dtype == torch.bool
    assert ds.specs(float64_as_float32=False)[0]["obs/pos"].dtype == torch.float64
    batch = ds.get_batch([0, 1])
    assert batch["obs"]["agentview_image"].shape[1:] == features["obs/agentview_image"].shape


def test_missing_obs_key_names_the_demo(tmp_path: Path) -> None:
    path = write(tmp_path / "d.hdf5", [3, 3])
    with pytest.raises(DataError, match=r"data/demo_0/obs/eef_quat is missing"):
        SequenceDataset(path, ["pos", "eef_quat"])


def test_pickles_without_the_file_handle(tmp_path: Path) -> None:
    path = write(tmp_path / "d.hdf5", [4, 3])
    ds = SequenceDataset(path, ["pos"], seq_length=2, hdf5_cache_mode=None)
    ds.get_batch([0])  # opens the file
    copy = pickle.loads(pickle.dumps(ds))
    np.testing.assert_array_equal(copy[5]["actions"], ds[5]["actions"])


def test_a_handle_inherited_through_fork_is_not_reused(tmp_path: Path) -> None:
    path = write(tmp_path / "d.hdf5", [4, 3])
    ds = SequenceDataset(path, ["pos"], hdf5_cache_mode=None)
    parent = ds.hdf5_file
    ds._hdf5_pid = -1  # as a forked worker sees it: opened by another process
    child = ds.hdf5_file
    assert child is not parent and bool(parent)  # the parent's handle stays open
    np.testing.assert_array_equal(ds[4]["actions"][0], [1, 0])
    ds._hdf5_pid = -1
    ds.close_and_delete_hdf5_handle()  # not ours: left open
    assert bool(child)
    child.close()
    parent.close()
