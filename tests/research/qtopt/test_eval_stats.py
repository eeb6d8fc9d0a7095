"""evals.csv's greedy-episode statistics: length, how episodes ended, the first Q."""

from __future__ import annotations

import numpy as np
import pytest

from t2r.research.qtopt.loop import EVAL_FIELDS, GreedyEpisodeStats, QTOptConfig, _first_q
from t2r.research.qtopt.policy import qtopt_cem_policy
from tests.research.qtopt.models import TinyGrasping44Critic
from tests.research.qtopt.test_bellman_and_policy import ClosedFormQ, _obs, _quadratic_q


def _episode(length: int, terminate_last: bool) -> list[tuple]:
    actions = [np.zeros(6, np.float32) for _ in range(length)]
    actions[-1][5] = 1.0 if terminate_last else -1.0
    return [({}, a, 0.0, {}, i == length - 1, {}) for i, a in enumerate(actions)]


def test_greedy_episode_stats_tell_terminated_from_out_of_steps():
    stats = GreedyEpisodeStats()
    assert stats.scalars() == {}
    stats.add(_episode(2, terminate_last=True), first_q=0.5)
    stats.add(_episode(10, terminate_last=False), first_q=0.9)
    stats.add(_episode(10, terminate_last=False), first_q=1.0)
    stats.add(_episode(4, terminate_last=True), first_q=0.2)
    assert stats.scalars() == pytest.approx(
        {
            "eval/mean_length": 6.5,
            "eval/terminated_fraction": 0.5,
            "eval/out_of_steps_fraction": 0.5,
            "eval/first_q": 0.65,
        }
    )
    assert [f"eval/{f}" for f in EVAL_FIELDS[3:]] == list(stats.scalars())


def test_an_empty_episode_is_refused():
    with pytest.raises(ValueError, match="GreedyEpisodeStats.add"):
        GreedyEpisodeStats().add([], 0.0)


def test_first_q_is_the_value_cem_chose_the_first_action_for():
    model = TinyGrasping44Critic(action_batch_size=8)
    predictor = ClosedFormQ(_quadratic_q)
    policy = qtopt_cem_policy(predictor, model, seed=0, cem_samples=8, num_elites=2)
    obs = _obs(np.random.default_rng(0))

    def objective(samples: np.ndarray) -> np.ndarray:
        return np.asarray(
            predictor.predict(model.pack_features(obs, None, 0, samples))["q_predicted"]
        )

    action, debug = policy.get_cem_action(objective)
    episode = [(obs, action, 0.0, obs, True, {})]
    config = QTOptConfig(output_dir="unused", cem_samples=8)
    assert _first_q(config, predictor, model, episode) == pytest.approx(debug["q_predicted"])
