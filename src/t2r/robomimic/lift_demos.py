"""A scripted demonstrator for robosuite's Lift, writing robomimic HDF5.

The script (`ScriptedLiftPolicy`) moves the open gripper above the cube, descends
until the fingers straddle it, closes, and lifts. It reads only robomimic's
observation keys (``robot0_eef_pos`` and ``object``, whose first three values are
the cube's position), so it runs through `t2r.robomimic.rollouts.run_rollout` like
any learned policy. Actions are robosuite's OSC_POSE deltas ``[dx, dy, dz, dax,
day, daz, gripper]`` in [-1, 1] (gripper -1 open, +1 closed); rotation stays 0.

`collect_lift_demos` runs it and writes the successful episodes as a robomimic
file: all the low-dim observations robomimic's robosuite wrapper returns, and with
``camera=True`` the 84x84 ``agentview_image`` and ``robot0_eye_in_hand_image``;
actions, sparse rewards, dones (1 on the last step), simulator states, the model
XML, and ``env_args`` as robomimic records them, plus ``mask/train`` and
``mask/valid``. As robosuite's own demonstration collection does, an episode ends
10 steps after the task first succeeds.

`collect_mixed_lift_demos` writes the mixed-quality data offline RL is judged on
(robomimic's multi-human datasets have the same shape: demos of several qualities
under filter keys): ``expert`` demos (the script, successful), ``noisy`` ones (the
script under heavy action noise, kept whether they succeed or not) and ``failed``
ones (the script aiming its grasp beside the cube: the same motion, no lift), each
with the environment's sparse success rewards, ``dones`` and ``next_obs``.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from t2r.robomimic.envs import EnvType, import_robosuite, make_env_from_env_args

logger = logging.getLogger(__name__)

__all__ = [
    "LIFT_CAMERAS",
    "LiftDemoStats",
    "MixedLiftStats",
    "ScriptedLiftPolicy",
    "collect_lift_demos",
    "collect_mixed_lift_demos",
    "lift_env_args",
]

LIFT_CAMERAS = ("agentview", "robot0_eye_in_hand")
IMAGE_SIZE = 84


def lift_env_args(camera: bool = False, image_size: int = IMAGE_SIZE) -> dict[str, Any]:
    """robomimic's ``env_args`` for Lift with a Panda under robosuite 1.5's default
    (BASIC composite, OSC_POSE arm) controller at 20 Hz, sparse reward; the cameras
    robomimic's image datasets use, at `image_size` square."""
    robosuite = import_robosuite()
    from robosuite.controllers import load_composite_controller_config

    return {
        "env_name": "Lift",
        "env_version": str(robosuite.__version__),
        "type": int(EnvType.ROBOSUITE),
        "env_kwargs": {
            "has_renderer": False,
            "has_offscreen_renderer": camera,
            "ignore_done": True,
            "use_object_obs": True,
            "use_camera_obs": camera,
            "control_freq": 20,
            "controller_configs": load_composite_controller_config(robot="Panda"),
            "robots": ["Panda"],
            "camera_depths": False,
            "camera_heights": image_size,
            "camera_widths": image_size,
            "camera_names": list(LIFT_CAMERAS),
            "reward_shaping": False,
        },
    }


class ScriptedLiftPolicy:
    """Above the cube, down, close, up: a proportional controller on the end effector.

    Args:
        action_noise: std of Gaussian noise added to the translation part of each
            action (then clipped to [-1, 1]): the demonstrations then cover states a
            little off the scripted path, which is what a learned policy drifts into.
        seed: seeds the noise.
        gain: translation action per metre of error (an action of 1 is 5 cm).
        grasp_offset: (3,) metres added to the cube position the script aims at (a
            few centimetres sideways: the fingers close beside the cube, a failed grasp).
    """

    HOVER = 0.08  # metres above the cube before descending
    GRASP_DEPTH = -0.005  # end-effector target relative to the cube's centre
    CLOSE_STEPS = 8
    LIFT_HEIGHT = 0.25  # metres above the cube's starting height

    def __init__(
        self,
        action_noise: float = 0.0,
        seed: int | None = None,
        gain: float = 20.0,
        grasp_offset: Any = (0.0, 0.0, 0.0),
    ):
        if action_noise < 0:
            raise ValueError(f"action_noise must be >= 0, got {action_noise}.")
        self.action_noise = float(action_noise)
        self.gain = float(gain)
        self.grasp_offset = np.asarray(grasp_offset, dtype=np.float64).reshape(3)
        self._rng = np.random.default_rng(seed)
        self.start_episode()

    def start_episode(self) -> None:
        self.phase = "approach"
        self._closing = 0
        self._start_height: float | None = None

    def __call__(
        self, ob: Mapping[str, np.ndarray], goal: Mapping[str, np.ndarray] | None = None
    ) -> np.ndarray:
        """ob: ``robot0_eef_pos`` (3,), ``object`` (>= 3,) -> action (7,) float64."""
        eef = np.asarray(ob["robot0_eef_pos"], dtype=np.float64).reshape(3)
        cube = np.asarray(ob["object"], dtype=np.float64).reshape(-1)[:3] + self.grasp_offset
        if self._start_height is None:
            self._start_height = float(cube[2])
        gripper = -1.0
        if self.phase == "approach":
            target = cube + [0.0, 0.0, self.HOVER]
            if np.linalg.norm(target - eef) < 0.015:
                self.phase = "descend"
        if self.phase == "descend":
            target = cube + [0.0, 0.0, self.GRASP_DEPTH]
            if np.linalg.norm(target - eef) < 0.01:
                self.phase = "close"
        if self.phase == "close":
            target = cube + [0.0, 0.0, self.GRASP_DEPTH]
            gripper = 1.0
            self._closing += 1
            if self._closing > self.CLOSE_STEPS:
                self.phase = "lift"
        if self.phase == "lift":
            target = np.array([cube[0], cube[1], self._start_height + self.LIFT_HEIGHT])
            gripper = 1.0
        translation = self.gain * (target - eef)
        if self.action_noise:
            translation = translation + self._rng.normal(0.0, self.action_noise, size=3)
        action = np.zeros(7)
        action[:3] = np.clip(translation, -1.0, 1.0)
        action[6] = gripper
        return action


@dataclasses.dataclass
class LiftDemoStats:
    """What `collect_lift_demos` did: `success_rate` is successes / attempts."""

    path: str
    demos: int
    attempts: int
    successes: int
    mean_length: float
    seconds: float

    @property
    def success_rate(self) -> float:
        return self.successes / self.attempts if self.attempts else 0.0


def _stack(frames: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    return {key: np.stack([frame[key] for frame in frames]) for key in frames[0]}


def collect_lift_demos(
    n: int,
    output: str | os.PathLike[str],
    camera: bool = False,
    seed: int = 0,
    action_noise: float = 0.05,
    max_steps: int = 200,
    success_hold: int = 10,
    val_ratio: float = 0.1,
    max_attempts: int | None = None,
    image_size: int = IMAGE_SIZE,
    show_progress: bool = True,
) -> LiftDemoStats:
    """Runs `ScriptedLiftPolicy` in Lift until `n` episodes succeeded and writes them.

    An episode that has not succeeded within `max_steps` steps is counted and
    dropped. `val_ratio` of the demos (at least one when n > 1, the last ones)
    form ``mask/valid``, the rest ``mask/train``. Camera images are `image_size`
    square. Gives up with RuntimeError after `max_attempts` episodes (default
    2n + 10). Returns the counts.
    """
    from t2r.robomimic.hdf5 import Demo, write_robomimic_hdf5

    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}.")
    if not 0.0 <= val_ratio < 1.0:
        raise ValueError(f"val_ratio must be in [0, 1), got {val_ratio}.")
    max_attempts = max_attempts if max_attempts is not None else 2 * n + 10
    env_args = lift_env_args(camera=camera, image_size=image_size)
    env = make_env_from_env_args(env_args, render_offscreen=camera, use_image_obs=camera)
    # The environment's random placement of the cube follows numpy's global RNG.
    np.random.seed(seed % 2**32)
    policy = ScriptedLiftPolicy(action_noise=action_noise, seed=seed)
    demos: list[Demo] = []
    attempts = 0
    start = time.perf_counter()
    progress = tqdm(total=n, desc="Lift demos", disable=not show_progress)
    try:
        while len(demos) < n:
            if attempts >= max_attempts:
                raise RuntimeError(
                    f"collect_lift_demos: only {len(demos)} of {n} episodes succeeded in "
                    f"{attempts} attempts (max_attempts={max_attempts})."
                )
            attempts += 1
            demo = _one_episode(env, policy, max_steps, success_hold)
            if demo is not None:
                demos.append(demo)
                progress.update(1)
            progress.set_postfix(success_rate=f"{len(demos) / attempts:.3f}")
    finally:
        progress.close()
        env.close()
    num_valid = round(n * val_ratio)
    if val_ratio > 0 and n > 1:
        num_valid = max(1, num_valid)
    names = [f"demo_{i}" for i in range(n)]
    masks = {"train": names[: n - num_valid], "valid": names[n - num_valid :]}
    path = write_robomimic_hdf5(output, demos, env_args, masks=masks)
    stats = LiftDemoStats(
        path=str(Path(path)),
        demos=n,
        attempts=attempts,
        successes=n,
        mean_length=float(np.mean([d.num_samples for d in demos])),
        seconds=time.perf_counter() - start,
    )
    logger.info(
        "Wrote %d Lift demos to %s: %d attempts, success rate %.3f, mean length %.1f.",
        n,
        path,
        attempts,
        stats.success_rate,
        stats.mean_length,
    )
    return stats


def _one_episode(
    env: Any,
    policy: ScriptedLiftPolicy,
    max_steps: int,
    success_hold: int,
    keep_failures: bool = False,
) -> Any:
    """One scripted episode as a Demo (ending `success_hold` steps after the first
    success, else after `max_steps`), or None when it did not succeed and not
    `keep_failures`."""
    from t2r.robomimic.hdf5 import Demo

    policy.start_episode()
    ob = env.reset()
    model_file = env.get_state()["model"]
    observations, states, actions, rewards = [], [], [], []
    held = -1  # steps since the first success (-1: not yet)
    for _ in range(max_steps):
        states.append(env.get_sim_state())
        observations.append(ob)
        action = policy(ob)
        ob, reward, _, info = env.step(action)
        actions.append(action)
        rewards.append(reward)
        if held >= 0 or info["is_success"]["task"]:
            held += 1
            if held >= success_hold:
                break
    if held < success_hold and not keep_failures:
        return None
    steps = len(actions)
    dones = np.zeros(steps, dtype=np.int64)
    dones[-1] = 1
    return Demo(
        obs=_stack(observations),
        next_obs=_stack([*observations[1:], ob]),
        actions=np.asarray(actions, dtype=np.float64),
        rewards=np.asarray(rewards, dtype=np.float64),
        dones=dones,
        states=np.asarray(states, dtype=np.float64),
        model_file=model_file,
    )


@dataclasses.dataclass
class MixedLiftStats:
    """What `collect_mixed_lift_demos` wrote: per kind (``expert``, ``noisy``, ``failed``)
    the number of demos, how many succeeded and their mean length."""

    path: str
    demos: dict[str, int]
    successes: dict[str, int]
    mean_length: dict[str, float]
    seconds: float


def collect_mixed_lift_demos(
    output: str | os.PathLike[str],
    expert: int = 100,
    noisy: int = 100,
    failed: int = 100,
    seed: int = 0,
    expert_noise: float = 0.05,
    noisy_noise: float = 0.5,
    failed_offset: float = 0.03,
    max_steps: int = 200,
    unsuccessful_steps: int = 80,
    success_hold: int = 10,
    val_ratio: float = 0.1,
    show_progress: bool = True,
) -> MixedLiftStats:
    """Writes a mixed-quality Lift dataset (low-dim observations) to `output`.

    * ``expert``: the script with `expert_noise`, successful episodes only (as
      `collect_lift_demos`);
    * ``noisy``: the script with translation noise of std `noisy_noise`, kept whether
      it succeeds or not;
    * ``failed``: the script aiming `failed_offset` metres beside the cube (along y,
      always the same side: a consistent wrong habit, which averaging policies copy),
      unsuccessful episodes only.

    Every episode ends `success_hold` steps after its first success, or after
    `max_steps` (expert) / `unsuccessful_steps` (noisy, failed) steps. Rewards are the
    environment's sparse success rewards, ``dones`` is 1 on each demo's last step,
    ``next_obs`` the real next observation. Demos are written expert, then noisy,
    then failed, with filter keys ``mask/expert``, ``mask/noisy``, ``mask/failed``,
    and ``mask/train`` / ``mask/valid`` (the last `val_ratio` of each kind).
    """
    from t2r.robomimic.hdf5 import Demo, write_robomimic_hdf5

    counts = {"expert": expert, "noisy": noisy, "failed": failed}
    if any(n < 0 for n in counts.values()) or not sum(counts.values()):
        raise ValueError(f"demo counts must be >= 0 and not all 0, got {counts}.")
    if not 0.0 <= val_ratio < 1.0:
        raise ValueError(f"val_ratio must be in [0, 1), got {val_ratio}.")
    env_args = lift_env_args()
    env = make_env_from_env_args(env_args)
    np.random.seed(seed % 2**32)  # the cube's placement
    rng = np.random.default_rng(seed)
    start = time.perf_counter()
    kinds: dict[str, list[Demo]] = {kind: [] for kind in counts}
    successes = dict.fromkeys(counts, 0)
    progress = tqdm(total=sum(counts.values()), desc="Lift demos", disable=not show_progress)
    try:
        for kind, n in counts.items():
            attempts = 0
            while len(kinds[kind]) < n:
                attempts += 1
                if attempts > 3 * n + 10:
                    raise RuntimeError(
                        f"collect_mixed_lift_demos: only {len(kinds[kind])} of {n} {kind} "
                        f"episodes in {attempts - 1} attempts."
                    )
                episode_seed = int(rng.integers(2**31))
                if kind == "expert":
                    policy = ScriptedLiftPolicy(expert_noise, seed=episode_seed)
                    demo = _one_episode(env, policy, max_steps, success_hold)
                elif kind == "noisy":
                    policy = ScriptedLiftPolicy(noisy_noise, seed=episode_seed)
                    demo = _one_episode(
                        env, policy, unsuccessful_steps, success_hold, keep_failures=True
                    )
                else:
                    policy = ScriptedLiftPolicy(
                        expert_noise, seed=episode_seed, grasp_offset=(0.0, failed_offset, 0.0)
                    )
                    demo = _one_episode(
                        env, policy, unsuccessful_steps, success_hold, keep_failures=True
                    )
                    if demo is not None and demo.rewards is not None and demo.rewards.max() > 0:
                        demo = None  # grasped after all: not a failure
                if demo is None:
                    continue
                succeeded = demo.rewards is not None and float(np.max(demo.rewards)) > 0
                successes[kind] += int(succeeded)
                kinds[kind].append(demo)
                progress.update(1)
    finally:
        progress.close()
        env.close()
    demos: list[Demo] = []
    masks: dict[str, list[str]] = {"train": [], "valid": []}
    for kind, kind_demos in kinds.items():
        names = [f"demo_{len(demos) + i}" for i in range(len(kind_demos))]
        demos.extend(kind_demos)
        masks[kind] = names
        num_valid = round(len(names) * val_ratio)
        if val_ratio > 0 and len(names) > 1:
            num_valid = max(1, num_valid)
        masks["train"] += names[: len(names) - num_valid]
        masks["valid"] += names[len(names) - num_valid :]
    path = write_robomimic_hdf5(output, demos, env_args, masks=masks)
    stats = MixedLiftStats(
        path=str(Path(path)),
        demos={k: len(v) for k, v in kinds.items()},
        successes=successes,
        mean_length={
            k: float(np.mean([d.num_samples for d in v])) if v else 0.0 for k, v in kinds.items()
        },
        seconds=time.perf_counter() - start,
    )
    logger.info("Wrote a mixed Lift dataset to %s: %s", path, stats)
    return stats
