"""Training and evaluation: the loop, checkpoints, summaries, hooks, torchrun."""

from __future__ import annotations

from t2r.train.checkpoints import (
    Checkpoint,
    CheckpointError,
    NonFiniteCheckpointError,
    TrainingState,
    latest_checkpoint,
    list_checkpoints,
    load_model_weights,
    restore_checkpoint,
    restore_latest_checkpoint,
    save_checkpoint,
)
from t2r.train.distributed import DistributedContext, all_reduce_gradients
from t2r.train.hooks import CallbackHook, GoldenValuesHookBuilder, Hook, HookBuilder
from t2r.train.summaries import MetricsWriter, read_metrics
from t2r.train.train_eval import Exporter, Preempted, evaluate, seed_everything, train_eval_model

__all__ = [
    "CallbackHook",
    "Checkpoint",
    "CheckpointError",
    "DistributedContext",
    "Exporter",
    "GoldenValuesHookBuilder",
    "Hook",
    "HookBuilder",
    "MetricsWriter",
    "NonFiniteCheckpointError",
    "Preempted",
    "TrainingState",
    "all_reduce_gradients",
    "evaluate",
    "latest_checkpoint",
    "list_checkpoints",
    "load_model_weights",
    "read_metrics",
    "restore_checkpoint",
    "restore_latest_checkpoint",
    "save_checkpoint",
    "seed_everything",
    "train_eval_model",
]
