"""pose_env episodes -> tf.train.Example records (T2R's ``episode_to_transitions.py``).

One Example per transition, with exactly the keys of T2R's pose_env records
(``../shared/fixtures/pose_env_test_data.tfrecord``):

=================  ========================================  =====================
key                value                                     Example list
=================  ========================================  =====================
``state/image``    the observation, (H, W, 3) uint8, JPEG    bytes_list, 1 value
``pose``           the action taken, the guessed (x, y)      float_list, 2 values
``reward``         -||pose - target_pose||                   float_list, 1 value
``target_pose``    the duck's (x, y) (+ hidden drift)        float_list, 2 values
=================  ========================================  =====================

`transition_spec()` is that layout as a spec, and the records are written from
it by `t2r.collect.SpecEpisodeToTransitions` (the spec-driven serializer): the
observation is ``state/image``, the action ``pose``, the reward ``reward``, and
``target_pose`` comes from the env's ``info``. Adding a camera is one entry in
the env's observation (then a dict: ``{'state/image': ..., 'state/wrist': ...}``)
and one spec: nothing else changes on the collect side. The same spec reads the
records back (`t2r.data.create_parse_tf_example_fn`); `PoseEnvRegressionModel`
and `PoseEnvContinuousMCModel` parse these records directly.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from t2r import specs
from t2r.collect import SpecEpisodeToTransitions

__all__ = ["episode_to_transitions_pose_toy", "transition_spec"]

JPEG_QUALITY = 95


def transition_spec(image_size: int = 64) -> specs.TensorSpecStruct:
    """The records' layout: ``state/image`` (uint8 JPEG), ``pose``, ``reward``, ``target_pose``."""
    spec = specs.TensorSpecStruct()
    spec["state/image"] = specs.ExtendedTensorSpec(
        (image_size, image_size, 3), torch.uint8, name="state/image", data_format="jpeg"
    )
    spec["pose"] = specs.ExtendedTensorSpec((2,), torch.float32, name="pose")
    spec["reward"] = specs.ExtendedTensorSpec((1,), torch.float32, name="reward")
    spec["target_pose"] = specs.ExtendedTensorSpec((2,), torch.float32, name="target_pose")
    return spec


@functools.lru_cache(maxsize=8)
def _default_converter(image_size: int, jpeg_quality: int) -> SpecEpisodeToTransitions:
    return transition_converter(transition_spec(image_size), jpeg_quality)


def transition_converter(spec: Any, jpeg_quality: int = JPEG_QUALITY) -> SpecEpisodeToTransitions:
    """pose_env's episode -> records converter for `spec` (default: `transition_spec()`)."""
    return SpecEpisodeToTransitions(
        spec,
        observation_key="state/image",
        action_key="pose",
        reward_key="reward",
        jpeg_quality=jpeg_quality,
    )


def episode_to_transitions_pose_toy(
    episode_data: Sequence[tuple[Any, ...]],
    jpeg_quality: int = JPEG_QUALITY,
    spec: Any = None,
) -> list[bytes]:
    """Converts a pose_env episode into one serialized tf.train.Example per transition.

    Args:
      episode_data: transitions ``(obs, action, reward, new_obs, done, debug)``
        as `t2r.collect.run_env` makes them; ``obs`` is the (H, W, 3) uint8
        image (or a dict of the spec's observation entries),
        ``debug['target_pose']`` the (2,) target.
      jpeg_quality: JPEG quality of the images.
      spec: the records' layout; default `transition_spec()` at the
        observation's image size.

    Returns:
      The records (bytes), for `t2r.collect.TFRecordReplayWriter`.

    Raises:
      SpecError: a value is missing or does not fit its spec (naming it).
    """
    if spec is not None:
        return transition_converter(spec, jpeg_quality)(episode_data)
    if not episode_data:
        return []
    obs = episode_data[0][0]
    image = np.asarray(obs["state/image"] if isinstance(obs, Mapping) else obs)
    size = int(image.shape[0]) if image.ndim == 3 else 64
    return _default_converter(size, int(jpeg_quality))(episode_data)
