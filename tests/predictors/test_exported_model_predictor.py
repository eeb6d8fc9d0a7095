"""ExportedModelPredictor: newest complete version, input checks, timeouts, reloads."""

from __future__ import annotations

import shutil
import threading
import time

import numpy as np
import pytest
import torch

from t2r.export import export_saved_model
from t2r.predictors import ExportedModelPredictor, RestoreOptions
from t2r.specs import SpecError
from tests.export.fixtures import eager_outputs, pose_inputs
from tests.export.models import TinyModel


@pytest.fixture(scope="module")
def predictor(pose_export):
    predictor = ExportedModelPredictor(pose_export.export_dir, timeout=0)
    assert predictor.restore()
    return predictor


@pytest.mark.parametrize("batch_size", [1, 7])
def test_predictions_equal_the_eager_model(predictor, pose_export, batch_size):
    features = pose_inputs(batch_size, seed=10 + batch_size)
    got = predictor.predict(features)["inference_output"]
    want = eager_outputs(pose_export.model, features)["inference_output"]
    assert isinstance(got, np.ndarray) and got.shape == (batch_size, 2)
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_unbatched_inputs_get_a_batch_dimension(predictor, pose_export):
    single = pose_inputs(None, seed=4)
    got = predictor.predict(single)["inference_output"]
    batched = {k: v[None] for k, v in single.items()}
    assert got.shape == (1, 2)
    np.testing.assert_allclose(
        got, eager_outputs(pose_export.model, batched)["inference_output"], atol=1e-5
    )


def test_same_kind_dtypes_are_cast_and_python_data_accepted(predictor):
    features = pose_inputs(None, seed=5)
    as_float64 = {**features, "state/gripper": features["state/gripper"].astype(np.float64)}
    as_list = {**features, "state/gripper": features["state/gripper"].tolist()}
    want = predictor.predict(features)["inference_output"]
    np.testing.assert_allclose(predictor.predict(as_float64)["inference_output"], want, atol=1e-6)
    np.testing.assert_allclose(predictor.predict(as_list)["inference_output"], want, atol=1e-6)
    extra = {**features, "unused": np.zeros(3)}  # keys the spec does not name are ignored
    np.testing.assert_allclose(predictor.predict(extra)["inference_output"], want)


def test_wrong_inputs_raise_errors_naming_key_and_shapes(predictor):
    features = pose_inputs(2)
    with pytest.raises(SpecError) as info:
        predictor.predict({**features, "state/image": features["state/image"].astype(np.float32)})
    assert str(info.value).startswith(
        "Dtype mismatch at 'state/image' (spec name 'state/image'): expected shape (36, 36, 3) "
        "(or with a leading batch dimension) dtype uint8, got shape (2, 36, 36, 3) dtype float32"
    )
    assert info.value.key == "state/image"
    with pytest.raises(
        SpecError,
        match=r"Shape mismatch at 'state/gripper' \(spec name 'gripper'\): expected shape \(2,\) "
        r".*dtype float32, got shape \(2, 3\) dtype float32",
    ):
        predictor.predict({**features, "state/gripper": np.zeros((2, 3), np.float32)})
    with pytest.raises(SpecError, match=r"Missing feature 'state/gripper' \(spec name 'gripper'\)"):
        predictor.predict({"state/image": features["state/image"]})
    with pytest.raises(SpecError, match=r"Batch size mismatch: 'state/image' has batch size 2"):
        predictor.predict({**features, "state/gripper": np.zeros((3, 2), np.float32)})


def test_specs_and_versions_come_from_the_export(predictor, pose_export):
    assert predictor.get_feature_specification()["state/image"].dtype == torch.uint8
    assert list(predictor.get_label_specification()) == ["target"]
    assert predictor.model_version == 7 and predictor.global_step == 7
    assert predictor.model_path == str(pose_export.version_dir)
    with pytest.raises(ValueError, match="not supported"):
        predictor.init_randomly()


def test_predict_before_restore_raises_a_clear_error(tmp_path):
    predictor = ExportedModelPredictor(tmp_path, timeout=0)
    with pytest.raises(ValueError, match=r"not yet been successfully restored.*Call restore\(\)"):
        predictor.predict({"x": np.zeros(3, np.float32)})
    assert predictor.global_step == -1


def test_restore_returns_false_when_nothing_appears_within_the_timeout(tmp_path):
    predictor = ExportedModelPredictor(
        tmp_path / "missing", timeout=0.3, poll_interval_secs=0.05, wait_for_export_dir=True
    )
    start = time.monotonic()
    assert predictor.restore() is False
    assert 0.3 <= time.monotonic() - start < 5
    (tmp_path / "missing").mkdir()
    (tmp_path / "missing" / "5").mkdir()  # incomplete: no assets
    assert ExportedModelPredictor(tmp_path / "missing", timeout=0).restore() is False


def test_restore_waits_for_an_export_and_reloads_newer_versions(tmp_path):
    torch.manual_seed(0)
    model = TinyModel()
    predictor = ExportedModelPredictor(tmp_path, timeout=30, poll_interval_secs=0.05)
    writer = threading.Timer(0.3, lambda: export_saved_model(model, tmp_path, global_step=1))
    writer.start()
    try:
        assert predictor.restore()
    finally:
        writer.join()
    x = {"x": np.ones(3, np.float32)}
    first = predictor.predict(x)["inference_output"]
    assert predictor.model_version == 1
    assert predictor.restore()  # nothing newer: keeps it
    with torch.no_grad():
        model.out.bias.add_(1.0)
    export_saved_model(model, tmp_path, global_step=2)
    assert predictor.restore()
    assert predictor.model_version == 2 and predictor.global_step == 2
    np.testing.assert_allclose(predictor.predict(x)["inference_output"], first + 1, atol=1e-5)


def test_async_restore_and_restore_in_the_constructor(tmp_path):
    model = TinyModel()
    export_saved_model(model, tmp_path, global_step=3)
    background = ExportedModelPredictor(
        tmp_path, timeout=0, restore_model_option=RestoreOptions.RESTORE_ASYNCHRONOUSLY
    )
    assert background.predict({"x": np.zeros(3, np.float32)})["inference_output"].shape == (1, 2)
    now = ExportedModelPredictor(
        tmp_path, restore_model_option=RestoreOptions.RESTORE_SYNCHRONOUSLY
    )
    assert now.model_version == 3
    assert now.restore(is_async=True) is True
    now.assert_is_loaded()


def test_a_version_directory_can_be_named_directly_and_broken_versions_are_skipped(tmp_path):
    model = TinyModel()
    export_saved_model(model, tmp_path, global_step=1)
    broken = export_saved_model(model, tmp_path, global_step=2)
    (broken / "model.pt2").write_bytes(b"not a program")
    predictor = ExportedModelPredictor(tmp_path, timeout=0)
    assert predictor.restore() and predictor.model_version == 1
    single = ExportedModelPredictor(tmp_path / "1", timeout=0)
    assert single.restore() and single.model_path == str(tmp_path / "1")
    shutil.rmtree(tmp_path / "1")
    predictor.close()
    assert predictor.restore() is False
