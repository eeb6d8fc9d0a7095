"""A language-conditioned reach task on MuJoCo: "reach the red block".

A table seen from above holds one cube per colour (red, green, blue by default)
and an end effector (a white disc). Each episode draws new block positions, a
new effector start and an instruction naming one block; the effector moves by
Cartesian deltas until it is over the named block.

* observation (a dict):
  ``image`` ``(render_size, render_size, 3)`` uint8 (64x64 by default),
  ``natural_language_embedding`` ``(512,)`` float32 (the instruction embedded
  by the env's text encoder, RT-1's built-in `HashingTextEncoder` by default),
  ``natural_language_instruction`` str,
  ``effector`` ``(2,)`` float32 (x, y) (a state the scripted demonstrator reads;
  the RT-1 policy uses pixels and the embedding only).
* action: ``(3,)`` float32 in [-1, 1], RT-1's ``world_vector``: the effector moves
  by ``step_size * clip(world_vector[:2], -1, 1)`` (z is ignored: the effector
  stays at its height). A dict of RT-1 actions is accepted too (its
  ``world_vector``, or ``action/world_vector``; the other keys are ignored).
* reward 1.0 and ``terminated`` when the effector's centre is within
  ``success_radius`` of the named block's centre (in x, y), else 0.0;
  ``truncated`` after ``max_episode_steps``. ``info["success"]`` says which.

Why 64x64 images: RT-1 trains here on 2 CPU cores shared with other jobs, and
every training example encodes 6 frames, so pixels are the cost. 64 px is the
smallest size that keeps space in the image features: the FiLM-EfficientNet
downsamples by 32, so 64 px leaves a 2x2 map of tokens (32 px leaves 1x1, and a
small RT-1 trained at 32 px did not learn the task beyond 20%), while 96 px costs
about 3x more per step. At 64 px a block (7 cm) is about 8 pixels wide and the
effector (5 cm) about 6.

Instructions are ``"reach the <colour> block"``; success is reported per
instruction by `t2r.research.lang_env.evaluate`. Rendering is headless, as in
pose_env (``MUJOCO_GL`` picked by `select_gl_backend`; shadows and reflections
off).
"""

from __future__ import annotations

import string
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from t2r.research.pose_env.pose_env import offscreen_renderer, select_gl_backend

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
from t2r.research.rt1.text_encoders import HashingTextEncoder, TextEncoder  # noqa: E402

__all__ = ["LangReachEnv", "instruction_for"]


def instruction_for(colour: str) -> str:
    return f"reach the {colour} block"


class LangReachEnv(gym.Env):
    """Reach the named block (see the module docstring).

    Args:
      colours: the blocks' colours (names of `t2r.research.lang_env.scene.COLOURS`);
        one instruction each.
      render_size: side of the square image observation, pixels.
      max_episode_steps: steps before ``truncated``.
      step_size: metres the effector moves for a world_vector of 1.
      success_radius: x-y distance from the named block's centre that counts as reached.
      min_separation: smallest distance between block centres, and from the
        effector's start to every block.
      text_encoder: embeds the instruction (default RT-1's built-in
        `t2r.research.rt1.HashingTextEncoder()`, 512-d, offline, deterministic).
      seed: seeds the env's generator; ``reset(seed=...)`` reseeds too.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 10}

    def __init__(
        self,
        colours: Sequence[str] = ("red", "green", "blue"),
        render_size: int = 64,
        max_episode_steps: int = 25,
        step_size: float = 0.05,
        success_radius: float = 0.05,
        min_separation: float = 0.12,
        text_encoder: TextEncoder | None = None,
        seed: int | None = None,
        render_mode: str | None = None,
    ) -> None:
        super().__init__()
        unknown = [c for c in colours if c not in COLOURS]
        if unknown or len(set(colours)) != len(colours) or not colours:
            raise ValueError(
                f"LangReachEnv: colours must be distinct names of {sorted(COLOURS)}, got "
                f"{list(colours)}."
            )
        if render_mode not in (None, "rgb_array"):
            raise ValueError("LangReachEnv: render_mode must be None or 'rgb_array'.")
        self.colours = tuple(colours)
        self.instructions = tuple(instruction_for(c) for c in self.colours)
        self.render_size = int(render_size)
        self.render_mode = render_mode
        self.max_episode_steps = int(max_episode_steps)
        self.step_size = float(step_size)
        self.success_radius = float(success_radius)
        self.min_separation = float(min_separation)
        self.text_encoder: TextEncoder = text_encoder or HashingTextEncoder()
        self._embeddings = dict(zip(self.instructions, self.text_encoder(self.instructions)))
        size = self.render_size
        self.observation_space = spaces.Dict(
            {
                "image": spaces.Box(0, 255, (size, size, 3), np.uint8),
                "natural_language_embedding": spaces.Box(
                    -np.inf, np.inf, (self.text_encoder.dim,), np.float32
                ),
                "natural_language_instruction": spaces.Text(
                    64, charset=string.ascii_letters + string.digits + " "
                ),
                "effector": spaces.Box(-WORKSPACE_HALF, WORKSPACE_HALF, (2,), np.float32),
            },
            seed=seed,
        )
        self.action_space = spaces.Box(-1.0, 1.0, (3,), np.float32, seed=seed)

        self._model = mujoco.MjModel.from_xml_string(
            build_scene_xml({c: COLOURS[c] for c in self.colours}, size)
        )
        self._data = mujoco.MjData(self._model)

        def mocap(body: str) -> int:
            index = mujoco.mj_name2id(self._model, mujoco.mjtObj.mjOBJ_BODY, body)
            return int(self._model.body_mocapid[index])

        self._block_mocap = {c: mocap(f"block_{c}") for c in self.colours}
        self._effector_mocap = mocap("effector")
        self._renderer = offscreen_renderer(self._model, size, "LangReachEnv")

        self.blocks: dict[str, np.ndarray] = {c: np.zeros(2) for c in self.colours}
        self.effector = np.zeros(2)
        self.target = self.colours[0]
        self.steps = 0
        if seed is not None:
            super().reset(seed=seed)

    # ------------------------------------------------------------------ state
    @property
    def instruction(self) -> str:
        return instruction_for(self.target)

    def distance(self) -> float:
        """x-y distance from the effector to the named block."""
        return float(np.linalg.norm(self.effector - self.blocks[self.target]))

    def _place(self) -> None:
        for colour, xy in self.blocks.items():
            self._data.mocap_pos[self._block_mocap[colour]] = (xy[0], xy[1], BLOCK_HALF)
        self._data.mocap_pos[self._effector_mocap] = (self.effector[0], self.effector[1], 0.08)
        mujoco.mj_kinematics(self._model, self._data)
        mujoco.mj_camlight(self._model, self._data)  # the fixed camera's pose

    def _sample_positions(self) -> None:
        points = sample_apart(
            self.np_random, len(self.colours) + 1, self.min_separation, "LangReachEnv"
        )
        self.blocks = {c: points[i] for i, c in enumerate(self.colours)}
        self.effector = points[-1]

    def render(self) -> np.ndarray:
        """The camera image, ``(render_size, render_size, 3)`` uint8."""
        self._renderer.update_scene(self._data, camera="top")
        return self._renderer.render().copy()

    def _observation(self) -> dict[str, Any]:
        return {
            "image": self.render(),
            "natural_language_embedding": self._embeddings[self.instruction].copy(),
            "natural_language_instruction": self.instruction,
            "effector": self.effector.astype(np.float32),
        }

    def _info(self) -> dict[str, Any]:
        return {
            "instruction": self.instruction,
            "target": self.target,
            "target_position": self.blocks[self.target].astype(np.float32),
            "distance": self.distance(),
            "success": self.distance() <= self.success_radius,
        }

    # -------------------------------------------------------------- gym API
    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """New block positions and effector start; the instruction is drawn, or
        ``options={"instruction": text or colour}`` names it."""
        super().reset(seed=seed)
        self._sample_positions()
        chosen = (options or {}).get("instruction")
        if chosen is None:
            self.target = self.colours[int(self.np_random.integers(len(self.colours)))]
        else:
            matches = [c for c in self.colours if chosen in (c, instruction_for(c))]
            if not matches:
                raise ValueError(
                    f"LangReachEnv: unknown instruction {chosen!r}; it knows {self.instructions}."
                )
            self.target = matches[0]
        self.steps = 0
        self._place()
        return self._observation(), self._info()

    def step(self, action: Any) -> tuple[dict[str, Any], float, bool, bool, dict[str, Any]]:
        world = _world_vector(action)
        delta = np.clip(world[:2], -1.0, 1.0) * self.step_size
        self.effector = np.clip(self.effector + delta, -WORKSPACE_HALF, WORKSPACE_HALF)
        self.steps += 1
        self._place()
        info = self._info()
        success = bool(info["success"])
        truncated = not success and self.steps >= self.max_episode_steps
        return self._observation(), float(success), success, truncated, info

    def close(self) -> None:
        renderer = getattr(self, "_renderer", None)
        if renderer is not None:
            renderer.close()
            self._renderer = None


def _world_vector(action: Any) -> np.ndarray:
    if isinstance(action, Mapping):
        for key in ("world_vector", "action/world_vector"):
            if key in action:
                action = action[key]
                break
        else:
            raise KeyError(f"LangReachEnv: the action dict has no world_vector: {sorted(action)}.")
    world = np.asarray(action, dtype=np.float64).reshape(-1)
    if world.shape[0] not in (2, 3) or not np.all(np.isfinite(world)):
        raise ValueError(f"LangReachEnv: world_vector must be 2 or 3 finite floats, got {world}.")
    return world
