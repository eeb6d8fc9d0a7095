"""pose_env models: specs, shapes, pack_features, the loss choice, random training."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from t2r import specs
from t2r.data import create_parse_tf_example_fn, read_tfrecord
from t2r.modes import ModeKeys
from t2r.research.pose_env import PoseEnvContinuousMCModel, PoseEnvRegressionModel
from t2r.train import seed_everything
from tests.needs import needs_fixture, pose_toy_env


def _images(batch: int) -> torch.Tensor:
    return torch.randint(0, 256, (batch, 64, 64, 3), dtype=torch.uint8)


def _fixture_batch(model, count: int, fixtures_dir: Path):
    """The first `count` records of T2R's pose_env fixture, parsed with the model's
    packing specs (which is also the check that the specs fit T2R's records)."""
    path = needs_fixture("pose_env_test_data.tfrecord")
    parse = create_parse_tf_example_fn(
        model.get_feature_specification_for_packing(ModeKeys.TRAIN),
        model.get_label_specification_for_packing(ModeKeys.TRAIN),
    )
    records = list(read_tfrecord(path))[:count]
    return parse(records)


# --------------------------------------------------------------- regression
def test_regression_specs_match_the_t2r_records():
    model = PoseEnvRegressionModel()
    packing = model.get_feature_specification_for_packing(ModeKeys.TRAIN)
    image = packing["state/image"]
    assert (image.shape, image.dtype, image.name, image.data_format) == (
        (64, 64, 3),
        torch.uint8,
        "state/image",
        "jpeg",
    )
    assert model.get_feature_specification(ModeKeys.TRAIN)["state/image"].dtype == torch.float32
    labels = model.get_label_specification_for_packing(ModeKeys.TRAIN)
    assert (labels["target_pose"].shape, labels["target_pose"].name) == ((2,), "target_pose")
    assert (labels["reward"].shape, labels["reward"].name) == ((1,), "reward")
    assert labels["reward"].is_optional and not labels["target_pose"].is_optional


def test_regression_forward_and_export_outputs():
    model = PoseEnvRegressionModel()
    outputs = model.model_fn({"state/image": _images(4)}, None, ModeKeys.PREDICT)
    assert list(outputs.export_outputs) == ["inference_output"]
    assert outputs.export_outputs["inference_output"].shape == (4, 2)
    assert outputs.inference_outputs["state_features"].shape == (4, 64)
    labels = {"target_pose": torch.rand(4, 2)}  # the reward label is optional
    evaluated = model.model_fn({"state/image": _images(4)}, labels, ModeKeys.EVAL)
    assert set(evaluated.eval_metrics) == {"loss", "mean_distance"}


def test_regression_pack_features_feeds_one_observation():
    model = PoseEnvRegressionModel()
    observation = np.zeros((64, 64, 3), np.uint8)
    features = model.pack_features(observation, None, 0)
    assert list(features) == ["state/image"] and features["state/image"].shape == (1, 64, 64, 3)
    assert model.pack_features({"state/image": observation})["state/image"].shape == (1, 64, 64, 3)
    tensors = {k: torch.as_tensor(v) for k, v in features.items()}
    assert model.model_fn(tensors, None, ModeKeys.PREDICT).export_outputs[
        "inference_output"
    ].shape == (1, 2)
    with pytest.raises(ValueError, match=r"\(H, W, 3\) image"):
        model.pack_features(np.zeros((1, 64, 64, 3), np.uint8))


def test_regression_loss_options():
    with pytest.raises(ValueError, match="loss_weighting must be None or 'exp_reward'"):
        PoseEnvRegressionModel(loss_weighting="reward")  # type: ignore[arg-type]
    model = PoseEnvRegressionModel(loss_weighting="exp_reward", reward_temperature=0.5)
    weights = model.example_weights(torch.tensor([[-1.0], [-0.1], [-0.5]]))
    assert torch.all(weights > 0) and float(weights.sum()) == pytest.approx(1.0)
    assert weights.argmax() == 1  # the highest reward weighs most
    shifted = model.example_weights(torch.tensor([[9.0], [9.9], [9.5]]))
    torch.testing.assert_close(weights, shifted)  # invariant to a reward shift
    # Equal rewards: exactly the plain mean squared error.
    prediction = torch.rand(5, 2)
    target = torch.rand(5, 2)
    labels = specs.TensorSpecStruct(target_pose=target, reward=torch.full((5, 1), -0.3))
    outputs = {"inference_output": prediction}
    plain = PoseEnvRegressionModel().loss_fn(labels, outputs, ModeKeys.TRAIN)
    torch.testing.assert_close(model.loss_fn(labels, outputs, ModeKeys.TRAIN), plain)
    torch.testing.assert_close(plain, torch.nn.functional.mse_loss(prediction, target))
    with pytest.raises(specs.SpecError, match="needs the 'reward' label"):
        model.loss_fn(specs.TensorSpecStruct(target_pose=target), outputs, ModeKeys.TRAIN)


class T2RRewardWeighted(PoseEnvRegressionModel):
    """Tensor2Robot's loss: the squared error to target_pose weighted by the raw reward."""

    def loss_fn(self, labels, inference_outputs, mode):
        error = (inference_outputs["inference_output"] - labels.target_pose).pow(2)
        return (labels.reward * error).mean()


def _distance_after_training(model, features, labels, steps: int) -> tuple[float, float]:
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)

    def distance() -> float:
        with torch.no_grad():
            metrics = model.model_fn(features, labels, ModeKeys.EVAL).eval_metrics
        return float(metrics["mean_distance"])

    before = distance()
    for _ in range(steps):
        model.train_step(features, labels, optimizer)
    return before, distance()


def test_default_loss_approaches_the_targets_and_t2r_weighting_does_not(fixtures_dir):
    """On T2R's own records (rewards < 0), the default loss brings predictions
    closer to target_pose; T2R's reward weighting pushes them away.

    Ten full-batch Adam steps on 32 records: enough for the direction to show
    (the default first learns the targets' mean offset), cheap enough for CPU.
    """
    seed_everything(0)
    features, labels = _fixture_batch(PoseEnvRegressionModel(), 32, fixtures_dir)
    assert torch.all(labels["reward"] < 0)
    models = {
        "t2r": T2RRewardWeighted,
        "default": PoseEnvRegressionModel,
        "exp_reward": lambda: PoseEnvRegressionModel(loss_weighting="exp_reward"),
    }
    results = {}
    for name, make in models.items():
        seed_everything(0)  # the same initial weights for all
        results[name] = _distance_after_training(make(), features, labels, steps=10)
    before = results["default"][0]
    assert all(start == pytest.approx(before) for start, _ in results.values())
    assert results["default"][1] < before - 0.01, results
    assert results["exp_reward"][1] < before - 0.01, results
    assert results["t2r"][1] > 1.5 * before, results


# ------------------------------------------------------------------- critic
def test_critic_specs_match_the_t2r_records():
    model = PoseEnvContinuousMCModel()
    packing = model.get_feature_specification_for_packing(ModeKeys.TRAIN)
    assert set(packing) == {"state/image", "action/pose"}
    assert (packing["state/image"].dtype, packing["state/image"].name) == (
        torch.uint8,
        "state/image",
    )
    assert (packing["action/pose"].shape, packing["action/pose"].name) == ((2,), "pose")
    reward = model.get_label_specification_for_packing(ModeKeys.TRAIN)["reward"]
    assert (reward.shape, reward.name) == ((1,), "reward")
    tiled = PoseEnvContinuousMCModel(action_batch_size=16)
    assert tiled.get_feature_specification(ModeKeys.PREDICT)["action/pose"].shape == (16, 2)


def test_critic_shapes_and_loss():
    model = PoseEnvContinuousMCModel()
    features = {"state/image": _images(3), "action/pose": torch.rand(3, 2)}
    reward = -torch.rand(3, 1)
    outputs = model.model_fn(features, {"reward": reward}, ModeKeys.TRAIN)
    q = outputs.inference_outputs["q_predicted"]
    assert q.shape == (3,)
    torch.testing.assert_close(outputs.loss, torch.nn.functional.mse_loss(q, reward[:, 0]))


def test_critic_scores_candidate_actions_per_image():
    seed_everything(0)
    plain = PoseEnvContinuousMCModel()
    tiled = PoseEnvContinuousMCModel(action_batch_size=5)
    tiled.load_state_dict(plain.state_dict())
    observation = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    actions = np.random.default_rng(1).uniform(-1, 1, (5, 2)).astype(np.float32)

    packed = tiled.pack_features(observation, None, 0, actions)
    assert packed["state/image"].shape == (1, 64, 64, 3) and packed["action/pose"].shape == (
        1,
        5,
        2,
    )
    q_tiled = tiled.model_fn(
        {k: torch.as_tensor(v) for k, v in packed.items()}, None, ModeKeys.PREDICT
    ).export_outputs["q_predicted"]
    assert q_tiled.shape == (1, 5)

    repeated = plain.pack_features(observation, None, 0, actions)
    assert repeated["state/image"].shape == (5, 64, 64, 3) and repeated["action/pose"].shape == (
        5,
        2,
    )
    q_plain = plain.model_fn(
        {k: torch.as_tensor(v) for k, v in repeated.items()}, None, ModeKeys.PREDICT
    ).export_outputs["q_predicted"]
    torch.testing.assert_close(q_tiled[0], q_plain, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="action_batch_size is 5"):
        tiled.pack_features(observation, None, 0, actions[:3])


def test_critic_fits_the_fixture_rewards(fixtures_dir):
    seed_everything(0)
    model = PoseEnvContinuousMCModel(
        create_optimizer_fn=lambda params: torch.optim.Adam(params, lr=1e-3)
    )
    features, labels = _fixture_batch(model, 32, fixtures_dir)
    optimizer = model.create_optimizer()
    losses = [float(model.train_step(features, labels, optimizer).loss) for _ in range(15)]
    assert losses[-1] < 0.5 * losses[0], losses


# Random-train of both models: tests/test_model_contract.py.


def test_env_observation_through_the_model():
    env = pose_toy_env(seed=0)
    observation, _ = env.reset()
    model = PoseEnvRegressionModel()
    features = {k: torch.as_tensor(v) for k, v in model.pack_features(observation).items()}
    action = model.model_fn(features, None, ModeKeys.PREDICT).export_outputs["inference_output"]
    _, reward, terminated, _, _ = env.step(action[0].detach().numpy())
    assert terminated and reward <= 0
    env.close()
