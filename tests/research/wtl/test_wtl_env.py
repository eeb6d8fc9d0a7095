"""The Watch-Try-Learn task: determinism, layouts per phase, the reward contract,
the scripted agent's ceilings, and the episode -> meta example construction."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from t2r.research.wtl.episodes import (
    CONDITION_ACTION,
    CONDITION_STATE,
    CONDITION_SUCCESS,
    INFERENCE_STATE,
    episode_arrays,
    inference_features,
    split_state,
    wtl_example,
)
from t2r.research.wtl.scripted import (
    ScriptedWTLPolicy,
    demo_colour,
    episode_end,
    reach_action,
)
from tests.needs import wtl_env


@pytest.fixture
def env() -> Iterator[Any]:
    environment = wtl_env(seed=0)
    yield environment
    environment.close()


def _rollout(env: Any, actions: list[np.ndarray], **reset: Any) -> list[Any]:
    obs, _ = env.reset(**reset)
    trace = [obs["full_state_pose"]]
    for action in actions:
        obs, reward, terminated, truncated, info = env.step(action)
        trace.append((obs["full_state_pose"], reward, terminated, truncated, info["success"]))
    return trace


def test_the_same_seed_gives_the_same_task_and_episodes() -> None:
    actions = [np.array([0.3, -0.7], np.float32)] * 5
    traces = []
    for _ in range(2):
        environment = wtl_env(seed=7)
        environment.reset_task()
        traces.append(
            (_rollout(environment, actions), _rollout(environment, actions), environment.target)
        )
        environment.close()
    (demo_a, trial_a, target_a), (demo_b, trial_b, target_b) = traces
    assert target_a == target_b
    for a, b in zip(demo_a + trial_a, demo_b + trial_b):
        np.testing.assert_array_equal(
            np.asarray(a[0] if isinstance(a, tuple) else a),
            np.asarray(b[0] if isinstance(b, tuple) else b),
        )
    other = wtl_env(seed=8)
    other.reset_task()
    assert not np.array_equal(_rollout(other, [])[0], demo_a[0])
    other.close()


def test_layouts_demo_first_then_the_trial_layout_twice(env: Any) -> None:
    env.reset_task()
    demo, info_demo = env.reset()
    trial, info_trial = env.reset()
    retrial, info_retrial = env.reset()
    assert (info_demo["phase"], info_trial["phase"], info_retrial["phase"]) == (
        "demo",
        "trial",
        "trial",
    )
    # The cubes move between the demonstration and the trial, and stay for the retrial.
    assert not np.allclose(demo["objects"], trial["objects"])
    np.testing.assert_array_equal(trial["objects"], retrial["objects"])
    # A new effector start every episode.
    assert not np.allclose(trial["effector"], retrial["effector"])
    # Two cubes of each colour, the target among them, same colour in both layouts.
    for obs, info in ((demo, info_demo), (trial, info_trial)):
        colours, counts = np.unique(obs["objects"][:, 2:], axis=0, return_counts=True)
        assert len(colours) == 2 and counts.tolist() == [2, 2]
        np.testing.assert_allclose(obs["objects"][info["target_slot"], :2], info["target_position"])
    assert np.allclose(
        demo["objects"][info_demo["target_slot"], 2:],
        trial["objects"][info_trial["target_slot"], 2:],
    )
    np.testing.assert_array_equal(
        demo["full_state_pose"], np.concatenate([demo["effector"], demo["objects"].reshape(-1)])
    )
    _, explicit = env.reset(options={"phase": "demo"})
    assert explicit["phase"] == "demo"
    with pytest.raises(ValueError, match="phase must be one of"):
        env.reset(options={"phase": "retrial"})


def test_reward_contract(env: Any) -> None:
    env.reset_task()
    env.reset(options={"phase": "trial"})
    slot = env.layout.slot_of(env.target)
    twin = env.layout.slot_of((env.target[0], 1 - env.target[1]))
    # Sitting on the wrong twin: reward 0 every step, truncated at max_episode_steps.
    env.effector = env.layout.positions[twin].copy()
    for step in range(env.max_episode_steps):
        _, reward, terminated, truncated, info = env.step(np.zeros(2))
        assert reward == 0.0 and not terminated and not info["success"]
        assert truncated == (step == env.max_episode_steps - 1)
    # Reaching the target: reward 1, terminated, not truncated.
    env.reset(options={"phase": "trial"})
    target = env.layout.positions[slot]
    rewards = []
    for _ in range(env.max_episode_steps):
        _, reward, terminated, truncated, info = env.step(
            reach_action(env.effector, target, env.step_size)
        )
        rewards.append(reward)
        if terminated or truncated:
            break
    assert rewards[-1] == 1.0 and sum(rewards) == 1.0 and terminated and not truncated
    assert info["distance"] <= env.success_radius
    # Actions are clipped to one step; bad actions are refused, naming the env.
    env.reset(options={"phase": "trial"})
    start = env.effector.copy()
    env.step(np.array([10.0, 0.0]))
    assert np.isclose(env.effector[0] - start[0], env.step_size) or env.effector[0] == 0.25
    with pytest.raises(ValueError, match="WatchTryLearnEnv: the action must be 2 finite"):
        env.step(np.array([np.nan, 0.0]))


def test_the_scripted_agent_reaches_the_ceilings(env: Any) -> None:
    """Trial ~50 % (a twin is a coin flip), retrial 100 % (the trial's reward decides)."""
    from t2r.collect import run_meta_env
    from t2r.research.wtl.scripted import WTLDemoPolicy

    result = run_meta_env(
        env,
        ScriptedWTLPolicy(env.step_size),
        demo_policy_cls=WTLDemoPolicy,
        num_tasks=200,
        num_adaptations_per_task=2,
        show_progress=False,
        write_tf_summary=False,
    )
    trial, retrial = np.asarray(result.task_rewards).mean(axis=0)
    assert retrial == 1.0
    assert 0.35 < trial < 0.65  # binomial(200, ~0.5): 4.5 standard deviations wide


def _transition(state: np.ndarray, action: Any, reward: float, new_state: np.ndarray) -> tuple:
    return (
        {"full_state_pose": state},
        np.asarray(action, np.float32),
        reward,
        {"full_state_pose": new_state},
        reward > 0,
        {},
    )


def _state(effector: tuple[float, float], objects: list[tuple[float, ...]]) -> np.ndarray:
    return np.asarray([*effector, *[v for o in objects for v in o]], np.float32)


RED, BLUE = (1.0, 0.0, 0.0), (0.0, 0.0, 1.0)
# Slots: red at (0.1, 0.1) and (-0.2, 0.0); blue at (0.2, -0.2) and (0.0, 0.2).
OBJECTS = [(0.1, 0.1, *RED), (0.2, -0.2, *BLUE), (-0.2, 0.0, *RED), (0.0, 0.2, *BLUE)]


def test_episode_arrays_pad_with_the_last_state_and_stay_actions() -> None:
    s0, s1, s2 = (_state(e, OBJECTS) for e in ((0.0, 0.0), (0.05, 0.05), (0.1, 0.1)))
    episode = [_transition(s0, [1, 1], 0.0, s1), _transition(s1, [1, 1], 1.0, s2)]
    arrays = episode_arrays(episode, length=4)
    np.testing.assert_array_equal(arrays["full_state_pose"], np.stack([s0, s1, s2, s2]))
    np.testing.assert_array_equal(arrays["action"], [[1, 1], [1, 1], [0, 0], [0, 0]])
    np.testing.assert_array_equal(arrays["success"], np.ones((4, 1)))
    failed = episode_arrays(episode[:1], length=2)
    np.testing.assert_array_equal(failed["success"], np.zeros((2, 1)))
    with pytest.raises(ValueError, match="3 steps, more than the fixed length 2"):
        episode_arrays(episode + episode[:1], length=2)
    with pytest.raises(ValueError, match="empty"):
        episode_arrays([], length=2)
    effector, objects = split_state(s2)
    np.testing.assert_array_equal(effector, np.float32([0.1, 0.1]))
    assert objects.shape == (4, 5) and objects[2, 0] == np.float32(-0.2)


def test_trial_and_retrial_examples_from_hand_built_episodes() -> None:
    demo_layout = [(0.0, -0.2, *BLUE), (-0.1, 0.1, *RED), (0.2, 0.2, *RED), (0.1, -0.1, *BLUE)]
    demo = [
        _transition(
            _state((-0.1, 0.0), demo_layout), [0, 1], 0.0, _state((-0.1, 0.05), demo_layout)
        ),
        _transition(
            _state((-0.1, 0.05), demo_layout), [0, 1], 1.0, _state((-0.1, 0.1), demo_layout)
        ),
    ]
    np.testing.assert_array_equal(demo_colour(demo), RED)
    # The trial went to the red cube at (0.1, 0.1) and was not rewarded.
    trial = [
        _transition(_state((0.1, 0.0), OBJECTS), [0, 1], 0.0, _state((0.1, 0.05), OBJECTS)),
        _transition(_state((0.1, 0.05), OBJECTS), [0, 1], 0.0, _state((0.1, 0.1), OBJECTS)),
    ]
    np.testing.assert_array_equal(episode_end(trial)[0], np.float32([0.1, 0.1]))
    features, labels = wtl_example([demo], trial, length=3)
    assert features[CONDITION_STATE].shape == (1, 3, 22)
    np.testing.assert_array_equal(features[CONDITION_SUCCESS][0, :, 0], [1, 1, 1])
    np.testing.assert_array_equal(features[CONDITION_ACTION][0], [[0, 1], [0, 1], [0, 0]])
    np.testing.assert_array_equal(features[INFERENCE_STATE][0, 2], _state((0.1, 0.1), OBJECTS))
    np.testing.assert_array_equal(labels["action"][0], [[0, 1], [0, 1], [0, 0]])
    np.testing.assert_array_equal(labels["success"][0, :, 0], [0, 0, 0])
    retrial_features, _ = wtl_example([demo, trial], trial, length=3)
    assert retrial_features[CONDITION_STATE].shape == (2, 3, 22)
    np.testing.assert_array_equal(retrial_features[CONDITION_SUCCESS][:, 0, 0], [1, 0])
    packed = inference_features({"full_state_pose": _state((0.0, 0.0), OBJECTS)}, length=3)
    assert packed[INFERENCE_STATE].shape == (1, 3, 22)

    # The scripted agent: the trial reaches the nearer red cube; the retrial the other
    # one after a failed trial, the same one after a rewarded trial.
    agent = ScriptedWTLPolicy(step_size=0.05)
    start = {"full_state_pose": _state((0.0, 0.0), OBJECTS)}
    agent.adapt([demo])
    np.testing.assert_allclose(agent.target(start), [0.1, 0.1])
    agent.adapt([demo, trial])
    np.testing.assert_allclose(agent.target(start), [-0.2, 0.0])
    np.testing.assert_allclose(agent.sample_action(start, 0.0)[0], [-1.0, 0.0])
    rewarded = trial[:1] + [trial[1][:2] + (1.0,) + trial[1][3:]]
    agent.adapt([demo, rewarded])
    np.testing.assert_allclose(agent.target(start), [0.1, 0.1])
