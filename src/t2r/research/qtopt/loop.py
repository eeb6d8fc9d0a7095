"""QT-Opt's distributed loop on one machine or a cluster: Ray collectors, Bellman updaters,
torchrun learners, exports flowing back (Kalashnikov et al., 2018; docs/qtopt.md).

Who writes what, under ``output_dir``:

==========================  =============================  ==============================
path                        written by                     read by
==========================  =============================  ==============================
``export/<step>/``          learner rank 0 (every N steps) collectors, evaluator
``export_lagged/<step>/``   learner rank 0, one version    Bellman updaters (the target
                            behind (`t2r.export.TD3Hooks`)  network; the two newest
                                                           with clipped double Q)
``replay/policy_collect/``  collectors (Ray actors), one    Bellman updaters, each its
                            file per round, atomically     own files (`owns_replay_file`)
``labelled/``               Bellman updaters (Ray actors): learners
                            each replay file + target_q,
                            relabelled with newer targets
``model/``                  learner rank 0: checkpoints    learners (resume)
``eval/live_eval_<t>/``     evaluator (a Ray actor):       the driver (progress.csv)
                            held-out success per export
``eval/greedy/``            evaluator: how each export's   the driver (evals.csv)
                            greedy episodes ended
``progress.csv``,           the driver (``t2r qtopt``)     you
``evals.csv``,
``success.png``
==========================  =============================  ==============================

Before anything starts, the driver exports the freshly initialized critic as
version 0 into ``export/`` and ``export_lagged/``, so collectors and the
updater have a policy and a target from the first second. The collectors act
with `PerEpisodeSwitchPolicy`: per episode, with a probability that falls
linearly with the newest export's step (`explore_prob`), an exploration policy
(itself a per-episode switch between the env's noisy scripted grasp and
uniform random actions), else T2R's CEM on the newest export
(`qtopt_cem_policy`). The evaluator runs the newest export greedily on the
held-out ("test") objects, the same scenes for every export, and the random
policy once on those scenes: the baseline measured in the same run.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import functools
import json
import logging
import math
import os
import signal
import subprocess
import sys
import time
import zlib
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from t2r.atomic import atomic_write_text
from t2r.collect.parallel import CollectShard
from t2r.collect.ray_collector import (
    ActorStatus,
    ContinuousCollection,
    LoopContext,
    RayCollector,
    default_num_cpus,
    ray_session,
)

__all__ = [
    "EVAL_FIELDS",
    "PROGRESS_FIELDS",
    "GreedyEpisodeStats",
    "QTOptConfig",
    "QTOptError",
    "bellman_update_loop",
    "bootstrap_exports",
    "collect_loop",
    "evaluate_loop",
    "explore_prob",
    "learner_command",
    "next_replay_file",
    "owns_replay_file",
    "run_qtopt",
]

logger = logging.getLogger(__name__)

PROGRESS_FIELDS = (
    "wall_secs",
    "episodes",
    "transitions",
    "collect_success",
    "labelled_transitions",
    "target_step",
    "learner_step",
    "eval_step",
    "eval_success",
    "random_success",
    "collector_restarts",
)

#: evals.csv: one row per evaluated export. Besides success, what tests the
#: overestimation hypothesis (a critic that overvalues going on never terminates):
#: the greedy episodes' mean length, the fractions that ended by the terminate
#: action and by running out of steps, and the critic's Q of its first chosen action.
EVAL_FIELDS = (
    "wall_secs",
    "step",
    "success",
    "mean_length",
    "terminated_fraction",
    "out_of_steps_fraction",
    "first_q",
)


class QTOptError(RuntimeError):
    """The loop could not run: a learner failed, a worker raised, a bad configuration."""


class _Stop(Exception):
    """Raised inside run_env's episode callback to end a round when asked to stop."""


@dataclasses.dataclass
class QTOptConfig:
    """Everything the loop's roles need (plain data: it travels to Ray actors).

    Attributes:
      output_dir: where everything goes (see the module docstring).
      collectors: collector actors.
      updaters: Bellman updater actors; each labels its own share of the replay
        files (`owns_replay_file`), so every transition is labelled by one.
      clipped_double_q: QT-Opt's clipped double Q: the Bellman target's max is of
        the minimum of two target critics, the newest and the second newest
        lagged export (lagging the learner by one and two export intervals).
      learners: torchrun learner processes (``--nproc_per_node``).
      steps: learner steps in all; the loop ends when the learner reaches them.
      image_size, num_objects, max_episode_steps: the grasp env's.
      grasp_at_time_limit: the grasp env's (True: an episode cut at the step limit
        closes the gripper before the lift, as terminating does; see `GraspEnv`
        and docs/qtopt.md for why False, though principled, learned worse).
      batch_size: learner batch per rank.
      learning_rate: Adam's (None: the model's default, 1e-4).
      network: the critic's size, a `t2r.research.qtopt.learner.NETWORKS` name.
      initial_q: the untrained critic's Q everywhere (T2R's 0.5: see `Grasping44`).
      export_every: learner steps between exports (and target updates).
      checkpoint_every: learner steps between checkpoints.
      gamma, cem_iters, cem_samples, num_elites: QT-Opt's / T2R's 0.9, 3, 64, 10.
      step_penalty: subtracted from the Bellman target of every transition that does
        not end its episode (QT-Opt's 0.05; 0: none).
      mc_lower_bound: Bellman targets are at least the discounted return the episode
        went on to get (`BellmanLabeller`'s ``mc_lower_bound``).
      mc_mix: the share of the episode's discounted return in the Bellman target
        (`BellmanLabeller`'s ``mc_mix``; 0: none).
      label_window: the learners read only this many most recently labelled
        files (QT-Opt's train buffer holds only fresh labels); None: every labelled
        file, whatever the age of its target.
      samples_per_label: the learners wait for the Bellman updaters rather than
        draw more than this many training samples per label written
        (`t2r.research.qtopt.learner.LabelRateLimit`); None: they never wait.
      explore_start, explore_end, explore_decay_steps: the probability that a
        collector's episode is an exploration episode, linear in the newest
        export's step from start to end over decay_steps (then constant).
      random_explore_fraction: of exploration episodes, the share of uniform
        random ones (the rest: the scripted grasp with `scripted_noise`).
      episodes_per_round: episodes a collector runs before it looks for a new
        export (one replay file per round).
      eval_episodes: held-out episodes per evaluated export.
      random_eval_episodes: held-out episodes of the random baseline.
      eval_seed: seeds the held-out scenes (the same for every evaluation).
      num_cpus_per_actor: Ray CPU share per actor (None: the Ray CPUs split
        over collectors + updater + evaluator).
      ray_address: a Ray cluster (None: a local instance).
      ray_num_cpus: CPUs of a local Ray instance (None: `default_num_cpus`).
      torchrun_args: rendezvous arguments of torchrun (None: ``--standalone``;
        on a cluster e.g. ``['--nnodes=2', '--rdzv-backend=c10d',
        '--rdzv-endpoint=head:29400', '--rdzv-id=qtopt']``).
      learner_max_restarts: torchrun's ``--max-restarts`` (a killed learner
        comes back and resumes from its checkpoint).
      poll_secs: how often the driver reports progress.
      seed: seeds everything.
    """

    output_dir: str
    collectors: int = 2
    updaters: int = 1
    clipped_double_q: bool = False
    learners: int = 1
    steps: int = 2000
    image_size: int = 64
    num_objects: int = 3
    max_episode_steps: int = 10
    grasp_at_time_limit: bool = True
    batch_size: int = 32
    learning_rate: float | None = None
    network: str = "grasping44"
    initial_q: float = 0.05
    export_every: int = 100
    checkpoint_every: int = 100
    gamma: float = 0.9
    step_penalty: float = 0.05
    mc_lower_bound: bool = False
    mc_mix: float = 0.0
    label_window: int | None = 100
    samples_per_label: float | None = None
    cem_iters: int = 3
    cem_samples: int = 64
    num_elites: int = 10
    explore_start: float = 1.0
    explore_end: float = 0.7
    explore_decay_steps: int | None = None
    random_explore_fraction: float = 0.5
    scripted_noise: float = 0.3
    episodes_per_round: int = 4
    eval_episodes: int = 20
    random_eval_episodes: int = 50
    eval_seed: int = 12345
    num_cpus_per_actor: float | None = None
    ray_address: str | None = None
    ray_num_cpus: int | None = None
    torchrun_args: Sequence[str] | None = None
    learner_max_restarts: int = 3
    poll_secs: float = 10.0
    seed: int = 0

    @property
    def root(self) -> Path:
        return Path(self.output_dir)

    @property
    def export_dir(self) -> Path:
        return self.root / "export"

    @property
    def lagged_export_dir(self) -> Path:
        return self.root / "export_lagged"

    @property
    def replay_root(self) -> Path:
        return self.root / "replay"

    @property
    def replay_pattern(self) -> str:
        return str(self.replay_root / "policy_collect" / "*.tfrecord")

    @property
    def labelled_dir(self) -> Path:
        return self.root / "labelled"

    @property
    def eval_dir(self) -> Path:
        return self.root / "eval"

    @property
    def model_dir(self) -> Path:
        return self.root / "model"

    def validate(self) -> None:
        problems = []
        for name in (
            "collectors",
            "updaters",
            "learners",
            "steps",
            "export_every",
            "checkpoint_every",
        ):
            if getattr(self, name) < 1:
                problems.append(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 0.0 < self.initial_q < 1.0:
            problems.append(f"initial_q must be in (0, 1), got {self.initial_q}")
        if self.label_window is not None and self.label_window < 1:
            problems.append(f"label_window must be >= 1 or None, got {self.label_window}")
        if self.samples_per_label is not None and not self.samples_per_label > 0:
            problems.append(f"samples_per_label must be > 0 or None, got {self.samples_per_label}")
        for name in (
            "explore_start",
            "explore_end",
            "random_explore_fraction",
            "gamma",
            "step_penalty",
            "mc_mix",
        ):
            if not 0.0 <= getattr(self, name) <= 1.0:
                problems.append(f"{name} must be in [0, 1], got {getattr(self, name)}")
        if problems:
            raise QTOptError("QTOptConfig: " + "; ".join(problems) + ".")


def explore_prob(config: QTOptConfig, global_step: int) -> float:
    """The probability of an exploration episode when the newest export is at `global_step`."""
    decay = config.explore_decay_steps or max(config.steps // 2, 1)
    fraction = min(max(global_step, 0) / decay, 1.0)
    return config.explore_start + (config.explore_end - config.explore_start) * fraction


# ------------------------------------------------------------------ the roles
def _critic(config: QTOptConfig) -> Any:
    from t2r.research.qtopt.learner import make_critic

    return make_critic(
        config.image_size,
        config.cem_samples,
        config.learning_rate,
        config.network,
        config.initial_q,
    )


def _env(config: QTOptConfig, object_set: str, seed: int) -> Any:
    from t2r.research.grasp_env import GraspEnv

    return GraspEnv(
        object_set=object_set,
        num_objects=config.num_objects,
        image_size=config.image_size,
        max_steps=config.max_episode_steps,
        seed=seed,
        grasp_at_time_limit=config.grasp_at_time_limit,
    )


def _predictor(export_dir: Path) -> Any:
    from t2r.predictors import ExportedModelPredictor

    return ExportedModelPredictor(export_dir, timeout=0.0, wait_for_export_dir=True)


def _cem(config: QTOptConfig, predictor: Any, model: Any, seed: int) -> Any:
    from t2r.research.qtopt.policy import qtopt_cem_policy

    return qtopt_cem_policy(
        predictor,
        model,
        seed=seed,
        cem_iters=config.cem_iters,
        cem_samples=config.cem_samples,
        num_elites=config.num_elites,
    )


def _episode_callback(context: LoopContext, global_step: int) -> Callable[[int, Any], None]:
    def on_episode(index: int, episode: Any) -> None:
        context.on_episode(len(episode), float(sum(t[2] for t in episode)), global_step)
        if context.should_stop():
            raise _Stop

    return on_episode


def collect_loop(shard: CollectShard, context: LoopContext, config: QTOptConfig) -> None:
    """A collector actor: rounds of episodes with the newest export, each round one
    replay file in ``replay/policy_collect/`` (see the module docstring)."""
    import torch

    from t2r.collect import TFRecordReplayWriter, run_env
    from t2r.policies import PerEpisodeSwitchPolicy, RandomPolicy
    from t2r.research.grasp_env import ScriptedGraspPolicy
    from t2r.research.qtopt.transitions import grasp_episode_to_transitions

    torch.set_num_threads(1)
    seed = context.seed
    env = _env(config, "train", seed)
    model = _critic(config)
    predictor = _predictor(config.export_dir)
    cem = _cem(config, predictor, model, seed)
    explore = PerEpisodeSwitchPolicy(
        RandomPolicy(6, seed=seed + 1),
        ScriptedGraspPolicy(env, noise=config.scripted_noise, seed=seed + 2),
        explore_prob=config.random_explore_fraction,
        seed=seed + 3,
    )
    rounds = 0
    while not context.should_stop():
        predictor.restore()
        step = int(predictor.global_step)
        policy = PerEpisodeSwitchPolicy(
            explore, cem, explore_prob(config, step), seed=seed * 7919 + rounds
        )
        rounds += 1
        with contextlib.suppress(_Stop):
            run_env(
                env,
                policy,
                episode_to_transitions_fn=grasp_episode_to_transitions,
                replay_writer=TFRecordReplayWriter(),
                root_dir=config.replay_root,
                task=shard.index,
                global_step=step,
                num_episodes=config.episodes_per_round,
                max_episode_steps=config.max_episode_steps,
                on_episode=_episode_callback(context, step),
                show_progress=False,
            )


def owns_replay_file(name: str, updater: int, updaters: int) -> bool:
    """Whether Bellman updater `updater` (of `updaters`) labels the replay file `name`
    (a base name): a CRC-32 of the name, modulo the updaters. Deterministic across
    processes and hosts, no coordination: each file has exactly one updater."""
    return zlib.crc32(name.encode("utf-8")) % updaters == updater


def _second_target(export_dir: Path) -> Any:
    """A predictor of the second newest complete version in `export_dir`: with the
    newest one (`_predictor`), the two target critics of clipped double Q."""
    from t2r.export import layout
    from t2r.predictors import ExportedModelPredictor

    class SecondNewestPredictor(ExportedModelPredictor):
        def _usable(self, version: layout.ExportVersion) -> bool:
            versions = layout.list_versions(export_dir)
            return len(versions) < 2 or version.version < versions[-1].version

    return SecondNewestPredictor(export_dir, timeout=0.0, wait_for_export_dir=True)


def bellman_update_loop(shard: CollectShard, context: LoopContext, config: QTOptConfig) -> None:
    """A Bellman updater actor (``shard.index`` of ``config.updaters``): labels each of
    its replay files (`owns_replay_file`) with the lagged target export and writes it,
    under the same name, into ``labelled/`` (atomically).

    New files and files labelled by an older target take turns (`next_replay_file`).
    A labelled file is replaced in one rename, so the learner never sees a file
    twice or half. With
    ``config.clipped_double_q`` the target is the minimum of the newest and the
    second newest lagged export (`BellmanLabeller`'s ``second_target_predictor``).
    """
    import torch

    from t2r.data import TFRecordWriter, read_tfrecord
    from t2r.data.sources import ReplayDirectorySource
    from t2r.research.qtopt.bellman import BellmanLabeller
    from t2r.research.qtopt.learner import LABEL_COUNTS, labels_written, write_label_count
    from t2r.research.qtopt.transitions import label_records, parse_transitions

    torch.set_num_threads(1)
    target = _predictor(config.lagged_export_dir)
    second = _second_target(config.lagged_export_dir) if config.clipped_double_q else None
    labeller = BellmanLabeller(
        target,
        _critic(config),
        gamma=config.gamma,
        step_penalty=config.step_penalty,
        mc_lower_bound=config.mc_lower_bound,
        mc_mix=config.mc_mix,
        cem_iters=config.cem_iters,
        cem_samples=config.cem_samples,
        num_elites=config.num_elites,
        seed=context.seed,
        second_target_predictor=second,
    )
    source = ReplayDirectorySource(config.replay_pattern)
    config.labelled_dir.mkdir(parents=True, exist_ok=True)
    labelled_with: dict[str, int] = {}  # replay file name -> target version of its labels
    counts_dir = config.root / LABEL_COUNTS
    # A restarted updater carries on from its count: the learners' rate limit reads it.
    written = labels_written(counts_dir, shard.index)
    rounds = 0
    while not context.should_stop():
        target.restore()
        version = int(target.global_step)
        if second is not None:
            second.restore()
        files = [
            f
            for f in source.units()
            if owns_replay_file(os.path.basename(f), shard.index, config.updaters)
        ]
        path = next_replay_file(files, labelled_with, version, relabel_turn=rounds % 2 == 1)
        rounds += 1
        if path is None:
            time.sleep(0.5)
            continue
        try:
            records = list(read_tfrecord(path))
        except FileNotFoundError:
            continue
        if not records:
            continue
        batch = parse_transitions(records, config.image_size)
        target_q = labeller.label(batch)
        name = os.path.basename(path)
        with TFRecordWriter(str(config.labelled_dir / name)) as writer:
            for record in label_records(records, target_q, config.image_size):
                writer.write(record)
        labelled_with[name] = version
        written += len(records)
        write_label_count(counts_dir, shard.index, written)
        context.on_episode(len(records), float(np.asarray(batch["reward"]).sum()), version)


def next_replay_file(
    files: Sequence[str], labelled_with: dict[str, int], version: int, relabel_turn: bool
) -> str | None:
    """The replay file a Bellman updater labels next (None: nothing to do).

    Args:
      files: the replay files it owns.
      labelled_with: ``{file base name: target version of its labels}`` so far.
      version: the target version it labels with now.
      relabel_turn: whether this turn goes to relabelling.

    Fresh (never labelled) and stale (labelled by an older target) files take turns:
    fresh ones newest first (the learners see the newest policy's data first), stale
    ones oldest label first. Turns keep relabelling from starving behind collectors
    that write faster than the updaters label, so the learners' window of recently
    labelled files (`QTOptConfig.label_window`) holds old transitions with new labels
    as well as new transitions. A turn with nothing of its kind takes the other kind.
    """
    fresh = [f for f in files if os.path.basename(f) not in labelled_with]
    stale = [f for f in files if labelled_with.get(os.path.basename(f), version) < version]
    if stale and (relabel_turn or not fresh):
        return min(stale, key=lambda f: labelled_with[os.path.basename(f)])
    if fresh:
        return max(fresh, key=_mtime)
    return None


def _mtime(path: str) -> float:
    try:
        return os.path.getmtime(path)
    except OSError:
        return 0.0


class GreedyEpisodeStats:
    """How an export's greedy episodes ended, for ``evals.csv`` (`EVAL_FIELDS`).

    `add` takes each episode (`run_env`'s transitions ``(obs, action, reward,
    next_obs, done, debug)``) and the critic's Q of its first action.
    """

    def __init__(self) -> None:
        from t2r.research.grasp_env import ACTION_LAYOUT

        self._terminate = ACTION_LAYOUT.index("terminate")
        self.lengths: list[int] = []
        self.terminated: list[bool] = []
        self.first_q: list[float] = []

    def add(self, episode: Sequence[Any], first_q: float) -> None:
        if not episode:
            raise ValueError("GreedyEpisodeStats.add: an episode without transitions.")
        self.lengths.append(len(episode))
        self.terminated.append(float(np.asarray(episode[-1][1]).reshape(-1)[self._terminate]) > 0.0)
        self.first_q.append(float(first_q))

    def scalars(self) -> dict[str, float]:
        """``eval/mean_length``, ``eval/terminated_fraction`` (by the terminate action),
        ``eval/out_of_steps_fraction`` (cut at the step limit), ``eval/first_q``."""
        if not self.lengths:
            return {}
        terminated = float(np.mean(self.terminated))
        return {
            "eval/mean_length": float(np.mean(self.lengths)),
            "eval/terminated_fraction": terminated,
            "eval/out_of_steps_fraction": 1.0 - terminated,
            "eval/first_q": float(np.mean(self.first_q)),
        }


def _first_q(config: QTOptConfig, predictor: Any, model: Any, episode: Sequence[Any]) -> float:
    """The critic's Q of the episode's first (state, action): the value CEM chose it for.
    The export scores `cem_samples` candidates per call, so the action is repeated."""
    obs, action = episode[0][0], np.asarray(episode[0][1], np.float32)
    candidates = np.repeat(action.reshape(1, -1), config.cem_samples, axis=0)
    q = predictor.predict(model.pack_features(obs, None, 0, candidates))["q_predicted"]
    return float(np.asarray(q).reshape(-1)[0])


def evaluate_loop(shard: CollectShard, context: LoopContext, config: QTOptConfig) -> None:
    """The evaluator actor: the random policy once, then each new export greedily (CEM),
    on the same held-out scenes; mean rewards (= success rates) go to
    ``eval/live_eval_1`` (random) and ``eval/live_eval_0`` (newest export), how the
    greedy episodes ended (`GreedyEpisodeStats`) to ``eval/greedy``."""
    import torch

    from t2r.collect import run_env
    from t2r.policies import RandomPolicy
    from t2r.train.summaries import MetricsWriter

    torch.set_num_threads(1)
    model = _critic(config)
    predictor = _predictor(config.export_dir)
    with contextlib.suppress(_Stop):
        run_env(
            _env(config, "test", config.eval_seed),
            RandomPolicy(6, seed=config.eval_seed),
            root_dir=config.eval_dir,
            task=1,
            global_step=0,
            num_episodes=config.random_eval_episodes,
            tag="eval",
            max_episode_steps=config.max_episode_steps,
            on_episode=_episode_callback(context, 0),
            show_progress=False,
        )
    last = -1
    while not context.should_stop():
        predictor.restore()
        step = int(predictor.global_step)
        if step == last:
            time.sleep(1.0)
            continue
        stats = GreedyEpisodeStats()
        count = _episode_callback(context, step)

        def on_episode(index: int, episode: Any, count: Any = count, stats: Any = stats) -> None:
            stats.add(episode, _first_q(config, predictor, model, episode))
            count(index, episode)

        with contextlib.suppress(_Stop):
            run_env(
                _env(config, "test", config.eval_seed),
                _cem(config, predictor, model, config.eval_seed),
                root_dir=config.eval_dir,
                task=0,
                global_step=step,
                num_episodes=config.eval_episodes,
                tag="eval",
                max_episode_steps=config.max_episode_steps,
                on_episode=on_episode,
                show_progress=False,
            )
            writer = MetricsWriter(config.eval_dir / "greedy")
            try:
                writer.write(step, stats.scalars())
            finally:
                writer.close()
        last = step


# ------------------------------------------------------------------ the driver
def bootstrap_exports(config: QTOptConfig) -> None:
    """Exports the seeded, freshly initialized critic as version 0 into ``export/`` and
    ``export_lagged/`` unless a version is there (a resumed loop keeps its exports)."""
    from t2r.export import export_saved_model, layout
    from t2r.train import seed_everything

    if layout.list_versions(config.export_dir):
        if not layout.list_versions(config.lagged_export_dir):
            newest = layout.list_versions(config.export_dir)[-1]
            layout.copy_version(newest, config.lagged_export_dir)
        return
    seed_everything(config.seed)
    model = _critic(config)
    path = export_saved_model(model, config.export_dir, global_step=0)
    layout.copy_version(layout.ExportVersion(Path(path), 0), config.lagged_export_dir)


def learner_command(config: QTOptConfig) -> list[str]:
    """The torchrun command line of the learners."""
    rendezvous = list(config.torchrun_args) if config.torchrun_args else ["--standalone"]
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        *rendezvous,
        f"--nproc_per_node={config.learners}",
        f"--max-restarts={config.learner_max_restarts}",
        "-m",
        "t2r.research.qtopt.learner",
        f"--output_dir={config.output_dir}",
        f"--steps={config.steps}",
        f"--batch_size={config.batch_size}",
        f"--image_size={config.image_size}",
        f"--cem_samples={config.cem_samples}",
        f"--export_every={config.export_every}",
        f"--checkpoint_every={config.checkpoint_every}",
        f"--seed={config.seed}",
        f"--network={config.network}",
        f"--initial_q={config.initial_q}",
    ]
    if config.learning_rate is not None:
        command.append(f"--learning_rate={config.learning_rate}")
    if config.label_window is not None:
        command.append(f"--max_files={config.label_window}")
    if config.samples_per_label is not None:
        command.append(f"--samples_per_label={config.samples_per_label}")
    return command


#: Runs as ``python -c _PARENT_GUARD <driver pid> <command ...>`` in front of torchrun:
#: asks Linux to send torchrun SIGTERM when the driver dies, even by SIGKILL
#: (``prctl(PR_SET_PDEATHSIG)``, kept across ``exec``; torchrun stops its workers on
#: SIGTERM), gives up if the driver is already gone, then becomes the command. Plain
#: ``python -c`` rather than a ``preexec_fn``: nothing runs between fork and exec in the
#: threaded driver, and no module is imported.
_PARENT_GUARD = """\
import ctypes, os, signal, sys
if sys.platform.startswith("linux"):
    ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGTERM), 0, 0, 0)
if os.getppid() != int(sys.argv[1]):
    sys.exit("t2r qtopt: the driver exited before the learners started")
os.execv(sys.argv[2], sys.argv[2:])
"""


def _guarded(command: Sequence[str]) -> list[str]:
    """`command` started through `_PARENT_GUARD`: it dies with this process."""
    return [sys.executable, "-c", _PARENT_GUARD, str(os.getpid()), *command]


@contextlib.contextmanager
def _learner_process(config: QTOptConfig) -> Iterator[subprocess.Popen[bytes]]:
    """torchrun in its own session (Ctrl-C reaches the driver, which stops it), tied to
    the driver's life (`_PARENT_GUARD`): a SIGKILLed driver leaves no learner behind."""
    log_path = config.root / "logs" / "learner.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    src = str(Path(__file__).resolve().parents[3])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (src, env.get("PYTHONPATH", "")) if p)
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            _guarded(learner_command(config)),
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
    try:
        yield process
    finally:
        _stop_process_group(process)


def _stop_process_group(process: subprocess.Popen[bytes], grace_secs: float = 30.0) -> None:
    """SIGTERM to torchrun's process group (it stops its workers), SIGKILL after the grace."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=grace_secs)
        except subprocess.TimeoutExpired:
            logger.warning("The learners did not stop in %.0f s; killing them.", grace_secs)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)  # stragglers of the group, if any
    process.wait()


def _read_eval(directory: Path) -> list[dict[str, Any]]:
    from t2r.train.summaries import read_metrics

    path = directory / "metrics.jsonl"
    if not path.exists():
        return []
    with contextlib.suppress(ValueError, OSError):
        return read_metrics(path)
    return []


def _learner_step(config: QTOptConfig) -> int:
    from t2r.export import layout
    from t2r.train import latest_checkpoint

    steps = [0]
    versions = layout.list_versions(config.export_dir)
    if versions:
        steps.append(versions[-1].version)
    with contextlib.suppress(Exception):
        checkpoint = latest_checkpoint(config.model_dir)
        if checkpoint is not None:
            steps.append(checkpoint.global_step)
    return max(steps)


def _progress_row(
    config: QTOptConfig,
    start: float,
    collectors: Sequence[ActorStatus],
    updater: Sequence[ActorStatus],
) -> dict[str, Any]:
    from t2r.export import layout

    episodes = sum(s.episodes for s in collectors)
    evals = _read_eval(config.eval_dir / "live_eval_0")
    randoms = _read_eval(config.eval_dir / "live_eval_1")
    lagged = layout.list_versions(config.lagged_export_dir)
    newest = evals[-1] if evals else None
    return {
        "wall_secs": round(time.time() - start, 1),
        "episodes": episodes,
        "transitions": sum(s.transitions for s in collectors),
        "collect_success": (
            round(sum(s.reward_sum for s in collectors) / episodes, 4) if episodes else ""
        ),
        "labelled_transitions": sum(s.transitions for s in updater),
        "target_step": lagged[-1].version if lagged else "",
        "learner_step": _learner_step(config),
        "eval_step": newest["step"] if newest else "",
        "eval_success": _metric(newest),
        "random_success": _metric(randoms[-1] if randoms else None),
        "collector_restarts": sum(s.restarts for s in collectors),
    }


def _metric(entry: dict[str, Any] | None) -> float | str:
    if not entry or "eval/episode_reward" not in entry:
        return ""
    value = float(entry["eval/episode_reward"])
    return round(value, 4) if math.isfinite(value) else ""


def _format_row(row: dict[str, Any]) -> str:
    def pct(value: Any) -> str:
        return f"{100 * value:.0f}%" if isinstance(value, float) else "-"

    return (
        f"[{row['wall_secs']:>7.0f}s] episodes {row['episodes']} ({pct(row['collect_success'])} "
        f"success), labelled {row['labelled_transitions']} transitions, learner step "
        f"{row['learner_step']}/target {row['target_step'] or '-'}, held-out success "
        f"{pct(row['eval_success'])} (export {row['eval_step'] if row['eval_step'] != '' else '-'})"
        f" vs random {pct(row['random_success'])}"
    )


def _eval_history(config: QTOptConfig, start_time: float) -> list[dict[str, Any]]:
    """Every evaluation so far (`EVAL_FIELDS`): wall seconds since the start, step,
    success, and how the greedy episodes ended ('' where not written yet)."""
    greedy = {int(e["step"]): e for e in _read_eval(config.eval_dir / "greedy")}
    rows = []
    for entry in _read_eval(config.eval_dir / "live_eval_0"):
        value = _metric(entry)
        if value != "":
            step = int(entry["step"])
            row: dict[str, Any] = {
                "wall_secs": round(float(entry["time"]) - start_time, 1),
                "step": step,
                "success": value,
            }
            for field in EVAL_FIELDS[3:]:
                stat = greedy.get(step, {}).get(f"eval/{field}", "")
                row[field] = round(float(stat), 4) if isinstance(stat, (int, float)) else ""
            rows.append(row)
    return rows


def run_qtopt(config: QTOptConfig, echo: Callable[[str], None] = print) -> dict[str, Any]:
    """Runs the whole loop until the learners reach ``config.steps`` (or Ctrl-C).

    Writes ``progress.csv`` (one row per `poll_secs`), ``evals.csv`` (one row per
    evaluated export) and ``success.png``; returns a summary. Ray actors and
    torchrun are stopped on the way out, whatever the reason.

    Run again on the same `output_dir` (e.g. with more `steps`), the loop
    resumes: the learners from their checkpoint, the collectors add to the
    replay, the wall clock and ``progress.csv`` continue.
    """
    config.validate()
    config.root.mkdir(parents=True, exist_ok=True)
    atomic_write_text(
        config.root / "config.json",
        json.dumps(dataclasses.asdict(config), indent=1, default=list) + "\n",
    )
    bootstrap_exports(config)
    start_time = _start_time(config)
    start = start_time
    progress_path = config.root / "progress.csv"
    rows: list[dict[str, Any]] = []
    if progress_path.exists():  # a resumed loop: its rows continue the file
        with open(progress_path, newline="") as f:
            rows = list(csv.DictReader(f))
    interrupted = False
    previous = signal.getsignal(signal.SIGTERM)

    def on_term(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    try:
        with ray_session(config.ray_address, config.ray_num_cpus):
            # ray.init replaces the SIGTERM handler with sys.exit: ours again, so that
            # SIGTERM ends the loop as Ctrl-C does (summary written).
            signal.signal(signal.SIGTERM, on_term)
            share = config.num_cpus_per_actor or _actor_share(config)
            collector = RayCollector(num_cpus_per_actor=share, show_progress=False)
            seed = config.seed * 1000
            collectors_shards = [
                CollectShard(i, 0, seed + 1 + i, str(config.replay_root))
                for i in range(config.collectors)
            ]
            config.labelled_dir.mkdir(parents=True, exist_ok=True)
            with contextlib.ExitStack() as stack:
                # The learners first: torchrun's and their start-up (importing torch) runs
                # while the actors start; they wait for labelled files anyway. (Stopped
                # last, after the actors.)
                learner = stack.enter_context(_learner_process(config))
                collecting = stack.enter_context(
                    collector.start(
                        functools.partial(collect_loop, config=config), collectors_shards
                    )
                )
                updating = stack.enter_context(
                    collector.start(
                        functools.partial(bellman_update_loop, config=config),
                        [
                            CollectShard(i, 0, seed + 101 + i, str(config.labelled_dir))
                            for i in range(config.updaters)
                        ],
                    )
                )
                evaluating = stack.enter_context(
                    collector.start(
                        functools.partial(evaluate_loop, config=config),
                        [CollectShard(0, 0, seed + 201, str(config.eval_dir))],
                    )
                )
                echo(
                    f"QT-Opt: {config.collectors} collector actors, {config.updaters} Bellman "
                    f"updater(s){' (clipped double Q)' if config.clipped_double_q else ''}, 1 "
                    f"evaluator (Ray, {share:g} CPU each), {config.learners} learner(s) under "
                    f"torchrun (pid {learner.pid}); output in {config.root}"
                )
                try:
                    _drive(
                        config,
                        start,
                        start_time,
                        rows,
                        progress_path,
                        collecting,
                        updating,
                        evaluating,
                        learner,
                        echo,
                    )
                except KeyboardInterrupt:
                    interrupted = True
                    echo("Interrupted: stopping the learners and the Ray actors ...")
    except KeyboardInterrupt:
        interrupted = True
    finally:
        signal.signal(signal.SIGTERM, previous)
        evals, random_success = _write_figures(config, start_time)
    summary = {
        "interrupted": interrupted,
        "rows": len(rows),
        "final": rows[-1] if rows else {},
        "evals": evals,
        "random_success": random_success,
        "output_dir": str(config.root),
    }
    atomic_write_text(config.root / "summary.json", json.dumps(summary, indent=1) + "\n")
    return summary


def _start_time(config: QTOptConfig) -> float:
    """When this output directory's loop first started (``clock.json``): a resumed loop
    continues its wall clock, so its figures extend the earlier ones."""
    clock = config.root / "clock.json"
    with contextlib.suppress(OSError, ValueError, KeyError):
        return float(json.loads(clock.read_text())["start_time"])
    now = time.time()
    atomic_write_text(clock, json.dumps({"start_time": now}) + "\n")
    return now


def _write_figures(config: QTOptConfig, start_time: float) -> tuple[list[dict[str, Any]], Any]:
    """Writes ``evals.csv`` and ``success.png`` from the evaluator's summaries so far;
    returns the evaluations and the random policy's success ('' before it is known)."""
    from t2r.research.qtopt.plot import draw_success_plot

    evals = _eval_history(config, start_time)
    _write_csv(config.root / "evals.csv", evals, EVAL_FIELDS)
    random_rows = _read_eval(config.eval_dir / "live_eval_1")
    random_success = _metric(random_rows[-1]) if random_rows else ""
    draw_success_plot(
        [(r["wall_secs"], float(r["success"])) for r in evals],
        float(random_success) if random_success != "" else None,
        config.root / "success.png",
        title=f"QT-Opt grasp success on held-out objects ({config.collectors} collectors, "
        f"{config.learners} learner(s))",
    )
    return evals, random_success


def _actor_share(config: QTOptConfig) -> float:
    import ray

    cpus = float(ray.cluster_resources().get("CPU", default_num_cpus()))
    return round(min(1.0, cpus / (config.collectors + config.updaters + 1)), 3)


def _drive(
    config: QTOptConfig,
    start: float,
    start_time: float,
    rows: list[dict[str, Any]],
    progress_path: Path,
    collecting: ContinuousCollection,
    updating: ContinuousCollection,
    evaluating: ContinuousCollection,
    learner: subprocess.Popen[bytes],
    echo: Callable[[str], None],
) -> None:
    """Polls everything until the learner finished and its final export was evaluated."""
    finished_at: float | None = None
    plotted: Any = None
    while True:
        collectors = collecting.poll()
        updater = updating.poll()
        evaluating.poll()
        row = _progress_row(config, start, collectors, updater)
        rows.append(row)
        _write_csv(progress_path, rows, PROGRESS_FIELDS)
        echo(_format_row(row))
        if (row["eval_step"], row["random_success"]) != plotted:
            _write_figures(config, start_time)  # the figure follows the run
            plotted = (row["eval_step"], row["random_success"])
        code = learner.poll()
        if code is not None and code != 0:
            raise QTOptError(
                f"The learners (torchrun) exited with code {code}; see "
                f"{config.root / 'logs' / 'learner.log'}."
            )
        if code == 0:
            finished_at = finished_at or time.monotonic()
            evaluated = row["eval_step"] != "" and int(row["eval_step"]) >= config.steps
            # The final export is evaluated once; give the evaluator a while for it.
            if evaluated or time.monotonic() - finished_at > 30 * config.poll_secs:
                return
        time.sleep(config.poll_secs)


def _write_csv(path: Path, rows: Sequence[dict[str, Any]], fields: Sequence[str]) -> None:
    lines: list[str] = []

    class _Lines:
        def write(self, text: str) -> None:
            lines.append(text)

    writer = csv.DictWriter(_Lines(), fieldnames=list(fields), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(path, "".join(lines))
