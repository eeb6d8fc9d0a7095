"""pose_env: predict a duck's position on a table from a camera image.

Tensor2Robot's ``research/pose_env`` on MuJoCo and PyTorch:

* `PoseToyEnv`, `PoseEnvRandomPolicy` (`t2r.research.pose_env.pose_env`):
  the Gymnasium environment and the data-collection policy. They need the
  ``sim`` extra (mujoco, gymnasium) and are imported on first use, so the
  models below work without them.
* `PoseEnvRegressionModel`, `PoseEnvContinuousMCModel`
  (`t2r.research.pose_env.pose_env_models`): image -> (x, y) regression, and a
  critic Q(image, (x, y)) for CEM.
* `episode_to_transitions_pose_toy`, `transition_spec`
  (`t2r.research.pose_env.episode_to_transitions`): episodes -> T2R's
  pose_env Example records, for `t2r.collect`.
* ``t2r demo`` (`t2r.research.pose_env.demo`): collect -> train -> export ->
  evaluate, end to end.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from t2r.research.pose_env.episode_to_transitions import (
    episode_to_transitions_pose_toy,
    transition_spec,
)
from t2r.research.pose_env.pose_env_models import (
    DefaultPoseEnvContinuousPreprocessor,
    DefaultPoseEnvRegressionPreprocessor,
    PoseEnvContinuousMCModel,
    PoseEnvRegressionModel,
)

if TYPE_CHECKING:
    from t2r.research.pose_env.pose_env import PoseEnvRandomPolicy, PoseToyEnv

__all__ = [
    "DefaultPoseEnvContinuousPreprocessor",
    "DefaultPoseEnvRegressionPreprocessor",
    "PoseEnvContinuousMCModel",
    "PoseEnvRandomPolicy",
    "PoseEnvRegressionModel",
    "PoseToyEnv",
    "episode_to_transitions_pose_toy",
    "transition_spec",
]

_ENV_NAMES = ("PoseToyEnv", "PoseEnvRandomPolicy")


def __getattr__(name: str) -> Any:
    # The env imports mujoco (and picks its GL backend) only when asked for.
    if name in _ENV_NAMES:
        from t2r.research.pose_env import pose_env

        return getattr(pose_env, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
