"""A scripted grasp that reads the simulator's state: QT-Opt's bootstrap exploration.

`scripted_grasp_action` looks at the `GraspEnv`'s true state (object poses and
sizes, the gripper's pose), picks the object nearest to the palm in x-y and
returns the env action that brings the gripper to it (objects whose every
grasp yaw would put a finger into the bin's wall are passed over):

1. low among the objects and not over the target: rise straight up to
   `CLEARANCE` above the highest object (moving across down there would shove
   objects about);
2. above the object: move in x-y (at most a step's worth), turn the palm so
   that the fingers close across the object's narrow side, and keep the finger
   bottom `CLEARANCE` above every object on the way;
3. aligned (x-y within `ALIGN_TOLERANCE`, yaw within `YAW_TOLERANCE`): descend
   until the finger bottom is `GRASP_HEIGHT` above the floor;
4. down: close and terminate in the same step (the env then lifts).

``noise`` adds Gaussian noise of that standard deviation (in action units) to
the four motion components, so that a noisy script explores around good grasps.
`ScriptedGraspPolicy` wraps it in t2r's Policy interface.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from t2r.policies.policies import Policy
from t2r.research.grasp_env.grasp_env import XY_STEP, YAW_STEP, Z_STEP, GraspEnv
from t2r.research.grasp_env.scene import BIN_HALF, FINGER_OPEN, FINGER_PAD_HALF

__all__ = ["ScriptedGraspPolicy", "scripted_grasp_action"]

ALIGN_TOLERANCE = 0.015  # metres in x-y
YAW_TOLERANCE = 0.25  # radians
GRASP_HEIGHT = 0.006  # finger bottom above the floor when closing
CLEARANCE = 0.012  # finger bottom above the objects' tops while moving across


def _wrap_half_turn(angle: float) -> float:
    """`angle` moved into [-pi/2, pi/2) (a parallel grasp is symmetric under a half turn)."""
    return float((angle + np.pi / 2) % np.pi - np.pi / 2)


def _fingers_fit(xy: np.ndarray, yaw: float) -> bool:
    """Whether the open fingers, with the palm over `xy` at `yaw`, stay inside the bin."""
    reach = FINGER_OPEN + 2 * FINGER_PAD_HALF[1]
    closing = np.array([-np.sin(yaw), np.cos(yaw)])  # the palm's y axis
    tips = np.stack([xy + reach * closing, xy - reach * closing])
    return bool(np.all(np.abs(tips) < BIN_HALF - 0.004))


def _grasp_yaw_errors(env: GraspEnv, index: int, xy: np.ndarray, yaw: float) -> list[float]:
    """Palm turns to the grasp yaws of object `index` whose open fingers fit in the bin.

    Candidates: the yaw closing across the object's narrow side, plus a quarter
    turn from it when the object also fits the other way (boxes narrow enough),
    or, where any yaw grasps (an upright cylinder), the current yaw and the two
    yaws along the bin's walls. Smallest turn first; empty when none fits.
    """
    grasp_yaw = env.object_grasp_yaws()[index]
    if np.isnan(grasp_yaw):
        candidates = [yaw, 0.0, np.pi / 2]
    else:
        candidates = [grasp_yaw]
        spec = env.objects[index]
        if spec.shape == "box" and 2 * max(spec.size[:2]) < 2 * FINGER_OPEN - 0.015:
            candidates.append(grasp_yaw + np.pi / 2)
    errors = [_wrap_half_turn(c - yaw) for c in candidates]
    return sorted((e for e in errors if _fingers_fit(xy, yaw + e)), key=abs)


def _choose_target(env: GraspEnv, x: float, y: float, yaw: float) -> tuple[int, float]:
    """The nearest object (in x-y) that the fingers can reach at some yaw (else the
    nearest of all, at its plain grasp yaw), and the palm turn to grasp it."""
    positions = env.object_positions()
    order = np.argsort(np.hypot(positions[:, 0] - x, positions[:, 1] - y), kind="stable")
    for index in order:
        errors = _grasp_yaw_errors(env, int(index), positions[index, :2], yaw)
        if errors:
            return int(index), errors[0]
    nearest = int(order[0])
    grasp_yaw = env.object_grasp_yaws()[nearest]
    return nearest, 0.0 if np.isnan(grasp_yaw) else _wrap_half_turn(grasp_yaw - yaw)


def scripted_grasp_action(
    env: GraspEnv, noise: float = 0.0, rng: np.random.Generator | None = None
) -> np.ndarray:
    """The next action of the scripted grasp, ``(6,)`` float32 in [-1, 1] (see the module
    docstring). `rng` draws the noise (needed when ``noise > 0``)."""
    x, y, height, yaw = env.gripper_pose()
    target, yaw_error = _choose_target(env, x, y, yaw)
    position = env.object_positions()[target]
    dx, dy = position[0] - x, position[1] - y
    aligned = np.hypot(dx, dy) < ALIGN_TOLERANCE and abs(yaw_error) < YAW_TOLERANCE
    clear = float(np.max(env.object_tops())) + CLEARANCE

    action = np.zeros(6)
    if aligned:
        action[:4] = dx / XY_STEP, dy / XY_STEP, (GRASP_HEIGHT - height) / Z_STEP, 0.0
        action[3] = yaw_error / YAW_STEP
        if height < GRASP_HEIGHT + 0.01:
            action[4] = action[5] = 1.0
    elif height < clear - 0.015:
        # Down among the objects: rise straight up first, so as not to shove them.
        action[2] = (clear - height) / Z_STEP
    else:
        # Move across just above the highest object.
        action[:4] = dx / XY_STEP, dy / XY_STEP, (clear - height) / Z_STEP, yaw_error / YAW_STEP
    action[4:] = np.where(action[4:] > 0, 1.0, -1.0)
    if noise > 0:
        if rng is None:
            raise ValueError("scripted_grasp_action: noise > 0 needs an rng.")
        action[:4] += rng.normal(0.0, noise, size=4)
    return np.clip(action, -1.0, 1.0).astype(np.float32)


class ScriptedGraspPolicy(Policy):
    """`scripted_grasp_action` as a t2r Policy (`reset`, `select_action`, `sample_action`).

    It ignores the observation it is given and reads `env`'s simulator state
    instead (a privileged policy for exploration, not a learned one).

    Args:
      env: the `GraspEnv` whose episodes the policy acts in.
      noise: standard deviation of the Gaussian noise on the motion components.
      seed: seeds the noise generator.
    """

    def __init__(self, env: GraspEnv, noise: float = 0.0, seed: int | None = None) -> None:
        super().__init__(predictor=None)
        if noise < 0:
            raise ValueError(f"ScriptedGraspPolicy: noise must be >= 0, got {noise}.")
        self.env = env
        self.noise = float(noise)
        self._rng = np.random.default_rng(seed)

    def select_action(self, state: Any, context: Any = None, timestep: int | None = None) -> Any:
        """The scripted action for the env's current state, ``(6,)`` float32."""
        del state, context, timestep
        return scripted_grasp_action(self.env, self.noise, self._rng)

    def sample_action(self, obs: Any, explore_prob: float) -> tuple[np.ndarray, None]:
        """``(action, debug)``; `explore_prob` is ignored (the noise is the exploration)."""
        del explore_prob
        return self.select_action(obs), None
