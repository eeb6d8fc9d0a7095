"""``t2r inspect PATH``: what a dataset, an export or a checkpoint holds.

:func:`inspect_path` returns a JSON-ready report; :func:`format_report` renders it
as text. What a path is, is found out in this order:

* an export directory (versions ``<step>/t2r_assets.json``) or one version:
  its specs, version, global step, program format, files, and how to feed it (the
  input keys, shapes and dtypes a predictor checks);
* a Tensor2Robot (TensorFlow SavedModel) export, by its
  ``assets.extra/t2r_assets.pbtxt``: its specs and global step;
* a model directory (``checkpoints/ckpt-<step>``) or one checkpoint: its global
  step, t2r version, weights, and the specs of an export found beside it (a
  checkpoint carries no specs of its own);
* a dataset of any format `t2r.data.convert.detect_format` knows: episodes,
  steps, one step's features as specs, and per feature a few statistics
  (min / max / mean of low-dimensional features, image shapes, distinct texts).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from t2r.data.convert import detect_format, read_episodes
from t2r.data.convert.common import (
    IMAGE_FORMATS_KEY,
    PRIVATE_KEYS,
    SPLIT_KEY,
    TASK_KEY,
    Losses,
    step_spec,
)
from t2r.data.episodes import Episode
from t2r.specs import ExtendedTensorSpec, dtype_name, flatten_spec_structure, is_string_dtype

__all__ = ["format_report", "inspect_path"]

logger = logging.getLogger(__name__)

_PER_DIM_LIMIT = 16  # per-dimension statistics for rank-1 features up to this size
_TEXT_EXAMPLES = 5


def inspect_path(path: str | os.PathLike[str], max_episodes: int | None = None) -> dict[str, Any]:
    """The report of `path` (see the module docstring).

    Args:
        max_episodes: read at most this many episodes of a dataset (counts and
            statistics then cover those; the report says so).

    Raises:
        DataError: `path` is none of the things above (naming it).
    """
    path = os.fspath(path)
    from t2r.export import layout

    if layout.is_complete_version(path) or layout.list_versions(path):
        return _export_report(path)
    tf_assets = _tensorflow_export_assets(Path(path))
    if tf_assets is not None:
        return _tensorflow_export_report(path, tf_assets)
    from t2r.train.checkpoints import CHECKPOINT_SUBDIR, list_checkpoints

    p = Path(path)
    if (p / "state.json").is_file() and (p / "model.safetensors").is_file():
        return _checkpoint_report(
            p, p.parent.parent if p.parent.name == CHECKPOINT_SUBDIR else None
        )
    if p.name == CHECKPOINT_SUBDIR and list_checkpoints(p.parent):
        return _checkpoint_report(list_checkpoints(p.parent)[-1].path, p.parent)
    if p.is_dir() and list_checkpoints(p):
        return _checkpoint_report(list_checkpoints(p)[-1].path, p)
    return _dataset_report(path, max_episodes)


# ------------------------------------------------------------------------------ specs


def _spec_entry(key: str, spec: ExtendedTensorSpec) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "shape": None if spec.shape is None else list(spec.shape),
        "dtype": dtype_name(spec.dtype),
    }
    if spec.name is not None and spec.name != key:
        entry["name"] = spec.name
    if spec.data_format:
        entry["data_format"] = spec.data_format
    if spec.is_optional:
        entry["optional"] = True
    if spec.is_sequence:
        entry["sequence"] = True
    return entry


def _specs(structure: Any) -> dict[str, dict[str, Any]]:
    if structure is None:
        return {}
    return {k: _spec_entry(k, s) for k, s in flatten_spec_structure(structure).items()}


# ------------------------------------------------------------------------------ exports


def _export_report(path: str) -> dict[str, Any]:
    from t2r.export import layout

    if layout.is_complete_version(path):
        version = layout.ExportVersion(Path(path), int(Path(path).name))
        versions = [version.version]
    else:
        found = layout.list_versions(path)
        version = found[-1]
        versions = [v.version for v in found]
    assets = version.load_assets()
    metadata = dict(assets.metadata)
    files = metadata.pop("files", {})
    flat = flatten_spec_structure(assets.feature_spec)
    inputs = [
        {
            "key": key,
            "shape": None if spec.shape is None else list(spec.shape),
            "dtype": dtype_name(spec.dtype),
            **({"optional": True} if spec.is_optional else {}),
            **({"sequence": True} if spec.is_sequence else {}),
        }
        for key, spec in flat.items()
    ]
    return {
        "kind": "export",
        "path": path,
        "versions": versions,
        "version": version.version,
        "version_dir": str(version.path),
        "global_step": assets.global_step,
        "program_format": metadata.get("program_format"),
        "export_format_version": metadata.get("export_format_version"),
        "t2r_version": metadata.get("t2r_version"),
        "files": sorted(files),
        "feature_spec": _specs(assets.feature_spec),
        "label_spec": _specs(assets.label_spec),
        "metadata": {k: v for k, v in metadata.items() if k not in ("write_id",)},
        "feed": {
            "inputs": inputs,
            "usage": (
                "from t2r.predictors import ExportedModelPredictor\n"
                f"predictor = ExportedModelPredictor({str(path)!r})\n"
                "predictor.restore()\n"
                "outputs = predictor.predict({"
                + ", ".join(f"{i['key']!r}: ..." for i in inputs if not i.get("optional"))
                + "})  # numpy arrays of the shapes above, with or without a batch dim"
            ),
        },
    }


_TF_ASSETS = Path("assets.extra") / "t2r_assets.pbtxt"


def _tensorflow_export_assets(path: Path) -> Path | None:
    """``assets.extra/t2r_assets.pbtxt`` of a Tensor2Robot SavedModel export (the
    version directory, or the newest numbered one under an export directory)."""
    if (path / _TF_ASSETS).is_file():
        return path / _TF_ASSETS
    if not path.is_dir():
        return None
    versions = [p for p in path.iterdir() if p.name.isdigit() and (p / _TF_ASSETS).is_file()]
    if not versions:
        return None
    return max(versions, key=lambda p: int(p.name)) / _TF_ASSETS


def _tensorflow_export_report(path: str, assets_path: Path) -> dict[str, Any]:
    from t2r.specs import load_t2r_assets_to_file

    assets = load_t2r_assets_to_file(assets_path)
    flat = flatten_spec_structure(assets.feature_spec)
    version_dir = assets_path.parent.parent
    return {
        "kind": "tensorflow_export",
        "path": path,
        "version_dir": str(version_dir),
        "version": int(version_dir.name) if version_dir.name.isdigit() else None,
        "global_step": assets.global_step,
        "files": sorted(p.name for p in version_dir.iterdir()),
        "feature_spec": _specs(assets.feature_spec),
        "label_spec": _specs(assets.label_spec),
        "feed": {
            "inputs": [
                {
                    "key": key,
                    "shape": None if spec.shape is None else list(spec.shape),
                    "dtype": dtype_name(spec.dtype),
                }
                for key, spec in flat.items()
                if not spec.is_optional
            ],
            "usage": (
                "A Tensor2Robot (TensorFlow SavedModel) export: t2r reads its specs but does "
                "not run\nTensorFlow programs. Build the t2r model with these specs, load "
                "its weights, and\nexport it with t2r (docs/migrating_from_t2r.md)."
            ),
        },
    }


# ------------------------------------------------------------------------------ checkpoints


def _find_export(model_dir: Path) -> str | None:
    """An export directory under `model_dir` (at most three levels down), newest first."""
    from t2r.export import layout

    best: tuple[float, str] | None = None
    for root, dirs, _files in os.walk(model_dir):
        depth = len(Path(root).relative_to(model_dir).parts)
        if depth >= 3:
            dirs[:] = []
        dirs[:] = [d for d in dirs if not d.startswith(".") and d != "checkpoints"]
        versions = layout.list_versions(root)
        if versions:
            mtime = versions[-1].path.stat().st_mtime
            if best is None or mtime > best[0]:
                best = (mtime, root)
            dirs[:] = []
    return None if best is None else best[1]


def _checkpoint_report(ckpt: Path, model_dir: Path | None) -> dict[str, Any]:
    from safetensors import safe_open

    from t2r.train.checkpoints import list_checkpoints

    state = json.loads((ckpt / "state.json").read_text(encoding="utf-8"))
    weights: dict[str, list[int]] = {}
    with safe_open(str(ckpt / "model.safetensors"), framework="pt") as f:
        for key in f.keys():
            weights[key] = list(f.get_slice(key).get_shape())
    num_parameters = int(sum(int(np.prod(s, dtype=np.int64)) for s in weights.values()))
    report: dict[str, Any] = {
        "kind": "checkpoint",
        "path": str(ckpt),
        "model_dir": None if model_dir is None else str(model_dir),
        "checkpoints": []
        if model_dir is None
        else [c.global_step for c in list_checkpoints(model_dir)],
        "global_step": state.get("global_step"),
        "t2r_version": state.get("t2r_version"),
        "format_version": state.get("format_version"),
        "input_position": state.get("input_position"),
        "weights": {"tensors": len(weights), "parameters": num_parameters},
        "weight_shapes": weights,
    }
    export = _find_export(model_dir) if model_dir is not None else None
    feed_model = "model"
    report["feed"] = {
        "usage": (
            "A checkpoint holds weights, not the model's code or specs: build the model, then\n"
            "from t2r.predictors import CheckpointPredictor\n"
            f"predictor = CheckpointPredictor({feed_model}, {str(model_dir or ckpt)!r})\n"
            "predictor.restore()\n"
            "outputs = predictor.predict(features)\n"
            "# keys, shapes, dtypes: predictor.get_feature_specification()"
        )
    }
    if export is not None:
        exported = _export_report(export)
        report["export"] = {k: exported[k] for k in ("path", "version", "global_step")}
        report["feature_spec"] = exported["feature_spec"]
        report["label_spec"] = exported["label_spec"]
        report["feed"]["inputs"] = exported["feed"]["inputs"]
    return report


# ------------------------------------------------------------------------------ datasets


class _FeatureStats:
    def __init__(self) -> None:
        self.count = 0
        self.total: np.ndarray | float = 0.0
        self.low: np.ndarray | None = None
        self.high: np.ndarray | None = None
        self.texts: dict[str, int] = {}

    def add_numeric(self, value: np.ndarray, per_dim: bool) -> None:
        array = value.astype(np.float64)
        rows = array.reshape(len(array), -1) if per_dim else array.reshape(-1, 1)
        low, high, total = rows.min(axis=0), rows.max(axis=0), rows.sum(axis=0)
        self.low = low if self.low is None else np.minimum(self.low, low)
        self.high = high if self.high is None else np.maximum(self.high, high)
        self.total = total + self.total
        self.count += len(rows)

    def add_text(self, value: np.ndarray) -> None:
        for item in value.reshape(-1).tolist():
            self.texts[str(item)] = self.texts.get(str(item), 0) + 1

    def numeric(self) -> dict[str, Any]:
        assert self.low is not None and self.high is not None
        mean = np.asarray(self.total) / max(self.count, 1)

        def out(a: np.ndarray) -> Any:
            values = [float(v) for v in np.asarray(a).reshape(-1)]
            return values[0] if len(values) == 1 else values

        return {"min": out(self.low), "max": out(self.high), "mean": out(mean)}


def _dataset_report(path: str, max_episodes: int | None) -> dict[str, Any]:
    fmt = detect_format(path)
    losses = Losses(path)
    lengths: list[int] = []
    first: Episode | None = None
    stats: dict[str, _FeatureStats] = {}
    splits: dict[str, int] = {}
    tasks: dict[str, int] = {}
    metadata_keys: list[str] = []
    complete = True
    specs = None
    for episode in read_episodes(path, fmt, losses=losses):
        if max_episodes is not None and len(lengths) >= max_episodes:
            complete = False
            break
        if first is None:
            first = episode
            specs = step_spec(episode)
        lengths.append(episode.num_steps)
        for key in episode.metadata:
            if key not in metadata_keys and key not in PRIVATE_KEYS:
                metadata_keys.append(key)
        split = episode.metadata.get(SPLIT_KEY)
        if split is not None:
            splits[str(split)] = splits.get(str(split), 0) + 1
        task = episode.metadata.get(TASK_KEY)
        if task is not None:
            tasks[str(task)] = tasks.get(str(task), 0) + 1
        assert specs is not None
        for key, value in episode.steps.items():
            spec = specs.get(key)
            if spec is None:
                continue
            feature = stats.setdefault(key, _FeatureStats())
            if is_string_dtype(spec.dtype):
                feature.add_text(np.asarray(value))
            elif spec.data_format is None:
                shape = tuple(spec.shape or ())
                per_dim = len(shape) == 1 and shape[0] <= _PER_DIM_LIMIT
                feature.add_numeric(np.asarray(value), per_dim)
            else:
                feature.count += len(value)
    features: dict[str, Any] = {}
    if specs is not None:
        assert first is not None
        formats = first.metadata.get(IMAGE_FORMATS_KEY, {})
        for key, spec in specs.items():
            entry = _spec_entry(key, spec)
            feature = stats.get(key, _FeatureStats())
            if is_string_dtype(spec.dtype):
                entry["kind"] = "text"
                entry["distinct"] = len(feature.texts)
                entry["examples"] = sorted(feature.texts, key=lambda t: -feature.texts[t])[
                    :_TEXT_EXAMPLES
                ]
            elif spec.data_format is not None:
                entry["kind"] = "image"
                entry.pop("data_format")
                if key in formats:
                    entry["stored_as"] = formats[key]
            else:
                entry["kind"] = "low_dim"
                if feature.low is not None:
                    entry["stats"] = feature.numeric()
            features[key] = entry
    report: dict[str, Any] = {
        "kind": "dataset",
        "path": path,
        "format": fmt,
        "episodes": len(lengths),
        "steps": int(sum(lengths)),
        "steps_per_episode": {
            "min": min(lengths, default=0),
            "max": max(lengths, default=0),
            "mean": float(np.mean(lengths)) if lengths else 0.0,
        },
        "complete": complete,
        "features": features,
        "metadata_keys": metadata_keys,
    }
    report["source"] = _source_info(path, fmt)
    if splits:
        report["splits"] = splits
    if tasks:
        report["tasks"] = dict(sorted(tasks.items(), key=lambda kv: -kv[1])[:_TEXT_EXAMPLES])
        report["distinct_tasks"] = len(tasks)
    if losses.messages:
        report["notes"] = list(losses.messages.values())
    return report


def _source_info(path: str, fmt: str) -> dict[str, Any]:
    """What the format's own metadata says, read without decoding any step."""
    if fmt == "rlds":
        from t2r.data.convert.rlds_episodes import rlds_directory
        from t2r.data.rlds import load_rlds_info

        info = load_rlds_info(rlds_directory(path) or path)
        return {
            "name": info.name,
            "version": info.version,
            "directory": info.directory,
            "split_episodes": {k: v.num_episodes for k, v in info.splits.items()},
        }
    if fmt == "lerobot":
        from t2r.data.lerobot import load_lerobot_info

        le = load_lerobot_info(path)
        return {
            "codebase_version": le.codebase_version,
            "fps": le.fps,
            "robot_type": le.robot_type,
            "total_episodes": le.total_episodes,
            "total_frames": le.total_frames,
            "video_keys": le.video_keys,
            "tasks": len(le.tasks),
        }
    if fmt == "robomimic":
        from t2r.robomimic.hdf5 import dataset_info

        rm = dataset_info(path)
        env = rm["env_args"] or {}
        return {
            "num_demos": rm["num_demos"],
            "total_samples": rm["total_samples"],
            "env_name": env.get("env_name"),
            "filter_keys": {k: v["num_demos"] for k, v in rm["filter_keys"].items()},
        }
    from t2r.data.convert.tfrecord_episodes import EPISODES_FILE, tfrecord_files

    files = tfrecord_files(path)
    directory = path if os.path.isdir(path) else os.path.dirname(files[0])
    return {
        "files": len(files),
        "layout": "t2r_episodes.json"
        if os.path.isfile(os.path.join(directory, EPISODES_FILE))
        else "inferred from the first record",
    }


# ------------------------------------------------------------------------------ text


def _shape_text(shape: Any) -> str:
    if shape is None:
        return "<unknown rank>"
    return (
        "("
        + ", ".join("?" if d is None else str(d) for d in shape)
        + ("," if len(shape) == 1 else "")
        + ")"
    )


def _number(value: Any) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(f"{v:.4g}" for v in value) + "]"
    return f"{value:.4g}"


def _spec_lines(specs: Mapping[str, Mapping[str, Any]], indent: str = "  ") -> list[str]:
    width = max((len(k) for k in specs), default=0)
    lines = []
    for key, entry in specs.items():
        extra = [entry[f] for f in ("data_format", "name") if entry.get(f)]
        extra += [f for f in ("optional", "sequence") if entry.get(f)]
        tail = f"  ({', '.join(str(e) for e in extra)})" if extra else ""
        lines.append(
            f"{indent}{key:{width}s}  {_shape_text(entry['shape']):>16s}  {entry['dtype']}{tail}"
        )
    return lines


def format_report(report: Mapping[str, Any]) -> str:
    """The report as text for a terminal."""
    kind = report["kind"]
    if kind == "dataset":
        return _format_dataset(report)
    lines = [f"{report['path']}: {kind}"]
    if kind == "tensorflow_export":
        lines.append(
            f"Tensor2Robot SavedModel, version {report['version']}, global step "
            f"{report['global_step']}; files: {', '.join(report['files'])}"
        )
    elif kind == "export":
        lines.append(
            f"version {report['version']} (of {report['versions']}), global step "
            f"{report['global_step']}, program {report['program_format']}, export format "
            f"{report['export_format_version']}"
        )
        lines.append("files: " + ", ".join(report["files"]))
    else:
        lines.append(
            f"global step {report['global_step']}, t2r {report['t2r_version']}, "
            f"{report['weights']['tensors']} weight tensors, "
            f"{report['weights']['parameters']:,} parameters"
        )
        if report.get("checkpoints"):
            lines.append(f"checkpoints in {report['model_dir']}: steps {report['checkpoints']}")
        if report.get("export"):
            lines.append(
                f"specs from the export {report['export']['path']} (version "
                f"{report['export']['version']})"
            )
        else:
            lines.append("no export found beside it: a checkpoint carries no specs")
    if report.get("feature_spec"):
        lines.append("feature spec:")
        lines += _spec_lines(report["feature_spec"])
    if report.get("label_spec"):
        lines.append("label spec:")
        lines += _spec_lines(report["label_spec"])
    lines.append("how to feed it:")
    lines += ["  " + line for line in report["feed"]["usage"].splitlines()]
    return "\n".join(lines)


def _format_dataset(report: Mapping[str, Any]) -> str:
    spe = report["steps_per_episode"]
    lines = [
        f"{report['path']}: {report['format']} dataset",
        f"episodes: {report['episodes']}  steps: {report['steps']}  steps per episode "
        f"min/mean/max: {spe['min']}/{spe['mean']:.1f}/{spe['max']}"
        + ("" if report["complete"] else "  (first episodes only: --max_episodes)"),
    ]
    source = report.get("source") or {}
    if source:
        lines.append(
            "source: "
            + ", ".join(
                f"{k} {json.dumps(v) if isinstance(v, (dict, list)) else v}"
                for k, v in source.items()
                if v not in (None, {}, [])
            )
        )
    if report.get("splits"):
        lines.append("splits: " + ", ".join(f"{k} {v}" for k, v in report["splits"].items()))
    if report.get("tasks"):
        lines.append(f"tasks ({report['distinct_tasks']} distinct):")
        lines += [f"  {count:5d}  {task}" for task, count in report["tasks"].items()]
    lines.append("features (one step):")
    features = report["features"]
    width = max((len(k) for k in features), default=0)
    for key, entry in features.items():
        head = f"  {key:{width}s}  {_shape_text(entry['shape']):>16s}  {entry['dtype']:8s}"
        if entry["kind"] == "image":
            tail = f"image{' ' + entry['stored_as'] if entry.get('stored_as') else ''}"
        elif entry["kind"] == "text":
            tail = f"text, {entry['distinct']} distinct: " + "; ".join(
                repr(t) for t in entry["examples"][:3]
            )
        elif "stats" in entry:
            s = entry["stats"]
            tail = f"min {_number(s['min'])}  max {_number(s['max'])}  mean {_number(s['mean'])}"
        else:
            tail = ""
        lines.append(f"{head}  {tail}".rstrip())
    if report.get("metadata_keys"):
        lines.append("episode metadata: " + ", ".join(report["metadata_keys"]))
    for note in report.get("notes", []):
        lines.append(f"note: {note}")
    return "\n".join(lines)
