"""GraspEnv under adversarial actions: how often MuJoCo diverges (BADQACC), per integrator.

A learned CEM policy's greedy actions sit at the corners of [-1, 1]^6: full-speed
moves down into objects, closes mid-move, pushes at the walls. Random and
scripted policies rarely do that, so this drives seeded episodes with such
actions and counts the episodes MuJoCo flagged as diverged
(``info["physics_unstable"]``). Episode ``s`` is ``reset(seed=s)`` and its actions
come from ``numpy.random.default_rng([s, mode index])``: a row is reproducible,
and a diverging episode can be replayed from its seed (docs/grasp_env.md,
"Divergence under adversarial actions"). Each action component is drawn from
{-1, 1}; the modes fix some of them:

* ``extreme``: all free; terminate with probability 0.08 per step;
* ``down``: dz = -1, close with probability 0.3;
* ``close_move``: close at step 1 (and with probability 0.5 later), then moves;
* ``yaw``: yaw +1 twice, -1 twice, ..., mostly down;
* ``wall``: x and y at +-1 (into a wall or corner), down;
* ``mixed``: each component +-1 or uniform in [-1, 1];
* ``crush``: down with probability 0.85, close with probability 0.1, never terminate.

``--integrators implicit implicitfast`` runs the same episodes with the env's
integrator (``implicit``) and with the one it used before (``implicitfast``, whose
explicit gyroscopic term let a spinning thin capsule blow up), side by side. The
table also gives the fastest object spin seen at the end of a step (rad/s).

Run: ``.venv/bin/python benchmarks/grasp_env_adversarial.py [--episodes 500]
[--sets train test] [--modes down crush] [--integrators implicit implicitfast]``
"""

from __future__ import annotations

import argparse
import datetime
import logging
import platform
import time

import numpy as np

# Imported first: it sets MUJOCO_GL before mujoco loads.
from t2r.research.grasp_env.grasp_env import GraspEnv

MODES = ("extreme", "down", "close_move", "yaw", "wall", "mixed", "crush")


def adversarial_action(mode: str, rng: np.random.Generator, step: int) -> np.ndarray:
    """One action of `mode` (see the module docstring), (6,) float32."""
    action = rng.choice([-1.0, 1.0], size=6)
    terminate = 1.0 if rng.random() < 0.08 else -1.0
    if mode == "extreme":
        action[5] = terminate
    elif mode == "down":
        action[2] = -1.0
        action[4] = 1.0 if rng.random() < 0.3 else -1.0
        action[5] = terminate
    elif mode == "crush":
        action[2] = -1.0 if rng.random() < 0.85 else 1.0
        action[4] = 1.0 if rng.random() < 0.1 else -1.0
        action[5] = -1.0
    elif mode == "close_move":
        action[4] = 1.0 if step == 0 or rng.random() < 0.5 else -1.0
        action[5] = terminate
    elif mode == "yaw":
        action[3] = 1.0 if (step // 2) % 2 == 0 else -1.0
        action[2] = -1.0 if rng.random() < 0.7 else action[2]
        action[5] = terminate
    elif mode == "wall":
        action[0] = 1.0 if rng.random() < 0.5 else -1.0
        action[1] = 1.0 if rng.random() < 0.5 else -1.0
        action[2] = -1.0
        action[5] = terminate
    elif mode == "mixed":
        uniform = rng.uniform(-1.0, 1.0, size=6)
        action = np.where(rng.random(6) < 0.5, action, uniform)
        action[5] = terminate
    else:
        raise ValueError(f"grasp_env_adversarial: unknown mode {mode!r}; one of {MODES}.")
    return action.astype(np.float32)


def run(env: GraspEnv, mode: str, episodes: int, start: int) -> tuple[list[int], float, float]:
    """Seeds of the diverged episodes, the fastest object spin (rad/s) and the seconds taken."""
    import mujoco  # after the env module picked the GL backend

    model, data = env.model, env.data
    bodies = [
        mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY, f"object_{i}")
        for i in range(env.num_objects)
    ]
    diverged, fastest = [], 0.0
    began = time.perf_counter()
    for seed in range(start, start + episodes):
        env.reset(seed=seed)
        rng = np.random.default_rng([seed, MODES.index(mode)])
        terminated, step, unstable = False, 0, False
        while not terminated:
            _, _, terminated, _, info = env.step(adversarial_action(mode, rng, step))
            step += 1
            unstable |= bool(info.get("physics_unstable", False))
            if not unstable:  # cvel rows: angular (world frame) then linear
                spin = np.linalg.norm(data.cvel[bodies, :3], axis=1).max()
                fastest = max(fastest, float(spin))
        if unstable:
            diverged.append(seed)
    return diverged, fastest, time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=500)
    parser.add_argument("--start", type=int, default=0, help="first episode seed")
    parser.add_argument("--sets", nargs="+", default=["train", "test"])
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    parser.add_argument(
        "--integrators", nargs="+", default=["implicit"], choices=["implicit", "implicitfast"]
    )
    parser.add_argument("--image_size", type=int, default=16, help="physics does not depend on it")
    args = parser.parse_args()
    import mujoco  # after the env module picked the GL backend

    # The env logs every divergence; the table counts them.
    logging.getLogger("t2r.research.grasp_env.grasp_env").setLevel(logging.ERROR)
    print(
        f"# {datetime.date.today()}, {platform.node()}, MuJoCo {mujoco.__version__}, "
        f"seeds {args.start}-{args.start + args.episodes - 1}"
    )
    print("| integrator | objects | mode | episodes | diverged | their seeds | fastest spin | s |")
    print("|---|---|---|---:|---:|---|---:|---:|")
    for integrator in args.integrators:
        for object_set in args.sets:
            env = GraspEnv(object_set=object_set, image_size=args.image_size, seed=args.start)
            env.model.opt.integrator = getattr(mujoco.mjtIntegrator, f"mjINT_{integrator.upper()}")
            try:
                for mode in args.modes:
                    diverged, fastest, seconds = run(env, mode, args.episodes, args.start)
                    seeds = ", ".join(map(str, diverged[:5])) + (
                        " ..." if len(diverged) > 5 else ""
                    )
                    print(
                        f"| {integrator} | {object_set} | {mode} | {args.episodes} | "
                        f"{len(diverged)} | {seeds or '-'} | {fastest:,.0f} | {seconds:.0f} |",
                        flush=True,
                    )
            finally:
                env.close()


if __name__ == "__main__":
    main()
