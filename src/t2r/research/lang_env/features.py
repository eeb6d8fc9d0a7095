"""The feature paths of lang_env's data (RT-1's RLDS step names), named once.

`demos` stores each step's observation under these paths, and the models that
read that data (BC-Z, RT-1) and their policies build their specs and features
from them. An environment observation key ``k`` is stored as ``observation/k``.
This module imports nothing, so the models can use it without the simulator.
"""

from __future__ import annotations

__all__ = ["EFFECTOR", "EMBEDDING", "IMAGE", "INSTRUCTION", "OBSERVATION_PREFIX"]

OBSERVATION_PREFIX = "observation/"
"""Prepended to an environment observation key to make its feature path."""

IMAGE = OBSERVATION_PREFIX + "image"
"""(H, W, 3) uint8 camera image, stored as JPEG."""

EMBEDDING = OBSERVATION_PREFIX + "natural_language_embedding"
"""(E,) float32 embedding of the instruction."""

INSTRUCTION = OBSERVATION_PREFIX + "natural_language_instruction"
"""() string: the instruction's text."""

EFFECTOR = OBSERVATION_PREFIX + "effector"
"""(2,) float32 effector (x, y)."""
