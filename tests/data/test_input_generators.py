"""Input generators: records -> batches, modes, workers, ranks, corruption."""

from __future__ import annotations

import collections
import json
import os
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from t2r.data import (
    DataError,
    DefaultConstantInputGenerator,
    DefaultRandomInputGenerator,
    DefaultRecordInputGenerator,
    FractionalRecordInputGenerator,
    MultiEvalRecordInputGenerator,
    TFRecordWriter,
    WeightedRecordInputGenerator,
    create_serialize_tf_example_fn,
    read_tfrecord_with_offsets,
)
from t2r.modes import ModeKeys
from t2r.specs import ExtendedTensorSpec as TSpec
from t2r.specs import TensorSpecStruct

ID_SPEC = TensorSpecStruct(
    [
        ("id", TSpec((), torch.int64, "id")),
        ("obs/pixels", TSpec((2, 2, 1), torch.uint8, "pixels", data_format="png")),
    ]
)
LABEL_SPEC = TensorSpecStruct([("value", TSpec((1,), torch.float32, "value"))])


def write_ids(path: Path, ids: range | list[int], compression: str | None = None) -> Path:
    """Records with an ``id``, a tiny PNG of that id and ``value = id / 10``."""
    serialize = create_serialize_tf_example_fn(ID_SPEC, LABEL_SPEC)
    with TFRecordWriter(path, compression=compression) as writer:  # type: ignore[arg-type]
        for i in ids:
            features = {"id": np.array(i), "obs": {"pixels": np.full((2, 2, 1), i % 256, np.uint8)}}
            labels = {"value": np.array([i / 10], np.float32)}
            writer.write(serialize(features, labels))  # type: ignore[arg-type]
    return path


def write_shards(directory: Path, num_files: int, per_file: int, prefix: str = "data") -> str:
    for f in range(num_files):
        start = f * per_file
        write_ids(directory / f"{prefix}-{f:05d}.tfrecord", range(start, start + per_file))
    return str(directory / f"{prefix}-*.tfrecord")


def generator(patterns: Any, batch_size: int = 4, **kwargs: Any) -> DefaultRecordInputGenerator:
    gen = DefaultRecordInputGenerator(patterns, batch_size, **kwargs)
    gen.set_feature_specifications(ID_SPEC, LABEL_SPEC)
    return gen


def ids_of(batches: Any, limit: int | None = None) -> list[int]:
    out: list[int] = []
    for count, (features, labels) in enumerate(batches):
        if limit is not None and count >= limit:
            break
        assert labels["value"].shape == (len(features["id"]), 1)
        np.testing.assert_allclose(labels["value"][:, 0].numpy(), features["id"].numpy() / 10)
        assert (features["obs/pixels"][:, 0, 0, 0] == features["id"] % 256).all()
        out.extend(features["id"].tolist())
    return out


# ------------------------------------------------------------- pose_env fixture


def test_pose_env_fixture_through_the_input_generator(pose_env_tfrecord: Path) -> None:
    feature_spec = TensorSpecStruct(
        [
            ("state", TSpec((64, 64, 3), torch.uint8, "state/image", data_format="jpeg")),
            ("pose", TSpec((2,), torch.float32, "pose")),
        ]
    )
    label_spec = TensorSpecStruct(
        [
            ("reward", TSpec((1,), torch.float32, "reward")),
            ("target_pose", TSpec((2,), torch.float32, "target_pose")),
        ]
    )
    gen = DefaultRecordInputGenerator(f"tfrecord:{pose_env_tfrecord}", batch_size=32)
    gen.set_feature_specifications(feature_spec, label_spec)
    dataset = gen.create_dataset(ModeKeys.EVAL)
    batches = list(dataset)
    assert [len(f["pose"]) for f, _ in batches] == [32, 32, 32, 4]
    features, labels = batches[0]
    assert isinstance(features, TensorSpecStruct) and isinstance(labels, TensorSpecStruct)
    assert features["state"].shape == (32, 64, 64, 3) and features["state"].dtype == torch.uint8
    assert features["pose"].shape == (32, 2) and features["pose"].dtype == torch.float32
    assert labels["reward"].shape == (32, 1) and labels["reward"].dtype == torch.float32
    assert labels["target_pose"].shape == (32, 2)
    rewards = torch.cat([lab["reward"] for _, lab in batches])
    assert rewards.shape == (100, 1) and bool((rewards < 0).all())
    assert float(features["state"].float().std()) > 0
    assert dataset.batches_yielded == 4
    assert dataset.read_stats.records == 100 and dataset.read_stats.corrupt_records == 0


# ----------------------------------------------------------------- EVAL / TRAIN


def test_eval_is_one_deterministic_pass_keeping_the_last_partial_batch(tmp_path: Path) -> None:
    pattern = write_shards(tmp_path, num_files=3, per_file=5)
    dataset = generator(pattern, batch_size=4).create_dataset(ModeKeys.EVAL)
    assert ids_of(dataset) == list(range(15))
    assert ids_of(dataset) == list(range(15))  # each iter() is a new pass
    assert dataset.batches_yielded == 8
    assert dataset.single_pass


def test_eval_can_repeat_forever_with_full_batches(tmp_path: Path) -> None:
    pattern = write_shards(tmp_path, num_files=1, per_file=5)
    dataset = generator(pattern, batch_size=4, eval_single_pass=False).create_dataset(ModeKeys.EVAL)
    assert ids_of(dataset, limit=5) == [0, 1, 2, 3, 4] * 4


def test_train_repeats_shuffles_and_is_seedable(tmp_path: Path) -> None:
    pattern = write_shards(tmp_path, num_files=4, per_file=6)

    def first_ids(seed: int) -> list[int]:
        gen = generator(pattern, batch_size=5, seed=seed, shuffle_buffer_size=8, cycle_length=2)
        dataset = gen.create_dataset(ModeKeys.TRAIN)
        batches = []
        for count, (features, _) in enumerate(dataset):
            assert len(features["id"]) == 5  # full batches only
            batches.append(features["id"].tolist())
            if count == 9:
                break
        return [i for batch in batches for i in batch]

    first = first_ids(1)
    assert len(first) == 50  # more than the 24 examples: it repeats
    counts = collections.Counter(first)
    assert set(counts) == set(range(24))  # every example within two epochs
    assert first[:24] != sorted(first[:24])  # shuffled
    assert first == first_ids(1)  # same seed, same batches
    assert first != first_ids(2)


def test_train_needs_a_common_seed_across_ranks(tmp_path: Path) -> None:
    pattern = write_shards(tmp_path, num_files=2, per_file=2)
    gen = generator(pattern, rank=0, world_size=2)
    with pytest.raises(ValueError, match="common seed"):
        gen.create_dataset(ModeKeys.TRAIN)


# ---------------------------------------------------------- workers and ranks


@pytest.mark.parametrize(("num_files", "per_file"), [(3, 7), (1, 21)])
def test_two_workers_in_eval_yield_every_example_once(
    tmp_path: Path, num_files: int, per_file: int
) -> None:
    # 3 files: files are dealt to the workers; 1 file: records are.
    pattern = write_shards(tmp_path, num_files, per_file)
    dataset = generator(pattern, batch_size=4, num_workers=2).create_dataset(ModeKeys.EVAL)
    ids = ids_of(dataset)
    assert sorted(ids) == list(range(21))
    assert dataset.read_stats.records == 21


@pytest.mark.parametrize(("num_files", "per_file"), [(4, 5), (1, 20)])
def test_ranks_read_disjoint_shards_that_cover_the_data(
    tmp_path: Path, num_files: int, per_file: int
) -> None:
    pattern = write_shards(tmp_path, num_files, per_file)
    per_rank = [
        ids_of(generator(pattern, rank=rank, world_size=3).create_dataset(ModeKeys.EVAL))
        for rank in range(3)
    ]
    assert all(per_rank)
    assert sorted(i for ids in per_rank for i in ids) == list(range(20))


def test_train_shards_are_disjoint_within_an_epoch(tmp_path: Path) -> None:
    pattern = write_shards(tmp_path, num_files=4, per_file=3)
    epochs = []
    for rank in range(2):
        # No shuffle buffer, so the first 6 records are this rank's first epoch.
        gen = generator(
            pattern, batch_size=6, seed=3, rank=rank, world_size=2, shuffle_buffer_size=1
        )
        epochs.append(ids_of(gen.create_dataset(ModeKeys.TRAIN), limit=1))
    assert sorted(epochs[0] + epochs[1]) == list(range(12))


# ------------------------------------------------------------------ corruption


def corrupt_copy(source: Path, target: Path, how: str) -> int:
    """Writes a damaged copy; returns the byte offset of the damaged record."""
    data = bytearray(source.read_bytes())
    offsets = [offset for offset, _ in read_tfrecord_with_offsets(source)]
    if how == "flip":
        offset = offsets[2]
        data[offset + 14] ^= 0xFF  # inside record 2's data
    else:
        offset = offsets[-1]
        data = data[: offset + 20]  # record 4 cut short
    target.write_bytes(bytes(data))
    return offset


@pytest.mark.parametrize("how", ["flip", "truncate"])
def test_corrupt_files_raise_naming_file_and_offset(tmp_path: Path, how: str) -> None:
    good = write_ids(tmp_path / "good.tfrecord.src", range(5))
    bad = tmp_path / "bad.tfrecord"
    offset = corrupt_copy(good, bad, how)
    with pytest.raises(DataError, match=rf"{bad}: record at byte {offset}"):
        list(generator(str(bad)).create_dataset(ModeKeys.EVAL))


@pytest.mark.parametrize("how", ["flip", "truncate"])
def test_skipping_corrupt_records_reads_the_good_ones_and_counts_the_bad(
    tmp_path: Path, how: str, caplog: pytest.LogCaptureFixture
) -> None:
    good = write_ids(tmp_path / "good.tfrecord.src", range(5))
    corrupt_copy(good, tmp_path / "bad.tfrecord", how)
    write_ids(tmp_path / "more.tfrecord", range(5, 9))
    gen = generator(str(tmp_path / "*.tfrecord"), skip_corrupt_records=True)
    dataset = gen.create_dataset(ModeKeys.EVAL)
    with caplog.at_level("WARNING"):
        ids = ids_of(dataset)
    if how == "flip":
        assert ids == [0, 1, 3, 4, 5, 6, 7, 8]
        assert dataset.read_stats.corrupt_records == 1
    else:
        assert ids == [0, 1, 2, 3, 5, 6, 7, 8]
        assert dataset.read_stats.truncated_files == 1
    assert dataset.read_stats.records == 8
    assert "pass done: 8 records read" in caplog.text


def test_records_that_do_not_match_the_spec_name_file_offset_and_feature(tmp_path: Path) -> None:
    path = write_ids(tmp_path / "a.tfrecord", range(3))
    offsets = [offset for offset, _ in read_tfrecord_with_offsets(path)]
    spec = TensorSpecStruct(
        [("pixels", TSpec((3, 3, 1), torch.uint8, "pixels", data_format="png"))]
    )
    gen = DefaultRecordInputGenerator(str(path), batch_size=2)
    gen.set_feature_specifications(spec)
    with pytest.raises(
        DataError, match=rf"{path}: record at byte {offsets[0]}: .*'pixels'.*expected shape"
    ):
        list(gen.create_dataset(ModeKeys.EVAL))
    skipping = DefaultRecordInputGenerator(str(path), batch_size=2, skip_corrupt_records=True)
    skipping.set_feature_specifications(spec)
    dataset = skipping.create_dataset(ModeKeys.EVAL)
    assert list(dataset) == []
    assert dataset.read_stats.corrupt_records == 3


def test_worker_errors_reach_the_main_process(tmp_path: Path) -> None:
    good = write_ids(tmp_path / "good.tfrecord.src", range(5))
    bad = tmp_path / "bad.tfrecord"
    offset = corrupt_copy(good, bad, "flip")
    dataset = generator(str(bad), num_workers=2).create_dataset(ModeKeys.EVAL)
    with pytest.raises(DataError, match=rf"record at byte {offset}"):
        list(dataset)


# ------------------------------------------------------------- patterns, kinds


def test_patterns_that_match_no_file_are_named(tmp_path: Path) -> None:
    write_shards(tmp_path, 1, 2)
    missing = str(tmp_path / "nothing-*.tfrecord")
    gen = generator(f"{tmp_path}/data-*.tfrecord,{missing}")
    with pytest.raises(ValueError, match=re.escape(f"file pattern '{missing}' matches no file")):
        gen.create_dataset(ModeKeys.EVAL)


def test_gzip_files_are_read(tmp_path: Path) -> None:
    write_ids(tmp_path / "a.tfrecord.gz", range(6), compression="GZIP")
    assert ids_of(generator(str(tmp_path / "*.gz")).create_dataset(ModeKeys.EVAL)) == list(range(6))


def test_dataset_map_zips_datasets_by_key(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    write_ids(tmp_path / "a" / "x.tfrecord", range(0, 6))
    write_ids(tmp_path / "b" / "x.tfrecord", range(100, 105))
    feature_spec = TensorSpecStruct(
        [
            ("a_id", TSpec((), torch.int64, "id", dataset_key="a")),
            ("b_id", TSpec((), torch.int64, "id", dataset_key="b")),
        ]
    )
    label_spec = TensorSpecStruct([("value", TSpec((1,), torch.float32, "value", dataset_key="b"))])
    for kwargs in (
        {"file_patterns": {"a": str(tmp_path / "a/*"), "b": str(tmp_path / "b/*")}},
        {"dataset_map": {"a": str(tmp_path / "a/*"), "b": str(tmp_path / "b/*")}},
    ):
        gen = DefaultRecordInputGenerator(batch_size=2, **kwargs)  # type: ignore[arg-type]
        gen.set_feature_specifications(feature_spec, label_spec)
        batches = list(gen.create_dataset(ModeKeys.EVAL))
        a = [i for f, _ in batches for i in f["a_id"].tolist()]
        b = [i for f, _ in batches for i in f["b_id"].tolist()]
        assert a == [0, 1, 2, 3, 4] and b == [100, 101, 102, 103, 104]  # stops at the shortest
        np.testing.assert_allclose(batches[0][1]["value"].numpy(), [[10.0], [10.1]])
    with pytest.raises(ValueError, match="only one of"):
        DefaultRecordInputGenerator("x", dataset_map={"a": "y"})


def test_fractional_generator_reads_the_first_files(tmp_path: Path) -> None:
    pattern = write_shards(tmp_path, num_files=4, per_file=2)
    gen = FractionalRecordInputGenerator(pattern, batch_size=3, file_fraction=0.5)
    gen.set_feature_specifications(ID_SPEC, LABEL_SPEC)
    assert ids_of(gen.create_dataset(ModeKeys.EVAL)) == [0, 1, 2, 3]
    tiny = FractionalRecordInputGenerator(pattern, file_fraction=0.1)
    tiny.set_feature_specifications(ID_SPEC)
    with pytest.raises(ValueError, match="leaves none"):
        tiny.create_dataset(ModeKeys.EVAL)


def test_weighted_generator_samples_groups_by_weight(tmp_path: Path) -> None:
    write_ids(tmp_path / "a.tfrecord", range(0, 10))
    write_ids(tmp_path / "b.tfrecord", range(100, 110))
    patterns = [str(tmp_path / "a.tfrecord"), str(tmp_path / "b.tfrecord")]
    gen = WeightedRecordInputGenerator(patterns, batch_size=10, weights=[0.8, 0.2], seed=0)
    gen.set_feature_specifications(ID_SPEC, LABEL_SPEC)
    ids = ids_of(gen.create_dataset(ModeKeys.TRAIN), limit=20)
    from_a = sum(i < 100 for i in ids)
    assert 130 <= from_a <= 190, from_a
    # One EVAL pass reads every record of every group once.
    assert sorted(ids_of(gen.create_dataset(ModeKeys.EVAL))) == [*range(10), *range(100, 110)]
    only_b = WeightedRecordInputGenerator(",".join(patterns), batch_size=5, weights=[0, 1], seed=0)
    only_b.set_feature_specifications(ID_SPEC, LABEL_SPEC)
    assert all(i >= 100 for i in ids_of(only_b.create_dataset(ModeKeys.TRAIN), limit=6))
    with pytest.raises(ValueError, match="1 weights for 2 file patterns"):
        WeightedRecordInputGenerator(patterns, weights=[1.0])


def test_multi_eval_generator_picks_one_set_or_reads_all(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_ids(tmp_path / "easy.tfrecord", range(3))
    write_ids(tmp_path / "hard.tfrecord", range(10, 12))
    eval_map = {"easy": str(tmp_path / "easy.tfrecord"), "hard": str(tmp_path / "hard.tfrecord")}
    gen = MultiEvalRecordInputGenerator(eval_map, batch_size=2, eval_name="hard")
    gen.set_feature_specifications(ID_SPEC, LABEL_SPEC)
    assert gen.eval_names == ["easy", "hard"]
    assert ids_of(gen.create_dataset(ModeKeys.EVAL)) == [10, 11]
    datasets = gen.create_datasets()
    assert {name: ids_of(d) for name, d in datasets.items()} == {
        "easy": [0, 1, 2],
        "hard": [10, 11],
    }
    assert ids_of(gen.create_dataset(ModeKeys.EVAL)) == [10, 11]  # the choice is kept

    monkeypatch.setenv("TF_CONFIG", json.dumps({"multi_eval_name": "easy"}))
    from_env = MultiEvalRecordInputGenerator(eval_map, batch_size=2)
    from_env.set_feature_specifications(ID_SPEC, LABEL_SPEC)
    assert ids_of(from_env.create_dataset(ModeKeys.EVAL)) == [0, 1, 2]
    monkeypatch.delenv("TF_CONFIG")
    unset = MultiEvalRecordInputGenerator(eval_map)
    unset.set_feature_specifications(ID_SPEC, LABEL_SPEC)
    with pytest.raises(ValueError, match="No eval set chosen"):
        unset.create_dataset(ModeKeys.EVAL)
    with pytest.raises(ValueError, match="Unknown eval set 'medium'"):
        MultiEvalRecordInputGenerator(eval_map, eval_name="medium")


# ------------------------------------------------------------ specs and models


class FakePreprocessor:
    def __init__(self) -> None:
        self.modes: list[str] = []

    def get_in_feature_specification(self, mode: str) -> TensorSpecStruct:
        self.modes.append(mode)
        return ID_SPEC

    def get_in_label_specification(self, mode: str) -> TensorSpecStruct:
        self.modes.append(mode)
        return LABEL_SPEC


class FakeModel:
    def __init__(self) -> None:
        self.preprocessor = FakePreprocessor()


def test_specs_come_from_the_models_preprocessor(tmp_path: Path) -> None:
    write_ids(tmp_path / "a.tfrecord", range(3))
    model = FakeModel()
    gen = DefaultRecordInputGenerator(str(tmp_path / "a.tfrecord"), batch_size=2)
    gen.set_specification_from_model(model, ModeKeys.EVAL)
    assert model.preprocessor.modes == ["eval", "eval"]
    assert gen.feature_spec is ID_SPEC and gen.label_spec is LABEL_SPEC
    assert ids_of(gen.create_dataset(ModeKeys.EVAL)) == [0, 1, 2]
    with pytest.raises(ValueError, match="Unknown mode 'training'"):
        gen.create_dataset("training")


def _double_ids(features: Any, labels: Any) -> tuple[Any, Any]:
    features["id"] = features["id"] * 2
    return features, labels


def test_preprocess_fn_runs_on_each_batch_in_the_workers(tmp_path: Path) -> None:
    write_ids(tmp_path / "a.tfrecord", range(4))
    gen = DefaultRecordInputGenerator(str(tmp_path / "a.tfrecord"), batch_size=2, num_workers=1)
    gen.set_feature_specifications(ID_SPEC, LABEL_SPEC)
    gen.set_preprocess_fn(_double_ids)
    ids = [i for f, _ in gen.create_dataset(ModeKeys.EVAL) for i in f["id"].tolist()]
    assert ids == [0, 2, 4, 6]


def test_missing_specs_and_no_labels(tmp_path: Path) -> None:
    write_ids(tmp_path / "a.tfrecord", range(3))
    gen = DefaultRecordInputGenerator(str(tmp_path / "a.tfrecord"), batch_size=3)
    with pytest.raises(ValueError, match="no feature spec"):
        gen.create_dataset(ModeKeys.EVAL)
    gen.set_feature_specifications(ID_SPEC)
    ((features, labels),) = list(gen.create_dataset(ModeKeys.PREDICT))
    assert labels is None and features["id"].tolist() == [0, 1, 2]
    assert gen.create_dataset_input_fn(ModeKeys.EVAL)().single_pass


# --------------------------------------------------------- generated data


MIXED_SPEC = TensorSpecStruct(
    [
        ("image", TSpec((4, 4, 3), torch.uint8, "image", data_format="jpeg")),
        ("actions", TSpec((2,), torch.bfloat16, "actions", is_sequence=True)),
        ("flag", TSpec((), torch.bool, "flag")),
    ]
)


def test_random_generator_follows_the_specs_and_its_seed() -> None:
    gen = DefaultRandomInputGenerator(batch_size=3, sequence_length=5, num_batches=2, seed=7)
    gen.set_feature_specifications(MIXED_SPEC, LABEL_SPEC)
    batches = list(gen.create_dataset(ModeKeys.TRAIN))
    assert len(batches) == 2
    features, labels = batches[0]
    assert features["image"].shape == (3, 4, 4, 3) and features["image"].dtype == torch.uint8
    assert features["actions"].shape == (3, 5, 2) and features["actions"].dtype == torch.bfloat16
    assert features["flag"].dtype == torch.bool
    assert labels["value"].shape == (3, 1)
    again = list(gen.create_dataset(ModeKeys.TRAIN))
    assert torch.equal(again[1][0]["image"], batches[1][0]["image"])
    assert not torch.equal(batches[0][0]["image"], batches[1][0]["image"])


def test_constant_generator_fills_every_value() -> None:
    gen = DefaultConstantInputGenerator(constant_value=3, batch_size=2)
    gen.set_feature_specifications(MIXED_SPEC)
    features, labels = next(iter(gen.create_dataset(ModeKeys.EVAL)))
    assert labels is None
    assert features["image"].shape == (2, 4, 4, 3) and bool((features["image"] == 3).all())
    assert features["actions"].shape == (2, 2)  # no sequence_length: no time dimension
    assert bool(features["flag"].all())


def test_no_stray_temporary_files(tmp_path: Path) -> None:
    write_shards(tmp_path, 2, 2)
    assert sorted(os.listdir(tmp_path)) == ["data-00000.tfrecord", "data-00001.tfrecord"]


# ------------------------------------------------- recycled worker buffers


def test_worker_buffers_are_reused_only_after_the_batch_is_dropped(tmp_path: Path) -> None:
    from t2r.data.parsing import ParseTFExampleFn
    from t2r.data.pipeline import _Receiver, _SlotPool

    path = write_ids(tmp_path / "a.tfrecord", range(6))
    records = [record for _, record in read_tfrecord_with_offsets(path)]
    parse = ParseTFExampleFn(ID_SPEC, LABEL_SPEC)
    pool, receiver = _SlotPool(max_slots=2), _Receiver()

    first = pool.parse(parse, records[:2])
    assert first.slot == 0 and first.storage is not None
    features, labels = receiver.materialize(first)
    assert features["id"].tolist() == [0, 1] and labels["value"].shape == (2, 1)
    held = receiver.materialize(pool.parse(parse, records[2:4]))  # slot 1, kept
    del features, labels
    again = pool.parse(parse, records[4:6])
    assert (again.slot, again.storage) == (0, None)  # slot 0 was free again, known to main
    features, _ = receiver.materialize(again)
    assert features["id"].tolist() == [4, 5]
    assert held[0]["id"].tolist() == [2, 3]  # untouched while held
    overflow = pool.parse(parse, records[:2])  # both slots held: a one-off buffer
    assert overflow.slot == -1 and overflow.storage is not None
    assert receiver.materialize(overflow)[0]["id"].tolist() == [0, 1]


def test_held_batches_from_workers_stay_intact(tmp_path: Path) -> None:
    pattern = write_shards(tmp_path, num_files=2, per_file=10)
    gen = generator(pattern, batch_size=3, num_workers=1, seed=0)
    iterator = iter(gen.create_dataset(ModeKeys.TRAIN))
    held, seen = [], []
    for _ in range(25):  # far more batches than recycled buffers
        features, labels = next(iterator)
        held.append((features, labels))
        seen.append(features["id"].tolist())
    del iterator
    assert [features["id"].tolist() for features, _ in held] == seen
    assert len(ids_of(held)) == 75  # ids_of checks every batch's ids, pixels and labels


def test_bfloat16_and_undecoded_images_cross_from_workers(tmp_path: Path) -> None:
    path = write_ids(tmp_path / "a.tfrecord", range(4))
    spec = TensorSpecStruct(
        [
            ("value", TSpec((1,), torch.bfloat16, "value")),
            ("png", TSpec((2, 2, 1), torch.uint8, "pixels", data_format="png")),
        ]
    )
    gen = DefaultRecordInputGenerator(
        str(path), batch_size=2, num_workers=1, decode_images=False, pin_memory=True
    )
    gen.set_feature_specifications(spec)
    batches = list(gen.create_dataset(ModeKeys.EVAL))
    values = torch.cat([f["value"] for f, _ in batches])
    assert values.dtype == torch.bfloat16
    expected = torch.tensor([0.0, 0.1, 0.2, 0.3]).to(torch.bfloat16)
    assert torch.equal(values[:, 0], expected)
    assert batches[0][0]["png"].dtype == object and batches[0][0]["png"][1].startswith(b"\x89PNG")


def test_spawned_workers_get_a_picklable_pipeline(tmp_path: Path) -> None:
    pattern = write_shards(tmp_path, num_files=2, per_file=3)
    gen = generator(pattern, batch_size=2, num_workers=1, multiprocessing_context="spawn")
    dataset = gen.create_dataset(ModeKeys.EVAL)
    assert sorted(ids_of(dataset)) == list(range(6))
    assert dataset.read_stats.records == 6


def test_rank_and_world_size_come_from_torch_distributed(tmp_path: Path) -> None:
    from t2r.data import resolve_rank_and_world_size

    assert resolve_rank_and_world_size() == (0, 1)
    assert resolve_rank_and_world_size(2, 3) == (2, 3)
    with pytest.raises(ValueError, match="Invalid rank 3 for world_size 3"):
        resolve_rank_and_world_size(3, 3)
    if torch.distributed.is_initialized():
        pytest.skip("a process group is already initialized in this process")
    torch.distributed.init_process_group(
        "gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1
    )
    try:
        assert resolve_rank_and_world_size() == (0, 1)
        assert resolve_rank_and_world_size(world_size=1) == (0, 1)
        pattern = write_shards(tmp_path, num_files=1, per_file=4)
        assert ids_of(generator(pattern).create_dataset(ModeKeys.EVAL)) == [0, 1, 2, 3]
    finally:
        torch.distributed.destroy_process_group()
