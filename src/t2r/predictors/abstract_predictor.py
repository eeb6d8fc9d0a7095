"""AbstractPredictor: loads a model from somewhere and predicts on numpy inputs."""

from __future__ import annotations

import abc
import enum
import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from t2r.specs import TensorSpecStruct

logger = logging.getLogger(__name__)


class RestoreOptions(enum.Enum):
    """When a predictor restores its model (Tensor2Robot's)."""

    DO_NOT_RESTORE = 0
    RESTORE_SYNCHRONOUSLY = 1
    RESTORE_ASYNCHRONOUSLY = 2


class AbstractPredictor(abc.ABC):
    """Loads a model (an export, a checkpoint, ...) and exposes `predict`.

    `predict` takes a dict of numpy arrays keyed by the feature spec's paths
    (`get_feature_specification`), with or without a leading batch dimension,
    and returns a dict of numpy arrays with one. It raises ValueError until
    `restore` (or `init_randomly`) succeeded.
    """

    _restore_thread: threading.Thread | None = None

    @abc.abstractmethod
    def predict(self, features: Mapping[str, Any]) -> dict[str, np.ndarray]:
        """Runs the model on `features`; returns its outputs as numpy arrays."""

    @abc.abstractmethod
    def get_feature_specification(self) -> TensorSpecStruct:
        """The features `predict` takes (flat paths -> specs without batch)."""

    def get_label_specification(self) -> TensorSpecStruct | None:
        """The labels of the model's data, when known."""
        return None

    def initial_network_state(self) -> dict[str, np.ndarray]:
        """A stateful model's state at the start of an episode: ``{network_state/<path>:
        per-example array}``, fed with the features; `predict` returns the next
        value as ``next_network_state/<path>``. Empty for stateless models (the
        default). See `t2r.network_state`."""
        return {}

    @abc.abstractmethod
    def restore(self, is_async: bool = False) -> bool:
        """Loads the newest model; True when one is loaded."""

    def init_randomly(self) -> None:  # noqa: B027 - optional, a no-op as in Tensor2Robot
        """Uses randomly initialized weights instead of restoring (where supported)."""

    @abc.abstractmethod
    def close(self) -> None:
        """Releases the loaded model."""

    @abc.abstractmethod
    def assert_is_loaded(self) -> None:
        """Raises ValueError unless a model is loaded."""

    @property
    def model_version(self) -> int:
        """The version of the model in use."""
        return 0

    @property
    def global_step(self) -> int:
        """The training step the model in use was saved at."""
        return 0

    @property
    def model_path(self) -> str:
        """Where the model in use was loaded from."""
        return ""

    # ------------------------------------------------------------- helpers
    def _restore_polling(
        self,
        is_async: bool,
        load_newest: Callable[[], bool],
        timeout: float,
        poll_interval_secs: float,
        what: object,
    ) -> bool:
        """What `restore` does for predictors that wait for something to appear.

        `load_newest()` loads the newest model, returning False when there is
        none yet; it is retried every `poll_interval_secs` for up to `timeout`
        seconds. With `is_async` the waiting happens in a background thread and
        this returns True at once. `what` says what was looked for in the
        timeout warning (its ``str()`` is taken then, so it may describe what
        is there).
        """

        def poll() -> bool:
            deadline = time.monotonic() + max(timeout, 0.0)
            while not load_newest():
                if time.monotonic() >= deadline:
                    logger.warning("No %s after %.1f s.", what, timeout)
                    return False
                time.sleep(min(poll_interval_secs, max(deadline - time.monotonic(), 0.0)))
            return True

        if is_async:
            self._start_restore_thread(poll)
            return True
        self._maybe_join_restore_thread()
        return poll()

    def _start_restore_thread(self, target: Callable[[], bool]) -> None:
        self._maybe_join_restore_thread()
        logger.info("Restoring %s in a background thread.", type(self).__name__)
        thread = threading.Thread(target=target, daemon=True, name=f"{type(self).__name__}.restore")
        self._restore_thread = thread
        thread.start()

    def _maybe_join_restore_thread(self) -> None:
        thread = self._restore_thread
        if thread is not None:
            thread.join()
            self._restore_thread = None

    def __enter__(self) -> AbstractPredictor:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def not_loaded_error(predictor: AbstractPredictor, where: str) -> ValueError:
    """The error `predict` raises before a successful restore."""
    return ValueError(
        f"The predictor has not yet been successfully restored: {type(predictor).__name__} "
        f"({where}) has no model loaded. Call restore() (and check that it returns True) "
        "before predict()."
    )
