"""robomimic HDF5 input rate: windows/s of RobomimicInputGenerator at BC-RNN's setting.

A Lift-like low-dim file is generated (default 200 demos x 60 steps; obs keys of
robomimic's Lift low-dim: robot0_eef_pos 3, robot0_eef_quat 4,
robot0_gripper_qpos 2, object 10, float64 like robosuite writes them; actions 7,
rewards, dones). Rows, each batch 100, seq_length 10, load_next_obs, TRAIN order:

* get_batch (cache all): ``SequenceDataset.get_batch`` on random indices, numpy
  only: the gather itself.
* item by item (cache all): ``dataset[i]`` for 100 random i and a stack per key,
  what a map-style DataLoader with a collate function would do.
* generator, N workers: ``RobomimicInputGenerator(...).create_dataset(TRAIN)``
  (the shared pipeline: shuffle, batch, parse to tensors) with N DataLoader workers.
* generator, cache None: the same, every window read from the file with h5py.

robomimic's BC-RNN trains at 413-514 samples/s on a 2-core machine (issue 12);
the input must stay far above the target of 2x that.

    .venv/bin/python benchmarks/robomimic_data.py [--demos 200] [--steps 60] [--batches 200]
"""

from __future__ import annotations

import argparse
import datetime
import itertools
import os
import platform
import tempfile
import time

import numpy as np

from t2r.modes import ModeKeys
from t2r.robomimic.dataset import RobomimicInputGenerator, SequenceDataset
from t2r.robomimic.hdf5 import Demo, write_robomimic_hdf5

OBS = {"robot0_eef_pos": 3, "robot0_eef_quat": 4, "robot0_gripper_qpos": 2, "object": 10}


def lift_like_file(path: str, demos: int, steps: int) -> str:
    rng = np.random.default_rng(0)
    out = []
    for _ in range(demos):
        n = int(steps + rng.integers(-steps // 5, steps // 5 + 1))
        obs = {k: rng.normal(size=(n, d)) for k, d in OBS.items()}
        rewards = np.zeros(n)
        rewards[-1] = 1
        out.append(
            Demo(
                obs=obs,
                actions=rng.uniform(-1, 1, (n, 7)),
                rewards=rewards,
                dones=(rewards > 0).astype(np.int64),
            )
        )
    write_robomimic_hdf5(path, out, {"env_name": "Lift", "type": 1, "env_kwargs": {}})
    return path


def rate(fn, batches: int, batch_size: int) -> float:
    fn()  # warm up
    start = time.perf_counter()
    for _ in range(batches):
        fn()
    return batches * batch_size / (time.perf_counter() - start)


def generator_rate(path: str, batches: int, cache: str | None, workers: int) -> float:
    gen = RobomimicInputGenerator(
        path,
        list(OBS),
        batch_size=100,
        seq_length=10,
        hdf5_cache_mode=cache,
        num_workers=workers,
        seed=0,
    )
    it = iter(gen.create_dataset(ModeKeys.TRAIN))
    next(it)  # start-up (workers, first epoch's order) is not counted
    start = time.perf_counter()
    for _ in itertools.islice(it, batches):
        pass
    return batches * 100 / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--demos", type=int, default=200)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--batches", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = lift_like_file(os.path.join(tmp, "lift.hdf5"), args.demos, args.steps)
        start = time.perf_counter()
        ds = SequenceDataset(path, list(OBS), seq_length=10, hdf5_cache_mode="all")
        build = time.perf_counter() - start
        rng = np.random.default_rng(0)
        rows = [
            (
                "get_batch (cache all)",
                rate(lambda: ds.get_batch(rng.integers(0, len(ds), 100)), args.batches, 100),
            ),
            ("item by item (cache all)", rate(lambda: _stacked(ds, rng), args.batches // 4, 100)),
        ]
        for workers in (0, 2):
            rows.append(
                (
                    f"generator, {workers} workers",
                    generator_rate(path, args.batches, "all", workers),
                )
            )
        rows.append(
            ("generator, cache None, 0 workers", generator_rate(path, args.batches // 4, None, 0))
        )
    print(
        f"# {datetime.date.today()} {platform.node()} {os.cpu_count()} CPUs; "
        f"{args.demos} demos, {len(ds)} windows; SequenceDataset(cache all) built in {build:.2f} s"
    )
    print(f"{'row':36s} {'windows/s':>12s}")
    for name, value in rows:
        print(f"{name:36s} {value:12,.0f}")


def _stacked(ds: SequenceDataset, rng: np.random.Generator) -> None:
    items = [ds[int(i)] for i in rng.integers(0, len(ds), 100)]
    np.stack([item["actions"] for item in items])
    for key in OBS:
        np.stack([item["obs"][key] for item in items])
        np.stack([item["next_obs"][key] for item in items])


if __name__ == "__main__":
    main()
