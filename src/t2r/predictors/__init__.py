"""Predictors: load a model (an export, a checkpoint) and predict on numpy inputs.

Names follow ``tensor2robot.predictors``:

* `ExportedModelPredictor` (T2R's ExportedSavedModelPredictor): the newest
  complete version of an export directory; imports no model code.
* `CheckpointPredictor`: a model object plus the newest training checkpoint.
* `EnsembleExportedModelPredictor`: averages sampled exports.
* `OnnxPredictor`: an export's ONNX model in onnxruntime (``t2r[onnx]``).
"""

from __future__ import annotations

from t2r.predictors.abstract_predictor import AbstractPredictor, RestoreOptions
from t2r.predictors.checkpoint_predictor import CheckpointPredictor
from t2r.predictors.ensemble_exported_model_predictor import EnsembleExportedModelPredictor
from t2r.predictors.exported_model_predictor import ExportedModelPredictor
from t2r.predictors.inputs import FeatureFeeder
from t2r.predictors.onnx_predictor import OnnxPredictor

__all__ = [
    "AbstractPredictor",
    "CheckpointPredictor",
    "EnsembleExportedModelPredictor",
    "ExportedModelPredictor",
    "FeatureFeeder",
    "OnnxPredictor",
    "RestoreOptions",
]
