"""String specs (Tensor2Robot's tf.string): the dtype, specs, data and assets."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
import torch

from t2r import specs
from t2r.specs import (
    ExtendedTensorSpec,
    SpecError,
    T2RAssets,
    TensorSpecStruct,
    as_spec_dtype,
    as_torch_dtype,
    dtype_name,
    load_t2r_assets_to_file,
    make_constant_numpy,
    make_random_numpy,
    make_random_tensors,
    numpy_dtype,
    pad_or_clip_tensor_to_spec_shape,
    t2r_assets_to_pbtxt,
    to_tensors,
    validate_and_pack,
    write_t2r_assets_to_file,
)

STRINGS = TensorSpecStruct(
    instruction=ExtendedTensorSpec((), "string", name="natural_language_instruction"),
    tags=ExtendedTensorSpec((3,), bytes, name="tags", varlen_default_value=b""),
    steps=ExtendedTensorSpec((2,), np.object_, name="steps", is_sequence=True),
    pose=ExtendedTensorSpec((2,), torch.float32, name="pose"),
)


@pytest.mark.parametrize(
    "spelling",
    [specs.string, "string", "tf.string", "str", "bytes", bytes, str, np.object_, np.bytes_,
     np.str_, np.dtype(object), np.dtype("S3"), np.dtype("U2")],
)  # fmt: skip
def test_every_spelling_of_the_string_dtype_is_the_one_sentinel(spelling):
    assert as_spec_dtype(spelling) is specs.string
    spec = ExtendedTensorSpec((), spelling)
    assert spec.dtype is specs.string and spec.is_string
    assert specs.is_string_dtype(spelling)


def test_the_string_dtype_is_a_clear_sentinel_not_a_torch_dtype():
    assert repr(specs.string) == "t2r.specs.string"
    assert dtype_name(specs.string) == "string"
    assert numpy_dtype(specs.string) == np.dtype(object)
    assert specs.StringDType() is specs.string
    assert pickle.loads(pickle.dumps(specs.string)) is specs.string
    assert not specs.string.is_floating_point and not specs.string.is_complex
    with pytest.raises(TypeError, match="no torch dtype.*numpy object array of bytes"):
        as_torch_dtype("string")
    with pytest.raises(TypeError, match="no torch dtype"):
        as_torch_dtype(specs.string)
    spec = STRINGS.instruction
    assert "dtype=t2r.specs.string" in repr(spec)
    assert spec != ExtendedTensorSpec((), torch.uint8)
    assert spec == ExtendedTensorSpec((), str)
    assert pickle.loads(pickle.dumps(STRINGS.tags)).varlen_default_value == b""


def test_string_spec_checks_its_fields():
    assert ExtendedTensorSpec((2,), "string", varlen_default_value="ü").varlen_default_value == (
        "ü".encode()
    )
    with pytest.raises(SpecError, match="'lang'.*must be bytes or str, got 0"):
        ExtendedTensorSpec((2,), "string", name="lang", varlen_default_value=0)
    with pytest.raises(SpecError, match="'x' of dtype float32.*must be a number"):
        ExtendedTensorSpec((2,), torch.float32, name="x", varlen_default_value=b"")
    with pytest.raises(SpecError, match="'img'.*cannot have data_format 'jpeg'.*uint8"):
        ExtendedTensorSpec((), "string", name="img", data_format="jpeg")


@pytest.mark.parametrize("default", [b"", b"pad", b"\xff\x00", None])
def test_string_spec_json_round_trip(default):
    spec = ExtendedTensorSpec((4,), "string", name="s", varlen_default_value=default)
    if default is None:
        spec = ExtendedTensorSpec((4,), "string", name="s", is_sequence=True)
    data = json.loads(json.dumps(spec.to_dict()))
    assert data["dtype"] == "string"
    back = ExtendedTensorSpec.from_dict(data)
    assert back == spec and back.to_dict() == spec.to_dict()
    assert back.varlen_default_value == spec.varlen_default_value


def test_json_assets_round_trip_string_specs(tmp_path):
    path = tmp_path / "t2r_assets.json"
    write_t2r_assets_to_file(T2RAssets(STRINGS, STRINGS), path)
    loaded = load_t2r_assets_to_file(path)
    for struct in (loaded.feature_spec, loaded.label_spec):
        assert struct is not None
        for key, spec in STRINGS.items():
            assert struct[key].to_dict() == spec.to_dict()


def test_t2r_pbtxt_round_trip_writes_dt_string(tmp_path):
    flat = TensorSpecStruct(
        instruction=STRINGS.instruction,
        tags=STRINGS.tags,
        pose=ExtendedTensorSpec((None, 2), torch.float32, name="pose", is_optional=True),
    )
    text = t2r_assets_to_pbtxt(T2RAssets(flat, global_step=7))
    # T2R's text format: DT_STRING is enum value 7, unknown dims -1.
    assert 'key: "instruction"\n    value {\n      dtype: 7\n' in text
    assert "shape: -1" in text
    path = tmp_path / "t2r_assets.pbtxt"
    path.write_text(text)
    loaded = load_t2r_assets_to_file(path)
    assert loaded.global_step == 7 and loaded.label_spec is None
    for key, spec in flat.items():
        assert loaded.feature_spec[key].to_dict() == spec.to_dict(), key


def test_pbtxt_as_tensor2robot_wrote_a_string_spec(tmp_path):
    path = tmp_path / "t2r_assets.pbtxt"
    path.write_text(
        'feature_spec { key_value { key: "instruction" value { dtype: 7 name: "lang" } } '
        'key_value { key: "words" value { shape: 4 dtype: 7 name: "w" '
        "varlen_default_value: 0.0 } } }"
    )
    loaded = load_t2r_assets_to_file(path).feature_spec
    assert loaded.instruction.dtype is specs.string and loaded.instruction.name == "lang"
    assert loaded.words.varlen_default_value == b""


def test_pbtxt_cannot_hold_a_non_empty_bytes_default():
    spec = ExtendedTensorSpec((4,), "string", name="w", varlen_default_value=b"pad")
    with pytest.raises(SpecError, match="'w'.*float varlen defaults only"):
        t2r_assets_to_pbtxt(T2RAssets(TensorSpecStruct(w=spec)))


def test_random_and_constant_string_data():
    data = make_random_numpy(STRINGS, batch_size=2, sequence_length=4, seed=0)
    for key, shape in (("instruction", (2,)), ("tags", (2, 3)), ("steps", (2, 4, 2))):
        array = data[key]
        assert array.dtype == object and array.shape == shape, key
        assert all(isinstance(v, bytes) and 1 <= len(v) <= 8 for v in array.reshape(-1))
    assert data.pose.dtype == np.float32
    again = make_random_numpy(STRINGS, batch_size=2, sequence_length=4, seed=0)
    assert again.instruction.tolist() == data.instruction.tolist()
    validate_and_pack(STRINGS, data, ignore_batch=True)

    only_strings = TensorSpecStruct(instruction=STRINGS.instruction, tags=STRINGS.tags)
    const = make_constant_numpy(only_strings, b"go", batch_size=3)
    assert const.tags.shape == (3, 3) and set(const.tags.reshape(-1)) == {b"go"}
    assert make_constant_numpy(STRINGS, 0, batch_size=None).instruction.item() == b"0"
    with pytest.raises(SpecError, match="'pose'.*string"):
        make_constant_numpy(STRINGS, "go")

    tensors = make_random_tensors(STRINGS, generator=torch.Generator().manual_seed(0))
    assert isinstance(tensors.pose, torch.Tensor)
    assert isinstance(tensors.instruction, np.ndarray) and tensors.instruction.dtype == object
    converted = to_tensors(data, STRINGS)
    assert converted.instruction is data.instruction
    assert isinstance(converted.pose, torch.Tensor)


def test_pad_or_clip_string_arrays():
    spec = STRINGS.tags
    short = np.array([[b"a"], [b"b"]], dtype=object)
    padded = pad_or_clip_tensor_to_spec_shape(short, spec)
    assert padded.tolist() == [[b"a", b"", b""], [b"b", b"", b""]]
    long = np.array([[b"a", b"b", b"c", b"d"]], dtype=object)
    assert pad_or_clip_tensor_to_spec_shape(long, spec).tolist() == [[b"a", b"b", b"c"]]


def test_validation_names_the_key_for_string_mismatches():
    data = make_random_numpy(STRINGS, batch_size=2, seed=1)
    bad = TensorSpecStruct(data)
    bad["instruction"] = np.array([b"ok", 3], dtype=object)
    with pytest.raises(SpecError, match="'instruction'.*bytes or str elements, got int 3"):
        validate_and_pack(STRINGS, bad, ignore_batch=True)
    bad = TensorSpecStruct(data)
    bad["pose"] = np.array([[b"x", b"y"], [b"z", b"w"]], dtype=object)
    with pytest.raises(SpecError, match="'pose'.*expected shape \\(2,\\) dtype torch.float32"):
        validate_and_pack(STRINGS, bad, ignore_batch=True)
    bad = TensorSpecStruct(data)
    bad["instruction"] = np.zeros(2, np.float32)
    with pytest.raises(SpecError, match="'instruction'.*dtype t2r.specs.string"):
        validate_and_pack(STRINGS, bad, ignore_batch=True)
    # Fixed-width numpy bytes and str arrays are string data too.
    ok = TensorSpecStruct(data)
    ok["instruction"] = np.array([b"a", b"bc"])
    ok["tags"] = np.array([["a", "b", "c"], ["d", "e", "f"]])
    validate_and_pack(STRINGS, ok, ignore_batch=True)
