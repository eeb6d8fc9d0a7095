"""Policies over predictors: regression, CEM, exploration, switching, random."""

from __future__ import annotations

import numpy as np
import pytest

from t2r.export import export_saved_model
from t2r.policies import (
    CEMPolicy,
    LSTMCEMPolicy,
    OUExploreRegressionPolicy,
    PerEpisodeSwitchPolicy,
    Policy,
    RandomPolicy,
    RegressionPolicy,
    ScheduledExplorationRegressionPolicy,
    cross_entropy_method,
    normal_cross_entropy_method,
)
from t2r.predictors import AbstractPredictor, CheckpointPredictor, ExportedModelPredictor
from tests.export.fixtures import eager_outputs, pose_inputs
from tests.export.models import PoseModel, QuadraticCritic


@pytest.fixture(scope="module")
def pose_predictor(pose_export):
    predictor = ExportedModelPredictor(pose_export.export_dir, timeout=0)
    assert predictor.restore()
    return predictor


def _observation(seed=0):
    features = pose_inputs(None, seed=seed)
    return features["state/image"], features["state/gripper"]


def _greedy(pose_export, observation):
    image, gripper = observation
    batched = {"state/image": image[None], "state/gripper": gripper[None]}
    return eager_outputs(pose_export.model, batched)["inference_output"][0]


def test_regression_policy_packs_with_the_model_and_predicts_with_the_predictor(
    pose_export, pose_predictor
):
    policy = RegressionPolicy(PoseModel(), predictor=pose_predictor)  # untrained: only packs
    observation = _observation(1)
    action = policy.select_action(observation, None, 0)
    np.testing.assert_allclose(action, _greedy(pose_export, observation), atol=1e-5)
    np.testing.assert_allclose(policy.SelectAction(observation, None, 0), action)
    sampled, debug = policy.sample_action(observation, explore_prob=0.5)
    np.testing.assert_allclose(sampled, action)
    assert debug is None
    assert policy.restore() and policy.global_step == 7
    assert policy.model_path == str(pose_export.version_dir)
    by_fn = RegressionPolicy(
        predictor=pose_predictor,
        pack_features_fn=lambda s, c, t: {"state/image": s[0], "state/gripper": s[1]},
    )
    np.testing.assert_allclose(by_fn.select_action(observation), action)


def test_exploration_policies_add_noise(pose_export, pose_predictor):
    observation = _observation(2)
    greedy = _greedy(pose_export, observation)
    quiet = OUExploreRegressionPolicy(PoseModel(), predictor=pose_predictor, use_noise=False)
    np.testing.assert_allclose(quiet.select_action(observation), greedy, atol=1e-5)

    ou = OUExploreRegressionPolicy(
        PoseModel(), predictor=pose_predictor, theta=0.5, sigma=0.1, seed=3
    )
    rng, x = np.random.default_rng(3), np.zeros(2)
    for _ in range(3):
        x = x + 0.5 * (0 - x) + 0.1 * rng.standard_normal(2)
        np.testing.assert_allclose(ou.select_action(observation), greedy + x, atol=1e-5)
    ou.reset()
    x = 0.1 * rng.standard_normal(2)
    np.testing.assert_allclose(ou.select_action(observation), greedy + x, atol=1e-5)

    # The export is at global step 7: 0.2 - 7 * 0.1 < 0, so the noise is off.
    annealed = ScheduledExplorationRegressionPolicy(
        PoseModel(), predictor=pose_predictor, stddev_0=0.2, slope=-0.1
    )
    assert annealed.stddev == 0.0
    np.testing.assert_allclose(annealed.select_action(observation), greedy, atol=1e-5)
    noisy = ScheduledExplorationRegressionPolicy(
        PoseModel(), predictor=pose_predictor, stddev_0=0.1, slope=0.01, seed=0
    )
    assert noisy.stddev == pytest.approx(0.17)
    assert not np.allclose(noisy.select_action(observation), greedy, atol=1e-3)


@pytest.fixture(scope="module")
def critic_predictor(tmp_path_factory):
    export_dir = tmp_path_factory.mktemp("critic")
    export_saved_model(QuadraticCritic(), export_dir, global_step=1)
    predictor = ExportedModelPredictor(export_dir, timeout=0)
    assert predictor.restore()
    return predictor


@pytest.mark.parametrize("target", [(0.3, -0.5), (-1.2, 0.8)])
def test_cem_policy_finds_the_maximum_of_a_quadratic_critic(critic_predictor, target):
    policy = CEMPolicy(
        QuadraticCritic(),
        action_size=2,
        cem_iters=5,
        cem_samples=64,
        num_elites=10,
        predictor=critic_predictor,
        seed=0,
    )
    action = policy.select_action(np.array(target, np.float32), None, 0)
    assert action.shape == (2,) and action.dtype == np.float32
    np.testing.assert_allclose(action, target, atol=0.05)


def test_cem_policy_with_a_checkpoint_predictor_and_bounds():
    predictor = CheckpointPredictor(QuadraticCritic())
    predictor.init_randomly()
    policy = CEMPolicy(
        QuadraticCritic(),
        cem_iters=4,
        predictor=predictor,
        action_low=-0.5,
        action_high=0.5,
        seed=1,
    )
    action = policy.select_action(np.array([2.0, 0.0], np.float32))  # the max is out of bounds
    np.testing.assert_allclose(action, [0.5, 0.0], atol=0.05)
    with pytest.raises(ValueError, match="num_elites"):
        CEMPolicy(num_elites=100, cem_samples=10)


class StubRecurrentCritic(AbstractPredictor):
    """q = -|action - target|^2, next hidden state = hidden + action."""

    def predict(self, features):
        actions, hidden = features["action"], features["hidden"]
        q = -((actions - features["target"]) ** 2).sum(-1)
        return {"q_predicted": q, "lstm_hidden_state": hidden + actions}

    def get_feature_specification(self):
        return {}

    def restore(self, is_async=False):
        return True

    def close(self):
        pass

    def assert_is_loaded(self):
        pass


def test_lstm_cem_policy_carries_the_chosen_hidden_state():
    def pack(model, state, hidden, timestep, samples):
        n = len(samples)
        return {
            "action": samples,
            "target": np.tile(state, (n, 1)),
            "hidden": np.tile(hidden, (n, 1)),
        }

    policy = LSTMCEMPolicy(
        hidden_state_size=2, predictor=StubRecurrentCritic(), pack_fn=pack, cem_iters=3, seed=0
    )
    np.testing.assert_array_equal(policy.hidden_state, np.zeros(2))
    first = policy.select_action(np.array([0.5, 0.5]))
    np.testing.assert_allclose(policy.hidden_state, first, atol=1e-6)
    second = policy.select_action(np.array([0.5, 0.5]))
    np.testing.assert_allclose(policy.hidden_state, first + second, atol=1e-6)
    policy.reset()
    np.testing.assert_array_equal(policy.hidden_state, np.zeros(2))


def test_per_episode_switch_and_random_policies():
    explore = RandomPolicy(action_size=3, low=-0.1, high=0.1, seed=0)
    always_explore = PerEpisodeSwitchPolicy(lambda: explore, RandomPolicy, explore_prob=1.0)
    always_explore.reset()
    assert always_explore.active_policy is explore
    action = always_explore.select_action(None)
    assert action.shape == (3,) and np.all(np.abs(action) <= 0.1)
    greedy = RandomPolicy(action_size=2, low=5.0, high=6.0)
    never = PerEpisodeSwitchPolicy(explore, greedy, explore_prob=0.0, seed=0)
    assert np.all(never.select_action(None) >= 5.0)  # chooses on first use
    assert never.active_policy is greedy and never.global_step == 0 and never.restore()
    mixed = PerEpisodeSwitchPolicy(explore, greedy, explore_prob=0.5, seed=0)
    choices = set()
    for _ in range(20):
        mixed.reset()
        choices.add(id(mixed.active_policy))
    assert choices == {id(explore), id(greedy)}
    a, b = RandomPolicy(seed=4).select_action(None), RandomPolicy(seed=4).select_action(None)
    np.testing.assert_array_equal(a, b)


def test_t2r_style_subclasses_and_missing_predictors():
    class Legacy(Policy):
        def SelectAction(self, state, context, timestep):
            return state * 2

    legacy = Legacy()
    assert legacy.select_action(3, None, None) == 6 and legacy.sample_action(1, 0.0) == (2, None)
    assert legacy.global_step == 0 and legacy.model_path == "No model path defined."
    with pytest.raises(ValueError, match="needs a predictor"):
        RegressionPolicy(PoseModel()).select_action(_observation())
    with pytest.raises(ValueError, match="feature dict"):
        RegressionPolicy(predictor=StubRecurrentCritic()).select_action(np.zeros(2))


def test_cross_entropy_method_maximizes():
    def objective(x):
        return -((x - 3.0) ** 2).sum(-1)

    mean, stddev = normal_cross_entropy_method(
        objective,
        mean=np.zeros(2),
        stddev=np.full(2, 4.0),
        num_samples=100,
        num_elites=10,
        num_iterations=8,
        rng=np.random.default_rng(0),
    )
    np.testing.assert_allclose(mean, [3.0, 3.0], atol=0.05)
    assert np.all(stddev < 0.2)

    rng = np.random.default_rng(0)
    calls = []

    def sample_dict(low):
        calls.append(low)
        return {"a": rng.uniform(low, low + 1, 20), "b": np.arange(20)}

    samples, values, params = cross_entropy_method(
        sample_dict,
        lambda s: s["a"],
        lambda params, elites: {"low": float(elites["a"].min())},
        {"low": 0.0},
        num_elites=5,
        num_iterations=10,
        threshold_to_terminate=1.5,
    )
    assert values.shape == (20,) and set(samples) == {"a", "b"} and params["low"] > 0
    assert len(calls) < 10  # stopped once a value exceeded the threshold
    with pytest.raises(ValueError, match="returned 3 values for 20 samples"):
        cross_entropy_method(sample_dict, lambda s: [1, 2, 3], lambda p, e: p, {"low": 0.0}, 2)


def test_a_missing_output_names_the_outputs_and_the_argument(pose_predictor, critic_predictor):
    policy = RegressionPolicy(PoseModel(), predictor=pose_predictor, output_key="action")
    with pytest.raises(KeyError) as info:
        policy.select_action(_observation(1), None, 0)
    message = str(info.value)
    assert "RegressionPolicy: the model's predictions have no 'action' (output_key='action')" in (
        message
    )
    assert "its outputs are ['inference_output']. Pass output_key= one of them." in message
    cem = CEMPolicy(QuadraticCritic(), predictor=critic_predictor, q_key="q", seed=0)
    with pytest.raises(KeyError, match=r"CEMPolicy: .* no 'q' \(q_key='q'\); its outputs are \["):
        cem.select_action(np.zeros(2, np.float32), None, 0)


def test_make_policy_keeps_a_policy_and_calls_a_factory():
    from t2r.policies import make_policy

    class Duck:
        def sample_action(self, obs, explore_prob):
            return 0, None

    duck = Duck()
    assert make_policy(duck, required=None) is duck
    assert isinstance(make_policy(Duck, required=None), Duck)
    random_policy = RandomPolicy(seed=0)
    assert make_policy(random_policy) is random_policy
    assert isinstance(make_policy(RandomPolicy), RandomPolicy)
    with pytest.raises(TypeError, match="Expected a Policy or a factory of one, got Duck"):
        make_policy(Duck)
    with pytest.raises(TypeError, match="with sample_action.*got int"):
        make_policy(lambda: 3, required=None)
