"""GraspEnv rates on this machine's CPU: render-only, physics-only and full env steps/s.

One process, one env (one renderer, one MuJoCo model); MuJoCo steps on one
thread, the software renderer (llvmpipe) uses what Mesa gives it
(``LP_NUM_THREADS``; set it to 1 for a strictly one-core figure). Rows:

* render only: ``update_scene`` + ``render`` of the over-the-shoulder camera,
  at each ``--image_sizes`` (the physical limit of a collector that renders one
  frame per transition);
* physics only: one move step's `MOVE_SUBSTEPS` MuJoCo steps, no render; and the
  same with MuJoCo's ``implicitfast`` integrator, the baseline of the env's
  ``implicit`` (docs/grasp_env.md);
* env step (move + render): `GraspEnv.step` with a move that neither closes
  nor terminates (the common step);
* env step, random policy: whole episodes of uniform random actions, resets,
  closes and final lifts included, per env step (what a random collector pays);
* env step, scripted policy: the same with `ScriptedGraspPolicy` (noise 0);
* reset: a new bin (objects rewritten, placed, settled) and its first render;
* JPEG encode: `t2r.data.encode_image` of one 64x64 observation, which a
  collector pays on top to write records.

The issue's target is >= 150 env steps/s per core for physics + one render.
Each row gives the rate per wall-clock second and per CPU second of this
process (all its threads, llvmpipe's included): on a loaded machine the
second is the better estimate of what one idle core would do.

Run: ``.venv/bin/python benchmarks/grasp_env_render.py [--steps 1000] [--image_sizes 64 128]``
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import time
from collections.abc import Callable

import numpy as np

# Imported first: it sets MUJOCO_GL before mujoco loads.
from t2r.research.grasp_env.grasp_env import MOVE_SUBSTEPS, GraspEnv

Rate = tuple[float, float]  # per wall-clock second, per CPU second of this process


def _rate(fn: Callable[[], object], count: int, warmup: int = 20) -> Rate:
    for _ in range(min(warmup, count)):
        fn()
    start, cpu = time.perf_counter(), time.process_time()
    for _ in range(count):
        fn()
    return count / (time.perf_counter() - start), count / (time.process_time() - cpu)


def _episode_step_rate(env: GraspEnv, policy: object, steps: int, seed: int) -> Rate:
    """Env steps/s over whole episodes (resets included) until `steps` steps are taken."""
    taken, episode = 0, 0
    start, cpu = time.perf_counter(), time.process_time()
    while taken < steps:
        observation, _ = env.reset(seed=seed + episode)
        episode += 1
        policy.reset()  # type: ignore[attr-defined]
        terminated = False
        while not terminated:
            action, _ = policy.sample_action(observation, 0.0)  # type: ignore[attr-defined]
            observation, _, terminated, _, _ = env.step(action)
            taken += 1
    return taken / (time.perf_counter() - start), taken / (time.process_time() - cpu)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--image_sizes", type=int, nargs="+", default=[64, 128])
    parser.add_argument("--object_set", default="test")
    args = parser.parse_args()

    import mujoco

    from t2r.data import encode_image
    from t2r.policies.policies import RandomPolicy
    from t2r.research.grasp_env.scripted import ScriptedGraspPolicy

    rows: list[tuple[str, Rate]] = []
    for size in args.image_sizes:
        env = GraspEnv(object_set=args.object_set, seed=0, image_size=size)
        env.reset(seed=0)
        rows.append((f"render only, {size} px", _rate(env.render_image, args.steps)))
        env.close()

    env = GraspEnv(object_set=args.object_set, seed=0)
    env.reset(seed=0)
    model, data = env.model, env.data
    rows.append(
        (
            f"physics only ({MOVE_SUBSTEPS} substeps)",
            _rate(lambda: mujoco.mj_step(model, data, nstep=MOVE_SUBSTEPS), args.steps // 2),
        )
    )
    # The baseline of the env's integrator choice (docs/grasp_env.md): the same steps
    # with implicitfast, which diverges on spun-up thin objects.
    integrator = model.opt.integrator
    model.opt.integrator = mujoco.mjtIntegrator.mjINT_IMPLICITFAST
    env.reset(seed=0)
    rows.append(
        (
            "physics only, implicitfast (baseline)",
            _rate(lambda: mujoco.mj_step(model, data, nstep=MOVE_SUBSTEPS), args.steps // 2),
        )
    )
    model.opt.integrator = integrator
    env.reset(seed=0)

    # Small moves that neither close nor terminate; a fresh episode when one ends.
    moves = np.random.default_rng(0).uniform(-0.3, 0.3, size=(16, 6)).astype(np.float32)
    moves[:, 4:] = -1.0
    counter = [0]

    def move_step() -> object:
        if env.steps >= env.max_steps - 1:
            env.reset(seed=counter[0])
        counter[0] += 1
        return env.step(moves[counter[0] % len(moves)])

    env.reset(seed=0)
    rows.append(("env step (move + render)", _rate(move_step, args.steps)))
    rows.append(
        (
            "env step, random policy",
            _episode_step_rate(env, RandomPolicy(action_size=6, seed=0), args.steps, 0),
        )
    )
    rows.append(
        (
            "env step, scripted policy",
            _episode_step_rate(env, ScriptedGraspPolicy(env), args.steps, 0),
        )
    )
    seeds = iter(range(10**9))
    rows.append(
        ("reset (+ first render)", _rate(lambda: env.reset(seed=next(seeds)), args.steps // 4))
    )
    image = env.render_image()
    env.close()
    rows.append(("JPEG encode 64 px (q95)", _rate(lambda: encode_image(image), args.steps)))

    print(
        f"GraspEnv ({args.object_set} objects), MUJOCO_GL={os.environ.get('MUJOCO_GL')}, "
        f"LP_NUM_THREADS={os.environ.get('LP_NUM_THREADS')}, "
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"mujoco {mujoco.__version__}, {datetime.date.today().isoformat()}"
    )
    print(f"| {'operation':<32} | {'per s':>8} | {'ms each':>8} | {'per CPU-s':>9} |")
    print(f"|{'-' * 34}|{'-' * 10}|{'-' * 10}|{'-' * 11}|")
    for name, (rate, cpu_rate) in rows:
        print(f"| {name:<32} | {rate:>8.0f} | {1000 / rate:>8.3f} | {cpu_rate:>9.0f} |")


if __name__ == "__main__":
    main()
