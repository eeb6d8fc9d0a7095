"""RT-1's pieces: action tokenizer, attention mask, FiLM-EfficientNet, TokenLearner."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from t2r import specs
from t2r.research.rt1 import (
    PAPER_SIZE,
    FiLMEfficientNet,
    RT1ActionTokenizer,
    RT1Model,
    TokenLearner,
    backbone_state_dict,
    load_imagenet_weights,
    rt1_action_spec,
    rt1_attention_mask,
)
from t2r.research.rt1.film_efficientnet import tf_stride2_padding


def _actions(batch: int, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    terminate = torch.nn.functional.one_hot(torch.randint(0, 3, (batch,), generator=g), 3)
    return {
        "action/terminate_episode": terminate.int(),
        "action/world_vector": torch.rand(batch, 3, generator=g) * 2 - 1,
        "action/rotation_delta": (torch.rand(batch, 3, generator=g) * 2 - 1) * math.pi / 2,
        "action/gripper_closedness_action": torch.rand(batch, 1, generator=g) * 2 - 1,
    }


def test_tokenizer_round_trip_is_within_half_a_level():
    tokenizer = RT1ActionTokenizer(rt1_action_spec(), vocab_size=256)
    assert tokenizer.tokens_per_action == 8  # terminate 1 + 3 + 3 + 1
    actions = _actions(64)
    tokens = tokenizer.tokenize(actions)
    assert tokens.shape == (64, 8) and tokens.dtype == torch.int64
    assert int(tokens.min()) >= 0 and int(tokens.max()) <= 255
    back = tokenizer.detokenize(tokens)
    assert torch.equal(back["action/terminate_episode"], actions["action/terminate_episode"])
    for key, width in [
        ("action/world_vector", 2.0),
        ("action/rotation_delta", math.pi),
        ("action/gripper_closedness_action", 2.0),
    ]:
        error = (back[key] - actions[key]).abs().max().item()
        assert error <= width / 255 / 2 + 1e-6, key
    # Tokens are stable: detokenized actions tokenize to the same tokens.
    assert torch.equal(tokenizer.tokenize(back), tokens)


def test_tokenizer_clips_to_the_bounds_and_maps_bad_classes_to_zero():
    tokenizer = RT1ActionTokenizer(rt1_action_spec(), vocab_size=256)
    actions = _actions(2)
    actions["action/world_vector"] = torch.tensor([[-5.0, 0.0, 5.0], [1.0, -1.0, 0.5]])
    tokens = tokenizer.tokenize(actions)
    assert tokens[0, 1:4].tolist() == [0, 128, 255]  # 0.0 -> round(127.5) = 128
    tokens[:, 0] = torch.tensor([2, 200])  # class 200 of 3 does not exist
    back = tokenizer.detokenize(tokens)
    assert back["action/terminate_episode"].tolist() == [[0, 0, 1], [1, 0, 0]]
    assert back["action/world_vector"][0, 0] == -1.0 and back["action/world_vector"][0, 2] == 1.0


def test_tokenizer_with_the_base_and_its_errors():
    assert RT1ActionTokenizer(rt1_action_spec(include_base=True)).tokens_per_action == 11
    narrow = rt1_action_spec(world_vector_bound=0.05)
    assert narrow["action/world_vector"].maximum == 0.05
    assert narrow["action/world_vector"].name == "action/world_vector"
    unbounded = specs.TensorSpecStruct(
        wv=specs.ExtendedTensorSpec((3,), torch.float32, name="action/world_vector")
    )
    with pytest.raises(specs.SpecError, match="'action/world_vector'.*has no minimum/maximum"):
        RT1ActionTokenizer(unbounded)


def _reference_mask(t: int, s: int, a: int) -> np.ndarray:
    """robotics_transformer's _generate_masks, loop for loop."""
    step = s + a
    n = t * step

    def action_index(k: int) -> int:
        return -1 if k % step < s else k // step

    mask = np.tril(np.ones((n, n), dtype=int))
    for i in range(n):
        for j in range(n):
            ai, aj = action_index(i), action_index(j)
            if ai != -1 and aj != -1 and (aj < ai or (aj == ai and j <= i)):
                mask[i, j] -= 1
    return mask.astype(bool)


@pytest.mark.parametrize(("t", "s", "a"), [(1, 2, 1), (3, 2, 3), (6, 8, 8)])
def test_attention_mask_matches_robotics_transformer(t, s, a):
    assert np.array_equal(rt1_attention_mask(t, s, a).numpy(), _reference_mask(t, s, a))


def test_tf_padding_and_feature_map_sizes():
    assert tf_stride2_padding(300, 300, 3) == (0, 1, 0, 1)
    assert tf_stride2_padding(75, 75, 5) == (2, 2, 2, 2)
    encoder = FiLMEfficientNet(
        width=0.25, depth=0.25, conditioning_size=4, output_channels=8
    ).eval()
    with torch.no_grad():
        for size, cells in [(300, 10), (288, 9), (64, 2)]:
            out = encoder(torch.rand(1, 3, size, size), torch.rand(1, 4))
            assert out.shape == (1, 8, cells, cells), size


def test_film_starts_as_identity_and_then_conditions():
    torch.manual_seed(0)
    encoder = FiLMEfficientNet(
        width=0.25, depth=0.25, conditioning_size=4, output_channels=8
    ).eval()
    images = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        a = encoder(images, torch.zeros(2, 4))
        b = encoder(images, torch.randn(2, 4))
        assert torch.equal(a, b)  # zero-initialized FiLM: the conditioning has no effect yet
        for film in encoder.films:
            torch.nn.init.normal_(film.mult.weight, std=0.1)
        c = encoder(images, torch.randn(2, 4))
    assert not torch.allclose(a, c)
    assert len(encoder.films) == len(encoder.blocks)  # FiLM after every MBConv block


def test_imagenet_weights_load_from_a_local_file_and_mismatches_are_named(tmp_path):
    source = FiLMEfficientNet(width=0.25, depth=0.25, conditioning_size=4, output_channels=8)
    path = tmp_path / "efficientnet.safetensors"
    save_file({k: v.contiguous() for k, v in backbone_state_dict(source).items()}, str(path))
    target = FiLMEfficientNet(width=0.25, depth=0.25, conditioning_size=4, output_channels=8)
    loaded = load_imagenet_weights(target, path)
    assert loaded and not any(k.startswith(("films", "conv1x1", "output_film")) for k in loaded)
    for key, value in backbone_state_dict(target).items():
        assert torch.equal(value, backbone_state_dict(source)[key]), key
    wider = FiLMEfficientNet(width=0.5, depth=0.25, conditioning_size=4, output_channels=8)
    with pytest.raises(ValueError, match="'stem.0.weight' has shape"):
        load_imagenet_weights(wider, path)
    with pytest.raises(FileNotFoundError, match="No EfficientNet weights"):
        load_imagenet_weights(target, tmp_path / "missing.safetensors")


def test_token_learner_mixes_81_tokens_into_8():
    learner = TokenLearner(dim=16, num_tokens=8)
    tokens = torch.randn(2, 81, 16)
    out = learner(tokens)
    assert out.shape == (2, 8, 16)
    assert learner(tokens.transpose(1, 2).reshape(2, 16, 9, 9)).shape == (2, 8, 16)
    # Each output token is a convex combination of the inputs.
    weights = torch.softmax(learner.mlp(learner.norm(tokens)).transpose(1, 2), dim=-1)
    torch.testing.assert_close(out, weights @ tokens)


def test_paper_size_parameter_count():
    model = RT1Model(**PAPER_SIZE)
    count = sum(p.numel() for p in model.parameters())
    encoder = model.image_encoder
    backbone = sum(
        p.numel() for m in (encoder.stem, encoder.blocks, encoder.top) for p in m.parameters()
    )
    # Keras' EfficientNetB3(include_top=False) has 10,696,232 trainable weights.
    assert backbone == 10_696_232
    assert count == 35_110_816  # see docs/rt1.md for the breakdown
    assert model.tokens_per_action == 8
