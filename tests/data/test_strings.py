"""String features (tf.string) in Example / SequenceExample records, parsed and written."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from t2r.data import (
    DataError,
    DefaultRecordInputGenerator,
    Example,
    SequenceExample,
    TFRecordWriter,
    create_parse_tf_example_fn,
    create_serialize_tf_example_fn,
    read_tfrecord,
)
from t2r.modes import ModeKeys
from t2r.specs import ExtendedTensorSpec as TSpec
from t2r.specs import SpecError, TensorSpecStruct, add_sequence_length_specs
from tests.needs import needs_fixture

RLDS_NAME = "rlds_fractal_tiny/0.1.0"


def objects(*items: object) -> np.ndarray:
    """A 1-D object array (np.array would make fixed-width bytes)."""
    array = np.empty(len(items), dtype=object)
    array[:] = list(items)
    return array


def test_fixed_length_strings_parse_as_object_arrays_of_bytes() -> None:
    spec = TensorSpecStruct(
        instruction=TSpec((), "string", name="natural_language_instruction"),
        pair=TSpec((2,), bytes, name="pair"),
        grid=TSpec((2, 2), "string", name="grid"),
        pose=TSpec((2,), torch.float32, name="pose"),
    )
    serialize = create_serialize_tf_example_fn(spec)
    records = [
        serialize(
            {
                "instruction": f"pick {i}".encode(),
                "pair": np.array(["ü", "v"]),  # str is written UTF-8 encoded
                "grid": np.array([[b"a", b"b"], [b"c", b"\x00\xff"]], dtype=object),
                "pose": np.full(2, i, np.float32),
            }
        )
        for i in range(3)
    ]
    feature = Example.FromString(records[0]).features.feature
    assert list(feature["natural_language_instruction"].bytes_list.value) == [b"pick 0"]
    assert list(feature["pair"].bytes_list.value) == ["ü".encode(), b"v"]
    assert list(feature["grid"].bytes_list.value) == [b"a", b"b", b"c", b"\x00\xff"]

    parsed = create_parse_tf_example_fn(spec)(records)
    instruction = parsed["instruction"]
    assert isinstance(instruction, np.ndarray) and instruction.dtype == object
    assert instruction.tolist() == [b"pick 0", b"pick 1", b"pick 2"]
    assert parsed["pair"].shape == (3, 2) and parsed["pair"][2].tolist() == ["ü".encode(), b"v"]
    assert parsed["grid"].shape == (3, 2, 2) and parsed["grid"][1, 1, 1] == b"\x00\xff"
    assert isinstance(parsed["pose"], torch.Tensor)
    assert all(type(v) is bytes for v in parsed["grid"].reshape(-1))


def test_hand_built_records_as_tensorflow_writes_them() -> None:
    # tf.train.Example(features={'lang': bytes_list[...]}) as TF's python API builds it.
    example = Example()
    example.features.feature["lang"].bytes_list.value.append(b"open drawer")
    example.features.feature["words"].bytes_list.value.extend([b"open", b"drawer"])
    spec = TensorSpecStruct(
        lang=TSpec((), "string", name="lang"),
        words=TSpec((4,), "string", name="words", varlen_default_value=b""),
    )
    parsed = create_parse_tf_example_fn(spec)([example.SerializeToString()] * 2)
    assert parsed["lang"].tolist() == [b"open drawer"] * 2
    assert parsed["words"].tolist() == [[b"open", b"drawer", b"", b""]] * 2


def test_varlen_strings_pad_with_the_default_and_clip() -> None:
    spec = TensorSpecStruct(tags=TSpec((3,), "string", name="tags", varlen_default_value="-"))
    serialize = create_serialize_tf_example_fn(spec)
    lists = [[], [b"a"], [b"a", b"b", b"c", b"d"]]
    records = [serialize({"tags": objects(*tags)}) for tags in lists]
    assert list(Example.FromString(records[2]).features.feature["tags"].bytes_list.value) == [
        b"a",
        b"b",
        b"c",
        b"d",
    ]  # written unpadded
    parsed = create_parse_tf_example_fn(spec)(records)
    assert parsed["tags"].tolist() == [[b"-"] * 3, [b"a", b"-", b"-"], [b"a", b"b", b"c"]]


def test_sequence_strings_in_sequence_examples() -> None:
    spec = add_sequence_length_specs(
        TensorSpecStruct(
            episode_id=TSpec((), "string", name="episode_id"),
            instruction=TSpec((), "string", name="instruction", is_sequence=True),
            words=TSpec((2,), "string", name="words", is_sequence=True),
            reward=TSpec((), torch.float32, name="reward", is_sequence=True),
        )
    )
    serialize = create_serialize_tf_example_fn(spec)
    records = []
    for n in (2, 1):
        records.append(
            serialize(
                {
                    "episode_id": f"ep{n}".encode(),
                    "instruction": objects(*[f"step {t}".encode() for t in range(n)]),
                    "words": np.array([[b"x", b"y"]] * n, dtype=object),
                    "reward": np.arange(n, dtype=np.float32),
                }
            )
        )
    message = SequenceExample.FromString(records[0])
    assert list(message.context.feature["episode_id"].bytes_list.value) == [b"ep2"]
    steps = message.feature_lists.feature_list["instruction"].feature
    assert [list(f.bytes_list.value) for f in steps] == [[b"step 0"], [b"step 1"]]

    parsed = create_parse_tf_example_fn(spec)(records)
    assert parsed["episode_id"].tolist() == [b"ep2", b"ep1"]
    # Shorter sequences are padded with b"", as TensorFlow pads strings.
    assert parsed["instruction"].tolist() == [[b"step 0", b"step 1"], [b"step 0", b""]]
    assert parsed["words"].shape == (2, 2, 2)
    assert parsed["words"][1].tolist() == [[b"x", b"y"], [b"", b""]]
    assert parsed["instruction_length"].tolist() == [2, 1]


def test_a_string_spec_meeting_numbers_names_the_feature_and_record() -> None:
    example = Example()
    example.features.feature["lang"].int64_list.value.append(3)
    parse = create_parse_tf_example_fn(TensorSpecStruct(lang=TSpec((), "string", name="lang")))
    with pytest.raises(
        DataError, match="record 0.*'lang'.*expected a bytes_list, got a int64_list"
    ):
        parse([example.SerializeToString()])
    example = Example()
    example.features.feature["lang"].bytes_list.value.extend([b"a", b"b"])
    with pytest.raises(DataError, match="'lang'.*expected 1 bytes_list values.*got 2"):
        parse([example.SerializeToString()])
    # A numeric spec meeting strings.
    parse_number = create_parse_tf_example_fn(
        TensorSpecStruct(lang=TSpec((), torch.float32, name="lang"))
    )
    with pytest.raises(DataError, match="'lang'.*expected a float_list, got a bytes_list"):
        parse_number([example.SerializeToString()])


def test_serializing_non_strings_for_a_string_spec_names_the_path() -> None:
    spec = TensorSpecStruct(lang=TSpec((2,), "string", name="natural_language_instruction"))
    serialize = create_serialize_tf_example_fn(spec)
    with pytest.raises(SpecError, match="'lang'.*'natural_language_instruction'.*got int 3"):
        serialize({"lang": objects(b"a", 3)})
    with pytest.raises(SpecError, match="'lang'.*expected shape \\(2,\\), got shape \\(3,\\)"):
        serialize({"lang": objects(b"a", b"b", b"c")})
    with pytest.raises(SpecError, match="required 'lang'"):
        serialize({})


def write_records(path: Path, records: list[bytes]) -> Path:
    with TFRecordWriter(path) as writer:
        for record in records:
            writer.write(record)
    return path


@pytest.mark.parametrize("num_workers", [0, 1])
def test_record_input_generator_carries_strings_outside_tensors(
    tmp_path: Path, num_workers: int
) -> None:
    feature_spec = TensorSpecStruct(
        instruction=TSpec((), "string", name="natural_language_instruction"),
        x=TSpec((2,), torch.float32, name="x"),
    )
    serialize = create_serialize_tf_example_fn(feature_spec)
    records = [
        serialize({"instruction": f"task {i}".encode(), "x": np.full(2, i, np.float32)})
        for i in range(6)
    ]
    write_records(tmp_path / "data.tfrecord", records)
    generator = DefaultRecordInputGenerator(
        str(tmp_path / "data.tfrecord"), batch_size=4, num_workers=num_workers
    )
    generator.set_feature_specifications(feature_spec, None)
    seen: list[tuple[bytes, float]] = []
    for features, _ in generator.create_dataset(ModeKeys.EVAL):
        instruction = features["instruction"]
        assert isinstance(instruction, np.ndarray) and instruction.dtype == object
        assert isinstance(features["x"], torch.Tensor)
        seen.extend(zip(instruction.tolist(), features["x"][:, 0].tolist()))
    # Each string stays with its record's numbers.
    assert sorted(seen) == [(f"task {i}".encode(), float(i)) for i in range(6)]


def test_rlds_fixture_strings_parse_as_tensorflow_reads_them() -> None:
    """The RLDS fixture (written by tensorflow-datasets) holds Text features."""
    spec = TensorSpecStruct(
        file_path=TSpec((), "string", name="episode_metadata/file_path"),
        instruction=TSpec(
            (16,),
            "string",
            name="steps/observation/natural_language_instruction",
            varlen_default_value=b"",
        ),
        is_first=TSpec((16,), torch.int64, name="steps/is_first", varlen_default_value=-1),
    )
    files = sorted(needs_fixture(RLDS_NAME).glob("*-train.tfrecord-*"))
    assert len(files) == 2
    records = [record for path in files for record in read_tfrecord(str(path))]
    parsed = create_parse_tf_example_fn(spec)(records)
    paths = parsed["file_path"].tolist()
    assert paths == [f"generated/fractal_tiny/episode_{n:02d}".encode() for n in (4, 3, 0, 2, 1)]
    steps = (parsed["is_first"] >= 0).sum(dim=1).tolist()
    assert steps == [7, 4, 5, 8, 3]
    expected = [
        "knock redbull can over",
        "open top drawer",
        "pick rxbar chocolate from middle drawer",
        "move blue chip bag near green jalapeno chip bag",
        "place coke can upright",
    ]
    for row, n, text in zip(parsed["instruction"].tolist(), steps, expected):
        # One UTF-8 instruction per step, repeated; b"" after the episode's last step.
        assert row == [text.encode()] * n + [b""] * (16 - n)
