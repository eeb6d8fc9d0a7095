"""Checking a client's numpy features against specs and batching them."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from t2r.specs import (
    ExtendedTensorSpec,
    SpecError,
    TensorSpecStruct,
    assert_sequence_lengths,
    dtype_name,
    filter_required_flat_tensor_spec,
    flatten_spec_structure,
    numpy_dtype,
)
from t2r.specs.extended_tensor_spec import format_shape

logger = logging.getLogger(__name__)

_KIND_NAMES = {
    "f": "float",
    "i": "signed integer",
    "u": "unsigned integer",
    "b": "bool",
    "c": "complex",
}


class FeatureFeeder:
    """Validates numpy features against specs and stacks them into a batch.

    For each input (by default the required entries of `feature_spec`, in
    order), the value may be a numpy array, a torch tensor, a list or a
    scalar, of shape ``spec.shape`` (one example: a batch dimension of 1 is
    added) or ``(B, *spec.shape)`` (sequence specs take a time dimension
    first: ``(T, ...)`` / ``(B, T, ...)``). Unknown spec dims match any size.
    All inputs must have the same batch size. Inputs are keyed by the spec's
    flat *paths* (``'state/gripper'``), not by the spec names records use
    (``'gripper_pose'``); features keyed by names are an error that lists the
    paths to use.

    What is accepted, warned about, or refused:

    * Dtypes must match the spec's (numpy data for bfloat16 specs is float32).
      With `allow_cast`, arrays of another dtype of the same kind are cast:
      float64 for a float32 spec, and integers for an integer spec when every
      value survives the cast. Integer or bool *arrays* for a float spec are an
      error (a uint8 image fed to a float spec would keep its 0..255 scale):
      convert them on the client. Python scalars and lists have no dtype of
      their own and take the spec's (ints for a float spec are fine).
    * NaN or infinite values in float inputs are an error naming the key and
      the first bad index, unless `allow_nonfinite` (an action computed from
      NaN is NaN, and a robot should not receive it).
    * Entries that are not inputs are ignored, with one warning per distinct
      set of such keys (a misspelt optional feature would otherwise vanish
      silently).
    * String specs among the inputs raise SpecError at construction: inputs
      are tensors, and an exported program takes no strings.

    Errors are `SpecError`s naming the key, the spec name, and the expected and
    actual shape and dtype.
    """

    def __init__(
        self,
        feature_spec: Any,
        input_names: Sequence[str] | None = None,
        allow_cast: bool = True,
        allow_nonfinite: bool = False,
    ) -> None:
        flat = flatten_spec_structure(feature_spec)
        if input_names is None:
            input_names = list(filter_required_flat_tensor_spec(flat))
        missing = [k for k in input_names if k not in flat]
        if missing:
            raise SpecError(f"Inputs {missing} have no spec; the spec has {sorted(flat)}.")
        self.allow_cast = allow_cast
        self.allow_nonfinite = allow_nonfinite
        self._warned_extra: set[frozenset[str]] = set()
        self.input_names = tuple(input_names)
        self.spec = TensorSpecStruct((k, flat[k]) for k in self.input_names)
        self._entries = []
        strings = [k for k in self.input_names if flat[k].is_string]
        if strings:
            key = strings[0]
            raise SpecError(
                f"Input {key!r} (spec name {flat[key].name!r}) is a string spec; predictors "
                f"feed tensors only, as an exported program takes no strings (string "
                f"inputs: {strings}). Turn the strings into tensors before predicting (e.g. "
                "tokenize on the client) and export a model whose PREDICT spec takes those "
                "tensors.",
                key=key,
                name=flat[key].name,
            )
        for key in self.input_names:
            spec: ExtendedTensorSpec = flat[key]
            dims = (
                None
                if spec.shape is None
                else (*(() if not spec.is_sequence else (None,)), *spec.shape)
            )
            self._entries.append((key, spec, numpy_dtype(spec.dtype), dims))

    def __call__(self, features: Mapping[str, Any]) -> dict[str, np.ndarray]:
        """``{key: value}`` -> ``{input name: (B, ...) array}`` (checked, cast, batched)."""
        if not isinstance(features, Mapping) or any(
            isinstance(v, Mapping) for v in features.values()
        ):
            features = flatten_spec_structure(features)
        out: dict[str, np.ndarray] = {}
        batch: tuple[str, int] | None = None
        for key, spec, dtype, dims in self._entries:
            value = features.get(key)
            if value is None:
                raise SpecError(
                    f"Missing feature {key!r} (spec name {spec.name!r}): expected shape "
                    f"{format_shape(spec.shape)} dtype {dtype_name(spec.dtype)}; got features "
                    f"{sorted(features)}.{self._names_hint(features)}",
                    key=key,
                    name=spec.name,
                    expected=spec,
                )
            array = self._array(key, spec, dtype, value)
            if not self.allow_nonfinite and array.dtype.kind in "fc":
                self._check_finite(key, spec, array)
            if dims is not None:
                if array.ndim == len(dims):
                    array = array[np.newaxis]
                if array.ndim != len(dims) + 1 or any(
                    d is not None and d != a for d, a in zip(dims, array.shape[1:])
                ):
                    raise self._mismatch("Shape", key, spec, array)
            elif array.ndim == 0:
                array = array[np.newaxis]
            if batch is None:
                batch = (key, array.shape[0])
            elif array.shape[0] != batch[1]:
                raise SpecError(
                    f"Batch size mismatch: {batch[0]!r} has batch size {batch[1]} but {key!r} "
                    f"(spec name {spec.name!r}) has {array.shape[0]} (shape "
                    f"{format_shape(array.shape)}).",
                    key=key,
                    name=spec.name,
                )
            out[key] = array
        assert_sequence_lengths(self.spec, out, ignore_batch=True)
        self._warn_extra(features)
        return out

    def _names_hint(self, features: Mapping[str, Any]) -> str:
        """When `features` are keyed by spec names, the paths to feed instead."""
        by_name = {spec.name: key for key, spec in self.spec.items() if spec.name}
        if not any(k in by_name and by_name[k] != k for k in features):
            return ""
        paths = ", ".join(f"{name!r} -> {key!r}" for name, key in by_name.items())
        return (
            " The features are keyed by spec names; clients feed the spec's flat paths "
            f"instead (spec name -> path to use: {paths})."
        )

    def _check_finite(self, key: str, spec: ExtendedTensorSpec, array: np.ndarray) -> None:
        finite = np.isfinite(array)
        if finite.all():
            return
        bad = np.argwhere(~finite)
        first = tuple(int(i) for i in bad[0])
        raise SpecError(
            f"Non-finite input at {key!r} (spec name {spec.name!r}): {len(bad)} of "
            f"{array.size} values are NaN or infinite, the first at index {first} "
            f"({array[first]}). Predictors refuse them; pass allow_nonfinite=True to accept "
            "them.",
            key=key,
            name=spec.name,
        )

    def _warn_extra(self, features: Mapping[str, Any]) -> None:
        extra = frozenset(k for k in features if k not in self.spec)
        if not extra or extra in self._warned_extra:
            return
        self._warned_extra.add(extra)
        logger.warning(
            "Ignoring features that are not inputs of this model: %s (inputs: %s). "
            "This is logged once per set of such keys.",
            sorted(extra),
            list(self.input_names),
        )

    def _array(self, key: str, spec: ExtendedTensorSpec, dtype: np.dtype, value: Any) -> np.ndarray:
        if isinstance(value, torch.Tensor):
            value = value.detach().cpu()
            if value.dtype == torch.bfloat16:
                value = value.float()
            value = value.numpy()
        array = np.asarray(value)
        if array.dtype == dtype:
            return array
        if not isinstance(value, (np.ndarray, np.generic)):
            # Python data has no dtype of its own: take the spec's when values survive.
            try:
                converted = array.astype(dtype)
            except (TypeError, ValueError):  # e.g. strings for a number spec
                raise self._mismatch("Dtype", key, spec, array) from None
            if (dtype.kind == "f" and array.dtype.kind in "biuf") or np.array_equal(
                converted, array
            ):
                return converted
        elif (
            self.allow_cast
            and np.can_cast(array.dtype, dtype, "same_kind")
            and not (dtype.kind in "fc" and array.dtype.kind in "biu")
        ):
            converted = array.astype(dtype)
            if dtype.kind not in "iu" or np.array_equal(converted, array):
                return converted
        raise self._mismatch("Dtype", key, spec, array)

    @staticmethod
    def _mismatch(what: str, key: str, spec: ExtendedTensorSpec, array: np.ndarray) -> SpecError:
        shape = format_shape(spec.shape)
        if spec.is_sequence and spec.shape is not None:
            shape = format_shape((None, *spec.shape)) + " (time first)"
        expected_kind = _KIND_NAMES.get(numpy_dtype(spec.dtype).kind, "")
        hint = ""
        if what == "Dtype":
            hint = f" ({array.dtype.name} does not cast safely to {expected_kind} data)"
            if expected_kind == "float" and array.dtype.kind in "biu":
                hint = (
                    f" (integer data is not cast to float implicitly: convert it on the "
                    f"client, e.g. .astype(np.{numpy_dtype(spec.dtype).name}), scaled as the "
                    "model expects)"
                )
            elif array.dtype.kind in "iu" and expected_kind.endswith("integer"):
                hint = f" (values do not fit {numpy_dtype(spec.dtype).name})"
        return SpecError(
            f"{what} mismatch at {key!r} (spec name {spec.name!r}): expected shape {shape} "
            f"(or with a leading batch dimension) dtype {dtype_name(spec.dtype)}, got shape "
            f"{format_shape(array.shape)} dtype {array.dtype.name}{hint}.",
            key=key,
            name=spec.name,
            expected=spec,
            actual=ExtendedTensorSpec.from_tensor(array) if array.dtype.kind in "fiub" else None,
        )


def to_torch(
    arrays: Mapping[str, np.ndarray],
    spec: Mapping[str, ExtendedTensorSpec],
    device: torch.device | None = None,
) -> dict[str, torch.Tensor]:
    """Numpy arrays -> tensors (no copy on the CPU where possible), in the spec's dtype."""
    tensors = {}
    for key, array in arrays.items():
        if not array.flags.writeable:
            array = array.copy()  # torch wants writable memory
        elif not array.flags.c_contiguous:
            array = np.ascontiguousarray(array)
        tensor = torch.from_numpy(array)
        dtype = spec[key].torch_dtype
        if tensor.dtype != dtype:
            tensor = tensor.to(dtype)
        if device is not None and device.type != "cpu":
            tensor = tensor.to(device, non_blocking=True)
        tensors[key] = tensor
    return tensors


def to_numpy(outputs: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """Output tensors -> numpy arrays (bfloat16 becomes float32)."""
    result = {}
    for name, value in outputs.items():
        if isinstance(value, torch.Tensor):
            value = value.detach()
            if value.dtype == torch.bfloat16:
                value = value.float()
            result[name] = value.cpu().numpy()
        else:
            result[name] = np.asarray(value)
    return result
