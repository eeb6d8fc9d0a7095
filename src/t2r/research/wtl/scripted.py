"""Scripted agents of the Watch-Try-Learn task (numpy only; no MuJoCo needed).

* `WTLDemoPolicy`: the demonstrator (``run_meta_env(demo_policy_cls=...)``);
  it reads the env's hidden target and reaches it.
* `ScriptedWTLPolicy`: the perfect Watch-Try-Learn agent, from observations
  only. It reads the demonstration's colour (the colour of the cube nearest the
  demonstration's last effector position); on a trial it reaches the nearer
  cube of that colour; on a retrial it reaches the cube its trial ended at if
  the trial was rewarded, else that colour's other cube. Its episodes are the
  imitation targets of the learned trial and retrial policies, and it measures
  the task's ceilings.

Observations are the env's dicts (``effector`` (2,), ``objects`` (K, 5): x, y,
r, g, b per slot) or the flat ``full_state_pose`` (2 + 5 K,).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from t2r.research.wtl.episodes import Episode, split_state

__all__ = [
    "ScriptedWTLPolicy",
    "WTLDemoPolicy",
    "demo_colour",
    "episode_end",
    "episode_success",
    "reach_action",
]

#: Colours closer than this (in RGB) are the same colour.
COLOUR_TOLERANCE = 1e-3


def reach_action(effector: np.ndarray, target: np.ndarray, step_size: float) -> np.ndarray:
    """The action that moves straight to `target`, at most one step at a time: (2,) float32."""
    delta = (np.asarray(target, np.float64) - np.asarray(effector, np.float64)) / step_size
    return np.clip(delta, -1.0, 1.0).astype(np.float32)


def _state(obs: Any) -> tuple[np.ndarray, np.ndarray]:
    if isinstance(obs, Mapping):
        obs = obs["full_state_pose"]
    return split_state(np.asarray(obs, dtype=np.float32))


def episode_end(episode: Episode) -> tuple[np.ndarray, np.ndarray]:
    """The last observation of `episode` (the last transition's new_obs) as
    (effector (2,), objects (K, 5))."""
    if not episode:
        raise ValueError("episode_end: the episode is empty.")
    return _state(episode[-1][3])


def episode_success(episode: Episode) -> bool:
    """True when any step of `episode` was rewarded."""
    return any(float(t[2]) > 0 for t in episode)


def demo_colour(demo: Episode) -> np.ndarray:
    """The RGB (3,) of the cube nearest the demonstration's last effector position."""
    effector, objects = episode_end(demo)
    nearest = int(np.argmin(np.linalg.norm(objects[:, :2] - effector, axis=-1)))
    return objects[nearest, 2:].copy()


class WTLDemoPolicy:
    """Reaches the env's target (`WatchTryLearnEnv.target_position`); ``WTLDemoPolicy(env)``."""

    def __init__(self, env: Any) -> None:
        self._env = getattr(env, "unwrapped", env)

    def sample_action(self, obs: Any, explore_prob: float) -> tuple[np.ndarray, dict[str, Any]]:
        del explore_prob
        effector, _ = _state(obs)
        return reach_action(effector, self._env.target_position, self._env.step_size), {}

    def reset(self) -> None:
        """Nothing to reset."""


class ScriptedWTLPolicy:
    """The perfect agent from observations (see the module docstring).

    ``adapt(episodes)`` (as `t2r.collect.run_meta_env` calls it): ``episodes[0]``
    is the demonstration; with a second episode the policy retries, reading the
    last one as its trial.

    Args:
      step_size: the env's `step_size` (the action that reaches a cube exactly).
    """

    def __init__(self, step_size: float = 0.05) -> None:
        self.step_size = float(step_size)
        self._colour: np.ndarray | None = None
        self._trial: tuple[np.ndarray, bool] | None = None

    def reset_task(self) -> None:
        self._colour = None
        self._trial = None

    def reset(self) -> None:
        """Nothing per episode: the policy is stateless within an episode."""

    def adapt(self, episodes: Sequence[Episode]) -> None:
        if not episodes:
            raise ValueError("ScriptedWTLPolicy.adapt: no demonstration.")
        self._colour = demo_colour(episodes[0])
        self._trial = None
        if len(episodes) > 1:
            end, _ = episode_end(episodes[-1])
            self._trial = (end, episode_success(episodes[-1]))

    def target(self, obs: Any) -> np.ndarray:
        """The (x, y) the policy reaches for in `obs`."""
        if self._colour is None:
            raise ValueError("ScriptedWTLPolicy: adapt(episodes) before acting.")
        effector, objects = _state(obs)
        same = np.linalg.norm(objects[:, 2:] - self._colour, axis=-1) < COLOUR_TOLERANCE
        twins = objects[same, :2]
        if len(twins) == 0:
            raise ValueError(
                f"ScriptedWTLPolicy: no cube of the demonstration's colour {self._colour} in "
                f"the observation."
            )
        if self._trial is None:
            return twins[int(np.argmin(np.linalg.norm(twins - effector, axis=-1)))]
        end, success = self._trial
        to_end = np.linalg.norm(twins - end, axis=-1)
        return twins[int(np.argmin(to_end) if success else np.argmax(to_end))]

    def sample_action(self, obs: Any, explore_prob: float) -> tuple[np.ndarray, dict[str, Any]]:
        del explore_prob
        effector, _ = _state(obs)
        return reach_action(effector, self.target(obs), self.step_size), {}
