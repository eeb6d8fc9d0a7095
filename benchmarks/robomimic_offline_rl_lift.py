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
from pathlib import Path
from typing import Any

import torch

from t2r.robomimic.config import Config, default_config
from t2r.robomimic.training import evaluate_checkpoint, train

LIFT_KEYS = ["robot0_eef_pos", "robot0_eef_quat", "robot0_gripper_qpos", "object"]
ALGOS = ("bc", "bc_rnn", "bcq", "cql", "iql", "td3_bc")


def config_for(algo: str, epochs: int, steps_per_epoch: int, batch_size: int) -> Config:
    """robomimic's defaults for `algo` with this benchmark's budget and Lift's keys."""
    config = default_config("bc" if algo == "bc_rnn" else algo)
    config.experiment.name = algo
    config.experiment.validate = False
    config.experiment.rollout.enabled = False
    config.experiment.render_video = False
    config.experiment.epoch_every_n_steps = steps_per_epoch
    config.observation.modalities.obs.low_dim = list(LIFT_KEYS)
    config.train.num_epochs = epochs
    config.train.batch_size = batch_size
    config.train.hdf5_filter_key = "train"
    config.train.hdf5_normalize_obs = True  # part 1: Lift's cube offsets need it
    config.train.cuda = False
    config.train.seed = 1
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="runs/lift_mixed.hdf5")
    parser.add_argument("--output_dir", default="runs/offline_rl")
    parser.add_argument("--algos", nargs="+", default=list(ALGOS), choices=ALGOS)
    parser.add_argument("--epochs", type=int, default=50)
    parser.add_argument("--steps_per_epoch", type=int, default=100)
    parser.add_argument("--batch_size", type=int, default=100)
    parser.add_argument("--n_rollouts", type=int, default=50)
    parser.add_argument("--horizon", type=int, default=200)
    parser.add_argument("--seed", type=int, default=12345)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    results = []
    for algo in args.algos:
        config = config_for(algo, args.epochs, args.steps_per_epoch, args.batch_size)
        results.append(run(algo, config, args))
        print(json.dumps(results[-1]), flush=True)
    write_results(results, args)


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
