"""MAML over any t2r model (Tensor2Robot's ``meta_learning/maml_model.py``).

`MAMLModel(base_model)` is itself a t2r model. Its features are meta batches
(see `t2r.meta_learning.preprocessors` for the layout): per task, Nc
labelled condition samples and Ni inference samples of the base model; its
labels are the inference samples' labels. For every task it

1. runs `num_inner_loop_steps` gradient steps of the base model's own loss
   (``base_model.model_train_fn``) on the condition samples, starting from
   the shared parameters (`MAMLInnerLoopGradientDescent`), and
2. runs the base model's ``inference_network_fn`` with the adapted parameters
   on the inference samples.

The outer loss is the base model's loss on the inference samples with the
adapted parameters, over all tasks of the batch; the optimizer updates the
shared parameters (and the learned inner rates). Parameters are swapped
functionally with `torch.func.functional_call`, so the base model runs
unchanged.

Outputs (each ``(B, N, ...)``): ``full_inference_output/<key>`` (the base
outputs on the inference samples after adaptation, also under the base's own
keys, e.g. ``inference_output``), ``full_condition_output/<key>`` (on the
condition samples before adaptation), in EVAL ``full_inference_output_
unconditioned/<key>`` (inference samples, no adaptation: the baseline that
``unadapted/<metric>`` eval metrics report), and ``inner_loss/step_<i>``.

PREDICT adapts to one task per call: the condition samples of all B rows are
pooled into one condition set and the outputs of all inference samples are
returned as ``(B, Ni, ...)``. A deployed policy passes B = 1 (see
`MAMLRegressionPolicy`); this keeps the exported program free of a loop over
a dynamic batch (torch.export captures the inner loop's gradients, but cannot
vmap them).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.func import functional_call

from t2r import specs
from t2r.meta_learning.maml_inner_loop import MAMLInnerLoopGradientDescent
from t2r.meta_learning.preprocessors import (
    CONDITION_FEATURES,
    CONDITION_LABELS,
    INFERENCE_FEATURES,
    MAMLPreprocessorV2,
    condition_mode_of,
    create_maml_feature_spec,
    create_maml_label_spec,
    merge_task_dims,
    merged_task_dims,
    split_task_dims,
    task_group,
)
from t2r.models.abstract_model import AbstractT2RModel
from t2r.modes import ModeKeys

__all__ = ["MAMLModel"]

FULL_INFERENCE = "full_inference_output"
FULL_UNCONDITIONED = "full_inference_output_unconditioned"
FULL_CONDITION = "full_condition_output"
Params = dict[str, torch.Tensor]


class _Call(nn.Module):
    """Runs a function while `functional_call` has swapped the wrapped model's parameters.

    Never registered as a submodule (the base model would be registered twice);
    made per call, its parameter names are ``model.<base name>``.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, fn: Callable[..., Any], *args: Any) -> Any:
        return fn(*args)


def _loss_of(result: Any) -> torch.Tensor:
    return result[0] if isinstance(result, tuple) else result


def _map(group: specs.TensorSpecStruct, fn: Callable[[torch.Tensor], torch.Tensor]) -> Any:
    return specs.TensorSpecStruct({k: fn(v) for k, v in group.items()})


def _task(group: specs.TensorSpecStruct, index: int) -> specs.TensorSpecStruct:
    """Task `index` of a (B, N, ...) group: (N, ...)."""
    return specs.TensorSpecStruct({k: v[index] for k, v in group.items()})


def _tensor_outputs(outputs: dict[str, Any]) -> dict[str, torch.Tensor]:
    return {k: v for k, v in outputs.items() if isinstance(v, torch.Tensor) and v.dim() > 0}


class MAMLModel(AbstractT2RModel):
    """Model-agnostic meta-learning around `base_model` (see the module docstring).

    Args:
      base_model: any t2r model (its specs, preprocessor, network and loss are used).
      num_inner_loop_steps: adaptation steps per task (T2R's default 1).
      inner_loop: the adaptation rule; default
        ``MAMLInnerLoopGradientDescent(learning_rate=0.001)`` (T2R's).
      num_condition_samples_per_task: Nc, labelled samples adapted on.
      num_inference_samples_per_task: Ni, samples the outer loss scores.
      **kwargs: `AbstractT2RModel` arguments (create_optimizer_fn, ...). The
        preprocessor is always `MAMLPreprocessorV2` around the base's.
    """

    #: Needs a base model: the model contract tests reach it through subclasses
    #: with defaults (``tests/meta_learning/models.py``).
    wraps_a_model = True

    def __init__(
        self,
        base_model: AbstractT2RModel,
        num_inner_loop_steps: int = 1,
        inner_loop: MAMLInnerLoopGradientDescent | None = None,
        num_condition_samples_per_task: int = 1,
        num_inference_samples_per_task: int = 1,
        **kwargs: Any,
    ) -> None:
        if num_inner_loop_steps < 1:
            raise ValueError(
                f"MAMLModel: num_inner_loop_steps must be >= 1, got {num_inner_loop_steps}."
            )
        if "preprocessor_cls" in kwargs:
            raise ValueError(
                "MAMLModel: the preprocessor is MAMLPreprocessorV2 around the base model's; "
                "set preprocessor_cls on the base model instead."
            )
        preprocessor_cls = functools.partial(
            MAMLPreprocessorV2,
            base_model.preprocessor,
            num_condition_samples_per_task,
            num_inference_samples_per_task,
        )
        super().__init__(preprocessor_cls=preprocessor_cls, **kwargs)
        self.base_model = base_model
        self.num_inner_loop_steps = int(num_inner_loop_steps)
        self.num_condition_samples_per_task = int(num_condition_samples_per_task)
        self.num_inference_samples_per_task = int(num_inference_samples_per_task)
        self.inner_loop = inner_loop or MAMLInnerLoopGradientDescent()
        self.inner_loop.bind(self._adapted_parameters())

    # ------------------------------------------------------------------ specs
    def get_feature_specification(self, mode: str) -> specs.TensorSpecStruct:
        base = self.base_model
        return create_maml_feature_spec(
            base.get_feature_specification(mode),
            base.get_label_specification(condition_mode_of(mode)),
            self.num_condition_samples_per_task,
            self.num_inference_samples_per_task,
        )

    def get_label_specification(self, mode: str) -> specs.TensorSpecStruct:
        return create_maml_label_spec(
            self.base_model.get_label_specification(mode), self.num_inference_samples_per_task
        )

    # ------------------------------------------------------------ adaptation
    def _adapted_parameters(self) -> Params:
        """The shared parameters the inner loop adapts, as `functional_call` names them."""
        return {
            f"model.{name}": p for name, p in self.base_model.named_parameters() if p.requires_grad
        }

    def adapt(
        self,
        condition_features: specs.TensorSpecStruct,
        condition_labels: specs.TensorSpecStruct,
        mode: str,
    ) -> tuple[Params, list[torch.Tensor], dict[str, torch.Tensor]]:
        """Adapts the base model to one task's preprocessed condition samples.

        Args:
          condition_features, condition_labels: base-model structures, (Nc, ...).
          mode: the outer mode (the base runs in `condition_mode_of(mode)`).

        Returns:
          ``(params, inner_losses, condition_outputs)``: the adapted parameters
          (for `run_base`), the loss before each step, and the base outputs
          on the condition samples before adaptation.
        """
        call = _Call(self.base_model)
        base_mode = condition_mode_of(mode)
        first: dict[str, torch.Tensor] = {}

        def loss_fn(params: Params) -> torch.Tensor:
            def run() -> torch.Tensor:
                outputs = self.base_model.inference_network_fn(
                    condition_features, condition_labels, base_mode
                )
                if not first:
                    first.update({k: v.detach() for k, v in _tensor_outputs(outputs).items()})
                result = self.base_model.model_train_fn(
                    condition_features, condition_labels, outputs, base_mode
                )
                return _loss_of(result)

            return functional_call(call, params, (run,), strict=False)

        if not torch.is_inference_mode_enabled():
            params, losses = self.inner_loop.inner_loop(
                self._adapted_parameters(),
                loss_fn,
                self.num_inner_loop_steps,
                create_graph=torch.is_grad_enabled(),
            )
            return params, losses, first
        # Under torch.inference_mode (e.g. CheckpointPredictor) adaptation still
        # needs autograd: leave inference mode and copy the inputs out of it.
        with torch.inference_mode(False):
            condition_features = _map(condition_features, torch.clone)
            condition_labels = _map(condition_labels, torch.clone)
            params, losses = self.inner_loop.inner_loop(
                self._adapted_parameters(), loss_fn, self.num_inner_loop_steps, create_graph=False
            )
        return params, losses, first

    def run_base(
        self, params: Params | None, features: specs.TensorSpecStruct, mode: str
    ) -> dict[str, Any]:
        """The base model's `inference_network_fn` with `params` (None: the shared ones)."""
        if params is None:
            return self.base_model.inference_network_fn(features, None, mode)
        call = _Call(self.base_model)
        return functional_call(
            call,
            params,
            (lambda: self.base_model.inference_network_fn(features, None, mode),),
            strict=False,
        )

    # --------------------------------------------------------------- network
    def inference_network_fn(
        self,
        features: specs.TensorSpecStruct,
        labels: specs.TensorSpecStruct | None,
        mode: str,
        config: Any = None,
        params: Any = None,
    ) -> dict[str, Any]:
        """Adapts per task and runs the inference samples (see the module docstring)."""
        condition = task_group(features, CONDITION_FEATURES[0])
        condition_labels = task_group(features, CONDITION_LABELS[0])
        inference = task_group(features, INFERENCE_FEATURES[0])
        num_tasks = next(iter(inference.values())).shape[0]
        if mode == ModeKeys.PREDICT:
            tasks: list[tuple[Any, Any, Any]] = [
                (
                    merged_task_dims(condition),
                    merged_task_dims(condition_labels),
                    merged_task_dims(inference),
                )
            ]
        else:
            tasks = [
                (_task(condition, i), _task(condition_labels, i), _task(inference, i))
                for i in range(int(num_tasks))
            ]
        adapted: list[dict[str, torch.Tensor]] = []
        unadapted: list[dict[str, torch.Tensor]] = []
        condition_outputs: list[dict[str, torch.Tensor]] = []
        inner_losses: list[list[torch.Tensor]] = []
        for cond_f, cond_l, inf_f in tasks:
            task_params, losses, cond_out = self.adapt(cond_f, cond_l, mode)
            adapted.append(_tensor_outputs(self.run_base(task_params, inf_f, mode)))
            if mode == ModeKeys.EVAL:
                unadapted.append(_tensor_outputs(self.run_base(None, inf_f, mode)))
            condition_outputs.append(cond_out)
            inner_losses.append(losses)

        def stacked(
            per_task: list[dict[str, torch.Tensor]], num_samples: int
        ) -> dict[str, torch.Tensor]:
            if mode == ModeKeys.PREDICT:
                return {k: split_task_dims(v, num_samples) for k, v in per_task[0].items()}
            return {k: torch.stack([t[k] for t in per_task]) for k in per_task[0]}

        nc, ni = self.num_condition_samples_per_task, self.num_inference_samples_per_task
        outputs: dict[str, Any] = {}
        for key, value in stacked(adapted, ni).items():
            outputs[f"{FULL_INFERENCE}/{key}"] = value
            outputs[key] = value
        for key, value in stacked(condition_outputs, nc).items():
            outputs[f"{FULL_CONDITION}/{key}"] = value
        if unadapted:
            for key, value in stacked(unadapted, ni).items():
                outputs[f"{FULL_UNCONDITIONED}/{key}"] = value
        for step in range(self.num_inner_loop_steps):
            outputs[f"inner_loss/step_{step}"] = torch.stack([t[step] for t in inner_losses]).mean()
        return outputs

    @staticmethod
    def _merged_outputs(outputs: dict[str, Any], prefix: str) -> dict[str, torch.Tensor]:
        head = prefix + "/"
        return {
            k[len(head) :]: merge_task_dims(v)
            for k, v in outputs.items()
            if k.startswith(head) and isinstance(v, torch.Tensor)
        }

    def _base_loss(
        self,
        features: specs.TensorSpecStruct,
        labels: specs.TensorSpecStruct,
        outputs: dict[str, Any],
        prefix: str,
        mode: str,
    ) -> tuple[Any, Any, dict[str, torch.Tensor], Any]:
        inf_f = merged_task_dims(task_group(features, INFERENCE_FEATURES[0]))
        inf_l = merged_task_dims(task_group(labels, ""))
        merged = self._merged_outputs(outputs, prefix)
        return self.base_model.model_train_fn(inf_f, inf_l, merged, mode), inf_f, merged, inf_l

    def model_train_fn(
        self,
        features: specs.TensorSpecStruct,
        labels: specs.TensorSpecStruct,
        inference_outputs: dict[str, Any],
        mode: str,
        config: Any = None,
        params: Any = None,
    ) -> tuple[torch.Tensor, dict[str, Any]]:
        """The base loss on all inference samples with the adapted parameters."""
        result, _, _, _ = self._base_loss(features, labels, inference_outputs, FULL_INFERENCE, mode)
        loss, train_outputs = result if isinstance(result, tuple) else (result, {})
        train_outputs = dict(train_outputs)
        for key, value in inference_outputs.items():
            if key.startswith("inner_loss/"):
                train_outputs[key] = value
        return loss, train_outputs

    def model_eval_fn(
        self,
        features: specs.TensorSpecStruct,
        labels: specs.TensorSpecStruct,
        inference_outputs: dict[str, Any],
        train_loss: torch.Tensor,
        train_outputs: dict[str, Any],
        mode: str,
        config: Any = None,
        params: Any = None,
    ) -> dict[str, torch.Tensor]:
        """The base model's metrics after adaptation, and as ``unadapted/<name>`` without
        it (plus ``unadapted/loss``)."""
        metrics: dict[str, torch.Tensor] = {}
        for prefix, head in ((FULL_INFERENCE, ""), (FULL_UNCONDITIONED, "unadapted/")):
            if not any(k.startswith(prefix + "/") for k in inference_outputs):
                continue
            result, inf_f, merged, inf_l = self._base_loss(
                features, labels, inference_outputs, prefix, mode
            )
            loss, outputs = result if isinstance(result, tuple) else (result, {})
            base_metrics = self.base_model.model_eval_fn(
                inf_f, inf_l, merged, loss, outputs, mode, config, params
            )
            if head:
                metrics[f"{head}loss"] = loss.detach()
            metrics.update({f"{head}{k}": v for k, v in base_metrics.items()})
        return metrics

    def create_export_outputs_fn(
        self,
        features: specs.TensorSpecStruct,
        inference_outputs: dict[str, Any],
        mode: str = ModeKeys.PREDICT,
        config: Any = None,
        params: Any = None,
    ) -> dict[str, torch.Tensor]:
        """The base model's export outputs on the adapted inference samples, (B, Ni, ...)."""
        inference = task_group(features, INFERENCE_FEATURES[0])
        merged = self._merged_outputs(inference_outputs, FULL_INFERENCE)
        base_outputs = self.base_model.create_export_outputs_fn(
            merged_task_dims(inference), merged, mode, config, params
        )
        ni = self.num_inference_samples_per_task
        return {k: split_task_dims(v, ni) for k, v in base_outputs.items()}
