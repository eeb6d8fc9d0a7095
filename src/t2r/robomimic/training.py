"""``t2r robomimic train`` and ``eval``: robomimic's train.py and run_trained_agent.py on t2r.

`train` reads a robomimic JSON config as it is and drives the algorithm
(`t2r.robomimic.model.AlgoModel`) through `t2r.train.train_eval_model`; what
robomimic's loop does around the updates is done by `RobomimicRunHook`:

* epochs of ``experiment.epoch_every_n_steps`` updates (a checkpoint, t2r's,
  at the end of each: rerunning the command resumes from the newest);
* validation on ``train.hdf5_validation_filter_key`` (``experiment.validate``) for
  ``experiment.validation_epoch_every_n_steps`` batches each epoch; the best is
  exported to ``export/best_validation``;
* rollouts every ``experiment.rollout.rate`` epochs (after ``warmstart``) in the
  environment the dataset's ``env_args`` describe: ``rollout.n`` episodes of at most
  ``rollout.horizon`` steps, success rate and return to TensorBoard
  (``<output_dir>/rollout``) and to ``rollouts.json``; the best success rate is
  exported to ``export/best_success`` (ties: the higher return);
* TensorBoard summaries of the losses (``<output_dir>``) and validation
  (``<output_dir>/eval``), a progress bar; the final weights are exported to
  ``export/latest``.

Every export carries the dataset's ``env_args`` and the config in its metadata, so
`evaluate_checkpoint` (``t2r robomimic eval``) rebuilds the environment and runs
the export through `RolloutPolicy` without algorithm code.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import math
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from t2r.atomic import atomic_write_text
from t2r.robomimic.rollouts import rollout_with_stats
from t2r.train.hooks import Hook, HookBuilder

logger = logging.getLogger(__name__)

__all__ = [
    "RUN_FILENAME",
    "ModelAndInputs",
    "RobomimicRunHook",
    "TrainSummary",
    "build_model_and_inputs",
    "evaluate_checkpoint",
    "find_export_version",
    "train",
]

RUN_FILENAME = "robomimic_run.json"
ROLLOUTS_FILENAME = "rollouts.json"
EXPORT_SUBDIR = "export"
BEST_SUCCESS = "best_success"
BEST_VALIDATION = "best_validation"
LATEST = "latest"


class RunError(ValueError):
    """A config, dataset or output directory that cannot make this run."""


@dataclasses.dataclass
class TrainSummary:
    """What `train` did."""

    output_dir: str
    global_step: int
    epochs: int
    best_success_rate: float | None
    best_validation_loss: float | None
    rollouts: list[dict[str, Any]]
    seconds: float
    exports: dict[str, str]


# ------------------------------------------------------------------------------- config


def _dataset_path(config: Mapping[str, Any], dataset: str | os.PathLike[str] | None) -> str:
    """`dataset`, else ``train.data`` (a path, or robomimic 0.5's ``[{"path": ...}]``)."""
    if dataset is not None:
        return os.fspath(dataset)
    data = config["train"].get("data")
    if isinstance(data, str) and data:
        return os.path.expanduser(data)
    if isinstance(data, Sequence) and len(data) == 1 and isinstance(data[0], Mapping):
        return os.path.expanduser(str(data[0]["path"]))
    if isinstance(data, Sequence) and len(data) > 1:
        raise RunError(
            f"train.data names {len(data)} datasets; this trainer reads one (pass --dataset)."
        )
    raise RunError("No dataset: pass --dataset or set train.data in the config.")


def _set_dataset(config: Any, path: str) -> None:
    data = config["train"].get("data")
    if isinstance(data, Sequence) and not isinstance(data, str) and len(data) == 1:
        entry = dict(data[0])
        entry["path"] = path
        config["train"]["data"] = [entry]
    else:
        config["train"]["data"] = path


def _output_dir(config: Mapping[str, Any], output_dir: str | os.PathLike[str] | None) -> Path:
    """`output_dir`, else ``train.output_dir/experiment.name`` (no time stamp: a rerun
    of the same config finds its run and resumes it)."""
    if output_dir is not None:
        return Path(output_dir)
    return Path(os.path.expanduser(str(config["train"]["output_dir"]))) / str(
        config["experiment"]["name"]
    )


def _plain_json(value: Any) -> Any:
    return json.loads(json.dumps(value))


def _record_run(path: Path, record: dict[str, Any]) -> None:
    """Writes the run record, or checks a rerun uses the same config and dataset."""
    file = path / RUN_FILENAME
    if file.exists():
        previous = json.loads(file.read_text(encoding="utf-8"))
        if previous.get("dataset") != record["dataset"]:
            raise RunError(
                f"{path} holds a run on another dataset ({previous.get('dataset')}, see {file}); "
                "use another --output_dir."
            )
        changed = _changed_keys(previous.get("config") or {}, record["config"])
        changed = [k for k in changed if not k.startswith(_MAY_CHANGE_ON_RESUME)]
        if changed:
            raise RunError(
                f"{path} holds a run with another config ({file}: {', '.join(changed)} differ); "
                "a rerun resumes only with the same config (train.num_epochs and the rollout "
                "and video settings may change): use another --output_dir."
            )
    path.mkdir(parents=True, exist_ok=True)
    atomic_write_text(file, json.dumps(record, indent=2, sort_keys=True))


# What a resumed run may change: how long it trains, and how (often) it is rolled out.
_MAY_CHANGE_ON_RESUME = (
    "train.num_epochs",
    "experiment.rollout.",
    "experiment.render_video",
    "experiment.keep_all_videos",
    "experiment.video_skip",
)


def _changed_keys(a: Any, b: Any, prefix: str = "") -> list[str]:
    """Dotted paths where two JSON trees differ."""
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        keys = sorted(set(a) | set(b))
        return [
            path
            for k in keys
            for path in _changed_keys(a.get(k), b.get(k), f"{prefix}{k}." if prefix or k else k)
        ]
    return [] if a == b else [prefix.rstrip(".")]


def read_run_record(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The ``robomimic_run.json`` in `path` or the nearest directory above it."""
    for directory in [Path(path), *Path(path).resolve().parents]:
        file = directory / RUN_FILENAME
        if file.is_file():
            return dict(json.loads(file.read_text(encoding="utf-8")))
    return None


# ----------------------------------------------------------------------------- the hook


class RobomimicRunHook(Hook):
    """robomimic's per-epoch work around `train_eval_model`'s updates (see the module doc).

    Called at each checkpoint (one per epoch): logs the epoch, runs the rollouts
    that are due and exports on a new best success rate; after each validation:
    exports on a new best validation loss; at the end: exports the final weights.
    The best values so far are read back from the exports, so a resumed run goes
    on comparing against them.
    """

    def __init__(
        self,
        model: Any,
        output_dir: str | os.PathLike[str],
        config: Mapping[str, Any],
        env_args: Mapping[str, Any],
        steps_per_epoch: int,
        max_train_steps: int,
        make_env: Any = None,
    ) -> None:
        self.model = model
        self.output_dir = Path(output_dir)
        self.config = config
        self.env_args = dict(env_args)
        self.steps_per_epoch = int(steps_per_epoch)
        self.max_train_steps = int(max_train_steps)
        self._make_env = make_env
        self._env: Any = None
        experiment = config["experiment"]
        self.rollout = dict(experiment.get("rollout") or {})
        self.render_video = bool(experiment.get("render_video"))
        self.keep_all_videos = bool(experiment.get("keep_all_videos"))
        self.video_skip = int(experiment.get("video_skip") or 5)
        self.seed = int(config["train"].get("seed") or 0)
        self.history: list[dict[str, Any]] = []
        self.best_success: tuple[float, float] | None = None  # (success rate, return)
        self.best_validation: float | None = None
        self._last_export_step = -1
        self._epoch_start = time.perf_counter()
        self._writer: Any = None

    # -- state across restarts ---------------------------------------------------------------

    def begin(self, global_step: int) -> None:
        rollouts = self.output_dir / ROLLOUTS_FILENAME
        if rollouts.is_file():
            self.history = [
                r
                for r in json.loads(rollouts.read_text(encoding="utf-8"))
                if int(r["step"]) <= global_step
            ]
        self.best_success = self._best_from_export(BEST_SUCCESS, ("Success_Rate", "Return"))
        best_validation = self._best_from_export(BEST_VALIDATION, ("loss",))
        self.best_validation = None if best_validation is None else best_validation[0]
        self._epoch_start = time.perf_counter()

    def _best_from_export(self, name: str, keys: Sequence[str]) -> Any:
        from t2r.export import latest_version

        newest = latest_version(self.output_dir / EXPORT_SUBDIR / name)
        if newest is None:
            return None
        metrics = (newest.load_assets().metadata or {}).get("eval_metrics") or {}
        if not all(k in metrics for k in keys):
            return None
        values = tuple(float(metrics[k]) for k in keys)
        return values if len(values) > 1 else (values[0],)

    # -- exports -----------------------------------------------------------------------------

    def _export(self, name: str, step: int, metrics: Mapping[str, float] | None) -> Path:
        from t2r.export import export_saved_model

        was_training = self.model.training
        try:
            path = export_saved_model(
                self.model,
                self.output_dir / EXPORT_SUBDIR / name,
                global_step=step,
                exports_to_keep=1,
                metadata={
                    "exporter": name,
                    "eval_metrics": None if metrics is None else dict(metrics),
                    "robomimic": {"env_args": self.env_args, "config": _plain_json(self.config)},
                },
            )
        finally:
            self.model.train(was_training)
        logger.info("Exported %s at step %d to %s.", name, step, path)
        return path

    # -- loop callbacks ----------------------------------------------------------------------

    def after_eval(self, global_step: int, metrics: dict[str, float]) -> None:
        loss = metrics.get("loss")
        if loss is None or not math.isfinite(loss):
            return
        if self.best_validation is None or loss < self.best_validation:
            self.best_validation = float(loss)
            self._export(BEST_VALIDATION, global_step, {"loss": float(loss)})

    def after_checkpoint(self, checkpoint: Any) -> None:
        step = int(checkpoint.global_step)
        if step % self.steps_per_epoch and step != self.max_train_steps:
            return
        epoch = math.ceil(step / self.steps_per_epoch)
        elapsed = time.perf_counter() - self._epoch_start
        logger.info("Epoch %d done (step %d, %.1f s).", epoch, step, elapsed)
        if self._rollout_due(epoch, step):
            self._rollouts(epoch, step)
        self._epoch_start = time.perf_counter()

    def end(self, global_step: int) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        if self._env is not None:
            self._env.close()
            self._env = None

    def export_final(self, global_step: int) -> Path:
        """Exports the weights at `global_step` to ``export/latest``."""
        return self._export(LATEST, global_step, None)

    # -- rollouts ----------------------------------------------------------------------------

    def _rollout_due(self, epoch: int, step: int) -> bool:
        if not self.rollout.get("enabled"):
            return False
        if any(int(r["step"]) == step for r in self.history):
            return False  # done before a restart
        rate = int(self.rollout.get("rate") or 1)
        warmstart = int(self.rollout.get("warmstart") or 0)
        return epoch > warmstart and (epoch % rate == 0 or step == self.max_train_steps)

    def _environment(self) -> Any:
        if self._env is None:
            from t2r.robomimic.envs import make_env_from_env_args

            make = self._make_env or make_env_from_env_args
            self._env = make(
                self.env_args,
                render_offscreen=self.render_video,
                use_image_obs=_uses_images(self.config),
            )
        return self._env

    def _rollouts(self, epoch: int, step: int) -> None:
        from t2r.robomimic.rollout_policy import RolloutPolicy
        from t2r.train.summaries import MetricsWriter

        video = None
        if self.render_video:
            videos = self.output_dir / "videos"
            videos.mkdir(parents=True, exist_ok=True)
            video = videos / f"{self.env_args['env_name']}_epoch_{epoch}.mp4"
        policy = RolloutPolicy(self.model, seed=self.seed)
        was_training = self.model.training
        start = time.perf_counter()
        try:
            stats = rollout_with_stats(
                policy,
                self._environment(),
                horizon=int(self.rollout.get("horizon") or 400),
                num_episodes=int(self.rollout.get("n") or 1),
                video_path=video,
                video_skip=self.video_skip,
                terminate_on_success=bool(self.rollout.get("terminate_on_success")),
                seed=self.seed,
            )
        finally:
            self.model.train(was_training)  # recurses into algo.nets, a registered submodule
        seconds = time.perf_counter() - start
        stats.pop("episodes")
        record = {"epoch": epoch, "step": step, "seconds": seconds, **stats}
        self.history.append(record)
        atomic_write_text(
            self.output_dir / ROLLOUTS_FILENAME, json.dumps(self.history, indent=2) + "\n"
        )
        if self._writer is None:
            self._writer = MetricsWriter(self.output_dir / "rollout")
        self._writer.write(step, {k: v for k, v in stats.items() if isinstance(v, float)})
        logger.info(
            "Rollouts at epoch %d: success rate %.3f, return %.3f, horizon %.1f (%d episodes, "
            "%.1f s).",
            epoch,
            stats["Success_Rate"],
            stats["Return"],
            stats["Horizon"],
            int(stats["Num_Episodes"]),
            seconds,
        )
        if video is not None and not self.keep_all_videos:
            for old in video.parent.glob(f"{self.env_args['env_name']}_epoch_*.mp4"):
                if old != video:
                    old.unlink(missing_ok=True)
        score = (float(stats["Success_Rate"]), float(stats["Return"]))
        if self.best_success is None or score > self.best_success:
            self.best_success = score
            self._export(BEST_SUCCESS, step, {"Success_Rate": score[0], "Return": score[1]})


class _RunHookBuilder(HookBuilder):
    def __init__(self, hook: RobomimicRunHook) -> None:
        self.hook = hook

    def create_hooks(self, t2r_model: Any, model_dir: str | os.PathLike[str]) -> list[Hook]:
        return [self.hook]


def _uses_images(config: Mapping[str, Any]) -> bool:
    from t2r.robomimic.config import obs_keys_by_modality

    return any(
        keys
        for group in ("obs", "goal")
        for modality, keys in obs_keys_by_modality(config, group).items()
        if modality in ("rgb", "depth")
    )


# ---------------------------------------------------------------------------------- train


def _input_generator(
    config: Mapping[str, Any], dataset: str, filter_key: str | None, obs_keys: list[str]
) -> Any:
    from t2r.robomimic.config import obs_keys_by_modality
    from t2r.robomimic.dataset import RobomimicInputGenerator

    train_cfg = config["train"]
    modalities = {
        key: modality
        for group in ("obs", "goal")
        for modality, keys in obs_keys_by_modality(config, group).items()
        for key in keys
    }
    return RobomimicInputGenerator(
        dataset,
        obs_keys=obs_keys,
        dataset_keys=list(train_cfg.get("dataset_keys") or ["actions"]),
        batch_size=int(train_cfg["batch_size"]),
        frame_stack=int(train_cfg.get("frame_stack") or 1),
        seq_length=int(train_cfg.get("seq_length") or 1),
        pad_frame_stack=bool(train_cfg.get("pad_frame_stack", True)),
        pad_seq_length=bool(train_cfg.get("pad_seq_length", True)),
        get_pad_mask=False,
        goal_mode=train_cfg.get("goal_mode"),
        hdf5_cache_mode=train_cfg.get("hdf5_cache_mode"),
        hdf5_use_swmr=bool(train_cfg.get("hdf5_use_swmr", True)),
        hdf5_normalize_obs=bool(train_cfg.get("hdf5_normalize_obs")),
        filter_by_attribute=filter_key,
        load_next_obs=bool(train_cfg.get("hdf5_load_next_obs")),
        action_keys=list(train_cfg.get("action_keys") or ["actions"]),
        action_config=train_cfg.get("action_config") or None,
        obs_modalities=modalities,
    )


def _device(config: Mapping[str, Any], device: str | None) -> str:
    if device is not None:
        return device
    return "auto" if config["train"].get("cuda") else "cpu"


@dataclasses.dataclass
class ModelAndInputs:
    """The algorithm as a t2r model and its input generators (validation: None
    unless ``experiment.validate``)."""

    model: Any
    train_input: Any
    eval_input: Any


def build_model_and_inputs(config: Mapping[str, Any], dataset: str) -> ModelAndInputs:
    """The `AlgoModel` of `config` with shapes, dtypes and normalization statistics
    from `dataset`, and the `RobomimicInputGenerator`s for training
    (``train.hdf5_filter_key``) and validation (``train.hdf5_validation_filter_key``)."""
    from t2r.robomimic.config import all_obs_keys
    from t2r.robomimic.model import AlgoModel

    train_cfg, experiment = config["train"], config["experiment"]
    obs_keys = all_obs_keys(config)
    train_input = _input_generator(config, dataset, train_cfg.get("hdf5_filter_key"), obs_keys)
    sequence = train_input.dataset
    eval_input = None
    if experiment.get("validate"):
        valid_key = train_cfg.get("hdf5_validation_filter_key")
        if not valid_key:
            raise RunError(
                "experiment.validate is true but train.hdf5_validation_filter_key is not set "
                "(robomimic validates on a filter key, e.g. 'valid'; see 't2r robomimic split')."
            )
        eval_input = _input_generator(config, dataset, valid_key, obs_keys)
    obs_shapes, obs_dtypes = _obs_shapes_and_dtypes(train_input, obs_keys)
    model = AlgoModel(
        config,
        obs_key_shapes=obs_shapes,
        ac_dim=_action_dim(train_input),
        obs_dtypes=obs_dtypes,
        obs_normalization_stats=sequence.get_obs_normalization_stats()
        if train_cfg.get("hdf5_normalize_obs")
        else None,
        action_normalization_stats=sequence.get_action_normalization_stats()
        if _normalizes_actions(config)
        else None,
    )
    return ModelAndInputs(model, train_input, eval_input)


def train(
    config: str | os.PathLike[str] | Mapping[str, Any],
    dataset: str | os.PathLike[str] | None = None,
    output_dir: str | os.PathLike[str] | None = None,
    device: str | None = None,
    show_progress: bool = True,
    make_env: Any = None,
) -> TrainSummary:
    """Trains the config's algorithm on `dataset` into `output_dir` (see the module doc).

    `config` is a robomimic JSON config (path or dict), read by
    `t2r.robomimic.config.load_config` (unknown keys are errors). `dataset` overrides
    ``train.data``; `output_dir` defaults to ``train.output_dir/experiment.name``.
    `device` overrides ``train.cuda`` ('cpu', 'cuda', 'auto'). `make_env` replaces
    `make_env_from_env_args` for the rollouts (tests).
    """
    from t2r.robomimic.config import load_config
    from t2r.robomimic.hdf5 import read_env_args
    from t2r.train import train_eval_model

    start = time.perf_counter()
    cfg = load_config(config if isinstance(config, Mapping) else os.fspath(config))
    data_path = _dataset_path(cfg, dataset)
    _set_dataset(cfg, data_path)
    out = _output_dir(cfg, output_dir)
    env_args = read_env_args(data_path)
    for key, value in (cfg["experiment"].get("env_meta_update_dict") or {}).items():
        if isinstance(value, Mapping) and isinstance(env_args.get(key), Mapping):
            env_args[key] = {**env_args[key], **value}
        else:
            env_args[key] = copy.deepcopy(value)
    _record_run(
        out,
        {
            "config": _plain_json(cfg),
            "dataset": os.path.abspath(data_path),
            "env_args": env_args,
        },
    )
    train_cfg, experiment = cfg["train"], cfg["experiment"]
    parts = build_model_and_inputs(cfg, data_path)
    model, train_input, eval_input = parts.model, parts.train_input, parts.eval_input
    sequence = train_input.dataset
    steps_per_epoch = experiment.get("epoch_every_n_steps") or max(
        1, len(sequence) // int(train_cfg["batch_size"])
    )
    steps_per_epoch = int(steps_per_epoch)
    max_train_steps = int(train_cfg["num_epochs"]) * steps_per_epoch
    hook = RobomimicRunHook(
        model, out, cfg, env_args, steps_per_epoch, max_train_steps, make_env=make_env
    )
    validation_steps = experiment.get("validation_epoch_every_n_steps")
    train_eval_model(
        model,
        input_generator_train=train_input,
        input_generator_eval=eval_input,
        max_train_steps=max_train_steps,
        model_dir=out,
        eval_steps=None if validation_steps is None else int(validation_steps),
        eval_every_n_steps=steps_per_epoch,
        save_checkpoints_steps=steps_per_epoch,
        keep_checkpoint_max=2,
        train_hook_builders=[_RunHookBuilder(hook)],
        device=_device(cfg, device),
        seed=int(train_cfg.get("seed") or 0),
        log_every_n_steps=min(100, steps_per_epoch),
        show_progress=show_progress,
    )
    exports = {}
    latest = find_export_version(out / EXPORT_SUBDIR / LATEST, must_exist=False)
    if latest is None or latest.name != str(max_train_steps):
        hook.export_final(max_train_steps)
    for name in (BEST_SUCCESS, BEST_VALIDATION, LATEST):
        found = find_export_version(out / EXPORT_SUBDIR / name, must_exist=False)
        if found is not None:
            exports[name] = str(found)
    best_success = hook.best_success[0] if hook.best_success is not None else None
    return TrainSummary(
        output_dir=str(out),
        global_step=max_train_steps,
        epochs=int(train_cfg["num_epochs"]),
        best_success_rate=best_success,
        best_validation_loss=hook.best_validation,
        rollouts=hook.history,
        seconds=time.perf_counter() - start,
        exports=exports,
    )


def _normalizes_actions(config: Mapping[str, Any]) -> bool:
    action_config = config["train"].get("action_config") or {}
    return any(
        (action_config.get(k) or {}).get("normalization") is not None
        for k in (config["train"].get("action_keys") or ["actions"])
    )


def _obs_shapes_and_dtypes(
    input_generator: Any, obs_keys: Sequence[str]
) -> tuple[dict[str, tuple[int, ...]], dict[str, Any]]:
    """Per-step shapes and dtypes of the observations, from the file's specs."""
    features, _ = input_generator.dataset_specs()
    shapes, dtypes = {}, {}
    for key in obs_keys:
        spec = features[f"obs/{key}"]
        shapes[key] = tuple(int(d) for d in spec.shape[1:])
        dtypes[key] = spec.dtype
    return shapes, dtypes


def _action_dim(input_generator: Any) -> int:
    _, labels = input_generator.dataset_specs()
    return int(labels["actions"].shape[-1])


# ----------------------------------------------------------------------------------- eval


def find_export_version(path: str | os.PathLike[str], must_exist: bool = True) -> Path | None:
    """The export version `path` names: a version directory itself, the newest version
    of an export directory, or for a training output directory the newest of
    ``export/best_success``, else ``export/best_validation``, else ``export/latest``."""
    from t2r.export import is_complete_version, latest_version

    path = Path(path)
    if is_complete_version(path):
        return path
    newest = latest_version(path) if path.is_dir() else None
    if newest is not None:
        return Path(newest.path)
    for name in (BEST_SUCCESS, BEST_VALIDATION, LATEST):
        candidate = path / EXPORT_SUBDIR / name
        newest = latest_version(candidate) if candidate.is_dir() else None
        if newest is not None:
            return Path(newest.path)
    if must_exist:
        raise RunError(
            f"{path}: no export here (an export version, a directory of versions, or a "
            f"training output directory with {EXPORT_SUBDIR}/{BEST_SUCCESS}|{BEST_VALIDATION}|"
            f"{LATEST})."
        )
    return None


def evaluate_checkpoint(
    checkpoint: str | os.PathLike[str],
    n_rollouts: int = 50,
    horizon: int | None = None,
    video_path: str | os.PathLike[str] | None = None,
    video_skip: int = 5,
    camera_name: str | None = None,
    seed: int | None = 0,
    env_args: Mapping[str, Any] | None = None,
    dataset: str | os.PathLike[str] | None = None,
    terminate_on_success: bool = True,
    show_progress: bool = True,
    make_env: Any = None,
) -> dict[str, Any]:
    """robomimic's run_trained_agent: `n_rollouts` episodes of an export.

    The export (see `find_export_version`) is served by `ExportedModelPredictor`
    through `RolloutPolicy`: no algorithm code runs. The environment comes from
    `env_args`, else the `dataset`'s, else the export's metadata, else the run's
    ``robomimic_run.json``. `horizon` defaults to the run's
    ``experiment.rollout.horizon`` (400 without one). An episode ends at its first
    success, as in run_trained_agent (`terminate_on_success=False` runs the horizon).
    Returns the averaged statistics (``Success_Rate``, ``Return``, ``Horizon``,
    ``Num_Success``, ...) with ``episodes`` and ``export``.
    """
    from t2r.export import ExportVersion
    from t2r.predictors import ExportedModelPredictor
    from t2r.robomimic.envs import make_env_from_env_args
    from t2r.robomimic.rollout_policy import RolloutPolicy

    version = find_export_version(checkpoint)
    assert version is not None
    metadata = ExportVersion(version, int(version.name)).load_assets().metadata or {}
    recorded = dict(metadata.get("robomimic") or {})
    run = read_run_record(version) or {}
    if env_args is None and dataset is not None:
        from t2r.robomimic.hdf5 import read_env_args

        env_args = read_env_args(dataset)
    env_args = env_args or recorded.get("env_args") or run.get("env_args")
    if not env_args:
        raise RunError(
            f"{version}: the export records no env_args and no {RUN_FILENAME} is above it; "
            "pass --dataset (its env_args build the environment)."
        )
    config = recorded.get("config") or run.get("config") or {}
    if horizon is None:
        horizon = int(((config.get("experiment") or {}).get("rollout") or {}).get("horizon") or 400)
    predictor = ExportedModelPredictor(version, timeout=0.0)
    if not predictor.restore():
        raise RunError(f"{version}: the export could not be loaded.")
    images = any(
        key.startswith(("obs/", "goal_obs/")) and len(spec.shape) == 3
        for key, spec in predictor.get_feature_specification().items()
    )
    make = make_env or make_env_from_env_args
    env = make(env_args, render_offscreen=video_path is not None, use_image_obs=images)
    try:
        stats = rollout_with_stats(
            RolloutPolicy(predictor, seed=seed),
            env,
            horizon=horizon,
            num_episodes=n_rollouts,
            video_path=video_path,
            video_skip=video_skip,
            camera_name=camera_name,
            terminate_on_success=terminate_on_success,
            seed=seed,
            show_progress=show_progress,
        )
    finally:
        env.close()
    stats["export"] = str(version)
    stats["horizon_limit"] = horizon
    return stats


def format_rollout_stats(stats: Mapping[str, Any]) -> str:
    """run_trained_agent's summary: the averaged stats as JSON (episodes left out)."""
    shown = {k: v for k, v in stats.items() if k != "episodes"}
    return json.dumps(shown, indent=4, sort_keys=True, default=_json_default)


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    return str(value)
