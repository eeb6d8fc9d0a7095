"""Success per instruction of a BC-Z export on the reach task, against a random policy.

Runs the newest export of ``--model_dir`` (``export/latest_exporter_numpy``, which
``lang_reach_bcz.gin`` writes at every checkpoint) through `ExportedModelPredictor`
and `BCZPolicy` — no model code — on the episodes of
``t2r.research.lang_env.evaluate`` (the same seeded layouts RT-1 and the random
policy meet), once per ``--execute_waypoints`` value, and prints the table::

    python -m t2r.research.bcz.evaluate --model_dir runs/lang_reach_bcz --episodes 50
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import time
from collections.abc import Sequence

from t2r.atomic import atomic_write_text
from t2r.predictors import ExportedModelPredictor
from t2r.research.bcz.policy import BCZPolicy
from t2r.research.lang_env.evaluate import (
    InstructionResult,
    RandomPolicy,
    evaluate_policy,
    format_success_table,
)
from t2r.research.lang_env.lang_env import LangReachEnv

__all__ = ["main"]

logger = logging.getLogger(__name__)


def main(argv: Sequence[str] | None = None) -> dict[str, dict[str, InstructionResult]]:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--model_dir", required=True)
    parser.add_argument(
        "--export_dir", default=None, help="default: <model_dir>/export/latest_exporter_numpy"
    )
    parser.add_argument("--episodes", type=int, default=20, help="per instruction")
    parser.add_argument(
        "--execute_waypoints",
        type=int,
        action="append",
        default=None,
        help="waypoints executed per prediction (repeatable; default 1: closed loop)",
    )
    parser.add_argument("--label", default="BC-Z", help="the policy's name in the table")
    parser.add_argument("--render_size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=10_000)
    parser.add_argument("--json_out", default=None)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    export_dir = args.export_dir or os.path.join(args.model_dir, "export", "latest_exporter_numpy")
    predictor = ExportedModelPredictor(export_dir, timeout=0)
    if not predictor.restore():
        raise SystemExit(f"t2r.research.bcz.evaluate: no complete export in {export_dir}.")
    results: dict[str, dict[str, InstructionResult]] = {}
    steps_to_success: dict[str, float] = {}
    env = LangReachEnv(render_size=args.render_size)
    try:
        for n in args.execute_waypoints or [1]:
            plural = "s" if n > 1 else ""
            name = f"{args.label} (step {predictor.global_step}, {n} waypoint{plural}/prediction)"
            policy = BCZPolicy(predictor, step_size=env.step_size, execute_waypoints=n)
            start = time.perf_counter()
            results[name] = evaluate_policy(env, policy, args.episodes, seed=args.seed)
            logger.info(
                "%s: %.1f s, %d predictions", name, time.perf_counter() - start, policy.predictions
            )
        start = time.perf_counter()
        results["random"] = evaluate_policy(env, RandomPolicy(0), args.episodes, seed=args.seed)
        logger.info("random: %.1f s", time.perf_counter() - start)
    finally:
        env.close()
    for name, result in results.items():
        steps = [s for r in result.values() for s in r.steps_to_success]
        steps_to_success[name] = sum(steps) / len(steps) if steps else float("nan")
    print(format_success_table(results))
    print(
        "mean steps to success: "
        + ", ".join(f"{name}: {value:.2f}" for name, value in steps_to_success.items())
    )
    if args.json_out:
        table = {
            name: {i: dataclasses.asdict(r) for i, r in result.items()}
            for name, result in results.items()
        }
        atomic_write_text(args.json_out, json.dumps(table, indent=2))
    return results


if __name__ == "__main__":
    main()
