"""Trains TinyRegression (or a variant) on TFRecords through a DefaultRecordInputGenerator
left at its defaults (no seed); used by the tests as a subprocess::

    python -m tests.train.run_records MODEL_DIR PATTERN MAX_STEPS MODEL WORKERS [KILL_AT]

MODEL is ``dropout`` (TinyRegression, dropout 0.1) or ``noise`` (adds torch.randn
noise to the inputs in its train_step, and evaluates after every checkpoint).
With KILL_AT the process SIGKILLs itself right after that step, as a crash would.
"""

from __future__ import annotations

import logging
import sys

import torch

from t2r import specs
from t2r.data import DefaultRecordInputGenerator
from t2r.train import seed_everything, train_eval_model

from .models import TinyRegression
from .run_tiny import KillAt


class NoisyRegression(TinyRegression):
    """Draws from the global torch RNG in its own train_step (exploration-like noise)."""

    def train_step(self, features, labels, optimizer, forward=None):
        noisy = specs.TensorSpecStruct(x=features.x + 0.1 * torch.randn_like(features.x))
        return super().train_step(noisy, labels, optimizer, forward=forward)


def main(
    model_dir: str, pattern: str, max_steps: int, kind: str, workers: int, kill_at: int | None
) -> None:
    logging.basicConfig(level=logging.INFO)
    seed_everything(0)
    model = NoisyRegression() if kind == "noise" else TinyRegression()
    eval_input = (
        DefaultRecordInputGenerator(pattern, batch_size=8, num_workers=workers)
        if kind == "noise"
        else None
    )
    train_eval_model(
        model,
        DefaultRecordInputGenerator(pattern, batch_size=8, num_workers=workers),
        eval_input,
        max_train_steps=max_steps,
        model_dir=model_dir,
        eval_steps=2,
        save_checkpoints_steps=5,
        keep_checkpoint_max=3,
        seed=0,
        show_progress=False,
        train_hook_builders=[KillAt(kill_at)] if kill_at else None,
    )


if __name__ == "__main__":
    args = sys.argv[1:]
    main(
        args[0],
        args[1],
        int(args[2]),
        args[3],
        int(args[4]),
        int(args[5]) if len(args) > 5 else None,
    )
