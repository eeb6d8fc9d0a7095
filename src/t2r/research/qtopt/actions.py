"""The one mapping between the grasp env's 6-vector action and the critic's action features.

The env (`t2r.research.grasp_env`) acts with ``(dx, dy, dz, dyaw, close,
terminate)`` in [-1, 1]; the critic reads T2R's action features. The policy
(CEM samples 6-vectors and scores their features), the transition records and
the Bellman labeller all go through these two functions:

=====================  =====  ==================================================
feature                shape  value
=====================  =====  ==================================================
``world_vector``       (3,)   (dx, dy, dz), clipped to [-1, 1]
``vertical_rotation``  (2,)   (sin, cos) of the yaw command in radians,
                              ``clip(dyaw, -1, 1) * yaw_scale``
``close_gripper``      (1,)   1.0 if ``close > 0`` else 0.0
``open_gripper``       (1,)   1.0 - close_gripper (the env has no re-open: the
                              gripper stays closed; T2R's feature is kept)
``terminate_episode``  (1,)   1.0 if ``terminate > 0`` else 0.0
``gripper_closed``     (1,)   from the observation (T2R feeds it with the action)
``height_to_bottom``   (1,)   from the observation (likewise)
=====================  =====  ==================================================

`features_to_env_action` inverts the first five (binary features become
+1 / -1): ``features_to_env_action(env_action_to_features(a, obs))`` equals
``a`` for a whose dyaw is within (-1, 1) and whose close / terminate are
exactly +1 / -1.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

__all__ = [
    "ACTION_FEATURE_SIZES",
    "ENV_ACTION_SIZE",
    "STATE_FEATURES_IN_ACTION",
    "TERMINATE",
    "YAW_SCALE",
    "env_action_to_features",
    "features_to_env_action",
]

ENV_ACTION_SIZE = 6
#: The terminate component's index in the env's action.
TERMINATE = 5

#: Radians of yaw per unit of the env's ``dyaw`` (the grasp env's scale; a
#: different env passes its own ``yaw_scale``).
YAW_SCALE = float(np.pi / 4)

#: The critic's action features in T2R's order (the order of the grasp params).
ACTION_FEATURE_SIZES: tuple[tuple[str, int], ...] = (
    ("world_vector", 3),
    ("vertical_rotation", 2),
    ("close_gripper", 1),
    ("open_gripper", 1),
    ("terminate_episode", 1),
    ("gripper_closed", 1),
    ("height_to_bottom", 1),
)

#: Action features that come from the observation, not from the action.
STATE_FEATURES_IN_ACTION = ("gripper_closed", "height_to_bottom")


def _state_value(obs: Mapping[str, Any], name: str, batch_shape: tuple[int, ...]) -> np.ndarray:
    """``obs[name]`` (obs batch dims + (1,)) broadcast to ``batch_shape + (1,)``.

    The observation's batch dims are a prefix of `batch_shape` (e.g. obs (B, 1)
    for actions (B, N, 6)): new axes go after them.
    """
    for key in (name, f"state/{name}"):
        if key in obs:
            value = np.asarray(obs[key], dtype=np.float32)
            break
    else:
        raise KeyError(
            f"env_action_to_features: the observation has no {name!r} (nor 'state/{name}'); "
            f"its keys are {sorted(obs)}."
        )
    if value.ndim == 0 or value.shape[-1] != 1:
        value = value[..., None]
    obs_batch = value.shape[:-1]
    if obs_batch != batch_shape[: len(obs_batch)]:
        raise ValueError(
            f"env_action_to_features: observation {name!r} of shape {value.shape} does not "
            f"lead the actions' batch shape {batch_shape}."
        )
    value = value.reshape(obs_batch + (1,) * (len(batch_shape) - len(obs_batch)) + (1,))
    return np.broadcast_to(value, batch_shape + (1,)).astype(np.float32)


def env_action_to_features(
    action: Any, obs: Mapping[str, Any], yaw_scale: float = YAW_SCALE
) -> dict[str, np.ndarray]:
    """Env actions (..., 6) and the observation they are taken in -> action features.

    Args:
      action: (..., 6) ``(dx, dy, dz, dyaw, close, terminate)``, e.g. (6,), (N, 6)
        or (B, N, 6).
      obs: holds ``gripper_closed`` and ``height_to_bottom`` (or their
        ``state/`` paths), each of the actions' leading batch dims + (1,),
        e.g. (1,) for actions (N, 6), (B, 1) for actions (B, N, 6).
      yaw_scale: radians per unit of dyaw.

    Returns:
      ``{feature: (..., size) float32}`` for every name of `ACTION_FEATURE_SIZES`.
    """
    action = np.asarray(action, dtype=np.float32)
    if action.ndim == 0 or action.shape[-1] != ENV_ACTION_SIZE:
        raise ValueError(
            f"env_action_to_features: expected actions (..., {ENV_ACTION_SIZE}) "
            "(dx, dy, dz, dyaw, close, terminate), got shape "
            f"{action.shape}."
        )
    batch_shape = action.shape[:-1]
    clipped = np.clip(action, -1.0, 1.0)
    yaw = clipped[..., 3:4] * np.float32(yaw_scale)
    close = (action[..., 4:5] > 0).astype(np.float32)
    features = {
        "world_vector": clipped[..., 0:3],
        "vertical_rotation": np.concatenate([np.sin(yaw), np.cos(yaw)], axis=-1),
        "close_gripper": close,
        "open_gripper": 1.0 - close,
        "terminate_episode": (action[..., TERMINATE : TERMINATE + 1] > 0).astype(np.float32),
    }
    for name in STATE_FEATURES_IN_ACTION:
        features[name] = _state_value(obs, name, batch_shape)
    return {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in features.items()}


def features_to_env_action(features: Mapping[str, Any], yaw_scale: float = YAW_SCALE) -> np.ndarray:
    """Action features (each (..., size)) -> env actions (..., 6) float32 in [-1, 1]."""
    missing = [n for n, _ in ACTION_FEATURE_SIZES[:5] if n not in features]
    if missing:
        raise KeyError(f"features_to_env_action: missing {missing}; got {sorted(features)}.")
    world = np.asarray(features["world_vector"], dtype=np.float32)
    rotation = np.asarray(features["vertical_rotation"], dtype=np.float32)
    dyaw = np.arctan2(rotation[..., 0:1], rotation[..., 1:2]) / np.float32(yaw_scale)
    close = np.where(np.asarray(features["close_gripper"]) > 0.5, 1.0, -1.0)
    terminate = np.where(np.asarray(features["terminate_episode"]) > 0.5, 1.0, -1.0)
    action = np.concatenate([world, dyaw, close, terminate], axis=-1)
    return np.clip(action, -1.0, 1.0).astype(np.float32)
