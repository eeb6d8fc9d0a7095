"""BC-Z end to end on tiny data: lang_env demos (RLDS) -> train_eval_model -> export ->
BCZPolicy over ExportedModelPredictor in the env; and the shipped config."""

from __future__ import annotations

import json
from pathlib import Path

import gin
import pytest

from t2r.export import create_default_exporters
from t2r.research.bcz import LANG_REACH_SIZE, BCZInputGenerator, BCZModel
from t2r.train import latest_checkpoint, train_eval_model
from tests.needs import lang_reach_env


@pytest.fixture
def demos(tmp_path: Path) -> Path:
    from t2r.research.lang_env.demos import write_demos

    env = lang_reach_env()
    data = tmp_path / "lang_reach" / "1.0.0"
    write_demos(data, 3, "train", seed=0, env=env)
    write_demos(data, 3, "val", seed=1, env=env)
    env.close()
    return data


def test_train_export_and_run_as_a_policy_in_lang_env(demos: Path, tmp_path: Path) -> None:
    from t2r.research.bcz.evaluate import main as evaluate_main

    model = BCZModel(image_size=64, num_waypoints=4, mask_stop_token=True)
    model_dir = tmp_path / "model"
    metrics = train_eval_model(
        model,
        BCZInputGenerator(demos, "train", batch_size=4, seed=0),
        BCZInputGenerator(demos, "val", batch_size=16),
        max_train_steps=2,
        model_dir=model_dir,
        save_checkpoints_steps=2,
        eval_steps=None,
        create_exporters_fn=create_default_exporters,
        device="cpu",
        show_progress=False,
    )
    assert {"loss", "mean_first_xyz_error", "mean_first_xyz_distance"} <= set(metrics)
    checkpoint = latest_checkpoint(model_dir)
    assert checkpoint is not None and checkpoint.global_step == 2
    out = tmp_path / "results.json"
    results = evaluate_main(
        [
            "--model_dir",
            str(model_dir),
            "--episodes",
            "1",
            "--execute_waypoints",
            "1",
            "--execute_waypoints",
            "4",
            "--json_out",
            str(out),
        ]
    )
    names = [
        "BC-Z (step 2, 1 waypoint/prediction)",
        "BC-Z (step 2, 4 waypoints/prediction)",
        "random",
    ]
    assert list(results) == names
    written = json.loads(out.read_text())
    assert list(written) == names
    for policy in written.values():
        assert [r["episodes"] for r in policy.values()] == [1, 1, 1]


def test_the_shipped_config_binds_the_lang_reach_size() -> None:
    from t2r.bin import gin_config

    try:
        gin_config.parse(["lang_reach_bcz.gin"], [])
        model = gin.query_parameter("train_eval_model.t2r_model").scoped_configurable_fn()
        train = gin.query_parameter("train_eval_model.input_generator_train")
        assert train.selector == "BCZInputGenerator"
        assert gin.query_parameter("train_eval_model.create_exporters_fn") is not None
    finally:
        gin.clear_config()
    assert isinstance(model, BCZModel)
    assert model.image_size == (LANG_REACH_SIZE["image_size"],) * 2
    assert model.num_waypoints == LANG_REACH_SIZE["num_waypoints"]
    reference = BCZModel(**LANG_REACH_SIZE)
    assert sum(p.numel() for p in model.parameters()) == sum(
        p.numel() for p in reference.parameters()
    )
