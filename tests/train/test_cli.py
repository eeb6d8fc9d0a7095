"""A gin-configured run through the command line, as a user would start it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from t2r.train import latest_checkpoint, read_metrics

REPO_ROOT = Path(__file__).resolve().parents[2]

CONFIG = """
import tests.train.models

train_eval_model.t2r_model = @TinyRegression()
train_eval_model.input_generator_train = @train/DefaultRandomInputGenerator()
train_eval_model.input_generator_eval = @eval/DefaultRandomInputGenerator()
train/DefaultRandomInputGenerator.batch_size = 4
train/DefaultRandomInputGenerator.seed = 0
eval/DefaultRandomInputGenerator.batch_size = 4
eval/DefaultRandomInputGenerator.seed = 1
train_eval_model.max_train_steps = 1000
train_eval_model.save_checkpoints_steps = 5
train_eval_model.eval_steps = 2
train_eval_model.log_every_n_steps = 5
train_eval_model.show_progress = False
"""


@pytest.mark.parametrize("entry", [["t2r.cli", "train"], ["t2r.bin.run_t2r_trainer"]])
def test_gin_configured_run(entry, tmp_path):
    config = tmp_path / "tiny.gin"
    config.write_text(CONFIG)
    model_dir = tmp_path / "model"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            *entry,
            f"--gin_configs={config}",
            "--gin_bindings=train_eval_model.max_train_steps=10",
            f"--gin_bindings=train_eval_model.model_dir='{model_dir}'",
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert latest_checkpoint(model_dir).global_step == 10
    assert [r["step"] for r in read_metrics(model_dir / "eval")] == [5, 10]
    operative = (model_dir / "operative_config.gin").read_text()
    assert "train_eval_model.max_train_steps = 10" in operative
    assert "DefaultRandomInputGenerator.batch_size = 4" in operative
    assert (model_dir / "config.gin").is_file()


def test_missing_config_file_is_named(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "t2r.cli", "train", f"--gin_configs={tmp_path}/nope.gin"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert "nope.gin" in result.stderr
