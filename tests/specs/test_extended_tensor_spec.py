from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from t2r.specs import ExtendedTensorSpec, SpecError, is_encoded_image_spec

from .mocks import T1


def test_accepts_numpy_dtype_and_type():
    assert ExtendedTensorSpec([1], np.float32).dtype == torch.float32
    assert ExtendedTensorSpec([1], np.dtype("int64")).dtype == torch.int64


@pytest.mark.parametrize(
    "name, dtype",
    [
        ("float32", torch.float32),
        ("torch.uint8", torch.uint8),
        ("tf.int64", torch.int64),
        ("bfloat16", torch.bfloat16),
        ("uint16", torch.uint16),
        ("bool", torch.bool),
    ],
)
def test_accepts_dtype_names(name, dtype):
    assert ExtendedTensorSpec([1], name).dtype == dtype


def test_rejects_unknown_dtype():
    with pytest.raises(TypeError, match="floaty"):
        ExtendedTensorSpec([1], "floaty")


@pytest.mark.parametrize("shape", [[1, 2], (1, 2), torch.Size([1, 2])])
def test_accepts_list_tuple_and_torch_size(shape):
    assert ExtendedTensorSpec(shape, torch.float32).shape == (1, 2)


def test_int_shape_is_rank_one_and_unknown_dims():
    assert ExtendedTensorSpec(8, torch.float32).shape == (8,)
    assert ExtendedTensorSpec([2, None], torch.float32).shape == (2, None)
    assert ExtendedTensorSpec([2, -1], torch.float32).shape == (2, None)


def test_unknown_shape():
    spec = ExtendedTensorSpec(shape=None, dtype=torch.float32)
    assert spec.shape is None
    assert spec.rank is None


def test_sequence_shape_excludes_time():
    assert ExtendedTensorSpec((3, 2), torch.float32, is_sequence=True).shape == (3, 2)


def test_shape_compatibility():
    unknown = ExtendedTensorSpec(None, torch.int64)
    partial = ExtendedTensorSpec([None, 1], torch.int64)
    full = ExtendedTensorSpec([2, 3], torch.int64)
    rank3 = ExtendedTensorSpec([4, 5, 6], torch.int64)

    assert all(unknown.is_compatible_with(x) for x in (unknown, partial, full, rank3))

    desc_partial = ExtendedTensorSpec([2, None], torch.int64)
    assert desc_partial.is_compatible_with(unknown)
    assert desc_partial.is_compatible_with(partial)
    assert desc_partial.is_compatible_with(full)
    assert not desc_partial.is_compatible_with(rank3)

    assert full.is_compatible_with(unknown)
    assert not full.is_compatible_with(ExtendedTensorSpec([None, 1], torch.int64))
    assert full.is_compatible_with(full)
    assert not full.is_compatible_with(rank3)

    assert rank3.is_compatible_with(unknown)
    assert not rank3.is_compatible_with(partial)
    assert not rank3.is_compatible_with(full)
    assert rank3.is_compatible_with(rank3)


def test_compatibility_with_tensors_and_arrays():
    desc = ExtendedTensorSpec((10, 10), torch.float32)
    assert desc.is_compatible_with(torch.zeros(10, 10))
    assert not desc.is_compatible_with(torch.zeros(10, 10, dtype=torch.int32))
    assert desc.is_compatible_with(np.zeros((10, 10), np.float32))
    assert not desc.is_compatible_with(np.zeros((10, 11), np.float32))


def test_equality_is_shape_and_dtype_only():
    a = ExtendedTensorSpec((1, 2), torch.int32, name="a", is_optional=True)
    b = ExtendedTensorSpec((1, 2), torch.int32, name="b", data_format="png")
    assert a == b
    assert hash(a) == hash(b)
    assert a != ExtendedTensorSpec((1, 2), torch.int64)
    assert a != ExtendedTensorSpec((1, 3), torch.int32)
    assert a != "not a spec"


def test_name():
    assert ExtendedTensorSpec([1], torch.float32, name="beep").name == "beep"


def test_repr():
    spec = ExtendedTensorSpec(
        [1, 512, 640, 3],
        torch.float32,
        name="beep",
        is_optional=True,
        data_format="jpeg",
        varlen_default_value=1,
    )
    assert repr(spec) == (
        "ExtendedTensorSpec(shape=(1, 512, 640, 3), dtype=torch.float32, name='beep', "
        "is_optional=True, is_sequence=False, is_extracted=False, data_format='jpeg', "
        "dataset_key='', varlen_default_value=1)"
    )
    spec = ExtendedTensorSpec([1, None], torch.int32, is_sequence=True)
    assert repr(spec) == (
        "ExtendedTensorSpec(shape=(1, None), dtype=torch.int32, name=None, is_optional=False, "
        "is_sequence=True, is_extracted=False, data_format=None, dataset_key='', "
        "varlen_default_value=None)"
    )


def test_from_spec():
    spec_1 = ExtendedTensorSpec((1, 2), torch.int32)
    assert ExtendedTensorSpec.from_spec(spec_1) == spec_1

    spec_1 = ExtendedTensorSpec((1, 2), torch.int32, name="spec_1")
    spec_2 = ExtendedTensorSpec.from_spec(spec_1, name="spec_2")
    assert spec_1 == spec_2
    assert (spec_1.name, spec_2.name) == ("spec_1", "spec_2")

    batched = ExtendedTensorSpec.from_spec(spec_1, batch_size=16)
    assert batched != spec_1
    assert batched.shape == (16, 1, 2)

    unknown_batch = ExtendedTensorSpec.from_spec(spec_1, batch_size=-1)
    assert unknown_batch.shape == (None, 1, 2)

    seq = ExtendedTensorSpec((1, 2), torch.int32, is_sequence=True)
    seq_batched = ExtendedTensorSpec.from_spec(seq, batch_size=-1)
    assert seq_batched.shape[1:] == seq.shape
    assert seq_batched.is_sequence


def test_from_spec_rejects_non_spec_and_unknown_rank_batch():
    with pytest.raises(TypeError):
        ExtendedTensorSpec.from_spec("nope")  # type: ignore[arg-type]
    with pytest.raises(SpecError, match="unknown rank"):
        ExtendedTensorSpec.from_spec(
            ExtendedTensorSpec(None, torch.float32, name="x"), batch_size=2
        )


@pytest.mark.parametrize("is_optional", [True, False])
def test_is_optional_survives_from_spec(is_optional):
    spec = ExtendedTensorSpec([1], np.float32, is_optional=is_optional)
    assert spec.is_optional is is_optional
    assert ExtendedTensorSpec.from_spec(spec).is_optional is is_optional
    assert (
        ExtendedTensorSpec.from_spec(spec, is_optional=not is_optional).is_optional
        is not is_optional
    )


@pytest.mark.parametrize("data_format", ["jpeg", "png"])
def test_data_format(data_format):
    spec = ExtendedTensorSpec([1], np.float32, data_format=data_format)
    assert spec.data_format == data_format
    assert ExtendedTensorSpec.from_spec(spec).data_format == data_format
    assert ExtendedTensorSpec.from_spec(spec, data_format="NO_FORMAT").data_format == "NO_FORMAT"
    assert is_encoded_image_spec(spec)
    assert not is_encoded_image_spec(ExtendedTensorSpec.from_spec(spec, data_format="NO_FORMAT"))


def test_from_tensor_and_array():
    spec = ExtendedTensorSpec.from_tensor(torch.tensor(0, dtype=torch.int32))
    assert (spec.dtype, spec.shape, spec.is_extracted) == (torch.int32, (), True)
    spec = ExtendedTensorSpec.from_tensor(np.zeros((3, 1), np.float64), name="arr")
    assert (spec.dtype, spec.shape, spec.name) == (torch.float64, (3, 1), "arr")
    with pytest.raises(TypeError):
        ExtendedTensorSpec.from_tensor([1, 2])  # type: ignore[arg-type]


def test_to_spec():
    assert ExtendedTensorSpec.to_spec(T1) == T1
    assert ExtendedTensorSpec.to_spec(torch.zeros(2, 3)).shape == (2, 3)
    assert ExtendedTensorSpec.to_spec(np.zeros((2,), np.uint8)).dtype == torch.uint8
    with pytest.raises(TypeError, match="int"):
        ExtendedTensorSpec.to_spec(3)  # type: ignore[arg-type]


def test_pickle_round_trip_keeps_every_field():
    spec = ExtendedTensorSpec(
        [3, None],
        torch.bfloat16,
        "test",
        is_optional=True,
        is_sequence=True,
        dataset_key="d1",
    )
    copy = pickle.loads(pickle.dumps(spec))
    assert copy == spec
    assert copy.to_dict() == spec.to_dict()


def test_dict_round_trip_keeps_every_field():
    spec = ExtendedTensorSpec(
        (4, 8, 8, 3),
        "uint8",
        "imgs",
        is_optional=True,
        is_sequence=True,
        is_extracted=True,
        data_format="png",
        dataset_key="d2",
        varlen_default_value=0,
    )
    assert ExtendedTensorSpec.from_dict(spec.to_dict()).to_dict() == spec.to_dict()


def test_from_dict_rejects_unknown_fields():
    with pytest.raises(SpecError, match="colour"):
        ExtendedTensorSpec.from_dict({"shape": [1], "dtype": "float32", "colour": "red"})


def test_varlen_rank_rule():
    with pytest.raises(ValueError, match="rank-1"):
        ExtendedTensorSpec((3, 2, 4, 1), torch.int64, name="varlen", varlen_default_value=3.0)
    with pytest.raises(ValueError, match="rank-4"):
        ExtendedTensorSpec(
            3, torch.int64, name="varlen", varlen_default_value=3.0, data_format="png"
        )
    ExtendedTensorSpec(3, torch.int64, varlen_default_value=0)
    ExtendedTensorSpec((3, 8, 8, 1), torch.uint8, varlen_default_value=0, data_format="png")


def test_specs_are_immutable():
    with pytest.raises(AttributeError):
        T1.shape = (1,)  # type: ignore[misc]
