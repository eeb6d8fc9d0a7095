"""Tests for t2r.layers.mdn: parameter shapes, exact likelihoods, mode, and fitting."""

from __future__ import annotations

import math

import pytest
import torch

from t2r.layers import (
    MDNHead,
    MDNParams,
    approximate_mode,
    mdn_log_prob,
    mdn_nll,
    mixture_distribution,
)


def test_head_shapes_and_initial_unit_scales() -> None:
    head = MDNHead(in_features=10, action_size=3, num_mixture_components=4)
    params = head(torch.randn(5, 10))
    assert params.logits.shape == (5, 4)
    assert params.means.shape == (5, 4, 3)
    # T2R initialises the shared sigma inputs so softplus(.) == 1; min_sigma is added on top.
    torch.testing.assert_close(params.scales, torch.full((5, 4, 3), 1.0 + 1e-4))
    # Linear outputs only the K logits and K*D means; the K*D sigmas are a learned vector.
    assert head.linear.out_features == 4 + 4 * 3
    assert head.sigma_inputs is not None and head.sigma_inputs.shape == (12,)


def test_conditioned_sigmas_depend_on_input_and_stay_positive() -> None:
    torch.manual_seed(0)
    head = MDNHead(6, 2, 3, condition_sigmas=True, min_sigma=1e-3)
    assert head.sigma_inputs is None
    assert head.linear.out_features == 3 + 2 * 3 * 2
    params = head(torch.randn(2, 7, 6) * 100)  # extra leading (time) dim
    assert params.means.shape == params.scales.shape == (2, 7, 3, 2)
    assert (params.scales >= 1e-3).all()
    assert not torch.allclose(params.scales[0, 0], params.scales[1, 0])


def test_single_component_nll_is_the_hand_computed_gaussian_nll() -> None:
    params = MDNParams(
        logits=torch.tensor([[0.3]]),
        means=torch.tensor([[[0.5, -1.0]]]),
        scales=torch.tensor([[[2.0, 0.5]]]),
    )
    target = torch.tensor([[1.5, 0.0]])
    # z = (1.5 - 0.5) / 2 = 0.5 and (0 + 1) / 0.5 = 2.
    expected = 0.5 * (0.5**2 + 2.0**2) + math.log(2.0) + math.log(0.5) + math.log(2 * math.pi)
    torch.testing.assert_close(mdn_nll(params, target), torch.tensor(expected))
    normal = torch.distributions.Normal(params.means[:, 0], params.scales[:, 0])
    torch.testing.assert_close(mdn_nll(params, target), -normal.log_prob(target).sum())


def test_nll_matches_torch_mixture_same_family() -> None:
    torch.manual_seed(0)
    params = MDNParams(torch.randn(4, 3), torch.randn(4, 3, 2), torch.rand(4, 3, 2) + 0.1)
    targets = torch.randn(4, 2)
    want = -mixture_distribution(params).log_prob(targets)
    torch.testing.assert_close(mdn_nll(params, targets, reduction="none"), want)
    torch.testing.assert_close(mdn_nll(params, targets), want.mean())
    torch.testing.assert_close(mdn_nll(params, targets, reduction="sum"), want.sum())
    torch.testing.assert_close(mdn_log_prob(params, targets), -want)


def test_nll_is_finite_far_from_every_component() -> None:
    params = MDNParams(torch.zeros(1, 2), torch.zeros(1, 2, 1), torch.full((1, 2, 1), 1e-3))
    nll = mdn_nll(params, torch.tensor([[10.0]]))  # 1e4 standard deviations away
    assert torch.isfinite(nll)
    assert nll.item() > 1e7


def test_nll_rejects_mismatched_targets() -> None:
    params = MDNHead(4, 3, 2)(torch.randn(2, 4))
    with pytest.raises(ValueError, match="targets last dim 2 != action size 3"):
        mdn_nll(params, torch.zeros(2, 2))
    with pytest.raises(ValueError, match="reduction must be"):
        mdn_nll(params, torch.zeros(2, 3), reduction="max")  # type: ignore[arg-type]


def test_approximate_mode_takes_mean_of_heaviest_component_per_row() -> None:
    means = torch.arange(2 * 3 * 2, dtype=torch.float32).reshape(2, 3, 2)
    logits = torch.tensor([[0.0, 2.0, 1.0], [5.0, -1.0, 0.0]])
    params = MDNParams(logits, means, torch.ones(2, 3, 2))
    torch.testing.assert_close(approximate_mode(params), torch.stack([means[0, 1], means[1, 0]]))


def test_fitting_bimodal_data_lowers_nll_and_finds_both_modes() -> None:
    torch.manual_seed(0)
    num = 200
    heavy = int(0.7 * num)
    targets = torch.cat([torch.full((heavy, 1), 2.0), torch.full((num - heavy, 1), -2.0)])
    targets = targets + 0.1 * torch.randn_like(targets)
    inputs = torch.ones(num, 1)
    head = MDNHead(in_features=1, action_size=1, num_mixture_components=2)
    optimizer = torch.optim.Adam(head.parameters(), lr=0.05)
    initial = mdn_nll(head(inputs), targets).item()
    for _ in range(300):
        optimizer.zero_grad()
        loss = mdn_nll(head(inputs), targets)
        loss.backward()
        optimizer.step()
    params = head(inputs[:1])
    final = mdn_nll(head(inputs), targets).item()
    # The best single Gaussian has NLL ~0.5 * log(2 pi e * 3.4) = 2.03; two narrow
    # modes reach ~0.6 + 0.5 * log(2 pi e * 0.01) = -0.27.
    assert final < initial - 1.0
    assert final < 0.5
    assert sorted(params.means.flatten().tolist()) == pytest.approx([-2.0, 2.0], abs=0.15)
    weights = torch.softmax(params.logits, dim=-1).flatten()
    assert sorted(weights.tolist()) == pytest.approx([0.3, 0.7], abs=0.05)
    torch.testing.assert_close(approximate_mode(params), torch.tensor([[2.0]]), atol=0.15, rtol=0)


def test_mdn_head_torch_export_matches_eager() -> None:
    head = MDNHead(8, 2, 3).eval()
    inputs = torch.randn(4, 8)
    got = torch.export.export(head, (inputs,)).module()(inputs)
    want = head(inputs)
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w)
    torch.testing.assert_close(approximate_mode(MDNParams(*got)), approximate_mode(want))
