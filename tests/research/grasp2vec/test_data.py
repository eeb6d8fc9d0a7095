"""Grasp2Vec triplets from scripted grasps in the grasp env."""

from __future__ import annotations

import numpy as np
import pytest

from tests.needs import needs_module

data = needs_module("t2r.research.grasp2vec.data")


@pytest.fixture(scope="module")
def triplets():
    return data.collect_grasp_triplets(2, num_objects=3, image_size=32, seed=0)


def test_triplets_from_successful_grasps(triplets):
    assert len(triplets) == 2
    assert triplets.pregrasp.shape == (2, 32, 32, 3) and triplets.pregrasp.dtype == np.uint8
    assert triplets.objects.shape == (2, 3, 32, 32, 3)
    assert triplets.grasped.dtype == np.int64 and np.all(
        (0 <= triplets.grasped) & (triplets.grasped < 3)
    )
    for i in range(2):
        # The grasp changed the scene; the object images differ from one another.
        assert not np.array_equal(triplets.pregrasp[i], triplets.postgrasp[i])
        assert len({triplets.objects[i, j].tobytes() for j in range(3)}) == 3
    at_rest = triplets.goal_images("at_rest")
    np.testing.assert_array_equal(at_rest[0], triplets.objects[0, triplets.grasped[0]])
    assert triplets.goal_images("lifted") is triplets.lifted
    with pytest.raises(ValueError, match="kind must be one of"):
        triplets.goal_images("held")


def test_collection_is_deterministic_and_saves_without_pickle(triplets, tmp_path):
    again = data.collect_grasp_triplets(1, num_objects=3, image_size=32, seed=0)
    np.testing.assert_array_equal(again.pregrasp[0], triplets.pregrasp[0])
    np.testing.assert_array_equal(again.postgrasp[0], triplets.postgrasp[0])
    path = tmp_path / "triplets.npz"
    triplets.save(path)
    loaded = data.GraspTriplets.load(path)
    for name in ("pregrasp", "postgrasp", "lifted", "objects", "grasped", "seeds"):
        np.testing.assert_array_equal(getattr(loaded, name), getattr(triplets, name))
    assert [p.name for p in tmp_path.iterdir()] == ["triplets.npz"]
    np.savez(tmp_path / "bad.npz", pregrasp=triplets.pregrasp)
    with pytest.raises(ValueError, match="lacks arrays"):
        data.GraspTriplets.load(tmp_path / "bad.npz")


def test_the_model_fits_the_arithmetic_of_real_grasps():
    # Eight grasps: after training on them, each grasp's own object image is the
    # nearest (by dot product) to pre - post among the eight (chance 1/8).
    import torch

    from t2r.modes import ModeKeys
    from t2r.research.grasp2vec import Grasp2VecModel

    grasps = data.collect_grasp_triplets(8, num_objects=3, image_size=32, seed=10)
    batch = {
        "pregrasp_image": torch.from_numpy(grasps.pregrasp),
        "postgrasp_image": torch.from_numpy(grasps.postgrasp),
        "goal_image": torch.from_numpy(grasps.goal_images("at_rest")),
    }
    torch.manual_seed(0)
    model = Grasp2VecModel(
        scene_size=32,
        goal_size=32,
        tower_kwargs={"num_filters": 8},
        create_optimizer_fn=lambda p: torch.optim.Adam(p, lr=1e-3),
    )
    optimizer = model.create_optimizer()

    def evaluate() -> tuple[float, float]:
        # Batch statistics (train mode): the running averages of a few steps lag
        # the fast-moving weights; the benchmark evaluates in eval mode after more.
        with torch.no_grad():
            out = model.model_fn(batch, {}, ModeKeys.EVAL)
        return float(out.loss), float(out.eval_metrics["batch_retrieval_accuracy"])

    loss_before, _ = evaluate()
    for _ in range(15):
        model.train_step(batch, {}, optimizer)
    loss_after, accuracy = evaluate()
    assert loss_after < loss_before
    assert accuracy == 1.0, accuracy
