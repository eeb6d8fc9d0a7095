"""Datasets of every format t2r knows, moved between formats through `Episode`.

``detect_format(path)`` says which format a path holds; ``read_episodes(path)``
yields its episodes as :class:`~t2r.data.episodes.Episode`; ``write_episodes(path,
episodes, to=...)`` writes them in a format; ``convert(src, dst, to=...)`` is the
two together. Each format has one adapter (module) to and from `Episode`:

* ``tfrecord``: T2R TFRecords, one ``tf.train.Example`` per step
  (:mod:`t2r.data.convert.tfrecord_episodes`).
* ``rlds``: tensorflow-datasets RLDS directories (:mod:`t2r.data.convert.rlds_episodes`).
* ``robomimic``: robomimic HDF5 files (:mod:`t2r.data.convert.robomimic_episodes`).
* ``lerobot``: LeRobot dataset directories (:mod:`t2r.data.lerobot`).

Every conversion is lossless where the two formats can hold the data; what they
cannot hold is logged once per kind as a warning and listed in the result of
:func:`convert` (see docs/data_sources.md, "Conversions", for the table).
"""

from __future__ import annotations

import dataclasses
import glob
import itertools
import logging
import os
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, Literal, get_args

import numpy as np

from t2r.data.convert.common import (
    ENCODED_IMAGES_KEY,
    IMAGE_FORMATS_KEY,
    PRIVATE_KEYS,
    SPLIT_KEY,
    Losses,
    is_image,
)
from t2r.data.convert.rlds_episodes import (
    read_rlds_episodes,
    rlds_directory,
    write_rlds_episodes,
)
from t2r.data.convert.robomimic_episodes import (
    is_hdf5_file,
    read_robomimic_episodes,
    write_robomimic_episodes,
)
from t2r.data.convert.tfrecord_episodes import (
    EPISODES_FILE,
    is_tfrecord_file,
    read_tfrecord_episodes,
    write_tfrecord_episodes,
)
from t2r.data.episodes import Episode
from t2r.data.errors import DataError

__all__ = [
    "FORMATS",
    "ConversionResult",
    "Format",
    "convert",
    "detect_format",
    "read_episodes",
    "renamed",
    "write_episodes",
]

logger = logging.getLogger(__name__)

Format = Literal["tfrecord", "rlds", "robomimic", "lerobot"]
FORMATS: tuple[str, ...] = get_args(Format)

_LEROBOT_INFO = os.path.join("meta", "info.json")


def detect_format(path: str | os.PathLike[str]) -> Format:
    """Which format `path` holds.

    * a directory with ``meta/info.json``: ``lerobot``;
    * a directory with ``dataset_info.json`` and ``features.json`` (or a ``<name>/``
      directory of version sub-directories that have them; the newest is read): ``rlds``;
    * an HDF5 file: ``robomimic``;
    * a TFRecord file, a directory of them, or a glob matching them: ``tfrecord``.

    Raises:
        DataError: naming the path and what was looked for, when it is none of these.
    """
    path = os.fspath(path)
    if os.path.isdir(path):
        if os.path.isfile(os.path.join(path, _LEROBOT_INFO)):
            return "lerobot"
        if rlds_directory(path) is not None:
            return "rlds"
        if os.path.isfile(os.path.join(path, EPISODES_FILE)):
            return "tfrecord"
        names = [n for n in os.listdir(path) if not n.startswith(".")]
        if any(
            os.path.isfile(os.path.join(path, n)) and is_tfrecord_file(os.path.join(path, n))
            for n in names
        ):
            return "tfrecord"
        hint = ""
        nested = _nested_tfrecord_dir(path)
        if nested is not None:
            hint = (
                f" TFRecord files are further down, in {nested}: pass that directory, or a "
                f"glob such as '{os.path.join(path, '**', '*.tfrecord')}'."
            )
        raise DataError(
            f"{path}: a directory of no dataset format t2r knows: no meta/info.json (LeRobot), "
            "no dataset_info.json + features.json (RLDS), no TFRecord files "
            f"(entries: {sorted(names)[:10]}).{hint}"
        )
    if os.path.isfile(path):
        if is_hdf5_file(path):
            return "robomimic"
        if is_tfrecord_file(path):
            return "tfrecord"
        raise DataError(
            f"{path}: a file of no dataset format t2r knows: neither HDF5 (robomimic) nor "
            "TFRecord (its first record's length crc does not check out)."
        )
    if glob.has_magic(path):
        matches = sorted(m for m in glob.glob(path, recursive=True) if os.path.isfile(m))
        if matches and all(is_tfrecord_file(m) for m in matches):
            return "tfrecord"
        raise DataError(
            f"{path}: the pattern matches {len(matches)} files"
            + (", not all of them TFRecord files." if matches else ".")
        )
    raise DataError(f"{path}: no such file or directory.")


def _nested_tfrecord_dir(path: str, depth: int = 3) -> str | None:
    """The first directory below `path` (at most `depth` levels) holding TFRecord files."""
    for root, dirs, files in os.walk(path):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        if len(os.path.relpath(root, path).split(os.sep)) > depth:
            dirs[:] = []
            continue
        if root != path and any(
            not f.startswith(".") and is_tfrecord_file(os.path.join(root, f)) for f in files
        ):
            return root
    return None


def _format(path: str, format: str | None) -> Format:
    if format is None:
        return detect_format(path)
    if format not in FORMATS:
        raise ValueError(f"unknown format {format!r}; one of {list(FORMATS)}.")
    return format  # type: ignore[return-value]


def read_episodes(
    path: str | os.PathLike[str],
    format: Format | None = None,
    *,
    losses: Losses | None = None,
) -> Iterator[Episode]:
    """The episodes at `path`, in the format's order (`format` None: detected)."""
    path = os.fspath(path)
    fmt = _format(path, format)
    losses = losses or Losses(path)
    if fmt == "tfrecord":
        return read_tfrecord_episodes(path, losses)
    if fmt == "rlds":
        return read_rlds_episodes(path, losses)
    if fmt == "robomimic":
        return read_robomimic_episodes(path, losses)
    from t2r.data.lerobot import read_lerobot_episodes

    return read_lerobot_episodes(path)


def write_episodes(
    path: str | os.PathLike[str],
    episodes: Iterable[Episode],
    to: Format,
    *,
    image_format: Literal["jpeg", "png"] | None = None,
    fps: float | None = None,
    video: bool = True,
    losses: Losses | None = None,
) -> None:
    """Writes `episodes` at `path` in format `to`, atomically (whole or not at all).

    Args:
        image_format: how TFRecord and RLDS encode images; default: as the source
            did (``metadata['image_formats']``), else PNG (lossless).
        fps: LeRobot's frame rate (default: the episodes' ``metadata['fps']``, else 10).
        video: LeRobot: store cameras as MP4 (lossy) rather than images.
    """
    path = os.fspath(path)
    to = _format(path, to)
    losses = losses or Losses(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    if to == "tfrecord":
        write_tfrecord_episodes(path, episodes, image_format=image_format, losses=losses)
    elif to == "rlds":
        write_rlds_episodes(path, episodes, image_format=image_format, losses=losses)
    elif to == "robomimic":
        write_robomimic_episodes(path, episodes, losses=losses)
    else:
        _write_lerobot(path, episodes, fps, video, losses)


_LEROBOT_METADATA = (
    "task",
    "tasks",
    "fps",
    "robot_type",
    "episode_index",
    IMAGE_FORMATS_KEY,
    *PRIVATE_KEYS,
)


def _write_lerobot(
    path: str, episodes: Iterable[Episode], fps: float | None, video: bool, losses: Losses
) -> None:
    from t2r.data.lerobot import write_lerobot_dataset

    items = iter(episodes)
    first = next(items, None)
    if first is None:
        raise ValueError(f"{path}: no episodes to write.")
    rate = fps if fps is not None else first.metadata.get("fps")
    if rate is None:
        losses.note("fps", "no --fps given and no 'fps' in the metadata; LeRobot gets 10 fps.")
        rate = 10
    if float(rate) != round(float(rate)):
        losses.note("fps", f"LeRobot needs an integer fps; {rate} is written as {round(rate)}.")
    if video and any(is_image(np.asarray(v)) for v in first.steps.values()):
        losses.note("video", "LeRobot cameras are stored as MP4 video, which is lossy.")

    def checked() -> Iterator[Episode]:
        for episode in itertools.chain([first], items):
            for key, value in episode.steps.items():
                if np.ndim(value) == 2 and np.shape(value)[1] == 1:
                    losses.note(
                        f"squeeze:{key}",
                        f"{key!r} has steps of shape (1,); LeRobot reads (1,) features back "
                        "as one value per step, shape ().",
                    )
            for key in episode.metadata:
                if key == SPLIT_KEY:
                    if episode.metadata[key] != "train":
                        losses.note("split", "LeRobot datasets are written as one split.")
                elif key not in _LEROBOT_METADATA:
                    losses.note(
                        f"metadata:{key}",
                        f"LeRobot keeps an episode's task, fps and robot type; metadata "
                        f"{key!r} is not written.",
                    )
            yield episode

    robot_type = first.metadata.get("robot_type")
    write_lerobot_dataset(
        path,
        checked(),
        round(float(rate)),
        video=video,
        robot_type=None if robot_type is None else str(robot_type),
    )


def renamed(episode: Episode, rename: Mapping[str, str], where: str = "episode") -> Episode:
    """`episode` with the step features in `rename` (old path -> new path) renamed.

    Raises:
        ValueError: a path to rename is missing, or a new path is taken (naming both).
    """
    missing = [old for old in rename if old not in episode.steps]
    if missing:
        raise ValueError(
            f"{where}: no step feature {missing} to rename; it has {sorted(episode.steps)}."
        )
    steps: dict[str, np.ndarray] = {}
    for key, value in episode.steps.items():
        new = rename.get(key, key)
        if new in steps:
            raise ValueError(f"{where}: renaming gives two features {new!r}.")
        steps[new] = value
    metadata = dict(episode.metadata)
    for per_path in (IMAGE_FORMATS_KEY, ENCODED_IMAGES_KEY):
        values = metadata.get(per_path)
        if isinstance(values, Mapping):
            metadata[per_path] = {rename.get(k, k): v for k, v in values.items()}
    return Episode(steps, metadata)


@dataclasses.dataclass
class ConversionResult:
    """What :func:`convert` did: formats, counts, and what the target could not hold."""

    src: str
    dst: str
    src_format: str
    dst_format: str
    num_episodes: int
    num_steps: int
    losses: dict[str, str]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def convert(
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    to: Format,
    *,
    src_format: Format | None = None,
    overwrite: bool = False,
    image_format: Literal["jpeg", "png"] | None = None,
    fps: float | None = None,
    video: bool = True,
    rename: Mapping[str, str] | None = None,
    max_episodes: int | None = None,
    progress: bool = False,
) -> ConversionResult:
    """Reads the dataset at `src` and writes it at `dst` in format `to`.

    `dst` must not exist unless `overwrite`. Each kind of loss is logged once and
    listed in the result's ``losses``.

    Args:
        rename: step feature paths renamed on the way (``{"pose": "action"}``),
            e.g. to give a robomimic target the ``action`` and ``observation/...``
            features it needs; a path the first episode lacks is an error.
        max_episodes: convert only the first episodes.
        image_format, fps, video: as for :func:`write_episodes`.
    """
    src, dst = os.fspath(src), os.fspath(dst)
    if to not in FORMATS:
        raise ValueError(f"unknown target format {to!r}; one of {list(FORMATS)}.")
    if os.path.lexists(dst) and not overwrite:
        raise FileExistsError(f"{dst}: exists; pass overwrite=True (--overwrite) to replace it.")
    fmt = _format(src, src_format)
    losses = Losses(dst)
    counts = {"episodes": 0, "steps": 0}

    def counted() -> Iterator[Episode]:
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(desc=f"{fmt} -> {to}", unit="episode")
        try:
            for episode in read_episodes(src, fmt, losses=losses):
                if max_episodes is not None and counts["episodes"] >= max_episodes:
                    break
                if rename:
                    episode = renamed(episode, rename, f"{src}: episode {counts['episodes']}")
                counts["episodes"] += 1
                counts["steps"] += episode.num_steps
                if bar is not None:
                    bar.update(1)
                yield episode
        finally:
            if bar is not None:
                bar.close()

    write_episodes(
        dst, counted(), to, image_format=image_format, fps=fps, video=video, losses=losses
    )
    return ConversionResult(
        src, dst, fmt, to, counts["episodes"], counts["steps"], dict(losses.messages)
    )
