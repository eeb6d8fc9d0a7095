"""OnnxPredictor: serves the ONNX model of the newest export with onnxruntime."""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch

from t2r.export import layout
from t2r.export.errors import ExportError
from t2r.export.loading import LoadedExport
from t2r.predictors.exported_model_predictor import (
    ExportedModelPredictor,
    _Loaded,
    read_initial_network_state,
)
from t2r.predictors.inputs import FeatureFeeder


class OnnxPredictor(ExportedModelPredictor):
    """Like `ExportedModelPredictor`, running ``model.onnx`` with onnxruntime.

    Needs the ``t2r[onnx]`` extra. Only versions exported with ONNX (an
    exporter's ``export_onnx=True``, when the model converted cleanly) are
    considered; the newest of them is loaded. Only ``t2r_assets.json`` and
    ``model.onnx`` (of one write, checked against the SHA-256 the assets
    record) are read, never the ``.pt2``; the model runs in onnxruntime,
    from memory (so it cannot reference external data files).

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
        # The assets and the ONNX file of one write; the .pt2 is never read.
        with layout.VersionReader(version.path) as reader:
            onnx_file = reader.metadata.get("onnx_file") or layout.ONNX_FILENAME
            onnx_model = reader.read_file(onnx_file)
            assets, metadata, identity = reader.assets, reader.metadata, reader.identity
        options = self._onnxruntime.SessionOptions()
        options.intra_op_num_threads = self._intra_op_num_threads
        try:
            session = self._onnxruntime.InferenceSession(
                onnx_model, options, providers=self._providers
            )
        except Exception as e:  # a damaged model
            raise ExportError(version.path / onnx_file, f"is not a loadable ONNX model: {e}") from e
        input_names = tuple(i.name for i in session.get_inputs())
        output_names = tuple(o.name for o in session.get_outputs())

        def program(features: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
            arrays = {k: v.detach().cpu().numpy() for k, v in features.items()}
            outputs = session.run(list(output_names), arrays)
            return {k: torch.from_numpy(v) for k, v in zip(output_names, outputs)}

        export = LoadedExport(
            version=version,
            assets=assets,
            metadata=metadata,
            program_format="onnx",
            input_names=input_names,
            output_names=output_names,
            program=program,
            identity=identity,
        )
        feeder = FeatureFeeder(
            assets.feature_spec,
            input_names,
            self._allow_cast,
            allow_nonfinite=self._allow_nonfinite,
        )
        return _Loaded(export, feeder, session, read_initial_network_state(export))

    def _run(self, loaded: _Loaded, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        session = loaded.runner
        names = [o.name for o in session.get_outputs()]
        return dict(zip(names, session.run(names, arrays)))
