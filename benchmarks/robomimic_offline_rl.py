"""Offline RL training throughput (samples/s): CQL and IQL beside BC-RNN-GMM, in one run.

Each algorithm at robomimic's default config for it (CQL: batch 1024, 2 critics and
an actor of 300-400 units, 10 random + 20 policy actions per state in the
conservative term; IQL: batch 100, 2 critics, V and a Gaussian actor of 300-400
units; TD3_BC and BCQ at their defaults too) on Lift's four low-dim observation keys
(19 values, 7-d actions), and BC-RNN-GMM at robomimic's BC-RNN setting
(`benchmarks/robomimic_bc_rnn.py`). A sample is one transition (one sequence for
BC-RNN) of the batch.

Rows per algorithm:

* ``train_step``: `AlgoModel.train_step` on batches already in memory: every
  network's forward, backward and optimizer step, the target updates (the compute);
* ``loop`` (``--loop``): `train_eval_model` over the HDF5 file (input included),
  timed between steps from a hook.

The data is generated (random Lift-shaped observations, next_obs, rewards and dones;
the content does not change the cost), so no robosuite is needed.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/robomimic_offline_rl.py --threads 1 [--loop]
"""

from __future__ import annotations

import argparse
import datetime
import functools
import os
import platform
import statistics
import tempfile
from typing import Any

import numpy as np
import torch

from robomimic_bc_rnn import time_train_eval_model, time_train_step

LIFT_SHAPES = {
    "robot0_eef_pos": (3,),
    "robot0_eef_quat": (4,),
    "robot0_gripper_qpos": (2,),
    "object": (10,),
}
ALGOS = ("bc_rnn_gmm", "iql", "cql", "td3_bc", "bcq")


def write_dataset(path: str, demos: int = 20, steps: int = 60) -> str:
    from t2r.robomimic.hdf5 import Demo, write_robomimic_hdf5

    rng = np.random.default_rng(0)
    data = []
    for _ in range(demos):
        obs = {k: rng.normal(size=(steps, *s)).astype(np.float32) for k, s in LIFT_SHAPES.items()}
        rewards = np.zeros(steps, np.float32)
        rewards[-10:] = 1.0
        dones = np.zeros(steps, np.float32)
        dones[-1] = 1.0
        actions = rng.uniform(-1, 1, (steps, 7)).astype(np.float32)
        data.append(Demo(obs=obs, actions=actions, rewards=rewards, dones=dones))
    env_args = {"env_name": "Lift", "type": 1, "env_kwargs": {}}
    return str(write_robomimic_hdf5(path, data, env_args))


def config_for(algo: str, dataset: str, output_dir: str) -> Any:
    """robomimic's defaults for `algo` (BC-RNN-GMM: its BC-RNN template values)."""
    from t2r.robomimic.config import default_config

    config = default_config("bc" if algo == "bc_rnn_gmm" else algo)
    config.experiment.update(name=f"bench_{algo}", validate=False, render_video=False)
    config.experiment.rollout.enabled = False
    config.experiment.epoch_every_n_steps = 100
    config.observation.modalities.obs.low_dim = list(LIFT_SHAPES)
    config.train.update(data=dataset, output_dir=output_dir, num_epochs=1, cuda=False, seed=1)
    config.train.hdf5_normalize_obs = False
    if algo == "bc_rnn_gmm":
        config.train.seq_length = 10
        config.algo.actor_layer_dims = []
        config.algo.gmm.update({"enabled": True, "num_modes": 5})
        config.algo.rnn.update({"enabled": True, "horizon": 10, "hidden_dim": 400})
    return config


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--algos", nargs="+", default=list(ALGOS), choices=ALGOS)
    parser.add_argument("--steps", type=int, default=20, help="timed updates per row")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--loop", action="store_true", help="also time train_eval_model")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(
        f"{datetime.date.today()} {platform.machine()} {os.cpu_count()} CPUs, torch "
        f"{torch.__version__}, {torch.get_num_threads()} thread(s), load "
        f"{os.getloadavg()[0]:.1f}"
    )
    print("| algorithm | batch | row | samples/s (median) | range | updates/s |")
    print("|---|---:|---|---:|---|---:|")
    with tempfile.TemporaryDirectory() as tmp:
        dataset = write_dataset(os.path.join(tmp, "lift_like.hdf5"))
        for algo in args.algos:
            config = config_for(algo, dataset, os.path.join(tmp, "runs"))
            batch = int(config.train.batch_size)
            rows = [("train_step", functools.partial(time_train_step, prefetch=4))]
            if args.loop:
                rows.append(("loop", time_train_eval_model))
            for name, timer in rows:
                rates = [timer(config, dataset, args.steps) for _ in range(args.repeats)]
                rate = statistics.median(rates)
                print(
                    f"| {algo} | {batch} | {name} | {rate:,.0f} | "
                    f"{min(rates):,.0f}-{max(rates):,.0f} | {rate / batch:.2f} |",
                    flush=True,
                )


if __name__ == "__main__":
    main()
