"""``tf.train.Example`` and ``tf.train.SequenceExample`` without TensorFlow.

The message classes are built at import time from a ``FileDescriptorProto``
written out below (no protoc, no generated code) and live in a private descriptor
pool, so they never collide with a real TensorFlow in the same process. Full names
match TensorFlow's (``tensorflow.Example``, ...), and so does the wire format:
bytes written here parse with ``tf.train.Example.FromString`` and vice versa.

Schema (TensorFlow's ``example.proto`` / ``feature.proto``, proto3)::

    BytesList       { repeated bytes value = 1; }
    FloatList       { repeated float value = 1 [packed]; }
    Int64List       { repeated int64 value = 1 [packed]; }
    Feature         { oneof kind { BytesList bytes_list = 1; FloatList float_list = 2;
                                   Int64List int64_list = 3; } }
    Features        { map<string, Feature> feature = 1; }
    FeatureList     { repeated Feature feature = 1; }
    FeatureLists    { map<string, FeatureList> feature_list = 1; }
    Example         { Features features = 1; }
    SequenceExample { Features context = 1; FeatureLists feature_lists = 2; }
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

__all__ = [
    "BytesList",
    "Example",
    "Feature",
    "FeatureList",
    "FeatureLists",
    "Features",
    "FloatList",
    "Int64List",
    "SequenceExample",
]

_FILE_NAME = "t2r/data/example.proto"
_PACKAGE = "tensorflow"

_F = descriptor_pb2.FieldDescriptorProto


def _field(
    message: descriptor_pb2.DescriptorProto,
    name: str,
    number: int,
    field_type: int,
    label: int = _F.LABEL_OPTIONAL,
    type_name: str | None = None,
    oneof_index: int | None = None,
) -> None:
    field = message.field.add(name=name, number=number, type=field_type, label=label)
    if type_name is not None:
        field.type_name = f".{_PACKAGE}.{type_name}"
    if oneof_index is not None:
        field.oneof_index = oneof_index


def _map_field(
    message: descriptor_pb2.DescriptorProto, name: str, entry: str, value_type: str
) -> None:
    """``map<string, value_type> name = 1``: a repeated nested ``entry`` message."""
    nested = message.nested_type.add(name=entry)
    nested.options.map_entry = True
    _field(nested, "key", 1, _F.TYPE_STRING)
    _field(nested, "value", 2, _F.TYPE_MESSAGE, type_name=value_type)
    _field(message, name, 1, _F.TYPE_MESSAGE, _F.LABEL_REPEATED, f"{message.name}.{entry}")


def _file_descriptor() -> descriptor_pb2.FileDescriptorProto:
    proto = descriptor_pb2.FileDescriptorProto(name=_FILE_NAME, package=_PACKAGE, syntax="proto3")

    def message(name: str) -> descriptor_pb2.DescriptorProto:
        return proto.message_type.add(name=name)

    # proto3 packs repeated scalars by default, as TensorFlow's file declares.
    _field(message("BytesList"), "value", 1, _F.TYPE_BYTES, _F.LABEL_REPEATED)
    _field(message("FloatList"), "value", 1, _F.TYPE_FLOAT, _F.LABEL_REPEATED)
    _field(message("Int64List"), "value", 1, _F.TYPE_INT64, _F.LABEL_REPEATED)

    feature = message("Feature")
    feature.oneof_decl.add(name="kind")
    kinds = (("bytes_list", "BytesList"), ("float_list", "FloatList"), ("int64_list", "Int64List"))
    for number, (name, kind) in enumerate(kinds, start=1):
        _field(feature, name, number, _F.TYPE_MESSAGE, type_name=kind, oneof_index=0)

    _map_field(message("Features"), "feature", "FeatureEntry", "Feature")
    _field(message("FeatureList"), "feature", 1, _F.TYPE_MESSAGE, _F.LABEL_REPEATED, "Feature")
    _map_field(message("FeatureLists"), "feature_list", "FeatureListEntry", "FeatureList")

    _field(message("Example"), "features", 1, _F.TYPE_MESSAGE, type_name="Features")
    sequence_example = message("SequenceExample")
    _field(sequence_example, "context", 1, _F.TYPE_MESSAGE, type_name="Features")
    _field(sequence_example, "feature_lists", 2, _F.TYPE_MESSAGE, type_name="FeatureLists")
    return proto


_POOL = descriptor_pool.DescriptorPool()
_POOL.Add(_file_descriptor())


def _message_class(name: str) -> type:
    return message_factory.GetMessageClass(_POOL.FindMessageTypeByName(f"{_PACKAGE}.{name}"))


if TYPE_CHECKING:
    # What the runtime classes look like, for type checkers (protobuf ships no stubs).
    from collections.abc import MutableMapping, MutableSequence

    from google.protobuf.message import Message

    class BytesList(Message):
        value: MutableSequence[bytes]

    class FloatList(Message):
        value: MutableSequence[float]

    class Int64List(Message):
        value: MutableSequence[int]

    class Feature(Message):
        bytes_list: BytesList
        float_list: FloatList
        int64_list: Int64List

    class Features(Message):
        feature: MutableMapping[str, Feature]

    class FeatureList(Message):
        feature: MutableSequence[Feature]

    class FeatureLists(Message):
        feature_list: MutableMapping[str, FeatureList]

    class Example(Message):
        features: Features

    class SequenceExample(Message):
        context: Features
        feature_lists: FeatureLists

else:
    BytesList = _message_class("BytesList")
    FloatList = _message_class("FloatList")
    Int64List = _message_class("Int64List")
    Feature = _message_class("Feature")
    Features = _message_class("Features")
    FeatureList = _message_class("FeatureList")
    FeatureLists = _message_class("FeatureLists")
    Example = _message_class("Example")
    SequenceExample = _message_class("SequenceExample")
