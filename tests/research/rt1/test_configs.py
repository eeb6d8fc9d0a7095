"""RT-1's gin configs: the paper config holds PAPER_SIZE, the small one trains via `t2r train`."""

from __future__ import annotations

from pathlib import Path

import gin

from t2r.bin import gin_config
from t2r.research.rt1 import PAPER_SIZE, SMALL_SIZE
from t2r.train import latest_checkpoint
from tests.commands import run_t2r

REPO = Path(__file__).resolve().parents[3]


def _bindings_of(config: str) -> dict[str, object]:
    gin.clear_config()
    try:
        gin_config.parse([config])
        return {k: gin_config.bound_value(f"RT1Model.{k}") for k in PAPER_SIZE}
    finally:
        gin.clear_config()


def test_the_configs_hold_the_presets():
    assert _bindings_of("rt1_paper.gin") == PAPER_SIZE
    assert _bindings_of("rt1_small.gin") == SMALL_SIZE


def test_t2r_train_runs_the_small_config(tmp_path):
    model_dir = tmp_path / "model"
    shrink = [  # a tiny model so the test is quick; the config's wiring is what counts
        "RT1Model.image_size=32",
        "RT1Model.efficientnet_width=0.25",
        "RT1Model.efficientnet_depth=0.25",
        "RT1Model.num_layers=1",
        "RT1Model.d_model=64",
        "train/DefaultRandomInputGenerator.batch_size=2",
        "train_eval_model.max_train_steps=2",
        "train_eval_model.save_checkpoints_steps=2",
        "train_eval_model.show_progress=False",
        "train_eval_model.create_exporters_fn=None",  # exports: test_token_reuse.py
        f"train_eval_model.model_dir='{model_dir}'",
    ]
    run_t2r(
        "train",
        "--gin_configs=rt1_small.gin",
        *[f"--gin_bindings={b}" for b in shrink],
        cwd=tmp_path,
        timeout=300,
    )
    assert latest_checkpoint(model_dir).global_step == 2
    operative = (model_dir / "operative_config.gin").read_text()
    assert "RT1Model.text_encoder = @HashingTextEncoder()" in operative
