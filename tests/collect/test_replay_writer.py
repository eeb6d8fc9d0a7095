"""TFRecordReplayWriter: atomic files, one per open or per N episodes, never clobbered."""

from __future__ import annotations

import multiprocessing
import os
import signal
import time

import pytest

from t2r.collect import (
    TFRecordReplayWriter,
    collector_id,
    recover_replay_directory,
    unique_record_prefix,
)
from t2r.data import Example, is_temporary_path, read_tfrecord


def _episode(*values: int) -> list[bytes]:
    return [f"record-{v}".encode() for v in values]


def test_one_file_per_open(tmp_path):
    writer = TFRecordReplayWriter()
    writer.open(tmp_path / "sub" / "run")  # the directory is created
    writer.write(_episode(0, 1))
    writer.write(_episode(2))
    # Not visible before close: only a temporary name exists.
    assert [p for p in os.listdir(tmp_path / "sub") if not is_temporary_path(p)] == []
    writer.close()
    assert writer.paths == [str(tmp_path / "sub" / "run.tfrecord")]
    assert list(read_tfrecord(writer.paths[0])) == _episode(0, 1, 2)
    assert (writer.num_episodes, writer.num_records) == (2, 3)
    assert os.listdir(tmp_path / "sub") == ["run.tfrecord"]


def test_files_of_n_episodes_are_published_as_they_fill(tmp_path):
    writer = TFRecordReplayWriter(max_episodes_per_file=2)
    writer.open(tmp_path / "run")
    for i in range(3):
        writer.write(_episode(i))
    assert writer.paths == [str(tmp_path / "run_00000.tfrecord")]  # before close
    writer.close()
    assert [os.path.basename(p) for p in writer.paths] == [
        "run_00000.tfrecord",
        "run_00001.tfrecord",
    ]
    assert [list(read_tfrecord(p)) for p in writer.paths] == [_episode(0, 1), _episode(2)]


def test_never_overwrites_and_skips_empty_files(tmp_path):
    (tmp_path / "run.tfrecord").write_bytes(b"precious")
    writer = TFRecordReplayWriter()
    writer.open(tmp_path / "run")
    with pytest.raises(FileExistsError, match=r"run\.tfrecord exists"):
        writer.write(_episode(0))
    writer.abort()
    assert (tmp_path / "run.tfrecord").read_bytes() == b"precious"

    writer.open(tmp_path / "empty")
    writer.close()
    assert not (tmp_path / "empty.tfrecord").exists() and writer.paths == []
    assert sorted(os.listdir(tmp_path)) == ["run.tfrecord"]


def test_messages_and_errors(tmp_path):
    writer = TFRecordReplayWriter()
    with pytest.raises(ValueError, match="not open"):
        writer.write(_episode(0))
    example = Example()
    example.features.feature["reward"].float_list.value.append(-0.5)
    with writer:
        writer.open(tmp_path / "run")
        with pytest.raises(ValueError, match="already open"):
            writer.open(tmp_path / "other")
        writer.write([example])
        with pytest.raises(TypeError, match="SerializeToString"):
            writer.write([1.5])
    (record,) = read_tfrecord(tmp_path / "run.tfrecord")
    assert Example.FromString(record).features.feature["reward"].float_list.value == [-0.5]
    with pytest.raises(ValueError, match="max_episodes_per_file"):
        TFRecordReplayWriter(max_episodes_per_file=0)


def test_an_exception_keeps_the_complete_episodes(tmp_path):
    writer = TFRecordReplayWriter()
    with pytest.raises(RuntimeError), writer:
        writer.open(tmp_path / "run")
        writer.write(_episode(0))
        raise RuntimeError("collector crashed")
    assert list(read_tfrecord(tmp_path / "run.tfrecord")) == _episode(0)


def test_unique_record_prefixes(tmp_path):
    first = unique_record_prefix(tmp_path, global_step=7, task=3)
    second = unique_record_prefix(tmp_path, global_step=7, task=3)
    assert first != second
    name = os.path.basename(first)
    assert name.startswith("gs7_t3_") and collector_id() in name
    assert f"-{os.getpid()}-" in collector_id()


# ------------------------------------------------------------- killed writers
def _write_and_die(prefix: str, episodes: int, max_episodes_per_file, compression) -> None:
    """In a forked child: write `episodes` episodes, half of another, then SIGKILL."""
    writer = TFRecordReplayWriter(
        max_episodes_per_file=max_episodes_per_file, compression=compression
    )
    writer.open(prefix)
    for i in range(episodes):
        writer.write(_episode(10 * i, 10 * i + 1))
    partial = writer._writer or writer._start_file()  # the next episode dies half-written
    partial.write(b"record-half")
    partial.flush()
    os.kill(os.getpid(), signal.SIGKILL)


def _killed_writer(prefix, episodes, max_episodes_per_file=None, compression=None):
    process = multiprocessing.get_context("fork").Process(
        target=_write_and_die, args=(str(prefix), episodes, max_episodes_per_file, compression)
    )
    process.start()
    process.join(60)
    assert process.exitcode == -signal.SIGKILL


@pytest.mark.parametrize(
    ("max_episodes_per_file", "compression"), [(None, None), (1000, None), (None, "GZIP")]
)
def test_a_killed_writer_loses_at_most_the_episode_it_was_writing(
    tmp_path, max_episodes_per_file, compression
):
    prefix = unique_record_prefix(tmp_path, global_step=3, task=0)
    _killed_writer(prefix, 3, max_episodes_per_file, compression)
    left = sorted(os.listdir(tmp_path))
    assert left and all(is_temporary_path(name) for name in left)  # nothing published
    # The next writer to open the directory publishes the complete episodes.
    writer = TFRecordReplayWriter(compression=compression)
    writer.open(unique_record_prefix(tmp_path, global_step=4, task=0))
    writer.close()
    suffix = "" if max_episodes_per_file is None else "_00000"
    (recovered,) = os.listdir(tmp_path)
    assert recovered == os.path.basename(prefix) + suffix + ".tfrecord"
    assert list(read_tfrecord(tmp_path / recovered, compression=compression)) == _episode(
        0, 1, 10, 11, 20, 21
    )


def test_recovery_removes_what_holds_no_complete_episode(tmp_path):
    prefix = unique_record_prefix(tmp_path, global_step=3, task=0)
    _killed_writer(prefix, 0)  # killed within its first episode
    assert os.listdir(tmp_path)
    assert recover_replay_directory(tmp_path) == []
    assert os.listdir(tmp_path) == []


def test_temporary_files_of_other_hosts_are_removed_only_when_stale(tmp_path):
    stale = tmp_path / ".gs1_t0_2026-01-01-00-00-00_otherhost-77-0123abcd_0.tfrecord.tmp-77-beef"
    fresh = tmp_path / ".gs1_t0_2026-01-01-00-00-00_otherhost-78-0123abcd_0.tfrecord.tmp-78-beef"
    for path in (stale, fresh):
        path.write_bytes(b"partial")
    old = time.time() - 7200
    os.utime(stale, (old, old))
    writer = TFRecordReplayWriter(stale_after_secs=3600)
    writer.open(tmp_path / "run")
    writer.close()
    assert os.listdir(tmp_path) == [fresh.name]


def test_a_live_writer_in_another_process_or_this_one_is_left_alone(tmp_path):
    first = TFRecordReplayWriter()
    first.open(unique_record_prefix(tmp_path, global_step=1, task=0))
    first.write(_episode(1))
    second = TFRecordReplayWriter()
    second.open(unique_record_prefix(tmp_path, global_step=1, task=1))
    second.write(_episode(2))
    second.close()
    first.write(_episode(3))
    first.close()
    assert [list(read_tfrecord(p)) for p in first.paths] == [_episode(1, 3)]
    assert sorted(os.listdir(tmp_path)) == sorted(
        os.path.basename(p) for p in first.paths + second.paths
    )
