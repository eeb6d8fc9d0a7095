"""Policies: observations -> actions through a predictor (``tensor2robot.policies``).

* `Policy`: the base (``select_action`` / T2R's ``SelectAction``, ``reset``,
  ``restore``, ``init_randomly``, ``global_step``, ``model_path``, ``sample_action``).
* `RegressionPolicy`, `OUExploreRegressionPolicy`,
  `ScheduledExplorationRegressionPolicy`: a regression model's action, plus noise.
* `CEMPolicy`, `LSTMCEMPolicy`: the cross-entropy-method argmax of a critic.
* `PerEpisodeSwitchPolicy`, `RandomPolicy`.
* `cross_entropy_method` (T2R's ``CrossEntropyMethod``).
"""

from __future__ import annotations

from t2r.policies.cross_entropy import (
    CrossEntropyMethod,
    NormalCrossEntropyMethod,
    cross_entropy_method,
    normal_cross_entropy_method,
    normal_update_fn,
)
from t2r.policies.policies import (
    CEMPolicy,
    LSTMCEMPolicy,
    OUExploreRegressionPolicy,
    PerEpisodeSwitchPolicy,
    Policy,
    RandomPolicy,
    RegressionPolicy,
    ScheduledExplorationRegressionPolicy,
    make_policy,
)

__all__ = [
    "CEMPolicy",
    "CrossEntropyMethod",
    "LSTMCEMPolicy",
    "NormalCrossEntropyMethod",
    "OUExploreRegressionPolicy",
    "PerEpisodeSwitchPolicy",
    "Policy",
    "RandomPolicy",
    "RegressionPolicy",
    "ScheduledExplorationRegressionPolicy",
    "cross_entropy_method",
    "make_policy",
    "normal_cross_entropy_method",
    "normal_update_fn",
]
