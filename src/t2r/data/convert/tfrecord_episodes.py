"""T2R TFRecords as episodes: one ``tf.train.Example`` per step.

Written layout (a directory)::

    DST/
      episodes-00000-of-00002.tfrecord   one Example per step, episodes whole and in order
      episodes-00001-of-00002.tfrecord
      t2r_episodes.json                  step specs, the episodes (id, steps, file, metadata)

Each record holds the step's features under their step paths (``observation/image``
as an encoded image, floats as float_list, integers and bools as int64_list, text
as UTF-8 bytes), plus ``episode_id`` and ``step_id`` (int64 scalars). This is the
record layout ``t2r collect`` writes (one record per transition), so a trainer's
``DefaultRecordInputGenerator`` reads the converted files with a spec of the
step's features, and ``t2r_episodes.json`` keeps what records cannot say: exact
dtypes and shapes, and each episode's metadata.

Reading accepts more than that layout: a file, a directory or a glob of TFRecord
files of ``tf.train.Example`` or ``tf.train.SequenceExample`` records.

* With ``t2r_episodes.json`` beside the files, its specs decode the records.
  Otherwise specs are inferred from the first record: float_list -> float32
  ``(k,)``, int64_list -> int64 ``(k,)``, one JPEG/PNG -> a uint8 image, other
  bytes -> text.
* Episode boundaries: the ``episode_id`` feature where records have it; else a
  true ``is_last`` or ``done`` ends an episode (what ``t2r collect`` writes); else
  every Example is an episode of one step (Tensor2Robot's grasping and pose_env
  data: one record per single-step episode; a warning says so).
* A SequenceExample is one episode: its feature_lists are the steps, its context
  features are repeated on every step.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import numpy as np

import t2r
from t2r.atomic import atomic_directory, atomic_write_text
from t2r.data.convert.common import (
    IMAGE_FORMATS_KEY,
    PRIVATE_KEYS,
    Losses,
    check_same_spec,
    encoded_frames,
    jsonable,
    remember_encoded,
    step_spec,
    text_array,
)
from t2r.data.episodes import Episode
from t2r.data.errors import DataError
from t2r.data.example_proto import Example, SequenceExample
from t2r.data.image_codec import decode_image, detect_image_format, encode_image
from t2r.data.tfrecord import TFRecordWriter, expand_file_patterns, read_tfrecord_with_offsets
from t2r.specs import (
    ExtendedTensorSpec,
    TensorSpecStruct,
    is_encoded_image_spec,
    is_string_dtype,
    numpy_dtype,
)

__all__ = [
    "EPISODES_FILE",
    "EPISODE_ID",
    "STEP_ID",
    "is_tfrecord_file",
    "read_tfrecord_episodes",
    "tfrecord_files",
    "write_tfrecord_episodes",
]

logger = logging.getLogger(__name__)

EPISODES_FILE = "t2r_episodes.json"
EPISODE_ID = "episode_id"
STEP_ID = "step_id"
END_KEYS = ("is_last", "done")
_FORMAT = "t2r_tfrecord_episodes"
_FORMAT_VERSION = 1
_SHARD_BYTES = 256 << 20
_TFRECORD_SUFFIXES = (".tfrecord", ".tfrecords", ".rio", ".recordio")


# ------------------------------------------------------------------------------ finding


def is_tfrecord_file(path: str) -> bool:
    """Whether `path` starts like a TFRecord file, plain or GZIP-compressed (a
    length whose crc checks out). An empty file is one of no records when its
    name says so."""
    import gzip

    from t2r.data.tfrecord import masked_crc32c

    try:
        with open(path, "rb") as f:
            header = f.read(12)
            if header[:2] == b"\x1f\x8b":
                f.seek(0)
                with gzip.GzipFile(fileobj=f) as stream:
                    header = stream.read(12)
    except (OSError, EOFError):
        return False
    if not header:
        return path.endswith(_TFRECORD_SUFFIXES)
    if len(header) < 12:
        return False
    return masked_crc32c(header[:8]) == int.from_bytes(header[8:12], "little")


def tfrecord_files(path: str | os.PathLike[str]) -> list[str]:
    """The TFRecord files of `path`: itself, the files of a directory (not
    temporary names, not ``t2r_episodes.json``), or a glob's matches."""
    path = os.fspath(path)
    if os.path.isdir(path):
        files = sorted(
            os.path.join(path, name)
            for name in os.listdir(path)
            if not name.startswith(".")
            and name != EPISODES_FILE
            and os.path.isfile(os.path.join(path, name))
            and is_tfrecord_file(os.path.join(path, name))
        )
        if not files:
            raise DataError(f"{path}: a directory without TFRecord files.")
        return files
    if os.path.isfile(path):
        return [path]
    try:
        return expand_file_patterns(path)
    except ValueError as e:
        raise DataError(f"{path}: {e}") from None


def _sidecar(path: str, files: list[str]) -> dict[str, Any] | None:
    directory = path if os.path.isdir(path) else os.path.dirname(files[0])
    sidecar = os.path.join(directory, EPISODES_FILE)
    if not os.path.isfile(sidecar):
        return None
    try:
        with open(sidecar, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        raise DataError(f"{sidecar}: cannot read it as JSON: {e}") from e
    if not isinstance(data, dict) or data.get("format") != _FORMAT:
        raise DataError(f"{sidecar}: not a {_FORMAT} file (its 'format' is missing or other).")
    return data


# ------------------------------------------------------------------------------ decoding


def _values(feature: Any) -> Any:
    kind = feature.WhichOneof("kind")
    return [] if kind is None else getattr(feature, kind).value


def infer_spec(key: str, feature: Any, where: str) -> ExtendedTensorSpec:
    """The spec of one record feature, from its kind and values (see the module doc)."""
    kind = feature.WhichOneof("kind")
    values = _values(feature)
    if kind == "bytes_list":
        fmt = detect_image_format(values[0]) if len(values) == 1 else None
        if fmt is not None:
            shape, dtype = _image_shape(values[0], f"{where}: {key!r}")
            return ExtendedTensorSpec(shape, dtype, name=key, data_format=fmt)
        return ExtendedTensorSpec(() if len(values) == 1 else (len(values),), "string", name=key)
    if kind == "float_list":
        return ExtendedTensorSpec((len(values),), "float32", name=key)
    if kind == "int64_list":
        return ExtendedTensorSpec((len(values),), "int64", name=key)
    raise DataError(f"{where}: feature {key!r} holds no list (empty Feature); cannot infer it.")


def _image_shape(data: bytes, where: str) -> tuple[tuple[int, int, int], Any]:
    """``(H, W, C)`` and dtype of an encoded image, from its header (Pillow's view:
    a 16-bit PNG of 3 or 4 channels reads as 8-bit here)."""
    import io

    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as image:
            width, height = image.size
            mode = image.mode
    except Exception as e:  # Pillow raises many kinds
        raise DataError(f"{where}: cannot read the image header: {e}") from e
    channels = {"L": 1, "P": 3, "RGB": 3, "RGBA": 4, "LA": 2, "CMYK": 3, "YCbCr": 3}
    if mode.startswith("I"):
        return (height, width, 1), np.uint16
    return (height, width, channels.get(mode, 3)), np.uint8


def _decode(feature: Any, spec: ExtendedTensorSpec, where: str) -> np.ndarray:
    values = _values(feature)
    shape = tuple(int(d or 0) for d in spec.shape or ())
    key = spec.name or "?"
    if is_encoded_image_spec(spec):
        frame = shape[-3:]
        images = [decode_image(v, frame, spec.dtype, key=f"{where}: {key}") for v in values]
        if len(shape) == 3:
            if len(images) != 1:
                raise DataError(f"{where}: {key!r} holds {len(images)} images, expected 1.")
            return images[0]
        return np.stack(images).reshape(shape)
    if is_string_dtype(spec.dtype):
        if len(values) != math.prod(shape):
            raise DataError(f"{where}: {key!r} holds {len(values)} strings, expected {shape}.")
        return text_array(values, shape)
    array = np.asarray(values, dtype=numpy_dtype(spec.dtype))
    if array.size != math.prod(shape):
        raise DataError(
            f"{where}: {key!r} holds {array.size} values, expected shape {shape} "
            f"({math.prod(shape)} values)."
        )
    return array.reshape(shape)


def _specs_from_sidecar(data: Mapping[str, Any], where: str) -> TensorSpecStruct:
    try:
        return TensorSpecStruct(
            (path, ExtendedTensorSpec.from_dict(spec)) for path, spec in data["step_spec"].items()
        )
    except Exception as e:
        raise DataError(f"{where}: its 'step_spec' is not a spec dict: {e}") from e


class _Group:
    """Steps of the episode being assembled."""

    def __init__(self) -> None:
        self.steps: list[dict[str, np.ndarray]] = []
        self.encoded: dict[str, list[bytes]] = {}
        self.episode_id: int | None = None

    def add(self, step: dict[str, np.ndarray], encoded: Mapping[str, list[bytes]]) -> None:
        self.steps.append(step)
        for key, frames in encoded.items():
            self.encoded.setdefault(key, []).extend(frames)


def _stack(steps: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    return {key: np.stack([s[key] for s in steps]) for key in steps[0]}


def read_tfrecord_episodes(
    path: str | os.PathLike[str], losses: Losses | None = None
) -> Iterator[Episode]:
    """The episodes of T2R TFRecord files (see the module docstring for the rules).

    Raises:
        DataError: unreadable files or records, naming the file and byte offset.
    """
    path = os.fspath(path)
    losses = losses or Losses(path)
    files = tfrecord_files(path)
    sidecar = _sidecar(path, files)
    where_sidecar = os.path.join(os.path.dirname(files[0]), EPISODES_FILE)
    spec = _specs_from_sidecar(sidecar, where_sidecar) if sidecar is not None else None
    metadata: dict[int, dict[str, Any]] = {}
    if sidecar is not None:
        for entry in sidecar.get("episodes", []):
            metadata[int(entry["episode_id"])] = dict(entry.get("metadata", {}))
    single_step_noted = False
    for file in files:
        group = _Group()
        boundary: str | None = None
        for offset, record in read_tfrecord_with_offsets(file, compression="auto"):
            where = f"{file}: record at byte {offset}"
            try:
                message = SequenceExample.FromString(record)
            except Exception as e:
                raise DataError(f"{where}: not a tf.train.Example: {e}") from e
            if message.feature_lists.feature_list:
                if group.steps:
                    yield _episode(group, metadata, spec)
                    group = _Group()
                yield _sequence_episode(message, where, losses)
                continue
            features = message.context.feature
            if spec is None:
                spec = TensorSpecStruct(
                    (key, infer_spec(key, features[key], where))
                    for key in sorted(features)
                    if key not in (EPISODE_ID, STEP_ID)
                )
            if boundary is None:
                boundary = (
                    EPISODE_ID
                    if EPISODE_ID in features
                    else next((k for k in END_KEYS if k in features), "record")
                )
                if boundary == "record" and not single_step_noted:
                    single_step_noted = True
                    losses.note(
                        "single-step",
                        f"records of {file} carry no {EPISODE_ID!r}, 'is_last' or 'done' "
                        "feature; each record is read as an episode of one step.",
                    )
            step = {}
            encoded_steps: dict[str, list[bytes]] = {}
            for key, key_spec in spec.items():
                name = key_spec.name or key
                if name not in features:
                    raise DataError(
                        f"{where}: no feature {name!r}; the first record (or "
                        f"{EPISODES_FILE}) has {sorted(spec)}."
                    )
                step[key] = _decode(features[name], key_spec, where)
                if is_encoded_image_spec(key_spec) and step[key].ndim == 3:
                    encoded_steps.setdefault(key, []).append(_values(features[name])[0])
            if boundary == EPISODE_ID:
                if EPISODE_ID not in features:
                    raise DataError(f"{where}: no {EPISODE_ID!r}, which earlier records have.")
                episode_id = int(_values(features[EPISODE_ID])[0])
                if group.steps and episode_id != group.episode_id:
                    yield _episode(group, metadata, spec)
                    group = _Group()
                group.episode_id = episode_id
                group.add(step, encoded_steps)
            elif boundary in END_KEYS:
                group.add(step, encoded_steps)
                if bool(np.any(step[boundary])):
                    yield _episode(group, metadata, spec)
                    group = _Group()
            else:
                group.add(step, encoded_steps)
                yield _episode(group, metadata, spec)
                group = _Group()
        if group.steps:
            if boundary in END_KEYS:
                losses.note(
                    f"unfinished:{file}",
                    f"in {file}, the last {len(group.steps)} records have no true {boundary!r}; "
                    "read as one (unfinished) episode.",
                )
            yield _episode(group, metadata, spec)


def _episode(
    group: _Group, metadata: Mapping[int, dict[str, Any]], spec: TensorSpecStruct | None
) -> Episode:
    meta = dict(metadata.get(group.episode_id, {})) if group.episode_id is not None else {}
    formats = {
        key: str(s.data_format) for key, s in (spec or {}).items() if is_encoded_image_spec(s)
    }
    if formats:
        meta.setdefault(IMAGE_FORMATS_KEY, formats)
    steps = _stack(group.steps)
    for key, frames in group.encoded.items():
        if len(frames) == len(group.steps):
            remember_encoded(meta, key, frames, steps[key])
    return Episode(steps, meta)


def _sequence_episode(message: Any, where: str, losses: Losses) -> Episode:
    lists = message.feature_lists.feature_list
    steps: dict[str, np.ndarray] = {}
    length = None
    for key in sorted(lists):
        features = list(lists[key].feature)
        if length is None:
            length = len(features)
        if len(features) != length:
            raise DataError(
                f"{where}: feature_list {key!r} has {len(features)} steps, others {length}."
            )
        if not features:
            continue
        spec = infer_spec(key, features[0], where)
        steps[key] = np.stack([_decode(f, spec, where) for f in features])
    if not length:
        raise DataError(f"{where}: a SequenceExample with no steps.")
    context = message.context.feature
    if context:
        losses.note(
            "sequence-context",
            "SequenceExample context features are repeated on every step of the episode.",
        )
    for key in sorted(context):
        spec = infer_spec(key, context[key], where)
        value = _decode(context[key], spec, where)
        steps.setdefault(key, np.stack([value] * length))
    return Episode(steps, {})


# ------------------------------------------------------------------------------ writing


def write_tfrecord_episodes(
    path: str | os.PathLike[str],
    episodes: Iterable[Episode],
    *,
    image_format: str | None = None,
    jpeg_quality: int = 95,
    shard_bytes: int = _SHARD_BYTES,
    losses: Losses | None = None,
) -> dict[str, Any]:
    """Writes `episodes` as a directory of step records (see the module docstring).

    The directory appears whole or not at all (built under a temporary name and
    renamed); an existing one is replaced. Images are encoded as `image_format`
    (default: the source's format, else PNG); a new shard starts once one holds
    `shard_bytes` (episodes are never split over shards). float64 values are
    stored as float32 (TFRecord has no double list; noted in `losses`).

    Returns the contents of ``t2r_episodes.json``.
    """
    path = os.fspath(path)
    losses = losses or Losses(path)
    entries: list[dict[str, Any]] = []
    first_spec: TensorSpecStruct | None = None
    with atomic_directory(path) as tmp:
        shard_paths: list[str] = []
        writer: TFRecordWriter | None = None
        written = 0
        for index, episode in enumerate(episodes):
            spec = step_spec(episode, image_format)  # type: ignore[arg-type]
            if first_spec is None:
                first_spec = spec
                for key in (EPISODE_ID, STEP_ID):
                    if key in spec:
                        raise ValueError(
                            f"{path}: the step feature {key!r} is reserved for the record's "
                            "episode and step index."
                        )
                for key, s in spec.items():
                    if not is_string_dtype(s.dtype) and numpy_dtype(s.dtype) == np.float64:
                        losses.note(
                            f"float64:{key}",
                            f"{key!r} is float64; TFRecord stores float32 (precision lost).",
                        )
            else:
                check_same_spec(path, first_spec, spec, index)
            if writer is None or written >= shard_bytes:
                if writer is not None:
                    writer.close()
                shard = os.path.join(os.fspath(tmp), f"episodes-{len(shard_paths):05d}.tfrecord")
                shard_paths.append(shard)
                writer = TFRecordWriter(shard)
                written = 0
            encoded = {
                key: frames
                for key, s in first_spec.items()
                if is_encoded_image_spec(s)
                and (frames := encoded_frames(episode, key, str(s.data_format))) is not None
            }
            for t in range(episode.num_steps):
                record = _step_record(episode, first_spec, index, t, jpeg_quality, encoded)
                writer.write(record)
                written += len(record)
            entries.append(
                {
                    "episode_id": index,
                    "num_steps": episode.num_steps,
                    "file": len(shard_paths) - 1,
                    "metadata": jsonable(_stored_metadata(episode, first_spec), "metadata", losses),
                }
            )
        if writer is not None:
            writer.close()
        if first_spec is None:
            raise ValueError(f"{path}: no episodes to write.")
        names = []
        for i, shard in enumerate(shard_paths):
            name = f"episodes-{i:05d}-of-{len(shard_paths):05d}.tfrecord"
            os.replace(shard, os.path.join(os.fspath(tmp), name))
            names.append(name)
        for entry in entries:
            entry["file"] = names[entry["file"]]
        sidecar = {
            "format": _FORMAT,
            "format_version": _FORMAT_VERSION,
            "t2r_version": t2r.__version__,
            "layout": "one tf.train.Example per step; episode_id and step_id int64 features",
            "step_spec": {key: s.to_dict() for key, s in first_spec.items()},
            "num_episodes": len(entries),
            "num_steps": sum(e["num_steps"] for e in entries),
            "episodes": entries,
        }
        atomic_write_text(
            os.path.join(os.fspath(tmp), EPISODES_FILE), json.dumps(sidecar, indent=1)
        )
    logger.info("wrote %d episodes to %s", len(entries), path)
    return sidecar


def _stored_metadata(episode: Episode, spec: TensorSpecStruct) -> dict[str, Any]:
    """The episode's metadata, its image formats the ones written."""
    metadata = {
        k: v
        for k, v in episode.metadata.items()
        if k != IMAGE_FORMATS_KEY and k not in PRIVATE_KEYS
    }
    formats = {k: str(s.data_format) for k, s in spec.items() if is_encoded_image_spec(s)}
    if formats:
        metadata[IMAGE_FORMATS_KEY] = formats
    return metadata


def _step_record(
    episode: Episode,
    spec: TensorSpecStruct,
    episode_id: int,
    t: int,
    jpeg_quality: int,
    encoded: Mapping[str, list[bytes | None]],
) -> bytes:
    example = Example()
    feature = example.features.feature
    for key, key_spec in spec.items():
        value = np.asarray(episode.steps[key][t])
        copy = encoded[key][t] if key in encoded else None
        if copy is not None:  # the source's bytes: no generation loss
            feature[key].bytes_list.value.append(copy)
        elif is_encoded_image_spec(key_spec):
            fmt = str(key_spec.data_format)
            frames = value.reshape((-1, *value.shape[-3:]))
            feature[key].bytes_list.value.extend(
                encode_image(f, fmt, quality=jpeg_quality)  # type: ignore[arg-type]
                for f in frames
            )
        elif is_string_dtype(key_spec.dtype):
            feature[key].bytes_list.value.extend(
                v.encode("utf-8") if isinstance(v, str) else bytes(v)
                for v in value.reshape(-1).tolist()
            )
        elif value.dtype.kind == "f":
            feature[key].float_list.value.extend(value.astype(np.float32).reshape(-1).tolist())
        else:
            flat = value.reshape(-1)
            if flat.dtype == np.uint64:
                flat = flat.view(np.int64)
            feature[key].int64_list.value.extend(flat.astype(np.int64).tolist())
    feature[EPISODE_ID].int64_list.value.append(episode_id)
    feature[STEP_ID].int64_list.value.append(t)
    return bytes(example.SerializeToString(deterministic=True))
