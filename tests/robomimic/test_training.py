"""t2r robomimic train / eval on a tiny generated file (a Gymnasium env, so no robosuite)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.needs import needs_module

PENDULUM = {"env_name": "Pendulum-v1", "type": 2, "env_kwargs": {}}


def _pendulum_file(path, n=6, steps=12, seed=0):
    """Random-action Pendulum episodes as a robomimic file (obs key 'flat')."""
    needs_module("gymnasium")
    from t2r.robomimic.envs import make_env_from_env_args
    from t2r.robomimic.hdf5 import Demo, write_robomimic_hdf5

    env = make_env_from_env_args(PENDULUM)
    rng = np.random.default_rng(seed)
    demos = []
    for _ in range(n):
        ob, obs, actions, rewards = env.reset(), [], [], []
        for _ in range(steps):
            action = rng.uniform(-1, 1, size=1).astype(np.float32)
            obs.append(ob["flat"])
            ob, reward, _, _ = env.step(action)
            actions.append(action)
            rewards.append(reward)
        demos.append(
            Demo(
                obs={"flat": np.asarray(obs, np.float32)},
                actions=np.asarray(actions, np.float32),
                rewards=np.asarray(rewards, np.float32),
                dones=np.r_[np.zeros(steps - 1), 1.0],
            )
        )
    names = [f"demo_{i}" for i in range(n)]
    return write_robomimic_hdf5(
        path, demos, PENDULUM, masks={"train": names[:-2], "valid": names[-2:]}
    )


def _config(num_epochs=2, **algo):
    return {
        "algo_name": "bc",
        "experiment": {
            "name": "tiny",
            "validate": True,
            "render_video": False,
            "epoch_every_n_steps": 3,
            "validation_epoch_every_n_steps": 2,
            "rollout": {"enabled": True, "n": 2, "horizon": 5, "rate": 1},
        },
        "train": {
            "batch_size": 4,
            "seq_length": 3,
            "num_epochs": num_epochs,
            "cuda": False,
            "hdf5_filter_key": "train",
            "hdf5_validation_filter_key": "valid",
            "hdf5_load_next_obs": False,
        },
        "algo": {
            "actor_layer_dims": [],
            "rnn": {"enabled": True, "horizon": 3, "hidden_dim": 8, "num_layers": 1},
            **algo,
        },
        "observation": {"modalities": {"obs": {"low_dim": ["flat"]}}},
    }


@pytest.fixture(scope="module")
def pendulum_file(tmp_path_factory):
    return _pendulum_file(tmp_path_factory.mktemp("data") / "pendulum.hdf5")


def test_train_validates_rolls_out_exports_and_evaluates(tmp_path, pendulum_file):
    from t2r.robomimic.training import evaluate_checkpoint, find_export_version, train

    out = tmp_path / "run"
    summary = train(_config(), dataset=pendulum_file, output_dir=out, show_progress=False)
    assert summary.global_step == 6 and summary.epochs == 2
    # A rollout after each epoch (rate 1), recorded in rollouts.json and TensorBoard.
    rollouts = json.loads((out / "rollouts.json").read_text())
    assert [(r["epoch"], r["step"]) for r in rollouts] == [(1, 3), (2, 6)]
    assert all(r["Num_Episodes"] == 2.0 and r["Horizon"] == 5.0 for r in rollouts)
    assert summary.rollouts == rollouts
    assert list((out / "rollout").glob("events.out.tfevents.*"))
    assert (out / "eval" / "metrics.jsonl").is_file()
    # Best by success (ties: return), by validation loss, and the final weights.
    assert set(summary.exports) == {"best_success", "best_validation", "latest"}
    assert find_export_version(out).parent.name == "best_success"
    assert summary.exports["latest"].endswith("latest/6")
    run = json.loads((out / "robomimic_run.json").read_text())
    assert run["env_args"] == PENDULUM and run["config"]["train"]["data"] == str(pendulum_file)
    # eval runs the export (no algo code) in the env its metadata names.
    stats = evaluate_checkpoint(out, n_rollouts=3, horizon=4, show_progress=False)
    assert stats["Num_Episodes"] == 3.0 and stats["Horizon"] == 4.0
    assert stats["export"] == summary.exports["best_success"]
    assert len(stats["episodes"]) == 3


def test_rerun_resumes_and_a_changed_config_is_refused(tmp_path, pendulum_file):
    from t2r.robomimic.training import RunError, train

    out = tmp_path / "run"
    train(_config(num_epochs=1), dataset=pendulum_file, output_dir=out, show_progress=False)
    first = json.loads((out / "rollouts.json").read_text())
    # More epochs (and other rollout settings): resumes at step 3 (no rollout repeated)
    # and goes on to step 6.
    config = _config(num_epochs=2)
    config["experiment"]["rollout"]["n"] = 1
    summary = train(config, dataset=pendulum_file, output_dir=out, show_progress=False)
    rollouts = json.loads((out / "rollouts.json").read_text())
    assert rollouts[0] == first[0] and [r["step"] for r in rollouts] == [3, 6]
    assert rollouts[1]["Num_Episodes"] == 1.0
    assert summary.global_step == 6
    assert sorted(p.name for p in (out / "checkpoints").iterdir())[-1].endswith("000000006")
    with pytest.raises(RunError, match=r"another config .*train\.batch_size"):
        config = _config(num_epochs=2)
        config["train"]["batch_size"] = 2
        train(config, dataset=pendulum_file, output_dir=out, show_progress=False)


def test_validate_needs_a_validation_filter_key(tmp_path, pendulum_file):
    from t2r.robomimic.training import RunError, train

    config = _config()
    config["train"]["hdf5_validation_filter_key"] = None
    with pytest.raises(RunError, match="hdf5_validation_filter_key is not set"):
        train(config, dataset=pendulum_file, output_dir=tmp_path / "r", show_progress=False)
    with pytest.raises(RunError, match="No dataset: pass --dataset"):
        train(_config(), output_dir=tmp_path / "r2", show_progress=False)


def test_eval_without_an_export_names_what_it_looked_for(tmp_path):
    from t2r.robomimic.training import RunError, evaluate_checkpoint

    with pytest.raises(RunError, match="no export here"):
        evaluate_checkpoint(tmp_path, n_rollouts=1, horizon=1)


def test_cli_train_then_eval(tmp_path, pendulum_file, capsys):
    from t2r.cli import main

    config = tmp_path / "config.json"
    config.write_text(json.dumps(_config(num_epochs=1)))
    out = tmp_path / "run"
    argv = ["robomimic", "train", "--config", str(config), "--dataset", str(pendulum_file)]
    assert main([*argv, "--output_dir", str(out), "--no_progress"]) == 0
    printed = capsys.readouterr().out
    assert "trained 1 epochs (3 steps)" in printed and "export best_success" in printed
    code = main(
        ["robomimic", "eval", "--checkpoint", str(out), "--n_rollouts", "2", "--horizon", "3"]
        + ["--no_progress"]
    )
    assert code == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["Num_Episodes"] == 2.0 and stats["Horizon"] == 3.0
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"algo_name": "bc", "train": {"no_such_key": 1}}))
    assert main(["robomimic", "train", "--config", str(bad), "--dataset", str(pendulum_file)]) == 1
    assert "no_such_key" in capsys.readouterr().err


@pytest.mark.slow
def test_lift_demos_train_and_eval_with_video(tmp_path, lift_demos):
    """The robosuite path end to end: scripted demos -> train (rollouts in Lift) -> eval + mp4."""
    from t2r.robomimic.training import evaluate_checkpoint, train

    data, _ = lift_demos  # the session's 3 scripted demos (the file is only read)
    config = _config(num_epochs=1)
    config["experiment"]["validate"] = False
    config["experiment"]["rollout"].update(n=1, horizon=8)
    config["observation"]["modalities"]["obs"]["low_dim"] = ["robot0_eef_pos", "object"]
    summary = train(config, dataset=data, output_dir=tmp_path / "run", show_progress=False)
    assert summary.rollouts[0]["Horizon"] == 8.0
    video = tmp_path / "lift.mp4"
    stats = evaluate_checkpoint(
        tmp_path / "run", n_rollouts=1, horizon=6, video_path=video, video_skip=3,
        show_progress=False,
    )  # fmt: skip
    assert stats["Num_Episodes"] == 1.0 and stats["Horizon"] == 6.0
    assert video.is_file() and video.stat().st_size > 0


@pytest.mark.parametrize("algo_name", ["bcq", "cql", "iql", "td3_bc"])
def test_robomimics_offline_rl_configs_train_validate_and_evaluate(
    algo_name, tmp_path, pendulum_file
):
    """robomimic's template config of each offline RL algorithm, as a user edits it (a
    smaller budget and networks): next_obs, rewards and dones come from the file, the
    validation pass runs the algorithm's losses without updating, the export acts."""
    from pathlib import Path

    from t2r.robomimic.training import evaluate_checkpoint, train

    template = Path(__file__).parent / "robomimic_templates" / f"{algo_name}.json"
    config = json.loads(template.read_text())
    config["experiment"].update(
        name="tiny",
        validate=True,
        render_video=False,
        epoch_every_n_steps=2,
        validation_epoch_every_n_steps=1,
    )
    config["experiment"]["rollout"].update(enabled=True, n=1, horizon=4, rate=1)
    config["train"].update(
        batch_size=4,
        num_epochs=1,
        cuda=False,
        hdf5_filter_key="train",
        hdf5_validation_filter_key="valid",
    )
    config["observation"]["modalities"]["obs"]["low_dim"] = ["flat"]
    algo = config["algo"]
    algo["critic"]["layer_dims"] = [8]
    algo["actor"]["layer_dims"] = [8]
    if algo_name == "bcq":
        algo["critic"]["num_action_samples_rollout"] = 3
        vae = algo["action_sampler"]["vae"]
        vae.update(latent_dim=2, encoder_layer_dims=[8], decoder_layer_dims=[8])
        vae["prior_layer_dims"] = [8]
    summary = train(config, dataset=pendulum_file, output_dir=tmp_path / "r", show_progress=False)
    assert summary.global_step == 2 and summary.best_validation_loss is not None
    assert summary.rollouts[0]["Horizon"] == 4.0
    stats = evaluate_checkpoint(tmp_path / "r", n_rollouts=1, horizon=3, show_progress=False)
    assert stats["Num_Episodes"] == 1.0
