"""Stateful policies through exports: the network state as explicit inputs and outputs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from t2r import specs
from t2r.export import export_saved_model
from t2r.modes import ModeKeys
from t2r.policies import RegressionPolicy
from t2r.predictors import CheckpointPredictor, ExportedModelPredictor
from t2r.testing import T2RModelFixture
from t2r.train import seed_everything
from tests.needs import needs_module
from tests.train.models import TinyRecurrentPolicy, TinyRegression

STEPS = 6


def _trained(tmp_path) -> TinyRecurrentPolicy:
    seed_everything(0)
    model = TinyRecurrentPolicy()
    T2RModelFixture(tmp_path / "model").random_train(model)
    return model.eval()


def _eager_unroll(model: TinyRecurrentPolicy, observations: torch.Tensor) -> np.ndarray:
    """The training-time path: the whole (T, 3) sequence through the LSTM at once."""
    with torch.no_grad():
        features = specs.TensorSpecStruct(obs=observations[None])
        return model.inference_network_fn(features, None, ModeKeys.EVAL)["action"][0].numpy()


def _policy(predictor) -> RegressionPolicy:
    return RegressionPolicy(
        predictor=predictor,
        pack_features_fn=lambda obs, context, t: {"obs": obs},
        output_key="action",
    )


def _episode(policy, observations: torch.Tensor) -> np.ndarray:
    policy.reset()
    return np.stack(
        [policy.select_action(obs.numpy(), None, t) for t, obs in enumerate(observations)]
    )


@pytest.mark.parametrize("program_format", ["torch.export", "torchscript"])
def test_exported_recurrent_policy_stepped_equals_eager_unroll(tmp_path, program_format):
    model = _trained(tmp_path)
    export_saved_model(model, tmp_path / "export", global_step=2, program_format=program_format)
    trust = program_format == "torchscript"  # TorchScript loads only when trusted
    predictor = ExportedModelPredictor(tmp_path / "export", timeout=0, trust_torchscript=trust)
    assert predictor.restore()
    assert predictor.export.program_format == program_format
    assert list(predictor.get_feature_specification()) == [
        "obs",
        "network_state/h",
        "network_state/c",
    ]
    assert set(predictor.export.output_names) == {
        "action",
        "next_network_state/h",
        "next_network_state/c",
    }
    # The learned initial state travels with the export.
    initial = predictor.initial_network_state()
    assert np.array_equal(initial["network_state/h"], model.h0.detach().numpy())
    assert np.array_equal(initial["network_state/c"], model.c0.detach().numpy())

    observations = torch.rand(STEPS, 3, generator=torch.Generator().manual_seed(1))
    policy = _policy(predictor)
    stepped = _episode(policy, observations)
    np.testing.assert_allclose(stepped, _eager_unroll(model, observations), rtol=1e-5, atol=1e-6)
    # The outputs the policy returns carry no state; the state it keeps has a batch of 1.
    assert set(policy.network_state) == {"network_state/h", "network_state/c"}
    assert policy.network_state["network_state/h"].shape == (1, model.hidden_size)

    # Without a reset the state carries on: the first observation again gives another action.
    assert not np.allclose(policy.select_action(observations[0].numpy(), None, STEPS), stepped[0])
    # reset() restarts the episode from the initial state.
    assert np.array_equal(_episode(policy, observations), stepped)


def test_checkpoint_predictor_threads_the_same_state(tmp_path):
    model = _trained(tmp_path)
    predictor = CheckpointPredictor(TinyRecurrentPolicy(), tmp_path / "model", timeout=0)
    assert predictor.restore()
    observations = torch.rand(STEPS, 3, generator=torch.Generator().manual_seed(2))
    stepped = _episode(_policy(predictor), observations)
    np.testing.assert_allclose(stepped, _eager_unroll(model, observations), rtol=1e-5, atol=1e-6)


def test_stateless_models_are_unchanged(tmp_path):
    seed_everything(0)
    model = TinyRegression()
    export_saved_model(model, tmp_path, global_step=0)
    predictor = ExportedModelPredictor(tmp_path, timeout=0)
    assert predictor.restore()
    assert predictor.initial_network_state() == {}
    assert "network_state" not in predictor.export.metadata
    assert list(predictor.get_feature_specification()) == ["x"]


class _ForgetsNextState(TinyRecurrentPolicy):
    def inference_network_fn(self, features, labels, mode, config=None, params=None):
        outputs = super().inference_network_fn(features, labels, mode, config, params)
        outputs.pop("next_network_state", None)
        return outputs


class _WrongNextState(TinyRecurrentPolicy):
    def inference_network_fn(self, features, labels, mode, config=None, params=None):
        outputs = super().inference_network_fn(features, labels, mode, config, params)
        if mode == ModeKeys.PREDICT:
            outputs["next_network_state"]["c"] = outputs["next_network_state"]["c"][:, :3]
        return outputs


def test_a_missing_or_misshapen_next_state_fails_naming_it(tmp_path):
    with pytest.raises(ValueError, match="_ForgetsNextState declares a network state"):
        export_saved_model(_ForgetsNextState(), tmp_path / "a")
    with pytest.raises(
        specs.SpecError,
        match=r"_WrongNextState: next_network_state/c must have shape \(B, 8\) dtype "
        r"float32 .*got shape \(2, 3\)",
    ):
        export_saved_model(_WrongNextState(), tmp_path / "b")


class _ClashingFeature(TinyRecurrentPolicy):
    def get_feature_specification(self, mode):
        spec = super().get_feature_specification(mode)
        spec["network_state/x"] = specs.ExtendedTensorSpec((1,), torch.float32, name="x")
        return spec


def test_the_network_state_name_is_reserved():
    with pytest.raises(specs.SpecError, match="reserved for the model's network state"):
        _ClashingFeature().get_feature_specification_for_packing(ModeKeys.PREDICT)


def test_onnx_predictor_threads_the_state_too(tmp_path):
    needs_module("onnxruntime")
    from t2r.predictors import OnnxPredictor

    model = _trained(tmp_path)
    version = export_saved_model(model, tmp_path / "export", global_step=2, export_onnx=True)
    assert (version / "model.onnx").is_file(), "the recurrent policy should convert to ONNX"
    predictor = OnnxPredictor(tmp_path / "export", timeout=0)
    assert predictor.restore()
    observations = torch.rand(STEPS, 3, generator=torch.Generator().manual_seed(3))
    stepped = _episode(_policy(predictor), observations)
    np.testing.assert_allclose(stepped, _eager_unroll(model, observations), rtol=1e-5, atol=1e-5)


def test_predict_without_the_state_names_it():
    model = TinyRecurrentPolicy().eval()
    with pytest.raises(specs.SpecError, match="lack 'network_state/h' \\(its network state"):
        model.model_fn({"obs": torch.rand(2, 3)}, None, ModeKeys.PREDICT, validate=False)
    with pytest.raises(specs.SpecError, match="Required entry .network_state/."):
        model.model_fn({"obs": torch.rand(2, 3)}, None, ModeKeys.PREDICT)


def test_a_tampered_initial_state_is_not_served(tmp_path):
    from safetensors.numpy import save_file

    seed_everything(0)
    version = export_saved_model(TinyRecurrentPolicy(), tmp_path, global_step=1)
    path = version / "initial_network_state.safetensors"
    zeros = {"network_state/h": np.zeros(8, np.float32), "network_state/c": np.zeros(8, np.float32)}
    path.chmod(0o644)
    save_file(zeros, str(path))
    predictor = ExportedModelPredictor(tmp_path, timeout=0)
    assert not predictor.restore()  # the SHA-256 in the assets no longer matches: skipped
