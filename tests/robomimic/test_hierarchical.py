"""robomimic's hierarchical family on t2r: GL / GL_VAE subgoal proposals, ValuePlanner,
HBC and IRIS (configs, a closed form for the subgoal, the value planner's choice, exact
resume, exports with explicit subgoal and RNN state, rollouts)."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from t2r.export import export_saved_model
from t2r.predictors import ExportedModelPredictor
from t2r.robomimic.algos import GL, GL_VAE, HBC, IRIS, ValuePlanner, algo_factory
from t2r.robomimic.algos.gl import NoiseLayout
from t2r.robomimic.config import (
    Config,
    ConfigError,
    all_obs_keys,
    default_config,
    load_config,
    obs_keys_by_modality,
)
from t2r.robomimic.model import AlgoModel
from t2r.robomimic.rollout_policy import RolloutPolicy
from t2r.train import latest_checkpoint, seed_everything, train_eval_model

from .models import (
    AC_DIM,
    LOW_DIM_SHAPES,
    SEQ,
    TransitionInput,
    episode_actions,
    tiny_hierarchical_config,
    train_stopped_and_resumed,
)
from .models import (
    HIERARCHICAL_VARIANTS as VARIANTS,
)

TEMPLATES = Path(__file__).parent / "robomimic_templates"
KEYS = list(LOW_DIM_SHAPES)


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# ------------------------------------------------------------------ configs


@pytest.mark.parametrize("algo_name", ["gl", "hbc", "iris"])
def test_robomimics_config_templates_load_unchanged_and_are_the_defaults(algo_name):
    """robomimic's exps/templates/<algo>.json, every key of the file."""
    path = TEMPLATES / f"{algo_name}.json"
    config = load_config(path)
    assert config.to_dict() == json.loads(path.read_text())
    assert config == default_config(algo_name)


def test_hierarchical_defaults_are_robomimics():
    hbc = default_config("hbc")
    assert hbc.train.seq_length == 10 and hbc.algo.subgoal_update_interval == 10
    assert hbc.algo.mode == "separate" and hbc.algo.planner.subgoal_horizon == 10
    assert hbc.algo.planner.vae.enabled and hbc.algo.planner.vae.latent_dim == 16
    assert hbc.algo.actor.rnn.enabled and hbc.algo.actor.rnn.horizon == 10
    assert not {"gaussian", "gmm", "vae"} & set(hbc.algo.actor)
    iris = default_config("iris")
    assert iris.algo.value_planner.num_samples == 100
    assert iris.algo.value_planner.value.actor.enabled is False
    assert iris.algo.value_planner.value.critic.num_action_samples_rollout == 100
    gl = default_config("gl")
    assert gl.algo.ae.planner_layer_dims == [300, 400]
    assert gl.observation.modalities.subgoal.low_dim == [
        "robot0_eef_pos",
        "robot0_eef_quat",
        "robot0_gripper_qpos",
        "object",
    ]


def test_unknown_keys_in_hierarchical_configs_are_refused_and_open_sections_stay_open():
    with pytest.raises(ConfigError, match=r"'algo\.planner\.subgoal_horizen'"):
        load_config({"algo_name": "hbc", "algo": {"planner": {"subgoal_horizen": 5}}})
    with pytest.raises(ConfigError, match=r"'algo\.value_planner\.value\.critic\.size'"):
        load_config(
            {"algo_name": "iris", "algo": {"value_planner": {"value": {"critic": {"size": 1}}}}}
        )
    config = load_config(
        {
            "algo_name": "iris",
            "observation": {"value_planner": {"planner": {"modalities": {"obs": {"new": ["k"]}}}}},
            "algo": {"actor": {"rnn": {"kwargs": {"dropout": 0.0}}}},
        }
    )
    assert config.observation.value_planner.planner.modalities.obs.new == ["k"]


def test_the_observation_keys_of_a_hierarchical_config_pool_its_parts():
    config = default_config("hbc")
    config.observation.planner.modalities.obs.low_dim = ["a"]
    config.observation.planner.modalities.subgoal.low_dim = ["s"]
    config.observation.planner.modalities.goal.low_dim = ["g"]
    config.observation.actor.modalities.obs.low_dim = ["a", "b"]
    config.observation.actor.modalities.goal.low_dim = ["ignored"]  # the actor's goal: subgoals
    assert obs_keys_by_modality(config)["low_dim"] == ["a", "s", "b"]
    assert obs_keys_by_modality(config, "goal")["low_dim"] == ["g"]
    assert all_obs_keys(config) == ["a", "b", "g", "s"]


@pytest.mark.parametrize("variant", VARIANTS)
def test_the_config_selects_the_classes(variant):
    config = tiny_hierarchical_config(variant)
    algo = algo_factory(config.algo_name, config, LOW_DIM_SHAPES, AC_DIM)
    assert type(algo) is (IRIS if variant.startswith("iris") else HBC)
    planner = algo.planner.planner if isinstance(algo, IRIS) else algo.planner
    assert type(planner) is (GL if variant == "hbc" else GL_VAE)
    assert type(algo.actor).__name__ == "BC_RNN"
    if isinstance(algo, IRIS):
        assert isinstance(algo.planner, ValuePlanner)
        expected = {"iris_bcq_gmm": "BCQ_GMM", "iris_distributional": "BCQ_Distributional"}
        assert type(algo.planner.value_net).__name__ == expected.get(variant, "BCQ")
    # The actor's goal is the planner's subgoal.
    assert list(algo.actor.goal_shapes) == list(planner.subgoal_shapes)


def test_unsupported_settings_are_named():
    config = tiny_hierarchical_config("hbc")
    config.algo.latent_subgoal.enabled = True
    with pytest.raises(NotImplementedError, match="latent_subgoal.enabled"):
        algo_factory("hbc", config, LOW_DIM_SHAPES, AC_DIM)
    config = tiny_hierarchical_config("hbc")
    config.algo.mode = "planner_only"
    with pytest.raises(ValueError, match="algo.mode must be 'separate' or 'cascade'"):
        algo_factory("hbc", config, LOW_DIM_SHAPES, AC_DIM)
    config = tiny_hierarchical_config("hbc")
    config.algo.planner.subgoal_horizon = SEQ + 1
    algo = algo_factory("hbc", config, LOW_DIM_SHAPES, AC_DIM)
    features, labels = TransitionInput(steps=SEQ).draw(torch.Generator().manual_seed(0))
    batch = {
        "obs": {k: features[f"obs/{k}"] for k in KEYS},
        "next_obs": {k: features[f"next_obs/{k}"] for k in KEYS},
        "actions": labels["actions"],
    }
    with pytest.raises(ValueError, match=r"subgoal_horizon=4 needs windows of at least"):
        algo.process_batch_for_training(batch)
    config = tiny_hierarchical_config("iris")
    config.observation.value_planner.value.modalities.obs.low_dim = ["robot0_eef_pos", "other"]
    with pytest.raises(ValueError, match=r"\['other'\] are not in the planner's"):
        algo_factory("iris", config, {**LOW_DIM_SHAPES, "other": (2,)}, AC_DIM)


def test_noise_layout_packs_and_splits_the_parts_noise():
    layout = NoiseLayout({"a": {"normal": 2, "uniform": 1}, "b": {"normal": 3}, "c": {}})
    assert layout.shapes() == {"normal": 5, "uniform": 1}
    noise = {"normal": torch.arange(10.0).reshape(2, 5), "uniform": torch.ones(2, 1)}
    parts = layout.split(noise)
    torch.testing.assert_close(parts["a"]["normal"], noise["normal"][:, :2])
    torch.testing.assert_close(parts["b"]["normal"], noise["normal"][:, 2:])
    assert parts["c"] == {} and parts["a"]["uniform"].shape == (2, 1)


# -------------------------------------------------------------- closed forms

VELOCITY = torch.tensor([0.1, -0.05, 0.02])


def _chain_windows(batch_size: int, generator: torch.Generator, steps: int = SEQ) -> dict:
    """Deterministic linear chains: ``eef_pos_t = x0 + t v``, a constant object; windows of
    `steps` steps with their next observations."""
    x0 = torch.rand(batch_size, 1, 3, generator=generator) * 2 - 1
    t = torch.arange(steps, dtype=torch.float32)[None, :, None]
    obj = (torch.rand(batch_size, 1, 4, generator=generator) * 2 - 1).expand(-1, steps, -1)
    return {
        "obs": {"robot0_eef_pos": x0 + t * VELOCITY, "object": obj},
        "next_obs": {"robot0_eef_pos": x0 + (t + 1) * VELOCITY, "object": obj},
        "actions": torch.zeros(batch_size, steps, AC_DIM),
    }


def _planner_config(vae: bool, horizon: int) -> Config:
    config = default_config("gl")
    config.observation.modalities.obs.low_dim = list(KEYS)
    config.observation.modalities.subgoal.low_dim = list(KEYS)
    config.algo.subgoal_horizon = horizon
    config.algo.ae.planner_layer_dims = [64, 64]
    config.algo.vae.enabled = vae
    config.algo.vae.latent_dim = 2
    config.algo.vae.kl_weight = 1e-3
    config.algo.vae.encoder_layer_dims = [64]
    config.algo.vae.decoder_layer_dims = [64, 64]
    config.algo.optim_params.goal_network.learning_rate.initial = 3e-3
    return config


@pytest.mark.parametrize(("vae", "horizon"), [(False, 1), (False, SEQ), (True, SEQ)])
def test_gl_on_a_linear_chain_proposes_the_observation_subgoal_horizon_steps_ahead(vae, horizon):
    seed_everything(0)
    config = _planner_config(vae, horizon)
    planner = algo_factory("gl", config, LOW_DIM_SHAPES, AC_DIM)
    assert type(planner) is (GL_VAE if vae else GL)
    generator = torch.Generator().manual_seed(0)
    for _ in range(800):
        batch = planner.process_batch_for_training(_chain_windows(64, generator))
        batch = planner.postprocess_batch_for_training(batch, None)
        info = planner.train_on_batch(batch, epoch=1)
    assert np.isfinite(planner.log_info(info)["Loss"])
    planner.set_eval()
    test = _chain_windows(16, torch.Generator().manual_seed(1))
    obs = {k: v[:, 0] for k, v in test["obs"].items()}
    with torch.no_grad():
        proposals = planner.sample_subgoals(obs, None, num_samples=3)
        prediction = planner.get_subgoal_predictions(obs, None)
    expected = obs["robot0_eef_pos"] + horizon * VELOCITY
    assert proposals["robot0_eef_pos"].shape == (16, 3, 3)
    for subgoal in (prediction["robot0_eef_pos"], *proposals["robot0_eef_pos"].unbind(1)):
        torch.testing.assert_close(subgoal, expected, atol=0.06, rtol=0)
    torch.testing.assert_close(prediction["object"], obs["object"], atol=0.06, rtol=0)


def test_the_value_planner_keeps_the_sampled_subgoal_of_highest_value():
    seed_everything(0)
    config = tiny_hierarchical_config("iris")
    config.algo.value_planner.num_samples = 8
    algo = algo_factory("iris", config, LOW_DIM_SHAPES, AC_DIM)
    planner = algo.planner
    # A value that prefers subgoals with a large first eef coordinate.
    planner.value_net._best_value = lambda obs, goal, noise: (obs["robot0_eef_pos"][:, :1], None)
    obs = {k: torch.rand(5, *s) for k, s in LOW_DIM_SHAPES.items()}
    noise = {
        k: torch.randn(5, n) if k == "normal" else torch.rand(5, n)
        for k, n in planner.subgoal_noise_shapes().items()
    }
    with torch.no_grad():
        best = planner.predict_subgoals(obs, None, noise)
        samples_noise = planner._layout().split(noise)["samples"]
        candidates = planner.planner.sample_subgoals_from_noise(obs, None, 8, samples_noise)
    first = candidates["robot0_eef_pos"][:, :, 0]
    assert float(first.std()) > 0  # the candidates differ
    index = first.argmax(dim=1)
    for key in KEYS:
        torch.testing.assert_close(best[key], candidates[key][torch.arange(5), index])


def test_hbc_replans_every_subgoal_update_interval_steps():
    seed_everything(0)
    config = tiny_hierarchical_config("hbc_vae_gmm_prior")
    config.algo.subgoal_update_interval = 3
    algo = algo_factory("hbc", config, LOW_DIM_SHAPES, AC_DIM)
    algo.set_eval()
    algo.reset()
    subgoals = []
    for step in range(7):
        obs = {k: torch.rand(1, *s) for k, s in LOW_DIM_SHAPES.items()}
        algo.get_action(obs)
        subgoals.append(algo.current_subgoal["robot0_eef_pos"])
        assert int(algo._network_state["actor/step"]) == step + 1
    changed = [not torch.equal(a, b) for a, b in itertools.pairwise(subgoals)]
    assert changed == [False, False, True, False, False, True]  # re-planned at steps 3, 6
    algo.reset()
    with pytest.raises(RuntimeError, match="no rollout in progress"):
        _ = algo.current_subgoal


def test_validate_updates_nothing():
    for variant in VARIANTS:
        config = tiny_hierarchical_config(variant)
        algo = algo_factory(config.algo_name, config, LOW_DIM_SHAPES, AC_DIM)
        before = {k: v.clone() for k, v in algo.nets.state_dict().items()}
        features, labels = TransitionInput(steps=SEQ).draw(torch.Generator().manual_seed(0))
        raw = {
            "obs": {k: features[f"obs/{k}"] for k in KEYS},
            "next_obs": {k: features[f"next_obs/{k}"] for k in KEYS},
            "actions": labels["actions"],
            "rewards": labels["rewards"],
            "dones": labels["dones"],
        }
        batch = algo.postprocess_batch_for_training(algo.process_batch_for_training(raw), None)
        algo.set_eval()
        info = algo.train_on_batch(batch, epoch=1, validate=True)
        log = algo.log_info(info)
        assert np.isfinite(log["Loss"]) and "Planner/Loss" in log and "Actor/Loss" in log
        for name, value in algo.nets.state_dict().items():
            assert torch.equal(before[name], value), (variant, name)


# --------------------------------------- AlgoModel: train, resume, export, roll out


def _train(model, model_dir, steps):
    return train_eval_model(
        model,
        TransitionInput(steps=SEQ),
        max_train_steps=steps,
        model_dir=model_dir,
        save_checkpoints_steps=2,
        show_progress=False,
        device="cpu",
    )


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_hierarchical_variant_trains_resumes_exports_and_rolls_out(variant, tmp_path):
    def make() -> AlgoModel:
        seed_everything(0)
        return AlgoModel(tiny_hierarchical_config(variant), LOW_DIM_SHAPES, AC_DIM)

    uninterrupted, resumed = train_stopped_and_resumed(make, _train, tmp_path, 6)
    assert latest_checkpoint(tmp_path / "b").global_step == 6
    state = uninterrupted.state_dict()
    for name, value in state.items():
        assert torch.equal(value, resumed.state_dict()[name]), name
    assert any(name.startswith("nets.planner_") for name in state)
    assert any(name.startswith("nets.actor_policy") for name in state)
    saved_a = load_file(str(latest_checkpoint(tmp_path / "a").path / "optimizer.safetensors"))
    saved_b = load_file(str(latest_checkpoint(tmp_path / "b").path / "optimizer.safetensors"))
    assert saved_a.keys() == saved_b.keys()
    for net in uninterrupted.algo.optimizers:  # every part's optimizer is checkpointed
        assert any(net in key for key in saved_a), net
    for name, value in saved_a.items():
        assert torch.equal(value, saved_b[name]), name
    assert int(resumed.num_updates) == 6

    model = uninterrupted.eval()
    export_saved_model(model, tmp_path / "export", global_step=6)
    predictor = ExportedModelPredictor(tmp_path / "export", timeout=0)
    assert predictor.restore()
    state_spec = [k for k in predictor.get_feature_specification() if "network_state" in k]
    assert any("subgoal_step" in k for k in state_spec) and any("actor/h" in k for k in state_spec)
    live = episode_actions(RolloutPolicy(model, seed=3), 5)
    exported = episode_actions(RolloutPolicy(predictor, seed=3), 5)
    assert live.shape == (5, AC_DIM) and np.isfinite(live).all()
    np.testing.assert_allclose(exported, live, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(
        episode_actions(RolloutPolicy(model.algo, seed=3), 5), live, rtol=0, atol=0
    )


# ------------------------------------------- t2r robomimic train from the templates


@pytest.mark.parametrize("algo_name", ["hbc", "iris"])
def test_robomimics_hierarchical_configs_train_validate_and_evaluate(algo_name, tmp_path):
    """robomimic's template config, as a user edits it (a smaller budget and networks), on
    a robomimic HDF5 file: subgoals from next_obs, validation, rollouts, the export acts."""
    from t2r.robomimic.training import evaluate_checkpoint, train

    from .test_training import _pendulum_file

    dataset = _pendulum_file(tmp_path / "pendulum.hdf5")
    config = json.loads((TEMPLATES / f"{algo_name}.json").read_text())
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
        seq_length=4,
        cuda=False,
        hdf5_filter_key="train",
        hdf5_validation_filter_key="valid",
    )
    algo = config["algo"]
    algo["actor"]["rnn"].update(hidden_dim=8, horizon=4)
    algo["actor"]["actor_layer_dims"] = [8]
    algo["subgoal_update_interval"] = 2
    if algo_name == "hbc":
        planner, planner_obs = algo["planner"], config["observation"]["planner"]
    else:
        planner = algo["value_planner"]["planner"]
        planner_obs = config["observation"]["value_planner"]["planner"]
        algo["value_planner"]["num_samples"] = 3
        value = algo["value_planner"]["value"]
        value["critic"].update(layer_dims=[8], num_action_samples_rollout=3)
        value["action_sampler"]["actor_layer_dims"] = [8]
        value["action_sampler"]["vae"].update(
            latent_dim=2, encoder_layer_dims=[8], decoder_layer_dims=[8], prior_layer_dims=[8]
        )
        config["observation"]["value_planner"]["value"]["modalities"]["obs"]["low_dim"] = ["flat"]
    planner["subgoal_horizon"] = 4
    planner["vae"].update(
        latent_dim=2, encoder_layer_dims=[8], decoder_layer_dims=[8], prior_layer_dims=[8]
    )
    planner_obs["modalities"]["obs"]["low_dim"] = ["flat"]
    planner_obs["modalities"]["subgoal"]["low_dim"] = ["flat"]
    config["observation"]["actor"]["modalities"]["obs"]["low_dim"] = ["flat"]
    summary = train(config, dataset=dataset, output_dir=tmp_path / "r", show_progress=False)
    assert summary.global_step == 2 and summary.best_validation_loss is not None
    assert summary.rollouts[0]["Horizon"] == 4.0
    stats = evaluate_checkpoint(tmp_path / "r", n_rollouts=1, horizon=5, show_progress=False)
    assert stats["Num_Episodes"] == 1.0
