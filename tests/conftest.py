"""Shared test set-up: where the real-data fixtures live (see tests/needs.py)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.needs import needs_fixture

# Record generators left to choose their DataLoader workers start one per CPU when
# they decode images (t2r.data.input_generators.auto_num_workers). The suite runs
# them in-process unless a test asks for workers (tests/data/test_auto_workers.py
# unsets this): fewer forks on a shared machine, the orders the tests were written
# for. Set T2R_NUM_WORKERS=auto to run the suite with the automatic choice.
os.environ.setdefault("T2R_NUM_WORKERS", "0")


@pytest.fixture
def fixtures_dir() -> Path:
    """The fixtures directory. Skips when absent, except under CI, where it fails:
    CI always has shared/ beside the clone, so a miss there is a real problem."""
    return needs_fixture()
