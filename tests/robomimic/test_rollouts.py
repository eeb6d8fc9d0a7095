"""Rollouts: robomimic's scoring, videos, and the scripted policy in Lift."""

from __future__ import annotations

import numpy as np
import pytest

from t2r.robomimic.rollouts import VideoWriter, rollout_with_stats, run_rollout
from tests.needs import needs_module
from tests.robomimic.robosuite_needs import needs_robosuite


class _Unstable(Exception):
    pass


class CountingEnv:
    """Reward 1 on each step in `rewarded`; success at `success_at` only; done at `done_at`."""

    rollout_exceptions = (_Unstable,)

    def __init__(self, success_at=None, done_at=None, rewarded=(), explode_at=None):
        self.success_at, self.done_at = success_at, done_at
        self.rewarded, self.explode_at = set(rewarded), explode_at
        self.t = 0
        self.resets = 0

    def reset(self):
        self.t, self.resets = 0, self.resets + 1
        return {"t": np.array([0.0])}

    def step(self, action):
        if self.t == self.explode_at:
            raise _Unstable("physics")
        self.t += 1
        reward = 1.0 if self.t in self.rewarded else 0.0
        return {"t": np.array([float(self.t)])}, reward, self.t == self.done_at, {}

    def is_success(self):
        return {"task": self.t == self.success_at, "grasp": self.t >= 2}

    def render(self, height=84, width=84, camera_name=None):
        return np.full((height, width, 3), self.t * 10, np.uint8)


class EchoPolicy:
    def __init__(self):
        self.episodes, self.seen = 0, []

    def start_episode(self):
        self.episodes += 1

    def __call__(self, ob, goal=None):
        self.seen.append(float(ob["t"][0]))
        return np.zeros(2)


def test_success_at_any_step_counts_and_return_sums_rewards():
    policy = EchoPolicy()
    env = CountingEnv(success_at=3, rewarded=(3, 5))
    results = run_rollout(policy, env, horizon=6)
    # Success held only at step 3, yet the episode counts as a success (robomimic's OR).
    assert results == {
        "Return": 2.0,
        "Horizon": 6.0,
        "Success_Rate": 1.0,
        "grasp_Success_Rate": 1.0,
    }
    assert policy.episodes == 1 and env.resets == 1 and policy.seen == [0, 1, 2, 3, 4, 5]


def test_terminate_on_success_and_done_end_the_episode():
    assert (
        run_rollout(EchoPolicy(), CountingEnv(success_at=3), 10, terminate_on_success=True)[
            "Horizon"
        ]
        == 3.0
    )
    results = run_rollout(EchoPolicy(), CountingEnv(done_at=4), 10)
    assert results["Horizon"] == 4.0 and results["Success_Rate"] == 0.0


def test_a_simulation_error_ends_the_episode_with_what_was_done():
    results = run_rollout(EchoPolicy(), CountingEnv(rewarded=(1, 2), explode_at=2), 10)
    assert results["Horizon"] == 2.0 and results["Return"] == 2.0


def test_rollout_with_stats_averages_episodes():
    stats = rollout_with_stats(EchoPolicy(), CountingEnv(success_at=2, rewarded=(1,)), 4, 3)
    assert stats["Success_Rate"] == 1.0 and stats["Return"] == 1.0 and stats["Horizon"] == 4.0
    assert stats["Num_Success"] == 3.0 and stats["Num_Episodes"] == 3.0
    assert len(stats["episodes"]) == 3
    with pytest.raises(ValueError, match="num_episodes must be >= 1"):
        rollout_with_stats(EchoPolicy(), CountingEnv(), 4, 0)


def test_video_has_every_video_skip_th_frame(tmp_path):
    cv2 = needs_module("cv2")
    path = tmp_path / "out.mp4"
    run_rollout(EchoPolicy(), CountingEnv(), 10, video_path=path, video_skip=3, video_size=(32, 48))
    capture = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame)
    assert len(frames) == 4  # steps 0, 3, 6, 9
    assert frames[0].shape == (32, 48, 3)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.mp4"]


def test_video_writer_leaves_nothing_on_error_and_checks_frames(tmp_path):
    needs_module("cv2")
    path = tmp_path / "v.mp4"
    with pytest.raises(ValueError, match="frame 1 is 8x8, the video is 16x16"):
        with VideoWriter(path) as writer:
            writer.append(np.zeros((16, 16, 3), np.uint8))
            writer.append(np.zeros((8, 8, 3), np.uint8))
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError, match=r"\(H, W, 3\) uint8"):
        VideoWriter(path).append(np.zeros((4, 4), np.float32))


@pytest.mark.slow
def test_scripted_lift_policy_succeeds_in_lift():
    needs_robosuite()
    from t2r.robomimic.envs import make_env_from_env_args
    from t2r.robomimic.lift_demos import ScriptedLiftPolicy, lift_env_args

    env = make_env_from_env_args(lift_env_args())
    try:
        stats = rollout_with_stats(
            ScriptedLiftPolicy(),
            env,
            horizon=100,
            num_episodes=2,
            terminate_on_success=True,
            seed=0,
        )
    finally:
        env.close()
    assert stats["Success_Rate"] == 1.0
    assert stats["Horizon"] < 100
