"""Resuming a run whose model changed: the error names what does not fit."""

from __future__ import annotations

import pytest
from torch import nn

from t2r.train import latest_checkpoint, train_eval_model

from .models import SeededInput, TinyRegression


class WiderRegression(TinyRegression):
    """TinyRegression with a wider hidden layer and an extra head."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.hidden = nn.Linear(3, 32)
        self.out = nn.Linear(32, 2)
        self.extra = nn.Linear(2, 2)


def _train(model, model_dir, steps):
    return train_eval_model(
        model,
        SeededInput(),
        max_train_steps=steps,
        model_dir=model_dir,
        save_checkpoints_steps=2,
        show_progress=False,
    )


def test_resuming_into_a_changed_architecture_names_checkpoint_keys_and_remedy(tmp_path):
    _train(TinyRegression(), tmp_path, 2)
    checkpoint = latest_checkpoint(tmp_path)
    with pytest.raises(RuntimeError) as info:
        _train(WiderRegression(), tmp_path, 4)
    message = str(info.value)
    assert f"Checkpoint {checkpoint.path} does not fit WiderRegression" in message
    assert "missing from the checkpoint (2): extra.weight, extra.bias" in message
    assert "hidden.weight: checkpoint (16, 3), model (32, 3)" in message
    assert "new model_dir" in message and "init_from_checkpoint(" in message


def test_unexpected_keys_are_named(tmp_path):
    _train(WiderRegression(), tmp_path, 2)
    expected = r"unexpected in the checkpoint \(2\): extra.bias, extra.weight"
    with pytest.raises(RuntimeError, match=expected):
        _train(TinyRegression(), tmp_path, 4)
