"""OnnxPredictor: serves the ONNX model of the newest export with onnxruntime."""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from t2r.export import layout
from t2r.export.loading import load_export
from t2r.predictors.exported_model_predictor import ExportedModelPredictor, _Loaded
from t2r.predictors.inputs import FeatureFeeder


class OnnxPredictor(ExportedModelPredictor):
    """Like `ExportedModelPredictor`, running ``model.onnx`` with onnxruntime.

    Needs the ``t2r[onnx]`` extra. Only versions exported with ONNX (an
    exporter's ``export_onnx=True``, when the model converted cleanly) are
    considered; the newest of them is loaded. Torch is used only to read the
    specs; the model runs in onnxruntime.

    Args:
      export_dir, timeout, restore_model_option, poll_interval_secs, allow_cast:
        see `ExportedModelPredictor`.
      providers: onnxruntime execution providers (CPU by default).
      intra_op_num_threads: onnxruntime's intra-op threads (0: its default).
    """

    def __init__(
        self,
        export_dir: str | os.PathLike[str],
        timeout: float = 600.0,
        providers: list[Any] | None = None,
        intra_op_num_threads: int = 0,
        **kwargs: Any,
    ) -> None:
        try:
            import onnxruntime
        except ImportError as e:
            raise ImportError("OnnxPredictor needs the onnx extra: pip install 't2r[onnx]'.") from e
        self._onnxruntime = onnxruntime
        self._providers = providers or ["CPUExecutionProvider"]
        self._intra_op_num_threads = intra_op_num_threads
        super().__init__(export_dir, timeout=timeout, **kwargs)

    def _usable(self, version: layout.ExportVersion) -> bool:
        return (version.path / layout.ONNX_FILENAME).is_file()

    def _load(self, version: layout.ExportVersion) -> _Loaded:
        export = load_export(version)
        options = self._onnxruntime.SessionOptions()
        options.intra_op_num_threads = self._intra_op_num_threads
        session = self._onnxruntime.InferenceSession(
            str(version.path / layout.ONNX_FILENAME), options, providers=self._providers
        )
        input_names = tuple(i.name for i in session.get_inputs())
        feeder = FeatureFeeder(export.assets.feature_spec, input_names, self._allow_cast)
        return _Loaded(export, feeder, session)

    def _run(self, loaded: _Loaded, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        session = loaded.runner
        names = [o.name for o in session.get_outputs()]
        return dict(zip(names, session.run(names, arrays)))
