"""robomimic HDF5 files as episodes, through `t2r.robomimic.hdf5` (`Demo`).

The mapping (step path <-> robomimic dataset):

==========================  ===========================================
``observation/<key>``       ``obs/<key>`` (a ``/`` deeper in the path becomes ``.``)
``action`` / ``action/...`` ``actions`` (several action features are concatenated,
                            flattened, in path order, as float32, float64 if any is)
``reward``                  ``rewards``
``is_terminal`` or ``done`` ``dones`` (int64, robomimic's)
``state``                   ``states``
other numeric features      ``data/demo_<i>/t2r_steps/<path>`` (robomimic ignores them)
text step features          the demo's ``t2r_text`` attribute (JSON), robomimic has no text
==========================  ===========================================

Metadata: ``env_args`` is the file's ``data`` attribute (from the first episode),
``model_file`` the demo's, ``filter_keys`` (the masks an episode is in) the
``mask/`` datasets, and the rest (``task`` among it) the demo's ``t2r_metadata``
attribute (JSON). The mapping itself is ``data.attrs['t2r_features']`` (JSON), so
a file t2r wrote reads back into the same paths, dtypes and shapes; a file without
it reads with the defaults of the table (``dones`` as ``is_terminal`` bool).

Lost: ``next_obs`` is not carried (written as ``obs`` shifted by one step, the
last step repeated, as `write_robomimic_hdf5` does; a source whose last
``next_obs`` differs loses it); demos are renumbered ``demo_0..``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from t2r.data.convert.common import (
    IMAGE_FORMATS_KEY,
    PRIVATE_KEYS,
    TASK_KEY,
    Losses,
    is_text,
    jsonable,
    text_array,
)
from t2r.data.episodes import Episode
from t2r.data.errors import DataError

__all__ = ["is_hdf5_file", "read_robomimic_episodes", "write_robomimic_episodes"]

FEATURES_ATTR = "t2r_features"
TEXT_ATTR = "t2r_text"
METADATA_ATTR = "t2r_metadata"
EXTRA_GROUP = "t2r_steps"
_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
_DONE_PATHS = ("is_terminal", "done")
_FILE_METADATA = (
    "env_args",
    "model_file",
    "filter_keys",
    "demo",
    IMAGE_FORMATS_KEY,
    *PRIVATE_KEYS,
)


def is_hdf5_file(path: str) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(8) == _HDF5_MAGIC
    except OSError:
        return False


def _shifted_equal(obs: Mapping[str, np.ndarray], next_obs: Mapping[str, np.ndarray]) -> bool:
    for key, value in obs.items():
        if key not in next_obs:
            return False
        shifted = np.concatenate([value[1:], value[-1:]], axis=0)
        if shifted.shape != next_obs[key].shape or not np.array_equal(shifted, next_obs[key]):
            return False
    return True


def read_robomimic_episodes(
    path: str | os.PathLike[str], losses: Losses | None = None
) -> Iterator[Episode]:
    from t2r.robomimic.hdf5 import list_demos, open_hdf5, read_demo, read_filter_keys

    path = os.fspath(path)
    losses = losses or Losses(path)
    with open_hdf5(path) as f:
        names = list_demos(f)
        data = f["data"]
        layout: dict[str, Any] = {}
        if FEATURES_ATTR in data.attrs:
            try:
                layout = json.loads(_text(data.attrs[FEATURES_ATTR]))
            except json.JSONDecodeError as e:
                raise DataError(f"{path}: data.attrs[{FEATURES_ATTR!r}] is not JSON: {e}") from e
        env_args = None
        if "env_args" in data.attrs:
            try:
                env_args = json.loads(_text(data.attrs["env_args"]))
            except json.JSONDecodeError:
                env_args = _text(data.attrs["env_args"])
        masks: dict[str, list[str]] = {}
        for key, members in read_filter_keys(f).items():
            for member in members:
                masks.setdefault(member, []).append(key)
        obs_paths: dict[str, str] = layout.get("obs", {})
        for name in names:
            where = f"{path}: data/{name}"
            demo = read_demo(f, name)
            group = data[name]
            steps: dict[str, np.ndarray] = {}
            for key, value in demo.obs.items():
                steps[obs_paths.get(key, f"observation/{key}")] = value
            steps.update(_actions(demo.actions, layout.get("actions"), where))
            for field, default in (
                ("rewards", "reward"),
                ("dones", "is_terminal"),
                ("states", "state"),
            ):
                value = getattr(demo, field)
                if value is None:
                    continue
                entry = layout.get(field)
                if entry is None:
                    if field == "dones":
                        value = np.asarray(value) != 0
                    steps[default] = np.asarray(value)
                else:
                    steps[entry["path"]] = (
                        np.asarray(value)
                        .astype(entry["dtype"])
                        .reshape((len(value), *entry["shape"]))
                    )
            if EXTRA_GROUP in group:
                extra = group[EXTRA_GROUP]
                for key in layout.get("extra", []):
                    if key not in extra:
                        raise DataError(
                            f"{where}: no {EXTRA_GROUP}/{key}, which {FEATURES_ATTR} lists."
                        )
                    steps[key] = np.asarray(extra[key][()])
            if TEXT_ATTR in group.attrs:
                for key, values in json.loads(_text(group.attrs[TEXT_ATTR])).items():
                    steps[key] = text_array(values, (len(values),))
            if demo.next_obs is not None and not _shifted_equal(demo.obs, demo.next_obs):
                losses.note(
                    "next_obs",
                    f"{path}: next_obs is not carried into episodes (its last step differs "
                    "from the last obs; a robomimic writer derives next_obs by shifting obs).",
                )
            metadata: dict[str, Any] = {}
            if METADATA_ATTR in group.attrs:
                metadata.update(json.loads(_text(group.attrs[METADATA_ATTR])))
            if env_args is not None:
                metadata["env_args"] = env_args
            if demo.model_file is not None:
                metadata["model_file"] = demo.model_file
            if name in masks:
                metadata["filter_keys"] = masks[name]
            metadata["demo"] = name
            try:
                yield Episode(steps, metadata)
            except ValueError as e:
                raise DataError(f"{where}: {e}") from e


def _text(value: Any) -> str:
    return value.decode("utf-8") if isinstance(value, (bytes, np.bytes_)) else str(value)


def _actions(actions: np.ndarray, layout: Any, where: str) -> dict[str, np.ndarray]:
    if not layout:
        return {"action": np.asarray(actions)}
    out = {}
    flat = np.asarray(actions).reshape(len(actions), -1)
    start = 0
    for part in layout:
        size = int(np.prod(part["shape"], dtype=np.int64))
        if start + size > flat.shape[1]:
            raise DataError(
                f"{where}: actions has {flat.shape[1]} columns; {FEATURES_ATTR} lists more."
            )
        value = flat[:, start : start + size]
        out[part["path"]] = value.astype(part["dtype"]).reshape((len(flat), *part["shape"]))
        start += size
    return out


def _entry(path: str, value: np.ndarray) -> dict[str, Any]:
    return {"path": path, "shape": list(value.shape[1:]), "dtype": str(value.dtype)}


def _demo_parts(
    episode: Episode, where: str
) -> tuple[dict[str, Any], dict[str, np.ndarray], dict[str, np.ndarray], dict[str, list[str]]]:
    """(layout, demo arrays, extra step arrays, text) of one episode."""
    layout: dict[str, Any] = {"obs": {}, "actions": [], "extra": []}
    obs: dict[str, np.ndarray] = {}
    extra: dict[str, np.ndarray] = {}
    text: dict[str, list[str]] = {}
    arrays: dict[str, np.ndarray] = {}
    action_parts: list[tuple[str, np.ndarray]] = []
    done_path = next((p for p in _DONE_PATHS if p in episode.steps), None)
    for path, value in episode.steps.items():
        array = np.asarray(value)
        if is_text(array):
            if array.ndim != 1:
                raise ValueError(f"{where}: text feature {path!r} must hold one string per step.")
            text[path] = [str(v) for v in array.tolist()]
        elif path.startswith("observation/"):
            key = path.removeprefix("observation/").replace("/", ".")
            if key in obs:
                raise ValueError(f"{where}: {path!r} and another path both map to obs/{key}.")
            obs[key] = array
            layout["obs"][key] = path
        elif path == "action" or path.startswith("action/"):
            action_parts.append((path, array))
        elif path == "reward":
            arrays["rewards"] = array.reshape(len(array))
            layout["rewards"] = _entry(path, array)
        elif path == done_path:
            arrays["dones"] = array.reshape(len(array)).astype(np.int64)
            layout["dones"] = _entry(path, array)
        elif path == "state":
            arrays["states"] = array.reshape(len(array), -1)
            layout["states"] = _entry(path, array)
        else:
            extra[path] = array
            layout["extra"].append(path)
    if not action_parts:
        raise ValueError(
            f"{where}: robomimic needs actions; the episode has no 'action' or 'action/...' "
            f"feature (it has {sorted(episode.steps)})."
        )
    if not obs:
        raise ValueError(
            f"{where}: robomimic needs observations; the episode has no 'observation/...' "
            f"feature (it has {sorted(episode.steps)})."
        )
    if len(action_parts) == 1 and action_parts[0][1].ndim == 2 and action_parts[0][0] == "action":
        arrays["actions"] = action_parts[0][1]
    else:
        dtype = np.float64 if any(a.dtype == np.float64 for _, a in action_parts) else np.float32
        arrays["actions"] = np.concatenate(
            [a.reshape(len(a), -1).astype(dtype) for _, a in action_parts], axis=1
        )
        layout["actions"] = [_entry(p, a) for p, a in action_parts]
    arrays.update({f"obs/{k}": v for k, v in obs.items()})
    return layout, arrays, extra, text


def write_robomimic_episodes(
    path: str | os.PathLike[str],
    episodes: Iterable[Episode],
    *,
    compression: str | None = None,
    losses: Losses | None = None,
) -> Path:
    """Writes `episodes` as a robomimic HDF5 file (see the module docstring), atomically.

    Every episode must map to the same layout as the first. The demos are held in
    memory until written (as `write_robomimic_hdf5` takes them).
    """
    from t2r.atomic import atomic_file
    from t2r.robomimic.hdf5 import Demo, write_robomimic_hdf5

    final = Path(path)
    losses = losses or Losses(str(final))
    demos: list[Demo] = []
    extras: list[dict[str, np.ndarray]] = []
    texts: list[dict[str, list[str]]] = []
    metas: list[dict[str, Any]] = []
    masks: dict[str, list[str]] = {}
    layout: dict[str, Any] | None = None
    env_args: Any = None
    for index, episode in enumerate(episodes):
        where = f"{final}: episode {index}"
        this_layout, arrays, extra, text = _demo_parts(episode, where)
        if layout is None:
            layout = this_layout
            env_args = episode.metadata.get("env_args")
            if text:
                losses.note(
                    "text",
                    f"robomimic has no text field; {sorted(text)} are kept in each demo's "
                    f"{TEXT_ATTR!r} attribute, which robomimic's loaders ignore.",
                )
            if TASK_KEY in episode.metadata:
                losses.note(
                    "task",
                    f"robomimic has no language field; the task is kept in each demo's "
                    f"{METADATA_ATTR!r} attribute, which robomimic's loaders ignore.",
                )
        elif this_layout != layout:
            raise ValueError(
                f"{where}: its features map to another layout than episode 0's "
                f"({this_layout} != {layout}); a robomimic file holds one layout."
            )
        elif episode.metadata.get("env_args") != env_args:
            losses.note("env_args", "episodes differ in env_args; the first one's is written.")
        obs = {k.removeprefix("obs/"): v for k, v in arrays.items() if k.startswith("obs/")}
        model_file = episode.metadata.get("model_file")
        demos.append(
            Demo(
                obs=obs,
                actions=arrays["actions"],
                rewards=arrays.get("rewards"),
                dones=arrays.get("dones"),
                states=arrays.get("states"),
                model_file=None if model_file is None else str(model_file),
            )
        )
        extras.append(extra)
        texts.append(text)
        metas.append({k: v for k, v in episode.metadata.items() if k not in _FILE_METADATA})
        for key in episode.metadata.get("filter_keys", []) or []:
            masks.setdefault(str(key), []).append(f"demo_{index}")
    if layout is None:
        raise ValueError(f"{final}: no episodes to write.")
    if env_args is None:
        losses.note(
            "env_args",
            "no episode has 'env_args' metadata; data.attrs['env_args'] is written as {} "
            "(robomimic's rollouts need the env's name and kwargs there).",
        )
        env_args = {}
    if not isinstance(env_args, Mapping):
        env_args = {"env_args": env_args}
    with atomic_file(final) as tmp:
        write_robomimic_hdf5(tmp, demos, env_args, masks=masks, compression=compression)
        with h5py.File(tmp, "a") as f:
            data = f["data"]
            data.attrs[FEATURES_ATTR] = json.dumps(layout)
            for index, (extra, text, meta) in enumerate(zip(extras, texts, metas)):
                group = data[f"demo_{index}"]
                for key, value in extra.items():
                    group.create_dataset(f"{EXTRA_GROUP}/{key}", data=value)
                if text:
                    group.attrs[TEXT_ATTR] = json.dumps(text)
                if meta:
                    group.attrs[METADATA_ATTR] = json.dumps(jsonable(meta, "metadata", losses))
    return final
