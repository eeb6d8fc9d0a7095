"""SNAIL's building blocks (Mishra et al. 2018, https://arxiv.org/abs/1707.03141).

PyTorch counterparts of Tensor2Robot's ``layers/snail.py``. Every module takes
and returns sequences as (B, T, C), batch first and time second, as T2R did,
and is causal: the output at step t depends only on inputs at steps <= t.

* `CausalConv1d` = ``CausalConv``: a dilated 1-D convolution padded on the left
  only, so T steps in give T steps out.
* `DenseBlock` = ``DenseBlock``: ``concat(x, tanh(conv_f(x)) * sigmoid(conv_g(x)))``,
  C -> C + filters channels.
* `TCBlock` = ``TCBlock``: ``ceil(log2 T)`` dense blocks with growing dilation,
  C -> C + ceil(log2 T) * filters channels.
* `causally_masked_softmax` = ``CausallyMaskedSoftmax``: a row softmax over
  the lower triangle (entries above the diagonal are exactly 0).
* `AttentionBlock` = ``AttentionBlock``: single-head causal self-attention,
  ``concat(x, softmax_causal(q k^T / sqrt(K)) v)``, C -> C + value_size.

Difference from T2R, on purpose: T2R's TCBlock uses dilations 2, 4, ..., 2^n
(``2**i`` for i = 1..n, the paper's pseudocode); with kernel size 2 the sum of
those offsets is always even, so the output at t never sees the inputs at odd
distances t - 1, t - 3, ... Here the dilations are 1, 2, ..., 2^(n-1) (the
WaveNet stack the paper describes in words): the same number of blocks and
channels, and the receptive field covers exactly every step 0 <= t - s <= 2^n - 1,
which includes the whole sequence. ``dilation_start=1`` gives T2R's stack.
"""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = [
    "AttentionBlock",
    "CausalConv1d",
    "DenseBlock",
    "TCBlock",
    "causally_masked_softmax",
    "tc_block_depth",
]


def _check_sequence(x: torch.Tensor, channels: int, where: str) -> None:
    if x.dim() != 3 or x.shape[-1] != channels:
        raise ValueError(
            f"{where}: expected a (B, T, {channels}) sequence, got shape {tuple(x.shape)}."
        )


class CausalConv1d(nn.Module):
    """A dilated 1-D convolution that sees only the past (T2R ``CausalConv``).

    The sequence is padded with ``(kernel_size - 1) * dilation`` zeros at its
    start and convolved without padding, so y[:, t] is a function of
    x[:, t - (kernel_size - 1) * dilation : t + 1] only.

    Args:
      in_channels: C.
      filters: output channels.
      dilation: spacing of the kernel's taps.
      kernel_size: taps (the SNAIL paper uses 2 everywhere).

    Forward: x (B, T, C) -> (B, T, filters).
    """

    def __init__(
        self, in_channels: int, filters: int, dilation: int = 1, kernel_size: int = 2
    ) -> None:
        super().__init__()
        if dilation < 1 or kernel_size < 1:
            raise ValueError(
                f"CausalConv1d: dilation and kernel_size must be >= 1, got {dilation}, "
                f"{kernel_size}."
            )
        self.in_channels = in_channels
        self.pad = (kernel_size - 1) * dilation
        self.conv = nn.Conv1d(in_channels, filters, kernel_size, dilation=dilation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_sequence(x, self.in_channels, "CausalConv1d")
        y = nn.functional.pad(x.transpose(1, 2), (self.pad, 0))
        return self.conv(y).transpose(1, 2)


class DenseBlock(nn.Module):
    """SNAIL's dense block: a gated causal convolution concatenated to its input.

    ``concat([x, tanh(conv_f(x)) * sigmoid(conv_g(x))], -1)`` with two
    `CausalConv1d` of kernel size 2 and the given dilation.

    Forward: x (B, T, C) -> (B, T, C + filters).
    """

    def __init__(self, in_channels: int, filters: int, dilation: int = 1) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = in_channels + filters
        self.conv_f = CausalConv1d(in_channels, filters, dilation)
        self.conv_g = CausalConv1d(in_channels, filters, dilation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gated = torch.tanh(self.conv_f(x)) * torch.sigmoid(self.conv_g(x))
        return torch.cat([x, gated], dim=-1)


def tc_block_depth(sequence_length: int) -> int:
    """Dense blocks in a `TCBlock` for sequences of this length: ceil(log2 T)."""
    if sequence_length < 1:
        raise ValueError(f"tc_block_depth: sequence_length must be >= 1, got {sequence_length}.")
    return math.ceil(math.log2(sequence_length))


class TCBlock(nn.Module):
    """A stack of `DenseBlock` with exponentially growing dilation (T2R ``TCBlock``).

    ``tc_block_depth(sequence_length)`` = n blocks with dilations
    ``2**(dilation_start + i)`` for i = 0..n-1 (see the module docstring for why
    the default start is 0, not T2R's 1).

    Args:
      in_channels: C.
      sequence_length: T the block is built for (it runs on any length; only
        steps within its receptive field 2^n of each other interact).
      filters: channels each dense block adds.
      dilation_start: exponent of the first block's dilation.

    Forward: x (B, T, C) -> (B, T, C + n * filters).
    """

    def __init__(
        self, in_channels: int, sequence_length: int, filters: int, dilation_start: int = 0
    ) -> None:
        super().__init__()
        depth = tc_block_depth(sequence_length)
        blocks = []
        channels = in_channels
        for i in range(depth):
            block = DenseBlock(channels, filters, dilation=2 ** (dilation_start + i))
            blocks.append(block)
            channels = block.out_channels
        self.blocks = nn.ModuleList(blocks)
        self.in_channels = in_channels
        self.out_channels = channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return x


def causally_masked_softmax(logits: torch.Tensor) -> torch.Tensor:
    """Row softmax over the lower triangle (T2R ``CausallyMaskedSoftmax``).

    logits: (..., T, T), row i the query at step i. Returns probabilities of the
    same shape whose row i is a softmax over columns 0..i and exactly 0 for the
    columns j > i.
    """
    if logits.dim() < 2 or logits.shape[-1] != logits.shape[-2]:
        raise ValueError(
            f"causally_masked_softmax: expected (..., T, T) logits, got {tuple(logits.shape)}."
        )
    steps = logits.shape[-1]
    future = torch.ones(steps, steps, dtype=torch.bool, device=logits.device).triu(1)
    return torch.softmax(logits.masked_fill(future, float("-inf")), dim=-1)


class AttentionBlock(nn.Module):
    """Single-head causal key-value self-attention (T2R ``AttentionBlock``).

    keys, queries (B, T, K) and values (B, T, V) are linear maps of x;
    ``probs = causally_masked_softmax(q k^T / sqrt(K))`` and the output is
    ``concat([x, probs @ v], -1)``.

    Forward: x (B, T, C) -> ``(y (B, T, C + value_size), {"attn_prob": (B, T, T)})``.
    """

    def __init__(self, in_channels: int, key_size: int, value_size: int) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.key_size = key_size
        self.out_channels = in_channels + value_size
        self.key = nn.Linear(in_channels, key_size)
        self.query = nn.Linear(in_channels, key_size)
        self.value = nn.Linear(in_channels, value_size)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        _check_sequence(x, self.in_channels, "AttentionBlock")
        logits = self.query(x) @ self.key(x).transpose(1, 2)
        probs = causally_masked_softmax(logits / math.sqrt(self.key_size))
        read = probs @ self.value(x)
        return torch.cat([x, read], dim=-1), {"attn_prob": probs}
