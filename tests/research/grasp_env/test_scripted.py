"""The scripted grasp policy: t2r's Policy interface, and it grasps."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from t2r.policies.policies import Policy
from tests.needs import grasp_env, needs_module

module = needs_module("t2r.research.grasp_env.grasp_env")
scripted = needs_module("t2r.research.grasp_env.scripted")


def _episode(environment: Any, policy: Any, seed: int) -> tuple[float, int]:
    observation, _ = environment.reset(seed=seed)
    policy.reset()
    for step in range(1, environment.max_steps + 1):
        action, debug = policy.sample_action(observation, 0.0)
        assert debug is None
        assert action.shape == (6,) and action.dtype == np.float32
        assert np.all(np.abs(action) <= 1)
        observation, reward, terminated, _, _ = environment.step(action)
        if terminated:
            return reward, step
    raise AssertionError("the env did not end the episode at max_steps")


@pytest.mark.parametrize("object_set", ["train", "test"])
def test_scripted_policy_grasps_most_seeded_episodes(object_set: str) -> None:
    environment = grasp_env(seed=0, object_set=object_set)
    policy = scripted.ScriptedGraspPolicy(environment)
    assert isinstance(policy, Policy)
    results = [_episode(environment, policy, seed) for seed in range(5)]
    environment.close()
    successes = sum(reward for reward, _ in results)
    assert successes >= 4, results
    # Its successes are its own: it closes and terminates before the horizon forces it.
    assert all(steps < environment.max_steps for reward, steps in results if reward), results


def test_noise_is_seeded_and_changes_the_actions() -> None:
    environment = grasp_env(seed=0)
    runs = []
    for seed in (1, 1, 2):
        policy = scripted.ScriptedGraspPolicy(environment, noise=0.3, seed=seed)
        environment.reset(seed=0)
        runs.append(np.stack([policy.select_action(None) for _ in range(3)]))
    environment.reset(seed=0)
    clean = scripted.scripted_grasp_action(environment)
    environment.close()
    np.testing.assert_array_equal(runs[0], runs[1])
    assert not np.array_equal(runs[0], runs[2])
    assert not np.allclose(runs[0][0], clean)
    np.testing.assert_array_equal(runs[0][:, 4:], np.broadcast_to(clean[4:], (3, 2)))


def test_noise_needs_a_generator_and_must_be_positive() -> None:
    environment = grasp_env(seed=0)
    environment.reset(seed=0)
    with pytest.raises(ValueError, match="noise > 0 needs an rng"):
        scripted.scripted_grasp_action(environment, noise=0.1)
    with pytest.raises(ValueError, match="ScriptedGraspPolicy: noise must be >= 0"):
        scripted.ScriptedGraspPolicy(environment, noise=-1.0)
    environment.close()


def test_runs_in_t2r_run_env_mixed_with_random_per_episode() -> None:
    from t2r.collect.rollouts import run_env
    from t2r.policies.policies import PerEpisodeSwitchPolicy, RandomPolicy

    environment = grasp_env(seed=0)
    policy = PerEpisodeSwitchPolicy(
        scripted.ScriptedGraspPolicy(environment),
        RandomPolicy(action_size=6, seed=0),
        explore_prob=0.5,
        seed=0,
    )
    result = run_env(environment, policy, num_episodes=4, show_progress=False)
    environment.close()
    assert len(result.episode_rewards) == 4
    assert set(result.episode_rewards) <= {0.0, 1.0}
    assert 4 <= result.num_transitions <= 40
