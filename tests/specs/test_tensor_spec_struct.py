from __future__ import annotations

import collections
import copy
import json
import pickle

import numpy as np
import pytest
import torch

from t2r.specs import (
    ExtendedTensorSpec,
    MissingKeyError,
    SpecError,
    TensorSpecStruct,
    assert_equal,
    flatten_spec_structure,
)

from .mocks import O4, O6, REFERENCE_FLAT, T1, T2, MockBar, MockNested, nested_optional_spec


@pytest.fixture
def struct() -> TensorSpecStruct:
    return TensorSpecStruct(REFERENCE_FLAT)


def test_init_keeps_flat_order(struct):
    assert struct == REFERENCE_FLAT
    assert struct.keys() == list(REFERENCE_FLAT)
    assert struct.train.keys() == ["images", "actions"]


def test_keys_values_items_are_lists(struct):
    assert isinstance(struct.keys(), list)
    assert isinstance(struct.values(), list)
    assert isinstance(struct.items(), list)
    assert struct.train.items() == [("images", T1), ("actions", T2)]


def test_init_with_keyword_structures():
    train = TensorSpecStruct(images=T1, actions=T2)
    flat_optional = flatten_spec_structure(nested_optional_spec)
    assert_equal(train, flat_optional.train)
    alternative = {"o6": O6, "o4": O4}
    hierarchy = TensorSpecStruct(nested_optional_spec=nested_optional_spec, alternative=alternative)
    assert_equal(hierarchy.nested_optional_spec, flat_optional)
    assert hierarchy.alternative.to_dict() == alternative
    assert sorted(hierarchy.keys()) == sorted(
        [
            "nested_optional_spec/train/images",
            "nested_optional_spec/train/actions",
            "nested_optional_spec/test/images",
            "nested_optional_spec/test/actions",
            "nested_optional_spec/optional/images",
            "nested_optional_spec/optional/actions",
            "alternative/o6",
            "alternative/o4",
        ]
    )


def test_to_dict_round_trip(struct):
    as_dict = struct.to_dict()
    assert type(as_dict) is dict
    assert TensorSpecStruct(as_dict).to_dict() == as_dict


def test_cannot_assign_empty_struct_or_dict():
    struct = TensorSpecStruct()
    with pytest.raises(ValueError, match="empty"):
        struct.should_raise = TensorSpecStruct()
    with pytest.raises(SpecError, match="empty"):
        struct["also"] = {}


def test_assign_sub_struct_then_extend():
    struct = TensorSpecStruct()
    sub = TensorSpecStruct()
    sub.data = np.ones(1)
    struct.sub_data = sub
    struct.sub_data.additional = np.zeros(1)
    assert struct.keys() == ["sub_data/data", "sub_data/additional"]


def test_adding_through_a_view_changes_the_root(struct):
    struct.train.addition = O6
    assert struct.train.keys() == ["images", "actions", "addition"]
    assert struct.train.addition == struct["train/addition"]
    assert struct.keys() == [*REFERENCE_FLAT, "train/addition"]


def test_missing_key_raises_attribute_error_naming_it(struct):
    with pytest.raises(AttributeError, match="optional_typo"):
        _ = struct["optional_typo"]
    with pytest.raises(AttributeError, match="optional_typo"):
        _ = struct.optional_typo
    with pytest.raises(KeyError):
        _ = struct.train["nope"]
    assert not hasattr(struct, "nope")
    assert struct.get("nope", 3) == 3
    assert struct["optional"].to_dict() == struct.optional.to_dict()


def test_missing_key_error_is_both_kinds():
    assert issubclass(MissingKeyError, KeyError)
    assert issubclass(MissingKeyError, AttributeError)


def test_deleting_propagates_both_ways(struct):
    assert struct.optional.images == O4
    del struct["optional/images"]
    with pytest.raises(AttributeError):
        _ = struct.optional.images
    test = struct.test
    assert "test/actions" in struct
    del test["actions"]
    assert "test/actions" not in struct
    assert test.keys() == ["images"]


def test_deleting_a_prefix_removes_its_subtree(struct):
    del struct.train
    assert [k for k in struct if k.startswith("train/")] == []


def test_composing_with_a_struct(struct):
    new_field = TensorSpecStruct(REFERENCE_FLAT)
    struct.new_field = new_field
    assert struct.new_field.keys() == new_field.keys()
    assert struct.keys() == [*REFERENCE_FLAT, *("new_field/" + k for k in new_field)]


def test_composing_with_namedtuples():
    spec = MockNested(
        train={"a": np.ones(1), "b": 2 * np.ones(1)}, test=MockBar(images=T1, actions=T2)
    )
    reference = flatten_spec_structure(spec)
    rebuilt = flatten_spec_structure(MockNested(train=reference.train, test=MockBar(T1, T2)))
    assert rebuilt.keys() == reference.keys()
    for key in reference:
        assert rebuilt[key] is reference[key]


def test_prefix_is_a_path_component_not_a_string_prefix():
    struct = TensorSpecStruct()
    struct.val_mode = np.ones(1)
    val = TensorSpecStruct()
    val.mode = np.zeros(1)
    val.data = np.ones(1)
    struct.val = val
    assert struct.val.keys() == ["mode", "data"]
    assert struct["val"].keys() == ["mode", "data"]


def test_hierarchical_doc_example():
    simple = TensorSpecStruct()
    simple["state"] = ExtendedTensorSpec((8, 128), torch.float32, name="s")
    simple["action"] = ExtendedTensorSpec(8, torch.float32, name="a")
    from t2r.specs import copy_tensorspec

    hierarchical = TensorSpecStruct()
    hierarchical.train = copy_tensorspec(simple, prefix="train")
    hierarchical.val = copy_tensorspec(simple, prefix="val")
    assert hierarchical.train.state == simple.state
    assert hierarchical.keys() == ["train/state", "train/action", "val/state", "val/action"]
    assert hierarchical.train.state.name == "train/s"
    assert hierarchical.val.state.name == "val/s"
    for key, value in simple.items():
        hierarchical["test/" + key] = ExtendedTensorSpec.from_spec(
            value, name="something_random/" + value.name
        )
    assert hierarchical.test.keys() == ["state", "action"]
    assert hierarchical.test.state.name == "something_random/s"


def test_leaf_and_subtree_cannot_share_a_path(struct):
    with pytest.raises(SpecError, match="entries below"):
        struct["train"] = T1
    with pytest.raises(SpecError, match="already a leaf"):
        struct["train/images/extra"] = T1


def test_overwriting_a_leaf_keeps_its_position(struct):
    struct["train/images"] = O4
    assert struct.keys() == list(REFERENCE_FLAT)
    assert struct.train.images is O4


def test_views_serve_c_level_readers(struct):
    # json.dumps and dict() read the dict's own storage; views keep a snapshot.
    assert json.loads(json.dumps({k: str(v.shape) for k, v in struct.train.items()})) == {
        "images": "(224, 224, 3)",
        "actions": "(6,)",
    }
    assert dict(struct.train) == {"images": T1, "actions": T2}


def test_pickle_copy_and_deepcopy(struct):
    for clone in (pickle.loads(pickle.dumps(struct)), copy.copy(struct), copy.deepcopy(struct)):
        assert clone == struct
        assert clone.keys() == struct.keys()
    view_copy = pickle.loads(pickle.dumps(struct.train))
    assert view_copy.keys() == ["images", "actions"]


def test_mapping_methods(struct):
    assert len(struct) == 6 and len(struct.train) == 2
    assert list(reversed(struct.train)) == ["actions", "images"]
    popped = struct.pop("optional")
    assert popped.keys() == ["images", "actions"]
    assert "optional/images" not in struct
    assert struct.setdefault("extra", T2) is T2
    struct.update({"more": {"x": T1}})
    assert struct.more.x is T1
    struct.train.clear()
    assert "train/images" not in struct
    assert isinstance(struct, collections.OrderedDict)


def test_equality_ignores_order_and_compares_values():
    a = TensorSpecStruct([("x", T1), ("y", T2)])
    b = TensorSpecStruct([("y", T2), ("x", T1)])
    assert a == b
    assert a != TensorSpecStruct([("x", T1)])


def test_json_round_trip(struct):
    loaded = TensorSpecStruct.from_json(struct.to_json())
    assert loaded.keys() == struct.keys()
    assert [v.to_dict() for v in loaded.values()] == [v.to_dict() for v in struct.values()]


def test_json_rejects_non_spec_leaves():
    with pytest.raises(SpecError, match="'a'"):
        TensorSpecStruct(a=np.ones(1)).to_json()
