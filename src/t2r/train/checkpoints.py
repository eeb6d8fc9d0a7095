"""Training checkpoints: weights, optimizer, schedule, step, RNG and input position.

A checkpoint is a directory ``<model_dir>/checkpoints/ckpt-<step:09d>/`` holding
``model.safetensors``, ``optimizer.safetensors`` (every tensor of the optimizer
and RNG states) and ``state.json`` (everything else). It is written under a
temporary name and renamed into place, so a half-written checkpoint is never
seen; readers also ignore any directory without ``state.json``. No pickle.

A checkpoint whose weights are not finite is never written
(`NonFiniteCheckpointError` names the last good one instead). A checkpoint that
cannot be read (a truncated safetensors file, a broken ``state.json``, weights
that are not finite) raises `CheckpointError` naming the file;
`restore_latest_checkpoint` then falls back to the newest intact one, with a
warning.
"""

from __future__ import annotations

import json
import logging
import os
import random
import re
import shutil
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

import t2r
from t2r.atomic import atomic_directory, atomic_write_text, is_temporary_path, write_safetensors

_T = TypeVar("_T")

logger = logging.getLogger(__name__)

CHECKPOINT_SUBDIR = "checkpoints"
_NAME = re.compile(r"^ckpt-(\d+)$")
_FORMAT_VERSION = 1

Stateful = Any  # an object with state_dict() / load_state_dict()


class CheckpointError(ValueError):
    """A checkpoint on disk cannot be read: a truncated or corrupt file, a broken
    ``state.json``, or weights that are not finite. The message names the file.

    Attributes:
        path: the checkpoint directory.
    """

    def __init__(self, message: str, path: Path | None = None) -> None:
        super().__init__(message)
        self.path = path


class NonFiniteCheckpointError(FloatingPointError):
    """A checkpoint was not written because its weights (or the training loss since
    the last checkpoint) are not finite. The message names the step, the
    offending tensors and the last good checkpoint.

    Attributes:
        global_step: the step whose checkpoint was refused.
        last_good: the newest checkpoint on disk, or None.
    """

    def __init__(self, message: str, global_step: int, last_good: Checkpoint | None) -> None:
        super().__init__(message)
        self.global_step = global_step
        self.last_good = last_good


@dataclass
class Checkpoint:
    """A complete checkpoint on disk."""

    path: Path
    global_step: int

    @property
    def state(self) -> dict[str, Any]:
        """``state.json``; CheckpointError naming it when it cannot be read."""
        path = self.path / "state.json"
        state = _read_checkpoint_file(
            path,
            lambda p: json.loads(p.read_bytes().decode("utf-8")),
            (OSError, UnicodeDecodeError, ValueError),
            " the checkpoint state",
        )
        if not isinstance(state, dict) or not all(
            k in state for k in ("global_step", "optimizer", "scheduler", "rng")
        ):
            raise CheckpointError(
                f"{path}: not a t2r checkpoint state (a JSON object with global_step, "
                "optimizer, scheduler and rng); the checkpoint is corrupt.",
                self.path,
            )
        return state


@dataclass
class TrainingState:
    """What a checkpoint restores besides the weights."""

    global_step: int = 0
    input_position: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


def checkpoint_dir(model_dir: str | os.PathLike[str]) -> Path:
    return Path(model_dir) / CHECKPOINT_SUBDIR


_TEMPORARY_OWNER = re.compile(r"\.tmp-(\d+)-[0-9a-f]+$")


def _process_exited(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def remove_stale_temporaries(model_dir: str | os.PathLike[str]) -> list[Path]:
    """Removes the temporary checkpoint directories of writers that were killed.

    A checkpoint is written under a temporary name (``.ckpt-<step>.tmp-<pid>-<hex>``)
    and renamed into place; a writer killed meanwhile leaves it behind. Those
    whose process (the pid in the name) has exited are removed; readers never
    looked at them. Called by `save_checkpoint` (the single writer of a model_dir).
    """
    root = checkpoint_dir(model_dir)
    if not root.is_dir():
        return []
    removed = []
    for entry in root.iterdir():
        match = _TEMPORARY_OWNER.search(entry.name)
        if not is_temporary_path(entry) or match is None:
            continue
        pid = int(match.group(1))
        if pid == os.getpid() or not _process_exited(pid):
            continue
        if entry.is_dir():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
        removed.append(entry)
    if removed:
        logger.warning(
            "Removed %d temporary checkpoint(s) left by a killed writer: %s",
            len(removed),
            ", ".join(p.name for p in removed),
        )
    return removed


def list_checkpoints(model_dir: str | os.PathLike[str]) -> list[Checkpoint]:
    """Complete checkpoints, oldest first."""
    root = checkpoint_dir(model_dir)
    if not root.is_dir():
        return []
    found = []
    for entry in root.iterdir():
        match = _NAME.match(entry.name)
        if match and not is_temporary_path(entry) and (entry / "state.json").is_file():
            found.append(Checkpoint(entry, int(match.group(1))))
    return sorted(found, key=lambda c: c.global_step)


def latest_checkpoint(model_dir: str | os.PathLike[str]) -> Checkpoint | None:
    """The newest complete checkpoint (not checked for corruption; see
    `restore_latest_checkpoint`)."""
    checkpoints = list_checkpoints(model_dir)
    return checkpoints[-1] if checkpoints else None


def non_finite_tensors(model: torch.nn.Module) -> list[str]:
    """Names of the parameters holding NaN or inf, and of the buffers holding NaN
    (buffers may hold inf on purpose, e.g. attention masks)."""
    bad = [
        name
        for name, p in model.named_parameters()
        if p.is_floating_point() and not bool(torch.isfinite(p.detach()).all())
    ]
    bad += [
        name
        for name, b in model.named_buffers()
        if b.is_floating_point() and bool(torch.isnan(b.detach()).any())
    ]
    return bad


def _non_finite_weights(weights: Mapping[str, torch.Tensor], model: torch.nn.Module) -> list[str]:
    """`non_finite_tensors`' rule applied to a loaded state dict."""
    parameters = {name for name, _ in model.named_parameters()}
    bad = []
    for name, tensor in weights.items():
        if not tensor.is_floating_point():
            continue
        finite = torch.isfinite(tensor) if name in parameters else ~torch.isnan(tensor)
        if not bool(finite.all()):
            bad.append(name)
    return bad


def describe_checkpoint(checkpoint: Checkpoint | None) -> str:
    """``'<path> (step N)'``, or a sentence saying there is none."""
    if checkpoint is None:
        return "none (no checkpoint was written before)"
    return f"{checkpoint.path} (step {checkpoint.global_step})"


# ------------------------------------------------------------ state flattening
def _split_state(prefix: str, value: Any, tensors: dict[str, torch.Tensor]) -> Any:
    """Moves tensors out of a nested state dict into `tensors`, leaving JSON."""
    if isinstance(value, torch.Tensor):
        key = prefix
        tensors[key] = value.detach().cpu().contiguous()
        return {"__tensor__": key}
    if isinstance(value, Mapping):
        return {
            "__dict__": [
                [_json_key(k), _split_state(f"{prefix}.{k}", v, tensors)] for k, v in value.items()
            ]
        }
    if isinstance(value, (list, tuple)):
        items = [_split_state(f"{prefix}.{i}", v, tensors) for i, v in enumerate(value)]
        return {"__tuple__": items} if isinstance(value, tuple) else items
    if isinstance(value, (np.integer, np.floating, np.bool_)):
        return value.item()
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"Cannot checkpoint {prefix!r} of type {type(value).__name__}.")


def _json_key(key: Any) -> Any:
    if isinstance(key, (str, int)):
        return key
    raise TypeError(f"Cannot checkpoint a state dict key of type {type(key).__name__}.")


def _join_state(value: Any, tensors: Mapping[str, torch.Tensor]) -> Any:
    if isinstance(value, dict):
        if "__tensor__" in value:
            return tensors[value["__tensor__"]]
        if "__dict__" in value:
            return {k: _join_state(v, tensors) for k, v in value["__dict__"]}
        if "__tuple__" in value:
            return tuple(_join_state(v, tensors) for v in value["__tuple__"])
    if isinstance(value, list):
        return [_join_state(v, tensors) for v in value]
    return value


def _state_dicts(objects: Stateful | Mapping[str, Stateful] | None) -> dict[str, Any]:
    if objects is None:
        return {}
    if isinstance(objects, Mapping):
        return {name: obj.state_dict() for name, obj in objects.items()}
    return {"default": objects.state_dict()}


def _load_state_dicts(
    objects: Stateful | Mapping[str, Stateful] | None, states: dict[str, Any]
) -> None:
    if objects is None:
        return
    named = objects if isinstance(objects, Mapping) else {"default": objects}
    missing = set(named) - set(states)
    if missing:
        raise ValueError(f"Checkpoint lacks state for {sorted(missing)}; it has {sorted(states)}.")
    for name, obj in named.items():
        obj.load_state_dict(states[name])


def rng_state() -> dict[str, Any]:
    """Every RNG a training step may draw from: python, numpy, torch (CPU, CUDA)."""
    np_state: Any = np.random.get_state()
    return {
        "python": random.getstate(),
        "numpy": {
            "keys": torch.from_numpy(np_state[1].astype(np.int64)),
            "rest": list(np_state[2:]),
        },
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def set_rng_state(state: Mapping[str, Any]) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    keys = state["numpy"]["keys"].numpy().astype(np.uint32)
    np.random.set_state(("MT19937", keys, *state["numpy"]["rest"]))
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# ------------------------------------------------------------- save / restore
def save_checkpoint(
    model_dir: str | os.PathLike[str],
    model: torch.nn.Module,
    training_state: TrainingState,
    optimizer: Stateful | Mapping[str, Stateful] | None = None,
    scheduler: Stateful | Mapping[str, Stateful] | None = None,
    keep_checkpoint_max: int | None = 5,
) -> Checkpoint:
    """Writes a checkpoint atomically and keeps only the newest `keep_checkpoint_max`.

    Raises:
        NonFiniteCheckpointError: a parameter holds NaN or inf (or a buffer NaN);
            nothing is written, and older checkpoints are kept.
    """
    bad = non_finite_tensors(model)
    if bad:
        last_good = latest_checkpoint(model_dir)
        raise NonFiniteCheckpointError(
            f"Not writing the checkpoint of step {training_state.global_step}: "
            f"{len(bad)} tensor(s) hold non-finite values ({', '.join(bad[:5])}"
            f"{', ...' if len(bad) > 5 else ''}). The last good checkpoint is "
            f"{describe_checkpoint(last_good)}.",
            training_state.global_step,
            last_good,
        )
    root = checkpoint_dir(model_dir)
    root.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(model_dir)
    final = root / f"ckpt-{training_state.global_step:09d}"
    with atomic_directory(final) as tmp:
        tensors: dict[str, torch.Tensor] = {}
        state = {
            "format_version": _FORMAT_VERSION,
            "t2r_version": t2r.__version__,
            "global_step": training_state.global_step,
            "input_position": training_state.input_position,
            "extra": training_state.extra,
            "time": time.time(),
            "optimizer": _split_state("optimizer", _state_dicts(optimizer), tensors),
            "scheduler": _split_state("scheduler", _state_dicts(scheduler), tensors),
            "rng": _split_state("rng", rng_state(), tensors),
        }
        write_safetensors(tmp / "model.safetensors", model.state_dict())
        write_safetensors(tmp / "optimizer.safetensors", tensors)
        # Written last: a directory without state.json is never read.
        atomic_write_text(tmp / "state.json", json.dumps(state, indent=1))
    checkpoint = Checkpoint(final, training_state.global_step)
    if keep_checkpoint_max:
        for old in list_checkpoints(model_dir)[:-keep_checkpoint_max]:
            shutil.rmtree(old.path, ignore_errors=True)
    logger.info("Saved checkpoint %s", final)
    return checkpoint


def _read_checkpoint_file(
    path: Path,
    parse: Callable[[Path], _T],
    unreadable: tuple[type[Exception], ...],
    what: str = "",
) -> _T:
    """``parse(path)`` for a file of a checkpoint; CheckpointError naming it if unreadable.

    FileNotFoundError when the whole checkpoint directory is gone (pruned meanwhile).
    """
    try:
        return parse(path)
    except FileNotFoundError:
        if not path.parent.is_dir():
            raise
        raise CheckpointError(f"{path}: missing; the checkpoint is corrupt.", path.parent) from None
    except unreadable as e:
        raise CheckpointError(
            f"{path}: cannot read{what} ({type(e).__name__}: {e}); the checkpoint is corrupt "
            "or truncated.",
            path.parent,
        ) from e


def _read_tensors(path: Path) -> dict[str, torch.Tensor]:
    """A checkpoint's safetensors file; CheckpointError naming it if unreadable."""
    return _read_checkpoint_file(
        path, lambda p: load_file(str(p)), (SafetensorError, OSError, ValueError)
    )


def _read_weights(path: Path, model: torch.nn.Module) -> dict[str, torch.Tensor]:
    weights = _read_tensors(path / "model.safetensors")
    bad = _non_finite_weights(weights, model)
    if bad:
        raise CheckpointError(
            f"{path / 'model.safetensors'}: {len(bad)} tensor(s) hold non-finite values "
            f"({', '.join(bad[:5])}); not using this checkpoint.",
            path,
        )
    return weights


def load_model_weights(
    checkpoint: Checkpoint | str | os.PathLike[str], model: torch.nn.Module
) -> None:
    """Loads only the weights (e.g. for evaluation or prediction).

    Raises:
        CheckpointError: ``model.safetensors`` is missing, truncated or corrupt, or
            holds non-finite weights (naming the file); the model is unchanged.
        FileNotFoundError: the checkpoint directory is gone (pruned meanwhile).
    """
    path = checkpoint.path if isinstance(checkpoint, Checkpoint) else Path(checkpoint)
    _load_fitting_weights(model, _read_weights(path, model), path)


def _load_fitting_weights(
    model: torch.nn.Module, weights: Mapping[str, torch.Tensor], path: Path
) -> None:
    """``model.load_state_dict(weights)``, after checking that the checkpoint at
    `path` fits the model: a RuntimeError names the checkpoint, the missing and
    unexpected keys and the shape mismatches, and says what to do instead."""
    own = model.state_dict()
    missing = [k for k in own if k not in weights]
    unexpected = [k for k in weights if k not in own]
    reshaped = [
        f"{k}: checkpoint {tuple(weights[k].shape)}, model {tuple(v.shape)}"
        for k, v in own.items()
        if k in weights and tuple(weights[k].shape) != tuple(v.shape)
    ]
    if missing or unexpected or reshaped:
        parts = [
            f"{label} ({len(keys)}): {_listing(keys)}"
            for label, keys in (
                ("missing from the checkpoint", missing),
                ("unexpected in the checkpoint", unexpected),
                ("shape mismatches", reshaped),
            )
            if keys
        ]
        raise RuntimeError(
            f"Checkpoint {path} does not fit {type(model).__name__}: the architecture changed "
            f"since it was written. {'; '.join(parts)}. Train the changed model in a new "
            "model_dir, or start it from these weights with "
            f"init_from_checkpoint('{path}') (which skips what does not fit)."
        )
    model.load_state_dict(weights)


def _listing(keys: list[str], limit: int = 8) -> str:
    shown = ", ".join(keys[:limit])
    return shown if len(keys) <= limit else f"{shown}, ... ({len(keys) - limit} more)"


def restore_checkpoint(
    checkpoint: Checkpoint,
    model: torch.nn.Module,
    optimizer: Stateful | Mapping[str, Stateful] | None = None,
    scheduler: Stateful | Mapping[str, Stateful] | None = None,
    restore_rng: bool = True,
) -> TrainingState:
    """Restores everything `save_checkpoint` wrote; returns the training state.

    Every file is read (and checked) before anything is changed.

    Raises:
        CheckpointError: a file of the checkpoint is missing, truncated or corrupt,
            or the weights are not finite (naming the file); nothing was restored.
    """
    state = checkpoint.state
    if state.get("format_version", 0) > _FORMAT_VERSION:
        raise ValueError(
            f"{checkpoint.path} has checkpoint format {state['format_version']}; this t2r "
            f"({t2r.__version__}) reads up to {_FORMAT_VERSION}."
        )
    weights = _read_weights(checkpoint.path, model)
    tensors = _read_tensors(checkpoint.path / "optimizer.safetensors")
    try:
        optimizer_states = _join_state(state["optimizer"], tensors)
        scheduler_states = _join_state(state["scheduler"], tensors)
        rng = _join_state(state["rng"], tensors)
        training_state = TrainingState(
            global_step=int(state["global_step"]),
            input_position=int(state.get("input_position", state["global_step"])),
            extra=dict(state.get("extra") or {}),
        )
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(
            f"{checkpoint.path}: state.json and optimizer.safetensors do not match "
            f"({type(e).__name__}: {e}); the checkpoint is corrupt.",
            checkpoint.path,
        ) from e
    _load_fitting_weights(model, weights, checkpoint.path)
    _load_state_dicts(optimizer, optimizer_states)
    _load_state_dicts(scheduler, scheduler_states)
    if restore_rng:
        set_rng_state(rng)
    return training_state


def restore_latest_checkpoint(
    model_dir: str | os.PathLike[str],
    model: torch.nn.Module,
    optimizer: Stateful | Mapping[str, Stateful] | None = None,
    scheduler: Stateful | Mapping[str, Stateful] | None = None,
    restore_rng: bool = True,
) -> tuple[Checkpoint, TrainingState] | None:
    """Restores the newest intact checkpoint in `model_dir`; None if there is none.

    A newer checkpoint that cannot be read (see `restore_checkpoint`) is skipped
    with a warning naming it and what is wrong; training then resumes from the
    newest intact one.

    Raises:
        CheckpointError: every checkpoint is corrupt (naming each), rather than
            silently starting from scratch beside them.
    """
    errors: list[CheckpointError] = []
    for checkpoint in reversed(list_checkpoints(model_dir)):
        try:
            state = restore_checkpoint(checkpoint, model, optimizer, scheduler, restore_rng)
        except FileNotFoundError:
            continue  # pruned meanwhile
        except CheckpointError as e:
            logger.warning("Skipping corrupt checkpoint %s: %s", checkpoint.path, e)
            errors.append(e)
            continue
        if errors:
            logger.warning(
                "Fell back to %s: the %d newer checkpoint(s) are corrupt (%s).",
                describe_checkpoint(checkpoint),
                len(errors),
                ", ".join(str(e.path) for e in errors),
            )
        return checkpoint, state
    if errors:
        raise CheckpointError(
            f"Every checkpoint in {checkpoint_dir(model_dir)} is corrupt: "
            + "; ".join(str(e) for e in errors)
            + ". Move them aside to start from scratch.",
            errors[0].path,
        )
    return None
