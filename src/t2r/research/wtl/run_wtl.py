"""Watch-Try-Learn end to end: collect, train the trial and retrial policies, evaluate.

``python -m t2r.research.wtl.run_wtl OUT_DIR``:

1. **collect** (`collect_tasks`): per task, through `t2r.collect.run_meta_env`, a
   demonstration by `WTLDemoPolicy`, then a trial and a retrial by the
   scripted agent `ScriptedWTLPolicy` (the imitation targets).
2. **trial records**: per task one meta example, condition = [demonstration],
   inference = the scripted trial (`t2r.research.wtl.episodes.wtl_example`).
3. **train** `WTLTrialModel` with `train_eval_model` (records through
   `DefaultRecordInputGenerator`, exported by a `LatestExporter`).
4. **retrial records**: condition = [demonstration, trial], inference = the
   scripted retrial. ``--retrial_trials learned`` (default, the paper's recipe)
   collects new tasks whose trial is run by the trained trial policy (its
   export) and whose retrial is the scripted agent's answer to that trial;
   ``scripted`` reuses the scripted trials of step 1.
5. **train** `WTLRetrialModel` the same way, its frame encoder, demonstration
   embedding and action head first copied from the trained trial model
   (`warm_start_retrial`; ``--no-warm_start`` starts from scratch).
6. **evaluate** on held-out tasks (another seed) with `run_meta_env`: the
   exported policies as `WTLPolicy` (trial, then retrial), beside the trial
   policy retrying without the trial's outcome, the random policy and the
   scripted agent (the task's ceilings). Writes ``OUT_DIR/summary.json``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from t2r.atomic import atomic_write_text
from t2r.modes import ModeKeys
from t2r.research.wtl.episodes import Episode, wtl_example
from t2r.research.wtl.scripted import ScriptedWTLPolicy, WTLDemoPolicy
from t2r.research.wtl.wtl_models import SHARED_MODULES, WTLRetrialModel, WTLTrialModel

__all__ = [
    "LearnedTrialScriptedRetrial",
    "Task",
    "collect_tasks",
    "evaluate_all",
    "evaluate_policy",
    "train_policy",
    "warm_start_retrial",
    "write_records",
]

logger = logging.getLogger(__name__)

#: One task's episodes: (demonstration, trial, retrial).
Task = tuple[Episode, Episode, Episode]


def collect_tasks(
    num_tasks: int, seed: int, policy: Any = None, env_kwargs: dict[str, Any] | None = None
) -> tuple[list[Task], list[list[float]]]:
    """Runs `num_tasks` tasks (demonstration, trial, retrial) with `policy` (default
    the scripted agent); returns the episodes and ``[trial, retrial]`` rewards per task."""
    from t2r.collect import run_meta_env
    from t2r.research.wtl.wtl_env import WatchTryLearnEnv

    env = WatchTryLearnEnv(seed=seed, **(env_kwargs or {}))
    episodes: list[Episode] = []
    try:
        result = run_meta_env(
            env,
            policy if policy is not None else ScriptedWTLPolicy(env.step_size),
            demo_policy_cls=WTLDemoPolicy,
            num_tasks=num_tasks,
            num_adaptations_per_task=2,
            num_episodes_per_adaptation=1,
            num_demos=1,
            on_episode=lambda index, episode: episodes.append(list(episode)),
            write_tf_summary=False,
            show_progress=False,
        )
    finally:
        env.close()
    tasks = [(episodes[i], episodes[i + 1], episodes[i + 2]) for i in range(0, len(episodes), 3)]
    return tasks, [list(r) for r in result.task_rewards]


def write_records(
    path: str | os.PathLike[str],
    model: WTLTrialModel,
    examples: Sequence[tuple[Sequence[Episode], Episode]],
) -> str:
    """One meta example per ``(condition episodes, inference episode)``, atomically."""
    from t2r.data import create_serialize_tf_example_fn
    from t2r.data.tfrecord import TFRecordWriter

    serialize = create_serialize_tf_example_fn(
        model.get_feature_specification_for_packing(ModeKeys.TRAIN),
        model.get_label_specification_for_packing(ModeKeys.TRAIN),
    )
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with TFRecordWriter(path) as writer:
        for condition, inference in examples:
            features, labels = wtl_example(condition, inference, model.episode_length)
            record = serialize(features, labels)
            assert isinstance(record, bytes)  # one dataset key: one record
            writer.write(record)
    return os.fspath(path)


def train_policy(
    model: WTLTrialModel,
    train_file: str,
    eval_file: str,
    model_dir: str | os.PathLike[str],
    steps: int,
    batch_size: int = 64,
    seed: int = 0,
    show_progress: bool = False,
    shuffle_buffer_size: int = 4096,
) -> tuple[Path, dict[str, float]]:
    """`train_eval_model` on the records; returns the export directory and the last eval.

    The shuffle buffer fills before the first batch: keep it near the number of
    records (tiny data sets repeat until it is full)."""
    from t2r.data import DefaultRecordInputGenerator
    from t2r.export import LatestExporter
    from t2r.export.exporters import export_dirs
    from t2r.train import train_eval_model

    def exporters(_: Any) -> list[LatestExporter]:
        return [LatestExporter(name="latest_exporter_numpy", exports_to_keep=2)]

    metrics = train_eval_model(
        model,
        DefaultRecordInputGenerator(
            train_file,
            batch_size=batch_size,
            seed=seed,
            shuffle_buffer_size=shuffle_buffer_size,
            num_workers=0,
        ),
        DefaultRecordInputGenerator(eval_file, batch_size=256, num_workers=0),
        max_train_steps=steps,
        model_dir=model_dir,
        eval_steps=None,
        save_checkpoints_steps=max(steps // 2, 1),
        create_exporters_fn=exporters,
        device="cpu",
        seed=seed,
        log_every_n_steps=max(steps // 10, 1),
        show_progress=show_progress,
    )
    return export_dirs(exporters(model), model_dir)["latest_exporter_numpy"], metrics


def warm_start_retrial(retrial: WTLRetrialModel, trial: WTLTrialModel) -> list[str]:
    """Copies the trained trial model's frame encoder, demonstration embedding and
    action head into `retrial` (the cube scorer's input differs and starts fresh);
    returns the copied modules."""
    for name in SHARED_MODULES:
        getattr(retrial, name).load_state_dict(getattr(trial, name).state_dict())
    return list(SHARED_MODULES)


def _predictor(export_dir: Path) -> Any:
    from t2r.predictors import ExportedModelPredictor

    predictor = ExportedModelPredictor(export_dir, num_threads=1)
    if not predictor.restore():
        raise RuntimeError(f"run_wtl: no export to restore in {export_dir}.")
    return predictor


class LearnedTrialScriptedRetrial:
    """Trials by a learned policy, retrials by the scripted agent: the retrial
    policy's training data in the paper's recipe (``--retrial_trials learned``)."""

    def __init__(self, trial_policy: Any, scripted: ScriptedWTLPolicy) -> None:
        self._trial = trial_policy
        self._scripted = scripted
        self._acting: Any = trial_policy

    def reset_task(self) -> None:
        self._trial.reset_task()
        self._scripted.reset_task()

    def reset(self) -> None:
        self._acting.reset()

    def adapt(self, episodes: Sequence[Episode]) -> None:
        self._acting = self._trial if len(episodes) == 1 else self._scripted
        self._acting.adapt(episodes)

    def sample_action(self, obs: Any, explore_prob: float) -> tuple[Any, Any]:
        return self._acting.sample_action(obs, explore_prob)


def evaluate_policy(policy: Any, num_tasks: int, seed: int) -> dict[str, float]:
    """Trial and retrial success of `policy` on `num_tasks` tasks of env seed `seed`, and
    the retrial's success split by the trial's outcome."""
    _, rewards = collect_tasks(num_tasks, seed, policy)
    per_task = np.asarray(rewards, dtype=np.float64)  # (tasks, [trial, retrial])
    failed = per_task[:, 0] == 0

    def mean(values: np.ndarray) -> float:
        return float(values.mean()) if len(values) else float("nan")

    return {
        "trial": mean(per_task[:, 0]),
        "retrial": mean(per_task[:, 1]),
        "retrial_after_failed_trial": mean(per_task[failed, 1]),
        "retrial_after_rewarded_trial": mean(per_task[~failed, 1]),
        "tasks": num_tasks,
    }


def evaluate_all(
    trial_export: Path, retrial_export: Path, num_tasks: int, seed: int, policy_seed: int = 0
) -> dict[str, dict[str, float]]:
    """`evaluate_policy` for WTL (the exports), the trial policy retrying, the random
    policy and the scripted agent, on the same `num_tasks` tasks of env seed `seed`."""
    from t2r.policies.policies import RandomPolicy
    from t2r.research.wtl.policies import WTLPolicy

    return {
        "wtl (trial policy, then retrial policy)": evaluate_policy(
            WTLPolicy(_predictor(trial_export), _predictor(retrial_export)), num_tasks, seed
        ),
        "trial policy twice (no learning from the trial)": evaluate_policy(
            WTLPolicy(_predictor(trial_export)), num_tasks, seed
        ),
        "random policy": evaluate_policy(RandomPolicy(seed=policy_seed), num_tasks, seed),
        "scripted agent (ceiling)": evaluate_policy(ScriptedWTLPolicy(), num_tasks, seed),
    }


def _timed(what: str, fn: Callable[[], Any], times: dict[str, float]) -> Any:
    start = time.perf_counter()
    out = fn()
    times[what] = time.perf_counter() - start
    logger.info("%s: %.1f s", what, times[what])
    return out


def _train_stage(
    stage: str,
    model: WTLTrialModel,
    train_tasks: Sequence[Task],
    valid_tasks: Sequence[Task],
    example: Callable[[Episode, Episode, Episode], tuple[Sequence[Episode], Episode]],
    args: argparse.Namespace,
    times: dict[str, float],
) -> tuple[Path, dict[str, float]]:
    """Writes ``<out_dir>/data/<stage>_{train,valid}.tfrecord`` (one meta example per
    task: ``example(demonstration, trial, retrial)`` -> (condition, inference)) and
    trains `model` on them in ``<out_dir>/<stage>`` (timed as ``train_<stage>``)."""
    out = Path(args.out_dir)
    train_file, valid_file = (
        write_records(
            out / "data" / f"{stage}_{split}.tfrecord", model, [example(*t) for t in tasks]
        )
        for split, tasks in (("train", train_tasks), ("valid", valid_tasks))
    )
    return _timed(
        f"train_{stage}",
        lambda: train_policy(
            model, train_file, valid_file, out / stage, args.steps, args.batch_size, args.seed
        ),
        times,
    )


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir")
    parser.add_argument("--train_tasks", type=int, default=4000)
    parser.add_argument("--valid_tasks", type=int, default=200)
    parser.add_argument("--eval_tasks", type=int, default=500)
    parser.add_argument("--steps", type=int, default=3000, help="training steps per policy")
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument(
        "--retrial_trials",
        choices=("scripted", "learned"),
        default="learned",
        help="whose trials the retrial policy learns from",
    )
    parser.add_argument(
        "--warm_start",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="start the retrial model from the trained trial model's shared modules",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--evaluate_only",
        action="store_true",
        help="evaluate OUT_DIR's exports again (no collection or training)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.manual_seed(args.seed)
    out = Path(args.out_dir)
    times: dict[str, float] = {}
    base = 1000 * args.seed
    if args.evaluate_only:
        trial_export, retrial_export = (
            out / name / "export" / "latest_exporter_numpy" for name in ("trial", "retrial")
        )
        results = evaluate_all(trial_export, retrial_export, args.eval_tasks, base + 4, args.seed)
        atomic_write_text(out / "evaluation.json", json.dumps(results, indent=2))
        print(json.dumps(results, indent=2))
        return {"results": results}
    train_tasks, scripted_train = _timed(
        "collect_train", lambda: collect_tasks(args.train_tasks, base + 1), times
    )
    valid_tasks, _ = collect_tasks(args.valid_tasks, base + 2)

    trial_model = WTLTrialModel()
    trial_export, trial_metrics = _train_stage(
        "trial", trial_model, train_tasks, valid_tasks, lambda d, t, _: ([d], t), args, times
    )

    from t2r.research.wtl.policies import WTLPolicy

    trial_only = WTLPolicy(_predictor(trial_export))
    retrial_train = train_tasks
    if args.retrial_trials == "learned":
        retrial_train, _ = _timed(
            "collect_retrial_train",
            lambda: collect_tasks(
                args.train_tasks,
                base + 3,
                LearnedTrialScriptedRetrial(trial_only, ScriptedWTLPolicy()),
            ),
            times,
        )
    retrial_model = WTLRetrialModel()
    if args.warm_start:
        warm_start_retrial(retrial_model, trial_model)
    retrial_export, retrial_metrics = _train_stage(
        "retrial",
        retrial_model,
        retrial_train,
        valid_tasks,
        lambda d, t, r: ([d, t], r),
        args,
        times,
    )

    results = _timed(
        "evaluate",
        lambda: evaluate_all(trial_export, retrial_export, args.eval_tasks, base + 4, args.seed),
        times,
    )
    summary = {
        "args": vars(args),
        "results": results,
        "theoretical_ceilings": {"no demonstration": 0.25, "trial": 0.5, "retrial": 1.0},
        "scripted_train_success": np.asarray(scripted_train).mean(axis=0).tolist(),
        "validation": {"trial": trial_metrics, "retrial": retrial_metrics},
        "secs": times,
        "machine": f"{platform.machine()} {os.cpu_count()} cpus, torch threads "
        f"{torch.get_num_threads()}",
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=2))
    print(json.dumps(summary, indent=2))
    return summary


if __name__ == "__main__":
    main()
