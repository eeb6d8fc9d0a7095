"""Every model goes through T2RModelFixture.random_train; golden values hold."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from t2r import specs
from t2r.modes import ModeKeys
from t2r.testing import T2RModelFixture, assert_golden_values
from t2r.train import seed_everything

from .models import TinyClassifier, TinyCritic, TinyRegression

GOLDEN_DIR = Path(__file__).resolve().parents[1] / "golden"

# Every model's random-train run is in tests/test_model_contract.py (the registry).


def test_random_train_fails_loudly_without_a_checkpoint(tmp_path):
    fixture = T2RModelFixture(tmp_path)
    with pytest.raises(AssertionError, match="expected a checkpoint at step 2"):
        fixture.random_train(
            TinyRegression(),
            keep_checkpoint_max=0,
            create_exporters_fn=None,
            train_hook_builders=[_DeleteCheckpoints()],
        )


class _DeleteCheckpoints:
    def create_hooks(self, t2r_model, model_dir):
        import shutil

        from t2r.train import CallbackHook

        return [CallbackHook(after_checkpoint=lambda c: shutil.rmtree(c.path))]


def test_golden_values():
    assert_golden_values(
        lambda: TinyRegression(dropout=0.0), GOLDEN_DIR / "tiny_regression.safetensors"
    )


def test_golden_values_detect_a_change(tmp_path):
    class Shifted(TinyRegression):
        def a_func(self, features, mode, config=None, params=None):
            outputs = super().a_func(features, mode, config, params)
            self.add_golden_tensor("output_mean", outputs["inference_output"].mean() + 1e-2)
            return outputs

    with pytest.raises(AssertionError, match="output_mean/1"):
        assert_golden_values(
            lambda: Shifted(dropout=0.0), GOLDEN_DIR / "tiny_regression.safetensors"
        )


def test_critic_packing_spec_is_the_preprocessor_in_spec():
    model = TinyCritic()
    packing = model.get_feature_specification_for_packing(ModeKeys.TRAIN)
    assert packing["state/image"].dtype == torch.uint8
    assert model.get_feature_specification(ModeKeys.TRAIN)["state/image"].dtype == torch.float32


def test_critic_tiles_actions_for_predict():
    model = TinyCritic(action_batch_size=5)
    spec = model.get_feature_specification(ModeKeys.PREDICT)
    assert spec["action/pose"].shape == (5, 2)
    assert model.get_feature_specification(ModeKeys.TRAIN)["action/pose"].shape == (2,)


def test_classifier_eval_metrics():
    model = TinyClassifier(multi_label=False)
    features = {"x": torch.rand(6, 4)}
    labels = {"target": torch.randint(0, 3, (6,))}
    outputs = model.model_fn(features, labels, ModeKeys.EVAL)
    assert set(outputs.eval_metrics) == {"loss", "accuracy"}
    assert 0.0 <= float(outputs.eval_metrics["accuracy"]) <= 1.0


def test_predict_mode_ignores_labels_and_returns_export_outputs():
    model = TinyRegression()
    outputs = model.model_fn({"x": torch.rand(2, 3)}, None, ModeKeys.PREDICT)
    assert list(outputs.export_outputs) == ["inference_output"]
    assert outputs.loss is None


def test_model_fn_rejects_wrong_dtype_naming_the_key():
    with pytest.raises(
        specs.SpecError,
        match="'x' \\(spec name 'x'\\): expected shape \\(3,\\) dtype torch.float32",
    ):
        TinyRegression().model_fn(
            {"x": torch.zeros(2, 3, dtype=torch.int32)}, None, ModeKeys.PREDICT
        )


def test_init_from_checkpoint_partial(tmp_path):
    seed_everything(0)
    checkpoint = T2RModelFixture(tmp_path).random_train(TinyRegression())
    target = TinyRegression()
    loaded = target.init_from_checkpoint(checkpoint.path, include=r"^hidden\.")
    assert loaded == ["hidden.weight", "hidden.bias"]
    from safetensors.torch import load_file

    saved = load_file(str(checkpoint.path / "model.safetensors"))
    assert torch.equal(target.hidden.weight, saved["hidden.weight"])
    assert not torch.equal(target.out.weight, saved["out.weight"])
    with pytest.raises(FileNotFoundError):
        target.init_from_checkpoint(tmp_path / "nope")
