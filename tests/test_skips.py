"""The skip rule: a missing MuJoCo renderer or fixture skips locally and fails under CI."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests import needs

TESTS = Path(__file__).resolve().parent
# Skips that are about the test's own situation, not the machine's equipment.
ALLOWED = {
    ("data/test_input_generators.py", "a process group is already initialized"),
    ("test_atomic.py", "no atomic directory exchange on this filesystem"),
}
_SKIP = re.compile(r"pytest\.skip\(|importorskip\(|pytest\.mark\.skip\(")


def test_no_test_module_skips_on_its_own():
    found = []
    for path in sorted(TESTS.rglob("*.py")):
        relative = path.relative_to(TESTS).as_posix()
        if relative == "needs.py":
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if _SKIP.search(line) and not any(
                relative == file and reason in line for file, reason in ALLOWED
            ):
                found.append(f"tests/{relative}:{number}: {line.strip()}")
    assert not found, (
        "Skip through tests/needs.py (needs_module, needs_fixture, pose_toy_env, "
        "skip_or_fail) so that CI=true fails instead:\n" + "\n".join(found)
    )


@pytest.mark.parametrize("value", ["true", "1", "True"])
def test_under_ci_a_missing_module_or_fixture_fails(monkeypatch, value):
    monkeypatch.setenv("CI", value)
    with pytest.raises(pytest.fail.Exception, match="CI=true"):
        needs.needs_module("t2r_no_such_module")
    with pytest.raises(pytest.fail.Exception, match="fixture .*no_such_fixture.* not found"):
        needs.needs_fixture("no_such_fixture.tfrecord")


@pytest.mark.parametrize("value", ["", "0", "false"])
def test_elsewhere_it_skips(monkeypatch, value):
    monkeypatch.setenv("CI", value)
    with pytest.raises(pytest.skip.Exception, match="cannot import t2r_no_such_module"):
        needs.needs_module("t2r_no_such_module")


def test_a_missing_renderer_fails_under_ci(monkeypatch):
    pose_env = needs.needs_module("t2r.research.pose_env.pose_env")

    def no_renderer(**kwargs):
        raise pose_env.RenderBackendError("no EGL, no OSMesa")

    monkeypatch.setattr(pose_env, "PoseToyEnv", no_renderer)
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="no EGL, no OSMesa"):
        needs.pose_toy_env(seed=0)
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception, match="no EGL, no OSMesa"):
        needs.pose_toy_env(seed=0)
