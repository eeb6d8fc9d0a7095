"""ImagePreprocessor: stored uint8 images in, the model's float images out."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from t2r.modes import ModeKeys
from t2r.preprocessors.abstract_preprocessor import SpecFn
from t2r.preprocessors.image_transformations import (
    PhotometricDistortion,
    Size,
    _pair,
    center_crop,
    convert_uint8_to_float,
    random_crop,
    resize,
)
from t2r.preprocessors.spec_transformation_preprocessor import SpecTransformationPreprocessor
from t2r.specs import ExtendedTensorSpec, SpecError, TensorSpecStruct

__all__ = ["ImagePreprocessor", "is_float_image_spec"]

_IMAGE_CHANNELS = (1, 3)


def is_float_image_spec(spec: ExtendedTensorSpec) -> bool:
    """Whether `spec` is a floating image the model consumes.

    That is a floating ``(H, W, C)`` spec with C 1 or 3 and known H and W (a
    sequence spec of such frames included), or a floating ``(T, H, W, C)`` list
    of encoded images (``data_format`` 'jpeg' or 'png').
    """
    if not spec.dtype.is_floating_point or spec.shape is None:
        return False
    rank = len(spec.shape)
    if rank == 4 and spec.data_format is None:
        return False
    if rank not in (3, 4):
        return False
    height, width, channels = spec.shape[-3:]
    return height is not None and width is not None and channels in _IMAGE_CHANNELS


class ImagePreprocessor(SpecTransformationPreprocessor):
    """Feeds a model that wants float images from records that store uint8 images.

    For every image feature of the model (see `is_float_image_spec`, or the
    keys in `image_keys`), the in-spec is the same spec as uint8 with
    ``data_format`` 'jpeg' (or the model's own format), optionally of a larger
    stored size `in_size`. `_preprocess_fn` then, per image:

    1. crops a `crop_size` window (default: the model's size) from the stored
       ``in_size`` image: at random per example in TRAIN, the centre otherwise;
    2. converts uint8 [0, 255] to float [0, 1] (`convert_uint8_to_float`);
    3. resizes the crop to the model's size when `crop_size` differs from it;
    4. in TRAIN only, applies `distortion` (e.g. `PhotometricDistortion()`);
    5. casts to the model spec's dtype.

    Other features and all labels pass through unchanged. EVAL and PREDICT are
    deterministic. With the defaults (no `in_size`, `crop_size` or distortion)
    this is Tensor2Robot pose_env's preprocessor: uint8 images become float32.

    Args:
      model_feature_specification_fn: the model's ``get_feature_specification``.
      model_label_specification_fn: the model's ``get_label_specification``.
      image_keys: flat keys of the images to process; None finds every float
        image spec. Naming a key that is not a float image spec is an error.
      in_size: ``(H, W)`` of the stored images; None means the model's size.
      crop_size: ``(h, w)`` of the crop taken from the stored image; None means
        the model's size. Must fit inside `in_size`.
      distortion: applied to the float crops in TRAIN, called as
        ``distortion(images, generator)``; None for none.
      seed: None draws randomness from torch's default generator (seed it with
        ``torch.manual_seed``; the training loop saves and restores its state).
        An int gives this preprocessor its own CPU generator, seeded with it, so
        that its augmentations are reproducible on their own, whatever device
        the images are on (random draws are tiny and moved to that device).
    """

    def __init__(
        self,
        model_feature_specification_fn: SpecFn | None = None,
        model_label_specification_fn: SpecFn | None = None,
        image_keys: Sequence[str] | None = None,
        in_size: Size | None = None,
        crop_size: Size | None = None,
        distortion: PhotometricDistortion | None = None,
        seed: int | None = None,
    ) -> None:
        super().__init__(model_feature_specification_fn, model_label_specification_fn)
        self._image_keys = None if image_keys is None else tuple(image_keys)
        self._in_size = None if in_size is None else _pair(in_size, "in_size")
        self._crop_size = None if crop_size is None else _pair(crop_size, "crop_size")
        if self._in_size is not None and self._crop_size is not None:
            if self._crop_size[0] > self._in_size[0] or self._crop_size[1] > self._in_size[1]:
                raise ValueError(
                    f"crop_size {self._crop_size} does not fit in in_size {self._in_size}."
                )
        self.distortion = distortion
        self.seed = seed
        self._generator = None if seed is None else torch.Generator().manual_seed(seed)

    def extra_repr(self) -> str:
        return (
            f"image_keys={self._image_keys}, in_size={self._in_size}, "
            f"crop_size={self._crop_size}, distortion={self.distortion}, seed={self.seed}"
        )

    @property
    def image_keys(self) -> tuple[str, ...] | None:
        return self._image_keys

    @property
    def in_size(self) -> tuple[int, int] | None:
        return self._in_size

    @property
    def crop_size(self) -> tuple[int, int] | None:
        return self._crop_size

    # ------------------------------------------------------------------ specs
    def _image_specs(self, model_specs: TensorSpecStruct) -> dict[str, ExtendedTensorSpec]:
        """The model's image specs by flat key."""
        if self._image_keys is None:
            return {
                key: spec
                for key, spec in model_specs.items()
                if isinstance(spec, ExtendedTensorSpec) and is_float_image_spec(spec)
            }
        images = {}
        for key in self._image_keys:
            if key not in model_specs:
                raise SpecError(
                    f"{type(self).__name__}: image key {key!r} is not a model feature; the model "
                    f"has {sorted(model_specs)}.",
                    key=key,
                )
            spec = model_specs[key]
            if not (isinstance(spec, ExtendedTensorSpec) and is_float_image_spec(spec)):
                raise SpecError(
                    f"{type(self).__name__}: image key {key!r} (spec name "
                    f"{getattr(spec, 'name', None)!r}) is not a floating (H, W, 1|3) image spec: "
                    f"{spec!r}.",
                    key=key,
                    name=getattr(spec, "name", None),
                )
            images[key] = spec
        return images

    def _sizes(
        self, key: str, spec: ExtendedTensorSpec
    ) -> tuple[tuple[int, int], tuple[int, int], tuple[int, int]]:
        """``(in_size, crop_size, model_size)`` of one image spec."""
        assert spec.shape is not None
        height, width = spec.shape[-3], spec.shape[-2]
        assert height is not None and width is not None
        model_size = (height, width)
        in_size = self._in_size or model_size
        crop_size = self._crop_size or model_size
        if crop_size[0] > in_size[0] or crop_size[1] > in_size[1]:
            raise SpecError(
                f"{type(self).__name__}: image {key!r} (spec name {spec.name!r}) cannot be "
                f"cropped to {crop_size} from stored size {in_size}; set in_size >= crop_size.",
                key=key,
                name=spec.name,
            )
        return in_size, crop_size, model_size

    def _transform_in_feature_specification(
        self, tensor_spec_struct: TensorSpecStruct
    ) -> TensorSpecStruct:
        for key, spec in self._image_specs(tensor_spec_struct).items():
            in_size, _, _ = self._sizes(key, spec)
            assert spec.shape is not None
            self.update_spec(
                tensor_spec_struct,
                key,
                shape=(*spec.shape[:-3], *in_size, spec.shape[-1]),
                dtype=torch.uint8,
                data_format=spec.data_format or "jpeg",
            )
        return tensor_spec_struct

    # ------------------------------------------------------------- processing
    @property
    def generator(self) -> torch.Generator | None:
        """The CPU generator of a seeded preprocessor; None when `seed` is None."""
        return self._generator

    def _preprocess_fn(
        self,
        features: TensorSpecStruct,
        labels: TensorSpecStruct | None,
        mode: str,
    ) -> tuple[TensorSpecStruct, TensorSpecStruct | None]:
        train = mode == ModeKeys.TRAIN
        for key, spec in self._image_specs(self._model_feature_specification(mode)).items():
            images = features[key]
            if images is None:  # an absent optional image
                continue
            _, crop_size, model_size = self._sizes(key, spec)
            # Crop before converting: less data to convert.
            if train:
                images = random_crop(images, crop_size, generator=self._generator)
            else:
                images = center_crop(images, crop_size)
            images = resize(convert_uint8_to_float(images), model_size)
            if train and self.distortion is not None:
                images = self.distortion(images, self._generator)
            features[key] = images.to(spec.torch_dtype)
        return features, labels
