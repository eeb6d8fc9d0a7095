"""MAMLModel against closed forms on a linear model (loss = mean squared error)."""

from __future__ import annotations

import pytest
import torch

from t2r.meta_learning import MAMLInnerLoopGradientDescent, MAMLModel
from t2r.modes import ModeKeys
from tests.meta_learning.models import LinearModel

NC, NI, D_IN, D_OUT = 4, 3, 3, 2


def _batch(
    num_tasks: int = 2, seed: int = 0
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    features = {
        "condition/features/x": torch.randn(num_tasks, NC, D_IN, generator=g),
        "condition/labels/target": torch.randn(num_tasks, NC, D_OUT, generator=g),
        "inference/features/x": torch.randn(num_tasks, NI, D_IN, generator=g),
    }
    labels = {"target": torch.randn(num_tasks, NI, D_OUT, generator=g)}
    return features, labels


def _maml(
    lr: float = 0.3, second_order: bool = True, learn: bool = False, steps: int = 1
) -> MAMLModel:
    torch.manual_seed(0)
    return MAMLModel(
        LinearModel(D_IN, D_OUT),
        num_inner_loop_steps=steps,
        inner_loop=MAMLInnerLoopGradientDescent(
            lr, use_second_order=second_order, learn_inner_lr=learn
        ),
        num_condition_samples_per_task=NC,
        num_inference_samples_per_task=NI,
    )


def _hand_step(w: torch.Tensor, b: torch.Tensor, x: torch.Tensor, y: torch.Tensor, lr: float):
    """One SGD step of mean((x W^T + b - y)^2) over N*D entries, by hand."""
    residual = x @ w.T + b - y  # (N, D)
    scale = 2.0 / residual.numel()
    grad_w = scale * residual.T @ x
    grad_b = scale * residual.sum(0)
    return w - lr * grad_w, b - lr * grad_b, grad_w, grad_b


def test_specs_use_tensor2robots_names() -> None:
    model = _maml()
    spec = model.get_feature_specification_for_packing(ModeKeys.TRAIN)
    assert spec["condition/features/x"].name == "condition_features/x"
    assert spec["condition/features/x"].shape == (NC, D_IN)
    assert spec["condition/labels/target"].name == "condition_labels/target"
    assert spec["inference/features/x"].shape == (NI, D_IN)
    labels = model.get_label_specification_for_packing(ModeKeys.TRAIN)
    assert labels["target"].name == "meta_labels/target"
    assert labels["target"].shape == (NI, D_OUT)


@pytest.mark.parametrize("steps", [1, 2])
def test_inner_steps_equal_hand_computed_sgd(steps: int) -> None:
    lr = 0.3
    model = _maml(lr, steps=steps)
    features, labels = _batch()
    out = model.model_fn(features, labels, ModeKeys.TRAIN)
    w0, b0 = model.base_model.linear.weight.detach(), model.base_model.linear.bias.detach()
    for task in range(2):
        w, b = w0, b0
        x, y = features["condition/features/x"][task], features["condition/labels/target"][task]
        for _ in range(steps):
            w, b, _, _ = _hand_step(w, b, x, y, lr)
        expected = features["inference/features/x"][task] @ w.T + b
        torch.testing.assert_close(out.inference_outputs["inference_output"][task], expected)
    # The outer loss is the base loss on the adapted inference outputs.
    prediction = out.inference_outputs["inference_output"]
    torch.testing.assert_close(out.loss, torch.mean((prediction - labels["target"]) ** 2))


def _outer_grads(model: MAMLModel) -> tuple[torch.Tensor, torch.Tensor]:
    features, labels = _batch(num_tasks=1)
    model.zero_grad()
    model.model_fn(features, labels, ModeKeys.TRAIN).loss.backward()
    return model.base_model.linear.weight.grad.clone(), model.base_model.linear.bias.grad.clone()


def test_first_and_second_order_gradients_match_closed_forms() -> None:
    lr = 0.3
    features, labels = _batch(num_tasks=1)
    x, y = features["condition/features/x"][0], features["condition/labels/target"][0]
    xq, yq = features["inference/features/x"][0], labels["target"][0]
    first = _outer_grads(_maml(lr, second_order=False))
    second = _outer_grads(_maml(lr, second_order=True))
    model = _maml(lr)
    w, b = model.base_model.linear.weight.detach(), model.base_model.linear.bias.detach()
    w1, b1, _, _ = _hand_step(w, b, x, y, lr)
    # First order: the query gradient at the adapted parameters.
    _, _, gq_w, gq_b = _hand_step(w1, b1, xq, yq, lr)
    torch.testing.assert_close(first[0], gq_w)
    torch.testing.assert_close(first[1], gq_b)
    # Second order: (I - lr H_condition) applied to it; H of the condition MSE
    # maps (dW, db) to scale * sum_n (dW x_n + db) [x_n^T, 1].
    scale = 2.0 / (NC * D_OUT)
    r = xq.new_zeros(NC, D_OUT) + x @ gq_w.T + gq_b  # (dW x_n + db) with (dW, db) = g_q
    h_w, h_b = scale * r.T @ x, scale * r.sum(0)
    torch.testing.assert_close(second[0], gq_w - lr * h_w)
    torch.testing.assert_close(second[1], gq_b - lr * h_b)
    # They differ by exactly the Hessian term, which is nonzero.
    assert (second[1] - first[1]).abs().max() > 1e-4


@pytest.mark.parametrize("second_order", [True, False])
def test_learned_rates_receive_their_closed_form_gradient(second_order: bool) -> None:
    lr = 0.3
    model = _maml(lr, second_order=second_order, learn=True)
    rates = dict(model.inner_loop.learning_rates.items())
    assert sorted(rates) == ["model__linear__bias", "model__linear__weight"]
    features, labels = _batch(num_tasks=1)
    model.model_fn(features, labels, ModeKeys.TRAIN).loss.backward()
    x, y = features["condition/features/x"][0], features["condition/labels/target"][0]
    xq, yq = features["inference/features/x"][0], labels["target"][0]
    w, b = model.base_model.linear.weight.detach(), model.base_model.linear.bias.detach()
    w1, b1, gc_w, gc_b = _hand_step(w, b, x, y, lr)
    _, _, gq_w, gq_b = _hand_step(w1, b1, xq, yq, lr)
    # d L_q(theta - lr * g_c) / d lr = -g_q . g_c, per tensor.
    torch.testing.assert_close(rates["model__linear__weight"].grad, -(gq_w * gc_w).sum())
    torch.testing.assert_close(rates["model__linear__bias"].grad, -(gq_b * gc_b).sum())
    rate = model.inner_loop.learning_rates["model__linear__bias"]
    assert any(p is rate for p in model.parameters())  # the optimizer updates it


def test_eval_reports_unadapted_metrics_and_adapts_under_no_grad() -> None:
    model = _maml()
    features, labels = _batch()
    with torch.no_grad():
        out = model.model_fn(features, labels, ModeKeys.EVAL)
        train = model.model_fn(features, labels, ModeKeys.TRAIN)
    torch.testing.assert_close(out.loss, train.loss)
    unadapted = out.inference_outputs["full_inference_output_unconditioned/inference_output"]
    w, b = model.base_model.linear.weight, model.base_model.linear.bias
    torch.testing.assert_close(unadapted, features["inference/features/x"] @ w.T + b)
    assert "unadapted/loss" in out.eval_metrics
    assert not torch.equal(out.eval_metrics["unadapted/loss"], out.eval_metrics["loss"])


def test_predict_pools_condition_rows_into_one_task() -> None:
    model = _maml()
    features, labels = _batch(num_tasks=1)
    train = model.model_fn(features, labels, ModeKeys.TRAIN)
    predicted = model.model_fn(features, None, ModeKeys.PREDICT)
    torch.testing.assert_close(
        predicted.export_outputs["inference_output"], train.inference_outputs["inference_output"]
    )


def test_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="num_inner_loop_steps"):
        MAMLModel(LinearModel(), num_inner_loop_steps=0)
    with pytest.raises(ValueError, match="num_condition_samples_per_task"):
        MAMLModel(LinearModel(), num_condition_samples_per_task=0)
