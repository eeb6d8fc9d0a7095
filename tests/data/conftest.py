from __future__ import annotations

from pathlib import Path

import pytest

FIXTURES_DIR = Path(__file__).resolve().parents[2] / ".." / "shared" / "fixtures"


@pytest.fixture
def fixtures_dir() -> Path:
    """``../shared/fixtures`` next to the checkout; skips the test if it is absent."""
    if not FIXTURES_DIR.is_dir():
        pytest.skip(f"shared fixtures directory not found at {FIXTURES_DIR.resolve()}")
    return FIXTURES_DIR.resolve()


@pytest.fixture
def pose_env_tfrecord(fixtures_dir: Path) -> Path:
    path = fixtures_dir / "pose_env_test_data.tfrecord"
    if not path.is_file():
        pytest.skip(f"fixture {path} not found")
    return path
