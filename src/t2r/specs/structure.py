"""Flatten, pack, validate and compare (nested) structures of specs or tensors.

A *spec structure* is a TensorSpecStruct, dict, namedtuple, list or tuple, or a
nesting of those, whose leaves are ExtendedTensorSpecs, torch tensors, numpy
arrays or None (an absent optional). Flattening gives a TensorSpecStruct keyed
by ``'/'``-joined paths (list and tuple items are keyed by their index).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch

from t2r.specs.dtypes import ARRAY_TYPES, dtype_matches, find_non_string, value_dtype
from t2r.specs.errors import SpecError
from t2r.specs.extended_tensor_spec import ExtendedTensorSpec, format_shape
from t2r.specs.tensor_spec_struct import TensorSpecStruct, is_namedtuple

logger = logging.getLogger(__name__)

LEAF_TYPES = (ExtendedTensorSpec, *ARRAY_TYPES)


def is_leaf(value: Any) -> bool:
    return value is None or isinstance(value, LEAF_TYPES)


def describe(value: Any) -> str:
    """``shape (2, 3) dtype float32`` for a spec, tensor or array."""
    if value is None:
        return "None"
    if isinstance(value, ExtendedTensorSpec):
        return f"shape {format_shape(value.shape)} dtype {value.dtype}"
    if isinstance(value, ARRAY_TYPES):
        try:
            dtype: Any = value_dtype(value)
        except TypeError:  # e.g. a numpy string or object array
            dtype = value.dtype
        return f"shape {format_shape(tuple(value.shape))} dtype {dtype}"
    return f"{type(value).__name__} {value!r}"


def _value_spec(value: Any, key: str | None, expected: Any = None) -> ExtendedTensorSpec:
    """`value` as a spec; for an array of a dtype no spec has (numpy strings or
    objects), a SpecError naming `key` instead of a bare TypeError."""
    try:
        return ExtendedTensorSpec.to_spec(value)
    except TypeError as e:
        if not isinstance(value, ARRAY_TYPES):
            raise
        name = getattr(expected, "name", None)
        where = f"{key!r}" if key is not None else "a value"
        if expected is not None:
            where += f" (spec name {name!r}): expected {describe(expected)},"
        else:
            where += ":"
        raise SpecError(
            f"Dtype mismatch at {where} got an array of {describe(value)}, which no spec "
            f"dtype holds ({e})",
            key=key,
            name=name,
            expected=expected,
        ) from e


def _children(structure: Any) -> list[tuple[str, Any]] | None:
    """The (key, child) pairs of a container, or None for a leaf or other value."""
    if is_namedtuple(structure):
        return list(structure._asdict().items())
    if isinstance(structure, Mapping):
        pairs = list(structure.items())
        for key, _ in pairs:
            if not isinstance(key, str):
                raise SpecError(f"Spec structure keys must be str, got {key!r}.")
        return pairs
    if isinstance(structure, (list, tuple)):
        return [(str(i), child) for i, child in enumerate(structure)]
    return None


def _walk(structure: Any, prefix: str, out: list[tuple[str, Any]]) -> None:
    children = _children(structure)
    if children is None:
        if not is_leaf(structure):
            where = f" at {prefix!r}" if prefix else ""
            raise SpecError(
                f"Invalid spec structure{where}: leaves must be ExtendedTensorSpec, torch.Tensor, "
                f"numpy array or scalar, or None, got {type(structure).__name__} {structure!r}.",
                key=prefix or None,
            )
        out.append((prefix, structure))
        return
    for key, child in children:
        _walk(child, f"{prefix}/{key}" if prefix else key, out)


def _flat_items(structure: Any) -> list[tuple[str, Any]]:
    if _children(structure) is None:
        raise SpecError(
            "Spec structures are TensorSpecStruct, dict, namedtuple, list or tuple "
            f"(or nestings of them), not a bare {type(structure).__name__}."
        )
    out: list[tuple[str, Any]] = []
    _walk(structure, "", out)
    return out


def assert_valid_spec_structure(structure: Any) -> None:
    """Raises SpecError unless `structure` is a valid spec structure.

    Containers must be dicts (str keys), namedtuples, lists or tuples; leaves
    specs, tensors, arrays or None. Spec names must be unique unless the specs
    with the same name have the same shape and dtype.
    """
    seen: dict[str, tuple[str, ExtendedTensorSpec]] = {}
    for key, value in _flat_items(structure):
        if isinstance(value, ExtendedTensorSpec) and value.name is not None:
            if value.name in seen:
                other_key, other = seen[value.name]
                if other != value:
                    raise SpecError(
                        f"Spec name {value.name!r} is used by {other_key!r} "
                        f"({describe(other)}) and {key!r} ({describe(value)}): names must be "
                        "unique unless shape and dtype match.",
                        key=key,
                        name=value.name,
                        expected=other,
                        actual=value,
                    )
            else:
                seen[value.name] = (key, value)


def is_flat_spec_or_tensors_structure(structure: Any) -> bool:
    """Whether `structure` is a mapping of paths to leaves (no nested containers)."""
    return isinstance(structure, Mapping) and all(is_leaf(v) for v in structure.values())


def flatten_spec_structure(structure: Any, filter_none: bool = True) -> TensorSpecStruct:
    """A flat TensorSpecStruct ``{path: leaf}`` of a (nested) spec structure.

    Insertion order is kept. None leaves (absent optionals) are dropped unless
    `filter_none` is False. Flattening a flat struct returns an equal copy.
    """
    assert_valid_spec_structure(structure)
    return TensorSpecStruct(
        (key, value)
        for key, value in _flat_items(structure)
        if value is not None or not filter_none
    )


def map_structure(fn: Callable[[Any], Any], structure: Any) -> Any:
    """Applies `fn` to every non-None leaf, keeping the container types.

    TensorSpecStructs map to TensorSpecStructs with the same flat keys; dicts,
    namedtuples, lists and tuples to the same types.
    """
    return map_structure_with_paths(lambda _, leaf: fn(leaf), structure)


def map_structure_with_paths(
    fn: Callable[[str, Any], Any], structure: Any, prefix: str = ""
) -> Any:
    """Like `map_structure`, with the leaf's flat path as the first argument."""
    if isinstance(structure, TensorSpecStruct):
        return TensorSpecStruct(
            (key, None if value is None else fn(f"{prefix}/{key}" if prefix else key, value))
            for key, value in structure.items()
        )
    children = _children(structure)
    if children is None:
        return None if structure is None else fn(prefix, structure)
    mapped = [
        map_structure_with_paths(fn, child, f"{prefix}/{key}" if prefix else key)
        for key, child in children
    ]
    if is_namedtuple(structure):
        return type(structure)(*mapped)
    if isinstance(structure, Mapping):
        return {key: value for (key, _), value in zip(children, mapped)}
    return type(structure)(mapped)


def pack_flat_sequence_to_spec_structure(spec_structure: Any, flat_sequence: Any) -> Any:
    """Packs a flat ``{path: value}`` mapping into the shape of `spec_structure`.

    Values are looked up by the spec's flat paths; paths the spec does not have
    are dropped. A missing optional spec (or a None spec) packs as None; a
    missing required spec raises SpecError naming its key and name. A
    TensorSpecStruct spec packs into a TensorSpecStruct with sorted keys.
    """
    assert_valid_spec_structure(spec_structure)
    if not is_flat_spec_or_tensors_structure(flat_sequence):
        raise SpecError(
            "pack_flat_sequence_to_spec_structure needs a flat {path: value} mapping, got "
            f"{type(flat_sequence).__name__}."
        )
    flat_spec = flatten_spec_structure(spec_structure, filter_none=False)
    values = dict(flat_sequence.items())

    def lookup(key: str, spec: Any) -> Any:
        if key in values:
            return values[key]
        if spec is None or getattr(spec, "is_optional", False):
            logger.debug("Optional spec %r is absent.", key)
            return None
        name = getattr(spec, "name", None)
        raise SpecError(
            f"Required entry {key!r} (spec name {name!r}, {describe(spec)}) is missing; "
            f"got {sorted(values)}.",
            key=key,
            name=name,
            expected=spec,
        )

    if isinstance(spec_structure, TensorSpecStruct):
        return TensorSpecStruct(
            (key, lookup(key, spec))
            for key, spec in sorted(flat_spec.items(), key=lambda kv: kv[0])
        )
    packed = {key: lookup(key, spec) for key, spec in flat_spec.items()}
    return map_structure_with_paths(lambda path, _: packed[path], spec_structure)


def maybe_ignore_batch(structure: Any, ignore_batch: bool = False) -> Any:
    """With `ignore_batch`, the structure as specs with the leading dim removed."""
    if not ignore_batch:
        return structure

    def strip(path: str, value: Any) -> ExtendedTensorSpec:
        spec = _value_spec(value, path or None)
        if spec.shape is None:
            return spec
        if not spec.shape:
            raise SpecError(f"Cannot strip a batch dimension from a scalar ({describe(value)}).")
        return ExtendedTensorSpec.from_spec(spec, shape=spec.shape[1:])

    return map_structure_with_paths(strip, structure)


def assert_equal_spec_or_tensor(expected: Any, actual: Any, key: str | None = None) -> None:
    """Raises SpecError unless `actual` matches `expected` in dtype and shape.

    Unknown dims of `expected` match any size. If `expected` is a sequence spec
    and `actual` a tensor (or extracted spec), the time dimension of `actual` is
    ignored. String specs take numpy object arrays whose elements are bytes (or
    str), and bytes or str arrays.
    """
    expected_spec = ExtendedTensorSpec.to_spec(expected)
    actual_spec = _value_spec(actual, key, expected_spec)
    if expected_spec.is_sequence and actual_spec.is_extracted and actual_spec.shape:
        actual_spec = ExtendedTensorSpec.from_spec(actual_spec, shape=actual_spec.shape[1:])
    if isinstance(actual, ARRAY_TYPES):
        dtype_ok = dtype_matches(expected_spec.dtype, actual)
    else:
        dtype_ok = expected_spec.dtype == actual_spec.dtype
    shape_ok = expected_spec.shape is None or (
        actual_spec.shape is not None
        and len(expected_spec.shape) == len(actual_spec.shape)
        and all(e is None or e == a for e, a in zip(expected_spec.shape, actual_spec.shape))
    )
    name = expected_spec.name
    where = f"{key!r} (spec name {name!r})" if key is not None else f"spec {name!r}"
    if dtype_ok and shape_ok:
        _check_string_elements(expected_spec, actual, where, key)
        return
    what = "dtype" if shape_ok else ("shape" if dtype_ok else "shape and dtype")
    raise SpecError(
        f"{what.capitalize()} mismatch at {where}: expected {describe(expected_spec)}, "
        f"got {describe(actual_spec)}.",
        key=key,
        name=name,
        expected=expected_spec,
        actual=actual_spec,
    )


def _check_string_elements(
    expected: ExtendedTensorSpec, actual: Any, where: str, key: str | None
) -> None:
    """Raises unless an object array for a string spec holds only bytes or str."""
    if not expected.is_string or not isinstance(actual, (np.ndarray, np.generic)):
        return
    bad = find_non_string(actual)
    if bad is not None:
        index, item = bad
        raise SpecError(
            f"Dtype mismatch at {where}: a string spec takes bytes or str elements, got "
            f"{type(item).__name__} {item!r} at index {index} of an object array "
            f"({describe(actual)}).",
            key=key,
            name=expected.name,
            expected=expected,
        )


def assert_equal(expected: Any, actual: Any, ignore_batch: bool = False) -> None:
    """Raises SpecError unless both structures have the same paths and matching leaves."""
    flat_expected = flatten_spec_structure(expected)
    flat_actual = flatten_spec_structure(maybe_ignore_batch(actual, ignore_batch))
    missing = [k for k in flat_expected if k not in flat_actual]
    extra = [k for k in flat_actual if k not in flat_expected]
    if missing or extra:
        raise SpecError(
            f"Structures differ: missing {missing}, unexpected {extra}.",
            key=(missing or extra)[0],
        )
    for key, value in flat_expected.items():
        assert_equal_spec_or_tensor(value, flat_actual[key], key=key)


def assert_required(expected_spec: Any, actual: Any, ignore_batch: bool = False) -> None:
    """Raises SpecError unless `actual` holds every required spec, each matching.

    Entries of `actual` that `expected_spec` does not name are ignored, and so
    are absent optional specs.
    """
    flat_actual = flatten_spec_structure(actual)
    packed = flatten_spec_structure(
        pack_flat_sequence_to_spec_structure(expected_spec, flat_actual)
    )
    flat_expected = flatten_spec_structure(expected_spec)
    present = TensorSpecStruct((k, v) for k, v in flat_expected.items() if k in packed)
    assert_equal(present, packed, ignore_batch)
    for key, spec in present.items():
        if isinstance(spec, ExtendedTensorSpec):
            _check_string_elements(spec, packed[key], f"{key!r} (spec name {spec.name!r})", key)
    assert_sequence_lengths(present, packed, ignore_batch)


def assert_sequence_lengths(expected_spec: Any, actual: Any, ignore_batch: bool = False) -> None:
    """Raises SpecError unless the sequence entries of `actual` share one time dimension.

    The sequence specs of one example (per ``dataset_key``) describe steps of the
    same episode: their values are ``(T, ...)`` (``(B, T, ...)`` with
    `ignore_batch`) with the same T. The error names both keys and lengths.
    """
    flat_expected = flatten_spec_structure(expected_spec)
    flat_actual = flatten_spec_structure(actual)
    axis = 1 if ignore_batch else 0
    first: dict[str, tuple[str, int]] = {}
    for key, spec in flat_expected.items():
        value = flat_actual.get(key)
        if (
            not getattr(spec, "is_sequence", False)
            or not isinstance(value, ARRAY_TYPES)
            or len(value.shape) <= axis
        ):
            continue
        length = int(value.shape[axis])
        group = getattr(spec, "dataset_key", "") or ""
        if group not in first:
            first[group] = (key, length)
            continue
        other_key, other_length = first[group]
        if length != other_length:
            raise SpecError(
                f"Sequence length mismatch: {other_key!r} has {other_length} steps but {key!r} "
                f"(spec name {spec.name!r}) has {length} (shape "
                f"{format_shape(tuple(value.shape))}); the sequence features of one example "
                "share their time dimension.",
                key=key,
                name=spec.name,
            )


def validate_and_flatten(
    expected_spec: Any, actual: Any, ignore_batch: bool = False
) -> TensorSpecStruct:
    """Checks `actual` against the required specs, then returns it flattened."""
    assert_valid_spec_structure(expected_spec)
    assert_valid_spec_structure(actual)
    assert_required(expected_spec, actual, ignore_batch)
    return flatten_spec_structure(actual)


def validate_and_pack(expected_spec: Any, actual: Any, ignore_batch: bool = False) -> Any:
    """Checks `actual` (flat or nested) against the required specs, then packs it."""
    assert_valid_spec_structure(expected_spec)
    assert_valid_spec_structure(actual)
    flat_actual = flatten_spec_structure(actual)
    assert_required(expected_spec, flat_actual, ignore_batch)
    return pack_flat_sequence_to_spec_structure(expected_spec, flat_actual)


def filter_required_flat_tensor_spec(flat_spec: Any) -> TensorSpecStruct:
    """The entries of a flat spec structure that are not optional."""
    if not is_flat_spec_or_tensors_structure(flat_spec):
        raise SpecError("filter_required_flat_tensor_spec needs a flat spec structure.")
    return TensorSpecStruct(
        (k, v) for k, v in flat_spec.items() if not getattr(v, "is_optional", False)
    )


def filter_spec_structure_by_dataset(
    structure: Any, dataset_key: str, filter_none: bool = True
) -> TensorSpecStruct:
    """The flat entries whose spec belongs to `dataset_key` (all for ``''``)."""
    flat = flatten_spec_structure(structure, filter_none)
    return TensorSpecStruct(
        (k, v)
        for k, v in flat.items()
        if not dataset_key or getattr(v, "dataset_key", "") == dataset_key
    )


def add_sequence_length_specs(structure: Any) -> TensorSpecStruct:
    """The flat specs plus an int64 scalar ``<key>_length`` for each sequence spec.

    The length spec's name is ``<name>_length``, the feature a parser fills with
    the unpadded length of each sequence.
    """
    flat = flatten_spec_structure(structure)
    for key, spec in flat.items():
        if isinstance(spec, ExtendedTensorSpec) and spec.is_sequence:
            flat[key + "_length"] = ExtendedTensorSpec(
                shape=(),
                dtype=torch.int64,
                name=None if spec.name is None else spec.name + "_length",
            )
    return flat


def copy_tensorspec(structure: Any, prefix: str = "", batch_size: int | None = None) -> Any:
    """A copy of a spec structure with ``prefix/`` prepended to every spec name.

    A spec without a name gets the name ``prefix/``. `batch_size` is passed to
    `ExtendedTensorSpec.from_spec` (> 0 fixed, < 0 unknown batch dim).
    """
    assert_valid_spec_structure(structure)
    head = prefix + "/" if prefix else ""

    def copy(spec: ExtendedTensorSpec) -> ExtendedTensorSpec:
        if not isinstance(spec, ExtendedTensorSpec):
            raise SpecError(f"copy_tensorspec copies specs, got {type(spec).__name__}.")
        new_name = head + (spec.name or "")
        return ExtendedTensorSpec.from_spec(spec, name=new_name or None, batch_size=batch_size)

    return map_structure(copy, structure)


def tensorspec_from_tensors(tensors: Any) -> Any:
    """The structure of tensors/arrays as extracted specs named by their paths."""
    assert_valid_spec_structure(tensors)
    return map_structure_with_paths(
        lambda path, t: ExtendedTensorSpec.from_tensor(t, name=path or None), tensors
    )
