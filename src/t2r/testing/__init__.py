"""Test support for t2r models: random-data training and golden values."""

from __future__ import annotations

from t2r.testing.golden import REGENERATE_ENV, assert_golden_values, record_golden_values
from t2r.testing.model_fixture import T2RModelFixture, find_model_classes

__all__ = [
    "REGENERATE_ENV",
    "T2RModelFixture",
    "assert_golden_values",
    "find_model_classes",
    "record_golden_values",
]
