"""GraspEnv: spaces, seeding, the reward contract, episode bounds, object sets."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from t2r.research.grasp_env import ENV_ID, OBJECT_SETS
from t2r.research.grasp_env.objects import ObjectFamily, sets_overlap
from tests.needs import grasp_env, needs_module

# Imported first: it picks the headless GL backend before mujoco loads.
module = needs_module("t2r.research.grasp_env.grasp_env")
scripted = needs_module("t2r.research.grasp_env.scripted")


@pytest.fixture
def env() -> Iterator[Any]:
    environment = grasp_env(seed=0)
    yield environment
    environment.close()


def _up(terminate: bool = False) -> np.ndarray:
    """Straight up, gripper open."""
    return np.array([0, 0, 1, 0, -1, 1 if terminate else -1], dtype=np.float32)


def _run(environment: Any, actions: np.ndarray, seed: int) -> list[Any]:
    out = [environment.reset(seed=seed)]
    for action in actions:
        observation, reward, terminated, truncated, info = environment.step(action)
        out.append((observation, reward, terminated, truncated, info))
        if terminated:
            break
    return out


def _assert_same(a: Any, b: Any) -> None:
    if isinstance(a, dict):
        assert a.keys() == b.keys()
        for key in a:
            _assert_same(a[key], b[key])
    elif isinstance(a, (tuple, list)):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            _assert_same(x, y)
    else:
        np.testing.assert_array_equal(a, b)


def test_spaces_and_observations(env: Any) -> None:
    assert module.ACTION_LAYOUT == ("dx", "dy", "dz", "dyaw", "close", "terminate")
    assert env.max_steps == 10  # QT-Opt's short horizon, by default
    assert env.action_space.shape == (6,) and env.action_space.dtype == np.float32
    np.testing.assert_array_equal(env.action_space.low, -np.ones(6))
    np.testing.assert_array_equal(env.action_space.high, np.ones(6))
    assert set(env.observation_space.spaces) == {"image", "gripper_closed", "height_to_bottom"}
    observation, info = env.reset(seed=1)
    assert observation["image"].shape == (64, 64, 3) and observation["image"].dtype == np.uint8
    assert observation["gripper_closed"].dtype == np.float32
    assert env.observation_space.contains(observation)
    assert info == {"object_set": "train"}
    np.testing.assert_allclose(observation["height_to_bottom"], [module.START_HEIGHT], atol=2e-3)
    assert observation["image"].std() > 10  # a scene, not a blank buffer
    small = grasp_env(seed=0, image_size=32)
    assert small.reset(seed=1)[0]["image"].shape == (32, 32, 3)
    small.close()


def test_passes_gymnasiums_env_checker() -> None:
    from gymnasium.utils.env_checker import check_env

    environment = grasp_env(seed=0, render_mode="rgb_array")
    check_env(environment, skip_render_check=True)
    environment.close()


def test_registered_with_gymnasium() -> None:
    import gymnasium

    environment = gymnasium.make(ENV_ID, object_set="test", max_steps=3)
    observation, info = environment.reset(seed=0)
    assert info["object_set"] == "test" and observation["image"].shape == (64, 64, 3)
    environment.close()


def test_same_seed_same_episode_other_seed_another(env: Any) -> None:
    actions = np.random.default_rng(0).uniform(-1, 1, size=(10, 6)).astype(np.float32)
    actions[:, 5] = -1  # run the whole horizon
    other = grasp_env(seed=123)
    first = _run(env, actions, seed=7)
    _assert_same(first, _run(other, actions, seed=7))
    _assert_same(first, _run(env, actions, seed=7))  # a reused env too
    assert len(first) == 11
    different = _run(other, actions, seed=8)
    assert not np.array_equal(first[0][0]["image"], different[0][0]["image"])
    other.close()


def test_constructor_seed_fixes_the_first_reset() -> None:
    a, b = grasp_env(seed=5), grasp_env(seed=5)
    np.testing.assert_array_equal(a.reset()[0]["image"], b.reset()[0]["image"])
    assert a.objects == b.objects
    a.close()
    b.close()


def test_nothing_lifted_rewards_0(env: Any) -> None:
    env.reset(seed=2)
    for _ in range(3):
        observation, reward, terminated, truncated, info = env.step(_up())
        assert reward == 0.0 and not terminated and not truncated
        assert "grasp_success" not in info
    observation, reward, terminated, truncated, info = env.step(_up(terminate=True))
    # The gripper closed on air high above the bin and lifted.
    assert terminated and not truncated
    assert reward == 0.0 and info["grasp_success"] is False
    assert observation["gripper_closed"][0] == 1.0
    assert not env.lifted().any()
    assert env.object_positions()[:, 2].max() < 0.05


def test_an_object_lifted_rewards_1(env: Any) -> None:
    policy = scripted.ScriptedGraspPolicy(env)
    observation, _ = env.reset(seed=3)
    policy.reset()
    rewards = []
    for _ in range(env.max_steps):
        observation, reward, terminated, _, info = env.step(policy.sample_action(observation, 0)[0])
        rewards.append(reward)
        if terminated:
            break
    assert rewards[-1] == 1.0 and info["grasp_success"] is True
    assert all(r == 0.0 for r in rewards[:-1])
    heights = env.object_positions()[:, 2]
    assert heights.max() > module.LIFT_THRESHOLD  # one object is up in the fingers
    assert np.sort(heights)[-2] < 0.05  # the others stay in the bin


def test_the_step_limit_grasps_only_with_grasp_at_time_limit_as_terminate_does(env: Any) -> None:
    # The scripted grasp's own actions, but its last one (close and terminate) without
    # close and terminate, and the step limit right there.
    policy = scripted.ScriptedGraspPolicy(env)
    observation, _ = env.reset(seed=3)
    policy.reset()
    actions, terminated = [], False
    while not terminated:
        actions.append(policy.sample_action(observation, 0)[0])
        observation, reward, terminated, _, _ = env.step(actions[-1])
    assert reward == 1.0
    actions[-1] = np.concatenate([actions[-1][:4], [-1.0, -1.0]]).astype(np.float32)
    for grasp in (True, False):
        limited = grasp_env(seed=0, max_steps=len(actions), grasp_at_time_limit=grasp)
        *_, (observation, reward, terminated, _, info) = _run(limited, np.stack(actions), 3)
        limited.close()
        assert terminated and observation["gripper_closed"][0] == float(grasp)
        assert reward == float(grasp) == float(info["grasp_success"])
        assert info.get("time_limit_grasp", False) == grasp
    # The step limit's grasp is the terminate action's, to the pixel.
    by_limit = _run(grasp_env(seed=0, max_steps=len(actions)), np.stack(actions), 3)
    actions[-1][5] = 1.0
    by_action = _run(grasp_env(seed=0, max_steps=len(actions) + 1), np.stack(actions), 3)
    _assert_same(by_limit[-1][:4], by_action[-1][:4])
    assert "time_limit_grasp" not in by_action[-1][4]


def test_reward_is_whether_an_object_ends_up_lifted() -> None:
    # A noisy scripted grasp: some episodes succeed, some do not.
    environment = grasp_env(seed=0, object_set="test")
    policy = scripted.ScriptedGraspPolicy(environment, noise=0.3, seed=1)
    outcomes = []
    for seed in range(6):
        observation, _ = environment.reset(seed=seed)
        terminated = False
        while not terminated:
            action = policy.sample_action(observation, 0.0)[0]
            observation, reward, terminated, _, info = environment.step(action)
        assert reward == float(environment.lifted().any()) == float(info["grasp_success"])
        outcomes.append(reward)
    environment.close()
    assert 1.0 in outcomes and 0.0 in outcomes  # both sides of the contract were seen


def test_close_stays_closed_and_the_episode_is_bounded() -> None:
    environment = grasp_env(seed=0, max_steps=4)
    environment.reset(seed=0)
    close = np.array([0, 0, 0, 0, 1, -1], dtype=np.float32)
    observation, *_ = environment.step(close)
    assert observation["gripper_closed"][0] == 1.0 and environment.gripper_closed
    steps = 1
    terminated = False
    while not terminated:
        observation, _reward, terminated, _truncated, info = environment.step(_up())
        steps += 1
        assert observation["gripper_closed"][0] == 1.0
    assert steps == 4 and environment.steps == 4 and "grasp_success" in info
    with pytest.raises(RuntimeError, match="GraspEnv.step: the episode is over"):
        environment.step(_up())
    environment.close()


def test_actions_are_scaled_and_clipped(env: Any) -> None:
    env.reset(seed=4)
    x, y, height, yaw = env.gripper_pose()
    env.step(np.array([5, -0.5, 1, 0.5, -1, -1]))  # dx clipped to 1
    x2, y2, height2, yaw2 = env.gripper_pose()
    assert x2 - x == pytest.approx(min(module.XY_STEP, 0.14 - x), abs=3e-3)
    assert y2 - y == pytest.approx(-0.5 * module.XY_STEP, abs=3e-3)
    assert height2 - height == pytest.approx(module.Z_STEP, abs=3e-3)
    assert yaw2 - yaw == pytest.approx(0.5 * module.YAW_STEP, abs=0.03)
    with pytest.raises(ValueError, match=r"expected an action of shape \(6,\)"):
        env.step(np.zeros(4))
    with pytest.raises(ValueError, match="non-finite"):
        env.step(np.full(6, np.nan))


def test_invalid_arguments_name_the_place() -> None:
    with pytest.raises(ValueError, match="GraspEnv: object_set must be one of"):
        module.GraspEnv(object_set="val")
    with pytest.raises(ValueError, match="GraspEnv: num_objects"):
        module.GraspEnv(num_objects=0)
    with pytest.raises(ValueError, match="GraspEnv: render_mode"):
        module.GraspEnv(render_mode="human")


def test_train_and_test_object_sets_are_disjoint() -> None:
    train, test = OBJECT_SETS["train"], OBJECT_SETS["test"]
    assert sets_overlap(train, test) == []
    assert sets_overlap(train, train)  # the check can fail
    assert {f.shape for f in test.families} - {f.shape for f in train.families} == {"capsule"}
    with pytest.raises(ValueError, match=r"ObjectFamily\('cone'\)|shape must be one of"):
        ObjectFamily("cone", ((0.01, 0.02),))


def test_the_env_draws_from_its_object_set() -> None:
    shapes = {}
    for name in ("train", "test"):
        environment = grasp_env(seed=0, object_set=name, num_objects=4)
        drawn = []
        for seed in range(5):
            environment.reset(seed=seed)
            drawn += environment.objects
        environment.close()
        shapes[name] = {spec.shape for spec in drawn}
        families = OBJECT_SETS[name].families
        for spec in drawn:
            assert any(
                f.shape == spec.shape
                and all(lo <= s <= hi for s, (lo, hi) in zip(spec.size, f.size_ranges))
                for f in families
            ), spec
    assert shapes["train"] == {"box", "cylinder"}
    assert "capsule" in shapes["test"]


def test_objects_start_apart_inside_the_bin(env: Any) -> None:
    for seed in range(5):
        env.reset(seed=seed)
        positions = env.object_positions()
        assert np.all(np.abs(positions[:, :2]) < 0.15)
        assert np.all(positions[:, 2] > 0) and np.all(positions[:, 2] < 0.05)
        gaps = np.linalg.norm(positions[:, None, :2] - positions[None, :, :2], axis=-1)
        assert gaps[np.triu_indices(3, 1)].min() > 0.03


def test_six_large_held_out_objects_fit() -> None:
    # Capsules up to 11 cm long: bounding circles would not fit six in the bin.
    environment = grasp_env(seed=0, object_set="test", num_objects=6)
    for seed in range(4):
        environment.reset(seed=seed)
        positions = environment.object_positions()
        assert np.all(np.abs(positions[:, :2]) < 0.15)
        assert np.all(positions[:, 2] < 0.05)  # all resting on the floor: none on another
    environment.close()


def test_a_diverged_simulation_scores_0(env: Any, caplog: pytest.LogCaptureFixture) -> None:
    import mujoco

    policy = scripted.ScriptedGraspPolicy(env)
    observation, _ = env.reset(seed=3)  # the scripted grasp succeeds on this seed
    # What MuJoCo records when an acceleration diverges (it then resets the state).
    env.data.warning[mujoco.mjtWarning.mjWARN_BADQACC].number = 1
    terminated = False
    while not terminated:
        observation, reward, terminated, _, info = env.step(policy.sample_action(observation, 0)[0])
        assert info["physics_unstable"] is True
    assert env.lifted().any() and reward == 0.0 and info["grasp_success"] is False
    assert "the simulation diverged" in caplog.text
    env.reset(seed=3)  # a reset clears it
    assert "physics_unstable" not in env.step(np.zeros(6, np.float32))[4]


# Found by an adversarial search (full-speed moves down into the held-out objects):
# the palm drove a finger down onto a thin capsule (radius 1.4 cm), which shot out
# rolling at about 100 rad/s; with implicitfast's explicit gyroscopic forces its
# spin grew geometrically (1.4 % per 4 ms step at 100 rad/s, 8 % at 1,000) up to
# 1e5 rad/s, and MuJoCo reported BADQACC in the final lift (docs/grasp_env.md,
# "Divergence under adversarial actions").
_DIVERGED_SEED = 316
_DIVERGED_ACTIONS = np.array(
    [[-1, -1, -1, -1, -1, -1], [-1, -1, -1, 1, -1, -1], [-1, -1, -1, 1, -1, 1]], np.float32
)


def test_a_spun_up_thin_capsule_does_not_diverge() -> None:
    import mujoco

    environment = grasp_env(object_set="test", seed=_DIVERGED_SEED)
    try:
        environment.reset(seed=_DIVERGED_SEED)
        assert environment.objects[0].shape == "capsule"  # the one that spun up
        infos = [environment.step(action)[4] for action in _DIVERGED_ACTIONS]
        assert not any(info.get("physics_unstable", False) for info in infos), infos
        assert environment.data.warning[mujoco.mjtWarning.mjWARN_BADQACC].number == 0
        assert np.all(np.isfinite(environment.data.qvel))
    finally:
        environment.close()


def test_render_without_some_objects(env: Any) -> None:
    env.reset(seed=3)
    full = env.render_image()
    others = env.render_image(hide_objects=[1, 2])
    nothing = env.render_image(hide_objects=[0, 1, 2])
    assert not np.array_equal(full, others) and not np.array_equal(others, nothing)
    # Only the rendering changed: the next full image is the same, collisions too.
    np.testing.assert_array_equal(env.render_image(), full)
    assert all(env.model.geom_group[g] == 0 for g in env._active_geoms())
    # Object 0's pixels are where "others" and "nothing" differ.
    changed = np.any(others != nothing, axis=-1)
    assert 0 < changed.sum() < 0.1 * changed.size
    with pytest.raises(IndexError):
        env.render_image(hide_objects=[3])
