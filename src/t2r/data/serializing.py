"""Spec-driven serialization of tf.train.Example / SequenceExample records.

The inverse of :mod:`t2r.data.parsing`: what a spec says about how a feature is
stored decides how its value is written, so records written here parse back
with the same specs (here and in TensorFlow).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from t2r.data.example_proto import Example, Feature, SequenceExample
from t2r.data.image_codec import encode_image
from t2r.data.parsing import build_plan, flat_specs
from t2r.specs import (
    ExtendedTensorSpec,
    SpecError,
    TensorSpecStruct,
    flatten_spec_structure,
    is_encoded_image_spec,
)
from t2r.specs.extended_tensor_spec import format_shape

__all__ = ["SerializeTFExampleFn", "create_serialize_tf_example_fn"]


def _bare_strings_as_arrays(structure: Any) -> Any:
    """Mappings with bare ``bytes`` / ``str`` values turned into 0-d object arrays."""
    if isinstance(structure, (bytes, str)):
        array = np.empty((), dtype=object)
        array[()] = structure
        return array
    if isinstance(structure, Mapping) and not isinstance(structure, TensorSpecStruct):
        return {key: _bare_strings_as_arrays(value) for key, value in structure.items()}
    if isinstance(structure, TensorSpecStruct):
        return TensorSpecStruct(
            (key, _bare_strings_as_arrays(value)) for key, value in structure.items()
        )
    return structure


def _string_values(path: str, spec: ExtendedTensorSpec, value: Any) -> list[bytes]:
    """The elements of string data as bytes (str is UTF-8 encoded)."""
    out = []
    for item in np.asarray(value, dtype=object).reshape(-1):
        if isinstance(item, bytes):
            out.append(bytes(item))
        elif isinstance(item, str):
            out.append(item.encode("utf-8"))
        else:
            raise SpecError(
                f"Cannot serialize {path!r} (spec name {spec.name!r}): a string spec takes "
                f"bytes or str values, got {type(item).__name__} {item!r}.",
                key=path,
                name=spec.name,
                expected=spec,
            )
    return out


def _as_numpy(value: Any) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu()
        if value.dtype == torch.bfloat16:
            value = value.float()
        return value.numpy()
    return np.asarray(value)


class SerializeTFExampleFn:
    """Serializes one unbatched example into a tf.train.Example or SequenceExample.

    Made by :func:`create_serialize_tf_example_fn`. Call it with the features (and
    labels) of one example, structured like the specs (nested or flat by path),
    as numpy arrays or torch tensors. Returns the serialized bytes, or
    ``{dataset_key: bytes}`` when the specs name several dataset keys.

    Raises:
        SpecError: a required value is missing or does not match its spec.
    """

    def __init__(self, feature_spec: Any, label_spec: Any = None, jpeg_quality: int = 95) -> None:
        self._jpeg_quality = int(jpeg_quality)
        specs = flat_specs(feature_spec, "feature")
        self._label_specs = flat_specs(label_spec, "label") if label_spec is not None else []
        self._feature_specs = specs
        every = specs + self._label_specs
        sequence_names = {s.name for _, s in every if s.is_sequence and s.name is not None}
        self._sequence_datasets = {s.dataset_key for _, s in every if s.is_sequence}
        self._dataset_keys = sorted({s.dataset_key for _, s in every if s.name is not None})
        # Length specs are never written: the number of steps says it. Their values
        # clip the sequence they measure, so padded data round-trips.
        self._length_of: dict[str, str] = {}
        for path, spec in every:
            if spec.name is None or spec.is_sequence or not spec.name.endswith("_length"):
                continue
            base = spec.name.removesuffix("_length")
            if base in sequence_names:
                self._length_of[base] = path
        self._lengths = set(self._length_of.values())
        # Fail at construction for specs that cannot be parsed back.
        build_plan(feature_spec, label_spec, decode_images=True)

    def _encode_images(self, path: str, spec: ExtendedTensorSpec, value: np.ndarray) -> list[bytes]:
        if value.dtype == object:  # already encoded (decode_images=False)
            return [bytes(v) for v in value.reshape(-1)]
        assert spec.data_format is not None
        fmt = spec.data_format.lower()
        images = value.reshape((-1, *value.shape[-3:]))
        try:
            return [encode_image(image, fmt, self._jpeg_quality) for image in images]  # type: ignore[arg-type]
        except ValueError as e:
            raise SpecError(
                f"Cannot encode {path!r} (spec name {spec.name!r}): {e}", key=path
            ) from e

    def _fill(
        self, feature: Feature, path: str, spec: ExtendedTensorSpec, value: np.ndarray
    ) -> None:
        if is_encoded_image_spec(spec):
            feature.bytes_list.value.extend(self._encode_images(path, spec, value))
        elif spec.is_string:
            feature.bytes_list.value.extend(_string_values(path, spec, value))
        elif spec.dtype.is_floating_point or spec.dtype.is_complex:
            feature.float_list.value.extend(value.reshape(-1).astype(np.float32).tolist())
        else:
            flat = value.reshape(-1)
            if flat.dtype == np.uint64:
                flat = flat.view(np.int64)
            feature.int64_list.value.extend(flat.astype(np.int64).tolist())

    def _check_shape(
        self, path: str, spec: ExtendedTensorSpec, value: np.ndarray, sequence: bool
    ) -> None:
        shape = tuple(value.shape[1:] if sequence else value.shape)
        expected = tuple(d or 0 for d in spec.shape or ())
        if value.dtype == object and is_encoded_image_spec(spec):
            expected = expected[:-3]
        if spec.varlen_default_value is not None:
            ok = len(shape) == len(expected) and shape[1:] == expected[1:]
        else:
            ok = shape == expected
        if sequence and value.ndim == 0:
            ok = False
        if not ok:
            what = "steps of shape" if sequence else "shape"
            raise SpecError(
                f"Cannot serialize {path!r} (spec name {spec.name!r}): expected {what} "
                f"{format_shape(expected)}, got shape {format_shape(tuple(value.shape))}.",
                key=path,
                name=spec.name,
                expected=spec,
            )

    def __call__(self, features: Any, labels: Any = None) -> bytes | dict[str, bytes]:
        features = _bare_strings_as_arrays(features)
        labels = _bare_strings_as_arrays(labels)
        values = dict(flatten_spec_structure(features).items())
        label_values = dict(flatten_spec_structure(labels).items()) if labels is not None else {}
        messages: dict[str, Any] = {}
        written: set[tuple[str, str]] = set()
        for specs, given in ((self._feature_specs, values), (self._label_specs, label_values)):
            for path, spec in specs:
                if spec.name is None or path in self._lengths:
                    continue
                key = (spec.dataset_key, spec.name)
                if key in written:
                    continue
                if path not in given or given[path] is None:
                    if spec.is_optional:
                        continue
                    raise SpecError(
                        f"Cannot serialize: required {path!r} (spec name {spec.name!r}) is "
                        "missing.",
                        key=path,
                        name=spec.name,
                    )
                written.add(key)
                value = _as_numpy(given[path])
                message = messages.get(spec.dataset_key)
                if message is None:
                    sequence = spec.dataset_key in self._sequence_datasets
                    message = SequenceExample() if sequence else Example()
                    messages[spec.dataset_key] = message
                self._check_shape(path, spec, value, spec.is_sequence)
                if spec.is_sequence:
                    length_path = self._length_of.get(spec.name)
                    steps = value.shape[0]
                    if length_path is not None:
                        length_value = given.get(length_path)
                        if length_value is not None:
                            steps = min(steps, int(_as_numpy(length_value).reshape(-1)[0]))
                    feature_list = message.feature_lists.feature_list[spec.name]
                    for t in range(steps):
                        step = feature_list.feature.add()  # type: ignore[union-attr]
                        self._fill(step, path, spec, value[t])
                else:
                    fmap = (
                        message.context.feature
                        if isinstance(message, SequenceExample)
                        else message.features.feature
                    )
                    self._fill(fmap[spec.name], path, spec, value)
        out = {}
        for dataset_key in self._dataset_keys:
            message = messages.get(dataset_key)
            if message is None:
                sequence = dataset_key in self._sequence_datasets
                message = SequenceExample() if sequence else Example()
            out[dataset_key] = message.SerializeToString(deterministic=True)
        if len(out) == 1:
            return next(iter(out.values()))
        return out


def create_serialize_tf_example_fn(
    feature_spec: Any, label_spec: Any = None, jpeg_quality: int = 95
) -> SerializeTFExampleFn:
    """The inverse of :func:`create_parse_tf_example_fn`, for one unbatched example.

    The callable ``(features, labels=None)`` returns serialized bytes (or
    ``{dataset_key: bytes}`` when the specs name several dataset keys). Floats go to
    float_list, integers and bools to int64_list, images are encoded by their
    spec's ``data_format`` (JPEG at ``jpeg_quality``) into a bytes_list; records
    are SequenceExamples (non-sequence specs in the context) when any spec of the
    dataset is a sequence. TensorFlow parses them with the equivalent
    ``FixedLenFeature`` / ``VarLenFeature`` / ``FixedLenSequenceFeature`` spec.
    String specs take numpy arrays of bytes or str (object, ``np.bytes_`` or
    ``np.str_`` arrays; bare ``bytes`` / ``str`` values in a mapping too) and
    write a bytes_list, str UTF-8 encoded; other values raise SpecError.
    Varlen values are written unpadded; a ``<name>_length`` value clips the
    sequence ``<name>`` to that many steps.
    """
    return SerializeTFExampleFn(feature_spec, label_spec, jpeg_quality)
