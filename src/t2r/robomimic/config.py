"""robomimic's config tree as data: defaults per algorithm, JSON in, errors that name the key.

A robomimic user's JSON config (``algo_name``, ``experiment``, ``train``, ``algo``,
``observation``, ``meta``) is read unchanged by `load_config`: it is laid over the
defaults of its algorithm (the same keys and default values as robomimic 0.5's
``config/base_config.py`` and ``config/<algo>_config.py``), and a key the
defaults do not have is an error naming its full path
(``algo.rnn.hiden_dim``), except inside the sections robomimic leaves open
(``do_not_lock_keys``: the modality lists, encoder kwargs, RNN kwargs, the
learning-rate section, ``experiment.env_meta_update_dict``).

The result is a `Config`: nested plain dicts with attribute access
(``config.algo.rnn.hidden_dim``), no locking machinery. Defaults are
registered: ``bc``, ``bcq``, ``cql``, ``iql``, ``td3_bc``, ``gl``, ``hbc``, ``iris``
(``register_config_defaults`` adds more).

The hierarchical algorithms (``hbc``, ``iris``) nest their parts' sections as robomimic
does (``algo.planner``, ``algo.actor``, ``algo.value_planner.{planner,value}`` and the
same under ``observation``); `obs_keys_by_modality` and `all_obs_keys` pool them.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

__all__ = [
    "Config",
    "ConfigError",
    "all_obs_keys",
    "default_config",
    "load_config",
    "obs_keys_by_modality",
    "observation_parts",
    "register_config_defaults",
    "registered_config_names",
    "save_config",
    "use_goals",
]


class ConfigError(ValueError):
    """A config that robomimic's defaults do not accept; the message names the key path."""


class Config(dict[str, Any]):
    """A nested dict whose keys also read as attributes (``config.train.batch_size``).

    Values are plain JSON data; nested sections are `Config` too. Writing an
    attribute writes the key (``config.train.batch_size = 16``).
    """

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(f"config has no key {name!r} (has {sorted(self)})") from None

    def __setattr__(self, name: str, value: Any) -> None:
        self[name] = value

    def __deepcopy__(self, memo: dict[int, Any]) -> Config:
        return Config((k, copy.deepcopy(v, memo)) for k, v in self.items())

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dicts (JSON-ready)."""
        return _plain(self)


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return list(value)
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _as_config(value: Any) -> Any:
    if isinstance(value, Mapping):
        return Config((k, _as_config(v)) for k, v in value.items())
    return value


# ----------------------------------------------------------------- defaults


def _base_defaults(algo_name: str) -> dict[str, Any]:
    """robomimic 0.5 ``BaseConfig``: experiment, train, observation and meta sections."""
    rgb_encoder: dict[str, Any] = {
        "core_class": "VisualCore",
        "core_kwargs": {},
        "obs_randomizer_class": None,
        "obs_randomizer_kwargs": {},
    }
    return {
        "algo_name": algo_name,
        "experiment": {
            "name": "test",
            "validate": False,
            "logging": {
                "terminal_output_to_txt": True,
                "log_tb": True,
                "log_wandb": False,
                "wandb_proj_name": "debug",
            },
            "save": {
                "enabled": True,
                "every_n_seconds": None,
                "every_n_epochs": 50,
                "epochs": [],
                "on_best_validation": False,
                "on_best_rollout_return": False,
                "on_best_rollout_success_rate": True,
            },
            "epoch_every_n_steps": 100,
            "validation_epoch_every_n_steps": 10,
            "env": None,
            "additional_envs": None,
            "render": False,
            "render_video": True,
            "keep_all_videos": False,
            "video_skip": 5,
            "rollout": {
                "enabled": True,
                "n": 50,
                "horizon": 400,
                "rate": 50,
                "warmstart": 0,
                "terminate_on_success": True,
            },
            "env_meta_update_dict": {},
            "ckpt_path": None,
        },
        "train": {
            "data": None,
            "output_dir": f"../{algo_name}_trained_models",
            "normalize_weights_by_ds_size": False,
            "num_data_workers": 0,
            "hdf5_cache_mode": "all",
            "hdf5_use_swmr": True,
            "hdf5_load_next_obs": True,
            "hdf5_normalize_obs": False,
            "hdf5_filter_key": None,
            "hdf5_validation_filter_key": None,
            "seq_length": 1,
            "pad_seq_length": True,
            "frame_stack": 1,
            "pad_frame_stack": True,
            "dataset_keys": ["actions", "rewards", "dones"],
            "action_keys": ["actions"],
            "action_config": {"actions": {"normalization": None}},
            "goal_mode": None,
            "cuda": True,
            "batch_size": 100,
            "num_epochs": 2000,
            "seed": 1,
            "max_grad_norm": None,
        },
        "algo": {},
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
                    "depth": [],
                    "scan": [],
                },
                "goal": {"low_dim": [], "rgb": [], "depth": [], "scan": []},
            },
            "encoder": {
                "low_dim": {
                    "core_class": None,
                    "core_kwargs": {},
                    "obs_randomizer_class": None,
                    "obs_randomizer_kwargs": {},
                },
                "rgb": copy.deepcopy(rgb_encoder),
                "depth": copy.deepcopy(rgb_encoder),
                "scan": {**copy.deepcopy(rgb_encoder), "core_class": "ScanCore"},
            },
        },
        "meta": {"hp_base_config_file": None, "hp_keys": [], "hp_values": []},
    }


def _bc_defaults() -> dict[str, Any]:
    """robomimic 0.5 ``BCConfig``."""
    config = _base_defaults("bc")
    config["train"]["hdf5_load_next_obs"] = False
    config["algo"] = {
        "optim_params": {
            "policy": {
                "optimizer_type": "adam",
                "learning_rate": {
                    "initial": 1e-4,
                    "decay_factor": 0.1,
                    "epoch_schedule": [],
                    "scheduler_type": "multistep",
                },
                "regularization": {"L2": 0.0},
            }
        },
        "loss": {"l2_weight": 1.0, "l1_weight": 0.0, "cos_weight": 0.0},
        "actor_layer_dims": [1024, 1024],
        "gaussian": {
            "enabled": False,
            "fixed_std": False,
            "init_std": 0.1,
            "min_std": 0.01,
            "std_activation": "softplus",
            "low_noise_eval": True,
        },
        "gmm": {
            "enabled": False,
            "num_modes": 5,
            "min_std": 0.0001,
            "std_activation": "softplus",
            "low_noise_eval": True,
        },
        "vae": {
            "enabled": False,
            "latent_dim": 14,
            "latent_clip": None,
            "kl_weight": 1.0,
            "decoder": {"is_conditioned": True, "reconstruction_sum_across_elements": False},
            "prior": {
                "learn": False,
                "is_conditioned": False,
                "use_gmm": False,
                "gmm_num_modes": 10,
                "gmm_learn_weights": False,
                "use_categorical": False,
                "categorical_dim": 10,
                "categorical_gumbel_softmax_hard": False,
                "categorical_init_temp": 1.0,
                "categorical_temp_anneal_step": 0.001,
                "categorical_min_temp": 0.3,
            },
            "encoder_layer_dims": [300, 400],
            "decoder_layer_dims": [300, 400],
            "prior_layer_dims": [300, 400],
        },
        "rnn": {
            "enabled": False,
            "horizon": 10,
            "hidden_dim": 400,
            "rnn_type": "LSTM",
            "num_layers": 2,
            "open_loop": False,
            "kwargs": {"bidirectional": False},
        },
        "transformer": {
            "enabled": False,
            "context_length": 10,
            "embed_dim": 512,
            "num_layers": 6,
            "num_heads": 8,
            "emb_dropout": 0.1,
            "attn_dropout": 0.1,
            "block_output_dropout": 0.1,
            "sinusoidal_embedding": False,
            "activation": "gelu",
            "supervise_all_steps": False,
            "nn_parameter_for_timesteps": True,
            "pred_future_acs": False,
        },
    }
    return config


def _optim(lr: float, decay: float, epochs: bool = False) -> dict[str, Any]:
    """One network's ``optim_params`` entry (robomimic's RL configs spell out no
    optimizer_type or scheduler_type: Adam, multistep)."""
    params: dict[str, Any] = {
        "learning_rate": {"initial": lr, "decay_factor": decay, "epoch_schedule": []},
        "regularization": {"L2": 0.0},
    }
    if epochs:
        params["start_epoch"] = -1
        params["end_epoch"] = -1
    return params


def _td3_bc_defaults() -> dict[str, Any]:
    """robomimic 0.5 ``TD3_BCConfig`` (the paper's D4RL settings: flat gym observations,
    normalized, batch 256, 5000 steps per epoch)."""
    config = _base_defaults("td3_bc")
    experiment = config["experiment"]
    experiment["validate"] = False
    experiment["render_video"] = False
    experiment["save"]["every_n_epochs"] = 20
    experiment["save"]["on_best_rollout_return"] = True
    experiment["save"]["on_best_rollout_success_rate"] = False
    experiment["epoch_every_n_steps"] = 5000
    experiment["rollout"].update({"enabled": True, "n": 50, "horizon": 1000, "rate": 1})
    config["train"].update({"hdf5_normalize_obs": True, "batch_size": 256, "num_epochs": 200})
    config["algo"] = {
        "optim_params": {
            "critic": _optim(3e-4, 0.1, epochs=True),
            "actor": _optim(3e-4, 0.1, epochs=True),
        },
        "alpha": 2.5,
        "discount": 0.99,
        "n_step": 1,
        "target_tau": 0.005,
        "infinite_horizon": False,
        "critic": {
            "use_huber": False,
            "max_gradient_norm": None,
            "value_bounds": None,
            "ensemble": {"n": 2, "weight": 1.0},
            "layer_dims": [256, 256],
        },
        "actor": {"update_freq": 2, "noise_std": 0.2, "noise_clip": 0.5, "layer_dims": [256, 256]},
    }
    config["observation"]["modalities"]["obs"]["low_dim"] = ["flat"]
    return config


def _iql_defaults() -> dict[str, Any]:
    """robomimic 0.5 ``IQLConfig``."""
    config = _base_defaults("iql")
    config["algo"] = {
        "optim_params": {
            "critic": _optim(1e-4, 0.0),
            "vf": _optim(1e-4, 0.0),
            "actor": _optim(1e-4, 0.0),
        },
        "discount": 0.99,
        "target_tau": 0.01,
        "actor": {
            "net": {
                "type": "gaussian",
                "common": {"std_activation": "softplus", "low_noise_eval": True, "use_tanh": False},
                "gaussian": {"init_last_fc_weight": 0.001, "init_std": 0.3, "fixed_std": False},
                "gmm": {"num_modes": 5, "min_std": 0.0001},
            },
            "layer_dims": [300, 400],
            "max_gradient_norm": None,
        },
        "critic": {
            "ensemble": {"n": 2},
            "layer_dims": [300, 400],
            "use_huber": False,
            "max_gradient_norm": None,
        },
        "adv": {"clip_adv_value": None, "beta": 1.0, "use_final_clip": True},
        "vf_quantile": 0.9,
    }
    return config


def _cql_defaults() -> dict[str, Any]:
    """robomimic 0.5 ``CQLConfig``."""
    config = _base_defaults("cql")
    config["train"]["batch_size"] = 1024
    config["algo"] = {
        "optim_params": {"critic": _optim(1e-3, 0.0), "actor": _optim(3e-4, 0.0)},
        "discount": 0.99,
        "n_step": 1,
        "target_tau": 0.005,
        "actor": {
            "bc_start_steps": 0,
            "target_entropy": "default",
            "max_gradient_norm": None,
            "net": {
                "type": "gaussian",
                "common": {"std_activation": "exp", "use_tanh": True, "low_noise_eval": True},
                "gaussian": {"init_last_fc_weight": 0.001, "init_std": 0.3, "fixed_std": False},
            },
            "layer_dims": [300, 400],
        },
        "critic": {
            "use_huber": False,
            "max_gradient_norm": None,
            "value_bounds": None,
            "num_action_samples": 1,
            "cql_weight": 1.0,
            "deterministic_backup": True,
            "min_q_weight": 1.0,
            "target_q_gap": 5.0,
            "num_random_actions": 10,
            "ensemble": {"n": 2},
            "layer_dims": [300, 400],
        },
    }
    return config


def _bcq_defaults() -> dict[str, Any]:
    """robomimic 0.5 ``BCQConfig``: the action sampler section is BC's algo section
    (VAE enabled) without its optim_params, loss, gaussian, rnn and transformer parts."""
    config = _base_defaults("bcq")
    sampler = _bc_defaults()["algo"]
    for key in ("optim_params", "loss", "gaussian", "rnn", "transformer"):
        del sampler[key]
    sampler["vae"]["enabled"] = True
    sampler["freeze_encoder_epoch"] = -1
    config["algo"] = {
        "optim_params": {
            "critic": _optim(1e-3, 0.1, epochs=True),
            "action_sampler": _optim(1e-3, 0.1, epochs=True),
            "actor": _optim(1e-3, 0.1, epochs=True),
        },
        "discount": 0.99,
        "n_step": 1,
        "target_tau": 0.005,
        "infinite_horizon": False,
        "critic": {
            "use_huber": False,
            "max_gradient_norm": None,
            "value_bounds": None,
            "num_action_samples": 10,
            "num_action_samples_rollout": 100,
            "ensemble": {"n": 2, "weight": 0.75},
            "distributional": {"enabled": False, "num_atoms": 51},
            "layer_dims": [300, 400],
        },
        "action_sampler": sampler,
        "actor": {"enabled": False, "perturbation_scale": 0.05, "layer_dims": [300, 400]},
    }
    return config


def _gl_defaults() -> dict[str, Any]:
    """robomimic 0.5 ``GLConfig``: the subgoal planner (a VAE by default) and the
    ``subgoal`` observation group it predicts."""
    config = _base_defaults("gl")
    prior = {
        "learn": False,
        "is_conditioned": False,
        "use_gmm": False,
        "gmm_num_modes": 10,
        "gmm_learn_weights": False,
        "use_categorical": False,
        "categorical_dim": 10,
        "categorical_gumbel_softmax_hard": False,
        "categorical_init_temp": 1.0,
        "categorical_temp_anneal_step": 0.001,
        "categorical_min_temp": 0.3,
    }
    config["algo"] = {
        "optim_params": {"goal_network": _optim(1e-4, 0.1)},
        "subgoal_horizon": 10,
        "ae": {"planner_layer_dims": [300, 400]},
        "vae": {
            "enabled": True,
            "latent_dim": 16,
            "latent_clip": None,
            "kl_weight": 1.0,
            "decoder": {"is_conditioned": True, "reconstruction_sum_across_elements": False},
            "prior": prior,
            "encoder_layer_dims": [300, 400],
            "decoder_layer_dims": [300, 400],
            "prior_layer_dims": [300, 400],
        },
    }
    config["observation"]["modalities"]["subgoal"] = {
        "low_dim": ["robot0_eef_pos", "robot0_eef_quat", "robot0_gripper_qpos", "object"],
        "rgb": [],
        "depth": [],
        "scan": [],
    }
    return config


def _hierarchical_actor() -> dict[str, Any]:
    """HBC's / IRIS's low-level policy: BC's algo section, RNN on (horizon 10), without the
    Gaussian, GMM and VAE sections."""
    actor = _bc_defaults()["algo"]
    actor["rnn"]["enabled"] = True
    actor["rnn"]["horizon"] = 10
    for key in ("gaussian", "gmm", "vae"):
        del actor[key]
    return actor


def _subgoal_settings() -> dict[str, Any]:
    return {
        "mode": "separate",
        "actor_use_random_subgoals": False,
        "subgoal_update_interval": 10,
        "latent_subgoal": {
            "enabled": False,
            "prior_correction": {"enabled": False, "num_samples": 100},
        },
    }


def _hbc_defaults() -> dict[str, Any]:
    """robomimic 0.5 ``HBCConfig``: a GL planner (VAE, subgoal_horizon 10) and a BC-RNN
    actor, each with its own observation section; windows of 10 steps."""
    config = _base_defaults("hbc")
    config["train"]["seq_length"] = 10
    planner = _gl_defaults()
    config["algo"] = {
        **_subgoal_settings(),
        "planner": planner["algo"],
        "actor": _hierarchical_actor(),
    }
    config["observation"] = {
        "planner": planner["observation"],
        "actor": _bc_defaults()["observation"],
    }
    return config


def _iris_defaults() -> dict[str, Any]:
    """robomimic 0.5 ``IRISConfig``: HBC whose planner is a ValuePlanner (a GL VAE proposing
    ``num_samples`` subgoals, a BCQ value without actor choosing one)."""
    config = _base_defaults("iris")
    config["train"]["seq_length"] = 10
    planner = _gl_defaults()
    value = _bcq_defaults()
    value["algo"]["actor"]["enabled"] = False
    config["algo"] = {
        **_subgoal_settings(),
        "value_planner": {
            "planner": planner["algo"],
            "value": value["algo"],
            "num_samples": 100,
        },
        "actor": _hierarchical_actor(),
    }
    config["observation"] = {
        "value_planner": {"planner": planner["observation"], "value": value["observation"]},
        "actor": _bc_defaults()["observation"],
    }
    return config


_DEFAULTS: dict[str, Callable[[], dict[str, Any]]] = {
    "bc": _bc_defaults,
    "bcq": _bcq_defaults,
    "cql": _cql_defaults,
    "iql": _iql_defaults,
    "td3_bc": _td3_bc_defaults,
    "gl": _gl_defaults,
    "hbc": _hbc_defaults,
    "iris": _iris_defaults,
}

# Where the hierarchical configs nest an algorithm's ``algo`` / ``observation`` section.
_PART_PREFIXES: tuple[tuple[str, ...], ...] = (
    (),
    ("planner",),
    ("actor",),
    ("value_planner", "planner"),
    ("value_planner", "value"),
)

# Sections robomimic marks ``do_not_lock_keys``: any key may be added there.
# ``*`` matches one path component.
_OPEN_SECTIONS: tuple[tuple[str, ...], ...] = (
    ("experiment", "env_meta_update_dict"),
    ("train", "action_config"),
    *(
        ("algo", *prefix, *section)
        for prefix in _PART_PREFIXES
        for section in (("optim_params", "*", "learning_rate"), ("rnn", "kwargs"))
    ),
    *(
        ("observation", *prefix, *section)
        for prefix in _PART_PREFIXES
        for section in (
            ("modalities", "obs"),
            ("modalities", "goal"),
            ("modalities", "subgoal"),
            ("encoder",),
            ("encoder", "*", "core_kwargs"),
            ("encoder", "*", "obs_randomizer_kwargs"),
        )
    ),
)

# Keys whose value is free-form data (lists, dicts or None), not a section.
_VALUE_KEYS: tuple[tuple[str, ...], ...] = (
    ("train", "data"),
    ("experiment", "env"),
    ("experiment", "additional_envs"),
)


def register_config_defaults(algo_name: str, defaults: Callable[[], dict[str, Any]]) -> None:
    """Registers the default tree (a function returning fresh nested dicts) of `algo_name`."""
    _DEFAULTS[algo_name] = defaults


def registered_config_names() -> list[str]:
    return sorted(_DEFAULTS)


def default_config(algo_name: str) -> Config:
    """robomimic's default config of `algo_name` (a fresh copy)."""
    if algo_name not in _DEFAULTS:
        raise ConfigError(
            f"algo_name: no config for {algo_name!r}; registered: {registered_config_names()}."
        )
    return _as_config(_DEFAULTS[algo_name]())


def _matches(path: tuple[str, ...], patterns: Iterable[tuple[str, ...]]) -> bool:
    return any(
        len(p) == len(path) and all(a == "*" or a == b for a, b in zip(p, path)) for p in patterns
    )


def _merge(base: dict[str, Any], update: Mapping[str, Any], path: tuple[str, ...]) -> None:
    open_section = _matches(path, _OPEN_SECTIONS)
    for key, value in update.items():
        if not isinstance(key, str):
            raise ConfigError(f"{'.'.join(path) or '<root>'}: keys must be strings, got {key!r}.")
        where = path + (key,)
        dotted = ".".join(where)
        if key not in base:
            if not open_section:
                known = ", ".join(sorted(base))
                raise ConfigError(
                    f"Unknown config key {dotted!r} (robomimic's {'.'.join(path) or 'top level'} "
                    f"has: {known})."
                )
            base[key] = copy.deepcopy(_plain(value))
            continue
        default = base[key]
        if isinstance(default, dict) and not _matches(where, _VALUE_KEYS):
            if value is None and _matches(where, _OPEN_SECTIONS):
                base[key] = {}
                continue
            if not isinstance(value, Mapping):
                raise ConfigError(
                    f"Config key {dotted!r} is a section; got {type(value).__name__} {value!r}."
                )
            _merge(default, value, where)
        else:
            base[key] = copy.deepcopy(_plain(value))


def load_config(source: str | Path | Mapping[str, Any]) -> Config:
    """A robomimic config from a JSON file path or a dict, over its algorithm's defaults.

    Raises:
      ConfigError: naming the key path, for a key robomimic does not define, a
        section given a non-dict value, or an unknown ``algo_name``.
      FileNotFoundError / json.JSONDecodeError: for an unreadable file (the path is named).
    """
    if isinstance(source, Mapping):
        data: Any = source
        origin = "<dict>"
    else:
        origin = str(source)
        text = Path(source).read_text()
        try:
            data = json.loads(text)
        except json.JSONDecodeError as error:
            raise ConfigError(f"{origin}: not valid JSON: {error}") from error
    if not isinstance(data, Mapping):
        raise ConfigError(
            f"{origin}: a robomimic config is a JSON object, got {type(data).__name__}."
        )
    if "algo_name" not in data:
        raise ConfigError(f"{origin}: the config has no 'algo_name'.")
    config = _DEFAULTS.get(data["algo_name"])
    if config is None:
        raise ConfigError(
            f"{origin}: algo_name {data['algo_name']!r} has no registered config; registered: "
            f"{registered_config_names()}."
        )
    tree = config()
    try:
        _merge(tree, data, ())
    except ConfigError as error:
        raise ConfigError(f"{origin}: {error}") from None
    return _as_config(tree)


def save_config(config: Mapping[str, Any], path: str | Path) -> Path:
    """Writes `config` as robomimic JSON (atomically); `load_config` reads it back equal."""
    from t2r.atomic import atomic_write_text

    path = Path(path)
    atomic_write_text(path, json.dumps(_plain(config), indent=4) + "\n")
    return path


# ------------------------------------------------------------ derived values


def observation_parts(config: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    """The observation sections of a config by part: ``{"": observation}`` for a flat
    config, ``{"planner": ..., "actor": ...}`` for HBC, ``{"value_planner.planner": ...,
    "value_planner.value": ..., "actor": ...}`` for IRIS (each has ``modalities``)."""
    observation = config["observation"]
    if "modalities" in observation:
        return {"": observation}
    parts: dict[str, Mapping[str, Any]] = {}
    for prefix in _PART_PREFIXES[1:]:
        section: Any = observation
        for name in prefix:
            section = section.get(name) if isinstance(section, Mapping) else None
        if isinstance(section, Mapping) and "modalities" in section:
            parts[".".join(prefix)] = section
    if not parts:
        raise ConfigError(
            f"observation: no 'modalities' section (nor planner / actor / value_planner parts "
            f"that have one); has {sorted(observation)}."
        )
    return parts


def obs_keys_by_modality(config: Mapping[str, Any], group: str = "obs") -> dict[str, list[str]]:
    """``{modality: [obs keys]}`` of observation group `group` (``obs``, ``goal``,
    ``subgoal``).

    A hierarchical config (HBC, IRIS) pools its parts, in part order without repeats:
    ``obs`` is every part's ``obs`` and ``subgoal`` keys (the data must hold the subgoals
    the planner learns to predict), ``goal`` the planner's (and value's) goal keys: the
    actor's goal is the planner's subgoal, not data (robomimic's ``use_goals``).
    """
    parts = observation_parts(config)
    if "" in parts:
        modalities = parts[""]["modalities"].get(group) or {}
        return {modality: list(keys or []) for modality, keys in modalities.items()}
    groups = ("obs", "subgoal") if group == "obs" else (group,)
    pooled: dict[str, list[str]] = {}
    for part, section in parts.items():
        if group == "goal" and part == "actor":
            continue
        for name in groups:
            for modality, keys in (section["modalities"].get(name) or {}).items():
                bucket = pooled.setdefault(modality, [])
                bucket.extend(k for k in keys or [] if k not in bucket)
    return pooled


def all_obs_keys(config: Mapping[str, Any]) -> list[str]:
    """The sorted union of the observation keys of the ``obs``, ``goal`` and ``subgoal``
    groups (robomimic's ``config.all_obs_keys``)."""
    keys = {
        key
        for group in ("obs", "goal", "subgoal")
        for keys in obs_keys_by_modality(config, group).values()
        for key in keys
    }
    return sorted(keys)


def use_goals(config: Mapping[str, Any]) -> bool:
    """Whether the agent is goal-conditioned (any goal observation key)."""
    return any(obs_keys_by_modality(config, "goal").values())
