"""pose_env with hidden drift, learned with MAML (T2R's ``research/pose_env`` meta variant).

With ``PoseToyEnv(hidden_drift=True)`` every task adds a hidden offset
U(-0.3, 0.3)^2 to the duck's position: the target cannot be read from the
image, only inferred from a few labelled samples of the same task.

* `PoseEnvOracleDemoPolicy`: the demonstration policy of the meta collect
  path (``run_meta_env(demo_policy_cls=...)``): it answers the task's true
  target, so a demonstration is a labelled sample of the task.
* `pose_env_maml_model`: `MAMLModel` around `PoseEnvRegressionModel`, with
  learned per-parameter inner rates (one inner step, first order).
* `collect_meta_data`: per-task record files from `run_meta_env`.
* `python -m t2r.research.pose_env.pose_env_maml OUT_DIR`: collect, meta-train,
  and report the mean held-out error of the adapted model against the same
  model without adaptation (see ``docs/benchmarks.md``).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from t2r.atomic import atomic_write_text, write_safetensors
from t2r.meta_learning import MAMLInnerLoopGradientDescent, MAMLModel
from t2r.meta_learning.meta_data import MetaRecordInputGenerator
from t2r.modes import ModeKeys
from t2r.research.pose_env.episode_to_transitions import episode_to_transitions_pose_toy
from t2r.research.pose_env.pose_env_models import PoseEnvRegressionModel

__all__ = [
    "PoseEnvOracleDemoPolicy",
    "collect_meta_data",
    "evaluate",
    "pose_env_maml_model",
    "train",
]

logger = logging.getLogger(__name__)


class PoseEnvOracleDemoPolicy:
    """Demonstrates a pose_env task: the action is the env's true target (drift included).

    ``PoseEnvOracleDemoPolicy(env)``, as `run_meta_env` makes it; reads
    ``env.target_pose`` (the unwrapped `PoseToyEnv`'s).
    """

    def __init__(self, env: Any) -> None:
        self._env = getattr(env, "unwrapped", env)

    def sample_action(self, obs: Any, explore_prob: float) -> tuple[np.ndarray, dict[str, Any]]:
        del obs, explore_prob
        return np.asarray(self._env.target_pose, dtype=np.float32), {}

    def reset(self) -> None:
        """Nothing to reset."""


def pose_env_maml_model(
    num_condition_samples_per_task: int = 5,
    num_inference_samples_per_task: int = 5,
    inner_learning_rate: float = 0.02,
    use_second_order: bool = False,
    num_inner_loop_steps: int = 1,
    **kwargs: Any,
) -> MAMLModel:
    """`MAMLModel` around `PoseEnvRegressionModel` with learned per-parameter inner rates.

    A factory rather than a subclass: torch.export cannot yet capture the
    inner loop's backward through layer norm and spatial softmax (a fake
    tensor ends up among the program's constants), so this model does not
    export, and the registry's contract tests, which export every model class,
    would fail on it. MAML models whose base exports with its inner loop
    (e.g. linear and conv layers) go through the contract tests
    (``tests/meta_learning/models.py``).

    Args:
      num_condition_samples_per_task, num_inference_samples_per_task: Nc, Ni.
      inner_learning_rate: the initial learned inner rate of every parameter.
      use_second_order: full MAML (default: first order; the learned rates
        still get their gradient).
      num_inner_loop_steps: adaptation steps.
      **kwargs: `AbstractT2RModel` arguments.
    """
    return MAMLModel(
        PoseEnvRegressionModel(),
        num_inner_loop_steps=num_inner_loop_steps,
        inner_loop=MAMLInnerLoopGradientDescent(
            inner_learning_rate, use_second_order=use_second_order, learn_inner_lr=True
        ),
        num_condition_samples_per_task=num_condition_samples_per_task,
        num_inference_samples_per_task=num_inference_samples_per_task,
        **kwargs,
    )


def collect_meta_data(
    out_dir: str | os.PathLike[str],
    num_tasks: int,
    num_demos: int,
    num_episodes: int,
    seed: int,
) -> list[str]:
    """Per-task record files of the drifting pose_env: per task `num_demos` oracle
    demonstrations, then `num_episodes` random-policy episodes (all labelled with
    the drifted ``target_pose``). Returns the files."""
    from t2r.collect import TFRecordReplayWriter, run_meta_env
    from t2r.research.pose_env.pose_env import PoseEnvRandomPolicy, PoseToyEnv

    env = PoseToyEnv(hidden_drift=True, seed=seed)
    try:
        result = run_meta_env(
            env,
            PoseEnvRandomPolicy(seed=seed),
            demo_policy_cls=PoseEnvOracleDemoPolicy,
            num_demos=num_demos,
            num_episodes=num_episodes,
            num_tasks=num_tasks,
            num_adaptations_per_task=1,
            episode_to_transitions_fn=episode_to_transitions_pose_toy,
            replay_writer=TFRecordReplayWriter(),
            root_dir=out_dir,
            write_tf_summary=False,
            show_progress=False,
        )
    finally:
        env.close()
    return result.record_files


def evaluate(model: MAMLModel, files: list[str], batch_size: int = 16) -> dict[str, float]:
    """Mean held-out distance with and without adaptation over every task file."""
    generator = MetaRecordInputGenerator(files, batch_size=batch_size)
    generator.set_specification_from_model(model, ModeKeys.EVAL)
    totals: dict[str, list[float]] = {"mean_distance": [], "unadapted/mean_distance": []}
    weights: list[int] = []
    model.eval()
    with torch.no_grad():
        for features, labels in generator.create_dataset(ModeKeys.EVAL):
            metrics = model.model_fn(features, labels, ModeKeys.EVAL).eval_metrics
            for key in totals:
                totals[key].append(float(metrics[key]))
            weights.append(int(next(iter(labels.values())).shape[0]))
    return {k: float(np.average(v, weights=weights)) for k, v in totals.items()}


def train(
    model: MAMLModel,
    files: list[str],
    steps: int,
    batch_size: int = 8,
    learning_rate: float = 1e-3,
    inner_rate_learning_rate: float = 1e-2,
    seed: int = 0,
    log_every: int = 100,
    on_log: Any = None,
) -> list[dict[str, float]]:
    """Meta-trains `model`: Adam on the network (cosine decay) and, faster, on the
    learned inner rates. Returns the logged losses."""
    generator = MetaRecordInputGenerator(files, batch_size=batch_size, seed=seed)
    generator.set_specification_from_model(model, ModeKeys.TRAIN)
    rates = list(model.inner_loop.parameters())
    rate_ids = {id(p) for p in rates}
    network = [p for p in model.parameters() if id(p) not in rate_ids]
    optimizer = torch.optim.Adam(
        [
            {"params": network, "lr": learning_rate},
            {"params": rates, "lr": inner_rate_learning_rate},
        ]
    )
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)
    history: list[dict[str, float]] = []
    model.train()
    start = time.perf_counter()
    for step, (features, labels) in enumerate(generator.create_dataset(ModeKeys.TRAIN)):
        if step >= steps:
            break
        optimizer.zero_grad(set_to_none=True)
        outputs = model.model_fn(features, labels, ModeKeys.TRAIN)
        assert outputs.loss is not None
        outputs.loss.backward()
        optimizer.step()
        schedule.step()
        if (step + 1) % log_every == 0 or step + 1 == steps:
            entry = {
                "step": step + 1,
                "loss": float(outputs.loss),
                "inner_loss": float(outputs.train_outputs["inner_loss/step_0"]),
                "secs": time.perf_counter() - start,
            }
            history.append(entry)
            logger.info("%s", entry)
            if on_log is not None:
                on_log(entry)
    return history


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir")
    parser.add_argument("--train_tasks", type=int, default=1500)
    parser.add_argument("--eval_tasks", type=int, default=200)
    parser.add_argument("--num_demos", type=int, default=5, help="condition samples per task")
    parser.add_argument("--num_episodes", type=int, default=5, help="inference samples per task")
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--batch_size", type=int, default=8, help="tasks per meta batch")
    parser.add_argument("--learning_rate", type=float, default=2e-3)
    parser.add_argument(
        "--inner_rate_learning_rate", type=float, default=5e-2, help="Adam on the inner rates"
    )
    parser.add_argument("--log_every", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.manual_seed(args.seed)
    out = Path(args.out_dir)
    start = time.perf_counter()
    train_files = collect_meta_data(
        out / "train", args.train_tasks, args.num_demos, args.num_episodes, args.seed + 1
    )
    eval_files = collect_meta_data(
        out / "eval", args.eval_tasks, args.num_demos, args.num_episodes, args.seed + 2
    )
    collect_secs = time.perf_counter() - start
    model = pose_env_maml_model(args.num_demos, args.num_episodes)
    log_path = out / "train_log.jsonl"

    def on_log(entry: dict[str, float]) -> None:
        with open(log_path, "a") as f:
            f.write(json.dumps(entry) + "\n")

    before = evaluate(model, eval_files)
    history = train(
        model,
        train_files,
        args.steps,
        args.batch_size,
        learning_rate=args.learning_rate,
        inner_rate_learning_rate=args.inner_rate_learning_rate,
        seed=args.seed,
        log_every=args.log_every,
        on_log=on_log,
    )
    after = evaluate(model, eval_files)
    rates = {k: float(v) for k, v in model.inner_loop.learning_rates.items()}
    summary = {
        "args": vars(args),
        "collect_secs": collect_secs,
        "train_secs": history[-1]["secs"] if history else 0.0,
        "held_out_before_training": before,
        "held_out": after,
        "ratio_adapted_to_unadapted": after["mean_distance"] / after["unadapted/mean_distance"],
        "learned_inner_rates": rates,
    }
    model_dir = out / "model"
    model_dir.mkdir(parents=True, exist_ok=True)
    write_safetensors(model_dir / "model.safetensors", model.state_dict())
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=2))
    print(json.dumps(summary, indent=2))
    return summary


if __name__ == "__main__":
    main()
