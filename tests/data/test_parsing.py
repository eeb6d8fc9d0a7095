"""Spec-driven serialize -> parse round trips, and the errors parsing raises."""

from __future__ import annotations

import pickle
import re

import numpy as np
import pytest
import torch

from t2r.data import (
    DataError,
    Example,
    SequenceExample,
    create_parse_tf_example_fn,
    create_serialize_tf_example_fn,
    encode_image,
)
from t2r.specs import (
    ExtendedTensorSpec as TSpec,
)
from t2r.specs import (
    SpecError,
    TensorSpecStruct,
    add_sequence_length_specs,
)


def struct(**entries: object) -> TensorSpecStruct:
    """A flat struct; ``__`` in a keyword becomes ``/`` in the path."""
    return TensorSpecStruct((key.replace("__", "/"), value) for key, value in entries.items())


def round_trip(
    feature_spec: TensorSpecStruct,
    examples: list[TensorSpecStruct],
    label_spec: TensorSpecStruct | None = None,
    labels: list[TensorSpecStruct] | None = None,
) -> object:
    serialize = create_serialize_tf_example_fn(feature_spec, label_spec)
    parse = create_parse_tf_example_fn(feature_spec, label_spec)
    if labels is None:
        records = [serialize(example) for example in examples]
    else:
        records = [serialize(e, lab) for e, lab in zip(examples, labels)]
    return parse(records)


def stack(examples: list[TensorSpecStruct], key: str) -> np.ndarray:
    return np.stack([np.asarray(e[key]) for e in examples])


RNG = np.random.default_rng(0)


def smooth_image(height: int, width: int, channels: int) -> np.ndarray:
    """A uint8 gradient image, which JPEG keeps within a few levels."""
    y, x = np.mgrid[0:height, 0:width]
    offset = int(RNG.integers(0, 50))
    planes = [(x * 2 + y * 2 + 30 * c + offset) % 256 for c in range(channels)]
    return np.stack(planes, axis=-1).astype(np.uint8)


def noise_image(height: int, width: int, channels: int, dtype: type = np.uint8) -> np.ndarray:
    top = 256 if dtype == np.uint8 else 65536
    return RNG.integers(0, top, size=(height, width, channels)).astype(dtype)


# ----------------------------------------------------------------- numbers


def test_fixed_length_numbers_of_every_dtype_round_trip_exactly() -> None:
    spec = struct(
        f32=TSpec((2, 3), torch.float32, "f32"),
        f64=TSpec((2,), torch.float64, "f64"),
        f16=TSpec((2,), torch.float16, "f16"),
        scalar=TSpec((), torch.float32, "scalar"),
        i64=TSpec((4,), torch.int64, "i64"),
        i32=TSpec((3,), torch.int32, "i32"),
        i8=TSpec((3,), torch.int8, "i8"),
        u8=TSpec((5,), torch.uint8, "u8"),
        flag=TSpec((3,), torch.bool, "flag"),
        nested__action=TSpec((1,), torch.float32, "action"),
    )
    examples = []
    for _ in range(3):
        examples.append(
            struct(
                f32=RNG.random((2, 3)).astype(np.float32),
                f64=np.array([0.5, -1.25]),  # exactly representable in float32
                f16=RNG.random(2).astype(np.float16),
                scalar=np.array(RNG.random(), np.float32),
                i64=np.array([-(2**62), 2**62, 0, -1]),
                i32=RNG.integers(-(2**31), 2**31, 3).astype(np.int32),
                i8=np.array([-128, 127, 3], np.int8),
                u8=RNG.integers(0, 256, 5).astype(np.uint8),
                flag=RNG.random(3) < 0.5,
                nested__action=np.array([RNG.random()], np.float32),
            )
        )
    features = round_trip(spec, examples)
    assert isinstance(features, TensorSpecStruct)
    assert list(features.keys()) == list(spec.keys())
    for key, value in spec.items():
        tensor = features[key]
        assert tensor.dtype == value.dtype, key
        assert tuple(tensor.shape) == (3, *value.shape), key
        np.testing.assert_array_equal(tensor.numpy(), stack(examples, key), err_msg=key)
    assert features.nested.action.shape == (3, 1)


def test_bfloat16_is_stored_as_float_and_cast() -> None:
    spec = struct(x=TSpec((3,), torch.bfloat16, "x"))
    values = torch.tensor([1.5, -2.0, 0.09375], dtype=torch.bfloat16)
    record = create_serialize_tf_example_fn(spec)(struct(x=values))
    assert isinstance(record, bytes)
    feature = Example.FromString(record).features.feature["x"]
    assert feature.WhichOneof("kind") == "float_list"
    assert list(feature.float_list.value) == [1.5, -2.0, 0.09375]
    parsed = create_parse_tf_example_fn(spec)([record, record])
    assert parsed["x"].dtype == torch.bfloat16
    assert torch.equal(parsed["x"][1], values)


def test_serialized_records_use_tensorflows_standard_encodings() -> None:
    spec = struct(
        pose=TSpec((2,), torch.float32, "pose"),
        count=TSpec((), torch.int32, "count"),
        done=TSpec((), torch.bool, "done"),
        pixels=TSpec((2,), torch.uint8, "pixels"),
        image=TSpec((4, 4, 3), torch.uint8, "image", data_format="png"),
    )
    image = noise_image(4, 4, 3)
    record = create_serialize_tf_example_fn(spec)(
        struct(
            pose=np.array([1.0, 2.0], np.float32),
            count=np.array(7, np.int32),
            done=np.array(True),
            pixels=np.array([3, 250], np.uint8),
            image=image,
        )
    )
    feature = Example.FromString(record).features.feature
    assert sorted(feature) == ["count", "done", "image", "pixels", "pose"]
    assert list(feature["pose"].float_list.value) == [1.0, 2.0]
    assert list(feature["count"].int64_list.value) == [7]
    assert list(feature["done"].int64_list.value) == [1]
    assert list(feature["pixels"].int64_list.value) == [3, 250]
    (png,) = feature["image"].bytes_list.value
    assert png.startswith(b"\x89PNG")
    # Serialization is deterministic: the same example gives the same bytes.
    assert record == create_serialize_tf_example_fn(spec)(
        struct(
            pose=np.array([1.0, 2.0], np.float32),
            count=np.array(7, np.int32),
            done=np.array(True),
            pixels=np.array([3, 250], np.uint8),
            image=image,
        )
    )


def test_uint8_data_also_reads_from_raw_bytes() -> None:
    spec = struct(raw=TSpec((2, 2), torch.uint8, "raw"))
    example = Example()
    example.features.feature["raw"].bytes_list.value.append(bytes([1, 2, 3, 250]))
    parsed = create_parse_tf_example_fn(spec)([example.SerializeToString()])
    assert parsed["raw"].tolist() == [[[1, 2], [3, 250]]]


def test_integers_that_do_not_fit_the_dtype_raise() -> None:
    example = Example()
    example.features.feature["small"].int64_list.value.extend([1, 300])
    spec = struct(small=TSpec((2,), torch.uint8, "small"))
    with pytest.raises(DataError, match=r"'small'.*\[1, 300\] do not fit uint8"):
        create_parse_tf_example_fn(spec)([example.SerializeToString()])


# ------------------------------------------------------------------ images


@pytest.mark.parametrize("channels", [1, 3])
def test_jpeg_images_round_trip_within_codec_precision(channels: int) -> None:
    spec = struct(image=TSpec((24, 32, channels), torch.uint8, "camera", data_format="jpeg"))
    examples = [struct(image=smooth_image(24, 32, channels)) for _ in range(3)]
    parsed = round_trip(spec, examples)
    assert isinstance(parsed, TensorSpecStruct)
    image = parsed["image"]
    assert image.dtype == torch.uint8 and image.shape == (3, 24, 32, channels)
    error = np.abs(image.numpy().astype(int) - stack(examples, "image").astype(int))
    assert error.mean() < 2.0 and error.max() <= 12


@pytest.mark.parametrize(
    ("channels", "dtype"), [(1, np.uint8), (3, np.uint8), (1, np.uint16), (3, np.uint16)]
)
def test_png_images_round_trip_exactly(channels: int, dtype: type) -> None:
    torch_dtype = torch.uint8 if dtype == np.uint8 else torch.uint16
    spec = struct(depth=TSpec((9, 7, channels), torch_dtype, "depth", data_format="png"))
    examples = [struct(depth=noise_image(9, 7, channels, dtype)) for _ in range(2)]
    parsed = round_trip(spec, examples)
    assert isinstance(parsed, TensorSpecStruct)
    assert parsed["depth"].dtype == torch_dtype
    np.testing.assert_array_equal(parsed["depth"].numpy(), stack(examples, "depth"))


def test_fixed_list_of_images_is_n_bytes_values() -> None:
    spec = struct(views=TSpec((3, 5, 6, 3), torch.uint8, "views", data_format="png"))
    examples = [struct(views=np.stack([noise_image(5, 6, 3) for _ in range(3)])) for _ in range(2)]
    record = create_serialize_tf_example_fn(spec)(examples[0])
    assert isinstance(record, bytes)
    assert len(Example.FromString(record).features.feature["views"].bytes_list.value) == 3
    parsed = round_trip(spec, examples)
    assert isinstance(parsed, TensorSpecStruct)
    assert parsed["views"].shape == (2, 3, 5, 6, 3)
    np.testing.assert_array_equal(parsed["views"].numpy(), stack(examples, "views"))


def test_empty_bytes_decode_to_a_zero_image() -> None:
    example = Example()
    example.features.feature["image"].bytes_list.value.append(b"")
    spec = struct(image=TSpec((4, 4, 3), torch.uint8, "image", data_format="jpeg"))
    parsed = create_parse_tf_example_fn(spec)([example.SerializeToString()])
    assert parsed["image"].shape == (1, 4, 4, 3)
    assert int(parsed["image"].sum()) == 0


def test_images_stay_encoded_without_decoding() -> None:
    spec = struct(
        image=TSpec((4, 4, 3), torch.uint8, "image", data_format="png"),
        views=TSpec((2, 4, 4, 1), torch.uint8, "views", data_format="png"),
    )
    example = struct(image=noise_image(4, 4, 3), views=np.stack([noise_image(4, 4, 1)] * 2))
    record = create_serialize_tf_example_fn(spec)(example)
    parsed = create_parse_tf_example_fn(spec, decode_images=False)([record, record])
    assert isinstance(parsed, TensorSpecStruct)
    assert parsed["image"].dtype == object and parsed["image"].shape == (2,)
    assert parsed["views"].shape == (2, 2)
    assert parsed["image"][1] == encode_image(example["image"], "png")
    # Encoded bytes serialize back unchanged.
    again = create_serialize_tf_example_fn(spec)(
        struct(image=parsed["image"][0, ...], views=parsed["views"][0])
    )
    assert again == record


# ------------------------------------------------------------- variable length


def test_varlen_numbers_are_padded_or_clipped() -> None:
    spec = struct(
        ids=TSpec((4,), torch.int64, "ids", varlen_default_value=-1),
        weights=TSpec((2,), torch.float32, "weights", varlen_default_value=0.5),
    )
    examples = [
        struct(ids=np.array([7]), weights=np.array([], np.float32)),
        struct(ids=np.array([1, 2, 3, 4, 5, 6]), weights=np.array([1, 2, 3], np.float32)),
        struct(ids=np.array([], np.int64), weights=np.array([9], np.float32)),
    ]
    parsed = round_trip(spec, examples)
    assert isinstance(parsed, TensorSpecStruct)
    assert parsed["ids"].tolist() == [[7, -1, -1, -1], [1, 2, 3, 4], [-1, -1, -1, -1]]
    assert parsed["weights"].tolist() == [[0.5, 0.5], [1.0, 2.0], [9.0, 0.5]]


def test_varlen_image_lists_are_padded_with_the_default_or_clipped() -> None:
    spec = struct(
        frames=TSpec((2, 4, 4, 1), torch.uint8, "frames", data_format="png", varlen_default_value=7)
    )
    one = noise_image(4, 4, 1)
    three = np.stack([noise_image(4, 4, 1) for _ in range(3)])
    serialize = create_serialize_tf_example_fn(spec)
    records = [serialize(struct(frames=one[None])), serialize(struct(frames=three))]
    assert len(Example.FromString(records[1]).features.feature["frames"].bytes_list.value) == 3
    parsed = create_parse_tf_example_fn(spec)(records)
    assert isinstance(parsed, TensorSpecStruct)
    frames = parsed["frames"].numpy()
    assert frames.shape == (2, 2, 4, 4, 1)
    np.testing.assert_array_equal(frames[0, 0], one)
    assert (frames[0, 1] == 7).all()
    np.testing.assert_array_equal(frames[1], three[:2])


# ---------------------------------------------------------------- sequences


def sequence_spec() -> TensorSpecStruct:
    return add_sequence_length_specs(
        struct(
            actions=TSpec((2,), torch.float32, "actions", is_sequence=True),
            frames=TSpec((6, 5, 3), torch.uint8, "frames", is_sequence=True, data_format="png"),
            goal=TSpec((3,), torch.float32, "goal"),
            task=TSpec((), torch.int64, "task"),
        )
    )


def sequence_example(steps: int) -> TensorSpecStruct:
    return struct(
        actions=RNG.random((steps, 2)).astype(np.float32),
        frames=np.stack([noise_image(6, 5, 3) for _ in range(steps)])
        if steps
        else np.zeros((0, 6, 5, 3), np.uint8),
        goal=RNG.random(3).astype(np.float32),
        task=np.array(steps * 10),
    )


def test_sequences_are_padded_to_the_longest_with_lengths() -> None:
    spec = sequence_spec()
    assert "actions_length" in spec and "frames_length" in spec
    examples = [sequence_example(steps) for steps in (2, 4, 0)]
    record = create_serialize_tf_example_fn(spec)(examples[0])
    assert isinstance(record, bytes)
    message = SequenceExample.FromString(record)
    assert sorted(message.context.feature) == ["goal", "task"]
    assert sorted(message.feature_lists.feature_list) == ["actions", "frames"]
    assert len(message.feature_lists.feature_list["frames"].feature) == 2

    parsed = round_trip(spec, examples)
    assert isinstance(parsed, TensorSpecStruct)
    assert parsed["actions"].shape == (3, 4, 2)
    assert parsed["frames"].shape == (3, 4, 6, 5, 3)
    assert parsed["actions_length"].dtype == torch.int64
    assert parsed["actions_length"].tolist() == [2, 4, 0]
    assert parsed["frames_length"].tolist() == [2, 4, 0]
    for i, example in enumerate(examples):
        steps = len(example["actions"])
        np.testing.assert_array_equal(parsed["actions"][i, :steps].numpy(), example["actions"])
        np.testing.assert_array_equal(parsed["frames"][i, :steps].numpy(), example["frames"])
        assert (parsed["actions"][i, steps:] == 0).all()
        assert (parsed["frames"][i, steps:] == 0).all()
    np.testing.assert_array_equal(parsed["goal"].numpy(), stack(examples, "goal"))
    assert parsed["task"].tolist() == [20, 40, 0]


def test_lengths_only_when_the_spec_asks_and_a_length_value_clips_on_write() -> None:
    plain = struct(actions=TSpec((1,), torch.int64, "actions", is_sequence=True))
    padded = struct(actions=np.arange(5).reshape(5, 1), actions_length=np.array(3))
    record = create_serialize_tf_example_fn(add_sequence_length_specs(plain))(padded)
    parsed = create_parse_tf_example_fn(plain)([record])
    assert isinstance(parsed, TensorSpecStruct)
    assert list(parsed.keys()) == ["actions"]
    assert parsed["actions"].tolist() == [[[0], [1], [2]]]


def test_context_features_of_a_sequence_example_and_examples_read_as_context() -> None:
    label = TSpec((), torch.int64, "label")
    steps = TSpec((), torch.float32, "steps", is_sequence=True)
    example = Example()
    example.features.feature["label"].int64_list.value.append(3)
    sequence = SequenceExample()
    sequence.context.feature["label"].int64_list.value.append(4)
    for value in (1.0, 2.0):
        sequence.feature_lists.feature_list["steps"].feature.add().float_list.value.append(value)
    records = [sequence.SerializeToString(), example.SerializeToString()]

    features, labels = create_parse_tf_example_fn(struct(label=label), struct(steps=steps))(
        records[:1]
    )
    assert features["label"].tolist() == [4]
    assert labels["steps"].tolist() == [[1.0, 2.0]]
    # An Example parses as a SequenceExample whose context is its features.
    optional = TSpec.from_spec(steps, is_optional=True)
    features, labels = create_parse_tf_example_fn(struct(label=label), struct(steps=optional))(
        records[1:]
    )
    assert features["label"].tolist() == [3]
    assert list(labels.keys()) == []
    with pytest.raises(
        DataError, match="record 1 of the batch: required feature 'steps'.*feature_lists"
    ):
        create_parse_tf_example_fn(struct(label=label), struct(steps=steps))(records)


# ------------------------------------------------------------ several datasets


def test_dataset_keys_read_from_their_own_records() -> None:
    feature_spec = struct(
        sim__image=TSpec((4, 4, 3), torch.uint8, "image", data_format="png", dataset_key="sim"),
        real__image=TSpec((4, 4, 3), torch.uint8, "image", data_format="png", dataset_key="real"),
        real__pose=TSpec((2,), torch.float32, "pose", dataset_key="real"),
    )
    label_spec = struct(reward=TSpec((), torch.float32, "reward", dataset_key="sim"))
    serialize = create_serialize_tf_example_fn(feature_spec, label_spec)
    examples = [
        struct(
            sim__image=noise_image(4, 4, 3),
            real__image=noise_image(4, 4, 3),
            real__pose=RNG.random(2).astype(np.float32),
        )
        for _ in range(2)
    ]
    labels = [struct(reward=np.array(-float(i), np.float32)) for i in range(2)]
    records = [serialize(e, lab) for e, lab in zip(examples, labels)]
    assert all(isinstance(r, dict) and sorted(r) == ["real", "sim"] for r in records)
    zipped = {key: [r[key] for r in records] for key in ("sim", "real")}  # type: ignore[index]
    parse = create_parse_tf_example_fn(feature_spec, label_spec)
    assert parse.dataset_keys == ["real", "sim"]
    features, parsed_labels = parse(zipped)
    for key in feature_spec:
        np.testing.assert_array_equal(features[key].numpy(), stack(examples, key))
    assert parsed_labels["reward"].tolist() == [0.0, -1.0]
    with pytest.raises(DataError, match="No records given for dataset_key 'sim'"):
        parse({"real": zipped["real"]})
    with pytest.raises(DataError, match="as many records"):
        parse({"real": zipped["real"], "sim": zipped["sim"][:1]})


# ------------------------------------------------------------- missing features


def test_optional_features_missing_everywhere_are_left_out() -> None:
    spec = struct(
        pose=TSpec((2,), torch.float32, "pose"),
        debug=TSpec((3,), torch.float32, "debug", is_optional=True),
        unnamed=TSpec((3,), torch.float32),
    )
    serialize = create_serialize_tf_example_fn(spec)
    record = serialize(struct(pose=np.zeros(2, np.float32)))
    parse = create_parse_tf_example_fn(spec)
    parsed = parse([record, record])
    assert isinstance(parsed, TensorSpecStruct)
    assert list(parsed.keys()) == ["pose"]
    with_debug = serialize(struct(pose=np.zeros(2, np.float32), debug=np.ones(3, np.float32)))
    parsed = parse([with_debug])
    assert isinstance(parsed, TensorSpecStruct)
    assert sorted(parsed.keys()) == ["debug", "pose"]
    with pytest.raises(DataError, match=r"optional feature 'debug'.*missing from 1 of 2 records"):
        parse([with_debug, record])


def test_labels_are_returned_beside_features_and_names_shared() -> None:
    pose = TSpec((2,), torch.float32, "pose")
    parse = create_parse_tf_example_fn(struct(a=pose, b=pose), struct(target=pose))
    record = create_serialize_tf_example_fn(struct(a=pose))(struct(a=np.array([1, 2], np.float32)))
    features, labels = parse([record])
    assert features["a"].tolist() == features["b"].tolist() == labels["target"].tolist()


def test_parse_fn_is_picklable() -> None:
    spec = sequence_spec()
    parse = pickle.loads(pickle.dumps(create_parse_tf_example_fn(spec)))
    record = create_serialize_tf_example_fn(spec)(sequence_example(3))
    parsed = parse([record])
    assert isinstance(parsed, TensorSpecStruct)
    assert parsed["frames_length"].tolist() == [3]


# --------------------------------------------------------------------- errors


def test_missing_required_feature_names_the_key() -> None:
    spec = struct(
        pose=TSpec((2,), torch.float32, "pose"), nested__grip=TSpec((1,), "float32", "grip")
    )
    record = create_serialize_tf_example_fn(struct(pose=spec["pose"]))(
        struct(pose=np.zeros(2, np.float32))
    )
    with pytest.raises(
        DataError,
        match=r"record 0 of the batch: required feature 'grip' "
        r"\(spec path 'nested/grip'\) is missing",
    ) as info:
        create_parse_tf_example_fn(spec)([record])
    assert info.value.key == "grip" and info.value.record_index == 0


def test_wrong_number_of_values_names_key_and_sizes() -> None:
    example = Example()
    example.features.feature["pose"].float_list.value.extend([1.0, 2.0, 3.0])
    spec = struct(pose=TSpec((2,), torch.float32, "pose"))
    good = create_serialize_tf_example_fn(spec)(struct(pose=np.zeros(2, np.float32)))
    with pytest.raises(
        DataError,
        match=r"record 1 of the batch: feature 'pose'.*"
        r"expected 2 float_list values for shape \(2,\), got 3",
    ) as info:
        create_parse_tf_example_fn(spec)([good, example.SerializeToString()])
    assert info.value.record_index == 1


def test_wrong_value_kind_is_reported() -> None:
    example = Example()
    example.features.feature["pose"].int64_list.value.extend([1, 2])
    with pytest.raises(DataError, match="'pose'.*expected a float_list, got a int64_list"):
        create_parse_tf_example_fn(struct(pose=TSpec((2,), "float32", "pose")))(
            [example.SerializeToString()]
        )


@pytest.mark.parametrize("data_format", ["jpeg", "png"])
def test_wrong_image_size_or_channels_names_key_and_shapes(data_format: str) -> None:
    spec = struct(image=TSpec((8, 8, 3), torch.uint8, "state/image", data_format=data_format))
    for shape in ((8, 6, 3), (8, 8, 1)):
        example = Example()
        example.features.feature["state/image"].bytes_list.value.append(
            encode_image(smooth_image(*shape), data_format)  # type: ignore[arg-type]
        )
        # A wrong size is seen in the header, a wrong channel count when decoding.
        actual = "header says 8x6 pixels" if shape[1] == 6 else "decodes to " + str(shape)
        with pytest.raises(
            DataError,
            match=r"feature 'state/image'.*expected shape \(8, 8, 3\).*" + re.escape(actual),
        ):
            create_parse_tf_example_fn(spec)([example.SerializeToString()])


def test_wrong_number_of_images_in_a_fixed_list() -> None:
    spec = struct(views=TSpec((2, 4, 4, 3), torch.uint8, "views", data_format="png"))
    example = Example()
    example.features.feature["views"].bytes_list.value.append(
        encode_image(noise_image(4, 4, 3), "png")
    )
    with pytest.raises(
        DataError, match=r"'views'.*expected 2 encoded images for shape \(2, 4, 4, 3\), got 1"
    ):
        create_parse_tf_example_fn(spec)([example.SerializeToString()])


def test_garbage_records_are_reported_with_their_index() -> None:
    spec = struct(pose=TSpec((2,), torch.float32, "pose"))
    good = create_serialize_tf_example_fn(spec)(struct(pose=np.zeros(2, np.float32)))
    with pytest.raises(
        DataError, match="record 1 of the batch is not a serialized tf.train.Example"
    ):
        create_parse_tf_example_fn(spec)([good, b"\xff\xff\xff"])


def test_specs_that_cannot_be_parsed_fail_at_construction() -> None:
    with pytest.raises(SpecError, match="fully defined shape"):
        create_parse_tf_example_fn(struct(x=TSpec((None, 2), torch.float32, "x")))
    with pytest.raises(SpecError, match=r"\(H, W, C\) or \(N, H, W, C\)"):
        create_parse_tf_example_fn(struct(x=TSpec((4, 4), torch.uint8, "x", data_format="png")))
    with pytest.raises(SpecError, match="uint8 or uint16"):
        create_parse_tf_example_fn(
            struct(x=TSpec((4, 4, 3), torch.float32, "x", data_format="png"))
        )
    with pytest.raises(SpecError, match="both read feature 'x'"):
        create_parse_tf_example_fn(
            struct(
                a=TSpec((2,), torch.float32, "x"),
                b=TSpec((2,), torch.float32, "x", is_sequence=True),
            )
        )
    with pytest.raises(TypeError, match="a list of serialized records"):
        create_parse_tf_example_fn(struct(x=TSpec((2,), torch.float32, "x")))(b"record")


def test_serialize_checks_values_against_specs() -> None:
    spec = struct(
        pose=TSpec((2,), torch.float32, "pose"),
        image=TSpec((4, 4, 3), torch.uint8, "image", data_format="jpeg"),
    )
    serialize = create_serialize_tf_example_fn(spec)
    with pytest.raises(SpecError, match=r"'pose'.*expected shape \(2,\), got shape \(3,\)"):
        serialize(struct(pose=np.zeros(3, np.float32), image=noise_image(4, 4, 3)))
    with pytest.raises(SpecError, match=r"required 'image' \(spec name 'image'\) is missing"):
        serialize(struct(pose=np.zeros(2, np.float32)))
    with pytest.raises(SpecError, match="Cannot encode 'image'"):
        serialize(struct(pose=np.zeros(2, np.float32), image=np.zeros((4, 4, 3), np.uint16)))
