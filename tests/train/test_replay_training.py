"""train_eval_model on a replay directory that a collector process keeps adding to."""

from __future__ import annotations

import multiprocessing
import os
import queue
import time
from typing import Any

import numpy as np

from t2r.data import ReplayInputGenerator, TFRecordWriter, create_serialize_tf_example_fn
from t2r.train import CallbackHook, HookBuilder, seed_everything, train_eval_model

from .models import TinyRegression

PER_FILE = 20
# Pinned, not auto (which follows the machine's CPUs): the freshness bound depends on them.
WORKERS, PREFETCH = 2, 2


def write_episode(directory: str, number: int, pause: float = 0.0) -> None:
    """Records whose x[0] is the episode number (x[1], x[2] the record index / 100)."""
    model = TinyRegression()
    serialize = create_serialize_tf_example_fn(
        model.get_feature_specification("train"), model.get_label_specification("train")
    )
    with TFRecordWriter(os.path.join(directory, f"episode-{number:03d}.tfrecord")) as writer:
        for i in range(PER_FILE):
            x = np.array([number, i / 100, i / 100], np.float32)
            writer.write(serialize({"x": x}, {"target": x[:2]}))
            writer.flush()  # a partial temporary file sits in the directory meanwhile
            time.sleep(pause)


def collector(directory: str, go: Any, published: Any) -> None:
    for number in (1, 2):
        go.wait()
        go.clear()
        write_episode(directory, number, pause=0.005)
        published.put(number)


class Recording:
    """Passes the replay input through, noting the episodes in each batch."""

    def __init__(self, inner: ReplayInputGenerator) -> None:
        self.inner = inner
        self.episodes: list[set[int]] = []

    def set_specification_from_model(self, t2r_model: Any, mode: str) -> None:
        self.inner.set_specification_from_model(t2r_model, mode)

    def set_default_seed(self, seed: int) -> None:
        self.inner.set_default_seed(seed)

    def create_dataset(self, mode: str) -> Any:
        for features, labels in self.inner.create_dataset(mode):
            self.episodes.append({int(v) for v in features.x[:, 0].tolist()})
            yield features, labels


class Collect(HookBuilder):
    """Starts an episode at steps 5 and 60; at steps 40 and 100 waits for it to be
    published and notes the step (so the test needs no timing)."""

    def __init__(self, go: Any, published: Any) -> None:
        self.go, self.published = go, published
        self.known: dict[int, int] = {}

    def create_hooks(self, t2r_model: Any, model_dir: str) -> list[CallbackHook]:
        def after_step(step: int, scalars: Any) -> None:
            if step in (5, 60):
                self.go.set()
            if step in (40, 100):
                number = self.published.get(timeout=120)
                self.known[number] = step

        return [CallbackHook(after_step=after_step)]


def test_a_learner_trains_on_episodes_published_while_it_runs(tmp_path) -> None:
    replay_dir = tmp_path / "replay"
    replay_dir.mkdir()
    write_episode(str(replay_dir), 0)
    context = multiprocessing.get_context("fork")
    go, published = context.Event(), context.Queue()
    process = context.Process(target=collector, args=(str(replay_dir), go, published))
    process.start()
    hook = Collect(go, published)
    try:
        seed_everything(0)
        inputs = Recording(
            ReplayInputGenerator(
                replay_dir,
                batch_size=4,
                refresh_secs=0.01,
                shuffle_buffer_size=1,
                num_workers=WORKERS,
                prefetch_factor=PREFETCH,
            )
        )
        train_eval_model(
            TinyRegression(),
            inputs,
            max_train_steps=140,
            model_dir=tmp_path / "model",
            save_checkpoints_steps=1000,
            show_progress=False,
            train_hook_builders=[hook],
        )
    finally:
        process.join(timeout=60)
        if process.is_alive():
            process.kill()
    assert process.exitcode == 0
    with_episode = {
        number: [step for step, seen in enumerate(inputs.episodes, 1) if number in seen]
        for number in (0, 1, 2)
    }
    for number in (1, 2):
        # In the batches within a few steps of its publication, and never before
        # it was complete (its records would not parse). The batches requested
        # before the hook saw it may all predate it; each worker's next batch
        # (or, if it looked just before, the one after) holds it.
        first = with_episode[number][0]
        assert first <= hook.known[number] + WORKERS * (PREFETCH + 2), (number, hook.known, first)
    assert with_episode[0]  # the older episode stays in the mix (uniform over transitions)
    assert with_episode[0][-1] > hook.known[2]
    try:
        published.get_nowait()
        raise AssertionError("an episode was published that the learner never waited for")
    except queue.Empty:
        pass
