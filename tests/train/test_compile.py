"""compile=True: trains, exports a program equal to the eager model, and leaves the model eager."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from t2r.export import create_default_exporters
from t2r.modes import ModeKeys
from t2r.predictors import ExportedModelPredictor
from t2r.train import seed_everything, train_eval_model

from .models import SeededInput, TinyRegression


@pytest.mark.slow
def test_compiled_training_exports_and_restores_the_eager_network(tmp_path):
    seed_everything(0)
    model = TinyRegression(dropout=0.0)
    assert "inference_network_fn" not in vars(model)
    train_eval_model(
        model,
        SeededInput(batch_size=8),
        input_generator_eval=SeededInput(batch_size=8),
        max_train_steps=3,
        model_dir=tmp_path,
        save_checkpoints_steps=3,
        eval_steps=1,
        create_exporters_fn=create_default_exporters,
        device="cpu",
        compile=True,
        show_progress=False,
    )
    # The compiled wrapper was the training run's, not the model's for good.
    assert "inference_network_fn" not in vars(model)
    assert model.inference_network_fn.__func__ is type(model).inference_network_fn
    predictor = ExportedModelPredictor(tmp_path / "export" / "latest_exporter_numpy")
    assert predictor.restore()
    assert predictor.global_step == 3
    x = np.random.default_rng(0).random((4, 3), dtype=np.float32)
    exported = predictor.predict({"x": x})["inference_output"]
    model.eval()
    with torch.no_grad():
        eager = model.model_fn({"x": torch.from_numpy(x)}, None, ModeKeys.PREDICT)
    np.testing.assert_allclose(
        exported, eager.export_outputs["inference_output"].numpy(), rtol=1e-5, atol=1e-6
    )
