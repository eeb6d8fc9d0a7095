"""Models: declare specs, write the network and the loss; the rest is derived."""

from __future__ import annotations

from t2r.models.abstract_model import AbstractT2RModel, ModelOutputs, TrainStepOutputs
from t2r.models.classification_model import ClassificationModel
from t2r.models.critic_model import CriticModel
from t2r.models.optimizers import (
    create_adam_optimizer,
    create_sgd_optimizer,
    create_warmup_cosine_schedule,
)
from t2r.models.regression_model import RegressionModel
from t2r.models.updates import average_gradients, polyak_update

__all__ = [
    "AbstractT2RModel",
    "ClassificationModel",
    "CriticModel",
    "ModelOutputs",
    "RegressionModel",
    "TrainStepOutputs",
    "average_gradients",
    "create_adam_optimizer",
    "create_sgd_optimizer",
    "create_warmup_cosine_schedule",
    "polyak_update",
]
