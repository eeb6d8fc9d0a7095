"""Success rates of the random and scripted policies on GraspEnv: the env's calibration.

QT-Opt learns from its own (at first random or scripted) grasps, so the task
must give random actions some successes and a good policy many. This measures,
on seeded episodes (episode ``i`` is ``reset(seed=seed + i)``, so a figure can
be reproduced exactly):

* ``random``: t2r's `RandomPolicy`, uniform actions in [-1, 1]^6;
* ``scripted``: `ScriptedGraspPolicy` at noise 0;
* ``scripted_noisy``: `ScriptedGraspPolicy` at noise `--noise` (the kind of
  exploration the loop mixes in).

Run: ``python -m t2r.research.grasp_env.calibrate [--episodes 300] [--json out.json]``.
It prints a markdown table: success, its 95 % Wilson interval and the mean
episode length per (policy, object set).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
from dataclasses import asdict, dataclass
from pathlib import Path

from t2r.atomic import atomic_write_text
from t2r.policies.policies import Policy, RandomPolicy
from t2r.research.grasp_env.grasp_env import ACTION_LAYOUT, GraspEnv
from t2r.research.grasp_env.scripted import ScriptedGraspPolicy

__all__ = ["SuccessRate", "main", "success_rate", "wilson_interval"]

logger = logging.getLogger(__name__)

POLICIES = ("random", "scripted", "scripted_noisy")


@dataclass(frozen=True)
class SuccessRate:
    policy: str
    object_set: str
    episodes: int
    successes: int
    mean_length: float
    low: float  # 95 % Wilson interval
    high: float

    @property
    def rate(self) -> float:
        return self.successes / self.episodes


def wilson_interval(successes: int, trials: int, z: float = 1.96) -> tuple[float, float]:
    """The Wilson score interval of a binomial proportion (95 % for z = 1.96)."""
    if trials <= 0:
        raise ValueError(f"wilson_interval: trials must be positive, got {trials}.")
    p = successes / trials
    denominator = 1 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denominator
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def _policy(name: str, env: GraspEnv, seed: int, noise: float) -> Policy:
    if name == "random":
        return RandomPolicy(action_size=len(ACTION_LAYOUT), seed=seed)
    if name == "scripted":
        return ScriptedGraspPolicy(env, noise=0.0, seed=seed)
    return ScriptedGraspPolicy(env, noise=noise, seed=seed)  # scripted_noisy


def success_rate(
    policy: str,
    object_set: str = "test",
    episodes: int = 200,
    seed: int = 0,
    noise: float = 0.2,
    **env_kwargs: object,
) -> SuccessRate:
    """Runs `episodes` seeded episodes of `policy` on `object_set` and counts successes."""
    if policy not in POLICIES:
        raise ValueError(f"calibrate: policy must be one of {POLICIES}, got {policy!r}.")
    env = GraspEnv(object_set=object_set, seed=seed, **env_kwargs)  # type: ignore[arg-type]
    actor = _policy(policy, env, seed, noise)
    successes, steps = 0, 0
    try:
        for episode in range(episodes):
            observation, _ = env.reset(seed=seed + episode)
            actor.reset()
            terminated = False
            while not terminated:
                action, _ = actor.sample_action(observation, 0.0)
                observation, reward, terminated, _, _ = env.step(action)
                steps += 1
            successes += int(reward > 0)
    finally:
        env.close()
    low, high = wilson_interval(successes, episodes)
    return SuccessRate(policy, object_set, episodes, successes, steps / episodes, low, high)


def main(argv: list[str] | None = None) -> list[SuccessRate]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--noise", type=float, default=0.2)
    parser.add_argument("--policies", nargs="+", default=list(POLICIES), choices=POLICIES)
    parser.add_argument("--object_sets", nargs="+", default=["train", "test"])
    parser.add_argument("--json", type=Path, default=None, help="also write the rows here")
    args = parser.parse_args(argv)
    rows = []
    for policy in args.policies:
        for object_set in args.object_sets:
            row = success_rate(policy, object_set, args.episodes, args.seed, args.noise)
            logger.info("%s on %s: %.3f", policy, object_set, row.rate)
            rows.append(row)
    print(f"| {'policy':<14} | {'objects':<7} | episodes | success | 95 % interval | mean length |")
    print(f"|{'-' * 16}|{'-' * 9}|---------:|--------:|:-------------:|------------:|")
    for row in rows:
        name = row.policy if row.policy != "scripted_noisy" else f"scripted n={args.noise}"
        print(
            f"| {name:<14} | {row.object_set:<7} | {row.episodes:>8} | {row.rate:>7.1%} | "
            f"{row.low:.1%} - {row.high:.1%} | {row.mean_length:>11.2f} |"
        )
    if args.json is not None:
        payload = [asdict(row) | {"rate": row.rate} for row in rows]
        atomic_write_text(args.json, json.dumps(payload, indent=2) + "\n")
    return rows


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    main()
