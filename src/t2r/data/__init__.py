"""Data: records on disk -> batches of tensors, driven by specs.

* TFRecord io (:mod:`t2r.data.tfrecord`): atomic writing, crc-checked reading,
  file patterns.
* The tf.train.Example / SequenceExample messages (:mod:`t2r.data.example_proto`)
  and image codecs (:mod:`t2r.data.image_codec`), without TensorFlow.
* Spec-driven parse (:mod:`t2r.data.parsing`) and serialize (:mod:`t2r.data.serializing`):
  ``create_parse_tf_example_fn(feature_spec, label_spec)`` turns a batch of
  serialized records into ``(features, labels)`` TensorSpecStructs of torch
  tensors; ``create_serialize_tf_example_fn`` writes records TensorFlow reads.
* Data sources (:mod:`t2r.data.sources`): the small protocol a format
  implements (list units, read one, its length); TFRecord files, in-memory
  arrays and a growing replay directory implement it.
* RLDS (:mod:`t2r.data.rlds`): tensorflow-datasets episode directories read
  as windows of steps (``RLDSSource``, ``RLDSInputGenerator``) and written
  (``write_rlds``, ``RLDSEpisodeWriter`` for collect).
* Input generators (:mod:`t2r.data.input_generators`), Tensor2Robot's names:
  ``DefaultRecordInputGenerator`` and friends, on torch DataLoaders that shard
  units over workers and ranks (:mod:`t2r.data.pipeline`); any source through
  ``SourceInputGenerator``; ``ReplayInputGenerator`` over a replay directory;
  random and constant data made from the specs.
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
from t2r.data.input_generators import (
    AbstractInputGenerator,
    DefaultConstantInputGenerator,
    DefaultRandomInputGenerator,
    DefaultRecordInputGenerator,
    FractionalRecordInputGenerator,
    GeneratorInputGenerator,
    MultiEvalRecordInputGenerator,
    ReplayInputGenerator,
    SourceInputGenerator,
    WeightedRecordInputGenerator,
    get_multi_eval_name,
)
from t2r.data.parsing import ParseTFExampleFn, create_parse_tf_example_fn
from t2r.data.pipeline import BatchIterable, RecordBatchDataset, resolve_rank_and_world_size
from t2r.data.rlds import (
    RLDSEpisodeWriter,
    RLDSInputGenerator,
    RLDSSource,
    load_rlds_info,
    write_rlds,
)
from t2r.data.serializing import SerializeTFExampleFn, create_serialize_tf_example_fn
from t2r.data.sources import DataSource, InMemorySource, ReplayDirectorySource, TFRecordSource
from t2r.data.tfrecord import (
    ReadStats,
    TFRecordWriter,
    count_tfrecords,
    expand_file_patterns,
    read_tfrecord,
    read_tfrecord_with_offsets,
)

__all__ = [
    "AbstractInputGenerator",
    "BatchIterable",
    "BytesList",
    "DataError",
    "DataSource",
    "DefaultConstantInputGenerator",
    "DefaultRandomInputGenerator",
    "DefaultRecordInputGenerator",
    "Example",
    "Feature",
    "FeatureList",
    "FeatureLists",
    "Features",
    "FloatList",
    "FractionalRecordInputGenerator",
    "GeneratorInputGenerator",
    "InMemorySource",
    "Int64List",
    "MultiEvalRecordInputGenerator",
    "ParseTFExampleFn",
    "RLDSEpisodeWriter",
    "RLDSInputGenerator",
    "RLDSSource",
    "ReadStats",
    "RecordBatchDataset",
    "ReplayDirectorySource",
    "ReplayInputGenerator",
    "SequenceExample",
    "SerializeTFExampleFn",
    "SourceInputGenerator",
    "TFRecordSource",
    "TFRecordWriter",
    "WeightedRecordInputGenerator",
    "count_tfrecords",
    "create_parse_tf_example_fn",
    "create_serialize_tf_example_fn",
    "decode_image",
    "detect_image_format",
    "encode_image",
    "expand_file_patterns",
    "get_multi_eval_name",
    "is_temporary_path",
    "load_rlds_info",
    "read_tfrecord",
    "read_tfrecord_with_offsets",
    "resolve_rank_and_world_size",
    "write_rlds",
]
