"""SpecTransformationPreprocessor: in-specs derived from the model's specs by editing a few."""

from __future__ import annotations

from typing import Any

from t2r.preprocessors.abstract_preprocessor import AbstractPreprocessor
from t2r.specs import ExtendedTensorSpec, TensorSpecStruct

__all__ = ["SpecTransformationPreprocessor"]


class SpecTransformationPreprocessor(AbstractPreprocessor):
    """A preprocessor whose in-specs are the model's specs with some entries replaced.

    Models usually want most tensors exactly as stored and a few changed, e.g. an
    image consumed as float32 ``(H, W, 3)`` but stored as uint8 JPEG, perhaps
    larger so that it can be cropped. Subclasses override
    `_transform_in_feature_specification` / `_transform_in_label_specification`
    (identity by default) to describe the stored form, and implement
    `_preprocess_fn` (abstract, as in Tensor2Robot) to turn it into the model's
    form. The out-specs are the model's specs.

    The transform functions receive a fresh flat TensorSpecStruct (a copy of the
    model's specs; specs themselves are immutable) and may edit it in place,
    e.g. with `update_spec`.
    """

    @staticmethod
    def update_spec(tensor_spec_struct: TensorSpecStruct, key: str, **kwargs: Any) -> None:
        """Replaces ``tensor_spec_struct[key]`` by a copy with the fields in `kwargs`.

        `kwargs` are those of `ExtendedTensorSpec.from_spec` (shape, dtype, name,
        data_format, ...).
        """
        tensor_spec_struct[key] = ExtendedTensorSpec.from_spec(tensor_spec_struct[key], **kwargs)

    def get_in_feature_specification(self, mode: str) -> TensorSpecStruct:
        return self._transform_in_feature_specification(self._model_feature_specification(mode))

    def get_in_label_specification(self, mode: str) -> TensorSpecStruct:
        return self._transform_in_label_specification(self._model_label_specification(mode))

    def get_out_feature_specification(self, mode: str) -> TensorSpecStruct:
        return self._model_feature_specification(mode)

    def get_out_label_specification(self, mode: str) -> TensorSpecStruct:
        return self._model_label_specification(mode)

    def _transform_in_feature_specification(
        self, tensor_spec_struct: TensorSpecStruct
    ) -> TensorSpecStruct:
        """The in-feature specs given a copy of the model's (flat) feature specs."""
        return tensor_spec_struct

    def _transform_in_label_specification(
        self, tensor_spec_struct: TensorSpecStruct
    ) -> TensorSpecStruct:
        """The in-label specs given a copy of the model's (flat) label specs."""
        return tensor_spec_struct
