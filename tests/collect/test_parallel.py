"""ProcessCollector: no episode lost or duplicated, no partial file visible, loud failures."""

from __future__ import annotations

import functools
import glob
import os

import pytest

from t2r.collect import (
    CollectError,
    CollectReport,
    CollectShard,
    EnvRunResult,
    ProcessCollector,
    check_report,
    split_shards,
)
from t2r.data import read_tfrecord

from .toy import collect_shard, failing_shard, short_shard


def _visible_records(root) -> list[bytes]:
    files = glob.glob(os.path.join(root, "policy_collect", "*.tfrecord"))
    return [r for f in files for r in read_tfrecord(f)]


def _hidden_files(root) -> list[str]:
    return [os.path.join(d, n) for d, _, names in os.walk(root) for n in names if n.startswith(".")]


def test_split_shards_shares_every_episode_once(tmp_path):
    shards = split_shards(11, 3, tmp_path, seed=2)
    assert [s.num_episodes for s in shards] == [4, 4, 3]
    assert [s.index for s in shards] == [0, 1, 2]
    assert len({s.seed for s in shards}) == 3
    assert {s.root_dir for s in shards} == {str(tmp_path)}
    with pytest.raises(ValueError, match="at most one worker per episode"):
        split_shards(2, 3, tmp_path)
    with pytest.raises(ValueError, match="num_workers must be >= 1"):
        split_shards(2, 0, tmp_path)


def test_three_workers_collect_every_episode_exactly_once(tmp_path):
    shards = split_shards(11, 3, tmp_path)
    report = ProcessCollector(show_progress=False).collect(
        functools.partial(collect_shard, length=2, episodes_per_file=2), shards
    )
    assert report.num_episodes == 11 and report.num_transitions == 22
    records = _visible_records(tmp_path)
    assert len(records) == 22 and len(set(records)) == 22
    # Every episode of every shard, each step once.
    expected = {
        f"{s.seed}/{e}/{t}".encode()
        for s in shards
        for e in range(s.num_episodes)
        for t in range(2)
    }
    assert set(records) == expected
    assert sorted(report.record_files) == sorted(
        glob.glob(str(tmp_path / "policy_collect" / "*.tfrecord"))
    )
    assert _hidden_files(tmp_path) == []


def test_a_killed_worker_stops_the_run_and_leaves_no_partial_file(tmp_path):
    shards = split_shards(400, 2, tmp_path)
    collect_fn = functools.partial(
        collect_shard,
        length=1,
        episodes_per_file=2,
        step_secs=0.02,  # shard 0 would need 4 s: it is stopped long before
        kill_shard_after=(1, 2),  # episodes 0, 1 published; episode 2 in a temporary file
    )
    collector = ProcessCollector(show_progress=False)
    with pytest.raises(CollectError) as error:
        collector.collect(collect_fn, shards)
    message = str(error.value)
    assert "collector 1" in message and "exited with code -9" in message
    assert "collector 0" in message and "stopped after another collector failed" in message
    # What is visible is whole: the killed worker's first file (2 episodes), and files
    # the stopped worker had published; nothing partial under any name.
    assert _hidden_files(tmp_path) == []
    records = _visible_records(tmp_path)
    seeds = [r.split(b"/")[0] for r in records]
    assert seeds.count(str(shards[1].seed).encode()) == 2
    assert seeds.count(str(shards[0].seed).encode()) % 2 == 0  # files of 2 episodes
    assert len(set(records)) == len(records)
    assert len(collector.pids) == 2


def test_a_worker_that_raises_names_itself(tmp_path):
    with pytest.raises(CollectError, match="(?s)collector 1 failed:.*the robot fell over"):
        ProcessCollector(show_progress=False).collect(failing_shard, split_shards(4, 2, tmp_path))


def test_a_short_share_is_an_error(tmp_path):
    with pytest.raises(CollectError, match="shard 0 collected 1 episodes, expected 2"):
        ProcessCollector(show_progress=False).collect(short_shard, split_shards(4, 2, tmp_path))


def test_check_report_finds_a_file_reported_twice(tmp_path):
    path = tmp_path / "a.tfrecord"
    path.write_bytes(b"")
    shards = [CollectShard(i, 1, i, str(tmp_path)) for i in range(2)]
    result = EnvRunResult("collect", 0, [0.0], 1, [str(path)], 0.0)
    report = CollectReport(shards, [{"collect": result}, {"collect": result}], 0.0)
    with pytest.raises(CollectError, match="reported by shards 0 and 1"):
        check_report(report)
    with pytest.raises(ValueError, match="shard indices must be 0..1"):
        ProcessCollector(show_progress=False).collect(
            failing_shard, [CollectShard(1, 1, 0, ""), CollectShard(2, 1, 0, "")]
        )
