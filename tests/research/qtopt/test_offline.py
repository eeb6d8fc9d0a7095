"""The offline QT-Opt machinery on the real grasp env, at test size: collect -> records ->
fitted Q iteration (export target, label by CEM, train) -> CEM policy acts. The
learning figure is benchmarks/qtopt_offline.py's, not a test's."""

from __future__ import annotations

import functools

import numpy as np

from t2r.export import export_saved_model
from t2r.models.optimizers import create_adam_optimizer
from t2r.policies import RandomPolicy
from t2r.predictors import ExportedModelPredictor
from t2r.research.qtopt import qtopt_cem_policy
from t2r.research.qtopt.offline import (
    collect_episodes,
    episodes_to_records,
    evaluate_success,
    fitted_q_iteration,
)
from t2r.train import seed_everything
from tests.needs import grasp_env, needs_module
from tests.research.qtopt.models import TinyGrasping44Critic


def test_fitted_q_iteration_runs_and_fits_its_targets(tmp_path):
    seed_everything(0)
    env = grasp_env(image_size=16, max_steps=4, seed=0)
    scripted = needs_module("t2r.research.grasp_env.scripted").ScriptedGraspPolicy(
        env, noise=0.2, seed=0
    )
    episodes = collect_episodes(env, scripted, 2)
    episodes += collect_episodes(env, RandomPolicy(6, seed=0), 2)
    records = episodes_to_records(episodes)
    assert len(records) == sum(len(e) for e in episodes)

    model = TinyGrasping44Critic(
        action_batch_size=64,
        create_optimizer_fn=functools.partial(create_adam_optimizer, learning_rate=1e-2),
    )
    stats = fitted_q_iteration(
        model,
        records,
        tmp_path,
        iterations=2,
        steps_per_iteration=20,
        batch_size=len(records),
        clipped_double_q=True,  # the second iteration's max is of min(target_1, target_0)
    )
    assert [s.iteration for s in stats] == [0, 1]
    for entry in stats:  # full-batch steps: the loss on the labelled records falls
        assert entry.last_loss < entry.first_loss, entry
    for index in (0, 1):  # the targets alternate between two export directories
        exported = [p.name for p in (tmp_path / f"target_{index}").iterdir() if p.name.isdigit()]
        assert exported == [str(index)]

    export_saved_model(model, tmp_path / "policy", global_step=2)
    predictor = ExportedModelPredictor(tmp_path / "policy", timeout=0, trust_torchscript=True)
    assert predictor.restore()
    policy = qtopt_cem_policy(predictor, model, seed=0)
    action, _ = policy.sample_action(episodes[0][0][0], 0.0)
    assert action.shape == (6,) and np.all(np.abs(action) <= 1)
    success = evaluate_success(grasp_env(image_size=16, max_steps=2, seed=1), policy, 1)
    assert success in (0.0, 1.0)
