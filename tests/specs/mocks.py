"""Specs shared by the spec tests, after Tensor2Robot's tensorspec_utils tests."""

from __future__ import annotations

import collections

import torch

from t2r.specs import ExtendedTensorSpec as TSPEC

MockFoo = collections.namedtuple("MockFoo", ["sim", "real"])
MockBar = collections.namedtuple("MockBar", ["images", "actions"])
MockNested = collections.namedtuple("MockNested", ["train", "test"])
MockNestedOptional = collections.namedtuple("MockNestedOptional", ["train", "test", "optional"])
MockNestedSubset = collections.namedtuple("MockNestedSubset", ["train"])

T1 = TSPEC((224, 224, 3), torch.float32, "images", data_format="jpeg")
T2 = TSPEC(6, torch.float32, "actions")
T3 = TSPEC((), torch.float32, "reward")
O4 = TSPEC((224, 224, 3), torch.float32, "debug_images", is_optional=True)
T5 = TSPEC((224, 224, 3), torch.float32, "jpeg_images", data_format="jpeg")
O6 = TSPEC(6, torch.float32, "debug_actions", is_optional=True)
S7 = TSPEC(6, torch.float32, "sequence_actions", is_sequence=True)
D1 = TSPEC((224, 224, 3), torch.float32, "debug_images", dataset_key="d1")
D2 = TSPEC((224, 224, 3), torch.float32, "debug_images", dataset_key="d2")

nested_spec = MockNested(train=MockBar(images=T1, actions=T2), test=MockBar(images=T1, actions=T2))
nested_optional_spec = MockNestedOptional(
    train=MockBar(images=T1, actions=T2),
    test=MockBar(images=T1, actions=T2),
    optional=MockBar(images=O4, actions=O6),
)
nested_subset_spec = MockNestedSubset(train=MockBar(images=T1, actions=T2))

REFERENCE_FLAT = collections.OrderedDict(
    [
        ("train/images", T1),
        ("train/actions", T2),
        ("test/images", T1),
        ("test/actions", T2),
        ("optional/images", O4),
        ("optional/actions", O6),
    ]
)


def make_collection(kind: str):
    if kind == "list":
        return [T1, T2, T3, O4, T5, S7]
    if kind == "tuple":
        return (T1, T2, T3, O4, T5, S7)
    if kind == "dict":
        return {"t1": T1, "t2": T2, "t3": T3, "t4": O4, "t5": T5, "s7": S7}
    if kind == "namedtuple":
        return MockFoo(MockBar(T1, T2), MockBar(T1, T2))
    raise ValueError(kind)


COLLECTION_KINDS = ["dict", "namedtuple", "list", "tuple"]
