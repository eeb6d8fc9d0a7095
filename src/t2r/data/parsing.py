"""Spec-driven parsing of tf.train.Example / SequenceExample records.

Serializing lives in :mod:`t2r.data.serializing`, the batch buffer layout in
:mod:`t2r.data.batch_buffer`.

The specs say everything: a spec's ``name`` is the Example key, its struct path is
where the parsed tensor lands, its flags say how the feature is stored. This is
Tensor2Robot's ``tfdata.create_parse_tf_example_fn`` without TensorFlow.

How each spec is read (``B`` is the batch, ``T`` the longest sequence in it):

* float16/32/64 and bfloat16 specs: a float_list of ``prod(shape)`` values,
  parsed to ``(B, *shape)``.
* int8..int64, uint16..uint64 and bool specs: an int64_list of ``prod(shape)``
  values, parsed to ``(B, *shape)``.
* uint8 specs that are not images: an int64_list (or a single bytes value of
  ``prod(shape)`` raw bytes), parsed to ``(B, *shape)``.
* string specs (dtype ``t2r.specs.string``, T2R's ``tf.string``): a bytes_list
  of ``prod(shape)`` values, parsed to a numpy object array of ``bytes`` of
  shape ``(B, *shape)``, the values TensorFlow's parser gives. Strings never
  become torch tensors: they stay numpy in the batch (outside the batch buffer)
  for a preprocessor to turn into tensors.
* ``data_format`` 'jpeg' / 'png' specs of shape ``(H, W, C)``: a bytes_list with
  one encoded image, decoded to ``(B, H, W, C)`` uint8 or uint16. Shape
  ``(N, H, W, C)``: N encoded images, decoded to ``(B, N, H, W, C)``.
* ``varlen_default_value`` specs of shape ``(L,)`` (or ``(L, H, W, C)`` image
  lists): any number of values (images), padded with the default (bytes, e.g.
  ``b''``, for string specs) or clipped to ``(B, L)`` (``(B, L, H, W, C)``).
* ``is_sequence`` specs: a SequenceExample feature_list with one Feature per step,
  each holding what the rules above say for one step; parsed to
  ``(B, T, *shape)``, zero-padded (zero images, ``b''`` for strings) after each
  record's last step.
  The sequence features of one record (and dataset) must have the same number
  of steps; records where they differ raise DataError naming both.
* a scalar integer spec named ``<name>_length`` beside a sequence spec
  ``<name>``: computed, never read: the ``(B,)`` unpadded lengths.

Records are parsed as SequenceExamples when any spec of their dataset is a
sequence (non-sequence specs then come from the context); otherwise as Examples.
An Example read as a SequenceExample has its features as context.

Semantics and choices (see also ``docs/migrating_from_t2r.md``):

* Specs whose ``name`` is None are not parsed (and not serialized); they are
  left out of the output, as Tensor2Robot's ``tensorspec_to_feature_dict`` did.
* Sequence lengths are filled only when the spec asks for them: a scalar integer
  spec named ``<name>_length`` beside a sequence spec ``<name>`` (what
  ``t2r.specs.add_sequence_length_specs`` adds) gets each record's unpadded step
  count. Such a feature is never read from the record, as in Tensor2Robot.
* bfloat16 specs are parsed as float32 and cast. float16 / float64 go through
  the float32 float_list (float64 values lose precision when written).
* Integer specs of every width come from int64_list; values that do not fit the
  spec's dtype raise DataError (uint64 is stored as the int64 of the same bits).
  TensorFlow parses only int64, float32 and bytes, so this is what ``tf.train``
  writers produce for integer data. uint8 data that is not an image is written
  the same way; a single bytes value of exactly ``prod(shape)`` bytes (the
  ``tf.io.decode_raw`` convention) is also read.
* Encoded images: the format is sniffed from the bytes, JPEG and PNG both decode
  under either ``data_format``. Empty bytes decode to a zero image. No resizing
  or channel conversion: any other size raises DataError.
* Variable-length image lists are padded with images filled with
  ``varlen_default_value`` (Tensor2Robot padded up to the longest list in the
  batch with zero images first, so the padding depended on the batch).
* Missing features: a missing required feature raises DataError naming it. An
  optional feature missing from every record of a batch is left out of the
  output; missing from only some, it raises DataError (a batch is rectangular).
* A record whose feature has another kind than the spec's (a bytes_list for a
  float spec, an int64_list for a string spec) raises DataError naming the
  feature, the record and both kinds.
* ``decode_images=False`` leaves images encoded: numpy object arrays of bytes,
  ``(B,)``, ``(B, N)`` or ``(B, T)`` (empty bytes where padded), e.g. to decode
  them on a GPU later.
"""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import simplejpeg
import torch
import torch.utils.data

from t2r.data.batch_buffer import LayoutEntry, ParsedBatch, allocate_batch, default_allocate
from t2r.data.errors import DataError
from t2r.data.example_proto import Example, Feature, SequenceExample
from t2r.data.image_codec import decode_image
from t2r.specs import (
    ExtendedTensorSpec,
    SpecError,
    TensorSpecStruct,
    dtype_name,
    flatten_spec_structure,
    is_encoded_image_spec,
    numpy_dtype,
)
from t2r.specs.extended_tensor_spec import format_shape

__all__ = ["ParseTFExampleFn", "create_parse_tf_example_fn"]

logger = logging.getLogger(__name__)

_FLOAT = "float_list"
_INT = "int64_list"
_BYTES = "bytes_list"
_JPEG_MAGIC = b"\xff\xd8\xff"
# simplejpeg.decode_jpeg_header's colorspace -> channels it decodes to without conversion
_JPEG_CHANNELS = {"Gray": 1, "YCbCr": 3, "RGB": 3}

Records = Sequence[bytes] | Mapping[str, Sequence[bytes]]


def _spec_where(field: _Field) -> str:
    dataset = f" of dataset {field.dataset_key!r}" if field.dataset_key else ""
    return f"feature {field.name!r}{dataset} (spec path {field.paths[0]!r})"


class _Field:
    """How one Example key is read: computed once from its spec(s)."""

    __slots__ = (
        "count",
        "dataset_key",
        "decode",
        "default",
        "image",
        "image_shape",
        "item_shape",
        "jpeg_colorspace",
        "jpeg_header",
        "list_kind",
        "name",
        "np_dtype",
        "optional",
        "paths",
        "sequence",
        "shape",
        "torch_dtype",
        "varlen",
    )

    def __init__(self, path: str, spec: ExtendedTensorSpec, decode_images: bool) -> None:
        assert spec.name is not None
        self.name: str = spec.name
        self.dataset_key = spec.dataset_key
        self.paths = [path]
        self.optional = spec.is_optional
        self.sequence = spec.is_sequence
        self.image = is_encoded_image_spec(spec)
        self.decode = self.image and decode_images
        self.varlen = spec.varlen_default_value is not None
        self.default = spec.varlen_default_value
        self.torch_dtype = spec.dtype
        self.np_dtype = numpy_dtype(spec.dtype)
        where = f"spec {path!r} (name {spec.name!r})"
        if spec.shape is None or any(d is None for d in spec.shape):
            raise SpecError(
                f"Cannot parse {where}: records need a fully defined shape, got {spec.shape!r}.",
                key=path,
                name=spec.name,
            )
        self.shape: tuple[int, ...] = tuple(int(d) for d in spec.shape)  # type: ignore[arg-type]
        if self.varlen and self.sequence:
            raise SpecError(
                f"Cannot parse {where}: a spec is either a sequence or variable-length, not both.",
                key=path,
                name=spec.name,
            )
        if self.image:
            if len(self.shape) not in (3, 4):
                raise SpecError(
                    f"Cannot parse {where}: encoded images need shape (H, W, C) or (N, H, W, C), "
                    f"got {format_shape(self.shape)}.",
                    key=path,
                    name=spec.name,
                )
            if self.shape[-1] not in (1, 3, 4):
                raise SpecError(
                    f"Cannot parse {where}: images have 1, 3 or 4 channels, got shape "
                    f"{format_shape(self.shape)}.",
                    key=path,
                    name=spec.name,
                )
            if self.np_dtype not in (np.uint8, np.uint16):
                raise SpecError(
                    f"Cannot parse {where}: encoded images decode to uint8 or uint16, not "
                    f"{spec.dtype}.",
                    key=path,
                    name=spec.name,
                )
            self.list_kind = _BYTES
            self.image_shape = self.shape[-3:]
            height, width, channels = self.image_shape
            fast = self.decode and self.np_dtype == np.uint8 and channels in (1, 3)
            self.jpeg_header = (height, width, channels) if fast else None
            self.jpeg_colorspace = "GRAY" if channels == 1 else "RGB"
            # Number of images per record (per step for sequences); None: rank 3, one.
            self.count = self.shape[0] if len(self.shape) == 4 else 1
            if not self.decode:
                self.np_dtype = np.dtype(object)
                self.item_shape = self.shape[:-3]
            else:
                self.item_shape = self.shape
        else:
            if spec.is_string:
                self.list_kind = _BYTES
            elif self.np_dtype.kind in "fc" or spec.dtype == torch.bfloat16:
                self.list_kind = _FLOAT
            elif self.np_dtype.kind in "iub":
                self.list_kind = _INT
            else:
                raise SpecError(
                    f"Cannot parse {where}: unsupported dtype {spec.dtype}.",
                    key=path,
                    name=spec.name,
                )
            self.image_shape = ()
            self.jpeg_header = None
            self.jpeg_colorspace = ""
            self.count = math.prod(self.shape)
            self.item_shape = self.shape

    def merge(self, path: str, spec: ExtendedTensorSpec) -> None:
        """Another spec path reading the same key: flags must agree."""
        other = _Field(path, spec, self.decode or not self.image)
        if (
            other.sequence != self.sequence
            or other.image != self.image
            or other.varlen != self.varlen
            or other.default != self.default
            or other.shape != self.shape
            or other.torch_dtype != self.torch_dtype
        ):
            raise SpecError(
                f"Specs {self.paths[0]!r} and {path!r} both read feature {self.name!r} but "
                "disagree on shape, dtype, image format, sequence or variable-length flags.",
                key=path,
                name=self.name,
            )
        self.paths.append(path)
        self.optional = self.optional and other.optional

    # ------------------------------------------------------------------ parsing
    def _values(self, feature: Feature, index: int, step: int | None) -> Any:
        """The repeated values of one Feature, checked against the expected kind."""
        kind = feature.WhichOneof("kind")
        if kind == self.list_kind:
            return getattr(feature, kind).value
        if kind is None:
            return ()
        if kind == _BYTES and self.np_dtype == np.uint8:
            raw = feature.bytes_list.value
            if len(raw) == 1 and len(raw[0]) == self.count:
                return np.frombuffer(raw[0], np.uint8)
        at = "" if step is None else f" step {step}"
        raise DataError(
            f"record {index} of the batch{at}: {_spec_where(self)}: expected a {self.list_kind}, "
            f"got a {kind}.",
            key=self.name,
            record_index=index,
        )

    def _size_error(self, index: int, step: int | None, actual: int) -> DataError:
        at = "" if step is None else f" step {step}"
        what = "encoded images" if self.image else f"{self.list_kind} values"
        return DataError(
            f"record {index} of the batch{at}: {_spec_where(self)}: expected {self.count} {what} "
            f"for shape {format_shape(self.shape)}, got {actual}.",
            key=self.name,
            record_index=index,
        )

    def _decode_into(self, data: bytes, out: np.ndarray, index: int) -> None:
        """Decodes one encoded image into ``out`` (a view of the batch array)."""
        if not data:
            out[...] = 0
            return
        if self.jpeg_header is not None and data.startswith(_JPEG_MAGIC):
            # Fast path: a JPEG whose header says it has the spec's size and
            # channels decodes straight into the batch (simplejpeg, no copy).
            try:
                height, width, colorspace, _ = simplejpeg.decode_jpeg_header(data)
            except ValueError:
                height = width = -1
                colorspace = ""
            if (height, width, _JPEG_CHANNELS.get(colorspace)) == self.jpeg_header:
                try:
                    simplejpeg.decode_jpeg(data, self.jpeg_colorspace, buffer=out)
                    return
                except ValueError:
                    pass  # decode_image falls back to Pillow or reports the problem
        try:
            out[...] = decode_image(
                data, (out.shape[0], out.shape[1], out.shape[2]), out.dtype, key=self.name
            )
        except DataError as e:
            raise DataError(
                f"record {index} of the batch: {_spec_where(self)}: {e}",
                key=self.name,
                record_index=index,
            ) from e

    def _fill_images(
        self, values: Any, out: np.ndarray, at: tuple[int, ...], index: int, step: int | None
    ) -> None:
        """Fills ``out[at]``: ``(H, W, C)`` or ``(N|L, H, W, C)`` (bytes if not decoding)."""
        n = len(values)
        if self.varlen:
            limit = self.shape[0]
            used = min(n, limit)
            target = out[at]
            if self.decode:
                for j in range(used):
                    self._decode_into(values[j], target[j], index)
                target[used:] = self.default
            else:
                target[:used] = list(values[:used])
                target[used:] = b""
            return
        if n != self.count:
            raise self._size_error(index, step, n)
        if not self.decode:
            out[at] = values[0] if len(self.shape) == 3 else list(values)
        elif len(self.shape) == 3:
            self._decode_into(values[0], out[at], index)
        else:
            target = out[at]
            for j in range(n):
                self._decode_into(values[j], target[j], index)

    def _to_dtype(self, values: list[Any] | np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
        """Parsed values (float32, int64 or bytes as stored) as an array of the spec's dtype."""
        if self.list_kind == _BYTES:  # a string spec: an object array of bytes
            if isinstance(values, np.ndarray):
                return values.reshape(shape)
            strings = np.empty(len(values), dtype=object)
            strings[:] = values
            return strings.reshape(shape)
        if self.list_kind == _FLOAT:
            floats = np.asarray(values, dtype=np.float32).reshape(shape)
            return floats.astype(self.np_dtype, copy=False)
        array = np.asarray(values, dtype=np.int64).reshape(shape)
        if self.np_dtype == np.int64:
            return array
        if self.np_dtype == np.bool_:
            return array != 0
        if self.np_dtype == np.uint64:
            return array.view(np.uint64)
        info = np.iinfo(self.np_dtype)
        if array.size and (array.min() < info.min or array.max() > info.max):
            # Name the first record (axis 0 is the batch) holding a value out of range.
            outside = (array < info.min) | (array > info.max)
            index = int(np.argmax(outside.reshape(len(array), -1).any(axis=1)))
            record = array[index]
            raise DataError(
                f"record {index} of the batch: {_spec_where(self)}: values in "
                f"[{record.min()}, {record.max()}] do not fit {self.np_dtype} "
                f"(range [{info.min}, {info.max}]).",
                key=self.name,
                record_index=index,
            )
        return array.astype(self.np_dtype)

    def fill_fixed(self, features: list[Any], out: np.ndarray) -> None:
        """Non-sequence features: ``features[i]`` is record i's Feature; fills ``out``."""
        if self.image:
            single = self.decode and not self.varlen and len(self.shape) == 3
            for i, feature in enumerate(features):
                if single:  # the common case, without the generic checks
                    values = feature.bytes_list.value
                    if len(values) == 1:
                        self._decode_into(values[0], out[i], i)
                        continue
                self._fill_images(self._values(feature, i, None), out, (i,), i, None)
            return
        if self.varlen:
            limit = self.shape[0]
            stored = {_FLOAT: np.float32, _INT: np.int64, _BYTES: object}[self.list_kind]
            padded = np.full(out.shape, self.default, dtype=stored)
            for i, feature in enumerate(features):
                values = self._values(feature, i, None)[:limit]
                if len(values):
                    padded[i, : len(values)] = list(values)
            out[...] = self._to_dtype(padded, out.shape)
            return
        flat: list[Any] = []
        count = self.count
        kind = self.list_kind
        for i, feature in enumerate(features):
            # Fast path: the expected list with the expected count. Anything else
            # (another kind, raw bytes, a wrong count) goes through the checks.
            values = getattr(feature, kind).value
            if len(values) != count or not count:
                values = self._values(feature, i, None)
                if len(values) != count:
                    raise self._size_error(i, None, len(values))
            flat.extend(values)
        out[...] = self._to_dtype(flat, out.shape)

    def fill_sequence(self, steps_per_record: list[Any], out: np.ndarray) -> None:
        """``steps_per_record[i]``: record i's Features, one per step; fills ``out``.

        ``out`` is ``(B, T, ...)`` with T the longest; steps after a record's last
        one are zeros (zero images; empty bytes without decoding).
        """
        longest = out.shape[1]
        if self.image:
            for i, steps in enumerate(steps_per_record):
                for t, feature in enumerate(steps):
                    self._fill_images(self._values(feature, i, t), out, (i, t), i, t)
                out[i, len(steps) :] = b"" if out.dtype == object else 0
            return
        count = self.count
        flat: list[Any] = []
        pad = [b"" if self.list_kind == _BYTES else 0] * count
        for i, steps in enumerate(steps_per_record):
            for t, feature in enumerate(steps):
                values = self._values(feature, i, t)
                if len(values) != count:
                    raise self._size_error(i, t, len(values))
                flat.extend(values)
            flat.extend(pad * (longest - len(steps)))
        out[...] = self._to_dtype(flat, out.shape)


class _Length:
    """A ``<name>_length`` spec filled with the unpadded lengths of a sequence."""

    __slots__ = ("np_dtype", "paths", "sequence_name", "shape", "torch_dtype")

    def __init__(self, path: str, spec: ExtendedTensorSpec, sequence_name: str) -> None:
        self.paths = [path]
        self.sequence_name = sequence_name
        self.torch_dtype = spec.dtype
        self.np_dtype = numpy_dtype(spec.dtype)
        self.shape: tuple[int, ...] = (
            (0, 0) if spec.shape is None else tuple(d or 0 for d in spec.shape)
        )
        if (
            spec.dtype.is_floating_point
            or spec.dtype.is_complex
            or spec.dtype == torch.bool
            or spec.shape not in ((), (1,))
        ):
            raise SpecError(
                f"Spec {path!r} (name {spec.name!r}) is the length of sequence feature "
                f"{sequence_name!r}: it must be an integer scalar (shape ()), got "
                f"shape {spec.shape!r} dtype {spec.dtype}.",
                key=path,
                name=spec.name,
            )


class _DatasetPlan:
    """The fields read from the records of one dataset key."""

    __slots__ = ("context", "lengths", "sequences", "use_sequence_example")

    def __init__(self) -> None:
        self.context: list[_Field] = []
        self.sequences: list[_Field] = []
        self.lengths: dict[_Field, list[_Length]] = {}
        self.use_sequence_example = False


def flat_specs(structure: Any, role: str) -> list[tuple[str, ExtendedTensorSpec]]:
    flat = flatten_spec_structure(structure)
    out = []
    for path, spec in flat.items():
        if not isinstance(spec, ExtendedTensorSpec):
            raise SpecError(
                f"{role} spec {path!r}: expected an ExtendedTensorSpec, got {type(spec).__name__}.",
                key=path,
            )
        out.append((path, spec))
    return out


def build_plan(
    feature_spec: Any, label_spec: Any, decode_images: bool
) -> tuple[dict[str, _DatasetPlan], list[tuple[str, Any]], list[tuple[str, Any]] | None]:
    """Groups the specs by (dataset_key, name), once, at construction."""
    roles: list[tuple[str, list[tuple[str, ExtendedTensorSpec]]]] = [
        ("feature", flat_specs(feature_spec, "feature"))
    ]
    if label_spec is not None:
        roles.append(("label", flat_specs(label_spec, "label")))
    all_specs = [(role, path, spec) for role, specs in roles for path, spec in specs]
    sequence_specs: dict[str, list[ExtendedTensorSpec]] = {}
    for _, _, spec in all_specs:
        if spec.is_sequence and spec.name is not None:
            sequence_specs.setdefault(spec.name, []).append(spec)

    fields: dict[tuple[str, str], _Field] = {}
    lengths: dict[tuple[str, str], _Length] = {}
    outputs: dict[str, list[tuple[str, Any]]] = {"feature": [], "label": []}
    skipped = []
    for role, path, spec in all_specs:
        if spec.name is None:
            skipped.append(path)
            continue
        base = spec.name.removesuffix("_length")
        if spec.name.endswith("_length") and not spec.is_sequence and base in sequence_specs:
            candidates = sequence_specs[base]
            source = next(
                (s for s in candidates if s.dataset_key == spec.dataset_key), candidates[0]
            )
            key = (source.dataset_key, spec.name)
            if key in lengths:
                lengths[key].paths.append(path)
            else:
                lengths[key] = _Length(path, spec, base)
            outputs[role].append((path, lengths[key]))
            continue
        key = (spec.dataset_key, spec.name)
        if key in fields:
            fields[key].merge(path, spec)
        else:
            fields[key] = _Field(path, spec, decode_images)
        outputs[role].append((path, fields[key]))
    if skipped:
        logger.info("Specs %s have no name; they are not parsed from records.", skipped)

    plans: dict[str, _DatasetPlan] = {}
    for (dataset_key, _), field in fields.items():
        plan = plans.setdefault(dataset_key, _DatasetPlan())
        if field.sequence:
            plan.sequences.append(field)
            plan.use_sequence_example = True
        else:
            plan.context.append(field)
    for (dataset_key, _), length in lengths.items():
        sequence_field = fields[(dataset_key, length.sequence_name)]
        plans[dataset_key].lengths.setdefault(sequence_field, []).append(length)
    labels = outputs["label"] if label_spec is not None else None
    return plans, outputs["feature"], labels


class ParseTFExampleFn:
    """Parses a batch of serialized records into batched torch tensors.

    Made by :func:`create_parse_tf_example_fn`; picklable (DataLoader workers get a
    copy). Everything about the specs is worked out once at construction.

    Call with a sequence of serialized records (one dataset), or a mapping
    ``{dataset_key: records}`` whose sequences have equal lengths (several zipped
    datasets: each spec reads from the records of its ``dataset_key``). A plain
    sequence feeds every spec, whatever its dataset_key.

    Returns ``(features, labels)`` TensorSpecStructs keyed by the flat spec paths
    (only ``features`` when the label spec is None). Tensors have a leading batch
    dimension, the spec's dtype and shape (plus a time dimension for sequences).

    Raises:
        DataError: a record that does not match the specs (naming the feature key,
            the record's index in the batch and expected versus actual sizes).
    """

    def __init__(
        self, feature_spec: Any, label_spec: Any = None, decode_images: bool = True
    ) -> None:
        self._has_labels = label_spec is not None
        self._decode_images = decode_images
        self._plans, self._feature_outputs, self._label_outputs = build_plan(
            feature_spec, label_spec, decode_images
        )

    @property
    def dataset_keys(self) -> list[str]:
        """The dataset keys the specs read from (``''`` for the default one)."""
        return sorted(self._plans)

    def _split(self, records: Records) -> tuple[dict[str, Sequence[bytes]], int]:
        if isinstance(records, (bytes, bytearray, str)):
            raise TypeError(
                "A parse fn takes a list of serialized records (a batch), not a single record."
            )
        if isinstance(records, Mapping):
            by_key: dict[str, Sequence[bytes]] = {}
            sizes = {key: len(value) for key, value in records.items()}
            if len(set(sizes.values())) > 1:
                raise DataError(f"Zipped datasets must hold as many records each, got {sizes}.")
            for dataset_key in self._plans:
                if dataset_key in records:
                    by_key[dataset_key] = records[dataset_key]
                elif dataset_key == "" and len(records) == 1:
                    by_key[dataset_key] = next(iter(records.values()))
                else:
                    raise DataError(
                        f"No records given for dataset_key {dataset_key!r}; got {sorted(records)}."
                    )
            return by_key, next(iter(sizes.values())) if sizes else 0
        batch = len(records)
        return dict.fromkeys(self._plans, records), batch

    def parse_numpy(
        self, records: Records, allocate: Callable[[int], torch.Tensor] | None = None
    ) -> ParsedBatch:
        """Parses a batch into numpy arrays that all live in one uint8 buffer.

        The first half of :meth:`__call__`; :meth:`to_tensors` is the second.
        ``allocate(nbytes)`` returns the buffer (a 1-D uint8 tensor of at least
        ``nbytes``); by default a fresh tensor, in shared memory inside a
        DataLoader worker, so a batch crosses to the main process as one block.
        """
        by_key, batch = self._split(records)
        jobs: list[tuple[Any, tuple[int, ...], Callable[[np.ndarray], None]]] = []
        for dataset_key, plan in self._plans.items():
            jobs.extend(self._plan_dataset(plan, by_key[dataset_key], batch))
        parsed = allocate_batch(
            [(field, shape, field.np_dtype) for field, shape, _ in jobs],
            allocate or default_allocate,
        )
        for field, _, fill in jobs:
            fill(parsed.arrays[field])
        return parsed

    def layout(self, parsed: ParsedBatch) -> tuple[list[LayoutEntry], list[LayoutEntry] | None]:
        """Where each output lives in ``parsed.base``: ``(features, labels)`` entries.

        An entry is ``(path, offset, shape, numpy dtype name, torch dtype name,
        None)``, or ``(path, -1, shape, 'object', '', array)`` for an object array.
        :func:`tensors_from_layout` rebuilds the TensorSpecStructs from a buffer.
        """

        def entries(outputs: list[tuple[str, Any]]) -> list[LayoutEntry]:
            out: list[LayoutEntry] = []
            for path, field in outputs:
                if field not in parsed.arrays:
                    continue
                array = parsed.arrays[field]
                offset = parsed.offsets[field]
                if offset < 0:
                    out.append((path, -1, array.shape, "object", "", array))
                else:
                    dtype = dtype_name(field.torch_dtype)
                    out.append((path, offset, array.shape, array.dtype.name, dtype, None))
            return out

        labels = None if self._label_outputs is None else entries(self._label_outputs)
        return entries(self._feature_outputs), labels

    def _plan_dataset(
        self, plan: _DatasetPlan, records: Sequence[bytes], batch: int
    ) -> list[tuple[Any, tuple[int, ...], Callable[[np.ndarray], None]]]:
        """Parses the messages; returns (field, output shape, fill function) jobs."""
        try:
            if plan.use_sequence_example:
                messages = [SequenceExample.FromString(r) for r in records]
                contexts = [m.context.feature for m in messages]
                feature_lists = [m.feature_lists.feature_list for m in messages]
            else:
                contexts = [Example.FromString(r).features.feature for r in records]
                feature_lists = []
        except Exception as e:  # protobuf's DecodeError
            kind = "SequenceExample" if plan.use_sequence_example else "Example"
            index = _first_bad_record(records, plan.use_sequence_example)
            raise DataError(
                f"record {index} of the batch is not a serialized tf.train.{kind}: {e}",
                record_index=index,
            ) from e
        jobs: list[tuple[Any, tuple[int, ...], Callable[[np.ndarray], None]]] = []
        for field in plan.context:
            features = [c.get(field.name) for c in contexts]
            if _check_present(field, features):
                jobs.append(
                    (
                        field,
                        (batch, *field.item_shape),
                        functools.partial(field.fill_fixed, features),
                    )
                )
        first: tuple[_Field, np.ndarray] | None = None
        for field in plan.sequences:
            lists = [fl.get(field.name) for fl in feature_lists]
            if not _check_present(field, lists):
                continue
            steps = [fl.feature for fl in lists]
            lengths = np.array([len(s) for s in steps], dtype=np.int64)
            if first is None:
                first = (field, lengths)
            elif not np.array_equal(lengths, first[1]):
                _raise_length_mismatch(first, (field, lengths))
            longest = int(lengths.max()) if batch else 0
            jobs.append(
                (
                    field,
                    (batch, longest, *field.item_shape),
                    functools.partial(field.fill_sequence, steps),
                )
            )
            for length in plan.lengths.get(field, ()):
                jobs.append((length, (batch, *length.shape), functools.partial(_copy, lengths)))
        return jobs

    def to_tensors(
        self, parsed: ParsedBatch
    ) -> TensorSpecStruct | tuple[TensorSpecStruct, TensorSpecStruct]:
        """The arrays of :meth:`parse_numpy` as TensorSpecStructs of tensors.

        Tensors are views of the batch buffer (bfloat16 specs are cast); object
        arrays of encoded images stay numpy.
        """
        cache: dict[Any, Any] = {}

        def tensor(field: Any) -> Any:
            if field not in cache:
                value = parsed.views[field]
                if value is None:
                    cache[field] = parsed.arrays[field]
                else:
                    if value.dtype != field.torch_dtype:
                        value = value.to(field.torch_dtype)
                    cache[field] = value
            return cache[field]

        def build(outputs: list[tuple[str, Any]]) -> TensorSpecStruct:
            struct = TensorSpecStruct()
            for path, field in outputs:
                if field in parsed.arrays:
                    struct[path] = tensor(field)
            return struct

        features = build(self._feature_outputs)
        if self._label_outputs is None:
            return features
        return features, build(self._label_outputs)

    def __call__(
        self, records: Records
    ) -> TensorSpecStruct | tuple[TensorSpecStruct, TensorSpecStruct]:
        return self.to_tensors(self.parse_numpy(records))

    @property
    def has_labels(self) -> bool:
        return self._label_outputs is not None

    @property
    def example_nbytes(self) -> int:
        """Bytes one parsed example takes in a batch (a sequence counted as one step)."""
        total = 0
        for plan in self._plans.values():
            for field in [*plan.context, *plan.sequences]:
                total += math.prod(field.item_shape) * field.np_dtype.itemsize
        return total

    @property
    def decodes_images(self) -> bool:
        """Whether any spec is an encoded image this fn decodes (the costly part)."""
        return any(
            field.decode
            for plan in self._plans.values()
            for field in [*plan.context, *plan.sequences]
        )


def _copy(source: np.ndarray, out: np.ndarray) -> None:
    out[...] = source.reshape(out.shape)


def _check_present(field: _Field, features: list[Any]) -> bool:
    """False if absent everywhere and optional; raises if it cannot be parsed."""
    missing = [i for i, f in enumerate(features) if f is None]
    if not missing:
        return True
    where = "feature_lists" if field.sequence else "features"
    if not field.optional:
        raise DataError(
            f"record {missing[0]} of the batch: required {_spec_where(field)} is missing from "
            f"the record's {where}.",
            key=field.name,
            record_index=missing[0],
        )
    if len(missing) == len(features):
        return False
    raise DataError(
        f"record {missing[0]} of the batch: optional {_spec_where(field)} is missing from "
        f"{len(missing)} of {len(features)} records of the batch; a batch needs it in all "
        "records or none.",
        key=field.name,
        record_index=missing[0],
    )


def _raise_length_mismatch(
    first: tuple[_Field, np.ndarray], other: tuple[_Field, np.ndarray]
) -> None:
    """The sequence features of one record must have the same number of steps."""
    index = int(np.argmax(first[1] != other[1]))
    raise DataError(
        f"record {index} of the batch: sequence {_spec_where(first[0])} has "
        f"{first[1][index]} steps but {_spec_where(other[0])} has {other[1][index]}; the "
        "sequence features of one record share their time dimension.",
        key=other[0].name,
        record_index=index,
    )


def _first_bad_record(records: Sequence[bytes], sequence: bool) -> int:
    cls = SequenceExample if sequence else Example
    for i, record in enumerate(records):
        try:
            cls.FromString(record)
        except Exception:
            return i
    return 0


def create_parse_tf_example_fn(
    feature_spec: Any, label_spec: Any = None, decode_images: bool = True
) -> ParseTFExampleFn:
    """A parse fn for batches of serialized tf.train.Example / SequenceExample records.

    Tensor2Robot's ``tfdata.create_parse_tf_example_fn``: the returned callable maps
    a list of serialized records (or ``{dataset_key: records}`` for zipped
    datasets) to ``(features, labels)`` TensorSpecStructs of batched torch tensors
    (numpy object arrays of bytes for string specs), keyed by the spec paths;
    only ``features`` when ``label_spec`` is None. See the module docstring for
    how each kind of spec is read; specs whose name is None are not parsed.

    Args:
        feature_spec: a spec structure for the features.
        label_spec: an optional spec structure for the labels.
        decode_images: decode encoded images (else return their bytes, see above).

    Raises:
        SpecError: a spec that cannot be parsed from records (unknown dims, an
            image spec of the wrong rank or dtype, a sequence that is also varlen).
    """
    return ParseTFExampleFn(feature_spec, label_spec, decode_images)
