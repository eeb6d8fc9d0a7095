from __future__ import annotations

from pathlib import Path

import pytest

from tests.needs import needs_fixture


@pytest.fixture
def pose_env_tfrecord() -> Path:
    return needs_fixture("pose_env_test_data.tfrecord")
