"""Reading a LeRobot dataset's episodes: parquet rows and camera frames.

:class:`LeRobotReader` holds a dataset's metadata and opens its files;
:meth:`LeRobotReader.episode` gives a :class:`LeRobotEpisodeData` whose columns are
read on first use (a camera's video is decoded once for the whole episode), so a
source that needs two of five cameras decodes two. :func:`read_lerobot_episodes`
turns them into :class:`t2r.data.episodes.Episode`.

Each episode's rows are checked against the format's invariants: ``frame_index``
is ``0..length-1``, ``episode_index`` the episode's, ``index`` runs from the
episode's ``dataset_from_index``, and consecutive ``timestamp`` values differ by
``1/fps`` within LeRobot's ``tolerance_s``; a violation is a DataError naming the
file and the episode.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from t2r.data.episodes import Episode
from t2r.data.errors import DataError
from t2r.data.image_codec import decode_image
from t2r.data.lerobot.info import (
    DEFAULT_FEATURES,
    TOLERANCE_S,
    LeRobotDatasetInfo,
    LeRobotEpisodeInfo,
    LeRobotFeature,
    load_lerobot_info,
)
from t2r.data.lerobot.video import decode_frames

__all__ = ["LeRobotEpisodeData", "LeRobotReader", "read_lerobot_episodes"]

TASK_KEY = "task"
_OPEN_FILES = 4


def _is_list(kind: pa.DataType) -> bool:
    return bool(
        pa.types.is_list(kind) or pa.types.is_fixed_size_list(kind) or pa.types.is_large_list(kind)
    )


def _numeric(where: str, feature: LeRobotFeature, column: pa.ChunkedArray, n: int) -> np.ndarray:
    array: pa.Array = column.combine_chunks() if column.num_chunks != 1 else column.chunk(0)
    if array.null_count:
        raise DataError(f"{where}: column {feature.key!r} holds {array.null_count} nulls.")
    while _is_list(array.type):
        array = array.flatten()
    values = array.to_numpy(zero_copy_only=False)
    shape = (n, *feature.step_shape)
    try:
        return values.astype(feature.numpy_dtype, copy=False).reshape(shape)
    except ValueError:
        raise DataError(
            f"{where}: column {feature.key!r} holds {values.size} values, expected shape {shape} "
            f"(info.json shape {list(feature.shape)})."
        ) from None


class LeRobotEpisodeData:
    """One episode of a LeRobot dataset; ``column(key)`` reads or decodes on first use.

    Columns are ``(T, *shape)``: numbers in the feature's dtype (``(1,)`` features
    as ``(T,)``), cameras ``(T, H, W, 3)`` uint8, text object arrays of ``str``.
    """

    def __init__(self, reader: LeRobotReader, episode: LeRobotEpisodeInfo) -> None:
        self.reader = reader
        self.info = episode
        self.num_steps = episode.length
        self.where = (
            f"{os.path.join(reader.root, episode.data_file)}: episode {episode.episode_index}"
        )
        self._table: pa.Table | None = None
        self._columns: dict[str, np.ndarray] = {}
        self._tasks: list[str] | None = None

    def _rows(self) -> pa.Table:
        if self._table is None:
            table = self.reader.episode_rows(self.info)
            self._table = table
            self._check(table)
        return self._table

    def _check(self, table: pa.Table) -> None:
        n = self.num_steps
        if table.num_rows != n:
            raise DataError(
                f"{self.where}: {table.num_rows} rows, but meta/episodes says length {n}."
            )
        for key in ("frame_index", "index", "timestamp"):
            if key not in table.column_names:
                raise DataError(f"{self.where}: no {key!r} column; it has {table.column_names}.")
        frame_index = table.column("frame_index").to_numpy()
        if not np.array_equal(frame_index, np.arange(n)):
            raise DataError(
                f"{self.where}: frame_index is not 0..{n - 1} in order "
                f"(first values {frame_index[:5].tolist()})."
            )
        index = table.column("index").to_numpy()
        start = self.info.dataset_from_index
        if start >= 0 and not np.array_equal(index, np.arange(start, start + n)):
            raise DataError(
                f"{self.where}: index is not {start}..{start + n - 1} (dataset_from_index in "
                f"meta/episodes); first values {index[:5].tolist()}."
            )
        timestamps = table.column("timestamp").to_numpy().astype(np.float64)
        fps = self.reader.info.fps
        tolerance = self.reader.tolerance_s
        steps = np.diff(timestamps)
        bad = np.abs(steps - 1.0 / fps) > tolerance
        if bad.any():
            at = int(np.argmax(bad))
            raise DataError(
                f"{self.where}: timestamps {timestamps[at]:.6f} -> {timestamps[at + 1]:.6f} at "
                f"frame {at} are not 1/fps = {1.0 / fps:.6f} s apart (tolerance_s={tolerance})."
            )

    def column(self, key: str) -> np.ndarray:
        """The values of feature ``key`` (a LeRobot key, e.g. ``observation.state``)."""
        if key in self._columns:
            return self._columns[key]
        try:
            feature = self.reader.info.features[key]
        except KeyError:
            raise KeyError(
                f"{self.reader.root}: no feature {key!r}; it has {list(self.reader.info.features)}."
            ) from None
        if feature.dtype == "video":
            timestamps = self.column("timestamp").astype(np.float64)
            ref = self.info.videos[key]
            path = os.path.join(self.reader.root, ref.file)
            try:
                values = decode_frames(
                    path,
                    ref.from_timestamp + timestamps,
                    self.reader.tolerance_s,
                    expected_shape=feature.step_shape,  # type: ignore[arg-type]
                )
            except DataError as e:
                raise DataError(f"{e} (episode {self.info.episode_index}, {key!r})") from e
        else:
            table = self._rows()
            if key not in table.column_names:
                raise DataError(f"{self.where}: no column {key!r}; it has {table.column_names}.")
            column = table.column(key)
            if feature.dtype == "string":
                values = np.empty(self.num_steps, dtype=object)
                values[:] = [str(v) for v in column.to_pylist()]
            elif feature.dtype == "image":
                values = self._images(feature, column)
            else:
                values = _numeric(self.where, feature, column, self.num_steps)
        self._columns[key] = values
        return values

    def _images(self, feature: LeRobotFeature, column: pa.ChunkedArray) -> np.ndarray:
        frames = []
        for t, item in enumerate(column.to_pylist()):
            data = item.get("bytes") if isinstance(item, dict) else item
            if data is None and isinstance(item, dict) and item.get("path"):
                path = os.path.join(self.reader.root, str(item["path"]))
                try:
                    with open(path, "rb") as f:
                        data = f.read()
                except OSError as e:
                    raise DataError(f"{self.where}: {feature.key!r} frame {t}: {e}") from e
            if not data:
                raise DataError(f"{self.where}: {feature.key!r} frame {t} holds no image.")
            try:
                frames.append(decode_image(data, feature.step_shape, np.uint8, key=feature.key))
            except DataError as e:
                raise DataError(f"{self.where}: frame {t}: {e}") from e
        return np.stack(frames)

    def tasks(self) -> list[str]:
        """The task of each frame (by ``task_index``)."""
        if self._tasks is None:
            self._tasks = self._frame_tasks()
        return self._tasks

    def _frame_tasks(self) -> list[str]:
        indices = self.column("task_index")
        tasks = self.reader.info.tasks
        bad = [int(i) for i in indices if not 0 <= int(i) < len(tasks)]
        if bad:
            raise DataError(
                f"{self.where}: task_index {bad[0]} not in meta/tasks ({len(tasks)} tasks)."
            )
        return [tasks[int(i)] for i in indices]

    def to_episode(self) -> Episode:
        """The episode as a t2r :class:`Episode` (see :func:`read_lerobot_episodes`)."""
        info = self.reader.info
        steps = {
            feature.path: self.column(key)
            for key, feature in info.features.items()
            if key not in DEFAULT_FEATURES
        }
        tasks = self.tasks() if "task_index" in info.features else []
        distinct = list(dict.fromkeys(tasks))
        if len(distinct) > 1:
            steps[TASK_KEY] = np.array(tasks, dtype=object)
        metadata: dict[str, Any] = {
            "episode_index": self.info.episode_index,
            "fps": info.fps,
            "tasks": distinct or list(self.info.tasks),
        }
        if len(distinct) == 1:
            metadata[TASK_KEY] = distinct[0]
        if info.robot_type:
            metadata["robot_type"] = info.robot_type
        return Episode(steps=steps, metadata=metadata)


class LeRobotReader:
    """A LeRobot dataset's metadata and its open parquet files (a few, LRU).

    Args:
        root: the dataset directory.
        tolerance_s: how far a decoded video frame's time may be from the frame's
            timestamp (LeRobot's default 1e-4 s), and consecutive timestamps from 1/fps.
    """

    def __init__(self, root: str | os.PathLike[str], tolerance_s: float = TOLERANCE_S) -> None:
        self.info: LeRobotDatasetInfo = load_lerobot_info(root)
        self.root = self.info.root
        self.tolerance_s = float(tolerance_s)
        self._files: OrderedDict[str, pq.ParquetFile] = OrderedDict()

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_files"] = OrderedDict()  # file handles stay in their process
        return state

    def _parquet(self, path: str) -> pq.ParquetFile:
        if path in self._files:
            self._files.move_to_end(path)
            return self._files[path]
        if not os.path.isfile(path):
            raise DataError(f"{path}: data file listed by meta/episodes is missing.")
        try:
            handle = pq.ParquetFile(path)
        except (pa.ArrowException, OSError) as e:
            raise DataError(f"{path}: not a readable parquet file: {e}") from e
        self._files[path] = handle
        while len(self._files) > _OPEN_FILES:
            self._files.popitem(last=False)[1].close()
        return handle

    def episode_rows(self, episode: LeRobotEpisodeInfo) -> pa.Table:
        """The parquet rows of ``episode`` (only the row groups that may hold it)."""
        path = os.path.join(self.root, episode.data_file)
        handle = self._parquet(path)
        meta = handle.metadata
        leaf = (
            next(
                (
                    j
                    for j in range(meta.num_columns)
                    if meta.row_group(0).column(j).path_in_schema == "episode_index"
                ),
                None,
            )
            if meta.num_row_groups
            else None
        )
        if leaf is None:
            raise DataError(f"{path}: no 'episode_index' column.")
        index = episode.episode_index
        groups = []
        for g in range(meta.num_row_groups):
            stats = meta.row_group(g).column(leaf).statistics
            if stats is None or not stats.has_min_max or stats.min <= index <= stats.max:
                groups.append(g)
        try:
            table = handle.read_row_groups(groups)
        except (pa.ArrowException, OSError) as e:
            raise DataError(f"{path}: cannot read row groups {groups}: {e}") from e
        return table.filter(pc.equal(table.column("episode_index"), index))

    def episode(self, episode_index: int) -> LeRobotEpisodeData:
        return LeRobotEpisodeData(self, self.info.episode(episode_index))


def read_lerobot_episodes(
    root: str | os.PathLike[str],
    episodes: Sequence[int] | None = None,
    *,
    tolerance_s: float = TOLERANCE_S,
) -> Iterator[Episode]:
    """The episodes of a LeRobot dataset (v3.0 or v2.1) as :class:`Episode`.

    ``steps``: every feature but the default ones, at its path
    (``observation.images.top`` -> ``observation/images/top``); cameras decoded to
    ``(T, H, W, 3)`` uint8 (videos frame-exact by timestamp within ``tolerance_s``);
    ``(1,)`` features as ``(T,)``; ``task`` (object array of ``str``) only when the
    task changes within the episode. ``metadata``: ``episode_index``, ``fps``,
    ``tasks``, ``task`` (when one), ``robot_type`` (when known).

    Args:
        root: the dataset directory.
        episodes: episode indices to read, in this order (None: all, in index order).
        tolerance_s: LeRobot's timestamp tolerance.
    """
    reader = LeRobotReader(root, tolerance_s)
    indices = [e.episode_index for e in reader.info.episodes] if episodes is None else episodes
    for index in indices:
        yield reader.episode(int(index)).to_episode()
