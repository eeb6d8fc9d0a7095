"""robomimic's HDF5 demonstration files: the writer and the reading helpers.

Layout (robomimic's, read by robomimic's own tools unchanged)::

    data                       attrs: total (sum of num_samples), env_args (JSON)
    data/demo_<i>              attrs: num_samples, model_file (optional)
    data/demo_<i>/obs/<key>       (N, ...)   one row per step
    data/demo_<i>/next_obs/<key>  (N, ...)
    data/demo_<i>/actions         (N, A)
    data/demo_<i>/rewards         (N,)       optional
    data/demo_<i>/dones           (N,)       optional
    data/demo_<i>/states          (N, S)     optional (simulator states)
    mask/<filter_key>          (M,) bytes demo names, e.g. b"demo_3"

``env_args`` is robomimic's env metadata: ``{"env_name": ..., "type": 1 (robosuite)
or 2 (gym), "env_kwargs": {...}}``. Demos are ordered by their integer suffix
(demo_2 before demo_10), as robomimic's SequenceDataset orders them.

Everything here imports h5py and numpy only (no robosuite).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeAlias

import h5py
import numpy as np

from t2r.atomic import atomic_file
from t2r.data.errors import DataError

__all__ = [
    "Demo",
    "H5Source",
    "dataset_info",
    "demo_sort_key",
    "format_dataset_info",
    "list_demos",
    "open_hdf5",
    "read_demo",
    "read_env_args",
    "read_filter_keys",
    "sorted_demo_names",
    "split_train_val",
    "write_filter_keys",
    "write_robomimic_hdf5",
]

H5Source: TypeAlias = "str | os.PathLike[str] | h5py.File"
"""A path to a robomimic file, or an h5py file already open for reading."""

_DEMO_SUFFIX = re.compile(r"(\d+)$")


@dataclass
class Demo:
    """One demonstration, N steps.

    Attributes:
        obs: key -> (N, ...) array; images are (N, H, W, 3) uint8.
        actions: (N, A) float.
        rewards: (N,) float, or None to leave the dataset out of the file.
        dones: (N,) int, or None to leave it out.
        states: (N, S) simulator states, or None.
        next_obs: key -> (N, ...); None derives it from `obs` shifted by one step,
            the last step repeated (the observation after the final action is unknown).
        model_file: the simulator's model XML (robosuite), stored as the demo's attribute.
    """

    obs: dict[str, np.ndarray]
    actions: np.ndarray
    rewards: np.ndarray | None = None
    dones: np.ndarray | None = None
    states: np.ndarray | None = None
    next_obs: dict[str, np.ndarray] | None = None
    model_file: str | None = None

    @property
    def num_samples(self) -> int:
        return int(np.shape(self.actions)[0])


def demo_sort_key(name: str) -> int:
    """The integer suffix of a demo name (``demo_12`` -> 12); the order robomimic uses."""
    match = _DEMO_SUFFIX.search(name)
    if match is None:
        raise DataError(
            f"demo name {name!r} has no integer suffix (expected e.g. 'demo_0')", key=name
        )
    return int(match.group(1))


def sorted_demo_names(names: Sequence[str]) -> list[str]:
    """`names` ordered by integer suffix (demo_2 before demo_10)."""
    return sorted(names, key=demo_sort_key)


@contextlib.contextmanager
def open_hdf5(source: H5Source, swmr: bool = False) -> Iterator[h5py.File]:
    """Yields an open file for reading; closes it afterwards only if it opened it.

    A missing file or one that is not HDF5 raises `DataError` naming the path.
    """
    if isinstance(source, h5py.File):
        yield source
        return
    path = os.fspath(source)
    try:
        f = h5py.File(path, "r", swmr=swmr, libver="latest") if swmr else h5py.File(path, "r")
    except FileNotFoundError as e:
        raise DataError(f"{path}: no such robomimic HDF5 file") from e
    except OSError as e:
        raise DataError(f"{path}: cannot open as HDF5: {e}") from e
    try:
        yield f
    finally:
        f.close()


def _file_name(f: h5py.File) -> str:
    return str(f.filename)


def _data_group(f: h5py.File) -> h5py.Group:
    group = f.get("data")
    if not isinstance(group, h5py.Group):
        raise DataError(f"{_file_name(f)}: no 'data' group (not a robomimic dataset)", key="data")
    return group


def read_filter_keys(source: H5Source) -> dict[str, list[str]]:
    """Filter key -> demo names (decoded from the bytes under ``mask/``), in file order."""
    with open_hdf5(source) as f:
        mask = f.get("mask")
        if mask is None:
            return {}
        return {key: [_decode(v) for v in np.asarray(mask[key][()]).reshape(-1)] for key in mask}


def _decode(value: Any) -> str:
    return value.decode("utf-8") if isinstance(value, bytes | np.bytes_) else str(value)


def list_demos(source: H5Source, filter_key: str | None = None) -> list[str]:
    """The demo names (all, or those under ``mask/<filter_key>``), ordered by integer suffix.

    An unknown filter key raises `DataError` listing the ones the file has; a
    mask naming a demo that is not in ``data`` raises naming both.
    """
    with open_hdf5(source) as f:
        data = _data_group(f)
        if filter_key is None:
            return sorted_demo_names(list(data.keys()))
        masks = read_filter_keys(f)
        if filter_key not in masks:
            raise DataError(
                f"{_file_name(f)}: no filter key 'mask/{filter_key}' "
                f"(the file has: {sorted(masks) or 'none'})",
                key=f"mask/{filter_key}",
            )
        names = masks[filter_key]
        for name in names:
            if name not in data:
                raise DataError(
                    f"{_file_name(f)}: mask/{filter_key} names {name!r}, which is not in 'data'",
                    key=f"mask/{filter_key}",
                )
        return sorted_demo_names(names)


def read_env_args(source: H5Source) -> dict[str, Any]:
    """``data.attrs["env_args"]`` parsed from JSON (robomimic's env metadata)."""
    with open_hdf5(source) as f:
        data = _data_group(f)
        if "env_args" not in data.attrs:
            raise DataError(
                f"{_file_name(f)}: data.attrs has no 'env_args'", key="data.attrs/env_args"
            )
        raw = data.attrs["env_args"]
        text = _decode(raw)
        try:
            value = json.loads(text)
        except json.JSONDecodeError as e:
            raise DataError(
                f"{_file_name(f)}: data.attrs['env_args'] is not JSON: {e}",
                key="data.attrs/env_args",
            ) from e
        if not isinstance(value, dict):
            raise DataError(
                f"{_file_name(f)}: data.attrs['env_args'] is a JSON {type(value).__name__}, "
                "expected an object",
                key="data.attrs/env_args",
            )
        return value


def read_demo(source: H5Source, name: str) -> Demo:
    """One demo read back whole (every key the file has for it)."""
    with open_hdf5(source) as f:
        data = _data_group(f)
        if name not in data:
            raise DataError(f"{_file_name(f)}: no demo 'data/{name}'", key=f"data/{name}")
        group = data[name]

        def _obs(prefix: str) -> dict[str, np.ndarray] | None:
            if prefix not in group:
                return None
            return {k: np.asarray(group[prefix][k][()]) for k in group[prefix]}

        def _opt(key: str) -> np.ndarray | None:
            return np.asarray(group[key][()]) if key in group else None

        model_file = group.attrs.get("model_file")
        return Demo(
            obs=_obs("obs") or {},
            actions=np.asarray(group["actions"][()]),
            rewards=_opt("rewards"),
            dones=_opt("dones"),
            states=_opt("states"),
            next_obs=_obs("next_obs"),
            model_file=None if model_file is None else _decode(model_file),
        )


def _shifted(obs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """next_obs from obs: row t is obs row t+1; the last row is repeated."""
    out = {}
    for key, value in obs.items():
        arr = np.asarray(value)
        out[key] = np.concatenate([arr[1:], arr[-1:]], axis=0) if len(arr) else arr
    return out


def _check_demo(index: int, demo: Demo) -> None:
    where = f"demo_{index}"
    actions = np.asarray(demo.actions)
    if actions.ndim < 1 or actions.shape[0] < 1:
        raise DataError(
            f"{where}: actions has shape {actions.shape}, expected (N, A) with N >= 1", key=where
        )
    n = actions.shape[0]
    if not demo.obs:
        raise DataError(f"{where}: obs is empty", key=where)
    groups: list[tuple[str, Mapping[str, np.ndarray]]] = [("obs", demo.obs)]
    if demo.next_obs is not None:
        groups.append(("next_obs", demo.next_obs))
        if set(demo.next_obs) != set(demo.obs):
            raise DataError(
                f"{where}: next_obs keys {sorted(demo.next_obs)} != obs keys {sorted(demo.obs)}",
                key=where,
            )
    for prefix, group in groups:
        for key, value in group.items():
            if "/" in key:
                raise DataError(
                    f"{where}/{prefix}/{key}: observation keys cannot contain '/'", key=key
                )
            length = np.shape(value)[0] if np.ndim(value) else None
            if length != n:
                raise DataError(
                    f"{where}/{prefix}/{key}: {length} steps, but actions has {n}",
                    key=f"{prefix}/{key}",
                )
    for name in ("rewards", "dones", "states"):
        value = getattr(demo, name)
        if value is not None and (np.ndim(value) == 0 or np.shape(value)[0] != n):
            raise DataError(
                f"{where}/{name}: shape {np.shape(value)}, expected {n} steps first", key=name
            )


def write_robomimic_hdf5(
    path: str | os.PathLike[str],
    demos: Sequence[Demo],
    env_args: Mapping[str, Any],
    masks: Mapping[str, Sequence[str]] | None = None,
    compression: str | None = None,
) -> Path:
    """Writes `demos` as ``data/demo_0 .. demo_{n-1}`` in robomimic's layout, atomically.

    The file appears complete or not at all (temporary name in the same directory,
    fsync, rename). `masks` maps a filter key to demo names (``"demo_3"``), stored as
    bytes under ``mask/<key>``. `compression` (e.g. ``"gzip"``) applies to the
    observation datasets, which is where images make files large.

    Returns the path written.
    """
    path = Path(path)
    for i, demo in enumerate(demos):
        _check_demo(i, demo)
    names = [f"demo_{i}" for i in range(len(demos))]
    for key, members in (masks or {}).items():
        for member in members:
            if member not in names:
                raise DataError(
                    f"mask/{key}: names {member!r}, which is not one of the demos written", key=key
                )
    env_json = json.dumps(dict(env_args))

    with atomic_file(path) as tmp, h5py.File(tmp, "w") as f:
        data = f.create_group("data")
        total = 0
        for name, demo in zip(names, demos, strict=True):
            group = data.create_group(name)
            n = demo.num_samples
            group.attrs["num_samples"] = n
            total += n
            if demo.model_file is not None:
                group.attrs["model_file"] = demo.model_file
            next_obs = demo.next_obs if demo.next_obs is not None else _shifted(demo.obs)
            for prefix, obs in (("obs", demo.obs), ("next_obs", next_obs)):
                sub = group.create_group(prefix)
                for key, value in obs.items():
                    sub.create_dataset(key, data=np.asarray(value), compression=compression)
            group.create_dataset("actions", data=np.asarray(demo.actions))
            for extra in ("rewards", "dones", "states"):
                value = getattr(demo, extra)
                if value is not None:
                    group.create_dataset(extra, data=np.asarray(value))
        data.attrs["total"] = total
        data.attrs["env_args"] = env_json
        for key, members in (masks or {}).items():
            f.create_dataset(f"mask/{key}", data=np.array(list(members), dtype="S"))
    return path


def write_filter_keys(path: str | os.PathLike[str], masks: Mapping[str, Sequence[str]]) -> None:
    """Adds (or replaces) ``mask/<key>`` filter keys in an existing file, atomically.

    The file is copied to a temporary name, the masks written there, and the copy
    renamed over the original, so a reader that has the file open keeps a whole
    file (the old one). Every name must be a demo in ``data``.
    """
    path = Path(path)
    existing = set(list_demos(path))
    for key, members in masks.items():
        for member in members:
            if member not in existing:
                raise DataError(
                    f"{path}: mask/{key} would name {member!r}, which is not in 'data'", key=key
                )
    with atomic_file(path) as tmp:
        shutil.copyfile(path, tmp)
        with h5py.File(tmp, "a") as f:
            for key, members in masks.items():
                name = f"mask/{key}"
                if name in f:
                    del f[name]
                f.create_dataset(name, data=np.array(list(members), dtype="S"))


# ------------------------------------------------------------------ dataset tools
def _key_infos(group: h5py.Group, prefix: str = "") -> dict[str, dict[str, Any]]:
    """Per-step shape and dtype of every dataset under `group` (obs/..., actions, ...)."""
    out: dict[str, dict[str, Any]] = {}
    for name, item in group.items():
        path = f"{prefix}{name}"
        if isinstance(item, h5py.Group):
            out.update(_key_infos(item, f"{path}/"))
        else:
            out[path] = {"shape": [int(d) for d in item.shape[1:]], "dtype": str(item.dtype)}
    return out


def dataset_info(source: H5Source) -> dict[str, Any]:
    """What a robomimic file holds (robomimic's get_dataset_info), as a JSON-able dict.

    ``num_demos``, ``total_samples``, ``lengths`` (min / max / mean), ``demos``
    (name and num_samples, in integer order), ``keys`` (per-step shape and dtype in
    the first demo; ``missing_in`` counts the demos that lack a key),
    ``filter_keys`` (demos and samples under each mask), ``action_range``
    (per-dimension min and max over every step) and ``env_args`` (None if absent).
    """
    with open_hdf5(source) as f:
        names = list_demos(f)
        data = _data_group(f)
        lengths = {name: int(data[name].attrs.get("num_samples", 0)) for name in names}
        keys: dict[str, dict[str, Any]] = {}
        if names:
            keys = _key_infos(data[names[0]])
            for name in names[1:]:
                present = _key_infos(data[name])
                for key, info in keys.items():
                    if key not in present:
                        info["missing_in"] = info.get("missing_in", 0) + 1
        action_range = None
        if names and all("actions" in data[name] for name in names):
            low = np.min([np.min(data[n]["actions"][()], axis=0) for n in names], axis=0)
            high = np.max([np.max(data[n]["actions"][()], axis=0) for n in names], axis=0)
            action_range = {"min": np.atleast_1d(low).tolist(), "max": np.atleast_1d(high).tolist()}
        filters = {
            key: {"num_demos": len(members), "num_samples": sum(lengths.get(m, 0) for m in members)}
            for key, members in read_filter_keys(f).items()
        }
        try:
            env_args: dict[str, Any] | None = read_env_args(f)
        except DataError:
            env_args = None
        values = list(lengths.values())
        return {
            "path": _file_name(f),
            "num_demos": len(names),
            "total_samples": int(sum(values)),
            "lengths": {
                "min": min(values, default=0),
                "max": max(values, default=0),
                "mean": float(np.mean(values)) if values else 0.0,
            },
            "demos": [{"name": n, "num_samples": lengths[n]} for n in names],
            "keys": keys,
            "filter_keys": filters,
            "action_range": action_range,
            "env_args": env_args,
        }


def format_dataset_info(info: Mapping[str, Any]) -> str:
    """`dataset_info` as text for a terminal."""
    lengths = info["lengths"]
    lines = [
        f"{info['path']}",
        f"demos: {info['num_demos']}  samples: {info['total_samples']}  "
        f"length min/mean/max: {lengths['min']}/{lengths['mean']:.1f}/{lengths['max']}",
        "keys (per step, first demo):",
    ]
    width = max((len(k) for k in info["keys"]), default=0)
    for key, key_info in info["keys"].items():
        missing = (
            f"  (missing in {key_info['missing_in']} demos)" if "missing_in" in key_info else ""
        )
        shape = "(" + ", ".join(str(d) for d in key_info["shape"]) + ")"
        lines.append(f"  {key:{width}s}  {shape:>14s}  {key_info['dtype']}{missing}")
    lines.append("filter keys:" + ("" if info["filter_keys"] else " none"))
    for key, f_info in info["filter_keys"].items():
        lines.append(f"  mask/{key}: {f_info['num_demos']} demos, {f_info['num_samples']} samples")
    if info["action_range"] is not None:
        low = ", ".join(f"{v:.3g}" for v in info["action_range"]["min"])
        high = ", ".join(f"{v:.3g}" for v in info["action_range"]["max"])
        lines.append(f"action min: [{low}]")
        lines.append(f"action max: [{high}]")
    lines.append(f"env_args: {json.dumps(info['env_args'])}")
    return "\n".join(lines)


def split_train_val(
    path: str | os.PathLike[str],
    val_ratio: float = 0.1,
    filter_key: str | None = None,
    seed: int = 0,
) -> dict[str, list[str]]:
    """Writes ``mask/train`` and ``mask/valid`` (``<filter_key>_train`` / ``_valid``).

    robomimic's split_train_val.py: the demos (all, or those under
    ``mask/<filter_key>``) sorted by name, ``int(val_ratio * n)`` of them chosen for
    validation by shuffling a 0/1 mask with ``np.random.RandomState(seed)``; with
    the default seed 0 the split is the one robomimic's script makes. The masks
    are written atomically (:func:`write_filter_keys`). Returns ``{mask name: demos}``.
    """
    if not 0.0 < val_ratio < 1.0:
        raise ValueError(f"val_ratio must be in (0, 1), got {val_ratio}")
    path = Path(path)
    demos = sorted(list_demos(path, filter_key))  # by name, as robomimic's script sorts
    num_val = int(val_ratio * len(demos))
    mask = np.zeros(len(demos))
    mask[:num_val] = 1.0
    np.random.RandomState(seed).shuffle(mask)
    train = [demos[i] for i in np.flatnonzero(mask == 0)]
    valid = [demos[i] for i in np.flatnonzero(mask == 1)]
    prefix = "" if filter_key is None else f"{filter_key}_"
    masks = {f"{prefix}train": train, f"{prefix}valid": valid}
    write_filter_keys(path, masks)
    return masks
