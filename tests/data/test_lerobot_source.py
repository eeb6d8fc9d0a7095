"""LeRobot datasets through the shared pipeline: the DataSource protocol,
delta_timestamps windows with LeRobot's padding, sharding, seeding, resume, and
training a model with train_eval_model (resuming bitwise)."""

from __future__ import annotations

import itertools
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from tests.needs import needs_module

needs_module("pyarrow")
needs_module("av")

from t2r.data import DataSource, ReadStats  # noqa: E402
from t2r.data.episodes import Episode  # noqa: E402
from t2r.data.lerobot import (  # noqa: E402
    LeRobotInputGenerator,
    LeRobotSource,
    read_lerobot_episodes,
    write_lerobot_dataset,
)
from t2r.models import RegressionModel  # noqa: E402
from t2r.modes import ModeKeys  # noqa: E402
from t2r.specs import ExtendedTensorSpec as TSpec  # noqa: E402
from t2r.specs import SpecError, TensorSpecStruct  # noqa: E402
from t2r.train import latest_checkpoint, seed_everything, train_eval_model  # noqa: E402

FPS = 10
LENGTHS = (6, 4, 7, 5)
DELTAS = {"observation.state": [-0.2, -0.1, 0.0], "action": [0.0, 0.1, 0.2, 0.3]}


def make_episodes() -> list[Episode]:
    """state[t] = (episode, t, t^2); action = a fixed linear map of the state."""
    out = []
    for e, n in enumerate(LENGTHS):
        t = np.arange(n, dtype=np.float32)
        state = np.stack([np.full(n, e, np.float32), t, t**2 / 10], axis=1)
        image = np.zeros((n, 16, 16, 3), np.uint8)
        image[..., 0] = (t * 30 + e * 10).astype(np.uint8)[:, None, None]
        out.append(
            Episode(
                steps={
                    "observation/state": state,
                    "observation/images/cam": image,
                    "action": state[:, :2] @ np.array([[0.5, -1.0], [0.25, 2.0]], np.float32),
                },
                metadata={"task": "even" if e % 2 == 0 else "odd"},
            )
        )
    return out


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("lerobot") / "ds"
    write_lerobot_dataset(root, make_episodes(), FPS, codec="h264")
    return root


def test_the_source_implements_the_protocol(dataset: Path) -> None:
    source = LeRobotSource(dataset, DELTAS)
    assert isinstance(source, DataSource)
    assert source.units() == [f"episode_{i:06d}" for i in range(4)]
    assert [source.length(u) for u in source.units()] == list(LENGTHS)
    assert [len(list(source.read(u, ReadStats()))) for u in source.units()] == list(LENGTHS)
    clone = pickle.loads(pickle.dumps(source))  # what a spawned DataLoader worker gets
    assert clone.units() == source.units() and clone.deltas == source.deltas
    assert LeRobotSource(dataset, episodes=[3, 1]).units() == ["episode_000001", "episode_000003"]
    with pytest.raises(ValueError, match="no episodes \\[9\\]"):
        LeRobotSource(dataset, episodes=[1, 9])


def parse(source: LeRobotSource, unit: int, features: Any, labels: Any = None) -> Any:
    frames = [f for _, f in source.read(source.units()[unit], ReadStats())]
    return source.make_parse_fn(features, labels, True)(frames)


def test_windows_clamp_at_the_episode_bounds_and_flag_padding(dataset: Path) -> None:
    source = LeRobotSource(dataset, {**DELTAS, "observation/images/cam": [-0.1, 0.0]})
    spec = TensorSpecStruct(
        state=TSpec((3, 3), torch.float32, name="observation.state"),
        state_pad=TSpec((3,), torch.bool, name="observation.state_is_pad"),
        actions=TSpec((4, 2), torch.float32, name="action"),
        actions_pad=TSpec((4,), torch.bool, name="action_is_pad"),
        images=TSpec((2, 16, 16, 3), torch.uint8, name="observation/images/cam"),
        now=TSpec((3,), torch.float32, name="observation/state"),  # not windowed: this frame
        frame=TSpec((), torch.int64, name="frame_index"),
        task=TSpec((), "string", name="task"),
    )
    features, _ = parse(source, 1, spec)  # episode 1: 4 frames
    episode = make_episodes()[1]
    state, action = episode.steps["observation/state"], episode.steps["action"]
    n = LENGTHS[1]
    for t in range(n):
        past = [t - 2, t - 1, t]
        future = [t, t + 1, t + 2, t + 3]
        np.testing.assert_array_equal(features.state[t].numpy(), state[np.clip(past, 0, n - 1)])
        np.testing.assert_array_equal(
            features.actions[t].numpy(), action[np.clip(future, 0, n - 1)]
        )
        assert features.state_pad[t].tolist() == [i < 0 for i in past]
        assert features.actions_pad[t].tolist() == [i >= n for i in future]
        np.testing.assert_array_equal(features.now[t].numpy(), state[t])
    assert features.frame.tolist() == list(range(n)) and list(features.task) == ["odd"] * n
    (read,) = read_lerobot_episodes(dataset, episodes=[1])  # the same decoder, the same pixels
    cam = read.steps["observation/images/cam"]
    np.testing.assert_array_equal(features.images[:, 1].numpy(), cam)
    np.testing.assert_array_equal(features.images[:, 0].numpy(), cam[[0, 0, 1, 2]])


def test_sequence_specs_get_the_window_and_window_specs_say_so(dataset: Path) -> None:
    source = LeRobotSource(dataset, DELTAS)
    specs = source.window_specs()
    assert specs["action"].is_sequence and specs["action"].shape == (2,)
    assert specs["action_is_pad"].is_sequence and specs["action_is_pad"].name == "action_is_pad"
    assert not specs["observation/images/cam"].is_sequence
    features, _ = parse(source, 0, specs)
    assert features["action"].shape == (6, 4, 2) and features["action_is_pad"].shape == (6, 4)
    assert features["observation/state"].shape == (6, 3, 3)
    assert features["observation/images/cam"].shape == (6, 16, 16, 3)


def test_bad_windows_and_specs_are_named(dataset: Path) -> None:
    with pytest.raises(ValueError, match=r"\[0\.05\] are not multiples of 1/fps = 1/10 s"):
        LeRobotSource(dataset, {"action": [0.0, 0.05]})
    with pytest.raises(ValueError, match="'gripper' is no feature of"):
        LeRobotSource(dataset, {"gripper": [0.0]})
    source = LeRobotSource(dataset, DELTAS)
    wrong = TensorSpecStruct(a=TSpec((5, 2), torch.float32, name="action"))
    with pytest.raises(SpecError, match=r"shape \(5, 2\), but 'action' has frames of shape \(2,\)"):
        source.make_parse_fn(wrong, None, True)
    missing = TensorSpecStruct(a=TSpec((2,), torch.float32, name="observation.effort"))
    with pytest.raises(SpecError, match="'observation.effort'.*not in the LeRobot dataset"):
        source.make_parse_fn(missing, None, True)
    optional = TensorSpecStruct(a=TSpec((2,), torch.float32, name="effort", is_optional=True))
    features, _ = parse(source, 0, optional)
    assert "a" not in features
    no_window = TensorSpecStruct(a=TSpec((1,), torch.bool, name="observation.images.cam_is_pad"))
    with pytest.raises(SpecError, match="has no delta_timestamps, so no padding mask"):
        source.make_parse_fn(no_window, None, True)


# --------------------------------------------------------------------- the pipeline


def generator(dataset: Path, **kwargs: Any) -> LeRobotInputGenerator:
    kwargs.setdefault("batch_size", 4)
    gen = LeRobotInputGenerator(dataset, DELTAS, **kwargs)
    spec = TensorSpecStruct(
        episode=TSpec((), torch.int64, name="episode_index"),
        frame=TSpec((), torch.int64, name="frame_index"),
        actions=TSpec((4, 2), torch.float32, name="action"),
    )
    gen.set_feature_specifications(spec, None)
    return gen


def keys_of(batches: Any, count: int | None = None) -> list[tuple[int, int]]:
    out = []
    for features, _ in itertools.islice(batches, count):
        out.extend(zip(features.episode.tolist(), features.frame.tolist(), strict=True))
    return out


ALL_FRAMES = [(e, t) for e, n in enumerate(LENGTHS) for t in range(n)]


def test_eval_reads_every_frame_once_in_order(dataset: Path) -> None:
    assert keys_of(generator(dataset).create_dataset(ModeKeys.EVAL)) == ALL_FRAMES


def test_train_epochs_are_permutations_shards_disjoint_and_resume_exact(dataset: Path) -> None:
    def train_keys(seed: int, count: int) -> list[tuple[int, int]]:
        gen = generator(dataset, batch_size=2, seed=seed, shuffle_buffer_size=8)
        return keys_of(gen.create_dataset(ModeKeys.TRAIN), count)

    keys = train_keys(1, 22)  # two epochs of 22 frames
    assert sorted(keys[:22]) == ALL_FRAMES and sorted(keys[22:]) == ALL_FRAMES
    assert keys[:22] != keys[22:] and keys == train_keys(1, 22) and keys != train_keys(2, 22)

    per_rank = [
        keys_of(generator(dataset, rank=r, world_size=2).create_dataset(ModeKeys.EVAL))
        for r in range(2)
    ]
    assert all(per_rank) and sorted(per_rank[0] + per_rank[1]) == ALL_FRAMES

    gen = generator(dataset, batch_size=2, seed=1, shuffle_buffer_size=8)
    assert keys_of(gen.create_dataset(ModeKeys.TRAIN).iter_from(7), 8) == keys[14:30]


def test_dataloader_workers_read_their_share(dataset: Path) -> None:
    gen = generator(dataset, num_workers=2, multiprocessing_context="fork")
    assert sorted(keys_of(gen.create_dataset(ModeKeys.EVAL))) == ALL_FRAMES


# ---------------------------------------------------------------------- training


class ActionChunkRegression(RegressionModel):
    """Predicts the next 4 actions from the last 3 states and the camera frame."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.net = nn.Linear(3 * 3 + 1, 4 * 2)

    def get_feature_specification(self, mode: str) -> TensorSpecStruct:
        return TensorSpecStruct(
            state=TSpec((3,), torch.float32, name="observation.state", is_sequence=True),
            image=TSpec((16, 16, 3), torch.uint8, name="observation.images.cam"),
        )

    def get_label_specification(self, mode: str) -> TensorSpecStruct:
        return TensorSpecStruct(target=TSpec((4, 2), torch.float32, name="action"))

    def a_func(self, features: Any, mode: str, config: Any = None, params: Any = None) -> Any:
        red = features.image[..., 0].float().mean(dim=(1, 2))[:, None] / 255.0
        inputs = torch.cat([features.state.flatten(1), red], dim=1)
        return {"inference_output": self.net(inputs).view(-1, 4, 2)}


def _train(model_dir: Path, dataset: Path, steps: int) -> ActionChunkRegression:
    seed_everything(0)
    model = ActionChunkRegression()
    train_eval_model(
        model,
        LeRobotInputGenerator(dataset, DELTAS, batch_size=4, seed=0, shuffle_buffer_size=8),
        input_generator_eval=LeRobotInputGenerator(dataset, DELTAS, batch_size=4, episodes=[3]),
        max_train_steps=steps,
        eval_steps=1,
        model_dir=model_dir,
        save_checkpoints_steps=4,
        show_progress=False,
        device="cpu",
    )
    return model


def test_train_eval_model_trains_on_lerobot_frames_and_resumes_exactly(
    dataset: Path, tmp_path: Path
) -> None:
    seed_everything(0)
    before = ActionChunkRegression().net.weight.detach().clone()
    straight = _train(tmp_path / "straight", dataset, 12)
    checkpoint = latest_checkpoint(tmp_path / "straight")
    assert checkpoint is not None and checkpoint.global_step == 12
    assert not torch.equal(straight.net.weight.detach(), before)
    _train(tmp_path / "resumed", dataset, 4)
    resumed = _train(tmp_path / "resumed", dataset, 12)  # resumes at step 4's input position
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name
