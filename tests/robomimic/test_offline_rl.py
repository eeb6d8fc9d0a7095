"""robomimic's offline RL family on t2r: configs, value learning with closed forms, exact
resume, exports and rollouts (robomimic's test matrix as behaviour)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from t2r.export import export_saved_model
from t2r.predictors import ExportedModelPredictor
from t2r.robomimic.algos import algo_factory, algo_name_to_factory_func
from t2r.robomimic.algos.critics import transition_batch
from t2r.robomimic.config import ConfigError, default_config, load_config
from t2r.robomimic.model import AlgoModel
from t2r.robomimic.rollout_policy import RolloutPolicy
from t2r.train import latest_checkpoint, seed_everything, train_eval_model

from .models import (
    AC_DIM,
    LOW_DIM_SHAPES,
    RL_VARIANTS,
    TransitionInput,
    episode_actions,
    tiny_rl_config,
    train_stopped_and_resumed,
)

TEMPLATES = Path(__file__).parent / "robomimic_templates"

CLASS_OF_VARIANT = {
    "td3_bc": "TD3_BC",
    "iql": "IQL",
    "iql_gmm": "IQL",
    "iql_clip_adv": "IQL",
    "cql": "CQL",
    "cql_fixed_entropy": "CQL",
    "cql_fixed_q_gap": "CQL",
    "cql_fixed_std": "CQL",
    "bcq": "BCQ",
    "bcq_no_actor": "BCQ",
    "bcq_distributional": "BCQ_Distributional",
    "bcq_gmm": "BCQ_GMM",
    "bcq_vae_gmm_prior": "BCQ",
    "bcq_vae_categorical_prior": "BCQ",
}


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# ------------------------------------------------------------------ configs


@pytest.mark.parametrize("algo_name", ["bc", "bcq", "cql", "iql", "td3_bc"])
def test_robomimics_config_templates_load_unchanged_and_are_the_defaults(algo_name):
    """robomimic's exps/templates/<algo>.json (commit d309eae), every key of the file."""
    path = TEMPLATES / f"{algo_name}.json"
    config = load_config(path)
    assert config.to_dict() == json.loads(path.read_text())
    assert config == default_config(algo_name)


def test_offline_rl_defaults_are_robomimics():
    td3 = default_config("td3_bc")
    assert td3.algo.alpha == 2.5 and td3.algo.actor.update_freq == 2
    assert td3.algo.actor.noise_std == 0.2 and td3.algo.actor.noise_clip == 0.5
    assert td3.train.batch_size == 256 and td3.train.hdf5_normalize_obs is True
    assert td3.observation.modalities.obs.low_dim == ["flat"]
    iql = default_config("iql")
    assert iql.algo.vf_quantile == 0.9 and iql.algo.target_tau == 0.01
    assert iql.algo.adv.beta == 1.0 and iql.algo.adv.use_final_clip is True
    assert iql.train.hdf5_load_next_obs is True
    cql = default_config("cql")
    assert cql.train.batch_size == 1024 and cql.algo.critic.target_q_gap == 5.0
    bcq = default_config("bcq")
    assert bcq.algo.action_sampler.vae.enabled and bcq.algo.critic.ensemble.weight == 0.75
    assert set(bcq.algo.action_sampler) == {
        "actor_layer_dims",
        "gmm",
        "vae",
        "freeze_encoder_epoch",
    }


def test_unknown_keys_in_offline_rl_configs_are_refused():
    with pytest.raises(ConfigError, match=r"'algo\.adv\.clip_adv'"):
        load_config({"algo_name": "iql", "algo": {"adv": {"clip_adv": 1.0}}})
    with pytest.raises(ConfigError, match=r"'algo\.critic\.ensemble\.size'"):
        load_config({"algo_name": "td3_bc", "algo": {"critic": {"ensemble": {"size": 3}}}})
    with pytest.raises(ConfigError, match=r"'algo\.action_sampler\.rnn'"):
        load_config({"algo_name": "bcq", "algo": {"action_sampler": {"rnn": {}}}})


@pytest.mark.parametrize("variant", RL_VARIANTS)
def test_the_config_selects_the_class(variant):
    config = tiny_rl_config(variant)
    cls, kwargs = algo_name_to_factory_func(config.algo_name)(config.algo)
    assert cls.__name__ == CLASS_OF_VARIANT[variant] and kwargs == {}


def test_an_unsupported_actor_type_is_named():
    config = tiny_rl_config("iql")
    config.algo.actor.net.type = "vae"
    with pytest.raises(ValueError, match=r"algo.actor.net.type 'vae' is not supported"):
        algo_factory("iql", config, LOW_DIM_SHAPES, AC_DIM)


# ------------------------------------------------------------- transitions


def test_n_step_transitions_discount_the_rewards_and_any_done_ends_them():
    batch = {
        "obs": {"x": torch.arange(6.0).reshape(2, 3, 1)},
        "next_obs": {"x": torch.arange(6.0).reshape(2, 3, 1) + 1},
        "actions": torch.zeros(2, 3, 1),
        "rewards": torch.tensor([[1.0, 2.0, 4.0], [1.0, 1.0, 1.0]]),
        "dones": torch.tensor([[0.0, 0.0, 1.0], [0.0, 1.0, 0.0]]),
    }
    one = transition_batch(batch, n_step=1, discount=0.5)
    torch.testing.assert_close(one["rewards"], torch.tensor([[1.0], [1.0]]))
    torch.testing.assert_close(one["dones"], torch.tensor([[0.0], [0.0]]))
    torch.testing.assert_close(one["next_obs"]["x"], torch.tensor([[1.0], [4.0]]))
    three = transition_batch(batch, n_step=3, discount=0.5)
    torch.testing.assert_close(three["rewards"], torch.tensor([[1 + 1 + 1.0], [1 + 0.5 + 0.25]]))
    torch.testing.assert_close(three["dones"], torch.tensor([[1.0], [1.0]]))
    torch.testing.assert_close(three["next_obs"]["x"], torch.tensor([[3.0], [6.0]]))
    scaled = transition_batch(batch, n_step=3, discount=0.5, infinite_horizon=True)
    torch.testing.assert_close(scaled["rewards"], three["rewards"] / (1 - 0.125))
    with pytest.raises(ValueError, match="n_step=4 needs windows of at least 4 steps"):
        transition_batch(batch, n_step=4)


# ------------------------------------------------- value learning, closed forms

GAMMA = 0.9
S0, S1 = torch.tensor([-0.5, 0.5, 0.0]), torch.tensor([0.5, -0.5, 0.0])
R1, R2 = 0.5, 1.0


def _chain_batch(batch_size: int, generator: torch.Generator) -> dict:
    """A two-step chain: s0 -(a, r1)-> s1 -(a, r2, done)-> end, with random actions.
    Q(s1, a) = r2 and Q(s0, a) = r1 + gamma r2 for every action, under any policy."""
    first = torch.rand(batch_size, generator=generator) < 0.5
    obs = torch.where(first[:, None], S0, S1)
    next_obs = torch.where(first[:, None], S1, S1)
    actions = torch.rand(batch_size, 1, AC_DIM, generator=generator) * 1.6 - 0.8
    obj = torch.zeros(batch_size, 1, 4)
    return {
        "obs": {"robot0_eef_pos": obs[:, None], "object": obj},
        "next_obs": {"robot0_eef_pos": next_obs[:, None], "object": obj},
        "actions": actions,
        "rewards": torch.where(first, R1, R2)[:, None],
        "dones": torch.where(first, 0.0, 1.0)[:, None],
    }


@pytest.mark.parametrize("variant", ["td3_bc", "iql", "cql", "bcq", "bcq_distributional"])
def test_q_learns_the_two_step_chains_returns(variant):
    seed_everything(0)
    config = tiny_rl_config(variant)
    config.algo.discount = GAMMA
    config.algo.target_tau = 0.05  # targets that follow within the run's 400 steps
    config.algo.critic.layer_dims = [32, 32]
    for net in config.algo.optim_params.values():
        net.learning_rate.initial = 3e-3
    if variant == "iql":
        config.algo.vf_quantile = 0.5  # V = E[Q]: the same closed form
    if variant == "cql":  # the TD part: a vanishing, fixed conservative weight
        config.algo.critic.target_q_gap = None
        config.algo.critic.cql_weight = 1e-6
    if variant == "bcq_distributional":  # atoms every 0.1: 1.0 and 1.45 are on the grid
        config.algo.critic.value_bounds = [0.0, 2.0]
        config.algo.critic.distributional.num_atoms = 21
    algo = algo_factory(config.algo_name, config, LOW_DIM_SHAPES, AC_DIM)
    algo.set_train()
    generator = torch.Generator().manual_seed(0)
    # 400 steps: every variant is within 0.012 of the closed form there (within 0.009
    # after 600, 0.016 after 300), against the 0.05 asserted.
    for _ in range(400):
        batch = algo.process_batch_for_training(_chain_batch(64, generator))
        algo.train_on_batch(batch, epoch=1)
    algo.set_eval()
    actions = torch.tensor([[-0.5, 0.5], [0.3, 0.1], [0.0, -0.7]])
    obj = torch.zeros(3, 4)
    with torch.no_grad():
        q1 = algo.get_state_action_value(
            {"robot0_eef_pos": S1.expand(3, 3), "object": obj}, actions
        )
        q0 = algo.get_state_action_value(
            {"robot0_eef_pos": S0.expand(3, 3), "object": obj}, actions
        )
    torch.testing.assert_close(q1, torch.full((3, 1), R2), atol=0.05, rtol=0)
    torch.testing.assert_close(q0, torch.full((3, 1), R1 + GAMMA * R2), atol=0.05, rtol=0)


def test_iql_expectile_value_is_the_upper_expectile_of_q():
    """V regresses min Q' with expectile tau: on one state whose actions have returns 0 and
    1 in equal shares, V -> tau (the tau-expectile of {0, 1} is tau)."""
    seed_everything(0)
    config = tiny_rl_config("iql")
    config.algo.vf_quantile = 0.8
    config.algo.optim_params.vf.learning_rate.initial = 3e-3
    config.algo.optim_params.critic.learning_rate.initial = 3e-3
    algo = algo_factory("iql", config, LOW_DIM_SHAPES, AC_DIM)
    algo.set_train()
    generator = torch.Generator().manual_seed(0)
    for _ in range(800):
        good = torch.rand(64, generator=generator) < 0.5
        actions = torch.where(good[:, None], torch.tensor([0.5, 0.5]), torch.tensor([-0.5, -0.5]))
        batch = {
            "obs": {"robot0_eef_pos": S0.expand(64, 1, 3), "object": torch.zeros(64, 1, 4)},
            "next_obs": {"robot0_eef_pos": S1.expand(64, 1, 3), "object": torch.zeros(64, 1, 4)},
            "actions": actions[:, None],
            "rewards": good.float()[:, None],
            "dones": torch.ones(64, 1),
        }
        info = algo.train_on_batch(algo.process_batch_for_training(batch), epoch=1)
    v = float(info["vf/v_pred"].detach().mean())
    assert v == pytest.approx(0.8, abs=0.05)
    # The advantage-weighted actor prefers the good action: exp(A) = exp(1 - 0.8) vs exp(-0.8).
    weights = info["adv/adv_weight"]
    rewards = batch["rewards"][:, 0]
    assert float(weights[rewards == 1].mean()) > 2.0 * float(weights[rewards == 0].mean())


def _one_state_batch(batch_size: int, generator: torch.Generator) -> dict:
    """One state, dataset actions near (0.5, 0.5), reward 1, done."""
    actions = 0.5 + 0.05 * torch.randn(batch_size, 1, AC_DIM, generator=generator)
    obs = {"robot0_eef_pos": S0.expand(batch_size, 1, 3), "object": torch.zeros(batch_size, 1, 4)}
    return {
        "obs": obs,
        "next_obs": obs,
        "actions": actions,
        "rewards": torch.ones(batch_size, 1),
        "dones": torch.ones(batch_size, 1),
    }


def _cql_after(steps: int, **critic) -> tuple:
    seed_everything(0)
    config = tiny_rl_config("cql")
    config.algo.critic.update(critic)
    config.algo.actor.bc_start_steps = 0
    config.algo.optim_params.critic.learning_rate.initial = 3e-3
    algo = algo_factory("cql", config, LOW_DIM_SHAPES, AC_DIM)
    algo.set_train()
    generator = torch.Generator().manual_seed(0)
    for _ in range(steps):
        info = algo.train_on_batch(
            algo.process_batch_for_training(_one_state_batch(64, generator)), epoch=1
        )
    obs = {"robot0_eef_pos": S0.expand(2, 3), "object": torch.zeros(2, 4)}
    with torch.no_grad():
        q = algo.get_state_action_value(obs, torch.tensor([[0.5, 0.5], [-0.8, -0.8]]))
    return algo, info, q[:, 0]


def test_cql_pushes_down_q_of_actions_the_data_does_not_take():
    _, _, q = _cql_after(300, target_q_gap=None, cql_weight=1.0)
    assert float(q[0]) > 0.5  # the data's action: about r (the penalty lifts it a little)
    assert float(q[1]) < float(q[0]) - 1.0  # far from the data: pushed well below
    _, _, q = _cql_after(300, target_q_gap=None, cql_weight=1e-6)
    assert abs(float(q[1]) - float(q[0])) < 1.0  # without the penalty: no such gap


def test_cql_lagrange_weight_follows_the_q_gap_and_alpha_the_target_entropy():
    """Dual ascent on log w: a gap below target_q_gap lowers w, one above raises it."""
    algo, info, _ = _cql_after(20, target_q_gap=100.0)
    assert float(info["critic/cql_weight"]) < 1.0
    algo, info, _ = _cql_after(20, target_q_gap=0.0, min_q_weight=10.0)
    assert float(info["critic/cql_weight"]) > 1.0
    assert "log_entropy_weight" in algo.nets and "log_cql_weight" in algo.nets
    assert float(info["entropy_weight"]) != 1.0  # alpha is learned
    fixed, info, _ = _cql_after(3, target_q_gap=None, cql_weight=2.0)
    assert "log_cql_weight" not in fixed.nets and "cql" not in fixed.optimizers
    assert float(info["critic/cql_weight"]) == pytest.approx(2.0)


def test_cql_with_a_fixed_entropy_keeps_alpha_at_one():
    seed_everything(0)
    config = tiny_rl_config("cql_fixed_entropy")
    algo = algo_factory("cql", config, LOW_DIM_SHAPES, AC_DIM)
    assert "log_entropy_weight" not in algo.nets and "entropy" not in algo.optimizers
    batch = algo.process_batch_for_training(_one_state_batch(8, torch.Generator().manual_seed(0)))
    for _ in range(3):
        info = algo.train_on_batch(batch, epoch=1)
    assert float(info["entropy_weight"]) == 1.0


def test_iql_advantage_weights_clip_as_robomimic():
    config = tiny_rl_config("iql_clip_adv")
    config.algo.adv.beta = 0.5
    algo = algo_factory("iql", config, LOW_DIM_SHAPES, AC_DIM)
    adv = torch.tensor([[-1.0], [0.5], [3.0]])
    expected = torch.exp(torch.tensor([-1.0, 0.5, 1.0]) / 0.5)  # clipped at 1.0
    torch.testing.assert_close(algo.advantage_weights(adv), expected)
    config.algo.adv.clip_adv_value = None
    algo = algo_factory("iql", config, LOW_DIM_SHAPES, AC_DIM)
    torch.testing.assert_close(  # the final clip: at most 100
        algo.advantage_weights(torch.tensor([[10.0]])), torch.tensor([100.0])
    )


def test_td3_bc_updates_the_actor_and_targets_every_update_freq_critic_steps():
    seed_everything(0)
    config = tiny_rl_config("td3_bc")
    config.algo.actor.update_freq = 3
    algo = algo_factory("td3_bc", config, LOW_DIM_SHAPES, AC_DIM)
    algo.set_train()
    generator = torch.Generator().manual_seed(0)
    actor_changed, target_changed = [], []
    for _ in range(6):
        actor = [p.clone() for p in algo.nets["actor"].parameters()]
        target = [p.clone() for p in algo.nets["critic_target"].parameters()]
        algo.train_on_batch(algo.process_batch_for_training(_chain_batch(8, generator)), epoch=1)
        actor_changed.append(
            any(not torch.equal(a, b) for a, b in zip(actor, algo.nets["actor"].parameters()))
        )
        target_changed.append(
            any(
                not torch.equal(a, b)
                for a, b in zip(target, algo.nets["critic_target"].parameters())
            )
        )
    assert actor_changed == [False, False, True, False, False, True]
    assert target_changed == actor_changed
    assert int(algo.counters.critic_updates) == 6


def test_start_and_end_epochs_gate_the_updates():
    config = tiny_rl_config("td3_bc")
    config.algo.optim_params.critic.start_epoch = 2
    config.algo.actor.update_freq = 1
    algo = algo_factory("td3_bc", config, LOW_DIM_SHAPES, AC_DIM)
    algo.set_train()
    batch = algo.process_batch_for_training(_chain_batch(8, torch.Generator().manual_seed(0)))
    critic = [p.clone() for p in algo.nets["critic"].parameters()]
    info = algo.train_on_batch(batch, epoch=1)
    assert all(torch.equal(a, b) for a, b in zip(critic, algo.nets["critic"].parameters()))
    assert "critic/critic1_grad_norms" not in info and "actor/grad_norms" in info
    info = algo.train_on_batch(batch, epoch=2)
    assert "critic/critic1_grad_norms" in info


def test_validate_updates_nothing():
    for variant in RL_VARIANTS:
        config = tiny_rl_config(variant)
        algo = algo_factory(config.algo_name, config, LOW_DIM_SHAPES, AC_DIM)
        before = {k: v.clone() for k, v in algo.nets.state_dict().items()}
        batch = algo.process_batch_for_training(_chain_batch(8, torch.Generator().manual_seed(0)))
        info = algo.train_on_batch(batch, epoch=1, validate=True)
        assert np.isfinite(algo.log_info(info)["Loss"]), variant
        for name, value in algo.nets.state_dict().items():
            assert torch.equal(before[name], value), (variant, name)


# --------------------------------------- AlgoModel: train, resume, export, roll out


def _train(model, model_dir, steps):
    return train_eval_model(
        model,
        TransitionInput(steps=1),
        max_train_steps=steps,
        model_dir=model_dir,
        save_checkpoints_steps=2,
        show_progress=False,
        device="cpu",
    )


@pytest.mark.parametrize("variant", RL_VARIANTS)
def test_every_offline_rl_variant_trains_resumes_exports_and_rolls_out(variant, tmp_path):
    def make() -> AlgoModel:
        seed_everything(0)
        return AlgoModel(tiny_rl_config(variant), LOW_DIM_SHAPES, AC_DIM)

    uninterrupted, resumed = train_stopped_and_resumed(make, _train, tmp_path, 6)
    assert latest_checkpoint(tmp_path / "b").global_step == 6
    state = uninterrupted.state_dict()
    assert any("critic_target" in name for name in state)
    for name, value in state.items():
        assert torch.equal(value, resumed.state_dict()[name]), name
    saved_a = load_file(str(latest_checkpoint(tmp_path / "a").path / "optimizer.safetensors"))
    saved_b = load_file(str(latest_checkpoint(tmp_path / "b").path / "optimizer.safetensors"))
    assert saved_a.keys() == saved_b.keys()
    optimizers = set(uninterrupted.algo.optimizers)
    critics = len(uninterrupted.algo.nets["critic"])  # type: ignore[arg-type]
    assert {f"critic{i}" for i in range(critics)} <= optimizers  # one per ensemble member
    for net in optimizers:  # every optimizer is checkpointed (CQL's multipliers' too)
        assert any(net in key for key in saved_a), net
    for name, value in saved_a.items():
        assert torch.equal(value, saved_b[name]), name
    assert int(resumed.num_updates) == 6

    model = uninterrupted.eval()
    export_saved_model(model, tmp_path / "export", global_step=6)
    predictor = ExportedModelPredictor(tmp_path / "export", timeout=0)
    assert predictor.restore()
    live = episode_actions(RolloutPolicy(model, seed=3), 5)
    exported = episode_actions(RolloutPolicy(predictor, seed=3), 5)
    assert live.shape == (5, AC_DIM) and np.isfinite(live).all()
    np.testing.assert_allclose(exported, live, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(
        episode_actions(RolloutPolicy(model.algo, seed=3), 5), live, rtol=0, atol=0
    )


def test_target_networks_stay_in_eval_mode_while_training():
    seed_everything(0)
    model = AlgoModel(tiny_rl_config("td3_bc"), LOW_DIM_SHAPES, AC_DIM).train()
    features, labels = TransitionInput(steps=1).draw(torch.Generator().manual_seed(0))
    outputs = model.train_step(features, labels, model.create_optimizer())
    assert torch.isfinite(outputs.loss)
    assert "critic/critic1_loss" in outputs.scalars and "actor/loss" in outputs.scalars
    assert model.nets["critic"].training and model.nets["actor"].training
    assert not model.nets["critic_target"].training and not model.nets["actor_target"].training


def test_offline_rl_trains_on_a_robomimic_hdf5_file_with_next_obs_rewards_and_dones(tmp_path):
    from tests.needs import needs_module

    needs_module("h5py")
    from t2r.robomimic.dataset import RobomimicInputGenerator
    from t2r.robomimic.hdf5 import Demo, write_robomimic_hdf5

    rng = np.random.default_rng(0)
    demos = []
    for _ in range(3):
        n = 12
        obs = {k: rng.uniform(-1, 1, (n, *s)) for k, s in LOW_DIM_SHAPES.items()}
        actions = np.tanh(obs["robot0_eef_pos"][:, :AC_DIM]).astype(np.float32)
        rewards = np.zeros(n)
        rewards[-1] = 1.0
        dones = np.zeros(n)
        dones[-1] = 1.0
        demos.append(Demo(obs=obs, actions=actions, rewards=rewards, dones=dones))
    path = write_robomimic_hdf5(
        tmp_path / "demos.hdf5", demos, env_args={"env_name": "Toy", "type": 2, "env_kwargs": {}}
    )
    config = tiny_rl_config("iql")
    generator = RobomimicInputGenerator(
        path, obs_keys=sorted(LOW_DIM_SHAPES), batch_size=4, load_next_obs=True, seed=0
    )
    seed_everything(0)
    model = AlgoModel.from_specs(config, *generator.dataset.specs())
    train_eval_model(
        model, generator, max_train_steps=3, model_dir=tmp_path / "m", show_progress=False
    )
    assert int(model.num_updates) == 3
