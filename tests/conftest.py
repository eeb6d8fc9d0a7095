"""Shared test set-up: where the real-data fixtures live."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# ../shared/fixtures beside the checkout, or T2R_FIXTURES_DIR.
FIXTURES_DIR = Path(
    os.environ.get(
        "T2R_FIXTURES_DIR", Path(__file__).resolve().parents[1] / ".." / "shared" / "fixtures"
    )
).resolve()


@pytest.fixture
def fixtures_dir() -> Path:
    """The fixtures directory. Skips when absent, except under CI, where it fails:
    CI always has shared/ beside the clone, so a miss there is a real problem."""
    if not FIXTURES_DIR.is_dir():
        message = f"shared fixtures directory not found at {FIXTURES_DIR} (set T2R_FIXTURES_DIR)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return FIXTURES_DIR
