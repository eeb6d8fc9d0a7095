"""MAMLRegressionPolicy: the exported MAML program adapts at deployment like the live model."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from t2r.export import export_saved_model
from t2r.meta_learning.meta_policies import MAMLRegressionPolicy
from t2r.modes import ModeKeys
from t2r.predictors import ExportedModelPredictor
from tests.meta_learning.models import MAMLLinearModel


def _episode(rng: np.random.Generator, shift: float) -> list[tuple]:
    """Three one-step transitions of a task whose target is x[:2] + shift."""
    out = []
    for _ in range(3):
        x = rng.normal(size=3).astype(np.float32)
        out.append((x, None, 0.0, x, True, {"target": x[:2] + shift}))
    return out


def test_exported_policy_adapts_from_condition_data_like_the_live_model(tmp_path) -> None:
    torch.manual_seed(0)
    model = MAMLLinearModel().eval()
    export_saved_model(model, tmp_path, global_step=1)
    predictor = ExportedModelPredictor(tmp_path)
    assert predictor.restore()
    policy = MAMLRegressionPolicy(model, predictor)
    with pytest.raises(ValueError, match="adapt"):
        policy.select_action(np.zeros(3, np.float32))
    rng = np.random.default_rng(0)
    query = rng.normal(size=3).astype(np.float32)
    actions = []
    for shift in (0.0, 2.0):
        policy.reset_task()
        episode = _episode(rng, shift)
        policy.adapt([episode])
        action = policy.select_action(query)
        features = {k: torch.from_numpy(v) for k, v in policy.features(query).items()}
        with torch.no_grad():
            live = model.model_fn(features, None, ModeKeys.PREDICT).export_outputs
        np.testing.assert_allclose(action, live["inference_output"][0, 0].numpy(), atol=1e-5)
        with torch.inference_mode():  # as CheckpointPredictor runs the live model
            live_inference = model.model_fn(features, None, ModeKeys.PREDICT).export_outputs
        np.testing.assert_allclose(
            action, live_inference["inference_output"][0, 0].numpy(), atol=1e-5
        )
        # By hand: one SGD step at the learned rates' initial 0.1 on the 3 samples.
        w = model.base_model.linear.weight.detach().numpy()
        b = model.base_model.linear.bias.detach().numpy()
        x = np.stack([t[0] for t in episode])
        y = np.stack([t[5]["target"] for t in episode])
        residual = x @ w.T + b - y
        scale = 2.0 / residual.size
        w1, b1 = w - 0.1 * scale * residual.T @ x, b - 0.1 * scale * residual.sum(0)
        np.testing.assert_allclose(action, w1 @ query + b1, atol=1e-5)
        actions.append(action)
    assert not np.allclose(actions[0], actions[1])  # the condition data moved the action
