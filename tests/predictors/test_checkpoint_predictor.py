"""CheckpointPredictor: the newest training checkpoint, no export."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from t2r.predictors import CheckpointPredictor
from t2r.specs import SpecError
from t2r.train import latest_checkpoint, seed_everything, train_eval_model
from tests.export.models import TinyModel
from tests.train.models import SeededInput


def _train(model_dir, steps):
    seed_everything(0)
    model = TinyModel()
    train_eval_model(
        model,
        SeededInput(),
        max_train_steps=steps,
        model_dir=model_dir,
        save_checkpoints_steps=2,
        show_progress=False,
    )
    return model.eval()


def _eager(model, x):
    with torch.no_grad():
        return (
            model.model_fn({"x": torch.from_numpy(x)}, None, "infer")
            .export_outputs["inference_output"]
            .numpy()
        )


def test_predicts_with_the_newest_checkpoint_and_reloads(tmp_path):
    trained = _train(tmp_path, 2)
    predictor = CheckpointPredictor(TinyModel(), tmp_path, timeout=0)
    with pytest.raises(ValueError, match="not yet been successfully restored"):
        predictor.predict({"x": np.zeros(3, np.float32)})
    assert predictor.global_step == -1
    assert predictor.restore()
    x = np.random.default_rng(0).random((5, 3), dtype=np.float32)
    np.testing.assert_allclose(
        predictor.predict({"x": x})["inference_output"], _eager(trained, x), atol=1e-6
    )
    assert predictor.global_step == 2 and predictor.model_version == 2
    assert predictor.model_path == str(latest_checkpoint(tmp_path).path)
    assert predictor.predict({"x": x[0]})["inference_output"].shape == (1, 2)
    with pytest.raises(SpecError, match=r"Shape mismatch at 'x' \(spec name 'x'\)"):
        predictor.predict({"x": np.zeros((2, 4), np.float32)})

    trained = _train(tmp_path, 4)  # training goes on
    assert predictor.restore() and predictor.global_step == 4
    np.testing.assert_allclose(
        predictor.predict({"x": x})["inference_output"], _eager(trained, x), atol=1e-6
    )
    specific = CheckpointPredictor(TinyModel(), latest_checkpoint(tmp_path).path, timeout=0)
    assert specific.restore() and specific.global_step == 4


def test_timeout_and_random_init(tmp_path):
    torch.manual_seed(0)
    model = TinyModel()
    initial = _eager(model, np.ones((1, 3), np.float32))
    predictor = CheckpointPredictor(model, tmp_path, timeout=0.2, poll_interval_secs=0.05)
    assert predictor.restore() is False
    predictor.init_randomly()
    assert predictor.global_step == 0 and predictor.model_path == ""
    np.testing.assert_allclose(
        predictor.predict({"x": np.ones(3, np.float32)})["inference_output"], initial
    )
    with pytest.raises(ValueError, match="no checkpoint_dir"):
        CheckpointPredictor(TinyModel()).restore()
