"""QT-Opt offline learning check: does the critic + CEM learn to grasp from logged episodes?

One process, no Ray: collect scripted-with-noise and uniformly random episodes
on the grasp env's "train" objects, run fitted Q iteration
(`t2r.research.qtopt.offline.fitted_q_iteration`: Bellman targets by CEM on a
lagged target export, train, refresh the target, repeat), then run the CEM
policy on the held-out "test" objects against the random policy on the very
same bins (both test envs are seeded alike, so episode i shows both policies
the same objects in the same poses). The scripted policy's success on those
bins is printed as the ceiling.

``--size`` picks the critic's width: ``t2r`` is Grasping44 as T2R built it
(64 filters, 6/6/3 convs), ``small`` 32 filters and 2/2/1 convs (same layer
types and order; what fits a shared 2-core CPU in tens of minutes).

Run: ``nice -n 5 .venv/bin/python benchmarks/qtopt_offline.py --output qtopt_offline.json``
(about 20-40 minutes on one loaded core with the defaults; ``--quick`` is a
few-minute smoke run).
"""

from __future__ import annotations

import argparse
import datetime
import functools
import json
import logging
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from t2r.atomic import atomic_write_text
from t2r.data.tfrecord import read_tfrecord_with_offsets
from t2r.export import export_saved_model
from t2r.models.optimizers import create_adam_optimizer
from t2r.policies import RandomPolicy
from t2r.predictors import ExportedModelPredictor

# Imported first: it sets MUJOCO_GL before mujoco loads.
from t2r.research.grasp_env.calibrate import wilson_interval
from t2r.research.grasp_env.grasp_env import GraspEnv
from t2r.research.grasp_env.scripted import ScriptedGraspPolicy
from t2r.research.qtopt import Grasping44CriticModel, qtopt_cem_policy
from t2r.research.qtopt.learner import NETWORKS
from t2r.research.qtopt.offline import (
    IterationStats,
    RandomAfterScripted,
    collect_episodes,
    episodes_to_records,
    evaluate_success,
    fitted_q_iteration,
)
from t2r.research.qtopt.transitions import parse_transitions
from t2r.train import seed_everything

SIZES: dict[str, dict[str, Any]] = {"t2r": NETWORKS["grasping44"], "small": NETWORKS["small"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", choices=sorted(SIZES), default="small")
    parser.add_argument("--scripted_episodes", type=int, default=300)
    parser.add_argument("--random_episodes", type=int, default=300)
    parser.add_argument("--noise", type=float, default=0.3, help="scripted policy's noise")
    parser.add_argument(
        "--mixed_episodes",
        type=int,
        default=200,
        help="episodes that act scripted for a random 1-7 steps, then randomly: "
        "approaches that end anywhere (near misses and lucky grasps)",
    )
    parser.add_argument("--iterations", type=int, default=8)
    parser.add_argument("--steps_per_iteration", type=int, default=400)
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--learning_rate", type=float, default=3e-4)
    parser.add_argument("--gamma", type=float, default=0.9)
    parser.add_argument(
        "--clipped_double_q",
        action="store_true",
        help="targets from the minimum of the last two target exports (QT-Opt's remedy "
        "for the max's overestimation)",
    )
    parser.add_argument(
        "--data",
        type=Path,
        default=None,
        help="a TFRecord file of transition records to train on instead of collecting "
        "(e.g. benchmarks/qtopt_mc_check.py's cached runs/qtopt_mc/train.tfrecord)",
    )
    parser.add_argument(
        "--max_transitions", type=int, default=None, help="a seeded subset of --data's records"
    )
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--eval_episodes", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="a few-minute smoke run")
    parser.add_argument("--output", type=Path, default=None, help="write the figures as JSON")
    args = parser.parse_args()
    if args.quick:
        args.scripted_episodes, args.random_episodes, args.mixed_episodes = 20, 20, 0
        args.iterations, args.steps_per_iteration, args.eval_episodes = 2, 20, 10
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(args.threads)
    seed_everything(args.seed)
    started = time.perf_counter()

    if args.data is not None:
        records = [record for _, record in read_tfrecord_with_offsets(str(args.data))]
        if args.max_transitions is not None and args.max_transitions < len(records):
            keep = np.random.default_rng(args.seed).choice(
                len(records), args.max_transitions, replace=False
            )
            records = [records[i] for i in np.sort(keep)]
        parsed = parse_transitions(records)
        episode_count = int(sum(float(d) for d in parsed["done"].reshape(-1)))
        successes = float(parsed["reward"].sum())
    else:
        env = GraspEnv("train", seed=args.seed)
        scripted = ScriptedGraspPolicy(env, noise=args.noise, seed=args.seed)
        random_policy = RandomPolicy(action_size=6, seed=args.seed)
        episodes = collect_episodes(env, scripted, args.scripted_episodes)
        episodes += collect_episodes(env, random_policy, args.random_episodes)
        if args.mixed_episodes:
            switching = RandomAfterScripted(scripted, args.seed)
            episodes += collect_episodes(env, switching, args.mixed_episodes)
        records = episodes_to_records(episodes)
        successes = sum(float(e[-1][2]) for e in episodes)
        episode_count = len(episodes)
    collect_secs = time.perf_counter() - started
    logging.info(
        "%d episode ends, %d transitions, %d successes in %.0f s",
        episode_count,
        len(records),
        successes,
        collect_secs,
    )

    model = Grasping44CriticModel(
        action_batch_size=64,
        network_kwargs=SIZES[args.size],
        create_optimizer_fn=functools.partial(
            create_adam_optimizer, learning_rate=args.learning_rate
        ),
    )
    history: list[IterationStats] = []
    with tempfile.TemporaryDirectory(prefix="qtopt_offline_") as work_dir:
        fitted_q_iteration(
            model,
            records,
            work_dir,
            iterations=args.iterations,
            steps_per_iteration=args.steps_per_iteration,
            batch_size=args.batch_size,
            gamma=args.gamma,
            seed=args.seed,
            on_iteration=history.append,
            clipped_double_q=args.clipped_double_q,
        )
        train_secs = time.perf_counter() - started - collect_secs
        policy_dir = Path(work_dir) / "policy"
        export_saved_model(model, policy_dir, global_step=args.iterations)
        predictor = ExportedModelPredictor(policy_dir, timeout=0, trust_torchscript=True)
        if not predictor.restore():  # not an assert: restoring is the work
            raise SystemExit(f"{__file__}: the export just written did not restore.")
        cem = qtopt_cem_policy(predictor, model, seed=args.seed)
        eval_seed = 10_000 + args.seed
        test_env = GraspEnv("test", seed=eval_seed)
        results = {
            "cem": evaluate_success(GraspEnv("test", seed=eval_seed), cem, args.eval_episodes),
            "random": evaluate_success(
                GraspEnv("test", seed=eval_seed),
                RandomPolicy(6, seed=args.seed + 1),
                args.eval_episodes,
            ),
            "scripted": evaluate_success(
                test_env, ScriptedGraspPolicy(test_env, noise=0.0), args.eval_episodes
            ),
        }
    figures = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cpus (shared)",
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "episode_ends": episode_count,  # with --max_transitions: of a transition subset
        "transitions": len(records),
        "logged_successes": successes,
        "collect_secs": round(collect_secs, 1),
        "train_secs": round(train_secs, 1),
        "iterations": [vars(h) for h in history],
        "test_success": results,
        "eval_episodes": args.eval_episodes,
    }
    print(f"\nQT-Opt offline check ({args.size} critic, {len(records)} transitions)")
    print("iteration  mean target (live)  loss first->last  label s  train s")
    for h in history:
        print(
            f"{h.iteration:9d}  {h.mean_target_live:18.3f}  {h.first_loss:6.3f} -> "
            f"{h.last_loss:6.3f}  {h.label_secs:7.1f}  {h.train_secs:7.1f}"
        )
    print(f"\nheld-out 'test' objects, {args.eval_episodes} episodes on the same bins:")
    for name, value in results.items():
        hits = round(value * args.eval_episodes)
        low, high = wilson_interval(hits, args.eval_episodes)
        print(
            f"  {name:9s} {value:6.1%}  ({hits}/{args.eval_episodes}, "
            f"95 % Wilson {low:.1%} - {high:.1%})"
        )
    if args.output is not None:
        atomic_write_text(args.output, json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
