"""`t2r.layers.mlp`: the Linear/ReLU stack BC-Z, WTL, TEC, pose_env and robomimic build on."""

from __future__ import annotations

import torch
from torch import nn

from t2r.layers import mlp


def _kinds(module: nn.Sequential) -> list[str]:
    return [type(m).__name__ for m in module]


def test_hidden_layers_get_relu_and_the_output_layer_is_linear():
    net = mlp(5, (7, 3), 2)
    assert _kinds(net) == ["Linear", "ReLU", "Linear", "ReLU", "Linear"]
    widths = [(m.in_features, m.out_features) for m in net if isinstance(m, nn.Linear)]
    assert widths == [(5, 7), (7, 3), (3, 2)]
    assert net(torch.zeros(4, 6, 5)).shape == (4, 6, 2)


def test_no_hidden_layers_is_one_linear():
    assert _kinds(mlp(5, (), 2)) == ["Linear"]


def test_layer_norm_sits_between_each_hidden_linear_and_its_activation():
    net = mlp(5, (7, 3), 2, layer_norm=True, activation=nn.Tanh)
    assert _kinds(net) == ["Linear", "LayerNorm", "Tanh", "Linear", "LayerNorm", "Tanh", "Linear"]
    assert [m.normalized_shape for m in net if isinstance(m, nn.LayerNorm)] == [(7,), (3,)]


def test_parameters_are_named_and_drawn_as_a_hand_written_stack():
    """Checkpoints of the heads that were hand-written stacks load unchanged, and the
    same seed draws the same initial weights."""
    torch.manual_seed(0)
    built = mlp(5, (7,), 2)
    torch.manual_seed(0)
    by_hand = nn.Sequential(nn.Linear(5, 7), nn.ReLU(), nn.Linear(7, 2))
    assert list(built.state_dict()) == ["0.weight", "0.bias", "2.weight", "2.bias"]
    for name, tensor in by_hand.state_dict().items():
        assert torch.equal(built.state_dict()[name], tensor), name
