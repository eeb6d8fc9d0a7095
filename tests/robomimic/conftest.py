"""Fixtures shared by the robomimic tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.robomimic.robosuite_needs import needs_robosuite


@pytest.fixture(scope="session")
def lift_demos(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any]:
    """Three scripted robosuite Lift demos (seed 1) in a robomimic HDF5 file, and the
    collection's stats. Collected once per session: the tests only read the file."""
    needs_robosuite()
    from t2r.robomimic.lift_demos import collect_lift_demos

    path = tmp_path_factory.mktemp("lift_demos") / "lift.hdf5"
    return path, collect_lift_demos(3, path, seed=1, show_progress=False)
