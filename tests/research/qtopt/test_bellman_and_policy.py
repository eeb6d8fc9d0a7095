"""BellmanLabeller against closed-form critics, batched CEM, and the QT-Opt CEM policy."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import pytest

from t2r.export import export_saved_model
from t2r.predictors import ExportedModelPredictor
from t2r.research.qtopt import grasp_episode_to_transitions, parse_transitions
from t2r.research.qtopt.bellman import BellmanLabeller, batched_cem_max
from t2r.research.qtopt.policy import qtopt_cem_policy
from t2r.train import seed_everything
from tests.research.qtopt.models import TinyGrasping44Critic

GAMMA = 0.9
CENTRE = np.asarray([0.3, -0.5, 0.2])


class ClosedFormQ:
    """A 'predictor' whose Q is a known function of the packed action features."""

    def __init__(self, q: Callable[[Mapping[str, np.ndarray]], np.ndarray]) -> None:
        self.q = q
        self.calls = 0

    def predict(self, features: Mapping[str, Any]) -> dict[str, np.ndarray]:
        self.calls += 1
        return {"q_predicted": self.q(features)}


def _binary_q(features: Mapping[str, np.ndarray]) -> np.ndarray:
    """0.1 + 0.5 close + 0.3 terminate: max 0.9, reached by any sample with both > 0."""
    return (
        0.1
        + 0.5 * features["action/close_gripper"][..., 0]
        + 0.3 * features["action/terminate_episode"][..., 0]
    )


def _height_q(features: Mapping[str, np.ndarray]) -> np.ndarray:
    """0.5 height(s') + 0.3 terminate: max 0.5 h + 0.3, a different value per next state."""
    return (
        0.5 * features["action/height_to_bottom"][..., 0]
        + 0.3 * features["action/terminate_episode"][..., 0]
    )


def _quadratic_q(features: Mapping[str, np.ndarray]) -> np.ndarray:
    """1 - |world_vector - CENTRE|^2 / 4: max 1 at CENTRE (inside the action box)."""
    return 1.0 - ((features["action/world_vector"] - CENTRE) ** 2).sum(-1) / 4


def _batch(done: list[float], reward: list[float], heights: list[float] | None = None):
    count = len(done)
    rng = np.random.default_rng(0)
    return {
        "reward": np.asarray(reward, np.float32)[:, None],
        "done": np.asarray(done, np.float32)[:, None],
        "next_state/image": rng.integers(0, 256, (count, 16, 16, 3), dtype=np.uint8),
        "next_state/gripper_closed": np.zeros((count, 1), np.float32),
        "next_state/height_to_bottom": np.asarray(heights or [0.1] * count, np.float32)[:, None],
    }


def _labeller(q, **kwargs) -> tuple[BellmanLabeller, ClosedFormQ]:
    predictor = ClosedFormQ(q)
    model = TinyGrasping44Critic(action_batch_size=64)
    return BellmanLabeller(predictor, model, gamma=GAMMA, seed=0, **kwargs), predictor


def test_the_target_is_r_plus_gamma_max_q_and_done_ignores_the_next_state():
    labeller, _ = _labeller(_binary_q)
    target = labeller.label(_batch(done=[0, 1, 0, 1], reward=[0, 1, 0, 0]))
    assert target.shape == (4, 1) and target.dtype == np.float32
    np.testing.assert_allclose(target[:, 0], [GAMMA * 0.9, 1.0, GAMMA * 0.9, 0.0], rtol=1e-6)


def test_each_next_state_gets_its_own_max():
    labeller, _ = _labeller(_height_q)
    heights = [0.0, 0.2, 0.4, 0.6, 0.8]
    target = labeller.label(_batch(done=[0] * 5, reward=[0] * 5, heights=heights))
    np.testing.assert_allclose(target[:, 0], GAMMA * (0.5 * np.asarray(heights) + 0.3), rtol=1e-6)


def test_done_transitions_are_not_scored_at_all():
    labeller, predictor = _labeller(_binary_q)
    target = labeller.label(_batch(done=[1, 1], reward=[1, 0]))
    np.testing.assert_allclose(target[:, 0], [1.0, 0.0])
    assert predictor.calls == 0
    labeller.label(_batch(done=[0, 1], reward=[0, 0]))
    assert predictor.calls == 3  # one predict call per CEM iteration (T2R: 3)


def test_cem_finds_a_continuous_maximum_in_t2rs_three_iterations():
    labeller, _ = _labeller(_quadratic_q, max_batch_size=3)  # two chunks: 3 + 2
    target = labeller.label(_batch(done=[0] * 5, reward=[0] * 5))[:, 0]
    assert np.all(target <= GAMMA * 1.0 + 1e-6)  # a max of Q never exceeds its supremum
    assert np.all(target >= GAMMA * 0.97), target


def test_batched_cem_max_returns_the_maximizers():
    def q_fn(samples: np.ndarray) -> np.ndarray:  # (B, N, 6): per-row centres
        centres = np.asarray([[0.5] * 6, [-0.5] * 6])[:, None]
        return -((samples - centres) ** 2).sum(-1)

    actions, values = batched_cem_max(q_fn, 2, rng=np.random.default_rng(0))
    assert actions.shape == (2, 6) and values.shape == (2,)
    np.testing.assert_allclose(actions, [[0.5] * 6, [-0.5] * 6], atol=0.35)
    np.testing.assert_allclose(values, q_fn(actions[:, None])[:, 0])
    with pytest.raises(ValueError, match="num_elites <= cem_samples"):
        batched_cem_max(q_fn, 2, num_elites=65)


def test_clipped_double_q_takes_the_minimum_of_two_targets():
    labeller, _ = _labeller(
        _binary_q, second_target_predictor=ClosedFormQ(lambda f: 0.5 * _binary_q(f))
    )
    target = labeller.label(_batch(done=[0], reward=[0]))
    np.testing.assert_allclose(target[:, 0], [GAMMA * 0.45], rtol=1e-6)


def test_the_step_penalty_charges_only_steps_that_do_not_end_the_episode():
    labeller, _ = _labeller(_height_q, step_penalty=0.05)
    heights = [0.0, 0.2, 0.8, 0.8]  # the first next state's max is 0.3: 0.27 - 0.05
    target = labeller.label(_batch(done=[0, 0, 0, 1], reward=[0, 0, 0, 1], heights=heights))
    expected = GAMMA * (0.5 * np.asarray(heights[:3]) + 0.3) - 0.05
    np.testing.assert_allclose(target[:3, 0], expected, rtol=1e-6)
    assert target[3, 0] == 1.0  # the last step keeps its reward


def _zero_q(features: Mapping[str, np.ndarray]) -> np.ndarray:
    return np.zeros(features["action/terminate_episode"].shape[:-1])


def test_targets_are_clipped_to_the_sigmoids_range():
    labeller, _ = _labeller(_zero_q, step_penalty=0.05)
    target = labeller.label(_batch(done=[0, 1], reward=[0, 1.5]))
    np.testing.assert_allclose(target[:, 0], [0.0, 1.0])  # -0.05 and 1.5 would be labels


def test_the_mc_lower_bound_carries_a_success_back_over_its_episode():
    # two episodes: a success after three steps, a failure after two
    batch = _batch(done=[0, 0, 1, 0, 1], reward=[0, 0, 1, 0, 0])
    labeller, _ = _labeller(_zero_q, step_penalty=0.05, mc_lower_bound=True)
    g1 = GAMMA * 1.0 - 0.05
    expected = [GAMMA * g1 - 0.05, g1, 1.0, 0.0, 0.0]  # the failure's -0.05 is clipped
    np.testing.assert_allclose(labeller.label(batch)[:, 0], expected, rtol=1e-6)
    # the larger of the critic's backup (0.81 on every live step) and the return
    labeller, _ = _labeller(_binary_q, mc_lower_bound=True)
    target = labeller.label(batch)[:, 0]
    np.testing.assert_allclose(target, [GAMMA * 0.9, GAMMA, 1.0, GAMMA * 0.9, 0.0], rtol=1e-6)
    without, _ = _labeller(_zero_q)
    assert without.label(batch)[:2, 0].tolist() == [0.0, 0.0]  # Bellman alone: a step a time
    with pytest.raises(ValueError, match="whole episodes in order"):
        labeller.label(_batch(done=[0, 1, 0], reward=[0, 1, 0]))


def test_mc_mix_blends_the_backup_with_the_return():
    batch = _batch(done=[0, 0, 1, 0, 1], reward=[0, 0, 1, 0, 0])
    labeller, _ = _labeller(_binary_q, mc_mix=0.25)  # backup 0.81 on every live step
    returns = np.asarray([GAMMA**2, GAMMA, 1.0, 0.0, 0.0])
    backup = np.asarray([GAMMA * 0.9, GAMMA * 0.9, 1.0, GAMMA * 0.9, 0.0])
    np.testing.assert_allclose(
        labeller.label(batch)[:, 0], 0.75 * backup + 0.25 * returns, rtol=1e-6
    )
    with pytest.raises(ValueError, match="mc_mix must be in"):
        _labeller(_binary_q, mc_mix=1.5)


def test_labeller_errors_name_the_problem():
    with pytest.raises(ValueError, match="action_batch_size is 4, but CEM scores cem_samples=64"):
        BellmanLabeller(ClosedFormQ(_binary_q), TinyGrasping44Critic())
    with pytest.raises(ValueError, match="step_penalty must be in"):
        _labeller(_binary_q, step_penalty=-0.05)
    labeller, _ = _labeller(_binary_q)
    batch = _batch(done=[0], reward=[0])
    del batch["next_state/image"]
    with pytest.raises(KeyError, match="no 'next_state/image'"):
        labeller.label(batch)


def _obs(rng: np.random.Generator, closed: float = 0.0) -> dict[str, np.ndarray]:
    return {
        "image": rng.integers(0, 256, (16, 16, 3), dtype=np.uint8),
        "gripper_closed": np.asarray([closed], np.float32),
        "height_to_bottom": np.asarray([0.1], np.float32),
    }


def test_labelling_parsed_records_with_an_exported_critic(tmp_path):
    """The Bellman updater's path: records -> parse -> label with a lagged export."""
    seed_everything(0)
    rng = np.random.default_rng(0)
    model = TinyGrasping44Critic(action_batch_size=64).eval()
    export_saved_model(model, tmp_path, global_step=1)
    predictor = ExportedModelPredictor(tmp_path, timeout=0, trust_torchscript=True)
    assert predictor.restore()
    episode = [
        (_obs(rng), rng.uniform(-1, 1, 6).astype(np.float32), 0.0, _obs(rng), False, {}),
        (_obs(rng), rng.uniform(-1, 1, 6).astype(np.float32), 1.0, _obs(rng, 1.0), True, {}),
    ]
    batch = parse_transitions(grasp_episode_to_transitions(episode), image_size=16)
    target = BellmanLabeller(predictor, model, seed=0).label(batch)[:, 0]
    assert 0.0 <= target[0] <= GAMMA and target[1] == 1.0


# ------------------------------------------------------------------- policy
def test_the_cem_policy_acts_with_the_envs_six_vector():
    def q(features: Mapping[str, np.ndarray]) -> np.ndarray:
        return _quadratic_q(features) + 0.3 * features["action/terminate_episode"][..., 0]

    model = TinyGrasping44Critic(action_batch_size=64)
    predictor = ClosedFormQ(q)
    policy = qtopt_cem_policy(predictor, model, seed=0)
    action, debug = policy.sample_action(_obs(np.random.default_rng(0)), 0.0)
    assert debug is None
    assert action.shape == (6,) and action.dtype == np.float32
    assert np.all(np.abs(action) <= 1.0)
    np.testing.assert_allclose(action[:3], CENTRE, atol=0.3)
    assert action[5] > 0  # terminate: worth 0.3
    assert predictor.calls == 3  # T2R's 3 iterations, 64 candidates scored per call


def test_the_cem_policy_checks_the_export_tiling():
    with pytest.raises(ValueError, match="action_batch_size is 4, but CEM scores cem_samples=64"):
        qtopt_cem_policy(None, TinyGrasping44Critic())
