"""LeRobot datasets: read (v3.0, v2.1), write (v3.0), and train on them.

A LeRobot dataset directory (the Hugging Face robot-learning format; layout in
:mod:`t2r.data.lerobot.info`) holds ``meta/`` (info.json, tasks, episodes,
stats), frames in parquet files, and camera streams as MP4 (or PNG frames in
the parquet files). t2r reads it with pyarrow and PyAV (no pandas, no
``datasets``, no LeRobot), writes it as LeRobot's own writer does, and serves
its frames through the shared input pipeline (:class:`LeRobotSource`,
:class:`LeRobotInputGenerator`).

Needs the ``lerobot`` extra (pyarrow, av).
"""

from __future__ import annotations

from t2r.data.lerobot.info import (
    CODEBASE_VERSION,
    DEFAULT_FEATURES,
    TOLERANCE_S,
    LeRobotDatasetInfo,
    LeRobotEpisodeInfo,
    LeRobotFeature,
    LeRobotVideoRef,
    feature_path,
    load_lerobot_info,
)
from t2r.data.lerobot.reader import LeRobotEpisodeData, LeRobotReader, read_lerobot_episodes
from t2r.data.lerobot.source import (
    IS_PAD_SUFFIX,
    LeRobotFrame,
    LeRobotInputGenerator,
    LeRobotSource,
    ParseLeRobotFramesFn,
    delta_indices,
)
from t2r.data.lerobot.video import DEFAULT_CODEC, decode_frames
from t2r.data.lerobot.writer import (
    LeRobotEpisodeWriter,
    episode_from_transitions,
    write_lerobot_dataset,
)

__all__ = [
    "CODEBASE_VERSION",
    "DEFAULT_CODEC",
    "DEFAULT_FEATURES",
    "IS_PAD_SUFFIX",
    "TOLERANCE_S",
    "LeRobotDatasetInfo",
    "LeRobotEpisodeData",
    "LeRobotEpisodeInfo",
    "LeRobotEpisodeWriter",
    "LeRobotFeature",
    "LeRobotFrame",
    "LeRobotInputGenerator",
    "LeRobotReader",
    "LeRobotSource",
    "LeRobotVideoRef",
    "ParseLeRobotFramesFn",
    "decode_frames",
    "delta_indices",
    "episode_from_transitions",
    "feature_path",
    "load_lerobot_info",
    "read_lerobot_episodes",
    "write_lerobot_dataset",
]
