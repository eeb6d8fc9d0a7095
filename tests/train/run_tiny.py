"""Runs a deterministic training of TinyRegression; used by the tests as a
subprocess: ``python -m tests.train.run_tiny MODEL_DIR MAX_STEPS [KILL_AT_STEP]``
(and through `main` in the test's own process, for the uninterrupted reference run).
With ``--actor_critic`` it trains TinyActorCritic (two optimizers, target
networks) on TransitionInput instead.

With KILL_AT_STEP the process SIGKILLs itself right after that step, as a crash
would (no clean-up, no final checkpoint).
"""

from __future__ import annotations

import os
import signal
import sys

from t2r.train import CallbackHook, HookBuilder, seed_everything, train_eval_model

from .models import SeededInput, TinyActorCritic, TinyRegression, TransitionInput


class KillAt(HookBuilder):
    def __init__(self, step: int) -> None:
        self.step = step

    def create_hooks(self, t2r_model, model_dir):
        def after_step(global_step, scalars):
            if global_step == self.step:
                os.kill(os.getpid(), signal.SIGKILL)

        return [CallbackHook(after_step=after_step)]


def main(model_dir: str, max_steps: int, kill_at: int | None, actor_critic: bool) -> None:
    seed_everything(0)
    model = TinyActorCritic() if actor_critic else TinyRegression()
    train_eval_model(
        model,
        TransitionInput(seed=1) if actor_critic else SeededInput(batch_size=8, seed=1),
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
    args = [a for a in sys.argv[1:] if a != "--actor_critic"]
    main(
        args[0],
        int(args[1]),
        int(args[2]) if len(args) > 2 else None,
        actor_critic="--actor_critic" in sys.argv,
    )
