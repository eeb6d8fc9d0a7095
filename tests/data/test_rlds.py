"""RLDS without TensorFlow: the tfds-written fixture's facts, step windows, the
DataSource protocol through the shared pipeline, training, and writing RLDS.

Every number asserted against ``rlds_fractal_tiny`` is a fact its README states,
computed with TensorFlow and tensorflow-datasets 4.9.10.
"""

from __future__ import annotations

import io
import itertools
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import simplejpeg
import torch
from PIL import Image
from torch import nn

from t2r.data import DataError, DataSource, Example, ReadStats, read_tfrecord
from t2r.data.rlds import (
    WINDOW_MASK,
    RLDSInputGenerator,
    RLDSSource,
    RLDSWindow,
    load_rlds_info,
    window_spec,
    write_rlds,
)
from t2r.models import RegressionModel
from t2r.modes import ModeKeys
from t2r.specs import ExtendedTensorSpec as TSpec
from t2r.specs import SpecError, TensorSpecStruct, string
from t2r.train import latest_checkpoint, train_eval_model
from tests.needs import needs_fixture

FIXTURE = "rlds_fractal_tiny/0.1.0"
TRAIN_STEPS = [7, 4, 5, 8, 3]
TRAIN_INSTRUCTIONS = [
    "knock redbull can over",
    "open top drawer",
    "pick rxbar chocolate from middle drawer",
    "move blue chip bag near green jalapeno chip bag",
    "place coke can upright",
]
TRAIN_EPISODE_NUMBERS = [4, 3, 0, 2, 1]
T = 6


@pytest.fixture(scope="module")
def fixture_dir() -> Path:
    return needs_fixture(FIXTURE)


def source(directory: Path, split: str = "train", **kwargs: Any) -> RLDSSource:
    return RLDSSource(directory, split, **kwargs)


def parse(src: RLDSSource, windows: list[RLDSWindow], features: Any, labels: Any = None) -> Any:
    return src.make_parse_fn(features, labels, True)(windows)


def windows_of(src: RLDSSource, unit_index: int) -> list[RLDSWindow]:
    unit = src.units()[unit_index]
    return [w for _, w in src.read(unit, ReadStats())]


# ------------------------------------------------------------ the fixture's facts


def test_dataset_info_and_features_json_become_specs(fixture_dir: Path) -> None:
    info = load_rlds_info(fixture_dir)
    assert (info.name, info.version, info.file_format) == (
        "fractal20220817_data_tiny",
        "0.1.0",
        "tfrecord",
    )
    assert {n: s.shard_lengths for n, s in info.splits.items()} == {
        "train": (2, 3),
        "val": (1,),
    }
    assert (info.splits["train"].num_bytes, info.splits["val"].num_bytes) == (118733, 26090)
    assert [Path(f).name for f in info.splits["train"].files] == [
        "fractal20220817_data_tiny-train.tfrecord-00000-of-00002",
        "fractal20220817_data_tiny-train.tfrecord-00001-of-00002",
    ]
    step = info.step_spec
    assert sorted(step) == sorted(
        [
            "observation/image",
            "observation/natural_language_embedding",
            "observation/natural_language_instruction",
            "observation/base_pose_tool_reached",
            "action/world_vector",
            "action/rotation_delta",
            "action/gripper_closedness_action",
            "action/terminate_episode",
            "reward",
            "discount",
            "is_first",
            "is_last",
            "is_terminal",
        ]
    )
    image = step["observation/image"]
    assert (image.shape, image.dtype, image.data_format, image.name) == (
        (64, 64, 3),
        torch.uint8,
        "jpeg",
        "steps/observation/image",
    )
    assert step["observation/natural_language_instruction"].dtype is string
    assert step["observation/natural_language_embedding"].shape == (512,)
    assert step["action/terminate_episode"].dtype == torch.int32
    assert step["is_first"].dtype == torch.bool and step["reward"].shape == ()
    assert list(info.episode_spec) == ["episode_metadata/file_path"]


def test_episodes_in_tfds_read_order(fixture_dir: Path) -> None:
    train = list(source(fixture_dir).episodes())
    assert [e.num_steps for e in train] == TRAIN_STEPS
    assert sum(e.num_steps for e in train) == 27
    paths = [e.episode_value("episode_metadata/file_path").item() for e in train]
    assert paths == [
        f"generated/fractal_tiny/episode_{n:02d}".encode() for n in TRAIN_EPISODE_NUMBERS
    ]
    for episode, text in zip(train, TRAIN_INSTRUCTIONS):
        instructions = episode.step_values("observation/natural_language_instruction")
        assert instructions.tolist() == [text.encode()] * episode.num_steps
    (val,) = list(source(fixture_dir, "val").episodes())
    assert val.num_steps == 6
    assert val.step_values("observation/natural_language_instruction")[0] == b"close middle drawer"
    assert val.episode_value("episode_metadata/file_path").item() == (
        b"generated/fractal_tiny/episode_05"
    )


def test_world_vector_sums_and_jpeg_bytes(fixture_dir: Path) -> None:
    for split, total, jpeg_bytes in (("train", -0.6484375, 57785), ("val", 0.234375, 12683)):
        episodes = list(source(fixture_dir, split).episodes())
        world = np.concatenate([e.step_values("action/world_vector") for e in episodes])
        assert world.dtype == np.float32 and world.shape[1] == 3
        assert float(world.astype(np.float64).sum()) == total  # multiples of 1/256: exact
        images = [b for e in episodes for b in e.step_values("observation/image").tolist()]
        assert sum(len(b) for b in images) == jpeg_bytes


def test_the_other_step_values(fixture_dir: Path) -> None:
    for episode in source(fixture_dir).episodes():
        n = episode.num_steps
        last = np.arange(n) == n - 1
        np.testing.assert_array_equal(episode.step_values("reward"), last.astype(np.float32))
        np.testing.assert_array_equal(episode.step_values("discount"), np.ones(n, np.float32))
        np.testing.assert_array_equal(episode.step_values("is_first"), np.arange(n) == 0)
        np.testing.assert_array_equal(episode.step_values("is_last"), last)
        np.testing.assert_array_equal(episode.step_values("is_terminal"), last)
        terminate = episode.step_values("action/terminate_episode")
        assert terminate.dtype == np.int32
        np.testing.assert_array_equal(terminate, np.where(last[:, None], [1, 0, 0], [0, 1, 0]))
        gripper = episode.step_values("action/gripper_closedness_action")[:, 0]
        np.testing.assert_array_equal(gripper, np.where(np.arange(n) < n // 2, -1.0, 1.0))
        embedding = episode.step_values("observation/natural_language_embedding")
        assert embedding.shape == (n, 512) and (embedding == embedding[0]).all()


def test_jpeg_decode_is_tfds_default_integer_fast(fixture_dir: Path) -> None:
    """tfds decodes with TF's default IDCT, INTEGER_FAST: 0/27 train images equal
    INTEGER_ACCURATE (= Pillow), differing by up to 15. RLDSSource decodes the same
    way by default; dct_method='INTEGER_ACCURATE' gives Pillow's pixels on all 33."""
    spec = TensorSpecStruct(image=TSpec((64, 64, 3), torch.uint8, name="observation/image"))
    counts = {"fast_equal_pillow": 0, "accurate_equal_pillow": 0, "images": 0}
    max_difference = {}
    for split in ("train", "val"):
        fast_src = source(fixture_dir, split)
        accurate_src = source(fixture_dir, split, dct_method="INTEGER_ACCURATE")
        biggest = 0
        for i, unit in enumerate(fast_src.units()):
            fast = parse(fast_src, windows_of(fast_src, i), spec)[0]["image"].numpy()
            accurate = parse(accurate_src, windows_of(accurate_src, i), spec)[0]["image"].numpy()
            encoded = fast_src.episode(unit).step_values("observation/image").tolist()
            for step, data in enumerate(encoded):
                pillow = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
                ifast = simplejpeg.decode_jpeg(data, fastdct=True)
                np.testing.assert_array_equal(fast[step], ifast)
                counts["images"] += 1
                counts["fast_equal_pillow"] += int(np.array_equal(fast[step], pillow))
                counts["accurate_equal_pillow"] += int(np.array_equal(accurate[step], pillow))
                difference = np.abs(fast[step].astype(int) - accurate[step].astype(int)).max()
                biggest = max(biggest, int(difference))
        max_difference[split] = biggest
    assert counts == {"fast_equal_pillow": 0, "accurate_equal_pillow": 33, "images": 33}
    assert max_difference["train"] == 15


# ------------------------------------------------------------------------ windows

FEATURES = TensorSpecStruct(
    [
        ("image", TSpec((T, 64, 64, 3), torch.uint8, name="observation/image")),
        (
            "embedding",
            TSpec((T, 512), torch.float32, name="observation/natural_language_embedding"),
        ),
        ("instruction", TSpec((T,), "string", name="observation/natural_language_instruction")),
        ("mask", TSpec((T,), torch.bool, name=WINDOW_MASK)),
    ]
)
LABELS = TensorSpecStruct(
    [
        ("action/world_vector", TSpec((T, 3), torch.float32)),
        ("action/terminate_episode", TSpec((T, 3), torch.int32)),
    ]
)


def test_windows_end_at_each_step_and_repeat_step_zero(fixture_dir: Path) -> None:
    src = source(fixture_dir)
    episode_windows = windows_of(src, 3)  # 8 steps: windows both padded and full
    assert [w.step for w in episode_windows] == list(range(8))
    world = episode_windows[0].episode.step_values("action/world_vector")
    features, labels = parse(src, episode_windows, FEATURES, LABELS)
    assert tuple(features["image"].shape) == (8, T, 64, 64, 3)
    assert features["embedding"].dtype == torch.float32
    assert features["instruction"].shape == (8, T) and features["instruction"].dtype == object
    for t in range(8):
        index = np.maximum(np.arange(t - T + 1, t + 1), 0)
        np.testing.assert_array_equal(labels["action/world_vector"][t].numpy(), world[index])
        assert features["mask"][t].tolist() == (np.arange(t - T + 1, t + 1) >= 0).tolist()
    # t = 0: six copies of step 0; t = 5: the first window without padding.
    assert (features["image"][0] == features["image"][0, :1]).all()
    assert features["mask"][5].all() and not features["mask"][4, 0]
    assert torch.equal(features["image"][7, 0], features["image"][2, -1])
    assert labels["action/terminate_episode"].dtype == torch.int32
    assert labels["action/terminate_episode"][7, -1].tolist() == [1, 0, 0]


def test_an_episode_shorter_than_the_window(fixture_dir: Path) -> None:
    src = source(fixture_dir)
    windows = windows_of(src, 4)  # 3 steps < T
    features, labels = parse(src, windows, FEATURES, LABELS)
    world = windows[0].episode.step_values("action/world_vector")
    np.testing.assert_array_equal(
        labels["action/world_vector"][2].numpy(), world[[0, 0, 0, 0, 1, 2]]
    )
    assert features["mask"][2].tolist() == [False, False, False, True, True, True]


def test_window_of_one_and_current_step_and_episode_specs(fixture_dir: Path) -> None:
    src = source(fixture_dir, window_size=1)
    windows = windows_of(src, 0)
    spec = TensorSpecStruct(
        [
            ("now/world", TSpec((3,), torch.float32, name="steps/action/world_vector")),
            ("window/world", TSpec((1, 3), torch.float32, name="action/world_vector")),
            ("now/image", TSpec((64, 64, 3), torch.uint8, name="observation/image")),
            ("path", TSpec((), "string", name="episode_metadata/file_path")),
            ("missing", TSpec((2,), torch.float32, name="nowhere", is_optional=True)),
        ]
    )
    features, _ = parse(src, windows, spec)
    world = windows[0].episode.step_values("action/world_vector")
    np.testing.assert_array_equal(features["now/world"].numpy(), world)
    np.testing.assert_array_equal(features["window/world"][:, 0].numpy(), world)
    assert tuple(features["now/image"].shape) == (7, 64, 64, 3)
    assert features["path"].tolist() == [b"generated/fractal_tiny/episode_04"] * 7
    assert "missing" not in features


def test_encoded_images_stay_bytes_without_decoding(fixture_dir: Path) -> None:
    src = source(fixture_dir)
    windows = windows_of(src, 0)
    features, _ = src.make_parse_fn(FEATURES, None, False)(windows[:2])
    assert features["image"].dtype == object and features["image"].shape == (2, T)
    assert features["image"][1, -1] == windows[0].episode.step_values("observation/image")[1]


def test_spec_errors_name_the_spec_and_the_dataset(fixture_dir: Path) -> None:
    src = source(fixture_dir)
    missing = TensorSpecStruct(x=TSpec((T, 2), torch.float32, name="observation/gripper"))
    with pytest.raises(
        SpecError, match=r"spec 'x' \(name 'observation/gripper'\): not in the RLDS"
    ):
        src.make_parse_fn(missing, None, True)
    wrong = TensorSpecStruct(x=TSpec((4, 3), torch.float32, name="action/world_vector"))
    with pytest.raises(SpecError, match=r"shape \(4, 3\).*expected \(6, \*\(3,\)\)"):
        src.make_parse_fn(wrong, None, True)
    text_as_float = TensorSpecStruct(
        x=TSpec((T,), torch.float32, name="observation/natural_language_instruction")
    )
    with pytest.raises(SpecError, match="holds string"):
        src.make_parse_fn(text_as_float, None, True)
    with pytest.raises(KeyError, match=r"no split 'test'.*\['train', 'val'\]"):
        source(fixture_dir, "test")


def test_window_spec_adds_the_time_axis(fixture_dir: Path) -> None:
    specs = window_spec(load_rlds_info(fixture_dir).step_spec, T)
    assert specs["observation/image"].shape == (T, 64, 64, 3)
    assert specs["observation/image"].name == "steps/observation/image"
    src = source(fixture_dir)
    features, _ = parse(src, windows_of(src, 1), specs)
    assert features["is_first"][0].all() and not features["is_first"][3, -1]


# -------------------------------------------------------------- corrupt directories


def copy_fixture(fixture_dir: Path, tmp_path: Path) -> Path:
    target = tmp_path / "copy"
    shutil.copytree(fixture_dir, target)
    for path in target.iterdir():
        path.chmod(0o644)
    return target


def test_a_flipped_byte_and_wrong_shard_lengths_are_named(
    fixture_dir: Path, tmp_path: Path
) -> None:
    directory = copy_fixture(fixture_dir, tmp_path)
    shard = directory / "fractal20220817_data_tiny-train.tfrecord-00001-of-00002"
    data = bytearray(shard.read_bytes())
    data[-100] ^= 0xFF  # inside the last record (episode 2 of the shard)
    shard.write_bytes(bytes(data))
    src = RLDSSource(directory)
    src.episode(src.units()[2])  # an intact record of the same shard reads
    with pytest.raises(DataError, match=r"00001-of-00002: record at byte \d+: data crc mismatch"):
        src.episode(src.units()[4])

    info = json.loads((directory / "dataset_info.json").read_text())
    info["splits"][0]["shardLengths"] = ["3", "3"]
    (directory / "dataset_info.json").write_text(json.dumps(info))
    src = RLDSSource(directory)
    assert src.split.num_episodes == 6
    with pytest.raises(DataError, match=r"00000-of-00002: 2 records, but dataset_info.json says"):
        src.episode(src.units()[0])


def test_a_directory_that_is_not_tfds_is_named(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"dataset_info.json: not found"):
        load_rlds_info(tmp_path)


# ------------------------------------------------------- the shared pipeline


def test_the_source_implements_the_protocol(fixture_dir: Path) -> None:
    src = source(fixture_dir)
    assert isinstance(src, DataSource)
    units = src.units()
    assert units == sorted(units) and len(units) == 5
    assert [src.length(u) for u in units] == TRAIN_STEPS
    assert [len(list(src.read(u, ReadStats()))) for u in units] == TRAIN_STEPS


def generator(directory: Path, **kwargs: Any) -> RLDSInputGenerator:
    kwargs.setdefault("batch_size", 4)
    gen = RLDSInputGenerator(directory, "train", T, **kwargs)
    spec = TensorSpecStruct(
        [
            ("first", TSpec((), torch.bool, name="is_first")),
            ("path", TSpec((), "string", name="episode_metadata/file_path")),
            ("world", TSpec((T, 3), torch.float32, name="action/world_vector")),
            ("reward", TSpec((), torch.float32, name="reward")),
        ]
    )
    gen.set_feature_specifications(spec, None)
    return gen


def keys_of(batches: Any, count: int | None = None) -> list[tuple[bytes, float]]:
    """(episode, last world_vector x) for each window: names windows across batches."""
    out = []
    for features, _ in itertools.islice(batches, count):
        out.extend(
            zip(features["path"].tolist(), features["world"][:, -1, 0].tolist(), strict=True)
        )
    return out


def test_eval_reads_every_window_once_in_read_order(fixture_dir: Path) -> None:
    batches = list(generator(fixture_dir).create_dataset(ModeKeys.EVAL))
    assert [len(f["first"]) for f, _ in batches] == [4] * 6 + [3]
    paths = [p for f, _ in batches for p in f["path"].tolist()]
    expected = [
        f"generated/fractal_tiny/episode_{n:02d}".encode()
        for n, steps in zip(TRAIN_EPISODE_NUMBERS, TRAIN_STEPS)
        for _ in range(steps)
    ]
    assert paths == expected
    assert sum(int(f["first"].sum()) for f, _ in batches) == 5


def test_train_epochs_are_permutations_shards_disjoint_and_resume_exact(
    fixture_dir: Path,
) -> None:
    all_windows = sorted(keys_of(generator(fixture_dir).create_dataset(ModeKeys.EVAL)))

    def train_keys(seed: int, count: int) -> list[tuple[bytes, float]]:
        gen = generator(fixture_dir, batch_size=3, seed=seed, shuffle_buffer_size=8)
        return keys_of(gen.create_dataset(ModeKeys.TRAIN), count)

    keys = train_keys(1, 18)  # two epochs of 27 windows
    assert sorted(keys[:27]) == all_windows and sorted(keys[27:]) == all_windows
    assert keys[:27] != keys[27:] and keys == train_keys(1, 18) and keys != train_keys(2, 18)

    per_rank = [
        keys_of(generator(fixture_dir, rank=r, world_size=2).create_dataset(ModeKeys.EVAL))
        for r in range(2)
    ]
    assert all(per_rank) and sorted(per_rank[0] + per_rank[1]) == all_windows

    gen = generator(fixture_dir, batch_size=3, seed=1, shuffle_buffer_size=8)
    tail = keys_of(gen.create_dataset(ModeKeys.TRAIN).iter_from(11), 7)
    assert tail == keys[11 * 3 :]


class WindowRegression(RegressionModel):
    """Predicts the current step's world_vector from the window's instruction embeddings."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.head = nn.Linear(T * 512, 3)

    def get_feature_specification(self, mode: str) -> TensorSpecStruct:
        return TensorSpecStruct(
            embedding=TSpec((T, 512), torch.float32, name="observation/natural_language_embedding"),
            mask=TSpec((T,), torch.bool, name=WINDOW_MASK),
        )

    def get_label_specification(self, mode: str) -> TensorSpecStruct:
        return TensorSpecStruct(target=TSpec((3,), torch.float32, name="action/world_vector"))

    def a_func(self, features: Any, mode: str, config: Any = None, params: Any = None) -> Any:
        masked = features.embedding * features.mask[..., None]
        return {"inference_output": self.head(masked.flatten(1))}


def test_train_eval_model_trains_on_rlds_windows(fixture_dir: Path, tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = WindowRegression()
    before = model.head.weight.detach().clone()
    metrics = train_eval_model(
        model,
        RLDSInputGenerator(fixture_dir, "train", T, batch_size=4, seed=0),
        RLDSInputGenerator(fixture_dir, "val", T, batch_size=4),
        max_train_steps=3,
        model_dir=tmp_path / "model",
        save_checkpoints_steps=3,
        eval_steps=None,
        device="cpu",
        show_progress=False,
    )
    checkpoint = latest_checkpoint(tmp_path / "model")
    assert checkpoint is not None and checkpoint.global_step == 3
    assert np.isfinite(metrics["loss"])
    assert not torch.equal(model.head.weight.detach(), before)


# ------------------------------------------------------------------------ writing


def fixture_episodes(directory: Path, split: str) -> list[dict[str, Any]]:
    """The fixture's episodes as write_rlds takes them (images as their JPEG bytes)."""
    src = RLDSSource(directory, split)
    out = []
    for episode in src.episodes():
        steps = {path: episode.step_values(path) for path in src.info.step_spec}
        metadata = {path: episode.episode_value(path).item() for path in src.info.episode_spec}
        out.append({"steps": steps, **metadata})
    return out


def test_rewriting_the_fixture_gives_what_tfds_wrote(fixture_dir: Path, tmp_path: Path) -> None:
    """Same features.json (as JSON), and per shard the same Examples (as protos)."""
    info = load_rlds_info(fixture_dir)
    out = tmp_path / "fractal20220817_data_tiny" / "0.1.0"
    for split, shards in (("train", 2), ("val", 1)):
        write_rlds(
            out,
            fixture_episodes(fixture_dir, split),
            info.step_spec,
            episode_spec=info.episode_spec,
            name=info.name,
            version=info.version,
            split=split,
            num_shards=shards,
        )
    ours = json.loads((out / "features.json").read_text())
    theirs = json.loads((fixture_dir / "features.json").read_text())
    assert ours == theirs
    written = load_rlds_info(out)
    assert {n: s.shard_lengths for n, s in written.splits.items()} == {
        "train": (2, 3),
        "val": (1,),
    }
    for split in ("train", "val"):
        for mine, original in zip(written.splits[split].files, info.splits[split].files):
            assert Path(mine).name == Path(original).name
            a = [Example.FromString(r) for r in read_tfrecord(mine)]
            b = [Example.FromString(r) for r in read_tfrecord(original)]
            assert a == b


def test_write_then_read_round_trip(tmp_path: Path) -> None:
    step_spec = TensorSpecStruct(
        [
            ("observation/image", TSpec((8, 8, 3), torch.uint8, data_format="png")),
            ("observation/natural_language_instruction", TSpec((), "string")),
            ("observation/natural_language_embedding", TSpec((4,), torch.float32)),
            ("action/world_vector", TSpec((3,), torch.float32)),
            ("action/terminate_episode", TSpec((3,), torch.int32)),
        ]
    )
    rng = np.random.default_rng(0)
    episodes = []
    for i, n in enumerate([3, 9, 1, 6]):
        episodes.append(
            {
                "steps": {
                    "observation": {
                        "image": rng.integers(0, 256, (n, 8, 8, 3), dtype=np.uint8),
                        "natural_language_instruction": [f"task {i}"] * n,
                        "natural_language_embedding": rng.random((n, 4), dtype=np.float32),
                    },
                    "action/world_vector": rng.random((n, 3), dtype=np.float32),
                    "action/terminate_episode": np.eye(3, dtype=np.int32)[[1] * (n - 1) + [0]],
                    "reward": (np.arange(n) == n - 1).astype(np.float32),
                },
            }
        )
    directory = tmp_path / "toy" / "1.0.0"
    info = write_rlds(directory, episodes, step_spec, name="toy", num_shards=3)
    assert info.splits["train"].shard_lengths == (1, 2, 1)
    assert sorted(info.step_spec) == sorted(
        [*step_spec, "is_first", "is_last", "is_terminal", "reward", "discount"]
    )
    src = RLDSSource(directory, window_size=4, dct_method="INTEGER_ACCURATE")
    read = list(src.episodes())
    assert [e.num_steps for e in read] == [3, 9, 1, 6]
    windows = [w for unit in src.units() for _, w in src.read(unit, ReadStats())]
    features, _ = parse(src, windows, window_spec(info.step_spec, 4))
    offset = 0
    for written, episode in zip(episodes, read):
        n = episode.num_steps
        steps = written["steps"]
        rows = slice(offset, offset + n)
        # The last frame of each window is that step: exact for PNG and floats.
        np.testing.assert_array_equal(
            features["observation/image"][rows, -1].numpy(), steps["observation"]["image"]
        )
        np.testing.assert_array_equal(
            features["action/world_vector"][rows, -1].numpy(), steps["action/world_vector"]
        )
        assert features["observation/natural_language_instruction"][rows, -1].tolist() == [
            s.encode() for s in steps["observation"]["natural_language_instruction"]
        ]
        assert features["is_last"][rows, -1].tolist() == [False] * (n - 1) + [True]
        assert features["discount"][rows, -1].tolist() == [1.0] * n
        offset += n

    # Another split joins the directory; rewriting a split with fewer shards
    # removes its stale shards.
    write_rlds(directory, episodes[:2], step_spec, name="toy", split="val")
    write_rlds(directory, episodes[:1], step_spec, name="toy", num_shards=1)
    info = load_rlds_info(directory)
    assert {n: s.shard_lengths for n, s in info.splits.items()} == {"val": (2,), "train": (1,)}
    assert sorted(p.name for p in directory.glob("toy-*")) == [
        "toy-train.tfrecord-00000-of-00001",
        "toy-val.tfrecord-00000-of-00001",
    ]


def test_write_errors_name_the_episode_and_key(tmp_path: Path) -> None:
    step_spec = TensorSpecStruct(a=TSpec((2,), torch.float32))
    with pytest.raises(
        ValueError, match=r"episode 1: 'steps/a' has shape \(3, 3\), expected \(3, 2\)"
    ):
        write_rlds(
            tmp_path / "d",
            [{"steps": {"a": np.zeros((2, 2))}}, {"steps": {"a": np.zeros((3, 3))}}],
            step_spec,
            name="d",
        )
    with pytest.raises(ValueError, match=r"episode 0: keys \['steps/b'\] are in no spec"):
        write_rlds(
            tmp_path / "d",
            [{"steps": {"a": np.zeros((2, 2)), "b": np.zeros(2)}}],
            step_spec,
            name="d",
        )
    assert not (tmp_path / "d" / "dataset_info.json").exists()
