"""Conversions between torch dtypes and the other names a dtype goes by.

Specs store a `torch.dtype`. Users may write numpy dtypes and types, strings
(``'float32'``, ``'torch.float32'``, ``'tf.float32'``) or Tensor2Robot's
TensorFlow enum values (in ``t2r_assets.pbtxt``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

# The dtypes a spec may carry, by canonical name.
_BY_NAME: dict[str, torch.dtype] = {
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
    "float32": torch.float32,
    "float64": torch.float64,
    "uint8": torch.uint8,
    "uint16": torch.uint16,
    "uint32": torch.uint32,
    "uint64": torch.uint64,
    "int8": torch.int8,
    "int16": torch.int16,
    "int32": torch.int32,
    "int64": torch.int64,
    "bool": torch.bool,
    "complex64": torch.complex64,
    "complex128": torch.complex128,
}
_ALIASES = {
    "float": "float32",
    "double": "float64",
    "half": "float16",
    "long": "int64",
    "int": "int32",
}
_NAME_OF = {dtype: name for name, dtype in _BY_NAME.items()}

# TensorFlow's DataType enum (types.proto), used by T2R's t2r_assets.pbtxt.
TF_ENUM_TO_NAME: dict[int, str] = {
    1: "float32",
    2: "float64",
    3: "int32",
    4: "uint8",
    5: "int16",
    6: "int8",
    7: "string",
    8: "complex64",
    9: "int64",
    10: "bool",
    14: "bfloat16",
    17: "uint16",
    18: "complex128",
    19: "float16",
    22: "uint32",
    23: "uint64",
}


def as_torch_dtype(dtype: Any) -> torch.dtype:
    """Returns the torch dtype for a torch/numpy dtype, a numpy type or a name.

    Raises:
      TypeError: if `dtype` names no dtype a spec can carry.
    """
    if isinstance(dtype, torch.dtype):
        if dtype not in _NAME_OF:
            raise TypeError(f"Unsupported dtype for a spec: {dtype}.")
        return dtype
    if isinstance(dtype, str):
        name = dtype.removeprefix("torch.").removeprefix("tf.").removeprefix("np.")
        name = _ALIASES.get(name, name)
        if name in _BY_NAME:
            return _BY_NAME[name]
        raise TypeError(f"Unknown dtype name {dtype!r}; expected one of {sorted(_BY_NAME)}.")
    try:
        np_dtype = np.dtype(dtype)
    except TypeError as e:
        raise TypeError(f"Cannot convert {dtype!r} to a torch dtype.") from e
    if np_dtype.name in _BY_NAME:
        return _BY_NAME[np_dtype.name]
    raise TypeError(f"Unsupported numpy dtype for a spec: {np_dtype}.")


def dtype_name(dtype: torch.dtype) -> str:
    """The canonical name of a spec dtype, e.g. ``'float32'``."""
    return _NAME_OF[dtype]


def numpy_dtype(dtype: torch.dtype) -> np.dtype:
    """The numpy dtype used for numpy data of a spec.

    numpy has no bfloat16: numpy data for bfloat16 specs is float32, and is cast
    when it becomes a torch tensor.
    """
    if dtype == torch.bfloat16:
        return np.dtype(np.float32)
    return np.dtype(dtype_name(dtype))


# Values that hold data: torch tensors, numpy arrays and numpy scalars.
ARRAY_TYPES = (torch.Tensor, np.ndarray, np.generic)
ArrayLike = torch.Tensor | np.ndarray | np.generic


def value_dtype(value: ArrayLike) -> torch.dtype:
    """The torch dtype of a tensor or numpy array."""
    if isinstance(value, torch.Tensor):
        return value.dtype
    return as_torch_dtype(value.dtype)


def dtype_matches(expected: torch.dtype, value: ArrayLike) -> bool:
    """Whether `value` may stand for data of a spec with dtype `expected`.

    float32 numpy arrays match bfloat16 specs (see `numpy_dtype`).
    """
    actual = value_dtype(value)
    if actual == expected:
        return True
    is_numpy = isinstance(value, (np.ndarray, np.generic))
    return is_numpy and expected == torch.bfloat16 and actual == torch.float32
