"""LeRobot datasets: t2r writes (v3.0), t2r reads (v3.0 and a hand-built v2.1), the
format's invariants, and errors that name the file.

No dataset written by LeRobot's own writer is in ../shared/fixtures; the layout
asserted here is the one LeRobot's source (src/lerobot/datasets/, commit 7427f31)
writes, see t2r.data.lerobot.info.
"""

from __future__ import annotations

import json
import os
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.needs import needs_module

pa = needs_module("pyarrow")
pq = needs_module("pyarrow.parquet")
av = needs_module("av")

from t2r.atomic import is_temporary_path  # noqa: E402
from t2r.data import DataError  # noqa: E402
from t2r.data.episodes import Episode  # noqa: E402
from t2r.data.lerobot import (  # noqa: E402
    CODEBASE_VERSION,
    LeRobotEpisodeWriter,
    decode_frames,
    load_lerobot_info,
    read_lerobot_episodes,
    write_lerobot_dataset,
)

FPS = 10
LENGTHS = (5, 7, 3)
H, W = 48, 64


def frames(n: int, seed: int) -> np.ndarray:
    """Smooth moving gradients (a codec keeps them within a few levels)."""
    y, x = np.mgrid[0:H, 0:W]
    out = [
        np.stack(
            [(x * 3 + t * 4 + seed * 20) % 256, (y * 4 + t * 2) % 256, (x + y + seed) % 256], -1
        )
        for t in range(n)
    ]
    return np.asarray(out, np.uint8)


def make_episodes(lengths: tuple[int, ...] = LENGTHS, seed: int = 0) -> list[Episode]:
    rng = np.random.default_rng(seed)
    return [
        Episode(
            steps={
                "observation/state": rng.normal(size=(n, 4)).astype(np.float32),
                "observation/images/cam": frames(n, i),
                "action": rng.normal(size=(n, 2)).astype(np.float32),
                "next/reward": rng.normal(size=n).astype(np.float32),
                "next/done": np.arange(n) == n - 1,
                "grip": rng.integers(0, 5, size=(n, 2, 3)).astype(np.int64),
            },
            metadata={"task": f"task {i % 2}"},
        )
        for i, n in enumerate(lengths)
    ]


def assert_same_episodes(written: list[Episode], read: list[Episode], camera_tol: float) -> None:
    assert len(written) == len(read)
    for i, (a, b) in enumerate(zip(written, read)):
        assert set(a.steps) == set(b.steps)
        for key, value in a.steps.items():
            got = b.steps[key]
            assert got.shape == value.shape and got.dtype == value.dtype, (i, key)
            if key == "observation/images/cam" and camera_tol:
                error = np.abs(got.astype(int) - value.astype(int))
                assert error.mean() < camera_tol, (i, error.mean())
                assert not np.array_equal(got, np.zeros_like(got))
            else:
                np.testing.assert_array_equal(got, value, err_msg=f"episode {i} {key}")
        assert b.metadata["task"] == a.metadata["task"]
        assert b.metadata["episode_index"] == i and b.metadata["fps"] == FPS


# ---------------------------------------------------------------------- round trips


@pytest.mark.parametrize("codec", ["libsvtav1", "h264"])
def test_video_round_trip_within_codec_loss(tmp_path: Path, codec: str) -> None:
    episodes = make_episodes()
    info = write_lerobot_dataset(tmp_path / "ds", episodes, FPS, codec=codec)
    assert info.codebase_version == CODEBASE_VERSION == "v3.0"
    assert info.video_keys == ["observation.images.cam"]
    feature = info.raw["features"]["observation.images.cam"]
    assert feature["info"]["video.codec"] == ("av1" if codec == "libsvtav1" else "h264")
    assert feature["info"]["video.pix_fmt"] == "yuv420p" and feature["info"]["video.g"] == 2
    read = list(read_lerobot_episodes(tmp_path / "ds"))
    assert_same_episodes(episodes, read, camera_tol=4.0)


def test_each_decoded_frame_is_the_frame_of_its_timestamp(tmp_path: Path) -> None:
    """Frame-exact: each frame is nearer its own original than its neighbours'."""
    episodes = make_episodes((12,))
    write_lerobot_dataset(tmp_path / "ds", episodes, FPS)
    (read,) = read_lerobot_episodes(tmp_path / "ds")
    original = episodes[0].steps["observation/images/cam"].astype(int)
    decoded = read.steps["observation/images/cam"].astype(int)
    distances = np.abs(decoded[:, None] - original[None]).mean(axis=(2, 3, 4))
    assert distances.argmin(axis=1).tolist() == list(range(12))


def test_image_round_trip_is_exact(tmp_path: Path) -> None:
    episodes = make_episodes()
    info = write_lerobot_dataset(tmp_path / "ds", episodes, FPS, video=False)
    assert info.video_keys == [] and info.image_keys == ["observation.images.cam"]
    assert info.raw["video_path"] is None and not (tmp_path / "ds" / "videos").exists()
    assert_same_episodes(episodes, list(read_lerobot_episodes(tmp_path / "ds")), camera_tol=0)
    column = pq.read_table(tmp_path / "ds/data/chunk-000/file-000.parquet").column(
        "observation.images.cam"
    )
    assert column.type == pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    assert column[0].as_py()["bytes"].startswith(b"\x89PNG")


def test_text_and_per_frame_tasks_round_trip(tmp_path: Path) -> None:
    steps = {
        "action": np.zeros((4, 1), np.float64),
        "note": np.array(["a", "b", "", "ü"], dtype=object),
        "task": np.array(["pick", "pick", "place", "place"], dtype=object),
    }
    info = write_lerobot_dataset(tmp_path / "ds", [Episode(steps)], FPS)
    assert info.tasks == ("pick", "place") and info.raw["features"]["note"]["dtype"] == "string"
    (read,) = read_lerobot_episodes(tmp_path / "ds")
    assert read.steps["note"].tolist() == ["a", "b", "", "ü"]
    assert read.steps["task"].tolist() == ["pick", "pick", "place", "place"]
    assert read.metadata["tasks"] == ["pick", "place"] and "task" not in read.metadata
    # A (T, 1) feature is a LeRobot (1,) feature, a scalar column: it comes back (T,).
    np.testing.assert_array_equal(read.steps["action"], steps["action"][:, 0])


def test_reading_a_subset_of_episodes_in_the_order_asked(tmp_path: Path) -> None:
    episodes = make_episodes()
    write_lerobot_dataset(tmp_path / "ds", episodes, FPS, video=False)
    read = list(read_lerobot_episodes(tmp_path / "ds", episodes=[2, 0]))
    assert [e.metadata["episode_index"] for e in read] == [2, 0]
    np.testing.assert_array_equal(read[0].steps["action"], episodes[2].steps["action"])


# ------------------------------------------------------------------ the format's facts


def test_layout_and_invariants(tmp_path: Path) -> None:
    episodes = make_episodes()
    root = tmp_path / "ds"
    info = write_lerobot_dataset(root, episodes, FPS, robot_type="toy")
    raw = json.loads((root / "meta/info.json").read_text())
    assert raw["codebase_version"] == "v3.0" and raw["fps"] == FPS and raw["robot_type"] == "toy"
    assert raw["total_episodes"] == 3 and raw["total_frames"] == sum(LENGTHS)
    assert raw["total_tasks"] == 2 and raw["splits"] == {"train": "0:3"}
    assert raw["data_path"] == "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
    assert raw["video_path"] == (
        "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
    )
    features = raw["features"]
    assert features["observation.state"] == {"dtype": "float32", "shape": [4], "names": None}
    assert features["next.reward"]["shape"] == [1] and features["next.done"]["dtype"] == "bool"
    assert features["grip"]["shape"] == [2, 3]
    assert features["observation.images.cam"]["shape"] == [H, W, 3]
    for key in ("timestamp", "frame_index", "episode_index", "index", "task_index"):
        assert features[key]["shape"] == [1]

    data = pq.read_table(root / "data/chunk-000/file-000.parquet")
    assert pq.ParquetFile(root / "data/chunk-000/file-000.parquet").num_row_groups == 3
    assert "observation.images.cam" not in data.column_names  # in the MP4
    frame_index = data.column("frame_index").to_numpy()
    episode_index = data.column("episode_index").to_numpy()
    expected_frames = np.concatenate([np.arange(n) for n in LENGTHS])
    np.testing.assert_array_equal(frame_index, expected_frames)
    np.testing.assert_array_equal(episode_index, np.repeat([0, 1, 2], LENGTHS))
    np.testing.assert_array_equal(data.column("index").to_numpy(), np.arange(sum(LENGTHS)))
    np.testing.assert_allclose(
        data.column("timestamp").to_numpy(), expected_frames / FPS, atol=1e-7
    )
    assert data.schema.field("timestamp").type == pa.float32()
    assert data.schema.field("observation.state").type == pa.list_(pa.float32(), 4)
    assert data.column("task_index").to_pylist() == [0] * 5 + [1] * 7 + [0] * 3

    rows = pq.read_table(root / "meta/episodes/chunk-000/file-000.parquet").to_pylist()
    assert [r["episode_index"] for r in rows] == [0, 1, 2]
    assert [r["length"] for r in rows] == list(LENGTHS)
    assert [(r["dataset_from_index"], r["dataset_to_index"]) for r in rows] == [
        (0, 5),
        (5, 12),
        (12, 15),
    ]
    assert [r["tasks"] for r in rows] == [["task 0"], ["task 1"], ["task 0"]]
    cam = "videos/observation.images.cam"
    bounds = [(r[f"{cam}/from_timestamp"], r[f"{cam}/to_timestamp"]) for r in rows]
    np.testing.assert_allclose(bounds, [(0.0, 0.5), (0.5, 1.2), (1.2, 1.5)])
    assert all(r["data/file_index"] == 0 and r[f"{cam}/file_index"] == 0 for r in rows)
    np.testing.assert_allclose(
        rows[1]["stats/observation.state/mean"],
        episodes[1].steps["observation/state"].mean(0),
        rtol=1e-6,
    )
    assert rows[1]["stats/observation.state/count"] == [7]

    tasks = pq.read_table(root / "meta/tasks.parquet")
    assert tasks.column("task").to_pylist() == ["task 0", "task 1"]
    assert json.loads(tasks.schema.metadata[b"pandas"])["index_columns"] == ["task"]

    stats = json.loads((root / "meta/stats.json").read_text())
    state = np.concatenate([e.steps["observation/state"] for e in episodes])
    np.testing.assert_allclose(stats["observation.state"]["mean"], state.mean(0), rtol=1e-6)
    np.testing.assert_allclose(stats["observation.state"]["std"], state.std(0), rtol=1e-6)
    np.testing.assert_allclose(stats["observation.state"]["min"], state.min(0))
    assert stats["observation.state"]["count"] == [15]
    camera = np.concatenate([e.steps["observation/images/cam"] for e in episodes]) / 255.0
    np.testing.assert_allclose(
        np.asarray(stats["observation.images.cam"]["mean"]).reshape(3),
        camera.reshape(-1, 3).mean(0),
        rtol=1e-6,
    )
    assert np.asarray(stats["observation.images.cam"]["q50"]).shape == (3, 1, 1)
    assert set(stats["action"]) == {
        "min",
        "max",
        "mean",
        "std",
        "count",
        "q01",
        "q10",
        "q50",
        "q90",
        "q99",
    }
    assert info.stats["action"]["mean"].shape == (2,)

    video = root / "videos/observation.images.cam/chunk-000/file-000.mp4"
    with av.open(str(video)) as container:
        stream = container.streams.video[0]
        times = [float(f.pts * stream.time_base) for f in container.decode(stream)]
    np.testing.assert_allclose(times, np.arange(sum(LENGTHS)) / FPS, atol=1e-9)


def test_feature_specs(tmp_path: Path) -> None:
    info = write_lerobot_dataset(tmp_path / "ds", make_episodes(), FPS)
    specs = info.feature_specs()
    assert list(specs) == [
        "observation/state",
        "observation/images/cam",
        "action",
        "next/reward",
        "next/done",
        "grip",
    ]
    assert specs["observation/images/cam"].shape == (H, W, 3)
    assert str(specs["observation/images/cam"].dtype) == "torch.uint8"
    assert specs["observation/images/cam"].name == "observation.images.cam"
    assert specs["next/reward"].shape == () and specs["grip"].shape == (2, 3)
    assert "frame_index" in info.feature_specs(include_default=True)


def test_files_roll_over_at_the_size_limits(tmp_path: Path) -> None:
    episodes = make_episodes()
    info = write_lerobot_dataset(
        tmp_path / "ds",
        episodes,
        FPS,
        chunks_size=2,
        data_files_size_in_mb=1e-6,
        video_files_size_in_mb=1e-6,
    )
    assert [e.data_file for e in info.episodes] == [
        "data/chunk-000/file-000.parquet",
        "data/chunk-000/file-001.parquet",
        "data/chunk-001/file-000.parquet",
    ]
    refs = [e.videos["observation.images.cam"] for e in info.episodes]
    assert [r.file.split("/", 2)[2] for r in refs] == [
        "chunk-000/file-000.mp4",
        "chunk-000/file-001.mp4",
        "chunk-001/file-000.mp4",
    ]
    assert [r.from_timestamp for r in refs] == [0.0, 0.0, 0.0]
    assert_same_episodes(episodes, list(read_lerobot_episodes(tmp_path / "ds")), camera_tol=4.0)


# ------------------------------------------------------------------------- writing


def test_write_is_atomic(tmp_path: Path) -> None:
    root = tmp_path / "ds"

    def failing() -> Any:
        yield from make_episodes()[:2]
        raise RuntimeError("collector died")

    with pytest.raises(RuntimeError, match="collector died"):
        write_lerobot_dataset(root, failing(), FPS)
    assert os.listdir(tmp_path) == []  # neither the dataset nor a temporary directory

    write_lerobot_dataset(root, make_episodes((4,)), FPS)
    with pytest.raises(RuntimeError):
        write_lerobot_dataset(root, failing(), FPS)
    assert load_lerobot_info(root).total_frames == 4  # the old dataset, whole
    assert os.listdir(tmp_path) == ["ds"]

    write_lerobot_dataset(root, make_episodes((2, 3)), FPS)  # replaces it
    assert [e.length for e in load_lerobot_info(root).episodes] == [2, 3]


def test_write_errors_name_the_episode_and_feature(tmp_path: Path) -> None:
    good = make_episodes((3,))[0]
    with pytest.raises(ValueError, match=r"'observation\.x/y'.*may not contain '\.'"):
        write_lerobot_dataset(tmp_path / "a", [Episode({"observation.x/y": np.zeros(2)})], FPS)
    with pytest.raises(ValueError, match="'timestamp' is one of LeRobot's default features"):
        write_lerobot_dataset(tmp_path / "b", [Episode({"timestamp": np.zeros(2)})], FPS)
    other = Episode({**good.steps, "action": np.zeros((3, 5), np.float32)})
    with pytest.raises(
        ValueError, match=r"episode 1: 'action' is float32 \(5,\) per frame.*\(2,\)"
    ):
        write_lerobot_dataset(tmp_path / "c", [good, other], FPS)
    with pytest.raises(ValueError, match="fps must be a positive integer"):
        write_lerobot_dataset(tmp_path / "d", [good], 7.5)  # type: ignore[arg-type]
    assert not any(tmp_path.iterdir())


class CountingEnv:
    """A gymnasium-style env: 4 steps, an image and a state."""

    def __init__(self) -> None:
        self.t = 0

    def reset(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        self.t = 0
        return self._obs(), {}

    def _obs(self) -> dict[str, np.ndarray]:
        return {"image": frames(self.t + 1, 3)[-1], "state": np.full(3, self.t, np.float32)}

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        self.t += 1
        return self._obs(), 1.0, self.t >= 4, False, {}


class ZeroPolicy:
    def reset(self) -> None:
        pass

    def sample_action(self, obs: Any, explore_prob: float) -> tuple[np.ndarray, dict[str, Any]]:
        return np.zeros(2, np.float32), {}


def test_episode_writer_under_run_env_bound_by_gin(tmp_path: Path) -> None:
    """What `t2r collect` does: run_env with the writer and the transitions fn from gin."""
    gin = needs_module("gin")
    from t2r.bin import gin_config

    gin.clear_config()
    try:
        gin_config.parse(
            [],
            [
                "run_env.replay_writer = @LeRobotEpisodeWriter()",
                "LeRobotEpisodeWriter.fps = 10",
                "run_env.episode_to_transitions_fn = @episode_from_transitions",
                "episode_from_transitions.task = 'count'",
                "run_env.show_progress = False",
            ],
        )
        configured = gin.get_configurable("t2r.collect.run_env")
        result = configured(CountingEnv(), ZeroPolicy(), root_dir=str(tmp_path), num_episodes=3)
    finally:
        gin.clear_config()
    assert result.num_episodes == 3 and len(result.record_files) == 1
    (path,) = result.record_files
    assert Path(path).parent == tmp_path / "policy_collect"
    assert not [p for p in os.listdir(Path(path).parent) if is_temporary_path(p)]
    episodes = list(read_lerobot_episodes(path))
    assert [e.num_steps for e in episodes] == [4, 4, 4]
    assert sorted(episodes[0].steps) == [
        "action",
        "next/done",
        "next/reward",
        "observation/image",
        "observation/state",
    ]
    np.testing.assert_array_equal(episodes[2].steps["observation/state"][:, 0], [0, 1, 2, 3])
    assert episodes[2].steps["next/done"].tolist() == [False, False, False, True]
    assert episodes[0].metadata["task"] == "count"
    assert load_lerobot_info(path).video_keys == ["observation.image"]


def test_episode_writer_protocol(tmp_path: Path) -> None:
    writer = LeRobotEpisodeWriter(fps=FPS, video=False)
    with pytest.raises(ValueError, match="before open"):
        writer.write(make_episodes((2,)))
    writer.open(tmp_path / "empty")  # no episode: nothing is written
    writer.close()
    assert not any(tmp_path.iterdir()) and writer.paths == []
    writer.open(tmp_path / "a")
    writer.write(make_episodes((2, 3)))
    writer.write([])
    writer.write(make_episodes((4,))[0])
    assert not (tmp_path / "a").exists()  # published on close
    writer.close()
    assert writer.paths == [str(tmp_path / "a")] and writer.num_episodes == 3
    assert [e.length for e in load_lerobot_info(tmp_path / "a").episodes] == [2, 3, 4]
    with pytest.raises(TypeError, match="takes t2r.data.episodes.Episode, got dict"):
        writer.open(tmp_path / "b")
        writer.write([{"steps": {}}])  # type: ignore[list-item]


# ----------------------------------------------------------------- a v2.1 directory


def write_v21(root: Path, with_video: bool = True) -> list[Episode]:
    """A LeRobot v2.1 dataset built by hand (pyarrow and PyAV, no t2r writer)."""
    lengths = (4, 6)
    episodes = make_episodes(lengths, seed=5)
    (root / "meta").mkdir(parents=True)
    features: dict[str, Any] = {
        "observation.state": {"dtype": "float32", "shape": [4], "names": ["a", "b", "c", "d"]},
        "action": {"dtype": "float32", "shape": [2], "names": None},
        "next.reward": {"dtype": "float32", "shape": [1], "names": None},
        "timestamp": {"dtype": "float32", "shape": [1], "names": None},
        "frame_index": {"dtype": "int64", "shape": [1], "names": None},
        "episode_index": {"dtype": "int64", "shape": [1], "names": None},
        "index": {"dtype": "int64", "shape": [1], "names": None},
        "task_index": {"dtype": "int64", "shape": [1], "names": None},
    }
    if with_video:  # channel-first shape, as some v2.1 datasets declare it
        features["observation.images.cam"] = {
            "dtype": "video",
            "shape": [3, H, W],
            "names": ["channels", "height", "width"],
            "info": {"video.codec": "h264", "video.fps": FPS},
        }
    info = {
        "codebase_version": "v2.1",
        "robot_type": "hand",
        "total_episodes": 2,
        "total_frames": sum(lengths),
        "total_tasks": 2,
        "total_videos": 2,
        "total_chunks": 1,
        "chunks_size": 1000,
        "fps": FPS,
        "splits": {"train": "0:2"},
        "data_path": "data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet",
        "video_path": (
            "videos/chunk-{episode_chunk:03d}/{video_key}/episode_{episode_index:06d}.mp4"
        ),
        "features": features,
    }
    (root / "meta/info.json").write_text(json.dumps(info))
    (root / "meta/tasks.jsonl").write_text(
        '{"task_index": 0, "task": "task 0"}\n{"task_index": 1, "task": "task 1"}\n'
    )
    (root / "meta/episodes.jsonl").write_text(
        "".join(
            json.dumps({"episode_index": i, "tasks": [f"task {i}"], "length": n}) + "\n"
            for i, n in enumerate(lengths)
        )
    )
    start = 0
    for i, (episode, n) in enumerate(zip(episodes, lengths)):
        table = pa.table(
            {
                "observation.state": list(episode.steps["observation/state"]),
                "action": list(episode.steps["action"]),
                "next.reward": episode.steps["next/reward"],
                "timestamp": (np.arange(n) / FPS).astype(np.float32),
                "frame_index": np.arange(n),
                "episode_index": np.full(n, i),
                "index": np.arange(start, start + n),
                "task_index": np.full(n, i),
            }
        )
        (root / "data/chunk-000").mkdir(parents=True, exist_ok=True)
        pq.write_table(table, root / f"data/chunk-000/episode_{i:06d}.parquet")
        start += n
        if with_video:
            path = root / f"videos/chunk-000/observation.images.cam/episode_{i:06d}.mp4"
            path.parent.mkdir(parents=True, exist_ok=True)
            with av.open(str(path), "w") as container:
                stream = container.add_stream("h264", rate=FPS, options={"crf": "18"})
                stream.width, stream.height, stream.pix_fmt = W, H, "yuv420p"
                for t, image in enumerate(episode.steps["observation/images/cam"]):
                    frame = av.VideoFrame.from_ndarray(image, format="rgb24")
                    frame.pts, frame.time_base = t, Fraction(1, FPS)
                    for packet in stream.encode(frame):
                        container.mux(packet)
                for packet in stream.encode():
                    container.mux(packet)
    for episode in episodes:
        del episode.steps["next/done"], episode.steps["grip"]
        if not with_video:
            del episode.steps["observation/images/cam"]
    return episodes


def test_a_hand_built_v21_directory_reads(tmp_path: Path) -> None:
    episodes = write_v21(tmp_path / "v21")
    info = load_lerobot_info(tmp_path / "v21")
    assert info.codebase_version == "v2.1" and info.tasks == ("task 0", "task 1")
    assert [e.data_file for e in info.episodes] == [
        "data/chunk-000/episode_000000.parquet",
        "data/chunk-000/episode_000001.parquet",
    ]
    assert info.feature_specs()["observation/images/cam"].shape == (H, W, 3)
    assert [(e.dataset_from_index, e.dataset_to_index) for e in info.episodes] == [(0, 4), (4, 10)]
    read = list(read_lerobot_episodes(tmp_path / "v21"))
    for i, episode in enumerate(episodes):
        episode.metadata["task"] = f"task {i}"
    assert_same_episodes(episodes, read, camera_tol=3.0)
    assert read[1].metadata["robot_type"] == "hand"


# ---------------------------------------------------------- malformed input is named


def test_malformed_metadata_names_the_file(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    write_lerobot_dataset(root, make_episodes(), FPS, video=False)
    info_path = root / "meta/info.json"
    good = info_path.read_text()

    info_path.write_text("{not json")
    with pytest.raises(DataError, match=f"{info_path}: not valid JSON"):
        load_lerobot_info(root)
    info_path.write_text(good.replace('"v3.0"', '"v1.6"'))
    with pytest.raises(DataError, match=r"codebase_version 'v1.6'; t2r reads \['v2.1', 'v3.0'\]"):
        load_lerobot_info(root)
    info_path.write_text(good.replace('"total_episodes": 3', '"total_episodes": 4'))
    with pytest.raises(DataError, match="total_episodes is 4, but meta/episodes lists 3"):
        load_lerobot_info(root)
    info_path.write_text(good.replace('"float32"', '"complex-ish"', 1))
    with pytest.raises(DataError, match="feature 'observation.state' has dtype 'complex-ish'"):
        load_lerobot_info(root)
    info_path.write_text(good)

    (root / "meta/tasks.parquet").write_bytes(b"PAR1 not really")
    with pytest.raises(DataError, match=f"{root / 'meta/tasks.parquet'}: not a readable parquet"):
        load_lerobot_info(root)
    with pytest.raises(DataError, match=f"{tmp_path / 'nothing' / 'meta/info.json'}: not found"):
        load_lerobot_info(tmp_path / "nothing")


def test_malformed_frames_name_the_file_and_episode(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    write_lerobot_dataset(root, make_episodes(), FPS, video=False)
    data = root / "data/chunk-000/file-000.parquet"
    table = pq.read_table(data)

    def rewrite(column: str, values: np.ndarray) -> None:
        index = table.column_names.index(column)
        pq.write_table(table.set_column(index, column, pa.array(values)), data)

    frame_index = table.column("frame_index").to_numpy().copy()
    frame_index[6] = 9
    rewrite("frame_index", frame_index)
    with pytest.raises(DataError, match=rf"{data}: episode 1: frame_index is not 0..6 in order"):
        list(read_lerobot_episodes(root))
    list(read_lerobot_episodes(root, episodes=[0]))  # episode 0 is fine

    timestamps = table.column("timestamp").to_numpy().copy()
    timestamps[13] += 0.01
    rewrite("timestamp", timestamps)
    with pytest.raises(DataError, match=rf"{data}: episode 2: timestamps .* not 1/fps"):
        list(read_lerobot_episodes(root, episodes=[2]))

    index = table.column("index").to_numpy().copy()
    index[0] = 100
    rewrite("index", index)
    with pytest.raises(DataError, match=rf"{data}: episode 0: index is not 0..4"):
        list(read_lerobot_episodes(root, episodes=[0]))

    data.unlink()
    with pytest.raises(DataError, match=f"{data}: data file listed by meta/episodes is missing"):
        list(read_lerobot_episodes(root))


def test_video_errors_name_the_file(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    write_lerobot_dataset(root, make_episodes(), FPS)
    video = root / "videos/observation.images.cam/chunk-000/file-000.mp4"
    with pytest.raises(DataError, match=rf"{video}: no frame within tolerance_s=0.0001 of .*0\.25"):
        decode_frames(video, [0.2, 0.25], 1e-4)
    nearest = decode_frames(video, [0.2, 0.27], 0.06)[1]  # the frame at 0.3 s
    np.testing.assert_array_equal(nearest, decode_frames(video, [0.3], 1e-4)[0])
    video.write_bytes(b"\x00" * 64)
    with pytest.raises(DataError, match=f"{video}: cannot decode the video"):
        list(read_lerobot_episodes(root, episodes=[1]))
    video.unlink()
    with pytest.raises(DataError, match=f"{video}: video file not found"):
        list(read_lerobot_episodes(root, episodes=[1]))


def test_camera_stats_use_lerobots_sample_and_aggregate_like_lerobot() -> None:
    from t2r.data.lerobot.stats import aggregate_stats, feature_stats

    rng = np.random.default_rng(0)
    video = rng.integers(0, 256, size=(130, 300, 20, 3), dtype=np.uint8)
    stats = feature_stats(video, camera=True)
    assert stats["count"].tolist() == [100]  # 130 frames: 100 evenly spaced
    sample = video[np.round(np.linspace(0, 129, 100)).astype(int)][:, ::2, ::2] / 255.0
    np.testing.assert_allclose(stats["mean"].reshape(3), sample.reshape(-1, 3).mean(0))
    assert stats["q50"].shape == (3, 1, 1)

    a = rng.normal(size=(7, 2))
    b = rng.normal(3, 2, size=(5, 2))
    both = aggregate_stats([{"x": feature_stats(a, False)}, {"x": feature_stats(b, False)}])["x"]
    joined = np.concatenate([a, b])
    np.testing.assert_allclose(both["mean"], joined.mean(0))
    np.testing.assert_allclose(both["std"], joined.std(0))
    np.testing.assert_array_equal(both["min"], joined.min(0))
    assert both["count"].tolist() == [12]
    np.testing.assert_array_equal(
        both["q01"], np.minimum(np.quantile(a, 0.01, 0), np.quantile(b, 0.01, 0))
    )
    np.testing.assert_array_equal(
        both["q99"], np.maximum(np.quantile(a, 0.99, 0), np.quantile(b, 0.99, 0))
    )


def test_language_columns_and_depth_videos_are_skipped_and_named(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = tmp_path / "ds"
    episodes = make_episodes((3,))
    write_lerobot_dataset(root, episodes, FPS)
    raw = json.loads((root / "meta/info.json").read_text())
    raw["features"]["language_events"] = {"dtype": "language", "shape": [1], "names": None}
    raw["features"]["observation.images.cam"]["info"]["is_depth_map"] = True
    (root / "meta/info.json").write_text(json.dumps(raw))
    info = load_lerobot_info(root)
    assert set(info.skipped_features) == {"language_events", "observation.images.cam"}
    assert "observation/images/cam" not in info.feature_specs() and info.video_keys == []
    assert "skipping features t2r does not read" in caplog.text
    (read,) = read_lerobot_episodes(root)
    assert "observation/images/cam" not in read.steps
    np.testing.assert_array_equal(read.steps["action"], episodes[0].steps["action"])
