"""A tiny environment and policies for the collect tests (no rendering)."""

from __future__ import annotations

from typing import Any

import numpy as np


class CountingEnv:
    """Gymnasium-style: the observation is the step count; episodes last `length` steps.

    Reward: -|action - target|, target = the task number. `reset_task` counts tasks.
    With ``old_api=True``, ``reset`` returns the observation alone and ``step`` a
    4-tuple, as gym < 0.26.
    """

    def __init__(self, length: int = 1, old_api: bool = False) -> None:
        self.length = length
        self.old_api = old_api
        self.task = 0
        self.tasks_reset = 0
        self.resets = 0
        self.closed = False
        self._t = 0

    def reset_task(self) -> None:
        self.tasks_reset += 1
        self.task = self.tasks_reset

    def reset(self) -> Any:
        self.resets += 1
        self._t = 0
        obs = np.array([self._t], np.float32)
        return obs if self.old_api else (obs, {"task": self.task})

    def step(self, action: Any) -> Any:
        self._t += 1
        reward = -abs(float(np.asarray(action).ravel()[0]) - self.task)
        obs = np.array([self._t], np.float32)
        done = self._t >= self.length
        info = {"task": self.task, "target_pose": np.array([self.task, 0.0], np.float32)}
        if self.old_api:
            return obs, reward, done, info
        return obs, reward, done, False, info

    def close(self) -> None:
        self.closed = True


class ConstantPolicy:
    """Always `value`; records the explore probabilities it was asked with."""

    def __init__(self, value: float = 0.0, global_step: int = 0, q: float | None = None) -> None:
        self.value = value
        self.global_step = global_step
        self.q = q
        self.explore_probs: list[float] = []
        self.resets = 0
        self.restores = 0
        self.adapted: list[int] = []
        self.task_resets = 0

    def reset(self) -> None:
        self.resets += 1

    def restore(self) -> bool:
        self.restores += 1
        return True

    def sample_action(self, obs: Any, explore_prob: float) -> tuple[np.ndarray, Any]:
        self.explore_probs.append(explore_prob)
        debug = None if self.q is None else {"q": self.q}
        return np.array([self.value, 0.0], np.float32), debug


class AdaptingPolicy(ConstantPolicy):
    """A meta-learning policy: `adapt` sets its action to the task seen in the data."""

    def reset_task(self) -> None:
        self.task_resets += 1
        self.value = 0.0

    def adapt(self, episodes: list[Any]) -> None:
        self.adapted.append(len(episodes))
        # info['task'] of the first transition of the last episode
        self.value = float(episodes[-1][0][5]["task"])


def records(transitions: list[Any]) -> list[bytes]:
    """episode_to_transitions_fn: one record per transition, b'<reward>'."""
    return [f"{t[2]:.3f}".encode() for t in transitions]


class SlowCountingEnv(CountingEnv):
    """CountingEnv that sleeps `step_secs` per step (a collector that is still busy)."""

    def __init__(self, length: int = 1, step_secs: float = 0.0) -> None:
        super().__init__(length)
        self.step_secs = step_secs

    def step(self, action: Any) -> Any:
        import time

        time.sleep(self.step_secs)
        return super().step(action)


def collect_shard(
    shard: Any,
    on_episode: Any,
    length: int = 2,
    episodes_per_file: int = 2,
    step_secs: float = 0.0,
    kill_shard_after: tuple[int, int] | None = None,
) -> dict[str, Any]:
    """A `t2r.collect.CollectFn` over CountingEnv: records b'<seed>/<episode>/<step>'.

    `kill_shard_after=(index, n)`: shard `index` SIGKILLs itself after writing
    its episode `n` (0-based), i.e. with that episode in an unpublished file.
    """
    import os
    import signal

    from t2r.collect import TFRecordReplayWriter, run_env

    counter = iter(range(10**9))

    def to_records(episode: list[Any]) -> list[bytes]:
        number = next(counter)
        return [f"{shard.seed}/{number}/{step}".encode() for step in range(len(episode))]

    def after_episode(index: int, episode: Any) -> None:
        on_episode()
        if kill_shard_after is not None and kill_shard_after == (shard.index, index):
            os.kill(os.getpid(), signal.SIGKILL)

    result = run_env(
        SlowCountingEnv(length=length, step_secs=step_secs),
        ConstantPolicy(),
        episode_to_transitions_fn=to_records,
        replay_writer=TFRecordReplayWriter(max_episodes_per_file=episodes_per_file),
        root_dir=shard.root_dir,
        task=shard.index,
        num_episodes=shard.num_episodes,
        on_episode=after_episode,
        show_progress=False,
    )
    return {"collect": result}


def failing_shard(shard: Any, on_episode: Any) -> dict[str, Any]:
    """A CollectFn that raises in shard 1 and collects nothing in the others."""
    if shard.index == 1:
        raise RuntimeError("the robot fell over")
    from t2r.collect import EnvRunResult

    return {"collect": EnvRunResult("collect", 0, [0.0] * shard.num_episodes, 0, [], 0.0)}


def short_shard(shard: Any, on_episode: Any) -> dict[str, Any]:
    """A CollectFn that collects one episode fewer than its share."""
    from t2r.collect import EnvRunResult

    return {"collect": EnvRunResult("collect", 0, [0.0] * (shard.num_episodes - 1), 0, [], 0.0)}


def loop_shard(
    shard: Any,
    context: Any,
    length: int = 3,
    episodes_per_file: int = 2,
    step_secs: float = 0.0,
    kill_at: tuple[int, int, int] | None = None,
    started_log: str | None = None,
) -> None:
    """A `t2r.collect.ray_collector.ContinuousCollectFn` over SlowCountingEnv.

    Records are b'<shard>/<attempt>/<episode>/<step>'. Each round is a `run_env`
    call of `episodes_per_file` episodes (one replay file), until stopped.
    `kill_at=(shard index, episode, step)`: on attempt 0, that shard SIGKILLs
    itself inside that step of that episode (numbered over the whole attempt),
    i.e. mid-episode. `started_log`: a file each episode's start is appended to
    (``<shard>/<attempt>/<episode>``), to tell what the collector had started.
    """
    import os
    import signal

    from t2r.collect import TFRecordReplayWriter, run_env

    episode_number = -1

    class Env(SlowCountingEnv):
        def reset(self) -> Any:
            nonlocal episode_number
            episode_number += 1
            if started_log is not None:
                with open(started_log, "a") as f:
                    f.write(f"{shard.index}/{context.attempt}/{episode_number}\n")
            return super().reset()

        def step(self, action: Any) -> Any:
            if (
                kill_at is not None
                and context.attempt == 0
                and kill_at == (shard.index, episode_number, self._t)
            ):
                os.kill(os.getpid(), signal.SIGKILL)
            return super().step(action)

    env = Env(length=length, step_secs=step_secs)

    def to_records(episode: list[Any]) -> list[bytes]:
        return [
            f"{shard.index}/{context.attempt}/{episode_number}/{step}".encode()
            for step in range(len(episode))
        ]

    def after_episode(index: int, episode: Any) -> None:
        context.on_episode(len(episode), sum(t[2] for t in episode), global_step=0)

    while not context.should_stop():
        run_env(
            env,
            ConstantPolicy(),
            episode_to_transitions_fn=to_records,
            replay_writer=TFRecordReplayWriter(),
            root_dir=shard.root_dir,
            task=shard.index,
            num_episodes=episodes_per_file,
            on_episode=after_episode,
            show_progress=False,
        )


def raising_loop(shard: Any, context: Any) -> None:
    """A ContinuousCollectFn with a bug."""
    raise RuntimeError("the gripper is on backwards")
