"""BC-Z training examples from RLDS episodes: one step's observation, K future waypoints.

T2R's BC-Z records held ``present/...`` features and ``future/<name>_residual``
labels prepared offline. Here they are made while reading an RLDS directory
(``t2r.data.rlds``; e.g. the demos of ``t2r.research.lang_env.demos``): an
example is one step t of an episode; its features are step t's values (image,
language embedding), and a waypoint label is :func:`future_waypoints` of a pose
feature stored per step (``observation/effector``): the poses at steps
t+1 .. t+K minus the pose at t. Past the episode's last step the pose stays at
the last step's (the robot has stopped), and the label ``future/stop_token``
(:func:`future_stop_tokens`, read by ``BCZModel(mask_stop_token=True)``) marks
those waypoints so the loss can leave them out.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from t2r.data.input_generators import SourceInputGenerator
from t2r.data.rlds import (
    DctMethod,
    ParseRLDSWindowsFn,
    RLDSDatasetInfo,
    RLDSSource,
    RLDSWindow,
)
from t2r.research.bcz.model import STOP_TOKEN
from t2r.research.lang_env.features import EFFECTOR
from t2r.specs import SpecError, TensorSpecStruct, flatten_spec_structure, to_tensors

__all__ = [
    "DEFAULT_WAYPOINT_SOURCES",
    "BCZInputGenerator",
    "BCZWaypointSource",
    "ParseBCZExamplesFn",
    "future_stop_tokens",
    "future_waypoints",
]

DEFAULT_WAYPOINT_SOURCES: dict[str, str] = {"future/xyz_residual": EFFECTOR}
"""lang_env: the ``xyz`` component's waypoints come from the effector's (x, y)."""


def future_waypoints(poses: np.ndarray, num_waypoints: int) -> np.ndarray:
    """poses (n, D) of one episode -> waypoints (n, K, D):
    ``[t, k - 1] = poses[min(t + k, n - 1)] - poses[t]`` for k = 1..K."""
    poses = np.asarray(poses)
    if poses.ndim != 2 or len(poses) == 0:
        raise ValueError(f"future_waypoints: poses must be (n >= 1, D), got {poses.shape}.")
    if num_waypoints < 1:
        raise ValueError(f"future_waypoints: num_waypoints must be >= 1, got {num_waypoints}.")
    n = len(poses)
    index = np.minimum(np.arange(n)[:, None] + np.arange(1, num_waypoints + 1)[None, :], n - 1)
    return poses[index] - poses[:, None, :]


def future_stop_tokens(num_steps: int, num_waypoints: int) -> np.ndarray:
    """(n, K, 1) float32: ``[t, k - 1] = 1`` where step t + k lies past the last step n - 1."""
    if num_steps < 1 or num_waypoints < 1:
        raise ValueError(
            f"future_stop_tokens: num_steps and num_waypoints must be >= 1, got "
            f"{num_steps} and {num_waypoints}."
        )
    beyond = np.arange(num_steps)[:, None] + np.arange(1, num_waypoints + 1)[None, :]
    return (beyond > num_steps - 1).astype(np.float32)[..., None]


class ParseBCZExamplesFn:
    """``[RLDSWindow]`` (windows of one step) -> ``(features, labels)`` tensors.

    Label specs named in ``waypoint_sources`` (by path or spec name) get
    :func:`future_waypoints` of their pose feature, K and D from the spec's
    ``(K, D)`` shape; ``future/stop_token`` (K, 1) gets :func:`future_stop_tokens`
    of the episode's length; every other spec is read as `ParseRLDSWindowsFn` reads a
    step-shaped spec (step t's value). Picklable.
    """

    def __init__(
        self,
        info: RLDSDatasetInfo,
        feature_spec: Any,
        label_spec: Any,
        waypoint_sources: Mapping[str, str],
        decode_images: bool = True,
        dct_method: DctMethod = "INTEGER_FAST",
    ) -> None:
        self.label_spec = None if label_spec is None else flatten_spec_structure(label_spec)
        self._waypoints: list[tuple[str, str, int]] = []
        self._stop_tokens: list[tuple[str, int]] = []
        others = TensorSpecStruct()
        for path, spec in (self.label_spec or {}).items():
            if STOP_TOKEN in (path, spec.name):
                shape = tuple(spec.shape or ())
                if len(shape) != 2 or shape[1] != 1:
                    raise SpecError(
                        f"label {path!r}: the stop token has shape (K, 1), not {shape}.",
                        name=spec.name,
                    )
                self._stop_tokens.append((path, int(shape[0])))
                continue
            pose_key = waypoint_sources.get(path) or waypoint_sources.get(spec.name or "")
            if pose_key is None:
                others[path] = spec
                continue
            if pose_key not in info.step_spec:
                raise SpecError(
                    f"label {path!r}: its waypoints come from the step feature {pose_key!r}, "
                    f"which the RLDS dataset {info.directory} lacks; its step features are "
                    f"{list(info.step_spec)}.",
                    name=spec.name,
                )
            shape = tuple(spec.shape or ())
            pose_shape = tuple(info.step_spec[pose_key].shape or ())
            if len(shape) != 2 or shape[1:] != pose_shape:
                raise SpecError(
                    f"label {path!r}: shape {shape}, but waypoints of {pose_key!r} (steps of "
                    f"shape {pose_shape}) have shape (K, *{pose_shape}).",
                    name=spec.name,
                )
            self._waypoints.append((path, pose_key, int(shape[0])))
        self._steps = ParseRLDSWindowsFn(
            info,
            feature_spec,
            others if self.label_spec is not None else None,
            1,
            decode_images,
            dct_method,
        )

    def __call__(self, examples: Sequence[RLDSWindow]) -> tuple[Any, Any]:
        features, others = self._steps(examples)
        if self.label_spec is None:
            return features, None
        columns = TensorSpecStruct()
        for path, pose_key, k in self._waypoints:
            columns[path] = np.stack(
                [
                    future_waypoints(w.episode.step_values(pose_key), k)[w.step].astype(np.float32)
                    for w in examples
                ]
            )
        for path, k in self._stop_tokens:
            columns[path] = np.stack(
                [future_stop_tokens(w.episode.num_steps, k)[w.step] for w in examples]
            )
        labels = to_tensors(columns, TensorSpecStruct((p, self.label_spec[p]) for p in columns))
        for path, value in flatten_spec_structure(others).items():
            labels[path] = value
        return features, TensorSpecStruct((p, labels[p]) for p in self.label_spec)


class BCZWaypointSource(RLDSSource):
    """One split of an RLDS directory as BC-Z examples: one per step (see the module doc).

    Args:
      directory, split, dct_method, verify_crc: as for `RLDSSource`.
      waypoint_sources: ``{label path or name: step pose feature}``
        (default: ``future/xyz_residual`` from ``observation/effector``).
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        split: str = "train",
        waypoint_sources: Mapping[str, str] | None = None,
        *,
        dct_method: DctMethod = "INTEGER_FAST",
        verify_crc: bool = True,
    ) -> None:
        super().__init__(directory, split, 1, dct_method=dct_method, verify_crc=verify_crc)
        self.waypoint_sources = dict(waypoint_sources or DEFAULT_WAYPOINT_SOURCES)

    def make_parse_fn(  # type: ignore[override]
        self, feature_spec: Any, label_spec: Any, decode_images: bool
    ) -> ParseBCZExamplesFn:
        return ParseBCZExamplesFn(
            self.info,
            feature_spec,
            label_spec,
            self.waypoint_sources,
            decode_images,
            self.dct_method,
        )


class BCZInputGenerator(SourceInputGenerator):
    """Batches of BC-Z examples from one split of an RLDS directory (`BCZWaypointSource`).

    Args:
      directory, split, waypoint_sources, dct_method: as for `BCZWaypointSource`.
      batch_size: examples per batch.
      Other arguments as for `t2r.data.SourceInputGenerator` (workers, shuffle
      buffer, seed, ...).
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        split: str = "train",
        batch_size: int = 32,
        waypoint_sources: Mapping[str, str] | None = None,
        *,
        dct_method: DctMethod = "INTEGER_FAST",
        **kwargs: Any,
    ) -> None:
        source = BCZWaypointSource(directory, split, waypoint_sources, dct_method=dct_method)
        kwargs.setdefault("label", f"BC-Z RLDS {source.info.name}:{split}")
        super().__init__(source, batch_size, **kwargs)
