"""Conversions between spec dtypes and the other names a dtype goes by.

Specs store a `torch.dtype`, or `string` for byte strings (Tensor2Robot's
``tf.string``). Users may write numpy dtypes and types, names (``'float32'``,
``'torch.float32'``, ``'tf.float32'``, ``'string'``) or Tensor2Robot's
TensorFlow enum values (in ``t2r_assets.pbtxt``).

Strings never become torch tensors (torch has no string dtype): data of a
string spec is a numpy array of dtype object holding one ``bytes`` per element,
``(B, *shape)`` for a batch, as TensorFlow's ``tf.string`` tensors turn into
with ``.numpy()``. `string` is the sentinel dtype that says so.
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


class StringDType:
    """The dtype of string specs: Tensor2Robot's ``tf.string``, without a tensor.

    There is one instance, `string` (``t2r.specs.string``). A spec of this dtype
    describes byte strings; its data is a numpy object array of ``bytes``, never
    a torch tensor. The attributes a torch.dtype answers about its kind are
    here too (all False), so dtype-generic code can ask them of any spec.
    """

    _instance: StringDType | None = None
    name = "string"
    is_floating_point = False
    is_complex = False
    is_signed = False

    def __new__(cls) -> StringDType:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "t2r.specs.string"

    def __reduce__(self) -> str:
        return "string"  # pickles as the module attribute: one instance stays one


string = StringDType()

# What a spec's dtype is: a torch dtype, or `string`.
SpecDType = torch.dtype | StringDType

# Names of the string dtype. ``str`` and ``bytes`` are both accepted: values are
# bytes (TensorFlow's tf.string holds bytes; str values are written as UTF-8).
_STRING_NAMES = {"string", "str", "bytes", "object", "object_", "bytes_", "str_", "unicode"}

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


def is_string_dtype(dtype: Any) -> bool:
    """Whether `dtype` is the string dtype (any of its spellings)."""
    if isinstance(dtype, StringDType):
        return True
    try:
        return isinstance(as_spec_dtype(dtype), StringDType)
    except TypeError:
        return False


def as_spec_dtype(dtype: Any) -> SpecDType:
    """The dtype a spec stores for `dtype`: `as_torch_dtype`'s, or `string`.

    The string dtype is spelt `string`, ``'string'`` (also ``'tf.string'``,
    ``'str'``, ``'bytes'``), the types ``bytes`` / ``str`` / ``np.object_`` /
    ``np.bytes_`` / ``np.str_``, or numpy dtypes of those kinds.

    Raises:
      TypeError: if `dtype` names no dtype a spec can carry.
    """
    if isinstance(dtype, StringDType):
        return dtype
    if dtype in (bytes, str, object):
        return string
    if isinstance(dtype, str):
        name = dtype.removeprefix("torch.").removeprefix("tf.").removeprefix("np.")
        if name in _STRING_NAMES:
            return string
    elif not isinstance(dtype, torch.dtype):
        try:
            kind = np.dtype(dtype).kind
        except TypeError:
            kind = ""
        if kind in "OSU" and kind:
            return string
    return as_torch_dtype(dtype)


def as_torch_dtype(dtype: Any) -> torch.dtype:
    """Returns the torch dtype for a torch/numpy dtype, a numpy type or a name.

    Raises:
      TypeError: if `dtype` names no dtype a spec can carry, or names the
        string dtype (which has no torch dtype; see `as_spec_dtype`).
    """
    if isinstance(dtype, StringDType) or (
        isinstance(dtype, str)
        and dtype.removeprefix("torch.").removeprefix("tf.").removeprefix("np.") in _STRING_NAMES
    ):
        raise TypeError(
            f"{dtype!r} is the string dtype, which has no torch dtype: string data stays a "
            "numpy object array of bytes."
        )
    if isinstance(dtype, torch.dtype):
        if dtype not in _NAME_OF:
            raise TypeError(f"Unsupported dtype for a spec: {dtype}.")
        return dtype
    if isinstance(dtype, str):
        name = dtype.removeprefix("torch.").removeprefix("tf.").removeprefix("np.")
        name = _ALIASES.get(name, name)
        if name in _BY_NAME:
            return _BY_NAME[name]
        raise TypeError(
            f"Unknown dtype name {dtype!r}; expected one of {sorted([*_BY_NAME, 'string'])}."
        )
    try:
        np_dtype = np.dtype(dtype)
    except TypeError as e:
        raise TypeError(f"Cannot convert {dtype!r} to a torch dtype.") from e
    if np_dtype.name in _BY_NAME:
        return _BY_NAME[np_dtype.name]
    raise TypeError(f"Unsupported numpy dtype for a spec: {np_dtype}.")


def dtype_name(dtype: SpecDType) -> str:
    """The canonical name of a spec dtype, e.g. ``'float32'``, ``'string'``."""
    if isinstance(dtype, StringDType):
        return dtype.name
    return _NAME_OF[dtype]


def numpy_dtype(dtype: SpecDType) -> np.dtype:
    """The numpy dtype used for numpy data of a spec.

    numpy has no bfloat16: numpy data for bfloat16 specs is float32, and is cast
    when it becomes a torch tensor. String specs: object (elements are bytes).
    """
    if isinstance(dtype, StringDType):
        return np.dtype(object)
    if dtype == torch.bfloat16:
        return np.dtype(np.float32)
    return np.dtype(dtype_name(dtype))


# Values that hold data: torch tensors, numpy arrays and numpy scalars.
ARRAY_TYPES = (torch.Tensor, np.ndarray, np.generic)
ArrayLike = torch.Tensor | np.ndarray | np.generic


def value_dtype(value: ArrayLike) -> SpecDType:
    """The spec dtype of a tensor or numpy array (`string` for object, bytes and
    str arrays)."""
    if isinstance(value, torch.Tensor):
        return value.dtype
    return as_spec_dtype(value.dtype)


def dtype_matches(expected: SpecDType, value: ArrayLike) -> bool:
    """Whether `value` may stand for data of a spec with dtype `expected`.

    float32 numpy arrays match bfloat16 specs (see `numpy_dtype`). numpy
    object, bytes and str arrays match string specs (an object array's elements
    are checked by `find_non_string`).
    """
    actual = value_dtype(value)
    if actual == expected:
        return True
    is_numpy = isinstance(value, (np.ndarray, np.generic))
    return is_numpy and expected == torch.bfloat16 and actual == torch.float32


def find_non_string(array: np.ndarray | np.generic) -> tuple[tuple[int, ...], Any] | None:
    """The index and value of the first element of an object array that is not
    bytes or str, or None when all are."""
    if array.dtype.kind != "O":
        return None
    for index, item in np.ndenumerate(array):
        if not isinstance(item, (bytes, str)):
            return index, item
    return None
