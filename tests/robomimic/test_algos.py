"""robomimic's BC family on t2r: configs, the Algo lifecycle, AlgoModel, exports, RolloutPolicy."""

from __future__ import annotations

import copy
import functools
import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from t2r.export import export_saved_model
from t2r.predictors import ExportedModelPredictor
from t2r.robomimic.algos import algo_factory
from t2r.robomimic.config import ConfigError, default_config, load_config, save_config
from t2r.robomimic.model import AlgoModel
from t2r.robomimic.policy_nets import gaussian_log_prob, gmm_log_prob, gmm_sample
from t2r.robomimic.rollout_policy import RolloutPolicy
from t2r.train import latest_checkpoint, seed_everything, train_eval_model

from .models import (
    AC_DIM,
    IMAGE_SHAPES,
    LOW_DIM_SHAPES,
    SEQ,
    VARIANTS,
    LinearDemoInput,
    ToyReachEnv,
    episode_actions,
    tiny_config,
    train_stopped_and_resumed,
)


@pytest.fixture(autouse=True)
def _one_thread():
    """These models are tiny: one intra-op thread is faster, and on a shared, loaded
    machine a second thread that spin-waits made a 2 s test take 60 s."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


CLASS_OF_VARIANT = {
    "bc": "BC",
    "bc_gaussian": "BC_Gaussian",
    "bc_gmm": "BC_GMM",
    "bc_vae": "BC_VAE",
    "bc_rnn": "BC_RNN",
    "bc_rnn_gmm": "BC_RNN_GMM",
    "bc_transformer": "BC_Transformer",
    "bc_transformer_gmm": "BC_Transformer_GMM",
}


# ------------------------------------------------------------------ configs


def test_bc_defaults_are_robomimics():
    config = default_config("bc")
    assert config.algo.optim_params.policy.learning_rate.initial == 1e-4
    assert config.algo.actor_layer_dims == [1024, 1024]
    assert config.algo.rnn.hidden_dim == 400 and config.algo.rnn.num_layers == 2
    assert config.algo.rnn.horizon == 10 and config.algo.rnn.rnn_type == "LSTM"
    assert config.algo.gmm.num_modes == 5 and config.algo.gmm.min_std == 0.0001
    assert config.algo.gaussian.init_std == 0.1 and config.algo.vae.latent_dim == 14
    assert config.algo.transformer.embed_dim == 512 and config.algo.transformer.num_heads == 8
    assert config.train.batch_size == 100 and config.train.hdf5_load_next_obs is False
    assert config.experiment.epoch_every_n_steps == 100
    assert config.observation.encoder.rgb.core_class == "VisualCore"


def _robomimic_bc_rnn_json() -> dict:
    """The shape of robomimic's low-dim BC-RNN-GMM config files (a subset of keys, as
    users write them)."""
    return {
        "algo_name": "bc",
        "experiment": {
            "name": "bc_rnn_lift",
            "validate": True,
            "save": {"enabled": True, "every_n_epochs": 50, "epochs": []},
            "epoch_every_n_steps": 100,
            "rollout": {"enabled": True, "n": 50, "horizon": 400, "rate": 50},
        },
        "train": {
            "data": "lift/ph/low_dim_v15.hdf5",
            "output_dir": "../bc_rnn_trained_models",
            "hdf5_cache_mode": "all",
            "hdf5_filter_key": "train",
            "hdf5_validation_filter_key": "valid",
            "seq_length": 10,
            "dataset_keys": ["actions", "rewards", "dones"],
            "batch_size": 100,
            "num_epochs": 2000,
            "seed": 1,
        },
        "algo": {
            "optim_params": {
                "policy": {
                    "learning_rate": {"initial": 0.001, "decay_factor": 0.1, "epoch_schedule": []},
                    "regularization": {"L2": 0.0},
                }
            },
            "actor_layer_dims": [],
            "gmm": {"enabled": True, "num_modes": 5, "min_std": 0.0001},
            "rnn": {
                "enabled": True,
                "horizon": 10,
                "hidden_dim": 400,
                "rnn_type": "LSTM",
                "num_layers": 2,
                "open_loop": False,
                "kwargs": {"bidirectional": False},
            },
        },
        "observation": {
            "modalities": {
                "obs": {
                    "low_dim": [
                        "robot0_eef_pos",
                        "robot0_eef_quat",
                        "robot0_gripper_qpos",
                        "object",
                    ],
                    "rgb": [],
                },
                "goal": {"low_dim": [], "rgb": []},
            },
            "encoder": {
                "rgb": {
                    "core_class": "VisualCore",
                    "core_kwargs": {"feature_dimension": 64, "backbone_class": "ResNet18Conv"},
                    "obs_randomizer_class": None,
                    "obs_randomizer_kwargs": {"crop_height": 76, "crop_width": 76},
                }
            },
        },
    }


def test_a_robomimic_json_config_is_read_unchanged(tmp_path):
    path = tmp_path / "bc_rnn.json"
    path.write_text(json.dumps(_robomimic_bc_rnn_json()))
    config = load_config(path)
    assert config.algo.rnn.enabled and config.algo.gmm.enabled
    assert config.algo.optim_params.policy.learning_rate.initial == 0.001
    assert config.train.seq_length == 10 and config.train.hdf5_filter_key == "train"
    # Keys the file leaves out keep robomimic's defaults.
    assert config.algo.gmm.std_activation == "softplus"
    assert config.experiment.rollout.terminate_on_success is True
    assert config.observation.encoder.rgb.core_kwargs.backbone_class == "ResNet18Conv"
    shapes = {
        "robot0_eef_pos": (3,),
        "robot0_eef_quat": (4,),
        "robot0_gripper_qpos": (2,),
        "object": (10,),
    }
    algo = algo_factory("bc", config, shapes, 7)
    assert type(algo).__name__ == "BC_RNN_GMM"
    assert algo.nets["policy"].rnn.hidden_size == 400 and algo.nets["policy"].num_modes == 5
    # What save_config writes, load_config reads back equal.
    assert load_config(save_config(config, tmp_path / "saved.json")) == config


def test_an_unknown_key_is_an_error_naming_its_path():
    with pytest.raises(ConfigError, match=r"Unknown config key 'algo\.rnn\.hiden_dim'"):
        load_config({"algo_name": "bc", "algo": {"rnn": {"hiden_dim": 400}}})
    with pytest.raises(ConfigError, match=r"'train\.batchsize'"):
        load_config({"algo_name": "bc", "train": {"batchsize": 4}})
    with pytest.raises(ConfigError, match=r"'algo\.gmm' is a section"):
        load_config({"algo_name": "bc", "algo": {"gmm": True}})
    with pytest.raises(ConfigError, match=r"algo_name 'no_such_algo' has no registered config"):
        load_config({"algo_name": "no_such_algo"})


def test_open_sections_take_new_keys_as_robomimic_does():
    config = load_config(
        {
            "algo_name": "bc",
            "algo": {
                "rnn": {"kwargs": {"dropout": 0.1}},
                "optim_params": {"policy": {"learning_rate": {"step_every_batch": True}}},
            },
            "observation": {
                "modalities": {"obs": {"low_dim": ["a"], "scan": ["lidar"]}},
                "encoder": {"rgb": {"core_kwargs": {"pool_class": "SpatialMeanPool"}}},
            },
        }
    )
    assert config.algo.rnn.kwargs == {"bidirectional": False, "dropout": 0.1}
    assert config.algo.optim_params.policy.learning_rate.step_every_batch is True
    assert config.observation.modalities.obs.scan == ["lidar"]


@pytest.mark.parametrize("variant", VARIANTS)
def test_the_config_selects_the_variant(variant):
    from t2r.robomimic.algos import algo_name_to_factory_func

    cls, kwargs = algo_name_to_factory_func("bc")(tiny_config(variant).algo)
    assert cls.__name__ == CLASS_OF_VARIANT[variant] and kwargs == {}


# ---------------------------------------------------------- distributions


def test_a_one_mode_gmm_is_its_gaussian():
    g = torch.Generator().manual_seed(0)
    mean, scale = torch.randn(5, 3, generator=g), torch.rand(5, 3, generator=g) + 0.1
    x = torch.randn(5, 3, generator=g)
    gmm = gmm_log_prob(mean[:, None], scale[:, None], torch.randn(5, 1, generator=g), x)
    expected = torch.distributions.Independent(torch.distributions.Normal(mean, scale), 1).log_prob(
        x
    )
    torch.testing.assert_close(gmm, expected)
    torch.testing.assert_close(gaussian_log_prob(mean, scale, x), expected)


def test_gmm_log_prob_is_torch_mixture_same_family():
    g = torch.Generator().manual_seed(1)
    means, scales = torch.randn(4, 5, 2, generator=g), torch.rand(4, 5, 2, generator=g) + 0.05
    logits, x = torch.randn(4, 5, generator=g), torch.randn(4, 2, generator=g)
    D = torch.distributions
    expected = D.MixtureSameFamily(
        D.Categorical(logits=logits), D.Independent(D.Normal(means, scales), 1)
    ).log_prob(x)
    torch.testing.assert_close(gmm_log_prob(means, scales, logits, x), expected)


def test_gmm_sample_picks_modes_by_their_weight():
    means = torch.tensor([[[-1.0, -1.0], [1.0, 1.0]]]).expand(3, 2, 2)
    scales = torch.full((3, 2, 2), 0.5)
    logits = torch.log(torch.tensor([0.2, 0.8])).expand(3, 2)
    uniform = torch.tensor([[0.1], [0.5], [0.99]])
    normal = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, -2.0]])
    sample = gmm_sample(means, scales, logits, uniform, normal)
    torch.testing.assert_close(sample, torch.tensor([[-1.0, -1.0], [1.5, 1.0], [1.0, 0.0]]))


# --------------------------------------------------------------- lifecycle


def _algo(variant: str, **shapes_kwargs):
    config = tiny_config(variant)
    shapes = {k: v for k, v in LOW_DIM_SHAPES.items()}
    return algo_factory("bc", config, shapes, AC_DIM)


def _processed_batch(algo, seed: int = 0, steps: int = SEQ):
    features, labels = LinearDemoInput(seed=seed, steps=steps).draw(
        torch.Generator().manual_seed(seed)
    )
    batch = {
        "obs": {k.split("/", 1)[1]: v for k, v in features.items()},
        "actions": labels["actions"],
    }
    return algo.postprocess_batch_for_training(algo.process_batch_for_training(batch), None)


def test_bc_fits_a_linear_dataset():
    seed_everything(0)
    config = tiny_config("bc")
    config.algo.actor_layer_dims = [64, 64]
    config.algo.optim_params.policy.learning_rate.initial = 1e-3
    algo = algo_factory("bc", config, LOW_DIM_SHAPES, AC_DIM)
    algo.set_train()
    data = LinearDemoInput(batch_size=64, steps=1)
    generator = torch.Generator().manual_seed(0)
    for _ in range(400):
        features, labels = data.draw(generator)
        batch = {
            "obs": {k.split("/", 1)[1]: v for k, v in features.items()},
            "actions": labels["actions"],
        }
        info = algo.train_on_batch(algo.process_batch_for_training(batch), epoch=1)
    assert float(info["losses"]["l2_loss"]) < 2e-3, algo.log_info(info)


def test_serialize_then_deserialize_restores_networks_and_optimizers():
    seed_everything(0)
    algo = _algo("bc_rnn_gmm")
    batch = _processed_batch(algo)
    algo.set_train()
    algo.train_on_batch(batch, epoch=1)
    state = copy.deepcopy(algo.serialize())  # as if written and read back
    assert set(state) == {"nets", "optimizers", "lr_schedulers", "counters"}
    seed_everything(1)
    other = _algo("bc_rnn_gmm")
    other.deserialize(state, load_optimizers=True)
    for (name, a), b in zip(algo.nets.state_dict().items(), other.nets.state_dict().values()):
        assert torch.equal(a, b), name
    # One more identical step on both keeps them identical (optimizer state restored too).
    algo.train_on_batch(batch, epoch=1)
    other.set_train()
    other.train_on_batch(batch, epoch=1)
    for (name, a), b in zip(algo.nets.state_dict().items(), other.nets.state_dict().values()):
        assert torch.equal(a, b), name


def test_validate_does_not_update():
    algo = _algo("bc_gmm")
    before = {k: v.clone() for k, v in algo.nets.state_dict().items()}
    info = algo.train_on_batch(_processed_batch(algo), epoch=1, validate=True)
    assert "Loss" in algo.log_info(info)
    for name, value in algo.nets.state_dict().items():
        assert torch.equal(before[name], value), name


def test_the_epoch_schedule_decays_the_rate_at_epoch_boundaries():
    config = tiny_config("bc")
    config.algo.optim_params.policy.learning_rate.epoch_schedule = [2]
    algo = algo_factory("bc", config, LOW_DIM_SHAPES, AC_DIM)
    steps_per_epoch = config.experiment.epoch_every_n_steps
    rates = []
    for _ in range(3 * steps_per_epoch):
        rates.append(algo.optimizers["policy"].param_groups[0]["lr"])
        algo.on_gradient_step()
    assert rates[: 2 * steps_per_epoch] == pytest.approx([1e-4] * (2 * steps_per_epoch))
    assert rates[2 * steps_per_epoch :] == pytest.approx([1e-5] * steps_per_epoch)


def test_step_every_batch_schedules_count_steps_and_linear_decays_per_epoch():
    config = tiny_config("bc")
    config.algo.optim_params.policy.learning_rate.update(
        {"epoch_schedule": [3], "step_every_batch": True}
    )
    algo = algo_factory("bc", config, LOW_DIM_SHAPES, AC_DIM)
    rates = []
    for _ in range(5):
        rates.append(algo.optimizers["policy"].param_groups[0]["lr"])
        algo.on_gradient_step()
    assert rates == pytest.approx([1e-4, 1e-4, 1e-4, 1e-5, 1e-5])
    config = tiny_config("bc")
    config.algo.optim_params.policy.learning_rate.update(
        {"epoch_schedule": [2], "scheduler_type": "linear", "decay_factor": 0.5}
    )
    algo = algo_factory("bc", config, LOW_DIM_SHAPES, AC_DIM)
    per_epoch = config.experiment.epoch_every_n_steps
    rates = []
    for _ in range(3 * per_epoch):
        rates.append(algo.optimizers["policy"].param_groups[0]["lr"])
        algo.on_gradient_step()
    # torch's LinearLR over epochs: 1, 0.75, 0.5 of the rate, each for one epoch.
    expected = [1e-4] * per_epoch + [0.75e-4] * per_epoch + [0.5e-4] * per_epoch
    assert rates == pytest.approx(expected)


def test_bc_rnn_restarts_its_hidden_state_every_horizon():
    seed_everything(0)
    algo = _algo("bc_rnn")
    algo.set_eval()
    algo.reset()
    g = torch.Generator().manual_seed(0)
    observations = [
        {k: torch.randn(1, *s, generator=g) for k, s in LOW_DIM_SHAPES.items()} for _ in range(SEQ)
    ]
    actions = [algo.get_action(obs) for obs in observations]
    # Step SEQ (= rnn.horizon) starts from the zero state again: the first observation
    # gives the first action again.
    torch.testing.assert_close(algo.get_action(observations[0]), actions[0], rtol=0, atol=0)
    # Inside a horizon the state carries: the same observation gives another action.
    assert not torch.allclose(algo.get_action(observations[0]), actions[0])
    algo.reset()
    torch.testing.assert_close(algo.get_action(observations[0]), actions[0], rtol=0, atol=0)


def test_bc_transformer_keeps_the_window_robomimic_stacks():
    seed_everything(0)
    algo = _algo("bc_transformer")
    algo.set_eval()
    algo.reset()
    g = torch.Generator().manual_seed(0)
    obs = [
        {k: torch.randn(1, *s, generator=g) for k, s in LOW_DIM_SHAPES.items()} for _ in range(4)
    ]
    stepped = [algo.get_action(o) for o in obs]

    def window(indices):
        return {k: torch.stack([obs[i][k][0] for i in indices])[None] for k in LOW_DIM_SHAPES}

    # pad_frame_stack: the first window is the first observation repeated.
    torch.testing.assert_close(stepped[0], algo.get_action(window([0, 0, 0])))
    torch.testing.assert_close(stepped[2], algo.get_action(window([0, 1, 2])))
    torch.testing.assert_close(stepped[3], algo.get_action(window([1, 2, 3])))


# --------------------------------------- AlgoModel: train, resume, export, roll out


def _train(model, model_dir, steps, image=False):
    return train_eval_model(
        model,
        LinearDemoInput(image=image),
        max_train_steps=steps,
        model_dir=model_dir,
        save_checkpoints_steps=2,
        show_progress=False,
        device="cpu",
    )


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_variant_trains_resumes_exports_and_rolls_out(variant, tmp_path):
    def make() -> AlgoModel:
        seed_everything(0)
        return AlgoModel(tiny_config(variant), LOW_DIM_SHAPES, AC_DIM)

    uninterrupted, resumed = train_stopped_and_resumed(make, _train, tmp_path, 4)
    assert latest_checkpoint(tmp_path / "b").global_step == 4
    for name, value in uninterrupted.state_dict().items():
        assert torch.equal(value, resumed.state_dict()[name]), name
    saved_a = load_file(str(latest_checkpoint(tmp_path / "a").path / "optimizer.safetensors"))
    saved_b = load_file(str(latest_checkpoint(tmp_path / "b").path / "optimizer.safetensors"))
    assert saved_a.keys() == saved_b.keys() and saved_a
    for name, value in saved_a.items():
        assert torch.equal(value, saved_b[name]), name
    assert int(resumed.num_updates) == 4

    model = uninterrupted.eval()
    export_saved_model(model, tmp_path / "export", global_step=4)
    predictor = ExportedModelPredictor(tmp_path / "export", timeout=0)
    assert predictor.restore()
    steps = 2 * SEQ + 1  # past BC-RNN's horizon and the transformer's window
    live = episode_actions(RolloutPolicy(model, seed=3), steps)
    exported = episode_actions(RolloutPolicy(predictor, seed=3), steps)
    assert live.shape == (steps, AC_DIM) and np.isfinite(live).all()
    np.testing.assert_allclose(exported, live, rtol=1e-5, atol=1e-5)
    # The Algo itself (robomimic's RolloutPolicy case) acts the same.
    np.testing.assert_allclose(
        episode_actions(RolloutPolicy(model.algo, seed=3), steps), live, rtol=0, atol=0
    )


@pytest.mark.slow
def test_an_image_policy_resumes_bitwise_exports_and_rolls_out(tmp_path):
    """ResNet-18 + spatial softmax + random crops: the crops draw from torch's RNG, which
    the checkpoint restores, and BatchNorm statistics are buffers of the checkpoint."""

    def make() -> AlgoModel:
        seed_everything(0)
        return AlgoModel(tiny_config("bc", image=True), IMAGE_SHAPES, AC_DIM)

    model, resumed = train_stopped_and_resumed(
        make, functools.partial(_train, image=True), tmp_path, 4
    )
    for name, value in model.state_dict().items():
        assert torch.equal(value, resumed.state_dict()[name]), name
    assert any("running_mean" in name for name in model.state_dict())
    model.eval()
    export_saved_model(model, tmp_path / "export", global_step=4)
    predictor = ExportedModelPredictor(tmp_path / "export", timeout=0)
    assert predictor.restore()
    assert predictor.get_feature_specification()["obs/agentview_image"].dtype == torch.uint8
    live = episode_actions(RolloutPolicy(model, seed=0), 3, image=True)
    np.testing.assert_allclose(
        episode_actions(RolloutPolicy(predictor, seed=0), 3, image=True), live, atol=1e-5
    )


def test_normalization_travels_with_the_model_and_its_export(tmp_path):
    config = tiny_config("bc_gmm")
    config.train.hdf5_normalize_obs = True
    config.train.action_config = {"actions": {"normalization": "min_max"}}
    obs_stats = {
        "robot0_eef_pos": {"offset": np.full((1, 3), 0.5), "scale": np.full((1, 3), 2.0)},
        "object": {"offset": np.full((1, 4), -0.25), "scale": np.full((1, 4), 0.5)},
    }
    action_stats = {"actions": {"offset": np.array([[1.0, -1.0]]), "scale": np.array([[3.0, 0.5]])}}
    seed_everything(0)
    model = AlgoModel(
        config,
        LOW_DIM_SHAPES,
        AC_DIM,
        obs_normalization_stats=obs_stats,
        action_normalization_stats=action_stats,
    ).eval()
    live = episode_actions(RolloutPolicy(model, seed=1), 3)
    # robomimic's way: the Algo plus the stats.
    by_algo = episode_actions(RolloutPolicy(model.algo, obs_stats, action_stats, seed=1), 3)
    np.testing.assert_allclose(by_algo, live, rtol=1e-6, atol=1e-6)
    # Without the stats the actions differ (they are used).
    assert not np.allclose(episode_actions(RolloutPolicy(model.algo, seed=1), 3), live)
    export_saved_model(model, tmp_path, global_step=0)
    predictor = ExportedModelPredictor(tmp_path, timeout=0)
    assert predictor.restore()
    np.testing.assert_allclose(
        episode_actions(RolloutPolicy(predictor, seed=1), 3), live, atol=1e-5
    )
    with pytest.raises(ValueError, match="applies its model's normalization itself"):
        RolloutPolicy(predictor, obs_normalization_stats=obs_stats)


def test_missing_observation_keys_are_named():
    with pytest.raises(ValueError, match=r"observation keys \['object'\] are not in the data"):
        AlgoModel(tiny_config("bc"), {"robot0_eef_pos": (3,)}, AC_DIM)
    model = AlgoModel(tiny_config("bc"), LOW_DIM_SHAPES, AC_DIM)
    policy = RolloutPolicy(model)
    policy.start_episode()
    with pytest.raises(KeyError, match=r"lacks \['object'\]"):
        policy({"robot0_eef_pos": np.zeros(3)})


VAE_PRIORS = {
    "normal": {},
    "learned": {"learn": True},
    "conditioned": {"learn": True, "is_conditioned": True},
    "gmm": {"learn": True, "use_gmm": True, "gmm_num_modes": 3, "gmm_learn_weights": True},
    "categorical": {"use_categorical": True, "categorical_dim": 3},
    "categorical_learned": {
        "use_categorical": True,
        "categorical_dim": 3,
        "learn": True,
        "is_conditioned": True,
    },
}


@pytest.mark.parametrize("prior", sorted(VAE_PRIORS))
def test_bc_vae_prior_options_train_and_export(prior, tmp_path):
    config = tiny_config("bc_vae")
    config.algo.vae.prior.update(VAE_PRIORS[prior])
    seed_everything(0)
    model = AlgoModel(config, LOW_DIM_SHAPES, AC_DIM)
    optimizer = model.create_optimizer()
    features, labels = LinearDemoInput().draw(torch.Generator().manual_seed(0))
    for _ in range(2):
        outputs = model.train_step(features, labels, optimizer)
    assert torch.isfinite(outputs.loss) and float(outputs.scalars["kl_loss"]) > -1e-6
    log = model.algo.log_info(model.algo.train_on_batch(model._training_batch(features, labels), 1))
    assert ("Gumbel_Temperature" in log) == prior.startswith("categorical")
    model.eval()
    export_saved_model(model, tmp_path, global_step=2)
    predictor = ExportedModelPredictor(tmp_path, timeout=0)
    assert predictor.restore()
    live = episode_actions(RolloutPolicy(model, seed=5), 3)
    np.testing.assert_allclose(
        episode_actions(RolloutPolicy(predictor, seed=5), 3), live, atol=1e-5
    )


def test_vae_config_sections_reach_the_vae_actor():
    """BC_VAE, BCQ and GL_VAE read their ``vae`` section through one mapping: every
    key it returns is a VAEActor argument, and a changed config value reaches the net."""
    import inspect

    from t2r.robomimic.vae_nets import VAEActor, annealed_gumbel_temperature, vae_args_from_config

    config = default_config("bc")
    config.algo.vae.latent_dim = 5
    config.algo.vae.prior.update(learn=True, use_gmm=True, gmm_num_modes=7)
    args = vae_args_from_config(config.algo.vae)
    assert set(args) <= set(inspect.signature(VAEActor.__init__).parameters)
    assert (args["latent_dim"], args["prior_gmm_num_modes"]) == (5, 7)
    sampler = default_config("bcq").algo.action_sampler.vae
    assert set(vae_args_from_config(sampler)) == set(args)
    prior = {
        "categorical_init_temp": 1.0,
        "categorical_temp_anneal_step": 0.1,
        "categorical_min_temp": 0.3,
    }
    assert annealed_gumbel_temperature(prior, 2) == pytest.approx(0.8)
    assert annealed_gumbel_temperature(prior, 20) == pytest.approx(0.3)


def test_bc_vae_anneals_the_gumbel_temperature_per_epoch():
    config = tiny_config("bc_vae")
    config.algo.vae.prior.update(
        use_categorical=True,
        categorical_dim=3,
        categorical_init_temp=1.0,
        categorical_temp_anneal_step=0.1,
        categorical_min_temp=0.3,
    )
    seed_everything(0)
    algo = algo_factory("bc", config, dict(LOW_DIM_SHAPES), AC_DIM)
    batch = _processed_batch(algo)
    for epoch, expected in ((2, 0.8), (20, 0.3)):
        log = algo.log_info(algo.train_on_batch(batch, epoch, validate=True))
        assert log["Gumbel_Temperature"] == pytest.approx(expected)


def test_vae_kl_to_the_unit_normal_is_the_closed_form():
    from t2r.robomimic.vae_nets import VAEActor

    seed_everything(0)
    algo = _algo("bc_vae")
    net: VAEActor = algo.nets["policy"]  # type: ignore[assignment]
    g = torch.Generator().manual_seed(0)
    mu, logvar = torch.randn(6, 4, generator=g), torch.randn(6, 4, generator=g)
    D = torch.distributions
    expected = D.kl_divergence(
        D.Independent(D.Normal(mu, (0.5 * logvar).exp()), 1),
        D.Independent(D.Normal(torch.zeros(4), torch.ones(4)), 1),
    ).mean()
    kl = net.kl_loss({"mean": mu, "logvar": logvar}, mu, {}, None)
    torch.testing.assert_close(kl, expected)


def test_torchrun_averages_the_policy_gradients(tmp_path):
    from tests.train.torchrun import run_two_processes

    run_two_processes("tests.robomimic.run_distributed", str(tmp_path))
    w0 = load_file(str(tmp_path / "weights_rank0.safetensors"))
    w1 = load_file(str(tmp_path / "weights_rank1.safetensors"))
    for name in w0:  # the ranks end bitwise equal
        assert torch.equal(w0[name], w1[name]), name
    # One process on both ranks' batches put together reaches the same weights.
    seed_everything(0)
    reference = AlgoModel(tiny_config("bc_rnn_gmm"), LOW_DIM_SHAPES, AC_DIM)
    train_eval_model(
        reference,
        LinearDemoInput(batch_size=4, seed=0, ranks=(0, 1)),
        max_train_steps=3,
        model_dir=tmp_path / "reference",
        show_progress=False,
        device="cpu",
    )
    for name, value in reference.state_dict().items():
        torch.testing.assert_close(w0[name], value, rtol=1e-5, atol=1e-6, msg=name)


def test_from_specs_reads_shapes_dtypes_and_the_action_dimension():
    from t2r import specs

    features = specs.TensorSpecStruct(
        {
            "obs/robot0_eef_pos": specs.ExtendedTensorSpec((SEQ, 3), torch.float32, name="a"),
            "obs/object": specs.ExtendedTensorSpec((4,), torch.float32, name="b", is_sequence=True),
            "obs/unused": specs.ExtendedTensorSpec((SEQ, 9), torch.float32, name="c"),
        }
    )
    labels = specs.TensorSpecStruct(actions=specs.ExtendedTensorSpec((SEQ, 5), torch.float32))
    model = AlgoModel.from_specs(tiny_config("bc"), features, labels)
    assert model.stored_shapes == {"object": (4,), "robot0_eef_pos": (3,)}
    assert model.ac_dim == 5


def test_image_normalization_stats_are_in_the_processed_layout():
    config = tiny_config("bc", image=True)
    config.train.hdf5_normalize_obs = True
    h, w, c = IMAGE_SHAPES["agentview_image"]
    offset = np.random.default_rng(0).random((1, c, h, w)).astype(np.float32)
    stats = {"agentview_image": {"offset": offset, "scale": np.full((1, c, h, w), 0.5, np.float32)}}
    model = AlgoModel(config, IMAGE_SHAPES, AC_DIM, obs_normalization_stats=stats)
    image = torch.randint(0, 256, (2, h, w, c), dtype=torch.uint8)
    processed = model.algo.process_obs_dict(
        {"agentview_image": image}, model.obs_normalization_stats()
    )["agentview_image"]
    expected = (image.permute(0, 3, 1, 2).float() / 255 - torch.from_numpy(offset)) / 0.5
    torch.testing.assert_close(processed, expected)


def test_open_loop_bc_rnn_acts_on_the_chunks_first_observation(tmp_path):
    config = tiny_config("bc_rnn")
    config.algo.rnn.open_loop = True
    seed_everything(0)
    model = AlgoModel(config, LOW_DIM_SHAPES, AC_DIM)
    _train(model, tmp_path / "m", 2)
    model.eval()
    algo = model.algo
    algo.reset()
    g = torch.Generator().manual_seed(0)
    obs = [
        {k: torch.randn(1, *s, generator=g) for k, s in LOW_DIM_SHAPES.items()} for _ in range(2)
    ]
    first = algo.get_action(obs[0])
    algo.reset()
    algo.get_action(obs[1])
    algo.reset()
    assert torch.equal(algo.get_action(obs[0]), first)
    # Within the chunk the observation is ignored: obs[1] acts like obs[0] would.
    second = algo.get_action(obs[1])
    algo.reset()
    algo.get_action(obs[0])
    torch.testing.assert_close(algo.get_action(obs[0]), second, rtol=0, atol=0)
    export_saved_model(model, tmp_path / "export", global_step=2)
    predictor = ExportedModelPredictor(tmp_path / "export", timeout=0)
    assert predictor.restore()
    live = episode_actions(RolloutPolicy(model, seed=0), 2 * SEQ)
    np.testing.assert_allclose(
        episode_actions(RolloutPolicy(predictor, seed=0), 2 * SEQ), live, atol=1e-5
    )


def test_gaussian_and_gmm_heads_follow_robomimics_formulas():
    import torch.nn.functional as F

    gaussian = _algo("bc_gaussian").nets["policy"]
    raw = {"mean": torch.tensor([[20.0, -0.3]]), "scale": torch.tensor([[-3.0, 40.0]])}
    params = gaussian.dist_params(raw)  # training mode
    torch.testing.assert_close(params["mean"], torch.tanh(raw["mean"].clamp(-9, 9)))
    expected_std = (F.softplus(raw["scale"]) * 0.1 / F.softplus(torch.zeros(1))).clamp(0.01, 7.5)
    torch.testing.assert_close(params["scale"], expected_std)
    gaussian.eval()  # low_noise_eval: the mean, std 1e-4
    assert torch.all(gaussian.dist_params(raw)["scale"] == 1e-4)
    assert gaussian.noise_shapes() == {}
    gmm = _algo("bc_gmm").nets["policy"]
    raw = {"mean": torch.randn(1, 3, 2), "scale": torch.randn(1, 3, 2), "logits": torch.randn(1, 3)}
    params = gmm.dist_params(raw)
    torch.testing.assert_close(params["scale"], F.softplus(raw["scale"]) + 1e-4)
    torch.testing.assert_close(params["mean"], torch.tanh(raw["mean"]))
    assert gmm.noise_shapes() == {"uniform": 1, "normal": AC_DIM}


@pytest.mark.parametrize("variant", ["bc", "bc_rnn_gmm", "bc_transformer"])
def test_goal_conditioned_policies_train_export_and_act_on_goals(variant, tmp_path):
    config = tiny_config(variant)
    config.observation.modalities.goal.low_dim = ["object"]
    seed_everything(0)
    model = AlgoModel(config, LOW_DIM_SHAPES, AC_DIM)
    spec = model.get_feature_specification_for_packing("train")
    assert spec["goal_obs/object"].shape == (4,) and not spec["goal_obs/object"].is_sequence
    features, labels = LinearDemoInput().draw(torch.Generator().manual_seed(0))
    features["goal_obs/object"] = torch.rand(8, 4)
    optimizer = model.create_optimizer()
    for _ in range(2):
        assert torch.isfinite(model.train_step(features, labels, optimizer).loss)
    model.eval()
    export_saved_model(model, tmp_path, global_step=2)
    predictor = ExportedModelPredictor(tmp_path, timeout=0)
    assert predictor.restore()
    env = ToyReachEnv()
    obs, _ = env.reset(seed=0)
    goals = [{"object": np.full(4, 0.5)}, {"object": np.full(4, -0.5)}]
    actions = {}
    for name, policy in (
        ("live", RolloutPolicy(model, seed=0)),
        ("export", RolloutPolicy(predictor, seed=0)),
    ):
        for i, goal in enumerate(goals):
            policy.start_episode()
            actions[name, i] = policy(obs, goal=goal)
    for i in range(2):
        np.testing.assert_allclose(actions["export", i], actions["live", i], atol=1e-5)
    assert not np.allclose(actions["live", 0], actions["live", 1])  # the goal is used


def test_depth_images_have_their_own_encoder_and_unsupported_cores_are_named():
    config = tiny_config("bc")
    config.observation.modalities.obs.depth = ["agentview_depth"]
    config.observation.encoder.depth.core_kwargs = {
        "feature_dimension": 6,
        "pool_class": "SpatialMeanPool",
        "pool_kwargs": {},
    }
    shapes = {**LOW_DIM_SHAPES, "agentview_depth": (16, 16, 1)}
    seed_everything(0)
    model = AlgoModel(config, shapes, AC_DIM)
    assert model.get_feature_specification("train")["obs/agentview_depth"].dtype == torch.float32
    encoder = model.algo.nets["policy"].encoder.nets["obs"]
    assert encoder.cores["agentview_depth"].nets[0].net.stem_conv.in_channels == 1
    assert encoder.feature_dim == 3 + 4 + 6
    depth = torch.rand(2, 16, 16, 1) * 3.0  # metres: not divided by 255
    processed = model.algo.process_obs_dict({"agentview_depth": depth})["agentview_depth"]
    torch.testing.assert_close(processed, depth.permute(0, 3, 1, 2))
    config.observation.encoder.depth.core_kwargs = {"backbone_kwargs": {"pretrained": True}}
    with pytest.raises(ValueError, match="pretrained=True needs ImageNet weights"):
        AlgoModel(config, shapes, AC_DIM)
    config.observation.encoder.depth.core_class = "ScanCore"
    with pytest.raises(
        ValueError, match=r"agentview_depth: core_class 'ScanCore' is not available"
    ):
        AlgoModel(config, shapes, AC_DIM)


@pytest.mark.parametrize("variant", ["bc_rnn_gmm", "bc_vae"])
def test_bf16_autocast_trains_with_a_float32_likelihood(variant):
    seed_everything(0)
    model = AlgoModel(tiny_config(variant), LOW_DIM_SHAPES, AC_DIM)
    features, labels = LinearDemoInput().draw(torch.Generator().manual_seed(0))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        outputs = model.train_step(features, labels, model.create_optimizer())
    assert outputs.loss.dtype == torch.float32 and torch.isfinite(outputs.loss)
    # Within bf16's precision of the float32 loss at the same weights.
    model.eval()
    with torch.no_grad():
        batch = model._training_batch(features, labels)
        torch.manual_seed(1)  # the VAE's posterior sample: the same noise for both
        fp32 = float(
            model.algo._compute_losses(model.algo._forward_training(batch), batch)["action_loss"]
        )
        torch.manual_seed(1)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            bf16 = float(
                model.algo._compute_losses(model.algo._forward_training(batch), batch)[
                    "action_loss"
                ]
            )
    assert bf16 == pytest.approx(fp32, rel=0.05, abs=0.05)


def test_transformer_supervising_all_steps_and_future_actions():
    config = tiny_config("bc_transformer_gmm")
    config.algo.transformer.supervise_all_steps = True
    config.algo.transformer.pred_future_acs = True
    seed_everything(0)
    algo = algo_factory("bc", config, LOW_DIM_SHAPES, AC_DIM)
    features, labels = LinearDemoInput(steps=2 * SEQ - 1).draw(torch.Generator().manual_seed(0))
    batch = {
        "obs": {k.split("/", 1)[1]: v for k, v in features.items()},
        "actions": labels["actions"],
    }
    processed = algo.process_batch_for_training(batch)
    # The window's observations 0..h-1 predict actions h-1..2h-2 (one per step).
    assert processed["obs"]["object"].shape[1] == SEQ
    torch.testing.assert_close(processed["actions"], labels["actions"][:, SEQ - 1 : 2 * SEQ - 1])
    info = algo.train_on_batch(processed, epoch=1)
    assert np.isfinite(algo.log_info(info)["Loss"])
    config.algo.transformer.supervise_all_steps = False
    with pytest.raises(ValueError, match="pred_future_acs needs transformer.supervise_all_steps"):
        algo_factory("bc", config, LOW_DIM_SHAPES, AC_DIM)
    short = {
        "obs": {k: v[:, :2] for k, v in batch["obs"].items()},
        "actions": batch["actions"][:, :2],
    }
    with pytest.raises(ValueError, match="fewer than transformer.context_length=3"):
        algo.process_batch_for_training(short)


def test_training_after_a_rollout_trains_in_train_mode():
    seed_everything(0)
    model = AlgoModel(tiny_config("bc_rnn_gmm"), LOW_DIM_SHAPES, AC_DIM).train()
    features, labels = LinearDemoInput().draw(torch.Generator().manual_seed(0))
    optimizer = model.create_optimizer()
    episode_actions(RolloutPolicy(model, seed=0), 2)  # start_episode: the Algo's nets in eval mode
    assert not model.nets.training
    model.train_step(features, labels, optimizer)
    assert model.nets.training


def test_a_checkpoint_predictor_serves_the_rollout_policy_too(tmp_path):
    from t2r.predictors import CheckpointPredictor

    seed_everything(0)
    model = AlgoModel(tiny_config("bc_rnn_gmm"), LOW_DIM_SHAPES, AC_DIM)
    _train(model, tmp_path, 2)
    predictor = CheckpointPredictor(
        AlgoModel(tiny_config("bc_rnn_gmm"), LOW_DIM_SHAPES, AC_DIM), tmp_path, timeout=0
    )
    assert predictor.restore()
    live = episode_actions(RolloutPolicy(model.eval(), seed=2), 2 * SEQ)
    np.testing.assert_allclose(
        episode_actions(RolloutPolicy(predictor, seed=2), 2 * SEQ), live, atol=1e-5
    )


def test_batched_observations_act_per_environment(tmp_path):
    seed_everything(0)
    model = AlgoModel(tiny_config("bc_rnn"), LOW_DIM_SHAPES, AC_DIM).eval()
    g = np.random.default_rng(0)
    steps = [{k: g.uniform(-1, 1, (3, *s)) for k, s in LOW_DIM_SHAPES.items()} for _ in range(4)]
    export_saved_model(model, tmp_path, global_step=0)
    predictor = ExportedModelPredictor(tmp_path, timeout=0)
    assert predictor.restore()
    for source in (model, predictor):
        policy = RolloutPolicy(source)
        policy.start_episode()
        batched = np.stack([policy(ob, batched_ob=True) for ob in steps])  # (T, 3, A)
        assert batched.shape == (4, 3, AC_DIM)
        for env in range(3):
            policy.start_episode()
            single = np.stack([policy({k: v[env] for k, v in ob.items()}) for ob in steps])
            np.testing.assert_allclose(batched[:, env], single, rtol=1e-5, atol=1e-6)


def test_rollout_policies_run_in_the_environment_rooms_gymnasium_env(tmp_path):
    """The seam with the environment room: RolloutPolicy (live and exported) drives
    run_rollout on a Gymnasium env made from env_args (observations ``{"flat": obs}``)."""
    from tests.needs import needs_module

    needs_module("gymnasium")
    from t2r.robomimic.envs import make_env_from_env_args
    from t2r.robomimic.rollouts import run_rollout

    config = tiny_config("bc_rnn_gmm")
    config.observation.modalities.obs.low_dim = ["flat"]
    seed_everything(0)
    model = AlgoModel(config, {"flat": (3,)}, 1).eval()  # Pendulum: obs (3,), torque (1,)
    export_saved_model(model, tmp_path, global_step=0)
    predictor = ExportedModelPredictor(tmp_path, timeout=0)
    assert predictor.restore()
    env_args = {"env_name": "Pendulum-v1", "type": 2, "env_kwargs": {}}
    results = []
    for source in (model, predictor):
        env = make_env_from_env_args(env_args)
        env.reset()
        results.append(run_rollout(RolloutPolicy(source, seed=0), env, horizon=5))
    assert results[0]["Horizon"] == 5 and np.isfinite(results[0]["Return"])


@pytest.mark.parametrize("variant", ["bc_rnn_gmm", "bc_transformer"])
def test_algo_model_trains_on_a_robomimic_hdf5_file(variant, tmp_path):
    """The seam with the data room: a file written by write_robomimic_hdf5, the
    RobomimicInputGenerator and AlgoModel.from_specs of its dataset's specs."""
    from tests.needs import needs_module

    needs_module("h5py")
    from t2r.robomimic.dataset import RobomimicInputGenerator
    from t2r.robomimic.hdf5 import Demo, write_robomimic_hdf5

    rng = np.random.default_rng(0)
    demos = []
    for _ in range(3):
        n = 12
        obs = {k: rng.uniform(-1, 1, (n, *s)) for k, s in LOW_DIM_SHAPES.items()}  # float64
        actions = np.tanh(obs["robot0_eef_pos"][:, :AC_DIM]).astype(np.float32)
        demos.append(Demo(obs=obs, actions=actions, rewards=np.zeros(n), dones=np.zeros(n)))
    path = write_robomimic_hdf5(
        tmp_path / "demos.hdf5", demos, env_args={"env_name": "Toy", "type": 2, "env_kwargs": {}}
    )
    config = tiny_config(variant)
    generator = RobomimicInputGenerator(
        path,
        obs_keys=sorted(LOW_DIM_SHAPES),
        batch_size=4,
        seq_length=config.train.seq_length,
        frame_stack=config.train.frame_stack,
        load_next_obs=False,
        seed=0,
    )
    seed_everything(0)
    model = AlgoModel.from_specs(config, *generator.dataset.specs())
    assert model.stored_shapes == {k: tuple(s) for k, s in LOW_DIM_SHAPES.items()}
    train_eval_model(
        model, generator, max_train_steps=3, model_dir=tmp_path / "m", show_progress=False
    )
    assert latest_checkpoint(tmp_path / "m").global_step == 3
    assert int(model.num_updates) == 3
