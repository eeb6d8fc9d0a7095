"""Runs data collection and policy evaluation (Tensor2Robot's bin/run_collect_eval.py).

    python -m t2r.bin.run_collect_eval --gin_configs=pose_env_run_random_collect.gin \
        --root_dir=runs/pose_env/data

Calls the gin-configured `t2r.collect.collect_eval_loop` with ``root_dir``
from the flag. As in T2R, ``--gin_configs`` also takes a comma-separated
list; a bare file name is looked up among the configs shipped with the
research projects (``t2r/research/<project>/configs/``) when it is not in the
working directory. ``t2r collect``
is the same command.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from typing import Any

import gin

from t2r.bin import gin_config
from t2r.bin.run_t2r_trainer import add_gin_flags

logger = logging.getLogger(__name__)


COLLECT_EXAMPLE = """example:
  t2r collect --gin_configs=pose_env_run_random_collect.gin --root_dir=runs/pose_env/data \\
      --gin_bindings="collect_eval_loop.num_collect = 500"

A bare config file name that is not in the working directory is looked up among the
configs shipped in t2r/configs/. The config binds collect_eval_loop (environments,
policy, episodes); --root_dir says where records and eval summaries go."""


def add_collect_flags(parser: argparse.ArgumentParser) -> None:
    """``--gin_configs``, ``--gin_bindings`` and ``--root_dir``."""
    add_gin_flags(parser, binding_example="collect_eval_loop.num_collect=500")
    parser.add_argument(
        "--root_dir",
        required=True,
        help="root directory of the experiment: records, eval summaries, collect-eval state",
    )


def _split_configs(gin_configs: Sequence[str]) -> list[str]:
    return [path for entry in gin_configs for path in entry.split(",") if path]


def run(
    gin_configs: Sequence[str], gin_bindings: Sequence[str], root_dir: str
) -> dict[int, dict[str, Any]]:
    """Parses the configs and runs `collect_eval_loop(root_dir=root_dir)` as configured."""
    gin_config.parse(_split_configs(gin_configs), gin_bindings)
    configured = gin.get_configurable("t2r.collect.collect_eval_loop")
    return configured(root_dir=root_dir)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="run_collect_eval",
        description=__doc__.split("\n")[0],
        epilog=COLLECT_EXAMPLE.replace("t2r collect", "python -m t2r.bin.run_collect_eval"),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_collect_flags(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    handled = run(args.gin_configs, args.gin_bindings, args.root_dir)
    for step, results in handled.items():
        summary = ", ".join(
            f"{tag} mean reward {getattr(result, 'mean_reward', float('nan')):.4f}"
            for tag, result in results.items()
        )
        logger.info("Global step %d: %s", step, summary or "nothing to run")
    return 0


if __name__ == "__main__":
    sys.exit(main())
