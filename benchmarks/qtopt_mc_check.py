"""QT-Opt critic sanity check without Bellman: regress Q on Monte-Carlo returns, then act by CEM.

If the critic trained *supervised* on the discounted Monte-Carlo return
``gamma^(T-1-t) * R`` of logged episodes cannot rank the logged successful
actions above random ones, or its CEM policy cannot beat the random policy,
the fault is in the inputs, the capacity, the action encoding or CEM, not in
the Bellman targets. Steps (each cached under ``--work_dir``):

1. collect: scripted-with-noise, random and scripted-then-random episodes on
   the "train" objects (and held-out scripted-with-noise episodes on "test"
   for the ranking check), written once as TFRecords + a JSON index;
2. train: the critic on MC returns (log loss, as T2R), minibatches from the cache;
3. eval: (i) ranking: for held-out states, the rank of the logged action's Q
   among 63 uniform random actions' (successful and failed episodes apart);
   (ii) the greedy CEM policy vs the random policy on the same held-out bins,
   successes/trials with 95 % Wilson intervals, plus what the CEM policy did
   (episode length, closes, terminations).

Run: ``.venv/bin/python benchmarks/qtopt_mc_check.py --work_dir runs/qtopt_mc``.
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from t2r.atomic import atomic_write_text
from t2r.data import create_parse_tf_example_fn
from t2r.data.tfrecord import TFRecordWriter, read_tfrecord_with_offsets
from t2r.export import export_saved_model
from t2r.models.optimizers import create_adam_optimizer
from t2r.modes import ModeKeys
from t2r.policies import RandomPolicy
from t2r.predictors import ExportedModelPredictor

# Imported first: it sets MUJOCO_GL before mujoco loads.
from t2r.research.grasp_env.calibrate import wilson_interval
from t2r.research.grasp_env.grasp_env import GraspEnv
from t2r.research.grasp_env.scripted import ScriptedGraspPolicy
from t2r.research.qtopt import Grasping44CriticModel, qtopt_cem_policy
from t2r.research.qtopt.learner import NETWORKS
from t2r.research.qtopt.models import Grasping44Preprocessor
from t2r.research.qtopt.offline import RandomAfterScripted, collect_episodes
from t2r.research.qtopt.transitions import (
    grasp_episode_to_transitions,
    label_records,
    parse_transitions,
)
from t2r.train import seed_everything

SIZES: dict[str, dict[str, Any]] = {"t2r": NETWORKS["grasping44"], "small": NETWORKS["small"]}

logger = logging.getLogger("qtopt_mc_check")


def _env(object_set: str, seed: int, args: argparse.Namespace) -> GraspEnv:
    return GraspEnv(object_set, seed=seed, **json.loads(args.env_kwargs))


def collect(
    args: argparse.Namespace,
    name: str,
    object_set: str,
    seed: int,
    mix: list[tuple[str, float, int]],
) -> Path:
    """Episodes of each (kind, noise, count) of `mix` -> name.tfrecord + name.json (cached)."""
    path = args.work_dir / f"{name}.tfrecord"
    index_path = args.work_dir / f"{name}.json"
    if path.exists() and index_path.exists():
        return path
    started = time.perf_counter()
    env = _env(object_set, seed, args)
    lengths: list[int] = []
    rewards: list[float] = []
    kinds: list[str] = []
    with TFRecordWriter(str(path)) as writer:
        for kind, noise, count in mix:
            scripted = ScriptedGraspPolicy(env, noise=noise, seed=seed + len(lengths))
            policy: Any
            if kind == "scripted":
                policy = scripted
            elif kind == "random":
                policy = RandomPolicy(6, seed=seed + len(lengths))
            else:
                policy = RandomAfterScripted(scripted, seed + len(lengths))
            for episode in collect_episodes(env, policy, count):
                for record in grasp_episode_to_transitions(episode):
                    writer.write(record)
                lengths.append(len(episode))
                rewards.append(float(episode[-1][2]))
                kinds.append(f"{kind}{noise:g}")
    index = {"lengths": lengths, "rewards": rewards, "kinds": kinds}
    # The index marks the cache complete: a run killed while writing it must not leave
    # a truncated one that the next run would take as a finished collection.
    atomic_write_text(index_path, json.dumps(index))
    logger.info(
        "collected %s: %d episodes, %d transitions, %.1f%% successful, %.0f s",
        name,
        len(lengths),
        sum(lengths),
        100 * np.mean(rewards),
        time.perf_counter() - started,
    )
    return path


def load(path: Path) -> tuple[list[bytes], dict[str, Any]]:
    records = [record for _, record in read_tfrecord_with_offsets(str(path))]
    index = json.loads(path.with_suffix(".json").read_text())
    assert len(records) == sum(index["lengths"]), (len(records), sum(index["lengths"]))
    return records, index


def mc_returns(index: dict[str, Any], gamma: float) -> np.ndarray:
    out = []
    for length, reward in zip(index["lengths"], index["rewards"]):
        out.extend(reward * gamma ** (length - 1 - t) for t in range(length))
    return np.asarray(out, np.float32)


def episode_ids(index: dict[str, Any]) -> np.ndarray:
    return np.repeat(np.arange(len(index["lengths"])), index["lengths"])


def train(
    args: argparse.Namespace,
    model: Grasping44CriticModel,
    records: list[bytes],
    targets: np.ndarray,
) -> None:
    parse = create_parse_tf_example_fn(
        model.get_feature_specification_for_packing(ModeKeys.TRAIN),
        model.get_label_specification_for_packing(ModeKeys.TRAIN),
    )
    features, labels = parse(label_records(records, targets))
    optimizer = model.create_optimizer()
    assert isinstance(optimizer, torch.optim.Optimizer)
    rng = np.random.default_rng(args.seed)
    model.train()
    started = time.perf_counter()
    losses: list[float] = []
    for step in range(1, args.steps + 1):
        index = torch.as_tensor(rng.choice(len(records), size=args.batch_size, replace=False))
        out = model.train_step(
            {k: v[index] for k, v in features.items()},
            {k: v[index] for k, v in labels.items()},
            optimizer,
        )
        losses.append(float(out.loss))
        if step % args.log_every == 0:
            logger.info(
                "step %d loss %.4f (%.1f steps/s)",
                step,
                np.mean(losses[-args.log_every :]),
                step / (time.perf_counter() - started),
            )
    model.eval()


def ranking(
    args: argparse.Namespace,
    predictor: ExportedModelPredictor,
    model: Grasping44CriticModel,
    records: list[bytes],
    index: dict[str, Any],
) -> dict[str, Any]:
    """Rank (0..63) of the logged action's Q among 63 random actions', by episode outcome."""
    batch = parse_transitions(records)
    rng = np.random.default_rng(args.seed + 5)
    env_action = np.asarray(batch["action/env_action"])
    ids = episode_ids(index)
    success = np.asarray(index["rewards"])[ids] > 0.5
    ranks = np.empty(len(records))
    q_data = np.empty(len(records))
    q_rand = np.empty(len(records))
    for start in range(0, len(records), 32):
        rows = slice(start, start + 32)
        n = len(env_action[rows])
        candidates = rng.uniform(-1, 1, size=(n, 64, 6)).astype(np.float32)
        candidates[:, 0] = env_action[rows]
        obs = {
            "image": np.asarray(batch["state/image"][rows]),
            "gripper_closed": np.asarray(batch["state/gripper_closed"][rows]),
            "height_to_bottom": np.asarray(batch["state/height_to_bottom"][rows]),
        }
        q = np.asarray(predictor.predict(model.pack_batch_features(obs, candidates))["q_predicted"])
        q = q.reshape(n, 64)
        ranks[rows] = (q[:, 1:] < q[:, :1]).sum(axis=1)
        q_data[rows] = q[:, 0]
        q_rand[rows] = q[:, 1:].mean(axis=1)
    out = {}
    for name, mask in (("successful", success), ("failed", ~success)):
        out[name] = {
            "transitions": int(mask.sum()),
            "mean_rank_of_logged_action_of_63": float(ranks[mask].mean()),
            "mean_q_logged": float(q_data[mask].mean()),
            "mean_q_random": float(q_rand[mask].mean()),
        }
    return out


def evaluate(args: argparse.Namespace, policy: Any, seed: int) -> dict[str, Any]:
    env = _env("test", seed, args)
    episodes = collect_episodes(env, policy, args.eval_episodes)
    successes = int(sum(e[-1][2] > 0.5 for e in episodes))
    low, high = wilson_interval(successes, len(episodes))
    actions = [np.asarray([t[1] for t in e]) for e in episodes]
    return {
        "successes": successes,
        "trials": len(episodes),
        "rate": successes / len(episodes),
        "wilson95": [round(low, 3), round(high, 3)],
        "mean_length": float(np.mean([len(e) for e in episodes])),
        "closed_before_last_step": float(np.mean([(a[:-1, 4] > 0).any() for a in actions])),
        "terminated_by_action": float(np.mean([a[-1, 5] > 0 for a in actions])),
        "mean_action": np.concatenate(actions).mean(axis=0).round(2).tolist(),
        "first_action_mean": np.asarray([a[0] for a in actions]).mean(axis=0).round(2).tolist(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work_dir", type=Path, default=Path("runs/qtopt_mc"))
    parser.add_argument("--env_kwargs", default="{}", help="GraspEnv kwargs as JSON")
    parser.add_argument("--size", choices=sorted(SIZES), default="small")
    parser.add_argument("--scripted", type=int, default=400, help="episodes per scripted noise")
    parser.add_argument("--random", type=int, default=400)
    parser.add_argument("--mixed", type=int, default=400)
    parser.add_argument("--heldout", type=int, default=100)
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--learning_rate", type=float, default=1e-3)
    parser.add_argument("--gamma", type=float, default=0.9)
    parser.add_argument("--eval_episodes", type=int, default=100)
    parser.add_argument("--log_every", type=int, default=250)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--crop", type=int, default=0, help="train on random crops of this side (0: none)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", type=Path, default=None)
    parser.add_argument("--collect_only", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(args.threads)
    seed_everything(args.seed)
    args.work_dir.mkdir(parents=True, exist_ok=True)

    data = collect(
        args,
        "train",
        "train",
        args.seed,
        [
            ("scripted", 0.2, args.scripted),
            ("scripted", 0.5, args.scripted),
            ("random", 0.0, args.random),
            ("mixed", 0.2, args.mixed),
        ],
    )
    heldout = collect(
        args,
        "heldout",
        "test",
        args.seed + 50_000,
        [("scripted", 0.3, args.heldout), ("random", 0.0, args.heldout)],
    )
    if args.collect_only:
        return
    records, index = load(data)
    targets = mc_returns(index, args.gamma)
    logger.info("%d transitions, mean MC target %.3f", len(records), targets.mean())
    model = Grasping44CriticModel(
        action_batch_size=64,
        network_kwargs=SIZES[args.size],
        preprocessor_cls=functools.partial(Grasping44Preprocessor, crop_size=args.crop or None),
        create_optimizer_fn=functools.partial(
            create_adam_optimizer, learning_rate=args.learning_rate
        ),
    )
    started = time.perf_counter()
    train(args, model, records, targets)
    train_secs = time.perf_counter() - started
    export_dir = args.work_dir / "export"
    export_saved_model(model, export_dir, global_step=args.steps, exports_to_keep=1)
    predictor = ExportedModelPredictor(export_dir, timeout=0, trust_torchscript=True)
    if not predictor.restore():  # not an assert: restoring is the work
        raise SystemExit(f"{__file__}: the export just written did not restore.")
    held_records, held_index = load(heldout)
    result: dict[str, Any] = {
        "args": {k: str(v) for k, v in vars(args).items()},
        "transitions": len(records),
        "train_secs": round(train_secs, 1),
        "ranking": ranking(args, predictor, model, held_records, held_index),
    }
    logger.info("ranking %s", json.dumps(result["ranking"]))
    eval_seed = 10_000 + args.seed
    result["cem"] = evaluate(args, qtopt_cem_policy(predictor, model, seed=args.seed), eval_seed)
    logger.info("cem %s", json.dumps(result["cem"]))
    result["random"] = evaluate(args, RandomPolicy(6, seed=args.seed + 1), eval_seed)
    logger.info("random %s", json.dumps(result["random"]))
    print(json.dumps(result, indent=1))
    if args.output is not None:
        atomic_write_text(args.output, json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
