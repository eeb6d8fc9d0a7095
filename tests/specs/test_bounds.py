"""Optional minimum/maximum on ExtendedTensorSpec (TF-Agents' BoundedTensorSpec)."""

from __future__ import annotations

import json
import pickle

import pytest
import torch

from t2r.specs import (
    ExtendedTensorSpec,
    SpecError,
    T2RAssets,
    TensorSpecStruct,
    load_t2r_assets_to_file,
    write_t2r_assets_to_file,
)


def test_bounds_scalar_or_per_entry_of_the_last_dim():
    spec = ExtendedTensorSpec((6, 3), torch.float32, name="wv", minimum=-1, maximum=[1, 2, 3])
    assert spec.minimum == -1.0 and spec.maximum == (1.0, 2.0, 3.0)
    assert spec.is_bounded
    assert not ExtendedTensorSpec((3,), torch.float32).is_bounded
    # from_spec keeps them unless replaced.
    copy = ExtendedTensorSpec.from_spec(spec, is_sequence=True)
    assert copy.minimum == -1.0 and copy.maximum == (1.0, 2.0, 3.0)
    assert ExtendedTensorSpec.from_spec(spec, maximum=5).maximum == 5.0
    assert pickle.loads(pickle.dumps(spec)).maximum == (1.0, 2.0, 3.0)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"minimum": -1.0}, "give both minimum and maximum"),
        (
            {"minimum": [0.0, 0.0], "maximum": 1.0},
            r"one number per entry of the last dimension \(3\)",
        ),
        ({"minimum": 2.0, "maximum": [1.0, 3.0, 3.0]}, "minimum 2.0 exceeds maximum"),
        ({"minimum": float("nan"), "maximum": 1.0}, "must be finite"),
    ],
)
def test_bad_bounds_name_the_spec(kwargs, message):
    with pytest.raises(SpecError, match=message) as info:
        ExtendedTensorSpec((3,), torch.float32, name="action/world_vector", **kwargs)
    assert "'action/world_vector'" in str(info.value)


def test_string_specs_take_no_bounds():
    with pytest.raises(SpecError, match="bounds are for numeric specs"):
        ExtendedTensorSpec((), bytes, name="text", minimum=0, maximum=1)


def test_bounds_round_trip_through_assets_json(tmp_path):
    features = TensorSpecStruct(
        x=ExtendedTensorSpec((3,), torch.float32, name="x", minimum=[-1, -2, -3], maximum=1.5)
    )
    labels = TensorSpecStruct(y=ExtendedTensorSpec((2,), torch.float32, name="y"))
    path = tmp_path / "t2r_assets.json"
    write_t2r_assets_to_file(T2RAssets(features, labels, global_step=3), path)
    data = json.loads(path.read_text())
    assert data["feature_spec"]["x"]["minimum"] == [-1.0, -2.0, -3.0]
    assert "minimum" not in data["label_spec"]["y"]  # unbounded specs serialize as before
    loaded = load_t2r_assets_to_file(path)
    assert loaded.feature_spec["x"].minimum == (-1.0, -2.0, -3.0)
    assert loaded.feature_spec["x"].maximum == 1.5
    assert loaded.label_spec["y"].minimum is None
