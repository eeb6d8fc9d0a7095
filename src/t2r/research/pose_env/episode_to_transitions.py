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

`transition_spec()` is the same layout as a spec (what
`t2r.data.create_parse_tf_example_fn` reads it back with); `PoseEnvRegressionModel`
and `PoseEnvContinuousMCModel` parse these records directly.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from t2r import specs
from t2r.data import Example, encode_image

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


def episode_to_transitions_pose_toy(
    episode_data: Sequence[tuple[Any, ...]], jpeg_quality: int = JPEG_QUALITY
) -> list[Example]:
    """Converts a pose_env episode into one tf.train.Example per transition.

    Args:
      episode_data: transitions ``(obs, action, reward, new_obs, done, debug)``
        as `t2r.collect.run_env` makes them; ``obs`` is the (H, W, 3) uint8
        image, ``debug['target_pose']`` the (2,) target.
      jpeg_quality: JPEG quality of ``state/image``.

    Returns:
      Example messages (``SerializeToString()`` gives the record bytes).
    """
    transitions = []
    for obs_t, action, reward, _obs_tp1, _done, debug in episode_data:
        image = np.asarray(obs_t)
        if image.ndim != 3 or image.shape[-1] != 3 or image.dtype != np.uint8:
            raise ValueError(
                "episode_to_transitions_pose_toy: 'state/image' must be an (H, W, 3) uint8 "
                f"image, got {image.dtype} {image.shape}."
            )
        if "target_pose" not in debug:
            raise ValueError(
                "episode_to_transitions_pose_toy: the transition's debug/info dict has no "
                f"'target_pose' (keys: {sorted(debug)})."
            )
        example = Example()
        feature = example.features.feature
        feature["state/image"].bytes_list.value.append(encode_image(image, "jpeg", jpeg_quality))
        feature["pose"].float_list.value.extend(np.asarray(action, np.float32).ravel().tolist())
        feature["reward"].float_list.value.append(float(reward))
        feature["target_pose"].float_list.value.extend(
            np.asarray(debug["target_pose"], np.float32).ravel().tolist()
        )
        transitions.append(example)
    return transitions
