"""run_env and run_meta_env: episodes, records, summaries, tasks, adaptation."""

from __future__ import annotations

import glob
import os

import numpy as np
import pytest

from t2r.collect import TFRecordReplayWriter, run_env, run_meta_env
from t2r.data import read_tfrecord
from t2r.train import read_metrics

from .toy import AdaptingPolicy, ConstantPolicy, CountingEnv, records


class Schedule:
    def value(self, t: int) -> float:
        return 0.001 * t


def test_run_env_episodes_records_and_summaries(tmp_path):
    env, policy = CountingEnv(length=3), ConstantPolicy(value=0.0, q=0.5)
    seen = []
    result = run_env(
        env,
        policy,
        explore_schedule=Schedule(),
        episode_to_transitions_fn=records,
        replay_writer=TFRecordReplayWriter(),
        root_dir=tmp_path,
        task=2,
        global_step=100,
        num_episodes=4,
        tag="collect",
        on_episode=lambda i, episode: seen.append((i, len(episode))),
        show_progress=False,
    )
    assert result.num_episodes == 4 and result.num_transitions == 12
    assert result.episode_rewards == [0.0] * 4 and result.mean_reward == 0.0
    assert seen == [(0, 3), (1, 3), (2, 3), (3, 3)]
    assert policy.resets == 4 and env.resets == 4 and not env.closed
    assert policy.explore_probs == [pytest.approx(0.1)] * 12
    (path,) = result.record_files
    assert os.path.dirname(path) == str(tmp_path / "policy_collect")
    assert os.path.basename(path).startswith("gs100_t2_")
    assert len(list(read_tfrecord(path))) == 12
    (summary,) = read_metrics(tmp_path / "live_eval_2")
    assert summary["step"] == 100 and summary["collect/episode_reward"] == 0.0
    assert summary["collect/Q/0"] == 0.5
    assert glob.glob(str(tmp_path / "live_eval_2" / "events.out.tfevents.*"))


def test_run_env_transitions_hold_obs_action_reward_and_info():
    env, captured = CountingEnv(length=2), []
    run_env(
        env,
        ConstantPolicy(value=1.0, q=2.0),
        num_episodes=1,
        on_episode=lambda i, e: captured.extend(e),
        show_progress=False,
    )
    (obs0, action0, reward0, new_obs0, done0, debug0), second = captured
    assert obs0.tolist() == [0.0] and new_obs0.tolist() == [1.0] and not done0
    assert action0.tolist() == [1.0, 0.0] and reward0 == -1.0
    assert debug0["q"] == 2.0 and debug0["task"] == 0  # the policy's and the env's debug
    assert second[4] is True


def test_run_env_old_gym_api_and_no_root_dir_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = run_env(
        CountingEnv(length=2, old_api=True),
        ConstantPolicy(),
        episode_to_transitions_fn=records,
        replay_writer=TFRecordReplayWriter(),
        num_episodes=2,
        show_progress=False,
    )
    assert result.num_transitions == 4 and result.record_files == []
    assert os.listdir(tmp_path) == []


def test_run_env_new_task_every_k_episodes():
    env = CountingEnv()
    result = run_env(
        env, ConstantPolicy(), num_episodes=5, episodes_per_task=2, show_progress=False
    )
    assert env.tasks_reset == 3  # before episodes 0, 2, 4
    assert result.episode_rewards == [-1.0, -1.0, -2.0, -2.0, -3.0]
    with pytest.raises(ValueError, match="reset_task"):
        run_env(object(), ConstantPolicy(), num_episodes=1, episodes_per_task=1)
    with pytest.raises(ValueError, match="needs a policy"):
        run_env(env)
    with pytest.raises(ValueError, match="episode_to_transitions_fn"):
        run_env(env, ConstantPolicy(), replay_writer=TFRecordReplayWriter(), root_dir="x")


def test_run_meta_env_adapts_within_each_task(tmp_path):
    env, policy = CountingEnv(), AdaptingPolicy()
    result = run_meta_env(
        env,
        policy,
        episode_to_transitions_fn=records,
        replay_writer=TFRecordReplayWriter(),
        root_dir=tmp_path,
        global_step=5,
        num_tasks=3,
        num_adaptations_per_task=2,
        num_episodes_per_adaptation=2,
        tag="eval",
        show_progress=False,
    )
    # Step 0 guesses 0 (error = task), step 1 adapted to the task (error 0).
    assert result.task_rewards == [[-1.0, 0.0], [-2.0, 0.0], [-3.0, 0.0]]
    assert result.episode_rewards == [0.0] * 6  # the last adaptation step of each task
    assert policy.adapted == [2, 2, 2] and policy.task_resets == 3 and env.tasks_reset == 3
    assert len(result.record_files) == 3  # one file per task, directly in root_dir
    names = sorted(os.path.basename(p) for p in result.record_files)
    assert all(n.startswith("gs5_t0_") for n in names)
    assert [n.rsplit("_", 1)[-1] for n in names] == [f"task{i}.tfrecord" for i in range(3)]
    assert sum(len(list(read_tfrecord(p))) for p in result.record_files) == 12
    (summary,) = read_metrics(tmp_path / "live_eval_0")
    assert summary["eval/step_0_reward"] == -2.0 and summary["eval/step_1_reward"] == 0.0
    assert summary["eval/step_1_improvement"] == 2.0


def test_run_meta_env_one_stream_and_break_after_one_task(tmp_path):
    writer = TFRecordReplayWriter(max_episodes_per_file=3)
    result = run_meta_env(
        CountingEnv(),
        ConstantPolicy(),
        episode_to_transitions_fn=records,
        replay_writer=writer,
        root_dir=tmp_path,
        num_tasks=4,
        num_adaptations_per_task=1,
        num_episodes_per_adaptation=2,
        file_per_task=False,
        show_progress=False,
    )
    assert result.num_episodes == 8 and len(result.record_files) == 3  # 3 + 3 + 2 episodes
    one = run_meta_env(CountingEnv(), ConstantPolicy(), break_after_one_task=True)
    assert len(one.task_rewards) == 1 and np.isfinite(one.mean_reward)
    with pytest.raises(ValueError, match="num_demos"):
        run_meta_env(CountingEnv(), ConstantPolicy(), demo_policy_cls=OracleDemo, num_demos=0)


class OracleDemo:
    """Demonstrates the task: acts `task` (reward 0) for two steps, then runs out (None)."""

    def __init__(self, env: CountingEnv) -> None:
        self.env, self.steps = env, 0

    def sample_action(self, obs, explore_prob):
        self.steps += 1
        if self.steps > 2:
            return None, None
        return np.array([self.env.task, 0.0], np.float32), {"demo": True}


def test_run_meta_env_demos_condition_then_inference_episodes(tmp_path):
    env, policy, seen = CountingEnv(length=5), AdaptingPolicy(), []
    result = run_meta_env(
        env,
        policy,
        demo_policy_cls=OracleDemo,
        num_demos=2,
        num_episodes=3,
        num_tasks=2,
        num_adaptations_per_task=1,
        episode_to_transitions_fn=records,
        replay_writer=TFRecordReplayWriter(),
        root_dir=tmp_path,
        on_episode=lambda i, e: seen.append((i, len(e), e[0][5].get("is_demo", False))),
        show_progress=False,
    )
    # Per task: 2 demos (2 steps each: the demo ran out), then 3 inference episodes.
    assert seen == [
        (i, n, demo) for i, (n, demo) in enumerate(([(2, True)] * 2 + [(5, False)] * 3) * 2)
    ]
    # The policy adapted on the demos before acting: every inference episode scores 0.
    assert policy.adapted == [2, 2] and result.task_rewards == [[0.0], [0.0]]
    assert result.num_episodes == 6 and result.num_transitions == 2 * (2 * 2 + 3 * 5)
    per_task = [len(list(read_tfrecord(p))) for p in sorted(result.record_files)]
    assert per_task == [19, 19]  # demos are written first, into the task's file
