"""The deployed Watch-Try-Learn agent: the trial policy, then the retrial policy.

`WTLPolicy` follows the meta collect path: `t2r.collect.run_meta_env` runs the
demonstration (``demo_policy_cls``), calls ``adapt([demo])``, runs the trial,
calls ``adapt([demo, trial])`` and runs the retrial. The first adaptation step
acts with the trial model's predictor (condition: the demonstration), later
ones with the retrial model's (condition: the demonstration and the latest
episode with its reward), each packed as T2R's ``pack_wtl_meta_features``:
fixed-length condition episodes and the current observation repeated T times.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from t2r.policies.policies import Policy
from t2r.predictors import AbstractPredictor
from t2r.research.wtl.episodes import Episode, condition_features, inference_features

__all__ = ["WTLPolicy"]


class WTLPolicy(Policy):
    """Trial then retrial (see the module docstring).

    Args:
      trial_predictor: predicts with a `WTLTrialModel` (export or checkpoint).
      retrial_predictor: predicts with a `WTLRetrialModel`; None retries with
        the trial policy (the "no learning from the trial" baseline).
      episode_length: T of the models.
      output_key: the prediction holding the actions, (1, 1, T, 2).
    """

    def __init__(
        self,
        trial_predictor: AbstractPredictor,
        retrial_predictor: AbstractPredictor | None = None,
        episode_length: int = 20,
        output_key: str = "inference_output",
    ) -> None:
        super().__init__(trial_predictor)
        self._retrial_predictor = retrial_predictor
        self.episode_length = int(episode_length)
        self._output_key = output_key
        self._condition: dict[str, np.ndarray] | None = None
        self._active: AbstractPredictor = trial_predictor

    def reset_task(self) -> None:
        """Forgets the task's episodes."""
        self._condition = None

    def adapt(self, episodes: Sequence[Episode]) -> None:
        """``[demo]``: act as the trial policy; ``[demo, ..., trial]``: as the retrial policy."""
        if not episodes:
            raise ValueError("WTLPolicy.adapt: no demonstration episode.")
        trial = self._require_predictor()
        if len(episodes) == 1 or self._retrial_predictor is None:
            chosen: list[Episode] = [episodes[0]]
            self._active = trial
        else:
            chosen = [episodes[0], episodes[-1]]
            self._active = self._retrial_predictor
        self._condition = condition_features(chosen, self.episode_length)

    @property
    def is_retrial(self) -> bool:
        """True when the next actions come from the retrial policy."""
        return self._active is self._retrial_predictor

    def features(self, state: Any) -> dict[str, np.ndarray]:
        """The meta features for `state`, batch 1."""
        if self._condition is None:
            raise ValueError("WTLPolicy: call adapt([demonstration, ...]) before select_action.")
        features = dict(self._condition)
        features.update(inference_features(state, self.episode_length))
        return {k: v[None] for k, v in features.items()}

    def select_action(self, state: Any, context: Any = None, timestep: int | None = None) -> Any:
        predictions = self._active.predict(self.features(state))
        if self._output_key not in predictions:
            raise KeyError(
                f"WTLPolicy: output_key {self._output_key!r} is not among the predictions "
                f"{sorted(predictions)}."
            )
        action = np.asarray(predictions[self._output_key])[0, 0, 0]
        return np.clip(action, -1.0, 1.0).astype(np.float32)
