"""collect_eval_loop: new global steps once each, persisted; continuous pick-up of exports."""

from __future__ import annotations

import json
import threading
import time

import pytest

from t2r.collect import CollectEvalState, collect_eval_loop, run_env
from t2r.train import read_metrics
from tests.needs import needs_module

from .toy import ConstantPolicy, CountingEnv


class SteppingPolicy(ConstantPolicy):
    """`restore()` moves to the next global step of `steps` (then stays at the last)."""

    def __init__(self, steps: list[int]) -> None:
        super().__init__()
        self.steps = list(steps)
        self.global_step = -1

    def restore(self) -> bool:
        self.restores += 1
        if self.steps:
            self.global_step = self.steps.pop(0)
        return True


def _recording_run_fn(calls: list[dict]):
    def run_agent_fn(env, **kwargs):
        calls.append(kwargs)
        return run_env(env, show_progress=False, **kwargs)

    return run_agent_fn


def test_one_round_collects_evaluates_and_persists(tmp_path):
    calls: list[dict] = []
    policy = ConstantPolicy(value=1.0, global_step=3)
    handled = collect_eval_loop(
        CountingEnv(),
        CountingEnv(),
        policy_class=lambda: policy,
        num_collect=4,
        num_eval=2,
        run_agent_fn=_recording_run_fn(calls),
        root_dir=tmp_path,
        task=1,
    )
    assert list(handled) == [3]
    assert handled[3]["collect"].num_episodes == 4 and handled[3]["eval"].num_episodes == 2
    assert [(c["tag"], c["num_episodes"], c["root_dir"], c["task"]) for c in calls] == [
        ("collect", 4, str(tmp_path / "policy_collect"), 1),
        ("eval", 2, str(tmp_path / "eval"), 1),
    ]
    assert all(c["global_step"] == 3 for c in calls) and policy.restores == 1
    # The eval reward per global step: TensorBoard + JSON lines.
    (summary,) = read_metrics(tmp_path / "eval" / "live_eval_1")
    assert summary["step"] == 3 and summary["eval/episode_reward"] == -1.0
    state = json.loads((tmp_path / "collect_eval_state_t1.json").read_text())
    assert state["handled"]["3"]["eval"] == -1.0 and state["handled"]["3"]["collect"] == -1.0

    # A restart finds step 3 handled and does nothing.
    calls.clear()
    again = collect_eval_loop(
        CountingEnv(),
        CountingEnv(),
        lambda: ConstantPolicy(global_step=3),
        run_agent_fn=_recording_run_fn(calls),
        root_dir=tmp_path,
        task=1,
    )
    assert again == {} and calls == []
    assert CollectEvalState(tmp_path, task=1).last_global_step == 3
    assert CollectEvalState(tmp_path, task=0).last_global_step == -1  # other collectors


def test_continuous_skips_old_and_early_steps_and_stops_at_max_steps(tmp_path):
    calls: list[dict] = []
    policy = SteppingPolicy([-1, 0, 5, 5, 10, 10, 20, 30])
    handled = collect_eval_loop(
        None,
        CountingEnv(),
        policy_class=policy,  # a policy instance is used as is
        num_eval=1,
        run_agent_fn=_recording_run_fn(calls),
        root_dir=tmp_path,
        continuous=True,
        min_collect_eval_step=5,
        max_steps=20,
        poll_interval_secs=0.0,
    )
    assert list(handled) == [5, 10, 20]
    assert [c["global_step"] for c in calls] == [5, 10, 20]
    # Restarted, the loop knows it reached max_steps.
    assert (
        collect_eval_loop(
            None,
            CountingEnv(),
            SteppingPolicy([30]),
            root_dir=tmp_path,
            continuous=True,
            max_steps=20,
        )
        == {}
    )


def test_continuous_restart_resumes_after_the_last_handled_step(tmp_path):
    first = collect_eval_loop(
        None, CountingEnv(), SteppingPolicy([1]), num_eval=1, root_dir=tmp_path
    )
    assert list(first) == [1]
    policy = SteppingPolicy([1, 1, 2])
    second = collect_eval_loop(
        None,
        CountingEnv(),
        policy,
        num_eval=1,
        root_dir=tmp_path,
        continuous=True,
        max_steps=2,
        poll_interval_secs=0.0,
    )
    assert list(second) == [2]


def test_timeout_stops_waiting(tmp_path):
    start = time.monotonic()
    handled = collect_eval_loop(
        None,
        CountingEnv(),
        SteppingPolicy([-1]),
        root_dir=tmp_path,
        poll_interval_secs=0.05,
        timeout_secs=0.3,
    )
    assert handled == {} and time.monotonic() - start < 5


def test_continuous_loop_picks_up_a_newer_export(tmp_path):
    needs_module("mujoco")
    import torch

    from t2r.export import export_saved_model
    from t2r.policies import RegressionPolicy
    from t2r.predictors import ExportedModelPredictor
    from t2r.research.pose_env import PoseEnvRegressionModel, PoseToyEnv

    torch.manual_seed(0)
    model = PoseEnvRegressionModel().eval()
    export_dir = tmp_path / "export"
    export_saved_model(model, export_dir, global_step=1)
    root = tmp_path / "collect_eval"
    result: dict = {}

    def loop() -> None:
        # The env renders in the thread that made it (its GL context is bound there).
        env = PoseToyEnv(seed=0)
        result["handled"] = collect_eval_loop(
            None,
            env,
            lambda: RegressionPolicy(model, ExportedModelPredictor(export_dir, timeout=5)),
            num_eval=3,
            run_agent_fn=lambda e, **kw: run_env(e, show_progress=False, **kw),
            root_dir=root,
            continuous=True,
            max_steps=2,
            poll_interval_secs=0.05,
            timeout_secs=60,
        )
        env.close()

    thread = threading.Thread(target=loop)
    thread.start()
    deadline = time.monotonic() + 60
    while CollectEvalState(root).last_global_step < 1 and time.monotonic() < deadline:
        assert thread.is_alive(), "the collect-eval loop died"
        time.sleep(0.05)
    assert CollectEvalState(root).last_global_step == 1
    with torch.no_grad():  # a different model: v2's actions differ from v1's
        for parameter in model.parameters():
            parameter.add_(0.1)
    export_saved_model(model, export_dir, global_step=2)
    thread.join(timeout=60)
    assert not thread.is_alive()
    assert list(result["handled"]) == [1, 2]
    steps = [r["step"] for r in read_metrics(root / "eval" / "live_eval_0")]
    assert steps == [1, 2]
    first, second = (result["handled"][s]["eval"].episode_rewards for s in (1, 2))
    assert first != second


def test_records_pattern_is_where_the_loop_writes(tmp_path):
    from t2r.collect import records_pattern

    assert records_pattern(tmp_path) == str(
        tmp_path / "policy_collect" / "policy_collect" / "*.tfrecord"
    )
    assert records_pattern(tmp_path, "eval") == str(
        tmp_path / "eval" / "policy_eval" / "*.tfrecord"
    )
    with pytest.raises(ValueError, match="tag must be one of"):
        records_pattern(tmp_path, "train")
