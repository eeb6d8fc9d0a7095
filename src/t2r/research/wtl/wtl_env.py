"""Watch-Try-Learn's task on MuJoCo: reach the object the demonstration went to.

A table seen from above holds two identical cubes of each colour (red and blue
by default: four cubes) and an end effector (a white disc). A *task* is one
target cube: its colour and which of the two twins it is. Within a task:

* the **demonstration** (episode 0 after `reset_task`) is recorded in its own
  layout: the cubes stand elsewhere, in another order, and the demonstrator
  reaches the target;
* the **trial** and the **retrial** (every later episode of the task) share a
  second layout, which the demonstration never shows.

So the goal is visible only in the demonstration, and only up to its colour: the
two twins look the same, and nothing in the demonstration says which twin of the
new layout is the target. A trial that picks the wrong twin fails (reward 0);
its outcome says the target is the other one, and a retrial that reads it
always succeeds. Ceilings for a perfect agent (each twin is the target with
probability 1/2, independent of every layout):

=====================================  ========
agent                                  success
=====================================  ========
no demonstration (one of 4 cubes)      25 %
trial (demonstration)                  50 %
retrial (demonstration + trial)        100 %
=====================================  ========

(A trial's straight path can cross the other twin on its way and succeed by
chance, which puts the trial's figure a little above 50 %; the scripted agent
of `t2r.research.wtl.scripted` measures it.)

* observation (a dict): ``full_state_pose`` ``(2 + 5 K,)`` float32 (T2R's
  VRGripper state-space name): the effector's (x, y), then per cube slot
  (x, y, r, g, b), K cubes in a per-layout random order; ``effector`` (2,) and
  ``objects`` (K, 5), the same numbers unflattened.
* action: ``(2,)`` float32 in [-1, 1]: the effector moves by
  ``step_size * clip(action, -1, 1)``.
* reward 1.0 and ``terminated`` when the effector's centre is within
  ``success_radius`` of the target's centre, else 0.0; ``truncated`` after
  ``max_episode_steps``. ``info`` says ``success``, ``phase`` ('demo' or
  'trial'), ``target_slot`` and ``target_position``.

MuJoCo holds the scene (the cubes and the effector are mocap bodies of
`t2r.research.lang_env.scene`); `render` draws it headless, as pose_env does
(``MUJOCO_GL`` picked by `select_gl_backend`), and the renderer is made on the
first `render` only, so the state-space task needs no GL.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from t2r.research.pose_env.pose_env import offscreen_renderer, select_gl_backend
from t2r.research.wtl.episodes import OBJECT_FEATURES

select_gl_backend()

import gymnasium as gym  # noqa: E402 - MUJOCO_GL must be set before mujoco loads
import mujoco  # noqa: E402
from gymnasium import spaces  # noqa: E402

from t2r.research.lang_env.scene import (  # noqa: E402
    BLOCK_HALF,
    COLOURS,
    WORKSPACE_HALF,
    build_scene_xml,
    sample_apart,
)

__all__ = ["OBJECT_FEATURES", "PHASES", "Layout", "WatchTryLearnEnv", "state_size"]

PHASES = ("demo", "trial")


def state_size(num_colours: int = 2) -> int:
    """Length of ``full_state_pose`` with two cubes per colour."""
    return 2 + 2 * num_colours * OBJECT_FEATURES


@dataclass(frozen=True)
class Layout:
    """Where the cubes stand: ``positions[s]`` is slot s's (x, y), ``cubes[s]`` the
    cube in slot s as (colour index, twin index)."""

    positions: np.ndarray  # (K, 2)
    cubes: tuple[tuple[int, int], ...]

    def slot_of(self, cube: tuple[int, int]) -> int:
        return self.cubes.index(cube)


class WatchTryLearnEnv(gym.Env):
    """Reach the cube the demonstration reached (see the module docstring).

    Args:
      colours: the cube colours (names of `t2r.research.lang_env.scene.COLOURS`),
        two identical cubes each.
      max_episode_steps: steps before ``truncated``.
      step_size: metres the effector moves for an action of 1.
      success_radius: x-y distance from the target's centre that counts as reached.
      min_separation: smallest distance between cube centres, and from the
        effector's start to every cube.
      render_size: side of the square image `render` returns.
      seed: seeds the env's generator; ``reset(seed=...)`` reseeds too.

    ``reset_task()`` draws a new target and both layouts; the first ``reset()``
    after it shows the demonstration layout, later ones the trial layout (with a
    new effector start each time). ``reset(options={'phase': 'demo' | 'trial'})``
    picks the layout explicitly; ``reset(seed=...)`` (or a reset before any
    task) also draws a new task.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 10}

    def __init__(
        self,
        colours: Sequence[str] = ("red", "blue"),
        max_episode_steps: int = 20,
        step_size: float = 0.05,
        success_radius: float = 0.05,
        min_separation: float = 0.12,
        render_size: int = 64,
        seed: int | None = None,
        render_mode: str | None = None,
    ) -> None:
        super().__init__()
        unknown = [c for c in colours if c not in COLOURS]
        if unknown or len(set(colours)) != len(colours) or len(colours) < 1:
            raise ValueError(
                f"WatchTryLearnEnv: colours must be distinct names of {sorted(COLOURS)}, got "
                f"{list(colours)}."
            )
        if render_mode not in (None, "rgb_array"):
            raise ValueError("WatchTryLearnEnv: render_mode must be None or 'rgb_array'.")
        self.colours = tuple(colours)
        self.render_mode = render_mode
        self.render_size = int(render_size)
        self.max_episode_steps = int(max_episode_steps)
        self.step_size = float(step_size)
        self.success_radius = float(success_radius)
        self.min_separation = float(min_separation)
        self.num_objects = 2 * len(self.colours)
        size = state_size(len(self.colours))
        self.observation_space = spaces.Dict(
            {
                "full_state_pose": spaces.Box(-1.0, 1.0, (size,), np.float32),
                "effector": spaces.Box(-WORKSPACE_HALF, WORKSPACE_HALF, (2,), np.float32),
                "objects": spaces.Box(-1.0, 1.0, (self.num_objects, OBJECT_FEATURES), np.float32),
            },
            seed=seed,
        )
        self.action_space = spaces.Box(-1.0, 1.0, (2,), np.float32, seed=seed)
        self._cube_names = [f"{c}{twin}" for c in self.colours for twin in (0, 1)]
        self._model = mujoco.MjModel.from_xml_string(
            build_scene_xml(
                {name: COLOURS[name[:-1]] for name in self._cube_names}, self.render_size
            )
        )
        self._data = mujoco.MjData(self._model)

        def mocap(body: str) -> int:
            index = mujoco.mj_name2id(self._model, mujoco.mjtObj.mjOBJ_BODY, body)
            return int(self._model.body_mocapid[index])

        self._cube_mocap = [mocap(f"block_{name}") for name in self._cube_names]
        self._effector_mocap = mocap("effector")
        self._renderer: Any = None
        self._rgb = np.asarray([COLOURS[c] for c in self.colours], dtype=np.float32)

        self.target: tuple[int, int] = (0, 0)
        self.layouts: dict[str, Layout] = {}
        self.phase = "demo"
        self.layout: Layout | None = None
        self.effector = np.zeros(2)
        self.steps = 0
        self._episodes_in_task = 0
        if seed is not None:
            super().reset(seed=seed)

    # ------------------------------------------------------------------ task
    def reset_task(self) -> None:
        """Draws a new target cube (colour and twin) and the demonstration and trial layouts."""
        rng = self.np_random
        self.target = (int(rng.integers(len(self.colours))), int(rng.integers(2)))
        self.layouts = {phase: self._sample_layout() for phase in PHASES}
        self._episodes_in_task = 0

    def _sample_layout(self) -> Layout:
        cubes = [(c, twin) for c in range(len(self.colours)) for twin in (0, 1)]
        order = self.np_random.permutation(len(cubes))
        points = sample_apart(self.np_random, len(cubes), self.min_separation, "WatchTryLearnEnv")
        return Layout(points, tuple(cubes[i] for i in order))

    def _sample_effector(self, positions: np.ndarray) -> np.ndarray:
        rng = self.np_random
        for _ in range(1000):
            start = rng.uniform(-WORKSPACE_HALF, WORKSPACE_HALF, size=2)
            if np.linalg.norm(positions - start, axis=-1).min() >= self.min_separation:
                return start
        raise RuntimeError(  # pragma: no cover
            "WatchTryLearnEnv: no effector start away from the cubes."
        )

    # ----------------------------------------------------------------- state
    @property
    def target_position(self) -> np.ndarray:
        assert self.layout is not None
        return self.layout.positions[self.layout.slot_of(self.target)]

    def distance(self) -> float:
        """x-y distance from the effector to the target cube."""
        return float(np.linalg.norm(self.effector - self.target_position))

    def _place(self) -> None:
        assert self.layout is not None
        for slot, (colour, twin) in enumerate(self.layout.cubes):
            x, y = self.layout.positions[slot]
            self._data.mocap_pos[self._cube_mocap[2 * colour + twin]] = (x, y, BLOCK_HALF)
        self._data.mocap_pos[self._effector_mocap] = (self.effector[0], self.effector[1], 0.08)
        mujoco.mj_kinematics(self._model, self._data)
        mujoco.mj_camlight(self._model, self._data)

    def _observation(self) -> dict[str, np.ndarray]:
        assert self.layout is not None
        objects = np.concatenate(
            [
                self.layout.positions.astype(np.float32),
                self._rgb[[colour for colour, _ in self.layout.cubes]],
            ],
            axis=-1,
        )
        effector = self.effector.astype(np.float32)
        return {
            "full_state_pose": np.concatenate([effector, objects.reshape(-1)]),
            "effector": effector,
            "objects": objects,
        }

    def _info(self) -> dict[str, Any]:
        assert self.layout is not None
        return {
            "phase": self.phase,
            "target_colour": self.colours[self.target[0]],
            "target_slot": self.layout.slot_of(self.target),
            "target_position": self.target_position.astype(np.float32),
            "distance": self.distance(),
            "success": self.distance() <= self.success_radius,
        }

    def render(self) -> np.ndarray:
        """The top camera's image, ``(render_size, render_size, 3)`` uint8."""
        if self._renderer is None:
            self._renderer = offscreen_renderer(self._model, self.render_size, "WatchTryLearnEnv")
        self._renderer.update_scene(self._data, camera="top")
        return np.asarray(self._renderer.render()).copy()

    # -------------------------------------------------------------- gym API
    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """A new episode of the current task (see the class docstring)."""
        super().reset(seed=seed)
        if seed is not None or not self.layouts:
            self.reset_task()
        phase = (options or {}).get("phase")
        if phase is None:
            phase = "demo" if self._episodes_in_task == 0 else "trial"
        if phase not in PHASES:
            raise ValueError(f"WatchTryLearnEnv: phase must be one of {PHASES}, got {phase!r}.")
        self.phase = phase
        self.layout = self.layouts[phase]
        self.effector = self._sample_effector(self.layout.positions)
        self.steps = 0
        self._episodes_in_task += 1
        self._place()
        return self._observation(), self._info()

    def step(self, action: Any) -> tuple[dict[str, np.ndarray], float, bool, bool, dict[str, Any]]:
        if self.layout is None:
            raise RuntimeError("WatchTryLearnEnv: step() before reset().")
        move = np.asarray(action, dtype=np.float64).reshape(-1)
        if move.shape != (2,) or not np.all(np.isfinite(move)):
            raise ValueError(f"WatchTryLearnEnv: the action must be 2 finite floats, got {move}.")
        self.effector = np.clip(
            self.effector + np.clip(move, -1.0, 1.0) * self.step_size,
            -WORKSPACE_HALF,
            WORKSPACE_HALF,
        )
        self.steps += 1
        self._place()
        info = self._info()
        success = bool(info["success"])
        truncated = not success and self.steps >= self.max_episode_steps
        return self._observation(), float(success), success, truncated, info

    def close(self) -> None:
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None
