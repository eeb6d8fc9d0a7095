"""Shared test set-up: where the real-data fixtures live (see tests/needs.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.needs import needs_fixture


@pytest.fixture
def fixtures_dir() -> Path:
    """The fixtures directory. Skips when absent, except under CI, where it fails:
    CI always has shared/ beside the clone, so a miss there is a real problem."""
    return needs_fixture()
