"""Pipelines in the training process (num_workers=0) make the next batches in a thread."""

from __future__ import annotations

import gc
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from t2r.data import DataError
from t2r.modes import ModeKeys

from .test_input_generators import corrupt_copy, generator, ids_of, write_ids, write_shards


def prefetch_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "t2r-prefetch" and t.is_alive()]


def wait_for(condition: Any, seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return condition()


def test_prefetching_gives_the_same_batches(tmp_path: Path) -> None:
    pattern = write_shards(tmp_path, num_files=4, per_file=5)
    kwargs: dict[str, Any] = {"batch_size": 3, "seed": 2, "num_workers": 0}
    plain = generator(pattern, prefetch_factor=None, **kwargs).create_dataset(ModeKeys.TRAIN)
    ahead = generator(pattern, **kwargs).create_dataset(ModeKeys.TRAIN)
    assert (plain.prefetch, ahead.prefetch) == (0, 2)
    assert ids_of(ahead, 15) == ids_of(plain, 15)
    assert ids_of(ahead.iter_from(4), 5) == ids_of(plain.iter_from(4), 5)
    evaluated = generator(pattern, num_workers=0).create_dataset(ModeKeys.EVAL)
    assert sorted(ids_of(evaluated)) == list(range(20))


def test_the_thread_works_ahead_while_the_caller_holds_a_batch(tmp_path: Path) -> None:
    pattern = write_shards(tmp_path, num_files=2, per_file=20)
    gen = generator(pattern, batch_size=4, num_workers=0, shuffle_buffer_size=1, cycle_length=1)
    dataset = gen.create_dataset(ModeKeys.TRAIN)
    iterator = iter(dataset)
    next(iterator)
    # One batch handed out, two waiting in the queue, one made and waiting to be queued.
    assert wait_for(lambda: dataset.read_stats.records >= 4 * 4)
    time.sleep(0.1)
    assert dataset.read_stats.records <= 4 * 4 + 4  # bounded: it does not read on
    del iterator


def test_errors_reach_the_caller_and_the_thread_ends(tmp_path: Path) -> None:
    good = write_ids(tmp_path / "good.tfrecord.src", range(5))
    bad = tmp_path / "bad.tfrecord"
    offset = corrupt_copy(good, bad, "flip")
    dataset = generator(str(bad), num_workers=0).create_dataset(ModeKeys.EVAL)
    assert dataset.prefetch == 2
    with pytest.raises(DataError, match=rf"record at byte {offset}"):
        list(dataset)
    assert wait_for(lambda: not prefetch_threads())


def test_leaving_a_stream_stops_its_thread(tmp_path: Path) -> None:
    pattern = write_shards(tmp_path, num_files=2, per_file=8)
    dataset = generator(pattern, batch_size=2, num_workers=0).create_dataset(ModeKeys.TRAIN)
    for _ in range(3):
        iterator = iter(dataset)
        next(iterator)
        assert prefetch_threads()
        iterator.close()  # what a for loop's break and garbage collection lead to
        assert not prefetch_threads()
    iterator = iter(dataset)
    next(iterator)
    del iterator
    gc.collect()
    assert wait_for(lambda: not prefetch_threads())


def test_no_thread_with_a_preprocess_fn_or_with_workers(tmp_path: Path) -> None:
    pattern = write_shards(tmp_path, num_files=2, per_file=4)
    gen = generator(pattern, num_workers=0)
    gen.set_preprocess_fn(_identity)  # seeds the process-wide RNGs: caller's thread only
    assert gen.create_dataset(ModeKeys.TRAIN).prefetch == 0
    assert generator(pattern, num_workers=1).create_dataset(ModeKeys.TRAIN).prefetch == 0


def _identity(features: Any, labels: Any) -> tuple[Any, Any]:
    return features, labels
