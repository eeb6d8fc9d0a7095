"""RT-1's action tokenizer: each action dimension -> one of `vocab_size` tokens.

A float action (a bounded spec, `ExtendedTensorSpec.minimum`/`maximum`) of size
D gives D tokens: the value is clipped to its bounds and mapped to one of
``vocab_size`` uniform levels, ``round((a - min) / (max - min) * (V - 1))``;
detokenizing maps a token back to its level. A discrete action (an integer
one-hot spec such as ``terminate_episode`` (3,)) gives one token, the index of
its class; a token outside the classes detokenizes to class 0, as
robotics_transformer does.

Deviation: robotics_transformer truncates (``int(x * (V - 1))``), which moves
every detokenized value down by half a level on average; we round, so the
quantization error is at most half a level ((max - min) / 510 at V = 256).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from t2r import specs


def rt1_action_spec(
    include_base: bool = False,
    prefix: str = "action/",
    world_vector_bound: float = 1.0,
    rotation_delta_bound: float = torch.pi / 2,
    gripper_bound: float = 1.0,
) -> specs.TensorSpecStruct:
    """RT-1's action spec (robotics_transformer's test set-up, RLDS fractal names) with
    bounds, per step: world_vector (3,) in [-1, 1], rotation_delta (3,) in
    [-pi/2, pi/2], gripper_closedness_action (1,) in [-1, 1], terminate_episode
    (3,) int32 one-hot; with `include_base`, base_displacement_vector (2,) in
    [-1, 1] and base_displacement_vertical_rotation (1,) in [-pi, pi].

    The `*_bound` arguments set other symmetric bounds (a task's own action
    ranges; bind them in gin: ``RT1Model.action_spec = @rt1_action_spec()``)."""
    wv, rot, grip = world_vector_bound, rotation_delta_bound, gripper_bound
    entries: list[tuple[str, specs.ExtendedTensorSpec]] = [
        ("terminate_episode", specs.ExtendedTensorSpec((3,), torch.int32)),
        ("world_vector", specs.ExtendedTensorSpec((3,), torch.float32, minimum=-wv, maximum=wv)),
        (
            "rotation_delta",
            specs.ExtendedTensorSpec((3,), torch.float32, minimum=-rot, maximum=rot),
        ),
        (
            "gripper_closedness_action",
            specs.ExtendedTensorSpec((1,), torch.float32, minimum=-grip, maximum=grip),
        ),
    ]
    if include_base:
        entries += [
            (
                "base_displacement_vertical_rotation",
                specs.ExtendedTensorSpec((1,), torch.float32, minimum=-torch.pi, maximum=torch.pi),
            ),
            (
                "base_displacement_vector",
                specs.ExtendedTensorSpec((2,), torch.float32, minimum=-1, maximum=1),
            ),
        ]
    return specs.TensorSpecStruct(
        (prefix + key, specs.ExtendedTensorSpec.from_spec(spec, name=prefix + key))
        for key, spec in entries
    )


class RT1ActionTokenizer:
    """Actions <-> tokens for the flat action spec `action_spec`, in its key order.

    Args:
      action_spec: per-step specs, rank 1. Float specs need bounds; integer specs
        are one-hot classes.
      vocab_size: levels per float dimension (256 in RT-1); also bounds the
        number of classes of a discrete action.
    """

    def __init__(self, action_spec: specs.TensorSpecStruct, vocab_size: int = 256) -> None:
        flat = specs.flatten_spec_structure(action_spec)
        if not flat:
            raise ValueError("RT1ActionTokenizer needs at least one action spec.")
        self.vocab_size = vocab_size
        self.action_spec = flat
        self._layout: list[tuple[str, int, bool]] = []  # (key, size, discrete)
        for key, spec in flat.items():
            if spec.shape is None or len(spec.shape) != 1 or spec.shape[0] is None:
                raise specs.SpecError(
                    f"Action {key!r}: RT1ActionTokenizer takes rank-1 actions of known size, "
                    f"got shape {spec.shape}.",
                    key=key,
                    name=spec.name,
                )
            size = int(spec.shape[0])
            discrete = not spec.torch_dtype.is_floating_point
            if discrete and size > vocab_size:
                raise specs.SpecError(
                    f"Action {key!r} has {size} classes, more than the vocabulary ({vocab_size}).",
                    key=key,
                    name=spec.name,
                )
            if not discrete and not spec.is_bounded:
                raise specs.SpecError(
                    f"Action {key!r} (spec {spec.name!r}) has no minimum/maximum: RT-1 "
                    "discretizes each float action over its spec's bounds "
                    "(ExtendedTensorSpec(minimum=..., maximum=...)).",
                    key=key,
                    name=spec.name,
                )
            self._layout.append((key, size, discrete))
        self.tokens_per_action = sum(1 if d else s for _, s, d in self._layout)

    def _bounds(self, key: str, size: int, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        spec = self.action_spec[key]
        low = torch.as_tensor(spec.minimum, dtype=torch.float32, device=like.device)
        high = torch.as_tensor(spec.maximum, dtype=torch.float32, device=like.device)
        return low.expand(size), high.expand(size)

    @property
    def keys(self) -> Sequence[str]:
        return [key for key, _, _ in self._layout]

    def tokenize(self, actions: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """{key: (..., D)} -> (..., tokens_per_action) int64 tokens."""
        tokens = []
        levels = self.vocab_size - 1
        for key, size, discrete in self._layout:
            value = actions[key]
            if discrete:
                tokens.append(value.argmax(dim=-1, keepdim=True).long())
                continue
            low, high = self._bounds(key, size, value)
            value = torch.minimum(torch.maximum(value.float(), low), high)
            tokens.append(torch.round((value - low) / (high - low) * levels).long())
        return torch.cat(tokens, dim=-1)

    def detokenize(self, tokens: torch.Tensor) -> dict[str, torch.Tensor]:
        """(..., tokens_per_action) tokens -> {key: (..., D)}: floats within the
        bounds, discrete actions one-hot in the spec's dtype."""
        actions: dict[str, torch.Tensor] = {}
        index = 0
        levels = self.vocab_size - 1
        for key, size, discrete in self._layout:
            if discrete:
                token = tokens[..., index]
                token = torch.where(token < size, token, torch.zeros_like(token))
                one_hot = torch.nn.functional.one_hot(token.long(), size)
                actions[key] = one_hot.to(self.action_spec[key].torch_dtype)
                index += 1
                continue
            low, high = self._bounds(key, size, tokens)
            value = tokens[..., index : index + size].float() / levels
            actions[key] = value * (high - low) + low
            index += size
        return actions
