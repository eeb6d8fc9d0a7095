"""``t2r demo``: pose_env end to end — collect, train, export, evaluate, show.

1. **Collect** random episodes (`PoseEnvRandomPolicy`, a new camera and duck
   pose every episode) with `collectors` processes (`t2r.collect.ProcessCollector`),
   each with its own env and seed, all writing TFRecords into one directory
   through `t2r.collect.collect_eval_loop`; the first collector also writes a
   validation set on separate tasks.
2. **Train** `PoseEnvRegressionModel` on those records with `train_eval_model`:
   evaluated on the validation set and exported
   (`create_default_exporters`) every `eval_every` steps.
3. **Evaluate** the exported policy (`RegressionPolicy` over
   `ExportedModelPredictor`, no model code) on held-out tasks through the
   collect-eval loop, beside the random policy on the same tasks.
4. **Report**: a summary table on stdout, and under `output_dir`:
   ``summary.txt`` / ``summary.json``, ``learning_curve.png``,
   ``heldout_predictions.png`` (true position green, prediction red),
   TensorBoard logs (``tensorboard --logdir <output_dir>``), the records
   (``data/``), checkpoints and exports (``model/``), eval records and
   summaries (``eval_random/``, ``eval_trained/``).

`run_demo(DemoConfig(...))` is the library entry point; the CLI only parses
flags into a `DemoConfig`.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import math
import os
import platform
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from t2r.atomic import atomic_write_text

logger = logging.getLogger(__name__)

__all__ = ["DemoConfig", "DemoError", "run_demo"]

MARKER_FILENAME = ".t2r_demo"
TARGET_ERROR = 0.05
# Seed offsets: training collectors use seed * 1000 + 1 + i; the validation set and the
# held-out test tasks get their own streams, so no task is shared between them.
_VALIDATION_SEED_OFFSET = 500
_TEST_SEED_OFFSET = 900


class DemoError(RuntimeError):
    """The demo cannot run as asked (e.g. its output directory holds another run)."""


@dataclasses.dataclass
class DemoConfig:
    """What the demo does; the defaults finish in a few minutes on 2 CPU cores.

    Attributes:
      output_dir: where everything goes; must be new or empty (see `overwrite`).
      overwrite: replace an earlier demo run in `output_dir`.
      episodes: training episodes to collect (over all collectors).
      collectors: collector processes.
      validation_episodes: episodes of the validation set (periodic eval).
      eval_episodes: held-out episodes for the final evaluation of each policy.
      train_steps: training steps.
      batch_size: training batch size.
      learning_rate: Adam's peak learning rate (cosine decay to 2% of it).
      eval_every: validation eval, checkpoint and export interval (steps).
      device: 'auto' (CUDA when available), 'cpu', 'cuda', 'cuda:1', ...
      compile: torch.compile the network for training.
      num_workers: DataLoader worker processes for training (0: in-process).
      episodes_per_file: episodes per TFRecord file.
      grid_images: held-out images in the prediction grid.
      seed: the run's seed (envs, random policy, training).
      show_progress: progress bars.
    """

    output_dir: str = "demo_out"
    overwrite: bool = False
    episodes: int = 16000
    collectors: int = 2
    validation_episodes: int = 1000
    eval_episodes: int = 1000
    train_steps: int = 4000
    batch_size: int = 64
    learning_rate: float = 2e-3
    eval_every: int = 500
    device: str = "auto"
    compile: bool = False
    num_workers: int = 0
    episodes_per_file: int = 1000
    grid_images: int = 16
    seed: int = 0
    show_progress: bool = True

    def validate(self) -> None:
        positive = {
            "episodes": self.episodes,
            "collectors": self.collectors,
            "train_steps": self.train_steps,
            "batch_size": self.batch_size,
            "eval_every": self.eval_every,
            "eval_episodes": self.eval_episodes,
            "validation_episodes": self.validation_episodes,
            "episodes_per_file": self.episodes_per_file,
        }
        for name, value in positive.items():
            if value < 1:
                raise DemoError(f"t2r demo: --{name} must be >= 1, got {value}.")
        if self.collectors > self.episodes:
            raise DemoError(
                f"t2r demo: {self.collectors} collectors for {self.episodes} episodes; "
                "use at most one collector per episode."
            )
        if self.learning_rate <= 0:
            raise DemoError(f"t2r demo: --learning_rate must be > 0, got {self.learning_rate}.")


# ----------------------------------------------------------------------------- output dir
def prepare_output_dir(path: str | os.PathLike[str], overwrite: bool) -> Path:
    """Creates `path` for a new run; refuses to mix with an earlier one.

    A non-empty directory is an error unless `overwrite` is set and it holds
    the demo's marker file (so that `overwrite` never deletes a directory the
    demo did not make).
    """
    out = Path(path)
    if out.exists() and not out.is_dir():
        raise DemoError(f"t2r demo: {out} exists and is not a directory.")
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            raise DemoError(
                f"t2r demo: {out} holds an earlier run. Pass --overwrite to replace it, or "
                "--output_dir to write elsewhere."
            )
        if not (out / MARKER_FILENAME).is_file():
            raise DemoError(
                f"t2r demo: {out} is not empty and was not written by t2r demo (no "
                f"{MARKER_FILENAME}); not deleting it. Choose another --output_dir."
            )
        logger.info("Removing the earlier demo run in %s.", out)
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(
        out / MARKER_FILENAME, "written by `t2r demo`; --overwrite may delete this dir\n"
    )
    return out


# ----------------------------------------------------------------------------- collection
def _collect_shard(
    shard: Any,
    on_episode: Any,
    validation_episodes: int,
    validation_seed: int,
    episodes_per_file: int,
) -> dict[str, Any]:
    """A `t2r.collect.CollectFn`: random episodes into the shard's root (shard 0: validation)."""
    from t2r.collect import TFRecordReplayWriter, collect_eval_loop, run_env
    from t2r.research.pose_env.episode_to_transitions import episode_to_transitions_pose_toy
    from t2r.research.pose_env.pose_env import PoseEnvRandomPolicy, PoseToyEnv

    validation_episodes = validation_episodes if shard.index == 0 else 0
    run_agent_fn = functools.partial(
        run_env,
        episodes_per_task=1,
        episode_to_transitions_fn=episode_to_transitions_pose_toy,
        replay_writer=TFRecordReplayWriter(max_episodes_per_file=episodes_per_file),
        on_episode=lambda index, episode: on_episode(),
        show_progress=False,
    )
    collect_env = PoseToyEnv(seed=shard.seed)
    eval_env = PoseToyEnv(seed=validation_seed) if validation_episodes else None
    try:
        handled = collect_eval_loop(
            collect_env,
            eval_env,
            policy_class=PoseEnvRandomPolicy(seed=shard.seed),
            num_collect=shard.num_episodes,
            num_eval=validation_episodes,
            run_agent_fn=run_agent_fn,
            root_dir=shard.root_dir,
            task=shard.index,
        )
    finally:
        collect_env.close()
        if eval_env is not None:
            eval_env.close()
    (step_results,) = handled.values()
    return dict(step_results)


def collect_parallel(config: DemoConfig, data_dir: Path) -> dict[str, Any]:
    """Runs the collector processes (`t2r.collect.ProcessCollector`); returns episodes,
    transitions, files and rates."""
    from t2r.collect import ProcessCollector, split_shards

    shards = split_shards(config.episodes, config.collectors, data_dir, seed=config.seed)
    collect_fn = functools.partial(
        _collect_shard,
        validation_episodes=config.validation_episodes,
        validation_seed=config.seed * 1000 + _VALIDATION_SEED_OFFSET,
        episodes_per_file=config.episodes_per_file,
    )
    collector = ProcessCollector(
        show_progress=config.show_progress,
        expected_episodes=config.episodes + config.validation_episodes,
    )
    report = collector.collect(collect_fn, shards)
    collected = report.tagged("collect")
    validation = report.tagged("eval")
    transitions = report.num_transitions
    busy = max(r.elapsed_secs for r in collected)
    return {
        "episodes": report.num_episodes,
        "transitions": transitions,
        "validation_episodes": sum(r.num_episodes for r in validation),
        "files": sum(len(r.record_files) for r in collected),
        "random_policy_train_error": -float(
            np.average(
                [r.mean_reward for r in collected], weights=[r.num_episodes for r in collected]
            )
        ),
        "wall_secs": report.wall_secs,
        # Rendering + writing only (the processes' start-up excluded), over all collectors.
        "transitions_per_sec": transitions / busy if busy > 0 else float("nan"),
        "per_collector_transitions_per_sec": [r.transitions_per_sec for r in collected],
    }


# ----------------------------------------------------------------------------- training
def train(config: DemoConfig, data_dir: Path, model_dir: Path) -> dict[str, Any]:
    """Trains PoseEnvRegressionModel on the collected records; returns the last eval."""
    from t2r.collect import records_pattern
    from t2r.data import DefaultRecordInputGenerator
    from t2r.export import create_default_exporters
    from t2r.models import create_adam_optimizer
    from t2r.models.optimizers import create_warmup_cosine_schedule
    from t2r.research.pose_env.pose_env_models import PoseEnvRegressionModel
    from t2r.train import train_eval_model

    steps = config.train_steps
    model = PoseEnvRegressionModel(
        create_optimizer_fn=functools.partial(
            create_adam_optimizer, learning_rate=config.learning_rate
        ),
        create_lr_scheduler_fn=functools.partial(
            create_warmup_cosine_schedule,
            warmup_steps=min(50, max(steps // 10, 1)),
            total_steps=steps,
            min_ratio=0.02,
        ),
    )
    train_input = DefaultRecordInputGenerator(
        records_pattern(data_dir, "collect"),
        batch_size=config.batch_size,
        seed=config.seed,
        num_workers=config.num_workers,
        shuffle_buffer_size=2000,
        label="train records",
    )
    eval_input = DefaultRecordInputGenerator(
        records_pattern(data_dir, "eval"),
        batch_size=250,
        label="validation records",
    )
    start = time.perf_counter()
    metrics = train_eval_model(
        model,
        train_input,
        eval_input,
        max_train_steps=steps,
        model_dir=str(model_dir),
        eval_steps=None,
        save_checkpoints_steps=min(config.eval_every, steps),
        create_exporters_fn=create_default_exporters,
        device=config.device,
        compile=config.compile,
        seed=config.seed,
        log_every_n_steps=max(1, min(100, config.eval_every // 2)),
        show_progress=config.show_progress,
    )
    elapsed = time.perf_counter() - start
    device = next(model.parameters()).device
    return {
        "validation_metrics": metrics,
        "wall_secs": elapsed,
        "steps_per_sec": steps / elapsed,
        "device": str(device),
    }


# ----------------------------------------------------------------------------- evaluation
def _grid_capture(env: Any, limit: int, items: list[Any]) -> Any:
    from t2r.research.pose_env.visualize import GridItem

    def capture(episode_index: int, episode: Any) -> None:
        if len(items) >= limit:
            return
        obs, action, reward, _, _, info = episode[0]
        target = np.asarray(info["target_pose"], dtype=np.float64)
        items.append(
            GridItem(
                image=np.asarray(obs),
                true_pixel=env.world_to_pixel(target),
                predicted_pixel=env.world_to_pixel(np.asarray(action, dtype=np.float64)),
                error=-float(reward),
            )
        )

    return capture


def evaluate_policy(
    config: DemoConfig,
    root_dir: Path,
    policy_class: Any,
    grid_items: list[Any] | None = None,
) -> dict[str, Any]:
    """Runs `policy_class` on the held-out tasks through the collect-eval loop."""
    from t2r.collect import TFRecordReplayWriter, collect_eval_loop, run_env
    from t2r.research.pose_env.episode_to_transitions import episode_to_transitions_pose_toy
    from t2r.research.pose_env.pose_env import PoseToyEnv

    env = PoseToyEnv(seed=config.seed * 1000 + _TEST_SEED_OFFSET)
    on_episode = (
        _grid_capture(env, config.grid_images, grid_items) if grid_items is not None else None
    )
    run_agent_fn = functools.partial(
        run_env,
        episodes_per_task=1,
        episode_to_transitions_fn=episode_to_transitions_pose_toy,
        replay_writer=TFRecordReplayWriter(),
        on_episode=on_episode,
        show_progress=config.show_progress,
    )
    start = time.perf_counter()
    try:
        handled = collect_eval_loop(
            None,
            env,
            policy_class=policy_class,
            num_eval=config.eval_episodes,
            run_agent_fn=run_agent_fn,
            root_dir=str(root_dir),
            poll_interval_secs=1.0,
            timeout_secs=60.0,
        )
    finally:
        env.close()
    if not handled:
        raise RuntimeError(f"t2r demo: the collect-eval loop in {root_dir} evaluated nothing.")
    ((global_step, results),) = handled.items()
    result = results["eval"]
    return {
        "global_step": global_step,
        "mean_error": -result.mean_reward,
        "median_error": float(np.median(-np.asarray(result.episode_rewards))),
        "episodes": result.num_episodes,
        "wall_secs": time.perf_counter() - start,
    }


def _trained_policy_factory(export_dir: Path) -> Any:
    from t2r.policies import RegressionPolicy
    from t2r.predictors import ExportedModelPredictor
    from t2r.research.pose_env.pose_env_models import PoseEnvRegressionModel

    def make() -> Any:
        # The model only packs observations into features; the export runs the network.
        return RegressionPolicy(
            t2r_model=PoseEnvRegressionModel(),
            predictor=ExportedModelPredictor(export_dir, timeout=60.0),
        )

    return make


# ----------------------------------------------------------------------------- reporting
def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    from t2r.train import read_metrics

    return read_metrics(path) if path.is_file() else []


def draw_learning_curve(
    out: Path, model_dir: Path, random_error: float, final_error: float, final_step: int
) -> Path:
    from t2r.research.pose_env.visualize import Curve
    from t2r.research.pose_env.visualize import draw_learning_curve as draw

    train_records = [r for r in _read_jsonl(model_dir / "metrics.jsonl") if "loss" in r]
    eval_records = [r for r in _read_jsonl(model_dir / "eval" / "metrics.jsonl")]
    curves = [
        # The loss is the mean squared error per coordinate: sqrt(2 * loss) is the
        # root-mean-square distance, comparable with the mean distance.
        Curve(
            "train: RMS error of the batch",
            [r["step"] for r in train_records],
            [math.sqrt(2 * max(float(r["loss"]), 0.0)) for r in train_records],
            color=(255, 127, 14),
        ),
        Curve(
            "validation records: mean error",
            [r["step"] for r in eval_records],
            [float(r.get("mean_distance", float("nan"))) for r in eval_records],
            color=(31, 119, 180),
        ),
        Curve(
            "held-out episodes: exported policy",
            [final_step],
            [final_error],
            color=(214, 39, 40),
            marker_size=6.0,
        ),
    ]
    path = out / "learning_curve.png"
    draw(
        path,
        curves,
        hlines=[
            ("random policy", random_error, (128, 128, 128)),
            ("target", TARGET_ERROR, (44, 160, 44)),
        ],
        title="PoseEnvRegressionModel: position error while training",
    )
    return path


def format_summary(summary: dict[str, Any]) -> str:
    """The table the demo prints."""
    c, t, r, e = (summary[k] for k in ("collect", "train", "eval_random", "eval_trained"))
    cfg = summary["config"]
    target = "reached" if e["mean_error"] <= TARGET_ERROR else "NOT reached"
    compiled = ", compiled" if cfg["compile"] else ""
    rule = "-" * 92

    def row(label: str, text: str, secs: float | None = None) -> str:
        time_text = f"{secs:8.1f} s" if secs is not None else ""
        return f"  {label:<18}{text:<62}{time_text}".rstrip()

    return "\n".join(
        [
            rule,
            f"t2r demo: pose_env, end to end -> {summary['output_dir']}",
            rule,
            row("", f"mean position error on {e['episodes']:,} held-out tasks"),
            row("random policy", f"{r['mean_error']:.3f}"),
            row(
                "trained policy",
                f"{e['mean_error']:.3f}  (export at step {e['global_step']:,}; "
                f"target <= {TARGET_ERROR}: {target})",
            ),
            rule,
            " " * (2 + 18 + 62) + f"{'wall time':>10}",
            row(
                "collect",
                f"{c['episodes']:,} random episodes + {c['validation_episodes']:,} validation, "
                f"{cfg['collectors']} processes",
                c["wall_secs"],
            ),
            row("", f"{c['transitions_per_sec']:,.0f} transitions/s, {c['files']} record files"),
            row(
                "train",
                f"{cfg['train_steps']:,} steps, batch {cfg['batch_size']}, "
                f"{t['steps_per_sec']:.1f} steps/s ({t['device']}{compiled})",
                t["wall_secs"],
            ),
            row(
                "evaluate",
                f"{r['episodes']:,} + {e['episodes']:,} held-out episodes (random, exported)",
                r["wall_secs"] + e["wall_secs"],
            ),
            row("total", "", summary["wall_secs"]),
            rule,
            f"  pictures     {summary['files']['learning_curve']}",
            f"               {summary['files']['prediction_grid']}",
            f"  export       {summary['files']['export']}",
            f"  TensorBoard  tensorboard --logdir {summary['output_dir']}",
            rule,
        ]
    )


# ----------------------------------------------------------------------------- the demo
def run_demo(config: DemoConfig) -> dict[str, Any]:
    """Runs the whole demo (see the module docstring); returns the summary dict.

    The summary is also written to ``<output_dir>/summary.json`` and, as a
    table, to ``<output_dir>/summary.txt``. Log messages are routed around
    the progress bars.
    """
    from tqdm.contrib.logging import logging_redirect_tqdm

    with logging_redirect_tqdm():
        return _run_demo(config)


def _run_demo(config: DemoConfig) -> dict[str, Any]:
    config.validate()
    start = time.perf_counter()
    out = prepare_output_dir(config.output_dir, config.overwrite)
    data_dir, model_dir = out / "data", out / "model"
    logger.info("t2r demo: writing to %s.", out)

    logger.info(
        "1/4 Collecting %d random episodes with %d processes.", config.episodes, config.collectors
    )
    collect = collect_parallel(config, data_dir)

    logger.info("2/4 Training PoseEnvRegressionModel for %d steps.", config.train_steps)
    trained = train(config, data_dir, model_dir)
    export_dir = model_dir / "export" / "latest_exporter_numpy"

    logger.info("3/4 Evaluating the random and the exported policy on held-out tasks.")
    from t2r.research.pose_env.pose_env import PoseEnvRandomPolicy

    random_eval = evaluate_policy(
        config, out / "eval_random", functools.partial(PoseEnvRandomPolicy, seed=config.seed)
    )
    grid_items: list[Any] = []
    trained_eval = evaluate_policy(
        config, out / "eval_trained", _trained_policy_factory(export_dir), grid_items
    )

    logger.info("4/4 Drawing the pictures.")
    from t2r.research.pose_env.visualize import draw_prediction_grid

    curve = draw_learning_curve(
        out,
        model_dir,
        random_eval["mean_error"],
        trained_eval["mean_error"],
        trained_eval["global_step"],
    )
    grid = out / "heldout_predictions.png"
    draw_prediction_grid(
        grid,
        grid_items,
        columns=4,
        title=(
            f"held-out tasks: true position (green) and the exported policy's prediction "
            f"(red), step {trained_eval['global_step']:,}"
        ),
    )
    summary: dict[str, Any] = {
        "output_dir": str(out),
        "config": dataclasses.asdict(config),
        "collect": collect,
        "train": trained,
        "eval_random": random_eval,
        "eval_trained": trained_eval,
        "target_error": TARGET_ERROR,
        "target_reached": trained_eval["mean_error"] <= TARGET_ERROR,
        "files": {
            "learning_curve": str(curve),
            "prediction_grid": str(grid),
            "export": str(export_dir / str(trained_eval["global_step"])),
            "records": str(data_dir),
        },
        "machine": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "cpu_count": os.cpu_count(),
            "processor": platform.processor() or platform.machine(),
        },
    }
    summary["wall_secs"] = time.perf_counter() - start
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=1, default=str) + "\n")
    atomic_write_text(out / "summary.txt", format_summary(summary) + "\n")
    return summary
