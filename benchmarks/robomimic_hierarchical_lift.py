"""HBC and IRIS learn Lift from the expert scripted demos, one budget each.

The data is the expert part (``mask/expert``) of the mixed-quality Lift file::

    t2r robomimic demos --env Lift --n 100 --noisy 100 --failed 100 --output runs/lift_mixed.hdf5

Each algorithm starts from robomimic's default config for it (Lift's four low-dim
observation keys, normalized observations) with part 1's BC-RNN actor (LSTM 2 x 128,
no MLP, lr 1e-3, as benchmarks/robomimic_bc_rnn_lift.json) and, for IRIS, fewer
candidates than robomimic's 100 x 100 (``--iris_num_samples`` subgoals, each rated by
``--iris_action_samples`` BCQ action samples: the export re-runs the value planner
every step, see docs/robomimic.md). It trains ``--epochs`` x ``--steps_per_epoch``
updates of batch ``--batch_size`` with `t2r.robomimic.training.train` (no rollouts while
training), then its final export is rolled out ``--n_rollouts`` times (``--horizon``
steps at most, ended at the first success) on seeded initial states. Prints a table and
writes the results to ``<output_dir>/results_<algos>.json``.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/robomimic_hierarchical_lift.py \\
        --dataset runs/lift_mixed.hdf5 --algos hbc iris
"""

from __future__ import annotations

import argparse
import json

import torch

from robomimic_offline_rl_lift import run, write_results
from t2r.robomimic.config import Config, default_config

LIFT_KEYS = ["robot0_eef_pos", "robot0_eef_quat", "robot0_gripper_qpos", "object"]
ALGOS = ("hbc", "iris")


def config_for(algo: str, args: argparse.Namespace) -> Config:
    """robomimic's defaults for `algo` with this benchmark's budget and Lift's keys."""
    config = default_config(algo)
    config.experiment.name = algo
    config.experiment.validate = False
    config.experiment.rollout.enabled = False
    config.experiment.render_video = False
    config.experiment.epoch_every_n_steps = args.steps_per_epoch
    config.train.num_epochs = args.epochs
    config.train.batch_size = args.batch_size
    config.train.hdf5_filter_key = args.filter_key
    config.train.hdf5_normalize_obs = True
    config.train.cuda = False
    config.train.seed = 1
    actor = config.algo.actor
    actor.actor_layer_dims = []
    actor.rnn.hidden_dim = 128
    actor.optim_params.policy.learning_rate.initial = 1e-3
    parts = [config.observation.actor]
    if algo == "hbc":
        parts.append(config.observation.planner)
    else:
        parts += [config.observation.value_planner.planner, config.observation.value_planner.value]
        config.algo.value_planner.num_samples = args.iris_num_samples
        config.algo.value_planner.value.critic.num_action_samples_rollout = args.iris_action_samples
    for part in parts:
        part.modalities.obs.low_dim = list(LIFT_KEYS)
    return config


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="runs/lift_mixed.hdf5")
    parser.add_argument("--filter_key", default="expert")
    parser.add_argument("--output_dir", default="runs/hierarchical")
    parser.add_argument("--algos", nargs="+", default=list(ALGOS), choices=ALGOS)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--steps_per_epoch", type=int, default=100)
    parser.add_argument("--batch_size", type=int, default=100)
    parser.add_argument("--iris_num_samples", type=int, default=20)
    parser.add_argument("--iris_action_samples", type=int, default=10)
    parser.add_argument("--n_rollouts", type=int, default=50)
    parser.add_argument("--horizon", type=int, default=200)
    parser.add_argument("--seed", type=int, default=12345)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    results = []
    for algo in args.algos:
        results.append(run(algo, config_for(algo, args), args))
        print(json.dumps(results[-1]), flush=True)
    write_results(results, args)


if __name__ == "__main__":
    main()
