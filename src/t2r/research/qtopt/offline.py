"""QT-Opt offline, in one process: collect episodes, fitted Q iteration with a lagged
target, evaluate the CEM policy. It validates the critic, the records, the Bellman
labeller and the policy before (and without) the distributed loop.

Fitted Q iteration here is the distributed loop's dataflow run in turn, through
the same pieces: episodes -> `grasp_episode_to_transitions` records ->
(per iteration) the lagged target is exported (`export_saved_model`) and
loaded (`ExportedModelPredictor`) -> `BellmanLabeller` labels every record ->
`label_records` -> the critic parses the labelled records with its own specs
and trains `steps_per_iteration` steps on random minibatches -> the next
iteration's target is the trained critic. ``benchmarks/qtopt_offline.py``
runs it on the grasp env and reports the CEM policy's success on held-out
objects against the random policy's.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from t2r.collect import run_env
from t2r.data import create_parse_tf_example_fn
from t2r.export import export_saved_model
from t2r.modes import ModeKeys
from t2r.policies import RandomPolicy
from t2r.predictors import ExportedModelPredictor
from t2r.research.qtopt.bellman import BellmanLabeller
from t2r.research.qtopt.models import Grasping44CriticModel
from t2r.research.qtopt.transitions import (
    grasp_episode_to_transitions,
    label_records,
    parse_transitions,
)

__all__ = [
    "IterationStats",
    "RandomAfterScripted",
    "collect_episodes",
    "evaluate_success",
    "fitted_q_iteration",
]

logger = logging.getLogger(__name__)

Episode = list[tuple[Any, ...]]


def collect_episodes(env: Any, policy: Any, num_episodes: int) -> list[Episode]:
    """`num_episodes` episodes of `policy` in `env` (t2r's `run_env`), as transition lists."""
    episodes: list[Episode] = []
    run_env(
        env,
        policy,
        num_episodes=num_episodes,
        on_episode=lambda _index, episode: episodes.append(list(episode)),
        show_progress=False,
    )
    return episodes


class RandomAfterScripted:
    """Acts as `scripted` for a random 1-7 steps of each episode, then uniformly at
    random: logs of approaches that end anywhere (near misses and lucky grasps),
    which a critic learns most from. `scripted` is a `ScriptedGraspPolicy`."""

    def __init__(self, scripted: Any, seed: int) -> None:
        self._scripted = scripted
        self._random = RandomPolicy(6, seed=seed + 7)
        self._rng = np.random.default_rng(seed + 11)
        self._switch_at = 0
        self._step = 0

    def reset(self) -> None:
        self._scripted.reset()
        self._step = 0
        self._switch_at = int(self._rng.integers(1, 8))

    def sample_action(self, obs: object, explore_prob: float) -> tuple[np.ndarray, None]:
        del explore_prob
        self._step += 1
        policy = self._scripted if self._step <= self._switch_at else self._random
        return policy.select_action(obs), None


def evaluate_success(env: Any, policy: Any, num_episodes: int) -> float:
    """The fraction of `num_episodes` episodes of `policy` in `env` that lift an object."""
    result = run_env(env, policy, num_episodes=num_episodes, show_progress=False)
    return float(np.mean(np.asarray(result.episode_rewards) > 0.5))


@dataclasses.dataclass
class IterationStats:
    """One fitted-Q iteration: targets of the live (not done) transitions, the train
    loss over its first and last tenth of steps, and seconds spent labelling / training."""

    iteration: int
    mean_target_live: float
    first_loss: float
    last_loss: float
    label_secs: float
    train_secs: float


def _subset(struct: Any, index: np.ndarray) -> dict[str, torch.Tensor]:
    return {key: value[index] for key, value in struct.items()}


def fitted_q_iteration(
    model: Grasping44CriticModel,
    records: Sequence[bytes],
    work_dir: str | Path,
    iterations: int,
    steps_per_iteration: int,
    batch_size: int = 32,
    gamma: float = 0.9,
    seed: int = 0,
    optimizer: torch.optim.Optimizer | None = None,
    on_iteration: Callable[[IterationStats], None] | None = None,
    clipped_double_q: bool = False,
) -> list[IterationStats]:
    """Trains `model` on `records` (transition records) by fitted Q iteration.

    Each iteration exports the critic as the lagged target to
    ``work_dir/target``, labels all records with `BellmanLabeller` on that
    export (CEM max over next actions), and trains `steps_per_iteration`
    steps of `model.train_step` on minibatches of the labelled records.

    Args:
      model: the critic; its `action_batch_size` is CEM's sample count (64).
      records: serialized transition records.
      work_dir: where the target exports go.
      iterations: target refreshes.
      steps_per_iteration: training steps between refreshes.
      batch_size: minibatch size.
      gamma: the discount.
      seed: seeds minibatch sampling and CEM.
      optimizer: default ``model.create_optimizer()``.
      on_iteration: called with each iteration's stats.
      clipped_double_q: QT-Opt's clipped double Q-learning: from the second
        iteration on, the max is of the minimum of the newest target and the
        one before it (exports alternate between ``work_dir/target_0`` and
        ``work_dir/target_1``).
    """
    if not records:
        raise ValueError("fitted_q_iteration: no records.")
    image_size = model.image_size
    transitions = parse_transitions(records, image_size)
    live = np.asarray(transitions["done"]).reshape(-1) < 0.5
    parse = create_parse_tf_example_fn(
        model.get_feature_specification_for_packing(ModeKeys.TRAIN),
        model.get_label_specification_for_packing(ModeKeys.TRAIN),
    )
    optimizer = optimizer or model.create_optimizer()  # type: ignore[assignment]
    assert isinstance(optimizer, torch.optim.Optimizer)
    rng = np.random.default_rng(seed)
    target_dirs = [Path(work_dir) / "target"]
    if clipped_double_q:
        target_dirs = [Path(work_dir) / "target_0", Path(work_dir) / "target_1"]
    stats: list[IterationStats] = []
    for iteration in range(iterations):
        start = time.perf_counter()
        model.eval()
        target_dir = target_dirs[iteration % len(target_dirs)]
        export_saved_model(model, target_dir, global_step=iteration, exports_to_keep=2)
        predictor = ExportedModelPredictor(target_dir, timeout=0, trust_torchscript=True)
        if not predictor.restore():
            raise RuntimeError(f"fitted_q_iteration: no target export in {target_dir}.")
        second = None
        if clipped_double_q and iteration > 0:
            older = target_dirs[(iteration - 1) % len(target_dirs)]
            second = ExportedModelPredictor(older, timeout=0, trust_torchscript=True)
            if not second.restore():
                raise RuntimeError(f"fitted_q_iteration: no target export in {older}.")
        labeller = BellmanLabeller(
            predictor, model, gamma=gamma, seed=seed + iteration, second_target_predictor=second
        )
        target_q = labeller.label(transitions)
        features, labels = parse(label_records(records, target_q, image_size))
        label_secs = time.perf_counter() - start

        start = time.perf_counter()
        model.train()
        losses = []
        count = len(records)
        for _ in range(steps_per_iteration):
            index = rng.choice(count, size=min(batch_size, count), replace=False)
            outputs = model.train_step(_subset(features, index), _subset(labels, index), optimizer)
            losses.append(float(outputs.loss))
        tenth = max(1, len(losses) // 10)
        entry = IterationStats(
            iteration=iteration,
            mean_target_live=float(target_q[live].mean()) if live.any() else float("nan"),
            first_loss=float(np.mean(losses[:tenth])) if losses else float("nan"),
            last_loss=float(np.mean(losses[-tenth:])) if losses else float("nan"),
            label_secs=label_secs,
            train_secs=time.perf_counter() - start,
        )
        logger.info("fitted Q iteration %s", entry)
        stats.append(entry)
        if on_iteration is not None:
            on_iteration(entry)
    model.eval()
    return stats


def episodes_to_records(episodes: Sequence[Episode]) -> list[bytes]:
    """Every transition of `episodes` as a record (`grasp_episode_to_transitions`)."""
    records: list[bytes] = []
    for episode in episodes:
        records.extend(grasp_episode_to_transitions(episode))
    return records
