"""BCZPolicy: a BC-Z export driven one observation at a time, waypoints -> moves.

The model predicts K waypoints relative to the present pose (``xyz_residual``
(K, D), in metres). The policy turns them into the env's moves: with
``execute_waypoints = n`` it predicts at the first step and then every n steps,
and in between executes the predicted trajectory open loop, one waypoint per
step: move i is ``(w_i - w_{i-1}) / step_size`` (w_0 = 0), clipped to [-1, 1],
as lang_env's ``world_vector`` (x, y; z = 0).

``execute_waypoints = 1`` (the default) is closed loop: every step re-predicts
from the new image and executes only the first waypoint. That is how T2R's
BC-Z is judged (its model-selection metric ``mean_first_xyz_error`` reads the
first waypoint only; the later ones are an auxiliary target), and on this task
a fresh image each step costs one small forward pass. Longer chunks are there
to measure what the later waypoints are worth (``docs/bcz.md``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from t2r.policies import Policy
from t2r.predictors import AbstractPredictor
from t2r.research.lang_env.features import EMBEDDING, IMAGE

__all__ = ["BCZPolicy", "waypoint_moves"]


def waypoint_moves(waypoints: np.ndarray, count: int, step_size: float) -> np.ndarray:
    """waypoints (K, D) relative to the present pose -> the first ``count`` moves (count, D)
    in action units: ``clip((w_i - w_{i-1}) / step_size, -1, 1)`` with w_0 = 0."""
    waypoints = np.asarray(waypoints, np.float32)
    if not 1 <= count <= len(waypoints):
        raise ValueError(f"waypoint_moves: count must be in 1..{len(waypoints)}, got {count}.")
    previous = np.concatenate([np.zeros_like(waypoints[:1]), waypoints[: count - 1]])
    return np.clip((waypoints[:count] - previous) / step_size, -1.0, 1.0)


class BCZPolicy(Policy):
    """`select_action(observation)` -> lang_env's ``world_vector`` (3,) float32.

    observation: ``image`` (H, W, 3) uint8 and ``natural_language_embedding`` (E,)
    (fed when the export takes it: a ``BCZModel(ignore_task_embedding=True)`` does not).

    Args:
      predictor: a predictor of a `BCZModel` export (`ExportedModelPredictor`
        needs no model code).
      step_size: metres the env moves for an action of 1 (lang_env: 0.05).
      execute_waypoints: waypoints executed per prediction (1: closed loop).
      output_key: the export output holding the (K, D) waypoints.
      embedding_key: the export input holding the task embedding (the model's
        ``condition_key``), and observation_key the observation entry it is read
        from (e.g. a demo embedding computed elsewhere).
    """

    def __init__(
        self,
        predictor: AbstractPredictor,
        step_size: float = 0.05,
        execute_waypoints: int = 1,
        output_key: str = "xyz_residual",
        embedding_key: str = EMBEDDING,
        observation_key: str = "natural_language_embedding",
    ) -> None:
        super().__init__(predictor)
        if execute_waypoints < 1:
            raise ValueError(f"BCZPolicy: execute_waypoints must be >= 1, got {execute_waypoints}.")
        self.step_size = float(step_size)
        self.execute_waypoints = int(execute_waypoints)
        self.output_key = output_key
        self.embedding_key = embedding_key
        self.observation_key = observation_key
        self._plan: list[np.ndarray] = []
        self.predictions = 0

    def reset(self) -> None:
        self._plan = []

    def select_action(self, state: Any, context: Any = None, timestep: int | None = None) -> Any:
        observation: Mapping[str, Any] = state
        if not self._plan:
            predictor = self._require_predictor()
            features: dict[str, np.ndarray] = {
                IMAGE: np.asarray(observation["image"], np.uint8)[None]
            }
            if self.embedding_key in predictor.get_feature_specification():  # not without FiLM
                embedding = observation[self.observation_key]
                features[self.embedding_key] = np.asarray(embedding, np.float32)[None]
            outputs = predictor.predict(features)
            if self.output_key not in outputs:
                raise KeyError(
                    f"BCZPolicy: the export has no output {self.output_key!r}; it has "
                    f"{sorted(outputs)}."
                )
            waypoints = np.asarray(outputs[self.output_key])[0]
            count = min(self.execute_waypoints, len(waypoints))
            self._plan = list(waypoint_moves(waypoints, count, self.step_size))
            self.predictions += 1
        move = self._plan.pop(0)
        action = np.zeros(3, np.float32)
        action[: len(move)] = move
        return action

    def __call__(self, observation: Mapping[str, Any]) -> np.ndarray:
        """lang_env's evaluation calls policies with the observation."""
        return self.select_action(observation)
