"""Checkpoints under faults: non-finite losses and weights, corrupt newest checkpoints."""

from __future__ import annotations

import json
import logging
import math
import os

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from t2r import specs
from t2r.predictors import CheckpointPredictor
from t2r.train import (
    Checkpoint,
    CheckpointError,
    NonFiniteCheckpointError,
    TrainingState,
    latest_checkpoint,
    list_checkpoints,
    load_model_weights,
    restore_checkpoint,
    restore_latest_checkpoint,
    save_checkpoint,
    seed_everything,
    train_eval_model,
)

from .models import SeededInput, TinyRegression


class NanFromBatch(SeededInput):
    """Labels turn NaN from batch `first_bad` (0-based) on."""

    def __init__(self, first_bad: int) -> None:
        super().__init__()
        self.first_bad = first_bad

    def create_dataset(self, mode):
        for i, (features, labels) in enumerate(super().create_dataset(mode)):
            scale = math.nan if i >= self.first_bad else 1.0
            yield features, specs.TensorSpecStruct(target=labels.target * scale)


def _train(model_dir, steps, generator=None, **kwargs):
    seed_everything(0)
    model = TinyRegression()
    kwargs.setdefault("show_progress", False)
    kwargs.setdefault("save_checkpoints_steps", 2)
    train_eval_model(
        model,
        generator or SeededInput(),
        max_train_steps=steps,
        model_dir=model_dir,
        **kwargs,
    )
    return model


def _all_finite(checkpoint) -> bool:
    weights = load_file(str(checkpoint.path / "model.safetensors"))
    return all(bool(torch.isfinite(t).all()) for t in weights.values())


# ------------------------------------------------------------------ non-finite
def test_nan_between_logging_steps_never_reaches_a_checkpoint(tmp_path):
    # Loss NaN from step 3; logging only every 100 steps; a checkpoint every 2.
    with pytest.raises(FloatingPointError) as info:
        _train(tmp_path, 8, NanFromBatch(first_bad=2), log_every_n_steps=100)
    message = str(info.value)
    assert "not finite (NaN or inf) at step 3" in message
    assert f"last good checkpoint is {tmp_path / 'checkpoints' / 'ckpt-000000002'}" in message
    assert isinstance(info.value, NonFiniteCheckpointError)
    assert info.value.global_step == 3 and info.value.last_good.global_step == 2
    assert [c.global_step for c in list_checkpoints(tmp_path)] == [2]
    assert _all_finite(latest_checkpoint(tmp_path))
    # A restart resumes from the good checkpoint (and stops again at the same step).
    with pytest.raises(FloatingPointError, match="at step 3"):
        _train(tmp_path, 8, NanFromBatch(first_bad=2), log_every_n_steps=100)
    assert [c.global_step for c in list_checkpoints(tmp_path)] == [2]


def test_nan_loss_is_named_even_with_no_checkpoint_before(tmp_path):
    with pytest.raises(FloatingPointError, match="at step 1.*last good checkpoint is none"):
        _train(tmp_path, 4, NanFromBatch(first_bad=0), log_every_n_steps=100)
    assert list_checkpoints(tmp_path) == []


def test_sigterm_after_a_nan_loss_saves_nothing(tmp_path):
    from t2r.train import CallbackHook, HookBuilder

    class Interrupt(HookBuilder):
        def create_hooks(self, t2r_model, model_dir):
            def after_step(step, scalars):
                if step == 3:
                    raise KeyboardInterrupt

            return [CallbackHook(after_step=after_step)]

    with pytest.raises(FloatingPointError, match="at step 3"):
        _train(
            tmp_path,
            8,
            NanFromBatch(first_bad=2),
            log_every_n_steps=100,
            save_checkpoints_steps=100,
            train_hook_builders=[Interrupt()],
        )
    assert list_checkpoints(tmp_path) == []


def test_save_checkpoint_refuses_non_finite_weights(tmp_path):
    model = TinyRegression()
    save_checkpoint(tmp_path, model, TrainingState(1, 1))
    with torch.no_grad():
        model.out.weight[0, 0] = math.inf
    with pytest.raises(NonFiniteCheckpointError) as info:
        save_checkpoint(tmp_path, model, TrainingState(2, 2))
    assert str(info.value) == (
        "Not writing the checkpoint of step 2: 1 tensor(s) hold non-finite values "
        f"(out.weight). The last good checkpoint is {tmp_path / 'checkpoints' / 'ckpt-000000001'}"
        " (step 1)."
    )
    assert [c.global_step for c in list_checkpoints(tmp_path)] == [1]
    assert [p.name for p in (tmp_path / "checkpoints").iterdir()] == ["ckpt-000000001"]


def test_buffers_may_hold_inf_but_not_nan(tmp_path):
    model = TinyRegression()
    model.register_buffer("mask", torch.tensor([0.0, -math.inf]))
    save_checkpoint(tmp_path, model, TrainingState(1, 1))
    model.mask[0] = math.nan
    with pytest.raises(NonFiniteCheckpointError, match=r"\(mask\)"):
        save_checkpoint(tmp_path, model, TrainingState(2, 2))


# --------------------------------------------------------------------- corrupt
def _truncate(path, keep=40):
    path.write_bytes(path.read_bytes()[:keep])


CORRUPTIONS = {
    "truncated model.safetensors": lambda c: _truncate(c / "model.safetensors"),
    "truncated optimizer.safetensors": lambda c: _truncate(c / "optimizer.safetensors"),
    "missing model.safetensors": lambda c: (c / "model.safetensors").unlink(),
    "broken state.json": lambda c: (c / "state.json").write_text('{"global_step": 4, "optim'),
    "state.json not an object": lambda c: (c / "state.json").write_text("[1, 2]"),
    "state.json not utf-8": lambda c: (c / "state.json").write_bytes(b"\xff\xfe{"),
    "state.json without tensors": lambda c: (c / "state.json").write_text(
        json.dumps(
            {**json.loads((c / "state.json").read_text()), "rng": {"__tensor__": "rng.gone"}}
        )
    ),
    "nan weights (older t2r)": lambda c: _nan_weights(c / "model.safetensors"),
}


def _nan_weights(path):
    from safetensors.torch import save_file

    weights = load_file(str(path))
    weights["out.bias"] = torch.full_like(weights["out.bias"], math.nan)
    save_file(weights, str(path))


@pytest.mark.parametrize("corruption", sorted(CORRUPTIONS))
def test_resume_falls_back_from_a_corrupt_newest_checkpoint(tmp_path, caplog, corruption):
    _train(tmp_path, 4)
    newest = latest_checkpoint(tmp_path).path
    CORRUPTIONS[corruption](newest)
    model = TinyRegression()
    optimizer = model.create_optimizer()
    with caplog.at_level(logging.WARNING, logger="t2r.train.checkpoints"):
        checkpoint, state = restore_latest_checkpoint(tmp_path, model, optimizer)
    assert checkpoint.global_step == 2 and state.global_step == 2
    warning = caplog.text
    assert f"Skipping corrupt checkpoint {newest}" in warning
    assert "Fell back to" in warning and "ckpt-000000002 (step 2)" in warning
    # Restoring it directly raises, naming the checkpoint (and the file).
    with pytest.raises(CheckpointError) as info:
        restore_checkpoint(Checkpoint(newest, 4), TinyRegression())
    assert str(newest) in str(info.value) and info.value.path == newest


def test_training_resumes_from_the_newest_intact_checkpoint(tmp_path, caplog):
    reference = _train(tmp_path / "straight", 6)
    _train(tmp_path / "run", 4)
    _truncate(latest_checkpoint(tmp_path / "run").path / "model.safetensors")
    with caplog.at_level(logging.WARNING):
        resumed = _train(tmp_path / "run", 6)
    assert "ckpt-000000004" in caplog.text and "corrupt" in caplog.text
    # Steps 3..6 were retrained from step 2; the data order is fixed by the step.
    assert latest_checkpoint(tmp_path / "run").global_step == 6
    for name, value in reference.state_dict().items():
        assert torch.equal(value, resumed.state_dict()[name]), name


def test_every_checkpoint_corrupt_raises_naming_each(tmp_path):
    _train(tmp_path, 4)
    for checkpoint in list_checkpoints(tmp_path):
        (checkpoint.path / "state.json").write_text("{")
    with pytest.raises(CheckpointError, match="Every checkpoint in .* is corrupt") as info:
        _train(tmp_path, 6)
    assert "ckpt-000000002/state.json" in str(info.value)
    assert "ckpt-000000004/state.json" in str(info.value)


def test_load_model_weights_names_the_file_and_leaves_the_model(tmp_path):
    _train(tmp_path, 2)
    checkpoint = latest_checkpoint(tmp_path)
    _truncate(checkpoint.path / "model.safetensors")
    model = TinyRegression()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(CheckpointError) as info:
        load_model_weights(checkpoint, model)
    assert str(info.value).startswith(f"{checkpoint.path / 'model.safetensors'}: cannot read")
    assert info.value.path == checkpoint.path
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_checkpoint_predictor_falls_back_with_a_warning(tmp_path, caplog):
    _train(tmp_path, 4)
    newest = latest_checkpoint(tmp_path).path
    _truncate(newest / "model.safetensors")
    predictor = CheckpointPredictor(TinyRegression(), tmp_path, timeout=0)
    with caplog.at_level(logging.WARNING):
        assert predictor.restore()
    assert predictor.global_step == 2
    assert f"Skipping corrupt checkpoint {newest}" in caplog.text
    assert "model.safetensors: cannot read" in caplog.text
    out = predictor.predict({"x": np.zeros(3, np.float32)})["inference_output"]
    assert out.shape == (1, 2)
    # Polling again keeps the good one without warning again.
    caplog.clear()
    assert predictor.restore() and predictor.global_step == 2
    assert "corrupt" not in caplog.text
    # Training resumes from step 2 and writes step 4 again: the predictor takes it.
    _train(tmp_path, 4)
    assert predictor.restore() and predictor.global_step == 4


def test_temporaries_of_killed_writers_are_removed_by_the_next_save(tmp_path):
    import subprocess
    import sys

    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    dead_pid = int(dead.stdout)
    root = tmp_path / "checkpoints"
    root.mkdir()
    stale = root / f".ckpt-000000005.tmp-{dead_pid}-abcd"
    live = root / f".ckpt-000000005.tmp-{os.getpid()}-abcd"
    for path in (stale, live):
        path.mkdir()
        (path / "model.safetensors").write_bytes(b"partial")
    save_checkpoint(tmp_path, TinyRegression(), TrainingState(1, 1))
    assert sorted(p.name for p in root.iterdir()) == sorted(["ckpt-000000001", live.name])
