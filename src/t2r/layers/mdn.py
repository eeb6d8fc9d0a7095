"""Mixture density network (MDN) head: a mixture of diagonal Gaussians over actions.

PyTorch counterpart of Tensor2Robot's ``layers/mdn.py``:

* `MDNHead` = ``predict_mdn_params`` + ``get_mixture_distribution``: a linear
  layer predicts the mixture logits and component means; the scales are
  either a learned vector shared by all inputs (T2R's default,
  ``condition_sigmas=False``, initialised so every scale starts at 1) or
  predicted from the input. Scales are ``softplus(raw) + min_sigma``.
* `mdn_nll` = ``MDNDecoder.loss`` (mean negative log-likelihood).
* `approximate_mode` = ``gaussian_mixture_approximate_mode``: the mean of the
  component with the largest mixture weight.
* `mixture_distribution` builds the ``torch.distributions`` object for
  sampling or anything else the helpers do not cover.

The NLL is computed with log-softmax + logsumexp rather than through
``torch.distributions`` so it stays cheap, exportable and stable when
components are far from the target.
"""

from __future__ import annotations

import math
from typing import Literal, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn
from torch.distributions import Categorical, Independent, MixtureSameFamily, Normal

__all__ = [
    "MDNHead",
    "MDNParams",
    "approximate_mode",
    "mdn_log_prob",
    "mdn_nll",
    "mixture_distribution",
]

_LOG_2PI = math.log(2.0 * math.pi)


class MDNParams(NamedTuple):
    """Parameters of a batch of Gaussian mixtures with K components over D dims.

    logits: (..., K) unnormalised mixture log-weights.
    means: (..., K, D) component means.
    scales: (..., K, D) positive component standard deviations (diagonal).
    """

    logits: torch.Tensor
    means: torch.Tensor
    scales: torch.Tensor


class MDNHead(nn.Module):
    """Linear MDN head: (..., in_features) -> `MDNParams` with K components over D dims.

    Args:
      in_features: width of the conditioning features.
      action_size: D, dimensionality of the modelled variable.
      num_mixture_components: K. 1 gives a single Gaussian (MSE-like regression).
      condition_sigmas: predict the scales from the input; otherwise they are a
        learned (K * D,) vector shared by all inputs, as T2R's MDNDecoder does.
      min_sigma: floor added to every scale for numerical stability (T2R: 1e-4).

    Forward:
      inputs: (..., in_features) float.
      returns MDNParams(logits (..., K), means (..., K, D), scales (..., K, D)).
    """

    def __init__(
        self,
        in_features: int,
        action_size: int,
        num_mixture_components: int = 1,
        condition_sigmas: bool = False,
        min_sigma: float = 1e-4,
    ) -> None:
        super().__init__()
        if num_mixture_components < 1 or action_size < 1:
            raise ValueError(
                "MDNHead needs num_mixture_components >= 1 and action_size >= 1, got "
                f"{num_mixture_components} and {action_size}"
            )
        self.in_features = in_features
        self.action_size = action_size
        self.num_mixture_components = num_mixture_components
        self.condition_sigmas = condition_sigmas
        self.min_sigma = min_sigma
        num_mus = num_mixture_components * action_size
        num_outputs = num_mixture_components + num_mus * (2 if condition_sigmas else 1)
        self.linear = nn.Linear(in_features, num_outputs)
        self.sigma_inputs: nn.Parameter | None
        if condition_sigmas:
            self.register_parameter("sigma_inputs", None)
        else:
            # softplus(log(e - 1)) == 1: every component starts with unit scale.
            self.sigma_inputs = nn.Parameter(torch.full((num_mus,), math.log(math.e - 1.0)))

    def forward(self, inputs: torch.Tensor) -> MDNParams:
        """inputs: (..., in_features) -> MDNParams over K components and D dims."""
        k, d = self.num_mixture_components, self.action_size
        out = self.linear(inputs)
        # A list (not *unpacking) keeps the shape arithmetic TorchScript-compatible.
        shape = list(out.shape[:-1]) + [k, d]
        # Same packing as T2R's flat params: [alphas (K), mus (K*D), sigmas (K*D)].
        logits = out[..., :k]
        means = out[..., k : k + k * d].reshape(shape)
        sigma_inputs = self.sigma_inputs
        if sigma_inputs is None:
            raw_sigmas = out[..., k + k * d :].reshape(shape)
        else:
            raw_sigmas = sigma_inputs.reshape(k, d).expand(shape)
        scales = F.softplus(raw_sigmas) + self.min_sigma
        return MDNParams(logits, means, scales)

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, action_size={self.action_size}, "
            f"num_mixture_components={self.num_mixture_components}, "
            f"condition_sigmas={self.condition_sigmas}"
        )


def mdn_log_prob(params: MDNParams, targets: torch.Tensor) -> torch.Tensor:
    """Log-density of ``targets`` under the mixture.

    Args:
      params: MDNParams with logits (..., K), means/scales (..., K, D).
      targets: (..., D) float.

    Returns:
      (...,) log p(targets).
    """
    z = (targets.unsqueeze(-2) - params.means) / params.scales  # (..., K, D)
    component_log_prob = (-0.5 * (z * z + _LOG_2PI) - torch.log(params.scales)).sum(-1)
    log_weights = torch.log_softmax(params.logits, dim=-1)  # (..., K)
    return torch.logsumexp(log_weights + component_log_prob, dim=-1)


def mdn_nll(
    params: MDNParams,
    targets: torch.Tensor,
    reduction: Literal["mean", "sum", "none"] = "mean",
) -> torch.Tensor:
    """Negative log-likelihood of ``targets`` under the mixture (T2R ``MDNDecoder.loss``).

    Args:
      params: MDNParams with logits (..., K), means/scales (..., K, D).
      targets: (..., D) float, same leading dims as ``params``.
      reduction: "mean" (T2R: averaged over batch and sequence), "sum" or "none".

    Returns:
      () for "mean"/"sum", (...,) for "none".
    """
    if targets.shape[-1] != params.means.shape[-1]:
        raise ValueError(
            f"mdn_nll: targets last dim {targets.shape[-1]} != action size "
            f"{params.means.shape[-1]} (targets shape {tuple(targets.shape)}, means shape "
            f"{tuple(params.means.shape)})"
        )
    nll = -mdn_log_prob(params, targets)
    if reduction == "mean":
        return nll.mean()
    if reduction == "sum":
        return nll.sum()
    if reduction == "none":
        return nll
    raise ValueError(f"mdn_nll: reduction must be 'mean', 'sum' or 'none', got {reduction!r}")


def approximate_mode(params: MDNParams) -> torch.Tensor:
    """Mean of the most probable component (T2R ``gaussian_mixture_approximate_mode``).

    Args:
      params: MDNParams with logits (..., K), means (..., K, D).

    Returns:
      (..., D) the mean of component ``argmax(logits)``.
    """
    index = params.logits.argmax(dim=-1)  # (...,)
    shape = list(index.shape) + [1, params.means.shape[-1]]
    index = index[..., None, None].expand(shape)
    return params.means.gather(-2, index).squeeze(-2)


def mixture_distribution(params: MDNParams) -> MixtureSameFamily:
    """The mixture as a ``torch.distributions`` object (T2R ``get_mixture_distribution``).

    Args:
      params: MDNParams with logits (..., K), means/scales (..., K, D).

    Returns:
      MixtureSameFamily with batch shape (...) and event shape (D,).
    """
    components = Independent(Normal(params.means, params.scales), 1)
    return MixtureSameFamily(Categorical(logits=params.logits), components)
