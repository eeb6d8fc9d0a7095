"""Tests for t2r.layers.film_resnet: architecture (parameter counts), shapes, FiLM semantics."""

from __future__ import annotations

import copy

import pytest
import torch

from t2r.layers import FiLMResNet, film_resnet18, film_resnet34, film_resnet50

# torchvision.models.resnet{18,34,50}(num_classes=1000) parameter counts.
TORCHVISION_PARAMS = {18: 11_689_512, 34: 21_797_672, 50: 25_557_032}


def _num_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _film(model: FiLMResNet, stage: int) -> torch.nn.Linear:
    """The FiLM generator of one stage (typed, for the tests that edit its weights)."""
    film = model.stages[stage].film
    assert isinstance(film, torch.nn.Linear)
    return film


@pytest.mark.parametrize("depth", [18, 34, 50])
def test_v1_parameter_count_matches_torchvision(depth: int) -> None:
    assert _num_params(FiLMResNet(depth, num_classes=1000)) == TORCHVISION_PARAMS[depth]


def test_film_generators_add_one_linear_per_stage() -> None:
    plain = _num_params(film_resnet18())
    conditioned = _num_params(film_resnet18(film_embedding_size=16))
    # Per stage: Linear(16, num_blocks * 2 * C) with C = 64, 128, 256, 512 and 2 blocks each.
    outputs = sum(2 * 2 * c for c in (64, 128, 256, 512))
    assert conditioned - plain == outputs * (16 + 1)


@pytest.mark.parametrize(
    ("factory", "width"), [(film_resnet18, 512), (film_resnet34, 512), (film_resnet50, 2048)]
)
@pytest.mark.parametrize("version", [1, 2])
def test_output_shapes(factory, width: int, version: int) -> None:  # type: ignore[no-untyped-def]
    torch.manual_seed(0)
    model = factory(film_embedding_size=8, version=version).eval()
    images, embedding = torch.rand(2, 3, 64, 64), torch.randn(2, 8)
    with torch.no_grad():
        pooled, feature_map = model.forward_features(images, embedding)
        out = model(images, embedding)
    assert model.out_features == width
    assert pooled.shape == out.shape == (2, width)
    assert feature_map.shape == (2, width, 2, 2)  # 64 / 32
    torch.testing.assert_close(pooled, feature_map.mean(dim=(2, 3)))


def test_classification_head() -> None:
    model = film_resnet18(num_classes=7).eval()
    with torch.no_grad():
        assert model(torch.rand(3, 3, 32, 32)).shape == (3, 7)


@pytest.mark.parametrize(("depth", "version"), [(18, 1), (50, 1), (18, 2), (50, 2)])
def test_zero_initialised_film_is_identity_modulation(depth: int, version: int) -> None:
    torch.manual_seed(0)
    plain = FiLMResNet(depth, version=version).eval()
    film = FiLMResNet(depth, film_embedding_size=5, version=version).eval()
    missing, unexpected = film.load_state_dict(plain.state_dict(), strict=False)
    assert unexpected == [] and all(".film." in key for key in missing) and len(missing) == 8
    images = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(film(images, torch.randn(2, 5)), plain(images))


@pytest.mark.parametrize("version", [1, 2])
def test_nonzero_generator_makes_output_depend_on_embedding(version: int) -> None:
    torch.manual_seed(0)
    model = film_resnet18(film_embedding_size=4, version=version).eval()
    images = torch.rand(2, 3, 64, 64)
    first, second = torch.randn(2, 4), torch.randn(2, 4)
    with torch.no_grad():
        assert torch.allclose(model(images, first), model(images, second))
        for stage in range(4):
            _film(model, stage).weight.normal_(std=0.1)
        assert not torch.allclose(model(images, first), model(images, second), atol=1e-4)


def test_generator_receives_gradient_from_zero_init() -> None:
    model = film_resnet18(film_embedding_size=4)
    model(torch.rand(2, 3, 32, 32), torch.randn(2, 4)).sum().backward()
    grad = _film(model, 0).weight.grad
    assert grad is not None and grad.abs().sum() > 0


def test_v1_film_acts_after_last_norm_before_residual_add() -> None:
    # Block 1 of the last ResNet-18 stage has an identity shortcut. Its slice of the
    # generator output is [gamma (512), beta (512)] after block 0's; gamma = -1 zeroes
    # the residual branch, so the block returns relu(x) = x and the network equals
    # the same network with that block removed.
    torch.manual_seed(0)
    model = film_resnet18(film_embedding_size=3).eval()
    with torch.no_grad():
        _film(model, 3).bias[2 * 512 : 3 * 512] = -1.0
    truncated = copy.deepcopy(model)
    last_stage = truncated.stages[3]
    last_stage.blocks = last_stage.blocks[:1]  # type: ignore[index]
    last_stage.film = None  # type: ignore[assignment]
    images, embedding = torch.rand(2, 3, 64, 64), torch.randn(2, 3)
    with torch.no_grad():
        want = truncated.forward_features(images, embedding)[1]
        got = model.forward_features(images, embedding)[1]
        untouched = film_resnet18(film_embedding_size=3).eval()
        untouched.load_state_dict(model.state_dict())
        _film(untouched, 3).bias.zero_()
        assert not torch.allclose(untouched.forward_features(images, embedding)[1], want)
    torch.testing.assert_close(got, want)


def test_enabled_block_layers_limits_conditioning() -> None:
    model = film_resnet18(film_embedding_size=4, enabled_block_layers=[False, False, True, True])
    assert [stage.film is not None for stage in model.stages] == [False, False, True, True]
    with pytest.raises(ValueError, match="enabled_block_layers has 2 entries, expected 4"):
        film_resnet18(film_embedding_size=4, enabled_block_layers=[True, True])


def test_errors_name_the_problem() -> None:
    images = torch.rand(1, 3, 32, 32)
    with pytest.raises(ValueError, match="film_embedding_size=4 but forward got embedding=None"):
        film_resnet18(film_embedding_size=4)(images)
    with pytest.raises(ValueError, match="built without film_embedding_size"):
        film_resnet18()(images, torch.zeros(1, 4))
    with pytest.raises(ValueError, match="depth must be one of"):
        FiLMResNet(19)
    with pytest.raises(ValueError, match="version must be 1 or 2"):
        FiLMResNet(18, version=3)


def test_torch_export_matches_eager() -> None:
    model = film_resnet18(film_embedding_size=4).eval()
    with torch.no_grad():
        for stage in range(4):
            _film(model, stage).weight.normal_(std=0.1)
    images, embedding = torch.rand(2, 3, 32, 32), torch.randn(2, 4)
    exported = torch.export.export(model, (images, embedding)).module()
    with torch.no_grad():
        torch.testing.assert_close(exported(images, embedding), model(images, embedding))
