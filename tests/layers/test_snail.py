"""SNAIL blocks: T2R's shape tests, and causality / attention in closed form."""

from __future__ import annotations

import pytest
import torch

from t2r.layers import (
    AttentionBlock,
    CausalConv1d,
    DenseBlock,
    TCBlock,
    causally_masked_softmax,
    tc_block_depth,
)


def test_shapes_as_t2r():
    x = torch.randn(4, 10, 8)
    assert CausalConv1d(8, 5)(x).shape == (4, 10, 5)
    assert DenseBlock(8, 5)(x).shape == (4, 10, 13)
    block = TCBlock(8, sequence_length=10, filters=5)
    assert block(x).shape == (4, 10, 8 + 4 * 5) and block.out_channels == 28
    y, end_points = AttentionBlock(8, key_size=3, value_size=5)(x)
    assert y.shape == (4, 10, 13)
    assert end_points["attn_prob"].shape == (4, 10, 10)
    assert [tc_block_depth(t) for t in (1, 2, 3, 8, 9)] == [0, 1, 2, 3, 4]


@pytest.mark.parametrize(
    "make",
    [
        lambda: CausalConv1d(6, 4, dilation=3, kernel_size=3),
        lambda: DenseBlock(6, 4, dilation=2),
        lambda: TCBlock(6, sequence_length=12, filters=3),
        lambda: (lambda m: lambda x: m(x)[0])(AttentionBlock(6, 4, 5)),
    ],
    ids=["conv", "dense", "tc", "attention"],
)
def test_the_output_at_t_ignores_inputs_after_t(make):
    torch.manual_seed(0)
    module = make()
    x = torch.randn(2, 12, 6)
    t = 5
    changed = x.clone()
    changed[:, t + 1 :] = torch.randn(2, 12 - t - 1, 6) * 10
    before, after = module(x), module(changed)
    torch.testing.assert_close(before[:, : t + 1], after[:, : t + 1], rtol=0, atol=0)
    assert not torch.allclose(before[:, t + 1 :], after[:, t + 1 :])


def _dependence(module: torch.nn.Module, steps: int) -> torch.Tensor:
    """(T, T) bool: does output step t depend on input step s (a non-zero Jacobian)."""
    x = torch.randn(1, steps, 3, dtype=torch.float64)
    jacobian = torch.autograd.functional.jacobian(lambda v: module(v)[..., 3:].sum(-1), x)
    return jacobian[0, :, 0].abs().sum(-1) > 0


def test_a_tc_block_sees_every_past_step_of_its_sequence():
    torch.manual_seed(0)
    steps = 10  # 4 blocks, dilations 1, 2, 4, 8: offsets 0..15
    depends = _dependence(TCBlock(3, steps, filters=2).double(), steps)
    expected = torch.ones(steps, steps, dtype=torch.bool).tril()
    assert torch.equal(depends, expected)


def test_t2r_dilations_miss_odd_offsets():
    # dilation_start=1 is T2R's stack (2, 4, 8, 16): every offset it reaches is even.
    torch.manual_seed(0)
    depends = _dependence(TCBlock(3, 10, filters=2, dilation_start=1).double(), 10)
    t, s = torch.meshgrid(torch.arange(10), torch.arange(10), indexing="ij")
    expected = (t >= s) & ((t - s) % 2 == 0)
    assert torch.equal(depends, expected)


def test_causally_masked_softmax():
    x = torch.randn(5, 3)
    probs = causally_masked_softmax(x @ x.T)
    rows, cols = torch.triu_indices(5, 5, 1)
    assert torch.all(probs[rows, cols] == 0)
    torch.testing.assert_close(probs.sum(-1), torch.ones(5))
    assert probs[0, 0] == 1
    # Row i is the softmax of the first i + 1 logits.
    logits = torch.randn(2, 4, 4)
    torch.testing.assert_close(
        causally_masked_softmax(logits)[:, 2, :3], torch.softmax(logits[:, 2, :3], -1)
    )
    with pytest.raises(ValueError, match=r"expected \(\.\.\., T, T\)"):
        causally_masked_softmax(torch.zeros(3, 4))


def test_attention_with_a_single_key_returns_its_value():
    torch.manual_seed(0)
    block = AttentionBlock(4, key_size=3, value_size=2)
    x = torch.randn(5, 1, 4)
    y, end_points = block(x)
    torch.testing.assert_close(y[..., :4], x)
    torch.testing.assert_close(y[..., 4:], block.value(x))
    assert torch.all(end_points["attn_prob"] == 1)


def test_attention_with_equal_keys_reads_the_running_mean_of_values():
    torch.manual_seed(0)
    block = AttentionBlock(4, key_size=3, value_size=2)
    with torch.no_grad():
        block.key.weight.zero_()  # every key the same: uniform over the past
    x = torch.randn(2, 6, 4)
    y, _ = block(x)
    values = block.value(x)
    running_mean = values.cumsum(1) / torch.arange(1, 7).view(1, 6, 1)
    torch.testing.assert_close(y[..., 4:], running_mean)


def test_errors_name_the_block_and_shape():
    with pytest.raises(ValueError, match=r"CausalConv1d: expected a \(B, T, 8\) sequence"):
        CausalConv1d(8, 2)(torch.zeros(2, 3, 7))
    with pytest.raises(ValueError, match="AttentionBlock"):
        AttentionBlock(8, 2, 2)(torch.zeros(3, 8))
