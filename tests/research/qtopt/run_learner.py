"""The QT-Opt learner under torchrun, with test hooks: notes each step it runs (per
torchrun attempt) and SIGKILLs itself after step ``--kill_after`` on the first attempt."""

from __future__ import annotations

import os
import signal
import sys
from typing import Any

from t2r.research.qtopt.learner import parse_args, train_learner
from t2r.train import CallbackHook, HookBuilder


class NoteAndKill(HookBuilder):
    def __init__(self, steps_log: str, kill_after: int | None) -> None:
        self.steps_log = steps_log
        self.kill_after = kill_after

    def create_hooks(self, t2r_model: Any, model_dir: str) -> list[CallbackHook]:
        attempt = int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0"))

        def after_step(step: int, scalars: Any) -> None:
            with open(self.steps_log, "a") as f:
                f.write(f"{attempt} {step}\n")
            if attempt == 0 and step == self.kill_after:
                os.kill(os.getpid(), signal.SIGKILL)

        return [CallbackHook(after_step=after_step)]


def main(argv: list[str]) -> int:
    steps_log = argv[argv.index("--steps_log") + 1]
    kill_after = int(argv[argv.index("--kill_after") + 1]) if "--kill_after" in argv else None
    rest = [
        a
        for i, a in enumerate(argv)
        if a not in ("--steps_log", "--kill_after")
        and (i == 0 or argv[i - 1] not in ("--steps_log", "--kill_after"))
    ]
    train_learner(parse_args(rest), [NoteAndKill(steps_log, kill_after)])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
