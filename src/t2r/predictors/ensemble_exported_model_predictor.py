"""EnsembleExportedModelPredictor: averages the predictions of sampled exports."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from t2r.predictors.abstract_predictor import AbstractPredictor, RestoreOptions
from t2r.predictors.exported_model_predictor import ExportedModelPredictor
from t2r.specs import TensorSpecStruct

logger = logging.getLogger(__name__)


class EnsembleExportedModelPredictor(AbstractPredictor):
    """An ensemble over several export directories (Tensor2Robot's experimental one).

    Each member is an `ExportedModelPredictor`. `resample_ensemble` (also
    called by `reset` and by the first successful `restore`) draws
    `ensemble_size` members with replacement; `predict` averages their
    outputs (with one member, returns its outputs).

    Args:
      export_dirs: export directories, a list or T2R's comma-separated string.
      local_export_root: if given, each directory is looked up by its base
        name under this root (on-robot copies of remote exports).
      ensemble_size: members drawn per `resample_ensemble`.
      timeout: see `ExportedModelPredictor`.
      restore_model_option: see `ExportedModelPredictor`.
      seed: seeds the member sampling.
      **predictor_kwargs: passed to each `ExportedModelPredictor`.
    """

    def __init__(
        self,
        export_dirs: str | Sequence[str | os.PathLike[str]],
        local_export_root: str | os.PathLike[str] | None = None,
        ensemble_size: int = 1,
        timeout: float = 600.0,
        restore_model_option: RestoreOptions = RestoreOptions.DO_NOT_RESTORE,
        seed: int | None = None,
        **predictor_kwargs: Any,
    ) -> None:
        if isinstance(export_dirs, str):
            export_dirs = [d for d in export_dirs.split(",") if d]
        if not export_dirs:
            raise ValueError("EnsembleExportedModelPredictor needs at least one export dir.")
        if ensemble_size < 1:
            raise ValueError(f"ensemble_size must be >= 1, got {ensemble_size}.")
        self._export_dirs = [str(d) for d in export_dirs]
        resolved = []
        for path in self._export_dirs:
            if local_export_root is not None:
                local = Path(local_export_root) / Path(path.rstrip("/")).name
                if not local.exists():
                    raise ValueError(f"Cannot find local export dir {local}.")
                resolved.append(local)
            else:
                resolved.append(Path(path))
        self._ensemble_size = ensemble_size
        self._rng = np.random.default_rng(seed)
        self._predictors = [
            ExportedModelPredictor(
                d, timeout=timeout, restore_model_option=restore_model_option, **predictor_kwargs
            )
            for d in resolved
        ]
        self._ensemble: list[ExportedModelPredictor] = []

    @property
    def predictors(self) -> list[ExportedModelPredictor]:
        return list(self._predictors)

    def resample_ensemble(self) -> None:
        """Draws `ensemble_size` members (with replacement)."""
        indices = self._rng.choice(len(self._predictors), self._ensemble_size)
        self._ensemble = [self._predictors[i] for i in indices]

    def reset(self) -> None:
        """Draws a new ensemble (e.g. per episode)."""
        self.resample_ensemble()

    def restore(self, is_async: bool = False) -> bool:
        """Restores every member; True when all have a model."""
        ok = all([p.restore(is_async=is_async) for p in self._predictors])
        if ok and not self._ensemble:
            self.resample_ensemble()
        return ok

    def predict(self, features: Mapping[str, Any]) -> dict[str, np.ndarray]:
        self.assert_is_loaded()
        predictions = [p.predict(features) for p in self._ensemble]
        if len(predictions) == 1:
            return predictions[0]
        return {
            name: np.mean(np.stack([p[name] for p in predictions]), axis=0)
            for name in predictions[0]
        }

    def get_feature_specification(self) -> TensorSpecStruct:
        return self._predictors[0].get_feature_specification()

    def get_label_specification(self) -> TensorSpecStruct | None:
        return self._predictors[0].get_label_specification()

    def init_randomly(self) -> None:
        raise ValueError("Random initialization is not supported by exported-model predictors.")

    def assert_is_loaded(self) -> None:
        if not self._ensemble:
            raise ValueError(
                "The predictor ensemble is empty: call restore() (or reset()) before predict()."
            )
        for predictor in self._ensemble:
            predictor.assert_is_loaded()

    def close(self) -> None:
        for predictor in self._predictors:
            predictor.close()
        self._ensemble = []

    @property
    def model_version(self) -> int:
        self.assert_is_loaded()
        return self._ensemble[0].model_version

    @property
    def global_step(self) -> int:
        """The member's global step with one member; -1 otherwise (as T2R)."""
        if len(self._ensemble) != 1:
            return -1
        return self._ensemble[0].global_step

    @property
    def model_path(self) -> str:
        self.assert_is_loaded()
        return ",".join(p.model_path for p in self._ensemble)
