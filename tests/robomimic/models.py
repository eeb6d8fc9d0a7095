"""Tiny robomimic configs, data, an environment and AlgoModels for the tests.

The AlgoModel subclasses here take no arguments, so the model registry
(`t2r.testing.find_model_classes`) finds them and the model contract
(tests/test_model_contract.py) covers BC, BC-RNN-GMM, BC-Transformer-GMM and an
image BC policy.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from t2r import specs
from t2r.robomimic.config import Config, default_config
from t2r.robomimic.model import AlgoModel
from t2r.robomimic.rollout_policy import RolloutPolicy

LOW_DIM_SHAPES = {"robot0_eef_pos": (3,), "object": (4,)}
IMAGE_SHAPES = {**LOW_DIM_SHAPES, "agentview_image": (20, 20, 3)}
AC_DIM = 2
SEQ = 3  # the tiny configs' seq_length / frame_stack / rnn horizon / context length

VARIANTS = (
    "bc",
    "bc_gaussian",
    "bc_gmm",
    "bc_vae",
    "bc_rnn",
    "bc_rnn_gmm",
    "bc_transformer",
    "bc_transformer_gmm",
)


def tiny_config(variant: str = "bc", image: bool = False) -> Config:
    """A small BC config of `variant` (one of VARIANTS) on LOW_DIM_SHAPES (+ an image)."""
    config = default_config("bc")
    config.observation.modalities.obs.low_dim = list(LOW_DIM_SHAPES)
    if image:
        config.observation.modalities.obs.rgb = ["agentview_image"]
        config.observation.encoder.rgb.core_kwargs = {
            "feature_dimension": 8,
            "backbone_class": "ResNet18Conv",
            "backbone_kwargs": {"pretrained": False, "input_coord_conv": False},
            "pool_class": "SpatialSoftmax",
            "pool_kwargs": {"num_kp": 4, "learnable_temperature": False, "temperature": 1.0},
        }
        config.observation.encoder.rgb.obs_randomizer_class = "CropRandomizer"
        config.observation.encoder.rgb.obs_randomizer_kwargs = {
            "crop_height": 16,
            "crop_width": 16,
            "num_crops": 1,
            "pos_enc": False,
        }
    config.algo.actor_layer_dims = [16, 16]
    config.experiment.epoch_every_n_steps = 4
    config.train.seq_length = SEQ
    algo = config.algo
    if variant == "bc_gaussian":
        algo.gaussian.enabled = True
    elif variant in ("bc_gmm", "bc_rnn_gmm", "bc_transformer_gmm"):
        algo.gmm.enabled = True
        algo.gmm.num_modes = 3
    elif variant == "bc_vae":
        algo.vae.enabled = True
        algo.vae.latent_dim = 4
        algo.vae.encoder_layer_dims = [16]
        algo.vae.decoder_layer_dims = [16]
        algo.vae.prior_layer_dims = [16]
    if variant in ("bc_rnn", "bc_rnn_gmm"):
        algo.rnn.enabled = True
        algo.rnn.hidden_dim = 8
        algo.rnn.num_layers = 2
        algo.rnn.horizon = SEQ
        algo.actor_layer_dims = []
    if variant in ("bc_transformer", "bc_transformer_gmm"):
        algo.transformer.enabled = True
        algo.transformer.embed_dim = 16
        algo.transformer.num_layers = 1
        algo.transformer.num_heads = 2
        algo.transformer.context_length = SEQ
        config.train.frame_stack = SEQ
        config.train.seq_length = 1
    return config


class LinearDemoInput:
    """Endless seeded batches whose actions are a fixed linear map of the observations.

    features ``obs/<key>`` (B, T, *shape) float32 (images uint8), labels ``actions``
    (B, T, AC_DIM) = tanh(obs_flat @ W) so that every policy head can fit them.
    """

    def __init__(
        self,
        batch_size: int = 8,
        seed: int = 0,
        steps: int = SEQ,
        image: bool = False,
        ranks: tuple[int, ...] | None = None,
    ):
        """With `ranks`, each batch is the concatenation of what those torchrun ranks
        draw (rank r: seed + r); by default a process draws its own rank's batches."""
        self.batch_size, self.seed, self.steps, self.image = batch_size, seed, steps, image
        self.ranks = ranks
        weights = torch.Generator().manual_seed(1234)
        self.weights = torch.randn(7, AC_DIM, generator=weights) * 0.5

    def set_specification_from_model(self, t2r_model: Any, mode: str) -> None:
        pass

    def create_dataset(self, mode: str):
        ranks = self.ranks if self.ranks is not None else (int(os.environ.get("RANK", "0")),)
        generators = [torch.Generator().manual_seed(self.seed + r) for r in ranks]
        while True:
            parts = [self.draw(g) for g in generators]
            if len(parts) == 1:
                yield parts[0]
                continue
            features = specs.TensorSpecStruct(
                {k: torch.cat([p[0][k] for p in parts]) for k in parts[0][0]}
            )
            yield (
                features,
                specs.TensorSpecStruct(actions=torch.cat([p[1]["actions"] for p in parts])),
            )

    def draw(self, generator: torch.Generator):
        b, t = self.batch_size, self.steps
        pos = torch.rand(b, t, 3, generator=generator) * 2 - 1
        obj = torch.rand(b, t, 4, generator=generator) * 2 - 1
        actions = torch.tanh(torch.cat([pos, obj], dim=-1) @ self.weights)
        features = specs.TensorSpecStruct({"obs/robot0_eef_pos": pos, "obs/object": obj})
        if self.image:
            features["obs/agentview_image"] = torch.randint(
                0, 256, (b, t, *IMAGE_SHAPES["agentview_image"]), generator=generator
            ).to(torch.uint8)
        return features, specs.TensorSpecStruct(actions=actions)


# The offline RL variants of robomimic's test matrix (tests/test_bcq.py, test_cql.py,
# test_iql.py, test_td3_bc.py) that tiny_rl_config builds.
RL_VARIANTS = (
    "td3_bc",
    "iql",
    "iql_gmm",
    "iql_clip_adv",
    "cql",
    "cql_fixed_entropy",
    "cql_fixed_q_gap",
    "cql_fixed_std",
    "bcq",
    "bcq_no_actor",
    "bcq_distributional",
    "bcq_gmm",
    "bcq_vae_gmm_prior",
    "bcq_vae_categorical_prior",
)


def tiny_rl_config(variant: str) -> Config:
    """A small offline RL config of `variant` (one of RL_VARIANTS) on LOW_DIM_SHAPES."""
    algo_name = variant.split("_")[0] if variant.startswith(("iql", "cql", "bcq")) else variant
    config = default_config(algo_name)
    config.observation.modalities.obs.low_dim = list(LOW_DIM_SHAPES)
    config.experiment.epoch_every_n_steps = 4
    config.train.seq_length = 1
    config.train.hdf5_normalize_obs = False
    algo = config.algo
    algo.critic.layer_dims = [16, 16]
    algo.actor.layer_dims = [16, 16]
    if algo_name == "bcq":
        # robomimic's test_bcq.py base: the perturbation actor on, a VAE sampler.
        algo.actor.enabled = True
        algo.critic.num_action_samples = 3
        algo.critic.num_action_samples_rollout = 4
        sampler = algo.action_sampler
        sampler.actor_layer_dims = [16]
        sampler.vae.latent_dim = 3
        sampler.vae.encoder_layer_dims = [16]
        sampler.vae.decoder_layer_dims = [16]
        sampler.vae.prior_layer_dims = [16]
    if variant == "bcq_no_actor":
        algo.actor.enabled = False
    if variant == "bcq_distributional":
        algo.critic.distributional.enabled = True
        algo.critic.distributional.num_atoms = 11
        algo.critic.value_bounds = [-10.0, 10.0]
    if variant == "bcq_gmm":
        algo.action_sampler.gmm.enabled = True
        algo.action_sampler.gmm.num_modes = 3
        algo.action_sampler.vae.enabled = False
    if variant == "bcq_vae_gmm_prior":
        algo.action_sampler.vae.prior.update(
            {"learn": True, "is_conditioned": True, "use_gmm": True, "gmm_num_modes": 3}
        )
    if variant == "bcq_vae_categorical_prior":
        algo.action_sampler.vae.prior.update(
            {"learn": True, "use_categorical": True, "categorical_dim": 3}
        )
    if variant == "td3_bc":
        algo.actor.update_freq = 2
    if variant == "iql_gmm":
        algo.actor.net.type = "gmm"
        algo.actor.net.gmm.num_modes = 3
    if variant == "iql_clip_adv":
        algo.adv.clip_adv_value = 1.0
    if algo_name == "cql":
        # robomimic's test_cql.py base: BC for the first steps, both multipliers learned.
        algo.actor.bc_start_steps = 2
        algo.critic.num_random_actions = 3
    if variant == "cql_fixed_entropy":
        algo.actor.target_entropy = None
    if variant == "cql_fixed_q_gap":
        algo.critic.target_q_gap = None
        algo.critic.cql_weight = 1.0
    if variant == "cql_fixed_std":
        algo.actor.net.gaussian.fixed_std = True
    return config


class TransitionInput(LinearDemoInput):
    """LinearDemoInput's windows plus what offline RL reads: ``next_obs/<key>`` (the
    window shifted one step), labels ``rewards`` (B, T) = the negative distance of
    ``robot0_eef_pos`` to ``object[:3]`` and ``dones`` (B, T) (1 with probability 0.1)."""

    def draw(self, generator: torch.Generator):
        features, labels = super().draw(generator)
        b, t = self.batch_size, self.steps
        for key in list(features):
            if key.startswith("obs/"):
                value = features[key]
                step = torch.rand(value.shape[0], 1, *value.shape[2:], generator=generator) * 0.2
                shifted = torch.cat([value[:, 1:], value[:, -1:] + step], dim=1)
                features["next_" + key] = shifted
        pos, obj = features["obs/robot0_eef_pos"], features["obs/object"]
        labels["rewards"] = -(pos - obj[..., :3]).norm(dim=-1)
        labels["dones"] = (torch.rand(b, t, generator=generator) < 0.1).float()
        return features, labels


class ToyReachEnv:
    """A Gymnasium-API toy task: move ``robot0_eef_pos`` towards ``object[:3]``.

    ``reset(seed) -> (obs, info)``, ``step(action) -> (obs, reward, terminated,
    truncated, info)``; observations are float64 like robosuite's (and an image
    with `image`).
    """

    def __init__(self, image: bool = False, horizon: int = 20) -> None:
        self.image, self.horizon = image, horizon
        self._rng = np.random.default_rng(0)
        self._t = 0
        self._pos = np.zeros(3)
        self._obj = np.zeros(4)

    def _obs(self) -> dict[str, np.ndarray]:
        obs = {"robot0_eef_pos": self._pos.copy(), "object": self._obj.copy()}
        if self.image:
            obs["agentview_image"] = self._rng.integers(
                0, 256, IMAGE_SHAPES["agentview_image"], dtype=np.uint8
            )
        return obs

    def reset(self, seed: int | None = None) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        if seed is not None:
            self._rng = np.random.default_rng(seed)
        self._t = 0
        self._pos = self._rng.uniform(-1, 1, 3)
        self._obj = self._rng.uniform(-1, 1, 4)
        return self._obs(), {}

    def step(self, action: np.ndarray):
        action = np.asarray(action, dtype=np.float64)
        self._pos = np.clip(self._pos + 0.1 * np.resize(action, 3), -1, 1)
        self._t += 1
        distance = float(np.linalg.norm(self._pos - self._obj[:3]))
        terminated = distance < 0.1
        return self._obs(), -distance, terminated, self._t >= self.horizon, {}


class TinyBCModel(AlgoModel):
    def __init__(self) -> None:
        super().__init__(tiny_config("bc"), LOW_DIM_SHAPES, AC_DIM)


class TinyBCRNNGMMModel(AlgoModel):
    def __init__(self) -> None:
        super().__init__(tiny_config("bc_rnn_gmm"), LOW_DIM_SHAPES, AC_DIM)


class TinyBCTransformerGMMModel(AlgoModel):
    def __init__(self) -> None:
        super().__init__(tiny_config("bc_transformer_gmm"), LOW_DIM_SHAPES, AC_DIM)


class TinyImageBCModel(AlgoModel):
    def __init__(self) -> None:
        super().__init__(tiny_config("bc", image=True), IMAGE_SHAPES, AC_DIM)


# robomimic's tests/test_hbc.py and test_iris.py matrix, as behaviour.
HIERARCHICAL_VARIANTS = (
    "hbc",  # deterministic GL planner
    "hbc_vae_gmm_prior",  # GL_VAE with a learned GMM prior
    "hbc_cascade_random_subgoals",
    "iris",  # GL_VAE proposals, BCQ (VAE sampler) value
    "iris_bcq_gmm",  # BCQ with a GMM action sampler as the value
    "iris_distributional",  # BCQ with a distributional critic as the value
)


def episode_actions(policy: RolloutPolicy, steps: int, image: bool = False) -> np.ndarray:
    """The actions `policy` takes in `steps` steps of ToyReachEnv from seed 7."""
    env = ToyReachEnv(image=image)
    obs, _ = env.reset(seed=7)
    policy.start_episode()
    actions = []
    for _ in range(steps):
        action = policy(obs)
        actions.append(action)
        obs, _, _, _, _ = env.step(action)
    return np.stack(actions)


def _tiny_planner(planner: Config, vae: bool) -> None:
    planner.subgoal_horizon = SEQ
    planner.ae.planner_layer_dims = [16]
    planner.vae.enabled = vae
    planner.vae.latent_dim = 3
    planner.vae.encoder_layer_dims = [16]
    planner.vae.decoder_layer_dims = [16]
    planner.vae.prior_layer_dims = [16]


def _tiny_obs(observation: Config, subgoal: bool = False) -> None:
    observation.modalities.obs.low_dim = list(LOW_DIM_SHAPES)
    if subgoal:
        observation.modalities.subgoal.low_dim = list(LOW_DIM_SHAPES)


def tiny_hierarchical_config(variant: str) -> Config:
    """A small HBC / IRIS config of `variant` (one of HIERARCHICAL_VARIANTS) on LOW_DIM_SHAPES."""
    algo_name = variant.split("_")[0]
    config = default_config(algo_name)
    config.experiment.epoch_every_n_steps = 4
    config.train.seq_length = SEQ
    algo = config.algo
    algo.subgoal_update_interval = 2  # re-plans within the tests' short episodes
    actor = algo.actor
    actor.actor_layer_dims = []
    actor.rnn.hidden_dim = 8
    actor.rnn.num_layers = 2
    actor.rnn.horizon = SEQ
    _tiny_obs(config.observation.actor)
    if algo_name == "hbc":
        _tiny_planner(algo.planner, vae=variant != "hbc")
        _tiny_obs(config.observation.planner, subgoal=True)
        if variant == "hbc_vae_gmm_prior":
            algo.planner.vae.prior.update(
                {"learn": True, "is_conditioned": True, "use_gmm": True, "gmm_num_modes": 3}
            )
        if variant == "hbc_cascade_random_subgoals":
            algo.mode = "cascade"
            algo.actor_use_random_subgoals = True
        return config
    value_planner = algo.value_planner
    value_planner.num_samples = 4
    _tiny_planner(value_planner.planner, vae=True)
    _tiny_obs(config.observation.value_planner.planner, subgoal=True)
    _tiny_obs(config.observation.value_planner.value)
    value = value_planner.value
    value.critic.layer_dims = [16]
    value.critic.num_action_samples = 3
    value.critic.num_action_samples_rollout = 3
    sampler = value.action_sampler
    sampler.actor_layer_dims = [16]
    sampler.vae.latent_dim = 2
    sampler.vae.encoder_layer_dims = [16]
    sampler.vae.decoder_layer_dims = [16]
    sampler.vae.prior_layer_dims = [16]
    if variant == "iris_bcq_gmm":
        sampler.vae.enabled = False
        sampler.gmm.enabled = True
        sampler.gmm.num_modes = 3
    if variant == "iris_distributional":
        value.critic.distributional.enabled = True
        value.critic.distributional.num_atoms = 11
        value.critic.value_bounds = [-10.0, 10.0]
    return config


class TinyHBCModel(AlgoModel):
    def __init__(self) -> None:
        super().__init__(tiny_hierarchical_config("hbc_vae_gmm_prior"), LOW_DIM_SHAPES, AC_DIM)


class TinyIRISModel(AlgoModel):
    def __init__(self) -> None:
        super().__init__(tiny_hierarchical_config("iris"), LOW_DIM_SHAPES, AC_DIM)


def train_stopped_and_resumed(
    make: Callable[[], AlgoModel],
    train: Callable[[AlgoModel, Path, int], Any],
    tmp_path: Path,
    steps: int,
) -> tuple[AlgoModel, AlgoModel]:
    """`make()` trained `steps` steps in one go (in tmp_path/a), and again stopped after 2
    and resumed to `steps` from step 2's checkpoint (in tmp_path/b): (uninterrupted, resumed)."""
    uninterrupted = make()
    train(uninterrupted, tmp_path / "a", steps)
    train(make(), tmp_path / "b", 2)
    resumed = make()
    train(resumed, tmp_path / "b", steps)
    return uninterrupted, resumed
