from __future__ import annotations

import json

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

FEATURES = TensorSpecStruct()
FEATURES["state/image"] = ExtendedTensorSpec(
    (64, 64, 3), torch.uint8, name="state/image", data_format="jpeg"
)
FEATURES["seq/actions"] = ExtendedTensorSpec(
    (None, 7), torch.float32, name="a", is_sequence=True, dataset_key="d1"
)
FEATURES["varlen"] = ExtendedTensorSpec(
    (4,), torch.int64, name="v", is_optional=True, varlen_default_value=-1
)
LABELS = TensorSpecStruct(target_pose=ExtendedTensorSpec((2,), torch.bfloat16, name="target_pose"))

# What Tensor2Robot's text_format.MessageToString wrote for a T2RAssets proto.
T2R_PBTXT = """
feature_spec {
  key_value {
    key: "state/image"
    value {
      shape: 64
      shape: 64
      shape: 3
      dtype: 4
      name: "state/image"
      is_optional: false
      is_extracted: false
      data_format: "jpeg"
    }
  }
  key_value {
    key: "action"
    value {
      shape: -1
      shape: 2
      dtype: 1
      name: "action"
      is_optional: true
      is_extracted: false
    }
  }
  key_value {
    key: "varlen"
    value {
      shape: 5
      dtype: 9
      name: "varlen"
      varlen_default_value: 0.5
    }
  }
}
label_spec {
  key_value {
    key: "reward"
    value {
      shape: 1
      dtype: 14
      name: "reward"
      is_optional: false
      is_extracted: false
      dataset_key: "d2"
    }
  }
}
global_step: 1234
"""


def _dicts(struct: TensorSpecStruct) -> dict:
    return {k: v.to_dict() for k, v in struct.items()}


def test_json_round_trip_is_lossless(tmp_path):
    path = tmp_path / "t2r_assets.json"
    write_t2r_assets_to_file(
        T2RAssets(FEATURES, LABELS, global_step=42, metadata={"model": "M"}), path
    )
    loaded = load_t2r_assets_to_file(path)
    assert _dicts(loaded.feature_spec) == _dicts(FEATURES)
    assert loaded.feature_spec.keys() == FEATURES.keys()
    assert _dicts(loaded.label_spec) == _dicts(LABELS)
    assert loaded.global_step == 42
    assert loaded.metadata == {"model": "M"}
    assert loaded.feature_spec["seq/actions"].shape == (None, 7)
    assert loaded.feature_spec["seq/actions"].is_sequence


def test_write_is_atomic_and_leaves_no_temp_files(tmp_path):
    path = tmp_path / "t2r_assets.json"
    write_t2r_assets_to_file(T2RAssets(FEATURES), path)
    write_t2r_assets_to_file(T2RAssets(FEATURES, global_step=2), path)
    assert [p.name for p in tmp_path.iterdir()] == ["t2r_assets.json"]
    assert json.loads(path.read_text())["global_step"] == 2


def test_write_rejects_non_spec_leaves(tmp_path):
    with pytest.raises(SpecError, match="'x'"):
        write_t2r_assets_to_file(T2RAssets(TensorSpecStruct(x=torch.zeros(1))), tmp_path / "a.json")
    assert list(tmp_path.iterdir()) == []


def test_reads_tensor2robot_pbtxt(tmp_path):
    path = tmp_path / "t2r_assets.pbtxt"
    path.write_text(T2R_PBTXT)
    assets = load_t2r_assets_to_file(path)
    assert assets.global_step == 1234
    image = assets.feature_spec["state/image"]
    assert (image.shape, image.dtype, image.name, image.data_format) == (
        (64, 64, 3),
        torch.uint8,
        "state/image",
        "jpeg",
    )
    action = assets.feature_spec.action
    assert (action.shape, action.dtype, action.is_optional) == ((None, 2), torch.float32, True)
    varlen = assets.feature_spec.varlen
    assert (varlen.shape, varlen.dtype, varlen.varlen_default_value) == ((5,), torch.int64, 0.5)
    reward = assets.label_spec.reward
    assert (reward.dtype, reward.dataset_key) == (torch.bfloat16, "d2")


def test_pbtxt_unknown_dtype_enum_is_a_clear_error(tmp_path):
    path = tmp_path / "t2r_assets.pbtxt"
    path.write_text(
        'feature_spec { key_value { key: "instruction" value { dtype: 21 name: "lang" } } }'
    )
    with pytest.raises(SpecError, match="'instruction'.*unknown TF dtype enum 21"):
        load_t2r_assets_to_file(path)


def test_bad_files_name_the_path(tmp_path):
    garbage = tmp_path / "garbage.pbtxt"
    garbage.write_text("this is { not a proto")
    with pytest.raises(SpecError, match="garbage.pbtxt"):
        load_t2r_assets_to_file(garbage)
    with pytest.raises(SpecError, match="No assets file"):
        load_t2r_assets_to_file(tmp_path / "missing.json")
    other_json = tmp_path / "other.json"
    other_json.write_text('{"format": "something else"}')
    with pytest.raises(SpecError, match="not a t2r assets file"):
        load_t2r_assets_to_file(other_json)
    future = tmp_path / "future.json"
    future.write_text('{"format": "t2r_assets", "format_version": 99, "feature_spec": {}}')
    with pytest.raises(SpecError, match="version 99"):
        load_t2r_assets_to_file(future)
