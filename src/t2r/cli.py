"""The ``t2r`` command. Thin: it parses flags and calls library functions."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

import t2r


def _version(args: argparse.Namespace) -> int:
    print(f"t2r {t2r.__version__}")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from t2r.research.pose_env import demo

    config = demo.DemoConfig(
        output_dir=args.output_dir,
        overwrite=args.overwrite,
        episodes=args.episodes,
        collectors=args.collectors,
        validation_episodes=args.validation_episodes,
        eval_episodes=args.eval_episodes,
        train_steps=args.train_steps,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        eval_every=args.eval_every,
        device=args.device,
        compile=args.compile,
        num_workers=args.num_workers,
        seed=args.seed,
        show_progress=not args.no_progress,
    )
    # The demo's steps and the evaluations; library details only with --verbose.
    levels = {
        "": logging.WARNING,
        demo.__name__: logging.INFO,
        "t2r.train.train_eval": logging.INFO,
    }
    levels = {} if args.verbose else levels
    previous = {name: logging.getLogger(name or None).level for name in levels}
    try:
        for name, level in levels.items():
            logging.getLogger(name or None).setLevel(level)
        summary = demo.run_demo(config)
    except demo.DemoError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    finally:
        for name, level in previous.items():
            logging.getLogger(name or None).setLevel(level)
    print(demo.format_summary(summary))
    return 0


def _qtopt(args: argparse.Namespace) -> int:
    from t2r.research.qtopt import loop

    config = loop.QTOptConfig(
        output_dir=args.output_dir,
        collectors=args.collectors,
        updaters=args.updaters,
        clipped_double_q=args.clipped_double_q,
        learners=args.learners,
        steps=args.steps,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        network=args.network,
        export_every=args.export_every,
        checkpoint_every=args.checkpoint_every,
        gamma=args.gamma,
        initial_q=args.initial_q,
        step_penalty=args.step_penalty,
        mc_lower_bound=args.mc_lower_bound,
        mc_mix=args.mc_mix,
        explore_end=args.explore_end,
        label_window=args.label_window or None,
        samples_per_label=args.samples_per_label,
        eval_episodes=args.eval_episodes,
        random_eval_episodes=args.random_eval_episodes,
        ray_address=args.ray_address,
        ray_num_cpus=args.ray_num_cpus,
        torchrun_args=args.torchrun_args.split() if args.torchrun_args else None,
        poll_secs=args.poll_secs,
        seed=args.seed,
    )
    try:
        summary = loop.run_qtopt(config)
    except loop.QTOptError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"QT-Opt {'interrupted' if summary['interrupted'] else 'done'}: {args.output_dir}")
    return 130 if summary["interrupted"] else 0


def _require_configs(args: argparse.Namespace) -> bool:
    """False (after printing the command's usage) when no gin config was given."""
    if args.gin_configs:
        return True
    parser: argparse.ArgumentParser = args.parser
    parser.print_usage(sys.stderr)
    print(
        f"{parser.prog}: error: no --gin_configs given; see '{parser.prog} --help' for an example.",
        file=sys.stderr,
    )
    return False


def _collect(args: argparse.Namespace) -> int:
    from t2r.bin import run_collect_eval

    if not _require_configs(args):
        return 2
    run_collect_eval.run(args.gin_configs, args.gin_bindings, args.root_dir)
    return 0


def _convert(args: argparse.Namespace) -> int:
    from t2r.data import DataError
    from t2r.data.convert import convert

    try:
        result = convert(
            args.src,
            args.dst,
            args.to,
            src_format=args.src_format,
            overwrite=args.overwrite,
            image_format=args.image_format,
            fps=args.fps,
            video=not args.no_video,
            rename=dict(args.rename),
            max_episodes=args.max_episodes,
            progress=True,
        )
    except (DataError, FileExistsError, ValueError) as e:
        print(f"t2r convert: error: {e}", file=sys.stderr)
        return 2
    print(
        f"{result.src} ({result.src_format}) -> {result.dst} ({result.dst_format}): "
        f"{result.num_episodes} episodes, {result.num_steps} steps"
    )
    for message in result.losses.values():
        print(f"lost or moved: {message}")
    return 0


def _inspect(args: argparse.Namespace) -> int:
    import json

    from t2r.data import DataError
    from t2r.inspect import format_report, inspect_path

    try:
        report = inspect_path(args.path, max_episodes=args.max_episodes)
    except DataError as e:
        print(f"t2r inspect: error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(report, indent=2) if args.json else format_report(report))
    return 0


def _rename_pair(text: str) -> tuple[str, str]:
    old, sep, new = text.partition("=")
    if not sep or not old or not new:
        raise argparse.ArgumentTypeError(f"expected OLD=NEW, got {text!r}")
    return old, new


def _add_data_parsers(commands: argparse._SubParsersAction) -> None:
    from t2r.data.convert import FORMATS

    convert = commands.add_parser(
        "convert",
        help="convert a dataset between TFRecord, RLDS, robomimic HDF5 and LeRobot",
        description=(
            "Reads the dataset at SRC (format detected, or --from) episode by episode and\n"
            "writes it at DST in the --to format. What the target cannot hold is reported\n"
            "(docs/data_sources.md, Conversions)."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    convert.add_argument("src", help="the dataset: a file, directory or TFRecord glob")
    convert.add_argument("dst", help="where the converted dataset goes")
    convert.add_argument("--to", required=True, choices=FORMATS, help="the target format")
    convert.add_argument(
        "--from", dest="src_format", choices=FORMATS, default=None, help="SRC's format"
    )
    convert.add_argument("--overwrite", action="store_true", help="replace an existing DST")
    convert.add_argument(
        "--image_format",
        choices=("jpeg", "png"),
        default=None,
        help="TFRecord/RLDS image encoding (default: the source's, else png)",
    )
    convert.add_argument("--fps", type=float, default=None, help="LeRobot frame rate")
    convert.add_argument(
        "--no_video", action="store_true", help="LeRobot: store camera frames as images"
    )
    convert.add_argument(
        "--rename",
        type=_rename_pair,
        action="append",
        default=[],
        metavar="OLD=NEW",
        help="rename a step feature (repeatable), e.g. --rename pose=action",
    )
    convert.add_argument(
        "--max_episodes", type=int, default=None, help="convert only the first N episodes"
    )
    convert.set_defaults(func=_convert)

    inspect = commands.add_parser(
        "inspect",
        help="what a dataset, an export or a checkpoint holds",
        description=(
            "A dataset (any format t2r converts): episodes, steps, features as specs and\n"
            "statistics. An export or checkpoint: specs, version, global step and how to\n"
            "feed it."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    inspect.add_argument("path", help="dataset, export directory, model_dir or checkpoint")
    inspect.add_argument("--json", action="store_true", help="print the report as JSON")
    inspect.add_argument(
        "--max_episodes", type=int, default=None, help="read at most this many episodes"
    )
    inspect.set_defaults(func=_inspect)


def _train(args: argparse.Namespace) -> int:
    from t2r.bin import run_t2r_trainer

    if not _require_configs(args):
        return 2
    run_t2r_trainer.run(args.gin_configs, args.gin_bindings)
    return 0


# --------------------------------------------------------------------- threads
NUM_THREADS_ENV = "T2R_NUM_THREADS"


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask where the OS has one)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def policy_num_threads() -> int:
    """The default intra-op thread count where policies run (``t2r collect``,
    ``t2r demo``): at most 4. A policy feeds one observation at a time, where
    more threads mostly add synchronisation, and several collectors usually
    share the machine."""
    return min(4, usable_cpus())


def _add_num_threads_flag(parser: argparse.ArgumentParser, default_text: str) -> None:
    parser.add_argument(
        "--num_threads",
        type=int,
        default=None,
        metavar="N",
        help=(
            f"torch intra-op threads of this process (torch.set_num_threads). Default: "
            f"${NUM_THREADS_ENV} when set, else {default_text}. Lower it on shared CPUs."
        ),
    )


def _apply_num_threads(args: argparse.Namespace) -> None:
    """Sets torch's thread count from --num_threads, $T2R_NUM_THREADS, or the
    command's default (`args.default_num_threads`, None: torch's own)."""
    value = args.num_threads
    source = "--num_threads"
    if value is None and os.environ.get(NUM_THREADS_ENV):
        source = f"${NUM_THREADS_ENV}"
        try:
            value = int(os.environ[NUM_THREADS_ENV])
        except ValueError:
            raise SystemExit(
                f"t2r: error: {NUM_THREADS_ENV}={os.environ[NUM_THREADS_ENV]!r} is not an integer."
            ) from None
    if value is None:
        default = args.default_num_threads
        value = default() if callable(default) else default
        source = "default"
    if value is None:
        return
    if value < 1:
        raise SystemExit(f"t2r: error: {source} must be >= 1, got {value}.")
    import torch

    torch.set_num_threads(value)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="t2r",
        description="Tensor2Robot on PyTorch: train, evaluate and deploy robot learning models.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    version = commands.add_parser("version", help="print the t2r version")
    version.set_defaults(func=_version)

    _add_demo_parser(commands)
    _add_data_parsers(commands)  # t2r convert, t2r inspect

    from t2r.robomimic.cli import add_robomimic_commands

    add_robomimic_commands(commands)  # t2r robomimic info|split|train|eval

    from t2r.bin.run_collect_eval import COLLECT_EXAMPLE, add_collect_flags
    from t2r.bin.run_t2r_trainer import TRAIN_EXAMPLE, add_gin_flags

    train = commands.add_parser(
        "train",
        help="train and evaluate a gin-configured model",
        description=(
            "Trains and evaluates the model that gin files configure (Tensor2Robot's\n"
            "run_t2r_trainer): the configs bind train_eval_model (model, input generators,\n"
            "model_dir, steps, exporters). Training resumes from the newest checkpoint in\n"
            "model_dir."
        ),
        epilog=TRAIN_EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_gin_flags(train)
    _add_num_threads_flag(train, "torch's default")
    train.set_defaults(func=_train, parser=train, default_num_threads=None)

    collect = commands.add_parser(
        "collect",
        help="collect data with / evaluate a gin-configured policy (collect_eval_loop)",
        description=(
            "Runs the policy that gin files configure in its environments and writes the\n"
            "episodes as records (Tensor2Robot's run_collect_eval): collect_eval_loop, once\n"
            "or continuously for each new export."
        ),
        epilog=COLLECT_EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_collect_flags(collect)
    _add_num_threads_flag(collect, "min(4, usable CPUs)")
    collect.set_defaults(func=_collect, parser=collect, default_num_threads=policy_num_threads)
    _add_qtopt_parser(commands)
    return parser


def _add_qtopt_parser(commands: argparse._SubParsersAction) -> None:
    qtopt = commands.add_parser(
        "qtopt",
        help="QT-Opt grasping: Ray collectors, a Bellman updater, torchrun learners (one machine)",
        description=(
            "Runs QT-Opt's distributed loop (docs/qtopt.md): collector Ray actors write grasp "
            "episodes into a replay directory, a Bellman updater labels them with the lagged "
            "target export, learners under torchrun train on the labels and export; the "
            "newest export is evaluated on held-out objects against the random policy. "
            "Writes progress.csv and success.png into --output_dir."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    qtopt.add_argument("--output_dir", required=True, help="where everything goes")
    qtopt.add_argument("--collectors", type=int, default=2, help="collector Ray actors")
    qtopt.add_argument(
        "--updaters", type=int, default=1, help="Bellman updater Ray actors (replay files split)"
    )
    qtopt.add_argument(
        "--clipped_double_q",
        action="store_true",
        help="Bellman targets from the min of the two newest lagged exports (QT-Opt's)",
    )
    qtopt.add_argument("--learners", type=int, default=1, help="torchrun learner processes")
    qtopt.add_argument("--steps", type=int, default=2000, help="learner steps")
    qtopt.add_argument("--batch_size", type=int, default=32, help="learner batch per process")
    qtopt.add_argument(
        "--learning_rate", type=float, default=None, help="Adam's (default: the model's 1e-4)"
    )
    qtopt.add_argument(
        "--network",
        default="grasping44",
        choices=["grasping44", "small", "tiny"],
        help="critic size: T2R's Grasping44, a reduced one (32 filters, 2/2/1 convs) for CPUs, "
        "or a tiny one for smoke runs",
    )
    qtopt.add_argument("--export_every", type=int, default=100, help="steps between exports")
    qtopt.add_argument(
        "--checkpoint_every", type=int, default=100, help="steps between checkpoints"
    )
    qtopt.add_argument("--gamma", type=float, default=0.9, help="the Bellman discount")
    qtopt.add_argument(
        "--initial_q", type=float, default=0.05, help="the untrained critic's Q (T2R's: 0.5)"
    )
    qtopt.add_argument(
        "--step_penalty",
        type=float,
        default=0.05,
        help="subtracted from the target of every step that does not end the episode "
        "(QT-Opt's 0.05; 0: none)",
    )
    qtopt.add_argument(
        "--mc_lower_bound",
        action="store_true",
        help="Bellman targets at least the discounted return the episode went on to get",
    )
    qtopt.add_argument(
        "--mc_mix",
        type=float,
        default=0.0,
        help="share of the episode's discounted return in the Bellman target (mixed "
        "Monte-Carlo; 0: none)",
    )
    qtopt.add_argument(
        "--explore_end",
        type=float,
        default=0.7,
        help="the share of exploration episodes (noisy scripted grasps and random) the "
        "collectors settle at, from 1.0 at the start, by half the steps",
    )
    qtopt.add_argument(
        "--label_window",
        type=int,
        default=100,
        help="the learners train on only this many most recently labelled replay files "
        "(fresh labels only; 0: all)",
    )
    qtopt.add_argument(
        "--samples_per_label",
        type=float,
        default=None,
        help="the learners wait for the Bellman updaters rather than draw more training "
        "samples than this per label written (default: never wait)",
    )
    qtopt.add_argument("--eval_episodes", type=int, default=20, help="held-out episodes per export")
    qtopt.add_argument(
        "--random_eval_episodes", type=int, default=50, help="held-out episodes of random"
    )
    qtopt.add_argument(
        "--ray_address", default=None, help="a Ray cluster's address (default: a local one)"
    )
    qtopt.add_argument(
        "--ray_num_cpus", type=int, default=None, help="CPUs of the local Ray (default: all but 1)"
    )
    qtopt.add_argument(
        "--torchrun_args",
        default=None,
        help="torchrun rendezvous flags instead of --standalone, e.g. '--nnodes=2 "
        "--rdzv-backend=c10d --rdzv-endpoint=head:29400 --rdzv-id=qtopt'",
    )
    qtopt.add_argument("--poll_secs", type=float, default=10.0, help="progress interval")
    qtopt.add_argument("--seed", type=int, default=0, help="seed of the whole run")
    qtopt.set_defaults(func=_qtopt, parser=qtopt)


def _add_demo_parser(commands: argparse._SubParsersAction) -> None:
    from t2r.research.pose_env.demo import DemoConfig

    d = DemoConfig()
    demo = commands.add_parser(
        "demo",
        help="pose_env end to end: collect, train, export, evaluate (the README's main job)",
        description=(
            "Collects random pose_env episodes in parallel processes, trains "
            "PoseEnvRegressionModel on them, exports it, evaluates the exported policy on "
            "held-out tasks and writes pictures, TensorBoard logs and a summary."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    demo.add_argument("--output_dir", default=d.output_dir, help="where everything goes")
    demo.add_argument(
        "--overwrite", action="store_true", help="replace an earlier demo run in --output_dir"
    )
    demo.add_argument("--episodes", type=int, default=d.episodes, help="training episodes")
    demo.add_argument("--collectors", type=int, default=d.collectors, help="collector processes")
    demo.add_argument(
        "--validation_episodes",
        type=int,
        default=d.validation_episodes,
        help="episodes of the validation set evaluated during training",
    )
    demo.add_argument(
        "--eval_episodes", type=int, default=d.eval_episodes, help="held-out episodes per policy"
    )
    demo.add_argument("--train_steps", type=int, default=d.train_steps, help="training steps")
    demo.add_argument("--batch_size", type=int, default=d.batch_size, help="training batch size")
    demo.add_argument(
        "--learning_rate", type=float, default=d.learning_rate, help="Adam's peak learning rate"
    )
    demo.add_argument(
        "--eval_every", type=int, default=d.eval_every, help="eval/checkpoint/export interval"
    )
    demo.add_argument(
        "--device", default=d.device, help="training device: auto, cpu, cuda, cuda:1, ..."
    )
    demo.add_argument("--compile", action="store_true", help="torch.compile the network")
    demo.add_argument(
        "--num_workers", type=int, default=d.num_workers, help="DataLoader workers for training"
    )
    demo.add_argument("--seed", type=int, default=d.seed, help="seed of the whole run")
    demo.add_argument("--no_progress", action="store_true", help="no progress bars")
    _add_num_threads_flag(
        demo, "min(4, usable CPUs) for training and evaluation (collector processes use 1)"
    )
    demo.set_defaults(func=_demo, parser=demo, default_num_threads=policy_num_threads)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    if hasattr(args, "num_threads"):
        _apply_num_threads(args)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
