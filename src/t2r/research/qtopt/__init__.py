"""QT-Opt (Kalashnikov et al., 2018) on t2r: T2R's ``research/qtopt``, model side.

* `Grasping44` (`networks`): the Q-network, the action embedded and tiled into
  the image features.
* `Grasping44CriticModel` (`models`): that network as a `CriticModel` with
  T2R's spec names and log loss; `action_batch_size` lets CEM score all its
  candidates in one call.
* `env_action_to_features`, `features_to_env_action` (`actions`): the grasp
  env's 6-vector <-> the critic's action features, in one place.
* `transition_specification`, `labelled_specification`,
  `grasp_episode_to_transitions`, `label_records` (`transitions`): the replay
  records collectors and the Bellman updaters write.
* `BellmanLabeller` (`bellman`): r + gamma (1 - done) max_a' Q_target(s', a'),
  the max by CEM.
* `qtopt_cem_policy` (`policy`): T2R's CEM policy on the critic, acting with
  the env's 6-vector.
* `PCGrad` (`pcgrad`): gradient surgery for multi-task losses (T2R's pcgrad).
"""

from __future__ import annotations

from t2r.research.qtopt.actions import (
    ACTION_FEATURE_SIZES,
    YAW_SCALE,
    env_action_to_features,
    features_to_env_action,
)
from t2r.research.qtopt.bellman import BellmanLabeller, batched_cem_max
from t2r.research.qtopt.models import Grasping44CriticModel, Grasping44Preprocessor, log_loss
from t2r.research.qtopt.networks import Grasping44
from t2r.research.qtopt.pcgrad import PCGrad
from t2r.research.qtopt.policy import qtopt_cem_policy
from t2r.research.qtopt.transitions import (
    grasp_episode_to_transitions,
    label_records,
    labelled_specification,
    parse_transitions,
    transition_specification,
)

__all__ = [
    "ACTION_FEATURE_SIZES",
    "YAW_SCALE",
    "BellmanLabeller",
    "Grasping44",
    "Grasping44CriticModel",
    "Grasping44Preprocessor",
    "PCGrad",
    "batched_cem_max",
    "env_action_to_features",
    "features_to_env_action",
    "grasp_episode_to_transitions",
    "label_records",
    "labelled_specification",
    "log_loss",
    "parse_transitions",
    "qtopt_cem_policy",
    "transition_specification",
]
