from __future__ import annotations

import numpy as np
import pytest
import torch

from t2r.specs import (
    ExtendedTensorSpec,
    SpecError,
    TensorSpecStruct,
    cast_bfloat16_to_float32,
    cast_float32_to_bfloat16,
    make_constant_numpy,
    make_random_numpy,
    make_random_tensors,
    pad_or_clip_tensor_to_spec_shape,
    replace_dtype,
    to_tensors,
)

SPEC = TensorSpecStruct(
    image=ExtendedTensorSpec((4, 4, 3), torch.uint8, name="image"),
    pose=ExtendedTensorSpec((2,), torch.float32, name="pose"),
    seq=ExtendedTensorSpec((5,), torch.int64, name="seq", is_sequence=True),
    flag=ExtendedTensorSpec((), torch.bool, name="flag"),
    half=ExtendedTensorSpec((3,), torch.bfloat16, name="half"),
)


def test_make_random_numpy_shapes_dtypes_and_ranges():
    data = make_random_numpy(SPEC, batch_size=2, sequence_length=7, seed=0)
    assert data.image.shape == (2, 4, 4, 3) and data.image.dtype == np.uint8
    assert data.pose.shape == (2, 2) and data.pose.dtype == np.float32
    assert 0 <= data.pose.min() and data.pose.max() < 1
    assert data.seq.shape == (2, 7, 5) and data.seq.dtype == np.int64
    assert data.flag.shape == (2,) and data.flag.dtype == np.bool_
    assert data.half.dtype == np.float32  # numpy has no bfloat16


def test_make_random_numpy_is_seedable():
    a = make_random_numpy(SPEC, seed=3)
    b = make_random_numpy(SPEC, seed=3)
    c = make_random_numpy(SPEC, seed=4)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert not np.array_equal(a.pose, c.pose)


def test_no_batch_or_sequence_dims():
    data = make_random_numpy(SPEC, batch_size=None, sequence_length=None)
    assert data.image.shape == (4, 4, 3)
    assert data.seq.shape == (5,)


def test_make_constant_numpy():
    data = make_constant_numpy(SPEC, 7, batch_size=3)
    assert data.image.shape == (3, 4, 4, 3)
    assert (data.image == 7).all() and (data.pose == 7).all()
    assert data.seq.shape == (3, 3, 5)


def test_make_random_tensors_dtypes_and_generator():
    gen = torch.Generator().manual_seed(0)
    data = make_random_tensors(SPEC, batch_size=2, generator=gen)
    assert data.half.dtype == torch.bfloat16
    assert data.image.dtype == torch.uint8
    again = make_random_tensors(SPEC, batch_size=2, generator=torch.Generator().manual_seed(0))
    assert torch.equal(data.pose, again.pose)


def test_unknown_dims_get_size_one_and_unknown_rank_raises():
    spec = {"x": ExtendedTensorSpec((None, 3), torch.float32)}
    assert make_random_numpy(spec, batch_size=2)["x"].shape == (2, 1, 3)
    with pytest.raises(SpecError, match="unknown rank"):
        make_random_numpy({"x": ExtendedTensorSpec(None, torch.float32, name="x")})


def test_to_tensors_casts_to_spec_dtype():
    data = make_random_numpy(SPEC, seed=0)
    tensors = to_tensors(data, SPEC)
    assert tensors.half.dtype == torch.bfloat16
    assert tensors.image.dtype == torch.uint8
    assert isinstance(tensors, TensorSpecStruct)


@pytest.mark.parametrize(
    "data, expected",
    [
        ([[1, 3, 3], [1, 2, 3]], [[1, 3, 3], [1, 2, 3]]),
        ([[1, 2, 3, 4]], [[1, 2, 3]]),
        ([[1, 2, 3], [4, 5, 6]], [[1, 2, 3], [4, 5, 6]]),
    ],
    ids=["unchanged_padded", "clipping", "unchanged"],
)
@pytest.mark.parametrize("as_torch", [False, True])
def test_pad_or_clip(data, expected, as_torch):
    spec = ExtendedTensorSpec((3,), torch.int64, name="varlen", varlen_default_value=3.0)
    tensor = torch.tensor(data) if as_torch else np.array(data)
    out = pad_or_clip_tensor_to_spec_shape(tensor, spec)
    assert np.array_equal(np.asarray(out), np.array(expected))


@pytest.mark.parametrize("as_torch", [False, True])
def test_pad_pads_with_default_value(as_torch):
    spec = ExtendedTensorSpec((3,), torch.int64, name="varlen", varlen_default_value=3.0)
    tensor = torch.tensor([[1]]) if as_torch else np.array([[1]])
    out = pad_or_clip_tensor_to_spec_shape(tensor, spec)
    assert np.array_equal(np.asarray(out), [[1, 3, 3]])


def test_pad_image_list():
    spec = ExtendedTensorSpec(
        (3, 2, 2, 1), torch.uint8, name="varlen", data_format="png", varlen_default_value=3.0
    )
    images = torch.stack([torch.full((2, 2, 1), 1), torch.full((2, 2, 1), 2)]).to(torch.uint8)[None]
    out = pad_or_clip_tensor_to_spec_shape(images, spec)
    assert out.shape == (1, 3, 2, 2, 1)
    assert out.dtype == torch.uint8
    assert [int(out[0, i].unique()) for i in range(3)] == [1, 2, 3]


def test_pad_or_clip_needs_a_varlen_spec():
    with pytest.raises(SpecError, match="variable-length"):
        pad_or_clip_tensor_to_spec_shape(
            np.zeros((1, 2)), ExtendedTensorSpec((3,), torch.int64, name="v")
        )


def test_replace_dtype_in_place():
    struct = TensorSpecStruct(a=ExtendedTensorSpec((2,), torch.float32, name="a"), b=SPEC.image)
    out = replace_dtype(struct, torch.float32, "bfloat16")
    assert out is struct
    assert struct.a.dtype == torch.bfloat16 and struct.a.name == "a"
    assert struct.b.dtype == torch.uint8


def test_bfloat16_casts():
    out_spec = TensorSpecStruct(half=SPEC.half, pose=SPEC.pose)
    struct = TensorSpecStruct(half=torch.zeros(2, 3), pose=torch.zeros(2, 2))
    cast_float32_to_bfloat16(struct, out_spec)
    assert struct.half.dtype == torch.bfloat16 and struct.pose.dtype == torch.float32
    cast_bfloat16_to_float32(struct)
    assert struct.half.dtype == torch.float32
    with pytest.raises(SpecError, match="'half'"):
        cast_float32_to_bfloat16(TensorSpecStruct(half=torch.zeros(2, dtype=torch.int32)), out_spec)
