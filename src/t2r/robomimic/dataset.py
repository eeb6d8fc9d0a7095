"""robomimic's SequenceDataset over its HDF5 files, and the t2r input generator on top.

:class:`SequenceDataset` has robomimic's semantics (robomimic/utils/dataset.py):
an item is a window of ``frame_stack - 1 + seq_length`` steps of one demo::

    {"obs": {key: (T, ...)}, "next_obs": {key: (T, ...)},   # load_next_obs
     "goal_obs": {key: (...)},                              # goal_mode="last"
     "actions": (T, A) float32,                             # action keys, normalized, concatenated
     "rewards": (T,) float32, "dones": (T,) float32,        # the other dataset keys
     "pad_mask": (T, 1) bool,                               # get_pad_mask
     "index": int}

Item ``i`` of a demo starts at step ``t = i`` (``i + frame_stack - 1`` without
``pad_frame_stack``) and covers steps ``t - (frame_stack - 1) .. t + seq_length - 1``;
steps before 0 or after the demo's end repeat the first / last step (robomimic's
``pad_same``) and have pad mask 0. With both paddings a demo of N steps gives N
items; without ``pad_frame_stack`` ``frame_stack - 1`` fewer, without
``pad_seq_length`` ``seq_length - 1`` fewer.

``hdf5_cache_mode``: ``"all"`` holds every key in memory as one array per key
(all demos concatenated), so a batch is a handful of numpy gathers and no h5py
call (robomimic caches each item instead; the values are the same); ``"low_dim"``
holds everything but image observations, which are read from the file per item;
``None`` reads everything from the file per item.

:class:`RobomimicSource` is the t2r :class:`~t2r.data.sources.DataSource` (unit =
demo, example = an item index) and :class:`RobomimicInputGenerator` batches it
through the shared pipeline (seeded shuffling, sharding, exact resume).
"""

from __future__ import annotations

import copy
import logging
import os
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import h5py
import numpy as np
import torch

from t2r.data.errors import DataError
from t2r.data.input_generators import SourceInputGenerator
from t2r.data.tfrecord import ReadStats
from t2r.robomimic.hdf5 import list_demos
from t2r.specs import ExtendedTensorSpec, TensorSpecStruct, flatten_spec_structure, to_tensors
from t2r.specs.extended_tensor_spec import format_shape, shapes_compatible

__all__ = [
    "CACHE_MODES",
    "RobomimicInputGenerator",
    "RobomimicSource",
    "SequenceDataset",
    "action_stats_to_normalization_stats",
    "detect_obs_modality",
]

logger = logging.getLogger(__name__)

CACHE_MODES = ("all", "low_dim", None)
_IMAGE_MODALITIES = ("rgb", "depth")
NormalizationStats = dict[str, dict[str, np.ndarray]]


def detect_obs_modality(shape: Sequence[int], dtype: np.dtype) -> str:
    """``"rgb"`` for a per-step shape (H, W, C) of dtype uint8, else ``"low_dim"``.

    robomimic takes each key's modality from the config's ``observation.modalities``;
    without one, this is the rule (pass ``obs_modalities`` to say otherwise).
    """
    return "rgb" if len(shape) == 3 and np.dtype(dtype) == np.uint8 else "low_dim"


# ------------------------------------------------------------------ statistics
def _traj_stats(values: np.ndarray) -> dict[str, Any]:
    """n, mean, sum of squared deviations, min, max over the first axis (kept as 1)."""
    mean = values.mean(axis=0, keepdims=True)
    return {
        "n": values.shape[0],
        "mean": mean,
        "sqdiff": ((values - mean) ** 2).sum(axis=0, keepdims=True),
        "min": values.min(axis=0, keepdims=True),
        "max": values.max(axis=0, keepdims=True),
    }


def _merge_stats(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """Chan et al.'s parallel update of mean and squared deviations."""
    n = a["n"] + b["n"]
    delta = b["mean"] - a["mean"]
    return {
        "n": n,
        "mean": (a["n"] * a["mean"] + b["n"] * b["mean"]) / n,
        "sqdiff": a["sqdiff"] + b["sqdiff"] + delta**2 * (a["n"] * b["n"]) / n,
        "min": np.minimum(a["min"], b["min"]),
        "max": np.maximum(a["max"], b["max"]),
    }


def action_stats_to_normalization_stats(
    action_stats: Mapping[str, Mapping[str, Any]],
    action_config: Mapping[str, Mapping[str, Any]],
) -> NormalizationStats:
    """Per action key ``{"scale": (1, A), "offset": (1, A)}``: normalized = (a - offset) / scale.

    ``action_config[key]["normalization"]``: None (scale 1, offset 0), ``"min_max"``
    (min -> -0.999999, max -> 0.999999; dims whose range is below 1e-4 are only
    centred) or ``"gaussian"`` (mean and std; std below 1e-6 taken as 1), as robomimic.
    """
    out: NormalizationStats = {}
    for key, stats in action_stats.items():
        method = (action_config.get(key) or {}).get("normalization")
        mean = np.asarray(stats["mean"], dtype=np.float32)
        if method is None:
            out[key] = {"scale": np.ones_like(mean), "offset": np.zeros_like(mean)}
        elif method == "min_max":
            low = np.asarray(stats["min"], dtype=np.float32)
            high = np.asarray(stats["max"], dtype=np.float32)
            out_low, out_high = -0.999999, 0.999999
            span = high - low
            flat = span < 1e-4
            span[flat] = out_high - out_low
            scale = span / (out_high - out_low)
            offset = low - scale * out_low
            offset[flat] = low[flat] - (out_high + out_low) / 2
            out[key] = {"scale": scale.astype(np.float32), "offset": offset.astype(np.float32)}
        elif method == "gaussian":
            std = np.sqrt(np.asarray(stats["sqdiff"]) / stats["n"]).astype(np.float32)
            std[std < 1e-6] = 1.0
            out[key] = {"scale": std, "offset": mean}
        else:
            raise ValueError(
                f"action_config[{key!r}].normalization: {method!r} is not one of "
                "None, 'min_max', 'gaussian'"
            )
    return out


def _process_for_stats(values: np.ndarray, modality: str) -> np.ndarray:
    """robomimic's default observation processing before statistics.

    rgb: (N, H, W, C) -> (N, C, H, W) float in [0, 1]; depth: channels first; else as is.
    """
    values = values.astype(np.float32)
    if modality == "rgb":
        return np.moveaxis(np.clip(values / 255.0, 0.0, 1.0), -1, -3)
    if modality == "depth":
        return np.moveaxis(values, -1, -3)
    return values


# -------------------------------------------------------------------- dataset
class SequenceDataset(torch.utils.data.Dataset[dict[str, Any]]):
    """Windows of robomimic demos, with robomimic's SequenceDataset semantics.

    Args:
        hdf5_path: the robomimic HDF5 file.
        obs_keys: observation keys to fetch (``data/<demo>/obs/<key>``).
        dataset_keys: other per-step keys (``actions``, ``rewards``, ``dones``, ...);
            a key a demo lacks is zero-filled with shape (N, 1), as robomimic does.
            Dataset keys are float32.
        frame_stack: frames of history before each window's first step (>= 1).
        seq_length: steps in each window (>= 1).
        pad_frame_stack: start windows at step 0, repeating step 0 for the history.
        pad_seq_length: keep windows running past the end, repeating the last step.
        get_pad_mask: add ``pad_mask`` (T, 1) bool: True on real steps.
        goal_mode: None or ``"last"``: ``goal_obs`` is next_obs at the last step
            a window can reach (needs load_next_obs).
        hdf5_cache_mode: ``"all"``, ``"low_dim"`` or None (see the module docstring).
        hdf5_use_swmr: open the file in SWMR read mode, as robomimic does.
        hdf5_normalize_obs: compute observation normalization statistics
            (:meth:`get_obs_normalization_stats`); the items themselves are not
            normalized (robomimic normalizes in the algorithm and the rollout policy).
        filter_by_attribute: use only the demos under ``mask/<filter key>``.
        load_next_obs: fetch ``next_obs`` too.
        demo_limit: use only the first this many demos (after filtering and sorting).
        action_keys: dataset keys concatenated (in this order) into ``actions``.
        action_config: per action key ``{"normalization": None | "min_max" | "gaussian"}``
            (robomimic's ``train.action_config``); default: no normalization.
        obs_modalities: ``{obs key: "low_dim" | "rgb" | "depth" | "scan"}``; keys not
            named get :func:`detect_obs_modality`. Only ``"low_dim"`` keys are cached
            by ``hdf5_cache_mode="low_dim"``.
    """

    def __init__(
        self,
        hdf5_path: str | os.PathLike[str],
        obs_keys: Sequence[str],
        dataset_keys: Sequence[str] = ("actions", "rewards", "dones"),
        frame_stack: int = 1,
        seq_length: int = 1,
        pad_frame_stack: bool = True,
        pad_seq_length: bool = True,
        get_pad_mask: bool = False,
        goal_mode: str | None = None,
        hdf5_cache_mode: str | None = None,
        hdf5_use_swmr: bool = True,
        hdf5_normalize_obs: bool = False,
        filter_by_attribute: str | None = None,
        load_next_obs: bool = True,
        demo_limit: int | None = None,
        *,
        action_keys: Sequence[str] = ("actions",),
        action_config: Mapping[str, Mapping[str, Any]] | None = None,
        obs_modalities: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__()
        self.hdf5_path = os.path.expanduser(os.fspath(hdf5_path))
        if hdf5_cache_mode not in CACHE_MODES:
            raise ValueError(
                f"hdf5_cache_mode must be one of {CACHE_MODES}, got {hdf5_cache_mode!r}"
            )
        if frame_stack < 1 or seq_length < 1:
            raise ValueError(
                f"frame_stack and seq_length must be >= 1, got {frame_stack} and {seq_length}"
            )
        if goal_mode not in (None, "last"):
            raise ValueError(f"goal_mode must be None or 'last', got {goal_mode!r}")
        if goal_mode == "last" and not load_next_obs:
            raise ValueError(
                "goal_mode='last' takes the goal from next_obs: it needs load_next_obs"
            )
        if not obs_keys:
            raise ValueError("SequenceDataset needs at least one observation key")
        self.obs_keys = tuple(obs_keys)
        self.action_keys = tuple(action_keys)
        # robomimic adds the action keys to the dataset keys.
        self.dataset_keys = tuple(dict.fromkeys([*dataset_keys, *self.action_keys]))
        self.action_config = {
            k: dict((action_config or {}).get(k) or {"normalization": None})
            for k in self.action_keys
        }
        self.n_frame_stack = int(frame_stack)
        self.seq_length = int(seq_length)
        self.pad_frame_stack = bool(pad_frame_stack)
        self.pad_seq_length = bool(pad_seq_length)
        self.get_pad_mask = bool(get_pad_mask)
        self.goal_mode = goal_mode
        self.hdf5_cache_mode = hdf5_cache_mode
        self.hdf5_use_swmr = bool(hdf5_use_swmr)
        self.hdf5_normalize_obs = bool(hdf5_normalize_obs)
        self.filter_by_attribute = filter_by_attribute
        self.load_next_obs = bool(load_next_obs)
        self._hdf5_file: h5py.File | None = None
        self._hdf5_pid = os.getpid()

        self._load_demo_info(demo_limit)
        self._read_key_info(obs_modalities or {})

        self.obs_normalization_stats: NormalizationStats | None = None
        if self.hdf5_normalize_obs:
            self.obs_normalization_stats = self._compute_obs_normalization_stats()
        self.action_normalization_stats: NormalizationStats | None = None

        self._cache: dict[str, np.ndarray] = {}
        if hdf5_cache_mode is not None:
            self._load_cache()
        self.get_action_normalization_stats()  # from the cache when there is one
        self.close_and_delete_hdf5_handle()

    # ------------------------------------------------------------ file and index
    @property
    def hdf5_file(self) -> h5py.File:
        """The file, opened lazily (each DataLoader worker opens its own).

        A handle inherited through fork (a worker started after the parent read
        from the file) is left to the parent and a fresh one opened: HDF5 handles
        must not be shared between processes.
        """
        if self._hdf5_file is not None and self._hdf5_pid != os.getpid():
            self._hdf5_file = None
        if self._hdf5_file is None:
            self._hdf5_pid = os.getpid()
            try:
                if self.hdf5_use_swmr:
                    self._hdf5_file = h5py.File(self.hdf5_path, "r", swmr=True, libver="latest")
                else:
                    self._hdf5_file = h5py.File(self.hdf5_path, "r")
            except FileNotFoundError as e:
                raise DataError(f"{self.hdf5_path}: no such robomimic HDF5 file") from e
            except OSError as e:
                raise DataError(f"{self.hdf5_path}: cannot open as HDF5: {e}") from e
        return self._hdf5_file

    def close_and_delete_hdf5_handle(self) -> None:
        if self._hdf5_file is not None and self._hdf5_pid == os.getpid():
            self._hdf5_file.close()
        self._hdf5_file = None

    def __del__(self) -> None:
        try:
            self.close_and_delete_hdf5_handle()
        except Exception:  # interpreter shutdown
            pass

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_hdf5_file"] = None  # each process opens its own handle
        return state

    def _load_demo_info(self, demo_limit: int | None) -> None:
        f = self.hdf5_file
        demos = list_demos(f, self.filter_by_attribute)
        if demo_limit is not None:
            demos = demos[:demo_limit]
        if not demos:
            where = f" under mask/{self.filter_by_attribute}" if self.filter_by_attribute else ""
            raise DataError(f"{self.hdf5_path}: no demos{where}")
        self.demos = demos
        self.n_demos = len(demos)
        lengths = []
        for demo in demos:
            attrs = f[f"data/{demo}"].attrs
            if "num_samples" not in attrs:
                raise DataError(f"{self.hdf5_path}: data/{demo} has no num_samples attribute")
            lengths.append(int(attrs["num_samples"]))
        self._demo_lengths = np.asarray(lengths, dtype=np.int64)
        self._demo_offsets = np.concatenate([[0], np.cumsum(self._demo_lengths)[:-1]]).astype(
            np.int64
        )
        history, tail = self.n_frame_stack - 1, self.seq_length - 1
        counts = []
        for demo, n in zip(demos, lengths, strict=True):
            count = n - (0 if self.pad_frame_stack else history)
            count -= 0 if self.pad_seq_length else tail
            if self.pad_seq_length:
                if n < 1:
                    raise DataError(f"{self.hdf5_path}: data/{demo} has no steps")
                count = max(count, 1)
            if count < 1 or (not self.pad_frame_stack and history >= n):
                raise DataError(
                    f"{self.hdf5_path}: data/{demo} has {n} steps, too few for frame_stack="
                    f"{self.n_frame_stack}, seq_length={self.seq_length} without padding"
                )
            counts.append(count)
        self._demo_num_sequences = np.asarray(counts, dtype=np.int64)
        self._demo_start_indices = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
        self.total_num_sequences = int(sum(counts))
        # item -> demo position, item -> step of the demo the window starts at
        self._index_demo = np.repeat(np.arange(self.n_demos), counts)
        first = 0 if self.pad_frame_stack else history
        self._index_step = (
            np.arange(self.total_num_sequences)
            - np.repeat(self._demo_start_indices, counts)
            + first
        )

    def _read_key_info(self, obs_modalities: Mapping[str, str]) -> None:
        """Per-step shapes and dtypes of the keys, checked present in every demo."""
        f = self.hdf5_file
        self.obs_shapes: dict[str, tuple[int, ...]] = {}
        self.obs_dtypes: dict[str, np.dtype] = {}
        prefixes = ("obs", "next_obs") if self.load_next_obs else ("obs",)
        for demo in self.demos:
            group = f[f"data/{demo}"]
            for prefix in prefixes:
                for key in self.obs_keys:
                    name = f"{prefix}/{key}"
                    if name not in group:
                        raise DataError(
                            f"{self.hdf5_path}: data/{demo}/{name} is missing "
                            f"(obs keys asked for: {list(self.obs_keys)})",
                            key=name,
                        )
        first = f[f"data/{self.demos[0]}"]
        for key in self.obs_keys:
            ds = first[f"obs/{key}"]
            self.obs_shapes[key] = tuple(int(d) for d in ds.shape[1:])
            self.obs_dtypes[key] = np.dtype(ds.dtype)
        self.obs_modalities = {
            k: obs_modalities.get(k) or detect_obs_modality(self.obs_shapes[k], self.obs_dtypes[k])
            for k in self.obs_keys
        }
        self.dataset_shapes: dict[str, tuple[int, ...]] = {}
        for key in self.dataset_keys:
            if key in first:
                shape = tuple(int(d) for d in first[key].shape[1:])
                if key in self.action_keys and not shape:
                    shape = (1,)
            else:
                shape = (1,)  # zero-filled
            self.dataset_shapes[key] = shape
        self.action_dim = int(sum(int(np.prod(self.dataset_shapes[k])) for k in self.action_keys))

    def _obs_key_cached(self, key: str) -> bool:
        if self.hdf5_cache_mode == "all":
            return True
        return self.hdf5_cache_mode == "low_dim" and self.obs_modalities[key] == "low_dim"

    def _cached_names(self) -> list[str]:
        names = [k for k in self.dataset_keys]
        for key in self.obs_keys:
            if self._obs_key_cached(key):
                names.append(f"obs/{key}")
                if self.load_next_obs:
                    names.append(f"next_obs/{key}")
        return names

    def _read_demo_key(self, demo: str, name: str, n: int) -> np.ndarray:
        """A whole key of one demo; dataset keys as float32, zeros (N, 1) when missing."""
        group = self.hdf5_file[f"data/{demo}"]
        if name.startswith(("obs/", "next_obs/")):
            return np.asarray(group[name][()])
        if name not in group:
            return np.zeros((n, 1), dtype=np.float32)
        return np.asarray(group[name][()], dtype=np.float32)

    def _load_cache(self) -> None:
        """Every cached key as one array over all demos (in ``self.demos`` order)."""
        names = self._cached_names()
        parts: dict[str, list[np.ndarray]] = {name: [] for name in names}
        for demo, n in zip(self.demos, self._demo_lengths, strict=True):
            for name in names:
                value = self._read_demo_key(demo, name, int(n))
                if value.shape[0] != n:
                    raise DataError(
                        f"{self.hdf5_path}: data/{demo}/{name} has {value.shape[0]} steps, "
                        f"num_samples says {n}",
                        key=name,
                    )
                parts[name].append(value)
        for name, values in parts.items():
            try:
                self._cache[name] = np.concatenate(values, axis=0)
            except ValueError as e:
                shapes = sorted({v.shape[1:] for v in values})
                raise DataError(
                    f"{self.hdf5_path}: {name} differs in shape between demos: {shapes}", key=name
                ) from e

    def _demo_values(self, position: int, name: str) -> np.ndarray:
        """A whole key of the demo at `position`, from the cache when it is there."""
        cached = self._cache.get(name)
        if cached is None:
            n = int(self._demo_lengths[position])
            return self._read_demo_key(self.demos[position], name, n)
        start = int(self._demo_offsets[position])
        return cached[start : start + int(self._demo_lengths[position])]

    # -------------------------------------------------------------- statistics
    def _compute_obs_normalization_stats(self) -> NormalizationStats:
        merged: dict[str, dict[str, Any]] = {}
        for demo in self.demos:
            group = self.hdf5_file[f"data/{demo}/obs"]
            for key in self.obs_keys:
                values = _process_for_stats(np.asarray(group[key][()]), self.obs_modalities[key])
                stats = _traj_stats(values)
                merged[key] = stats if key not in merged else _merge_stats(merged[key], stats)
        return {
            key: {
                "offset": stats["mean"].astype(np.float32),
                "scale": (np.sqrt(stats["sqdiff"] / stats["n"]) + 1e-3).astype(np.float32),
            }
            for key, stats in merged.items()
        }

    def get_obs_normalization_stats(self) -> NormalizationStats:
        """Per obs key ``{"offset": (1, ...), "scale": (1, ...)}`` (mean, std + 1e-3).

        Image keys are taken as robomimic processes them: (1, C, H, W) in [0, 1].
        """
        if self.obs_normalization_stats is None:
            raise ValueError("observation normalization stats need hdf5_normalize_obs=True")
        return copy.deepcopy(self.obs_normalization_stats)

    def get_action_stats(self) -> dict[str, dict[str, Any]]:
        """Per action key: n, mean, sqdiff, min, max over every step of every demo."""
        merged: dict[str, dict[str, Any]] = {}
        for position, n in enumerate(self._demo_lengths):
            for key in self.action_keys:
                values = self._demo_values(position, key).reshape(int(n), -1)
                stats = _traj_stats(values)
                merged[key] = stats if key not in merged else _merge_stats(merged[key], stats)
        return merged

    def set_action_normalization_stats(self, stats: NormalizationStats) -> None:
        self.action_normalization_stats = stats

    def get_action_normalization_stats(self) -> NormalizationStats:
        """Per action key ``{"scale": (1, A), "offset": (1, A)}`` from ``action_config``."""
        if self.action_normalization_stats is None:
            self.action_normalization_stats = action_stats_to_normalization_stats(
                self.get_action_stats(), self.action_config
            )
        return self.action_normalization_stats

    # ------------------------------------------------------------------- items
    def __len__(self) -> int:
        return self.total_num_sequences

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(path={self.hdf5_path}, obs_keys={self.obs_keys}, "
            f"seq_length={self.seq_length}, frame_stack={self.n_frame_stack}, "
            f"filter_key={self.filter_by_attribute or 'none'}, "
            f"pad_seq_length={self.pad_seq_length}, pad_frame_stack={self.pad_frame_stack}, "
            f"goal_mode={self.goal_mode or 'none'}, cache_mode={self.hdf5_cache_mode or 'none'}, "
            f"num_demos={self.n_demos}, num_sequences={self.total_num_sequences})"
        )

    def num_sequences(self, demo: str) -> int:
        """Items that come from `demo`."""
        return int(self._demo_num_sequences[self.demos.index(demo)])

    def demo_item_range(self, demo_position: int) -> range:
        """The item indices of the demo at `demo_position` in ``self.demos``."""
        start = int(self._demo_start_indices[demo_position])
        return range(start, start + int(self._demo_num_sequences[demo_position]))

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not -len(self) <= index < len(self):
            raise IndexError(f"item {index} of a {type(self).__name__} of {len(self)} items")
        index = int(index) % len(self)
        batch = self.get_batch(np.asarray([index]))
        item: dict[str, Any] = {
            k: ({kk: vv[0] for kk, vv in v.items()} if isinstance(v, dict) else v[0])
            for k, v in batch.items()
        }
        item["index"] = index
        return item

    def _gather(self, name: str, demo: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """``name`` at ``rows`` (B, T) (clipped steps within each demo) of ``demo`` (B,)."""
        cached = self._cache.get(name)
        if cached is not None:
            return cached[self._demo_offsets[demo][:, None] + rows]
        out: np.ndarray | None = None
        for b in range(len(demo)):
            demo_name = self.demos[int(demo[b])]
            group = self.hdf5_file[f"data/{demo_name}"]
            low, high = int(rows[b].min()), int(rows[b].max()) + 1
            if name in group:
                chunk = np.asarray(group[name][low:high])
                if not name.startswith(("obs/", "next_obs/")):
                    chunk = chunk.astype(np.float32)
            else:  # a dataset key this demo lacks: zeros, as robomimic fills them
                chunk = np.zeros((high - low, 1), dtype=np.float32)
            value = chunk[rows[b] - low]
            if out is None:
                out = np.empty((len(demo), *value.shape), dtype=value.dtype)
            out[b] = value
        assert out is not None
        return out

    def get_batch(self, indices: np.ndarray | Sequence[int]) -> dict[str, Any]:
        """Items ``indices`` stacked: every leaf of :meth:`__getitem__` with a batch dim first."""
        indices = np.asarray(indices, dtype=np.int64)
        demo = self._index_demo[indices]
        start = self._index_step[indices]
        lengths = self._demo_lengths[demo]
        history = self.n_frame_stack - 1
        offsets = np.arange(-history, self.seq_length)
        steps = start[:, None] + offsets[None, :]  # (B, T), unclipped
        rows = np.clip(steps, 0, (lengths - 1)[:, None])
        out: dict[str, Any] = {}
        for key in self.dataset_keys:
            if key not in self.action_keys:
                out[key] = self._gather(key, demo, rows)
        stats = self.get_action_normalization_stats()
        parts = []
        for key in self.action_keys:
            value = self._gather(key, demo, rows).reshape(len(indices), rows.shape[1], -1)
            parts.append((value - stats[key]["offset"][0]) / stats[key]["scale"][0])
        out["actions"] = np.concatenate(parts, axis=-1).astype(np.float32)
        if self.get_pad_mask:
            out["pad_mask"] = ((steps >= 0) & (steps < lengths[:, None]))[..., None]
        out["obs"] = {k: self._gather(f"obs/{k}", demo, rows) for k in self.obs_keys}
        if self.load_next_obs:
            out["next_obs"] = {k: self._gather(f"next_obs/{k}", demo, rows) for k in self.obs_keys}
        if self.goal_mode == "last":
            end = lengths - (0 if self.pad_seq_length else self.seq_length - 1)
            goal_rows = (end - 1)[:, None]
            out["goal_obs"] = {
                k: self._gather(f"next_obs/{k}", demo, goal_rows)[:, 0] for k in self.obs_keys
            }
        return out

    # ------------------------------------------------------------------- specs
    def specs(self, float64_as_float32: bool = True) -> tuple[TensorSpecStruct, TensorSpecStruct]:
        """``(features, labels)`` specs of an item, without the batch dimension.

        Features: ``obs/<key>`` and ``next_obs/<key>`` (T, ...) and ``goal_obs/<key>``
        (...), in the file's dtype (images uint8 (T, H, W, C)); float64 observations
        become float32 unless `float64_as_float32` is False (robomimic's algorithms
        convert them anyway). Labels: ``actions`` (T, A) float32, the other dataset
        keys (T, ...) float32, ``pad_mask`` (T, 1) bool.
        """
        t = self.n_frame_stack - 1 + self.seq_length

        def obs_dtype(key: str) -> Any:
            dtype = self.obs_dtypes[key]
            return np.float32 if float64_as_float32 and dtype == np.float64 else dtype

        features = TensorSpecStruct()
        prefixes = ["obs"] + (["next_obs"] if self.load_next_obs else [])
        for prefix in prefixes:
            for key in self.obs_keys:
                path = f"{prefix}/{key}"
                features[path] = ExtendedTensorSpec(
                    (t, *self.obs_shapes[key]), obs_dtype(key), name=path
                )
        if self.goal_mode == "last":
            for key in self.obs_keys:
                path = f"goal_obs/{key}"
                features[path] = ExtendedTensorSpec(self.obs_shapes[key], obs_dtype(key), name=path)
        labels = TensorSpecStruct()
        labels["actions"] = ExtendedTensorSpec((t, self.action_dim), np.float32, name="actions")
        for key in self.dataset_keys:
            if key not in self.action_keys:
                labels[key] = ExtendedTensorSpec(
                    (t, *self.dataset_shapes[key]), np.float32, name=key
                )
        if self.get_pad_mask:
            labels["pad_mask"] = ExtendedTensorSpec((t, 1), torch.bool, name="pad_mask")
        return features, labels


# ------------------------------------------------------------------ t2r source
class RobomimicSource:
    """A :class:`~t2r.data.sources.DataSource` over a :class:`SequenceDataset`.

    A unit is a demo (``demo_<i>``, in integer order); an example is the index of
    one of its items, so reading a unit costs nothing and the parse fn gathers a
    whole batch at once (:meth:`SequenceDataset.get_batch`). ``length`` is the
    demo's item count, so restoring an input position skips epochs unread.
    """

    growing = False

    def __init__(self, dataset: SequenceDataset) -> None:
        self.dataset = dataset
        self._positions = {name: i for i, name in enumerate(dataset.demos)}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.dataset.hdf5_path}, {self.dataset.n_demos} demos)"

    def units(self) -> list[str]:
        return list(self.dataset.demos)

    def _range(self, unit: str) -> range:
        try:
            return self.dataset.demo_item_range(self._positions[unit])
        except KeyError:
            raise DataError(f"{self.dataset.hdf5_path}: no demo {unit!r} in this dataset") from None

    def read(self, unit: str, stats: ReadStats) -> Iterator[tuple[int, int]]:
        for index in self._range(unit):
            yield index, index

    def length(self, unit: str) -> int:
        return len(self._range(unit))

    def make_parse_fn(self, feature_spec: Any, label_spec: Any, decode_images: bool) -> Any:
        return _WindowBatchParseFn(self.dataset, feature_spec, label_spec)


def _flat_item(batch: Mapping[str, Any]) -> dict[str, np.ndarray]:
    flat: dict[str, np.ndarray] = {}
    for key, value in batch.items():
        if isinstance(value, Mapping):
            for sub, leaf in value.items():
                flat[f"{key}/{sub}"] = leaf
        else:
            flat[key] = value
    return flat


class _WindowBatchParseFn:
    """Item indices -> ``(features, labels)`` tensors at the specs' paths (picklable)."""

    def __init__(self, dataset: SequenceDataset, feature_spec: Any, label_spec: Any) -> None:
        self.dataset = dataset
        self.feature_spec = flatten_spec_structure(feature_spec)
        self.label_spec = None if label_spec is None else flatten_spec_structure(label_spec)

    def _select(self, spec: TensorSpecStruct, flat: Mapping[str, np.ndarray], what: str) -> Any:
        out = TensorSpecStruct()
        for path, leaf_spec in spec.items():
            key = leaf_spec.name if leaf_spec.name in flat else path
            if key not in flat:
                if leaf_spec.is_optional:
                    continue
                raise DataError(
                    f"{self.dataset.hdf5_path}: the {what} spec asks for {path!r}, which this "
                    f"SequenceDataset does not give (it gives {sorted(flat)})",
                    key=path,
                )
            value = flat[key]
            # a sequence spec gives the per-step shape: the window's time dim is extra
            per_item = tuple(value.shape[2:] if leaf_spec.is_sequence else value.shape[1:])
            if not shapes_compatible(leaf_spec.shape, per_item):
                what_shape = "per step" if leaf_spec.is_sequence else "per item"
                raise DataError(
                    f"{self.dataset.hdf5_path}: {what} {path!r} has shape {per_item} "
                    f"{what_shape}, the spec says {format_shape(leaf_spec.shape)}",
                    key=path,
                )
            out[path] = value
        return to_tensors(out, spec)

    def __call__(self, examples: list[int]) -> tuple[Any, Any]:
        flat = _flat_item(self.dataset.get_batch(np.asarray(examples, dtype=np.int64)))
        features = self._select(self.feature_spec, flat, "feature")
        labels = None if self.label_spec is None else self._select(self.label_spec, flat, "label")
        return features, labels


class RobomimicInputGenerator(SourceInputGenerator):
    """Batches of robomimic windows for ``train_eval_model``.

    ``(features, labels)`` at the paths of :meth:`SequenceDataset.specs`
    (``obs/<key>``, ``next_obs/<key>``, ``goal_obs/<key>``; ``actions``,
    ``rewards``, ``dones``, ``pad_mask``), each with the batch dimension first.
    Shuffling, sharding over workers and ranks, seeding and the input position
    are the shared pipeline's (:mod:`t2r.data.pipeline`).

    TRAIN shuffles like robomimic's DataLoader (``shuffle=True``): the default
    shuffle buffer holds a whole epoch of (tiny) item indices, so every epoch is a
    uniform permutation of all windows. EVAL reads every window once, in order.

    Args:
        hdf5_path: the robomimic file.
        obs_keys: observation keys; None: every key under the first demo's ``obs``.
        batch_size: items per batch.
        shuffle_buffer_size: None: the whole epoch (see above).
        Other SequenceDataset arguments as there (the cache defaults to ``"all"``);
        the remaining keyword arguments as for :class:`SourceInputGenerator`.
    """

    def __init__(
        self,
        hdf5_path: str | os.PathLike[str],
        obs_keys: Sequence[str] | None = None,
        dataset_keys: Sequence[str] = ("actions", "rewards", "dones"),
        batch_size: int = 100,
        *,
        frame_stack: int = 1,
        seq_length: int = 1,
        pad_frame_stack: bool = True,
        pad_seq_length: bool = True,
        get_pad_mask: bool = False,
        goal_mode: str | None = None,
        hdf5_cache_mode: str | None = "all",
        hdf5_use_swmr: bool = True,
        hdf5_normalize_obs: bool = False,
        filter_by_attribute: str | None = None,
        load_next_obs: bool = True,
        demo_limit: int | None = None,
        action_keys: Sequence[str] = ("actions",),
        action_config: Mapping[str, Mapping[str, Any]] | None = None,
        obs_modalities: Mapping[str, str] | None = None,
        shuffle_buffer_size: int | None = None,
        **kwargs: Any,
    ) -> None:
        if obs_keys is None:
            demos = list_demos(hdf5_path, filter_by_attribute)
            with h5py.File(hdf5_path, "r") as f:
                if not demos or "obs" not in f[f"data/{demos[0]}"]:
                    raise DataError(f"{os.fspath(hdf5_path)}: no demo with observations")
                obs_keys = sorted(f[f"data/{demos[0]}/obs"].keys())
        dataset = SequenceDataset(
            hdf5_path,
            obs_keys,
            dataset_keys,
            frame_stack=frame_stack,
            seq_length=seq_length,
            pad_frame_stack=pad_frame_stack,
            pad_seq_length=pad_seq_length,
            get_pad_mask=get_pad_mask,
            goal_mode=goal_mode,
            hdf5_cache_mode=hdf5_cache_mode,
            hdf5_use_swmr=hdf5_use_swmr,
            hdf5_normalize_obs=hdf5_normalize_obs,
            filter_by_attribute=filter_by_attribute,
            load_next_obs=load_next_obs,
            demo_limit=demo_limit,
            action_keys=action_keys,
            action_config=action_config,
            obs_modalities=obs_modalities,
        )
        if shuffle_buffer_size is None:
            shuffle_buffer_size = max(len(dataset), 1)
        super().__init__(
            RobomimicSource(dataset),
            batch_size,
            shuffle_buffer_size=shuffle_buffer_size,
            **kwargs,
        )
        self.dataset = dataset
        self._dataset_specs = dataset.specs()
        self.set_feature_specifications(*self._dataset_specs)

    def dataset_specs(self) -> tuple[TensorSpecStruct, TensorSpecStruct]:
        """``(features, labels)`` specs of everything the file gives (see SequenceDataset.specs)."""
        return self._dataset_specs
