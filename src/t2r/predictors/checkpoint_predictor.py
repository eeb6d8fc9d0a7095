"""CheckpointPredictor: predicts with a model built in Python and the newest checkpoint."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from t2r.modes import ModeKeys
from t2r.predictors.abstract_predictor import AbstractPredictor, not_loaded_error
from t2r.predictors.inputs import FeatureFeeder, to_numpy, to_torch
from t2r.specs import TensorSpecStruct, filter_required_flat_tensor_spec, flatten_spec_structure

if TYPE_CHECKING:
    from t2r.models import AbstractT2RModel
    from t2r.train.checkpoints import Checkpoint

logger = logging.getLogger(__name__)


class CheckpointPredictor(AbstractPredictor):
    """Predicts with `t2r_model` and the weights of the newest training checkpoint.

    No export is needed: the model's Python code runs (``model_fn`` in PREDICT
    mode, the preprocessor included). Inputs are checked as by
    `ExportedModelPredictor` against the required PREDICT packing specs.

    Args:
      t2r_model: the model; it is put in eval mode on `device`.
      checkpoint_dir: a model_dir (holding ``checkpoints/``), its
        ``checkpoints/`` directory, or one ``ckpt-<step>`` directory. None
        allows only `init_randomly`.
      timeout: seconds `restore` waits for a checkpoint before returning False.
      poll_interval_secs: how often `restore` looks again while waiting.
      device: where the model runs.
      allow_cast: see `t2r.predictors.FeatureFeeder`.
    """

    def __init__(
        self,
        t2r_model: AbstractT2RModel,
        checkpoint_dir: str | os.PathLike[str] | None = None,
        timeout: float = 600.0,
        poll_interval_secs: float = 1.0,
        device: str | torch.device = "cpu",
        allow_cast: bool = True,
    ) -> None:
        self._device = torch.device(device)
        self._model = t2r_model.to(self._device).eval()
        self._checkpoint_dir = None if checkpoint_dir is None else Path(checkpoint_dir)
        self._timeout = float(timeout)
        self._poll_interval_secs = float(poll_interval_secs)
        packing = flatten_spec_structure(
            t2r_model.get_feature_specification_for_packing(ModeKeys.PREDICT)
        )
        self._feature_spec = filter_required_flat_tensor_spec(packing)
        self._label_spec = flatten_spec_structure(
            t2r_model.get_label_specification_for_packing(ModeKeys.PREDICT)
        )
        self._feeder = FeatureFeeder(self._feature_spec, allow_cast=allow_cast)
        # The weights the model was built with, for init_randomly after a restore.
        self._initial_weights = {
            k: v.detach().to("cpu", copy=True) for k, v in t2r_model.state_dict().items()
        }
        self._loaded = False
        self._checkpoint: Checkpoint | None = None
        self._restore_thread = None
        # Checkpoints found corrupt, not tried again unless rewritten (see _identity).
        self._corrupt: set[tuple[Path, int]] = set()

    # ------------------------------------------------------------ restoring
    def restore(self, is_async: bool = False) -> bool:
        """Loads the newest checkpoint's weights; True when loaded (or already current).

        Waits up to `timeout` seconds for a checkpoint; False when none appears.
        A checkpoint that cannot be read (truncated or corrupt files, non-finite
        weights) is skipped with a warning naming it, and the newest intact one
        is loaded instead.
        """
        if self._checkpoint_dir is None:
            raise ValueError(
                "The predictor cannot be restored since no checkpoint_dir has been passed."
            )
        return self._restore_polling(
            is_async,
            self._load_newest,
            self._timeout,
            self._poll_interval_secs,
            f"checkpoint in {self._checkpoint_dir}",
        )

    def _candidates(self) -> list[Checkpoint]:
        """Checkpoints to try, newest first."""
        from t2r.train.checkpoints import Checkpoint, list_checkpoints

        assert self._checkpoint_dir is not None
        path = self._checkpoint_dir
        if (path / "state.json").is_file() and path.name.startswith("ckpt-"):
            return [Checkpoint(path, int(path.name.removeprefix("ckpt-")))]
        if path.name == "checkpoints" and not (path / "checkpoints").is_dir():
            path = path.parent
        return list(reversed(list_checkpoints(path)))

    def _load_newest(self) -> bool:
        """Loads the newest intact checkpoint; a corrupt newer one is skipped with a
        warning (once per checkpoint) naming it."""
        from t2r.train.checkpoints import CheckpointError, load_model_weights

        while True:
            vanished = False
            for checkpoint in self._candidates():
                current = self._checkpoint
                if self._loaded and current is not None and current.path == checkpoint.path:
                    return True
                identity = _identity(checkpoint)
                if identity in self._corrupt:
                    continue
                try:
                    load_model_weights(checkpoint, self._model)
                except FileNotFoundError:  # removed by the trainer meanwhile
                    logger.info("Checkpoint %s vanished while loading.", checkpoint.path)
                    vanished = True
                    break
                except CheckpointError as e:
                    self._corrupt.add(identity)
                    logger.warning(
                        "Skipping corrupt checkpoint %s (falling back to an older one): %s",
                        checkpoint.path,
                        e,
                    )
                    continue
                self._model.eval()
                self._checkpoint = checkpoint
                self._loaded = True
                logger.info("Loaded checkpoint %s.", checkpoint.path)
                return True
            if not vanished:
                return False

    def init_randomly(self) -> None:
        """Uses the weights the model was constructed with (its random initialization)."""
        self._maybe_join_restore_thread()
        self._model.load_state_dict(self._initial_weights)
        self._checkpoint = None
        self._loaded = True
        logger.info("Initialized %s with its initial random weights.", type(self._model).__name__)

    # ----------------------------------------------------------- predicting
    def predict(self, features: Mapping[str, Any]) -> dict[str, np.ndarray]:
        """See `ExportedModelPredictor.predict`."""
        self.assert_is_loaded()
        tensors = to_torch(self._feeder(features), self._feature_spec, self._device)
        with torch.inference_mode():
            outputs = self._model.model_fn(tensors, None, ModeKeys.PREDICT, validate=False)
        return to_numpy(outputs.export_outputs)

    def initial_network_state(self) -> dict[str, np.ndarray]:
        """The model's initial network state (empty when stateless)."""
        from t2r import network_state

        if not self._model.get_network_state_specification():
            return {}
        initial = flatten_spec_structure(self._model.get_initial_network_state())
        return {
            network_state.input_name(path): value.detach().float().cpu().numpy()
            if value.dtype == torch.bfloat16
            else value.detach().cpu().numpy().copy()
            for path, value in initial.items()
        }

    def get_feature_specification(self) -> TensorSpecStruct:
        return self._feature_spec

    def get_label_specification(self) -> TensorSpecStruct | None:
        return self._label_spec

    def close(self) -> None:
        self._maybe_join_restore_thread()
        self._loaded = False

    def assert_is_loaded(self) -> None:
        self._maybe_join_restore_thread()
        if not self._loaded:
            raise not_loaded_error(self, str(self._checkpoint_dir))

    @property
    def model_version(self) -> int:
        return self.global_step

    @property
    def global_step(self) -> int:
        """The checkpoint's step; 0 after init_randomly, -1 before loading."""
        if not self._loaded:
            return -1
        return 0 if self._checkpoint is None else self._checkpoint.global_step

    @property
    def model_path(self) -> str:
        self.assert_is_loaded()
        return "" if self._checkpoint is None else str(self._checkpoint.path)


def _identity(checkpoint: Checkpoint) -> tuple[Path, int]:
    """A checkpoint's path and the time its state.json was written: a checkpoint
    written again at the same path (a resumed run passing the same step) is new."""
    try:
        return checkpoint.path, (checkpoint.path / "state.json").stat().st_mtime_ns
    except OSError:
        return checkpoint.path, -1
