"""`scene.sample_apart`: the block placement LangReachEnv and WatchTryLearnEnv share."""

from __future__ import annotations

import numpy as np
import pytest

from t2r.research.lang_env.scene import BLOCK_HALF, WORKSPACE_HALF, sample_apart


def test_positions_fit_the_workspace_and_keep_their_distance() -> None:
    rng = np.random.default_rng(0)
    for _ in range(20):
        points = sample_apart(rng, 5, 0.12, "test")
        assert points.shape == (5, 2)
        assert np.abs(points).max() <= WORKSPACE_HALF - BLOCK_HALF
        gaps = np.linalg.norm(points[:, None] - points[None], axis=-1)
        assert gaps[np.triu_indices(5, 1)].min() >= 0.12


def test_a_separation_that_cannot_fit_names_the_owner() -> None:
    with pytest.raises(RuntimeError, match=r"MyEnv: could not place 3 objects 1\.0 apart"):
        sample_apart(np.random.default_rng(0), 3, 1.0, "MyEnv")
