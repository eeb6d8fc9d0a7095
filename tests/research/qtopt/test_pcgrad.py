"""PCGrad: the semantics of T2R's pcgrad_test (the worked 2-task example, allow/deny
lists), the flat variant, and the no-conflict passthrough."""

from __future__ import annotations

import pytest
import torch

from t2r.research.qtopt.pcgrad import PCGrad

# T2R's worked example: two variables, two task losses whose gradients conflict.
PCGRAD_RESULTS = [
    {"pcgrad_vec": [0.5, -1.5], "result": [0.9995, 2.0015]},
    {"pcgrad_vec": [0.5, 1.5], "result": [2.9995, 3.9985]},
]
PLAIN_GRADS = [[0.0, -1.0], [0.0, 1.0]]  # the gradient of loss0 + loss1


def _problem(dtype: torch.dtype):
    var0 = torch.nn.Parameter(torch.tensor([1.0, 2.0], dtype=dtype))
    var1 = torch.nn.Parameter(torch.tensor([3.0, 4.0], dtype=dtype))
    const0 = torch.tensor([1.0, 0.0], dtype=dtype)
    const1 = torch.tensor([-1.0, -1.0], dtype=dtype)
    const2 = torch.tensor([-1.0, 1.0], dtype=dtype)

    def losses():
        loss0 = var0 @ const0 + var1 @ const2
        loss1 = var0 @ const1 + var1 @ const0
        return [loss0, loss1]

    named = [("first_var/var0", var0), ("second_var/var1", var1)]
    return named, losses


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize(
    ("denylist", "allowlist", "pcgrad_var_idx"),
    [
        (None, None, [0, 1]),
        (None, ["*var*"], [0, 1]),
        (["second*"], None, [0]),
        (None, ["first*"], [0]),
        (None, ["*0"], [0]),
        (["first*"], None, [1]),
        (["*var*"], None, []),
    ],
)
def test_pcgrad_basic(denylist, allowlist, pcgrad_var_idx, dtype):
    named, losses = _problem(dtype)
    params = [p for _, p in named]
    plain = torch.autograd.grad(sum(losses()), params)
    for grad, expected in zip(plain, PLAIN_GRADS, strict=True):
        torch.testing.assert_close(grad, torch.tensor(expected, dtype=dtype))

    optimizer = torch.optim.SGD(params, lr=0.001)
    pcgrad = PCGrad(optimizer, named, allowlist=allowlist, denylist=denylist, seed=0)
    grads_and_vars = pcgrad.compute_gradients(losses())
    # PCGrad variables first, in order, then the others with their plain gradients.
    other_idx = [i for i in (0, 1) if i not in pcgrad_var_idx]
    assert [v for _, v in grads_and_vars] == [params[i] for i in pcgrad_var_idx + other_idx]
    for (grad, _), i in zip(grads_and_vars, pcgrad_var_idx + other_idx, strict=True):
        expected = PCGRAD_RESULTS[i]["pcgrad_vec"] if i in pcgrad_var_idx else PLAIN_GRADS[i]
        assert grad is not None
        torch.testing.assert_close(grad, torch.tensor(expected, dtype=dtype), atol=1e-5, rtol=0)

    pcgrad.apply_gradients(grads_and_vars)
    for i in pcgrad_var_idx:
        torch.testing.assert_close(
            params[i].detach(), torch.tensor(PCGRAD_RESULTS[i]["result"], dtype=dtype)
        )


def test_the_task_order_does_not_change_the_two_task_result():
    for seed in range(4):
        named, losses = _problem(torch.float64)
        pcgrad = PCGrad(torch.optim.SGD([p for _, p in named], lr=0.1), named, seed=seed)
        grads = [g for g, _ in pcgrad.compute_gradients(losses())]
        expected = torch.tensor([0.5, -1.5], dtype=torch.float64)
        torch.testing.assert_close(grads[0], expected, atol=1e-5, rtol=0)


def test_non_conflicting_gradients_pass_through_unchanged():
    weight = torch.nn.Parameter(torch.tensor([1.0, -2.0, 0.5]))
    losses = [weight @ torch.tensor([1.0, 2.0, 0.0]), weight @ torch.tensor([0.5, 0.0, 3.0])]
    pcgrad = PCGrad(torch.optim.SGD([weight], lr=1.0), [("w", weight)], seed=0)
    pcgrad.zero_grad()
    pcgrad.backward(losses)
    assert weight.grad is not None
    torch.testing.assert_close(weight.grad, torch.tensor([1.5, 2.0, 3.0]))


def test_the_flat_implementation_projects_the_concatenated_gradient():
    """use_per_variable_impl=False: one projection over [var0, var1] (worked by hand:
    g0 = [1, 0, -1, 1], g1 = [-1, -1, 1, 0], g0.g1 = -2, |g0|^2 = |g1|^2 = 3)."""
    named, losses = _problem(torch.float64)
    pcgrad = PCGrad(
        torch.optim.SGD([p for _, p in named], lr=0.1), named, use_per_variable_impl=False
    )
    grads = [g for g, _ in pcgrad.compute_gradients(losses())]
    g0 = torch.tensor([1.0, 0, -1, 1], dtype=torch.float64)
    g1 = torch.tensor([-1.0, -1, 1, 0], dtype=torch.float64)
    expected = (g0 + 2 / 3 * g1) + (g1 + 2 / 3 * g0)
    assert grads[0] is not None and grads[1] is not None
    torch.testing.assert_close(torch.cat([grads[0], grads[1]]), expected)


def test_a_parameter_no_task_reaches_keeps_no_gradient_and_attributes_forward():
    used, unused = torch.nn.Parameter(torch.ones(2)), torch.nn.Parameter(torch.ones(2))
    optimizer = torch.optim.SGD([used, unused], lr=0.1)
    pcgrad = PCGrad(optimizer)  # names from the optimizer: "0.0", "0.1"
    assert [name for name, _ in pcgrad.split_parameters()[0]] == ["0.0", "0.1"]
    grads = pcgrad.compute_gradients([used.sum(), (2 * used).sum()])
    assert grads[1][0] is None
    assert pcgrad.param_groups is optimizer.param_groups
    with pytest.raises(TypeError, match="non-empty list of task losses"):
        pcgrad.compute_gradients(used.sum())
