"""The MAML inner loop: gradient descent on functional parameters.

Tensor2Robot's ``meta_learning/maml_inner_loop.py`` (`MAMLInnerLoopGradientDescent`)
on PyTorch. T2R swapped variables with a custom getter; here the parameters are
a plain ``{name: tensor}`` dict that `torch.func.functional_call` runs the
model with, so any `nn.Module` adapts unchanged.

One step on a loss L(theta) of the condition (support) set::

    theta' = theta - lr_name * dL/dtheta          (per parameter name)

* ``use_second_order=True`` keeps the graph of dL/dtheta, so the outer loss
  differentiates through it (full MAML, Hessian-vector products).
* ``use_second_order=False`` detaches dL/dtheta (first-order MAML): the outer
  gradient with respect to theta is the outer gradient at theta'.
* ``learn_inner_lr=True`` makes every parameter's rate a learned scalar
  initialized at `learning_rate` (T2R's per-variable ``inner_learning_rates``,
  as in Meta-SGD with one rate per tensor); it gets the outer gradient in both
  modes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import nn

__all__ = ["MAMLInnerLoopGradientDescent", "learning_rate_key"]

Params = dict[str, torch.Tensor]


def learning_rate_key(parameter_name: str) -> str:
    """The `nn.ParameterDict` key of a parameter's learned rate ('a.b' -> 'a__b')."""
    return parameter_name.replace(".", "__")


class MAMLInnerLoopGradientDescent(nn.Module):
    """Gradient-descent adaptation of functional parameters.

    Args:
      learning_rate: the inner-loop step size (the initial value of the learned
        rates with `learn_inner_lr`). T2R's default, 0.001.
      use_second_order: differentiate the outer loss through the inner
        gradients (True, T2R's default) or not (first-order MAML).
      learn_inner_lr: learn one rate per parameter tensor.
    """

    def __init__(
        self,
        learning_rate: float = 0.001,
        use_second_order: bool = True,
        learn_inner_lr: bool = False,
    ) -> None:
        super().__init__()
        self.learning_rate = float(learning_rate)
        self.use_second_order = bool(use_second_order)
        self.learn_inner_lr = bool(learn_inner_lr)
        self.learning_rates = nn.ParameterDict()

    def bind(self, parameter_names: Iterable[str]) -> None:
        """Creates the learned rates for `parameter_names` (no-op without `learn_inner_lr`)."""
        if not self.learn_inner_lr:
            return
        for name in parameter_names:
            key = learning_rate_key(name)
            if key not in self.learning_rates:
                self.learning_rates[key] = nn.Parameter(torch.tensor(self.learning_rate))

    def rate(self, name: str) -> torch.Tensor | float:
        """The step size of parameter `name`."""
        if not self.learn_inner_lr:
            return self.learning_rate
        key = learning_rate_key(name)
        if key not in self.learning_rates:
            raise KeyError(
                f"MAMLInnerLoopGradientDescent: no learned rate for parameter {name!r}; "
                "call bind() with the model's parameter names first."
            )
        return self.learning_rates[key]

    def step(self, params: Params, loss: torch.Tensor, create_graph: bool = True) -> Params:
        """One gradient step of `loss` on `params`; returns the new parameters.

        `params` must be tensors `loss` was computed from (under grad mode).
        Parameters the loss does not depend on are returned unchanged.
        `create_graph=False` (outer pass without gradients, e.g. evaluation)
        builds no graph at all, whatever `use_second_order` says.
        """
        names = list(params)
        grads = torch.autograd.grad(
            loss,
            [params[n] for n in names],
            create_graph=create_graph and self.use_second_order,
            allow_unused=True,
        )
        new_params: Params = {}
        for name, grad in zip(names, grads):
            if grad is None:
                new_params[name] = params[name]
                continue
            if not self.use_second_order:
                grad = grad.detach()
            new_params[name] = params[name] - self.rate(name) * grad
        return new_params

    def inner_loop(
        self,
        params: Params,
        loss_fn: Callable[[Params], torch.Tensor],
        num_steps: int,
        create_graph: bool = True,
    ) -> tuple[Params, list[torch.Tensor]]:
        """`num_steps` steps of `loss_fn(params)`; returns the adapted parameters and the
        loss before each step (detached). Runs with gradients enabled even under
        `torch.no_grad` (adaptation needs them at evaluation and deployment too)."""
        losses: list[torch.Tensor] = []
        with torch.enable_grad():
            for _ in range(num_steps):
                loss = loss_fn(params)
                losses.append(loss.detach())
                params = self.step(params, loss, create_graph)
        return params, losses
