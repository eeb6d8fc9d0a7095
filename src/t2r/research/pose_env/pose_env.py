"""The duck pose task (Tensor2Robot's ``research/pose_env/pose_env.py``) on MuJoCo.

A camera sees a small duck on a table; the agent answers with the duck's
(x, y) position on the table top. Each episode is one step:

* observation: ``(render_size, render_size, 3)`` uint8 image (64x64 by default);
* action: ``(2,)`` float, the predicted (x, y) (`action_space` is [-1, 1]^2,
  which holds every target, hidden drift included);
* reward: ``-||action - target_pose||_2``; the episode terminates after the step.

Tasks and episodes (as in Tensor2Robot, where a task fixes the camera):

* `reset_task()` draws a new task: camera pitch ``-30 + U(-10, 10)`` degrees,
  camera yaw ``U(-180, 180)`` degrees (the full circle), looking at the table
  centre from distance 3; with ``hidden_drift=True`` a hidden offset
  ``U(-0.3, 0.3)`` in x and y that is added to the target but not rendered (a
  meta-learning task: the drift must be inferred from rewards). It also draws
  a new object pose.
* `reset()` draws a new object pose in the current task: x ``U(-0.7, 0.7)``,
  y ``U(-0.4, 0.4)``, heading ``U(-180, 180)`` degrees; camera and drift stay.
  ``reset(seed=s)`` reseeds and draws a new task first, so the same seed gives
  the same task and the same sequence of episodes; so does
  ``reset(options={"reset_task": True})`` without reseeding. (T2R's records
  were written this way: a fixed camera, a new pose per episode.)
* ``info`` (from `reset` and `step`) holds ``target_pose`` (2,) = object (x, y)
  + drift, ``hidden_drift`` (2,) (zeros without drift), ``object_pose`` (3,) =
  (x, y, heading in radians) and ``camera`` (2,) = (yaw, pitch) in degrees.

The scene (see `t2r.research.pose_env.scene`) has an orientation cue: a red
band along the table's +x edge and a blue band along its +y edge. Without it,
a table that looks the same after a half turn plus a uniformly random yaw
would make (x, y) and (-x, -y) indistinguishable in the image, and the task
unsolvable from pixels.

Rendering is headless. Unless ``MUJOCO_GL`` is set, importing this module
picks EGL, else OSMesa, by the libraries it can load (`select_gl_backend`;
best before anything imports mujoco, though a mujoco imported earlier without
a display is switched over too). The renderer is built once per env; a new task or
pose only changes the camera and the duck's mocap pose, so nothing is
recompiled. Shadows, reflections and specular highlights are off, which keeps
software (llvmpipe) rendering at thousands of frames per second.
"""

from __future__ import annotations

import ctypes
import importlib
import logging
import os
import sys
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

__all__ = [
    "PoseEnvRandomPolicy",
    "PoseToyEnv",
    "RenderBackendError",
    "select_gl_backend",
]

_BACKEND_LIBRARIES = (
    ("egl", ("libEGL.so.1", "libEGL.so")),
    ("osmesa", ("libOSMesa.so.8", "libOSMesa.so.6", "libOSMesa.so")),
)


def _loadable(names: tuple[str, ...]) -> bool:
    for name in names:
        try:
            ctypes.CDLL(name)
        except OSError:
            continue
        return True
    return False


def _headless_backend() -> str | None:
    """'egl' if libEGL loads, else 'osmesa' if libOSMesa does (following PYOPENGL_PLATFORM)."""
    platform = os.environ.get("PYOPENGL_PLATFORM", "").lower()
    for backend, libraries in _BACKEND_LIBRARIES:
        if platform and platform != backend:
            continue
        if _loadable(libraries):
            return backend
    return None


def _switch_loaded_mujoco(backend: str) -> bool:
    """Points an already imported mujoco (which chose GLFW) at a headless GL context."""
    if "OpenGL" in sys.modules and os.environ.get("PYOPENGL_PLATFORM", "").lower() != backend:
        return False  # PyOpenGL is bound to another platform; too late to switch
    try:
        context_cls = importlib.import_module(f"mujoco.{backend}").GLContext
    except (ImportError, AttributeError, OSError):
        return False
    switched = False
    # Newer mujoco keeps the class in rendering.classic.gl_context, older ones in
    # gl_context; the Renderer reads the module attribute when it is built.
    for name in ("mujoco.rendering.classic.gl_context", "mujoco.gl_context"):
        module = sys.modules.get(name)
        if module is not None and hasattr(module, "GLContext"):
            setattr(module, "GLContext", context_cls)  # noqa: B010
            switched = True
    if switched:
        setattr(sys.modules["mujoco"], "GLContext", context_cls)  # noqa: B010
        os.environ["MUJOCO_GL"] = backend
    return switched


def select_gl_backend() -> str | None:
    """Sets up headless rendering unless the user chose a backend with ``MUJOCO_GL``.

    On Linux, picks 'egl' when libEGL loads, else 'osmesa' when libOSMesa
    loads (``PYOPENGL_PLATFORM``, if set, is followed) and sets ``MUJOCO_GL``.
    If mujoco was imported before ``MUJOCO_GL`` was set (it then chose GLFW)
    and there is no display, its GL context class is switched to the headless
    one. Returns the backend in effect (None: none found, a display is there,
    or another system, where MuJoCo's default is used).
    """
    chosen = os.environ.get("MUJOCO_GL")
    if chosen:
        return chosen
    if not sys.platform.startswith("linux"):
        return None
    backend = _headless_backend()
    if backend is None:
        return None
    if "mujoco" not in sys.modules:
        os.environ["MUJOCO_GL"] = backend
        return backend
    if os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"):
        return None  # GLFW, mujoco's choice, can open a window here
    if _switch_loaded_mujoco(backend):
        return backend
    logger.warning(
        "mujoco was imported before MUJOCO_GL was set and its GL backend cannot be switched "
        "now; set MUJOCO_GL=%s before importing mujoco.",
        backend,
    )
    return None


_SELECTED_BACKEND = select_gl_backend()

import gymnasium as gym  # noqa: E402 - MUJOCO_GL must be set before mujoco loads
import mujoco  # noqa: E402
from gymnasium import spaces  # noqa: E402

from t2r.research.pose_env.scene import build_scene_xml  # noqa: E402


class RenderBackendError(RuntimeError):
    """No OpenGL context for offscreen rendering could be created."""


def _backend_help(error: BaseException, env_name: str = "PoseToyEnv") -> str:
    return (
        f"{env_name} could not create an offscreen OpenGL context "
        f"(MUJOCO_GL={os.environ.get('MUJOCO_GL')!r}): {type(error).__name__}: {error}. "
        "It renders headless with EGL or OSMesa. Install one of them (Debian/Ubuntu: "
        "'apt-get install libegl1' for EGL, 'apt-get install libosmesa6' for OSMesa) and set "
        "MUJOCO_GL=egl or MUJOCO_GL=osmesa before mujoco is imported (with a display, "
        "MUJOCO_GL=glfw works too)."
    )


def offscreen_renderer(
    model: mujoco.MjModel, size: int, env_name: str = "PoseToyEnv"
) -> mujoco.Renderer:
    """A square offscreen `mujoco.Renderer` with shadows, reflections and skybox off;
    a missing GL backend raises `RenderBackendError` naming `env_name` and the fix."""
    try:
        renderer = mujoco.Renderer(model, size, size)
    except Exception as error:  # the GL backends raise a variety of types
        raise RenderBackendError(_backend_help(error, env_name)) from error
    flags = renderer.scene.flags
    flags[mujoco.mjtRndFlag.mjRND_SHADOW] = False
    flags[mujoco.mjtRndFlag.mjRND_REFLECTION] = False
    flags[mujoco.mjtRndFlag.mjRND_SKYBOX] = False
    return renderer


def _as_range(value: tuple[float, float], what: str) -> tuple[float, float]:
    low, high = (float(v) for v in value)
    if high < low:
        raise ValueError(f"PoseToyEnv: {what} must be (low, high) with low <= high, got {value}.")
    return low, high


class PoseToyEnv(gym.Env):
    """Predict the duck's (x, y) on the table from one image (see the module docstring).

    Args:
      hidden_drift: add a per-task hidden offset U(-drift_range, drift_range)
        in x and y to the target (not visible in the image).
      render_size: side of the square observation, pixels.
      seed: seeds the env's generator (same seed -> same tasks, images and
        targets); None draws fresh entropy. ``reset(seed=...)`` reseeds too.
      render_mode: None or 'rgb_array' (`render()` returns the observation).
      camera_distance: camera distance to the table centre.
      pitch_range: camera pitch range in degrees (negative looks down).
      yaw_range: camera yaw range in degrees (MuJoCo azimuth).
      x_range, y_range: object position ranges on the table top.
      drift_range: half-width of the hidden drift's uniform range.
      fovy: the camera's vertical field of view in degrees (chosen so that
        every object position is in view from every camera).
      orientation_cue: draw the red/blue edge bands (leave on; off makes the
        task ambiguous, for tests).
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 10}

    def __init__(
        self,
        hidden_drift: bool = False,
        render_size: int = 64,
        seed: int | None = None,
        render_mode: str | None = None,
        camera_distance: float = 3.0,
        pitch_range: tuple[float, float] = (-40.0, -20.0),
        yaw_range: tuple[float, float] = (-180.0, 180.0),
        x_range: tuple[float, float] = (-0.7, 0.7),
        y_range: tuple[float, float] = (-0.4, 0.4),
        drift_range: float = 0.3,
        fovy: float = 35.0,
        orientation_cue: bool = True,
    ) -> None:
        super().__init__()
        if render_mode not in (None, "rgb_array"):
            raise ValueError(
                f"PoseToyEnv: render_mode must be None or 'rgb_array', got {render_mode!r}."
            )
        if render_size < 1:
            raise ValueError(f"PoseToyEnv: render_size must be positive, got {render_size}.")
        self.render_mode = render_mode
        self.hidden_drift = bool(hidden_drift)
        self.render_size = int(render_size)
        self.camera_distance = float(camera_distance)
        self.pitch_range = _as_range(pitch_range, "pitch_range")
        self.yaw_range = _as_range(yaw_range, "yaw_range")
        self.x_range = _as_range(x_range, "x_range")
        self.y_range = _as_range(y_range, "y_range")
        self.drift_range = float(drift_range)
        self.fovy = float(fovy)
        self.observation_space = spaces.Box(
            0, 255, (self.render_size, self.render_size, 3), np.uint8, seed=seed
        )
        self.action_space = spaces.Box(-1.0, 1.0, (2,), np.float32, seed=seed)

        self._model = mujoco.MjModel.from_xml_string(
            build_scene_xml(self.render_size, self.fovy, orientation_cue=orientation_cue)
        )
        self._data = mujoco.MjData(self._model)
        duck = mujoco.mj_name2id(self._model, mujoco.mjtObj.mjOBJ_BODY, "duck")
        self._duck_mocap = int(self._model.body_mocapid[duck])
        self._renderer = offscreen_renderer(self._model, self.render_size)
        self._camera = mujoco.MjvCamera()
        self._camera.type = mujoco.mjtCamera.mjCAMERA_FREE
        self._camera.lookat[:] = 0.0
        self._camera.distance = self.camera_distance

        self._yaw = 0.0
        self._pitch = -30.0
        self._drift = np.zeros(2)
        self._object_pose = np.zeros(3)
        self._observation: np.ndarray | None = None
        if seed is not None:
            super().reset(seed=seed)
        self.reset_task()

    # ------------------------------------------------------------------ tasks
    def reset_task(self) -> None:
        """Draws a new task (camera yaw and pitch, hidden drift) and a new object pose."""
        rng = self.np_random
        pitch = rng.uniform(*self.pitch_range)
        yaw = rng.uniform(*self.yaw_range)
        # Always drawn, so that a seed gives the same cameras and poses with and
        # without drift; zeroed when the drift is off.
        drift = rng.uniform(-self.drift_range, self.drift_range, size=2)
        self.set_camera(yaw, pitch)
        self._drift = drift if self.hidden_drift else np.zeros(2)
        self.set_new_pose()

    def set_new_pose(self) -> None:
        """Draws a new object position and heading in the current task."""
        rng = self.np_random
        x = rng.uniform(*self.x_range)
        y = rng.uniform(*self.y_range)
        heading = rng.uniform(-np.pi, np.pi)
        self.set_object_pose(x, y, heading)

    def set_camera(self, yaw: float, pitch: float) -> None:
        """Points the camera at the table centre: yaw (azimuth) and pitch in degrees."""
        self._yaw, self._pitch = float(yaw), float(pitch)
        self._camera.azimuth = self._yaw
        self._camera.elevation = self._pitch
        self._observation = None

    def set_object_pose(self, x: float, y: float, heading: float = 0.0) -> None:
        """Puts the duck at (x, y) on the table top, facing `heading` radians from +x."""
        self._object_pose = np.array([x, y, heading], dtype=np.float64)
        self._data.mocap_pos[self._duck_mocap] = (x, y, 0.0)
        self._data.mocap_quat[self._duck_mocap] = (
            np.cos(heading / 2),
            0.0,
            0.0,
            np.sin(heading / 2),
        )
        mujoco.mj_kinematics(self._model, self._data)
        self._observation = None

    @property
    def target_pose(self) -> np.ndarray:
        """(2,) float32: the object's (x, y) plus the hidden drift."""
        return (self._object_pose[:2] + self._drift).astype(np.float32)

    @property
    def hidden_drift_xy(self) -> np.ndarray:
        """(2,) float32: this task's hidden drift (zeros when off)."""
        return self._drift.astype(np.float32)

    def _info(self) -> dict[str, Any]:
        return {
            "target_pose": self.target_pose,
            "hidden_drift": self.hidden_drift_xy,
            "object_pose": self._object_pose.astype(np.float32),
            "camera": np.array([self._yaw, self._pitch], dtype=np.float32),
        }

    # -------------------------------------------------------------- gym API
    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """A new object pose (and a new task after reseeding or with ``reset_task``)."""
        super().reset(seed=seed)
        if seed is not None or (options or {}).get("reset_task", False):
            self.reset_task()
        self.set_new_pose()
        return self.get_observation(), self._info()

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """Scores a predicted (x, y): reward ``-||action - target_pose||``; always terminates."""
        pose = np.asarray(action, dtype=np.float64)
        if pose.shape != (2,):
            raise ValueError(
                f"PoseToyEnv.step: expected an action of shape (2,) (the predicted x, y), "
                f"got shape {pose.shape}."
            )
        reward = -float(np.linalg.norm(pose - (self._object_pose[:2] + self._drift)))
        return self.get_observation(), reward, True, False, self._info()

    def get_observation(self) -> np.ndarray:
        """The current image, (render_size, render_size, 3) uint8.

        Rendered once per camera and pose; every call returns a new array (as
        Gymnasium requires), so callers may keep or modify it.
        """
        if self._observation is None:
            self._renderer.update_scene(self._data, camera=self._camera)
            self._observation = self._renderer.render()
        return self._observation.copy()

    def render(self) -> np.ndarray | None:
        if self.render_mode == "rgb_array":
            return self.get_observation()
        return None

    def close(self) -> None:
        renderer = getattr(self, "_renderer", None)
        if renderer is not None:
            renderer.close()
            self._renderer = None

    # ------------------------------------------------------------ geometry
    def world_to_pixel(self, points: Any) -> np.ndarray:
        """Projects world points into the current image.

        Args:
          points: (..., 2) table-top (x, y) (z = 0) or (..., 3) (x, y, z).

        Returns:
          (..., 2) float (column, row) pixel coordinates, (0, 0) being the
          top-left corner of the top-left pixel (pixel centres at +0.5).
        """
        points = np.asarray(points, dtype=np.float64)
        if points.shape[-1] == 2:
            points = np.concatenate([points, np.zeros((*points.shape[:-1], 1))], axis=-1)
        azimuth, elevation = np.deg2rad(self._yaw), np.deg2rad(self._pitch)
        forward = np.array(
            [
                np.cos(elevation) * np.cos(azimuth),
                np.cos(elevation) * np.sin(azimuth),
                np.sin(elevation),
            ]
        )
        up = np.array(
            [
                -np.sin(elevation) * np.cos(azimuth),
                -np.sin(elevation) * np.sin(azimuth),
                np.cos(elevation),
            ]
        )
        right = np.cross(forward, up)
        eye = np.asarray(self._camera.lookat) - self.camera_distance * forward
        offset = points - eye
        depth = offset @ forward
        focal = (self.render_size / 2) / np.tan(np.deg2rad(self.fovy) / 2)
        column = self.render_size / 2 + focal * (offset @ right) / depth
        row = self.render_size / 2 - focal * (offset @ up) / depth
        return np.stack([column, row], axis=-1)


class PoseEnvRandomPolicy:
    """Uniformly random (x, y) actions, for collecting data (T2R's PoseEnvRandomPolicy).

    Actions are U(low, high) per coordinate; the default [-1, 1]^2 (as in
    T2R) covers the table top and every target, drift included, and scores a
    mean error of about 0.86 on `PoseToyEnv`. Has the Policy interface the
    collect loops use (`select_action`, `sample_action`, `reset`, `restore`,
    `global_step`, ...), without a model.

    Args:
      low, high: the action range (scalars or (action_size,) arrays).
      action_size: the action's length.
      seed: seeds the generator; None draws fresh entropy.
    """

    def __init__(
        self,
        low: Any = -1.0,
        high: Any = 1.0,
        action_size: int = 2,
        seed: int | None = None,
    ) -> None:
        self.low = np.broadcast_to(np.asarray(low, dtype=np.float64), (action_size,))
        self.high = np.broadcast_to(np.asarray(high, dtype=np.float64), (action_size,))
        if np.any(self.high < self.low):
            raise ValueError(f"PoseEnvRandomPolicy: high {high} is below low {low}.")
        self.action_size = action_size
        self._rng = np.random.default_rng(seed)

    def select_action(
        self, state: Any, context: Any = None, timestep: int | None = None
    ) -> np.ndarray:
        """A random action, (action_size,) float32; the inputs are ignored."""
        del state, context, timestep
        return self._rng.uniform(self.low, self.high).astype(np.float32)

    def SelectAction(
        self, state: Any, context: Any = None, timestep: int | None = None
    ) -> np.ndarray:
        """Tensor2Robot's name for `select_action`."""
        return self.select_action(state, context, timestep)

    def sample_action(self, obs: Any, explore_prob: float) -> tuple[np.ndarray, None]:
        """``(action, debug)`` for T2R's ``run_env``; `explore_prob` is ignored."""
        del explore_prob
        return self.select_action(obs), None

    def reset(self) -> None:
        """Starts an episode (nothing to reset)."""

    def restore(self) -> bool:
        """There is no model to load: always ready."""
        return True

    def init_randomly(self) -> None:
        """There are no weights to initialize."""

    @property
    def global_step(self) -> int:
        return 0

    @property
    def model_path(self) -> str | None:
        return None
