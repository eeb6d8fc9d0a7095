"""The meta data path: per-task files -> meta batches, meta examples, pose_env collect."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from t2r.data import TFRecordWriter, create_serialize_tf_example_fn
from t2r.meta_learning.meta_data import (
    MetaRecordInputGenerator,
    base_specs_from_meta,
    make_meta_example,
    parse_meta_examples,
)
from t2r.modes import ModeKeys
from tests.meta_learning.models import LinearModel, MAMLLinearModel

NC, NI = 3, 2  # MAMLLinearModel's


def _records(task: int, count: int) -> list[bytes]:
    """x = (task, sample, 0), target = (task, sample)."""
    model = LinearModel()
    serialize = create_serialize_tf_example_fn(
        model.get_feature_specification(ModeKeys.TRAIN),
        model.get_label_specification(ModeKeys.TRAIN),
    )
    return [
        serialize(
            {"x": np.array([task, i, 0], np.float32)}, {"target": np.array([task, i], np.float32)}
        )
        for i in range(count)
    ]


def _task_files(tmp_path, counts: list[int]) -> list[str]:
    paths = []
    for task, count in enumerate(counts):
        path = tmp_path / f"gs0_t0_task{task}.tfrecord"
        with TFRecordWriter(path) as writer:
            for record in _records(task, count):
                writer.write(record)
        paths.append(str(path))
    return paths


def test_base_specs_are_recovered_from_the_meta_spec() -> None:
    model = MAMLLinearModel()
    features, labels, nc, ni = base_specs_from_meta(
        model.get_feature_specification_for_packing(ModeKeys.TRAIN)
    )
    assert (nc, ni) == (NC, NI)
    assert features["x"].name == "x" and features["x"].shape == (3,)
    assert labels["target"].name == "target" and labels["target"].shape == (2,)
    with pytest.raises(ValueError, match="condition/features"):
        base_specs_from_meta(LinearModel().get_feature_specification(ModeKeys.TRAIN))


def test_train_batches_draw_distinct_samples_of_one_task_per_row(tmp_path) -> None:
    files = _task_files(tmp_path, [6, 7, 5, 2])  # the last task is too small: skipped
    generator = MetaRecordInputGenerator(str(tmp_path / "*task*"), batch_size=3, seed=0)
    model = MAMLLinearModel()
    generator.set_specification_from_model(model, ModeKeys.TRAIN)
    features, labels = next(iter(generator.create_dataset(ModeKeys.TRAIN)))
    assert features["condition/features/x"].shape == (3, NC, 3)
    assert features["condition/labels/target"].shape == (3, NC, 2)
    assert features["inference/features/x"].shape == (3, NI, 3)
    assert labels["target"].shape == (3, NI, 2)
    for row in range(3):
        xs = torch.cat(
            [features["condition/features/x"][row], features["inference/features/x"][row]]
        )
        assert len(set(xs[:, 0].tolist())) == 1 and xs[0, 0] in (0, 1, 2)  # one task
        assert len(set(xs[:, 1].tolist())) == NC + NI  # distinct samples
        ys = torch.cat([features["condition/labels/target"][row], labels["target"][row]])
        torch.testing.assert_close(ys, xs[:, :2])  # labels travel with their features
    assert len(files) == 4
    outputs = model.model_fn(features, labels, ModeKeys.TRAIN)
    assert torch.isfinite(outputs.loss)


def test_eval_is_one_deterministic_pass(tmp_path) -> None:
    _task_files(tmp_path, [5, 6, 5])
    generator = MetaRecordInputGenerator(str(tmp_path / "*task*"), batch_size=2)
    generator.set_specification_from_model(MAMLLinearModel(), ModeKeys.EVAL)
    batches = list(generator.create_dataset(ModeKeys.EVAL))
    assert [b[1]["target"].shape[0] for b in batches] == [2, 1]
    first, _ = batches[0]
    assert first["condition/features/x"][0, :, 1].tolist() == [0, 1, 2]
    assert first["inference/features/x"][0, :, 1].tolist() == [3, 4]


def test_no_task_file_large_enough_is_an_error_naming_the_count(tmp_path) -> None:
    _task_files(tmp_path, [4, 3])
    generator = MetaRecordInputGenerator(str(tmp_path / "*task*"), batch_size=1)
    generator.set_specification_from_model(MAMLLinearModel(), ModeKeys.EVAL)
    with pytest.raises(ValueError, match="holds 5 records"):
        generator.create_dataset(ModeKeys.EVAL)


def test_meta_examples_round_trip_into_meta_batches() -> None:
    model = MAMLLinearModel()
    spec = model.get_feature_specification_for_packing(ModeKeys.TRAIN)
    metas = [
        make_meta_example(_records(task, NC + NI)[:NC], _records(task, NC + NI)[NC:])
        for task in (4, 7)
    ]
    features, labels = parse_meta_examples(spec, metas)
    assert features["condition/features/x"][:, :, :2].tolist() == [
        [[t, i] for i in range(NC)] for t in (4, 7)
    ]
    assert labels["target"].tolist() == [[[t, i] for i in range(NC, NC + NI)] for t in (4, 7)]
    assert torch.isfinite(model.model_fn(features, labels, ModeKeys.TRAIN).loss)
