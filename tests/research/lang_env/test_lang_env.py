"""The language-conditioned reach task, its scripted demos as RLDS, and evaluation."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from t2r.data import ReadStats
from t2r.data.rlds import WINDOW_MASK, RLDSSource, load_rlds_info
from t2r.specs import ExtendedTensorSpec as TSpec
from t2r.specs import TensorSpecStruct
from tests.commands import run_t2r
from tests.needs import lang_reach_env


@pytest.fixture
def env() -> Iterator[Any]:
    environment = lang_reach_env(seed=0)
    yield environment
    environment.close()


def test_observations_and_instructions(env: Any) -> None:
    from t2r.research.rt1 import HashingTextEncoder

    observation, info = env.reset(seed=3, options={"instruction": "blue"})
    assert env.instructions == (
        "reach the red block",
        "reach the green block",
        "reach the blue block",
    )
    assert observation["natural_language_instruction"] == "reach the blue block"
    assert info["target"] == "blue" and not info["success"]
    assert observation["image"].shape == (64, 64, 3) and observation["image"].dtype == np.uint8
    np.testing.assert_array_equal(
        observation["natural_language_embedding"],
        HashingTextEncoder()(["reach the blue block"])[0],
    )
    assert env.observation_space.contains(observation)
    # Blocks and effector start apart.
    points = [*env.blocks.values(), env.effector]
    gaps = [np.linalg.norm(a - b) for i, a in enumerate(points) for b in points[i + 1 :]]
    assert min(gaps) >= env.min_separation
    with pytest.raises(ValueError, match="unknown instruction 'reach the cat'"):
        env.reset(options={"instruction": "reach the cat"})


def test_the_image_shows_the_named_block_where_it_is(env: Any) -> None:
    """Top-down camera: +x is to the right, +y is up in the image."""
    env.reset(seed=5)
    image = env.render().astype(int)
    size = image.shape[0]
    for colour, xy in env.blocks.items():
        column = round((xy[0] / 0.291 + 1) / 2 * (size - 1))
        row = round((1 - (xy[1] / 0.291 + 1) / 2) * (size - 1))
        pixel = image[row, column]
        channel = {"red": 0, "green": 1, "blue": 2}[colour]
        assert pixel[channel] == pixel.max() and pixel[channel] > 120, (colour, pixel)


def test_moving_to_the_block_succeeds_and_the_limit_truncates(env: Any) -> None:
    from t2r.research.lang_env.demos import scripted_action

    env.reset(seed=1, options={"instruction": "red"})
    start = env.distance()
    steps = 0
    while True:
        _, reward, terminated, truncated, info = env.step(scripted_action(env))
        steps += 1
        if terminated or truncated:
            break
    assert terminated and not truncated and info["success"] and reward == 1.0
    assert info["distance"] <= env.success_radius
    assert steps == int(
        np.ceil((start - env.success_radius) / env.step_size - 1e-9)
    ) or steps <= int(np.ceil(start / env.step_size))
    env.reset(seed=1, options={"instruction": "red"})
    for _ in range(env.max_episode_steps):
        _, _, terminated, truncated, _ = env.step({"action/world_vector": -scripted_action(env)})
        if terminated or truncated:
            break
    assert truncated and not terminated and env.steps == env.max_episode_steps


def test_demos_are_rlds_that_rt1_windows_read(tmp_path: Path) -> None:
    from t2r.research.lang_env.demos import write_demos

    env = lang_reach_env()
    directory = tmp_path / "lang_reach" / "1.0.0"
    info = write_demos(directory, 6, "train", seed=0, env=env)
    env.close()
    assert info.splits["train"].shard_lengths == (6,)
    assert load_rlds_info(directory).step_spec["observation/image"].data_format == "jpeg"
    source = RLDSSource(directory)
    episodes = list(source.episodes())
    instructions = [e.episode_value("episode_metadata/instruction").item() for e in episodes]
    assert (
        instructions
        == [
            b"reach the red block",
            b"reach the green block",
            b"reach the blue block",
        ]
        * 2
    )
    for episode in episodes:
        n = episode.num_steps
        terminate = episode.step_values("action/terminate_episode")
        assert terminate[:-1].tolist() == [[0, 1, 0]] * (n - 1) and terminate[-1].tolist() == [
            1,
            0,
            0,
        ]
        world = episode.step_values("action/world_vector")
        assert np.abs(world).max() <= 1.0 and (world[-1] == 0).all() and (world[:, 2] == 0).all()
        assert episode.step_values("reward").tolist() == [0.0] * (n - 2) + [1.0, 0.0]
        assert episode.step_values("is_terminal")[-1]
        # The labels point at the block: the effector gets closer along the demo.
        effector = episode.step_values("observation/effector")
        assert np.linalg.norm(effector[-1] - effector[0]) > 0
    # The windows RT-1 reads (its spec names, T = 6).
    spec = TensorSpecStruct(
        [
            ("observation/image", TSpec((6, 64, 64, 3), torch.uint8, name="observation/image")),
            (
                "observation/natural_language_embedding",
                TSpec((6, 512), torch.float32, name="observation/natural_language_embedding"),
            ),
            ("mask", TSpec((6,), torch.bool, name=WINDOW_MASK)),
        ]
    )
    labels = TensorSpecStruct(
        [
            ("action/world_vector", TSpec((6, 3), torch.float32)),
            ("action/terminate_episode", TSpec((6, 3), torch.int32)),
        ]
    )
    windows = [w for _, w in source.read(source.units()[0], ReadStats())]
    features, parsed = source.make_parse_fn(spec, labels, True)(windows)
    assert tuple(features["observation/image"].shape) == (len(windows), 6, 64, 64, 3)
    assert parsed["action/terminate_episode"][-1, -1].tolist() == [1, 0, 0]


def test_random_policy_evaluation_and_table(env: Any) -> None:
    from t2r.research.lang_env.demos import scripted_action
    from t2r.research.lang_env.evaluate import (
        RandomPolicy,
        evaluate_policy,
        format_success_table,
    )

    class Scripted:
        def reset(self) -> None:
            pass

        def __call__(self, observation: Any) -> np.ndarray:
            return scripted_action(env)

    results = {
        "scripted": evaluate_policy(env, Scripted(), 3),
        "random": evaluate_policy(env, RandomPolicy(0), 3),
    }
    assert all(r.successes == 3 for r in results["scripted"].values())
    assert sum(r.successes for r in results["random"].values()) < 9
    table = format_success_table(results)
    assert "| reach the red block | 3/3 (100%) |" in table
    assert table.splitlines()[-1].startswith("| all | 9/9 (100%) |")


def test_the_window_policy_repeats_step_zero_like_the_training_windows() -> None:
    from t2r.research.lang_env.evaluate import RT1WindowPolicy

    class Recorder:
        time_sequence_length = 3

        def __init__(self) -> None:
            self.seen: list[list[int]] = []

        def predict_window(self, images: torch.Tensor, embedding: torch.Tensor) -> dict[str, Any]:
            self.seen.append(images[0, :, 0, 0, 0].tolist())
            return {"action/world_vector": torch.zeros(1, 3)}

    model = Recorder()
    policy = RT1WindowPolicy(model)
    for episode in range(2):
        policy.reset()
        for step in range(4):
            image = np.full((2, 2, 3), 10 * episode + step, np.uint8)
            policy({"image": image, "natural_language_embedding": np.zeros(4, np.float32)})
    assert model.seen[:4] == [[0, 0, 0], [0, 0, 1], [0, 1, 2], [1, 2, 3]]
    assert model.seen[4] == [10, 10, 10]


def test_collect_writes_rlds_through_run_env(tmp_path: Path) -> None:
    """t2r.collect.run_env with the RLDS replay writer: collect feeds RT-1."""
    from t2r.collect import run_env
    from t2r.research.lang_env.demos import (
        EpisodeToRLDS,
        ScriptedReachPolicy,
        rlds_episode_writer,
    )

    env = lang_reach_env(seed=2)
    writer = rlds_episode_writer()
    result = run_env(
        env,
        ScriptedReachPolicy(env, noise=0.0),
        episode_to_transitions_fn=EpisodeToRLDS(),
        replay_writer=writer,
        root_dir=tmp_path,
        num_episodes=3,
        show_progress=False,
    )
    env.close()
    assert result.mean_reward == 1.0
    (directory,) = writer.paths
    assert result.record_files == [directory]
    episodes = list(RLDSSource(directory).episodes())
    assert len(episodes) == 3 and writer.num_episodes == 3
    for episode in episodes:
        n = episode.num_steps
        assert episode.step_values("reward").tolist() == [0.0] * (n - 2) + [1.0, 0.0]
        assert episode.step_values("is_terminal").tolist() == [False] * (n - 1) + [True]
        world = episode.step_values("action/world_vector")
        effector = episode.step_values("observation/effector")
        # Without noise the executed moves are the labels: effector deltas follow them.
        np.testing.assert_allclose(
            effector[1:] - effector[:-1], world[:-1, :2] * env.step_size, atol=1e-6
        )


def test_the_shipped_config_trains_rt1_on_demos_and_evaluates(tmp_path: Path) -> None:
    """lang_reach_rt1.gin: `t2r train` on RLDS demos, then the evaluation command."""

    from t2r.research.lang_env.demos import write_demos
    from t2r.research.lang_env.evaluate import main as evaluate_main
    from t2r.train import latest_checkpoint
    from tests.needs import needs_module

    needs_module("t2r.research.rt1")
    env = lang_reach_env()
    data = tmp_path / "lang_reach" / "1.0.0"
    write_demos(data, 3, "train", seed=0, env=env)
    write_demos(data, 3, "val", seed=1, env=env)
    env.close()
    model_dir = tmp_path / "model"
    shrink = [  # a tiny model, so the test is quick; the config's wiring is what counts
        "RT1Model.efficientnet_width=0.25",
        "RT1Model.efficientnet_depth=0.25",
        "RT1Model.num_layers=1",
        "RT1Model.d_model=64",
        "train/RLDSInputGenerator.batch_size=2",
        "eval/RLDSInputGenerator.batch_size=8",
    ]
    bindings = [
        *shrink,
        f"DATA='{data}'",
        f"MODEL_DIR='{model_dir}'",
        "train_eval_model.max_train_steps=2",
        "train_eval_model.save_checkpoints_steps=2",
        "train_eval_model.show_progress=False",
    ]
    run_t2r(
        "train",
        "--gin_configs=lang_reach_rt1.gin",
        *[f"--gin_bindings={b}" for b in bindings],
        cwd=tmp_path,
        timeout=600,
    )
    checkpoint = latest_checkpoint(model_dir)
    assert checkpoint is not None and checkpoint.global_step == 2
    out = tmp_path / "results.json"
    import gin

    try:
        evaluate_main(
            [
                "--model_dir",
                str(model_dir),
                "--gin_configs=lang_reach_rt1.gin",
                *[f"--gin_bindings={b}" for b in shrink],
                "--episodes",
                "1",
                "--json_out",
                str(out),
            ]
        )
    finally:
        gin.clear_config()
    import json

    results = json.loads(out.read_text())
    assert list(results) == ["RT-1 (step 2)", "random"]
    assert all(r["episodes"] == 1 for policy in results.values() for r in policy.values())
