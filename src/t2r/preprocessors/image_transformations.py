"""Batched image transformations and photometric distortions as torch ops.

Layout: images are channels-last, as Tensor2Robot's specs declare them:
``(B, H, W, C)``, or ``(B, T, H, W, C)`` for sequences (episodes of frames).
Sequences are folded to ``(B * T, H, W, C)`` where an op needs it; random ops
draw one value per *example* (per index of B) and use it for every frame of
that example, so a crop or colour shift is consistent within an episode.

Every op runs on the device the images are on. Random numbers are drawn from
the explicit `generator` (on the generator's device), or from torch's default
CPU generator when it is None, and then moved to the images' device: the same
seed gives the same augmentation on CPU and GPU, and seeding torch (as the
training loop does) makes the default draws reproducible.

Value ranges: photometric ops take floating images in [0, 1] (see
`convert_uint8_to_float`). Hue and saturation work in HSV space, computed here
in torch (no torchvision): ``hue`` is a fraction of a full turn, so shifting
by 1.0 is the identity, as in ``tf.image.adjust_hue``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import torch
import torch.nn.functional as F

__all__ = [
    "PhotometricDistortion",
    "adjust_brightness",
    "adjust_contrast",
    "adjust_hue",
    "adjust_saturation",
    "center_crop",
    "convert_uint8_to_float",
    "hsv_to_rgb",
    "random_crop",
    "random_photometric_distortion",
    "resize",
    "rgb_to_hsv",
]

Size = int | Sequence[int]
Factor = float | torch.Tensor


# ---------------------------------------------------------------- helpers
def _pair(size: Size, what: str = "size") -> tuple[int, int]:
    if isinstance(size, int):
        return size, size
    pair = tuple(int(s) for s in size)
    if len(pair) != 2 or min(pair) <= 0:
        raise ValueError(f"{what} must be a positive int or (height, width), got {size!r}.")
    return pair[0], pair[1]


def _check_images(images: torch.Tensor, fn: str) -> None:
    if not isinstance(images, torch.Tensor):
        raise TypeError(f"{fn} needs a torch.Tensor, got {type(images).__name__}.")
    if images.dim() not in (4, 5):
        raise ValueError(
            f"{fn} needs images of shape (B, H, W, C) or (B, T, H, W, C), got shape "
            f"{tuple(images.shape)}."
        )


def _check_float(images: torch.Tensor, fn: str) -> None:
    if not images.is_floating_point():
        raise TypeError(
            f"{fn} needs floating images in [0, 1], got dtype {images.dtype}; "
            "use convert_uint8_to_float first."
        )


def _check_rgb(images: torch.Tensor, fn: str) -> None:
    if images.shape[-1] != 3:
        raise ValueError(f"{fn} needs RGB images (C == 3), got shape {tuple(images.shape)}.")


def _fold(images: torch.Tensor) -> tuple[torch.Tensor, int]:
    """``(B, T, H, W, C) -> (B * T, H, W, C)``; returns the images and T (1 for 4-D)."""
    if images.dim() == 5:
        b, t = images.shape[:2]
        return images.reshape(b * t, *images.shape[2:]), t
    return images, 1


def _unfold(images: torch.Tensor, t: int, like: torch.Tensor) -> torch.Tensor:
    if like.dim() == 5:
        return images.reshape(like.shape[0], t, *images.shape[1:])
    return images


def _draw_device(generator: torch.Generator | None) -> torch.device:
    return generator.device if generator is not None else torch.device("cpu")


def _uniform(
    n: int,
    low: float,
    high: float,
    generator: torch.Generator | None,
    device: torch.device,
) -> torch.Tensor:
    """`n` float32 draws from U[low, high) on `device`."""
    u = torch.rand(n, generator=generator, device=_draw_device(generator))
    return (low + (high - low) * u).to(device)


def _per_example(factor: Factor, images: torch.Tensor) -> torch.Tensor:
    """A scalar or ``(B,)`` factor shaped to broadcast against `images` (batch first)."""
    f = torch.as_tensor(factor, dtype=images.dtype, device=images.device)
    if f.dim() == 0:
        return f
    if f.dim() != 1 or f.shape[0] != images.shape[0]:
        raise ValueError(
            f"Per-example factors need shape ({images.shape[0]},) for images of shape "
            f"{tuple(images.shape)}, got {tuple(f.shape)}."
        )
    return f.reshape(-1, *([1] * (images.dim() - 1)))


# ------------------------------------------------------------- conversion
def convert_uint8_to_float(
    images: torch.Tensor, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """uint8 pixels in [0, 255] to floats in [0, 1], like ``tf.image.convert_image_dtype``.

    Args:
      images: uint8 tensor of any shape, e.g. ``(B, H, W, 3)``. Floating input is
        assumed to be in [0, 1] already and is only cast.
      dtype: the floating result dtype.

    Returns:
      ``images`` as `dtype`, same shape.
    """
    if images.dtype == torch.uint8:
        return images.to(dtype) / 255.0
    if images.is_floating_point():
        return images.to(dtype)
    raise TypeError(f"convert_uint8_to_float needs uint8 or floating images, got {images.dtype}.")


# ---------------------------------------------------------------- geometry
def _crop_size(images: torch.Tensor, size: Size, fn: str) -> tuple[int, int, int, int]:
    h, w = _pair(size)
    in_h, in_w = images.shape[-3], images.shape[-2]
    if h > in_h or w > in_w:
        raise ValueError(
            f"{fn}: crop size {(h, w)} is larger than the images' (H, W) {(in_h, in_w)} "
            f"(images of shape {tuple(images.shape)})."
        )
    return h, w, in_h, in_w


def center_crop(images: torch.Tensor, size: Size) -> torch.Tensor:
    """The central ``(h, w)`` window of every image.

    The offset is ``((H - h) // 2, (W - w) // 2)``, as Tensor2Robot's
    ``CenterCropImages``.

    Args:
      images: ``(B, H, W, C)`` or ``(B, T, H, W, C)``, any dtype.
      size: ``(h, w)`` or an int for a square crop.

    Returns:
      ``(B, h, w, C)`` (or ``(B, T, h, w, C)``), a view of `images`.
    """
    _check_images(images, "center_crop")
    h, w, in_h, in_w = _crop_size(images, size, "center_crop")
    top, left = (in_h - h) // 2, (in_w - w) // 2
    return images[..., top : top + h, left : left + w, :]


def random_crop(
    images: torch.Tensor,
    size: Size,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """A uniformly random ``(h, w)`` window per example (all frames of a sequence alike).

    Unlike Tensor2Robot's ``RandomCropImages`` (one offset for the whole batch),
    every example gets its own offset.

    Args:
      images: ``(B, H, W, C)`` or ``(B, T, H, W, C)``, any dtype.
      size: ``(h, w)`` or an int for a square crop.
      generator: the source of the offsets; torch's default CPU generator if None.

    Returns:
      ``(B, h, w, C)`` (or ``(B, T, h, w, C)``), a new tensor.
    """
    _check_images(images, "random_crop")
    h, w, in_h, in_w = _crop_size(images, size, "random_crop")
    batch = images.shape[0]
    device = images.device
    draw = _draw_device(generator)
    top = torch.randint(0, in_h - h + 1, (batch,), generator=generator, device=draw).to(device)
    left = torch.randint(0, in_w - w + 1, (batch,), generator=generator, device=draw).to(device)
    folded, t = _fold(images)
    if t > 1:
        top = top.repeat_interleave(t)
        left = left.repeat_interleave(t)
    rows = top[:, None] + torch.arange(h, device=device)  # (N, h)
    cols = left[:, None] + torch.arange(w, device=device)  # (N, w)
    index = torch.arange(folded.shape[0], device=device)[:, None, None]
    crops = folded[index, rows[:, :, None], cols[:, None, :]]  # (N, h, w, C)
    return _unfold(crops, t, images)


def resize(images: torch.Tensor, size: Size, antialias: bool = True) -> torch.Tensor:
    """Bilinear resize to ``(h, w)`` (half-pixel centres, like TF2's ``tf.image.resize``).

    Args:
      images: ``(B, H, W, C)`` or ``(B, T, H, W, C)``; floating, or uint8 (resized
        in float32, then rounded and clamped back to uint8).
      size: ``(h, w)`` or an int for a square result.
      antialias: low-pass filter when shrinking (ignored when enlarging).

    Returns:
      ``(B, h, w, C)`` (or ``(B, T, h, w, C)``) of the input dtype.
    """
    _check_images(images, "resize")
    h, w = _pair(size)
    in_h, in_w = images.shape[-3], images.shape[-2]
    if (h, w) == (in_h, in_w):
        return images
    folded, t = _fold(images)
    x = folded.permute(0, 3, 1, 2)
    if not x.is_floating_point():
        x = x.float()
    shrink = h < in_h or w < in_w
    out = F.interpolate(
        x, size=(h, w), mode="bilinear", align_corners=False, antialias=antialias and shrink
    )
    if images.dtype == torch.uint8:
        out = out.round().clamp(0, 255)
    out = out.to(images.dtype).permute(0, 2, 3, 1).contiguous()
    return _unfold(out, t, images)


# ------------------------------------------------------------ colour space
def rgb_to_hsv(images: torch.Tensor) -> torch.Tensor:
    """RGB in [0, 1] to HSV, all channels in [0, 1] (hue as a fraction of a turn).

    Args:
      images: ``(..., 3)`` floating.

    Returns:
      ``(..., 3)``: hue, saturation, value. Grey pixels get hue 0 and saturation 0.
    """
    _check_float(images, "rgb_to_hsv")
    _check_rgb(images, "rgb_to_hsv")
    r, g, b = images.unbind(-1)
    maxc = images.amax(-1)
    minc = images.amin(-1)
    delta = maxc - minc
    value = maxc
    saturation = torch.where(maxc > 0, delta / torch.where(maxc > 0, maxc, 1.0), 0.0)
    safe = torch.where(delta > 0, delta, 1.0)
    rc, gc, bc = (maxc - r) / safe, (maxc - g) / safe, (maxc - b) / safe
    hue = torch.where(maxc == r, bc - gc, torch.where(maxc == g, 2.0 + rc - bc, 4.0 + gc - rc))
    hue = torch.where(delta > 0, torch.remainder(hue / 6.0, 1.0), 0.0)
    return torch.stack([hue, saturation, value], dim=-1)


def hsv_to_rgb(images: torch.Tensor) -> torch.Tensor:
    """The inverse of `rgb_to_hsv`: ``(..., 3)`` HSV in [0, 1] to RGB in [0, 1]."""
    _check_float(images, "hsv_to_rgb")
    _check_rgb(images, "hsv_to_rgb")
    hue, saturation, value = images.unbind(-1)
    hue6 = torch.remainder(hue, 1.0) * 6.0

    def channel(n: float) -> torch.Tensor:
        k = torch.remainder(n + hue6, 6.0)
        ramp = torch.clamp(torch.minimum(k, 4.0 - k), 0.0, 1.0)
        return value - value * saturation * ramp

    return torch.stack([channel(5.0), channel(3.0), channel(1.0)], dim=-1)


# ------------------------------------------------------------- photometric
def adjust_brightness(images: torch.Tensor, delta: Factor) -> torch.Tensor:
    """Adds `delta` to every pixel (``tf.image.adjust_brightness``); no clipping.

    Args:
      images: ``(B, ..., C)`` floating in [0, 1].
      delta: a scalar or one value per example, shape ``(B,)``.
    """
    _check_float(images, "adjust_brightness")
    return images + _per_example(delta, images)


def adjust_contrast(images: torch.Tensor, factor: Factor) -> torch.Tensor:
    """Scales each channel's deviation from its per-image mean (``tf.image.adjust_contrast``).

    ``(x - mean) * factor + mean`` with the mean over H and W of each channel of
    each image (each frame of a sequence); no clipping. Factor 1 is the
    identity, 0 gives every pixel its channel mean.

    Args:
      images: ``(B, H, W, C)`` or ``(B, T, H, W, C)`` floating.
      factor: a scalar or one value per example, shape ``(B,)``.
    """
    _check_images(images, "adjust_contrast")
    _check_float(images, "adjust_contrast")
    mean = images.mean(dim=(-3, -2), keepdim=True)
    return (images - mean) * _per_example(factor, images) + mean


def adjust_saturation(images: torch.Tensor, factor: Factor) -> torch.Tensor:
    """Scales the HSV saturation by `factor`, clipped to [0, 1] (``tf.image.adjust_saturation``).

    Factor 1 is the identity (up to float error); 0 gives grey images whose
    three channels all equal the HSV value ``max(R, G, B)``.

    Args:
      images: ``(B, ..., 3)`` floating RGB in [0, 1].
      factor: a scalar or one value per example, shape ``(B,)``, >= 0.
    """
    _check_float(images, "adjust_saturation")
    _check_rgb(images, "adjust_saturation")
    hsv = rgb_to_hsv(images)
    f = _per_example(factor, images)
    if f.dim() > 0:
        f = f.squeeze(-1)
    hue, saturation, value = hsv.unbind(-1)
    saturation = torch.clamp(saturation * f, 0.0, 1.0)
    return hsv_to_rgb(torch.stack([hue, saturation, value], dim=-1))


def adjust_hue(images: torch.Tensor, delta: Factor) -> torch.Tensor:
    """Rotates the HSV hue by `delta` turns (``tf.image.adjust_hue``).

    Implemented as RGB -> HSV -> shift hue modulo 1 -> RGB in torch. `delta` 0
    and 1 are the identity (up to float error); 1/3 maps red to green.

    Args:
      images: ``(B, ..., 3)`` floating RGB in [0, 1].
      delta: a scalar or one value per example, shape ``(B,)``; in [-1, 1].
    """
    _check_float(images, "adjust_hue")
    _check_rgb(images, "adjust_hue")
    hsv = rgb_to_hsv(images)
    d = _per_example(delta, images)
    if d.dim() > 0:
        d = d.squeeze(-1)
    hue, saturation, value = hsv.unbind(-1)
    hue = torch.remainder(hue + d, 1.0)
    return hsv_to_rgb(torch.stack([hue, saturation, value], dim=-1))


def random_photometric_distortion(
    images: torch.Tensor,
    max_delta_brightness: float = 0.125,
    contrast_range: tuple[float, float] | None = (0.5, 1.5),
    saturation_range: tuple[float, float] | None = (0.5, 1.5),
    max_delta_hue: float = 0.2,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Random brightness, saturation, hue and contrast, drawn per example.

    The defaults are Tensor2Robot's ``ApplyPhotometricImageDistortions``
    ranges, and the order is its order (brightness, saturation, hue, contrast).
    Unlike it, every example (not the whole batch) gets its own factors, and the
    images are clipped to [0, 1] after every step so that the HSV steps see
    valid colours. Saturation and hue are skipped for single-channel images.

    Args:
      images: ``(B, H, W, C)`` or ``(B, T, H, W, C)`` floating in [0, 1], C 1 or 3.
      max_delta_brightness: brightness delta ~ U[-max, max]; 0 disables.
      contrast_range: contrast factor ~ U[low, high]; None disables.
      saturation_range: saturation factor ~ U[low, high]; None disables.
      max_delta_hue: hue delta (turns) ~ U[-max, max]; 0 disables.
      generator: the source of the factors; torch's default CPU generator if None.

    Returns:
      Distorted images, same shape and dtype, in [0, 1].
    """
    _check_images(images, "random_photometric_distortion")
    _check_float(images, "random_photometric_distortion")
    batch, device = images.shape[0], images.device
    rgb = images.shape[-1] == 3
    out = images
    if max_delta_brightness:
        delta = _uniform(batch, -max_delta_brightness, max_delta_brightness, generator, device)
        out = adjust_brightness(out, delta).clamp(0.0, 1.0)
    if saturation_range is not None and rgb:
        factor = _uniform(batch, *saturation_range, generator, device)
        out = adjust_saturation(out, factor).clamp(0.0, 1.0)
    if max_delta_hue and rgb:
        delta = _uniform(batch, -max_delta_hue, max_delta_hue, generator, device)
        out = adjust_hue(out, delta).clamp(0.0, 1.0)
    if contrast_range is not None:
        factor = _uniform(batch, *contrast_range, generator, device)
        out = adjust_contrast(out, factor).clamp(0.0, 1.0)
    return out


@dataclasses.dataclass(frozen=True)
class PhotometricDistortion:
    """The settings of `random_photometric_distortion`, as one configurable object.

    ``PhotometricDistortion(max_delta_hue=0.0)(images, generator)`` distorts a
    batch; see `random_photometric_distortion` for the fields.
    """

    max_delta_brightness: float = 0.125
    contrast_range: tuple[float, float] | None = (0.5, 1.5)
    saturation_range: tuple[float, float] | None = (0.5, 1.5)
    max_delta_hue: float = 0.2

    def __post_init__(self) -> None:
        if self.max_delta_brightness < 0 or self.max_delta_hue < 0:
            raise ValueError(f"Maximum deltas must be >= 0, got {self}.")
        for name in ("contrast_range", "saturation_range"):
            rng = getattr(self, name)
            if rng is not None and not (len(rng) == 2 and 0 <= rng[0] <= rng[1]):
                raise ValueError(f"{name} must be (low, high) with 0 <= low <= high, got {rng!r}.")

    def __call__(
        self, images: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        return random_photometric_distortion(
            images,
            max_delta_brightness=self.max_delta_brightness,
            contrast_range=self.contrast_range,
            saturation_range=self.saturation_range,
            max_delta_hue=self.max_delta_hue,
            generator=generator,
        )
