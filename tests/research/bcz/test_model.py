"""BCZModel: specs and shapes, the loss in closed form, FiLM conditioning, the heads."""

from __future__ import annotations

import pytest
import torch

from t2r import specs
from t2r.modes import ModeKeys
from t2r.research.bcz import LANG_REACH_SIZE, PAPER_SIZE, BCZModel, MultiHeadMLP
from t2r.research.lang_env.features import EMBEDDING, IMAGE
from t2r.train import seed_everything


def _features(model: BCZModel, batch: int, seed: int = 0) -> dict[str, torch.Tensor]:
    spec = model.get_feature_specification_for_packing(ModeKeys.PREDICT)
    return {
        k: torch.from_numpy(v)
        for k, v in specs.make_random_numpy(spec, batch_size=batch, seed=seed).items()
    }


def test_specs_and_output_shapes() -> None:
    model = BCZModel(num_waypoints=4, action_components=(("xyz", 2, 100.0), ("angle", 1, 1.0)))
    features = model.get_feature_specification(ModeKeys.TRAIN)
    assert features[IMAGE].shape == (32, 32, 3) and features[IMAGE].dtype == torch.uint8
    assert features[EMBEDDING].shape == (512,)
    labels = model.get_label_specification(ModeKeys.TRAIN)
    assert {k: tuple(v.shape) for k, v in labels.items()} == {
        "future/xyz_residual": (4, 2),
        "future/angle_residual": (4, 1),
    }
    model.eval()
    with torch.no_grad():
        out = model.model_fn(_features(model, 3), None, ModeKeys.PREDICT).export_outputs
    assert {k: tuple(v.shape) for k, v in out.items()} == {
        "xyz_residual": (3, 4, 2),
        "angle_residual": (3, 4, 1),
    }


def test_sizes() -> None:
    """T2R's BC-Z tower is a ResNet-18 with FiLM on all four block layers."""
    paper = BCZModel(**PAPER_SIZE)
    assert paper.tower.depth == 18 and paper.num_waypoints == 10
    assert all(stage.film is not None for stage in paper.tower.stages)
    assert paper.get_feature_specification(ModeKeys.TRAIN)[IMAGE].shape == (200, 200, 3)
    small = BCZModel(**LANG_REACH_SIZE)
    assert small.get_feature_specification(ModeKeys.TRAIN)[IMAGE].shape == (64, 64, 3)
    assert sum(p.numel() for p in small.parameters()) < sum(p.numel() for p in paper.parameters())


@pytest.mark.parametrize(("offset", "huber"), [(0.5, 0.125), (2.0, 1.5)])
def test_the_loss_is_weighted_mean_huber(offset: float, huber: float) -> None:
    """T2R: weight * mean(huber(prediction - label)), delta 1 (quadratic, then linear)."""
    seed_everything(0)
    model = BCZModel().eval()
    features = _features(model, 2)
    outputs = model.inference_network_fn(features, None, ModeKeys.EVAL)
    labels = {"future/xyz_residual": outputs["xyz_residual"].detach() + offset}
    with torch.no_grad():
        loss, train_outputs = model.model_train_fn(features, labels, outputs, ModeKeys.EVAL)
    assert float(loss) == pytest.approx(100.0 * huber, rel=1e-5)
    assert float(train_outputs["first_xyz_error"]) == pytest.approx(100.0 * huber, rel=1e-5)
    assert float(train_outputs["first_xyz_distance"]) == pytest.approx(offset * 2**0.5, rel=1e-5)
    mse = BCZModel(loss="mse").eval()
    mse.load_state_dict(model.state_dict())
    with torch.no_grad():
        loss, _ = mse.model_train_fn(features, labels, outputs, ModeKeys.EVAL)
    assert float(loss) == pytest.approx(100.0 * offset**2, rel=1e-5)


def _instruction_batch(model: BCZModel) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """One image, three embeddings, three different trajectories: only the embedding tells."""
    generator = torch.Generator().manual_seed(0)
    image = torch.randint(0, 256, (1, 32, 32, 3), generator=generator, dtype=torch.uint8)
    embeddings = torch.nn.functional.normalize(torch.randn(3, 512, generator=generator), dim=-1)
    targets = torch.tensor([[0.2, 0.0], [-0.2, 0.1], [0.0, -0.2]])
    features = {IMAGE: image.expand(6, -1, -1, -1).clone(), EMBEDDING: embeddings.repeat(2, 1)}
    trajectory = targets[:, None, :] * torch.arange(1, model.num_waypoints + 1)[None, :, None] / 3
    return features, {"future/xyz_residual": trajectory.repeat(2, 1, 1)}


def test_film_starts_as_identity_then_conditions_the_output_per_instruction() -> None:
    """Zero-initialised FiLM generators: at step 0 the embedding changes nothing; trained
    on one image whose target depends only on the instruction, the conditioned model
    fits each instruction's trajectory, and the same model without FiLM cannot.

    Compared in train mode (batch statistics): 80 steps are too few for BatchNorm's
    running averages at T2R's decay 0.997."""
    seed_everything(0)
    conditioned = BCZModel(num_waypoints=3, task_embedding_noise_std=0.0)
    features, labels = _instruction_batch(conditioned)
    conditioned.eval()
    with torch.no_grad():
        before = conditioned.inference_network_fn(features, None, ModeKeys.PREDICT)
    first = before["xyz_residual"]
    assert torch.equal(first[0], first[1]) and torch.equal(first[0], first[2])

    def fit(model: BCZModel) -> float:
        optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
        model.train()
        for _ in range(80):
            model.train_step(features, labels, optimizer)
        with torch.no_grad():
            return float(model.model_fn(features, labels, ModeKeys.EVAL).loss)

    seed_everything(0)
    conditioned_loss = fit(conditioned)
    seed_everything(0)
    baseline_loss = fit(BCZModel(num_waypoints=3, ignore_task_embedding=True))
    with torch.no_grad():  # still in train mode
        after = conditioned.inference_network_fn(features, None, ModeKeys.PREDICT)
    predicted = after["xyz_residual"][:3, -1]
    # The last waypoint points toward each instruction's target (cosine > 0.9).
    cosine = torch.nn.functional.cosine_similarity(predicted, labels["future/xyz_residual"][:3, -1])
    assert (cosine > 0.9).all(), cosine
    # Without conditioning the best constant prediction leaves the targets' spread.
    assert baseline_loss > 0.2 and conditioned_loss < 0.1 * baseline_loss, (
        conditioned_loss,
        baseline_loss,
    )


def test_task_embedding_noise_only_in_training() -> None:
    seed_everything(0)
    model = BCZModel(task_embedding_noise_std=0.1)
    features = _features(model, 2)
    model.train()
    noisy = model.condition_input(features, ModeKeys.TRAIN)
    assert noisy is not None and not torch.equal(noisy, features[EMBEDDING])
    assert (noisy - features[EMBEDDING]).std().item() == pytest.approx(0.1, rel=0.2)
    assert torch.equal(model.condition_input(features, ModeKeys.EVAL), features[EMBEDDING])
    model.eval()
    assert torch.equal(model.condition_input(features, ModeKeys.TRAIN), features[EMBEDDING])
    assert BCZModel(ignore_task_embedding=True).condition_input(features, ModeKeys.TRAIN) is None
    assert EMBEDDING not in BCZModel(ignore_task_embedding=True).get_feature_specification(
        ModeKeys.TRAIN
    )


@pytest.mark.parametrize("stop_gradient", [True, False])
def test_future_waypoints_train_the_tower_only_without_stop_gradient(stop_gradient: bool) -> None:
    """T2R's MultiHeadMLP(stop_gradient_future_waypoints): waypoints 2..K read the
    features through a stop-gradient, so a loss on them leaves the tower's gradient 0."""
    features = torch.randn(4, 8, requires_grad=True)
    heads = MultiHeadMLP(8, [2, 1], 5, (16,), stop_gradient_future_waypoints=stop_gradient)
    xyz, angle = heads(features)
    assert xyz.shape == (4, 5, 2) and angle.shape == (4, 5, 1)
    (xyz[:, 1:].sum() + angle[:, 1:].sum()).backward()
    assert features.grad is not None
    assert (features.grad.abs().sum() == 0) == stop_gradient
    features.grad = None
    xyz, _ = heads(features)
    xyz[:, 0].sum().backward()
    assert features.grad.abs().sum() > 0


def test_bad_arguments_are_named() -> None:
    with pytest.raises(ValueError, match="loss must be 'huber' or 'mse', got 'l1'"):
        BCZModel(loss="l1")
    with pytest.raises(ValueError, match="names repeat"):
        BCZModel(action_components=(("xyz", 2, 1.0), ("xyz", 2, 1.0)))
    with pytest.raises(ValueError, match="num_waypoints must be >= 1"):
        BCZModel(num_waypoints=0)


def test_the_stop_token_leaves_waypoints_past_the_end_out_of_the_loss() -> None:
    """T2R's mask_stop_token: weights 1 - stop_token, mean over the kept elements."""
    seed_everything(0)
    model = BCZModel(num_waypoints=3, mask_stop_token=True).eval()
    assert model.get_label_specification(ModeKeys.TRAIN)["future/stop_token"].shape == (3, 1)
    features = _features(model, 2)
    with torch.no_grad():
        outputs = model.inference_network_fn(features, None, ModeKeys.EVAL)
        label = outputs["xyz_residual"].clone()
        label[0, 0] += 0.5  # kept: huber 0.125 on 2 elements
        label[0, 1:] += 50.0  # past the end of example 0
        label[1] += 50.0  # example 1 has ended
        stop = torch.tensor([[0.0, 1.0, 1.0], [1.0, 1.0, 1.0]])[..., None]
        labels = {"future/xyz_residual": label, "future/stop_token": stop}
        loss, _ = model.model_train_fn(features, labels, outputs, ModeKeys.EVAL)
        assert float(loss) == pytest.approx(100.0 * 0.125, rel=1e-5)
        labels["future/stop_token"] = torch.ones(2, 3, 1)
        loss, _ = model.model_train_fn(features, labels, outputs, ModeKeys.EVAL)
        assert float(loss) == 0.0
