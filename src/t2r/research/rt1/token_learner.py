"""TokenLearner (Ryoo et al. 2021, v1.1 as robotics_transformer uses it): N tokens -> S."""

from __future__ import annotations

import torch
from torch import nn


class TokenLearner(nn.Module):
    """Learns `num_tokens` soft spatial selections of the input tokens.

    LayerNorm -> MLP (dim -> bottleneck, GELU, -> num_tokens) gives per-token
    weights, softmaxed over the input tokens; each output token is the weighted
    sum of the (un-normalized) inputs.

    tokens: (B, N, D) or (B, D, H, W) -> (B, num_tokens, D).
    """

    def __init__(
        self, dim: int, num_tokens: int = 8, bottleneck: int = 64, dropout: float = 0.0
    ) -> None:
        super().__init__()
        self.num_tokens = num_tokens
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = nn.Sequential(
            nn.Linear(dim, bottleneck),
            nn.GELU(approximate="tanh"),
            nn.Dropout(dropout),
            nn.Linear(bottleneck, num_tokens),
            nn.Dropout(dropout),
        )

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        if tokens.dim() == 4:  # feature map (B, D, H, W) -> (B, H*W, D)
            tokens = tokens.flatten(2).transpose(1, 2)
        weights = self.mlp(self.norm(tokens))  # (B, N, S)
        weights = torch.softmax(weights.transpose(1, 2), dim=-1)  # (B, S, N)
        return weights @ tokens
