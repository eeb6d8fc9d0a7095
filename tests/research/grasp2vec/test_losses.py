"""Grasp2Vec's losses against hand-computed values and T2R's tests."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from t2r.research.grasp2vec import (
    cosine_arithmetic_loss,
    grasp2vec_npairs_loss,
    l2_arithmetic_loss,
    npairs_loss,
)

EYE = torch.eye(2)


def test_npairs_loss_by_hand():
    # Similarity = I: each row's cross-entropy is -log(e / (e + 1)); the
    # regularizer is 0.25 * 0.002 * (1 + 1).
    loss = npairs_loss(torch.tensor([0, 1]), EYE, EYE)
    torch.testing.assert_close(loss, torch.tensor(math.log1p(math.exp(-1.0)) + 0.001))
    no_reg = npairs_loss(torch.tensor([0, 1]), EYE, EYE, reg_lambda=0.0)
    torch.testing.assert_close(no_reg, torch.tensor(math.log1p(math.exp(-1.0))))


def test_npairs_shared_labels_split_the_target():
    anchor = torch.tensor([[1.0, 0.0], [0.0, 0.0], [0.0, 1.0]])
    positive = torch.tensor([[2.0, 0.0], [0.0, 0.0], [0.0, 0.0]])
    # Row 0: logits (2, 0, 0), targets (1/2, 1/2, 0); rows 1, 2: logits 0, uniform.
    z = math.exp(2.0) + 2.0
    row0 = -0.5 * (2.0 - math.log(z)) - 0.5 * (0.0 - math.log(z))
    row1 = math.log(3.0)  # targets (1/2, 1/2, 0) on uniform logits
    row2 = math.log(3.0)  # target (0, 0, 1)
    expected = (row0 + row1 + row2) / 3
    loss = npairs_loss(torch.tensor([0, 0, 1]), anchor, positive, reg_lambda=0.0)
    torch.testing.assert_close(loss, torch.tensor(expected))


def test_grasp2vec_npairs_is_both_directions_of_pre_minus_post():
    torch.manual_seed(0)
    pre, post, goal = torch.rand(3, 5, 4).unbind(0)
    labels = torch.arange(5)
    expected = npairs_loss(labels, pre - post, goal) + npairs_loss(labels, goal, pre - post)
    torch.testing.assert_close(grasp2vec_npairs_loss(pre, goal, post), expected)
    relu = npairs_loss(labels, torch.relu(pre - post), goal) + npairs_loss(
        labels, goal, torch.relu(pre - post)
    )
    torch.testing.assert_close(
        grasp2vec_npairs_loss(pre, goal, post, non_negativity_constraint=True), relu
    )


def test_npairs_rewards_the_arithmetic():
    # When pre - post equals goal (orthogonal objects), the loss is lower than
    # with the goals shuffled.
    goal = 3 * torch.eye(4)
    post = torch.ones(4, 4)
    pre = post + goal
    right = grasp2vec_npairs_loss(pre, goal, post)
    wrong = grasp2vec_npairs_loss(pre, goal.roll(1, dims=0), post)
    assert right < 0.2 < wrong


@pytest.fixture()
def fake():
    rng = np.random.default_rng(0)
    return {k: torch.from_numpy(rng.random((32, 16))) for k in ("pre", "post", "goal")}


def test_arithmetic_losses_as_t2r(fake):
    pre, post, goal = fake["pre"], fake["post"], fake["goal"]
    ones, zeros = torch.ones(32), torch.zeros(32)
    mixed = torch.zeros(32)
    mixed[0] = 1
    l2 = ((pre - (post + goal)) ** 2).sum(1)
    torch.testing.assert_close(l2_arithmetic_loss(pre, goal, post, ones), l2.mean())
    torch.testing.assert_close(l2_arithmetic_loss(pre, goal, post, mixed), l2[0])
    assert l2_arithmetic_loss(pre, goal, post, zeros) == 0
    a, b = (pre - post).numpy(), goal.numpy()
    cos = 1 - (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    torch.testing.assert_close(
        cosine_arithmetic_loss(pre, goal, post, ones), torch.tensor(cos.mean())
    )
    torch.testing.assert_close(cosine_arithmetic_loss(pre, goal, post, mixed), torch.tensor(cos[0]))
    assert cosine_arithmetic_loss(pre, goal, post, zeros) == 0
    torch.testing.assert_close(cosine_arithmetic_loss(pre, goal, post), torch.tensor(cos.mean()))


def test_shape_errors_name_the_loss():
    with pytest.raises(ValueError, match=r"grasp2vec_npairs_loss: expected \(B, D\)"):
        grasp2vec_npairs_loss(torch.zeros(3, 4), torch.zeros(3, 5), torch.zeros(3, 4))
    with pytest.raises(ValueError, match=r"npairs_loss: labels must be \(3,\)"):
        npairs_loss(torch.arange(2), torch.zeros(3, 4), torch.zeros(3, 4))
