"""train_eval_model unchanged under torchrun: 2 CPU processes with gloo."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from t2r import specs
from t2r.data import TFRecordWriter, create_serialize_tf_example_fn
from t2r.train import list_checkpoints
from t2r.train.distributed import resolve_device

from .torchrun import run_two_processes


def _write_records(directory: Path, num_files: int = 4, per_file: int = 16) -> str:
    feature_spec = specs.TensorSpecStruct(
        x=specs.ExtendedTensorSpec((3,), torch.float32, name="x"),
        id=specs.ExtendedTensorSpec((), torch.int64, name="id"),
    )
    label_spec = specs.TensorSpecStruct(
        target=specs.ExtendedTensorSpec((2,), torch.float32, name="t")
    )
    serialize = create_serialize_tf_example_fn(feature_spec, label_spec)
    rng = np.random.default_rng(0)
    for f in range(num_files):
        with TFRecordWriter(directory / f"data-{f}.tfrecord") as writer:
            for i in range(per_file):
                x = rng.random(3, dtype=np.float32)
                features = {"x": x, "id": np.int64(f * per_file + i)}
                writer.write(serialize(features, {"target": x[:2] * 2}))
    return str(directory / "data-*.tfrecord")


@pytest.mark.slow
def test_two_process_training_keeps_ranks_identical_on_disjoint_data(tmp_path):
    pattern = _write_records(tmp_path)
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    run_two_processes("tests.train.run_distributed", str(model_dir), pattern)
    w0 = load_file(str(model_dir / "weights_rank0.safetensors"))
    w1 = load_file(str(model_dir / "weights_rank1.safetensors"))
    for name in w0:
        assert torch.equal(w0[name], w1[name]), name
    ids0 = json.loads((model_dir / "ids_rank0.json").read_text())
    ids1 = json.loads((model_dir / "ids_rank1.json").read_text())
    # 6 steps x 4 examples stay within each rank's first pass over its 2 of the 4
    # files (the shuffle buffer is small), so no id may appear on both ranks.
    assert len(ids0) == len(ids1) == 6 * 4
    assert not set(ids0) & set(ids1)
    # Only rank 0 wrote the checkpoint, and it holds the shared weights.
    checkpoint = list_checkpoints(model_dir)[-1]
    saved = load_file(str(checkpoint.path / "model.safetensors"))
    assert all(torch.equal(saved[k], w0[k]) for k in w0)


def test_auto_device_refuses_more_local_ranks_than_gpus(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert resolve_device("auto", local_rank=0) == torch.device("cuda", 0)
    with pytest.raises(ValueError, match=r"Local rank 1 needs CUDA device 1, but this node has 1"):
        resolve_device("auto", local_rank=1)
    assert resolve_device("cpu", local_rank=1) == torch.device("cpu")
