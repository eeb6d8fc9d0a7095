"""Running a policy in an environment: episodes -> transitions -> replay files.

Tensor2Robot's ``research/dql_grasping_lib/run_env.py`` (`run_env`) and
``meta_learning/run_meta_env.py`` (`run_meta_env`) on Gymnasium environments
(the older gym API, ``reset() -> obs`` and 4-tuple ``step``, works too).

An episode is a list of transitions ``(obs, action, reward, new_obs, done,
debug)``, ``debug`` being the env's ``info`` dict merged over the policy's
debug dict, as in T2R. `episode_to_transitions_fn(episode)` turns it into
records (bytes or ``tf.train.Example``-like messages) that a replay writer
(`t2r.collect.TFRecordReplayWriter`) appends to a file. Both functions return
an `EnvRunResult` (T2R's returned nothing) and, given a `root_dir`, write the
mean episode reward at `global_step` to ``<root_dir>/live_eval_<task>/``
(TensorBoard events and ``metrics.jsonl``).

Deviations from T2R (see ``docs/migrating_from_t2r.md``): the env is not
closed at the end (a collect-eval loop reuses it); file names carry a
collector id so that several processes can write into one directory;
`episodes_per_task` draws new tasks in `run_env`; summaries are written for
every `task`, each into its own directory.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import os
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import numpy as np
from tqdm.auto import tqdm

from t2r.collect.replay_writer import unique_record_prefix

__all__ = ["EnvRunResult", "ExploreSchedule", "Transition", "run_env", "run_meta_env"]

logger = logging.getLogger(__name__)

# (obs, action, reward, new_obs, done, debug)
Transition = tuple[Any, Any, float, Any, bool, dict[str, Any]]
EpisodeToTransitionsFn = Callable[[list[Transition]], Sequence[Any]]
EpisodeCallback = Callable[[int, list[Transition]], None]


class ExploreSchedule(Protocol):
    """T2R's exploration schedule: the probability of exploring at a global step."""

    def value(self, t: int) -> float: ...


@dataclasses.dataclass
class EnvRunResult:
    """What one `run_env` / `run_meta_env` call did.

    Attributes:
      tag: 'collect', 'eval', ...
      global_step: the policy's training step.
      episode_rewards: the undiscounted return of each episode, in order.
      num_transitions: env steps taken.
      record_files: replay files written (published).
      elapsed_secs: wall time of the call.
      task_rewards: `run_meta_env` only: per task, the mean reward of each
        adaptation step.
    """

    tag: str
    global_step: int
    episode_rewards: list[float]
    num_transitions: int
    record_files: list[str]
    elapsed_secs: float
    task_rewards: list[list[float]] = dataclasses.field(default_factory=list)

    @property
    def num_episodes(self) -> int:
        return len(self.episode_rewards)

    @property
    def mean_reward(self) -> float:
        """The mean episode reward (nan without episodes)."""
        return float(np.mean(self.episode_rewards)) if self.episode_rewards else float("nan")

    @property
    def transitions_per_sec(self) -> float:
        return self.num_transitions / self.elapsed_secs if self.elapsed_secs > 0 else float("nan")

    def to_dict(self) -> dict[str, Any]:
        return {
            "tag": self.tag,
            "global_step": self.global_step,
            "num_episodes": self.num_episodes,
            "mean_reward": self.mean_reward,
            "num_transitions": self.num_transitions,
            "record_files": list(self.record_files),
            "elapsed_secs": self.elapsed_secs,
        }


def _reset(env: Any) -> Any:
    out = env.reset()
    # Gymnasium: (obs, info); gym < 0.26: obs.
    if isinstance(out, tuple) and len(out) == 2 and isinstance(out[1], dict):
        return out[0]
    return out


def _step(env: Any, action: Any) -> tuple[Any, float, bool, dict[str, Any]]:
    out = env.step(action)
    if len(out) == 5:  # Gymnasium: obs, reward, terminated, truncated, info
        obs, reward, terminated, truncated, info = out
        return obs, float(reward), bool(terminated or truncated), dict(info or {})
    obs, reward, done, info = out
    return obs, float(reward), bool(done), dict(info or {})


def _explore_prob(explore_schedule: ExploreSchedule | None, global_step: int) -> float:
    return float(explore_schedule.value(global_step)) if explore_schedule else 0.0


def _run_episode(
    env: Any,
    policy: Any,
    explore_prob: float,
    q_values: dict[int, list[float]],
    max_episode_steps: int | None,
) -> tuple[list[Transition], float]:
    """One episode: policy.reset(), env.reset(), act until done."""
    policy.reset()
    obs = _reset(env)
    episode: list[Transition] = []
    total, done, step = 0.0, False, 0
    while not done:
        action, policy_debug = policy.sample_action(obs, explore_prob)
        debug: dict[str, Any] = dict(policy_debug or {})
        for key in ("q", "q_predicted"):
            if key in debug:
                q_values[step].append(float(np.asarray(debug[key]).mean()))
                break
        new_obs, reward, done, info = _step(env, action)
        debug.update(info)
        step += 1
        total += reward
        if max_episode_steps is not None and step >= max_episode_steps:
            done = True
        episode.append((obs, action, reward, new_obs, done, debug))
        obs = new_obs
    return episode, total


def _write_summaries(
    root_dir: str | None, task: int, global_step: int, scalars: dict[str, float]
) -> None:
    if not root_dir or not scalars:
        return
    from t2r.train.summaries import MetricsWriter

    writer = MetricsWriter(os.path.join(root_dir, f"live_eval_{task}"))
    try:
        writer.write(global_step, scalars)
    finally:
        writer.close()


def run_env(
    env: Any,
    policy: Any = None,
    explore_schedule: ExploreSchedule | None = None,
    episode_to_transitions_fn: EpisodeToTransitionsFn | None = None,
    replay_writer: Any = None,
    root_dir: str | os.PathLike[str] | None = None,
    task: int = 0,
    global_step: int = 0,
    num_episodes: int = 100,
    tag: str = "collect",
    episodes_per_task: int | None = None,
    max_episode_steps: int | None = None,
    on_episode: EpisodeCallback | None = None,
    show_progress: bool = True,
) -> EnvRunResult:
    """Runs `policy` in `env` for `num_episodes` episodes; logs and returns the rewards.

    Tensor2Robot's ``run_env``. Each episode: ``policy.reset()``,
    ``env.reset()``, then ``policy.sample_action(obs, explore_prob)`` and
    ``env.step`` until the episode ends (``explore_prob`` from
    ``explore_schedule.value(global_step)``, else 0).

    Args:
      env: a Gymnasium (or gym) environment.
      policy: has ``reset()`` and ``sample_action(obs, explore_prob) ->
        (action, debug)`` (every `t2r.policies.Policy` does).
      explore_schedule: ``value(global_step)``, the exploration probability.
      episode_to_transitions_fn: episode -> records for `replay_writer`.
      replay_writer: e.g. `TFRecordReplayWriter`; records go to
        ``<root_dir>/policy_<tag>/gs<step>_t<task>_<time>_<collector id>...``.
      root_dir: where records and summaries go; None writes neither (as T2R
        documented).
      task: the collector's replica number (names records and summaries).
      global_step: the training step of the policy's model.
      num_episodes: episodes to run.
      tag: 'collect' or 'eval': names the record directory and summaries.
      episodes_per_task: if set, ``env.reset_task()`` before the first
        episode and then every that many episodes (T2R's run_env never reset
        tasks); needs an env with ``reset_task``.
      max_episode_steps: end an episode after this many steps (None: when the
        env says so).
      on_episode: called as ``on_episode(index, episode)`` after each episode
        (while the env still shows it).
      show_progress: a tqdm bar over episodes.

    Returns:
      An `EnvRunResult`; its `mean_reward` is also logged, and written to
      ``<root_dir>/live_eval_<task>`` as ``<tag>/episode_reward`` at `global_step`.
    """
    if policy is None:
        raise ValueError("run_env needs a policy.")
    if episodes_per_task is not None:
        if episodes_per_task < 1:
            raise ValueError(f"run_env: episodes_per_task must be >= 1, got {episodes_per_task}.")
        if not hasattr(env, "reset_task"):
            raise ValueError(
                f"run_env: episodes_per_task={episodes_per_task} needs an env with reset_task(); "
                f"{type(env).__name__} has none."
            )
    root = os.fspath(root_dir) if root_dir else None
    writer = _open_writer(replay_writer, episode_to_transitions_fn, root, tag, global_step, task)
    start = time.perf_counter()
    rewards: list[float] = []
    q_values: dict[int, list[float]] = collections.defaultdict(list)
    transitions = 0
    explore_prob = _explore_prob(explore_schedule, global_step)
    progress = tqdm(
        total=num_episodes, desc=tag, unit="ep", disable=not show_progress, mininterval=1.0
    )
    try:
        for episode_index in range(num_episodes):
            if episodes_per_task is not None and episode_index % episodes_per_task == 0:
                env.reset_task()
            episode, total = _run_episode(env, policy, explore_prob, q_values, max_episode_steps)
            rewards.append(total)
            transitions += len(episode)
            logger.debug("Episode %d reward: %f", episode_index, total)
            if writer is not None:
                assert episode_to_transitions_fn is not None
                writer.write(episode_to_transitions_fn(episode))
            if on_episode is not None:
                on_episode(episode_index, episode)
            progress.update(1)
            if len(rewards) % 100 == 0:
                progress.set_postfix(reward=f"{np.mean(rewards):.4g}")
    finally:
        progress.close()
        if writer is not None:
            writer.close()
    result = EnvRunResult(
        tag=tag,
        global_step=int(global_step),
        episode_rewards=rewards,
        num_transitions=transitions,
        record_files=list(getattr(writer, "paths", [])) if writer is not None else [],
        elapsed_secs=time.perf_counter() - start,
    )
    logger.info(
        "%s at global step %d: %d episodes, mean reward %.4f (%.0f transitions/s).",
        tag,
        global_step,
        result.num_episodes,
        result.mean_reward,
        result.transitions_per_sec,
    )
    scalars = {f"{tag}/episode_reward": result.mean_reward} if rewards else {}
    scalars.update({f"{tag}/Q/{step}": float(np.mean(v)) for step, v in q_values.items()})
    _write_summaries(root, task, global_step, scalars)
    return result


def _open_writer(
    replay_writer: Any,
    episode_to_transitions_fn: EpisodeToTransitionsFn | None,
    root: str | None,
    tag: str,
    global_step: int,
    task: int,
) -> Any:
    """Opens `replay_writer` on a fresh name under ``<root>/policy_<tag>/``, or returns None."""
    if replay_writer is None:
        return None
    if episode_to_transitions_fn is None:
        raise ValueError("A replay_writer needs an episode_to_transitions_fn.")
    if root is None:
        logger.warning("run_env: a replay_writer but no root_dir: no records are written.")
        return None
    replay_writer.open(unique_record_prefix(os.path.join(root, f"policy_{tag}"), global_step, task))
    return replay_writer


def _run_demo(env: Any, demo_policy: Any) -> list[Transition]:
    """One demonstration episode: act until the env is done or the action is None."""
    obs = _reset(env)
    episode: list[Transition] = []
    done = False
    while not done:
        action, policy_debug = demo_policy.sample_action(obs, 0.0)
        if action is None:
            break
        new_obs, reward, done, info = _step(env, action)
        debug: dict[str, Any] = dict(policy_debug or {})
        debug.update(info)
        debug["is_demo"] = True
        episode.append((obs, action, reward, new_obs, done, debug))
        obs = new_obs
    return episode


def run_meta_env(
    env: Any,
    policy: Any = None,
    demo_policy_cls: Any = None,
    explore_schedule: ExploreSchedule | None = None,
    episode_to_transitions_fn: EpisodeToTransitionsFn | None = None,
    replay_writer: Any = None,
    root_dir: str | os.PathLike[str] | None = None,
    task: int = 0,
    global_step: int = 0,
    num_episodes: int | None = None,
    num_tasks: int = 10,
    num_adaptations_per_task: int = 2,
    num_episodes_per_adaptation: int = 1,
    num_demos: int = 1,
    break_after_one_task: bool = False,
    tag: str = "collect",
    write_tf_summary: bool = True,
    file_per_task: bool = True,
    on_episode: EpisodeCallback | None = None,
    show_progress: bool = True,
) -> EnvRunResult:
    """Runs a (meta-learning) policy over `num_tasks` tasks; logs and returns the rewards.

    Tensor2Robot's ``run_meta_env``. For each task: ``policy.reset_task()``
    (if it has one), ``env.reset_task()``; then, with `demo_policy_cls`,
    `num_demos` demonstration episodes by ``demo_policy_cls(env)`` (the
    condition data: written to the records first, ``debug['is_demo'] =
    True``) followed by ``policy.adapt(demos)`` when the policy has
    ``adapt``; then `num_adaptations_per_task` adaptation steps of
    `num_episodes_per_adaptation` episodes each (the inference episodes);
    before every adaptation step but the first, ``policy.adapt(demos and
    episodes so far in this task)``.

    A demonstration episode ends when the env says so or when the demo
    policy's ``sample_action`` returns None for the action (T2R's convention
    for a replayed demonstration that has run out).

    Args:
      env: an environment with ``reset_task()``.
      policy: see `run_env`; may have ``reset_task`` and ``adapt``.
      demo_policy_cls: ``demo_policy_cls(env)`` makes a policy with
        ``sample_action(obs, explore_prob) -> (action or None, debug)``, e.g.
        an oracle that reads the env's hidden task.
      num_episodes: if given, the inference episodes per adaptation step
        (replaces `num_episodes_per_adaptation`; T2R ignored it).
      num_tasks, num_adaptations_per_task, num_episodes_per_adaptation: see above.
      num_demos: demonstration episodes per task (with `demo_policy_cls`).
      break_after_one_task: stop after the first task (for tests).
      write_tf_summary: write, per adaptation step k, ``<tag>/step_<k>_reward``
        (mean over tasks) and ``<tag>/step_<k>_improvement`` to
        ``<root_dir>/live_eval_<task>`` (T2R's default was False).
      file_per_task: one replay file per task, named ``..._task<i>`` (T2R);
        False writes one stream for the whole call (split by the writer's
        ``max_episodes_per_file``).
      Others: see `run_env`. Records go to ``<root_dir>/gs<step>_t<task>_...``
      (no ``policy_<tag>`` directory, as in T2R).

    Returns:
      An `EnvRunResult`: `episode_rewards` are those of the last adaptation
      step of each task (what T2R logged as the task reward); `task_rewards`
      has every step's mean (demonstrations are not counted).
    """
    if policy is None:
        raise ValueError("run_meta_env needs a policy.")
    if num_episodes is not None:
        num_episodes_per_adaptation = num_episodes
    if num_adaptations_per_task < 1 or num_episodes_per_adaptation < 1:
        raise ValueError("run_meta_env: adaptations and episodes per adaptation must be >= 1.")
    if demo_policy_cls is not None and num_demos < 1:
        raise ValueError(
            f"run_meta_env: num_demos must be >= 1 with a demo_policy_cls, got {num_demos}."
        )
    if replay_writer is not None and episode_to_transitions_fn is None:
        raise ValueError("A replay_writer needs an episode_to_transitions_fn.")
    root = os.fspath(root_dir) if root_dir else None
    writer = replay_writer if (replay_writer is not None and root is not None) else None
    if replay_writer is not None and root is None:
        logger.warning("run_meta_env: a replay_writer but no root_dir: no records are written.")
    start = time.perf_counter()
    explore_prob = _explore_prob(explore_schedule, global_step)
    q_values: dict[int, list[float]] = collections.defaultdict(list)
    task_rewards: list[list[float]] = []
    final_rewards: list[float] = []
    transitions = 0
    record_files: list[str] = []
    episode_index = 0
    demos_per_task = num_demos if demo_policy_cls is not None else 0
    total_episodes = num_tasks * (
        demos_per_task + num_adaptations_per_task * num_episodes_per_adaptation
    )
    progress = tqdm(
        total=total_episodes, desc=tag, unit="ep", disable=not show_progress, mininterval=1.0
    )
    prefix = None
    if writer is not None:
        assert root is not None
        prefix = unique_record_prefix(root, global_step, task)
        if not file_per_task:
            writer.open(prefix)
    try:
        for task_index in range(num_tasks):
            if hasattr(policy, "reset_task"):
                policy.reset_task()
            env.reset_task()
            if writer is not None and file_per_task:
                writer.open(f"{prefix}_task{task_index}")
            step_means: list[float] = []
            condition_data: list[list[Transition]] = []
            last_step_rewards: list[float] = []
            for _ in range(demos_per_task):
                demo = _run_demo(env, demo_policy_cls(env))
                transitions += len(demo)
                if writer is not None:
                    assert episode_to_transitions_fn is not None
                    writer.write(episode_to_transitions_fn(demo))
                if on_episode is not None:
                    on_episode(episode_index, demo)
                episode_index += 1
                progress.update(1)
                condition_data.append(demo)
            if condition_data and hasattr(policy, "adapt"):
                policy.adapt(list(condition_data))
            for step_num in range(num_adaptations_per_task):
                if step_num != 0 and hasattr(policy, "adapt"):
                    policy.adapt(list(condition_data))
                step_rewards = []
                for _ in range(num_episodes_per_adaptation):
                    episode, total = _run_episode(env, policy, explore_prob, q_values, None)
                    step_rewards.append(total)
                    transitions += len(episode)
                    logger.debug("Task %d step %d reward: %f", task_index, step_num, total)
                    if writer is not None:
                        assert episode_to_transitions_fn is not None
                        writer.write(episode_to_transitions_fn(episode))
                    if on_episode is not None:
                        on_episode(episode_index, episode)
                    episode_index += 1
                    progress.update(1)
                    condition_data.append(episode)
                step_means.append(float(np.mean(step_rewards)))
                last_step_rewards = step_rewards
            task_rewards.append(step_means)
            final_rewards.extend(last_step_rewards)
            logger.debug("Task %d average reward: %f", task_index, step_means[-1])
            if writer is not None and file_per_task:
                writer.close()
                record_files = list(getattr(writer, "paths", []))
            if break_after_one_task:
                break
    finally:
        progress.close()
        if writer is not None and getattr(writer, "is_open", False):
            writer.close()
        if writer is not None:
            record_files = list(getattr(writer, "paths", record_files))
    result = EnvRunResult(
        tag=tag,
        global_step=int(global_step),
        episode_rewards=final_rewards,
        num_transitions=transitions,
        record_files=record_files,
        elapsed_secs=time.perf_counter() - start,
        task_rewards=task_rewards,
    )
    logger.info(
        "%s at global step %d: %d tasks, mean reward %.4f at the last adaptation step.",
        tag,
        global_step,
        len(task_rewards),
        result.mean_reward,
    )
    if write_tf_summary and task_rewards:
        per_step = np.asarray(task_rewards)  # (tasks, adaptation steps)
        scalars: dict[str, float] = {}
        for step_num in range(per_step.shape[1]):
            scalars[f"{tag}/step_{step_num}_reward"] = float(per_step[:, step_num].mean())
            if step_num > 0:
                delta = per_step[:, step_num] - per_step[:, step_num - 1]
                scalars[f"{tag}/step_{step_num}_improvement"] = float(delta.mean())
        scalars[f"{tag}/episode_reward"] = result.mean_reward
        scalars.update({f"{tag}/Q/{step}": float(np.mean(v)) for step, v in q_values.items()})
        _write_summaries(root, task, global_step, scalars)
    return result
