"""Workers send several batches per DataLoader item; the batches and their order stay the same."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest

from t2r.data import DataError, ReplayInputGenerator
from t2r.data.input_generators import auto_batches_per_transfer
from t2r.data.parsing import ParseTFExampleFn
from t2r.data.pipeline import _BatchGroup, _ungroup
from t2r.modes import ModeKeys

from .test_input_generators import (
    ID_SPEC,
    LABEL_SPEC,
    corrupt_copy,
    generator,
    write_ids,
    write_shards,
)


def batches_of(dataset: Any, limit: int | None = None) -> list[list[int]]:
    """The ids of each batch (so partial batches and batch boundaries count too)."""
    out = []
    for features, _ in itertools.islice(dataset, limit):
        out.append(features["id"].tolist())
    return out


@pytest.mark.parametrize(
    ("batch_size", "example_nbytes", "expected"),
    [
        (64, 64 * 64 * 3 + 20, 4),  # pose_env-like: 256 records a transfer
        (32, 64 * 64 * 3 + 20, 8),
        (256, 64 * 64 * 3 + 20, 1),
        (64, 256 * 256 * 3 + 28, 1),  # large images: one batch is over 4 MiB
        (8, 256 * 256 * 3 + 28, 2),
        (1, 1, 8),  # capped
    ],
)
def test_auto_batches_per_transfer_rule(
    batch_size: int, example_nbytes: int, expected: int
) -> None:
    assert auto_batches_per_transfer(batch_size, example_nbytes) == expected


def test_the_generator_chooses_the_count_from_the_parsed_size(tmp_path: Path) -> None:
    pattern = write_shards(tmp_path, num_files=2, per_file=4)
    parse_fn = ParseTFExampleFn(ID_SPEC, LABEL_SPEC)
    assert parse_fn.example_nbytes == 8 + 4 + 4  # int64 id, 2x2x1 pixels, float32 value
    assert generator(pattern, batch_size=64).resolve_batches_per_transfer(parse_fn) == 4
    given = generator(pattern, batch_size=64, batches_per_transfer=3)
    assert given.resolve_batches_per_transfer(parse_fn) == 3
    with pytest.raises(ValueError, match="batches_per_transfer must be >= 1"):
        generator(pattern, batches_per_transfer=0)
    # A replay directory sends batch by batch: fresh data matters more there.
    replay = ReplayInputGenerator(tmp_path, 64)
    replay.set_feature_specifications(ID_SPEC, LABEL_SPEC)
    sources = replay._sources(ModeKeys.TRAIN)
    assert replay.resolve_batches_per_transfer(parse_fn, sources) == 1


@pytest.mark.parametrize("workers", [1, 2, 3])
def test_train_stream_and_resume_do_not_depend_on_the_transfer(
    tmp_path: Path, workers: int
) -> None:
    pattern = write_shards(tmp_path, num_files=5, per_file=6)

    def dataset(transfer: int) -> Any:
        return generator(
            pattern,
            batch_size=3,
            seed=7,
            num_workers=workers,
            shuffle_buffer_size=4,
            cycle_length=2,
            batches_per_transfer=transfer,
        ).create_dataset(ModeKeys.TRAIN)

    one = batches_of(dataset(1), 25)
    for transfer in (2, 4):
        assert batches_of(dataset(transfer), 25) == one
        for position in (1, 3, 6):  # inside a group and at its start
            resumed = dataset(transfer)
            assert batches_of(resumed.iter_from(position), 25 - position) == one[position:]
            assert resumed.batches_yielded == 25


@pytest.mark.parametrize(("num_files", "per_file"), [(3, 7), (5, 3), (1, 21)])
def test_eval_pass_with_workers_ending_unevenly_keeps_its_order(
    tmp_path: Path, num_files: int, per_file: int
) -> None:
    pattern = write_shards(tmp_path, num_files, per_file)

    def dataset(transfer: int) -> Any:
        gen = generator(pattern, batch_size=2, num_workers=2, batches_per_transfer=transfer)
        return gen.create_dataset(ModeKeys.EVAL)

    one = batches_of(dataset(1))
    assert sorted(i for batch in one for i in batch) == list(range(num_files * per_file))
    for transfer in (2, 3):
        grouped = dataset(transfer)
        assert batches_of(grouped) == one
        assert grouped.read_stats.records == num_files * per_file


def test_a_worker_error_still_reaches_the_caller(tmp_path: Path) -> None:
    good = write_ids(tmp_path / "good.tfrecord.src", range(9))
    bad = tmp_path / "bad.tfrecord"
    offset = corrupt_copy(good, bad, "flip")
    dataset = generator(
        str(bad), batch_size=1, num_workers=2, batches_per_transfer=3
    ).create_dataset(ModeKeys.EVAL)
    with pytest.raises(DataError, match=rf"record at byte {offset}"):
        list(dataset)


def _groups(*rounds: list[tuple[int, list[str]]], workers: int) -> list[Any]:
    return [_BatchGroup(w, workers, list(b)) for one in rounds for w, b in one]


def test_ungroup_zips_each_round_worker_by_worker() -> None:
    items = _groups(
        [(0, ["a0", "a1"]), (1, ["b0", "b1"]), (2, ["c0", "c1"])],
        [(0, ["a2"]), (1, ["b2", "b3"]), (2, ["c2"])],  # worker 0 and 2 end
        [(1, ["b4"])],
        workers=3,
    )
    assert list(_ungroup(iter(items))) == [
        "a0", "b0", "c0", "a1", "b1", "c1",
        "a2", "b2", "c2", "b3",
        "b4",
    ]  # fmt: skip
    # Worker 1 ended first: worker 0's next item opens the next round.
    items = _groups([(0, ["a0", "a1"]), (1, ["b0"])], [(0, ["a2"])], workers=3)
    assert list(_ungroup(iter(items))) == ["a0", "b0", "a1", "a2"]
    assert list(_ungroup(iter(["x", "y"]))) == ["x", "y"]  # not grouped: as they come


def test_ungroup_raises_an_error_after_the_round_it_interrupts() -> None:
    def items() -> Any:
        yield _BatchGroup(0, 2, ["a0", "a1"])
        raise DataError("worker 1 failed")

    seen = []
    with pytest.raises(DataError, match="worker 1 failed"):
        for batch in _ungroup(items()):
            seen.append(batch)
    assert seen == ["a0", "a1"]
