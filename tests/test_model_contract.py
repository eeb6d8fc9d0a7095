"""The contract every model passes, parametrized over the model registry.

The registry (`t2r.testing.find_model_classes`) imports every module of ``t2r``
and every helper module of ``tests`` (not ``test_*``) and finds each concrete
AbstractT2RModel subclass: a model added anywhere there joins these tests
without being listed. An import error fails the registry instead of shrinking
it, and `MIN_MODELS` catches a registry that finds too little.

Per model:

* random-train: `T2RModelFixture.random_train` (2 steps, a checkpoint);
* the loss is finite and falls on a fixed batch (the model's own train_step
  and optimizer, in eval mode so dropout does not blur the comparison);
* export -> `ExportedModelPredictor` equals the eager model at the same inputs;
* no input batch is mutated by model_fn (train, eval, predict) or train_step.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from t2r import specs
from t2r.data import DefaultRandomInputGenerator
from t2r.export import export_saved_model
from t2r.modes import ModeKeys
from t2r.predictors import ExportedModelPredictor
from t2r.testing import T2RModelFixture, find_model_classes
from t2r.train import seed_everything
from tests.needs import under_ci

# Extras a developer may knowingly lack; CI has them all.
OPTIONAL_EXTRAS = () if under_ci() else ("mujoco", "gymnasium", "ray", "onnx", "onnxruntime")
MODELS = find_model_classes("t2r", "tests", allow_missing=OPTIONAL_EXTRAS)
# The library's pose_env models and the test models of train/ and export/ today.
MIN_MODELS = 12

FIT_STEPS = 5


def _ids(cls: type) -> str:
    return f"{cls.__module__.split('.')[0]}.{cls.__qualname__}"


def _batch(model, mode: str = ModeKeys.TRAIN, batch_size: int = 8, seed: int = 0):
    """One (features, labels) batch of random data from the model's specs."""
    sequences = any(
        spec.is_sequence
        for spec in specs.flatten_spec_structure(
            model.get_feature_specification_for_packing(mode)
        ).values()
    )
    generator = DefaultRandomInputGenerator(
        batch_size=batch_size, seed=seed, sequence_length=3 if sequences else None
    )
    generator.set_specification_from_model(model, mode)
    return next(iter(generator.create_dataset(mode)))


def _snapshot(struct) -> dict[str, torch.Tensor]:
    if struct is None:
        return {}
    return {k: v.detach().clone() for k, v in specs.flatten_spec_structure(struct).items()}


def _assert_unchanged(before: dict[str, torch.Tensor], struct, what: str) -> None:
    after = {} if struct is None else dict(specs.flatten_spec_structure(struct).items())
    assert sorted(after) == sorted(before), f"{what}: keys changed"
    for key, value in before.items():
        assert after[key].dtype == value.dtype, f"{what}[{key!r}]: dtype changed"
        assert torch.equal(after[key], value), f"{what}[{key!r}] was modified in place"


def test_the_registry_finds_every_model():
    names = {cls.__qualname__ for cls in MODELS}
    assert len(MODELS) >= MIN_MODELS, sorted(names)
    assert {
        "PoseEnvRegressionModel",
        "PoseEnvContinuousMCModel",
        "TinyRegression",
        "BCZModel",
    } <= names


def test_the_registry_fails_on_an_import_error(tmp_path, monkeypatch):
    package = tmp_path / "t2r_broken_models"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "models.py").write_text("import t2r_no_such_dependency\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ImportError, match="cannot import t2r_broken_models.models"):
        find_model_classes("t2r_broken_models")
    assert find_model_classes("t2r_broken_models", allow_missing={"t2r_no_such_dependency"}) == []


@pytest.mark.parametrize("model_cls", MODELS, ids=_ids)
def test_random_train(model_cls, tmp_path):
    seed_everything(0)
    checkpoint = T2RModelFixture(tmp_path).random_train(model_cls())
    assert checkpoint.global_step == 2
    assert (checkpoint.path / "model.safetensors").is_file()


@pytest.mark.parametrize("model_cls", MODELS, ids=_ids)
def test_the_loss_is_finite_and_falls_on_a_fixed_batch(model_cls):
    seed_everything(0)
    model = model_cls()
    features, labels = _batch(model, batch_size=4)
    optimizer = model.create_optimizer()
    model.eval()  # no dropout: the first and the last loss are comparable

    def loss() -> float:
        with torch.no_grad():
            value = float(model.model_fn(features, labels, ModeKeys.TRAIN).loss)
        assert np.isfinite(value), f"{model_cls.__qualname__}: loss {value}"
        return value

    first = loss()
    for _ in range(FIT_STEPS):
        outputs = model.train_step(features, labels, optimizer)
        assert torch.isfinite(outputs.loss).all()
    last = loss()
    assert last < first, f"{model_cls.__qualname__}: loss {first} -> {last} in {FIT_STEPS} steps"


@pytest.mark.parametrize("model_cls", MODELS, ids=_ids)
def test_export_then_predictor_equals_eager(model_cls, tmp_path):
    seed_everything(0)
    model = model_cls().eval()
    export_saved_model(model, tmp_path, global_step=1)
    predictor = ExportedModelPredictor(tmp_path, trust_torchscript=True)  # we wrote it
    assert predictor.restore()
    spec = model.get_feature_specification_for_packing(ModeKeys.PREDICT)
    inputs = {
        key: np.asarray(value)
        for key, value in specs.flatten_spec_structure(
            specs.make_random_numpy(spec, batch_size=3, seed=1)
        ).items()
    }
    exported = predictor.predict(copy.deepcopy(inputs))
    with torch.no_grad():
        eager = model.model_fn(
            {k: torch.from_numpy(v) for k, v in inputs.items()}, None, ModeKeys.PREDICT
        ).export_outputs
    assert sorted(exported) == sorted(eager)
    for key, value in eager.items():
        np.testing.assert_allclose(
            exported[key], value.numpy(), rtol=1e-5, atol=1e-5, err_msg=f"output {key!r}"
        )


@pytest.mark.parametrize("model_cls", MODELS, ids=_ids)
def test_no_input_batch_is_mutated(model_cls):
    seed_everything(0)
    model = model_cls()
    features, labels = _batch(model)
    before_features, before_labels = _snapshot(features), _snapshot(labels)
    model.train()
    model.train_step(features, labels, model.create_optimizer())
    _assert_unchanged(before_features, features, "train_step features")
    _assert_unchanged(before_labels, labels, "train_step labels")
    model.eval()
    with torch.no_grad():
        for mode in (ModeKeys.TRAIN, ModeKeys.EVAL):
            model.model_fn(features, labels, mode)
            _assert_unchanged(before_features, features, f"model_fn({mode}) features")
            _assert_unchanged(before_labels, labels, f"model_fn({mode}) labels")
        predict_features, _ = _batch(model, ModeKeys.PREDICT)
        if model.get_network_state_specification():  # records hold no network state
            initial = specs.flatten_spec_structure(model.get_initial_network_state())
            for path, value in initial.items():
                predict_features[f"network_state/{path}"] = value.expand(8, *value.shape).clone()
        before_predict = _snapshot(predict_features)
        model.model_fn(predict_features, None, ModeKeys.PREDICT)
        _assert_unchanged(before_predict, predict_features, "model_fn(predict) features")
