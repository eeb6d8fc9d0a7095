"""Malformed t2r_assets.json content raises AssetsError naming the file and the field, only."""

from __future__ import annotations

import json
import random
import re

import pytest
import torch

from t2r.export import load_export
from t2r.export.layout import VersionReader
from t2r.specs import (
    AssetsError,
    ExtendedTensorSpec,
    T2RAssets,
    TensorSpecStruct,
    load_t2r_assets_to_file,
    write_t2r_assets_to_file,
)

WRONG_VALUES = [
    None,
    True,
    -1,
    1.5,
    10**400,
    "",
    "x" * 300,
    "\ud800",
    [],
    [1, "a", None],
    {},
    {"shape": "abc"},
    {"a": {"b": {"c": [[[]]]}}},
]


def _valid_assets(tmp_path):
    path = tmp_path / "t2r_assets.json"
    spec = TensorSpecStruct(
        x=ExtendedTensorSpec((3,), torch.float32, name="x"),
        image=ExtendedTensorSpec((8, 8, 3), torch.uint8, name="image", data_format="jpeg"),
    )
    metadata = {
        "export_format_version": 1,
        "program_format": "torch.export",
        "program_file": "model.pt2",
        "weights_file": "model.safetensors",
        "onnx_file": None,
        "input_names": ["x"],
        "output_names": ["y"],
        "files": {"model.pt2": {"sha256": "0" * 64, "size": 1}},
        "write_id": "ab",
    }
    write_t2r_assets_to_file(T2RAssets(spec, spec, 5, metadata), path)
    return path, json.loads(path.read_text())


def _fields(data, prefix=()):
    """Every (path of keys) in a JSON tree."""
    if isinstance(data, dict):
        for key, value in data.items():
            yield (*prefix, key)
            yield from _fields(value, (*prefix, key))


def _set(data, keys, value):
    data = json.loads(json.dumps(data))
    node = data
    for key in keys[:-1]:
        node = node[key]
    node[keys[-1]] = value
    return data


def _dump(data) -> bytes:
    return json.dumps(data).encode("utf-8", "surrogatepass")


def _mutations(valid: dict, rng: random.Random):
    fields = list(_fields(valid))
    for keys in fields:  # every field, every wrong type
        for value in WRONG_VALUES:
            yield f"{'.'.join(map(str, keys))}={value!r:.20}", _dump(_set(valid, keys, value))
    text = json.dumps(valid).encode()
    for depth in (50, 5000, 200_000):  # deep nesting, at the top and inside a field
        yield f"nested {depth}", b"[" * depth + b"]" * depth
        nested = json.dumps(valid).replace(
            '"metadata": {', '"metadata": {"deep": ' + "[" * depth + "]" * depth + ", ", 1
        )
        yield f"nested metadata {depth}", nested.encode()
    for _ in range(150):  # random damage: truncation, byte flips, invalid UTF-8
        data = bytearray(text)
        kind = rng.choice(["truncate", "flip", "utf8", "splice"])
        at = rng.randrange(len(data))
        if kind == "truncate":
            del data[at:]
        elif kind == "flip":
            data[at] ^= 1 << rng.randrange(8)
        elif kind == "utf8":
            data[at:at] = rng.choice([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\x80\x80"])
        else:
            data[at:at] = rng.choice([b'{"a":', b"[", b"]", b'"', b"1e999999", b"-", b"\x00"])
        yield f"{kind}@{at}", bytes(data)
    yield "not an object", b"[1, 2]"
    yield "empty", b""


def test_fuzzed_assets_raise_only_assets_error_naming_the_file(tmp_path):
    path, valid = _valid_assets(tmp_path)
    rng = random.Random(0)
    counts = {"loaded": 0, "refused": 0}
    for what, data in _mutations(valid, rng):
        path.write_bytes(data)
        try:
            load_t2r_assets_to_file(path)
            counts["loaded"] += 1
        except AssetsError as e:
            assert str(path) in str(e) and e.path == path, what
            counts["refused"] += 1
        try:  # the export loader also checks the metadata it relies on
            VersionReader(tmp_path).close()
        except AssetsError as e:
            assert str(path) in str(e), what
        except Exception as e:
            pytest.fail(f"{what}: {type(e).__name__}: {e}")
    assert counts["refused"] > 300 and counts["loaded"] > 0


@pytest.mark.parametrize(
    ("keys", "value", "field"),
    [
        (("feature_spec",), [], "feature_spec"),
        (("feature_spec", "x"), 3, "feature_spec['x']"),
        (("feature_spec", "x", "shape"), "abc", "feature_spec['x'].shape"),
        (("feature_spec", "x", "shape"), ["a"], "feature_spec['x']"),
        (("feature_spec", "x", "dtype"), "complex1024", "feature_spec['x']"),
        (("label_spec", "image", "name"), {}, "label_spec['image'].name"),
        (("feature_spec", "x", "is_optional"), 1, "feature_spec['x'].is_optional"),
        (("global_step",), "5", "global_step"),
        (("metadata",), [], "metadata"),
        (("metadata", "program_format"), "pickle", "metadata.program_format"),
        (("metadata", "input_names"), "x", "metadata.input_names"),
        (("metadata", "files", "model.pt2"), {"sha256": 1}, "metadata.files['model.pt2']"),
        (("metadata", "export_format_version"), "1", "metadata.export_format_version"),
    ],
)
def test_errors_name_the_field(tmp_path, keys, value, field):
    path, valid = _valid_assets(tmp_path)
    path.write_bytes(_dump(_set(valid, keys, value)))
    with pytest.raises(AssetsError, match=rf"t2r_assets\.json, field {re.escape(field)}:") as e:
        VersionReader(tmp_path).close()
    assert e.value.field == field


def test_bad_utf8_and_deep_nesting_name_the_file(tmp_path):
    path, _ = _valid_assets(tmp_path)
    path.write_bytes(b'{"format": "t2r_assets", "x": "\xff"}')
    with pytest.raises(AssetsError, match=r"t2r_assets\.json: is not UTF-8 \(byte offset 31\)"):
        load_t2r_assets_to_file(path)
    path.write_bytes(b"{" + b'"a":[' * 100_000)
    with pytest.raises(AssetsError, match=r"t2r_assets\.json: .*nested too deeply|invalid JSON"):
        load_t2r_assets_to_file(path)
    version = tmp_path / "1"
    version.mkdir()
    (version / "t2r_assets.json").write_bytes(b'{"a": ' + b"[" * 100_000)
    with pytest.raises(AssetsError, match=r"1/t2r_assets\.json: JSON nested too deeply"):
        load_export(version)
