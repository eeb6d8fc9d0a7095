from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def pose_env_tfrecord(fixtures_dir: Path) -> Path:
    path = fixtures_dir / "pose_env_test_data.tfrecord"
    if not path.is_file():
        pytest.skip(f"fixture {path} not found")
    return path
