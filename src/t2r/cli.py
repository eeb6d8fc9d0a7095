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
    from t2r.examples import smoke

    smoke.run(args.output_dir)
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

    demo = commands.add_parser(
        "demo", help="run the end-to-end example of what t2r can do (the README's main job)"
    )
    demo.add_argument(
        "--output_dir",
        default="runs/demo",
        help="where the demo writes its files (default: %(default)s)",
    )
    demo.set_defaults(func=_demo)

    from t2r.bin.run_t2r_trainer import add_gin_flags

    train = commands.add_parser("train", help="train and evaluate a gin-configured model")
    add_gin_flags(train)
    train.set_defaults(func=_train)
    return parser


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
