"""The shipped pose_env gin configs, through `t2r collect` / run_collect_eval and `t2r train`."""

from __future__ import annotations

import glob
import json
from pathlib import Path

import gin
import numpy as np
import pytest

from t2r import cli
from t2r.bin import gin_config, run_collect_eval, run_t2r_trainer
from t2r.collect import records_pattern
from t2r.data import read_tfrecord
from tests.commands import run_t2r
from tests.needs import needs_module

needs_module("mujoco")

REPO_ROOT = Path(__file__).resolve().parents[2]
SHIPPED = Path(gin_config.__file__).resolve().parents[1] / "research" / "pose_env" / "configs"


@pytest.fixture
def clean_gin():
    gin.clear_config()
    yield
    gin.clear_config()


def _count(pattern: str) -> int:
    return sum(1 for path in glob.glob(pattern) for _ in read_tfrecord(path))


def test_the_configs_live_with_their_project_and_keep_their_names():
    names = sorted(p.name for p in SHIPPED.glob("*.gin"))
    assert names == [
        "pose_env_run_random_collect.gin",
        "pose_env_run_train_critic_cem.gin",
        "pose_env_run_train_reg.gin",
    ]
    # Other projects ship theirs too (research/<project>/configs); pose_env's are found.
    shipped = gin_config.shipped_configs()
    assert {name: shipped.get(name) for name in names} == {n: str(SHIPPED / n) for n in names}
    assert str(SHIPPED) in gin_config.config_search_path()
    assert gin_config.resolve_config_path("pose_env_run_train_reg.gin") == str(
        SHIPPED / "pose_env_run_train_reg.gin"
    )
    assert gin_config.resolve_config_path("elsewhere/x.gin") == "elsewhere/x.gin"


@pytest.mark.parametrize("entry", ["t2r collect", "run_collect_eval.main"])
def test_collect_command_with_the_random_collect_config(entry, tmp_path, clean_gin, monkeypatch):
    root = tmp_path / "data"
    flags = [
        # A bare name: found among the shipped configs.
        "--gin_configs=pose_env_run_random_collect.gin",
        "--gin_bindings=collect_eval_loop.num_collect = 5",
        "--gin_bindings=collect_eval_loop.num_eval = 3",
        "--gin_bindings=TFRecordReplayWriter.max_episodes_per_file = 2",
        "--gin_bindings=run_env.show_progress = False",
        f"--root_dir={root}",
    ]
    if entry == "t2r collect":  # the command as a user starts it, in its own process
        run_t2r("collect", *flags, cwd=tmp_path)
    else:  # T2R's entry point (python -m t2r.bin.run_collect_eval), in this process
        monkeypatch.chdir(tmp_path)
        assert run_collect_eval.main(flags) == 0
    assert len(glob.glob(records_pattern(root, "collect"))) == 3
    assert _count(records_pattern(root, "collect")) == 5
    assert _count(records_pattern(root, "eval")) == 3
    state = json.loads((root / "collect_eval_state_t0.json").read_text())
    assert list(state["handled"]) == ["0"]
    assert -1.5 < state["handled"]["0"]["collect"] < -0.3  # a random policy's reward


def test_collect_command_names_a_missing_config(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    # The exception ends the command (a traceback, exit status 1) naming the file
    # and the shipped configs.
    with pytest.raises(FileNotFoundError, match=r"nope\.gin.*pose_env_run_train_reg\.gin"):
        cli.main(["collect", "--gin_configs=nope.gin", "--root_dir=x"])


def _paths(tmp_path: Path, model: str) -> list[str]:
    data = tmp_path / "data"
    return [
        f"TRAIN_RECORDS = '{records_pattern(data, 'collect')}'",
        f"EVAL_RECORDS = '{records_pattern(data, 'eval')}'",
        f"MODEL_DIR = '{tmp_path / model}'",
        f"EXPORT_DIR = '{tmp_path / model}/export/latest_exporter_numpy'",
        "MAX_STEPS = 2",
        "train_eval_model.save_checkpoints_steps = 2",
        "train_eval_model.show_progress = False",
        "train_eval_model.device = 'cpu'",
        "train/DefaultRecordInputGenerator.batch_size = 8",
        "run_env.show_progress = False",
    ]


def _collect_random(tmp_path: Path) -> None:
    run_collect_eval.run(
        [str(SHIPPED / "pose_env_run_random_collect.gin")],
        [
            "collect_eval_loop.num_collect = 16",
            "collect_eval_loop.num_eval = 8",
            "run_env.show_progress = False",
        ],
        str(tmp_path / "data"),
    )
    gin.clear_config()


def test_train_reg_config_trains_exports_and_evaluates(tmp_path, clean_gin, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _collect_random(tmp_path)
    bindings = [*_paths(tmp_path, "reg"), "collect_eval_loop.num_eval = 4"]
    metrics = run_t2r_trainer.run(["pose_env_run_train_reg.gin"], bindings)
    assert np.isfinite(metrics["mean_distance"])
    # model_dir is bound through the MODEL_DIR macro: the configs land there.
    assert (tmp_path / "reg" / "operative_config.gin").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "reg"]
    gin.clear_config()
    handled = run_collect_eval.run(["pose_env_run_train_reg.gin"], bindings, str(tmp_path / "eval"))
    assert list(handled) == [2]  # continuous: stops after the export at MAX_STEPS
    assert handled[2]["eval"].num_episodes == 4
    assert _count(records_pattern(tmp_path / "eval", "eval")) == 4


def test_critic_cem_config_trains_exports_and_acts(tmp_path, clean_gin, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _collect_random(tmp_path)
    bindings = [*_paths(tmp_path, "critic"), "collect_eval_loop.num_eval = 2"]
    metrics = run_t2r_trainer.run(["pose_env_run_train_critic_cem.gin"], bindings)
    assert np.isfinite(metrics["loss"])
    gin.clear_config()
    handled = run_collect_eval.run(
        ["pose_env_run_train_critic_cem.gin"], bindings, str(tmp_path / "eval")
    )
    result = handled[2]["eval"]
    assert result.num_episodes == 2 and np.isfinite(result.mean_reward)
