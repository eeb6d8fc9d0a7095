"""Bin grasping on MuJoCo, rendered on the CPU: QT-Opt's task at toy scale.

A bin holds a few random objects (boxes, cylinders, capsules of random size
and colour, drawn from an `ObjectSet`: "train" or the held-out "test"). A
parallel gripper hangs over the bin; each step moves it by a Cartesian delta,
turns it about the vertical, and may close it or end the episode. When the
episode ends the env closes the gripper (if it is open; at the step limit only
with ``grasp_at_time_limit``) and lifts it; the episode succeeds when an object
ends up above `LIFT_THRESHOLD`.

* action: ``(6,)`` float32 in [-1, 1], `ACTION_LAYOUT` = (dx, dy, dz, dyaw,
  close, terminate). The palm's target moves by ``XY_STEP * dx``,
  ``XY_STEP * dy``, ``Z_STEP * dz`` metres and ``YAW_STEP * dyaw`` radians
  (clipped to the palm's joint limits); ``close > 0`` closes the gripper, which
  then stays closed; ``terminate > 0`` ends the episode after this step's move.
* observation (a dict): ``image`` ``(S, S, 3)`` uint8 from the over-the-shoulder
  camera, ``gripper_closed`` ``(1,)`` float32 (0 or 1), ``height_to_bottom``
  ``(1,)`` float32, the height of the fingers' bottom above the bin floor, metres.
* reward: 1.0 on the final step when an object is lifted, else 0.0; every other
  step 0 (and 0 when MuJoCo reported a diverging simulation, which it resets by
  itself: ``info["physics_unstable"]``; a safety net: see docs/grasp_env.md for the
  divergence that the implicit integrator removed). The final
  step (``terminate`` or ``max_steps``) always reports
  ``terminated=True``: the grasp attempt happened, there is nothing to bootstrap
  from. ``info`` holds ``object_set`` on every step and ``grasp_success``
  (bool) on the final one, and ``time_limit_grasp`` (True) on a final step at
  the step limit whose lift was of a closed gripper: that step did exactly
  what the same action with ``terminate > 0`` does.

Each env step runs `MOVE_SUBSTEPS` physics steps (the palm servos follow a
target interpolated along the move), plus `CLOSE_SUBSTEPS` when it closes the
gripper; the final step adds the close and `LIFT_SUBSTEPS` of lifting. One
compiled model and one renderer serve every episode: a reset rewrites the
object slots' geoms (shape, size, colour, mass, inertia) in place.

Determinism: ``reset(seed=s)`` (or the constructor's ``seed`` and then
``reset()``) fixes the episode: the same seed and actions give the same
observations, rewards and infos (MuJoCo steps deterministically on one thread).

Rendering is headless, as in pose_env (``MUJOCO_GL`` picked by
`select_gl_backend`; shadows, reflections and skybox off).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np

from t2r.research.pose_env.pose_env import offscreen_renderer, select_gl_backend

select_gl_backend()

import gymnasium as gym  # noqa: E402 - MUJOCO_GL must be set before mujoco loads
import mujoco  # noqa: E402
from gymnasium import spaces  # noqa: E402

from t2r.research.grasp_env.objects import OBJECT_SETS, ObjectSpec  # noqa: E402
from t2r.research.grasp_env.scene import (  # noqa: E402
    BIN_HALF,
    FINGER_BOTTOM,
    FINGER_OPEN,
    HIDDEN_GROUP,
    PALM_XY_LIMIT,
    PALM_Z_MAX,
    PALM_Z_MIN,
    SHAPES,
    build_scene_xml,
)

logger = logging.getLogger(__name__)

__all__ = [
    "ACTION_LAYOUT",
    "CLOSE_SUBSTEPS",
    "LIFT_HEIGHT",
    "LIFT_SUBSTEPS",
    "LIFT_THRESHOLD",
    "MOVE_SUBSTEPS",
    "START_HEIGHT",
    "XY_STEP",
    "YAW_STEP",
    "Z_STEP",
    "GraspEnv",
]

ACTION_LAYOUT = ("dx", "dy", "dz", "dyaw", "close", "terminate")

# Metres / radians the palm's target moves per step for an action of 1.
XY_STEP = 0.05
Z_STEP = 0.04
YAW_STEP = np.pi / 4

# Physics steps (scene.TIMESTEP = 4 ms each).
MOVE_SUBSTEPS = 50  # 0.2 s: the target moves during the first 70 %, then holds
CLOSE_SUBSTEPS = 40  # 0.16 s
LIFT_SUBSTEPS = 100  # 0.4 s: up LIFT_HEIGHT in the first 75 %, then holds
SETTLE_SUBSTEPS = 25  # after placing the objects at reset

# The finger bottom's height above the floor at the start of an episode.
START_HEIGHT = 0.02
# How far the final lift raises the palm, and the object centre height that counts
# as lifted (resting objects' centres are below 0.04).
LIFT_HEIGHT = 0.2
LIFT_THRESHOLD = 0.1

OBJECT_DENSITY = 400.0  # kg/m^3 (a light plastic or wooden object)
_MIN_GAP = 0.006  # between objects' footprints at reset
_PLACE_TRIES = 200
_PLACE_RESTARTS = 50

_PALM_JOINTS = ("palm_x", "palm_y", "palm_z", "palm_yaw")
_FINGERS = ("finger_left", "finger_right")


def _geom_extent(shape: str, size: tuple[float, float, float]) -> dict[str, Any]:
    """Volume, principal inertia per unit mass (body frame), bounding radius, AABB half sizes
    (geom frame), resting centre height and the footprint's half extents (body x, y)."""
    a, b, c = size
    if shape == "box":
        volume = 8 * a * b * c
        inertia = np.array([b * b + c * c, a * a + c * c, a * a + b * b]) / 3
        return dict(
            volume=volume,
            inertia=inertia,
            rbound=float(np.sqrt(a * a + b * b + c * c)),
            aabb=(a, b, c),
            rest_z=c,
            footprint=np.array([a, b]),
        )
    if shape == "cylinder":  # upright: axis = body z
        volume = np.pi * a * a * 2 * b
        side = (3 * a * a + 4 * b * b) / 12
        return dict(
            volume=volume,
            inertia=np.array([side, side, a * a / 2]),
            rbound=float(np.hypot(a, b)),
            aabb=(a, a, b),
            rest_z=b,
            footprint=np.array([a, a]),
        )
    # capsule lying on its side: axis = body x. Inertia of the cylinder that spans it.
    volume = np.pi * a * a * (2 * b + 4 * a / 3)
    length = b + a
    side = (3 * a * a + 4 * length * length) / 12
    return dict(
        volume=volume,
        inertia=np.array([a * a / 2, side, side]),
        rbound=a + b,
        aabb=(a, a, a + b),
        rest_z=a,
        footprint=np.array([a + b, a]),
    )


def _rotation_2d(yaw: float) -> np.ndarray:
    cos, sin = np.cos(yaw), np.sin(yaw)
    return np.array([[cos, -sin], [sin, cos]])


Footprint = tuple[np.ndarray, np.ndarray, np.ndarray]  # centre (2,), rotation (2, 2), half (2,)


def _footprints_overlap(a: Footprint, b: Footprint, gap: float = _MIN_GAP) -> bool:
    """Whether two oriented rectangles come closer than `gap` (separating axis test)."""
    offset = b[0] - a[0]
    for axis in (*a[1].T, *b[1].T):
        reach_a = np.abs(a[1].T @ axis) @ a[2]
        reach_b = np.abs(b[1].T @ axis) @ b[2]
        if abs(offset @ axis) >= reach_a + reach_b + gap:
            return False
    return True


def _yaw_quat(yaw: float) -> np.ndarray:
    return np.array([np.cos(yaw / 2), 0.0, 0.0, np.sin(yaw / 2)])


class GraspEnv(gym.Env):
    """Grasp an object in a bin and lift it (see the module docstring).

    Args:
      object_set: ``"train"`` or the held-out ``"test"`` (`OBJECT_SETS`).
      num_objects: objects in the bin.
      image_size: side of the square image observation, pixels.
      max_steps: steps per episode at most (the last one grasps and lifts).
      seed: seeds the env's generator; ``reset(seed=...)`` reseeds too.
      render_mode: None or 'rgb_array' (`render()` returns the camera image).
      start_height: the finger bottom's height above the floor at reset, metres.
      grasp_at_time_limit: whether an episode cut at `max_steps` with the gripper
        still open closes it before the lift, as ``terminate`` does (True), or
        lifts an open gripper and scores 0 (False). A critic that cannot see the
        step count needs False: otherwise a plain move earns the grasp's reward
        when it happens to be the last step, and "move on" looks like "grasp".
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 5}

    def __init__(
        self,
        object_set: str = "train",
        num_objects: int = 3,
        image_size: int = 64,
        max_steps: int = 10,
        seed: int | None = None,
        render_mode: str | None = None,
        start_height: float = START_HEIGHT,
        grasp_at_time_limit: bool = True,
    ) -> None:
        super().__init__()
        if object_set not in OBJECT_SETS:
            raise ValueError(
                f"GraspEnv: object_set must be one of {sorted(OBJECT_SETS)}, got {object_set!r}."
            )
        if not 1 <= num_objects <= 6:
            raise ValueError(f"GraspEnv: num_objects must be in [1, 6], got {num_objects}.")
        if image_size < 8:
            raise ValueError(f"GraspEnv: image_size must be at least 8, got {image_size}.")
        if max_steps < 1:
            raise ValueError(f"GraspEnv: max_steps must be positive, got {max_steps}.")
        if render_mode not in (None, "rgb_array"):
            raise ValueError(
                f"GraspEnv: render_mode must be None or 'rgb_array', got {render_mode!r}."
            )
        self.object_set = object_set
        self.num_objects = int(num_objects)
        self.image_size = int(image_size)
        self.max_steps = int(max_steps)
        self.render_mode = render_mode
        self.start_height = float(start_height)
        self.grasp_at_time_limit = bool(grasp_at_time_limit)
        size = self.image_size
        self.observation_space = spaces.Dict(
            {
                "image": spaces.Box(0, 255, (size, size, 3), np.uint8),
                "gripper_closed": spaces.Box(0.0, 1.0, (1,), np.float32),
                "height_to_bottom": spaces.Box(0.0, 1.0, (1,), np.float32),
            },
            seed=seed,
        )
        self.action_space = spaces.Box(-1.0, 1.0, (len(ACTION_LAYOUT),), np.float32, seed=seed)

        model = mujoco.MjModel.from_xml_string(build_scene_xml(self.num_objects, size))
        self._model = model
        self._data = mujoco.MjData(model)

        def id_of(kind: mujoco.mjtObj, name: str) -> int:
            return int(mujoco.mj_name2id(model, kind, name))

        body, geom, joint = (
            mujoco.mjtObj.mjOBJ_BODY,
            mujoco.mjtObj.mjOBJ_GEOM,
            mujoco.mjtObj.mjOBJ_JOINT,
        )
        self._object_bodies = [id_of(body, f"object_{i}") for i in range(self.num_objects)]
        self._object_geoms = [
            {shape: id_of(geom, f"object_{i}_{shape}") for shape in SHAPES}
            for i in range(self.num_objects)
        ]
        self._object_qpos = [
            int(model.jnt_qposadr[id_of(joint, f"object_{i}_joint")])
            for i in range(self.num_objects)
        ]
        self._palm_qpos = np.array(
            [model.jnt_qposadr[id_of(joint, name)] for name in _PALM_JOINTS], dtype=np.int64
        )
        self._finger_qpos = np.array(
            [model.jnt_qposadr[id_of(joint, name)] for name in _FINGERS], dtype=np.int64
        )
        actuator = mujoco.mjtObj.mjOBJ_ACTUATOR
        self._palm_ctrl = np.array([id_of(actuator, name) for name in _PALM_JOINTS])
        self._finger_ctrl = np.array([id_of(actuator, name) for name in _FINGERS])
        self._finger_geoms = {id_of(geom, name) for name in _FINGERS}
        self._renderer = offscreen_renderer(model, size, "GraspEnv")
        self._scene_option = mujoco.MjvOption()
        self._scene_option.geomgroup[HIDDEN_GROUP] = 0
        self._camera = id_of(mujoco.mjtObj.mjOBJ_CAMERA, "shoulder")

        self.objects: list[ObjectSpec] = []
        self._target = np.zeros(4)  # palm servo targets: x, y, z (palm origin), yaw
        self._closed = False
        self._steps = 0
        self._done = True
        if seed is not None:
            super().reset(seed=seed)

    # ------------------------------------------------------------------ state
    @property
    def model(self) -> mujoco.MjModel:
        return self._model

    @property
    def data(self) -> mujoco.MjData:
        return self._data

    @property
    def steps(self) -> int:
        """Steps taken in the current episode."""
        return self._steps

    @property
    def gripper_closed(self) -> bool:
        return self._closed

    def gripper_pose(self) -> np.ndarray:
        """(4,) float64: the palm's x, y, the finger bottom's height above the floor, yaw."""
        x, y, z, yaw = self._data.qpos[self._palm_qpos]
        return np.array([x, y, z - FINGER_BOTTOM, yaw])

    def object_positions(self) -> np.ndarray:
        """(num_objects, 3) float64: the objects' centres."""
        return self._data.xpos[self._object_bodies].copy()

    def object_grasp_yaws(self) -> np.ndarray:
        """(num_objects,) float64: a palm yaw that closes the fingers across each object's
        narrow side (defined modulo pi), NaN where any yaw does (an upright cylinder)."""
        yaws = np.full(self.num_objects, np.nan)
        for i, (spec, body) in enumerate(zip(self.objects, self._object_bodies)):
            axes = self._data.xmat[body].reshape(3, 3)  # columns: the body's axes in world
            if spec.shape == "cylinder":
                axis = axes[:, 2]
                if abs(axis[2]) > 0.7:
                    continue  # upright
                # lying: close across it, the palm's x along its axis
            elif spec.shape == "box" and spec.size[1] > spec.size[0]:
                axis = axes[:, 1]  # the long side is the body's y
            else:
                axis = axes[:, 0]  # box long side x, or the capsule's axis
            yaws[i] = np.arctan2(axis[1], axis[0])
        return yaws

    def object_tops(self) -> np.ndarray:
        """(num_objects,) float64: each object's highest point (its AABB top), metres."""
        return np.array(
            [self._data.geom_xpos[g][2] + self._vertical_half(g) for g in self._active_geoms()]
        )

    def _active_geoms(self) -> list[int]:
        return [geoms[spec.shape] for geoms, spec in zip(self._object_geoms, self.objects)]

    def _vertical_half(self, geom: int) -> float:
        rotation = self._data.geom_xmat[geom].reshape(3, 3)
        return float(np.abs(rotation[2]) @ self._model.geom_aabb[geom, 3:])

    def lifted(self) -> np.ndarray:
        """(num_objects,) bool: which objects' centres are above `LIFT_THRESHOLD`."""
        return self.object_positions()[:, 2] > LIFT_THRESHOLD

    # ------------------------------------------------------------ episodes
    def _set_objects(self, specs: list[ObjectSpec]) -> None:
        model = self._model
        for spec, geoms, body in zip(specs, self._object_geoms, self._object_bodies):
            extent = _geom_extent(spec.shape, spec.size)
            for shape, geom in geoms.items():
                active = shape == spec.shape
                model.geom_contype[geom] = int(active)
                model.geom_conaffinity[geom] = int(active)
                model.geom_group[geom] = 0 if active else HIDDEN_GROUP
                if active:
                    model.geom_size[geom] = spec.size
                    model.geom_rgba[geom] = spec.rgba
                    model.geom_rbound[geom] = extent["rbound"]
                    model.geom_aabb[geom] = (0.0, 0.0, 0.0, *extent["aabb"])
            # The body-level collision filter (the union of its geoms' at compile time).
            model.body_contype[body] = 1
            model.body_conaffinity[body] = 1
            mass = OBJECT_DENSITY * extent["volume"]
            model.body_mass[body] = mass
            model.body_inertia[body] = mass * extent["inertia"]
            model.body_ipos[body] = 0.0
            model.body_iquat[body] = (1.0, 0.0, 0.0, 0.0)
        self.objects = list(specs)

    def _place_objects(self, rng: np.random.Generator) -> None:
        """Drops the objects at random poses inside the bin, their footprints apart.

        Objects are placed one after another (a position and a yaw per try, the
        footprint an oriented rectangle: a capsule is long and thin, so six of
        the largest still fit where bounding circles would not); after
        `_PLACE_TRIES` failed tries for one object, all are placed again.
        """
        extents = [_geom_extent(spec.shape, spec.size) for spec in self.objects]
        for _ in range(_PLACE_RESTARTS):
            placed: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
            for extent in extents:
                for _ in range(_PLACE_TRIES):
                    yaw = float(rng.uniform(-np.pi, np.pi))
                    rotation = _rotation_2d(yaw)
                    reach = np.abs(rotation) @ extent["footprint"]  # the footprint's AABB
                    centre = rng.uniform(-1.0, 1.0, size=2) * (BIN_HALF - reach - 0.003)
                    candidate = (centre, rotation, extent["footprint"])
                    if not any(_footprints_overlap(candidate, other) for other in placed):
                        placed.append(candidate)
                        break
                else:
                    break  # this object found no room: start again
            if len(placed) == len(extents):
                break
        else:
            raise RuntimeError(
                f"GraspEnv: could not place {self.num_objects} objects of set "
                f"{self.object_set!r} apart in the bin after {_PLACE_RESTARTS} attempts."
            )
        qpos = self._data.qpos
        for i, (extent, (centre, rotation, _)) in enumerate(zip(extents, placed)):
            address = self._object_qpos[i]
            yaw = float(np.arctan2(rotation[1, 0], rotation[0, 0]))
            qpos[address : address + 3] = (centre[0], centre[1], extent["rest_z"] + 0.001)
            qpos[address + 3 : address + 7] = _yaw_quat(yaw)

    def _set_palm(self, target: np.ndarray) -> None:
        self._data.ctrl[self._palm_ctrl] = target

    def _finger_contact(self) -> bool:
        """True when a finger touches an object (after `mj_forward`)."""
        data = self._data
        objects = set(self._active_geoms())
        for contact in data.contact[: data.ncon]:
            pair = {int(contact.geom1), int(contact.geom2)}
            if pair & self._finger_geoms and pair & objects:
                return True
        return False

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """A new bin: fresh objects (shapes, sizes, colours, poses) and gripper start pose."""
        super().reset(seed=seed)
        del options
        rng = self.np_random
        model, data = self._model, self._data
        object_set = OBJECT_SETS[self.object_set]
        specs = [object_set.sample(rng) for _ in range(self.num_objects)]
        mujoco.mj_resetData(model, data)
        self._set_objects(specs)
        mujoco.mj_setConst(model, data)
        self._place_objects(rng)

        # The gripper starts open over the bin, its fingers clear of the objects.
        palm_z = float(np.clip(self.start_height + FINGER_BOTTOM, PALM_Z_MIN, PALM_Z_MAX))
        for _ in range(100):
            xy = rng.uniform(-0.1, 0.1, size=2)
            yaw = float(rng.uniform(-np.pi / 2, np.pi / 2))
            data.qpos[self._palm_qpos] = (xy[0], xy[1], palm_z, yaw)
            data.qpos[self._finger_qpos] = FINGER_OPEN
            mujoco.mj_forward(model, data)
            if not self._finger_contact():
                break
        self._target = data.qpos[self._palm_qpos].copy()
        self._set_palm(self._target)
        data.ctrl[self._finger_ctrl] = FINGER_OPEN
        mujoco.mj_step(model, data, nstep=SETTLE_SUBSTEPS)
        self._closed = False
        self._steps = 0
        self._done = False
        return self._observation(), {"object_set": self.object_set}

    def _move(self, target: np.ndarray, substeps: int, moving_fraction: float) -> None:
        start = self._target
        moving = max(1, round(substeps * moving_fraction))
        for i in range(moving):
            self._set_palm(start + (target - start) * (i + 1) / moving)
            mujoco.mj_step(self._model, self._data)
        self._target = target
        if substeps > moving:
            mujoco.mj_step(self._model, self._data, nstep=substeps - moving)

    def _close(self) -> None:
        self._closed = True
        self._data.ctrl[self._finger_ctrl] = 0.0
        mujoco.mj_step(self._model, self._data, nstep=CLOSE_SUBSTEPS)

    def step(self, action: Any) -> tuple[dict[str, np.ndarray], float, bool, bool, dict[str, Any]]:
        """Moves the palm, maybe closes, and at the end closes, lifts and scores."""
        if self._done:
            raise RuntimeError("GraspEnv.step: the episode is over; call reset() first.")
        action = np.asarray(action, dtype=np.float64)
        if action.shape != (len(ACTION_LAYOUT),):
            raise ValueError(
                f"GraspEnv.step: expected an action of shape ({len(ACTION_LAYOUT)},) laid out as "
                f"{ACTION_LAYOUT}, got shape {action.shape}."
            )
        if not np.all(np.isfinite(action)):
            raise ValueError(f"GraspEnv.step: the action has non-finite entries: {action}.")
        action = np.clip(action, -1.0, 1.0)
        delta = action[:4] * (XY_STEP, XY_STEP, Z_STEP, YAW_STEP)
        target = self._target + delta
        target[:2] = np.clip(target[:2], -PALM_XY_LIMIT, PALM_XY_LIMIT)
        target[2] = np.clip(target[2], PALM_Z_MIN, PALM_Z_MAX)
        target[3] = np.clip(target[3], -np.pi, np.pi)
        self._move(target, MOVE_SUBSTEPS, 0.7)
        if action[4] > 0 and not self._closed:
            self._close()
        self._steps += 1
        info: dict[str, Any] = {"object_set": self.object_set}
        self._check_stable(info)
        reward = 0.0
        terminate = bool(action[5] > 0)
        done = terminate or self._steps >= self.max_steps
        if done:
            if not self._closed and (terminate or self.grasp_at_time_limit):
                self._close()
            if not terminate and self._closed:
                # The step limit grasped: this step did what the same action with
                # terminate > 0 does. Replay records say so (QT-Opt's transitions).
                info["time_limit_grasp"] = True
            lift = self._target.copy()
            lift[2] = min(lift[2] + LIFT_HEIGHT, PALM_Z_MAX)
            self._move(lift, LIFT_SUBSTEPS, 0.75)
            self._check_stable(info)
            success = bool(np.any(self.lifted())) and not info.get("physics_unstable", False)
            reward = float(success)
            info["grasp_success"] = success
            self._done = True
        return self._observation(), reward, done, False, info

    def _check_stable(self, info: dict[str, Any]) -> None:
        """Marks `info` when MuJoCo met a diverging acceleration since the reset (it then
        resets the state by itself, so the episode's outcome means nothing)."""
        warning = self._data.warning[mujoco.mjtWarning.mjWARN_BADQACC]
        if warning.number > 0:
            if not info.get("physics_unstable", False):
                logger.warning(
                    "GraspEnv: the simulation diverged at step %d (MuJoCo BADQACC); "
                    "the episode scores 0.",
                    self._steps,
                )
            info["physics_unstable"] = True

    # ----------------------------------------------------------- rendering
    def render_image(self, hide_objects: Sequence[int] = ()) -> np.ndarray:
        """The over-the-shoulder camera image, ``(S, S, 3)`` uint8 (a new array).

        Args:
          hide_objects: indices of objects to leave out of this image (e.g. all
            but the lifted one, for Grasp2Vec's picture of the grasped object);
            the simulation is not touched.
        """
        geoms = self._active_geoms()
        hidden = [geoms[i] for i in hide_objects]
        self._model.geom_group[hidden] = HIDDEN_GROUP
        try:
            self._renderer.update_scene(
                self._data, camera=self._camera, scene_option=self._scene_option
            )
        finally:
            self._model.geom_group[hidden] = 0
        return self._renderer.render().copy()

    def _observation(self) -> dict[str, np.ndarray]:
        height = float(np.clip(self.gripper_pose()[2], 0.0, 1.0))
        return {
            "image": self.render_image(),
            "gripper_closed": np.array([float(self._closed)], dtype=np.float32),
            "height_to_bottom": np.array([height], dtype=np.float32),
        }

    def render(self) -> np.ndarray | None:
        if self.render_mode == "rgb_array":
            return self.render_image()
        return None

    def close(self) -> None:
        renderer = getattr(self, "_renderer", None)
        if renderer is not None:
            renderer.close()
            self._renderer = None
