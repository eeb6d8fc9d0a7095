"""Property tests: flatten/pack and JSON round trips over random structures."""

from __future__ import annotations

import collections

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from t2r.specs import (
    ExtendedTensorSpec,
    TensorSpecStruct,
    flatten_spec_structure,
    pack_flat_sequence_to_spec_structure,
)

DTYPES = [
    torch.float32,
    torch.float16,
    torch.bfloat16,
    torch.uint8,
    torch.int32,
    torch.int64,
    torch.bool,
]
keys = st.text(alphabet="abcdefgh_", min_size=1, max_size=6)
dims = st.one_of(st.none(), st.integers(min_value=0, max_value=64))
shapes = st.one_of(st.none(), st.lists(dims, max_size=4).map(tuple))


@st.composite
def specs(draw: st.DrawFn) -> ExtendedTensorSpec:
    shape = draw(shapes)
    rank = None if shape is None else len(shape)
    varlen = None
    data_format = draw(st.sampled_from([None, "jpeg", "png"]))
    if (data_format is None and rank == 1) or (data_format is not None and rank == 4):
        varlen = draw(st.one_of(st.none(), st.integers(-3, 3), st.floats(-1, 1, width=32)))
    return ExtendedTensorSpec(
        shape,
        draw(st.sampled_from(DTYPES)),
        name=draw(st.one_of(st.none(), keys.map(lambda s: s + "/" + str(id(s) % 7)))),
        is_optional=draw(st.booleans()),
        is_sequence=draw(st.booleans()),
        is_extracted=draw(st.booleans()),
        data_format=data_format,
        dataset_key=draw(st.sampled_from(["", "d1", "d2"])),
        varlen_default_value=varlen,
    )


Pair = collections.namedtuple("Pair", ["left", "right"])


def structures(leaves: st.SearchStrategy) -> st.SearchStrategy:
    return st.recursive(
        st.dictionaries(keys, leaves, min_size=1, max_size=3),
        lambda children: st.one_of(
            st.dictionaries(keys, children, min_size=1, max_size=3),
            st.lists(children, min_size=1, max_size=3),
            st.tuples(children, children).map(lambda t: Pair(*t)),
        ),
        max_leaves=8,
    )


def _same(a, b) -> bool:
    if isinstance(a, ExtendedTensorSpec):
        return a is b
    if isinstance(a, dict):
        return type(a) is type(b) and list(a) == list(b) and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a is b


nameless_specs = specs().map(lambda s: ExtendedTensorSpec(**{**s.to_dict(), "name": None}))


@settings(max_examples=150, deadline=None)
@given(structures(nameless_specs))
def test_flatten_then_pack_returns_the_original(structure):
    flat = flatten_spec_structure(structure)
    packed = pack_flat_sequence_to_spec_structure(structure, flat)
    assert _same(structure, packed)


@settings(max_examples=150, deadline=None)
@given(st.lists(specs(), min_size=1, max_size=6))
def test_spec_json_round_trip_is_lossless(spec_list):
    struct = TensorSpecStruct((f"k{i}/v", s) for i, s in enumerate(spec_list))
    loaded = TensorSpecStruct.from_json(struct.to_json())
    assert loaded.keys() == struct.keys()
    assert [v.to_dict() for v in loaded.values()] == [v.to_dict() for v in struct.values()]
