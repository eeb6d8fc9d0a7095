"""pose_env collection throughput: transitions/s of t2r.collect beside the env's render rate.

Rows (one transition = one single-step pose_env episode, a new task each, as
``t2r demo`` collects them):

* render only: ``reset_task()`` + ``reset()`` (one render) in a loop, no
  policy, no records: the physical limit of one process.
* run_env, no writer: `run_env` with `PoseEnvRandomPolicy` (episode
  bookkeeping on top of rendering).
* run_env + records, 1 collector: plus `episode_to_transitions_pose_toy`
  (JPEG encode, tf.train.Example) and `TFRecordReplayWriter` (atomic files of
  1,000 episodes), in this process.
* run_env + records, N collectors: N processes (spawn) writing into one
  directory; the rate is all their transitions over the slowest one's
  collection time (start-up excluded), and in brackets over the wall time
  from starting the processes to joining them.

Beside each row: its ratio to the render-only rate (x the number of processes
for the multi-process rows).

    .venv/bin/python benchmarks/collect_throughput.py [--episodes 4000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import datetime
import multiprocessing
import os
import platform
import statistics
import tempfile
import time

from t2r.research.pose_env.pose_env import PoseToyEnv  # sets MUJOCO_GL before mujoco loads


def render_only(episodes: int, seed: int) -> float:
    env = PoseToyEnv(seed=seed)
    for _ in range(50):
        env.reset_task()
        env.reset()
    start = time.perf_counter()
    for _ in range(episodes):
        env.reset_task()
        env.reset()
    rate = episodes / (time.perf_counter() - start)
    env.close()
    return rate


def collect(episodes: int, seed: int, root: str | None, task: int = 0) -> tuple[int, float]:
    """(transitions, seconds) of one run_env call (records written when root is given)."""
    from t2r.collect import TFRecordReplayWriter, run_env
    from t2r.research.pose_env import PoseEnvRandomPolicy, episode_to_transitions_pose_toy

    env = PoseToyEnv(seed=seed)
    policy = PoseEnvRandomPolicy(seed=seed)
    run_env(env, policy, num_episodes=50, episodes_per_task=1, show_progress=False)  # warm-up
    writer = TFRecordReplayWriter(max_episodes_per_file=1000) if root else None
    result = run_env(
        env,
        policy,
        episode_to_transitions_fn=episode_to_transitions_pose_toy if root else None,
        replay_writer=writer,
        root_dir=root,
        task=task,
        num_episodes=episodes,
        episodes_per_task=1,
        show_progress=False,
    )
    env.close()
    return result.num_transitions, result.elapsed_secs


def _worker(episodes: int, seed: int, root: str, task: int, results: object) -> None:
    import torch

    torch.set_num_threads(1)
    results.put(collect(episodes, seed, root, task))  # type: ignore[attr-defined]


def collect_parallel(episodes: int, processes: int, root: str) -> tuple[float, float]:
    """(rate over collection time, rate over wall time) of `processes` collectors."""
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    share = episodes // processes
    start = time.perf_counter()
    workers = [
        context.Process(target=_worker, args=(share, 100 + i, root, i, results))
        for i in range(processes)
    ]
    for worker in workers:
        worker.start()
    outcomes = [results.get(timeout=600) for _ in workers]
    for worker in workers:
        worker.join()
    wall = time.perf_counter() - start
    if any(w.exitcode != 0 for w in workers):
        raise RuntimeError("a collector failed")
    transitions = sum(n for n, _ in outcomes)
    return transitions / max(s for _, s in outcomes), transitions / wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=4000, help="episodes per row")
    parser.add_argument("--repeats", type=int, default=3, help="rounds; the median is shown")
    parser.add_argument("--processes", type=int, default=2, help="collectors of the last row")
    args = parser.parse_args()

    rows: dict[str, list[float]] = {}
    wall_rates: list[float] = []
    multi = f"run_env + records, {args.processes} collectors"
    for round_index in range(args.repeats):
        with tempfile.TemporaryDirectory() as tmp:
            rows.setdefault("render only", []).append(render_only(args.episodes, round_index))
            n, secs = collect(args.episodes, round_index, None)
            rows.setdefault("run_env, no writer", []).append(n / secs)
            n, secs = collect(args.episodes, round_index, os.path.join(tmp, "one"))
            rows.setdefault("run_env + records, 1 collector", []).append(n / secs)
            rate, wall_rate = collect_parallel(
                args.episodes, args.processes, os.path.join(tmp, "many")
            )
            rows.setdefault(multi, []).append(rate)
            wall_rates.append(wall_rate)

    render = statistics.median(rows["render only"])
    print(
        f"PoseToyEnv 64x64, MUJOCO_GL={os.environ.get('MUJOCO_GL')}, "
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"{args.episodes} episodes per row, median of {args.repeats}, "
        f"{datetime.date.today().isoformat()}"
    )
    print(f"| {'case':<36} | {'transitions/s':>16} | {'vs render only':>14} |")
    print(f"|{'-' * 38}|{'-' * 18}|{'-' * 16}|")
    for name, rates in rows.items():
        rate = statistics.median(rates)
        processes = args.processes if name == multi else 1
        text = f"{rate:,.0f}"
        if name == multi:
            text += f" ({statistics.median(wall_rates):,.0f})"
        ratio = rate / (render * processes)
        print(f"| {name:<36} | {text:>16} | {ratio:>13.0%} |")


if __name__ == "__main__":
    main()
