"""Runs a deterministic training of TinyRegression; used by the tests as a
subprocess: ``python -m tests.train.run_tiny MODEL_DIR MAX_STEPS [KILL_AT_STEP]``.

With KILL_AT_STEP the process SIGKILLs itself right after that step, as a crash
would (no clean-up, no final checkpoint).
"""

from __future__ import annotations

import os
import signal
import sys

from t2r.train import CallbackHook, HookBuilder, seed_everything, train_eval_model

from .models import SeededInput, TinyRegression


class KillAt(HookBuilder):
    def __init__(self, step: int) -> None:
        self.step = step

    def create_hooks(self, t2r_model, model_dir):
        def after_step(global_step, scalars):
            if global_step == self.step:
                os.kill(os.getpid(), signal.SIGKILL)

        return [CallbackHook(after_step=after_step)]


def main(model_dir: str, max_steps: int, kill_at: int | None) -> None:
    seed_everything(0)
    model = TinyRegression()
    train_eval_model(
        model,
        SeededInput(batch_size=8, seed=1),
        max_train_steps=max_steps,
        model_dir=model_dir,
        save_checkpoints_steps=5,
        keep_checkpoint_max=3,
        deterministic=True,
        seed=0,
        show_progress=False,
        train_hook_builders=[KillAt(kill_at)] if kill_at else None,
    )


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]) if len(sys.argv) > 3 else None)
