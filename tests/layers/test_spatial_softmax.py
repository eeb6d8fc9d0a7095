"""Tests for t2r.layers.spatial_softmax: coordinate convention and T2R's interleaved layout."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from t2r.layers import SpatialSoftmax, spatial_softmax


def _t2r_reference(features_nhwc: np.ndarray) -> np.ndarray:
    """NumPy transcription of T2R's BuildSpatialSoftmax arithmetic (NHWC in, (B, 2C) out)."""
    batch, rows, cols, channels = features_nhwc.shape
    x_pos = np.empty([rows, cols], np.float64)
    y_pos = np.empty([rows, cols], np.float64)
    for i in range(rows):
        for j in range(cols):
            x_pos[i, j] = 2.0 * j / (cols - 1.0) - 1.0
            y_pos[i, j] = 2.0 * i / (rows - 1.0) - 1.0
    flat = features_nhwc.transpose(0, 3, 1, 2).reshape(-1, rows * cols)
    flat = flat - flat.max(axis=1, keepdims=True)
    softmax = np.exp(flat) / np.exp(flat).sum(axis=1, keepdims=True)
    x_out = (softmax * x_pos.reshape(-1)).sum(axis=1, keepdims=True)
    y_out = (softmax * y_pos.reshape(-1)).sum(axis=1, keepdims=True)
    # T2R: concat([x, y], 1) on (B*C, 1) columns, then reshape to (B, 2C).
    return np.concatenate([x_out, y_out], axis=1).reshape(batch, 2 * channels)


def test_one_hot_peaks_give_known_interleaved_coordinates() -> None:
    height, width = 5, 7
    features = torch.zeros(1, 4, height, width)
    features[0, 0, 0, 0] = 100.0  # top-left
    features[0, 1, height - 1, width - 1] = 100.0  # bottom-right
    features[0, 2, 0, width - 1] = 100.0  # top-right: x=+1, y=-1 catches an x/y swap
    features[0, 3, 1, 5] = 100.0  # row 1 of 5 -> y=-0.5, column 5 of 7 -> x=2/3
    points, softmax = SpatialSoftmax(learnable_temperature=False)(features)
    expected = torch.tensor([[-1.0, -1.0, 1.0, 1.0, 1.0, -1.0, 2.0 / 3.0, -0.5]])
    torch.testing.assert_close(points, expected, atol=1e-5, rtol=0)
    assert softmax.shape == (1, 4, height, width)
    assert softmax[0, 3, 1, 5] > 0.999


def test_matches_t2r_reference_on_random_maps() -> None:
    rng = np.random.default_rng(0)
    features_nhwc = rng.normal(size=(3, 6, 9, 5)).astype(np.float32)
    expected = _t2r_reference(features_nhwc.astype(np.float64))
    features = torch.from_numpy(features_nhwc).permute(0, 3, 1, 2)
    points, _ = spatial_softmax(features)
    np.testing.assert_allclose(points.numpy(), expected, atol=1e-5)


def test_uniform_map_is_centred_and_softmax_normalised() -> None:
    points, softmax = spatial_softmax(torch.zeros(2, 3, 4, 6))
    torch.testing.assert_close(points, torch.zeros(2, 6), atol=1e-6, rtol=0)
    torch.testing.assert_close(softmax.sum(dim=(2, 3)), torch.ones(2, 3))
    torch.testing.assert_close(softmax, torch.full_like(softmax, 1.0 / 24))


def test_points_stay_in_unit_box() -> None:
    points, _ = spatial_softmax(torch.randn(4, 8, 10, 12) * 20)
    assert points.shape == (4, 16)
    assert points.abs().max() <= 1.0 + 1e-6


def test_learnable_temperature_gets_gradient_and_sharpens() -> None:
    layer = SpatialSoftmax()
    assert isinstance(layer.temperature, torch.nn.Parameter)
    assert layer.temperature.item() == 1.0
    features = torch.zeros(1, 1, 5, 5)
    features[0, 0, 4, 4] = 2.0  # mild peak at bottom-right
    points, _ = layer(features)
    points.sum().backward()
    assert layer.temperature.grad is not None and layer.temperature.grad.abs() > 0
    sharp, _ = SpatialSoftmax(temperature=0.05, learnable_temperature=False)(features)
    assert (sharp > points.detach() + 0.1).all()  # pulled towards (1, 1)
    torch.testing.assert_close(sharp, torch.ones(1, 2), atol=1e-3, rtol=0)


def test_fixed_temperature_is_a_buffer_not_a_parameter() -> None:
    layer = SpatialSoftmax(temperature=2.0, learnable_temperature=False)
    assert list(layer.parameters()) == []
    assert "temperature" in layer.state_dict()


def test_keypoint_projection_shapes_and_error() -> None:
    layer = SpatialSoftmax(num_channels=16, num_keypoints=5)
    points, softmax = layer(torch.randn(2, 16, 7, 7))
    assert points.shape == (2, 10)
    assert softmax.shape == (2, 5, 7, 7)
    with pytest.raises(ValueError, match="num_keypoints=5 needs num_channels"):
        SpatialSoftmax(num_keypoints=5)


def test_gumbel_samples_are_random_but_bounded() -> None:
    torch.manual_seed(0)
    layer = SpatialSoftmax(gumbel=True)
    features = torch.randn(2, 3, 6, 6)
    first, softmax = layer(features)
    second, _ = layer(features)
    assert first.shape == (2, 6) and softmax.shape == (2, 3, 6, 6)
    assert not torch.allclose(first, second)
    assert first.abs().max() <= 1.0 + 1e-6
    torch.testing.assert_close(softmax.sum(dim=(2, 3)), torch.ones(2, 3))


def test_torch_export_matches_eager() -> None:
    layer = SpatialSoftmax(num_channels=4, num_keypoints=3).eval()
    features = torch.randn(2, 4, 5, 6)
    exported = torch.export.export(layer, (features,))
    for got, want in zip(exported.module()(features), layer(features)):
        torch.testing.assert_close(got, want)
