"""pose_env through t2r.collect: T2R's record layout, concurrent collectors, end to end."""

from __future__ import annotations

import functools
import glob
import multiprocessing
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from t2r import specs
from t2r.collect import TFRecordReplayWriter, collect_eval_loop, run_env
from t2r.data import Example, create_parse_tf_example_fn, read_tfrecord
from tests.needs import needs_fixture, needs_module

needs_module("mujoco")

from t2r.research.pose_env import (  # noqa: E402 - needs mujoco
    PoseEnvRandomPolicy,
    PoseToyEnv,
    episode_to_transitions_pose_toy,
    transition_spec,
)


def _collect(root: Path, num_episodes: int, seed: int, task: int = 0, **kwargs) -> list[str]:
    env = PoseToyEnv(seed=seed)
    result = run_env(
        env,
        PoseEnvRandomPolicy(seed=seed),
        episode_to_transitions_fn=episode_to_transitions_pose_toy,
        replay_writer=TFRecordReplayWriter(**kwargs),
        root_dir=str(root),
        task=task,
        num_episodes=num_episodes,
        episodes_per_task=1,
        show_progress=False,
    )
    env.close()
    return result.record_files


def _layout(record: bytes) -> dict[str, tuple[str, int]]:
    features = Example.FromString(record).features.feature
    return {
        key: (f.WhichOneof("kind"), len(getattr(f, f.WhichOneof("kind")).value))
        for key, f in features.items()
    }


def test_records_have_the_fixture_layout_and_parse_with_its_spec(tmp_path, fixtures_dir):
    fixture = needs_fixture("pose_env_test_data.tfrecord")
    (path,) = _collect(tmp_path, num_episodes=6, seed=0)
    ours = list(read_tfrecord(path))
    theirs = list(read_tfrecord(fixture))[:6]
    assert len(ours) == 6
    # Exactly the keys, list kinds and lengths of T2R's records.
    assert (
        _layout(ours[0])
        == _layout(theirs[0])
        == {
            "state/image": ("bytes_list", 1),
            "pose": ("float_list", 2),
            "reward": ("float_list", 1),
            "target_pose": ("float_list", 2),
        }
    )
    # The spec that reads the fixture reads ours the same way.
    parse = create_parse_tf_example_fn(transition_spec())
    for records in (ours, theirs):
        batch = parse(records)
        assert batch["state/image"].shape == (6, 64, 64, 3)
        assert batch["state/image"].dtype == torch.uint8
        assert batch["pose"].shape == (6, 2) and batch["target_pose"].shape == (6, 2)
        assert batch["reward"].shape == (6, 1)
        # The reward is minus the distance of the logged action to the target.
        distance = torch.linalg.vector_norm(batch["pose"] - batch["target_pose"], dim=-1)
        assert torch.allclose(batch["reward"][:, 0], -distance, atol=1e-5)
    assert (
        Example.FromString(ours[0]).features.feature["state/image"].bytes_list.value[0][:3]
        == b"\xff\xd8\xff"
    )  # JPEG


def test_the_models_read_collected_records(tmp_path):
    from t2r.data import DefaultRecordInputGenerator
    from t2r.modes import ModeKeys
    from t2r.research.pose_env import PoseEnvContinuousMCModel, PoseEnvRegressionModel

    _collect(tmp_path, num_episodes=4, seed=1)
    for model in (PoseEnvRegressionModel(), PoseEnvContinuousMCModel()):
        generator = DefaultRecordInputGenerator(
            str(tmp_path / "policy_collect" / "*.tfrecord"), batch_size=4
        )
        generator.set_specification_from_model(model, ModeKeys.EVAL)
        features, labels = next(iter(generator.create_dataset(ModeKeys.EVAL)))
        outputs = model.model_fn(features, labels, ModeKeys.EVAL)
        assert np.isfinite(float(outputs.loss.detach()))


def _collector_process(root: str, num_episodes: int, seed: int) -> None:
    # Both processes use task 0: only the collector id keeps their names apart.
    _collect(Path(root), num_episodes, seed, task=0, max_episodes_per_file=3)


def test_two_collector_processes_into_one_directory_lose_nothing(tmp_path):
    context = multiprocessing.get_context("spawn")
    processes = [
        context.Process(target=_collector_process, args=(str(tmp_path), 7, seed)) for seed in (1, 2)
    ]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=120)
    assert [p.exitcode for p in processes] == [0, 0]
    files = sorted(glob.glob(str(tmp_path / "policy_collect" / "*")))
    assert len(files) == 6  # 3 + 3 + 1 episodes per collector
    assert all(f.endswith(".tfrecord") for f in files)  # no temporary files left
    records = [r for f in files for r in read_tfrecord(f)]
    assert len(records) == 14
    assert len(set(records)) == 14  # two different seeds: no duplicate either


def test_tiny_collect_train_export_eval(tmp_path):
    """Collect -> train -> export -> collect-eval with the exported policy, in seconds."""
    from t2r.data import DefaultRecordInputGenerator
    from t2r.export import create_default_exporters
    from t2r.policies import RegressionPolicy
    from t2r.predictors import ExportedModelPredictor
    from t2r.research.pose_env import PoseEnvRegressionModel
    from t2r.train import read_metrics, train_eval_model

    data = tmp_path / "data"
    _collect(data, num_episodes=24, seed=3)
    model = PoseEnvRegressionModel()
    train_eval_model(
        model,
        DefaultRecordInputGenerator(str(data / "policy_collect" / "*"), batch_size=8, seed=0),
        DefaultRecordInputGenerator(str(data / "policy_collect" / "*"), batch_size=8),
        max_train_steps=3,
        model_dir=str(tmp_path / "model"),
        eval_steps=1,
        save_checkpoints_steps=3,
        create_exporters_fn=create_default_exporters,
        device="cpu",
        show_progress=False,
    )
    export_dir = tmp_path / "model" / "export" / "latest_exporter_numpy"
    assert os.listdir(export_dir) == ["3"]
    env = PoseToyEnv(seed=4)
    handled = collect_eval_loop(
        None,
        env,
        lambda: RegressionPolicy(PoseEnvRegressionModel(), ExportedModelPredictor(export_dir)),
        num_eval=5,
        run_agent_fn=functools.partial(
            run_env,
            episodes_per_task=1,
            episode_to_transitions_fn=episode_to_transitions_pose_toy,
            replay_writer=TFRecordReplayWriter(),
            show_progress=False,
        ),
        root_dir=str(tmp_path / "eval"),
    )
    env.close()
    result = handled[3]["eval"]
    assert result.num_episodes == 5 and np.isfinite(result.mean_reward)
    (summary,) = read_metrics(tmp_path / "eval" / "eval" / "live_eval_0")
    assert summary["step"] == 3
    assert summary["eval/episode_reward"] == pytest.approx(result.mean_reward)
    (records_file,) = glob.glob(str(tmp_path / "eval" / "eval" / "policy_eval" / "*.tfrecord"))
    batch = create_parse_tf_example_fn(transition_spec())(list(read_tfrecord(records_file)))
    assert batch["reward"].shape == (5, 1)


class _TwoCameraPoseEnv(PoseToyEnv):
    """PoseToyEnv with a second camera: the observation becomes a dict of two images."""

    def get_observation(self):
        front = super().get_observation()
        yaw, pitch = self._yaw, self._pitch
        self.set_camera(yaw + 90.0, pitch)
        side = super().get_observation()
        self.set_camera(yaw, pitch)
        return {"state/image": front, "state/side_image": side}


def test_a_camera_added_to_the_env_and_the_spec_appears_in_the_records(tmp_path):
    spec = transition_spec()
    spec["state/side_image"] = specs.ExtendedTensorSpec(
        (64, 64, 3), torch.uint8, name="state/side_image", data_format="jpeg"
    )
    env = _TwoCameraPoseEnv(seed=5)
    result = run_env(
        env,
        PoseEnvRandomPolicy(seed=5),
        episode_to_transitions_fn=functools.partial(episode_to_transitions_pose_toy, spec=spec),
        replay_writer=TFRecordReplayWriter(),
        root_dir=str(tmp_path),
        num_episodes=3,
        show_progress=False,
    )
    env.close()
    (path,) = result.record_files
    batch = create_parse_tf_example_fn(spec)(list(read_tfrecord(path)))
    assert batch["state/side_image"].shape == (3, 64, 64, 3)
    # Two different views of the same scene.
    difference = (batch["state/side_image"].float() - batch["state/image"].float()).abs().mean()
    assert float(difference) > 5.0
    assert batch["target_pose"].shape == (3, 2)
