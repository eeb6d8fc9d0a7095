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

from robomimic_offline_rl_lift import LIFT_KEYS, lift_parser, run_all, set_budget
from t2r.robomimic.config import Config, default_config

ALGOS = ("hbc", "iris")


def config_for(algo: str, args: argparse.Namespace) -> Config:
    """robomimic's defaults for `algo` with this benchmark's budget and Lift's keys."""
    config = default_config(algo)
    set_budget(config, algo, args, filter_key=args.filter_key)
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
    description = (__doc__ or "").split("\n\n")[0]
    parser = lift_parser(description, ALGOS, "runs/hierarchical", epochs=10)
    parser.add_argument("--filter_key", default="expert")
    parser.add_argument("--iris_num_samples", type=int, default=20)
    parser.add_argument("--iris_action_samples", type=int, default=10)
    run_all(parser.parse_args(), config_for)


if __name__ == "__main__":
    main()
