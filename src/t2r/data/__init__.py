"""Data: TFRecord io, the tf.train.Example codec, image codecs.

Low-level pieces that read records TensorFlow wrote and write records TensorFlow
reads, without TensorFlow. Spec-driven parsing and input generators build on them.
"""

from __future__ import annotations

from t2r.atomic import is_temporary_path
from t2r.data.errors import DataError
from t2r.data.example_proto import (
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
from t2r.data.image_codec import decode_image, detect_image_format, encode_image
from t2r.data.tfrecord import (
    ReadStats,
    TFRecordWriter,
    expand_file_patterns,
    read_tfrecord,
    read_tfrecord_with_offsets,
)

__all__ = [
    "BytesList",
    "DataError",
    "Example",
    "Feature",
    "FeatureList",
    "FeatureLists",
    "Features",
    "FloatList",
    "Int64List",
    "ReadStats",
    "SequenceExample",
    "TFRecordWriter",
    "decode_image",
    "detect_image_format",
    "encode_image",
    "expand_file_patterns",
    "is_temporary_path",
    "read_tfrecord",
    "read_tfrecord_with_offsets",
]
