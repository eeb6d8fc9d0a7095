"""Data made from specs, and tensor operations that follow a spec.

String specs (dtype `t2r.specs.string`) get numpy object arrays of ``bytes``
everywhere, also from the functions that make torch tensors: strings never
enter a torch tensor.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from t2r.specs.dtypes import StringDType, as_spec_dtype, numpy_dtype
from t2r.specs.errors import SpecError
from t2r.specs.extended_tensor_spec import ExtendedTensorSpec, format_shape
from t2r.specs.structure import (
    assert_valid_spec_structure,
    flatten_spec_structure,
    map_structure,
    map_structure_with_paths,
)
from t2r.specs.tensor_spec_struct import TensorSpecStruct

# Random integers are drawn from [0, 255) as in Tensor2Robot, so that the same
# values are valid uint8 pixels, ids and counts.
_RANDOM_INT_HIGH = 255
# Random strings: 1 to 8 lowercase ASCII letters.
_RANDOM_STRING_LETTERS = np.frombuffer(b"abcdefghijklmnopqrstuvwxyz", np.uint8)
_RANDOM_STRING_MAX_LENGTH = 8


def _data_shape(
    spec: ExtendedTensorSpec, batch_size: int | None, sequence_length: int | None
) -> tuple[int, ...]:
    if spec.shape is None:
        raise SpecError(f"Cannot make data for spec {spec.name!r} of unknown rank.", name=spec.name)
    # Unknown dims get size 1: the smallest data any such spec accepts.
    shape = tuple(1 if d is None else d for d in spec.shape)
    if spec.is_sequence and sequence_length is not None:
        shape = (sequence_length, *shape)
    if batch_size is not None and batch_size > 0:
        shape = (batch_size, *shape)
    return shape


def _spec(value: Any) -> ExtendedTensorSpec:
    if not isinstance(value, ExtendedTensorSpec):
        raise SpecError(f"Expected an ExtendedTensorSpec leaf, got {type(value).__name__}.")
    return value


def _string_array(shape: tuple[int, ...], items: Any) -> np.ndarray:
    """An object array of `shape` filled from the iterable `items` (bytes)."""
    array = np.empty(shape, dtype=object)
    flat = array.reshape(-1)
    for i, item in zip(range(flat.size), items):
        flat[i] = item
    return array


def make_constant_numpy(
    structure: Any,
    constant_value: float | int | bytes | str,
    batch_size: int | None = 2,
    sequence_length: int | None = 3,
) -> Any:
    """Numpy arrays filled with `constant_value`, one per spec.

    Shapes are ``(batch_size, [sequence_length,] *spec.shape)``; no batch dim when
    `batch_size` is None or <= 0, no time dim for sequence specs when
    `sequence_length` is None. Unknown dims get size 1. String specs get object
    arrays of bytes: `constant_value` itself when bytes, else its text UTF-8
    encoded (``0`` -> ``b'0'``). A bytes or str constant for a numeric spec raises.
    """
    assert_valid_spec_structure(structure)
    if isinstance(constant_value, str):
        text = constant_value.encode("utf-8")
    elif isinstance(constant_value, bytes):
        text = constant_value
    else:
        text = str(constant_value).encode("utf-8")

    def make(value: Any) -> np.ndarray:
        spec = _spec(value)
        shape = _data_shape(spec, batch_size, sequence_length)
        if isinstance(spec.dtype, StringDType):
            return _string_array(shape, iter(lambda: text, None))
        if isinstance(constant_value, (bytes, str)):
            raise SpecError(
                f"Cannot fill spec {spec.name!r} of dtype {spec.dtype} with the string "
                f"{constant_value!r}.",
                name=spec.name,
            )
        return np.full(shape, constant_value).astype(numpy_dtype(spec.dtype))

    return map_structure(make, structure)


def make_random_numpy(
    structure: Any,
    batch_size: int | None = 2,
    sequence_length: int | None = 3,
    seed: int | np.random.Generator | None = None,
) -> Any:
    """Random numpy arrays, one per spec (shapes as in `make_constant_numpy`).

    Floats are uniform in [0, 1), integers in [0, 255), bools fair coin flips,
    strings (object arrays of bytes) 1 to 8 random lowercase ASCII letters.
    `seed` (an int or a Generator) makes the data reproducible.
    """
    assert_valid_spec_structure(structure)
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)

    def make(value: Any) -> np.ndarray:
        spec = _spec(value)
        shape = _data_shape(spec, batch_size, sequence_length)
        if isinstance(spec.dtype, StringDType):
            return random_strings(shape, rng)
        if spec.dtype == torch.bool:
            return rng.random(shape) < 0.5
        if spec.dtype.is_floating_point or spec.dtype.is_complex:
            return rng.random(shape).astype(numpy_dtype(spec.dtype))
        return rng.integers(0, _RANDOM_INT_HIGH, size=shape).astype(numpy_dtype(spec.dtype))

    return map_structure(make, structure)


def random_strings(shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    """An object array of `shape` holding random bytes: 1 to 8 lowercase letters."""
    size = int(np.prod(shape))
    lengths = rng.integers(1, _RANDOM_STRING_MAX_LENGTH + 1, size=size)
    letters = _RANDOM_STRING_LETTERS[rng.integers(0, 26, size=int(lengths.sum()))].tobytes()
    ends = np.cumsum(lengths)
    return _string_array(shape, (letters[e - n : e] for n, e in zip(lengths, ends)))


def make_random_tensors(
    structure: Any,
    batch_size: int | None = 2,
    sequence_length: int | None = 3,
    device: torch.device | str | None = None,
    generator: torch.Generator | None = None,
) -> Any:
    """Random torch tensors, one per spec, with the spec's dtype, on `device`.

    The torch counterpart of `make_random_numpy` (and the PyTorch stand-in for
    Tensor2Robot's placeholders: example inputs for tracing and export). String
    specs get numpy object arrays of random bytes as in `make_random_numpy`
    (drawn from a numpy generator seeded from `generator`, or unseeded).
    """
    assert_valid_spec_structure(structure)

    def make(value: Any) -> torch.Tensor | np.ndarray:
        spec = _spec(value)
        shape = _data_shape(spec, batch_size, sequence_length)
        if isinstance(spec.dtype, StringDType):
            seed = None
            if generator is not None:
                seed = int(torch.randint(0, 2**31 - 1, (), generator=generator))
            return random_strings(shape, np.random.default_rng(seed))
        if spec.dtype == torch.bool:
            return torch.rand(shape, generator=generator, device=device) < 0.5
        if spec.dtype.is_floating_point:
            return torch.rand(shape, generator=generator, device=device).to(spec.dtype)
        draw = torch.randint(0, _RANDOM_INT_HIGH, shape, generator=generator, device=device)
        return draw.to(spec.dtype)

    return map_structure(make, structure)


def to_tensors(
    structure: Any, spec_structure: Any = None, device: torch.device | str | None = None
) -> Any:
    """Converts numpy leaves to torch tensors (tensors are moved to `device`).

    With `spec_structure`, each leaf is cast to the dtype of the spec at the same
    path (e.g. float32 numpy data for a bfloat16 spec). Strings (numpy object,
    bytes or str arrays) are returned as they are: they never become tensors.
    """
    dtypes: dict[str, torch.dtype] = {}
    if spec_structure is not None:
        dtypes = {
            k: v.dtype
            for k, v in flatten_spec_structure(spec_structure).items()
            if isinstance(v.dtype, torch.dtype)
        }

    def convert(path: str, value: Any) -> torch.Tensor | np.ndarray:
        if is_string_array(value):
            return value
        tensor = torch.as_tensor(value, device=device)
        return tensor.to(dtypes[path]) if path in dtypes else tensor

    return map_structure_with_paths(convert, structure)


def pad_or_clip_tensor_to_spec_shape(
    tensor: torch.Tensor | np.ndarray, spec: ExtendedTensorSpec
) -> torch.Tensor | np.ndarray:
    """Pads (with ``spec.varlen_default_value``) or clips dim 1 to ``spec.shape[0]``.

    tensor: (B, N, ...) -> (B, spec.shape[0], ...), same type (torch or numpy)
    and the spec's dtype.
    """
    if spec.varlen_default_value is None or spec.shape is None or spec.shape[0] is None:
        raise SpecError(
            f"Spec {spec.name!r} is not a variable-length spec with a known length "
            f"(shape {format_shape(spec.shape)}, varlen_default_value "
            f"{spec.varlen_default_value!r}).",
            name=spec.name,
        )
    target = spec.shape[0]
    if tensor.ndim < 2:
        raise SpecError(
            f"Spec {spec.name!r}: expected a batched (B, N, ...) tensor, got shape "
            f"{tuple(tensor.shape)}.",
            name=spec.name,
        )
    length = tensor.shape[1]
    if isinstance(tensor, np.ndarray):
        array = tensor.astype(numpy_dtype(spec.dtype), copy=False)[:, :target]
        if length >= target:
            return array
        pad = [(0, 0), (0, target - length)] + [(0, 0)] * (array.ndim - 2)
        return np.pad(array, pad, constant_values=spec.varlen_default_value)
    if not isinstance(spec.dtype, torch.dtype) or isinstance(spec.varlen_default_value, bytes):
        raise SpecError(
            f"Spec {spec.name!r} is a string spec: its data is a numpy object array, not a "
            "torch tensor.",
            name=spec.name,
        )
    clipped = tensor.to(spec.dtype)[:, :target]
    if length >= target:
        return clipped
    fill_shape = (clipped.shape[0], target - length, *clipped.shape[2:])
    fill = torch.full(
        fill_shape, spec.varlen_default_value, dtype=spec.dtype, device=clipped.device
    )
    return torch.cat([clipped, fill], dim=1)


def replace_dtype(struct: TensorSpecStruct, from_dtype: Any, to_dtype: Any) -> TensorSpecStruct:
    """Replaces, in place, every spec of dtype `from_dtype` by one of `to_dtype`."""
    source, target = as_spec_dtype(from_dtype), as_spec_dtype(to_dtype)
    for key, value in struct.items():
        if isinstance(value, ExtendedTensorSpec) and value.dtype == source:
            struct[key] = ExtendedTensorSpec.from_spec(value, dtype=target)
    return struct


def cast_float32_to_bfloat16(struct: TensorSpecStruct, output_spec: Any) -> TensorSpecStruct:
    """Casts, in place, the float32 tensors whose output spec is bfloat16."""
    for key, spec in flatten_spec_structure(output_spec).items():
        if spec.dtype != torch.bfloat16 or key not in struct:
            continue
        value = struct[key]
        if not isinstance(value, torch.Tensor) or value.dtype != torch.float32:
            actual = value.dtype if hasattr(value, "dtype") else type(value).__name__
            raise SpecError(
                f"Cannot cast {key!r} (spec name {spec.name!r}) to bfloat16: expected a float32 "
                f"torch tensor, got {actual}.",
                key=key,
                name=spec.name,
            )
        struct[key] = value.to(torch.bfloat16)
    return struct


def cast_bfloat16_to_float32(struct: TensorSpecStruct) -> TensorSpecStruct:
    """Casts, in place, every bfloat16 tensor to float32."""
    for key, value in struct.items():
        if isinstance(value, torch.Tensor) and value.dtype == torch.bfloat16:
            struct[key] = value.float()
    return struct


def is_string_array(value: Any) -> bool:
    """Whether `value` is string data: a numpy array of dtype object, bytes or str."""
    return isinstance(value, (np.ndarray, np.generic)) and value.dtype.kind in "OSU"
