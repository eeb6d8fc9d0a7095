"""BC-Z (Jang et al. 2021) on t2r: a FiLM ResNet conditioned on a task embedding
that predicts future waypoints. See ``docs/bcz.md``."""

from __future__ import annotations

from t2r.research.bcz.model import (
    LANG_REACH_SIZE,
    PAPER_SIZE,
    BCZModel,
    label_key,
    output_key,
)
from t2r.research.bcz.networks import MultiHeadMLP

__all__ = [
    "LANG_REACH_SIZE",
    "PAPER_SIZE",
    "BCZModel",
    "MultiHeadMLP",
    "label_key",
    "output_key",
]
