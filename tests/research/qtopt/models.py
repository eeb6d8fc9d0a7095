"""Test-sized QT-Opt critics; the model registry finds them (tests/test_model_contract.py)."""

from __future__ import annotations

from typing import Any

from t2r.research.qtopt import Grasping44CriticModel

TINY_NETWORK = {"channels": 8, "num_convs": (1, 1, 1), "fc_size": 16, "action_embedding_size": 16}


class TinyGrasping44Critic(Grasping44CriticModel):
    """Grasping44 at 16 px, 8 filters, one conv per stage, 4 CEM candidates per state at
    PREDICT: the contract tests export and predict through the action tiling."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("image_size", 16)
        kwargs.setdefault("action_batch_size", 4)
        kwargs.setdefault("network_kwargs", TINY_NETWORK)
        super().__init__(**kwargs)
