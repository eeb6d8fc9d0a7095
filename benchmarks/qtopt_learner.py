"""QT-Opt learner steps/s: `train_eval_model` on labelled replay records, 1 and 2 torchrun
(gloo) processes on the CPU.

What a learner of the distributed loop does: read labelled transition records
(``t2r.research.qtopt.transitions.labelled_specification``: 64x64 JPEG image,
action features, ``target_q``) through `DefaultRecordInputGenerator`, decode,
and train `Grasping44CriticModel` (T2R's log loss + L2, Adam) under
DistributedDataParallel. The records are synthetic (random images and
actions, random targets): the rate does not depend on what they show.

Each configuration runs ``torchrun --standalone --nproc_per_node=N`` with one
intra-op thread per process (OMP_NUM_THREADS=1); `--batch_size` is per
process, so N processes train on N x batch_size examples per step. The rate
is over the steps after `--warmup` (checkpoints only at the end, no exports).

Run: ``.venv/bin/python benchmarks/qtopt_learner.py [--size grasping44] [--batch_size 32]
[--steps 40] [--nprocs 1 2]``
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from t2r.data import DefaultRecordInputGenerator
from t2r.data.tfrecord import TFRecordWriter
from t2r.research.qtopt import Grasping44CriticModel, grasp_episode_to_transitions, label_records
from t2r.research.qtopt.learner import NETWORKS
from t2r.train import Hook, HookBuilder, train_eval_model

REPO_ROOT = Path(__file__).resolve().parents[1]


def _write_records(path: Path, count: int, image_size: int, seed: int) -> None:
    rng = np.random.default_rng(seed)

    def obs() -> dict[str, np.ndarray]:
        return {
            "image": rng.integers(0, 256, (image_size, image_size, 3), dtype=np.uint8),
            "gripper_closed": rng.integers(0, 2, 1).astype(np.float32),
            "height_to_bottom": rng.uniform(0, 0.3, 1).astype(np.float32),
        }

    episode = [
        (obs(), rng.uniform(-1, 1, 6).astype(np.float32), 0.0, obs(), bool(i % 5 == 4), {})
        for i in range(count)
    ]
    records = label_records(
        grasp_episode_to_transitions(episode), rng.uniform(0, 1, count), image_size
    )
    with TFRecordWriter(path) as writer:
        for record in records:
            writer.write(record)


class _Timer(Hook):
    def __init__(self, warmup: int, out: Path | None) -> None:
        self.warmup, self.out = warmup, out
        self.start: float | None = None
        self.start_step = 0

    def after_step(self, global_step: int, scalars: dict[str, float]) -> None:
        if global_step == self.warmup:
            self.start, self.start_step = time.perf_counter(), global_step

    def end(self, global_step: int) -> None:
        if self.out is None or self.start is None:
            return
        elapsed = time.perf_counter() - self.start
        steps = global_step - self.start_step
        self.out.write_text(json.dumps({"steps": steps, "seconds": elapsed}))


class _TimerBuilder(HookBuilder):
    def __init__(self, warmup: int, out: Path | None) -> None:
        self.warmup, self.out = warmup, out

    def create_hooks(self, t2r_model: object, model_dir: str | os.PathLike[str]) -> list[Hook]:
        return [_Timer(self.warmup, self.out)]


def worker(args: argparse.Namespace) -> None:
    """One learner rank (under torchrun)."""
    torch.set_num_threads(1)
    rank = int(os.environ.get("RANK", "0"))
    model = Grasping44CriticModel(image_size=args.image_size, network_kwargs=NETWORKS[args.size])
    generator = DefaultRecordInputGenerator(
        file_patterns=str(args.records), batch_size=args.batch_size, seed=0
    )
    train_eval_model(
        model,
        generator,
        max_train_steps=args.warmup + args.steps,
        model_dir=args.model_dir,
        save_checkpoints_steps=args.warmup + args.steps,
        device="cpu",
        show_progress=False,
        log_every_n_steps=10_000,
        train_hook_builders=[_TimerBuilder(args.warmup, args.result if rank == 0 else None)],
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", choices=sorted(NETWORKS), default="grasping44")
    parser.add_argument("--image_size", type=int, default=64)
    parser.add_argument("--batch_size", type=int, default=32, help="per process")
    parser.add_argument("--steps", type=int, default=40, help="timed steps")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--records", type=Path, default=None)
    parser.add_argument("--num_records", type=int, default=512)
    parser.add_argument("--nprocs", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--model_dir", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return

    rows = []
    with tempfile.TemporaryDirectory(prefix="qtopt_learner_") as tmp:
        records = Path(tmp) / "labelled.tfrecord"
        _write_records(records, args.num_records, args.image_size, seed=0)
        for nprocs in args.nprocs:
            result = Path(tmp) / f"result_{nprocs}.json"
            command = [
                sys.executable,
                "-m",
                "torch.distributed.run",
                "--standalone",
                f"--nproc_per_node={nprocs}",
                str(Path(__file__).resolve()),
                "--worker",
                f"--size={args.size}",
                f"--image_size={args.image_size}",
                f"--batch_size={args.batch_size}",
                f"--steps={args.steps}",
                f"--warmup={args.warmup}",
                f"--records={records}",
                f"--model_dir={Path(tmp) / f'model_{nprocs}'}",
                f"--result={result}",
            ]
            env = dict(os.environ, OMP_NUM_THREADS="1")
            env["PYTHONPATH"] = os.pathsep.join(
                p for p in (str(REPO_ROOT / "src"), env.get("PYTHONPATH")) if p
            )
            subprocess.run(command, check=True, env=env, cwd=REPO_ROOT)
            timing = json.loads(result.read_text())
            steps_per_sec = timing["steps"] / timing["seconds"]
            rows.append((nprocs, steps_per_sec, steps_per_sec * nprocs * args.batch_size))

    print(
        f"\nQT-Opt learner ({args.size} Grasping44 critic, {args.image_size}x{args.image_size} "
        f"JPEG records, batch {args.batch_size} per process, gloo, 1 thread per process)"
    )
    print(
        f"{datetime.date.today()}, {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cpus (shared: indicative only)"
    )
    print("processes  steps/s  examples/s")
    for nprocs, steps_per_sec, examples in rows:
        print(f"{nprocs:9d}  {steps_per_sec:7.2f}  {examples:10.1f}")


if __name__ == "__main__":
    main()
