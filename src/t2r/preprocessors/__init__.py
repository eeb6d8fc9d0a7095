"""Preprocessors: what the input pipeline produces (in-specs) -> what the model wants (out-specs).

Names follow ``tensor2robot.preprocessors``: `AbstractPreprocessor`,
`NoOpPreprocessor`, `SpecTransformationPreprocessor`, plus a ready-to-use
`ImagePreprocessor` (uint8 -> float images, crop, distort) and the batched,
channels-last image ops in `t2r.preprocessors.image_transformations`.
"""

from __future__ import annotations

from t2r.preprocessors import image_transformations
from t2r.preprocessors.abstract_preprocessor import AbstractPreprocessor, SpecFn
from t2r.preprocessors.image_preprocessor import ImagePreprocessor, is_float_image_spec
from t2r.preprocessors.image_transformations import (
    PhotometricDistortion,
    adjust_brightness,
    adjust_contrast,
    adjust_hue,
    adjust_saturation,
    center_crop,
    convert_uint8_to_float,
    hsv_to_rgb,
    random_crop,
    random_photometric_distortion,
    resize,
    rgb_to_hsv,
)
from t2r.preprocessors.noop_preprocessor import NoOpPreprocessor
from t2r.preprocessors.spec_transformation_preprocessor import SpecTransformationPreprocessor

__all__ = [
    "AbstractPreprocessor",
    "ImagePreprocessor",
    "NoOpPreprocessor",
    "PhotometricDistortion",
    "SpecFn",
    "SpecTransformationPreprocessor",
    "adjust_brightness",
    "adjust_contrast",
    "adjust_hue",
    "adjust_saturation",
    "center_crop",
    "convert_uint8_to_float",
    "hsv_to_rgb",
    "image_transformations",
    "is_float_image_spec",
    "random_crop",
    "random_photometric_distortion",
    "resize",
    "rgb_to_hsv",
]
