"""Several Bellman updaters split the replay files between them (each file, so each
transition, labelled by exactly one), and clipped double Q labels with the two newest
lagged exports (the newest and the one before)."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from t2r.collect.parallel import CollectShard
from t2r.collect.ray_collector import LoopContext
from t2r.data import TFRecordWriter, create_serialize_tf_example_fn, read_tfrecord
from t2r.export import export_saved_model, layout
from t2r.research.qtopt import bellman, learner, loop
from t2r.research.qtopt.transitions import parse_transitions, transition_specification
from t2r.specs import make_random_numpy
from t2r.train import seed_everything

IMAGE_SIZE = 16


def _config(tmp_path: Path, **kwargs) -> loop.QTOptConfig:
    return loop.QTOptConfig(
        output_dir=str(tmp_path / "qtopt"),
        image_size=IMAGE_SIZE,
        network="tiny",
        cem_iters=2,
        cem_samples=8,
        num_elites=2,
        **kwargs,
    )


def _write_replay(config: loop.QTOptConfig, names: list[str], per_file: int = 3) -> None:
    spec = transition_specification(IMAGE_SIZE)
    serialize = create_serialize_tf_example_fn(spec)
    directory = config.replay_root / "policy_collect"
    directory.mkdir(parents=True)
    for index, name in enumerate(names):
        values = make_random_numpy(spec, per_file, None, seed=index)
        values["done"] = np.array([[0.0]] * (per_file - 1) + [[1.0]], np.float32)
        with TFRecordWriter(str(directory / name)) as writer:
            for row in range(per_file):
                writer.write(serialize({k: v[row] for k, v in values.items()}))


def test_owns_replay_file_gives_every_name_exactly_one_updater():
    names = [f"replay-{i}-{j}.tfrecord" for i in range(7) for j in range(9)]
    for updaters in (1, 2, 3, 5):
        owners = [
            [u for u in range(updaters) if loop.owns_replay_file(n, u, updaters)] for n in names
        ]
        assert all(len(o) == 1 for o in owners)
        assert {o[0] for o in owners} == set(range(updaters))  # every updater has a share


def test_a_bad_config_names_every_bad_field(tmp_path):
    config = _config(
        tmp_path,
        initial_q=1.0,
        step_penalty=-0.05,
        mc_mix=2.0,
        label_window=0,
        samples_per_label=0.0,
    )
    with pytest.raises(loop.QTOptError) as error:
        config.validate()
    for field in ("initial_q", "step_penalty", "mc_mix", "label_window", "samples_per_label"):
        assert field in str(error.value)
    _config(tmp_path).validate()  # the defaults are valid


def test_fresh_and_stale_files_take_turns(tmp_path):
    files = []
    for age, name in enumerate(["new.tfrecord", "old.tfrecord", "older.tfrecord"]):
        path = tmp_path / name
        path.write_bytes(b"")
        os.utime(path, (1000 - age, 1000 - age))
        files.append(str(path))
    labelled = {"a.tfrecord": 3, "b.tfrecord": 1, "c.tfrecord": 4}
    stale = [str(tmp_path / n) for n in labelled]
    everything = files + stale
    pick = loop.next_replay_file
    assert pick(everything, labelled, 4, relabel_turn=False) == files[0]  # the newest fresh
    assert pick(everything, labelled, 4, relabel_turn=True) == stale[1]  # the oldest label
    assert pick(stale, labelled, 4, relabel_turn=False) == stale[1]  # no fresh: relabel
    assert pick(files, labelled, 4, relabel_turn=True) == files[0]  # no stale: fresh
    assert pick(stale, labelled, 1, relabel_turn=True) is None  # target did not move
    assert pick([], labelled, 4, relabel_turn=True) is None


def test_the_rate_limit_holds_the_learner_until_the_labels_are_written(tmp_path):
    counts = tmp_path / learner.LABEL_COUNTS
    learner.write_label_count(counts, 0, 60)
    learner.write_label_count(counts, 1, 40)
    assert learner.labels_written(counts, 1) == 40
    limit = learner.LabelRateLimit(counts, samples_per_label=4.0, batch_size=8, poll_secs=0.01)
    (hook,) = limit.create_hooks(None, tmp_path)
    hook.after_step(50, {})  # 50 * 8 / 4 = 100 labels: written, no wait
    assert limit.labels_needed(51, world_size=1) == 102
    assert limit.labels_needed(51, world_size=2) == 204  # every rank's samples count
    writing = threading.Event()

    def updater() -> None:
        time.sleep(0.2)
        writing.set()  # before the write: the hook may return as soon as it lands
        learner.write_label_count(counts, 1, 42)  # updater 1 labels two more

    thread = threading.Thread(target=updater)
    thread.start()
    hook.after_step(51, {})  # returns only once the count reaches 102
    assert writing.is_set()
    thread.join()
    with pytest.raises(ValueError, match="samples_per_label"):
        learner.LabelRateLimit(counts, samples_per_label=0.0, batch_size=8)


def test_two_updaters_label_each_file_once_with_clipped_double_q(tmp_path, monkeypatch):
    config = _config(tmp_path, updaters=2, clipped_double_q=True)
    loop.bootstrap_exports(config)  # version 0
    second = loop._second_target(config.lagged_export_dir)
    assert second.restore() and second.global_step == 0  # only one version: that one
    seed_everything(1)  # a second lagged version, with other weights
    export_saved_model(loop._critic(config), config.lagged_export_dir, global_step=5)
    names = [f"replay-{i}.tfrecord" for i in range(6)]
    owner = {n: 0 if loop.owns_replay_file(n, 0, 2) else 1 for n in names}
    assert set(owner.values()) == {0, 1}, owner  # both updaters have work
    _write_replay(config, names)
    labellers: list[bellman.BellmanLabeller] = []
    original_init = bellman.BellmanLabeller.__init__

    def spy_init(self, *args, **kwargs):
        original_init(self, *args, **kwargs)
        labellers.append(self)

    monkeypatch.setattr(bellman.BellmanLabeller, "__init__", spy_init)
    contexts = [
        LoopContext(CollectShard(i, 0, 100 + i, str(config.labelled_dir)), 0) for i in range(2)
    ]
    errors: list[BaseException] = []

    def run(context: LoopContext) -> None:
        try:
            loop.bellman_update_loop(context.shard, context, config)
        except BaseException as e:  # reported below, in the test's thread
            errors.append(e)
            context.request_stop()

    # One after the other: in the loop each updater is its own process (loading
    # torch.export programs from two threads of one process at once is not supported).
    for context in contexts:
        thread = threading.Thread(target=run, args=(context,))
        thread.start()
        mine = sum(owner[n] == context.shard.index for n in names)
        deadline = time.monotonic() + 300  # a guard against hangs, not a timing assertion
        while context.episodes < mine and not errors and time.monotonic() < deadline:
            time.sleep(0.1)
        context.request_stop()
        thread.join()
    if errors:
        raise errors[0]
    # Every file labelled once, by its owner: the counts add up to the replay exactly.
    labelled = sorted(p.name for p in config.labelled_dir.iterdir())
    assert labelled == sorted(names)
    for index, context in enumerate(contexts):
        mine = [n for n in names if owner[n] == index]
        assert context.episodes == len(mine) and context.transitions == 3 * len(mine)
    # What the learners' rate limit reads: each updater's count of labels written.
    assert learner.labels_written(config.root / learner.LABEL_COUNTS) == 3 * len(names)
    for name in names:
        batch = parse_transitions(
            list(read_tfrecord(str(config.labelled_dir / name))), IMAGE_SIZE, labelled=True
        )
        assert batch["target_q"].shape == (3, 1) and np.isfinite(batch["target_q"]).all()
    # Clipped double Q: each updater's labeller took the min of versions 5 and 0.
    assert len(labellers) == 2
    for labeller in labellers:
        assert labeller.target_predictor.global_step == 5
        assert labeller.second_target_predictor is not None
        assert labeller.second_target_predictor.global_step == 0
    assert [v.version for v in layout.list_versions(config.lagged_export_dir)] == [0, 5]
