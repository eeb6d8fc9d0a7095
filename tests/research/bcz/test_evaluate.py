"""`t2r.research.bcz.evaluate.main` closes the environment whatever happens."""

from __future__ import annotations

from typing import Any

import pytest

from tests.needs import needs_module


class _Env:
    step_size = 0.05

    def __init__(self, **kwargs: Any) -> None:
        self.closed = False
        _Env.made.append(self)

    def close(self) -> None:
        self.closed = True

    made: list[_Env] = []


class _Predictor:
    global_step = 3

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def restore(self) -> bool:
        return True


def test_the_env_is_closed_when_evaluation_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    evaluate = needs_module("t2r.research.bcz.evaluate")

    def failing_evaluation(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("the policy failed")

    _Env.made.clear()
    monkeypatch.setattr(evaluate, "LangReachEnv", _Env)
    monkeypatch.setattr(evaluate, "ExportedModelPredictor", _Predictor)
    monkeypatch.setattr(evaluate, "evaluate_policy", failing_evaluation)
    with pytest.raises(RuntimeError, match="the policy failed"):
        evaluate.main(["--model_dir", "unused"])
    assert len(_Env.made) == 1 and _Env.made[0].closed
