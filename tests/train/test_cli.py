"""A gin-configured run through the command line, as a user would start it."""

from __future__ import annotations

from pathlib import Path

import gin
import pytest

from t2r import cli
from t2r.bin import run_t2r_trainer
from t2r.train import latest_checkpoint, read_metrics
from tests.commands import run_t2r

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


@pytest.fixture
def clean_gin():
    gin.clear_config()
    yield
    gin.clear_config()


@pytest.mark.parametrize("entry", ["t2r train", "run_t2r_trainer.main"])
def test_gin_configured_run(entry, tmp_path, clean_gin):
    config = tmp_path / "tiny.gin"
    config.write_text(CONFIG)
    model_dir = tmp_path / "model"
    flags = [
        f"--gin_configs={config}",
        "--gin_bindings=train_eval_model.max_train_steps=10",
        f"--gin_bindings=train_eval_model.model_dir='{model_dir}'",
    ]
    if entry == "t2r train":  # the command as a user starts it, in its own process
        run_t2r("train", *flags, cwd=REPO_ROOT)
    else:  # T2R's entry point (python -m t2r.bin.run_t2r_trainer), in this process
        assert run_t2r_trainer.main(flags) == 0
    assert latest_checkpoint(model_dir).global_step == 10
    assert [r["step"] for r in read_metrics(model_dir / "eval")] == [5, 10]
    operative = (model_dir / "operative_config.gin").read_text()
    assert "train_eval_model.max_train_steps = 10" in operative
    assert "DefaultRandomInputGenerator.batch_size = 4" in operative
    assert (model_dir / "config.gin").is_file()


def test_missing_config_file_is_named(tmp_path):
    # The exception ends the command (a traceback, exit status 1) naming the file.
    with pytest.raises(FileNotFoundError, match="nope.gin"):
        cli.main(["train", f"--gin_configs={tmp_path}/nope.gin"])
