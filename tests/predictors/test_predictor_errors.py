"""Predictor errors that say what to fix, and the input policy (ints, NaN, extra keys)."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from t2r.export import export_saved_model
from t2r.predictors import ExportedModelPredictor, FeatureFeeder
from t2r.specs import ExtendedTensorSpec, SpecError, TensorSpecStruct
from tests.export.fixtures import pose_inputs
from tests.export.models import TinyModel


@pytest.fixture(scope="module")
def predictor(pose_export):
    predictor = ExportedModelPredictor(pose_export.export_dir, timeout=0)
    assert predictor.restore()
    return predictor


def _gripper_spec() -> TensorSpecStruct:
    return TensorSpecStruct(
        {
            "state/gripper": ExtendedTensorSpec((2,), "float32", name="gripper_pose"),
            "state/count": ExtendedTensorSpec((1,), "int32", name="count"),
        }
    )


# ------------------------------------------------------------- names vs paths
def test_features_keyed_by_spec_names_list_the_paths_to_use(predictor):
    features = pose_inputs(2)
    by_name = {"state/image": features["state/image"], "gripper": features["state/gripper"]}
    with pytest.raises(SpecError) as info:
        predictor.predict(by_name)
    message = str(info.value)
    assert message.startswith("Missing feature 'state/gripper' (spec name 'gripper')")
    assert "keyed by spec names; clients feed the spec's flat paths" in message
    assert "'gripper' -> 'state/gripper'" in message


# ------------------------------------------------------------ integer -> float
def test_integer_arrays_for_a_float_spec_are_an_error_python_ints_are_accepted():
    feeder = FeatureFeeder(_gripper_spec())
    count = np.array([3], np.int32)
    with pytest.raises(SpecError) as info:
        feeder({"state/gripper": np.array([1, 2], np.int64), "state/count": count})
    assert "Dtype mismatch at 'state/gripper' (spec name 'gripper_pose')" in str(info.value)
    assert "integer data is not cast to float implicitly" in str(info.value)
    assert ".astype(np.float32)" in str(info.value)
    with pytest.raises(SpecError, match="integer data is not cast"):
        feeder({"state/gripper": np.zeros((2,), np.uint8), "state/count": count})
    out = feeder({"state/gripper": [1, 2], "state/count": count})  # Python ints: no dtype
    assert out["state/gripper"].dtype == np.float32
    out = feeder({"state/gripper": [0.5, 1.0], "state/count": np.array([7], np.int64)})
    assert out["state/count"].dtype == np.int32 and out["state/count"][0, 0] == 7


def test_integer_casts_that_lose_values_are_an_error():
    feeder = FeatureFeeder(_gripper_spec())
    with pytest.raises(SpecError, match=r"'state/count'.*values do not fit int32"):
        feeder({"state/gripper": [0.0, 0.0], "state/count": np.array([2**40], np.int64)})


# ------------------------------------------------------------------- NaN / Inf
def test_non_finite_inputs_are_an_error_unless_allowed(predictor):
    features = pose_inputs(3)
    features["state/gripper"][1, 0] = np.nan
    with pytest.raises(SpecError) as info:
        predictor.predict(features)
    message = str(info.value)
    assert message.startswith("Non-finite input at 'state/gripper' (spec name 'gripper')")
    assert "1 of 6 values are NaN or infinite, the first at index (1, 0)" in message
    assert "allow_nonfinite=True" in message
    feeder = FeatureFeeder(_gripper_spec(), allow_nonfinite=True)
    out = feeder({"state/gripper": [np.inf, 0.0], "state/count": np.array([1], np.int32)})
    assert np.isinf(out["state/gripper"][0, 0])


def test_predictor_allow_nonfinite(pose_export):
    predictor = ExportedModelPredictor(pose_export.export_dir, timeout=0, allow_nonfinite=True)
    assert predictor.restore()
    features = pose_inputs(1)
    features["state/gripper"][0, 0] = np.nan
    assert predictor.predict(features)["inference_output"].shape == (1, 2)


# ------------------------------------------------------------------ extra keys
def test_extra_keys_are_ignored_with_one_warning_per_set(caplog):
    feeder = FeatureFeeder(_gripper_spec())
    features = {"state/gripper": [0.0, 1.0], "state/count": [1], "state/griper": [1.0, 2.0]}
    with caplog.at_level(logging.WARNING, logger="t2r.predictors.inputs"):
        feeder(features)
        feeder(features)
        feeder({**features, "other": 1})
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 2
    assert warnings[0].startswith(
        "Ignoring features that are not inputs of this model: ['state/griper']"
    )
    assert "['state/gripper', 'state/count']" in warnings[0]


# ------------------------------------------------------------- export_dir errors
def test_a_missing_export_dir_fails_at_once(tmp_path):
    (tmp_path / "runs").mkdir()
    missing = tmp_path / "runs" / "model" / "export"
    predictor = ExportedModelPredictor(missing, timeout=5)
    with pytest.raises(FileNotFoundError) as info:
        predictor.restore()
    message = str(info.value)
    assert f"Export directory {missing} does not exist" in message
    assert f"nearest existing parent: {tmp_path / 'runs'}, holding nothing" in message
    assert "wait_for_export_dir=True" in message


def test_a_directory_holding_exporter_subdirectories_names_them(tmp_path):
    model = TinyModel()
    export_saved_model(model, tmp_path / "export" / "latest_exporter_numpy", global_step=3)
    export_saved_model(model, tmp_path / "export" / "latest_exporter_numpy", global_step=5)
    export_saved_model(model, tmp_path / "export" / "best_exporter_numpy", global_step=3)
    with pytest.raises(ValueError) as info:
        ExportedModelPredictor(tmp_path, timeout=5).restore()
    message = str(info.value)
    assert f"{tmp_path} holds no export versions, but these subdirectories do" in message
    assert "export/best_exporter_numpy (versions 3)" in message
    assert "export/latest_exporter_numpy (versions 3, 5)" in message
    assert ExportedModelPredictor(tmp_path / "export" / "latest_exporter_numpy").restore()


def test_restore_timeouts_say_what_was_looked_for(tmp_path, caplog):
    (tmp_path / "5").mkdir()  # incomplete: no assets
    (tmp_path / "notes.txt").write_text("")
    with caplog.at_level(logging.WARNING, logger="t2r.predictors.abstract_predictor"):
        assert ExportedModelPredictor(tmp_path, timeout=0).restore() is False
    (message,) = [r.getMessage() for r in caplog.records]
    assert message.startswith(
        f"No complete export version in {tmp_path} (looked for integer-named subdirectories "
        "holding t2r_assets.json; it holds 5/ (incomplete: no t2r_assets.json), notes.txt)"
    )
