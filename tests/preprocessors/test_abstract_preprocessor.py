from __future__ import annotations

import copy
from collections import namedtuple

import pytest
import torch
from torch import nn

from t2r.modes import ModeKeys
from t2r.preprocessors import (
    AbstractPreprocessor,
    NoOpPreprocessor,
    SpecTransformationPreprocessor,
)
from t2r.specs import ExtendedTensorSpec, SpecError, TensorSpecStruct

B = 4


def feature_spec(mode: str) -> TensorSpecStruct:
    spec = TensorSpecStruct()
    spec["state/image"] = ExtendedTensorSpec(
        (8, 8, 3), torch.float32, name="state/image", data_format="jpeg"
    )
    spec["state/joints"] = ExtendedTensorSpec((5,), torch.float32, name="joints")
    spec["extra"] = ExtendedTensorSpec((2,), torch.int64, name="extra", is_optional=True)
    if mode == ModeKeys.TRAIN:
        spec["train_only"] = ExtendedTensorSpec((1,), torch.float32, name="train_only")
    return spec


def label_spec(mode: str) -> dict:
    del mode
    return {"target_pose": ExtendedTensorSpec((2,), torch.float32, name="target_pose")}


def features(batch: int = B, mode: str = ModeKeys.EVAL) -> dict:
    data = {
        "state": {
            "image": torch.rand(batch, 8, 8, 3),
            "joints": torch.rand(batch, 5),
        }
    }
    if mode == ModeKeys.TRAIN:
        data["train_only"] = torch.rand(batch, 1)
    return data


def labels(batch: int = B) -> dict:
    return {"target_pose": torch.rand(batch, 2)}


# ---------------------------------------------------------------- abstract
def test_abstract_preprocessor_cannot_be_instantiated():
    with pytest.raises(TypeError, match="abstract"):
        AbstractPreprocessor(feature_spec, label_spec)  # type: ignore[abstract]


def test_spec_transformation_preprocessor_needs_preprocess_fn():
    # As in Tensor2Robot, _preprocess_fn stays abstract.
    with pytest.raises(TypeError, match="_preprocess_fn"):
        SpecTransformationPreprocessor(feature_spec, label_spec)  # type: ignore[abstract]


def test_preprocessor_is_a_module_that_can_hold_buffers_and_move():
    class Normalize(NoOpPreprocessor):
        def __init__(self) -> None:
            super().__init__(feature_spec, label_spec)
            self.register_buffer("scale", torch.tensor(2.0))

        def _preprocess_fn(self, features, labels, mode):
            features["state/joints"] = features["state/joints"] * self.scale
            return features, labels

    pre = Normalize()
    assert isinstance(pre, nn.Module)
    assert list(pre.state_dict()) == ["scale"]
    pre = pre.to(torch.float64)
    assert pre.scale.dtype == torch.float64
    pre = pre.to(torch.float32)
    data = features()
    out, _ = pre(data, None, ModeKeys.EVAL)
    torch.testing.assert_close(out["state/joints"], data["state"]["joints"] * 2)
    # It can be a submodule of a model, and copied with it.
    holder = nn.Module()
    holder.preprocessor = pre
    assert "preprocessor.scale" in holder.state_dict()
    assert copy.deepcopy(holder).preprocessor.scale.item() == 2.0


def test_model_specification_fn_properties_can_be_replaced():
    pre = NoOpPreprocessor()
    assert pre.model_feature_specification_fn is None
    with pytest.raises(ValueError, match="model_feature_specification_fn"):
        pre.get_in_feature_specification(ModeKeys.TRAIN)
    pre.model_feature_specification_fn = feature_spec
    pre.model_label_specification_fn = label_spec
    assert pre.model_feature_specification_fn is feature_spec
    assert "train_only" in pre.get_in_feature_specification(ModeKeys.TRAIN)
    assert "train_only" not in pre.get_in_feature_specification(ModeKeys.EVAL)


# ------------------------------------------------------------------- no-op
@pytest.mark.parametrize("mode", ModeKeys.ALL)
def test_noop_specs_are_the_models(mode):
    pre = NoOpPreprocessor(feature_spec, label_spec)
    model = feature_spec(mode)
    for get in (pre.get_in_feature_specification, pre.get_out_feature_specification):
        spec = get(mode)
        assert isinstance(spec, TensorSpecStruct)
        assert spec == model
        assert spec is not model
        assert spec["state/image"].name == "state/image"
    assert pre.get_in_label_specification(mode) == TensorSpecStruct(label_spec(mode))
    assert pre.get_out_label_specification(mode) == TensorSpecStruct(label_spec(mode))


@pytest.mark.parametrize("mode", ModeKeys.ALL)
def test_noop_passes_tensors_through(mode):
    pre = NoOpPreprocessor(feature_spec, label_spec)
    data, target = features(mode=mode), labels()
    out_features, out_labels = pre.preprocess(data, target, mode)
    assert isinstance(out_features, TensorSpecStruct)
    assert isinstance(out_labels, TensorSpecStruct)
    assert out_features["state/image"] is data["state"]["image"]
    assert out_features.state.joints is data["state"]["joints"]
    assert out_features.get("extra") is None  # absent optional
    assert out_labels["target_pose"] is target["target_pose"]


def test_noop_accepts_flat_and_struct_inputs_and_drops_unknown_entries():
    pre = NoOpPreprocessor(feature_spec, label_spec)
    flat = TensorSpecStruct(features())
    flat["not_in_spec"] = torch.zeros(B, 3)
    flat["extra"] = torch.zeros(B, 2, dtype=torch.int64)
    out, _ = pre.preprocess(flat, None, ModeKeys.PREDICT)
    assert sorted(out.keys()) == ["extra", "state/image", "state/joints"]


def test_noop_labels_none():
    pre = NoOpPreprocessor(feature_spec, label_spec)
    out_features, out_labels = pre.preprocess(features(), None, ModeKeys.PREDICT)
    assert out_labels is None
    assert "state/image" in out_features


def test_forward_defaults_to_predict():
    pre = NoOpPreprocessor(feature_spec, label_spec)
    out, out_labels = pre(features())  # PREDICT: no train_only needed
    assert out_labels is None
    assert "train_only" not in out
    with pytest.raises(SpecError, match="train_only"):
        pre(features(), mode=ModeKeys.TRAIN)


def test_noop_without_label_fn_has_empty_label_specs():
    pre = NoOpPreprocessor(feature_spec)
    assert len(pre.get_in_label_specification(ModeKeys.TRAIN)) == 0
    _, out_labels = pre.preprocess(features(), labels(), ModeKeys.EVAL)
    assert out_labels is not None and len(out_labels) == 0


def test_unknown_mode_is_rejected():
    pre = NoOpPreprocessor(feature_spec, label_spec)
    with pytest.raises(ValueError, match="predict"):
        pre.preprocess(features(), None, "predict")


def test_nested_namedtuple_model_specs():
    Spec = namedtuple("Spec", ["image", "pose"])

    def spec_fn(mode):
        return Spec(
            image=ExtendedTensorSpec((4, 4, 1), torch.float32, name="image"),
            pose=ExtendedTensorSpec((2,), torch.float32, name="pose"),
        )

    pre = NoOpPreprocessor(spec_fn)
    out, _ = pre.preprocess(
        {"image": torch.zeros(2, 4, 4, 1), "pose": torch.zeros(2, 2)}, None, ModeKeys.EVAL
    )
    assert isinstance(out, TensorSpecStruct)
    assert out.image.shape == (2, 4, 4, 1)


# ------------------------------------------------------------- validation
def test_input_shape_mismatch_names_key_name_and_shapes():
    pre = NoOpPreprocessor(feature_spec, label_spec)
    data = features()
    data["state"]["image"] = torch.rand(B, 9, 8, 3)
    with pytest.raises(SpecError) as info:
        pre.preprocess(data, None, ModeKeys.EVAL)
    message = str(info.value)
    assert "NoOpPreprocessor input features" in message
    assert "'eval'" in message
    assert "'state/image'" in message
    assert "(8, 8, 3)" in message and "(9, 8, 3)" in message
    assert info.value.key == "state/image"
    assert info.value.name == "state/image"


def test_input_dtype_mismatch_names_key_and_dtypes():
    pre = NoOpPreprocessor(feature_spec, label_spec)
    data = features()
    data["state"]["joints"] = torch.zeros(B, 5, dtype=torch.float64)
    with pytest.raises(SpecError, match=r"Dtype mismatch at 'state/joints' \(spec name 'joints'\)"):
        pre.preprocess(data, None, ModeKeys.EVAL)
    with pytest.raises(SpecError, match="float64"):
        pre.preprocess(data, None, ModeKeys.EVAL)


def test_missing_required_input_is_named():
    pre = NoOpPreprocessor(feature_spec, label_spec)
    data = features()
    del data["state"]["joints"]
    with pytest.raises(SpecError, match=r"'state/joints' \(spec name 'joints'.*missing"):
        pre.preprocess(data, None, ModeKeys.EVAL)


def test_label_mismatch_names_the_label():
    pre = NoOpPreprocessor(feature_spec, label_spec)
    data = features(mode=ModeKeys.TRAIN)
    with pytest.raises(SpecError) as info:
        pre.preprocess(data, {"target_pose": torch.zeros(B, 3)}, ModeKeys.TRAIN)
    message = str(info.value)
    assert "NoOpPreprocessor input labels (mode 'train')" in message
    assert "'target_pose'" in message and "(2,)" in message and "(3,)" in message
    assert info.value.key == "target_pose"


def test_label_mismatch_in_eval():
    pre = NoOpPreprocessor(feature_spec, label_spec)
    with pytest.raises(SpecError, match=r"input labels.*'target_pose'.*\(2,\).*\(3,\)"):
        pre.preprocess(features(), {"target_pose": torch.zeros(B, 3)}, ModeKeys.EVAL)


class BrokenPreprocessor(NoOpPreprocessor):
    """Returns outputs that break the out-specs."""

    def __init__(self, break_labels: bool = False) -> None:
        super().__init__(feature_spec, label_spec)
        self.break_labels = break_labels

    def _preprocess_fn(self, features, labels, mode):
        if self.break_labels:
            labels["target_pose"] = labels["target_pose"].long()
        else:
            features["state/image"] = features["state/image"][:, :4]
        return features, labels


def test_outputs_are_packed_to_the_out_specs():
    class NewStructures(NoOpPreprocessor):
        def _preprocess_fn(self, features, labels, mode):
            nested = {
                "state": {"image": features.state.image, "joints": -features.state.joints},
                "debug": torch.zeros(B),
            }
            return nested, {"target_pose": labels.target_pose + 1, "debug": torch.zeros(B)}

    data, target = features(), labels()
    out, out_labels = NewStructures(feature_spec, label_spec).preprocess(
        data, target, ModeKeys.EVAL
    )
    assert isinstance(out, TensorSpecStruct) and isinstance(out_labels, TensorSpecStruct)
    assert sorted(out.keys()) == ["extra", "state/image", "state/joints"]
    assert out.get("extra") is None
    torch.testing.assert_close(out.state.joints, -data["state"]["joints"])
    assert list(out_labels.keys()) == ["target_pose"]
    torch.testing.assert_close(out_labels.target_pose, target["target_pose"] + 1)


def test_output_shape_mismatch_is_reported_as_output():
    with pytest.raises(SpecError) as info:
        BrokenPreprocessor().preprocess(features(), None, ModeKeys.EVAL)
    message = str(info.value)
    assert "BrokenPreprocessor output features" in message
    assert "'state/image'" in message
    assert "(8, 8, 3)" in message and "(4, 8, 3)" in message


def test_output_label_dtype_mismatch_is_reported_as_output():
    with pytest.raises(SpecError, match=r"output labels.*'target_pose'.*int64"):
        BrokenPreprocessor(break_labels=True).preprocess(features(), labels(), ModeKeys.EVAL)


def test_sequence_specs_ignore_the_time_dimension():
    def spec_fn(mode):
        return {"frames": ExtendedTensorSpec((4, 4, 3), torch.float32, name="f", is_sequence=True)}

    pre = NoOpPreprocessor(spec_fn)
    out, _ = pre.preprocess({"frames": torch.zeros(2, 7, 4, 4, 3)}, None, ModeKeys.TRAIN)
    assert out.frames.shape == (2, 7, 4, 4, 3)


# --------------------------------------------------- spec transformation
class Uint8Images(SpecTransformationPreprocessor):
    """Derives uint8 in-specs for the model's float image and an int label."""

    def _transform_in_feature_specification(self, tensor_spec_struct):
        self.update_spec(tensor_spec_struct, "state/image", dtype=torch.uint8, shape=(10, 10, 3))
        return tensor_spec_struct

    def _transform_in_label_specification(self, tensor_spec_struct):
        self.update_spec(tensor_spec_struct, "target_pose", dtype=torch.float64)
        return tensor_spec_struct

    def _preprocess_fn(self, features, labels, mode):
        features["state/image"] = features["state/image"][:, 1:9, 1:9].float() / 255
        if labels is not None:
            labels["target_pose"] = labels["target_pose"].float()
        return features, labels


def test_spec_transformation_derives_in_specs_from_model_specs():
    pre = Uint8Images(feature_spec, label_spec)
    in_spec = pre.get_in_feature_specification(ModeKeys.TRAIN)
    image = in_spec["state/image"]
    assert image.dtype == torch.uint8
    assert image.shape == (10, 10, 3)
    assert image.name == "state/image"
    assert image.data_format == "jpeg"
    # Untouched specs are the model's, optionality included.
    assert in_spec["state/joints"] == feature_spec(ModeKeys.TRAIN)["state/joints"]
    assert in_spec["extra"].is_optional
    assert "train_only" in in_spec
    assert "train_only" not in pre.get_in_feature_specification(ModeKeys.EVAL)
    assert pre.get_in_label_specification(ModeKeys.TRAIN)["target_pose"].dtype == torch.float64
    # Out-specs are the model's, and the model's specs were not changed.
    assert pre.get_out_feature_specification(ModeKeys.TRAIN) == feature_spec(ModeKeys.TRAIN)
    assert pre.get_out_label_specification(ModeKeys.TRAIN)["target_pose"].dtype == torch.float32


def test_spec_transformation_does_not_mutate_a_shared_model_spec():
    shared = feature_spec(ModeKeys.EVAL)
    pre = Uint8Images(lambda mode: shared, label_spec)
    pre.get_in_feature_specification(ModeKeys.EVAL)
    assert shared["state/image"].dtype == torch.float32
    assert shared["state/image"].shape == (8, 8, 3)


def test_spec_transformation_default_transforms_are_identity():
    class Identity(SpecTransformationPreprocessor):
        def _preprocess_fn(self, features, labels, mode):
            return features, labels

    pre = Identity(feature_spec, label_spec)
    assert pre.get_in_feature_specification(ModeKeys.EVAL) == feature_spec(ModeKeys.EVAL)
    assert pre.get_in_label_specification(ModeKeys.EVAL) == TensorSpecStruct(
        label_spec(ModeKeys.EVAL)
    )


def test_spec_transformation_end_to_end():
    pre = Uint8Images(feature_spec, label_spec)
    data = features()
    data["state"]["image"] = torch.randint(0, 256, (B, 10, 10, 3), dtype=torch.uint8)
    target = {"target_pose": torch.rand(B, 2, dtype=torch.float64)}
    out, out_labels = pre.preprocess(data, target, ModeKeys.EVAL)
    assert out["state/image"].dtype == torch.float32
    assert out["state/image"].shape == (B, 8, 8, 3)
    assert out_labels is not None and out_labels.target_pose.dtype == torch.float32
    # The model's float image is rejected as input: the in-spec wants uint8.
    with pytest.raises(SpecError, match=r"'state/image'.*uint8.*float32"):
        pre.preprocess(features(), None, ModeKeys.EVAL)
