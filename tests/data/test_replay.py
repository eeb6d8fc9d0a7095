"""A replay directory that grows while a learner reads it."""

from __future__ import annotations

import itertools
import multiprocessing
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from t2r.atomic import temporary_path_for
from t2r.data import (
    ReplayDirectorySource,
    ReplayInputGenerator,
    TFRecordWriter,
    create_serialize_tf_example_fn,
)
from t2r.modes import ModeKeys

from .test_input_generators import ID_SPEC, LABEL_SPEC, write_ids

PER_FILE = 12


def replay(directory: Path, batch_size: int = 4, **kwargs: Any) -> ReplayInputGenerator:
    gen = ReplayInputGenerator(directory, batch_size, **kwargs)
    gen.set_feature_specifications(ID_SPEC, LABEL_SPEC)
    return gen


def write_slowly(directory: str, files: int, published: Any, go: Any) -> None:
    """The collector: file ``f`` holds ids ``f * 1000 + i``; each is written record by
    record (flushed, so a partial temporary file sits in the directory) and published
    by rename; then its number goes on ``published``."""
    serialize = create_serialize_tf_example_fn(ID_SPEC, LABEL_SPEC)
    for f in range(files):
        go.wait()
        go.clear()
        with TFRecordWriter(os.path.join(directory, f"episode-{f:03d}.tfrecord")) as writer:
            for i in range(PER_FILE):
                index = f * 1000 + i
                features = {"id": np.array(index), "obs": {"pixels": np.zeros((2, 2, 1), np.uint8)}}
                writer.write(serialize(features, {"value": np.array([index / 10], np.float32)}))
                writer.flush()
                time.sleep(0.01)
        published.put(f)


@pytest.mark.parametrize("workers", [0, 2])
def test_learner_reads_new_files_as_they_are_published_and_never_a_partial_one(
    tmp_path: Path, workers: int
) -> None:
    files = 5
    context = multiprocessing.get_context("fork")
    published, go = context.Queue(), context.Event()
    writer = context.Process(target=write_slowly, args=(str(tmp_path), files, published, go))
    writer.start()
    try:
        gen = replay(tmp_path, num_workers=workers, refresh_secs=0.01, shuffle_buffer_size=1)
        batches = iter(gen.create_dataset(ModeKeys.TRAIN))
        go.set()  # the first file; the learner waits for it
        known: dict[int, int] = {}  # file -> batches drawn when its publication was known
        first_seen: dict[int, int] = {}
        for drawn in itertools.count():
            assert drawn < 20_000, (known, first_seen)
            while not published.empty():
                f = published.get()
                known[f] = drawn
                if f + 1 < files:
                    go.set()  # the next file is written while the learner reads
            features, labels = next(batches)
            ids = features["id"].tolist()
            np.testing.assert_allclose(labels["value"][:, 0].numpy(), np.array(ids) / 10)
            for index in ids:
                assert index % 1000 < PER_FILE
                first_seen.setdefault(index // 1000, drawn)
            if len(first_seen) == files and len(known) == files:
                break
    finally:
        writer.join(timeout=60)
    # A published file is in the batches within the refresh (a few batches later:
    # those already prefetched, and a round over the open files).
    bound = 2 * files + 2 * (workers + 1)
    for f in range(files):
        assert first_seen[f] <= known[f] + bound, (f, known, first_seen)


def test_temporary_names_are_never_listed_and_max_files_keeps_the_newest(tmp_path: Path) -> None:
    for f in range(4):
        path = write_ids(tmp_path / f"ep-{f}.tfrecord", range(f * 10, f * 10 + 3))
        os.utime(path, (1000 + f, 1000 + f))
    partial = Path(temporary_path_for(tmp_path / "ep-9.tfrecord"))
    partial.write_bytes(b"\x05\x00\x00\x00")  # a half-written record
    assert ReplayDirectorySource(tmp_path).units() == [
        str(tmp_path / f"ep-{f}.tfrecord") for f in range(4)
    ]
    newest = ReplayDirectorySource(str(tmp_path / "ep-*"), max_files=2).units()
    assert newest == [str(tmp_path / "ep-2.tfrecord"), str(tmp_path / "ep-3.tfrecord")]
    ids = [
        i
        for f, _ in replay(tmp_path, max_files=2).create_dataset(ModeKeys.EVAL)
        for i in f["id"].tolist()
    ]
    assert sorted(ids) == [20, 21, 22, 30, 31, 32]


def test_workers_split_a_replay_pass_without_overlap(tmp_path: Path) -> None:
    for f in range(3):
        write_ids(tmp_path / f"ep-{f}.tfrecord", range(f * 10, f * 10 + 7))
    per_rank = []
    for rank in range(2):
        gen = replay(tmp_path, num_workers=2, rank=rank, world_size=2)
        per_rank.append([i for f, _ in gen.create_dataset(ModeKeys.EVAL) for i in f["id"].tolist()])
    assert all(per_rank)
    expected = [f * 10 + i for f in range(3) for i in range(7)]
    assert sorted(per_rank[0] + per_rank[1]) == expected


def test_every_pass_reads_each_transition_once(tmp_path: Path) -> None:
    for f in range(3):
        write_ids(tmp_path / f"ep-{f}.tfrecord", range(f * 10, f * 10 + 4))
    gen = replay(tmp_path, batch_size=3, seed=1, shuffle_buffer_size=5)
    batches = gen.create_dataset(ModeKeys.TRAIN)
    ids = [i for f, _ in itertools.islice(batches, 8) for i in f["id"].tolist()]
    expected = sorted(f * 10 + i for f in range(3) for i in range(4))
    assert sorted(ids[:12]) == expected and sorted(ids[12:]) == expected
    # Resume starts a new pass rather than pretending to restore the order.
    assert torch.is_tensor(next(batches.iter_from(5))[0]["id"])


def test_a_long_pass_takes_in_new_files_at_the_refresh_interval(tmp_path: Path) -> None:
    write_ids(tmp_path / "ep-0.tfrecord", range(400))  # a pass of 100 batches
    gen = replay(tmp_path, refresh_secs=0.01, shuffle_buffer_size=1)
    batches = iter(gen.create_dataset(ModeKeys.TRAIN))
    next(batches)
    write_ids(tmp_path / "ep-1.tfrecord", range(1000, 1004))
    time.sleep(0.05)  # past the refresh interval
    seen = [i for f, _ in itertools.islice(batches, 10) for i in f["id"].tolist()]
    assert set(range(1000, 1004)) <= set(seen)  # long before the pass over ep-0 ends
