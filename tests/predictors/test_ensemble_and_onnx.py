"""The ensemble predictor and the ONNX path."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from t2r.export import OnnxExportError, convert_to_onnx, export_saved_model, load_export
from t2r.predictors import EnsembleExportedModelPredictor, OnnxPredictor
from tests.export.fixtures import eager_outputs, pose_inputs
from tests.export.models import NoOnnxModel, TinyModel


def _export_with_bias(root, name, bias):
    torch.manual_seed(0)
    model = TinyModel()
    with torch.no_grad():
        model.out.bias.fill_(bias)
    export_saved_model(model, root / name, global_step=1)
    return model


def test_ensemble_averages_sampled_members(tmp_path):
    _export_with_bias(tmp_path, "a", 0.0)
    _export_with_bias(tmp_path, "b", 2.0)
    dirs = f"{tmp_path / 'a'},{tmp_path / 'b'}"
    x = {"x": np.ones(3, np.float32)}
    single_a = EnsembleExportedModelPredictor(str(tmp_path / "a"), timeout=0)
    with pytest.raises(ValueError, match="ensemble is empty"):
        single_a.predict(x)
    assert single_a.restore()
    base = single_a.predict(x)["inference_output"]

    ensemble = EnsembleExportedModelPredictor(dirs, ensemble_size=8, timeout=0, seed=0)
    assert ensemble.restore()
    got = ensemble.predict(x)["inference_output"]
    members = [p.model_path.split("/")[-2] for p in ensemble._ensemble]
    share_b = members.count("b") / len(members)
    np.testing.assert_allclose(got, base + 2.0 * share_b, atol=1e-5)
    assert ensemble.global_step == -1 and len(ensemble.model_path.split(",")) == 8
    local = EnsembleExportedModelPredictor(["/remote/a"], local_export_root=tmp_path, timeout=0)
    assert local.restore() and local.global_step == 1
    with pytest.raises(ValueError, match="Cannot find local export dir"):
        EnsembleExportedModelPredictor(["/remote/zzz"], local_export_root=tmp_path)


@pytest.mark.parametrize("batch_size", [1, 7])
def test_onnx_predictor_matches_the_eager_model(pose_export, batch_size):
    predictor = OnnxPredictor(pose_export.export_dir, timeout=0)
    assert predictor.restore() and predictor.model_version == 7
    features = pose_inputs(batch_size, seed=20 + batch_size)
    got = predictor.predict(features)["inference_output"]
    want = eager_outputs(pose_export.model, features)["inference_output"]
    assert got.shape == (batch_size, 2)
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_models_that_do_not_convert_are_exported_without_onnx(tmp_path):
    model = NoOnnxModel()
    with pytest.raises(OnnxExportError, match="linalg|diag_embed"):
        convert_to_onnx(model)
    version = export_saved_model(model, tmp_path, global_step=1, export_onnx=True)
    metadata = load_export(version).metadata
    assert metadata["onnx_file"] is None and "ONNX" in metadata["onnx_error"]
    assert not (version / "model.onnx").exists()
    assert OnnxPredictor(tmp_path, timeout=0).restore() is False  # no ONNX version to serve


def test_onnx_predictor_never_reads_the_program(pose_export, tmp_path):
    import pickle
    import shutil

    from tests.export.test_untrusted_exports import _Payload

    version = tmp_path / "export" / "7"
    shutil.copytree(pose_export.version_dir, version)
    marker = tmp_path / "payload-ran"
    (version / "model.pt2").write_bytes(pickle.dumps(_Payload(marker)))
    predictor = OnnxPredictor(version.parent, timeout=0)
    assert predictor.restore()
    features = pose_inputs(2, seed=3)
    got = predictor.predict(features)["inference_output"]
    np.testing.assert_allclose(
        got, eager_outputs(pose_export.model, features)["inference_output"], atol=1e-5
    )
    assert predictor.export.program({k: torch.from_numpy(v) for k, v in features.items()})[
        "inference_output"
    ].shape == (2, 2)
    assert not marker.exists()
