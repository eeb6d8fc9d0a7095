"""RLDS (tensorflow-datasets) directories as episodes, through `t2r.data.rlds`.

Reading: every split, in the order ``dataset_info.json`` lists them, episodes in
tfds read order. Step features keep their paths (``observation/image``), images
decoded with TensorFlow's default IDCT (``INTEGER_FAST``, what a tfds user
sees), text as ``str``. Per-episode features go to the metadata, the
``episode_metadata/`` prefix dropped (``file_path``); the episode's split is
``metadata['split']`` and, where a step text feature named
``*language_instruction`` is the same on every step, it is also ``metadata['task']``.

Writing (`write_rlds` into the given directory, one split per
``metadata['split']``, default ``train``): one step's features become the step
spec (images keep the source's encoding, else PNG); the metadata becomes
``episode_metadata/<key>`` features: text, numbers and numeric arrays as they
are, anything else (dicts, lists of text) as JSON text. ``is_first``,
``is_last``, ``is_terminal`` (= is_last), ``reward`` (0) and ``discount`` (1)
are added where an episode lacks them, as RLDS requires.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np

from t2r.atomic import atomic_directory
from t2r.data.convert.common import (
    IMAGE_FORMATS_KEY,
    PRIVATE_KEYS,
    SPLIT_KEY,
    TASK_KEY,
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
from t2r.data.image_codec import decode_image
from t2r.data.rlds import (
    DATASET_INFO_FILE,
    FEATURES_FILE,
    RLDSSource,
    load_rlds_info,
    write_rlds,
)
from t2r.specs import (
    ExtendedTensorSpec,
    TensorSpecStruct,
    is_encoded_image_spec,
    is_string_dtype,
    numpy_dtype,
)

__all__ = ["read_rlds_episodes", "rlds_directory", "write_rlds_episodes"]

EPISODE_METADATA = "episode_metadata"
_RESERVED = (SPLIT_KEY, IMAGE_FORMATS_KEY, *PRIVATE_KEYS)


def _is_rlds_dir(path: str) -> bool:
    return os.path.isfile(os.path.join(path, DATASET_INFO_FILE)) and os.path.isfile(
        os.path.join(path, FEATURES_FILE)
    )


def _version_key(name: str) -> tuple[int, ...]:
    parts = re.findall(r"\d+", name)
    return tuple(int(p) for p in parts)


def rlds_directory(path: str | os.PathLike[str]) -> str | None:
    """The ``<name>/<version>`` directory of `path` (itself, or its newest version
    sub-directory, as tfds picks), or None when it is not an RLDS dataset."""
    path = os.fspath(path)
    if not os.path.isdir(path):
        return None
    if _is_rlds_dir(path):
        return path
    children = [
        name
        for name in os.listdir(path)
        if not name.startswith(".") and _is_rlds_dir(os.path.join(path, name))
    ]
    if not children:
        return None
    return os.path.join(path, max(children, key=lambda n: (_version_key(n), n)))


def read_rlds_episodes(
    path: str | os.PathLike[str], losses: Losses | None = None
) -> Iterator[Episode]:
    directory = rlds_directory(path)
    if directory is None:
        raise DataError(
            f"{os.fspath(path)}: not an RLDS directory (no {DATASET_INFO_FILE} and "
            f"{FEATURES_FILE} in it or in a version sub-directory)."
        )
    info = load_rlds_info(directory)
    for split in info.splits:
        source = RLDSSource(directory, split, window_size=1)
        for episode in source.episodes():
            steps: dict[str, np.ndarray] = {}
            formats: dict[str, str] = {}
            encoded: dict[str, Any] = {}
            for key, spec in info.step_spec.items():
                values = episode.step_values(key)
                if is_encoded_image_spec(spec):
                    shape = tuple(int(d or 0) for d in spec.shape or ())
                    steps[key] = np.stack(
                        [
                            decode_image(
                                v,
                                shape,
                                spec.dtype,
                                key=f"{episode.where}: steps/{key}",
                                dct_method="INTEGER_FAST",
                            )
                            for v in values
                        ]
                    )
                    formats[key] = str(spec.data_format).lower().replace("jpg", "jpeg")
                    remember_encoded(encoded, key, list(values), steps[key])
                elif is_string_dtype(spec.dtype):
                    steps[key] = text_array(values.reshape(-1), values.shape)
                else:
                    steps[key] = values
            metadata: dict[str, Any] = {}
            for key, spec in info.episode_spec.items():
                value = episode.episode_value(key)
                name = key.removeprefix(f"{EPISODE_METADATA}/")
                if is_string_dtype(spec.dtype):
                    text = text_array(value.reshape(-1), value.shape)
                    metadata[name] = text[()] if text.ndim == 0 else text.tolist()
                else:
                    metadata[name] = value[()] if value.ndim == 0 else value
            if TASK_KEY not in metadata:
                for key, value in steps.items():
                    if key.endswith("language_instruction") and value.dtype == object:
                        unique = set(value.reshape(-1).tolist())
                        if len(unique) == 1:
                            metadata[TASK_KEY] = unique.pop()
                            break
            metadata[SPLIT_KEY] = split
            if formats:
                metadata[IMAGE_FORMATS_KEY] = formats
            metadata.update(encoded)
            yield Episode(steps, metadata)


def _metadata_spec(key: str, value: Any) -> tuple[ExtendedTensorSpec, Any] | None:
    """The episode feature of one metadata value and the value to write, or None
    for values stored as JSON text."""
    name = f"{EPISODE_METADATA}/{key}"
    if isinstance(value, (str, bytes)):
        return ExtendedTensorSpec((), "string", name=name), value
    if isinstance(value, (bool, int, float, np.generic, np.ndarray)):
        array = np.asarray(value)
        if array.dtype.kind in "biuf":
            if isinstance(value, float):
                array = array.astype(np.float32)
            if isinstance(value, int) and not isinstance(value, bool):
                array = array.astype(np.int64)
            return ExtendedTensorSpec(array.shape, array.dtype, name=name), array
    return None


def _dataset_name(path: str) -> str:
    base = os.path.basename(os.path.normpath(path))
    if re.fullmatch(r"\d+(\.\d+)*", base):  # a version directory: name it after its parent
        base = os.path.basename(os.path.dirname(os.path.normpath(path)))
    name = re.sub(r"[^A-Za-z0-9_]+", "_", base).strip("_")
    return name or "t2r_dataset"


def write_rlds_episodes(
    path: str | os.PathLike[str],
    episodes: Iterable[Episode],
    *,
    name: str | None = None,
    version: str = "1.0.0",
    image_format: str | None = None,
    losses: Losses | None = None,
) -> None:
    """Writes `episodes` as an RLDS directory at `path` (see the module docstring).

    The directory appears whole or not at all; an existing one is replaced. The
    records are held in memory until written (as `write_rlds` does).
    """
    path = os.fspath(path)
    losses = losses or Losses(path)
    name = name or _dataset_name(path)
    first: TensorSpecStruct | None = None
    meta_specs: dict[str, ExtendedTensorSpec] = {}
    splits: dict[str, list[dict[str, Any]]] = {}
    for index, episode in enumerate(episodes):
        spec = step_spec(episode, image_format)  # type: ignore[arg-type]
        if first is None:
            first = spec
            for key, s in spec.items():
                if not is_string_dtype(s.dtype) and numpy_dtype(s.dtype) == np.float64:
                    losses.note(
                        f"float64:{key}",
                        f"{key!r} is float64; RLDS records store float32 (precision lost).",
                    )
            for key, value in episode.metadata.items():
                if key in _RESERVED:
                    continue
                made = _metadata_spec(key, value)
                meta_specs[key] = (
                    made[0] if made else ExtendedTensorSpec((), "string", name=f"{key}")
                )
                if made is None:
                    losses.note(
                        f"json:{key}",
                        f"RLDS: metadata {key!r} ({type(value).__name__}) is stored as JSON "
                        f"text in episode_metadata/{key}.",
                    )
        else:
            check_same_spec(path, first, spec, index)
        record: dict[str, Any] = {f"steps/{key}": value for key, value in episode.steps.items()}
        for key, image_spec in first.items():
            if is_encoded_image_spec(image_spec):
                frames = encoded_frames(episode, key, str(image_spec.data_format))
                if frames is not None:  # the source's bytes where unchanged: no generation loss
                    array = episode.steps[key]
                    record[f"steps/{key}"] = [
                        array[t] if data is None else data for t, data in enumerate(frames)
                    ]
        for key, meta_spec in meta_specs.items():
            if key not in episode.metadata:
                if not is_string_dtype(meta_spec.dtype):
                    raise ValueError(
                        f"{path}: episode {index} has no metadata {key!r}, which episode 0 "
                        "has; RLDS needs every episode feature in every episode."
                    )
                losses.note(f"missing:{key}", f"RLDS: episodes without {key!r} get ''.")
                stored: Any = ""
            else:
                made = _metadata_spec(key, episode.metadata[key])
                if made is None:
                    stored = json.dumps(jsonable(episode.metadata[key], key, losses))
                elif is_string_dtype(meta_spec.dtype) != is_string_dtype(made[0].dtype):
                    raise ValueError(
                        f"{path}: episode {index}: metadata {key!r} is {made[0]}, episode 0's "
                        f"is {meta_spec}."
                    )
                else:
                    stored = made[1]
            record[f"{EPISODE_METADATA}/{key}"] = stored
        dropped = set(episode.metadata) - set(meta_specs) - set(_RESERVED)
        for key in sorted(dropped):
            losses.note(
                f"dropped:{key}", f"RLDS: metadata {key!r} is not in episode 0, so not written."
            )
        splits.setdefault(str(episode.metadata.get(SPLIT_KEY, "train")), []).append(record)
    if first is None:
        raise ValueError(f"{path}: no episodes to write.")
    episode_spec = TensorSpecStruct(
        (f"{EPISODE_METADATA}/{key}", s) for key, s in meta_specs.items()
    )
    with atomic_directory(path) as tmp:
        for split, records in splits.items():
            write_rlds(
                tmp,
                records,
                first,
                name=name,
                version=version,
                split=split,
                episode_spec=episode_spec,
            )
