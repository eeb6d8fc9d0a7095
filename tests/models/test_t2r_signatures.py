"""Tensor2Robot code ports without edits: preprocessor kwargs, model_eval_fn, action_size."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from t2r import specs
from t2r.models import RegressionModel
from t2r.modes import ModeKeys
from t2r.preprocessors import NoOpPreprocessor


def _x_spec() -> specs.TensorSpecStruct:
    return specs.TensorSpecStruct(x=specs.ExtendedTensorSpec((3,), torch.float32, name="x"))


def _target_spec() -> specs.TensorSpecStruct:
    return specs.TensorSpecStruct(
        target=specs.ExtendedTensorSpec((2,), torch.float32, name="target")
    )


class _Regression(RegressionModel):
    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.out = nn.Linear(3, 2)

    def get_feature_specification(self, mode):
        return _x_spec()

    def get_label_specification(self, mode):
        return _target_spec()

    def a_func(self, features, mode, config=None, params=None):
        return {"inference_output": self.out(features.x)}


def _batch(n: int = 4):
    generator = torch.Generator().manual_seed(0)
    features = {"x": torch.rand(n, 3, generator=generator)}
    labels = {"target": torch.rand(n, 2, generator=generator)}
    return features, labels


# --------------------------------------------------------------- preprocessors
class T2RStylePreprocessor(NoOpPreprocessor):
    """A T2R preprocessor: other parameters first, the spec fns by keyword, and
    ``is_model_device_tpu`` passed on to the base class."""

    def __init__(
        self,
        crop_size=(8, 8),
        model_feature_specification_fn=None,
        model_label_specification_fn=None,
        is_model_device_tpu=False,
    ):
        super().__init__(
            model_feature_specification_fn, model_label_specification_fn, is_model_device_tpu
        )
        self.crop_size = crop_size


def test_preprocessors_are_built_with_t2r_keyword_arguments():
    model = _Regression(preprocessor_cls=T2RStylePreprocessor)
    assert model.preprocessor.crop_size == (8, 8)
    assert model.preprocessor.model_feature_specification_fn == model.get_feature_specification
    assert model.preprocessor.model_label_specification_fn == model.get_label_specification
    features, labels = _batch()
    outputs = model.model_fn(features, labels, ModeKeys.TRAIN)
    assert outputs.loss is not None and outputs.loss.ndim == 0


# --------------------------------------------------------------- model_eval_fn
class T2RStyleEval(_Regression):
    """Overrides model_eval_fn with Tensor2Robot's signature and records what it got."""

    def model_train_fn(self, features, labels, inference_outputs, mode, config=None, params=None):
        loss = super().model_train_fn(features, labels, inference_outputs, mode, config, params)
        return loss, {"double_loss": 2 * loss}

    def model_eval_fn(
        self,
        features,
        labels,
        inference_outputs,
        train_loss,
        train_outputs,
        mode,
        config=None,
        params=None,
    ):
        self.received = (train_loss, train_outputs, mode, config, params)
        return {"half_loss": train_loss / 2, "double_loss": train_outputs["double_loss"]}


def test_model_eval_fn_gets_t2r_arguments_in_t2r_order():
    model = T2RStyleEval()
    features, labels = _batch()
    outputs = model.model_fn(features, labels, ModeKeys.EVAL, config="cfg", params={"p": 1})
    train_loss, train_outputs, mode, config, params = model.received
    assert torch.is_tensor(train_loss) and train_loss.ndim == 0
    torch.testing.assert_close(train_outputs["double_loss"], 2 * train_loss)
    assert (mode, config, params) == (ModeKeys.EVAL, "cfg", {"p": 1})
    torch.testing.assert_close(outputs.eval_metrics["half_loss"], outputs.loss / 2)
    torch.testing.assert_close(outputs.eval_metrics["loss"], outputs.loss)


class OldOrderEval(_Regression):
    """t2r's earlier order (train_outputs fourth): would receive shifted values."""

    def model_eval_fn(
        self, features, labels, inference_outputs, train_outputs=None, config=None, params=None
    ):
        return {}


class TooFewArgumentsEval(_Regression):
    def model_eval_fn(self, features, labels, inference_outputs):
        return {}


@pytest.mark.parametrize("model_cls", [OldOrderEval, TooFewArgumentsEval])
def test_a_model_eval_fn_with_another_signature_is_an_error_naming_t2r_s(model_cls):
    features, labels = _batch()
    with pytest.raises(TypeError) as info:
        model_cls().model_fn(features, labels, ModeKeys.EVAL)
    message = str(info.value)
    assert f"{model_cls.__name__}.model_eval_fn(" in message
    assert (
        "model_eval_fn(self, features, labels, inference_outputs, train_loss, train_outputs, "
        "mode, config=None, params=None)" in message
    )


def test_a_model_eval_fn_taking_varargs_is_called():
    class VarArgs(_Regression):
        def model_eval_fn(self, *args, **kwargs):
            self.count = len(args)
            return {}

    model = VarArgs()
    model.model_fn(*_batch(), ModeKeys.EVAL)
    assert model.count == 8


# ----------------------------------------------------------------- action_size
class ReadsPrivateActionSize(_Regression):
    """T2R regression models read ``self._action_size``."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.head = nn.Linear(3, self._action_size)


class OverridesActionSize(_Regression):
    """T2R's pose_env models override the ``action_size`` property (no setter)."""

    @property
    def action_size(self):
        return 2 * self._action_size


def test_action_size_is_stored_privately_and_read_through_a_property():
    model = ReadsPrivateActionSize(action_size=5)
    assert model.head.out_features == 5 and model.action_size == 5
    model.action_size = 6  # t2r code that assigns keeps working
    assert model._action_size == 6


def test_action_size_property_can_be_overridden():
    model = OverridesActionSize(action_size=3)
    assert model.action_size == 6 and model._action_size == 3


def test_model_fn_input_policy():
    """model_fn: integers for a float spec are an error, extra keys are dropped
    silently, NaN passes through (documented in docs/migrating_from_t2r.md)."""
    from t2r.specs import SpecError

    model = _Regression()
    features, labels = _batch()
    with pytest.raises(SpecError, match=r"Dtype mismatch at 'x'.*dtype torch.int64"):
        model.model_fn({"x": features["x"].long()}, labels, ModeKeys.TRAIN)
    outputs = model.model_fn({**features, "extra": torch.ones(4)}, labels, ModeKeys.EVAL)
    assert "extra" not in outputs.inference_outputs
    nan = features["x"].clone()
    nan[0, 0] = float("nan")
    outputs = model.model_fn({"x": nan}, None, ModeKeys.PREDICT)
    assert torch.isnan(outputs.export_outputs["inference_output"][0]).all()


def test_a_t2r_style_model_trains_and_evaluates_through_train_eval_model(tmp_path):
    """Preprocessor by keyword, T2R model_eval_fn and _action_size, through the loop."""
    from t2r.train import train_eval_model
    from tests.train.models import SeededInput

    class PortedModel(T2RStyleEval):
        def __init__(self, **kwargs) -> None:
            super().__init__(preprocessor_cls=T2RStylePreprocessor, **kwargs)
            self.head = nn.Linear(3, self._action_size)

        def get_label_specification(self, mode):
            return specs.TensorSpecStruct(
                target=specs.ExtendedTensorSpec((self.action_size,), torch.float32, name="t")
            )

    metrics = train_eval_model(
        PortedModel(action_size=2),
        SeededInput(),
        SeededInput(),
        max_train_steps=2,
        model_dir=tmp_path,
        save_checkpoints_steps=2,
        eval_steps=2,
        show_progress=False,
    )
    assert metrics["half_loss"] == pytest.approx(metrics["loss"] / 2, rel=1e-5)
    assert metrics["double_loss"] == pytest.approx(metrics["loss"] * 2, rel=1e-5)
