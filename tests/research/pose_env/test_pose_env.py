"""PoseToyEnv: spaces, seeding, reward, hidden drift, rendering, orientation cue."""

from __future__ import annotations

import numpy as np
import pytest

from tests.needs import needs_module, pose_toy_env

# Imported first: it picks the headless GL backend before mujoco loads. Skipped
# without the sim extra (mujoco, gymnasium), a failure under CI.
pose_env = needs_module("t2r.research.pose_env.pose_env")
PoseEnvRandomPolicy = pose_env.PoseEnvRandomPolicy
PoseToyEnv = pose_env.PoseToyEnv
RenderBackendError = pose_env.RenderBackendError


def make_env(**kwargs) -> PoseToyEnv:
    return pose_toy_env(**kwargs)


@pytest.fixture
def env():
    environment = make_env(seed=0)
    yield environment
    environment.close()


def _episodes(environment: PoseToyEnv, count: int = 4):
    """(observation, info) of `count` episodes, with a new task halfway."""
    out = []
    for i in range(count):
        if i == count // 2:
            environment.reset_task()
        out.append(environment.reset())
    return out


def test_spaces(env):
    assert env.observation_space.shape == (64, 64, 3)
    assert env.observation_space.dtype == np.uint8
    assert env.action_space.shape == (2,)
    np.testing.assert_array_equal(env.action_space.low, [-1, -1])
    np.testing.assert_array_equal(env.action_space.high, [1, 1])
    obs, info = env.reset()
    assert obs.shape == (64, 64, 3) and obs.dtype == np.uint8
    assert env.observation_space.contains(obs)
    assert set(info) == {"target_pose", "hidden_drift", "object_pose", "camera"}
    assert info["target_pose"].shape == (2,) and info["target_pose"].dtype == np.float32
    small = make_env(seed=0, render_size=32)
    assert small.reset()[0].shape == (32, 32, 3)
    small.close()


def test_passes_gymnasiums_env_checker():
    from gymnasium.utils.env_checker import check_env

    environment = make_env(seed=0, render_mode="rgb_array")
    check_env(environment, skip_render_check=True)
    environment.close()


def test_task_and_pose_ranges(env):
    for _ in range(20):
        env.reset_task()
        _, info = env.reset()
        x, y, heading = info["object_pose"]
        yaw, pitch = info["camera"]
        assert -0.7 <= x <= 0.7 and -0.4 <= y <= 0.4 and -np.pi <= heading <= np.pi
        assert -180 <= yaw <= 180 and -40 <= pitch <= -20
        np.testing.assert_array_equal(info["hidden_drift"], [0, 0])
        np.testing.assert_allclose(info["target_pose"], [x, y], atol=1e-6)


def test_reset_keeps_the_task_and_draws_a_new_pose(env):
    _, first = env.reset()
    _, second = env.reset()
    np.testing.assert_array_equal(first["camera"], second["camera"])
    assert not np.allclose(first["object_pose"], second["object_pose"])
    env.reset_task()
    _, third = env.reset()
    assert not np.allclose(second["camera"], third["camera"])
    _, fourth = env.reset(options={"reset_task": True})
    assert not np.allclose(third["camera"], fourth["camera"])


def test_same_seed_same_episodes_different_seed_different():
    a, b, c = make_env(seed=3), make_env(seed=3), make_env(seed=4)
    runs = [_episodes(e) for e in (a, b, c)]
    for (obs_a, info_a), (obs_b, info_b) in zip(runs[0], runs[1]):
        np.testing.assert_array_equal(obs_a, obs_b)
        np.testing.assert_array_equal(info_a["target_pose"], info_b["target_pose"])
    for (obs_a, info_a), (obs_c, info_c) in zip(runs[0], runs[2]):
        assert not np.array_equal(obs_a, obs_c)
        assert not np.allclose(info_a["target_pose"], info_c["target_pose"])
    # reset(seed=...) reseeds: the same episodes whatever came before.
    a.reset_task()
    a.reset()
    np.testing.assert_array_equal(a.reset(seed=11)[0], b.reset(seed=11)[0])
    np.testing.assert_array_equal(a.reset()[1]["target_pose"], b.reset()[1]["target_pose"])
    for e in (a, b, c):
        e.close()


def test_reward_is_minus_the_distance_and_the_episode_ends(env):
    _, info = env.reset()
    target = info["target_pose"].astype(np.float64)
    obs, reward, terminated, truncated, step_info = env.step(target)
    assert reward == pytest.approx(0.0, abs=1e-6)
    assert terminated is True and truncated is False
    np.testing.assert_array_equal(step_info["target_pose"], info["target_pose"])
    assert obs.shape == (64, 64, 3)
    _, reward, terminated, _, _ = env.step(target + np.array([0.3, -0.4]))
    assert reward == pytest.approx(-0.5, abs=1e-6)
    assert terminated is True
    with pytest.raises(ValueError, match=r"shape \(2,\).*got shape \(3,\)"):
        env.step(np.zeros(3))


def test_hidden_drift_shifts_the_target_per_task_and_is_not_rendered():
    drifting, plain = make_env(seed=5, hidden_drift=True), make_env(seed=5)
    drifts = []
    for task in range(3):
        if task:
            drifting.reset_task()
            plain.reset_task()
        for _ in range(2):
            obs_d, info_d = drifting.reset()
            obs_p, info_p = plain.reset()
            drift = info_d["hidden_drift"]
            assert np.all(np.abs(drift) <= 0.3) and np.any(drift != 0)
            np.testing.assert_array_equal(info_d["object_pose"], info_p["object_pose"])
            np.testing.assert_allclose(
                info_d["target_pose"] - info_p["target_pose"], drift, atol=1e-6
            )
            np.testing.assert_array_equal(obs_d, obs_p)  # hidden: the image is the same
            _, reward, _, _, _ = drifting.step(info_p["target_pose"])
            assert reward == pytest.approx(-np.linalg.norm(drift), abs=1e-5)
            drifts.append(drift)
        np.testing.assert_array_equal(drifts[-1], drifts[-2])  # fixed within a task
    assert not np.allclose(drifts[0], drifts[2]) and not np.allclose(drifts[2], drifts[4])
    drifting.close()
    plain.close()


def test_the_image_shows_the_object(env):
    env.set_camera(30.0, -30.0)
    env.set_object_pose(0.0, 0.0, 0.0)
    centre = env.get_observation().copy()
    env.set_object_pose(0.3, 0.2, 0.0)
    moved = env.get_observation().copy()
    assert np.abs(centre.astype(int) - moved.astype(int)).max(-1).astype(bool).sum() >= 10

    visible = 0
    for _ in range(20):
        env.reset_task()
        obs, info = env.reset()
        x, y, _ = info["object_pose"]
        env.set_object_pose(50.0, 50.0, 0.0)  # off the table, out of view
        empty = env.get_observation()
        changed = np.abs(obs.astype(int) - empty.astype(int)).max(-1) > 20
        if changed.sum() >= 5:
            visible += 1
            rows, cols = np.nonzero(changed)
            # world_to_pixel projects the duck's centre onto the changed pixels.
            column, row = env.world_to_pixel([x, y, 0.06])
            assert abs(column - (cols.mean() + 0.5)) < 3 and abs(row - (rows.mean() + 0.5)) < 3
    assert visible >= 18


def test_heading_changes_the_image(env):
    env.set_camera(0.0, -30.0)
    env.set_object_pose(0.0, 0.0, 0.0)
    facing = env.get_observation().copy()
    env.set_object_pose(0.0, 0.0, np.pi)
    assert not np.array_equal(facing, env.get_observation())


@pytest.mark.parametrize(
    "yaw, pitch, x, y, heading",
    [
        (30.0, -30.0, 0.3, 0.2, 0.5),
        (-100.0, -25.0, -0.5, 0.1, 2.0),
        (170.0, -38.0, 0.1, -0.3, -1.0),
    ],
)
def test_the_orientation_cue_tells_yaw_from_yaw_plus_180(yaw, pitch, x, y, heading):
    """Without the cue, a half turn of the camera and of the object gives the same image."""
    differences = {}
    for cue in (False, True):
        environment = make_env(seed=0, orientation_cue=cue)
        environment.set_camera(yaw, pitch)
        environment.set_object_pose(x, y, heading)
        image = environment.get_observation().astype(int)
        environment.set_camera(yaw + 180.0, pitch)
        environment.set_object_pose(-x, -y, heading + np.pi)
        turned = environment.get_observation().astype(int)
        differences[cue] = (np.abs(image - turned).max(-1) > 30).sum()
        environment.close()
    assert differences[False] <= 2  # ambiguous: (x, y) and (-x, -y) look alike
    assert differences[True] >= 100


def test_render_mode_rgb_array():
    environment = make_env(seed=0, render_mode="rgb_array")
    obs, _ = environment.reset()
    frame = environment.render()
    np.testing.assert_array_equal(frame, obs)
    assert frame is not obs
    assert make_env(seed=0).render() is None
    with pytest.raises(ValueError, match="render_mode"):
        PoseToyEnv(render_mode="human")
    environment.close()


def test_a_missing_gl_backend_names_mujoco_gl_and_the_packages(monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("Cannot initialize a EGL device display.")

    monkeypatch.setattr(pose_env.mujoco, "Renderer", broken)
    with pytest.raises(RenderBackendError) as raised:
        PoseToyEnv()
    message = str(raised.value)
    for needle in ("MUJOCO_GL", "libegl1", "libosmesa6", "Cannot initialize a EGL device"):
        assert needle in message


def test_select_gl_backend_respects_the_user(monkeypatch):
    monkeypatch.setenv("MUJOCO_GL", "osmesa")
    assert pose_env.select_gl_backend() == "osmesa"


def test_random_policy():
    policy = PoseEnvRandomPolicy(seed=0)
    actions = np.stack([policy.select_action(None) for _ in range(200)])
    assert actions.shape == (200, 2) and actions.dtype == np.float32
    assert actions.min() >= -1 and actions.max() <= 1 and actions.std() > 0.4
    action, debug = policy.sample_action(np.zeros((64, 64, 3), np.uint8), 0.5)
    assert action.shape == (2,) and debug is None
    np.testing.assert_array_equal(
        PoseEnvRandomPolicy(seed=1).SelectAction(None),
        PoseEnvRandomPolicy(seed=1).select_action(None),
    )
    policy.reset()
    policy.init_randomly()
    assert policy.restore() is True
    assert policy.global_step == 0 and policy.model_path is None
    narrow = PoseEnvRandomPolicy(low=(-0.7, -0.4), high=(0.7, 0.4), seed=0)
    actions = np.stack([narrow.select_action(None) for _ in range(100)])
    assert np.all(np.abs(actions) <= [0.7, 0.4])


def test_random_policy_scores_about_the_documented_error(env):
    policy = PoseEnvRandomPolicy(seed=0)
    errors = []
    for _ in range(200):
        obs, _ = env.reset()
        _, reward, _, _, _ = env.step(policy.select_action(obs))
        errors.append(-reward)
    assert 0.7 < np.mean(errors) < 1.0
