"""The metadata of a LeRobot dataset directory: ``meta/`` read into one object.

Layout facts (LeRobot ``codebase_version`` ``v3.0``, as ``src/lerobot/datasets/``
of huggingface/lerobot at commit 7427f31801f944f5ec9ce53cda02862ce7d1638b, August
2026, writes it; v2.1 as LeRobot 0.3 wrote it):

v3.0::

    meta/info.json                       codebase_version, fps, robot_type, features,
                                         chunks_size, data_path, video_path, totals
    meta/stats.json                      {feature: {min, max, mean, std, count, q01..q99}}
    meta/tasks.parquet                   task (the pandas index) -> task_index
    meta/episodes/chunk-000/file-000.parquet
                                         one row per episode: episode_index, tasks,
                                         length, data/chunk_index, data/file_index,
                                         dataset_from_index, dataset_to_index,
                                         videos/<key>/{chunk_index, file_index,
                                         from_timestamp, to_timestamp},
                                         meta/episodes/{chunk_index, file_index},
                                         stats/<feature>/<stat>
    data/chunk-000/file-000.parquet      frames of many episodes (one row group each)
    videos/<key>/chunk-000/file-000.mp4  the frames of many episodes, back to back

v2.1::

    meta/info.json                       data_path "data/chunk-{episode_chunk:03d}/
                                         episode_{episode_index:06d}.parquet", video_path
                                         "videos/chunk-{episode_chunk:03d}/{video_key}/
                                         episode_{episode_index:06d}.mp4"
    meta/episodes.jsonl                  {"episode_index", "tasks", "length"} per line
    meta/tasks.jsonl                     {"task_index", "task"} per line
    meta/episodes_stats.jsonl            {"episode_index", "stats"} per line
    one parquet file and one MP4 per camera per episode; episode_chunk =
    episode_index // chunks_size.

Every frame row holds the default features ``timestamp`` (float32, seconds from the
episode's start, ``frame_index / fps``), ``frame_index`` (within the episode),
``episode_index``, ``index`` (within the dataset) and ``task_index``. A feature of
dtype ``video`` is a camera stream in the MP4 files, ``image`` a camera frame in
the parquet file (an HF ``Image`` struct of PNG ``bytes`` and a ``path``), any
numpy dtype (and ``string``) a parquet column; a feature of shape ``(1,)`` is a
scalar column (LeRobot's loader gives a scalar).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from t2r.data.errors import DataError
from t2r.specs import ExtendedTensorSpec, TensorSpecStruct

__all__ = [
    "CODEBASE_VERSION",
    "DEFAULT_FEATURES",
    "TOLERANCE_S",
    "LeRobotDatasetInfo",
    "LeRobotEpisodeInfo",
    "LeRobotFeature",
    "LeRobotVideoRef",
    "feature_path",
    "load_lerobot_info",
]

logger = logging.getLogger(__name__)

CODEBASE_VERSION = "v3.0"
"""The layout :func:`t2r.data.lerobot.write_lerobot_dataset` writes."""
READ_VERSIONS = ("v2.1", "v3.0")
TOLERANCE_S = 1e-4
"""LeRobot's ``tolerance_s``: a video frame matches a timestamp within this many seconds."""
DEFAULT_FEATURES = ("timestamp", "frame_index", "episode_index", "index", "task_index")
"""Features every frame row holds (LeRobot's ``DEFAULT_FEATURES``)."""

INFO_PATH = "meta/info.json"
STATS_PATH = "meta/stats.json"
TASKS_PATH = "meta/tasks.parquet"
EPISODES_DIR = "meta/episodes"
EPISODES_PATH = EPISODES_DIR + "/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
DATA_PATH = "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
VIDEO_PATH = "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
LEGACY_EPISODES_PATH = "meta/episodes.jsonl"
LEGACY_TASKS_PATH = "meta/tasks.jsonl"
LEGACY_EPISODES_STATS_PATH = "meta/episodes_stats.jsonl"
CAMERA_DTYPES = ("video", "image")
SKIPPED_DTYPES = {"language": "a LeRobot language-annotation column (nested events), not read"}


def feature_path(key: str) -> str:
    """The t2r path of a LeRobot key: ``observation.images.top`` -> ``observation/images/top``."""
    return key.replace(".", "/")


@dataclasses.dataclass(frozen=True)
class LeRobotFeature:
    """One entry of ``info.json``'s ``features``.

    Attributes:
        key: the LeRobot key (``observation.state``), the parquet column or video key.
        dtype: ``video``, ``image``, ``string`` or a numpy dtype name.
        shape: as ``info.json`` says; cameras ``(H, W, C)`` or ``(C, H, W)`` by ``names``.
        names: the per-dimension names (or None).
        info: the ``info`` dict of a video feature (codec, pix_fmt, ...), else None.
    """

    key: str
    dtype: str
    shape: tuple[int, ...]
    names: Any = None
    info: Mapping[str, Any] | None = None

    @property
    def path(self) -> str:
        return feature_path(self.key)

    @property
    def is_camera(self) -> bool:
        return self.dtype in CAMERA_DTYPES

    @property
    def step_shape(self) -> tuple[int, ...]:
        """One frame's value as t2r gives it: cameras ``(H, W, C)``; ``(1,)`` -> ``()``."""
        if self.is_camera:
            if isinstance(self.names, Sequence) and len(self.names) == 3:
                if str(self.names[0]) in ("channels", "channel", "c"):
                    c, h, w = self.shape
                    return (h, w, c)
            return self.shape
        if self.shape == (1,):
            return ()
        return self.shape

    @property
    def numpy_dtype(self) -> np.dtype[Any]:
        if self.is_camera:
            return np.dtype(np.uint8)
        if self.dtype == "string":
            return np.dtype(object)
        return np.dtype(self.dtype)

    def spec(self) -> ExtendedTensorSpec:
        """The t2r spec of one frame's value (name = the LeRobot key)."""
        if self.dtype == "string":
            return ExtendedTensorSpec(self.step_shape, "string", name=self.key)
        if self.is_camera:
            return ExtendedTensorSpec(self.step_shape, "uint8", name=self.key)
        return ExtendedTensorSpec(self.step_shape, self.dtype, name=self.key)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"dtype": self.dtype, "shape": list(self.shape), "names": self.names}
        if self.info is not None:
            out["info"] = dict(self.info)
        return out


@dataclasses.dataclass(frozen=True)
class LeRobotVideoRef:
    """Where an episode's frames of one camera are: a file and a time range in it."""

    file: str  # relative to the dataset root
    from_timestamp: float
    to_timestamp: float


@dataclasses.dataclass(frozen=True)
class LeRobotEpisodeInfo:
    """One episode's row of ``meta/episodes`` (or line of ``episodes.jsonl``)."""

    episode_index: int
    length: int
    tasks: tuple[str, ...]
    data_file: str  # relative to the dataset root
    dataset_from_index: int
    dataset_to_index: int
    videos: Mapping[str, LeRobotVideoRef]
    stats: Mapping[str, Mapping[str, np.ndarray]]


@dataclasses.dataclass(frozen=True)
class LeRobotDatasetInfo:
    """What ``meta/`` of a LeRobot dataset says.

    Attributes:
        root: the dataset directory.
        codebase_version: ``v3.0`` or ``v2.1``.
        fps: frames per second (every episode, every camera).
        features: key -> feature, in ``info.json`` order (default features included).
        tasks: the task strings by ``task_index``.
        episodes: the episodes in ``episode_index`` order.
        stats: ``meta/stats.json`` as arrays (empty when absent).
        raw: ``info.json`` as read.
        skipped_features: ``{key: why}`` of the features t2r does not read (LeRobot's
            ``language`` annotation columns, depth-map videos); they are left out of
            ``features``, the specs and the episodes read (a warning names them).
    """

    root: str
    codebase_version: str
    fps: int
    robot_type: str | None
    features: Mapping[str, LeRobotFeature]
    tasks: tuple[str, ...]
    episodes: tuple[LeRobotEpisodeInfo, ...]
    stats: Mapping[str, Mapping[str, np.ndarray]]
    raw: Mapping[str, Any]
    skipped_features: Mapping[str, str] = dataclasses.field(default_factory=dict)

    @property
    def total_episodes(self) -> int:
        return len(self.episodes)

    @property
    def total_frames(self) -> int:
        return sum(e.length for e in self.episodes)

    @property
    def video_keys(self) -> list[str]:
        return [k for k, f in self.features.items() if f.dtype == "video"]

    @property
    def image_keys(self) -> list[str]:
        return [k for k, f in self.features.items() if f.dtype == "image"]

    @property
    def camera_keys(self) -> list[str]:
        return [k for k, f in self.features.items() if f.is_camera]

    def __post_init__(self) -> None:
        by_index = {e.episode_index: e for e in self.episodes}
        if len(by_index) != len(self.episodes):
            raise DataError(f"{self.root}: meta/episodes lists an episode_index twice.")
        object.__setattr__(self, "_by_index", by_index)

    def episode(self, episode_index: int) -> LeRobotEpisodeInfo:
        found = self._by_index.get(int(episode_index))  # type: ignore[attr-defined]
        if found is not None:
            return found
        raise KeyError(
            f"{self.root}: no episode {episode_index}; it has episodes "
            f"{[e.episode_index for e in self.episodes][:20]}."
        )

    def feature_specs(self, include_default: bool = False) -> TensorSpecStruct:
        """One frame's features as specs: path ``observation/images/top``, name the key.

        Cameras are ``(H, W, C)`` uint8, ``(1,)`` features scalars, strings string
        specs. The default features (``timestamp``, ``frame_index``, ...) only with
        ``include_default``.
        """
        return TensorSpecStruct(
            (f.path, f.spec())
            for key, f in self.features.items()
            if include_default or key not in DEFAULT_FEATURES
        )


# ------------------------------------------------------------------------------ reading


def read_json(path: str) -> Any:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        raise DataError(f"{path}: not found; is this a LeRobot dataset directory?") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: not valid JSON: {e}") from e


def read_jsonl(path: str) -> list[dict[str, Any]]:
    rows = []
    try:
        with open(path, encoding="utf-8") as f:
            for number, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as e:
                    raise DataError(f"{path}: line {number}: not valid JSON: {e}") from e
                if not isinstance(row, dict):
                    raise DataError(f"{path}: line {number}: not a JSON object.")
                rows.append(row)
    except FileNotFoundError:
        raise DataError(f"{path}: not found (a LeRobot v2.1 dataset has it).") from None
    return rows


def read_parquet(path: str, **kwargs: Any) -> pa.Table:
    """A parquet table; a missing or unreadable file is a DataError naming it."""
    if not os.path.isfile(path):
        raise DataError(f"{path}: not found.")
    try:
        return pq.read_table(path, **kwargs)
    except (pa.ArrowException, OSError) as e:
        raise DataError(f"{path}: not a readable parquet file: {e}") from e


def _as_int(where: str, value: Any, what: str) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise DataError(f"{where}: {what} is {value!r}, not an integer.") from None


def _is_depth(entry: Mapping[str, Any]) -> bool:
    """LeRobot's ``is_depth_map``: the flag in ``info`` or the legacy ``video_info``."""
    info = entry.get("info") or {}
    video_info = entry.get("video_info") or {}
    return bool(
        info.get("is_depth_map")
        or info.get("video.is_depth_map")
        or video_info.get("video.is_depth_map")
    )


def _features(where: str, raw: Any) -> tuple[dict[str, LeRobotFeature], dict[str, str]]:
    """The features t2r reads, and ``{key: why}`` for those it skips."""
    if not isinstance(raw, Mapping) or not raw:
        raise DataError(f"{where}: 'features' must be a non-empty object.")
    out = {}
    skipped = {}
    for key, entry in raw.items():
        if not isinstance(entry, Mapping) or "dtype" not in entry or "shape" not in entry:
            raise DataError(f"{where}: feature {key!r} needs 'dtype' and 'shape', got {entry!r}.")
        dtype = str(entry["dtype"])
        if dtype in SKIPPED_DTYPES:
            skipped[str(key)] = SKIPPED_DTYPES[dtype]
            continue
        if dtype in CAMERA_DTYPES and _is_depth(entry):
            skipped[str(key)] = "a depth map (12-bit, quantized), which t2r does not decode"
            continue
        try:
            shape = tuple(int(d) for d in entry["shape"])
        except (TypeError, ValueError):
            raise DataError(
                f"{where}: feature {key!r} has shape {entry['shape']!r}, not a list of ints."
            ) from None
        if dtype not in (*CAMERA_DTYPES, "string"):
            try:
                np.dtype(dtype)
            except TypeError:
                raise DataError(
                    f"{where}: feature {key!r} has dtype {dtype!r}; t2r reads video, image, "
                    "string and numpy dtypes."
                ) from None
        if dtype in CAMERA_DTYPES and len(shape) != 3:
            raise DataError(f"{where}: camera feature {key!r} has shape {shape}, not 3 dims.")
        info = entry.get("info") or entry.get("video_info")
        out[str(key)] = LeRobotFeature(str(key), dtype, shape, entry.get("names"), info)
    if skipped:
        logger.warning(
            "%s: skipping features t2r does not read: %s",
            where,
            "; ".join(f"{k!r}: {why}" for k, why in skipped.items()),
        )
    return out, skipped


def _stats_arrays(raw: Any) -> dict[str, dict[str, np.ndarray]]:
    out: dict[str, dict[str, np.ndarray]] = {}
    if not isinstance(raw, Mapping):
        return out
    for key, entry in raw.items():
        if isinstance(entry, Mapping):
            out[str(key)] = {str(k): np.atleast_1d(np.asarray(v)) for k, v in entry.items()}
    return out


def _tasks_v3(root: str) -> tuple[str, ...]:
    path = os.path.join(root, TASKS_PATH)
    table = read_parquet(path)
    names = table.column_names
    task_column = "task" if "task" in names else None
    if task_column is None:
        index_columns = [c for c in names if c.startswith("__index_level_")]
        task_column = index_columns[0] if index_columns else None
    if task_column is None or "task_index" not in names:
        raise DataError(f"{path}: expected columns 'task' and 'task_index', found {names}.")
    tasks = table.column(task_column).to_pylist()
    indices = [int(i) for i in table.column("task_index").to_pylist()]
    if sorted(indices) != list(range(len(indices))):
        raise DataError(f"{path}: task_index values {indices} are not 0..{len(indices) - 1}.")
    ordered = [""] * len(indices)
    for index, task in zip(indices, tasks):
        ordered[index] = str(task)
    return tuple(ordered)


def _tasks_v21(root: str) -> tuple[str, ...]:
    path = os.path.join(root, LEGACY_TASKS_PATH)
    rows = read_jsonl(path)
    by_index = {}
    for row in rows:
        if "task_index" not in row or "task" not in row:
            raise DataError(f"{path}: each line needs 'task_index' and 'task', got {row!r}.")
        by_index[_as_int(path, row["task_index"], "task_index")] = str(row["task"])
    if sorted(by_index) != list(range(len(by_index))):
        raise DataError(f"{path}: task_index values {sorted(by_index)} are not 0..n-1.")
    return tuple(by_index[i] for i in range(len(by_index)))


def _row_stats(row: Mapping[str, Any]) -> dict[str, dict[str, np.ndarray]]:
    stats: dict[str, dict[str, np.ndarray]] = {}
    for column, value in row.items():
        if column.startswith("stats/") and value is not None:
            _, rest = column.split("/", 1)
            key, _, stat = rest.rpartition("/")
            stats.setdefault(key, {})[stat] = np.atleast_1d(np.asarray(value))
    return stats


def _episodes_v3(
    root: str, data_path: str, video_path: str | None, video_keys: list[str], fps: int
) -> tuple[LeRobotEpisodeInfo, ...]:
    directory = os.path.join(root, EPISODES_DIR)
    if not os.path.isdir(directory):
        raise DataError(f"{directory}: not found; a LeRobot v3.0 dataset lists episodes there.")
    files = sorted(
        os.path.join(directory, chunk, name)
        for chunk in os.listdir(directory)
        if os.path.isdir(os.path.join(directory, chunk))
        for name in os.listdir(os.path.join(directory, chunk))
        if name.endswith(".parquet") and not name.startswith(".")
    )
    if not files:
        raise DataError(f"{directory}: holds no parquet file of episodes.")
    episodes = []
    for path in files:
        for number, row in enumerate(read_parquet(path).to_pylist()):
            where = f"{path}: row {number}"
            required = ("episode_index", "length", "data/chunk_index", "data/file_index")
            missing = [c for c in required if c not in row]
            if missing:
                raise DataError(f"{where}: no column(s) {missing}; it has {sorted(row)[:12]}.")
            index = _as_int(where, row["episode_index"], "episode_index")
            length = _as_int(where, row["length"], "length")
            data_file = data_path.format(
                chunk_index=_as_int(where, row["data/chunk_index"], "data/chunk_index"),
                file_index=_as_int(where, row["data/file_index"], "data/file_index"),
                episode_index=index,
            )
            videos = {}
            for key in video_keys:
                names = [f"videos/{key}/{c}" for c in ("chunk_index", "file_index")]
                if video_path is None or any(n not in row for n in names):
                    raise DataError(f"{where}: no {names} for the video feature {key!r}.")
                file = video_path.format(
                    video_key=key,
                    chunk_index=_as_int(where, row[names[0]], names[0]),
                    file_index=_as_int(where, row[names[1]], names[1]),
                    episode_index=index,
                )
                start = float(row.get(f"videos/{key}/from_timestamp") or 0.0)
                end = row.get(f"videos/{key}/to_timestamp")
                videos[key] = LeRobotVideoRef(
                    file, start, float(end) if end is not None else start + length / fps
                )
            from_index = row.get("dataset_from_index")
            to_index = row.get("dataset_to_index")
            episodes.append(
                LeRobotEpisodeInfo(
                    episode_index=index,
                    length=length,
                    tasks=tuple(str(t) for t in (row.get("tasks") or ())),
                    data_file=data_file,
                    dataset_from_index=-1 if from_index is None else int(from_index),
                    dataset_to_index=-1 if to_index is None else int(to_index),
                    videos=videos,
                    stats=_row_stats(row),
                )
            )
    return tuple(sorted(episodes, key=lambda e: e.episode_index))


def _episodes_v21(
    root: str,
    data_path: str,
    video_path: str | None,
    video_keys: list[str],
    chunks_size: int,
    fps: int,
) -> tuple[LeRobotEpisodeInfo, ...]:
    path = os.path.join(root, LEGACY_EPISODES_PATH)
    stats_path = os.path.join(root, LEGACY_EPISODES_STATS_PATH)
    stats: dict[int, dict[str, dict[str, np.ndarray]]] = {}
    if os.path.exists(stats_path):
        for row in read_jsonl(stats_path):
            if "episode_index" in row:
                stats[int(row["episode_index"])] = _stats_arrays(row.get("stats"))
    episodes = []
    start = 0
    rows = read_jsonl(path)
    for number, row in enumerate(sorted(rows, key=lambda r: int(r.get("episode_index", -1)))):
        where = f"{path}: episode line {number + 1}"
        if "episode_index" not in row or "length" not in row:
            raise DataError(f"{where}: needs 'episode_index' and 'length', got {sorted(row)}.")
        index = _as_int(where, row["episode_index"], "episode_index")
        length = _as_int(where, row["length"], "length")
        chunk = index // chunks_size
        videos = {}
        for key in video_keys:
            if video_path is None:
                raise DataError(f"{where}: video feature {key!r} but info.json has no video_path.")
            file = video_path.format(video_key=key, episode_chunk=chunk, episode_index=index)
            videos[key] = LeRobotVideoRef(file, 0.0, length / fps)
        episodes.append(
            LeRobotEpisodeInfo(
                episode_index=index,
                length=length,
                tasks=tuple(str(t) for t in (row.get("tasks") or ())),
                data_file=data_path.format(episode_chunk=chunk, episode_index=index),
                dataset_from_index=start,
                dataset_to_index=start + length,
                videos=videos,
                stats=stats.get(index, {}),
            )
        )
        start += length
    return tuple(episodes)


def load_lerobot_info(root: str | os.PathLike[str]) -> LeRobotDatasetInfo:
    """Reads ``meta/`` of a LeRobot dataset (v3.0, or v2.1).

    Raises:
        DataError: a missing or malformed file (named), an unsupported
            ``codebase_version`` or feature dtype.
    """
    root = os.fspath(root)
    info_path = os.path.join(root, INFO_PATH)
    raw = read_json(info_path)
    if not isinstance(raw, dict):
        raise DataError(f"{info_path}: not a JSON object.")
    version = str(raw.get("codebase_version", ""))
    if version not in READ_VERSIONS:
        raise DataError(
            f"{info_path}: codebase_version {version!r}; t2r reads {list(READ_VERSIONS)}."
        )
    try:
        fps_value = float(raw["fps"])
    except (KeyError, TypeError, ValueError):
        raise DataError(f"{info_path}: 'fps' must be a number, got {raw.get('fps')!r}.") from None
    if fps_value <= 0 or fps_value != round(fps_value):
        raise DataError(f"{info_path}: 'fps' must be a positive integer, got {raw.get('fps')!r}.")
    features, skipped = _features(info_path, raw.get("features"))
    video_keys = [k for k, f in features.items() if f.dtype == "video"]
    video_path = raw.get("video_path")
    if "data_path" not in raw:
        raise DataError(f"{info_path}: no 'data_path' template.")
    data_path = str(raw["data_path"])
    if video_keys and not video_path:
        raise DataError(f"{info_path}: video features {video_keys} but no 'video_path'.")
    if version == "v3.0":
        tasks = _tasks_v3(root) if int(raw.get("total_tasks", 1) or 0) > 0 else ()
        episodes = _episodes_v3(root, data_path, video_path, video_keys, int(fps_value))
    else:
        chunks_size = _as_int(info_path, raw.get("chunks_size", 1000), "chunks_size")
        tasks = _tasks_v21(root)
        episodes = _episodes_v21(
            root, data_path, video_path, video_keys, chunks_size, int(fps_value)
        )
    total = raw.get("total_episodes")
    if total is not None and int(total) != len(episodes):
        raise DataError(
            f"{info_path}: total_episodes is {total}, but meta/episodes lists {len(episodes)}."
        )
    stats_path = os.path.join(root, STATS_PATH)
    stats = _stats_arrays(read_json(stats_path)) if os.path.exists(stats_path) else {}
    return LeRobotDatasetInfo(
        root=root,
        codebase_version=version,
        fps=int(fps_value),
        robot_type=raw.get("robot_type"),
        features=features,
        skipped_features=skipped,
        tasks=tasks,
        episodes=episodes,
        stats=stats,
        raw=raw,
    )
