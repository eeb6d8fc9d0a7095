from __future__ import annotations

import struct
import sys

import pytest
from google.protobuf import descriptor_pool

from t2r.data import (
    BytesList,
    Example,
    Feature,
    FeatureList,
    FeatureLists,
    Features,
    FloatList,
    Int64List,
    SequenceExample,
)


def test_names_match_tensorflow_but_stay_out_of_the_default_pool() -> None:
    assert Example.DESCRIPTOR.full_name == "tensorflow.Example"
    assert SequenceExample.DESCRIPTOR.full_name == "tensorflow.SequenceExample"
    if "tensorflow" not in sys.modules:
        with pytest.raises(KeyError):
            descriptor_pool.Default().FindMessageTypeByName("tensorflow.Example")


def test_wire_format_of_a_tiny_example() -> None:
    example = Example()
    example.features.feature["r"].float_list.value.append(-1.5)
    expected = bytes.fromhex("0a0f0a0d0a0172120812060a04") + struct.pack("<f", -1.5)
    assert example.SerializeToString() == expected
    assert Example.FromString(expected) == example


def test_repeated_scalars_are_packed_and_unpacked_input_parses() -> None:
    assert FloatList(value=[1.0, 2.0]).SerializeToString() == bytes.fromhex("0a080000803f00000040")
    assert Int64List(value=[1, 300]).SerializeToString() == bytes.fromhex("0a0301ac02")
    unpacked = b"\x0d" + struct.pack("<f", 1.0) + b"\x0d" + struct.pack("<f", 2.0)
    assert list(FloatList.FromString(unpacked).value) == [1.0, 2.0]
    assert list(Int64List.FromString(b"\x08\x01\x08\xac\x02").value) == [1, 300]
    assert BytesList(value=[b"a", b""]).SerializeToString() == b"\x0a\x01a\x0a\x00"


def test_feature_kind_is_a_oneof() -> None:
    feature = Feature(float_list=FloatList(value=[1.0]))
    assert feature.WhichOneof("kind") == "float_list"
    feature.bytes_list.value.append(b"x")
    assert feature.WhichOneof("kind") == "bytes_list"
    assert not feature.HasField("float_list")


def test_example_round_trip() -> None:
    features = Features()
    features.feature["image"].bytes_list.value.append(b"\xff\xd8\xff")
    features.feature["pose"].float_list.value.extend([0.25, -1.0])
    features.feature["step"].int64_list.value.extend([-(2**63), 2**63 - 1])
    example = Example(features=features)
    parsed = Example.FromString(example.SerializeToString())
    assert parsed == example
    assert list(parsed.features.feature["step"].int64_list.value) == [-(2**63), 2**63 - 1]
    assert sorted(parsed.features.feature) == ["image", "pose", "step"]


def test_sequence_example_round_trip() -> None:
    steps = FeatureList(feature=[Feature(float_list=FloatList(value=[float(t)])) for t in range(3)])
    sequence = SequenceExample(
        context=Features(feature={"id": Feature(int64_list=Int64List(value=[7]))}),
        feature_lists=FeatureLists(feature_list={"action": steps}),
    )
    parsed = SequenceExample.FromString(sequence.SerializeToString())
    assert parsed == sequence
    action = parsed.feature_lists.feature_list["action"].feature
    assert [f.float_list.value[0] for f in action] == [0.0, 1.0, 2.0]
    assert parsed.context.feature["id"].int64_list.value[0] == 7
