"""t2r inspect: datasets of every format, exports and checkpoints, as text and JSON."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from t2r.cli import main
from t2r.data import DataError
from t2r.inspect import format_report, inspect_path
from t2r.train.checkpoints import TrainingState, save_checkpoint
from tests.data.test_convert import ROUND_TRIP_FORMATS, make_episodes, write
from tests.export.fixtures import PoseExport, pose_export  # noqa: F401  (a session fixture)
from tests.needs import needs_fixture


@pytest.mark.parametrize("fmt", ROUND_TRIP_FORMATS)
def test_inspect_each_dataset_format(tmp_path: Path, fmt: str) -> None:
    episodes = make_episodes()
    path = write(tmp_path, fmt, episodes)
    report = inspect_path(path)
    assert report["kind"] == "dataset" and report["format"] == fmt
    assert report["episodes"] == 3 and report["steps"] == 12
    assert report["steps_per_episode"] == {"min": 3, "max": 5, "mean": 4.0}
    features = report["features"]
    assert features["observation/image"]["kind"] == "image"
    assert features["observation/image"]["shape"] == [16, 12, 3]
    assert features["observation/language_instruction"]["kind"] == "text"
    assert features["observation/language_instruction"]["distinct"] == 3
    state = np.concatenate([e.steps["observation/state"] for e in episodes]).astype(np.float64)
    stats = features["observation/state"]["stats"]
    np.testing.assert_allclose(stats["min"], state.min(axis=0), rtol=1e-6)
    np.testing.assert_allclose(stats["max"], state.max(axis=0), rtol=1e-6)
    np.testing.assert_allclose(stats["mean"], state.mean(axis=0), rtol=1e-6)
    assert report["distinct_tasks"] == 3
    source = report["source"]  # the format's own metadata
    expected = {
        "tfrecord": ("layout", "t2r_episodes.json"),
        "rlds": ("split_episodes", {"train": 3}),
        "robomimic": ("num_demos", 3),
        "lerobot": ("total_frames", 12),
    }[fmt]
    assert source[expected[0]] == expected[1]
    json.dumps(report)  # JSON-ready
    text = format_report(report)
    assert f"{fmt} dataset" in text and "episodes: 3  steps: 12" in text


def test_inspect_the_fixtures() -> None:
    report = inspect_path(needs_fixture("rlds_fractal_tiny"))
    assert (report["episodes"], report["steps"]) == (6, 33)
    assert report["splits"] == {"train": 5, "val": 1}
    assert report["source"]["name"] == "fractal20220817_data_tiny"
    assert report["source"]["version"] == "0.1.0"
    assert report["features"]["observation/image"]["stored_as"] == "jpeg"
    assert report["features"]["action/terminate_episode"]["dtype"] == "int32"
    pose = inspect_path(needs_fixture("pose_env_test_data.tfrecord"))
    assert (pose["episodes"], pose["steps"]) == (100, 100)
    assert pose["features"]["state/image"]["shape"] == [64, 64, 3]
    assert pose["features"]["reward"]["stats"]["max"] < 0  # pose_env rewards are negative
    assert any("episode of one step" in note for note in pose["notes"])
    assert pose["source"]["layout"] == "inferred from the first record"


def test_inspect_max_episodes(tmp_path: Path) -> None:
    path = write(tmp_path, "tfrecord", make_episodes())
    report = inspect_path(path, max_episodes=2)
    assert report["episodes"] == 2 and not report["complete"]


def test_inspect_export(pose_export: PoseExport) -> None:  # noqa: F811
    report = inspect_path(pose_export.export_dir)
    assert report["kind"] == "export"
    assert report["version"] == 7 and report["global_step"] == 7 and report["versions"] == [7]
    assert report["program_format"] == "torch.export"
    keys = {i["key"]: i for i in report["feed"]["inputs"]}
    assert keys["state/image"]["dtype"] == "uint8"
    assert keys["state/gripper"]["shape"] == [2]
    assert "ExportedModelPredictor" in report["feed"]["usage"]
    # one version directory directly
    assert inspect_path(pose_export.version_dir)["version"] == 7
    text = format_report(report)
    assert "state/gripper" in text and "how to feed it" in text


def test_inspect_checkpoint(tmp_path: Path, pose_export: PoseExport) -> None:  # noqa: F811
    model = torch.nn.Linear(3, 2)
    save_checkpoint(tmp_path / "model", model, TrainingState(global_step=5))
    report = inspect_path(tmp_path / "model")
    assert report["kind"] == "checkpoint" and report["global_step"] == 5
    assert report["weights"] == {"tensors": 2, "parameters": 8}
    assert report["weight_shapes"]["weight"] == [2, 3]
    assert "feature_spec" not in report
    assert "carries no specs" in format_report(report)
    # With an export beside the checkpoints, its specs say how to feed the model.
    shutil.copytree(pose_export.export_dir, tmp_path / "model" / "export" / "latest")
    ckpt = next((tmp_path / "model" / "checkpoints").iterdir())
    report = inspect_path(ckpt)
    assert report["global_step"] == 5
    assert "state/gripper" in report["feature_spec"]


def test_cli_inspect_json_and_text(tmp_path: Path, capsys) -> None:
    path = write(tmp_path, "rlds", make_episodes())
    assert main(["inspect", str(path), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["format"] == "rlds" and report["episodes"] == 3
    assert main(["inspect", str(path)]) == 0
    assert "rlds dataset" in capsys.readouterr().out
    assert main(["inspect", str(tmp_path / "nothing")]) == 2
    assert "nothing: no such file" in capsys.readouterr().err


def test_cli_convert(tmp_path: Path, capsys) -> None:
    path = write(tmp_path, "rlds", make_episodes())
    assert main(["convert", str(path), str(tmp_path / "out.hdf5"), "--to", "robomimic"]) == 0
    out = capsys.readouterr().out
    assert "(rlds) ->" in out and "3 episodes, 12 steps" in out and "no text field" in out
    assert main(["convert", str(path), str(tmp_path / "out.hdf5"), "--to", "robomimic"]) == 2
    assert "exists" in capsys.readouterr().err


def test_inspect_unknown_path_names_it(tmp_path: Path) -> None:
    (tmp_path / "x.bin").write_bytes(b"\x00" * 40)
    with pytest.raises(DataError, match=r"x\.bin"):
        inspect_path(tmp_path / "x.bin")


def test_inspect_tensorflow_export_specs(tmp_path: Path) -> None:
    """A Tensor2Robot SavedModel export: its pbtxt assets give the specs to feed."""
    from t2r.specs import ExtendedTensorSpec, T2RAssets, TensorSpecStruct, t2r_assets_to_pbtxt

    spec = TensorSpecStruct(
        [
            ("state/image", ExtendedTensorSpec((64, 64, 3), "uint8", name="state/image")),
            ("pose", ExtendedTensorSpec((2,), "float32", name="pose")),
        ]
    )
    version = tmp_path / "export" / "1234"
    (version / "assets.extra").mkdir(parents=True)
    (version / "saved_model.pb").write_bytes(b"")
    text = t2r_assets_to_pbtxt(T2RAssets(spec, None, global_step=1234))
    (version / "assets.extra" / "t2r_assets.pbtxt").write_text(text)
    report = inspect_path(tmp_path / "export")
    assert report["kind"] == "tensorflow_export" and report["global_step"] == 1234
    assert report["feature_spec"]["state/image"]["shape"] == [64, 64, 3]
    assert sorted(i["key"] for i in report["feed"]["inputs"]) == ["pose", "state/image"]
    assert "saved_model.pb" in format_report(report)
