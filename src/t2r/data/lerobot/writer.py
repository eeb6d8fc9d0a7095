"""Writing LeRobot v3.0 datasets from :class:`t2r.data.episodes.Episode`.

An Episode's step features become LeRobot features: the path ``observation/image``
is the key ``observation.image`` (a ``.`` inside a path part is refused, it would
not come back); ``(T, H, W, 3)`` uint8 arrays are cameras (``video``: MP4 streams,
see :mod:`t2r.data.lerobot.video`; or ``image``: PNG in the parquet file);
``(T,)`` arrays are ``(1,)`` features, ``(T, ...)`` arrays features of shape
``(...)``; text (object or ``str`` arrays) is ``string``. The task of each frame is
``steps["task"]`` when given, else ``metadata["task"]`` (else ``""``). The default
features (``timestamp = frame_index / fps``, ``frame_index``, ``episode_index``,
``index``, ``task_index``) are written for every frame and cannot be given.

Files follow LeRobot's defaults: up to 1000 files per chunk directory, a data
file holds episodes until it passes 100 MB, a video file until 200 MB; one
parquet row group per episode; ``meta/episodes`` in one file per 1000 episodes.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from t2r.atomic import atomic_write_text, publish_directory, temporary_path_for
from t2r.data.episodes import Episode
from t2r.data.image_codec import encode_image
from t2r.data.lerobot.info import (
    CODEBASE_VERSION,
    DATA_PATH,
    DEFAULT_FEATURES,
    EPISODES_PATH,
    INFO_PATH,
    STATS_PATH,
    TASKS_PATH,
    VIDEO_PATH,
    LeRobotDatasetInfo,
    LeRobotFeature,
    load_lerobot_info,
)
from t2r.data.lerobot.stats import aggregate_stats, feature_stats, stats_to_json
from t2r.data.lerobot.video import DEFAULT_CODEC, VideoStreamWriter, video_info

__all__ = ["LeRobotEpisodeWriter", "episode_from_transitions", "write_lerobot_dataset"]

logger = logging.getLogger(__name__)

CHUNKS_SIZE = 1000
EPISODES_PER_META_FILE = 1000
DATA_FILES_SIZE_IN_MB = 100
VIDEO_FILES_SIZE_IN_MB = 200
TASK_KEY = "task"
_DEFAULT_FEATURE_JSON = {
    "timestamp": LeRobotFeature("timestamp", "float32", (1,)),
    "frame_index": LeRobotFeature("frame_index", "int64", (1,)),
    "episode_index": LeRobotFeature("episode_index", "int64", (1,)),
    "index": LeRobotFeature("index", "int64", (1,)),
    "task_index": LeRobotFeature("task_index", "int64", (1,)),
}


def _next_file(chunk: int, file: int, chunks_size: int) -> tuple[int, int]:
    return (chunk + 1, 0) if file == chunks_size - 1 else (chunk, file + 1)


def _is_text(array: np.ndarray) -> bool:
    return array.dtype == object or array.dtype.kind in ("U", "S")


def _infer_feature(where: str, path: str, value: np.ndarray, video: bool) -> LeRobotFeature:
    parts = path.split("/")
    if any("." in p or not p for p in parts):
        raise ValueError(
            f"{where}: step feature {path!r}: LeRobot keys join path parts with '.', so a part "
            "may not contain '.' or be empty."
        )
    key = ".".join(parts)
    if key in DEFAULT_FEATURES:
        raise ValueError(
            f"{where}: step feature {path!r} is one of LeRobot's default features "
            f"{list(DEFAULT_FEATURES)}, which the writer fills in."
        )
    if _is_text(value):
        if value.ndim != 1:
            raise ValueError(f"{where}: text feature {path!r} has shape {value.shape}, not (T,).")
        return LeRobotFeature(key, "string", (1,))
    if value.dtype == np.uint8 and value.ndim == 4 and value.shape[-1] == 3:
        return LeRobotFeature(
            key,
            "video" if video else "image",
            tuple(int(d) for d in value.shape[1:]),
            ["height", "width", "channels"],
        )
    if value.dtype.kind not in "biuf":
        raise ValueError(f"{where}: step feature {path!r} has dtype {value.dtype}; not storable.")
    shape = tuple(int(d) for d in value.shape[1:]) or (1,)
    return LeRobotFeature(key, str(value.dtype), shape)


def _column(feature: LeRobotFeature, values: np.ndarray) -> pa.Array:
    """One feature's frames as an arrow column."""
    if feature.dtype == "string":
        return pa.array([str(v) for v in values], pa.string())
    if feature.dtype == "image":
        return pa.array(
            [{"bytes": encode_image(frame, "png"), "path": None} for frame in values],
            pa.struct([("bytes", pa.binary()), ("path", pa.string())]),
        )
    array = np.ascontiguousarray(values, dtype=np.dtype(feature.dtype))
    if feature.shape == (1,):
        return pa.array(array.reshape(-1))
    column: pa.Array = pa.array(array.reshape(-1))
    for size in reversed(feature.shape):
        column = pa.FixedSizeListArray.from_arrays(column, size)
    return column


class _DatasetBuilder:
    """Fills a LeRobot v3.0 directory episode by episode; ``finish()`` writes ``meta/``."""

    def __init__(
        self,
        root: str,
        fps: int,
        *,
        video: bool,
        robot_type: str | None,
        codec: str,
        chunks_size: int = CHUNKS_SIZE,
        data_files_size_in_mb: float = DATA_FILES_SIZE_IN_MB,
        video_files_size_in_mb: float = VIDEO_FILES_SIZE_IN_MB,
    ) -> None:
        if int(fps) != fps or fps <= 0:
            raise ValueError(f"fps must be a positive integer (LeRobot's info.json), got {fps}.")
        self.root = root
        self.fps = int(fps)
        self.video = video
        self.robot_type = robot_type
        self.codec = codec
        self.chunks_size = int(chunks_size)
        self.data_files_size_in_mb = data_files_size_in_mb
        self.video_files_size_in_mb = video_files_size_in_mb
        self.features: dict[str, LeRobotFeature] | None = None
        self.paths: dict[str, str] = {}  # feature key -> episode step path
        self.tasks: dict[str, int] = {}
        self.rows: list[dict[str, Any]] = []
        self.episode_stats: list[dict[str, dict[str, np.ndarray]]] = []
        self.total_frames = 0
        self._data: tuple[int, int, pq.ParquetWriter, str] | None = None
        self._videos: dict[str, tuple[int, int, VideoStreamWriter]] = {}
        self._video_info: dict[str, dict[str, Any]] = {}
        os.makedirs(root, exist_ok=True)

    # ----------------------------------------------------------------- per episode

    def _set_features(self, where: str, episode: Episode) -> None:
        features = {}
        for path, value in episode.steps.items():
            if path == TASK_KEY:
                continue
            feature = _infer_feature(where, path, np.asarray(value), self.video)
            features[feature.key] = feature
            self.paths[feature.key] = path
        if not features:
            raise ValueError(f"{where}: no step feature besides {TASK_KEY!r}.")
        self.features = {**features, **_DEFAULT_FEATURE_JSON}

    def _check_features(self, where: str, episode: Episode) -> None:
        assert self.features is not None
        given = {p for p in episode.steps if p != TASK_KEY}
        expected = set(self.paths.values())
        if given != expected:
            raise ValueError(
                f"{where}: step features {sorted(given)} differ from the first episode's "
                f"{sorted(expected)}."
            )
        for key, path in self.paths.items():
            have = _infer_feature(where, path, np.asarray(episode.steps[path]), self.video)
            want = self.features[key]
            if (have.dtype, have.shape) != (want.dtype, want.shape):
                raise ValueError(
                    f"{where}: {path!r} is {have.dtype} {have.shape} per frame, but the first "
                    f"episode's is {want.dtype} {want.shape}."
                )

    def _frame_tasks(self, where: str, episode: Episode) -> list[str]:
        n = episode.num_steps
        if TASK_KEY in episode.steps:
            tasks = [str(t) for t in np.asarray(episode.steps[TASK_KEY]).reshape(-1)]
            if len(tasks) != n:
                raise ValueError(
                    f"{where}: steps[{TASK_KEY!r}] holds {len(tasks)} tasks for {n} steps."
                )
            return tasks
        task = episode.metadata.get(TASK_KEY, "")
        if isinstance(task, bytes):
            task = task.decode("utf-8")
        return [str(task)] * n

    def _data_writer(self, schema: pa.Schema) -> tuple[int, int, pq.ParquetWriter]:
        if self._data is not None:
            chunk, file, writer, path = self._data
            if os.path.getsize(path) < self.data_files_size_in_mb * 1024 * 1024:
                return chunk, file, writer
            writer.close()
            chunk, file = _next_file(chunk, file, self.chunks_size)
        else:
            chunk, file = 0, 0
        path = os.path.join(self.root, DATA_PATH.format(chunk_index=chunk, file_index=file))
        os.makedirs(os.path.dirname(path), exist_ok=True)
        writer = pq.ParquetWriter(path, schema, compression="snappy")
        self._data = (chunk, file, writer, path)
        return chunk, file, writer

    def _video_writer(self, key: str) -> tuple[int, int, VideoStreamWriter]:
        assert self.features is not None
        if key in self._videos:
            chunk, file, writer = self._videos[key]
            if writer.size_bytes < self.video_files_size_in_mb * 1024 * 1024:
                return chunk, file, writer
            self._close_video(key)
            chunk, file = _next_file(chunk, file, self.chunks_size)
        else:
            chunk, file = 0, 0
        height, width, _ = self.features[key].shape
        path = os.path.join(
            self.root, VIDEO_PATH.format(video_key=key, chunk_index=chunk, file_index=file)
        )
        writer = VideoStreamWriter(path, self.fps, height, width, self.codec)
        self._videos[key] = (chunk, file, writer)
        return chunk, file, writer

    def _close_video(self, key: str) -> None:
        _, _, writer = self._videos.pop(key)
        writer.close()
        if key not in self._video_info:
            self._video_info[key] = video_info(writer.path, writer.options)

    def add(self, episode: Episode) -> None:
        index = len(self.rows)
        where = f"LeRobot dataset {self.root}: episode {index}"
        if self.features is None:
            self._set_features(where, episode)
        else:
            self._check_features(where, episode)
        assert self.features is not None
        n = episode.num_steps
        tasks = self._frame_tasks(where, episode)
        for task in tasks:
            self.tasks.setdefault(task, len(self.tasks))
        frame_index = np.arange(n, dtype=np.int64)
        defaults: dict[str, np.ndarray] = {
            "timestamp": (frame_index / self.fps).astype(np.float32),
            "frame_index": frame_index,
            "episode_index": np.full(n, index, np.int64),
            "index": np.arange(self.total_frames, self.total_frames + n, dtype=np.int64),
            "task_index": np.array([self.tasks[t] for t in tasks], np.int64),
        }
        columns: dict[str, pa.Array] = {}
        stats: dict[str, dict[str, np.ndarray]] = {}
        row: dict[str, Any] = {
            "episode_index": index,
            "tasks": list(dict.fromkeys(tasks)),
            "length": n,
        }
        for key, feature in self.features.items():
            values = (
                defaults[key] if key in defaults else np.asarray(episode.steps[self.paths[key]])
            )
            if feature.dtype != "string":
                stats[key] = feature_stats(values, feature.is_camera)
            if feature.dtype == "video":
                chunk, file, video = self._video_writer(key)
                start = video.frames_written / self.fps
                video.write(values)
                row[f"videos/{key}/chunk_index"] = chunk
                row[f"videos/{key}/file_index"] = file
                row[f"videos/{key}/from_timestamp"] = start
                row[f"videos/{key}/to_timestamp"] = start + n / self.fps
                continue
            columns[key] = _column(feature, values)
        table = pa.table(columns)
        chunk, file, writer = self._data_writer(table.schema)
        writer.write_table(table)
        row["data/chunk_index"] = chunk
        row["data/file_index"] = file
        row["dataset_from_index"] = self.total_frames
        row["dataset_to_index"] = self.total_frames + n
        self.total_frames += n
        self.rows.append(row)
        self.episode_stats.append(stats)

    # --------------------------------------------------------------------- finish

    def close_files(self) -> None:
        if self._data is not None:
            self._data[2].close()
            self._data = None
        for key in list(self._videos):
            self._close_video(key)

    def finish(self) -> None:
        """Closes the files and writes ``meta/`` (info, tasks, episodes, stats)."""
        self.close_files()
        if self.features is None:
            raise ValueError(f"LeRobot dataset {self.root}: no episodes to write.")
        self._write_tasks()
        self._write_episodes()
        stats = aggregate_stats(self.episode_stats)
        atomic_write_text(
            os.path.join(self.root, STATS_PATH), json.dumps(stats_to_json(stats), indent=2)
        )
        features = {}
        for key, feature in self.features.items():
            entry = feature.to_json()
            if key in self._video_info:
                entry["info"] = self._video_info[key]
            features[key] = entry
        has_video = any(f.dtype == "video" for f in self.features.values())
        info = {
            "codebase_version": CODEBASE_VERSION,
            "robot_type": self.robot_type,
            "total_episodes": len(self.rows),
            "total_frames": self.total_frames,
            "total_tasks": len(self.tasks),
            "chunks_size": self.chunks_size,
            "data_files_size_in_mb": self.data_files_size_in_mb,
            "video_files_size_in_mb": self.video_files_size_in_mb,
            "fps": self.fps,
            "splits": {"train": f"0:{len(self.rows)}"},
            "data_path": DATA_PATH,
            "video_path": VIDEO_PATH if has_video else None,
            "features": features,
        }
        atomic_write_text(os.path.join(self.root, INFO_PATH), json.dumps(info, indent=4))

    def _write_tasks(self) -> None:
        names = list(self.tasks)
        table = pa.table(
            {
                "task_index": pa.array([self.tasks[t] for t in names], pa.int64()),
                "task": pa.array(names, pa.string()),
            }
        )
        # pandas metadata: LeRobot reads the file with pandas, which makes "task" the index.
        pandas_meta = {
            "index_columns": ["task"],
            "column_indexes": [
                {
                    "name": None,
                    "field_name": None,
                    "pandas_type": "unicode",
                    "numpy_type": "object",
                    "metadata": {"encoding": "UTF-8"},
                }
            ],
            "columns": [
                {
                    "name": "task_index",
                    "field_name": "task_index",
                    "pandas_type": "int64",
                    "numpy_type": "int64",
                    "metadata": None,
                },
                {
                    "name": "task",
                    "field_name": "task",
                    "pandas_type": "unicode",
                    "numpy_type": "object",
                    "metadata": None,
                },
            ],
            "creator": {"library": "pyarrow", "version": pa.__version__},
            "pandas_version": "2.2.3",
        }
        table = table.replace_schema_metadata({b"pandas": json.dumps(pandas_meta).encode()})
        path = os.path.join(self.root, TASKS_PATH)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        pq.write_table(table, path)

    def _write_episodes(self) -> None:
        rows = []
        for number, (row, stats) in enumerate(zip(self.rows, self.episode_stats)):
            full = dict(row)
            full["meta/episodes/chunk_index"], full["meta/episodes/file_index"] = divmod(
                number // EPISODES_PER_META_FILE, self.chunks_size
            )
            for key, values in stats.items():
                for name, value in values.items():
                    full[f"stats/{key}/{name}"] = np.asarray(value).tolist()
            rows.append(full)
        groups: dict[tuple[int, int], list[dict[str, Any]]] = {}
        for full in rows:
            at = (full["meta/episodes/chunk_index"], full["meta/episodes/file_index"])
            groups.setdefault(at, []).append(full)
        for (chunk, file), group in groups.items():
            path = os.path.join(self.root, EPISODES_PATH.format(chunk_index=chunk, file_index=file))
            os.makedirs(os.path.dirname(path), exist_ok=True)
            pq.write_table(pa.Table.from_pylist(group), path)


def _new_builder(
    root: str,
    fps: int,
    *,
    video: bool,
    robot_type: str | None,
    codec: str,
    **sizes: Any,
) -> _DatasetBuilder:
    tmp = temporary_path_for(root)
    return _DatasetBuilder(tmp, fps, video=video, robot_type=robot_type, codec=codec, **sizes)


def write_lerobot_dataset(
    root: str | os.PathLike[str],
    episodes: Iterable[Episode],
    fps: int,
    *,
    video: bool = True,
    robot_type: str | None = None,
    codec: str = DEFAULT_CODEC,
    chunks_size: int = CHUNKS_SIZE,
    data_files_size_in_mb: float = DATA_FILES_SIZE_IN_MB,
    video_files_size_in_mb: float = VIDEO_FILES_SIZE_IN_MB,
) -> LeRobotDatasetInfo:
    """Writes ``episodes`` as a LeRobot v3.0 dataset directory at ``root``.

    The dataset is built in a temporary directory beside ``root`` and renamed into
    place (:func:`t2r.atomic.publish_directory`), so ``root`` is never a half
    dataset; an existing ``root`` is replaced. Episodes are encoded one at a time
    (memory: one episode).

    Args:
        root: the dataset directory.
        episodes: the episodes (see the module docstring for how steps map).
        fps: frames per second (LeRobot requires an integer).
        video: cameras as MP4 streams (``video``) or PNG frames in the parquet
            files (``image``, lossless).
        robot_type: ``info.json``'s ``robot_type``.
        codec: the video codec (``libsvtav1``, LeRobot's default; or ``h264``).
        chunks_size, data_files_size_in_mb, video_files_size_in_mb: file layout
            limits (LeRobot's defaults 1000, 100, 200).

    Returns:
        The :class:`LeRobotDatasetInfo` of the written dataset.
    """
    root = os.path.abspath(os.fspath(root))
    os.makedirs(os.path.dirname(root), exist_ok=True)
    builder = _new_builder(
        root,
        fps,
        video=video,
        robot_type=robot_type,
        codec=codec,
        chunks_size=chunks_size,
        data_files_size_in_mb=data_files_size_in_mb,
        video_files_size_in_mb=video_files_size_in_mb,
    )
    try:
        for episode in episodes:
            builder.add(episode)
        builder.finish()
    except BaseException:
        builder.close_files()
        shutil.rmtree(builder.root, ignore_errors=True)
        raise
    publish_directory(builder.root, root)
    logger.info(
        "wrote LeRobot %s dataset %s: %d episodes, %d frames",
        CODEBASE_VERSION,
        root,
        len(builder.rows),
        builder.total_frames,
    )
    return load_lerobot_info(root)


class LeRobotEpisodeWriter:
    """A replay writer that writes LeRobot datasets: ``run_env(..., replay_writer=...)``.

    ``open(path)`` starts a dataset at ``path`` (run_env passes a unique name under
    ``<root_dir>/policy_<tag>/``), built in a temporary directory beside it;
    ``write(episodes)`` takes what the ``episode_to_transitions_fn`` made of one
    episode, a list of :class:`Episode` (usually one; none to skip it), and
    encodes them right away; ``close()`` writes ``meta/`` and renames the dataset
    into place (nothing when no episode came). ``paths`` lists the datasets written.

    Args:
        fps, video, robot_type, codec: as for :func:`write_lerobot_dataset`.
    """

    def __init__(
        self,
        fps: int,
        *,
        video: bool = True,
        robot_type: str | None = None,
        codec: str = DEFAULT_CODEC,
    ) -> None:
        self.fps = fps
        self.video = video
        self.robot_type = robot_type
        self.codec = codec
        self.paths: list[str] = []
        self.num_episodes = 0
        self._path: str | None = None
        self._builder: _DatasetBuilder | None = None

    @property
    def is_open(self) -> bool:
        return self._path is not None

    def open(self, path: str | os.PathLike[str]) -> None:
        if self._path is not None:
            raise ValueError(f"LeRobotEpisodeWriter is already open (on {self._path}).")
        self._path = os.path.abspath(os.fspath(path))
        os.makedirs(os.path.dirname(self._path), exist_ok=True)
        self._builder = _new_builder(
            self._path, self.fps, video=self.video, robot_type=self.robot_type, codec=self.codec
        )

    def write(self, episodes: Sequence[Episode] | Episode) -> None:
        if self._builder is None:
            raise ValueError("LeRobotEpisodeWriter.write() before open().")
        if isinstance(episodes, Episode):
            episodes = [episodes]
        for episode in episodes:
            if not isinstance(episode, Episode):
                raise TypeError(
                    f"LeRobotEpisodeWriter.write takes t2r.data.episodes.Episode, got "
                    f"{type(episode).__name__}."
                )
            self._builder.add(episode)

    def close(self) -> None:
        path, builder = self._path, self._builder
        self._path, self._builder = None, None
        if path is None or builder is None:
            return
        if not builder.rows:
            builder.close_files()
            shutil.rmtree(builder.root, ignore_errors=True)
            return
        try:
            builder.finish()
        except BaseException:
            shutil.rmtree(builder.root, ignore_errors=True)
            raise
        publish_directory(builder.root, path)
        self.paths.append(path)
        self.num_episodes += len(builder.rows)


def episode_from_transitions(transitions: Sequence[Sequence[Any]], task: str = "") -> list[Episode]:
    """An ``episode_to_transitions_fn`` for :class:`LeRobotEpisodeWriter` under ``run_env``.

    ``transitions``: run_env's ``(obs, action, reward, new_obs, done, debug)`` per
    step. The Episode's steps: each observation key ``k`` of a dict observation as
    ``observation/k`` (``(H, W, 3)`` uint8 images become cameras), a non-dict
    observation as ``observation/state``; ``action``; ``next/reward`` (float32) and
    ``next/done`` (bool), LeRobot's names. ``metadata["task"]`` is ``task``.
    Returns ``[episode]`` (``[]`` for an empty episode).
    """
    if not transitions:
        return []
    observations = [t[0] for t in transitions]
    steps: dict[str, np.ndarray] = {}
    if isinstance(observations[0], Mapping):
        for key in observations[0]:
            steps[f"observation/{key}"] = np.stack([np.asarray(o[key]) for o in observations])
    else:
        steps["observation/state"] = np.stack([np.asarray(o) for o in observations])
    steps["action"] = np.stack([np.asarray(t[1]) for t in transitions])
    steps["next/reward"] = np.array([t[2] for t in transitions], np.float32)
    steps["next/done"] = np.array([bool(t[4]) for t in transitions])
    return [Episode(steps=steps, metadata={"task": task})]
