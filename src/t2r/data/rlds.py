"""RLDS datasets as tensorflow-datasets prepares them, read and written without TensorFlow.

An RLDS dataset prepared by tfds (Open X-Embodiment's datasets, ``fractal20220817_data``
of RT-1) is a directory ``<name>/<version>/`` holding:

* ``dataset_info.json``: name, version, ``fileFormat`` (``tfrecord``), and per split
  its shards: ``filepathTemplate`` (default ``{DATASET}-{SPLIT}.{FILEFORMAT}-{SHARD_X_OF_Y}``),
  ``shardLengths`` (episodes per shard, JSON strings) and ``numBytes``.
* ``features.json``: the feature tree (protobuf JSON): a ``FeaturesDict`` whose
  ``steps`` is a ``Dataset`` (``"sequence": {"length": "-1", ...}``) of per-step
  features; the other top-level features (``episode_metadata``) are per episode.
* TFRecord shards. Each record is **one episode**, one ``tf.train.Example`` whose
  keys are the feature paths joined with ``/`` (``steps/observation/image``). Every
  per-step value is concatenated step-major into one list per key, with no length
  key: a ``(k,)`` float feature of an ``n``-step episode has ``n * k`` floats.
  int32 and bool are stored as int64, images as one encoded JPEG/PNG per step,
  text as UTF-8 bytes per step.

:func:`load_rlds_info` turns the two JSON files into an :class:`RLDSDatasetInfo`
whose ``step_spec`` is a :class:`~t2r.specs.TensorSpecStruct` of one step's
features (path ``observation/image``, name ``steps/observation/image``) and
``episode_spec`` the per-episode ones. :class:`RLDSSource` is the
:class:`~t2r.data.sources.DataSource` of one split: a unit is an **episode**, in
tfds read order (shards in index order, records in file order, as tfds reads with
``shuffle_files=False``), and an example is a **window**: the ``window_size``
consecutive steps ending at step ``t``, one per step of the episode. Steps before
the episode's start repeat step 0 (RT-1's convention); the reserved feature
:data:`WINDOW_MASK` (a ``(T,)`` bool spec) is True on real steps and False on
those repeats.

A requested spec maps to the dataset by its ``name`` (else its path), with or
without the ``steps/`` prefix: ``observation/image`` of shape ``(T, 64, 64, 3)`` is
the window of ``steps/observation/image``; a spec of one step's shape (no ``T``)
gets the value at step ``t``; ``episode_metadata/...`` specs get the episode's value.
Optional specs absent from the dataset are left out; a missing required one is an
error naming it and what the dataset has.

JPEG: tfds decodes with ``tf.image.decode_image``, whose default IDCT is TF's
``INTEGER_FAST``. :class:`RLDSSource` decodes the same way by default
(``dct_method='INTEGER_FAST'``, libjpeg-turbo's ifast through simplejpeg), so a
model sees the pixels TensorFlow would give it; ``'INTEGER_ACCURATE'`` gives
Pillow's (and t2r's TFRecord parsing's) result. On the RT-1 fixture they differ by
up to 15 levels per pixel.

:func:`write_rlds` writes episodes as such a directory (see its docstring).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, Literal, NamedTuple

import numpy as np

from t2r.atomic import atomic_write_text
from t2r.data.errors import DataError
from t2r.data.example_proto import Example
from t2r.data.image_codec import decode_image, encode_image
from t2r.data.input_generators import SourceInputGenerator
from t2r.data.tfrecord import ReadStats, TFRecordWriter, read_tfrecord_at, tfrecord_offsets
from t2r.specs import (
    ExtendedTensorSpec,
    SpecError,
    TensorSpecStruct,
    dtype_name,
    flatten_spec_structure,
    is_encoded_image_spec,
    is_string_dtype,
    numpy_dtype,
    to_tensors,
)

__all__ = [
    "WINDOW_MASK",
    "ParseRLDSWindowsFn",
    "RLDSDatasetInfo",
    "RLDSEpisode",
    "RLDSEpisodeWriter",
    "RLDSInputGenerator",
    "RLDSSource",
    "RLDSSplit",
    "RLDSWindow",
    "load_rlds_info",
    "window_spec",
    "write_rlds",
]

logger = logging.getLogger(__name__)

WINDOW_MASK = "window_mask"
"""Reserved feature name: ``(T,)`` bool, False where a window repeats step 0 before the start."""

DATASET_INFO_FILE = "dataset_info.json"
FEATURES_FILE = "features.json"
DEFAULT_FILEPATH_TEMPLATE = "{DATASET}-{SPLIT}.{FILEFORMAT}-{SHARD_X_OF_Y}"
STEPS = "steps"

DctMethod = Literal["INTEGER_ACCURATE", "INTEGER_FAST"]

_TFDS = "tensorflow_datasets.core.features."
_CLASS_NAMES = {
    "dict": _TFDS + "features_dict.FeaturesDict",
    "dataset": _TFDS + "dataset_feature.Dataset",
    "tensor": _TFDS + "tensor_feature.Tensor",
    "scalar": _TFDS + "scalar.Scalar",
    "image": _TFDS + "image_feature.Image",
    "text": _TFDS + "text_feature.Text",
}


# ----------------------------------------------------------------- the dataset's JSON files


def _shape(spec: ExtendedTensorSpec) -> tuple[int, ...]:
    """The spec's shape; RLDS features and windows have fully known shapes."""
    dims = spec.shape
    if dims is None or any(d is None for d in dims):
        raise SpecError(
            f"Spec {spec.name!r}: shape {spec.shape} is not fully known; RLDS features and "
            "windows need fixed shapes.",
            name=spec.name,
        )
    return tuple(int(d) for d in dims if d is not None)


@dataclasses.dataclass(frozen=True)
class RLDSSplit:
    """One split: its shard files (in index order) and episodes per shard."""

    name: str
    files: tuple[str, ...]
    shard_lengths: tuple[int, ...]
    num_bytes: int

    @property
    def num_episodes(self) -> int:
        return sum(self.shard_lengths)


@dataclasses.dataclass(frozen=True)
class RLDSDatasetInfo:
    """What ``dataset_info.json`` and ``features.json`` of a tfds directory say.

    Attributes:
        directory: the ``<name>/<version>`` directory.
        step_spec: one step's features; paths ``observation/image``, names
            ``steps/observation/image`` (the record keys), images with
            ``data_format`` ``'jpeg'``/``'png'``, text as string specs.
        episode_spec: the per-episode features (e.g. ``episode_metadata/file_path``).
    """

    directory: str
    name: str
    version: str
    file_format: str
    splits: Mapping[str, RLDSSplit]
    step_spec: TensorSpecStruct
    episode_spec: TensorSpecStruct

    def split(self, name: str) -> RLDSSplit:
        try:
            return self.splits[name]
        except KeyError:
            raise KeyError(
                f"{os.path.join(self.directory, DATASET_INFO_FILE)}: no split {name!r}; "
                f"it has {sorted(self.splits)}."
            ) from None


def _shard_name(template: str, dataset: str, split: str, file_format: str, i: int, n: int) -> str:
    fields = {
        "DATASET": dataset,
        "SPLIT": split,
        "FILEFORMAT": file_format,
        "SHARD_INDEX": f"{i:05d}",
        "NUM_SHARDS": f"{n:05d}",
        "SHARD_X_OF_Y": f"{i:05d}-of-{n:05d}",
    }
    try:
        return template.format(**fields)
    except (KeyError, IndexError, ValueError) as e:
        raise DataError(f"filepathTemplate {template!r}: cannot fill it in: {e!r}") from e


def _leaf_spec(where: str, node: Mapping[str, Any], name: str) -> ExtendedTensorSpec:
    """The spec of one tfds leaf feature (Tensor, Scalar, Image, Text)."""
    if "text" in node:
        return ExtendedTensorSpec((), "string", name=name)
    body = node.get("tensor", node.get("image"))
    if body is None:
        raise DataError(
            f"{where}: feature {name!r} is a {node.get('pythonClassName', '?')}, which t2r's "
            "RLDS reader does not support (Tensor, Scalar, Image, Text, FeaturesDict and "
            "the steps Dataset are)."
        )
    dims = [int(d) for d in body.get("shape", {}).get("dimensions", [])]
    if any(d < 0 for d in dims):
        raise DataError(
            f"{where}: feature {name!r} has shape {dims} with an unknown dimension; "
            "only fixed-shape tensors are supported."
        )
    encoding = body.get("encoding", "none")
    if "tensor" in node and encoding not in ("none", ""):
        raise DataError(f"{where}: feature {name!r} has encoding {encoding!r}; only 'none'.")
    dtype = body.get("dtype", "float32")
    if "image" in node:
        fmt = body.get("encodingFormat") or "png"
        return ExtendedTensorSpec(tuple(dims), dtype, name=name, data_format=fmt)
    return ExtendedTensorSpec(tuple(dims), "string" if dtype == "string" else dtype, name=name)


def _flatten_features(
    where: str, node: Mapping[str, Any], prefix: str, out: list[tuple[str, ExtendedTensorSpec]]
) -> None:
    if "featuresDict" in node:
        for key, child in node["featuresDict"].get("features", {}).items():
            _flatten_features(where, child, f"{prefix}/{key}" if prefix else key, out)
        return
    if "sequence" in node:
        raise DataError(
            f"{where}: feature {prefix!r} is a nested Dataset/Sequence; only the top-level "
            "'steps' Dataset is supported."
        )
    out.append((prefix, _leaf_spec(where, node, prefix)))


def _read_json(path: str) -> Any:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        raise DataError(f"{path}: not found; is this a tfds <name>/<version> directory?") from None
    except json.JSONDecodeError as e:
        raise DataError(f"{path}: not valid JSON: {e}") from e


def _parse_features(path: str) -> tuple[TensorSpecStruct, TensorSpecStruct]:
    root = _read_json(path)
    top = root.get("featuresDict", {}).get("features") if isinstance(root, dict) else None
    if not isinstance(top, dict) or STEPS not in top:
        raise DataError(f"{path}: expected a FeaturesDict with a 'steps' Dataset (RLDS).")
    steps = top[STEPS]
    sequence = steps.get("sequence")
    if sequence is None or "feature" not in sequence:
        raise DataError(f"{path}: 'steps' is a {steps.get('pythonClassName')}, not a Dataset.")
    step_items: list[tuple[str, ExtendedTensorSpec]] = []
    _flatten_features(path, sequence["feature"], "", step_items)
    step_spec = TensorSpecStruct(
        (key, _renamed(spec, f"{STEPS}/{key}")) for key, spec in step_items
    )
    episode_items: list[tuple[str, ExtendedTensorSpec]] = []
    for key, child in top.items():
        if key != STEPS:
            _flatten_features(path, child, key, episode_items)
    return step_spec, TensorSpecStruct(episode_items)


def _renamed(spec: ExtendedTensorSpec, name: str) -> ExtendedTensorSpec:
    return ExtendedTensorSpec(spec.shape, spec.dtype, name=name, data_format=spec.data_format)


def load_rlds_info(directory: str | os.PathLike[str]) -> RLDSDatasetInfo:
    """Reads ``dataset_info.json`` and ``features.json`` of a tfds-prepared directory.

    Raises:
        DataError: a missing or malformed file, an unsupported feature or file
            format, naming the file and the feature.
    """
    directory = os.fspath(directory)
    info_path = os.path.join(directory, DATASET_INFO_FILE)
    info = _read_json(info_path)
    name = str(info.get("name", ""))
    if not name:
        raise DataError(f"{info_path}: no dataset 'name'.")
    file_format = str(info.get("fileFormat", "tfrecord") or "tfrecord")
    if file_format != "tfrecord":
        raise DataError(f"{info_path}: fileFormat {file_format!r}; only 'tfrecord' is read.")
    splits: dict[str, RLDSSplit] = {}
    for entry in info.get("splits", []):
        split = str(entry["name"])
        lengths = tuple(int(n) for n in entry.get("shardLengths", []))
        template = entry.get("filepathTemplate") or DEFAULT_FILEPATH_TEMPLATE
        files = tuple(
            os.path.join(
                directory, _shard_name(template, name, split, file_format, i, len(lengths))
            )
            for i in range(len(lengths))
        )
        splits[split] = RLDSSplit(split, files, lengths, int(entry.get("numBytes", 0)))
    step_spec, episode_spec = _parse_features(os.path.join(directory, FEATURES_FILE))
    return RLDSDatasetInfo(
        directory=directory,
        name=name,
        version=str(info.get("version", "")),
        file_format=file_format,
        splits=splits,
        step_spec=step_spec,
        episode_spec=episode_spec,
    )


def window_spec(step_spec: Any, window_size: int) -> TensorSpecStruct:
    """``step_spec`` with a leading window dimension: ``(T, *shape)`` for every step spec."""
    return TensorSpecStruct(
        (path, ExtendedTensorSpec.from_spec(spec, shape=(window_size, *_shape(spec))))
        for path, spec in flatten_spec_structure(step_spec).items()
    )


# ----------------------------------------------------------------------------- episodes


def _values(feature: Any) -> Any:
    kind = feature.WhichOneof("kind")
    if kind is None:
        return []
    return getattr(feature, kind).value


class RLDSEpisode:
    """One episode record; a feature's values are converted on first use.

    ``step_values(path)``: ``(num_steps, *shape)`` numpy array of the spec's dtype,
    or an object array of ``bytes`` for text and encoded images.
    ``episode_value(path)``: the same for a per-episode feature (no step axis).
    """

    def __init__(self, record: bytes, info: RLDSDatasetInfo, where: str) -> None:
        self.where = where
        try:
            self._features = Example.FromString(record).features.feature
        except Exception as e:  # protobuf's DecodeError, or any parse failure
            raise DataError(f"{where}: not a tf.train.Example: {e}") from e
        self._step_spec = info.step_spec
        self._episode_spec = info.episode_spec
        self._cache: dict[str, np.ndarray] = {}
        self.num_steps = self._count_steps()

    def _count_steps(self) -> int:
        counts: dict[str, int] = {}
        for path, spec in self._step_spec.items():
            key = f"{STEPS}/{path}"
            if key not in self._features:
                continue
            size = 1 if is_encoded_image_spec(spec) else math.prod(_shape(spec))
            total = len(_values(self._features[key]))
            if size == 0 or total % size:
                raise DataError(
                    f"{self.where}: {key!r} holds {total} values, not a multiple of one "
                    f"step's {size} (shape {_shape(spec)})."
                )
            counts[key] = total // size
        if not counts:
            raise DataError(
                f"{self.where}: no 'steps/...' key of features.json in the record; it has "
                f"{sorted(self._features)[:10]}."
            )
        if len(set(counts.values())) > 1:
            raise DataError(f"{self.where}: step keys disagree on the number of steps: {counts}.")
        return next(iter(counts.values()))

    def _convert(self, key: str, spec: ExtendedTensorSpec, leading: tuple[int, ...]) -> np.ndarray:
        if key not in self._features:
            raise DataError(f"{self.where}: the record has no key {key!r}.")
        values = _values(self._features[key])
        shape = (*leading, *_shape(spec))
        if is_string_dtype(spec.dtype) or is_encoded_image_spec(spec):
            array = np.empty(len(values), dtype=object)
            array[:] = [bytes(v) for v in values]
            if is_encoded_image_spec(spec):
                return array.reshape(leading)  # one encoded image per step
            return array.reshape(shape)
        array = np.asarray(values, dtype=numpy_dtype(spec.dtype))
        try:
            return array.reshape(shape)
        except ValueError:
            raise DataError(
                f"{self.where}: {key!r} holds {array.size} values, expected shape {shape}."
            ) from None

    def step_values(self, path: str) -> np.ndarray:
        """``(num_steps, *shape)``; encoded images and text as object arrays of bytes."""
        key = f"{STEPS}/{path}"
        if key not in self._cache:
            self._cache[key] = self._convert(key, self._step_spec[path], (self.num_steps,))
        return self._cache[key]

    def episode_value(self, path: str) -> np.ndarray:
        if path not in self._cache:
            self._cache[path] = self._convert(path, self._episode_spec[path], ())
        return self._cache[path]


class RLDSWindow(NamedTuple):
    """One example of :class:`RLDSSource`: the window ending at ``step`` of ``episode``."""

    episode: RLDSEpisode
    step: int


# ------------------------------------------------------------------------------ parsing


@dataclasses.dataclass(frozen=True)
class _Field:
    out_path: str
    spec: ExtendedTensorSpec
    kind: Literal["step", "episode", "mask"]
    key: str
    windowed: bool
    image: bool  # stored as encoded images
    decode: bool


def _resolve(
    out_path: str,
    spec: ExtendedTensorSpec,
    info: RLDSDatasetInfo,
    window_size: int,
    decode_images: bool,
) -> _Field | None:
    candidates = [c for c in (spec.name, out_path) if c]
    where = f"spec {out_path!r} (name {spec.name!r})"
    shape = _shape(spec)
    for candidate in candidates:
        if candidate == WINDOW_MASK:
            if shape != (window_size,):
                raise SpecError(
                    f"{where}: the window mask has shape ({window_size},), not {shape}.",
                    name=spec.name,
                )
            return _Field(out_path, spec, "mask", candidate, True, False, False)
        step_key = candidate.removeprefix(f"{STEPS}/")
        if step_key in info.step_spec:
            stored = info.step_spec[step_key]
            stored_shape = _shape(stored)
            if shape == (window_size, *stored_shape):
                windowed = True
            elif shape == stored_shape:
                windowed = False
            else:
                raise SpecError(
                    f"{where}: shape {shape}, but {stored.name!r} has steps of shape "
                    f"{stored_shape}: expected ({window_size}, *{stored_shape}) for a window "
                    f"of {window_size} steps, or {stored_shape} for the current step.",
                    name=spec.name,
                )
            image = is_encoded_image_spec(stored)
            string_out = is_string_dtype(spec.dtype)
            if (is_string_dtype(stored.dtype) or image) != string_out and not (
                image and not string_out and numpy_dtype(spec.dtype) == np.uint8
            ):
                raise SpecError(
                    f"{where}: dtype {dtype_name(spec.dtype)}, but {stored.name!r} holds "
                    f"{'images' if image else dtype_name(stored.dtype)}.",
                    name=spec.name,
                )
            decode = image and decode_images and not string_out
            return _Field(out_path, spec, "step", step_key, windowed, image, decode)
        if candidate in info.episode_spec:
            stored = info.episode_spec[candidate]
            if shape != _shape(stored):
                raise SpecError(
                    f"{where}: shape {shape}, but the episode feature {candidate!r} has "
                    f"shape {_shape(stored)}.",
                    name=spec.name,
                )
            return _Field(out_path, spec, "episode", candidate, False, False, False)
    if spec.is_optional:
        return None
    raise SpecError(
        f"{where}: not in the RLDS dataset {info.directory}; its step features are "
        f"{list(info.step_spec)}, its episode features {list(info.episode_spec)} "
        f"(and {WINDOW_MASK!r}).",
        name=spec.name,
    )


class ParseRLDSWindowsFn:
    """Maps a list of :class:`RLDSWindow` to ``(features, labels)`` of spec-shaped tensors.

    Windowed specs ``(T, *step_shape)`` get steps ``t-T+1 .. t``, where steps before 0
    repeat step 0; step-shaped specs get step ``t``. Images are decoded to uint8
    (with ``dct_method``) unless ``decode_images`` is False or the spec is a string
    spec, which keep the encoded bytes. Picklable (it runs in DataLoader workers).
    """

    def __init__(
        self,
        info: RLDSDatasetInfo,
        feature_spec: Any,
        label_spec: Any,
        window_size: int,
        decode_images: bool = True,
        dct_method: DctMethod = "INTEGER_FAST",
    ) -> None:
        self.window_size = int(window_size)
        self.dct_method = dct_method
        self.feature_spec = flatten_spec_structure(feature_spec)
        self.label_spec = None if label_spec is None else flatten_spec_structure(label_spec)
        self._features = [
            f
            for path, spec in self.feature_spec.items()
            if (f := _resolve(path, spec, info, self.window_size, decode_images)) is not None
        ]
        self._labels = (
            None
            if self.label_spec is None
            else [
                f
                for path, spec in self.label_spec.items()
                if (f := _resolve(path, spec, info, self.window_size, decode_images)) is not None
            ]
        )

    def _column(self, field: _Field, windows: Sequence[RLDSWindow]) -> np.ndarray:
        size = self.window_size
        if field.kind == "mask":
            return np.stack([np.arange(w.step - size + 1, w.step + 1) >= 0 for w in windows])
        if field.kind == "episode":
            return np.stack([w.episode.episode_value(field.key) for w in windows])
        rows = []
        for w in windows:
            values = w.episode.step_values(field.key)
            if field.windowed:
                index = np.maximum(np.arange(w.step - size + 1, w.step + 1), 0)
                rows.append(values[index])
            else:
                rows.append(values[w.step])
        if not field.decode:
            return np.stack(rows)
        shape = _shape(field.spec)
        frame_shape = shape[1:] if field.windowed else shape
        decoded = [
            np.stack([self._decode(b, frame_shape, field, w) for b in np.atleast_1d(row)])
            for row, w in zip(rows, windows)
        ]
        out = np.stack(decoded)
        return out if field.windowed else out[:, 0]

    def _decode(
        self, data: bytes, shape: tuple[int, ...], field: _Field, window: RLDSWindow
    ) -> np.ndarray:
        try:
            return decode_image(
                data,
                shape,
                field.spec.dtype,
                key=f"{STEPS}/{field.key}",
                dct_method=self.dct_method,
            )
        except DataError as e:
            raise DataError(
                f"{window.episode.where}, window ending at step {window.step}: {e}"
            ) from e

    def _struct(self, fields: list[_Field], spec: Any, windows: Sequence[RLDSWindow]) -> Any:
        columns = TensorSpecStruct((f.out_path, self._column(f, windows)) for f in fields)
        return to_tensors(columns, spec)

    def __call__(self, examples: Sequence[RLDSWindow]) -> tuple[Any, Any]:
        features = self._struct(self._features, self.feature_spec, examples)
        labels = None
        if self._labels is not None:
            labels = self._struct(self._labels, self.label_spec, examples)
        return features, labels


# ------------------------------------------------------------------------------- source


class RLDSSource:
    """One split of a tfds-prepared RLDS directory as a DataSource of step windows.

    A unit is an episode (``<shard file>#<record index>``, sorted in tfds read
    order); its examples are the windows ending at each of its steps, in order
    (``location`` is the step index). See the module docstring for windows, the
    feature mapping and JPEG decoding.

    Args:
        directory: the ``<name>/<version>`` directory (``dataset_info.json`` in it).
        split: the split to read (``'train'``, ``'val'``, ...).
        window_size: T, the steps per window (RT-1: 6).
        dct_method: JPEG IDCT, ``'INTEGER_FAST'`` (tfds' default) or ``'INTEGER_ACCURATE'``.
        verify_crc: check the records' crcs.
    """

    growing = False

    def __init__(
        self,
        directory: str | os.PathLike[str],
        split: str = "train",
        window_size: int = 6,
        *,
        dct_method: DctMethod = "INTEGER_FAST",
        verify_crc: bool = True,
    ) -> None:
        if window_size < 1:
            raise ValueError(f"window_size must be >= 1, got {window_size}.")
        if dct_method not in ("INTEGER_FAST", "INTEGER_ACCURATE"):
            raise ValueError(f"dct_method must be INTEGER_FAST or INTEGER_ACCURATE: {dct_method!r}")
        self.info = load_rlds_info(directory)
        self.split = self.info.split(split)
        self.window_size = int(window_size)
        self.dct_method: DctMethod = dct_method
        self.verify_crc = verify_crc
        self._units: dict[str, tuple[str, int]] = {}
        for path, count in zip(self.split.files, self.split.shard_lengths):
            for index in range(count):
                self._units[f"{os.path.basename(path)}#{index:07d}"] = (path, index)
        self._offsets: dict[str, list[int]] = {}
        self._lengths: dict[str, int] = {}

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.info.name} {self.info.version}, split "
            f"{self.split.name!r}, {self.split.num_episodes} episodes, window {self.window_size})"
        )

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_offsets"] = {}  # each process walks the headers it needs
        return state

    def units(self) -> list[str]:
        return sorted(self._units)

    def _record_offset(self, path: str, index: int) -> int:
        offsets = self._offsets.get(path)
        if offsets is None:
            if not os.path.isfile(path):
                raise DataError(
                    f"{path}: shard of split {self.split.name!r} listed by "
                    f"{DATASET_INFO_FILE} is missing."
                )
            offsets = tfrecord_offsets(path)
            declared = self.split.shard_lengths[self.split.files.index(path)]
            if len(offsets) != declared:
                raise DataError(
                    f"{path}: {len(offsets)} records, but {DATASET_INFO_FILE} says "
                    f"shardLengths {declared}."
                )
            self._offsets[path] = offsets
        return offsets[index]

    def episode(self, unit: str) -> RLDSEpisode:
        """The episode of ``unit`` (one of :meth:`units`)."""
        try:
            path, index = self._units[unit]
        except KeyError:
            raise KeyError(f"{self!r} has no episode {unit!r}.") from None
        offset = self._record_offset(path, index)
        record = read_tfrecord_at(path, offset, verify_crc=self.verify_crc)
        return RLDSEpisode(record, self.info, f"{path}: episode {index} (record at byte {offset})")

    def episodes(self) -> Iterator[RLDSEpisode]:
        """Every episode of the split, in tfds read order (``shuffle_files=False``)."""
        for unit in self.units():
            yield self.episode(unit)

    def read(self, unit: str, stats: ReadStats) -> Iterator[tuple[int, RLDSWindow]]:
        episode = self.episode(unit)
        self._lengths[unit] = episode.num_steps
        for step in range(episode.num_steps):
            yield step, RLDSWindow(episode, step)

    def length(self, unit: str) -> int:
        """Windows in ``unit``: its number of steps (parses the record, decodes no image)."""
        if unit not in self._lengths:
            self._lengths[unit] = self.episode(unit).num_steps
        return self._lengths[unit]

    def make_parse_fn(
        self, feature_spec: Any, label_spec: Any, decode_images: bool
    ) -> ParseRLDSWindowsFn:
        return ParseRLDSWindowsFn(
            self.info, feature_spec, label_spec, self.window_size, decode_images, self.dct_method
        )


class RLDSInputGenerator(SourceInputGenerator):
    """Batches of step windows from one split of an RLDS directory (:class:`RLDSSource`).

    Args:
        directory, split, window_size, dct_method: as for :class:`RLDSSource`.
        batch_size: windows per batch.
        Other arguments as for :class:`t2r.data.SourceInputGenerator` (workers,
        shuffle buffer, cycle length, seed, ranks).
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        split: str = "train",
        window_size: int = 6,
        batch_size: int = 32,
        *,
        dct_method: DctMethod = "INTEGER_FAST",
        **kwargs: Any,
    ) -> None:
        source = RLDSSource(directory, split, window_size, dct_method=dct_method)
        kwargs.setdefault("label", f"RLDS {source.info.name}:{split}")
        super().__init__(source, batch_size, **kwargs)


# ------------------------------------------------------------------------------- writing

_STANDARD_STEP_SPECS = (
    ("is_first", "bool"),
    ("is_last", "bool"),
    ("is_terminal", "bool"),
    ("reward", "float32"),
    ("discount", "float32"),
)


def _feature_json(spec: ExtendedTensorSpec) -> dict[str, Any]:
    """One leaf of features.json, as tfds writes it (protobuf JSON: integers as strings)."""
    dims = _shape(spec)
    shape = {"dimensions": [str(d) for d in dims]} if dims else {}
    if is_encoded_image_spec(spec):
        return {
            "pythonClassName": _CLASS_NAMES["image"],
            "image": {
                "shape": shape,
                "dtype": str(numpy_dtype(spec.dtype)),
                "encodingFormat": str(spec.data_format).lower().replace("jpg", "jpeg"),
            },
        }
    if is_string_dtype(spec.dtype) and not spec.shape:
        return {"pythonClassName": _CLASS_NAMES["text"], "text": {}}
    dtype = "string" if is_string_dtype(spec.dtype) else str(numpy_dtype(spec.dtype))
    return {
        "pythonClassName": _CLASS_NAMES["tensor" if spec.shape else "scalar"],
        "tensor": {"shape": shape, "dtype": dtype, "encoding": "none"},
    }


def _features_tree(items: Iterable[tuple[str, ExtendedTensorSpec]]) -> dict[str, Any]:
    root: dict[str, Any] = {}
    for path, spec in items:
        node = root
        *parents, leaf = path.split("/")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = _feature_json(spec)

    def wrap(tree: dict[str, Any]) -> dict[str, Any]:
        features = {k: (v if "pythonClassName" in v else wrap(v)) for k, v in sorted(tree.items())}
        return {"pythonClassName": _CLASS_NAMES["dict"], "featuresDict": {"features": features}}

    return wrap(root)


def _full_step_spec(step_spec: Any) -> TensorSpecStruct:
    spec = TensorSpecStruct(
        (path, _renamed(s, f"{STEPS}/{path}"))
        for path, s in flatten_spec_structure(step_spec).items()
    )
    for key, dtype in _STANDARD_STEP_SPECS:
        if key not in spec:
            spec[key] = ExtendedTensorSpec((), dtype, name=f"{STEPS}/{key}")
    return spec


def _flatten_episode(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"steps": {"observation": {...}}}`` -> ``{"steps/observation/...": value}``."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        path = f"{prefix}/{key}" if prefix else str(key)
        if isinstance(value, Mapping):
            flat.update(_flatten_episode(value, path))
        else:
            flat[path] = value
    return flat


def _episode_record(
    episode: Mapping[str, Any],
    step_spec: TensorSpecStruct,
    episode_spec: TensorSpecStruct,
    index: int,
    image_quality: int,
) -> bytes:
    flat = _flatten_episode(episode)
    where = f"write_rlds: episode {index}"
    lengths = {k: len(v) for k, v in flat.items() if k.startswith(f"{STEPS}/")}
    if not lengths or len(set(lengths.values())) != 1:
        raise ValueError(f"{where}: step arrays must share their length, got {lengths}.")
    n = next(iter(lengths.values()))
    derived = {
        "is_first": np.arange(n) == 0,
        "is_last": np.arange(n) == n - 1,
        "reward": np.zeros(n, np.float32),
        "discount": np.ones(n, np.float32),
    }
    example = Example()
    feature = example.features.feature

    def put(key: str, spec: ExtendedTensorSpec, value: Any, leading: tuple[int, ...]) -> None:
        if is_encoded_image_spec(spec):
            frames = []
            for frame in value:
                if isinstance(frame, (bytes, bytearray)):
                    frames.append(bytes(frame))
                else:
                    array = np.asarray(frame)
                    if array.shape != _shape(spec):
                        raise ValueError(
                            f"{where}: {key!r} frame of shape {array.shape}, spec {spec.shape}."
                        )
                    frames.append(encode_image(array, spec.data_format, quality=image_quality))  # type: ignore[arg-type]
            feature[key].bytes_list.value.extend(frames)
            return
        if is_string_dtype(spec.dtype):
            items = np.asarray(value, dtype=object).reshape(-1)
            feature[key].bytes_list.value.extend(
                v.encode() if isinstance(v, str) else bytes(v) for v in items
            )
            return
        array = np.asarray(value)
        expected = (*leading, *_shape(spec))
        if array.shape != expected:
            raise ValueError(f"{where}: {key!r} has shape {array.shape}, expected {expected}.")
        if np.issubdtype(numpy_dtype(spec.dtype), np.floating):
            feature[key].float_list.value.extend(array.astype(np.float32).reshape(-1).tolist())
        else:
            feature[key].int64_list.value.extend(array.astype(np.int64).reshape(-1).tolist())

    for path, spec in step_spec.items():
        key = f"{STEPS}/{path}"
        if key in flat:
            value = flat[key]
        elif path == "is_terminal":
            value = derived["is_last"]
        elif path in derived:
            value = derived[path]
        else:
            raise ValueError(f"{where}: no {key!r}; the step spec asks for it.")
        put(key, spec, value, (n,))
    for path, spec in episode_spec.items():
        if path not in flat:
            raise ValueError(f"{where}: no {path!r}; the episode spec asks for it.")
        put(path, spec, flat[path], ())
    extra = set(flat) - {f"{STEPS}/{p}" for p in step_spec} - set(episode_spec)
    if extra:
        raise ValueError(f"{where}: keys {sorted(extra)} are in no spec.")
    return bytes(example.SerializeToString(deterministic=True))


def write_rlds(
    directory: str | os.PathLike[str],
    episodes: Iterable[Mapping[str, Any]],
    step_spec: Any,
    *,
    name: str,
    version: str = "1.0.0",
    split: str = "train",
    episode_spec: Any = None,
    num_shards: int | None = None,
    description: str = "",
    image_quality: int = 95,
) -> RLDSDatasetInfo:
    """Writes episodes as one split of a tfds-prepared RLDS directory.

    The layout is the one :func:`load_rlds_info` and :class:`RLDSSource` read and
    tfds writes (``tfds.builder_from_directory(directory)`` reads it by format):
    ``dataset_info.json``, ``features.json`` and TFRecord shards
    ``<name>-<split>.tfrecord-XXXXX-of-YYYYY``, one Example per episode, keys
    flattened with ``/`` and values concatenated step-major. Episodes go to the
    shards in the order given (tfds would shuffle them by key hash; nothing here
    depends on that).

    Args:
        directory: the ``<name>/<version>`` directory; created if needed. Writing
            another split into it adds that split (features must be equal);
            rewriting a split replaces it.
        episodes: each ``{"steps": {step path: values (n, ...)}, "episode_metadata":
            {...}}`` (nested dicts or flat ``steps/...`` keys). Images may be uint8
            frames (encoded with the spec's ``data_format``) or encoded bytes; text
            ``str`` or ``bytes``. ``is_first``, ``is_last``, ``is_terminal``
            (= is_last), ``reward`` (0) and ``discount`` (1) are filled in when the
            step spec and episode leave them out.
        step_spec: one step's features: paths ``observation/image``, shapes without
            the step axis, images with ``data_format`` ``'jpeg'`` or ``'png'``.
        name, version, description: the dataset's, in ``dataset_info.json``.
        split: the split written.
        episode_spec: per-episode features (e.g. ``episode_metadata/file_path``).
        num_shards: shards of the split (None: one per 64 MiB of records).
        image_quality: JPEG quality.

    The records are held in memory until the shards are written (the size of the
    split on disk). Each shard is written atomically, ``dataset_info.json`` last.

    Returns:
        The :class:`RLDSDatasetInfo` of the directory as written.
    """
    directory = os.fspath(directory)
    os.makedirs(directory, exist_ok=True)
    steps = _full_step_spec(step_spec)
    metadata = TensorSpecStruct(
        (path, _renamed(s, path)) for path, s in flatten_spec_structure(episode_spec or {}).items()
    )
    records = [
        _episode_record(e, steps, metadata, i, image_quality) for i, e in enumerate(episodes)
    ]
    if not records:
        raise ValueError(f"write_rlds: no episodes for split {split!r} of {directory}.")
    total = sum(len(r) for r in records)
    shards = num_shards or max(1, math.ceil(total / (64 << 20)))
    shards = min(shards, len(records))
    features = {
        "pythonClassName": _CLASS_NAMES["dict"],
        "featuresDict": {
            "features": {
                **_features_tree(metadata.items())["featuresDict"]["features"],
                STEPS: {
                    "pythonClassName": _CLASS_NAMES["dataset"],
                    "sequence": {"feature": _features_tree(steps.items()), "length": "-1"},
                },
            }
        },
    }
    features_text = json.dumps(features, indent=2, sort_keys=True)
    info_path = os.path.join(directory, DATASET_INFO_FILE)
    features_path = os.path.join(directory, FEATURES_FILE)
    old_splits: list[dict[str, Any]] = []
    if os.path.exists(info_path):
        old = _read_json(info_path)
        if old.get("name") != name or str(old.get("version")) != version:
            raise ValueError(
                f"{info_path}: holds {old.get('name')} {old.get('version')}, not {name} {version}."
            )
        if _read_json(features_path) != features:
            raise ValueError(f"{features_path}: the existing split has other features.")
        old_splits = [s for s in old.get("splits", []) if s.get("name") != split]
    bounds = np.linspace(0, len(records), shards + 1).round().astype(int)
    lengths, num_bytes, files = [], 0, []
    for i in range(shards):
        path = os.path.join(
            directory,
            _shard_name(DEFAULT_FILEPATH_TEMPLATE, name, split, "tfrecord", i, shards),
        )
        with TFRecordWriter(path) as writer:
            for record in records[bounds[i] : bounds[i + 1]]:
                writer.write(record)
        lengths.append(str(int(bounds[i + 1] - bounds[i])))
        num_bytes += os.path.getsize(path)
        files.append(path)
    info = {
        "description": description,
        "fileFormat": "tfrecord",
        "moduleName": "t2r.data.rlds",
        "name": name,
        "splits": [
            *old_splits,
            {
                "filepathTemplate": DEFAULT_FILEPATH_TEMPLATE,
                "name": split,
                "numBytes": str(num_bytes),
                "shardLengths": lengths,
            },
        ],
        "version": version,
    }
    atomic_write_text(features_path, features_text)
    atomic_write_text(info_path, json.dumps(info, indent=2, sort_keys=True))
    # Shards of an earlier write of this split with another shard count are stale now.
    prefix = f"{name}-{split}.tfrecord-"
    for entry in os.listdir(directory):
        full = os.path.join(directory, entry)
        if entry.startswith(prefix) and full not in files:
            os.remove(full)
    logger.info(
        "wrote %d episodes of %s:%s in %d shards to %s",
        len(records),
        name,
        split,
        shards,
        directory,
    )
    return load_rlds_info(directory)


class RLDSEpisodeWriter:
    """A replay writer that writes RLDS: ``t2r.collect.run_env(..., replay_writer=...)``.

    ``open(path)`` starts a dataset directory at ``path`` (run_env passes a unique
    name under ``<root_dir>/policy_<tag>/``); ``write(episodes)`` takes what the
    ``episode_to_transitions_fn`` made of one episode: a list of `write_rlds`
    episode dicts (usually one; none to skip the episode); ``close()`` writes the
    directory with `write_rlds` (nothing when no episode came). ``paths`` lists
    the directories written, which `RLDSSource` reads.

    Args:
        step_spec, name, version, split, episode_spec, num_shards: as for `write_rlds`.
    """

    def __init__(
        self,
        step_spec: Any,
        *,
        name: str,
        version: str = "1.0.0",
        split: str = "train",
        episode_spec: Any = None,
        num_shards: int | None = None,
    ) -> None:
        self.step_spec = step_spec
        self.name, self.version, self.split = name, version, split
        self.episode_spec = episode_spec
        self.num_shards = num_shards
        self.paths: list[str] = []
        self.num_episodes = 0
        self._path: str | None = None
        self._episodes: list[Mapping[str, Any]] = []

    @property
    def is_open(self) -> bool:
        return self._path is not None

    def open(self, path: str | os.PathLike[str]) -> None:
        if self._path is not None:
            raise ValueError(f"RLDSEpisodeWriter is already open (on {self._path}).")
        self._path = os.fspath(path)
        self._episodes = []

    def write(self, episodes: Sequence[Mapping[str, Any]]) -> None:
        if self._path is None:
            raise ValueError("RLDSEpisodeWriter.write() before open().")
        self._episodes.extend(episodes)

    def close(self) -> None:
        path, episodes = self._path, self._episodes
        self._path, self._episodes = None, []
        if path is None or not episodes:
            return
        write_rlds(
            path,
            episodes,
            self.step_spec,
            name=self.name,
            version=self.version,
            split=self.split,
            episode_spec=self.episode_spec,
            num_shards=self.num_shards,
        )
        self.paths.append(path)
        self.num_episodes += len(episodes)
