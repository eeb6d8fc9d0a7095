"""pose_env with hidden drift: oracle demos -> per-task records -> MAML meta batches."""

from __future__ import annotations

import numpy as np
import torch

from t2r.data import create_parse_tf_example_fn, read_tfrecord
from t2r.meta_learning.meta_data import MetaRecordInputGenerator
from t2r.modes import ModeKeys
from t2r.research.pose_env import transition_spec
from t2r.research.pose_env.pose_env_maml import (
    PoseEnvOracleDemoPolicy,
    collect_meta_data,
    pose_env_maml_model,
)
from tests.needs import pose_toy_env


def test_oracle_demo_answers_the_drifted_target() -> None:
    env = pose_toy_env(hidden_drift=True, seed=3)
    try:
        env.reset()
        action, _ = PoseEnvOracleDemoPolicy(env).sample_action(None, 0.0)
        _, reward, *_ = env.step(action)
        assert reward == 0.0 or abs(reward) < 1e-6
        assert np.abs(env.hidden_drift_xy).max() > 0
    finally:
        env.close()


def test_collected_tasks_feed_maml_meta_batches(tmp_path) -> None:
    pose_toy_env().close()  # skips without MuJoCo / a renderer
    files = collect_meta_data(tmp_path, num_tasks=2, num_demos=2, num_episodes=2, seed=0)
    assert len(files) == 2
    parse = create_parse_tf_example_fn(transition_spec())
    for path in files:
        records = list(read_tfrecord(path))
        assert len(records) == 4  # 2 demos, then 2 random episodes
        parsed = parse(records)
        drifted = parsed["target_pose"]
        # The demos act the drifted target (reward 0); the random episodes do not.
        torch.testing.assert_close(parsed["pose"][:2], drifted[:2])
        assert (parsed["reward"][:2].abs() < 1e-6).all() and (parsed["reward"][2:] < 0).all()
    model = pose_env_maml_model(num_condition_samples_per_task=2, num_inference_samples_per_task=2)
    generator = MetaRecordInputGenerator(files, batch_size=2, seed=0)
    generator.set_specification_from_model(model, ModeKeys.TRAIN)
    features, labels = next(iter(generator.create_dataset(ModeKeys.TRAIN)))
    assert features["condition/features/state/image"].shape == (2, 2, 64, 64, 3)
    assert labels["target_pose"].shape == (2, 2, 2)
    outputs = model.model_fn(features, labels, ModeKeys.TRAIN)
    outputs.loss.backward()
    rates = list(model.inner_loop.learning_rates.values())
    assert rates and all(r.grad is not None for r in rates)
