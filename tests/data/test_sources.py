"""The data-source protocol: in-memory and TFRecord sources through the shared pipeline,
seeding from the run, and restoring an input position without re-reading."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from t2r.data import (
    DataSource,
    InMemorySource,
    ReadStats,
    SourceInputGenerator,
    TFRecordSource,
    WeightedRecordInputGenerator,
    count_tfrecords,
    expand_file_patterns,
)
from t2r.modes import ModeKeys
from t2r.specs import ExtendedTensorSpec as TSpec
from t2r.specs import TensorSpecStruct

from .test_input_generators import ID_SPEC, LABEL_SPEC, generator, ids_of, write_ids, write_shards

SPEC = TensorSpecStruct(
    [
        ("id", TSpec((), torch.int64, "id")),
        ("obs/image", TSpec((4, 4, 3), torch.uint8, "image")),
    ]
)
LABELS = TensorSpecStruct([("action", TSpec((2,), torch.float32, "action"))])


def in_memory(num_examples: int = 40, per_unit: int = 5) -> InMemorySource:
    source = InMemorySource.from_specs(SPEC, LABELS, num_examples, per_unit, seed=3)
    source.features["id"] = np.arange(num_examples)  # to follow examples
    return source


def source_generator(
    source: DataSource, batch_size: int = 4, **kwargs: Any
) -> SourceInputGenerator:
    gen = SourceInputGenerator(source, batch_size, **kwargs)
    gen.set_feature_specifications(SPEC, LABELS)
    return gen


def stream_ids(batches: Any, count: int) -> list[int]:
    return [i for features, _ in itertools.islice(batches, count) for i in features["id"].tolist()]


# ------------------------------------------------------------ the protocol


def test_sources_implement_the_protocol(tmp_path: Path) -> None:
    files = expand_file_patterns(write_shards(tmp_path, 2, 3))
    for source in (in_memory(), TFRecordSource(files)):
        assert isinstance(source, DataSource)
        units = source.units()
        assert units == sorted(units)
        lengths = [source.length(u) for u in units]
        assert lengths == [len(list(source.read(u, stats=ReadStats()))) for u in units]
    assert [count_tfrecords(f) for f in files] == [3, 3]


def test_in_memory_source_gives_spec_shaped_batches_and_one_eval_pass() -> None:
    source = in_memory(num_examples=10, per_unit=3)
    batches = list(source_generator(source, batch_size=4).create_dataset(ModeKeys.EVAL))
    assert [len(f["id"]) for f, _ in batches] == [4, 4, 2]
    features, labels = batches[0]
    assert features["obs/image"].dtype == torch.uint8
    assert tuple(features["obs/image"].shape) == (4, 4, 4, 3)
    assert labels["action"].dtype == torch.float32
    ids = [i for f, _ in batches for i in f["id"].tolist()]
    assert ids == list(range(10))
    np.testing.assert_array_equal(batches[0][1]["action"].numpy(), source.labels["action"][:4])


def test_in_memory_train_epochs_are_permutations_and_follow_the_seed() -> None:
    def first(seed: int) -> list[int]:
        gen = source_generator(in_memory(), batch_size=5, seed=seed, shuffle_buffer_size=7)
        return stream_ids(gen.create_dataset(ModeKeys.TRAIN), 16)

    ids = first(1)
    # A shuffle buffer per epoch: each epoch of 40 is every example once.
    assert sorted(ids[:40]) == list(range(40)) and sorted(ids[40:]) == list(range(40))
    assert ids[:40] != list(range(40)) and ids[:40] != ids[40:]
    assert ids == first(1) and ids != first(2)


@pytest.mark.parametrize("workers", [0, 2])
def test_in_memory_source_shards_over_workers_and_ranks(workers: int) -> None:
    per_rank = []
    for rank in range(2):
        gen = source_generator(in_memory(), num_workers=workers, rank=rank, world_size=2)
        per_rank.append(ids_of_plain(gen.create_dataset(ModeKeys.EVAL)))
    assert all(per_rank)
    assert sorted(i for ids in per_rank for i in ids) == list(range(40))


def ids_of_plain(batches: Any) -> list[int]:
    return [i for features, _ in batches for i in features["id"].tolist()]


def test_a_source_that_is_not_one_is_named() -> None:
    with pytest.raises(TypeError, match="not a DataSource"):
        SourceInputGenerator(["a.tfrecord"])  # type: ignore[arg-type]


# ------------------------------------------------------------- run seed


def test_a_seedless_generator_takes_the_run_seed(tmp_path: Path) -> None:
    pattern = write_shards(tmp_path, num_files=4, per_file=6)

    def first(default_seed: int | None, seed: int | None = None) -> list[int]:
        gen = generator(pattern, batch_size=4, shuffle_buffer_size=5, seed=seed)
        gen.set_default_seed(default_seed)
        return ids_of(gen.create_dataset(ModeKeys.TRAIN), limit=6)

    assert first(5) == first(5)
    assert first(5) != first(6)
    assert first(5, seed=9) == first(6, seed=9)  # the generator's own seed wins


def test_the_run_seed_lets_ranks_agree(tmp_path: Path) -> None:
    pattern = write_shards(tmp_path, num_files=4, per_file=3)
    epochs = []
    for rank in range(2):
        gen = generator(pattern, batch_size=6, rank=rank, world_size=2, shuffle_buffer_size=1)
        gen.set_default_seed(11)
        epochs.append(ids_of(gen.create_dataset(ModeKeys.TRAIN), limit=1))
    assert sorted(epochs[0] + epochs[1]) == list(range(12))


def test_starting_an_iterator_does_not_draw_from_the_global_rng(tmp_path: Path) -> None:
    gen = generator(write_shards(tmp_path, 2, 4), seed=1)
    dataset = gen.create_dataset(ModeKeys.TRAIN)
    before = torch.get_rng_state()
    next(iter(dataset))
    next(dataset.iter_from(3))
    assert torch.equal(before, torch.get_rng_state())


def test_random_preprocessing_in_workers_is_seeded_per_batch(tmp_path: Path) -> None:
    pattern = write_shards(tmp_path, num_files=4, per_file=6)

    def stream(position: int) -> list[float]:
        gen = generator(pattern, batch_size=4, seed=2, num_workers=2)
        gen.set_preprocess_fn(_add_noise)
        values = []
        for index, (features, _) in enumerate(
            gen.create_dataset(ModeKeys.TRAIN).iter_from(position)
        ):
            if index == 6:
                break
            values.append(float(features["noise"][0]))
        return values

    full = stream(0)
    assert len(set(full)) == len(full)  # fresh noise per batch
    assert stream(3)[:3] == full[3:6]


def _add_noise(features: Any, labels: Any) -> tuple[Any, Any]:
    features = TensorSpecStruct(features)
    features["noise"] = torch.rand(1)
    return features, labels


# ------------------------------------------------------ input position


def _tail_matches(make: Any, position: int, count: int = 8) -> None:
    full = stream_ids(make().create_dataset(ModeKeys.TRAIN), position + count)
    dataset = make().create_dataset(ModeKeys.TRAIN)
    tail = stream_ids(dataset.iter_from(position), count)
    batch_size = len(full) // (position + count)
    assert tail == full[position * batch_size :], position
    assert dataset.batches_yielded == position + count


@pytest.mark.parametrize("workers", [0, 2])
@pytest.mark.parametrize("position", [1, 5, 7, 23])
def test_iter_from_continues_the_uninterrupted_stream(
    tmp_path: Path, workers: int, position: int
) -> None:
    pattern = write_shards(tmp_path, num_files=5, per_file=6)
    _tail_matches(
        lambda: generator(
            pattern,
            batch_size=4,
            seed=4,
            num_workers=workers,
            shuffle_buffer_size=5,
            cycle_length=2,
        ),
        position,
    )


def test_iter_from_with_record_level_sharding_zip_and_weights(tmp_path: Path) -> None:
    one_file = str(write_ids(tmp_path / "one.tfrecord", range(30)))
    _tail_matches(lambda: generator(one_file, batch_size=4, seed=1, num_workers=2), 9)
    a = write_shards(tmp_path, 3, 5, prefix="a")
    b = write_shards(tmp_path, 2, 7, prefix="b")

    def weighted() -> WeightedRecordInputGenerator:
        gen = WeightedRecordInputGenerator([a, b], 4, weights=[1, 2], seed=3, shuffle_buffer_size=4)
        gen.set_feature_specifications(ID_SPEC, LABEL_SPEC)
        return gen

    _tail_matches(weighted, 11)
    _tail_matches(lambda: source_generator(in_memory(), batch_size=3, seed=2), 31)


def test_restoring_a_position_skips_whole_epochs_unread(tmp_path: Path) -> None:
    pattern = write_shards(tmp_path, num_files=3, per_file=8)  # 24 records an epoch
    gen = generator(pattern, batch_size=4, seed=1, shuffle_buffer_size=6)
    dataset = gen.create_dataset(ModeKeys.TRAIN)
    position = 6 * 100 + 2  # 100 epochs and 8 records
    next(dataset.iter_from(position))
    # Only the current epoch is read (and the next batch); parsing starts there.
    assert dataset.read_stats.records <= 24
