"""Environments built from a robomimic dataset's ``env_args``.

A robomimic HDF5 file records how its demonstrations were collected in
``data.attrs["env_args"]`` (JSON): ``env_name``, ``type`` (1: robosuite,
2: Gym, 3: iGibson MoMaRT) and ``env_kwargs``. `make_env_from_env_args` builds
the environment from it with robomimic's ``EnvBase`` surface, so rollouts
(`t2r.robomimic.rollouts`) see the observations the dataset holds:

* ``reset() -> obs``, ``step(action) -> (obs, reward, done, info)``,
  ``get_observation()``, ``is_success() -> {"task": bool, ...}``,
  ``render(height, width, camera_name) -> (H, W, 3) uint8``,
  ``get_state() -> {"states", "model", ...}`` and ``reset_to(state)``,
  ``serialize()`` (the ``env_args`` to rebuild it).

Observations are dicts of numpy arrays keyed like robomimic's: robosuite's
``robot0_*`` keys, ``object`` (robosuite's ``object-state``) and
``<camera>_image`` (uint8 HWC, upright: MuJoCo's bottom-up rows are flipped) when
image observations are on; Gymnasium's observation is ``{"flat": obs}``.

robosuite is optional (the ``robomimic`` extra); it is imported when a type-1
environment is first made, with its console chatter (missing private macro
file, optional robot packages, controller parts a robot lacks) below ERROR
dropped. Rendering is headless: unless ``MUJOCO_GL`` is set, EGL (else OSMesa)
is chosen before MuJoCo loads.
"""

from __future__ import annotations

import copy
import enum
import json
import logging
from collections.abc import Mapping
from types import ModuleType
from typing import Any, Protocol

import numpy as np

logger = logging.getLogger(__name__)

__all__ = [
    "EnvArgsError",
    "EnvType",
    "GymEnv",
    "RobomimicEnv",
    "RobosuiteEnv",
    "import_robosuite",
    "make_env_from_env_args",
    "parse_env_args",
]


ExceptionTypes = tuple[type[BaseException], ...]
"""Exception classes (spelled here: inside the env classes ``type`` is a property)."""


class EnvType(enum.IntEnum):
    """robomimic's ``EnvType`` values, as recorded in ``env_args["type"]``."""

    ROBOSUITE = 1
    GYM = 2
    IG_MOMART = 3


class EnvArgsError(ValueError):
    """``env_args`` that do not describe an environment this module can build."""


class RobomimicEnv(Protocol):
    """robomimic's ``EnvBase`` surface, as rollouts and the demonstrator use it."""

    @property
    def name(self) -> str: ...

    @property
    def type(self) -> int: ...

    @property
    def action_dimension(self) -> int: ...

    @property
    def rollout_exceptions(self) -> ExceptionTypes: ...

    def reset(self) -> dict[str, np.ndarray]: ...

    def reset_to(self, state: Mapping[str, Any]) -> dict[str, np.ndarray] | None: ...

    def step(
        self, action: np.ndarray
    ) -> tuple[dict[str, np.ndarray], float, bool, dict[str, Any]]: ...

    def get_observation(self) -> dict[str, np.ndarray]: ...

    def get_state(self) -> dict[str, Any]: ...

    def get_reward(self) -> float: ...

    def is_success(self) -> dict[str, bool]: ...

    def is_done(self) -> bool: ...

    def render(
        self, height: int = 84, width: int = 84, camera_name: str | None = None
    ) -> np.ndarray: ...

    def serialize(self) -> dict[str, Any]: ...

    def close(self) -> None: ...


# ---------------------------------------------------------------------------
# robosuite


class _BelowError(logging.Filter):
    """Drops robosuite's INFO and WARNING records (set-up chatter, not problems)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.ERROR


_ROBOSUITE_LOGGER = "robosuite_logs"
_quiet_filter = _BelowError()


def import_robosuite() -> ModuleType:
    """``import robosuite`` with its console logger quieted (ERROR and above pass)
    and headless rendering chosen first. Raises ImportError naming the extra."""
    robosuite_logger = logging.getLogger(_ROBOSUITE_LOGGER)
    if _quiet_filter not in robosuite_logger.filters:
        robosuite_logger.addFilter(_quiet_filter)
    # MUJOCO_GL must be decided before mujoco loads; pose_env's chooser does that.
    from t2r.research.pose_env.pose_env import select_gl_backend

    select_gl_backend()
    try:
        import robosuite
    except ImportError as error:
        raise ImportError(
            f"robosuite environments (env_args type 1) need robosuite: install t2r's "
            f"'robomimic' extra (pip install 't2r[robomimic]'); importing it failed: {error}"
        ) from error
    return robosuite


def _mujoco_exceptions() -> ExceptionTypes:
    import mujoco

    return tuple(e for e in (getattr(mujoco, "FatalError", None),) if isinstance(e, type))


class RobosuiteEnv:
    """A robosuite environment with robomimic's ``EnvRobosuite`` behaviour.

    `env_kwargs` go to ``robosuite.make`` after robomimic's overrides:
    ``has_renderer=False``, ``has_offscreen_renderer=render_offscreen or use_image_obs``,
    ``ignore_done=True`` (episodes run to the rollout's horizon), ``use_object_obs=True``,
    ``use_camera_obs=use_image_obs``, ``camera_depths=use_depth_obs``. A controller config
    in robosuite <= 1.4's single-part form (``{"type": "OSC_POSE", ...}``, as older
    robomimic datasets record it) is converted to 1.5's composite form.
    """

    def __init__(
        self,
        env_name: str,
        render_offscreen: bool = False,
        use_image_obs: bool = False,
        use_depth_obs: bool = False,
        **env_kwargs: Any,
    ) -> None:
        robosuite = import_robosuite()
        kwargs = copy.deepcopy(env_kwargs)
        kwargs.update(
            has_renderer=False,
            has_offscreen_renderer=bool(render_offscreen or use_image_obs),
            ignore_done=True,
            use_object_obs=True,
            use_camera_obs=bool(use_image_obs),
            camera_depths=bool(use_depth_obs),
        )
        # The recording machine's GPU index means nothing here; robosuite picks one.
        kwargs.pop("render_gpu_device_id", None)
        self._init_kwargs = copy.deepcopy(kwargs)
        controller = kwargs.get("controller_configs")
        if isinstance(controller, Mapping):
            kwargs["controller_configs"] = self._composite_controller(robosuite, kwargs, controller)
        self._env_name = env_name
        self._use_depth_obs = bool(use_depth_obs)
        self._camera_names = _as_list(kwargs.get("camera_names", ["agentview"]))
        try:
            self.env = robosuite.make(env_name, **kwargs)
        except Exception as error:
            raise EnvArgsError(
                f"robosuite.make({env_name!r}) failed with env_kwargs "
                f"{sorted(kwargs)}: {type(error).__name__}: {error}"
            ) from error
        # robomimic turns these on: joint positions and end-effector velocities.
        for name in self.env.observation_names:
            if "joint_pos" in name or "eef_vel" in name:
                self.env.modify_observable(observable_name=name, attribute="active", modifier=True)
        self._version = str(robosuite.__version__)

    @staticmethod
    def _composite_controller(
        robosuite: ModuleType, kwargs: Mapping[str, Any], controller: Mapping[str, Any]
    ) -> dict[str, Any]:
        from robosuite.controllers.composite.composite_controller_factory import (
            refactor_composite_controller_config,
        )

        robots = _as_list(kwargs.get("robots", ["Panda"]))
        arms = ["right", "left"] if "Bimanual" in str(kwargs.get("env_configuration", "")) else None
        return dict(
            refactor_composite_controller_config(
                dict(controller), str(robots[0]), arms or ["right"]
            )
        )

    # -- robomimic's EnvBase surface --------------------------------------------------------------

    @property
    def name(self) -> str:
        return self._env_name

    @property
    def type(self) -> int:
        return int(EnvType.ROBOSUITE)

    @property
    def version(self) -> str:
        return self._version

    @property
    def action_dimension(self) -> int:
        return int(self.env.action_spec[0].shape[0])

    @property
    def rollout_exceptions(self) -> ExceptionTypes:
        """Simulation errors a rollout catches (a bad policy can make the physics unstable)."""
        return _mujoco_exceptions()

    @property
    def base_env(self) -> Any:
        return self.env

    def reset(self) -> dict[str, np.ndarray]:
        unset = getattr(self.env, "unset_ep_meta", None)
        if callable(unset):
            unset()
        return self.get_observation(self.env.reset())

    def reset_to(self, state: Mapping[str, Any]) -> dict[str, np.ndarray] | None:
        """Restores ``state["model"]`` (scene XML, reloaded) and/or ``state["states"]``
        (the flattened MuJoCo state); returns the observation when states were set."""
        if "model" in state:
            ep_meta = json.loads(state["ep_meta"]) if state.get("ep_meta") else {}
            set_ep_meta = getattr(self.env, "set_ep_meta", None)
            if callable(set_ep_meta):
                set_ep_meta(ep_meta)
            self.env.reset()
            xml = self.env.edit_model_xml(_as_str(state["model"]))
            self.env.reset_from_xml_string(xml)
            self.env.sim.reset()
        if "states" in state:
            self.env.sim.set_state_from_flattened(np.asarray(state["states"]))
            self.env.sim.forward()
            return self.get_observation()
        return None

    def step(self, action: np.ndarray) -> tuple[dict[str, np.ndarray], float, bool, dict[str, Any]]:
        raw, reward, _, info = self.env.step(np.asarray(action, dtype=np.float64))
        info = dict(info)
        info["is_success"] = self.is_success()
        return self.get_observation(raw), float(reward), self.is_done(), info

    def get_observation(self, raw: Mapping[str, Any] | None = None) -> dict[str, np.ndarray]:
        """robomimic's observation dict: images upright, ``object``, the robots' keys."""
        if raw is None:
            raw = self.env._get_observations(force_update=True)
        obs: dict[str, np.ndarray] = {}
        for key, value in raw.items():
            if key.endswith("_image"):
                obs[key] = np.ascontiguousarray(np.asarray(value)[::-1])
            elif key.endswith("_depth") and self._use_depth_obs:
                depth = np.asarray(value)[::-1]
                obs[key] = self._real_depth(depth[..., None] if depth.ndim == 2 else depth)
        if "object-state" in raw:
            obs["object"] = np.array(raw["object-state"])
        for robot in self.env.robots:
            prefix = robot.robot_model.naming_prefix
            for key, value in raw.items():
                if key.startswith(prefix) and key not in obs and not key.endswith("proprio-state"):
                    obs[key] = np.array(value)
        return obs

    def _real_depth(self, depth: np.ndarray) -> np.ndarray:
        """MuJoCo's normalized depth in [0, 1] as distances (robosuite's camera_utils)."""
        model = self.env.sim.model
        extent = model.stat.extent
        far, near = model.vis.map.zfar * extent, model.vis.map.znear * extent
        return np.asarray(near / (1.0 - depth * (1.0 - near / far)), dtype=np.float32)

    def get_state(self) -> dict[str, Any]:
        state: dict[str, Any] = {
            "model": self.env.sim.model.get_xml(),
            "states": np.array(self.env.sim.get_state().flatten()),
        }
        get_ep_meta = getattr(self.env, "get_ep_meta", None)
        if callable(get_ep_meta):
            state["ep_meta"] = json.dumps(get_ep_meta(), indent=4)
        return state

    def get_sim_state(self) -> np.ndarray:
        """The flattened MuJoCo state alone (``get_state()["states"]``, without the XML)."""
        return np.array(self.env.sim.get_state().flatten())

    def get_reward(self) -> float:
        return float(self.env.reward())

    def is_success(self) -> dict[str, bool]:
        success = self.env._check_success()
        if isinstance(success, Mapping):
            if "task" not in success:
                raise EnvArgsError(
                    f"{self._env_name}._check_success() returned {sorted(success)} without 'task'."
                )
            return {str(k): bool(v) for k, v in success.items()}
        return {"task": bool(success)}

    def is_done(self) -> bool:
        return False  # robosuite episodes run to the horizon

    def render(
        self, height: int = 84, width: int = 84, camera_name: str | None = None
    ) -> np.ndarray:
        """An offscreen RGB frame, (height, width, 3) uint8, upright. The camera
        defaults to the first of the env's camera names in sorted order (robomimic's)."""
        if not self._init_kwargs.get("has_offscreen_renderer"):
            raise RuntimeError(
                f"{self._env_name} was made without an offscreen renderer; pass "
                "render_offscreen=True to make_env_from_env_args to render frames."
            )
        camera = camera_name or sorted(self._camera_names)[0]
        frame = self.env.sim.render(height=height, width=width, camera_name=camera)
        return np.ascontiguousarray(np.asarray(frame)[::-1])

    def serialize(self) -> dict[str, Any]:
        """The ``env_args`` that rebuild this environment (robomimic's env_meta)."""
        return {
            "env_name": self._env_name,
            "env_version": self._version,
            "type": int(EnvType.ROBOSUITE),
            "env_kwargs": copy.deepcopy(self._init_kwargs),
        }

    def close(self) -> None:
        self.env.close()

    def __repr__(self) -> str:
        return f"RobosuiteEnv({self._env_name}, {json.dumps(self._init_kwargs, sort_keys=True)})"


# ---------------------------------------------------------------------------
# Gymnasium


class GymEnv:
    """A Gymnasium environment with robomimic's ``EnvGym`` surface.

    Observations are ``{"flat": obs}`` (a dict observation passes through as it is);
    ``done`` is ``terminated or truncated``; success is ``info["is_success"]`` when the
    environment reports it. The state for `get_state`/`reset_to` is MuJoCo's
    ``concat(qpos, qvel)`` for Gymnasium's MuJoCo environments.
    """

    def __init__(
        self,
        env_name: str,
        render_offscreen: bool = False,
        use_image_obs: bool = False,
        use_depth_obs: bool = False,
        **env_kwargs: Any,
    ) -> None:
        import gymnasium

        self._env_name = env_name
        self._init_kwargs = copy.deepcopy(env_kwargs)
        kwargs = dict(env_kwargs)
        if render_offscreen:
            kwargs.setdefault("render_mode", "rgb_array")
        try:
            self.env = gymnasium.make(env_name, **kwargs)
        except Exception as error:
            raise EnvArgsError(
                f"gymnasium.make({env_name!r}) failed with env_kwargs {sorted(kwargs)}: "
                f"{type(error).__name__}: {error}"
            ) from error
        self._obs: Any = None
        self._reward = 0.0
        self._done = False
        self._success = False

    @property
    def name(self) -> str:
        return self._env_name

    @property
    def type(self) -> int:
        return int(EnvType.GYM)

    @property
    def action_dimension(self) -> int:
        shape = self.env.action_space.shape
        return int(shape[0]) if shape else 1

    @property
    def rollout_exceptions(self) -> ExceptionTypes:
        return ()

    def _wrap(self, obs: Any) -> dict[str, np.ndarray]:
        if isinstance(obs, Mapping):
            return {str(k): np.array(v) for k, v in obs.items()}
        return {"flat": np.array(obs)}

    def reset(self) -> dict[str, np.ndarray]:
        self._obs, _ = self.env.reset()
        self._reward, self._done, self._success = 0.0, False, False
        return self._wrap(self._obs)

    def reset_to(self, state: Mapping[str, Any]) -> dict[str, np.ndarray] | None:
        unwrapped = self.env.unwrapped
        if "states" not in state:
            return None
        if not hasattr(unwrapped, "set_state") or not hasattr(unwrapped, "model"):
            raise NotImplementedError(
                f"{self._env_name}: reset_to needs a Gymnasium MuJoCo environment (set_state)."
            )
        flat = np.asarray(state["states"], dtype=np.float64)
        nq = int(unwrapped.model.nq)
        unwrapped.set_state(flat[:nq], flat[nq:])
        self._obs = unwrapped._get_obs()  # type: ignore[attr-defined]
        return self._wrap(self._obs)

    def step(self, action: np.ndarray) -> tuple[dict[str, np.ndarray], float, bool, dict[str, Any]]:
        self._obs, reward, terminated, truncated, info = self.env.step(action)
        self._reward = float(reward)
        self._done = bool(terminated or truncated)
        self._success = bool(info.get("is_success", info.get("success", False)))
        info = dict(info)
        info["is_success"] = self.is_success()
        return self._wrap(self._obs), self._reward, self._done, info

    def get_observation(self) -> dict[str, np.ndarray]:
        if self._obs is None:
            raise RuntimeError(f"{self._env_name}: get_observation before reset().")
        return self._wrap(self._obs)

    def get_state(self) -> dict[str, Any]:
        unwrapped = self.env.unwrapped
        data = getattr(unwrapped, "data", None)
        if data is None:
            raise NotImplementedError(
                f"{self._env_name}: get_state needs a Gymnasium MuJoCo environment."
            )
        return {"states": np.concatenate([np.array(data.qpos), np.array(data.qvel)])}

    def get_reward(self) -> float:
        return self._reward

    def is_success(self) -> dict[str, bool]:
        return {"task": self._success}

    def is_done(self) -> bool:
        return self._done

    def render(
        self, height: int = 84, width: int = 84, camera_name: str | None = None
    ) -> np.ndarray:
        """The environment's ``rgb_array`` frame (its own size; Gymnasium fixes it at make)."""
        frame = self.env.render()
        if frame is None:
            raise RuntimeError(
                f"{self._env_name} was made without render_mode='rgb_array'; pass "
                "render_offscreen=True to make_env_from_env_args to render frames."
            )
        return np.asarray(frame)

    def serialize(self) -> dict[str, Any]:
        return {
            "env_name": self._env_name,
            "type": int(EnvType.GYM),
            "env_kwargs": copy.deepcopy(self._init_kwargs),
        }

    def close(self) -> None:
        self.env.close()


# ---------------------------------------------------------------------------
# From env_args


def parse_env_args(env_args: Mapping[str, Any] | str | bytes) -> dict[str, Any]:
    """``env_args`` as a dict (a JSON string or bytes is parsed), checked for
    ``env_name`` (str), ``type`` (int) and ``env_kwargs`` (dict, default empty)."""
    if isinstance(env_args, bytes):
        env_args = env_args.decode("utf-8")
    if isinstance(env_args, str):
        try:
            env_args = json.loads(env_args)
        except json.JSONDecodeError as error:
            raise EnvArgsError(f"env_args is not valid JSON: {error}") from error
    if not isinstance(env_args, Mapping):
        raise EnvArgsError(f"env_args must be a JSON object, got {type(env_args).__name__}.")
    parsed = dict(env_args)
    name = parsed.get("env_name")
    if not isinstance(name, str) or not name:
        raise EnvArgsError(f"env_args['env_name'] must be a non-empty string, got {name!r}.")
    kind = parsed.get("type")
    if isinstance(kind, bool) or not isinstance(kind, int):
        raise EnvArgsError(f"env_args['type'] must be an int (1: robosuite, 2: gym), got {kind!r}.")
    kwargs = parsed.setdefault("env_kwargs", {})
    if not isinstance(kwargs, Mapping):
        raise EnvArgsError(
            f"env_args['env_kwargs'] must be a JSON object, got {type(kwargs).__name__}."
        )
    return parsed


def make_env_from_env_args(
    env_args: Mapping[str, Any] | str | bytes,
    render_offscreen: bool = False,
    use_image_obs: bool = False,
    use_depth_obs: bool = False,
    env_name: str | None = None,
) -> RobosuiteEnv | GymEnv:
    """The environment ``env_args`` describe (robomimic's ``create_env_from_metadata``).

    `render_offscreen` lets `render` produce frames (videos); `use_image_obs` adds
    the cameras' ``<camera>_image`` observations at the sizes in ``env_kwargs``
    (``camera_names``, ``camera_heights``, ``camera_widths``). `env_name` overrides the
    recorded name.
    """
    parsed = parse_env_args(env_args)
    name = env_name or parsed["env_name"]
    kwargs = dict(parsed["env_kwargs"])
    kind = parsed["type"]
    options = dict(
        render_offscreen=render_offscreen, use_image_obs=use_image_obs, use_depth_obs=use_depth_obs
    )
    if kind == EnvType.ROBOSUITE:
        return RobosuiteEnv(name, **options, **kwargs)
    if kind == EnvType.GYM:
        return GymEnv(name, **options, **kwargs)
    known = ", ".join(f"{t.value}: {t.name.lower()}" for t in EnvType)
    raise EnvArgsError(
        f"env_args['type'] = {kind} for {name!r} is not supported here (robomimic's types: "
        f"{known}; this module builds 1 and 2)."
    )


def _as_list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list | tuple) else [value]


def _as_str(value: Any) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)
