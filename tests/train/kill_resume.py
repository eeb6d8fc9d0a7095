"""Kill -9 a deterministic training at chosen points, resume it, compare bitwise.

A *kill point* is ``("step", n)``: SIGKILL right after step n, or
``("write", n)``: SIGKILL at the n-th checkpoint-write event of the process, an
event being the entry into or the return from one of the calls a checkpoint
write makes (``write_safetensors``, ``atomic_write_text``, ``publish_directory``,
``os.replace``, ``shutil.rmtree`` of a pruned checkpoint). So write kills land
between the files of a checkpoint, between a temporary file and its rename,
between publishing and pruning, and inside pruning.

Processes come from a ``forkserver`` that imported torch and t2r once, so a kill
and its resume cost a fork each rather than a fresh interpreter.
"""

from __future__ import annotations

import multiprocessing
import os
import random
import shutil
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MAX_STEPS = 30
SAVE_EVERY = 5
# Write events of a run of MAX_STEPS steps from scratch: 6 checkpoints of about
# 17 events each (model, optimizer, state, publish, pruning).
WRITE_EVENTS = 100


def train(model_dir: str, max_steps: int, kill: tuple[str, int] | None) -> None:
    """One deterministic TinyRegression training, killed at `kill` if given."""
    from t2r.train import CallbackHook, HookBuilder, seed_everything, train_eval_model

    from .models import SeededInput, TinyRegression

    builders: list[Any] = []
    if kill is not None and kill[0] == "step":

        class KillAt(HookBuilder):
            def create_hooks(self, t2r_model: Any, model_dir: str) -> list[Any]:
                def after_step(step: int, scalars: Any) -> None:
                    if step == kill[1]:
                        os.kill(os.getpid(), signal.SIGKILL)

                return [CallbackHook(after_step=after_step)]

        builders.append(KillAt())
    elif kill is not None:
        _kill_at_write_event(kill[1])
    seed_everything(0)
    train_eval_model(
        TinyRegression(),
        SeededInput(batch_size=8, seed=1),
        max_train_steps=max_steps,
        model_dir=model_dir,
        save_checkpoints_steps=SAVE_EVERY,
        keep_checkpoint_max=3,
        deterministic=True,
        seed=0,
        show_progress=False,
        train_hook_builders=builders,
    )


def _kill_at_write_event(n: int) -> None:
    import t2r.atomic as atomic
    import t2r.train.checkpoints as checkpoints

    count = 0

    def tick() -> None:
        nonlocal count
        count += 1
        if count == n:
            os.kill(os.getpid(), signal.SIGKILL)

    def wrap(fn: Any) -> Any:
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            tick()
            result = fn(*args, **kwargs)
            tick()
            return result

        return wrapped

    checkpoints.write_safetensors = wrap(checkpoints.write_safetensors)  # type: ignore[attr-defined]
    checkpoints.atomic_write_text = wrap(checkpoints.atomic_write_text)  # type: ignore[attr-defined]
    atomic.publish_directory = wrap(atomic.publish_directory)
    os.replace = wrap(os.replace)
    shutil.rmtree = wrap(shutil.rmtree)


def kill_points(count: int, seed: int = 0) -> list[tuple[str, int]]:
    """`count` distinct points, half after random steps, half at random write events."""
    rng = random.Random(seed)
    steps = rng.sample(range(1, MAX_STEPS), count // 2)
    writes = rng.sample(range(1, WRITE_EVENTS), count - count // 2)
    return [("step", s) for s in sorted(steps)] + [("write", w) for w in sorted(writes)]


@dataclass
class Outcome:
    point: tuple[str, int]
    killed: bool  # the process died by SIGKILL (a write kill past the last event does not)
    resumed_from: int  # the newest checkpoint left by the killed run (0: none)
    exact: bool  # the resumed run's final weights equal the uninterrupted run's, bitwise
    leftovers: int  # temporary names left in checkpoints/ after the resumed run


def _context() -> Any:
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["torch", "t2r.train", "tests.train.models"])
    return ctx


def _run(ctx: Any, model_dir: Path, kill: tuple[str, int] | None) -> int:
    process = ctx.Process(target=train, args=(str(model_dir), MAX_STEPS, kill))
    process.start()
    process.join(timeout=300)
    if process.is_alive():
        process.kill()
        raise TimeoutError(f"training in {model_dir} hung (kill point {kill})")
    return int(process.exitcode)


def _weights(model_dir: Path) -> dict[str, Any]:
    from safetensors.torch import load_file

    from t2r.train import latest_checkpoint

    checkpoint = latest_checkpoint(model_dir)
    assert checkpoint is not None and checkpoint.global_step == MAX_STEPS, checkpoint
    return load_file(str(checkpoint.path / "model.safetensors"))


def kill_and_resume(root: Path, points: list[tuple[str, int]]) -> list[Outcome]:
    """The uninterrupted run, then for each point a run killed there and resumed."""
    import torch

    from t2r.atomic import is_temporary_path
    from t2r.train import latest_checkpoint

    ctx = _context()
    code = _run(ctx, root / "straight", None)
    assert code == 0, f"the uninterrupted run failed with exit code {code}"
    reference = _weights(root / "straight")
    outcomes = []
    for kind, n in points:
        model_dir = root / f"{kind}-{n}"
        code = _run(ctx, model_dir, (kind, n))
        assert code in (0, -signal.SIGKILL), f"{kind} {n}: exit code {code}"
        killed = code == -signal.SIGKILL
        newest = latest_checkpoint(model_dir)
        resumed_from = 0 if newest is None else newest.global_step
        code = _run(ctx, model_dir, None)
        assert code == 0, f"resume after {kind} {n} failed with exit code {code}"
        weights = _weights(model_dir)
        exact = weights.keys() == reference.keys() and all(
            torch.equal(weights[k], reference[k]) for k in reference
        )
        leftovers = sum(is_temporary_path(p) for p in (model_dir / "checkpoints").iterdir())
        outcomes.append(Outcome((kind, n), killed, resumed_from, exact, leftovers))
    return outcomes
