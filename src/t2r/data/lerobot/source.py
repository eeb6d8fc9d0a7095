"""A LeRobot dataset as a :class:`t2r.data.sources.DataSource`, and its input generator.

A unit is an **episode** (``episode_000012``); its examples are its **frames**, in
order (``location`` is the frame index), so the shared pipeline's sharding over
ranks and DataLoader workers, seeded shuffling and ``iter_from`` resume apply as
to every source. A frame's example is the episode (columns read, and videos
decoded, once per episode, only for the features a spec asks for) and the frame
index; the parse fn gathers a batch.

Windows, as LeRobot's ``delta_timestamps``: ``{key: [seconds, ...]}`` relative to
the frame, each a multiple of ``1/fps`` within ``tolerance_s`` (past frames
negative, future actions positive). A spec for ``key`` of shape
``(len(deltas), *frame_shape)``, or a sequence spec (``is_sequence=True``) of one
frame's shape, gets the values at those offsets (batches ``(B, len(deltas), ...)``);
offsets outside the episode repeat its first (or last) frame, and the reserved
feature ``<key>_is_pad`` (a ``(len(deltas),)`` bool spec, or a ``()`` sequence
spec) is True there, as in LeRobot. Any other spec of one frame's shape gets the
current frame. :meth:`LeRobotSource.window_specs`
gives all of them as specs.

A spec maps to a feature by its ``name`` (else its path), as a LeRobot key
(``observation.images.top``) or a t2r path (``observation/images/top``); the
default features (``timestamp``, ``frame_index``, ``episode_index``, ``index``,
``task_index``) and ``task`` (the frame's task string, a string spec) are there
too. Cameras are ``(H, W, 3)`` uint8 (LeRobot gives ``(3, H, W)`` float in [0, 1];
a preprocessor casts). Optional specs absent from the dataset are left out.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Literal, NamedTuple

import numpy as np

from t2r.data.input_generators import SourceInputGenerator
from t2r.data.lerobot.info import TOLERANCE_S, LeRobotDatasetInfo
from t2r.data.lerobot.reader import LeRobotEpisodeData, LeRobotReader
from t2r.data.tfrecord import ReadStats
from t2r.specs import (
    ExtendedTensorSpec,
    SpecError,
    TensorSpecStruct,
    flatten_spec_structure,
    is_string_dtype,
    numpy_dtype,
    to_tensors,
)

__all__ = [
    "IS_PAD_SUFFIX",
    "LeRobotFrame",
    "LeRobotInputGenerator",
    "LeRobotSource",
    "ParseLeRobotFramesFn",
    "delta_indices",
]

IS_PAD_SUFFIX = "_is_pad"
TASK_KEY = "task"


class LeRobotFrame(NamedTuple):
    """One example of :class:`LeRobotSource`: frame ``frame`` of ``episode``."""

    episode: LeRobotEpisodeData
    frame: int


def _key_of(info: LeRobotDatasetInfo, name: str) -> str | None:
    for candidate in (name, name.replace("/", ".")):
        if candidate in info.features:
            return candidate
    return None


def delta_indices(
    info: LeRobotDatasetInfo,
    delta_timestamps: Mapping[str, Sequence[float]] | None,
    tolerance_s: float = TOLERANCE_S,
) -> dict[str, tuple[int, ...]]:
    """``{LeRobot key: frame offsets}`` of ``delta_timestamps`` (LeRobot's check and rounding).

    Raises:
        ValueError: an unknown key, or a delta that is not a multiple of ``1/fps``
            within ``tolerance_s``.
    """
    out: dict[str, tuple[int, ...]] = {}
    for name, deltas in (delta_timestamps or {}).items():
        key = _key_of(info, name)
        if key is None:
            raise ValueError(
                f"delta_timestamps: {name!r} is no feature of {info.root}; it has "
                f"{list(info.features)}."
            )
        deltas = [float(d) for d in deltas]
        if not deltas:
            raise ValueError(f"delta_timestamps[{name!r}] is empty.")
        off = [
            d for d in deltas if abs(d * info.fps - round(d * info.fps)) / info.fps > tolerance_s
        ]
        if off:
            raise ValueError(
                f"delta_timestamps[{name!r}]: {off} are not multiples of 1/fps = "
                f"1/{info.fps} s within tolerance_s={tolerance_s}."
            )
        out[key] = tuple(round(d * info.fps) for d in deltas)
    return out


@dataclasses.dataclass(frozen=True)
class _Field:
    out_path: str
    spec: ExtendedTensorSpec
    kind: Literal["feature", "pad", "task"]
    key: str
    offsets: tuple[int, ...] | None  # a window's frame offsets, None: the current frame


def _resolve(
    out_path: str,
    spec: ExtendedTensorSpec,
    info: LeRobotDatasetInfo,
    deltas: Mapping[str, tuple[int, ...]],
) -> _Field | None:
    where = f"spec {out_path!r} (name {spec.name!r})"
    shape = tuple(spec.shape or ())
    for candidate in [c for c in (spec.name, out_path) if c]:
        if candidate == TASK_KEY:
            if not is_string_dtype(spec.dtype) or shape != ():
                raise SpecError(f"{where}: 'task' is a string spec of shape ().", name=spec.name)
            return _Field(out_path, spec, "task", TASK_KEY, None)
        if candidate.endswith(IS_PAD_SUFFIX):
            key = _key_of(info, candidate.removesuffix(IS_PAD_SUFFIX))
            if key is not None:
                if key not in deltas:
                    raise SpecError(
                        f"{where}: {key!r} has no delta_timestamps, so no padding mask.",
                        name=spec.name,
                    )
                if shape != (len(deltas[key]),) and not (spec.is_sequence and shape == ()):
                    raise SpecError(
                        f"{where}: the padding mask of {key!r} has shape "
                        f"({len(deltas[key])},), not {shape}.",
                        name=spec.name,
                    )
                return _Field(out_path, spec, "pad", key, deltas[key])
        key = _key_of(info, candidate)
        if key is None:
            continue
        feature = info.features[key]
        frame_shape = feature.step_shape
        if key in deltas and (
            shape == (len(deltas[key]), *frame_shape) or (spec.is_sequence and shape == frame_shape)
        ):
            offsets: tuple[int, ...] | None = deltas[key]
        elif shape == frame_shape:
            offsets = None
        else:
            window = (
                f"({len(deltas[key])}, *{frame_shape}) for its delta_timestamps window, or "
                if key in deltas
                else ""
            )
            raise SpecError(
                f"{where}: shape {shape}, but {key!r} has frames of shape {frame_shape}: "
                f"expected {window}{frame_shape} for the current frame.",
                name=spec.name,
            )
        if (feature.dtype == "string") != is_string_dtype(spec.dtype):
            raise SpecError(
                f"{where}: dtype {spec.dtype}, but {key!r} holds {feature.dtype}.", name=spec.name
            )
        return _Field(out_path, spec, "feature", key, offsets)
    if spec.is_optional:
        return None
    raise SpecError(
        f"{where}: not in the LeRobot dataset {info.root}; its features are "
        f"{list(info.features)} (and 'task', '<key>{IS_PAD_SUFFIX}' for windowed keys "
        f"{list(deltas)}).",
        name=spec.name,
    )


class ParseLeRobotFramesFn:
    """Maps a list of :class:`LeRobotFrame` to ``(features, labels)`` (picklable)."""

    def __init__(
        self,
        info: LeRobotDatasetInfo,
        deltas: Mapping[str, tuple[int, ...]],
        feature_spec: Any,
        label_spec: Any,
    ) -> None:
        self.feature_spec = flatten_spec_structure(feature_spec)
        self.label_spec = None if label_spec is None else flatten_spec_structure(label_spec)
        self._features = [
            f
            for path, spec in self.feature_spec.items()
            if (f := _resolve(path, spec, info, deltas)) is not None
        ]
        self._labels = (
            None
            if self.label_spec is None
            else [
                f
                for path, spec in self.label_spec.items()
                if (f := _resolve(path, spec, info, deltas)) is not None
            ]
        )

    @staticmethod
    def _window(frame: LeRobotFrame, offsets: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
        """Clamped frame indices of the window, and where they fall outside the episode."""
        wanted = frame.frame + np.asarray(offsets)
        last = frame.episode.num_steps - 1
        return np.clip(wanted, 0, last), (wanted < 0) | (wanted > last)

    def _column(self, field: _Field, frames: Sequence[LeRobotFrame]) -> np.ndarray:
        if field.kind == "task":
            out = np.empty(len(frames), dtype=object)
            out[:] = [f.episode.tasks()[f.frame] for f in frames]
            return out
        if field.kind == "pad":
            assert field.offsets is not None
            return np.stack([self._window(f, field.offsets)[1] for f in frames])
        rows = []
        for f in frames:
            values = f.episode.column(field.key)
            if field.offsets is None:
                rows.append(values[f.frame])
            else:
                rows.append(values[self._window(f, field.offsets)[0]])
        stacked = np.stack(rows)
        if is_string_dtype(field.spec.dtype):
            return stacked
        return stacked.astype(numpy_dtype(field.spec.dtype), copy=False)

    def _struct(self, fields: list[_Field], spec: Any, frames: Sequence[LeRobotFrame]) -> Any:
        return to_tensors(
            TensorSpecStruct((f.out_path, self._column(f, frames)) for f in fields), spec
        )

    def __call__(self, examples: Sequence[LeRobotFrame]) -> tuple[Any, Any]:
        features = self._struct(self._features, self.feature_spec, examples)
        labels = None
        if self._labels is not None:
            labels = self._struct(self._labels, self.label_spec, examples)
        return features, labels


class LeRobotSource:
    """A LeRobot dataset directory (v3.0 or v2.1) as a DataSource of frames.

    Args:
        root: the dataset directory.
        delta_timestamps: LeRobot's windows, ``{key: [seconds relative to the frame]}``
            (keys as LeRobot keys or t2r paths).
        episodes: the episode indices to serve (None: all).
        tolerance_s: LeRobot's timestamp tolerance (video frames and delta_timestamps).
    """

    growing = False

    def __init__(
        self,
        root: str | os.PathLike[str],
        delta_timestamps: Mapping[str, Sequence[float]] | None = None,
        *,
        episodes: Sequence[int] | None = None,
        tolerance_s: float = TOLERANCE_S,
    ) -> None:
        self.reader = LeRobotReader(root, tolerance_s)
        self.info = self.reader.info
        self.delta_timestamps = {k: list(v) for k, v in (delta_timestamps or {}).items()}
        self.deltas = delta_indices(self.info, delta_timestamps, tolerance_s)
        wanted = None if episodes is None else {int(e) for e in episodes}
        self._units = {
            f"episode_{e.episode_index:06d}": e.episode_index
            for e in self.info.episodes
            if wanted is None or e.episode_index in wanted
        }
        if wanted is not None and len(self._units) != len(wanted):
            known = {e.episode_index for e in self.info.episodes}
            raise ValueError(f"{self.info.root}: no episodes {sorted(wanted - known)}.")
        if not self._units:
            raise ValueError(f"{self.info.root}: no episodes to read.")

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.info.root}, {self.info.codebase_version}, "
            f"{len(self._units)} episodes)"
        )

    def units(self) -> list[str]:
        return sorted(self._units)

    def episode(self, unit: str) -> LeRobotEpisodeData:
        try:
            return self.reader.episode(self._units[unit])
        except KeyError:
            raise KeyError(f"{self!r} has no episode {unit!r}.") from None

    def read(self, unit: str, stats: ReadStats) -> Iterator[tuple[int, LeRobotFrame]]:
        episode = self.episode(unit)
        for frame in range(episode.num_steps):
            yield frame, LeRobotFrame(episode, frame)

    def length(self, unit: str) -> int:
        """Frames in the episode (from meta/episodes; nothing is read)."""
        return self.info.episode(self._units[unit]).length

    def make_parse_fn(
        self, feature_spec: Any, label_spec: Any, decode_images: bool
    ) -> ParseLeRobotFramesFn:
        """Cameras are always decoded (a video frame has no encoded form of its own)."""
        return ParseLeRobotFramesFn(self.info, self.deltas, feature_spec, label_spec)

    def window_specs(self) -> TensorSpecStruct:
        """Every feature's spec as this source serves it: windowed keys as sequence
        specs (``is_sequence``, one frame's shape; batches get ``(B, T, ...)``) with a
        ``<path>_is_pad`` mask, the others one frame."""
        out = TensorSpecStruct()
        for path, spec in self.info.feature_specs().items():
            key = spec.name or path
            if key in self.deltas:
                out[path] = ExtendedTensorSpec.from_spec(spec, is_sequence=True)
                out[path + IS_PAD_SUFFIX] = ExtendedTensorSpec(
                    (), "bool", name=key + IS_PAD_SUFFIX, is_sequence=True
                )
            else:
                out[path] = spec
        return out


class LeRobotInputGenerator(SourceInputGenerator):
    """Batches of frames (with their windows) from a LeRobot dataset (:class:`LeRobotSource`).

    Args:
        root, delta_timestamps, episodes, tolerance_s: as for :class:`LeRobotSource`.
        batch_size: frames per batch.
        Other arguments as for :class:`t2r.data.SourceInputGenerator` (workers,
        shuffle buffer, cycle length, seed, ranks).
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        delta_timestamps: Mapping[str, Sequence[float]] | None = None,
        batch_size: int = 32,
        *,
        episodes: Sequence[int] | None = None,
        tolerance_s: float = TOLERANCE_S,
        **kwargs: Any,
    ) -> None:
        source = LeRobotSource(root, delta_timestamps, episodes=episodes, tolerance_s=tolerance_s)
        kwargs.setdefault("label", f"LeRobot {source.info.root}")
        super().__init__(source, batch_size, **kwargs)
