"""QT-Opt collection throughput: transitions/s with 1, 2, 4 Ray collector actors, against
the grasp env's render-only rate measured in the same run.

Each actor runs whole grasp episodes (`GraspEnv`, 64 px, <= 10 steps) and writes them
through `TFRecordReplayWriter` (records JPEG-encoded by
`grasp_episode_to_transitions`), as the loop's collectors do, with one of two
policies:

* ``scripted``: the env's scripted grasp with noise 0.3 (what exploration episodes
  cost: env + encode + write);
* ``cem``: T2R's CEM (3 x 64 samples, 10 elites) on an export of the critic
  (`--network`), through `ExportedModelPredictor` (what greedy episodes cost).

Actors share the Ray CPUs (``ray.init(num_cpus=<usable CPUs - 1, at least 1>)``)
equally. The render-only row is one renderer in this process
(``update_scene`` + ``render``, 64 px): the physical limit of a collector that
renders one frame per transition. On a loaded or 2-core machine more actors
than cores cannot scale; the figure says what the machine gives.

Run: ``.venv/bin/python benchmarks/qtopt_collect.py [--episodes 24] [--actors 1 2 4]
[--policies scripted cem] [--network grasping44]``
"""

from __future__ import annotations

import argparse
import datetime
import functools
import os
import platform
import tempfile
import time
from typing import Any

# Imported first: it sets MUJOCO_GL before mujoco loads.
from t2r.research.grasp_env.grasp_env import GraspEnv


def collect_shard(
    shard: Any, on_episode: Any, policy: str, export_dir: str, network: str
) -> dict[str, Any]:
    """A CollectFn: `shard.num_episodes` grasp episodes with `policy`, written to the replay."""
    import torch

    from t2r.collect import TFRecordReplayWriter, run_env
    from t2r.research.grasp_env import ScriptedGraspPolicy
    from t2r.research.qtopt.learner import make_critic
    from t2r.research.qtopt.transitions import grasp_episode_to_transitions

    torch.set_num_threads(1)
    env = GraspEnv(object_set="train", seed=shard.seed)
    if policy == "scripted":
        chosen: Any = ScriptedGraspPolicy(env, noise=0.3, seed=shard.seed)
    else:
        from t2r.predictors import ExportedModelPredictor
        from t2r.research.qtopt.policy import qtopt_cem_policy

        predictor = ExportedModelPredictor(export_dir, timeout=60)
        predictor.restore()
        chosen = qtopt_cem_policy(predictor, make_critic(64, 64, network=network), seed=shard.seed)
    result = run_env(
        env,
        chosen,
        episode_to_transitions_fn=grasp_episode_to_transitions,
        replay_writer=TFRecordReplayWriter(),
        root_dir=shard.root_dir,
        task=shard.index,
        num_episodes=shard.num_episodes,
        on_episode=lambda index, episode: on_episode(),
        show_progress=False,
    )
    return {"collect": result}


def render_only_rate(steps: int = 300) -> float:
    env = GraspEnv(object_set="train", seed=0)
    env.reset(seed=0)
    for _ in range(20):
        env.render_image()
    start = time.perf_counter()
    for _ in range(steps):
        env.render_image()
    return steps / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--episodes", type=int, default=24, help="episodes per measurement")
    parser.add_argument("--actors", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--policies", nargs="+", default=["scripted", "cem"])
    parser.add_argument("--network", default="grasping44", choices=["grasping44", "small"])
    args = parser.parse_args()

    import torch

    from t2r.collect import split_shards
    from t2r.collect.ray_collector import RayCollector, default_num_cpus, ray_session
    from t2r.export import export_saved_model
    from t2r.research.qtopt.learner import make_critic

    torch.set_num_threads(1)
    render = render_only_rate()
    cpus = default_num_cpus()
    rows = []
    with tempfile.TemporaryDirectory() as root, ray_session(num_cpus=cpus):
        export_dir = os.path.join(root, "export")
        if "cem" in args.policies:
            torch.manual_seed(0)
            export_saved_model(make_critic(64, 64, network=args.network), export_dir)
        for policy in args.policies:
            for actors in args.actors:
                out = os.path.join(root, f"{policy}-{actors}")
                collector = RayCollector(
                    num_actors=actors, num_cpus_per_actor=cpus / actors, show_progress=False
                )
                fn = functools.partial(
                    collect_shard, policy=policy, export_dir=export_dir, network=args.network
                )
                report = collector.collect(fn, split_shards(args.episodes, actors, out))
                # From the first episode to the last actor's end (run_env's own clock):
                # actor start-up, imports and env construction are not counted.
                secs = max(r.elapsed_secs for r in report.tagged("collect"))
                rate = report.num_transitions / secs
                rows.append((policy, actors, report.num_transitions, secs, rate))
                print(f"{policy:9s} {actors} actors: {rate:8.1f} transitions/s", flush=True)
    print()
    print(
        f"QT-Opt collection, {datetime.date.today()}, {platform.machine()}, "
        f"{os.cpu_count()} CPUs, Ray CPUs {cpus}, load average {os.getloadavg()[0]:.1f}, "
        f"critic '{args.network}'"
    )
    print("| policy | actors | transitions | wall s | transitions/s | of render-only |")
    print("|---|---:|---:|---:|---:|---:|")
    for policy, actors, transitions, secs, rate in rows:
        print(
            f"| {policy} | {actors} | {transitions} | {secs:.1f} | {rate:.1f} | "
            f"{100 * rate / render:.1f} % |"
        )
    print(f"| render only, 64 px (one process) | - | - | - | {render:.0f} | 100 % |")


if __name__ == "__main__":
    main()
