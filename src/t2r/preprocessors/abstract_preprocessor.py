"""AbstractPreprocessor: turns what the input pipeline gives into what the model wants.

A preprocessor has two contracts. Its *in* specs describe the tensors the input
pipeline produces (and that a client feeds an exported model): e.g. a uint8
JPEG-encoded image of the stored size. Its *out* specs describe what the model
consumes: e.g. a float32 image of the model's size. `preprocess` checks the
inputs against the in-specs, runs the subclass's `_preprocess_fn`, and checks
the result against the out-specs, so a mismatch stops at the boundary with an
error naming the key, the feature name and the expected and actual shape/dtype.

Unlike Tensor2Robot's (a plain object that built TF graph ops), a preprocessor
here is an `nn.Module`: it can hold parameters and buffers (e.g. normalization
statistics), moves to the training device with the model that owns it, and runs
inside an exported program. It works on batches: every tensor has a leading
batch dimension (and a time dimension after it for sequence specs).
"""

from __future__ import annotations

import abc
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

from t2r.modes import ModeKeys
from t2r.specs import (
    ExtendedTensorSpec,
    SpecError,
    TensorSpecStruct,
    assert_required,
    flatten_spec_structure,
    pack_flat_sequence_to_spec_structure,
    validate_and_pack,
)

__all__ = ["AbstractPreprocessor", "SpecFn"]

# A function of the mode returning a spec structure, e.g. a model's
# `get_feature_specification`.
SpecFn = Callable[[str], Any]


class AbstractPreprocessor(nn.Module, abc.ABC):
    """Base class of all preprocessors: in/out specs plus a checked `preprocess`.

    Subclasses implement the four ``get_*_specification(mode)`` methods and
    `_preprocess_fn`. The model passes its own ``get_feature_specification`` and
    ``get_label_specification`` as `model_feature_specification_fn` and
    `model_label_specification_fn`; subclasses derive their specs from them.

    Args:
      model_feature_specification_fn: ``mode -> spec structure`` of the features
        the model consumes (the default out-spec of most preprocessors).
      model_label_specification_fn: ``mode -> spec structure`` of the labels the
        model consumes. None means the model takes no labels: label specs are
        then empty.
      is_model_device_tpu: accepted so that Tensor2Robot preprocessors that
        pass it on to their base class port unchanged; stored, otherwise unused
        (there is no TPU-specific preprocessing here).

    Models build their preprocessor with keyword arguments, as Tensor2Robot
    did: ``preprocessor_cls(model_feature_specification_fn=...,
    model_label_specification_fn=...)``, so a subclass may take other
    parameters first.
    """

    def __init__(
        self,
        model_feature_specification_fn: SpecFn | None = None,
        model_label_specification_fn: SpecFn | None = None,
        is_model_device_tpu: bool = False,
    ) -> None:
        super().__init__()
        self._model_feature_specification_fn = model_feature_specification_fn
        self._model_label_specification_fn = model_label_specification_fn
        self._is_model_device_tpu = is_model_device_tpu

    # ------------------------------------------------------------ model specs
    @property
    def model_feature_specification_fn(self) -> SpecFn | None:
        return self._model_feature_specification_fn

    @model_feature_specification_fn.setter
    def model_feature_specification_fn(self, fn: SpecFn | None) -> None:
        self._model_feature_specification_fn = fn

    @property
    def model_label_specification_fn(self) -> SpecFn | None:
        return self._model_label_specification_fn

    @model_label_specification_fn.setter
    def model_label_specification_fn(self, fn: SpecFn | None) -> None:
        self._model_label_specification_fn = fn

    def _model_feature_specification(self, mode: str) -> TensorSpecStruct:
        """The model's feature specs for `mode`, flattened (a fresh struct)."""
        if self._model_feature_specification_fn is None:
            raise ValueError(
                f"{type(self).__name__} needs model_feature_specification_fn to derive its "
                "feature specs; pass the model's get_feature_specification."
            )
        return flatten_spec_structure(self._model_feature_specification_fn(mode))

    def _model_label_specification(self, mode: str) -> TensorSpecStruct:
        """The model's label specs for `mode`, flattened; empty without a label fn."""
        if self._model_label_specification_fn is None:
            return TensorSpecStruct()
        return flatten_spec_structure(self._model_label_specification_fn(mode))

    # ----------------------------------------------------------- the contract
    @abc.abstractmethod
    def get_in_feature_specification(self, mode: str) -> Any:
        """The spec structure of the features `preprocess` accepts in `mode`."""

    @abc.abstractmethod
    def get_in_label_specification(self, mode: str) -> Any:
        """The spec structure of the labels `preprocess` accepts in `mode`."""

    @abc.abstractmethod
    def get_out_feature_specification(self, mode: str) -> Any:
        """The spec structure of the features `preprocess` returns in `mode`."""

    @abc.abstractmethod
    def get_out_label_specification(self, mode: str) -> Any:
        """The spec structure of the labels `preprocess` returns in `mode`."""

    @abc.abstractmethod
    def _preprocess_fn(
        self,
        features: TensorSpecStruct,
        labels: TensorSpecStruct | None,
        mode: str,
    ) -> tuple[Any, Any]:
        """Transforms a batch of validated inputs; returns ``(features, labels)``.

        Args:
          features: a TensorSpecStruct packed to the in-feature spec (absent
            optional entries are None). It is a fresh struct: assigning to it
            does not change the caller's data.
          labels: likewise for the in-label spec, or None (e.g. in PREDICT).
          mode: a `ModeKeys` value.

        Returns:
          ``(features, labels)``, each a (flat or nested) structure of tensors
          holding at least the required out-specs; labels may be None.
        """

    # ----------------------------------------------------------- processing
    def preprocess(
        self,
        features: Any,
        labels: Any,
        mode: str,
    ) -> tuple[TensorSpecStruct, TensorSpecStruct | None]:
        """Validates, preprocesses and validates a batch.

        Args:
          features: flat or nested tensors with a leading batch dimension,
            matching `get_in_feature_specification(mode)`. Entries the spec does
            not name are dropped.
          labels: likewise for the label spec, or None.
          mode: ``ModeKeys.TRAIN``, ``EVAL`` or ``PREDICT``.

        Returns:
          ``(features, labels)`` as TensorSpecStructs packed to the out-specs
          (labels None when labels were None).

        Raises:
          SpecError: an input or output does not match its spec; the message
            names the preprocessor, the side (input/output features/labels), the
            mode, the key, the spec name and the expected and actual shape/dtype.
        """
        mode = ModeKeys.validate(mode)
        features = self._validate(
            self.get_in_feature_specification(mode), features, "input features", mode
        )
        if labels is not None:
            labels = self._validate(
                self.get_in_label_specification(mode), labels, "input labels", mode
            )
        out_features, out_labels = self._preprocess_fn(features, labels, mode)
        out_features = self._validate(
            self.get_out_feature_specification(mode), out_features, "output features", mode
        )
        if out_labels is not None:
            out_labels = self._validate(
                self.get_out_label_specification(mode), out_labels, "output labels", mode
            )
        return out_features, out_labels

    def forward(
        self,
        features: Any,
        labels: Any = None,
        mode: str = ModeKeys.PREDICT,
    ) -> tuple[TensorSpecStruct, TensorSpecStruct | None]:
        """`preprocess` as a module call; PREDICT unless told otherwise."""
        return self.preprocess(features, labels, mode)

    def _validate(self, spec: Any, tensors: Any, what: str, mode: str) -> TensorSpecStruct:
        try:
            flat_spec = flatten_spec_structure(spec)
            if torch.compiler.is_compiling() or torch.jit.is_tracing():
                packed = _validate_and_pack_traced(flat_spec, tensors)
            else:
                packed = validate_and_pack(flat_spec, tensors, ignore_batch=True)
        except SpecError as e:
            raise SpecError(
                f"{type(self).__name__} {what} (mode {mode!r}): {e}",
                key=e.key,
                name=e.name,
                expected=e.expected,
                actual=e.actual,
            ) from e
        return packed


def _validate_and_pack_traced(flat_spec: TensorSpecStruct, tensors: Any) -> TensorSpecStruct:
    """`validate_and_pack(..., ignore_batch=True)` for tensors with symbolic sizes.

    Under torch.export / torch.compile with dynamic shapes, sizes are SymInts,
    which ExtendedTensorSpec does not take. Here the batch dimension is dropped
    and any other symbolic size is treated as unknown (it matches any spec
    size); static sizes and dtypes are checked as in eager mode. Under
    torch.jit.trace (TorchScript and ONNX export) sizes are 0-d tensors; their
    traced values are checked as static sizes.
    """
    flat_tensors = flatten_spec_structure(tensors)
    described = TensorSpecStruct()
    for key, value in flat_tensors.items():
        if not isinstance(value, (torch.Tensor, np.ndarray)):
            raise SpecError(f"{key!r}: expected a tensor, got {type(value).__name__}.", key=key)
        if not value.shape:
            raise SpecError(f"{key!r}: cannot strip a batch dimension from a scalar.", key=key)
        shape = tuple(_static_dim(d) for d in value.shape[1:])
        described[key] = ExtendedTensorSpec(shape, value.dtype, is_extracted=True)
    assert_required(flat_spec, described)
    packed: TensorSpecStruct = pack_flat_sequence_to_spec_structure(flat_spec, flat_tensors)
    return packed


def _static_dim(dim: Any) -> int | None:
    """A size as a plain int, or None when it is symbolic."""
    if type(dim) is int:
        return dim
    if isinstance(dim, torch.Tensor):  # torch.jit.trace: the size's traced value
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            return int(dim)
    return None
