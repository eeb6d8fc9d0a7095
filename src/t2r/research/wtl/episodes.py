"""Episodes -> the fixed-length meta examples of the trial and retrial models.

Tensor2Robot's ``research/vrgripper/episode_to_transitions.py`` and
``pack_wtl_meta_features`` on this task. An episode is a list of transitions
``(obs, action, reward, new_obs, done, debug)`` (`t2r.collect.run_meta_env`'s);
`episode_arrays` makes it ``length`` steps long:

=====================  ===============  ==============================================
key                    shape            value
=====================  ===============  ==============================================
``full_state_pose``    (T, 2 + 5 K)     the observation at each step; after the
                                        episode's end, its last observation repeated
``action``             (T, 2)           the action taken; 0 (stay) after the end
``success``            (T, 1)           1.0 on every step if any step was rewarded
                                        (T2R's episode-level ``success`` label)
=====================  ===============  ==============================================

A WTL example is one task in T2R's meta layout (`t2r.meta_learning`):
``condition/features/full_state_pose`` (Nc, T, D), ``condition/labels/action``
(Nc, T, 2) and ``condition/labels/success`` (Nc, T, 1) hold the condition
episodes (the demonstration; for the retrial model the demonstration and the
trial), ``inference/features/full_state_pose`` (1, T, D) the episode to imitate,
and the labels ``action`` (1, T, 2), ``success`` (1, T, 1) its actions and
outcome. At deployment the inference state is the current observation repeated
T times (as T2R's ``pack_wtl_meta_features``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

__all__ = [
    "CONDITION_ACTION",
    "CONDITION_STATE",
    "CONDITION_SUCCESS",
    "INFERENCE_STATE",
    "OBJECT_FEATURES",
    "Episode",
    "condition_features",
    "episode_arrays",
    "inference_features",
    "split_state",
    "wtl_example",
]

Episode = Sequence[tuple[Any, ...]]

CONDITION_STATE = "condition/features/full_state_pose"
CONDITION_ACTION = "condition/labels/action"
CONDITION_SUCCESS = "condition/labels/success"
INFERENCE_STATE = "inference/features/full_state_pose"

#: Per cube slot in ``full_state_pose``: x, y, r, g, b (the env, the scripted
#: agent and the models all read the state with this layout).
OBJECT_FEATURES = 5


def split_state(state: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``full_state_pose`` (..., 2 + 5 K) -> effector (..., 2), objects (..., K, 5)."""
    size = state.shape[-1] - 2
    if size <= 0 or size % OBJECT_FEATURES:
        raise ValueError(
            f"split_state: full_state_pose must have 2 + {OBJECT_FEATURES} K entries, got "
            f"{state.shape[-1]}."
        )
    objects = state[..., 2:].reshape(*state.shape[:-1], size // OBJECT_FEATURES, OBJECT_FEATURES)
    return state[..., :2], objects


def _state_of(obs: Any) -> np.ndarray:
    if isinstance(obs, Mapping):
        obs = obs["full_state_pose"]
    return np.asarray(obs, dtype=np.float32).reshape(-1)


def episode_arrays(episode: Episode, length: int) -> dict[str, np.ndarray]:
    """One episode as ``length`` steps (see the module docstring).

    Raises:
      ValueError: the episode is empty or longer than `length`.
    """
    if not episode:
        raise ValueError("episode_arrays: the episode is empty.")
    if len(episode) > length:
        raise ValueError(
            f"episode_arrays: the episode has {len(episode)} steps, more than the fixed "
            f"length {length}."
        )
    states = [_state_of(t[0]) for t in episode]
    actions = [np.asarray(t[1], dtype=np.float32).reshape(-1) for t in episode]
    final = _state_of(episode[-1][3])
    pad = length - len(episode)
    states += [final] * pad
    actions += [np.zeros_like(actions[0])] * pad
    success = float(any(float(t[2]) > 0 for t in episode))
    return {
        "full_state_pose": np.stack(states),
        "action": np.stack(actions),
        "success": np.full((length, 1), success, dtype=np.float32),
    }


def condition_features(episodes: Sequence[Episode], length: int) -> dict[str, np.ndarray]:
    """The condition entries of a WTL example, unbatched: (Nc, T, ...) each."""
    if not episodes:
        raise ValueError("condition_features: no condition episodes (the demonstration first).")
    arrays = [episode_arrays(e, length) for e in episodes]
    return {
        CONDITION_STATE: np.stack([a["full_state_pose"] for a in arrays]),
        CONDITION_ACTION: np.stack([a["action"] for a in arrays]),
        CONDITION_SUCCESS: np.stack([a["success"] for a in arrays]),
    }


def inference_features(obs: Any, length: int) -> dict[str, np.ndarray]:
    """The inference entry for acting at `obs`: its state repeated, (1, T, D)."""
    state = _state_of(obs)
    return {INFERENCE_STATE: np.repeat(state[None, None], length, axis=1)}


def wtl_example(
    condition: Sequence[Episode], inference: Episode, length: int
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """One training example, unbatched: features (condition episodes + the
    inference episode's states) and labels (its actions and outcome)."""
    features = condition_features(condition, length)
    target = episode_arrays(inference, length)
    features[INFERENCE_STATE] = target["full_state_pose"][None]
    labels = {"action": target["action"][None], "success": target["success"][None]}
    return features, labels
