"""TFRecordReplayWriter: atomic files, one per open or per N episodes, never clobbered."""

from __future__ import annotations

import os

import pytest

from t2r.collect import TFRecordReplayWriter, collector_id, unique_record_prefix
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
