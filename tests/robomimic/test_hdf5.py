from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from tests.needs import needs_module

h5py = needs_module("h5py")

from t2r.data.errors import DataError  # noqa: E402
from t2r.robomimic.hdf5 import (  # noqa: E402
    Demo,
    list_demos,
    read_demo,
    read_env_args,
    read_filter_keys,
    sorted_demo_names,
    write_filter_keys,
    write_robomimic_hdf5,
)

ENV_ARGS = {"env_name": "Lift", "type": 1, "env_kwargs": {"robots": ["Panda"], "control_freq": 20}}


def _demo(n: int, seed: int) -> Demo:
    rng = np.random.default_rng(seed)
    return Demo(
        obs={
            "eef_pos": rng.normal(size=(n, 3)).astype(np.float32),
            "image": rng.integers(0, 256, size=(n, 4, 5, 3), dtype=np.uint8),
        },
        actions=rng.normal(size=(n, 7)),
        rewards=np.arange(n, dtype=np.float64),
        dones=np.eye(1, n, n - 1, dtype=np.int64)[0],
    )


def test_write_and_read_back(tmp_path: Path) -> None:
    demos = [_demo(5, 0), _demo(3, 1), _demo(4, 2)]
    path = write_robomimic_hdf5(
        tmp_path / "d.hdf5",
        demos,
        ENV_ARGS,
        masks={"train": ["demo_0", "demo_2"], "valid": ["demo_1"]},
    )
    assert path == tmp_path / "d.hdf5"
    assert os.listdir(tmp_path) == ["d.hdf5"]  # no temporary left behind
    with h5py.File(path, "r") as f:
        assert f["data"].attrs["total"] == 12
        assert json.loads(f["data"].attrs["env_args"]) == ENV_ARGS
        assert [f[f"data/demo_{i}"].attrs["num_samples"] for i in range(3)] == [5, 3, 4]
        assert f["mask/train"].dtype.kind == "S"
        assert list(f["mask/train"][()]) == [b"demo_0", b"demo_2"]
        assert f["data/demo_0/obs/image"].dtype == np.uint8
        assert "states" not in f["data/demo_0"]
    assert read_env_args(path) == ENV_ARGS
    assert read_filter_keys(path) == {"train": ["demo_0", "demo_2"], "valid": ["demo_1"]}
    assert list_demos(path) == ["demo_0", "demo_1", "demo_2"]
    assert list_demos(path, "train") == ["demo_0", "demo_2"]
    back = read_demo(path, "demo_1")
    np.testing.assert_array_equal(back.actions, demos[1].actions)
    np.testing.assert_array_equal(back.obs["image"], demos[1].obs["image"])
    np.testing.assert_array_equal(back.rewards, demos[1].rewards)
    # next_obs derived: shifted by one, last step repeated
    assert back.next_obs is not None
    eef = demos[1].obs["eef_pos"]
    np.testing.assert_array_equal(back.next_obs["eef_pos"], eef[[1, 2, 2]])


def test_explicit_next_obs_states_and_model_file(tmp_path: Path) -> None:
    demo = _demo(3, 0)
    demo.next_obs = {k: v + 1 if v.dtype != np.uint8 else v for k, v in demo.obs.items()}
    demo.states = np.ones((3, 9))
    demo.model_file = "<mujoco/>"
    path = write_robomimic_hdf5(tmp_path / "d.hdf5", [demo], ENV_ARGS)
    back = read_demo(path, "demo_0")
    assert back.next_obs is not None
    np.testing.assert_array_equal(back.next_obs["eef_pos"], demo.obs["eef_pos"] + 1)
    np.testing.assert_array_equal(back.states, np.ones((3, 9)))
    assert back.model_file == "<mujoco/>"
    assert read_filter_keys(path) == {}


def test_demos_ordered_by_integer_suffix(tmp_path: Path) -> None:
    assert sorted_demo_names(["demo_10", "demo_2", "demo_1"]) == ["demo_1", "demo_2", "demo_10"]
    path = write_robomimic_hdf5(tmp_path / "d.hdf5", [_demo(2, i) for i in range(12)], ENV_ARGS)
    names = list_demos(path)
    assert names[:3] == ["demo_0", "demo_1", "demo_2"] and names[-1] == "demo_11"
    with h5py.File(path, "a") as f:
        f["mask/odd"] = np.array([b"demo_11", b"demo_3", b"demo_1"])
    assert list_demos(path, "odd") == ["demo_1", "demo_3", "demo_11"]


def test_errors_name_the_place(tmp_path: Path) -> None:
    bad = _demo(3, 0)
    bad.obs["eef_pos"] = bad.obs["eef_pos"][:2]
    with pytest.raises(DataError, match=r"demo_1/obs/eef_pos: 2 steps, but actions has 3"):
        write_robomimic_hdf5(tmp_path / "d.hdf5", [_demo(3, 0), bad], ENV_ARGS)
    assert os.listdir(tmp_path) == []
    with pytest.raises(DataError, match=r"mask/train: names 'demo_5'"):
        write_robomimic_hdf5(
            tmp_path / "d.hdf5", [_demo(3, 0)], ENV_ARGS, masks={"train": ["demo_5"]}
        )
    path = write_robomimic_hdf5(tmp_path / "d.hdf5", [_demo(3, 0)], ENV_ARGS)
    with pytest.raises(DataError, match=r"no filter key 'mask/valid' \(the file has: none\)"):
        list_demos(path, "valid")
    with pytest.raises(DataError, match=r"no such robomimic HDF5 file"):
        list_demos(tmp_path / "missing.hdf5")


def test_write_filter_keys_replaces_atomically(tmp_path: Path) -> None:
    path = write_robomimic_hdf5(
        tmp_path / "d.hdf5", [_demo(2, i) for i in range(4)], ENV_ARGS, masks={"train": ["demo_0"]}
    )
    write_filter_keys(path, {"train": ["demo_1", "demo_2"], "valid": ["demo_3"]})
    assert read_filter_keys(path) == {"train": ["demo_1", "demo_2"], "valid": ["demo_3"]}
    assert os.listdir(tmp_path) == ["d.hdf5"]
    with pytest.raises(DataError, match=r"mask/x would name 'demo_9'"):
        write_filter_keys(path, {"x": ["demo_9"]})
    assert read_filter_keys(path) == {"train": ["demo_1", "demo_2"], "valid": ["demo_3"]}
