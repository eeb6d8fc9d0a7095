"""QT-Opt's replay records: transitions (collectors write) and labelled transitions (the
Bellman updater writes), as specs, serialized by t2r's spec-driven codec.

One tf.train.Example per transition ``(s, a, r, s', done)`` of a grasp episode:

===============================  ==========  ==============================================
key                              shape       value
===============================  ==========  ==============================================
``state/image``                  (S, S, 3)   the camera image, uint8, JPEG-encoded
``state/gripper_closed``         (1,)        the observation's gripper status
``state/height_to_bottom``       (1,)        the observation's height above the bin
``action/world_vector`` ...      see below   the critic's action features
                                             (`t2r.research.qtopt.actions`)
``action/env_action``            (6,)        the env's action as taken (for re-mapping)
``reward``                       (1,)        the env's reward for the step
``done``                         (1,)        1.0 on the episode's last step, else 0.0
``next_state/...``               as state/   the observation after the step
``target_q``                     (1,)        labelled records only: the Bellman target
===============================  ==========  ==============================================

The action features are ``world_vector`` (3,), ``vertical_rotation`` (2,),
``close_gripper``, ``open_gripper``, ``terminate_episode`` (1,) each; the
gripper status and height that the critic also reads as action features are
the ``state/`` keys above (its specs name them so). `Grasping44CriticModel`
parses labelled records with its own specs; `BellmanLabeller` reads the
``next_state/``, ``reward`` and ``done`` keys of transition batches.

``done`` is 1.0 on the last step whether the episode ended by ``terminate``
or by the step limit: the env closes the gripper and lifts on both, so the
episode's outcome is decided there (QT-Opt's fixed-horizon episodes).

A last step at the step limit that grasped (the env's ``time_limit_grasp``)
is recorded with its terminate component set: the env did exactly what that
action does. Recorded as the plain move it was commanded as, it would teach
the critic, which cannot see the step count, that moving on is sometimes
paid the grasp's reward; CEM's max then prefers moving on, and the greedy
policy runs out of steps (docs/qtopt.md).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from t2r import specs
from t2r.data import create_parse_tf_example_fn, create_serialize_tf_example_fn
from t2r.research.qtopt.actions import (
    ACTION_FEATURE_SIZES,
    ENV_ACTION_SIZE,
    STATE_FEATURES_IN_ACTION,
    TERMINATE,
    YAW_SCALE,
    env_action_to_features,
)

__all__ = [
    "JPEG_QUALITY",
    "TARGET_Q_KEY",
    "grasp_episode_to_transitions",
    "label_records",
    "labelled_specification",
    "parse_transitions",
    "transition_specification",
]

JPEG_QUALITY = 95
TARGET_Q_KEY = "target_q"
_STATE_PREFIXES = ("state", "next_state")
_FLOAT_STATE = STATE_FEATURES_IN_ACTION  # gripper_closed, height_to_bottom


def _spec(shape: tuple[int, ...], name: str, **kwargs: Any) -> specs.ExtendedTensorSpec:
    return specs.ExtendedTensorSpec(shape, kwargs.pop("dtype", torch.float32), name=name, **kwargs)


def transition_specification(image_size: int = 64) -> specs.TensorSpecStruct:
    """The layout of a transition record (flat paths = record keys; see the module docstring)."""
    spec = specs.TensorSpecStruct()
    for prefix in _STATE_PREFIXES:
        spec[f"{prefix}/image"] = _spec(
            (image_size, image_size, 3), f"{prefix}/image", dtype=torch.uint8, data_format="jpeg"
        )
        for name in _FLOAT_STATE:
            spec[f"{prefix}/{name}"] = _spec((1,), f"{prefix}/{name}")
        if prefix == "state":
            for name, size in ACTION_FEATURE_SIZES:
                if name not in STATE_FEATURES_IN_ACTION:
                    spec[f"action/{name}"] = _spec((size,), f"action/{name}")
            spec["action/env_action"] = _spec((ENV_ACTION_SIZE,), "action/env_action")
            spec["reward"] = _spec((1,), "reward")
            spec["done"] = _spec((1,), "done")
    return spec


def labelled_specification(image_size: int = 64) -> specs.TensorSpecStruct:
    """A transition record plus ``target_q`` (1,), the Bellman target."""
    spec = transition_specification(image_size)
    spec[TARGET_Q_KEY] = _spec((1,), TARGET_Q_KEY)
    return spec


def _observation_values(prefix: str, obs: Mapping[str, Any]) -> dict[str, np.ndarray]:
    if not isinstance(obs, Mapping) or "image" not in obs:
        got = sorted(obs) if isinstance(obs, Mapping) else type(obs).__name__
        raise ValueError(
            f"grasp_episode_to_transitions: the {prefix} observation must be the grasp env's "
            f"dict (image, gripper_closed, height_to_bottom), got {got}."
        )
    values: dict[str, np.ndarray] = {f"{prefix}/image": np.asarray(obs["image"], dtype=np.uint8)}
    for name in _FLOAT_STATE:
        values[f"{prefix}/{name}"] = np.asarray(obs[name], dtype=np.float32).reshape(1)
    return values


def transition_values(
    transition: Sequence[Any], yaw_scale: float = YAW_SCALE
) -> dict[str, np.ndarray]:
    """One ``(obs, action, reward, next_obs, done, info)`` -> ``{record key: value}``."""
    obs, action, reward, next_obs, done, info = transition
    values = _observation_values("state", obs)
    values.update(_observation_values("next_state", next_obs))
    env_action = np.array(action, dtype=np.float32).reshape(-1)
    if isinstance(info, Mapping) and info.get("time_limit_grasp", False):
        env_action[TERMINATE] = 1.0  # what the env did (see the module docstring)
    for name, value in env_action_to_features(env_action, obs, yaw_scale).items():
        if name not in STATE_FEATURES_IN_ACTION:
            values[f"action/{name}"] = value
    values["action/env_action"] = env_action
    values["reward"] = np.asarray([reward], dtype=np.float32)
    values["done"] = np.asarray([1.0 if done else 0.0], dtype=np.float32)
    return values


def grasp_episode_to_transitions(
    episode: Sequence[Sequence[Any]],
    jpeg_quality: int = JPEG_QUALITY,
    yaw_scale: float = YAW_SCALE,
) -> list[bytes]:
    """A grasp episode -> one serialized tf.train.Example per transition.

    Args:
      episode: ``(obs, action, reward, next_obs, done, info)`` tuples as
        `t2r.collect.run_env` makes them; observations are the grasp env's dicts
        (``image`` (S, S, 3) uint8, ``gripper_closed`` (1,), ``height_to_bottom``
        (1,)), actions its 6-vectors.
      jpeg_quality: JPEG quality of the images.
      yaw_scale: radians per unit of dyaw (the env's).

    Returns:
      The records, for `t2r.collect.TFRecordReplayWriter` (an ``episode_to_transitions_fn``).
    """
    if not episode:
        return []
    first = episode[0][0]
    image = np.asarray(first["image"]) if isinstance(first, Mapping) and "image" in first else None
    if image is None or image.ndim != 3 or image.shape[0] != image.shape[1]:
        shape = None if image is None else image.shape
        raise ValueError(
            "grasp_episode_to_transitions: expected observations with a square (S, S, 3) "
            f"'image', got {shape}."
        )
    serialize = create_serialize_tf_example_fn(
        transition_specification(int(image.shape[0])), jpeg_quality=jpeg_quality
    )
    records = []
    for transition in episode:
        record = serialize(transition_values(transition, yaw_scale))
        assert isinstance(record, bytes)
        records.append(record)
    return records


def parse_transitions(
    records: Sequence[bytes],
    image_size: int = 64,
    labelled: bool = False,
    decode_images: bool = True,
) -> specs.TensorSpecStruct:
    """Records -> one batch ``{record key: (B, ...) tensor}`` (images as uint8, or bytes
    object arrays with ``decode_images=False``)."""
    spec = labelled_specification(image_size) if labelled else transition_specification(image_size)
    parsed = create_parse_tf_example_fn(spec, decode_images=decode_images)(list(records))
    assert isinstance(parsed, specs.TensorSpecStruct)
    return parsed


def label_records(records: Sequence[bytes], target_q: Any, image_size: int = 64) -> list[bytes]:
    """Transition records + their Bellman targets (B,) or (B, 1) -> labelled records.

    The images are copied as stored (not re-encoded).
    """
    targets = np.asarray(target_q, dtype=np.float32).reshape(-1)
    if len(targets) != len(records):
        raise ValueError(
            f"label_records: {len(records)} records but {len(targets)} target_q values."
        )
    if not records:
        return []
    batch = parse_transitions(records, image_size, decode_images=False)
    serialize = create_serialize_tf_example_fn(labelled_specification(image_size))
    out = []
    for index in range(len(records)):
        values = {}
        for key, value in batch.items():
            column = np.asarray(value)
            # Encoded images stay bytes (a 0-d object array): copied, not re-encoded.
            values[key] = (
                np.asarray(column[index], dtype=object) if column.dtype == object else column[index]
            )
        values[TARGET_Q_KEY] = targets[index : index + 1]
        record = serialize(values)
        assert isinstance(record, bytes)
        out.append(record)
    return out
