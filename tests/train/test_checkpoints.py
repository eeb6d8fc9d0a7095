from __future__ import annotations

import random

import numpy as np
import torch

from t2r.models import create_warmup_cosine_schedule
from t2r.train import (
    TrainingState,
    latest_checkpoint,
    list_checkpoints,
    restore_checkpoint,
    save_checkpoint,
)

from .models import TinyRegression


def _trained(seed: int = 0):
    torch.manual_seed(seed)
    model = TinyRegression()
    optimizer = model.create_optimizer()
    scheduler = create_warmup_cosine_schedule(optimizer, warmup_steps=3, total_steps=10)
    for _ in range(4):
        optimizer.zero_grad()
        model.out(model.hidden(torch.rand(4, 3))).pow(2).mean().backward()
        optimizer.step()
        scheduler.step()
    return model, optimizer, scheduler


def test_round_trip_restores_everything(tmp_path):
    model, optimizer, scheduler = _trained()
    random.seed(5)
    np.random.seed(5)
    torch.manual_seed(5)
    expected_draws = (random.random(), np.random.rand(), torch.rand(1))
    random.seed(5)
    np.random.seed(5)
    torch.manual_seed(5)
    save_checkpoint(tmp_path, model, TrainingState(4, 4, {"note": "x"}), optimizer, scheduler)

    fresh, fresh_opt, fresh_sched = _trained(seed=1)
    assert not torch.equal(fresh.out.weight, model.out.weight)
    state = restore_checkpoint(latest_checkpoint(tmp_path), fresh, fresh_opt, fresh_sched)
    assert (state.global_step, state.input_position, state.extra) == (4, 4, {"note": "x"})
    for (name, a), b in zip(model.state_dict().items(), fresh.state_dict().values()):
        assert torch.equal(a, b), name
    assert fresh_sched.state_dict()["last_epoch"] == scheduler.state_dict()["last_epoch"]
    for key, value in optimizer.state_dict()["state"][0].items():
        assert torch.equal(
            torch.as_tensor(value), torch.as_tensor(fresh_opt.state_dict()["state"][0][key])
        )
    assert fresh_opt.param_groups[0]["lr"] == optimizer.param_groups[0]["lr"]
    draws = (random.random(), np.random.rand(), torch.rand(1))
    assert draws[:2] == expected_draws[:2] and torch.equal(draws[2], expected_draws[2])


def test_keeps_newest_and_ignores_incomplete(tmp_path):
    model, optimizer, _ = _trained()
    for step in (1, 2, 3, 4):
        save_checkpoint(
            tmp_path, model, TrainingState(step, step), optimizer, keep_checkpoint_max=2
        )
    assert [c.global_step for c in list_checkpoints(tmp_path)] == [3, 4]
    # A crash mid-write leaves a temporary directory, or a directory without state.json.
    (tmp_path / "checkpoints" / ".ckpt-000000009.tmp-123-abcd").mkdir()
    (tmp_path / "checkpoints" / "ckpt-000000010").mkdir()
    (tmp_path / "checkpoints" / "ckpt-000000010" / "model.safetensors").write_bytes(b"partial")
    assert latest_checkpoint(tmp_path).global_step == 4


def test_no_pickle_on_disk(tmp_path):
    model, optimizer, scheduler = _trained()
    checkpoint = save_checkpoint(tmp_path, model, TrainingState(1, 1), optimizer, scheduler)
    assert sorted(p.name for p in checkpoint.path.iterdir()) == [
        "model.safetensors",
        "optimizer.safetensors",
        "state.json",
    ]
