"""RT-1's decoder-only transformer and its attention mask (robotics_transformer's
``transformer.py`` and ``TransformerNetwork._generate_masks``).

Per time step the sequence holds the step's image tokens then its action
tokens; action tokens enter as zero vectors (robotics_transformer zeroes their
embeddings), so the network predicts every action token of a step at once from
the image tokens. A layer is pre-LayerNorm attention plus a one-Dense
feed-forward block, each added to the residual stream, as in
robotics_transformer (its feed-forward has no activation; kept).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def rt1_attention_mask(
    time_steps: int, tokens_per_image: int, tokens_per_action: int
) -> torch.Tensor:
    """(N, N) bool, True where query i may attend to key j, N = T * (S + A).

    Causal, except that an action token attends to no action token: not those
    of earlier steps and not those of its own step (itself included), as in
    robotics_transformer. Image tokens attend causally to everything before.
    """
    step = tokens_per_image + tokens_per_action
    n = time_steps * step
    index = torch.arange(n)
    is_action = (index % step) >= tokens_per_image
    causal = index[None, :] <= index[:, None]
    both_actions = is_action[:, None] & is_action[None, :]
    return causal & ~both_actions


class _Attention(nn.Module):
    def __init__(self, d_model: int, num_heads: int, key_size: int, dropout: float) -> None:
        super().__init__()
        self.num_heads, self.key_size, self.dropout = num_heads, key_size, dropout
        inner = num_heads * key_size
        self.query = nn.Linear(d_model, inner)
        self.key = nn.Linear(d_model, inner)
        self.value = nn.Linear(d_model, inner)
        self.output = nn.Linear(inner, d_model)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape

        def heads(t: torch.Tensor) -> torch.Tensor:
            return t.view(b, n, self.num_heads, self.key_size).transpose(1, 2)

        out = F.scaled_dot_product_attention(
            heads(self.query(x)),
            heads(self.key(x)),
            heads(self.value(x)),
            attn_mask=mask,
            dropout_p=self.dropout if self.training else 0.0,
        )
        return self.output(out.transpose(1, 2).reshape(b, n, -1))


class _Layer(nn.Module):
    def __init__(
        self, d_model: int, num_heads: int, key_size: int, feed_forward_size: int, dropout: float
    ) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(d_model, eps=1e-6)
        self.attention = _Attention(d_model, num_heads, key_size, dropout)
        self.norm2 = nn.LayerNorm(d_model, eps=1e-6)
        self.feed_forward = nn.Linear(d_model, feed_forward_size)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = x + self.attention(self.norm1(x), mask)
        return x + self.dropout(self.feed_forward(self.norm2(x)))


class RT1Transformer(nn.Module):
    """Tokens (B, N, d_model) -> logits (B, N, vocab_size).

    Learned position embeddings (one per position up to `max_tokens`; the Dense
    over one-hot positions of robotics_transformer, whose bias the token
    embedding's bias already provides). RT-1: 8 layers, 8 heads, key size 128,
    d_model = feed-forward = 512, dropout 0.1, 256 tokens.
    """

    def __init__(
        self,
        max_tokens: int,
        num_layers: int = 8,
        num_heads: int = 8,
        key_size: int = 128,
        d_model: int = 512,
        feed_forward_size: int = 512,
        dropout: float = 0.1,
        vocab_size: int = 256,
    ) -> None:
        super().__init__()
        if feed_forward_size != d_model:
            raise ValueError(
                f"RT1Transformer: feed_forward_size ({feed_forward_size}) must equal d_model "
                f"({d_model}): robotics_transformer's feed-forward block is one Dense layer "
                "whose output joins the residual stream."
            )
        self.token_embedding = nn.Linear(d_model, d_model)
        self.position_embedding = nn.Embedding(max_tokens, d_model)
        self.layers = nn.ModuleList(
            _Layer(d_model, num_heads, key_size, feed_forward_size, dropout)
            for _ in range(num_layers)
        )
        self.output = nn.Linear(d_model, vocab_size)
        self.max_tokens = max_tokens

    def forward(self, tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        n = tokens.shape[1]
        positions = torch.arange(n, device=tokens.device)
        x = self.token_embedding(tokens) + self.position_embedding(positions)[None]
        for layer in self.layers:
            x = layer(x, mask)
        return self.output(x)
