"""ExtendedTensorSpec: what one tensor of a model's input or output looks like."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable
from typing import Any

import numpy as np
import torch

from t2r.specs.dtypes import (
    ARRAY_TYPES,
    ArrayLike,
    SpecDType,
    StringDType,
    as_spec_dtype,
    dtype_name,
    value_dtype,
)
from t2r.specs.errors import SpecError

Shape = tuple[int | None, ...] | None
ShapeLike = Iterable[int | None] | torch.Size | int | None

ENCODED_IMAGE_FORMATS = ("jpeg", "png")

# A variable-length feature's padding value: a number, or bytes for string specs.
VarlenDefault = float | int | bytes | None

# A bound of a numeric spec: one number for every element, or one per entry of the
# last dimension (TF-Agents' BoundedTensorSpec minimum/maximum).
Bound = float | tuple[float, ...] | None
BoundLike = float | int | Iterable[float] | np.ndarray | None


def normalize_shape(shape: ShapeLike) -> Shape:
    """A shape as a tuple of `int | None`, or None for unknown rank.

    A bare int is a rank-1 shape, as TensorFlow read ``shape=(8)``.
    """
    if shape is None:
        return None
    if isinstance(shape, (int, np.integer)):
        return (int(shape),)
    dims: list[int | None] = []
    for dim in shape:
        if dim is None:
            dims.append(None)
        elif isinstance(dim, (int, np.integer)) and not isinstance(dim, bool) and dim >= 0:
            dims.append(int(dim))
        elif isinstance(dim, (int, np.integer)) and dim == -1:
            dims.append(None)
        else:
            raise TypeError(f"Invalid dimension {dim!r} in shape {shape!r}.")
    return tuple(dims)


def format_shape(shape: Shape) -> str:
    """``(2, None)`` style text for error messages; ``<unknown rank>`` for None."""
    if shape is None:
        return "<unknown rank>"
    return "(" + ", ".join(str(d) for d in shape) + ("," if len(shape) == 1 else "") + ")"


class ExtendedTensorSpec:
    """Describes a tensor (without its batch dimension) and how it is stored.

    Equality compares shape and dtype only, as Tensor2Robot's (and TensorFlow's
    TensorSpec) did: two specs that differ only in name are equal.

    Args:
      shape: dims without the batch dimension; list, tuple, torch.Size, an int
        (rank 1), or None for unknown rank. ``None`` (or -1) marks an unknown dim.
      dtype: a torch dtype, numpy dtype/type, or a name such as ``'float32'``;
        or the string dtype (T2R's ``tf.string``): `t2r.specs.string`,
        ``'string'``, ``bytes``, ``str`` or ``np.object_``. String data is a
        numpy object array of ``bytes``, never a torch tensor.
      name: the serialized feature name (the tf.train.Example key, the key a
        client feeds). Distinct from the struct path the model reads.
      is_optional: the tensor may be absent.
      is_sequence: parsed from a SequenceExample's feature_lists; data gets a time
        dimension after the batch dimension.
      is_extracted: the spec was inferred from a tensor or array.
      data_format: ``'jpeg'`` or ``'png'`` for encoded images (any other string is
        kept and treated as not encoded).
      dataset_key: which dataset the tensor comes from when several are zipped.
      varlen_default_value: the feature is a variable-length list padded with
        this value or clipped to ``shape[0]``. Needs rank 1, or rank 4
        ``(T, H, W, C)`` for a list of encoded images. For string specs it is
        bytes (a str is stored UTF-8 encoded), e.g. ``b''``.
      minimum, maximum: optional bounds of a numeric spec (TF-Agents'
        BoundedTensorSpec): one number, or one per entry of the last dimension.
        Nothing clips to them; consumers such as RT-1's action tokenizer read
        them. Both or neither; ``minimum <= maximum`` everywhere.
    """

    __slots__ = (
        "_data_format",
        "_dataset_key",
        "_dtype",
        "_is_extracted",
        "_is_optional",
        "_is_sequence",
        "_maximum",
        "_minimum",
        "_name",
        "_shape",
        "_varlen_default_value",
    )

    def __init__(
        self,
        shape: ShapeLike,
        dtype: Any,
        name: str | None = None,
        is_optional: bool | None = None,
        is_sequence: bool = False,
        is_extracted: bool = False,
        data_format: str | None = None,
        dataset_key: str | None = None,
        varlen_default_value: VarlenDefault = None,
        minimum: BoundLike = None,
        maximum: BoundLike = None,
    ) -> None:
        self._shape = normalize_shape(shape)
        self._dtype = as_spec_dtype(dtype)
        self._name = name
        self._is_optional = bool(is_optional)
        self._is_sequence = bool(is_sequence)
        self._is_extracted = bool(is_extracted)
        self._data_format = data_format
        self._dataset_key = dataset_key or ""
        if isinstance(self._dtype, StringDType):
            if data_format is not None and data_format.lower() in ENCODED_IMAGE_FORMATS:
                raise SpecError(
                    f"Spec {name!r}: a string spec holds its bytes as they are stored and "
                    f"cannot have data_format {data_format!r}. For decoded images use dtype "
                    "uint8 with data_format; to keep images encoded, a string spec without "
                    "data_format (or decode_images=False).",
                    name=name,
                )
            if isinstance(varlen_default_value, str):
                varlen_default_value = varlen_default_value.encode("utf-8")
            if varlen_default_value is not None and not isinstance(varlen_default_value, bytes):
                raise SpecError(
                    f"Spec {name!r}: the varlen_default_value of a string spec must be bytes "
                    f"or str, got {varlen_default_value!r}.",
                    name=name,
                )
        elif isinstance(varlen_default_value, (bytes, str)):
            raise SpecError(
                f"Spec {name!r} of dtype {dtype_name(self._dtype)}: varlen_default_value must "
                f"be a number, got {varlen_default_value!r} (bytes defaults are for string "
                "specs).",
                name=name,
            )
        self._varlen_default_value = varlen_default_value
        self._minimum, self._maximum = _checked_bounds(
            name, self._shape, self._dtype, minimum, maximum
        )
        if varlen_default_value is not None:
            rank = None if self._shape is None else len(self._shape)
            if data_format is None and rank != 1:
                raise SpecError(
                    f"Spec {name!r}: variable-length features need a rank-1 shape when they are "
                    f"not images, got {format_shape(self._shape)}.",
                    name=name,
                )
            if data_format is not None and rank != 4:
                raise SpecError(
                    f"Spec {name!r}: variable-length image lists need a rank-4 shape "
                    f"(T, H, W, C), got {format_shape(self._shape)}.",
                    name=name,
                )

    # ----------------------------------------------------------------- fields
    @property
    def shape(self) -> Shape:
        return self._shape

    @property
    def dtype(self) -> SpecDType:
        """A torch dtype, or `t2r.specs.string` for byte strings."""
        return self._dtype

    @property
    def torch_dtype(self) -> torch.dtype:
        """The dtype, for code that makes tensors; string specs raise SpecError.

        Raises:
          SpecError: the spec is a string spec (its data is never a tensor).
        """
        if isinstance(self._dtype, StringDType):
            raise SpecError(
                f"Spec {self._name!r} is a string spec: its data is a numpy object array of "
                "bytes, never a torch tensor.",
                name=self._name,
            )
        return self._dtype

    @property
    def is_string(self) -> bool:
        """Whether this spec describes byte strings (numpy object arrays of bytes)."""
        return isinstance(self._dtype, StringDType)

    @property
    def name(self) -> str | None:
        return self._name

    @property
    def is_optional(self) -> bool:
        return self._is_optional

    @property
    def is_sequence(self) -> bool:
        return self._is_sequence

    @property
    def is_extracted(self) -> bool:
        return self._is_extracted

    @property
    def data_format(self) -> str | None:
        return self._data_format

    @property
    def dataset_key(self) -> str:
        return self._dataset_key

    @property
    def varlen_default_value(self) -> VarlenDefault:
        return self._varlen_default_value

    @property
    def minimum(self) -> Bound:
        """The lower bound (a number or one per last-dim entry), or None."""
        return self._minimum

    @property
    def maximum(self) -> Bound:
        """The upper bound (a number or one per last-dim entry), or None."""
        return self._maximum

    @property
    def is_bounded(self) -> bool:
        return self._minimum is not None

    @property
    def rank(self) -> int | None:
        return None if self._shape is None else len(self._shape)

    @property
    def is_fully_defined(self) -> bool:
        return self._shape is not None and all(d is not None for d in self._shape)

    # ----------------------------------------------------------- constructors
    @classmethod
    def from_spec(
        cls,
        spec: ExtendedTensorSpec,
        shape: ShapeLike = None,
        dtype: Any = None,
        name: str | None = None,
        is_optional: bool | None = None,
        is_sequence: bool | None = None,
        is_extracted: bool | None = None,
        data_format: str | None = None,
        dataset_key: str | None = None,
        batch_size: int | None = None,
        varlen_default_value: VarlenDefault = None,
        minimum: BoundLike = None,
        maximum: BoundLike = None,
    ) -> ExtendedTensorSpec:
        """A copy of `spec` with the given fields replaced.

        `batch_size` > 0 prepends that dimension, < 0 prepends an unknown one.
        Fields left as None keep the value of `spec`.
        """
        if not isinstance(spec, ExtendedTensorSpec):
            raise TypeError(f"from_spec needs an ExtendedTensorSpec, got {type(spec).__name__}.")
        new_shape = spec.shape if shape is None else normalize_shape(shape)
        if batch_size:
            if not isinstance(batch_size, int):
                raise TypeError(f"batch_size must be an int, got {batch_size!r}.")
            if new_shape is None:
                raise SpecError(
                    f"Cannot add a batch dimension to spec {spec.name!r} of unknown rank.",
                    name=spec.name,
                )
            new_shape = (batch_size if batch_size > 0 else None, *new_shape)
        return cls(
            new_shape,
            spec.dtype if dtype is None else dtype,
            name or spec.name,
            spec.is_optional if is_optional is None else is_optional,
            spec.is_sequence if is_sequence is None else is_sequence,
            spec.is_extracted if is_extracted is None else is_extracted,
            spec.data_format if data_format is None else data_format,
            spec.dataset_key if dataset_key is None else dataset_key,
            spec.varlen_default_value if varlen_default_value is None else varlen_default_value,
            spec.minimum if minimum is None else minimum,
            spec.maximum if maximum is None else maximum,
        )

    @classmethod
    def from_tensor(cls, tensor: ArrayLike, name: str | None = None) -> ExtendedTensorSpec:
        """The spec of a torch tensor or numpy array (``is_extracted=True``)."""
        if not isinstance(tensor, ARRAY_TYPES):
            raise TypeError(
                f"from_tensor needs a torch.Tensor or numpy array, got {type(tensor).__name__}."
            )
        return cls(tuple(tensor.shape), value_dtype(tensor), name, is_extracted=True)

    @classmethod
    def to_spec(cls, value: ExtendedTensorSpec | ArrayLike) -> ExtendedTensorSpec:
        """`value` as a spec: specs are copied, tensors and arrays described."""
        if isinstance(value, ExtendedTensorSpec):
            return cls.from_spec(value)
        if isinstance(value, ARRAY_TYPES):
            return cls.from_tensor(value)
        raise TypeError(f"Cannot convert {type(value).__name__} to an ExtendedTensorSpec.")

    # ----------------------------------------------------------- comparisons
    def is_compatible_with(self, other: ExtendedTensorSpec | ArrayLike) -> bool:
        """Whether `other` (a spec, tensor or array) could hold the same data.

        Dtypes must be equal. Shapes are compatible when either has unknown rank,
        or ranks agree and every pair of dims is equal or has an unknown side.
        Tensors are compared with their full shape (a batch dim included).
        """
        other_spec = ExtendedTensorSpec.to_spec(other)
        if self.dtype != other_spec.dtype:
            return False
        return shapes_compatible(self.shape, other_spec.shape)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ExtendedTensorSpec):
            return NotImplemented
        return self._shape == other._shape and self._dtype == other._dtype

    def __hash__(self) -> int:
        return hash((self._shape, self._dtype))

    # -------------------------------------------------------- serialization
    def __repr__(self) -> str:
        return (
            f"ExtendedTensorSpec(shape={self._shape!r}, dtype={self._dtype}, name={self._name!r}, "
            f"is_optional={self._is_optional}, is_sequence={self._is_sequence}, "
            f"is_extracted={self._is_extracted}, data_format={self._data_format!r}, "
            f"dataset_key={self._dataset_key!r}, "
            f"varlen_default_value={self._varlen_default_value!r}"
            + (
                f", minimum={self._minimum!r}, maximum={self._maximum!r})"
                if self._minimum is not None
                else ")"
            )
        )

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return (
            ExtendedTensorSpec,
            (
                self._shape,
                dtype_name(self._dtype),
                self._name,
                self._is_optional,
                self._is_sequence,
                self._is_extracted,
                self._data_format,
                self._dataset_key,
                self._varlen_default_value,
                self._minimum,
                self._maximum,
            ),
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict holding every field (see `from_dict`); the bounds only
        when set, so specs without bounds serialize as before."""
        data = {
            "shape": None if self._shape is None else list(self._shape),
            "dtype": dtype_name(self._dtype),
            "name": self._name,
            "is_optional": self._is_optional,
            "is_sequence": self._is_sequence,
            "is_extracted": self._is_extracted,
            "data_format": self._data_format,
            "dataset_key": self._dataset_key,
            "varlen_default_value": _varlen_default_to_json(self._varlen_default_value),
        }
        if self._minimum is not None:
            data["minimum"] = _bound_to_json(self._minimum)
            data["maximum"] = _bound_to_json(self._maximum)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ExtendedTensorSpec:
        """The inverse of `to_dict`; unknown fields raise."""
        fields = set(cls.__init__.__code__.co_varnames[1 : cls.__init__.__code__.co_argcount])
        unknown = set(data) - fields
        if unknown:
            raise SpecError(f"Unknown ExtendedTensorSpec fields {sorted(unknown)} in {data!r}.")
        if "shape" not in data or "dtype" not in data:
            raise SpecError(f"An ExtendedTensorSpec needs 'shape' and 'dtype', got {data!r}.")
        data = dict(data)
        default = data.get("varlen_default_value")
        if isinstance(default, dict):
            data["varlen_default_value"] = _varlen_default_from_json(default, data)
        return cls(**data)


def _bound_to_json(value: Bound) -> float | list[float] | None:
    return list(value) if isinstance(value, tuple) else value


def _one_bound(name: str | None, which: str, value: BoundLike, last_dim: int | None) -> Bound:
    """`value` as a float or a tuple of floats (one per entry of the last dim)."""
    if value is None:
        return None
    array = np.asarray(value, dtype=np.float64)
    if array.ndim == 0:
        bound: Bound = float(array)
    elif array.ndim == 1 and (last_dim is None or array.shape[0] in (1, last_dim)):
        bound = tuple(float(v) for v in array)
    else:
        raise SpecError(
            f"Spec {name!r}: {which} must be a number or one number per entry of the last "
            f"dimension ({last_dim}), got shape {format_shape(tuple(array.shape))}.",
            name=name,
        )
    if not np.all(np.isfinite(array)):
        raise SpecError(f"Spec {name!r}: {which} must be finite, got {value!r}.", name=name)
    return bound


def _checked_bounds(
    name: str | None, shape: Shape, dtype: Any, minimum: BoundLike, maximum: BoundLike
) -> tuple[Bound, Bound]:
    if minimum is None and maximum is None:
        return None, None
    if (minimum is None) != (maximum is None):
        raise SpecError(
            f"Spec {name!r}: give both minimum and maximum or neither, got minimum={minimum!r}, "
            f"maximum={maximum!r}.",
            name=name,
        )
    if isinstance(dtype, StringDType) or dtype == torch.bool:
        raise SpecError(
            f"Spec {name!r}: bounds are for numeric specs, not {dtype_name(dtype)}.", name=name
        )
    last_dim = shape[-1] if shape else None
    low = _one_bound(name, "minimum", minimum, last_dim)
    high = _one_bound(name, "maximum", maximum, last_dim)
    if np.any(np.asarray(low) > np.asarray(high)):
        raise SpecError(f"Spec {name!r}: minimum {low!r} exceeds maximum {high!r}.", name=name)
    return low, high


def _varlen_default_to_json(value: VarlenDefault) -> Any:
    """Numbers as they are; bytes as text when UTF-8, else ``{"base64": ...}``."""
    if not isinstance(value, bytes):
        return value
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return {"base64": base64.b64encode(value).decode("ascii")}


def _varlen_default_from_json(value: dict[str, Any], data: dict[str, Any]) -> bytes:
    try:
        if set(value) != {"base64"}:
            raise ValueError(f"unknown keys {sorted(value)}")
        return base64.b64decode(value["base64"], validate=True)
    except (ValueError, TypeError, binascii.Error) as e:
        raise SpecError(
            f"Spec {data.get('name')!r}: varlen_default_value {value!r} is neither a number, "
            f'text, nor {{"base64": "..."}}: {e}.',
            name=data.get("name"),
        ) from e


def shapes_compatible(expected: Shape, actual: Shape) -> bool:
    """Unknown rank or unknown dims match anything; known dims must be equal."""
    if expected is None or actual is None:
        return True
    if len(expected) != len(actual):
        return False
    return all(e is None or a is None or e == a for e, a in zip(expected, actual))


def is_encoded_image_spec(spec: ExtendedTensorSpec) -> bool:
    """Whether `spec` describes JPEG or PNG encoded images."""
    return spec.data_format is not None and spec.data_format.lower() in ENCODED_IMAGE_FORMATS
