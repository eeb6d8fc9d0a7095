from __future__ import annotations

import math

import pytest
import torch

from t2r.preprocessors import (
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


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def rand_images(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(*shape, generator=gen(seed))


def coordinate_images(batch: int, height: int, width: int) -> torch.Tensor:
    """(B, H, W, 3) float: channel 0 is the row, 1 the column, 2 the example index."""
    rows = torch.arange(height).view(1, height, 1).expand(batch, height, width)
    cols = torch.arange(width).view(1, 1, width).expand(batch, height, width)
    index = torch.arange(batch).view(batch, 1, 1).expand(batch, height, width)
    return torch.stack([rows, cols, index], dim=-1).float()


def crop_offsets(crops: torch.Tensor) -> list[tuple[int, int]]:
    """The (top, left) of each crop of `coordinate_images`."""
    return [(int(c[0, 0, 0]), int(c[0, 0, 1])) for c in crops]


# -------------------------------------------------------------- conversion
def test_convert_uint8_to_float():
    images = torch.tensor([[0, 51, 255]], dtype=torch.uint8).view(1, 1, 1, 3)
    out = convert_uint8_to_float(images)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out.flatten(), torch.tensor([0.0, 0.2, 1.0]))
    assert convert_uint8_to_float(images, dtype=torch.float64).dtype == torch.float64


def test_convert_float_is_a_cast_and_other_ints_raise():
    images = torch.rand(2, 3, 3, 3, dtype=torch.float64)
    out = convert_uint8_to_float(images)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, images.float())
    with pytest.raises(TypeError, match="int32"):
        convert_uint8_to_float(images.to(torch.int32))


# ------------------------------------------------------------------ crops
@pytest.mark.parametrize(
    "size,top,left", [((4, 6), 3, 1), ((5, 5), 2, 2), ((10, 9), 0, 0), (7, 1, 1)]
)
def test_center_crop_is_exact(size, top, left):
    images = coordinate_images(3, 10, 9)
    crops = center_crop(images, size)
    h, w = (size, size) if isinstance(size, int) else size
    assert crops.shape == (3, h, w, 3)
    torch.testing.assert_close(crops, images[:, top : top + h, left : left + w])


def test_center_crop_sequences_and_uint8():
    images = torch.randint(0, 256, (2, 5, 9, 7, 1), dtype=torch.uint8)
    crops = center_crop(images, (3, 3))
    assert crops.dtype == torch.uint8
    assert crops.shape == (2, 5, 3, 3, 1)
    assert torch.equal(crops, images[:, :, 3:6, 2:5])


def test_crop_larger_than_image_names_both_sizes():
    images = torch.zeros(2, 8, 8, 3)
    with pytest.raises(ValueError, match=r"\(9, 4\).*\(8, 8\)"):
        center_crop(images, (9, 4))
    with pytest.raises(ValueError, match=r"random_crop.*\(4, 9\)"):
        random_crop(images, (4, 9))


def test_crop_rejects_bad_ranks():
    with pytest.raises(ValueError, match=r"\(B, H, W, C\).*\(8, 8, 3\)"):
        random_crop(torch.zeros(8, 8, 3), 4)


def test_random_crop_windows_come_from_their_own_image():
    images = coordinate_images(32, 12, 10)
    crops = random_crop(images, (5, 4), generator=gen())
    assert crops.shape == (32, 5, 4, 3)
    assert crops.dtype == images.dtype
    for b, (top, left) in enumerate(crop_offsets(crops)):
        assert 0 <= top <= 7 and 0 <= left <= 6
        torch.testing.assert_close(crops[b], images[b, top : top + 5, left : left + 4])


def test_random_crop_offsets_are_independent_per_example_and_cover_the_range():
    images = coordinate_images(256, 8, 8)
    offsets = crop_offsets(random_crop(images, (4, 4), generator=gen(1)))
    assert len(set(offsets)) > 10
    tops = {top for top, _ in offsets}
    lefts = {left for _, left in offsets}
    assert tops == set(range(5)) and lefts == set(range(5))


def test_random_crop_is_deterministic_given_the_generator():
    images = rand_images(8, 16, 16, 3)
    first = random_crop(images, 8, generator=gen(7))
    assert torch.equal(first, random_crop(images, 8, generator=gen(7)))
    assert not torch.equal(first, random_crop(images, 8, generator=gen(8)))
    # The default generator follows torch.manual_seed.
    torch.manual_seed(3)
    a = random_crop(images, 8)
    torch.manual_seed(3)
    assert torch.equal(a, random_crop(images, 8))


def test_random_crop_of_sequences_shares_the_offset_across_time():
    frames = coordinate_images(1, 10, 10).expand(6, 10, 10, 3)
    images = frames.reshape(2, 3, 10, 10, 3).clone()  # (B=2, T=3, ...)
    crops = random_crop(images, (4, 4), generator=gen(2))
    assert crops.shape == (2, 3, 4, 4, 3)
    for b in range(2):
        offsets = crop_offsets(crops[b])
        assert len(set(offsets)) == 1
        top, left = offsets[0]
        torch.testing.assert_close(crops[b], images[b, :, top : top + 4, left : left + 4])


def test_random_crop_of_sequences_varies_across_examples():
    images = coordinate_images(1, 10, 10).expand(64 * 2, 10, 10, 3).reshape(64, 2, 10, 10, 3)
    crops = random_crop(images, 3, generator=gen(0))
    assert len(set(crop_offsets(crops[:, 0]))) > 10


def test_random_crop_uint8():
    images = torch.randint(0, 256, (4, 9, 9, 3), dtype=torch.uint8)
    crops = random_crop(images, (9, 9), generator=gen())
    assert crops.dtype == torch.uint8
    assert torch.equal(crops, images)


# ------------------------------------------------------------------ resize
@pytest.mark.parametrize("size", [(4, 6), (16, 20), (3, 3)])
def test_resize_of_a_constant_image_stays_constant(size):
    images = torch.full((2, 8, 10, 3), 0.37)
    out = resize(images, size)
    assert out.shape == (2, *size, 3)
    torch.testing.assert_close(out, torch.full_like(out, 0.37))


def test_resize_uint8_keeps_dtype_and_constants():
    images = torch.full((2, 8, 8, 3), 200, dtype=torch.uint8)
    out = resize(images, (5, 5))
    assert out.dtype == torch.uint8
    assert torch.equal(out, torch.full((2, 5, 5, 3), 200, dtype=torch.uint8))


def test_resize_keeps_channels_apart_and_handles_sequences():
    images = torch.zeros(2, 3, 8, 8, 3)
    images[..., 0] = 1.0
    images[..., 2] = 0.5
    out = resize(images, (4, 4))
    assert out.shape == (2, 3, 4, 4, 3)
    torch.testing.assert_close(out[..., 0], torch.ones(2, 3, 4, 4))
    torch.testing.assert_close(out[..., 1], torch.zeros(2, 3, 4, 4))
    torch.testing.assert_close(out[..., 2], torch.full((2, 3, 4, 4), 0.5))
    assert out.is_contiguous()


def test_resize_to_the_same_size_is_identity_and_downsampling_averages():
    images = rand_images(2, 6, 6, 3)
    assert resize(images, 6) is images
    # Halving with antialiasing averages each 2x2 block of a linear ramp exactly.
    ramp = torch.arange(8.0).view(1, 1, 8, 1).expand(1, 8, 8, 1)
    out = resize(ramp, (4, 4))
    torch.testing.assert_close(out[0, 0, 1:3, 0], torch.tensor([2.5, 4.5]))


# ------------------------------------------------------------------- HSV
def test_rgb_to_hsv_known_colours():
    colours = torch.tensor(
        [[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0], [0.5, 0.5, 0.5], [0, 0, 0], [0.5, 0.25, 0.25]]
    ).float()
    expected = torch.tensor(
        [
            [0, 1, 1],
            [1 / 3, 1, 1],
            [2 / 3, 1, 1],
            [1 / 6, 1, 1],
            [0, 0, 0.5],
            [0, 0, 0],
            [0, 0.5, 0.5],
        ]
    )
    torch.testing.assert_close(rgb_to_hsv(colours), expected)
    torch.testing.assert_close(hsv_to_rgb(expected), colours)


def test_hsv_round_trip():
    images = rand_images(4, 6, 6, 3)
    torch.testing.assert_close(hsv_to_rgb(rgb_to_hsv(images)), images, atol=1e-6, rtol=0)
    hsv = rgb_to_hsv(images)
    assert hsv.min() >= 0 and hsv.max() <= 1


def test_hsv_needs_three_float_channels():
    with pytest.raises(ValueError, match="C == 3"):
        rgb_to_hsv(torch.rand(1, 2, 2, 4))
    with pytest.raises(TypeError, match="convert_uint8_to_float"):
        adjust_hue(torch.zeros(1, 2, 2, 3, dtype=torch.uint8), 0.1)


# ------------------------------------------------------------ photometric
def test_adjust_brightness_adds_per_example_deltas():
    images = torch.full((3, 2, 2, 3), 0.5)
    out = adjust_brightness(images, torch.tensor([-0.1, 0.0, 0.2]))
    torch.testing.assert_close(out[:, 0, 0, 0], torch.tensor([0.4, 0.5, 0.7]))
    torch.testing.assert_close(adjust_brightness(images, 0.25), images + 0.25)
    with pytest.raises(ValueError, match=r"\(3,\)"):
        adjust_brightness(images, torch.tensor([0.1, 0.2]))


def test_adjust_contrast_properties():
    images = rand_images(3, 5, 5, 3)
    torch.testing.assert_close(adjust_contrast(images, 1.0), images)
    mean = images.mean(dim=(1, 2), keepdim=True)
    flat = adjust_contrast(images, 0.0)
    torch.testing.assert_close(flat, mean.expand_as(images))
    stretched = adjust_contrast(images, torch.tensor([0.5, 2.0, 1.0]))
    torch.testing.assert_close(stretched.mean(dim=(1, 2), keepdim=True), mean)
    torch.testing.assert_close(stretched[1] - mean[1], 2 * (images[1] - mean[1]))
    torch.testing.assert_close(stretched[2], images[2])


def test_adjust_saturation_zero_gives_grayscale_and_one_is_identity():
    images = rand_images(2, 4, 4, 3)
    gray = adjust_saturation(images, 0.0)
    torch.testing.assert_close(gray[..., 0], gray[..., 1])
    torch.testing.assert_close(gray[..., 1], gray[..., 2])
    torch.testing.assert_close(gray[..., 0], images.amax(-1))  # HSV value
    torch.testing.assert_close(adjust_saturation(images, 1.0), images, atol=1e-6, rtol=0)
    saturated = adjust_saturation(images, 3.0)
    assert saturated.min() >= 0 and saturated.max() <= 1
    assert (rgb_to_hsv(saturated)[..., 1] >= rgb_to_hsv(images)[..., 1] - 1e-6).all()


def test_adjust_saturation_per_example():
    images = rand_images(2, 4, 4, 3)
    out = adjust_saturation(images, torch.tensor([0.0, 1.0]))
    assert torch.allclose(out[0, ..., 0], out[0, ..., 1])
    torch.testing.assert_close(out[1], images[1], atol=1e-6, rtol=0)


@pytest.mark.parametrize("delta", [0.0, 1.0, -1.0])
def test_adjust_hue_by_zero_or_a_full_turn_is_identity(delta):
    images = rand_images(2, 5, 5, 3)
    torch.testing.assert_close(adjust_hue(images, delta), images, atol=1e-5, rtol=0)


def test_adjust_hue_rotates_primaries_and_keeps_gray():
    red = torch.tensor([1.0, 0.0, 0.0]).view(1, 1, 1, 3)
    torch.testing.assert_close(
        adjust_hue(red, 1 / 3), torch.tensor([0.0, 1.0, 0.0]).view(1, 1, 1, 3)
    )
    torch.testing.assert_close(
        adjust_hue(red, -1 / 3), torch.tensor([0.0, 0.0, 1.0]).view(1, 1, 1, 3)
    )
    gray = torch.full((1, 2, 2, 3), 0.3)
    torch.testing.assert_close(adjust_hue(gray, 0.4), gray)
    # Shifts compose modulo a turn.
    images = rand_images(2, 3, 3, 3)
    torch.testing.assert_close(
        adjust_hue(adjust_hue(images, 0.3), 0.2), adjust_hue(images, 0.5), atol=1e-5, rtol=0
    )
    assert not torch.allclose(adjust_hue(images, 0.5), images, atol=1e-2)


def test_adjust_hue_per_example_and_sequences():
    images = rand_images(2, 3, 4, 4, 3)  # (B, T, H, W, C)
    out = adjust_hue(images, torch.tensor([0.0, 0.5]))
    assert out.shape == images.shape
    torch.testing.assert_close(out[0], images[0], atol=1e-5, rtol=0)
    assert not torch.allclose(out[1], images[1], atol=1e-2)


def test_photometric_ops_reject_uint8():
    images = torch.zeros(1, 2, 2, 3, dtype=torch.uint8)
    for fn in (adjust_brightness, adjust_contrast, adjust_saturation):
        with pytest.raises(TypeError, match="uint8"):
            fn(images, 1.0)


def test_random_photometric_distortion_is_seedable_and_in_range():
    images = rand_images(8, 6, 6, 3)
    out = random_photometric_distortion(images, generator=gen(5))
    assert out.shape == images.shape and out.dtype == images.dtype
    assert out.min() >= 0 and out.max() <= 1
    assert torch.equal(out, random_photometric_distortion(images, generator=gen(5)))
    assert not torch.equal(out, random_photometric_distortion(images, generator=gen(6)))
    assert not torch.allclose(out, images, atol=1e-3)


def test_random_photometric_distortion_draws_per_example():
    images = rand_images(1, 6, 6, 3).expand(16, 6, 6, 3)
    out = random_photometric_distortion(images, generator=gen(0))
    means = out.mean(dim=(1, 2, 3))
    assert len(set(means.tolist())) == 16


def test_random_photometric_distortion_brightness_only_is_bounded():
    images = torch.full((64, 2, 2, 3), 0.5)
    out = random_photometric_distortion(
        images,
        max_delta_brightness=0.1,
        contrast_range=None,
        saturation_range=None,
        max_delta_hue=0.0,
        generator=gen(0),
    )
    delta = out[:, 0, 0, 0] - 0.5
    assert delta.abs().max() <= 0.1 + 1e-6
    assert delta.std() > 0.02
    torch.testing.assert_close(out, out[:, :1, :1, :1].expand_as(out))


def test_random_photometric_distortion_hue_only_keeps_saturation_and_value():
    images = rand_images(32, 3, 3, 3) * 0.8 + 0.1
    out = random_photometric_distortion(
        images,
        max_delta_brightness=0.0,
        contrast_range=None,
        saturation_range=None,
        max_delta_hue=0.3,
        generator=gen(0),
    )
    before, after = rgb_to_hsv(images), rgb_to_hsv(out)
    torch.testing.assert_close(after[..., 1:], before[..., 1:], atol=1e-5, rtol=0)
    shift = torch.remainder(after[..., 0] - before[..., 0] + 0.5, 1.0) - 0.5  # in [-0.5, 0.5)
    per_example = shift[:, 0, 0]
    torch.testing.assert_close(
        shift, per_example.view(-1, 1, 1).expand_as(shift), atol=1e-4, rtol=0
    )
    assert per_example.abs().max() <= 0.3 + 1e-4
    assert per_example.std() > 0.05


def test_random_photometric_distortion_disabled_is_identity():
    images = rand_images(2, 4, 4, 3)
    out = random_photometric_distortion(images, 0.0, None, None, 0.0, generator=gen(0))
    torch.testing.assert_close(out, images)


def test_random_photometric_distortion_sequences_share_factors_across_time():
    frame = rand_images(1, 1, 5, 5, 3)
    images = frame.expand(4, 3, 5, 5, 3)  # identical frames everywhere
    out = random_photometric_distortion(images, generator=gen(3))
    assert out.shape == images.shape
    for b in range(4):
        torch.testing.assert_close(out[b, 1], out[b, 0])
        torch.testing.assert_close(out[b, 2], out[b, 0])
    assert not torch.allclose(out[0], out[1])


def test_random_photometric_distortion_grayscale_images():
    images = rand_images(4, 5, 5, 1)
    out = random_photometric_distortion(images, generator=gen(0))
    assert out.shape == images.shape
    assert out.min() >= 0 and out.max() <= 1


def test_photometric_distortion_object():
    images = rand_images(4, 5, 5, 3)
    distortion = PhotometricDistortion(max_delta_hue=0.05)
    expected = random_photometric_distortion(images, max_delta_hue=0.05, generator=gen(1))
    assert torch.equal(distortion(images, gen(1)), expected)
    with pytest.raises(ValueError, match="contrast_range"):
        PhotometricDistortion(contrast_range=(1.5, 0.5))
    with pytest.raises(ValueError, match=">= 0"):
        PhotometricDistortion(max_delta_brightness=-0.1)


def test_hue_delta_is_a_fraction_of_a_turn():
    # A hue shift of 1/6 turn moves red (0 deg) to yellow (60 deg).
    red = torch.tensor([1.0, 0.0, 0.0]).view(1, 1, 1, 3)
    hue = rgb_to_hsv(adjust_hue(red, 1 / 6))[..., 0].item()
    assert math.isclose(hue, 1 / 6, abs_tol=1e-6)


# ------------------------------------------------------------------- GPU
@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_ops_run_on_cuda_and_match_cpu_for_the_same_seed():
    images = torch.randint(0, 256, (8, 2, 12, 12, 3), dtype=torch.uint8)
    cuda = images.cuda()

    def pipeline(x: torch.Tensor) -> torch.Tensor:
        x = random_crop(x, (10, 10), generator=gen(4))
        x = resize(convert_uint8_to_float(x), (6, 6))
        return random_photometric_distortion(x, generator=gen(4))

    out_cpu = pipeline(images)
    out_cuda = pipeline(cuda)
    assert out_cuda.device.type == "cuda"
    torch.testing.assert_close(out_cuda.cpu(), out_cpu, atol=1e-4, rtol=0)
    assert center_crop(cuda, 5).device.type == "cuda"
    assert adjust_hue(convert_uint8_to_float(cuda), 1.0).device.type == "cuda"
