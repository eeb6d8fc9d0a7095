"""A policy that adapts a MAML model to its task at deployment (T2R's ``meta_policies.py``).

`MAMLRegressionPolicy` keeps the condition data it is given (``adapt(episodes)``,
as `t2r.collect.run_meta_env` calls it with demonstrations and the task's
earlier episodes) and feeds it, with the current observation as the inference
sample, to the predictor of a `MAMLModel` export or checkpoint. The inner loop
runs inside the prediction: an exported MAML program contains the adaptation.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from t2r.meta_learning.preprocessors import CONDITION_FEATURES, CONDITION_LABELS, INFERENCE_FEATURES
from t2r.modes import ModeKeys
from t2r.policies.policies import Policy
from t2r.predictors import AbstractPredictor
from t2r.specs import flatten_spec_structure

__all__ = ["MAMLRegressionPolicy"]

# transition (obs, action, reward, new_obs, done, debug) -> (features, labels), unbatched.
ConditionFn = Callable[[tuple[Any, ...]], tuple[Mapping[str, Any], Mapping[str, Any]]]


class MAMLRegressionPolicy(Policy):
    """Regression with a MAML model adapted on the condition data of the current task.

    Args:
      t2r_model: the `MAMLModel` (its base's ``pack_features`` packs
        observations; it does not run, the predictor does).
      predictor: e.g. `ExportedModelPredictor` on the MAML model's exports.
      condition_fn: one transition -> ``(features, labels)`` of the base model,
        unbatched, keyed by the base packing spec paths. Default: features
        from ``base_model.pack_features(obs)``, labels from the transition's
        ``debug`` dict by label path (e.g. ``debug['target_pose']``).
      output_key: the export output holding the action.

    The most recent Nc condition samples are used (fewer are repeated
    cyclically); `select_action` before any `adapt` raises ValueError.
    """

    def __init__(
        self,
        t2r_model: Any,
        predictor: AbstractPredictor | None = None,
        condition_fn: ConditionFn | None = None,
        output_key: str = "inference_output",
    ) -> None:
        super().__init__(predictor)
        self._model = t2r_model
        self._base = t2r_model.base_model
        self._condition_fn = condition_fn or self._default_condition
        self._output_key = output_key
        self._nc = int(t2r_model.num_condition_samples_per_task)
        self._ni = int(t2r_model.num_inference_samples_per_task)
        self._condition: dict[str, np.ndarray] | None = None

    def _default_condition(
        self, transition: tuple[Any, ...]
    ) -> tuple[Mapping[str, Any], Mapping[str, Any]]:
        obs, debug = transition[0], transition[5]
        features = {k: np.asarray(v)[0] for k, v in self._base.pack_features(obs).items()}
        label_paths = flatten_spec_structure(
            self._base.get_label_specification_for_packing(ModeKeys.EVAL)
        )
        labels = {}
        for path, spec in label_paths.items():
            if path in debug:
                labels[path] = np.asarray(debug[path])
            elif not spec.is_optional:
                raise ValueError(
                    f"MAMLRegressionPolicy: the transition's debug dict has no {path!r} "
                    f"(a label of {type(self._base).__name__}); pass a condition_fn."
                )
        return features, labels

    def reset_task(self) -> None:
        """Forgets the condition data (a new task)."""
        self._condition = None

    def adapt(self, episodes: Sequence[Sequence[tuple[Any, ...]]]) -> None:
        """Uses the last Nc transitions of `episodes` as the condition samples."""
        transitions = [t for episode in episodes for t in episode]
        if not transitions:
            raise ValueError("MAMLRegressionPolicy.adapt: no transitions to adapt on.")
        picked = transitions[-self._nc :]
        picked = [picked[i % len(picked)] for i in range(self._nc)]
        samples = [self._condition_fn(t) for t in picked]
        condition: dict[str, np.ndarray] = {}
        for key in samples[0][0]:
            condition[f"{CONDITION_FEATURES[0]}/{key}"] = np.stack([s[0][key] for s in samples])[
                None
            ]
        for key in samples[0][1]:
            condition[f"{CONDITION_LABELS[0]}/{key}"] = np.stack(
                [np.asarray(s[1][key], dtype=np.float32) for s in samples]
            )[None]
        self._condition = condition

    def features(
        self, state: Any, context: Any = None, timestep: int | None = None
    ) -> dict[str, np.ndarray]:
        """The meta features for one observation: the condition data and the
        observation as every inference sample, batch 1."""
        if self._condition is None:
            raise ValueError(
                "MAMLRegressionPolicy: call adapt(episodes) with the task's condition data "
                "before select_action."
            )
        packed = self._base.pack_features(state, context, timestep)
        features = dict(self._condition)
        for key, value in packed.items():
            value = np.asarray(value)[0]
            features[f"{INFERENCE_FEATURES[0]}/{key}"] = np.repeat(value[None], self._ni, axis=0)[
                None
            ]
        return features

    def select_action(self, state: Any, context: Any = None, timestep: int | None = None) -> Any:
        predictions = self._require_predictor().predict(self.features(state, context, timestep))
        if self._output_key not in predictions:
            raise KeyError(
                f"MAMLRegressionPolicy: output_key {self._output_key!r} is not among the "
                f"predictions {sorted(predictions)}."
            )
        return np.asarray(predictions[self._output_key])[0, 0]
