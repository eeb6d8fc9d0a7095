"""BC, BC-RNN and the offline RL algorithms on mixed-quality Lift data, one budget each.

The data (expert, noisy and failed scripted demos with the environment's success
rewards) comes from::

    t2r robomimic demos --env Lift --n 100 --noisy 100 --failed 100 --output runs/lift_mixed.hdf5

Each algorithm starts from robomimic's default config for it (Lift's four low-dim
observation keys, normalized observations), trains ``--epochs`` x
``--steps_per_epoch`` updates of batch ``--batch_size`` on ``mask/train`` with
`t2r.robomimic.training.train` (no rollouts while training: the final weights are
judged, the same for everyone), then its final export is rolled out ``--n_rollouts``
times (``--horizon`` steps at most, ended at the first success) on the same seeded
initial states. Prints a table (success rate, training and evaluation time) and
writes every result to ``<output_dir>/results_<algos>.json``.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/robomimic_offline_rl_lift.py \\
        --dataset runs/lift_mixed.hdf5 --algos bc bc_rnn bcq cql iql td3_bc
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from t2r.robomimic.config import Config, default_config
from t2r.robomimic.training import evaluate_checkpoint, train

LIFT_KEYS = ["robot0_eef_pos", "robot0_eef_quat", "robot0_gripper_qpos", "object"]
ALGOS = ("bc", "bc_rnn", "bcq", "cql", "iql", "td3_bc")


def set_budget(config: Config, algo: str, args: argparse.Namespace, filter_key: str) -> None:
    """This benchmark's budget on `config` (shared by robomimic_hierarchical_lift.py):
    ``args.epochs`` x ``args.steps_per_epoch`` updates of ``args.batch_size`` on
    ``mask/<filter_key>``, normalized observations, no validation or rollouts while
    training, CPU, training seed 1."""
    config.experiment.name = algo
    config.experiment.validate = False
    config.experiment.rollout.enabled = False
    config.experiment.render_video = False
    config.experiment.epoch_every_n_steps = args.steps_per_epoch
    config.train.num_epochs = args.epochs
    config.train.batch_size = args.batch_size
    config.train.hdf5_filter_key = filter_key
    config.train.hdf5_normalize_obs = True  # part 1: Lift's cube offsets need it
    config.train.cuda = False
    config.train.seed = 1


def config_for(algo: str, args: argparse.Namespace) -> Config:
    """robomimic's defaults for `algo` with this benchmark's budget and Lift's keys."""
    config = default_config("bc" if algo == "bc_rnn" else algo)
    set_budget(config, algo, args, filter_key="train")
    config.observation.modalities.obs.low_dim = list(LIFT_KEYS)
    if algo == "bc_rnn":  # part 1's BC-RNN (benchmarks/robomimic_bc_rnn_lift.json)
        config.train.seq_length = 10
        config.algo.actor_layer_dims = []
        config.algo.rnn.update({"enabled": True, "horizon": 10, "hidden_dim": 128})
        config.algo.optim_params.policy.learning_rate.initial = 1e-3
    return config


def run(algo: str, config: Config, args: argparse.Namespace) -> dict[str, Any]:
    """Trains `config` on ``args.dataset``, rolls its export out, returns the numbers."""
    out = Path(args.output_dir) / algo
    start = time.perf_counter()
    summary = train(config, args.dataset, out, device="cpu", show_progress=False)
    train_seconds = time.perf_counter() - start
    start = time.perf_counter()
    result = evaluate_checkpoint(
        out,
        n_rollouts=args.n_rollouts,
        horizon=args.horizon,
        seed=args.seed,
        dataset=args.dataset,
        show_progress=False,
    )
    eval_seconds = time.perf_counter() - start
    return {
        "algo": algo,
        "updates": summary.global_step,
        "success_rate": result["Success_Rate"],
        "num_success": result.get("Num_Success"),
        "mean_horizon": result.get("Horizon"),
        "train_seconds": train_seconds,
        "eval_seconds": eval_seconds,
    }


def lift_parser(
    description: str, algos: Sequence[str], output_dir: str, epochs: int
) -> argparse.ArgumentParser:
    """The options both Lift benchmarks take (data, budget, rollouts, threads); the
    caller adds its own."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--dataset", default="runs/lift_mixed.hdf5")
    parser.add_argument("--output_dir", default=output_dir)
    parser.add_argument("--algos", nargs="+", default=list(algos), choices=algos)
    parser.add_argument("--epochs", type=int, default=epochs)
    parser.add_argument("--steps_per_epoch", type=int, default=100)
    parser.add_argument("--batch_size", type=int, default=100)
    parser.add_argument("--n_rollouts", type=int, default=50)
    parser.add_argument("--horizon", type=int, default=200)
    parser.add_argument("--seed", type=int, default=12345)
    parser.add_argument("--threads", type=int, default=1)
    return parser


def run_all(
    args: argparse.Namespace, config_for: Callable[[str, argparse.Namespace], Config]
) -> None:
    """Trains and rolls out every algorithm of ``args.algos`` in turn, printing each
    result as it comes, then writes them all (`write_results`)."""
    torch.set_num_threads(args.threads)
    results = []
    for algo in args.algos:
        results.append(run(algo, config_for(algo, args), args))
        print(json.dumps(results[-1]), flush=True)
    write_results(results, args)


def main() -> None:
    description = (__doc__ or "").split("\n\n")[0]
    args = lift_parser(description, ALGOS, "runs/offline_rl", epochs=50).parse_args()
    run_all(args, config_for)


def write_results(results: list[dict[str, Any]], args: argparse.Namespace) -> None:
    """Writes ``<output_dir>/results_<algos>.json`` and prints the markdown table."""
    path = Path(args.output_dir) / f"results_{'_'.join(args.algos)}.json"
    path.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\n| algo | updates | success ({args.n_rollouts} rollouts) | train s | eval s |")
    print("|---|---:|---:|---:|---:|")
    for r in results:
        print(
            f"| {r['algo']} | {r['updates']} | {r['success_rate']:.2f} | "
            f"{r['train_seconds']:.0f} | {r['eval_seconds']:.0f} |"
        )


if __name__ == "__main__":
    main()
