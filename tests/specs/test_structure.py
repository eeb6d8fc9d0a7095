from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from t2r.specs import (
    ExtendedTensorSpec,
    SpecError,
    TensorSpecStruct,
    add_sequence_length_specs,
    assert_equal,
    assert_equal_spec_or_tensor,
    assert_required,
    assert_valid_spec_structure,
    copy_tensorspec,
    filter_required_flat_tensor_spec,
    filter_spec_structure_by_dataset,
    flatten_spec_structure,
    is_flat_spec_or_tensors_structure,
    make_random_numpy,
    make_random_tensors,
    maybe_ignore_batch,
    pack_flat_sequence_to_spec_structure,
    tensorspec_from_tensors,
    validate_and_flatten,
    validate_and_pack,
)

from .mocks import (
    COLLECTION_KINDS,
    D1,
    D2,
    O4,
    O6,
    S7,
    T1,
    T2,
    MockBar,
    make_collection,
    nested_optional_spec,
    nested_spec,
    nested_subset_spec,
)


def test_assert_equal():
    assert_equal(nested_spec, copy.deepcopy(nested_spec))


def test_assert_not_equal_names_missing_keys():
    with pytest.raises(SpecError, match="test/images"):
        assert_equal(nested_spec, nested_subset_spec)


def test_assert_required():
    assert_required(nested_subset_spec, nested_spec)
    assert_required(nested_optional_spec, nested_spec)
    with pytest.raises(SpecError, match="Required entry 'test/images'"):
        assert_required(nested_spec, nested_subset_spec)


def test_flatten_spec_structure():
    assert flatten_spec_structure(nested_subset_spec) == {"train/images": T1, "train/actions": T2}


def test_flatten_lists_use_indices_and_filter_none():
    flat = flatten_spec_structure({"a": [T1, None, T2]})
    assert flat.keys() == ["a/0", "a/2"]
    assert flatten_spec_structure({"a": [T1, None]}, filter_none=False).keys() == ["a/0", "a/1"]


def test_filter_required_flat_tensor_spec():
    flat = flatten_spec_structure(nested_optional_spec)
    assert flat == {
        "train/images": T1,
        "train/actions": T2,
        "test/images": T1,
        "test/actions": T2,
        "optional/images": O4,
        "optional/actions": O6,
    }
    assert filter_required_flat_tensor_spec(flat) == {
        "train/images": T1,
        "train/actions": T2,
        "test/images": T1,
        "test/actions": T2,
    }
    with pytest.raises(ValueError):
        filter_required_flat_tensor_spec(nested_optional_spec)


def test_assert_equal_spec_or_tensor():
    assert_equal_spec_or_tensor(T1, T1)
    assert_equal_spec_or_tensor(T1, ExtendedTensorSpec((224, 224, 3), torch.float32))
    assert_equal_spec_or_tensor(T1, ExtendedTensorSpec((224, 224, 3), torch.float32, name="random"))
    assert_equal_spec_or_tensor(T1, torch.zeros(224, 224, 3))
    assert_equal_spec_or_tensor(T1, np.zeros((224, 224, 3), np.float32))
    with pytest.raises(ValueError):
        assert_equal_spec_or_tensor(T1, T2)
    with pytest.raises(ValueError):
        assert_equal_spec_or_tensor(T1, ExtendedTensorSpec((224, 223, 3), torch.float32))
    with pytest.raises(ValueError):
        assert_equal_spec_or_tensor(T1, ExtendedTensorSpec((224, 224, 3), torch.uint8))
    with pytest.raises(ValueError):
        assert_equal_spec_or_tensor(T1, np.zeros((224, 224, 3), np.uint8))


def test_mismatch_message_names_key_name_shapes_and_dtypes():
    with pytest.raises(SpecError) as info:
        assert_equal_spec_or_tensor(
            T1, torch.zeros(224, 223, 3, dtype=torch.uint8), key="train/images"
        )
    message = str(info.value)
    assert message == (
        "Shape and dtype mismatch at 'train/images' (spec name 'images'): expected shape "
        "(224, 224, 3) dtype torch.float32, got shape (224, 223, 3) dtype torch.uint8."
    )
    assert info.value.key == "train/images"
    assert info.value.name == "images"


def test_validate_and_pack_error_names_the_path():
    features = {
        "train/images": np.zeros((2, 224, 224, 3), np.float32),
        "train/actions": np.zeros((2, 5), np.float32),
    }
    with pytest.raises(SpecError) as info:
        validate_and_pack(nested_subset_spec, features, ignore_batch=True)
    assert str(info.value) == (
        "Shape mismatch at 'train/actions' (spec name 'actions'): expected shape (6,) dtype "
        "torch.float32, got shape (5,) dtype torch.float32."
    )


def test_missing_required_message_names_key_and_spec_name():
    with pytest.raises(SpecError) as info:
        pack_flat_sequence_to_spec_structure(nested_subset_spec, {"train/images": T1})
    assert "Required entry 'train/actions' (spec name 'actions'" in str(info.value)
    assert info.value.key == "train/actions"


def test_sequence_specs_ignore_the_time_dim_of_tensors():
    assert_equal_spec_or_tensor(S7, np.zeros((5, 6), np.float32))
    assert_equal(TensorSpecStruct(s=S7), {"s": np.zeros((2, 5, 6), np.float32)}, ignore_batch=True)


def test_bfloat16_specs_accept_float32_numpy_but_not_float32_tensors():
    spec = ExtendedTensorSpec((2,), torch.bfloat16)
    assert_equal_spec_or_tensor(spec, np.zeros(2, np.float32))
    assert_equal_spec_or_tensor(spec, torch.zeros(2, dtype=torch.bfloat16))
    with pytest.raises(SpecError):
        assert_equal_spec_or_tensor(spec, torch.zeros(2))


def test_is_flat_spec_or_tensors_structure():
    assert not is_flat_spec_or_tensors_structure(nested_subset_spec)
    assert is_flat_spec_or_tensors_structure(flatten_spec_structure(nested_subset_spec))
    assert not is_flat_spec_or_tensors_structure([T1, T2])
    assert is_flat_spec_or_tensors_structure({"t1": T1, "t2": T2})


def test_pack_flat_sequence_to_spec_structure():
    subset = make_random_numpy(nested_subset_spec)
    flat_subset = flatten_spec_structure(subset)
    packed = pack_flat_sequence_to_spec_structure(nested_subset_spec, flat_subset)
    assert type(packed) is type(nested_subset_spec)
    assert type(packed.train) is MockBar
    assert packed.train.images is subset.train.images
    assert_equal(nested_subset_spec, packed, ignore_batch=True)

    # Packing subselects: extra entries are dropped.
    full = flatten_spec_structure(make_random_numpy(nested_spec))
    packed = pack_flat_sequence_to_spec_structure(nested_subset_spec, full)
    assert_equal(nested_subset_spec, packed, ignore_batch=True)

    # Absent optionals pack as None.
    packed_optional = pack_flat_sequence_to_spec_structure(nested_optional_spec, full)
    assert packed_optional.optional.images is None
    assert_required(packed_optional, full)
    assert_required(nested_spec, packed_optional, ignore_batch=True)


def test_pack_sorts_struct_keys():
    spec = TensorSpecStruct()
    spec.b = ExtendedTensorSpec((1,), torch.float32, name="b")
    spec.a = ExtendedTensorSpec((1,), torch.float32, name="a")
    spec.c = ExtendedTensorSpec((1,), torch.float32, name="c")
    tensors = make_random_tensors(spec)
    packed = pack_flat_sequence_to_spec_structure(spec, tensors)
    assert packed.keys() == ["a", "b", "c"]
    assert [v is tensors[k] for k, v in packed.items()] == [True, True, True]


def test_pack_rejects_nested_input():
    with pytest.raises(SpecError, match="flat"):
        pack_flat_sequence_to_spec_structure(nested_subset_spec, nested_subset_spec)


def test_validate_flatten_and_pack_pipeline():
    features = make_random_numpy(nested_spec)
    flat = validate_and_flatten(nested_optional_spec, features, ignore_batch=True)
    assert_required(nested_optional_spec, features, ignore_batch=True)
    packed = validate_and_pack(nested_subset_spec, flat, ignore_batch=True)
    assert_required(nested_subset_spec, packed, ignore_batch=True)
    assert packed.train.images is features.train.images


def test_add_sequence_length_specs():
    modified = add_sequence_length_specs(TensorSpecStruct(image1=D1, actions=S7))
    assert modified.actions_length == ExtendedTensorSpec((), torch.int64)
    assert modified.actions_length.name == "sequence_actions_length"
    assert "image1_length" not in modified


def test_filter_spec_structure_by_dataset():
    spec = TensorSpecStruct(image1=D1, image2=D2)
    assert filter_spec_structure_by_dataset(spec, "d1") == {"image1": D1}
    assert filter_spec_structure_by_dataset(spec, "d2") == {"image2": D2}
    assert filter_spec_structure_by_dataset(spec, "").keys() == ["image1", "image2"]


INVALID = {
    "non_spec_values_dict": {"test": 10},
    "non_spec_values_namedtuple": MockBar(images=np.random.random_sample(10), actions="action"),
    "duplicated_names": MockBar(
        images=ExtendedTensorSpec((3, 2, 3), torch.float32, name="images"),
        actions=ExtendedTensorSpec((3, 2), torch.float32, name="images"),
    ),
    "bare_leaf": T1,
    "non_str_key": {1: T1},
}


@pytest.mark.parametrize("kind", COLLECTION_KINDS)
def test_valid_spec_structures(kind):
    assert_valid_spec_structure(make_collection(kind))


@pytest.mark.parametrize("name", sorted(INVALID))
def test_invalid_spec_structures(name):
    with pytest.raises(ValueError):
        assert_valid_spec_structure(INVALID[name])


def test_duplicate_name_message_names_both_paths():
    with pytest.raises(SpecError, match="'images' is used by 'images'.*and 'actions'"):
        assert_valid_spec_structure(INVALID["duplicated_names"])


def test_duplicate_names_with_equal_specs_are_allowed():
    assert_valid_spec_structure({"a": T1, "b": ExtendedTensorSpec.from_spec(T1)})


def test_invalid_leaf_message_names_path():
    with pytest.raises(SpecError, match="at 'outer/test'"):
        flatten_spec_structure({"outer": {"test": 10}})


@pytest.mark.parametrize("kind", COLLECTION_KINDS)
def test_copy(kind):
    spec = make_collection(kind)
    assert_equal(spec, copy_tensorspec(spec))


def test_copy_names_and_batch():
    spec = TensorSpecStruct()
    spec.none_name = ExtendedTensorSpec((1,), torch.float32)
    spec.with_name = ExtendedTensorSpec((2,), torch.float32, name="with_name")
    copied = copy_tensorspec(spec, prefix="test")
    assert_equal(spec, copied)
    assert copied.none_name.name == "test/"
    assert copied.with_name.name == "test/with_name"
    assert copy_tensorspec(spec).none_name.name is None
    assert copy_tensorspec(spec, batch_size=4).with_name.shape == (4, 2)


@pytest.mark.parametrize("kind", COLLECTION_KINDS)
def test_random_tensors_match_spec_only_without_batch(kind):
    # The PyTorch counterpart of T2R's make_placeholders test.
    spec = make_collection(kind)
    tensors = make_random_tensors(spec, batch_size=3)
    extracted = tensorspec_from_tensors(tensors)
    assert_equal(spec, extracted, ignore_batch=True)
    with pytest.raises(ValueError):
        assert_equal(spec, extracted, ignore_batch=False)


def test_tensorspec_from_tensors_names_by_path():
    specs = tensorspec_from_tensors({"a": {"b": torch.zeros(2, 3)}})
    assert specs["a"]["b"].name == "a/b"
    assert specs["a"]["b"].is_extracted


def test_maybe_ignore_batch():
    assert maybe_ignore_batch(nested_spec) is nested_spec
    stripped = maybe_ignore_batch(
        {"x": torch.zeros(4, 2), "s": ExtendedTensorSpec((4, 3), torch.int32)}, True
    )
    assert stripped["x"].shape == (2,)
    assert stripped["s"].shape == (3,)
    with pytest.raises(SpecError, match="scalar"):
        maybe_ignore_batch({"x": torch.tensor(1.0)}, True)


def test_numpy_scalars_are_leaves():
    flat = flatten_spec_structure({"id": np.int64(3), "x": np.float32(1.5)})
    assert flat.keys() == ["id", "x"]
    spec = TensorSpecStruct(id=ExtendedTensorSpec((), torch.int64, name="id"))
    validate_and_pack(spec, {"id": np.int64(3)})
    with pytest.raises(SpecError, match="dtype"):
        validate_and_pack(spec, {"id": np.int32(3)})
