"""``t2r robomimic info`` and ``t2r robomimic split`` through the command line parser."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from tests.needs import needs_module

h5py = needs_module("h5py")

from t2r.cli import main  # noqa: E402
from t2r.robomimic.hdf5 import list_demos, read_filter_keys, write_robomimic_hdf5  # noqa: E402

from .test_dataset import ENV_ARGS, coded_demo  # noqa: E402


def write(path: Path, lengths: list[int]) -> Path:
    demos = [coded_demo(d, n, image=(d == 0)) for d, n in enumerate(lengths)]
    # demo_0 alone has an image: the other demos lack the key
    return write_robomimic_hdf5(path, demos, ENV_ARGS, masks={"odd": ["demo_1", "demo_3"]})


def test_info_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path / "d.hdf5", [4, 2, 6, 3])
    assert main(["robomimic", "info", str(path), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["num_demos"] == 4 and info["total_samples"] == 15
    assert info["lengths"] == {"min": 2, "max": 6, "mean": 3.75}
    assert [d["num_samples"] for d in info["demos"]] == [4, 2, 6, 3]
    assert info["keys"]["obs/pos"] == {"shape": [3], "dtype": "float64"}
    assert info["keys"]["obs/agentview_image"] == {
        "shape": [4, 5, 3],
        "dtype": "uint8",
        "missing_in": 3,
    }
    assert info["keys"]["actions"] == {"shape": [2], "dtype": "float32"}
    assert info["filter_keys"] == {"odd": {"num_demos": 2, "num_samples": 5}}
    assert info["action_range"] == {"min": [0.0, 0.0], "max": [3.0, 5.0]}
    assert info["env_args"] == ENV_ARGS


def test_info_text(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path / "d.hdf5", [4, 2, 6, 3])
    assert main(["robomimic", "info", str(path)]) == 0
    out = capsys.readouterr().out
    assert "demos: 4  samples: 15  length min/mean/max: 2/3.8/6" in out
    assert "obs/agentview_image" in out and "(4, 5, 3)  uint8  (missing in 3 demos)" in out
    assert "mask/odd: 2 demos, 5 samples" in out
    assert '"env_name": "Lift"' in out


def test_info_on_a_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["robomimic", "info", str(tmp_path / "nope.hdf5")]) == 1
    assert "nope.hdf5: no such robomimic HDF5 file" in capsys.readouterr().err


def robomimic_split(demos: list[str], val_ratio: float, seed: int = 0) -> list[str]:
    """The validation demos robomimic's split_train_val.py picks (np.random.seed(seed))."""
    demos = sorted(demos)
    num_val = int(val_ratio * len(demos))
    mask = np.zeros(len(demos))
    mask[:num_val] = 1.0
    np.random.RandomState(seed).shuffle(mask)
    return [d for d, m in zip(demos, mask, strict=True) if m == 1]


def test_split(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path / "d.hdf5", [2] * 23)
    assert main(["robomimic", "split", str(path), "--val_ratio", "0.2"]) == 0
    assert capsys.readouterr().out.splitlines() == ["mask/train: 19 demos", "mask/valid: 4 demos"]
    masks = read_filter_keys(path)
    assert set(masks) == {"odd", "train", "valid"}
    assert len(masks["valid"]) == int(0.2 * 23) == 4
    assert sorted(masks["train"] + masks["valid"], key=lambda n: int(n[5:])) == list_demos(path)
    assert masks["valid"] == robomimic_split(list_demos(path), 0.2)
    with h5py.File(path, "r") as f:
        assert f["mask/valid"].dtype.kind == "S"  # bytes names, as robomimic reads them
    assert os.listdir(tmp_path) == ["d.hdf5"]  # rewritten in place, atomically
    # seeded: the same split again; another seed, another split
    before = read_filter_keys(path)["valid"]
    assert main(["robomimic", "split", str(path), "--val_ratio", "0.2"]) == 0
    assert read_filter_keys(path)["valid"] == before
    assert main(["robomimic", "split", str(path), "--val_ratio", "0.2", "--seed", "1"]) == 0
    assert read_filter_keys(path)["valid"] != before


def test_split_a_filter_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path / "d.hdf5", [2] * 4)
    assert main(["robomimic", "split", str(path), "--val_ratio", "0.5", "--filter_key", "odd"]) == 0
    masks = read_filter_keys(path)
    assert set(masks) == {"odd", "odd_train", "odd_valid"}  # robomimic's names
    assert sorted(masks["odd_train"] + masks["odd_valid"]) == ["demo_1", "demo_3"]
    assert len(masks["odd_valid"]) == 1


def test_split_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path / "d.hdf5", [2] * 4)
    assert main(["robomimic", "split", str(path), "--val_ratio", "1.5"]) == 1
    assert "val_ratio must be in (0, 1), got 1.5" in capsys.readouterr().err
    assert main(["robomimic", "split", str(path), "--filter_key", "even"]) == 1
    assert "no filter key 'mask/even'" in capsys.readouterr().err
    assert read_filter_keys(path) == {"odd": ["demo_1", "demo_3"]}  # untouched


def test_robomimic_without_a_subcommand_prints_usage(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["robomimic"]) == 2
    assert "info" in capsys.readouterr().err
