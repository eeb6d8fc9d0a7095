"""``t2r robomimic ...``: the robomimic subcommands (thin: flags -> library calls).

Each subcommand has an ``_add_<name>`` function that registers its parser and a
``_<name>`` function that runs it; :func:`add_robomimic_commands` calls the
``_add_*`` functions. Dataset tools: ``info``, ``split``. Scripted demonstrations:
``demos``. Training and evaluation: ``train``, ``eval``. Heavy imports (h5py, torch,
robosuite) happen inside the run functions, so ``t2r --help`` stays fast and works
without extras.
"""

from __future__ import annotations

import argparse
import json
import sys

__all__ = ["add_robomimic_commands"]


def add_robomimic_commands(subparsers: argparse._SubParsersAction) -> None:
    """Adds ``robomimic`` with its subcommands to the ``t2r`` command's subparsers."""
    robomimic = subparsers.add_parser(
        "robomimic",
        help="robomimic HDF5 datasets: info, split (and training, rollouts)",
        description="robomimic on t2r: dataset tools, training and evaluation.",
    )
    commands = robomimic.add_subparsers(dest="robomimic_command", metavar="COMMAND")
    robomimic.set_defaults(func=_usage, parser=robomimic)
    # dataset tools
    _add_info(commands)
    _add_split(commands)
    # demonstrations, training and evaluation
    _add_demos(commands)
    _add_train(commands)
    _add_eval(commands)


def _usage(args: argparse.Namespace) -> int:
    args.parser.print_help(sys.stderr)
    return 2


# ------------------------------------------------------------------------ info
def _add_info(commands: argparse._SubParsersAction) -> None:
    info = commands.add_parser(
        "info",
        help="demos, lengths, keys, filter keys and env of a robomimic HDF5 file",
        description=(
            "Describes a robomimic HDF5 file (robomimic's get_dataset_info): the demos and "
            "their lengths, each key's per-step shape and dtype, the filter keys under "
            "mask/, the action range and the env_args."
        ),
    )
    info.add_argument("dataset", help="the robomimic HDF5 file")
    info.add_argument("--json", action="store_true", help="print JSON instead of text")
    info.set_defaults(func=_info)


def _info(args: argparse.Namespace) -> int:
    from t2r.data.errors import DataError
    from t2r.robomimic.hdf5 import dataset_info, format_dataset_info

    try:
        info = dataset_info(args.dataset)
    except DataError as e:
        print(f"t2r robomimic info: error: {e}", file=sys.stderr)
        return 1
    print(json.dumps(info, indent=2) if args.json else format_dataset_info(info))
    return 0


# ----------------------------------------------------------------------- split
def _add_split(commands: argparse._SubParsersAction) -> None:
    split = commands.add_parser(
        "split",
        help="write mask/train and mask/valid filter keys (robomimic's split_train_val)",
        description=(
            "Splits the demos into training and validation filter keys, mask/train and "
            "mask/valid (with --filter_key K: the demos under mask/K into mask/K_train and "
            "mask/K_valid), as robomimic's split_train_val.py does; with the default seed "
            "the split is the same. The file is rewritten atomically."
        ),
    )
    split.add_argument("dataset", help="the robomimic HDF5 file (modified)")
    split.add_argument(
        "--val_ratio", "--ratio", type=float, default=0.1, help="share of demos for validation"
    )
    split.add_argument("--filter_key", default=None, help="split only the demos under mask/KEY")
    split.add_argument("--seed", type=int, default=0, help="seed of the shuffle")
    split.set_defaults(func=_split)


def _split(args: argparse.Namespace) -> int:
    from t2r.data.errors import DataError
    from t2r.robomimic.hdf5 import split_train_val

    try:
        masks = split_train_val(args.dataset, args.val_ratio, args.filter_key, args.seed)
    except (DataError, ValueError) as e:
        print(f"t2r robomimic split: error: {e}", file=sys.stderr)
        return 1
    for name, demos in masks.items():
        print(f"mask/{name}: {len(demos)} demos")
    return 0


# ----------------------------------------------------------------------- demos
def _add_demos(commands: argparse._SubParsersAction) -> None:
    demos = commands.add_parser(
        "demos",
        help="scripted robosuite demonstrations written as a robomimic HDF5 file",
        description=(
            "Runs the scripted Lift demonstrator (above the cube, down, close, lift) and "
            "writes the successful episodes as a robomimic HDF5 file: low-dim observations "
            "(and with --camera 84x84 agentview_image and robot0_eye_in_hand_image), "
            "actions, rewards, dones, simulator states, env_args, mask/train and mask/valid. "
            "Prints the demonstrator's success rate. With --noisy / --failed: a "
            "mixed-quality file for offline RL (--n expert demos, then noisy and failed "
            "ones with the environment's success rewards, under mask/expert, mask/noisy, "
            "mask/failed)."
        ),
    )
    demos.add_argument("--env", default="Lift", choices=["Lift"], help="the robosuite task")
    demos.add_argument("--n", type=int, default=200, help="successful demos to write")
    demos.add_argument("--output", required=True, help="the HDF5 file to write")
    demos.add_argument("--camera", action="store_true", help="add 84x84 camera observations")
    demos.add_argument("--seed", type=int, default=0)
    demos.add_argument(
        "--action_noise", type=float, default=0.05, help="std of the noise on the translation"
    )
    demos.add_argument("--val_ratio", type=float, default=0.1, help="share of demos in mask/valid")
    demos.add_argument(
        "--noisy", type=int, default=0, help="mixed data: demos under heavy action noise (kept)"
    )
    demos.add_argument(
        "--failed", type=int, default=0, help="mixed data: failed grasps (beside the cube)"
    )
    demos.add_argument("--no_progress", action="store_true")
    demos.set_defaults(func=_demos)


def _demos(args: argparse.Namespace) -> int:
    from t2r.robomimic.lift_demos import collect_lift_demos, collect_mixed_lift_demos

    if args.noisy or args.failed:
        if args.camera:
            print("t2r robomimic demos: error: mixed data is low-dim only", file=sys.stderr)
            return 1
        try:
            mixed = collect_mixed_lift_demos(
                args.output,
                expert=args.n,
                noisy=args.noisy,
                failed=args.failed,
                seed=args.seed,
                expert_noise=args.action_noise,
                val_ratio=args.val_ratio,
                show_progress=not args.no_progress,
            )
        except (RuntimeError, ValueError) as e:
            print(f"t2r robomimic demos: error: {e}", file=sys.stderr)
            return 1
        for kind, count in mixed.demos.items():
            print(
                f"{kind}: {count} demos, {mixed.successes[kind]} succeeded, mean length "
                f"{mixed.mean_length[kind]:.1f} steps"
            )
        print(f"wrote {sum(mixed.demos.values())} demos to {mixed.path}, {mixed.seconds:.0f} s")
        return 0
    try:
        stats = collect_lift_demos(
            args.n,
            args.output,
            camera=args.camera,
            seed=args.seed,
            action_noise=args.action_noise,
            val_ratio=args.val_ratio,
            show_progress=not args.no_progress,
        )
    except (RuntimeError, ValueError) as e:
        print(f"t2r robomimic demos: error: {e}", file=sys.stderr)
        return 1
    print(
        f"wrote {stats.demos} demos to {stats.path}: {stats.successes}/{stats.attempts} "
        f"episodes succeeded (success rate {stats.success_rate:.3f}), mean length "
        f"{stats.mean_length:.1f} steps, {stats.seconds:.0f} s"
    )
    return 0


# ----------------------------------------------------------------------- train
def _add_train(commands: argparse._SubParsersAction) -> None:
    train = commands.add_parser(
        "train",
        help="train a robomimic config on a robomimic HDF5 file (rerun to resume)",
        description=(
            "robomimic's train.py on t2r: reads a robomimic JSON config as it is, trains "
            "for train.num_epochs epochs of experiment.epoch_every_n_steps updates, "
            "validates on train.hdf5_validation_filter_key, rolls out every "
            "experiment.rollout.rate epochs in the dataset's environment, exports the best "
            "policy by success rate and by validation loss, writes TensorBoard summaries. "
            "Rerunning the same command resumes from the newest checkpoint."
        ),
    )
    train.add_argument("--config", required=True, help="robomimic JSON config")
    train.add_argument("--dataset", default=None, help="the HDF5 file (overrides train.data)")
    train.add_argument(
        "--output_dir",
        default=None,
        help="the run's directory (default: train.output_dir/experiment.name)",
    )
    train.add_argument(
        "--device", default=None, help="cpu, cuda or auto (default: from train.cuda)"
    )
    train.add_argument(
        "--num_threads",
        type=int,
        default=None,
        metavar="N",
        help=(
            "torch intra-op threads (default: $T2R_NUM_THREADS, else torch's); 1 is much "
            "faster on a machine busy with other work"
        ),
    )
    train.add_argument("--no_progress", action="store_true")
    train.set_defaults(func=_train, default_num_threads=None)


def _train(args: argparse.Namespace) -> int:
    import logging

    from t2r.data.errors import DataError
    from t2r.robomimic.config import ConfigError
    from t2r.robomimic.training import RunError, train

    logging.getLogger("t2r.robomimic.training").setLevel(logging.INFO)
    logging.getLogger("t2r.train.train_eval").setLevel(logging.INFO)
    if not logging.getLogger().handlers:
        logging.basicConfig(format="%(asctime)s %(message)s", level=logging.WARNING)
    try:
        summary = train(
            args.config,
            dataset=args.dataset,
            output_dir=args.output_dir,
            device=args.device,
            show_progress=not args.no_progress,
        )
    except (ConfigError, DataError, RunError) as e:
        print(f"t2r robomimic train: error: {e}", file=sys.stderr)
        return 1
    best = "n/a" if summary.best_success_rate is None else f"{summary.best_success_rate:.3f}"
    print(f"trained {summary.epochs} epochs ({summary.global_step} steps) in {summary.output_dir}")
    print(f"best rollout success rate: {best}")
    for name, path in summary.exports.items():
        print(f"export {name}: {path}")
    return 0


# ------------------------------------------------------------------------ eval
def _add_eval(commands: argparse._SubParsersAction) -> None:
    evaluate = commands.add_parser(
        "eval",
        help="roll out an exported policy: success rate and return (run_trained_agent)",
        description=(
            "robomimic's run_trained_agent.py on t2r: runs an export through RolloutPolicy "
            "(no algorithm code) for --n_rollouts episodes in the environment the dataset's "
            "env_args describe (recorded with the export) and prints the success rate and "
            "the return. --checkpoint is an export version, a directory of versions, or a "
            "'t2r robomimic train' output directory (its best-success export)."
        ),
    )
    evaluate.add_argument("--checkpoint", required=True, help="export or training output dir")
    evaluate.add_argument("--n_rollouts", type=int, default=50)
    evaluate.add_argument(
        "--horizon", type=int, default=None, help="steps per rollout (default: the config's)"
    )
    evaluate.add_argument("--video_path", default=None, help="write the rollouts to this mp4")
    evaluate.add_argument("--video_skip", type=int, default=5, help="a frame every N steps")
    evaluate.add_argument("--camera_name", default=None, help="camera for the video")
    evaluate.add_argument(
        "--dataset", default=None, help="take env_args from this HDF5 file instead"
    )
    evaluate.add_argument("--seed", type=int, default=0)
    evaluate.add_argument(
        "--no_terminate_on_success",
        dest="terminate_on_success",
        action="store_false",
        help="run every episode to --horizon (default: end it at its first success, as "
        "run_trained_agent does)",
    )
    evaluate.add_argument("--json", action="store_true", help="print every episode as JSON too")
    evaluate.add_argument(
        "--num_threads",
        type=int,
        default=None,
        metavar="N",
        help="torch intra-op threads (default: $T2R_NUM_THREADS, else 1: one observation a step)",
    )
    evaluate.add_argument("--no_progress", action="store_true")
    evaluate.set_defaults(func=_eval, default_num_threads=1)


def _eval(args: argparse.Namespace) -> int:
    from t2r.robomimic.training import RunError, evaluate_checkpoint, format_rollout_stats

    try:
        stats = evaluate_checkpoint(
            args.checkpoint,
            n_rollouts=args.n_rollouts,
            horizon=args.horizon,
            video_path=args.video_path,
            video_skip=args.video_skip,
            camera_name=args.camera_name,
            seed=args.seed,
            dataset=args.dataset,
            terminate_on_success=args.terminate_on_success,
            show_progress=not args.no_progress,
        )
    except RunError as e:
        print(f"t2r robomimic eval: error: {e}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(stats["episodes"], indent=2))
    print(format_rollout_stats(stats))
    return 0
