"""NoOpPreprocessor: in-specs = out-specs = the model's specs."""

from __future__ import annotations

from t2r.preprocessors.abstract_preprocessor import AbstractPreprocessor
from t2r.specs import TensorSpecStruct

__all__ = ["NoOpPreprocessor"]


class NoOpPreprocessor(AbstractPreprocessor):
    """Checks that the data already is what the model wants, and changes nothing.

    Every spec is the model's own (flattened); `preprocess` still validates the
    inputs and packs them to the spec, dropping entries the model does not name.
    """

    def get_in_feature_specification(self, mode: str) -> TensorSpecStruct:
        return self._model_feature_specification(mode)

    def get_in_label_specification(self, mode: str) -> TensorSpecStruct:
        return self._model_label_specification(mode)

    def get_out_feature_specification(self, mode: str) -> TensorSpecStruct:
        return self._model_feature_specification(mode)

    def get_out_label_specification(self, mode: str) -> TensorSpecStruct:
        return self._model_label_specification(mode)

    def _preprocess_fn(
        self,
        features: TensorSpecStruct,
        labels: TensorSpecStruct | None,
        mode: str,
    ) -> tuple[TensorSpecStruct, TensorSpecStruct | None]:
        del mode
        return features, labels
