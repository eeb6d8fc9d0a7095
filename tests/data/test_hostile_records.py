"""Records that lie or disagree: oversized image headers, integers out of range,
sequences of different lengths, strings where numbers belong."""

from __future__ import annotations

import struct
import tracemalloc
import zlib
from pathlib import Path

import numpy as np
import pytest
import simplejpeg
import torch
from PIL import ImageFile

from t2r.data import (
    DataError,
    DefaultRecordInputGenerator,
    Example,
    SequenceExample,
    TFRecordWriter,
    create_parse_tf_example_fn,
    decode_image,
    encode_image,
    read_tfrecord_with_offsets,
)
from t2r.modes import ModeKeys
from t2r.predictors.inputs import FeatureFeeder
from t2r.specs import ExtendedTensorSpec as TSpec
from t2r.specs import SpecError, TensorSpecStruct, validate_and_pack


# ---------------------------------------------------------------- image headers
def jpeg_claiming(height: int, width: int, channels: int = 3) -> bytes:
    """A 16x16 JPEG whose frame header (SOF0) says `height` x `width`."""
    data = bytearray(encode_image(np.full((16, 16, channels), 100, np.uint8)))
    sof = data.find(b"\xff\xc0")
    struct.pack_into(">HH", data, sof + 5, height, width)
    return bytes(data)


def png_claiming(height: int, width: int) -> bytes:
    """A 16x16 RGB PNG whose IHDR says `height` x `width` (with a valid CRC)."""
    data = bytearray(encode_image(np.full((16, 16, 3), 100, np.uint8), "png"))
    assert data[12:16] == b"IHDR"
    struct.pack_into(">II", data, 16, width, height)
    struct.pack_into(">I", data, 29, zlib.crc32(bytes(data[12:29])))
    return bytes(data)


CLAIMS = {"jpeg": jpeg_claiming, "png": png_claiming}


@pytest.fixture
def no_pixel_decoding(monkeypatch):
    """Fails the test if any pixel decoder runs."""

    def refuse(*args, **kwargs):
        raise AssertionError("pixels were decoded")

    monkeypatch.setattr(simplejpeg, "decode_jpeg", refuse)
    monkeypatch.setattr(ImageFile.ImageFile, "load", refuse)


@pytest.mark.parametrize("data_format", sorted(CLAIMS))
def test_a_header_bigger_than_the_spec_is_rejected_before_decoding(data_format, no_pixel_decoding):
    data = CLAIMS[data_format](12000, 12000)
    with pytest.raises(DataError) as info:
        decode_image(data, (16, 16, 3), np.uint8, key="camera")
    assert str(info.value) == (
        f"image 'camera': expected shape (16, 16, 3), but the {data_format} header says "
        "12000x12000 pixels (height x width); not decoding it"
    )


@pytest.mark.parametrize("data_format", sorted(CLAIMS))
def test_memory_stays_bounded_whatever_a_record_claims(tmp_path, data_format):
    """Through the parser and a skipping input pipeline: the lying record costs no
    more than a 16x16 image (measured with tracemalloc, which numpy reports to)."""
    spec = TensorSpecStruct(
        [("image", TSpec((16, 16, 3), torch.uint8, "image", data_format=data_format))]
    )
    good = encode_image(np.full((16, 16, 3), 7, np.uint8), data_format)
    path = tmp_path / "hostile.tfrecord"
    with TFRecordWriter(path) as writer:
        for data in (good, CLAIMS[data_format](12000, 12000), good):
            example = Example()
            example.features.feature["image"].bytes_list.value.append(data)
            writer.write(example.SerializeToString())
    offsets = [offset for offset, _ in read_tfrecord_with_offsets(path)]
    gen = DefaultRecordInputGenerator(str(path), batch_size=1, skip_corrupt_records=True)
    gen.set_feature_specifications(spec)
    dataset = gen.create_dataset(ModeKeys.EVAL)
    tracemalloc.start()
    try:
        batches = list(dataset)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(batches) == 2 and dataset.read_stats.corrupt_records == 1
    assert peak < 16 * 2**20, f"peak {peak / 2**20:.0f} MiB"
    strict = DefaultRecordInputGenerator(str(path), batch_size=1)
    strict.set_feature_specifications(spec)
    with pytest.raises(DataError, match=rf"{path}: record at byte {offsets[1]}: .*12000x12000"):
        list(strict.create_dataset(ModeKeys.EVAL))


def test_a_header_that_cannot_be_read_names_the_key():
    with pytest.raises(DataError, match="image 'camera': cannot read the unknown-format header"):
        decode_image(b"GIF89a\x00", (16, 16, 3), np.uint8, key="camera")


# ---------------------------------------------------------------- integers
def test_integer_out_of_range_names_the_record_and_is_skippable(tmp_path: Path):
    spec = TensorSpecStruct([("small", TSpec((2,), torch.uint8, "small"))])
    path = tmp_path / "ints.tfrecord"
    with TFRecordWriter(path) as writer:
        for values in ([1, 2], [3, 4], [5, 300], [6, 7]):
            example = Example()
            example.features.feature["small"].int64_list.value.extend(values)
            writer.write(example.SerializeToString())
    offsets = [offset for offset, _ in read_tfrecord_with_offsets(path)]

    gen = DefaultRecordInputGenerator(str(path), batch_size=2)
    gen.set_feature_specifications(spec)
    with pytest.raises(DataError) as info:
        list(gen.create_dataset(ModeKeys.EVAL))
    assert str(info.value).startswith(
        f"{path}: record at byte {offsets[2]}: record 0 of the batch: feature 'small'"
    )
    assert "values in [5, 300] do not fit uint8 (range [0, 255])" in str(info.value)

    skipping = DefaultRecordInputGenerator(str(path), batch_size=2, skip_corrupt_records=True)
    skipping.set_feature_specifications(spec)
    dataset = skipping.create_dataset(ModeKeys.EVAL)
    rows = [row for features, _ in dataset for row in features["small"].tolist()]
    assert rows == [[1, 2], [3, 4], [6, 7]]
    assert dataset.read_stats.corrupt_records == 1


def test_integer_out_of_range_in_a_sequence_names_the_record():
    spec = TensorSpecStruct([("a", TSpec((1,), torch.int8, "a", is_sequence=True))])
    records = []
    for values in ([1, 2], [3, -200]):
        example = SequenceExample()
        for v in values:
            example.feature_lists.feature_list["a"].feature.add().int64_list.value.append(v)
        records.append(example.SerializeToString())
    with pytest.raises(DataError, match=r"^record 1 of the batch: .*'a'.*do not fit int8") as info:
        create_parse_tf_example_fn(spec)(records)
    assert info.value.record_index == 1


# ---------------------------------------------------------------- sequences
SEQ_SPEC = TensorSpecStruct(
    [
        ("actions", TSpec((2,), torch.float32, "actions", is_sequence=True)),
        ("rewards", TSpec((), torch.float32, "rewards", is_sequence=True)),
    ]
)


def sequence_record(actions: int, rewards: int) -> bytes:
    example = SequenceExample()
    for _ in range(actions):
        example.feature_lists.feature_list["actions"].feature.add().float_list.value.extend([0, 1])
    for _ in range(rewards):
        example.feature_lists.feature_list["rewards"].feature.add().float_list.value.append(1.0)
    return example.SerializeToString()


def test_parser_rejects_sequences_of_different_lengths_in_one_record():
    parse = create_parse_tf_example_fn(SEQ_SPEC)
    ok = parse([sequence_record(3, 3), sequence_record(5, 5)])
    assert ok["actions"].shape == (2, 5, 2) and ok["rewards"].shape == (2, 5)
    with pytest.raises(DataError) as info:
        parse([sequence_record(3, 3), sequence_record(5, 4)])
    assert str(info.value) == (
        "record 1 of the batch: sequence feature 'actions' (spec path 'actions') has 5 steps "
        "but feature 'rewards' (spec path 'rewards') has 4; the sequence features of one "
        "record share their time dimension."
    )
    assert info.value.record_index == 1


def test_validate_and_pack_checks_the_shared_time_dimension():
    good = {"actions": np.zeros((4, 2), np.float32), "rewards": np.zeros(4, np.float32)}
    assert validate_and_pack(SEQ_SPEC, good)["rewards"].shape == (4,)
    bad = {"actions": np.zeros((4, 2), np.float32), "rewards": np.zeros(5, np.float32)}
    with pytest.raises(SpecError) as info:
        validate_and_pack(SEQ_SPEC, bad)
    assert str(info.value) == (
        "Sequence length mismatch: 'actions' has 4 steps but 'rewards' (spec name 'rewards') "
        "has 5 (shape (5,)); the sequence features of one example share their time dimension."
    )
    assert info.value.key == "rewards"
    batched = {k: v[None] for k, v in bad.items()}
    with pytest.raises(SpecError, match="'actions' has 4 steps but 'rewards'"):
        validate_and_pack(SEQ_SPEC, batched, ignore_batch=True)


def test_predictor_inputs_check_the_shared_time_dimension():
    feeder = FeatureFeeder(SEQ_SPEC)
    bad = {"actions": np.zeros((4, 2), np.float32), "rewards": np.zeros(5, np.float32)}
    with pytest.raises(SpecError, match="'actions' has 4 steps but 'rewards'.*has 5"):
        feeder(bad)


# ---------------------------------------------------------------- strings
@pytest.mark.parametrize(
    "value",
    [np.array(["a", "b"]), np.array([b"a", b"b"]), np.array(["a", 1], dtype=object)],
    ids=["str", "bytes", "object"],
)
@pytest.mark.parametrize("ignore_batch", [False, True])
def test_a_string_array_for_a_number_spec_names_the_key(value, ignore_batch):
    spec = TensorSpecStruct([("obs/pose", TSpec((2,), torch.float32, "pose"))])
    with pytest.raises(SpecError, match=r"^Dtype mismatch at 'obs/pose'") as info:
        validate_and_pack(spec, {"obs/pose": value[None] if ignore_batch else value}, ignore_batch)
    assert info.value.key == "obs/pose"


def test_predictor_inputs_name_the_key_of_a_string_list():
    feeder = FeatureFeeder(TensorSpecStruct([("pose", TSpec((2,), torch.float32, "pose"))]))
    with pytest.raises(SpecError, match=r"^Dtype mismatch at 'pose'"):
        feeder({"pose": ["a", "b"]})
