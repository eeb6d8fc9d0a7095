"""The calibration tool: seeded success counts and their intervals."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.needs import grasp_env, needs_module

calibrate = needs_module("t2r.research.grasp_env.calibrate")


def test_wilson_interval() -> None:
    low, high = calibrate.wilson_interval(10, 100)
    assert low == pytest.approx(0.0552, abs=1e-3) and high == pytest.approx(0.1744, abs=1e-3)
    assert calibrate.wilson_interval(0, 20)[0] == 0.0
    assert calibrate.wilson_interval(20, 20)[1] == 1.0
    with pytest.raises(ValueError, match="trials must be positive"):
        calibrate.wilson_interval(0, 0)


def test_success_rate_is_seeded(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    grasp_env(seed=0).close()  # skips without a renderer
    first = calibrate.success_rate("scripted", "train", episodes=3, seed=5)
    assert first == calibrate.success_rate("scripted", "train", episodes=3, seed=5)
    assert first.episodes == 3 and 0 <= first.successes <= 3
    assert first.low <= first.rate <= first.high
    rows = calibrate.main(
        ["--episodes", "2", "--policies", "random", "--object_sets", "test",
         "--json", str(tmp_path / "rates.json")]
    )  # fmt: skip
    assert [(r.policy, r.object_set, r.episodes) for r in rows] == [("random", "test", 2)]
    assert "| random" in capsys.readouterr().out
    saved = json.loads((tmp_path / "rates.json").read_text())
    assert saved[0]["policy"] == "random" and saved[0]["episodes"] == 2
    with pytest.raises(ValueError, match="calibrate: policy must be one of"):
        calibrate.success_rate("greedy", episodes=1)
