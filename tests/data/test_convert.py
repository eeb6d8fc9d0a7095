"""t2r.data.convert: detect_format, and round trips between every pair of formats."""

from __future__ import annotations

import itertools
import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest

from t2r.collect import SpecEpisodeToTransitions, TFRecordReplayWriter
from t2r.data import DataError, create_parse_tf_example_fn, read_tfrecord
from t2r.data.convert import FORMATS, convert, detect_format, read_episodes, write_episodes
from t2r.data.convert.tfrecord_episodes import EPISODES_FILE
from t2r.data.episodes import Episode
from t2r.specs import ExtendedTensorSpec, TensorSpecStruct
from tests.needs import needs_fixture

ROUND_TRIP_FORMATS = list(FORMATS)
SUFFIX = {"robomimic": "demo.hdf5"}


def make_episodes(n: int = 3, seed: int = 0) -> list[Episode]:
    """Tiny episodes: a camera, a low-dim state, an action, reward, terminal flag, language."""
    rng = np.random.default_rng(seed)
    episodes = []
    for i in range(n):
        t = 3 + i
        task = f"pick the block {i}"
        instruction = np.empty(t, dtype=object)
        instruction[:] = [task] * t
        episodes.append(
            Episode(
                {
                    "observation/image": rng.integers(0, 256, (t, 16, 12, 3), dtype=np.uint8),
                    "observation/state": rng.normal(size=(t, 4)).astype(np.float32),
                    "observation/language_instruction": instruction,
                    "action": rng.uniform(-1, 1, (t, 2)).astype(np.float32),
                    "reward": (np.arange(t) == t - 1).astype(np.float32),
                    "is_terminal": np.arange(t) == t - 1,
                },
                {"task": task, "fps": 10, "episode_name": f"ep{i}"},
            )
        )
    return episodes


def dataset_path(root: Path, fmt: str, name: str = "data") -> Path:
    return root / f"{name}_{fmt}" / SUFFIX.get(fmt, "") if fmt in SUFFIX else root / f"{name}_{fmt}"


def write(root: Path, fmt: str, episodes: list[Episode], name: str = "data") -> Path:
    path = dataset_path(root, fmt, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_episodes(path, episodes, to=fmt, video=False)  # type: ignore[arg-type]
    return path


def assert_same(
    expected: list[Episode],
    actual: list[Episode],
    exact_images: bool = True,
    all_metadata: bool = True,
) -> None:
    assert len(actual) == len(expected)
    for i, (a, b) in enumerate(zip(expected, actual)):
        for key, value in a.steps.items():
            assert key in b.steps, f"episode {i}: {key} missing; has {sorted(b.steps)}"
            got = b.steps[key]
            assert got.shape == value.shape, (i, key, got.shape, value.shape)
            if value.dtype == object:
                assert got.tolist() == value.tolist(), (i, key)
            elif key.endswith("image") and not exact_images:
                assert np.abs(got.astype(int) - value.astype(int)).mean() < 8, (i, key)
            else:
                assert got.dtype == value.dtype, (i, key, got.dtype, value.dtype)
                np.testing.assert_array_equal(got, value, err_msg=f"episode {i} {key}")
        assert b.metadata.get("task") == a.metadata["task"], i
        if all_metadata:  # LeRobot keeps task, fps and robot type only
            assert str(b.metadata.get("episode_name")) == a.metadata["episode_name"], i


@pytest.mark.parametrize("fmt", ROUND_TRIP_FORMATS)
def test_write_read_round_trip(tmp_path: Path, fmt: str) -> None:
    episodes = make_episodes()
    path = write(tmp_path, fmt, episodes)
    assert detect_format(path) == fmt
    assert_same(episodes, list(read_episodes(path)), all_metadata=fmt != "lerobot")


@pytest.mark.parametrize(
    ("src", "dst"), list(itertools.product(ROUND_TRIP_FORMATS, ROUND_TRIP_FORMATS))
)
def test_convert_every_pair(tmp_path: Path, src: str, dst: str) -> None:
    episodes = make_episodes()
    source = write(tmp_path, src, episodes, "src")
    target = dataset_path(tmp_path, dst, "dst")
    target.parent.mkdir(parents=True, exist_ok=True)
    result = convert(source, target, to=dst, video=False)  # type: ignore[arg-type]
    assert (result.src_format, result.dst_format) == (src, dst)
    assert (result.num_episodes, result.num_steps) == (3, 3 + 4 + 5)
    back = list(read_episodes(target))
    assert_same(episodes, back, all_metadata="lerobot" not in (src, dst))
    if dst == "rlds":  # RLDS adds its standard step fields
        for episode in back:
            n = episode.num_steps
            np.testing.assert_array_equal(episode.steps["is_first"], np.arange(n) == 0)
            np.testing.assert_array_equal(episode.steps["is_last"], np.arange(n) == n - 1)
            np.testing.assert_array_equal(episode.steps["discount"], np.ones(n, np.float32))


def test_robomimic_text_loss_is_warned_once(tmp_path: Path, caplog) -> None:
    source = write(tmp_path, "tfrecord", make_episodes())
    with caplog.at_level(logging.WARNING, logger="t2r.data.convert"):
        result = convert(source, tmp_path / "out.hdf5", to="robomimic")
    text = [r for r in caplog.records if "no text field" in r.getMessage()]
    assert len(text) == 1
    assert "observation/language_instruction" in result.losses["text"]
    assert "no language field" in result.losses["task"]


def test_robomimic_file_is_what_robomimic_reads(tmp_path: Path) -> None:
    from t2r.robomimic.hdf5 import dataset_info, read_demo

    path = write(tmp_path, "robomimic", make_episodes())
    info = dataset_info(path)
    assert info["num_demos"] == 3 and info["total_samples"] == 12
    assert set(info["keys"]) >= {"obs/image", "obs/state", "actions", "rewards", "dones"}
    demo = read_demo(path, "demo_2")
    assert demo.actions.shape == (5, 2) and demo.dones.tolist() == [0, 0, 0, 0, 1]


def test_convert_refuses_an_existing_target(tmp_path: Path) -> None:
    source = write(tmp_path, "tfrecord", make_episodes())
    (tmp_path / "taken").mkdir()
    with pytest.raises(FileExistsError, match="taken"):
        convert(source, tmp_path / "taken", to="rlds")
    convert(source, tmp_path / "taken", to="rlds", overwrite=True)
    assert detect_format(tmp_path / "taken") == "rlds"


def test_failed_write_leaves_nothing(tmp_path: Path) -> None:
    episodes = make_episodes()
    odd = Episode({"observation/other": np.zeros((2, 3), np.float32)}, {})
    for fmt in ("tfrecord", "rlds"):
        target = tmp_path / f"out_{fmt}"
        with pytest.raises(ValueError, match="episode 3 has other features"):
            write_episodes(target, [*episodes, odd], to=fmt)  # type: ignore[arg-type]
        assert not target.exists()
        assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_robomimic_needs_actions(tmp_path: Path) -> None:
    episode = Episode({"observation/x": np.zeros((2, 3), np.float32)}, {})
    with pytest.raises(ValueError, match="robomimic needs actions.*'observation/x'"):
        write_episodes(tmp_path / "x.hdf5", [episode], to="robomimic")


# ------------------------------------------------------------------------------ detection


def test_detect_format_errors_name_the_path(tmp_path: Path) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("hello, not a dataset")
    with pytest.raises(DataError, match=r"notes\.txt: a file of no dataset format"):
        detect_format(text)
    empty = tmp_path / "empty_dir"
    empty.mkdir()
    (empty / "readme.md").write_text("x")
    with pytest.raises(DataError, match=r"empty_dir: a directory of no dataset format"):
        detect_format(empty)
    with pytest.raises(DataError, match=r"missing: no such file or directory"):
        detect_format(tmp_path / "missing")
    with pytest.raises(DataError, match="notes.txt"):
        list(read_episodes(text))


def test_detect_format_of_the_fixtures() -> None:
    rlds = needs_fixture("rlds_fractal_tiny")
    assert detect_format(rlds) == "rlds"  # the <name>/ directory of version directories
    assert detect_format(rlds / "0.1.0") == "rlds"
    assert detect_format(needs_fixture("pose_env_test_data.tfrecord")) == "tfrecord"


# ------------------------------------------------------------------------------ fixtures


def test_rlds_fixture_reads_as_episodes() -> None:
    episodes = list(read_episodes(needs_fixture("rlds_fractal_tiny")))
    assert [e.num_steps for e in episodes] == [7, 4, 5, 8, 3, 6]
    assert [e.metadata["split"] for e in episodes] == ["train"] * 5 + ["val"]
    assert episodes[0].metadata["task"] == "knock redbull can over"
    assert episodes[0].metadata["file_path"] == "generated/fractal_tiny/episode_04"
    assert episodes[0].metadata["image_formats"] == {"observation/image": "jpeg"}
    total = sum(float(e.steps["action/world_vector"].sum()) for e in episodes[:5])
    assert total == -0.6484375  # the fixture's README, computed with TensorFlow
    assert episodes[0].steps["action/terminate_episode"].dtype == np.int32
    assert episodes[0].steps["observation/image"].shape == (7, 64, 64, 3)


def test_rlds_fixture_to_tfrecord_and_back_is_exact(tmp_path: Path) -> None:
    source = needs_fixture("rlds_fractal_tiny")
    episodes = list(read_episodes(source))
    convert(source, tmp_path / "records", to="tfrecord", image_format="png")
    back = list(read_episodes(tmp_path / "records"))
    for a, b in zip(episodes, back, strict=True):
        assert set(a.steps) == set(b.steps)
        for key in a.steps:
            assert a.steps[key].dtype == b.steps[key].dtype, key
            np.testing.assert_array_equal(a.steps[key], b.steps[key], err_msg=key)
        assert b.metadata["task"] == a.metadata["task"]
        assert b.metadata["split"] == a.metadata["split"]
    # ... and back to RLDS with both splits.
    convert(tmp_path / "records", tmp_path / "rlds", to="rlds")
    again = list(read_episodes(tmp_path / "rlds"))
    assert [e.metadata["split"] for e in again] == ["train"] * 5 + ["val"]
    np.testing.assert_array_equal(
        again[5].steps["observation/image"], episodes[5].steps["observation/image"]
    )


def test_pose_env_fixture_reads_as_single_step_episodes(caplog) -> None:
    with caplog.at_level(logging.WARNING, logger="t2r.data.convert"):
        episodes = list(read_episodes(needs_fixture("pose_env_test_data.tfrecord")))
    assert len(episodes) == 100 and {e.num_steps for e in episodes} == {1}
    assert episodes[0].steps["state/image"].shape == (1, 64, 64, 3)
    assert episodes[0].steps["pose"].shape == (1, 2)
    assert sum("episode of one step" in r.getMessage() for r in caplog.records) == 1


# ------------------------------------------------------------------------------ TFRecords


def test_collect_records_split_into_episodes_at_done(tmp_path: Path) -> None:
    spec = TensorSpecStruct(
        [
            ("state", ExtendedTensorSpec((3,), "float32", name="state")),
            ("action", ExtendedTensorSpec((2,), "float32", name="action")),
            ("reward", ExtendedTensorSpec((1,), "float32", name="reward")),
            ("done", ExtendedTensorSpec((1,), "bool", name="done")),
        ]
    )
    to_records = SpecEpisodeToTransitions(spec, observation_key="state")
    rng = np.random.default_rng(0)
    lengths = [4, 2, 3]
    writer = TFRecordReplayWriter()
    writer.open(tmp_path / "replay" / "run")
    expected = []
    for n in lengths:
        transitions = []
        for t in range(n):
            obs = rng.normal(size=3).astype(np.float32)
            action = rng.normal(size=2).astype(np.float32)
            transitions.append((obs, action, float(t), obs, t == n - 1, {}))
        expected.append(transitions)
        writer.write(to_records(transitions))
    writer.close()
    episodes = list(read_episodes(tmp_path / "replay"))
    assert [e.num_steps for e in episodes] == lengths
    for episode, transitions in zip(episodes, expected):
        np.testing.assert_array_equal(episode.steps["state"], np.stack([t[0] for t in transitions]))
        np.testing.assert_array_equal(episode.steps["reward"][:, 0], [t[2] for t in transitions])


def test_written_records_parse_with_the_sidecar_spec(tmp_path: Path) -> None:
    """A trainer reads converted records with the specs t2r_episodes.json holds."""
    path = write(tmp_path, "tfrecord", make_episodes())
    sidecar = json.loads((path / EPISODES_FILE).read_text())
    assert sidecar["num_episodes"] == 3 and sidecar["num_steps"] == 12
    spec = TensorSpecStruct(
        (key, ExtendedTensorSpec.from_dict(value))
        for key, value in sidecar["step_spec"].items()
        if key != "observation/language_instruction"
    )
    records = [r for f in sorted(path.glob("*.tfrecord")) for r in read_tfrecord(f)]
    assert len(records) == 12
    features = create_parse_tf_example_fn(spec)(records)
    episodes = make_episodes()
    np.testing.assert_array_equal(
        features["observation/state"].numpy(),
        np.concatenate([e.steps["observation/state"] for e in episodes]),
    )
    assert features["observation/image"].shape == (12, 16, 12, 3)


def test_lerobot_video_is_lossy_and_says_so(tmp_path: Path) -> None:
    t = 4
    ramp = np.linspace(0, 255, 64, dtype=np.float32)
    frames = np.stack(
        [np.stack([np.add.outer(ramp, ramp * 0 + 8 * i) / 2] * 3, axis=-1) for i in range(t)]
    ).astype(np.uint8)
    episode = Episode(
        {"observation/image": frames, "action": np.zeros((t, 2), np.float32)},
        {"task": "look", "fps": 5},
    )
    source = write(tmp_path, "rlds", [episode])
    result = convert(source, tmp_path / "video", to="lerobot")
    assert "lossy" in result.losses["video"]
    (back,) = read_episodes(tmp_path / "video")
    assert back.metadata["fps"] == 5 and back.metadata["task"] == "look"
    error = np.abs(back.steps["observation/image"].astype(int) - frames.astype(int))
    assert error.mean() < 4


def test_float64_precision_loss_is_reported(tmp_path: Path) -> None:
    x = np.array([[0.1 + 1e-12], [0.2]])
    episode = Episode({"observation/x": x, "action": np.zeros((2, 2), np.float32)}, {})
    source = write(tmp_path, "robomimic", [episode])
    for fmt in ("tfrecord", "rlds"):
        result = convert(source, tmp_path / f"out_{fmt}", to=fmt)  # type: ignore[arg-type]
        assert "float32 (precision lost)" in result.losses["float64:observation/x"]
        (back,) = read_episodes(tmp_path / f"out_{fmt}")
        assert back.steps["observation/x"].dtype == np.float64
        np.testing.assert_allclose(back.steps["observation/x"], x, rtol=1e-7)
    (back,) = read_episodes(source)  # robomimic keeps float64 exactly
    np.testing.assert_array_equal(back.steps["observation/x"], x)


def test_rename_makes_pose_env_records_a_robomimic_file(tmp_path: Path) -> None:
    """T2R's pose_env records -> robomimic: `pose` is the action, the image an observation."""
    source = needs_fixture("pose_env_test_data.tfrecord")
    with pytest.raises(ValueError, match=r"robomimic needs actions.*'pose'"):
        convert(source, tmp_path / "bad.hdf5", to="robomimic")
    assert not (tmp_path / "bad.hdf5").exists()
    result = convert(
        source,
        tmp_path / "pose.hdf5",
        to="robomimic",
        rename={
            "pose": "action",
            "state/image": "observation/image",
            "target_pose": "observation/target",
        },
        max_episodes=10,
    )
    assert (result.num_episodes, result.num_steps) == (10, 10)
    from t2r.robomimic.dataset import SequenceDataset

    dataset = SequenceDataset(tmp_path / "pose.hdf5", ["image", "target"], load_next_obs=False)
    assert len(dataset) == 10
    item = dataset[3]
    assert item["obs"]["image"].shape == (1, 64, 64, 3) and item["actions"].shape == (1, 2)
    with pytest.raises(ValueError, match=r"no step feature \['nope'\] to rename"):
        convert(source, tmp_path / "x", to="tfrecord", rename={"nope": "x"})


def test_sequence_example_records_are_episodes(tmp_path: Path) -> None:
    from t2r.data import TFRecordWriter, create_serialize_tf_example_fn

    spec = TensorSpecStruct(
        [
            ("goal", ExtendedTensorSpec((2,), "float32", name="goal")),
            ("action", ExtendedTensorSpec((3,), "float32", name="action", is_sequence=True)),
            (
                "image",
                ExtendedTensorSpec(
                    (8, 8, 3), "uint8", name="image", is_sequence=True, data_format="png"
                ),
            ),
        ]
    )
    serialize = create_serialize_tf_example_fn(spec)
    rng = np.random.default_rng(0)
    values = []
    with TFRecordWriter(tmp_path / "seq.tfrecord") as writer:
        for n in (3, 5):
            value = {
                "goal": rng.normal(size=2).astype(np.float32),
                "action": rng.normal(size=(n, 3)).astype(np.float32),
                "image": rng.integers(0, 256, (n, 8, 8, 3), dtype=np.uint8),
            }
            values.append(value)
            writer.write(serialize(value))
    episodes = list(read_episodes(tmp_path / "seq.tfrecord"))
    assert [e.num_steps for e in episodes] == [3, 5]
    for episode, value in zip(episodes, values):
        np.testing.assert_array_equal(episode.steps["action"], value["action"])
        np.testing.assert_array_equal(episode.steps["image"], value["image"])
        np.testing.assert_array_equal(
            episode.steps["goal"], np.stack([value["goal"]] * episode.num_steps)
        )


def test_detect_format_of_a_glob(tmp_path: Path) -> None:
    path = write(tmp_path, "tfrecord", make_episodes())
    pattern = str(path / "episodes-*.tfrecord")
    assert detect_format(pattern) == "tfrecord"
    assert len(list(read_episodes(pattern))) == 3
    with pytest.raises(DataError, match="matches 0 files"):
        detect_format(str(tmp_path / "nothing-*.tfrecord"))


def test_rlds_name_directory_reads_its_newest_version(tmp_path: Path) -> None:
    episodes = make_episodes()
    write_episodes(tmp_path / "ds" / "1.0.0", episodes[:1], to="rlds")
    write_episodes(tmp_path / "ds" / "1.10.0", episodes, to="rlds")
    write_episodes(tmp_path / "ds" / "1.2.0", episodes[:2], to="rlds")
    assert detect_format(tmp_path / "ds") == "rlds"
    assert len(list(read_episodes(tmp_path / "ds"))) == 3  # 1.10.0, not 1.2.0


def test_gzip_records_are_detected_and_read(tmp_path: Path) -> None:
    from t2r.data import TFRecordWriter

    path = write(tmp_path, "tfrecord", make_episodes())
    (shard,) = sorted(path.glob("*.tfrecord"))
    gz = tmp_path / "gz"
    gz.mkdir()
    with TFRecordWriter(gz / "steps.tfrecord", compression="GZIP") as writer:
        for record in read_tfrecord(shard):
            writer.write(record)
    assert detect_format(gz) == "tfrecord"
    assert [e.num_steps for e in read_episodes(gz)] == [3, 4, 5]  # split by episode_id


def _rlds_image_bytes(directory: Path) -> list[bytes]:
    from t2r.data import RLDSSource

    out: list[bytes] = []
    for split in ("train", "val"):
        for episode in RLDSSource(directory, split).episodes():
            out.extend(episode.step_values("observation/image").tolist())
    return out


def test_jpeg_frames_move_between_rlds_and_tfrecord_byte_for_byte(tmp_path: Path) -> None:
    """No generation loss: unchanged JPEG frames are copied, not decoded and encoded again."""
    from t2r.data import Example

    source = needs_fixture("rlds_fractal_tiny") / "0.1.0"
    original = _rlds_image_bytes(source)
    convert(source, tmp_path / "records", to="tfrecord")  # keeps the source's JPEG
    copied = [
        Example.FromString(r).features.feature["observation/image"].bytes_list.value[0]
        for f in sorted((tmp_path / "records").glob("*.tfrecord"))
        for r in read_tfrecord(f)
    ]
    assert copied == original
    convert(tmp_path / "records", tmp_path / "rlds", to="rlds")
    assert _rlds_image_bytes(tmp_path / "rlds") == original
    # Frames changed in memory are encoded anew (the copy would be stale).
    episodes = list(read_episodes(source))
    episodes[0].steps["observation/image"][0] //= 2
    write_episodes(tmp_path / "edited", episodes, to="tfrecord")
    (first, *_) = read_episodes(tmp_path / "edited")
    error = np.abs(
        first.steps["observation/image"][0].astype(int) - episodes[0].steps["observation/image"][0]
    )
    assert error.mean() < 3  # re-encoded as JPEG from the edited pixels
    edited = [
        Example.FromString(r).features.feature["observation/image"].bytes_list.value[0]
        for f in sorted((tmp_path / "edited").glob("*.tfrecord"))
        for r in read_tfrecord(f)
    ]
    assert edited[0] != original[0] and edited[1:] == original[1:]
    assert (
        "_encoded_images"
        not in json.loads((tmp_path / "edited" / EPISODES_FILE).read_text())["episodes"][0][
            "metadata"
        ]
    )


def test_collect_layout_nested_records_hint_and_glob(tmp_path: Path) -> None:
    """t2r collect writes <root>/policy_collect/policy_collect/*.tfrecord."""
    records = write(tmp_path, "tfrecord", make_episodes())
    nested = tmp_path / "root" / "policy_collect" / "policy_collect"
    nested.mkdir(parents=True)
    for shard in records.glob("*.tfrecord"):
        shutil.copy(shard, nested / shard.name)
    with pytest.raises(DataError, match=r"further down, in .*policy_collect/policy_collect"):
        detect_format(tmp_path / "root")
    pattern = str(tmp_path / "root" / "**" / "*.tfrecord")
    assert detect_format(pattern) == "tfrecord"
    assert [e.num_steps for e in read_episodes(pattern)] == [3, 4, 5]
