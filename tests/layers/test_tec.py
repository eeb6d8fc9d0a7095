"""TEC networks (T2R's shape tests) and losses on hand-computed cases."""

from __future__ import annotations

import math

import pytest
import torch

from t2r.layers import (
    ConditionImageEmbedding,
    FullStateEmbedding,
    TemporalEmbeddingReducer,
    compute_embedding_contrastive_loss,
    contrastive_loss,
    cosine_pairwise_distance,
    cosine_triplet_semihard_loss,
)


def test_embedding_shapes_as_t2r():
    images = torch.rand(4, 3, 100, 100)
    assert ConditionImageEmbedding(fc_layers=(100, 20))(images).shape == (4, 20)
    maps = ConditionImageEmbedding(fc_layers=(16, 8), use_spatial_softmax=False)(images)
    assert maps.shape[:2] == (4, 8) and maps.dim() == 4
    assert FullStateEmbedding(7, 10)(torch.randn(4, 7)).shape == (4, 10)
    temporal = torch.randn(4, 20, 16)
    assert TemporalEmbeddingReducer(16, 10, sequence_length=20)(temporal).shape == (4, 10)
    for mode in ("temporal_conv_avg_after", "mean"):
        assert TemporalEmbeddingReducer(16, 10, combine_mode=mode)(temporal).shape == (4, 10)
    spatial = torch.randn(4, 20, 3, 3, 16)
    assert TemporalEmbeddingReducer(16, 10, sequence_length=20)(spatial).shape == (4, 10)


def test_doubly_batched_inputs_raise():
    with pytest.raises(ValueError, match="fold a meta-batch"):
        ConditionImageEmbedding()(torch.rand(3, 4, 3, 12, 10))
    with pytest.raises(ValueError, match="TemporalEmbeddingReducer: expected"):
        TemporalEmbeddingReducer(16, 10, sequence_length=20)(torch.randn(2, 4, 20, 16))
    with pytest.raises(ValueError, match="needs a sequence_length of at least 10"):
        TemporalEmbeddingReducer(16, 10, sequence_length=5)


def test_the_mean_mode_is_an_mlp_of_the_time_average():
    reducer = TemporalEmbeddingReducer(4, 3, combine_mode="mean")
    x = torch.randn(2, 5, 4)
    torch.testing.assert_close(reducer(x), reducer.mlp(x.mean(1)))


def test_contrastive_loss_by_hand():
    anchor = torch.tensor([[0.0, 0.0]])
    others = torch.tensor([[3.0, 4.0], [0.6, 0.0], [2.0, 0.0]])  # d = 5, 0.6, 2
    labels = torch.tensor([True, False, False])
    # 5^2 (positive) + (1 - 0.6)^2 (negative inside the margin) + 0 (outside), / 3
    expected = (25.0 + 0.16 + 0.0) / 3
    torch.testing.assert_close(contrastive_loss(labels, anchor, others), torch.tensor(expected))


def test_t2r_case_identical_embeddings():
    # T2R's test: all ones, 5 tasks. d = 0 everywhere: the positive costs 0, each of
    # the 4 negatives 1^2: 4/5 per direction.
    ones = torch.nn.functional.normalize(torch.ones(5, 1, 10), dim=-1)
    loss = compute_embedding_contrastive_loss(ones, ones)
    torch.testing.assert_close(loss, torch.tensor(1.6))
    default = compute_embedding_contrastive_loss(ones, ones, contrastive_loss_mode="default")
    torch.testing.assert_close(default, torch.tensor(0.8))


def test_directions_and_positives():
    inf = torch.tensor([[[1.0, 0.0]], [[0.0, 1.0]]])
    con = torch.tensor([[[0.0, 1.0]], [[1.0, 0.0]]])
    # default: anchor inf[0] = (1, 0) vs con: d = sqrt2 (positive), 0 (negative).
    default = compute_embedding_contrastive_loss(inf, con, contrastive_loss_mode="default")
    torch.testing.assert_close(default, torch.tensor((2.0 + 1.0) / 2))
    # With both tasks positive: (2 + 0) / 2.
    both = torch.tensor([True, True])
    positive = compute_embedding_contrastive_loss(
        inf, con, positives=both, contrastive_loss_mode="default"
    )
    torch.testing.assert_close(positive, torch.tensor(1.0))
    # reverse: anchor con[0] = (0, 1) vs inf: d = sqrt2 (positive), 0 (negative).
    reverse = compute_embedding_contrastive_loss(
        inf, con, contrastive_loss_mode="reverse_direction"
    )
    torch.testing.assert_close(reverse, torch.tensor(1.5))


def test_cross_entropy_mode_by_hand():
    inf = torch.tensor([[[1.0, 0.0]], [[0.0, 1.0]]])
    con = inf.clone()
    # cos(anchor, task 0) = 1 (label 1), cos(anchor, task 1) = 0 (label 0); logits 2x.
    per_direction = (math.log1p(math.exp(-2.0)) + math.log(2.0)) / 2
    loss = compute_embedding_contrastive_loss(inf, con, contrastive_loss_mode="cross_entropy")
    torch.testing.assert_close(loss, torch.tensor(2 * per_direction))


def test_cosine_pairwise_distance():
    v = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    expected = torch.tensor([[0.0, 1.0, 2.0], [1.0, 0.0, 1.0], [2.0, 1.0, 0.0]])
    torch.testing.assert_close(cosine_pairwise_distance(v), expected)


def test_semihard_triplet_by_hand():
    # Anchors 0 and 1 (label 0), a negative 2 (label 1).
    angle = math.radians(60)
    v = torch.tensor([[1.0, 0.0], [math.cos(angle), math.sin(angle)], [0.0, 1.0]])
    labels = torch.tensor([0, 0, 1])
    d = cosine_pairwise_distance(v)
    # (0, 1): d_ap = 0.5; negative 2 at d = 1 > 0.5 is semi-hard: 1 + 0.5 - 1 = 0.5.
    # (1, 0): d_ap = 0.5; d(1, 2) = 1 - sin60 = 0.134 < 0.5: no semi-hard negative,
    # the farthest (only) negative: 1 + 0.5 - 0.134.
    expected = (0.5 + (1.0 + 0.5 - float(d[1, 2]))) / 2
    loss = cosine_triplet_semihard_loss(labels, v, margin=1.0)
    torch.testing.assert_close(loss, torch.tensor(expected))
    # The triplet mode feeds inference and condition embeddings with task labels.
    inf = v[:2, None]
    loss = compute_embedding_contrastive_loss(inf, inf, contrastive_loss_mode="triplet")
    assert torch.isfinite(loss)


def test_unknown_mode_raises():
    x = torch.ones(2, 1, 3)
    with pytest.raises(ValueError, match="contrastive_loss_mode must be one of"):
        compute_embedding_contrastive_loss(x, x, contrastive_loss_mode="nope")
    with pytest.raises(ValueError, match=r"inf_embedding must be \(num_tasks, episodes, K\)"):
        compute_embedding_contrastive_loss(torch.ones(2, 3), x)
