"""The export directory format: program, weights, assets; parity; no model code needed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

import t2r
from t2r.atomic import temporary_path_for
from t2r.export import (
    TORCH_EXPORT,
    TORCHSCRIPT,
    ExportModule,
    UnsafeExportError,
    export_saved_model,
    latest_version,
    list_versions,
    load_export,
    program_builder,
    prune_versions,
)
from t2r.export.loading import LiftedProgramRunner, move_program_to_device
from t2r.modes import ModeKeys
from t2r.specs import SpecError, assert_equal

from .fixtures import eager_outputs, pose_inputs
from .models import MODULE_NAME, CountingModel, DataDependentModel, PoseModel, TinyModel

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_a_version_holds_program_weights_and_assets(pose_export):
    version = pose_export.version_dir
    assert version.name == "7"
    names = sorted(p.name for p in version.iterdir())
    assert names == ["model.onnx", "model.pt2", "model.safetensors", "t2r_assets.json"]
    assets_time = (version / "t2r_assets.json").stat().st_mtime_ns
    assert all(assets_time >= (version / n).stat().st_mtime_ns for n in names)  # assets last

    loaded = load_export(version)
    model = pose_export.model
    assert_equal(
        model.get_feature_specification_for_packing(ModeKeys.PREDICT), loaded.assets.feature_spec
    )
    assert_equal(
        model.get_label_specification_for_packing(ModeKeys.PREDICT), loaded.assets.label_spec
    )
    assert (
        loaded.assets.feature_spec["state/image"].dtype == torch.uint8
    )  # raw, preprocessor inside
    assert loaded.assets.global_step == 7
    metadata = loaded.metadata
    assert metadata["model_class"] == f"{MODULE_NAME}.PoseModel"
    assert metadata["program_format"] == TORCH_EXPORT
    assert metadata["t2r_version"] == t2r.__version__
    assert metadata["input_names"] == ["state/image", "state/gripper"]
    assert metadata["output_names"] == ["inference_output"]
    assert metadata["outputs"]["inference_output"] == {"shape": [None, 2], "dtype": "float32"}
    assert metadata["onnx_file"] == "model.onnx"
    assert loaded.program_format == TORCH_EXPORT


@pytest.mark.parametrize("batch_size", [1, 7])
def test_exported_program_equals_the_eager_model(pose_export, batch_size):
    program = load_export(pose_export.version_dir).program
    features = pose_inputs(batch_size, seed=batch_size)
    with torch.inference_mode():
        got = program({k: torch.from_numpy(v) for k, v in features.items()})
    want = eager_outputs(pose_export.model, features)
    assert got["inference_output"].shape == (batch_size, 2)
    np.testing.assert_allclose(got["inference_output"].numpy(), want["inference_output"], atol=1e-5)


def test_safetensors_weights_warm_start_a_fresh_model(pose_export):
    weights = load_file(pose_export.version_dir / "model.safetensors")
    assert weights.keys() == pose_export.model.state_dict().keys()
    fresh = PoseModel().eval()
    loaded = fresh.init_from_checkpoint(pose_export.version_dir, strict=True)
    assert sorted(loaded) == sorted(weights)
    features = pose_inputs(3)
    np.testing.assert_array_equal(
        eager_outputs(fresh, features)["inference_output"],
        eager_outputs(pose_export.model, features)["inference_output"],
    )


def test_a_fresh_process_predicts_without_the_model_code(pose_export, tmp_path):
    features = pose_inputs(4, seed=3)
    np.savez(tmp_path / "features.npz", **{k.replace("/", "|"): v for k, v in features.items()})
    script = textwrap.dedent(
        f"""
        import json, sys
        import numpy as np
        from t2r.predictors import ExportedModelPredictor

        data = np.load(sys.argv[2], allow_pickle=False)
        features = {{k.replace("|", "/"): data[k] for k in data.files}}
        predictor = ExportedModelPredictor(sys.argv[1], timeout=0)
        assert predictor.restore()
        out = predictor.predict(features)["inference_output"]
        print(json.dumps({{
            "output": out.tolist(),
            "model_module_loaded": {MODULE_NAME!r} in sys.modules,
            "t2r_models_loaded": "t2r.models" in sys.modules,
            "preprocessors_loaded": "t2r.preprocessors" in sys.modules,
            "global_step": predictor.global_step,
        }}))
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script, str(pose_export.export_dir), str(tmp_path / "features.npz")],
        cwd=tmp_path,  # not the repo: `tests` is not importable there
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": ""},
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["model_module_loaded"] is False
    assert report["t2r_models_loaded"] is False
    assert report["preprocessors_loaded"] is False
    assert report["global_step"] == 7
    want = eager_outputs(pose_export.model, features)["inference_output"]
    np.testing.assert_allclose(np.array(report["output"]), want, atol=1e-5)


def _tiny_outputs(model, x):
    with torch.no_grad():
        return (
            model.model_fn({"x": torch.from_numpy(x)}, None, ModeKeys.PREDICT)
            .export_outputs["inference_output"]
            .numpy()
        )


def test_later_versions_reuse_the_trace_with_new_weights(tmp_path):
    torch.manual_seed(0)
    model = TinyModel()
    first = export_saved_model(model, tmp_path, global_step=1)
    builder = program_builder(model)
    traced = builder._traced
    with torch.no_grad():
        model.out.bias.add_(1.0)  # training changes the weights in place
    start = time.perf_counter()
    second = export_saved_model(model, tmp_path, global_step=2)
    assert builder._traced is traced  # no second trace
    assert time.perf_counter() - start < 5
    x = np.random.default_rng(0).random((5, 3), dtype=np.float32)
    with torch.inference_mode():
        new = load_export(second).program({"x": torch.from_numpy(x)})["inference_output"].numpy()
        old = load_export(first).program({"x": torch.from_numpy(x)})["inference_output"].numpy()
    np.testing.assert_allclose(new, _tiny_outputs(model, x), atol=1e-6)
    np.testing.assert_allclose(new - old, np.ones_like(new), atol=1e-5)
    assert model.training  # exporting leaves the training mode alone


def test_torchscript_fallback_when_torch_export_cannot_capture_the_model(tmp_path):
    torch.manual_seed(0)
    model = DataDependentModel()
    version = export_saved_model(model, tmp_path, global_step=3)
    with pytest.raises(UnsafeExportError, match=r"model\.torchscript\.pt.*trust_torchscript"):
        load_export(version)  # TorchScript's loader unpickles: only when trusted
    loaded = load_export(version, trust_torchscript=True)
    assert loaded.program_format == TORCHSCRIPT
    assert (version / "model.torchscript.pt").is_file() and not (version / "model.pt2").exists()
    assert "data-dependent" in loaded.metadata["torch_export_error"].lower()
    for batch in (1, 7):
        x = np.random.default_rng(batch).random((batch, 3), dtype=np.float32)
        with torch.inference_mode():
            got = loaded.program({"x": torch.from_numpy(x)})["inference_output"].numpy()
        np.testing.assert_allclose(got, _tiny_outputs(model, x), atol=1e-5)


def test_torchscript_can_be_chosen(tmp_path):
    model = TinyModel()
    first = export_saved_model(model, tmp_path, 1, program_format=TORCHSCRIPT)
    with torch.no_grad():
        model.out.bias.fill_(2.0)
    second = export_saved_model(model, tmp_path, 2, program_format=TORCHSCRIPT)
    x = np.ones((2, 3), np.float32)
    with torch.inference_mode():
        got = load_export(second, trust_torchscript=True).program({"x": torch.from_numpy(x)})
    np.testing.assert_allclose(got["inference_output"].numpy(), _tiny_outputs(model, x), atol=1e-6)
    assert load_export(first, trust_torchscript=True).program_format == TORCHSCRIPT


def test_only_complete_versions_are_listed_and_old_ones_pruned(tmp_path):
    model = TinyModel()
    for step in (1, 2, 3, 4):
        export_saved_model(model, tmp_path, global_step=step, exports_to_keep=2)
    assert [v.version for v in list_versions(tmp_path)] == [3, 4]
    (tmp_path / "9").mkdir()  # no assets: a copy in progress
    (tmp_path / "9" / "model.pt2").write_bytes(b"partial")
    stale = Path(temporary_path_for(tmp_path / "8"))
    stale.mkdir()
    (stale / "t2r_assets.json").write_text("{}")
    (tmp_path / "notes").mkdir()
    assert latest_version(tmp_path).version == 4
    old = time.time() - 7200
    os.utime(stale, (old, old))
    fresh_tmp = Path(temporary_path_for(tmp_path / "10"))
    fresh_tmp.mkdir()
    prune_versions(tmp_path, keep=1)
    assert [v.version for v in list_versions(tmp_path)] == [4]
    assert not stale.exists()  # a writer that died long ago
    assert fresh_tmp.exists()  # a live writer keeps its work
    assert (tmp_path / "9").exists()


def test_exporting_a_version_again_replaces_it(tmp_path):
    model = TinyModel()
    export_saved_model(model, tmp_path, global_step=5)
    with torch.no_grad():
        model.out.bias.fill_(3.0)
    path = export_saved_model(model, tmp_path, global_step=5)
    assert [v.version for v in list_versions(tmp_path)] == [5]
    assert [p.name for p in tmp_path.iterdir()] == ["5"]
    x = np.zeros((1, 3), np.float32)
    with torch.inference_mode():
        got = load_export(path).program({"x": torch.from_numpy(x)})["inference_output"].numpy()
    np.testing.assert_allclose(got, _tiny_outputs(model, x), atol=1e-6)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_preprocessor_checks_still_run_under_torchscript_tracing():
    module = ExportModule(PoseModel().eval())
    wrong = {
        "state/image": torch.zeros(2, 30, 30, 3, dtype=torch.uint8),
        "state/gripper": torch.zeros(2, 2),
    }
    with pytest.raises(SpecError, match=r"'state/image'.*\(36, 36, 3\).*\(30, 30, 3\)"):
        torch.jit.trace(module, (wrong,), strict=False, check_trace=False)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_a_model_training_on_cuda_exports_a_cpu_program_that_also_runs_on_cuda(tmp_path):
    from t2r.predictors import ExportedModelPredictor

    torch.manual_seed(0)
    model = PoseModel().cuda()
    export_saved_model(model, tmp_path, global_step=1)
    assert next(model.parameters()).is_cuda and model.training  # the live model is untouched
    features = pose_inputs(3)
    want = eager_outputs(model.cpu().eval(), features)["inference_output"]
    for device in ("cpu", "cuda"):
        predictor = ExportedModelPredictor(tmp_path, timeout=0, device=device)
        assert predictor.restore()
        got = predictor.predict(features)["inference_output"]
        np.testing.assert_allclose(got, want, atol=1e-4)


def test_a_program_moved_to_another_device_runs_code_for_that_device(tmp_path):
    # The CUDA failure this guards against shows on CPU-only machines as stale code:
    # the pose model's uint8 -> float cast asserts its input's device in the graph.
    loaded = load_export(export_saved_model(PoseModel(), tmp_path, global_step=1))
    exported = torch.export.load(str(loaded.version.path / "model.pt2"))
    assert "device(type='cpu')" in exported.graph_module.code
    moved = move_program_to_device(exported, torch.device("meta"))
    assert "device(type='cpu')" not in moved.graph_module.code
    assert "'meta'" in moved.graph_module.code


def test_programs_run_fast_and_fall_back_to_module_for_functional_mutations(tmp_path):
    torch.manual_seed(0)
    x = {"x": torch.from_numpy(np.random.default_rng(1).random((3, 3), dtype=np.float32))}
    loaded = load_export(export_saved_model(CountingModel(), tmp_path, global_step=1))
    assert isinstance(loaded.program, LiftedProgramRunner)
    exported = torch.export.load(str(loaded.version.path / "model.pt2"))
    functional = exported.run_decompositions()  # the buffer update becomes an output
    fallback = LiftedProgramRunner.for_program(functional)
    assert not isinstance(fallback, LiftedProgramRunner)
    with torch.inference_mode():
        want = exported.module()(x)["inference_output"]
        torch.testing.assert_close(loaded.program(x)["inference_output"], want)
        torch.testing.assert_close(fallback(x)["inference_output"], want)
