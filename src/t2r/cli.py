"""The ``t2r`` command. Thin: it parses flags and calls library functions."""

from __future__ import annotations

import argparse
import logging
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


def _collect(args: argparse.Namespace) -> int:
    from t2r.bin import run_collect_eval

    run_collect_eval.run(args.gin_configs, args.gin_bindings, args.root_dir)
    return 0


def _train(args: argparse.Namespace) -> int:
    from t2r.bin import run_t2r_trainer

    run_t2r_trainer.run(args.gin_configs, args.gin_bindings)
    return 0


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

    from t2r.bin.run_collect_eval import add_collect_flags
    from t2r.bin.run_t2r_trainer import add_gin_flags

    train = commands.add_parser("train", help="train and evaluate a gin-configured model")
    add_gin_flags(train)
    train.set_defaults(func=_train)

    collect = commands.add_parser(
        "collect", help="collect data with / evaluate a gin-configured policy (collect_eval_loop)"
    )
    add_collect_flags(collect)
    collect.set_defaults(func=_collect)
    return parser


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
    demo.set_defaults(func=_demo)


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
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
