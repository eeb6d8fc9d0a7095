"""t2r reads datasets that LeRobot's own writer made (tests/fixtures/lerobot_v30)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from tests.needs import needs_module

needs_module("pyarrow")
needs_module("av")

from t2r.data.lerobot import (  # noqa: E402
    LeRobotInputGenerator,
    load_lerobot_info,
    read_lerobot_episodes,
)
from t2r.modes import ModeKeys  # noqa: E402
from t2r.specs import ExtendedTensorSpec as TSpec  # noqa: E402
from t2r.specs import TensorSpecStruct  # noqa: E402

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "lerobot_v30"
LENGTHS = [7, 5, 9]
TASKS = ["pick the block", "place the block", "pick the block"]


@pytest.mark.parametrize("mode", ["images", "video"])
def test_metadata_and_low_dimensional_features_read_exactly(mode: str) -> None:
    info = load_lerobot_info(FIXTURE / mode)
    assert (info.codebase_version, info.fps) == ("v3.0", 10)
    assert info.feature_specs()["observation/image"].shape == (24, 32, 3)
    episodes = list(read_lerobot_episodes(FIXTURE / mode))
    assert [e.num_steps for e in episodes] == LENGTHS
    assert [e.metadata["task"] for e in episodes] == TASKS
    for index, episode in enumerate(episodes):
        t = np.arange(episode.num_steps, dtype=np.float32)
        np.testing.assert_array_equal(
            episode.steps["action"], np.stack([np.full_like(t, index), t], 1)
        )
        np.testing.assert_allclose(
            episode.steps["observation/state"],
            np.repeat((index + t / 10)[:, None], 4, 1),
            rtol=1e-6,
        )


def test_png_frames_are_the_frames_lerobot_was_given() -> None:
    for episode in read_lerobot_episodes(FIXTURE / "images"):
        frames = episode.steps["observation/image"]
        assert frames.dtype == np.uint8 and frames.shape[1:] == (24, 32, 3)
        t = np.arange(episode.num_steps)
        # The blue channel of frame t is 40 t mod 256 everywhere (scripts/lerobot_interop.py).
        np.testing.assert_array_equal(
            frames[..., 2], np.broadcast_to((40 * t % 256)[:, None, None], frames.shape[:3])
        )


def test_each_video_frame_decodes_to_its_own_timestamp() -> None:
    exact = list(read_lerobot_episodes(FIXTURE / "images"))
    for episode, reference in zip(read_lerobot_episodes(FIXTURE / "video"), exact):
        decoded = episode.steps["observation/image"].astype(np.float32)
        frames = reference.steps["observation/image"].astype(np.float32)
        error = np.abs(decoded[:, None] - frames[None]).mean(axis=(2, 3, 4))  # decoded x reference
        assert list(error.argmin(axis=1)) == list(range(len(frames)))
        assert error.diagonal().max() < 12  # AV1 at LeRobot's crf 30 on sharp ramps


def test_a_lerobot_written_dataset_feeds_the_input_generator() -> None:
    """Windows of future actions padded at the episode's end, as LeRobot pads them."""
    generator = LeRobotInputGenerator(FIXTURE / "video", {"action": [0.0, 0.1, 0.2]}, batch_size=21)
    generator.set_feature_specifications(
        TensorSpecStruct(
            image=TSpec((24, 32, 3), torch.uint8, name="observation.image"),
            episode=TSpec((), torch.int64, name="episode_index"),
            frame=TSpec((), torch.int64, name="frame_index"),
            actions=TSpec((3, 2), torch.float32, name="action"),
            actions_is_pad=TSpec((3,), torch.bool, name="action_is_pad"),
        ),
        None,
    )
    features, _ = next(iter(generator.create_dataset(ModeKeys.EVAL)))
    assert features.image.shape == (21, 24, 32, 3)
    last = LENGTHS[0] - 1  # episode 0's last frame: its two future actions are padding
    np.testing.assert_array_equal(features.actions[last].numpy(), [[0, last]] * 3)
    assert features.actions_is_pad[last].tolist() == [False, True, True]
    np.testing.assert_array_equal(features.actions[1].numpy(), [[0, 1], [0, 2], [0, 3]])
