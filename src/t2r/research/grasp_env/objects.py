"""Object sets of the grasping task: which shapes, sizes and colours an episode draws.

An `ObjectSet` is a list of `ObjectFamily` (a shape and the ranges of its
MuJoCo size parameters) and a list of hue bands. Each object of an episode
draws a family uniformly, its sizes uniformly within the family's ranges and a
colour from a uniformly drawn hue band (saturation and value drawn too).

* ``"train"``: near-cubic boxes and upright cylinders of medium size, in red /
  orange, green and blue hues.
* ``"test"``, held out: capsules lying on their side (a shape never seen in
  training), long thin bars (boxes thinner than any training box) and flat wide
  cylinders (wider and lower than any training cylinder), in yellow, cyan and
  purple / magenta hues. No object of one set can be drawn in the other: every
  (shape, size) range and every hue band is disjoint (`sets_overlap` checks).

Sizes are MuJoCo's geom sizes (half extents, metres): box ``(hx, hy, hz)``,
cylinder ``(radius, half height)``, capsule ``(radius, half length of the
axis segment)``. Every object is narrower than the open gripper (0.10 m) across
at least one horizontal direction and lower than the bin's walls.
"""

from __future__ import annotations

import colorsys
from dataclasses import dataclass

import numpy as np

from t2r.research.grasp_env.scene import SHAPES

__all__ = ["OBJECT_SETS", "ObjectFamily", "ObjectSet", "ObjectSpec", "sets_overlap"]

Range = tuple[float, float]


@dataclass(frozen=True)
class ObjectFamily:
    """A shape and the ranges of its geom size parameters (2 for cylinder and capsule, 3
    for box)."""

    shape: str
    size_ranges: tuple[Range, ...]

    def __post_init__(self) -> None:
        expected = 3 if self.shape == "box" else 2
        if self.shape not in SHAPES:
            raise ValueError(f"ObjectFamily: shape must be one of {SHAPES}, got {self.shape!r}.")
        if len(self.size_ranges) != expected:
            raise ValueError(
                f"ObjectFamily({self.shape!r}): expected {expected} size ranges, "
                f"got {len(self.size_ranges)}."
            )
        for low, high in self.size_ranges:
            if not 0 < low <= high:
                raise ValueError(
                    f"ObjectFamily({self.shape!r}): size range ({low}, {high}) must have "
                    "0 < low <= high."
                )


@dataclass(frozen=True)
class ObjectSpec:
    """One drawn object: shape, geom size (3,) (unused entries 0) and RGBA (4,)."""

    shape: str
    size: tuple[float, float, float]
    rgba: tuple[float, float, float, float]


@dataclass(frozen=True)
class ObjectSet:
    """Families of shapes and hue bands (fractions of the colour circle) to draw from."""

    name: str
    families: tuple[ObjectFamily, ...]
    hue_bands: tuple[Range, ...]
    saturation: Range = (0.6, 0.95)
    value: Range = (0.6, 0.95)

    def sample(self, rng: np.random.Generator) -> ObjectSpec:
        """Draws one object (a fixed number of draws from `rng`, whatever the outcome)."""
        family = self.families[int(rng.integers(len(self.families)))]
        size = [float(rng.uniform(low, high)) for low, high in family.size_ranges]
        size += [0.0] * (3 - len(size))
        band = self.hue_bands[int(rng.integers(len(self.hue_bands)))]
        hue = float(rng.uniform(*band)) % 1.0
        saturation = float(rng.uniform(*self.saturation))
        value = float(rng.uniform(*self.value))
        red, green, blue = colorsys.hsv_to_rgb(hue, saturation, value)
        return ObjectSpec(family.shape, (size[0], size[1], size[2]), (red, green, blue, 1.0))


OBJECT_SETS: dict[str, ObjectSet] = {
    "train": ObjectSet(
        name="train",
        families=(
            ObjectFamily("box", ((0.016, 0.026), (0.016, 0.026), (0.015, 0.026))),
            ObjectFamily("cylinder", ((0.016, 0.026), (0.015, 0.03))),
        ),
        hue_bands=((0.97, 1.08), (0.25, 0.42), (0.55, 0.7)),
    ),
    "test": ObjectSet(
        name="test",
        families=(
            ObjectFamily("capsule", ((0.014, 0.022), (0.02, 0.035))),
            ObjectFamily("box", ((0.03, 0.04), (0.011, 0.015), (0.012, 0.014))),
            ObjectFamily("cylinder", ((0.028, 0.033), (0.01, 0.014))),
        ),
        hue_bands=((0.12, 0.2), (0.45, 0.52), (0.75, 0.92)),
    ),
}


def _ranges_overlap(a: Range, b: Range) -> bool:
    return a[0] <= b[1] and b[0] <= a[1]


def _hue_intervals(band: Range) -> list[Range]:
    low, high = band
    if high <= 1.0:
        return [(low, high)]
    return [(low, 1.0), (0.0, high - 1.0)]


def sets_overlap(a: ObjectSet, b: ObjectSet) -> list[str]:
    """What an object of `a` and one of `b` could share: families of one shape whose size
    ranges overlap in every parameter, and overlapping hue bands (empty: disjoint sets)."""
    found = []
    for fa in a.families:
        for fb in b.families:
            if fa.shape == fb.shape and all(
                _ranges_overlap(ra, rb) for ra, rb in zip(fa.size_ranges, fb.size_ranges)
            ):
                found.append(f"{fa.shape} sizes {fa.size_ranges} and {fb.size_ranges}")
    for ha in a.hue_bands:
        for hb in b.hue_bands:
            if any(
                _ranges_overlap(ia, ib) for ia in _hue_intervals(ha) for ib in _hue_intervals(hb)
            ):
                found.append(f"hue bands {ha} and {hb}")
    return found
