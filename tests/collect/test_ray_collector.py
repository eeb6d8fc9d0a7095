"""RayCollector: ProcessCollector's guarantees on Ray actors, and continuous collection
that survives a SIGKILLed actor (Ray restarts it) without a partial or duplicated episode."""

from __future__ import annotations

import collections
import functools
import glob
import os
import signal
import time

import pytest

from t2r.collect import CollectError, split_shards
from t2r.collect.ray_collector import RayCollector, ray_session
from t2r.data import read_tfrecord
from tests.needs import needs_module

from .toy import collect_shard, failing_shard, loop_shard, raising_loop, short_shard

ray = needs_module("ray")  # the 'distributed' extra


@pytest.fixture(scope="module")
def ray_cluster():
    """One local Ray instance (2 logical CPUs) for the whole module."""
    with ray_session(num_cpus=2):
        yield


def _visible_records(root) -> list[bytes]:
    files = glob.glob(os.path.join(root, "**", "*.tfrecord"), recursive=True)
    return [r for f in files for r in read_tfrecord(f)]


def _hidden_files(root) -> list[str]:
    return [os.path.join(d, n) for d, _, names in os.walk(root) for n in names if n.startswith(".")]


def _episodes(records: list[bytes]) -> dict[tuple[int, int, int], list[int]]:
    """(shard, attempt, episode) -> the steps found, from b'<s>/<a>/<e>/<step>' records."""
    found: dict[tuple[int, int, int], list[int]] = collections.defaultdict(list)
    for record in records:
        shard, attempt, episode, step = (int(x) for x in record.split(b"/"))
        found[(shard, attempt, episode)].append(step)
    return found


def _wait_until(condition, running, timeout: float = 180.0):
    """Polls the collection until `condition(statuses)` holds (a guard against hangs,
    not a timing assertion)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        statuses = running.poll()
        if condition(statuses):
            return statuses
        time.sleep(0.1)
    raise AssertionError(f"the collection did not get there in {timeout} s: {running.poll()}")


def test_ray_actors_collect_every_episode_exactly_once(tmp_path, ray_cluster):
    shards = split_shards(11, 3, tmp_path)
    collector = RayCollector(num_actors=2, show_progress=False)
    report = collector.collect(
        functools.partial(collect_shard, length=2, episodes_per_file=2), shards
    )
    assert report.num_episodes == 11 and report.num_transitions == 22
    records = _visible_records(tmp_path / "policy_collect")
    assert len(records) == 22 and len(set(records)) == 22
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
    assert len(set(collector.pids)) == 2  # two actor processes, none of them this one
    assert os.getpid() not in collector.pids


def test_a_killed_actor_fails_a_finite_run_and_leaves_no_partial_file(tmp_path, ray_cluster):
    shards = split_shards(400, 2, tmp_path)
    collect_fn = functools.partial(
        collect_shard,
        length=1,
        episodes_per_file=2,
        step_secs=0.02,
        kill_shard_after=(1, 2),  # episodes 0, 1 published; episode 2 in a temporary file
    )
    with pytest.raises(CollectError) as error:
        RayCollector(show_progress=False).collect(collect_fn, shards)
    message = str(error.value)
    assert "collector 1 (Ray actor 1" in message and "died" in message
    assert "collector 0 was stopped after another collector failed" in message
    assert _hidden_files(tmp_path) == []
    records = _visible_records(tmp_path)
    seeds = [r.split(b"/")[0] for r in records]
    assert seeds.count(str(shards[1].seed).encode()) == 2
    assert seeds.count(str(shards[0].seed).encode()) % 2 == 0  # whole files of 2 episodes
    assert len(set(records)) == len(records)


def test_an_actor_that_raises_names_itself(tmp_path, ray_cluster):
    with pytest.raises(CollectError, match="(?s)collector 1 failed:.*the robot fell over"):
        RayCollector(show_progress=False).collect(failing_shard, split_shards(4, 2, tmp_path))


def test_a_short_share_is_an_error(tmp_path, ray_cluster):
    with pytest.raises(CollectError, match="shard 0 collected 1 episodes, expected 2"):
        RayCollector(show_progress=False).collect(short_shard, split_shards(4, 2, tmp_path))


def test_more_actors_than_ray_cpus_is_refused(tmp_path, ray_cluster):
    collector = RayCollector(num_actors=3, num_cpus_per_actor=1.0, show_progress=False)
    with pytest.raises(
        CollectError, match=r"3 actors x 1.0 CPU need 3 CPUs; the Ray cluster has 2"
    ):
        collector.collect(short_shard, split_shards(3, 3, tmp_path))


def test_continuous_actor_killed_mid_episode_loses_only_that_episode(tmp_path, ray_cluster):
    started = tmp_path / "started.txt"
    loop_fn = functools.partial(
        loop_shard,
        length=3,
        episodes_per_file=2,
        # Attempt 0 of shard 1 dies in step 1 of its episode 3: episodes 0, 1 are in a
        # published file, episode 2 only in a temporary one (with its commit marker).
        kill_at=(1, 3, 1),
        started_log=str(started),
    )
    shards = split_shards(2, 2, tmp_path / "replay")
    collector = RayCollector(show_progress=False)
    with collector.start(loop_fn, shards) as running:
        first_pids = running.pids
        _wait_until(lambda s: s[1].attempt == 1 and s[1].episodes >= 6, running)
        final = running.stop()
    assert [d[:3] for d in running.deaths] == [(1, first_pids[1], 0)]
    assert final[0].attempt == 0 and final[1].attempt == 1
    assert running.pids[1] != first_pids[1]  # Ray restarted the actor: a new process
    episodes = _episodes(_visible_records(tmp_path / "replay"))
    # Every published episode is whole, each step once: nothing partial, nothing twice.
    assert all(sorted(steps) == [0, 1, 2] for steps in episodes.values()), episodes
    killed = sorted(e for (s, a, e) in episodes if (s, a) == (1, 0))
    assert killed == [0, 1, 2]  # episode 2 came back from the dead actor's temporary file
    starts = started.read_text().split()
    assert starts.count("1/0/3") == 1 and "1/0/4" not in starts  # it died in episode 3
    assert any((s, a) == (1, 1) for (s, a, _) in episodes)  # the restarted actor collects
    # What the live attempts counted as written is what is on disk.
    for status in final:
        on_disk = sum(1 for (s, a, _) in episodes if (s, a) == (status.index, status.attempt))
        assert on_disk == status.attempt_episodes >= 1, (status, on_disk)
    # (Its temporary file was published by whichever came first: the driver after the
    # death, or any collector's writer opening the directory.)
    assert _hidden_files(tmp_path / "replay") == []


def test_continuous_actor_sigkilled_from_outside(tmp_path, ray_cluster):
    started = tmp_path / "started.txt"
    loop_fn = functools.partial(
        loop_shard, length=4, episodes_per_file=3, step_secs=0.01, started_log=str(started)
    )
    shards = split_shards(1, 1, tmp_path / "replay")
    with RayCollector(show_progress=False).start(loop_fn, shards) as running:
        _wait_until(lambda s: s[0].episodes >= 4, running)
        victim = running.pids[0]
        assert victim is not None
        os.kill(victim, signal.SIGKILL)
        _wait_until(lambda s: s[0].attempt == 1 and s[0].episodes >= 6, running)
        running.stop()
    episodes = _episodes(_visible_records(tmp_path / "replay"))
    assert all(sorted(steps) == [0, 1, 2, 3] for steps in episodes.values()), episodes
    started_0 = [int(x.split("/")[2]) for x in started.read_text().split() if x.startswith("0/0/")]
    published_0 = sorted(e for (s, a, e) in episodes if (s, a) == (0, 0))
    # At most the episode it was in when killed is lost; every earlier one is published.
    assert published_0 in (started_0, started_0[:-1]), (published_0, started_0)
    assert _hidden_files(tmp_path / "replay") == []


def test_a_continuous_loop_that_raises_stops_the_collection(tmp_path, ray_cluster):
    with RayCollector(show_progress=False).start(
        raising_loop, split_shards(1, 1, tmp_path)
    ) as running:
        with pytest.raises(CollectError, match="(?s)collector 0.*the gripper is on backwards"):
            _wait_until(lambda s: False, running, timeout=120)
