"""BC-Z (Jang et al. 2021) on t2r: a FiLM ResNet conditioned on a task embedding
that predicts future waypoints. See ``docs/bcz.md``."""

from __future__ import annotations

from t2r.research.bcz.data import (
    BCZInputGenerator,
    BCZWaypointSource,
    ParseBCZExamplesFn,
    future_stop_tokens,
    future_waypoints,
)
from t2r.research.bcz.model import (
    LANG_REACH_SIZE,
    PAPER_SIZE,
    STOP_TOKEN,
    BCZModel,
    label_key,
    output_key,
)
from t2r.research.bcz.networks import MultiHeadMLP
from t2r.research.bcz.policy import BCZPolicy, waypoint_moves

__all__ = [
    "LANG_REACH_SIZE",
    "PAPER_SIZE",
    "STOP_TOKEN",
    "BCZInputGenerator",
    "BCZModel",
    "BCZPolicy",
    "BCZWaypointSource",
    "MultiHeadMLP",
    "ParseBCZExamplesFn",
    "future_stop_tokens",
    "future_waypoints",
    "label_key",
    "output_key",
    "waypoint_moves",
]
