"""robosuite for a test: imported the way t2r imports it (quiet), or skip_or_fail."""

from __future__ import annotations

from types import ModuleType

from tests.needs import skip_or_fail


def needs_robosuite() -> ModuleType:
    """`t2r.robomimic.envs.import_robosuite()`, or skip (fail under CI) without it."""
    from t2r.robomimic.envs import import_robosuite

    try:
        return import_robosuite()
    except ImportError as error:
        skip_or_fail(f"cannot import robosuite: {error}")
