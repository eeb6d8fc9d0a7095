"""A tiny environment and policies for the collect tests (no rendering)."""

from __future__ import annotations

from typing import Any

import numpy as np


class CountingEnv:
    """Gymnasium-style: the observation is the step count; episodes last `length` steps.

    Reward: -|action - target|, target = the task number. `reset_task` counts tasks.
    With ``old_api=True``, ``reset`` returns the observation alone and ``step`` a
    4-tuple, as gym < 0.26.
    """

    def __init__(self, length: int = 1, old_api: bool = False) -> None:
        self.length = length
        self.old_api = old_api
        self.task = 0
        self.tasks_reset = 0
        self.resets = 0
        self.closed = False
        self._t = 0

    def reset_task(self) -> None:
        self.tasks_reset += 1
        self.task = self.tasks_reset

    def reset(self) -> Any:
        self.resets += 1
        self._t = 0
        obs = np.array([self._t], np.float32)
        return obs if self.old_api else (obs, {"task": self.task})

    def step(self, action: Any) -> Any:
        self._t += 1
        reward = -abs(float(np.asarray(action).ravel()[0]) - self.task)
        obs = np.array([self._t], np.float32)
        done = self._t >= self.length
        info = {"task": self.task, "target_pose": np.array([self.task, 0.0], np.float32)}
        if self.old_api:
            return obs, reward, done, info
        return obs, reward, done, False, info

    def close(self) -> None:
        self.closed = True


class ConstantPolicy:
    """Always `value`; records the explore probabilities it was asked with."""

    def __init__(self, value: float = 0.0, global_step: int = 0, q: float | None = None) -> None:
        self.value = value
        self.global_step = global_step
        self.q = q
        self.explore_probs: list[float] = []
        self.resets = 0
        self.restores = 0
        self.adapted: list[int] = []
        self.task_resets = 0

    def reset(self) -> None:
        self.resets += 1

    def restore(self) -> bool:
        self.restores += 1
        return True

    def sample_action(self, obs: Any, explore_prob: float) -> tuple[np.ndarray, Any]:
        self.explore_probs.append(explore_prob)
        debug = None if self.q is None else {"q": self.q}
        return np.array([self.value, 0.0], np.float32), debug


class AdaptingPolicy(ConstantPolicy):
    """A meta-learning policy: `adapt` sets its action to the task seen in the data."""

    def reset_task(self) -> None:
        self.task_resets += 1
        self.value = 0.0

    def adapt(self, episodes: list[Any]) -> None:
        self.adapted.append(len(episodes))
        # info['task'] of the first transition of the last episode
        self.value = float(episodes[-1][0][5]["task"])


def records(transitions: list[Any]) -> list[bytes]:
    """episode_to_transitions_fn: one record per transition, b'<reward>'."""
    return [f"{t[2]:.3f}".encode() for t in transitions]
