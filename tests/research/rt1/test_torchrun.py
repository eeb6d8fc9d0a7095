"""RT-1 under torchrun: DistributedDataParallel over 2 gloo CPU processes."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from t2r.train import list_checkpoints
from tests.train.torchrun import run_two_processes


@pytest.mark.slow
def test_two_ranks_train_rt1_on_different_data_and_stay_identical(tmp_path):
    run_two_processes("tests.research.rt1.run_distributed", str(tmp_path))
    w0 = load_file(str(tmp_path / "weights_rank0.safetensors"))
    w1 = load_file(str(tmp_path / "weights_rank1.safetensors"))
    assert w0.keys() == w1.keys()
    for name in w0:
        if "running_" in name:
            # BatchNorm statistics are per rank (DDP broadcasts rank 0's before each
            # forward; the last update is local, and SyncBatchNorm is CUDA-only).
            continue
        assert torch.equal(w0[name], w1[name]), name
    seen0 = load_file(str(tmp_path / "seen_rank0.safetensors"))
    seen1 = load_file(str(tmp_path / "seen_rank1.safetensors"))
    assert not torch.equal(seen0["image"], seen1["image"])  # each rank had its own batch
    # Training moved the transformer and the FiLM layers (gradients reached them).
    assert seen0["changed/transformer.output.weight"].item() == 1.0
    assert seen0["changed/image_encoder.films.0.mult.weight"].item() == 1.0
    checkpoint = list_checkpoints(tmp_path)[-1]
    assert checkpoint.global_step == 3
    saved = load_file(str(checkpoint.path / "model.safetensors"))
    assert all(torch.equal(saved[k], w0[k]) for k in saved)
