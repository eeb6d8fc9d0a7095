"""WTL's trial and retrial models: records -> train_eval_model -> export -> WTLPolicy
in run_meta_env, on tiny data; and the retrial policy reads the trial's reward."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from t2r.modes import ModeKeys
from t2r.research.wtl.episodes import CONDITION_SUCCESS
from t2r.research.wtl.wtl_models import WTLRetrialModel, WTLTrialModel
from t2r.train import seed_everything
from tests.needs import needs_module

needs_module("t2r.research.wtl.wtl_env")


def _tiny(cls: type[WTLTrialModel]) -> WTLTrialModel:
    return cls(embed_size=8, hidden_size=16, conv1d_layers=(8,))


def test_specs_follow_t2r_meta_layout() -> None:
    trial, retrial = WTLTrialModel(), WTLRetrialModel()
    spec = trial.get_feature_specification_for_packing(ModeKeys.PREDICT)
    assert spec["condition/features/full_state_pose"].shape == (1, 20, 22)
    assert spec["condition/features/full_state_pose"].name == "condition_features/full_state_pose"
    assert spec["inference/features/full_state_pose"].shape == (1, 20, 22)
    assert retrial.get_feature_specification_for_packing(ModeKeys.TRAIN)[
        CONDITION_SUCCESS
    ].shape == (
        2,
        20,
        1,
    )
    assert trial.get_label_specification_for_packing(ModeKeys.TRAIN)["action"].name == (
        "meta_labels/action"
    )
    with pytest.raises(NotImplementedError, match="use t2r.research.wtl.policies.WTLPolicy"):
        trial.pack_features(np.zeros(22))


def test_train_export_and_run_as_policy(tmp_path: Path) -> None:
    from t2r.collect import run_meta_env
    from t2r.research.wtl.policies import WTLPolicy
    from t2r.research.wtl.run_wtl import _predictor, collect_tasks, train_policy, write_records
    from t2r.research.wtl.scripted import WTLDemoPolicy
    from t2r.research.wtl.wtl_env import WatchTryLearnEnv

    seed_everything(0)
    tasks, rewards = collect_tasks(6, seed=1)
    assert len(tasks) == 6 and np.asarray(rewards)[:, 1].tolist() == [1.0] * 6
    exports = []
    for cls, pick in (
        (WTLTrialModel, lambda d, t, r: ([d], t)),
        (WTLRetrialModel, lambda d, t, r: ([d, t], r)),
    ):
        model = _tiny(cls)
        examples = [pick(*task) for task in tasks]
        records = write_records(tmp_path / f"{cls.__name__}.tfrecord", model, examples)
        export_dir, metrics = train_policy(
            model,
            records,
            records,
            tmp_path / cls.__name__,
            steps=1,
            batch_size=4,
            shuffle_buffer_size=6,
        )
        assert np.isfinite(metrics["loss"])
        exports.append(export_dir)

    policy = WTLPolicy(_predictor(exports[0]), _predictor(exports[1]))
    env = WatchTryLearnEnv(seed=5)
    seen: list[bool] = []
    original = policy.select_action

    def spy(state, context=None, timestep=None):  # type: ignore[no-untyped-def]
        seen.append(policy.is_retrial)
        action = original(state, context, timestep)
        assert action.shape == (2,) and np.all(np.abs(action) <= 1.0)
        return action

    policy.select_action = spy  # type: ignore[method-assign]
    result = run_meta_env(
        env,
        policy,
        demo_policy_cls=WTLDemoPolicy,
        num_tasks=2,
        num_adaptations_per_task=2,
        write_tf_summary=False,
        show_progress=False,
    )
    env.close()
    assert np.asarray(result.task_rewards).shape == (2, 2)
    # Each task: the trial policy's steps, then the retrial policy's.
    assert seen[0] is False and seen[-1] is True and seen.count(True) >= 1
    with pytest.raises(ValueError, match="adapt"):
        WTLPolicy(_predictor(exports[0])).select_action(tasks[0][1][0][0])


def test_the_retrial_policy_follows_the_trials_reward() -> None:
    """One task, its trial once rewarded and once not: fitted on the scripted agent's
    answers, the retrial model heads for the cube its trial ended at after a
    rewarded trial and for that cube's twin after a failed one. Only the trial's
    reward differs between the two inputs."""
    from t2r.research.wtl.episodes import wtl_example
    from t2r.research.wtl.run_wtl import collect_tasks
    from t2r.research.wtl.scripted import ScriptedWTLPolicy, reach_action
    from t2r.specs import TensorSpecStruct

    seed_everything(0)

    def answers_to(task: tuple) -> tuple[list, list, list]:
        demo, trial, retrial = task
        start = retrial[0][0]
        examples, targets, answers = [], [], []
        for reward in (1.0, 0.0):
            relabelled = [
                t[:2] + (reward if i == len(trial) - 1 else 0.0,) + t[3:]
                for i, t in enumerate(trial)
            ]
            agent = ScriptedWTLPolicy()
            agent.adapt([demo, relabelled])
            target = agent.target(start)
            action = reach_action(start["effector"], target, 0.05)
            # The inference episode: the retrial's first state repeated, as at deployment.
            inference = [(start, action, 0.0, start, False, {})] * 20
            examples.append(wtl_example([demo, relabelled], inference, 20))
            targets.append(target)
            answers.append(action)
        return examples, targets, answers

    # The first task whose two answers point apart (both twins can lie in one
    # clipped direction from the start).
    tasks, _ = collect_tasks(8, seed=3)
    examples, targets, answers = next(
        found for found in map(answers_to, tasks) if np.linalg.norm(found[2][0] - found[2][1]) > 1.8
    )
    assert not np.allclose(targets[0], targets[1])  # the twins
    features = {k: torch.from_numpy(np.stack([e[0][k] for e in examples])) for k in examples[0][0]}
    labels = {k: torch.from_numpy(np.stack([e[1][k] for e in examples])) for k in examples[0][1]}
    model = WTLRetrialModel(embed_size=8, hidden_size=16, conv1d_layers=(8,), learning_rate=1e-2)
    optimizer = model.create_optimizer()
    for _ in range(150):
        model.train_step(TensorSpecStruct(features), TensorSpecStruct(labels), optimizer)
    model.eval()
    with torch.no_grad():
        outputs = model.model_fn(TensorSpecStruct(features), None, ModeKeys.PREDICT)
    actions = outputs.inference_outputs["inference_output"][:, 0, 0].numpy()  # (2, 2)
    # Each action is the answer to its own trial outcome, not to the flipped one.
    for action, own, flipped in zip(actions, answers, answers[::-1]):
        assert np.linalg.norm(action - own) < 0.5 * np.linalg.norm(action - flipped), (
            action,
            own,
            flipped,
        )


@pytest.mark.parametrize("config", ["wtl_statespace_trial.gin", "wtl_statespace_retrial.gin"])
def test_the_shipped_configs_build_the_models(config: str, tmp_path: Path) -> None:
    """The gin configs bind the models and record inputs; the retrial config warm-starts
    the shared modules from a trial checkpoint (here one written by the test)."""
    import gin
    from safetensors.torch import save_file

    from t2r.bin import gin_config
    from t2r.research.wtl.wtl_models import SHARED_MODULES

    seed_everything(0)
    trial = WTLTrialModel()
    save_file(
        {k: v.contiguous() for k, v in trial.state_dict().items()},
        str(tmp_path / "model.safetensors"),
    )
    try:
        gin_config.parse([config], [f"WTLRetrialModel.warm_start_checkpoint = '{tmp_path}'"])
        model = gin.query_parameter("train_eval_model.t2r_model").scoped_configurable_fn()
        train = gin.query_parameter("train_eval_model.input_generator_train")
        assert train.selector == "DefaultRecordInputGenerator"
        assert gin.query_parameter("train_eval_model.max_train_steps") == 3000
    finally:
        gin.clear_config()
    assert isinstance(model, WTLRetrialModel if "retrial" in config else WTLTrialModel)
    if model.retrial:
        for name in SHARED_MODULES:
            for key, value in getattr(trial, name).state_dict().items():
                assert torch.equal(getattr(model, name).state_dict()[key], value), (name, key)
        assert not torch.equal(model.score[0].weight[:, :8], trial.score[0].weight[:, :8])
    with pytest.raises(ValueError, match="Cannot warm-start .frame"):
        WTLRetrialModel(hidden_size=8, warm_start_checkpoint=str(tmp_path))


def test_the_retrial_config_warm_starts_from_the_trials_newest_checkpoint(tmp_path: Path) -> None:
    """The retrial config names the trial's model_dir, not one checkpoint: it takes the
    newest there (whatever the trial's step count); an explicit checkpoint still wins."""
    import gin

    from t2r.bin import gin_config
    from t2r.train.checkpoints import TrainingState, save_checkpoint

    model_dir = tmp_path / "trial"
    trials = []
    for step in (1500, 4000):  # not the config's own 3000 steps
        seed_everything(step)
        trials.append(WTLTrialModel())
        save_checkpoint(model_dir, trials[-1], TrainingState(global_step=step))

    def retrial(bindings: list[str]) -> WTLTrialModel:
        try:
            gin_config.parse(["wtl_statespace_retrial.gin"], bindings)
            return gin.query_parameter("train_eval_model.t2r_model").scoped_configurable_fn()
        finally:
            gin.clear_config()

    def frame_of(model: WTLTrialModel) -> torch.Tensor:
        return next(iter(model.frame.state_dict().values()))

    newest = retrial([f"TRIAL_MODEL_DIR = '{model_dir}'"])
    assert torch.equal(frame_of(newest), frame_of(trials[1]))
    older = model_dir / "checkpoints" / "ckpt-000001500"
    explicit = retrial([f"WTLRetrialModel.warm_start_checkpoint = '{older}'"])
    assert torch.equal(frame_of(explicit), frame_of(trials[0]))
    assert not torch.equal(frame_of(trials[0]), frame_of(trials[1]))

    (tmp_path / "empty" / "checkpoints").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="empty.checkpoints holds no complete checkpoint"):
        WTLRetrialModel(warm_start_checkpoint=str(tmp_path / "empty"))
    with pytest.raises(FileNotFoundError, match="neither a checkpoint .* nor a model_dir"):
        WTLRetrialModel(warm_start_checkpoint=str(tmp_path / "missing"))
