"""Grasp2VecModel: outputs, retrieval, and learning the arithmetic on toy scenes."""

from __future__ import annotations

import torch

from t2r.modes import ModeKeys
from t2r.research.grasp2vec import EmbeddingTower, Grasp2VecModel, retrieval_scores


def _tiny() -> Grasp2VecModel:
    return Grasp2VecModel(scene_size=32, goal_size=32, tower_kwargs={"num_filters": 4})


def test_outputs_and_specs():
    model = _tiny().eval()
    spec = model.get_feature_specification_for_packing(ModeKeys.TRAIN)
    assert {s.name for s in spec.values()} == {"image", "postgrasp_image", "present_image"}
    assert all(s.dtype == torch.uint8 and s.data_format == "jpeg" for s in spec.values())
    images = {k: torch.randint(0, 255, (3, 32, 32, 3), dtype=torch.uint8) for k in spec}
    with torch.no_grad():
        out = model.model_fn(images, {}, ModeKeys.EVAL)
    assert out.inference_outputs["pre_vector"].shape == (3, 32)
    assert out.inference_outputs["goal_spatial"].shape[:2] == (3, 32)
    assert all((out.inference_outputs[k] >= 0).all() for k in ("pre_vector", "goal_vector"))
    assert 0 <= float(out.eval_metrics["batch_retrieval_accuracy"]) <= 1


def test_retrieval_scores():
    pre = torch.tensor([[2.0, 1.0]])
    post = torch.tensor([[0.0, 1.0]])  # query (2, 0)
    goals = torch.tensor([[[0.0, 1.0], [1.0, 0.0]]])
    torch.testing.assert_close(retrieval_scores(pre, post, goals), torch.tensor([[0.0, 2.0]]))
    torch.testing.assert_close(retrieval_scores(pre, post, goals[0]), torch.tensor([[0.0, 2.0]]))


def test_the_tower_is_non_negative_and_checks_its_input():
    vector, spatial = EmbeddingTower(num_filters=4)(torch.rand(2, 3, 32, 32))
    assert vector.shape == (2, 32) and (spatial >= 0).all()
    torch.testing.assert_close(vector, spatial.mean(dim=(2, 3)))
    try:
        EmbeddingTower(num_filters=4)(torch.rand(2, 32, 32, 3))
    except ValueError as error:
        assert "EmbeddingTower: expected (B, 3, H, W)" in str(error)
    else:
        raise AssertionError("no error")
