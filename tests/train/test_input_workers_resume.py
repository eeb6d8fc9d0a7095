"""A resumed run reads with the worker count of the run it continues.

The data order of a record generator depends on its number of DataLoader
workers; left to choose it, a generator picks it from the CPUs, which a resumed
job may not have the same number of. The checkpoint keeps the count.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from t2r.data import DefaultRecordInputGenerator, TFRecordWriter, create_serialize_tf_example_fn
from t2r.data.input_generators import NUM_WORKERS_ENV
from t2r.train import latest_checkpoint, train_eval_model

from .models import TinyRegression


def _write(directory: Path) -> str:
    model = TinyRegression()
    serialize = create_serialize_tf_example_fn(
        model.get_feature_specification("train"), model.get_label_specification("train")
    )
    directory.mkdir()
    generator = torch.Generator().manual_seed(3)
    for f in range(3):
        with TFRecordWriter(directory / f"data-{f}.tfrecord") as writer:
            for _ in range(12):
                x = torch.rand(3, generator=generator)
                writer.write(serialize({"x": x.numpy()}, {"target": x[:2].numpy()}))
    return str(directory / "data-*.tfrecord")


def test_a_resumed_run_reuses_the_worker_count_it_started_with(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pattern = _write(tmp_path / "data")
    used: list[int] = []
    create = DefaultRecordInputGenerator.create_dataset

    def spy(self: DefaultRecordInputGenerator, mode: str) -> Any:
        dataset = create(self, mode)
        used.append(dataset.dataloader.num_workers)
        return dataset

    monkeypatch.setattr(DefaultRecordInputGenerator, "create_dataset", spy)

    def run(steps: int) -> None:
        train_eval_model(
            TinyRegression(),
            DefaultRecordInputGenerator(pattern, batch_size=4),  # num_workers left to choose
            None,
            max_train_steps=steps,
            model_dir=tmp_path / "model",
            save_checkpoints_steps=2,
            seed=0,
            show_progress=False,
        )

    monkeypatch.setenv(NUM_WORKERS_ENV, "2")  # the first machine's choice
    run(2)
    assert used == [2]
    monkeypatch.setenv(NUM_WORKERS_ENV, "0")  # a machine that would choose another
    run(4)
    assert used == [2, 2]
    checkpoint = latest_checkpoint(tmp_path / "model")
    assert checkpoint is not None and checkpoint.global_step == 4
