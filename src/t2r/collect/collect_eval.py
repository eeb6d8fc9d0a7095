"""The collect-eval loop: run the newest policy, once or every time it changes.

Tensor2Robot's ``utils/continuous_collect_eval.py``. A collector process
restores its policy (a policy over an `ExportedModelPredictor` loads the newest
export), and for each new global step it collects `num_collect` episodes into
``<root_dir>/policy_collect`` and evaluates `num_eval` episodes into
``<root_dir>/eval`` (mean reward per global step in
``<root_dir>/eval/live_eval_<task>/``: TensorBoard events and
``metrics.jsonl``).

Which global steps were handled is kept in
``<root_dir>/collect_eval_state_t<task>.json`` (written atomically after each
step), so a restarted collector does not redo them. Collectors that share a
`root_dir` need distinct `task` numbers (their records never collide either
way: file names carry a per-process collector id).
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from t2r.atomic import atomic_write_text
from t2r.collect.rollouts import EnvRunResult, run_env
from t2r.policies import make_policy

__all__ = ["CollectEvalState", "collect_eval_loop", "records_pattern"]

logger = logging.getLogger(__name__)

STATE_FILENAME = "collect_eval_state_t{task}.json"
# The run_env root of each tag under the collect-eval root_dir.
_TAG_DIRS = {"collect": "policy_collect", "eval": "eval"}


def records_pattern(root_dir: str | os.PathLike[str], tag: str = "collect") -> str:
    """The glob of the record files `collect_eval_loop` writes under `root_dir` for `tag`.

    ``<root_dir>/policy_collect/policy_collect/*.tfrecord`` for 'collect',
    ``<root_dir>/eval/policy_eval/*.tfrecord`` for 'eval' (T2R's layout: the
    loop's directory per tag, then run_env's ``policy_<tag>``).
    """
    if tag not in _TAG_DIRS:
        raise ValueError(f"records_pattern: tag must be one of {sorted(_TAG_DIRS)}, got {tag!r}.")
    return os.path.join(os.fspath(root_dir), _TAG_DIRS[tag], f"policy_{tag}", "*.tfrecord")


class CollectEvalState:
    """The global steps a collector (`task`) handled in `root_dir`, persisted as JSON.

    ``{"task": 0, "handled": {"<global step>": {"collect": mean reward or null,
    "eval": ..., "time": unix time}}}``.
    """

    def __init__(self, root_dir: str | os.PathLike[str], task: int = 0) -> None:
        # No root_dir (T2R's default ''): nothing is written, so nothing is kept.
        root = os.fspath(root_dir)
        self.path = Path(root) / STATE_FILENAME.format(task=int(task)) if root else None
        self.task = int(task)
        self.handled: dict[int, dict[str, Any]] = {}
        if self.path is not None and self.path.is_file():
            try:
                data = json.loads(self.path.read_text(encoding="utf-8"))
                self.handled = {int(k): v for k, v in data.get("handled", {}).items()}
            except (ValueError, AttributeError) as e:
                raise ValueError(
                    f"Cannot read the collect-eval state {self.path}: {e}. Remove it to start over."
                ) from e

    @property
    def last_global_step(self) -> int:
        """The newest handled global step, -1 when none."""
        return max(self.handled, default=-1)

    def mark(self, global_step: int, results: dict[str, EnvRunResult | Any]) -> None:
        entry: dict[str, Any] = {"time": time.time()}
        for tag, result in results.items():
            entry[tag] = result.mean_reward if isinstance(result, EnvRunResult) else None
        self.handled[int(global_step)] = entry
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        data = {
            "task": self.task,
            "handled": {str(k): v for k, v in sorted(self.handled.items())},
        }
        atomic_write_text(self.path, json.dumps(data, indent=1, allow_nan=True) + "\n")


def collect_eval_loop(
    collect_env: Any,
    eval_env: Any,
    policy_class: Any,
    num_collect: int = 2000,
    num_eval: int = 100,
    run_agent_fn: Callable[..., Any] | None = None,
    root_dir: str | os.PathLike[str] = "",
    continuous: bool = False,
    min_collect_eval_step: int = 0,
    max_steps: int = 1,
    pre_collect_eval_fn: Callable[[], Any] | None = None,
    record_eval_env_video: bool = False,
    init_with_random_variables: bool = False,
    task: int = 0,
    poll_interval_secs: float = 10.0,
    timeout_secs: float | None = None,
) -> dict[int, dict[str, Any]]:
    """Collects with and evaluates the newest policy, once or continuously.

    Tensor2Robot's ``collect_eval_loop``. Each round: ``policy.restore()`` (or
    ``init_randomly()``), read ``policy.global_step``; a step below
    `min_collect_eval_step` or not newer than the last handled one waits
    `poll_interval_secs` and looks again. A new step runs
    ``run_agent_fn(collect_env, policy=..., num_episodes=num_collect,
    root_dir=<root_dir>/policy_collect, global_step=..., tag='collect',
    task=task)`` and likewise `eval_env` with ``num_eval``,
    ``<root_dir>/eval``, ``tag='eval'``; then the step is recorded as handled
    (see `CollectEvalState`).

    Args:
      collect_env: environment to collect from, or None.
      eval_env: environment to evaluate on, or None.
      policy_class: a zero-argument factory (a class, a gin configurable) of
        the policy, or a policy.
      num_collect, num_eval: episodes per global step.
      run_agent_fn: `run_env` (default), `run_meta_env`, or anything with
        their keyword arguments.
      root_dir: where records, summaries and the state file go.
      continuous: keep waiting for newer policies until one at `max_steps` or
        beyond was handled; else handle one step and return.
      min_collect_eval_step: the lowest global step to handle.
      max_steps: with `continuous`, stop after handling a step >= this.
      pre_collect_eval_fn: called once before the loop.
      record_eval_env_video: call ``eval_env.set_video_output_dir(
        <root_dir>/videos/<step>)`` when the env has it.
      init_with_random_variables: ``policy.init_randomly()`` instead of
        ``restore()`` (for tests).
      task: this collector's replica number (state file, records, summaries).
      poll_interval_secs: wait between looks for a new policy (T2R: 10 s).
      timeout_secs: give up after this long without a new policy to handle
        (None: wait forever, as T2R).

    Returns:
      ``{global_step: {'collect': EnvRunResult, 'eval': EnvRunResult}}`` for the
      steps handled by this call (entries hold what `run_agent_fn` returned).
    """
    if pre_collect_eval_fn is not None:
        pre_collect_eval_fn()
    run_agent_fn = run_agent_fn or run_env
    root = os.fspath(root_dir)
    collect_dir = os.path.join(root, _TAG_DIRS["collect"])
    eval_dir = os.path.join(root, _TAG_DIRS["eval"])
    state = CollectEvalState(root, task)
    handled: dict[int, dict[str, Any]] = {}
    if continuous and state.last_global_step >= max_steps:
        logger.info(
            "Collect-eval (task %d) already handled global step %d >= max_steps %d in %s.",
            task,
            state.last_global_step,
            max_steps,
            root,
        )
        return handled

    policy = make_policy(policy_class, required=None)
    previous = state.last_global_step
    deadline = None if timeout_secs is None else time.monotonic() + timeout_secs
    while True:
        if hasattr(policy, "restore"):
            if init_with_random_variables:
                policy.init_randomly()
            else:
                policy.restore()
        step = getattr(policy, "global_step", None)
        global_step = None if step is None else int(step)
        ready = global_step is not None and global_step >= min_collect_eval_step
        if ready and global_step is not None and global_step <= previous:
            if not continuous:
                logger.info(
                    "Collect-eval (task %d): global step %d was handled already (state in %s).",
                    task,
                    global_step,
                    state.path,
                )
                break
            ready = False
        if not ready:
            if deadline is not None and time.monotonic() >= deadline:
                logger.info(
                    "Collect-eval (task %d): no new policy to handle for %.0f s; stopping.",
                    task,
                    timeout_secs,
                )
                break
            logger.debug("Waiting for a new policy (global step %s).", global_step)
            wait = poll_interval_secs
            if deadline is not None:
                wait = min(wait, max(deadline - time.monotonic(), 0.0))
            time.sleep(wait)
            continue

        assert global_step is not None
        logger.info("Collect-eval (task %d): policy at global step %d.", task, global_step)
        results: dict[str, Any] = {}
        if collect_env is not None:
            results["collect"] = run_agent_fn(
                collect_env,
                policy=policy,
                num_episodes=num_collect,
                root_dir=collect_dir,
                global_step=global_step,
                tag="collect",
                task=task,
            )
        if eval_env is not None:
            if record_eval_env_video and hasattr(eval_env, "set_video_output_dir"):
                eval_env.set_video_output_dir(os.path.join(root, "videos", str(global_step)))
            results["eval"] = run_agent_fn(
                eval_env,
                policy=policy,
                num_episodes=num_eval,
                root_dir=eval_dir,
                global_step=global_step,
                tag="eval",
                task=task,
            )
        state.mark(global_step, results)
        handled[global_step] = results
        if not continuous or global_step >= max_steps:
            logger.info("Collect-eval (task %d): done at global step %d.", task, global_step)
            break
        previous = global_step
        if deadline is not None:
            deadline = time.monotonic() + (timeout_secs or 0.0)
    return handled
