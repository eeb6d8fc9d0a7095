"""Trains and evaluates a gin-configured model (Tensor2Robot's run_t2r_trainer).

    python -m t2r.bin.run_t2r_trainer --gin_configs=a.gin \
        --gin_bindings='train_eval_model.max_train_steps=10'

Everything is configured through gin bindings of `train_eval_model` and the
objects it takes. The config as given is saved to ``<model_dir>/config.gin``
before training and the operative config (every value used) to
``<model_dir>/operative_config.gin`` after.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

import gin

from t2r.atomic import atomic_write_text
from t2r.bin import gin_config

logger = logging.getLogger(__name__)


TRAIN_EXAMPLE = """example:
  t2r train --gin_configs=pose_env_run_train_reg.gin \\
      --gin_bindings="train_eval_model.max_train_steps = 200" \\
      --gin_bindings="train_eval_model.model_dir = 'runs/pose_env/reg_short'"

A bare config file name that is not in the working directory is looked up among the
configs shipped in t2r/configs/. Modules a config imports ('import my_project.models')
are found from the working directory, as with 'python -m t2r.bin.run_t2r_trainer'."""


def add_gin_flags(
    parser: argparse.ArgumentParser, binding_example: str = "train_eval_model.max_train_steps=10"
) -> None:
    """``--gin_configs`` and ``--gin_bindings``; `binding_example` is shown in the help."""
    parser.add_argument(
        "--gin_configs",
        action="append",
        default=[],
        metavar="FILE",
        help="gin config file (repeatable)",
    )
    parser.add_argument(
        "--gin_bindings",
        action="append",
        default=[],
        metavar="BINDING",
        help=f"gin binding such as '{binding_example}' (repeatable)",
    )


def run(gin_configs: Sequence[str], gin_bindings: Sequence[str]) -> dict[str, float]:
    """Parses the configs and runs `train_eval_model` as configured."""

    gin_config.parse(gin_configs, gin_bindings)
    model_dir = str(gin_config.bound_value("train_eval_model.model_dir", "runs/model"))
    os.makedirs(model_dir, exist_ok=True)
    atomic_write_text(os.path.join(model_dir, "config.gin"), gin.config_str())
    configured = gin.get_configurable("t2r.train.train_eval_model")
    try:
        return configured()
    finally:
        atomic_write_text(
            os.path.join(model_dir, "operative_config.gin"), gin.operative_config_str()
        )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="run_t2r_trainer",
        description=__doc__.split("\n")[0],
        epilog=TRAIN_EXAMPLE.replace("t2r train", "python -m t2r.bin.run_t2r_trainer"),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_gin_flags(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    metrics = run(args.gin_configs, args.gin_bindings)
    if metrics:
        logger.info("Final eval: %s", metrics)
    return 0


if __name__ == "__main__":
    sys.exit(main())
