"""One episode in memory, the common ground of the dataset formats.

Every format t2r reads or writes (T2R TFRecords, RLDS, robomimic HDF5, LeRobot)
can hand its episodes over as :class:`Episode` and take them back, so a conversion
is one reader and one writer, never a pair-specific path.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import numpy as np

__all__ = ["Episode"]


@dataclasses.dataclass
class Episode:
    """The steps of one episode as arrays with a leading time axis.

    Attributes:
        steps: feature path (``/``-joined, e.g. ``observation/image``) -> array of
            shape ``(T, ...)``; camera frames are ``(T, H, W, C)`` uint8, text is an
            object array of ``str``.
        metadata: per-episode values (e.g. ``task``: the language instruction,
            ``fps``, the source's episode index); JSON-serializable where a writer
            stores it.
    """

    steps: dict[str, np.ndarray]
    metadata: dict[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.steps:
            raise ValueError("An Episode needs at least one step feature.")
        lengths = {key: int(np.shape(value)[0]) for key, value in self.steps.items()}
        if len(set(lengths.values())) != 1:
            raise ValueError(f"Episode features differ in length (steps per feature): {lengths}.")
        if next(iter(lengths.values())) < 1:
            raise ValueError("An Episode needs at least one step.")

    @property
    def num_steps(self) -> int:
        return int(np.shape(next(iter(self.steps.values())))[0])

    def step(self, t: int) -> Mapping[str, np.ndarray]:
        """The features of step `t` (views, not copies)."""
        return {key: value[t] for key, value in self.steps.items()}
