"""What a test needs from the machine: skipped where it is absent, a failure under CI.

CI (``CI=true``) always has MuJoCo with a headless renderer and the shared
fixtures beside the clone: there a missing one is a broken CI, not a reason to
skip. Every such skip in the suite goes through here (``tests/test_skips.py``
checks that no test module skips on its own).
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from types import ModuleType
from typing import Any, NoReturn

import pytest

# ../shared/fixtures beside the checkout, or T2R_FIXTURES_DIR.
FIXTURES_DIR = Path(
    os.environ.get(
        "T2R_FIXTURES_DIR", Path(__file__).resolve().parents[1] / ".." / "shared" / "fixtures"
    )
).resolve()


def under_ci() -> bool:
    """True when ``CI`` is set to anything but '', '0' or 'false'."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def skip_or_fail(reason: str) -> NoReturn:
    """Skips with `reason` (also at module level), or fails under CI."""
    if under_ci():
        pytest.fail(f"{reason} (CI=true: this must be present, so it fails rather than skips)")
    pytest.skip(reason, allow_module_level=True)


def needs_module(name: str) -> ModuleType:
    """`importlib.import_module(name)`, or skip_or_fail naming the ImportError."""
    try:
        return importlib.import_module(name)
    except ImportError as error:
        skip_or_fail(f"cannot import {name}: {error}")


def needs_fixture(name: str = "") -> Path:
    """The shared fixture `name`, a file or a directory (the fixtures directory for ''),
    or skip_or_fail."""
    if not FIXTURES_DIR.is_dir():
        skip_or_fail(
            f"shared fixtures directory not found at {FIXTURES_DIR} (set T2R_FIXTURES_DIR)"
        )
    path = FIXTURES_DIR / name
    if name and not path.exists():
        skip_or_fail(f"fixture {path} not found")
    return path


def pose_toy_env(**kwargs: Any) -> Any:
    """A `PoseToyEnv(**kwargs)`, or skip_or_fail without MuJoCo or an offscreen renderer."""
    pose_env = needs_module("t2r.research.pose_env.pose_env")
    try:
        return pose_env.PoseToyEnv(**kwargs)
    except pose_env.RenderBackendError as error:  # no EGL / OSMesa on this machine
        skip_or_fail(str(error))


def lang_reach_env(**kwargs: Any) -> Any:
    """A `LangReachEnv(**kwargs)`, or skip_or_fail without MuJoCo or an offscreen renderer."""
    lang_env = needs_module("t2r.research.lang_env.lang_env")
    pose_env = needs_module("t2r.research.pose_env.pose_env")
    try:
        return lang_env.LangReachEnv(**kwargs)
    except pose_env.RenderBackendError as error:
        skip_or_fail(str(error))


def grasp_env(**kwargs: Any) -> Any:
    """A `GraspEnv(**kwargs)`, or skip_or_fail without MuJoCo or an offscreen renderer."""
    module = needs_module("t2r.research.grasp_env.grasp_env")
    pose_env = needs_module("t2r.research.pose_env.pose_env")
    try:
        return module.GraspEnv(**kwargs)
    except pose_env.RenderBackendError as error:
        skip_or_fail(str(error))


def wtl_env(**kwargs: Any) -> Any:
    """A `WatchTryLearnEnv(**kwargs)`, or skip_or_fail without MuJoCo (it renders only
    on request, so no offscreen renderer is needed)."""
    module = needs_module("t2r.research.wtl.wtl_env")
    return module.WatchTryLearnEnv(**kwargs)
