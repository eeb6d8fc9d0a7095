"""End to end: a bytes instruction in records -> a preprocessor's token ids -> training."""

from __future__ import annotations

import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from t2r import specs
from t2r.data import DefaultRecordInputGenerator, TFRecordWriter, create_serialize_tf_example_fn
from t2r.export import export_input_spec, export_saved_model
from t2r.models import RegressionModel
from t2r.modes import ModeKeys
from t2r.predictors import CheckpointPredictor, ExportedModelPredictor, FeatureFeeder
from t2r.preprocessors import AbstractPreprocessor
from t2r.testing import T2RModelFixture
from t2r.train import latest_checkpoint, train_eval_model

VOCAB = 64
MAX_TOKENS = 6
INSTRUCTIONS = [b"pick coke can", b"open top drawer", b"place coke can upright", b"close drawer"]


def token_ids(text: bytes) -> list[int]:
    """A toy text encoder: each word hashed to an id in [1, VOCAB), 0 pads."""
    ids = [1 + zlib.crc32(word) % (VOCAB - 1) for word in text.split()][:MAX_TOKENS]
    return ids + [0] * (MAX_TOKENS - len(ids))


class HashingTokenizer(AbstractPreprocessor):
    """In: the instruction as bytes. Out: the model's int64 token ids.

    Strings never enter a tensor until this preprocessor turns them into ids.
    """

    def _in_features(self, mode: str) -> specs.TensorSpecStruct:
        features = self._model_feature_specification(mode)
        del features["tokens"]
        features["instruction"] = specs.ExtendedTensorSpec(
            (), specs.string, name="natural_language_instruction"
        )
        return features

    def get_in_feature_specification(self, mode: str) -> specs.TensorSpecStruct:
        return self._in_features(mode)

    def get_in_label_specification(self, mode: str) -> specs.TensorSpecStruct:
        return self._model_label_specification(mode)

    def get_out_feature_specification(self, mode: str) -> specs.TensorSpecStruct:
        return self._model_feature_specification(mode)

    def get_out_label_specification(self, mode: str) -> specs.TensorSpecStruct:
        return self._model_label_specification(mode)

    def _preprocess_fn(self, features, labels, mode):
        instructions = features.pop("instruction")
        assert isinstance(instructions, np.ndarray) and instructions.dtype == object
        device = features.x.device
        ids = [token_ids(text) for text in instructions.tolist()]
        features["tokens"] = torch.tensor(ids, dtype=torch.int64, device=device)
        return features, labels


class InstructedRegression(RegressionModel):
    """Predicts a 2-d action from a float state and the instruction's tokens."""

    default_preprocessor_cls = HashingTokenizer

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.embedding = nn.EmbeddingBag(VOCAB, 8, mode="mean", padding_idx=0)
        self.head = nn.Linear(8 + 3, 2)

    def get_feature_specification(self, mode: str) -> specs.TensorSpecStruct:
        return specs.TensorSpecStruct(
            x=specs.ExtendedTensorSpec((3,), torch.float32, name="x"),
            tokens=specs.ExtendedTensorSpec((MAX_TOKENS,), torch.int64, name="tokens"),
        )

    def get_label_specification(self, mode: str) -> specs.TensorSpecStruct:
        return specs.TensorSpecStruct(
            target=specs.ExtendedTensorSpec((2,), torch.float32, name="target")
        )

    def a_func(self, features, mode, config=None, params=None):
        language = self.embedding(features.tokens)
        return {"inference_output": self.head(torch.cat([language, features.x], dim=1))}


def write_records(path: Path, model: InstructedRegression, count: int = 32) -> Path:
    serialize = create_serialize_tf_example_fn(
        model.get_feature_specification_for_packing(ModeKeys.TRAIN),
        model.get_label_specification_for_packing(ModeKeys.TRAIN),
    )
    rng = np.random.default_rng(0)
    with TFRecordWriter(path) as writer:
        for i in range(count):
            instruction = INSTRUCTIONS[i % len(INSTRUCTIONS)]
            x = rng.random(3).astype(np.float32)
            # The target depends on the instruction: only its tokens explain it.
            sign = 1.0 if b"coke" in instruction else -1.0
            target = np.array([sign, x[0]], np.float32)
            writer.write(serialize({"instruction": instruction, "x": x}, {"target": target}))
    return path


def test_records_with_an_instruction_train_through_a_text_preprocessor(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = InstructedRegression()
    # What records hold: bytes; what the model reads: token ids.
    packing = model.get_feature_specification_for_packing(ModeKeys.TRAIN)
    assert packing["instruction"].dtype is specs.string
    assert model.get_feature_specification(ModeKeys.TRAIN)["tokens"].dtype == torch.int64
    path = write_records(tmp_path / "train.tfrecord", model)

    generator = DefaultRecordInputGenerator(str(path), batch_size=8, seed=0)
    generator.set_specification_from_model(model, ModeKeys.TRAIN)
    features, _ = next(iter(generator.create_dataset(ModeKeys.TRAIN)))
    assert features["instruction"].dtype == object
    assert set(features["instruction"].tolist()) <= set(INSTRUCTIONS)

    before = model.embedding.weight.detach().clone()
    metrics = train_eval_model(
        model,
        DefaultRecordInputGenerator(str(path), batch_size=8, seed=0),
        max_train_steps=3,
        model_dir=tmp_path / "model",
        save_checkpoints_steps=3,
        device="cpu",
        show_progress=False,
    )
    checkpoint = latest_checkpoint(tmp_path / "model")
    assert checkpoint is not None and checkpoint.global_step == 3
    assert np.isfinite(metrics.get("loss", 0.0))
    # The instruction reached the model: the token embeddings were trained.
    assert not torch.equal(model.embedding.weight.detach(), before)


def test_string_model_goes_through_the_random_model_fixture(tmp_path: Path) -> None:
    # Random data from the specs: random bytes instructions, tokenized on the way.
    checkpoint = T2RModelFixture(tmp_path).random_train(InstructedRegression())
    assert checkpoint.global_step == 2


def test_exports_and_predictors_refuse_string_inputs(tmp_path: Path) -> None:
    model = InstructedRegression()
    with pytest.raises(
        specs.SpecError, match="input 'instruction'.*string spec.*tensor inputs only"
    ):
        export_input_spec(model)
    packing = model.get_feature_specification_for_packing(ModeKeys.PREDICT)
    with pytest.raises(specs.SpecError, match="'instruction'.*string spec; predictors feed"):
        FeatureFeeder(packing)
    with pytest.raises(specs.SpecError, match="'instruction'.*natural_language_instruction"):
        CheckpointPredictor(model, tmp_path)


class EpisodeTaggedRegression(RegressionModel):
    """Reads x; its features also carry an episode id (bytes) that it ignores.

    The id passes through the (no-op) preprocessor to the model as a numpy
    object array. It is optional in PREDICT, so an export does not take it.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.head = nn.Linear(3, 2)
        self.seen_ids: list[Any] = []

    def get_feature_specification(self, mode: str) -> specs.TensorSpecStruct:
        return specs.TensorSpecStruct(
            x=specs.ExtendedTensorSpec((3,), torch.float32, name="x"),
            episode_id=specs.ExtendedTensorSpec(
                (), bytes, name="episode_id", is_optional=mode == ModeKeys.PREDICT
            ),
        )

    def get_label_specification(self, mode: str) -> specs.TensorSpecStruct:
        return specs.TensorSpecStruct(
            target=specs.ExtendedTensorSpec((2,), torch.float32, name="target")
        )

    def a_func(self, features, mode, config=None, params=None):
        if features.get("episode_id") is not None:
            self.seen_ids.append(features.episode_id)
        return {"inference_output": self.head(features.x)}


def test_strings_pass_through_preprocessors_and_stay_out_of_exports(tmp_path: Path) -> None:
    model = EpisodeTaggedRegression()
    T2RModelFixture(tmp_path / "model").random_train(model)
    assert model.seen_ids, "the model never saw the episode ids"
    ids = model.seen_ids[0]
    assert isinstance(ids, np.ndarray) and ids.dtype == object and ids.shape == (2,)
    assert all(isinstance(v, bytes) for v in ids)

    assert list(export_input_spec(model)) == ["x"]
    export_saved_model(model, tmp_path / "export", global_step=2)
    predictor = ExportedModelPredictor(tmp_path / "export", timeout=5)
    predictor.restore()
    outputs = predictor.predict({"x": np.ones((1, 3), np.float32)})
    expected = model.head(torch.ones(1, 3)).detach().numpy()
    np.testing.assert_allclose(outputs["inference_output"], expected, rtol=1e-6)
