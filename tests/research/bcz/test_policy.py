"""BCZPolicy: waypoints -> moves, closed loop and open-loop chunks."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from t2r.research.bcz import BCZPolicy, waypoint_moves
from t2r.research.lang_env.features import EMBEDDING, IMAGE


def test_waypoint_moves_are_clipped_differences() -> None:
    waypoints = np.array([[0.05, 0.0], [0.07, -0.05], [0.2, -0.05]], np.float32)
    np.testing.assert_allclose(
        waypoint_moves(waypoints, 3, 0.05), [[1.0, 0.0], [0.4, -1.0], [1.0, 0.0]], atol=1e-6
    )
    np.testing.assert_allclose(waypoint_moves(waypoints, 1, 0.1), [[0.5, 0.0]], atol=1e-6)
    with pytest.raises(ValueError, match=r"count must be in 1..3, got 4"):
        waypoint_moves(waypoints, 4, 0.05)


class FakePredictor:
    """Returns waypoints (i + 1) * 0.01 * (k + 1) in x for its i-th call."""

    def __init__(self, inputs: tuple[str, ...] = (IMAGE, EMBEDDING)) -> None:
        self.inputs: list[dict[str, Any]] = []
        self.feature_keys = inputs

    def get_feature_specification(self) -> dict[str, Any]:
        return {key: None for key in self.feature_keys}

    def predict(self, features: dict[str, Any]) -> dict[str, np.ndarray]:
        self.inputs.append(features)
        scale = 0.01 * len(self.inputs)
        k = np.arange(1, 5, dtype=np.float32)
        return {"xyz_residual": np.stack([scale * k, 0 * k], -1)[None]}


def _observation(step: int) -> dict[str, Any]:
    return {
        "image": np.full((8, 8, 3), step, np.uint8),
        "natural_language_embedding": np.ones(4, np.float32),
    }


@pytest.mark.parametrize("chunk", [1, 2, 4])
def test_the_policy_predicts_every_chunk_and_executes_its_moves(chunk: int) -> None:
    predictor = FakePredictor()
    policy = BCZPolicy(predictor, step_size=0.05, execute_waypoints=chunk)  # type: ignore[arg-type]
    actions = [policy(_observation(t)) for t in range(4)]
    assert len(predictor.inputs) == 4 // chunk == policy.predictions
    # Each prediction is made from the frame of the step it happens at.
    assert [int(f["observation/image"][0, 0, 0, 0]) for f in predictor.inputs] == list(
        range(0, 4, chunk)
    )
    assert predictor.inputs[0]["observation/image"].shape == (1, 8, 8, 3)
    for t, action in enumerate(actions):
        call = t // chunk + 1  # waypoints of call i step by 0.01 * i: a move of 0.2 * i
        np.testing.assert_allclose(action, [0.2 * call, 0.0, 0.0], atol=1e-6)
        assert action.dtype == np.float32
    policy.reset()  # a new episode starts with a prediction
    policy(_observation(9))
    assert int(predictor.inputs[-1]["observation/image"][0, 0, 0, 0]) == 9


def test_an_unconditioned_export_gets_the_image_only() -> None:
    predictor = FakePredictor(inputs=(IMAGE,))
    BCZPolicy(predictor)(_observation(0))  # type: ignore[arg-type]
    assert list(predictor.inputs[0]) == [IMAGE]
    conditioned = FakePredictor()
    BCZPolicy(conditioned)(_observation(0))  # type: ignore[arg-type]
    assert sorted(conditioned.inputs[0]) == sorted([IMAGE, EMBEDDING])


def test_another_task_embedding_is_fed_where_the_export_reads_it() -> None:
    predictor = FakePredictor(inputs=(IMAGE, "demo_embedding"))
    policy = BCZPolicy(
        predictor,  # type: ignore[arg-type]
        embedding_key="demo_embedding",
        observation_key="demo_embedding",
    )
    policy({**_observation(0), "demo_embedding": np.full(4, 2.0)})
    assert sorted(predictor.inputs[0]) == sorted([IMAGE, "demo_embedding"])
    assert predictor.inputs[0]["demo_embedding"].dtype == np.float32
    np.testing.assert_array_equal(predictor.inputs[0]["demo_embedding"], np.full((1, 4), 2.0))


def test_a_missing_output_is_named() -> None:
    policy = BCZPolicy(FakePredictor(), output_key="joints_residual")  # type: ignore[arg-type]
    with pytest.raises(KeyError, match="no output 'joints_residual'; it has \\['xyz_residual'\\]"):
        policy(_observation(0))
