"""AbstractT2RModel: a model that declares its specs and gets the rest for free."""

from __future__ import annotations

import abc
import dataclasses
import inspect
import logging
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from t2r import network_state, specs
from t2r.models.optimizers import create_adam_optimizer
from t2r.models.updates import average_gradients
from t2r.modes import ModeKeys
from t2r.preprocessors import AbstractPreprocessor, NoOpPreprocessor

logger = logging.getLogger(__name__)

Optimizers = torch.optim.Optimizer | dict[str, torch.optim.Optimizer]
Schedulers = torch.optim.lr_scheduler.LRScheduler | dict[str, torch.optim.lr_scheduler.LRScheduler]


@dataclasses.dataclass
class ModelOutputs:
    """What one `model_fn` call produced.

    loss: the training loss (TRAIN and EVAL when labels are given).
    train_outputs: extra tensors `model_train_fn` returned.
    eval_metrics: scalars from `model_eval_fn` (EVAL).
    export_outputs: what an exported model returns (PREDICT).
    """

    mode: str
    inference_outputs: dict[str, Any]
    loss: torch.Tensor | None = None
    train_outputs: dict[str, Any] = dataclasses.field(default_factory=dict)
    eval_metrics: dict[str, torch.Tensor] = dataclasses.field(default_factory=dict)
    export_outputs: dict[str, torch.Tensor] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class TrainStepOutputs:
    """What one `train_step` reports to the training loop.

    loss: the scalar loss (detached). scalars: further values to log.
    """

    loss: torch.Tensor
    scalars: dict[str, float | torch.Tensor] = dataclasses.field(default_factory=dict)


class AbstractT2RModel(nn.Module, abc.ABC):
    """The base of every t2r model (Tensor2Robot's AbstractT2RModel, on PyTorch).

    A subclass declares `get_feature_specification(mode)` and
    `get_label_specification(mode)` (shapes without batch), builds its layers in
    `__init__`, and writes `inference_network_fn` and `model_train_fn`. Input
    pipelines, validation, preprocessing, checkpoints, export and policies are
    derived from the specs.

    Data flow of `model_fn(features, labels, mode)`:
    raw data, checked against the preprocessor's in-specs (what clients and
    records provide) -> `preprocessor.preprocess` (checked against the model's
    specs) -> `inference_network_fn` -> `model_train_fn` (loss) /
    `model_eval_fn` (metrics) / `create_export_outputs_fn` (predictions).

    Models whose update is not one loss and one optimizer (actor-critic, target
    networks, Lagrange multipliers) set ``owns_update = True``, return a dict
    from `create_optimizer` and override `train_step` (see
    `t2r.models.updates` and ``docs/training.md``).

    Args:
      preprocessor_cls: builds the preprocessor from the model's spec functions;
        defaults to the class attribute `default_preprocessor_cls`.
      create_optimizer_fn: `params -> Optimizer`; Adam at 1e-4 by default.
      create_lr_scheduler_fn: `optimizer -> LRScheduler`; none by default.
      gradient_clip_norm: clip the global gradient norm to this in `train_step`.
    """

    default_preprocessor_cls: type[AbstractPreprocessor] = NoOpPreprocessor

    #: False: under torchrun the loop wraps the model in DistributedDataParallel,
    #: which averages the gradients of the one backward pass of `train_step`.
    #: True: the model owns its update (several losses, backward passes and
    #: optimizers, target networks); the loop runs it unwrapped, broadcasts rank
    #: 0's initial weights, and `train_step` averages each network's gradients
    #: itself with `t2r.models.average_gradients` before stepping.
    owns_update: bool = False

    def __init__(
        self,
        preprocessor_cls: Callable[..., AbstractPreprocessor] | None = None,
        create_optimizer_fn: Callable[..., torch.optim.Optimizer] | None = None,
        create_lr_scheduler_fn: Callable[..., Any] | None = None,
        gradient_clip_norm: float | None = None,
    ) -> None:
        super().__init__()
        preprocessor_cls = preprocessor_cls or self.default_preprocessor_cls
        # By keyword, as Tensor2Robot did: a ported preprocessor may take other
        # parameters first.
        self.preprocessor = preprocessor_cls(
            model_feature_specification_fn=self.get_feature_specification,
            model_label_specification_fn=self.get_label_specification,
        )
        self._create_optimizer_fn = create_optimizer_fn or create_adam_optimizer
        self._create_lr_scheduler_fn = create_lr_scheduler_fn
        self.gradient_clip_norm = gradient_clip_norm
        self._golden_tensors: dict[str, torch.Tensor] = {}

    # ------------------------------------------------------------------ specs
    @abc.abstractmethod
    def get_feature_specification(self, mode: str) -> specs.TensorSpecStruct:
        """The features `inference_network_fn` reads (after preprocessing)."""

    @abc.abstractmethod
    def get_label_specification(self, mode: str) -> specs.TensorSpecStruct:
        """The labels `model_train_fn` reads (after preprocessing)."""

    def get_network_state_specification(self) -> specs.TensorSpecStruct:
        """The state a stateful policy carries between PREDICT calls (empty: stateless).

        Per-example specs (no batch dimension), any struct of tensors: an LSTM's
        ``h`` and ``c``, a token cache. In PREDICT the state arrives as features
        ``network_state/<path>`` (added to the PREDICT specs), and
        `inference_network_fn` returns the next state as
        ``outputs["next_network_state"]``; exports, predictors and policies
        thread it (see `t2r.network_state`).
        """
        return specs.TensorSpecStruct()

    def get_initial_network_state(self) -> specs.TensorSpecStruct:
        """The state at the start of an episode, per example (zeros by default).

        Exports record its value, so a learned initial state is served as trained.
        """
        return network_state.zeros_like_spec(self.get_network_state_specification())

    def get_feature_specification_for_packing(self, mode: str) -> specs.TensorSpecStruct:
        """The features a client or record provides: the preprocessor's in-spec
        (in PREDICT plus the network state, ``network_state/<path>``, of a
        stateful model)."""
        spec = specs.flatten_spec_structure(self.preprocessor.get_in_feature_specification(mode))
        if mode != ModeKeys.PREDICT:
            return spec
        state_spec = self.get_network_state_specification()
        return network_state.with_network_state(spec, state_spec) if state_spec else spec

    def get_label_specification_for_packing(self, mode: str) -> specs.TensorSpecStruct:
        """The labels a record provides: the preprocessor's in-spec."""
        return specs.flatten_spec_structure(self.preprocessor.get_in_label_specification(mode))

    # -------------------------------------------------------------- network
    @abc.abstractmethod
    def inference_network_fn(
        self,
        features: specs.TensorSpecStruct,
        labels: specs.TensorSpecStruct | None,
        mode: str,
        config: Any = None,
        params: Any = None,
    ) -> dict[str, Any]:
        """The forward pass shared by every mode: features -> dict of outputs."""

    @abc.abstractmethod
    def model_train_fn(
        self,
        features: specs.TensorSpecStruct,
        labels: specs.TensorSpecStruct,
        inference_outputs: dict[str, Any],
        mode: str,
        config: Any = None,
        params: Any = None,
    ) -> torch.Tensor | tuple[torch.Tensor, dict[str, Any]]:
        """The scalar loss, or `(loss, train_outputs)`."""

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
        """Scalar metrics for one eval batch; the loop averages them over batches.

        Tensor2Robot's signature and argument order: `train_loss` is what
        `model_train_fn` returned as the loss, `train_outputs` its extra
        outputs (``{}`` when it returned only the loss). T2R returned
        ``tf.metrics`` ops; here return ``{name: scalar tensor}``. The default
        reports nothing beyond the loss, which `model_fn` adds.
        """
        return {}

    def create_export_outputs_fn(
        self,
        features: specs.TensorSpecStruct,
        inference_outputs: dict[str, Any],
        mode: str = ModeKeys.PREDICT,
        config: Any = None,
        params: Any = None,
    ) -> dict[str, torch.Tensor]:
        """What an exported model returns; all tensor inference outputs by default.

        The next network state of a stateful model is added by `model_fn`.
        """
        return {k: v for k, v in inference_outputs.items() if isinstance(v, torch.Tensor)}

    def _checked_outputs(self, outputs: Any, producer: str, required_key: str) -> dict[str, Any]:
        """`outputs` of `producer` (e.g. 'a_func'), which must be a dict holding
        `required_key`; raises ValueError naming both otherwise."""
        if not isinstance(outputs, dict) or required_key not in outputs:
            got = list(outputs) if isinstance(outputs, dict) else type(outputs).__name__
            raise ValueError(
                f"{type(self).__name__}.{producer} must return a dict with {required_key!r}, "
                f"got {got}."
            )
        return outputs

    def pack_features(self, *policy_inputs: Any) -> dict[str, Any]:
        """Turns a policy's (state, context, timestep) into a feature dict keyed by
        the packing spec's paths. Models served by RegressionPolicy implement it."""
        raise NotImplementedError(f"{type(self).__name__} does not implement pack_features.")

    # ----------------------------------------------------------- model_fn
    def prepare_inputs(
        self,
        features: Mapping[str, Any],
        labels: Mapping[str, Any] | None,
        mode: str,
        validate: bool = True,
    ) -> tuple[specs.TensorSpecStruct, specs.TensorSpecStruct | None]:
        """Raw data -> what `inference_network_fn` reads: validated against the
        packing specs (with `validate`), then preprocessed. Labels are None in
        PREDICT. A `train_step` override starts here.

        The network state of a stateful model (PREDICT) bypasses the
        preprocessor: it is taken out of the features before and put back, as
        ``features.network_state``, after.
        """
        ModeKeys.validate(mode)
        if validate:
            features = specs.validate_and_pack(
                self.get_feature_specification_for_packing(mode), features, ignore_batch=True
            )
            if labels is not None and mode != ModeKeys.PREDICT:
                labels = specs.validate_and_pack(
                    self.get_label_specification_for_packing(mode), labels, ignore_batch=True
                )
        if mode != ModeKeys.PREDICT:
            return self.preprocessor.preprocess(features, labels, mode)
        state_spec = self.get_network_state_specification()
        if not state_spec:
            return self.preprocessor.preprocess(features, None, mode)
        features, state = network_state.split_state(type(self).__name__, state_spec, features)
        features, _ = self.preprocessor.preprocess(features, None, mode)
        for name, value in state.items():
            features[name] = value
        return features, None

    def model_fn(
        self,
        features: Mapping[str, Any],
        labels: Mapping[str, Any] | None,
        mode: str,
        config: Any = None,
        params: Any = None,
        validate: bool = True,
    ) -> ModelOutputs:
        """Validates and packs the inputs, preprocesses, and runs the pieces of `mode`.

        With `validate`, data that does not match the packing specs raises
        SpecError naming the key, the spec name, and expected vs actual shape and
        dtype.
        """
        features, labels = self.prepare_inputs(features, labels, mode, validate)
        inference_outputs = self.inference_network_fn(features, labels, mode, config, params)
        outputs = ModelOutputs(mode=mode, inference_outputs=inference_outputs)
        if mode == ModeKeys.PREDICT:
            outputs.export_outputs = self.create_export_outputs_fn(
                features, inference_outputs, mode, config, params
            )
            state_spec = self.get_network_state_specification()
            if state_spec:
                outputs.export_outputs.update(
                    network_state.next_state_outputs(
                        type(self).__name__, state_spec, inference_outputs
                    )
                )
            return outputs
        if labels is None:
            raise specs.SpecError(f"Mode {mode!r} needs labels, got None.")
        result = self.model_train_fn(features, labels, inference_outputs, mode, config, params)
        outputs.loss, outputs.train_outputs = result if isinstance(result, tuple) else (result, {})
        if mode == ModeKeys.EVAL:
            _check_model_eval_fn_signature(self)
            metrics = self.model_eval_fn(
                features,
                labels,
                inference_outputs,
                outputs.loss,
                outputs.train_outputs,
                mode,
                config,
                params,
            )
            outputs.eval_metrics = {"loss": outputs.loss.detach(), **metrics}
        return outputs

    def forward(
        self,
        features: Mapping[str, Any],
        labels: Mapping[str, Any] | None = None,
        mode: str = ModeKeys.PREDICT,
    ) -> ModelOutputs:
        """`model_fn`; the entry point DistributedDataParallel wraps."""
        return self.model_fn(features, labels, mode)

    # --------------------------------------------------------- optimization
    def create_optimizer(self) -> Optimizers:
        """The optimizer (or a dict of them for models that own `train_step`)."""
        return self._create_optimizer_fn(self.parameters())

    def create_lr_scheduler(self, optimizer: Optimizers) -> Schedulers | None:
        """A schedule stepped once per training step, or None for a constant rate."""
        if self._create_lr_scheduler_fn is None:
            return None
        if isinstance(optimizer, dict):
            return {k: self._create_lr_scheduler_fn(o) for k, o in optimizer.items()}
        return self._create_lr_scheduler_fn(optimizer)

    def train_step(
        self,
        features: Mapping[str, Any],
        labels: Mapping[str, Any],
        optimizer: Optimizers,
        forward: Callable[..., ModelOutputs] | None = None,
    ) -> TrainStepOutputs:
        """One update: forward, backward, (clip), optimizer step.

        `forward` is the module to call: the DistributedDataParallel wrapper of
        this model under torchrun (it averages gradients across ranks), else the
        model. A model with ``owns_update = True`` always gets the model itself
        and averages its gradients across ranks with
        `t2r.models.average_gradients` before each optimizer step.
        """
        if not isinstance(optimizer, torch.optim.Optimizer):
            raise TypeError(
                f"{type(self).__name__}.create_optimizer returned {type(optimizer).__name__}; "
                "models with several optimizers must override train_step."
            )
        forward = forward or self
        optimizer.zero_grad(set_to_none=True)
        outputs = forward(features, labels, ModeKeys.TRAIN)
        assert outputs.loss is not None
        outputs.loss.backward()
        if self.owns_update:
            average_gradients(self)
        scalars: dict[str, float | torch.Tensor] = {}
        if self.gradient_clip_norm is not None:
            scalars["gradient_norm"] = nn.utils.clip_grad_norm_(
                self.parameters(), self.gradient_clip_norm
            )
        optimizer.step()
        for key, value in outputs.train_outputs.items():
            if isinstance(value, torch.Tensor) and value.numel() == 1:
                scalars[key] = value.detach()
        return TrainStepOutputs(loss=outputs.loss.detach(), scalars=scalars)

    # ------------------------------------------------------- golden values
    def add_golden_tensor(self, name: str, tensor: torch.Tensor) -> None:
        """Registers a tensor whose value golden-value tests record and compare."""
        self._golden_tensors[name] = tensor.detach()

    def pop_golden_tensors(self) -> dict[str, torch.Tensor]:
        """The tensors registered since the last call."""
        tensors, self._golden_tensors = self._golden_tensors, {}
        return tensors

    # ---------------------------------------------------------- warm start
    def init_from_checkpoint(
        self,
        checkpoint: str | Path,
        include: str | None = None,
        exclude: str | None = None,
        strict: bool = False,
    ) -> list[str]:
        """Warm-starts weights from a t2r checkpoint directory or a safetensors file.

        Only parameters whose names match the `include` regex (all by default)
        and not `exclude` are loaded; with `strict=False`, names the checkpoint
        lacks and tensors of another shape are skipped (and logged). Returns the
        loaded names.
        """
        from safetensors.torch import load_file

        path = Path(checkpoint)
        if path.is_dir():
            path = path / "model.safetensors"
        if not path.is_file():
            raise FileNotFoundError(f"No model weights at {path}.")
        saved = load_file(str(path))
        own = self.state_dict()
        loaded, skipped = [], []
        for name, tensor in own.items():
            if include is not None and not re.search(include, name):
                continue
            if exclude is not None and re.search(exclude, name):
                continue
            source = saved.get(name)
            if source is None or source.shape != tensor.shape:
                why = (
                    "missing"
                    if source is None
                    else f"shape {tuple(source.shape)} != {tuple(tensor.shape)}"
                )
                if strict:
                    raise ValueError(f"Cannot warm-start {name!r} from {path}: {why}.")
                skipped.append(f"{name} ({why})")
                continue
            with torch.no_grad():
                tensor.copy_(source)
            loaded.append(name)
        logger.info("Warm-started %d tensors from %s; skipped %d.", len(loaded), path, len(skipped))
        for entry in skipped:
            logger.debug("  skipped %s", entry)
        return loaded


_MODEL_EVAL_FN_SIGNATURE = (
    "model_eval_fn(self, features, labels, inference_outputs, train_loss, train_outputs, "
    "mode, config=None, params=None)"
)


def _check_model_eval_fn_signature(model: AbstractT2RModel) -> None:
    """Raises TypeError when `model.model_eval_fn` cannot take Tensor2Robot's 8 arguments
    in T2R's order (e.g. an override written for t2r's earlier
    ``(features, labels, inference_outputs, train_outputs, config, params)``), which
    would otherwise receive shifted values."""
    function = type(model).model_eval_fn
    if function is AbstractT2RModel.model_eval_fn or function in _CHECKED_EVAL_FNS:
        return
    try:
        parameters = list(inspect.signature(function).parameters.values())[1:]  # drop self
    except (TypeError, ValueError):  # no signature to inspect: trust it
        return
    if any(p.kind is p.VAR_POSITIONAL for p in parameters):
        return
    positional = [p for p in parameters if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    names = [p.name for p in positional]
    shifted = len(names) > 3 and names[3] == "train_outputs"
    if len(positional) < 8 or shifted:
        where = f"{type(model).__name__}.model_eval_fn{inspect.signature(function)}"
        raise TypeError(
            f"{where} does not take Tensor2Robot's arguments; t2r calls "
            f"{_MODEL_EVAL_FN_SIGNATURE} with 8 positional arguments "
            "(train_loss comes before train_outputs, then mode)."
        )
    _CHECKED_EVAL_FNS.add(function)


# model_eval_fn implementations whose signature was checked (once per class).
_CHECKED_EVAL_FNS: set[Callable[..., Any]] = set()
