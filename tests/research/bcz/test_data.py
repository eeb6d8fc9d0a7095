"""BC-Z examples from RLDS episodes: future waypoints against hand-built episodes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from t2r.data import ReadStats
from t2r.data.rlds import write_rlds
from t2r.modes import ModeKeys
from t2r.research.bcz import (
    BCZInputGenerator,
    BCZModel,
    BCZWaypointSource,
    future_stop_tokens,
    future_waypoints,
)
from t2r.specs import ExtendedTensorSpec, SpecError, TensorSpecStruct


def test_future_waypoints_of_a_hand_built_episode() -> None:
    poses = np.array([[0.0, 0.0], [1.0, 0.0], [1.0, 2.0]])
    expected = np.array(
        [
            [[1, 0], [1, 2], [1, 2]],  # t=0: steps 1, 2, then the last pose repeats
            [[0, 2], [0, 2], [0, 2]],  # t=1
            [[0, 0], [0, 0], [0, 0]],  # t=2: the episode has ended, the robot rests
        ],
        float,
    )
    np.testing.assert_array_equal(future_waypoints(poses, 3), expected)
    np.testing.assert_array_equal(future_waypoints(poses, 1), expected[:, :1])
    with pytest.raises(ValueError, match=r"poses must be \(n >= 1, D\), got \(3,\)"):
        future_waypoints(np.zeros(3), 2)
    with pytest.raises(ValueError, match="num_waypoints must be >= 1, got 0"):
        future_waypoints(poses, 0)


def test_stop_tokens_mark_the_waypoints_past_the_end() -> None:
    # Episode of 3 steps, K = 3: step t's waypoint k is past the end when t + k > 2.
    np.testing.assert_array_equal(
        future_stop_tokens(3, 3)[..., 0], [[0, 0, 1], [0, 1, 1], [1, 1, 1]]
    )
    assert future_stop_tokens(1, 2).shape == (1, 2, 1) and future_stop_tokens(1, 2).all()
    with pytest.raises(ValueError, match="must be >= 1, got 0 and 2"):
        future_stop_tokens(0, 2)


STEP_SPEC = TensorSpecStruct(
    [
        ("observation/image", ExtendedTensorSpec((32, 32, 3), torch.uint8, data_format="png")),
        ("observation/natural_language_embedding", ExtendedTensorSpec((512,), torch.float32)),
        ("observation/effector", ExtendedTensorSpec((2,), torch.float32)),
        ("action/world_vector", ExtendedTensorSpec((3,), torch.float32)),
    ]
)


def _episode(n: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    return {
        "steps": {
            "observation/image": rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8),
            "observation/natural_language_embedding": np.repeat(
                rng.normal(size=(1, 512)).astype(np.float32), n, axis=0
            ),
            "observation/effector": rng.uniform(-0.2, 0.2, (n, 2)).astype(np.float32),
            "action/world_vector": np.zeros((n, 3), np.float32),
        }
    }


def write_episodes(directory: Path, lengths: list[int]) -> list[dict]:
    episodes = [_episode(n, seed) for seed, n in enumerate(lengths)]
    write_rlds(directory, episodes, STEP_SPEC, name="toy", split="train")
    return episodes


def test_examples_are_steps_with_waypoint_labels(tmp_path: Path) -> None:
    episodes = write_episodes(tmp_path, [4, 2])
    model = BCZModel(num_waypoints=3, mask_stop_token=True)
    source = BCZWaypointSource(tmp_path, "train")
    parse = source.make_parse_fn(
        model.get_feature_specification_for_packing(ModeKeys.TRAIN),
        model.get_label_specification_for_packing(ModeKeys.TRAIN),
        True,
    )
    for unit, episode in zip(source.units(), episodes):
        windows = [w for _, w in source.read(unit, ReadStats())]
        features, labels = parse(windows)
        steps = episode["steps"]
        n = len(steps["observation/effector"])
        assert len(windows) == n
        np.testing.assert_array_equal(
            features["observation/image"].numpy(), steps["observation/image"]
        )  # PNG: lossless
        np.testing.assert_array_equal(
            features["observation/natural_language_embedding"].numpy(),
            steps["observation/natural_language_embedding"],
        )
        effector = steps["observation/effector"]
        np.testing.assert_array_equal(labels["future/stop_token"].numpy(), future_stop_tokens(n, 3))
        for t in range(n):
            for k in range(3):
                np.testing.assert_allclose(
                    labels["future/xyz_residual"][t, k].numpy(),
                    effector[min(t + k + 1, n - 1)] - effector[t],
                    atol=1e-7,
                )


def test_the_input_generator_batches_for_the_model(tmp_path: Path) -> None:
    write_episodes(tmp_path, [3, 3])
    model = BCZModel(num_waypoints=2)
    generator = BCZInputGenerator(tmp_path, "train", batch_size=4, seed=0)
    generator.set_specification_from_model(model, ModeKeys.TRAIN)
    features, labels = next(iter(generator.create_dataset(ModeKeys.TRAIN)))
    assert tuple(features["observation/image"].shape) == (4, 32, 32, 3)
    assert tuple(labels["future/xyz_residual"].shape) == (4, 2, 2)
    assert torch.isfinite(model.model_fn(features, labels, ModeKeys.TRAIN).loss)


def test_mismatched_labels_are_named(tmp_path: Path) -> None:
    write_episodes(tmp_path, [2])
    model = BCZModel(num_waypoints=2, action_components=(("xyz", 3, 1.0),))
    spec = model.get_feature_specification_for_packing(ModeKeys.TRAIN)
    with pytest.raises(SpecError, match=r"'future/xyz_residual': shape \(2, 3\), but waypoints"):
        BCZWaypointSource(tmp_path).make_parse_fn(
            spec, model.get_label_specification_for_packing(ModeKeys.TRAIN), True
        )
    source = BCZWaypointSource(
        tmp_path, waypoint_sources={"future/xyz_residual": "observation/pose"}
    )
    with pytest.raises(SpecError, match="from the step feature 'observation/pose', which the RLDS"):
        source.make_parse_fn(
            spec,
            BCZModel(num_waypoints=2).get_label_specification_for_packing(ModeKeys.TRAIN),
            True,
        )
