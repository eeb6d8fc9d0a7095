"""Tests for t2r.layers.vision: the pose_env conv tower and the bias-transform MLP."""

from __future__ import annotations

import pytest
import torch

from t2r.layers import FeaturesToPose, ImagesToFeatures


def _num_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_tower_default_shapes_on_pose_env_images() -> None:
    torch.manual_seed(0)
    tower = ImagesToFeatures()
    images = torch.rand(2, 3, 64, 64)
    points, extras = tower(images)
    # 64 -> 31 -> 15 -> 13 -> 11 -> 9 with VALID 3x3 convs, strides 2, 2, 1, 1, 1.
    assert points.shape == (2, 64) == (2, tower.out_features)
    assert extras["softmax"].shape == (2, 32, 9, 9)
    assert extras["feature_map"].shape == (2, 32, 9, 9)
    assert points.abs().max() <= 1.0
    assert not torch.allclose(points[0], points[1])


def test_tower_parameter_count_matches_t2r_layer_norm_architecture() -> None:
    # Convs followed by layer norm have no bias; each layer norm has a per-channel scale+offset.
    conv_weights = 3 * 32 * 3 * 3 + 4 * (32 * 32 * 3 * 3) + 32 * 32 * 1 * 1
    norm_params = 6 * 2 * 32
    assert _num_params(ImagesToFeatures()) == conv_weights + norm_params == 39136


def test_tower_without_spatial_softmax_returns_feature_map() -> None:
    tower = ImagesToFeatures(use_spatial_softmax=False, num_output_maps=8)
    out, extras = tower(torch.rand(1, 3, 64, 64))
    assert out.shape == (1, 8, 9, 9)
    assert "softmax" not in extras
    assert (out >= 0).all()  # ReLU after the final 1x1 conv, as slim.conv2d does


def test_tower_normalizer_choices() -> None:
    images = torch.rand(4, 3, 32, 32)
    bn_tower = ImagesToFeatures(normalizer="batch_norm")
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in bn_tower.modules())
    bn_tower.train()
    assert bn_tower(images)[0].shape == (4, 64)
    plain = ImagesToFeatures(normalizer=None)
    conv = plain.convs[0]
    assert isinstance(conv, torch.nn.Conv2d) and conv.bias is not None
    torch.testing.assert_close(conv.bias, torch.full((32,), 0.01))
    with pytest.raises(ValueError, match="normalizer must be"):
        ImagesToFeatures(normalizer="group_norm")  # type: ignore[arg-type]


def test_tower_zero_film_generator_is_identity_modulation() -> None:
    torch.manual_seed(0)
    plain = ImagesToFeatures().eval()
    film = ImagesToFeatures(film_embedding_size=6).eval()
    missing, unexpected = film.load_state_dict(plain.state_dict(), strict=False)
    assert sorted(missing) == ["film.bias", "film.weight"] and unexpected == []
    images = torch.rand(3, 3, 64, 64)
    torch.testing.assert_close(film(images, torch.randn(3, 6))[0], plain(images)[0])


def test_tower_film_changes_output_and_uses_t2r_gamma_beta_layout() -> None:
    torch.manual_seed(0)
    tower = ImagesToFeatures(film_embedding_size=4).eval()
    assert tower.film is not None
    images = torch.rand(2, 3, 64, 64)
    embedding = torch.randn(2, 4)
    base, _ = tower(images, embedding)
    assert base.abs().max() > 1e-3  # a random image does not give centred points

    with torch.no_grad():
        torch.nn.init.normal_(tower.film.weight)
    modulated, _ = tower(images, embedding)
    assert not torch.allclose(modulated, base, atol=1e-4)

    # T2R's layout is [gamma_0..gamma_4, beta_0..beta_4], 32 each. gamma_4 = -1 and
    # beta_4 = 5 make the last conv layer spatially constant, so every feature point
    # is the image centre. Under any other layout these slices hit other layers.
    with torch.no_grad():
        tower.film.weight.zero_()
        tower.film.bias.zero_()
        tower.film.bias[4 * 32 : 5 * 32] = -1.0
        tower.film.bias[9 * 32 : 10 * 32] = 5.0
    centred, extras = tower(images, embedding)
    torch.testing.assert_close(centred, torch.zeros_like(centred), atol=1e-5, rtol=0)
    torch.testing.assert_close(
        extras["softmax"], torch.full_like(extras["softmax"], 1.0 / 81), atol=1e-6, rtol=0
    )


def test_tower_film_embedding_errors_name_the_problem() -> None:
    images = torch.rand(1, 3, 64, 64)
    with pytest.raises(ValueError, match="film_embedding=None"):
        ImagesToFeatures(film_embedding_size=3)(images)
    with pytest.raises(ValueError, match="built without film_embedding_size"):
        ImagesToFeatures()(images, torch.zeros(1, 3))


def test_pose_mlp_shapes_and_parameter_count() -> None:
    head = FeaturesToPose(in_features=64, num_outputs=2)
    assert head(torch.randn(5, 64)).shape == (5, 2)
    # (64 + 10 bias transform) -> 100 -> 100 -> 2; hidden linears have no bias (layer norm).
    expected = 74 * 100 + 200 + 100 * 100 + 200 + 100 * 2 + 2 + 10
    assert _num_params(head) == expected == 18012
    torch.testing.assert_close(head.bias_transform.detach(), torch.full((10,), 0.01))


def test_pose_mlp_bias_transform_is_appended_after_features() -> None:
    torch.manual_seed(0)
    head = FeaturesToPose(in_features=8, num_outputs=3, bias_transform_size=4).eval()
    first = head.mlp[0]
    assert isinstance(first, torch.nn.Linear) and first.in_features == 12
    features = torch.randn(6, 8)
    # Silence the feature columns: the output must then depend on the bias transform only,
    # identically for every row (it is tiled over the batch).
    with torch.no_grad():
        first.weight[:, :8] = 0.0
        head.bias_transform.normal_()
    out = head(features)
    torch.testing.assert_close(out, out[:1].expand_as(out))
    with torch.no_grad():
        head.bias_transform.add_(1.0)
    assert not torch.allclose(head(features), out)


def test_pose_mlp_bias_transform_learns() -> None:
    head = FeaturesToPose(in_features=8, num_outputs=2)
    head(torch.randn(4, 8)).pow(2).sum().backward()
    assert head.bias_transform.grad is not None
    assert head.bias_transform.grad.abs().sum() > 0


def test_pose_mlp_hidden_output_and_aux_paths() -> None:
    hidden = FeaturesToPose(in_features=64, num_outputs=None)(torch.randn(3, 64))
    assert hidden.shape == (3, 100) and (hidden >= 0).all()

    head = FeaturesToPose(in_features=64, num_outputs=2, aux_input_size=7, aux_output_dim=3)
    features = torch.randn(3, 64)
    assert head(features, torch.randn(3, 7)).shape == (3, 2)
    assert head.aux_head is not None and head.aux_head(features).shape == (3, 3)
    with pytest.raises(ValueError, match="aux_input_size=7 but forward got aux_input=None"):
        head(features)
    with pytest.raises(ValueError, match="built with aux_input_size=0"):
        FeaturesToPose(64, 2)(features, torch.randn(3, 7))
    with pytest.raises(ValueError, match="'layer_norm' or None"):
        FeaturesToPose(64, 2, normalizer="batch_norm")  # type: ignore[arg-type]


def test_pose_network_overfits_a_fixed_batch() -> None:
    torch.manual_seed(0)
    tower = ImagesToFeatures()
    head = FeaturesToPose(in_features=tower.out_features, num_outputs=2)
    images = torch.rand(4, 3, 64, 64)
    targets = torch.rand(4, 2) * 2 - 1
    params = [*tower.parameters(), *head.parameters()]
    optimizer = torch.optim.Adam(params, lr=3e-3)

    def loss_fn() -> torch.Tensor:
        return torch.nn.functional.mse_loss(head(tower(images)[0]), targets)

    initial = loss_fn().item()
    for _ in range(40):
        optimizer.zero_grad()
        loss = loss_fn()
        loss.backward()
        optimizer.step()
    assert loss_fn().item() < 0.05 * initial


def test_pose_network_torch_export_matches_eager() -> None:
    tower = ImagesToFeatures(film_embedding_size=5).eval()
    head = FeaturesToPose(in_features=64, num_outputs=2).eval()
    images, embedding = torch.rand(2, 3, 64, 64), torch.randn(2, 5)
    exported = torch.export.export(tower, (images, embedding)).module()
    got_points, got_extras = exported(images, embedding)
    want_points, want_extras = tower(images, embedding)
    torch.testing.assert_close(got_points, want_points)
    torch.testing.assert_close(got_extras["softmax"], want_extras["softmax"])
    features = torch.randn(3, 64)
    torch.testing.assert_close(
        torch.export.export(head, (features,)).module()(features), head(features)
    )
