"""QT-Opt's learner: `train_eval_model` on the labelled replay, under torchrun.

Run by `t2r.research.qtopt.loop` (``t2r qtopt``) as::

    python -m torch.distributed.run --standalone --nproc_per_node=L --max-restarts=R \\
        -m t2r.research.qtopt.learner --output_dir D --steps N ...

(on a cluster, ``--nnodes``/``--rdzv-backend=c10d``/``--rdzv-endpoint=host:port``
replace ``--standalone``; see docs/qtopt.md). Every rank reads its shard of
``D/labelled/`` (`t2r.data.ReplayInputGenerator`, which lists the directory
again as the Bellman updaters add and relabel files); rank 0 writes
checkpoints to ``D/model/`` and exports every ``--export_every`` steps to
``D/export/`` plus a copy one version behind in ``D/export_lagged/``
(`t2r.export.TD3Hooks`): collectors act with the newest export, the Bellman
updaters label with the lagged one (the target network).

A learner that dies is restarted (by torchrun's ``--max-restarts``, or by
running the command again) and resumes from the newest checkpoint in
``D/model/``: weights, optimizer, RNG states and global step. Its input order
over a growing directory is not rebuilt (docs/training.md); with
``--fixed_input`` the learner reads the labelled files present at start as a
fixed dataset whose position is restored too, so a killed and resumed run
ends bitwise equal to an uninterrupted one (the fault test checks this).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import math
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = [
    "LEARNER_MODULE",
    "NETWORKS",
    "LabelRateLimit",
    "die_with_parent",
    "labels_written",
    "main",
    "make_critic",
    "parse_args",
    "train_learner",
    "write_label_count",
]

LEARNER_MODULE = "t2r.research.qtopt.learner"
#: Under the loop's output dir: each Bellman updater's count of labels written.
LABEL_COUNTS = "label_counts"

#: Network sizes by name: T2R's Grasping44 (64 filters, 6/6/3 convs), and a
#: reduced one (32 filters, 2/2/1 convs, about 8x cheaper) for CPU-bound runs, and a
#: tiny one (8 filters, one conv per stage) for tests and smoke runs.
NETWORKS: dict[str, dict[str, Any]] = {
    "grasping44": {},
    "small": {"channels": 32, "num_convs": (2, 2, 1)},
    "tiny": {"channels": 8, "num_convs": (1, 1, 1), "fc_size": 16, "action_embedding_size": 16},
}
logger = logging.getLogger(__name__)


def make_critic(
    image_size: int,
    cem_samples: int,
    learning_rate: float | None = None,
    network: str = "grasping44",
    initial_q: float | None = None,
) -> Any:
    """The critic every role builds: `Grasping44CriticModel` exported with
    ``action_batch_size = cem_samples`` (CEM scores its candidates in one call),
    its network sized by `network` (a `NETWORKS` name), its untrained Q `initial_q`
    (None: T2R's 0.5)."""
    from t2r.research.qtopt.models import Grasping44CriticModel

    if network not in NETWORKS:
        raise ValueError(
            f"make_critic: network must be one of {sorted(NETWORKS)}, got {network!r}."
        )
    network_kwargs = dict(NETWORKS[network])
    if initial_q is not None:
        network_kwargs["initial_q"] = initial_q
    kwargs: dict[str, Any] = {"network_kwargs": network_kwargs}
    if learning_rate is not None:
        import torch

        kwargs["create_optimizer_fn"] = lambda params: torch.optim.Adam(params, lr=learning_rate)
    return Grasping44CriticModel(image_size=image_size, action_batch_size=cem_samples, **kwargs)


def write_label_count(counts_dir: Path, updater: int, count: int) -> None:
    """Bellman updater `updater` has written `count` labels in all (relabels included)."""
    from t2r.atomic import atomic_write_text

    counts_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(counts_dir / f"updater-{updater}.json", json.dumps({"labels": count}))


def labels_written(counts_dir: Path, updater: int | None = None) -> int:
    """The labels Bellman updater `updater` (None: every updater) has written so far
    (`write_label_count`)."""
    total = 0
    for path in counts_dir.glob("updater-*.json" if updater is None else f"updater-{updater}.json"):
        with contextlib.suppress(OSError, ValueError):
            total += int(json.loads(path.read_text())["labels"])
    return total


class LabelRateLimit:
    """Holds the learners to `samples_per_label` training samples per label written.

    A learner that draws from a small window of fresh labels faster than the Bellman
    updaters renew it fits each label many times over. After each step this waits
    until the updaters have written ``step * batch_size * world_size /
    samples_per_label`` labels (a rate limiter like Reverb's samples-per-insert).
    Every rank waits for the same monotone count, so ranks never disagree for long;
    a resumed learner counts the labels of the run before it too. (Measured in
    docs/qtopt.md: at 4 samples per label, against the 13 an unthrottled learner
    drew on 2 CPUs, success at equal steps did not change.)
    """

    def __init__(
        self,
        counts_dir: Path,
        samples_per_label: float,
        batch_size: int,
        poll_secs: float = 0.5,
    ) -> None:
        if samples_per_label <= 0:
            raise ValueError(
                f"LabelRateLimit: samples_per_label must be > 0, got {samples_per_label}."
            )
        self.counts_dir = counts_dir
        self.samples_per_label = samples_per_label
        self.batch_size = batch_size
        self.poll_secs = poll_secs

    def labels_needed(self, global_step: int, world_size: int) -> int:
        return math.ceil(global_step * self.batch_size * world_size / self.samples_per_label)

    def create_hooks(self, t2r_model: Any, model_dir: Any) -> list[Any]:
        import torch.distributed as dist

        from t2r.train import CallbackHook

        world_size = dist.get_world_size() if dist.is_initialized() else 1

        written = 0  # counts only grow: the files are read only when this falls short

        def after_step(global_step: int, scalars: Any) -> None:
            nonlocal written
            needed = self.labels_needed(global_step, world_size)
            while written < needed:
                written = labels_written(self.counts_dir)
                if written < needed:
                    time.sleep(self.poll_secs)

        return [CallbackHook(after_step=after_step)]


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=LEARNER_MODULE, description=__doc__.split("\n")[0])
    parser.add_argument("--output_dir", required=True)
    parser.add_argument("--steps", type=int, required=True, help="learner steps in all")
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--image_size", type=int, default=64)
    parser.add_argument("--cem_samples", type=int, default=64)
    parser.add_argument("--learning_rate", type=float, default=None)
    parser.add_argument("--network", default="grasping44", choices=sorted(NETWORKS))
    parser.add_argument("--export_every", type=int, default=100)
    parser.add_argument("--checkpoint_every", type=int, default=100)
    parser.add_argument("--initial_q", type=float, default=None, help="the untrained Q")
    parser.add_argument("--max_files", type=int, default=None, help="labelled files window")
    parser.add_argument("--refresh_secs", type=float, default=2.0)
    parser.add_argument(
        "--samples_per_label",
        type=float,
        default=None,
        help="wait for the Bellman updaters beyond this many samples per label (None: never)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--num_threads", type=int, default=1)
    parser.add_argument(
        "--fixed_input",
        action="store_true",
        help="read the labelled files present at start as a fixed dataset (exact resume)",
    )
    parser.add_argument("--log_every", type=int, default=50)
    return parser.parse_args(argv)


def train_learner(args: argparse.Namespace, hook_builders: Sequence[Any] = ()) -> dict[str, float]:
    """One learner rank (torchrun started it, or a plain process for one learner)."""
    import torch

    from t2r.data import DefaultRecordInputGenerator, ReplayInputGenerator
    from t2r.export import TD3Hooks
    from t2r.train import seed_everything, train_eval_model

    torch.set_num_threads(args.num_threads)
    seed_everything(args.seed)  # the initial weights too: a run is reproducible from its seed
    output = Path(args.output_dir)
    labelled = output / "labelled"
    model = make_critic(
        args.image_size, args.cem_samples, args.learning_rate, args.network, args.initial_q
    )
    inputs: Any
    if args.fixed_input:
        files = sorted(str(p) for p in labelled.glob("*.tfrecord"))
        if not files:
            raise SystemExit(
                f"{LEARNER_MODULE}: --fixed_input but no labelled files in {labelled}."
            )
        inputs = DefaultRecordInputGenerator(file_patterns=files, batch_size=args.batch_size)
    else:
        inputs = ReplayInputGenerator(
            str(labelled / "*.tfrecord"),
            batch_size=args.batch_size,
            max_files=args.max_files,
            refresh_secs=args.refresh_secs,
        )
    hooks: list[Any] = [
        TD3Hooks(
            export_dir=output / "export",
            lagged_export_dir=output / "export_lagged",
            save_secs=None,
            save_steps=args.export_every,
            num_versions=3,
        ),
        *hook_builders,
    ]
    if args.samples_per_label is not None:
        hooks.append(LabelRateLimit(output / LABEL_COUNTS, args.samples_per_label, args.batch_size))
    return train_eval_model(
        model,
        inputs,
        max_train_steps=args.steps,
        model_dir=output / "model",
        save_checkpoints_steps=args.checkpoint_every,
        keep_checkpoint_max=2,
        train_hook_builders=hooks,
        device=args.device,
        seed=args.seed,
        log_every_n_steps=args.log_every,
        show_progress=False,
    )


#: <linux/prctl.h>: the signal the kernel sends this process when its parent dies.
_PR_SET_PDEATHSIG = 1


def die_with_parent() -> bool:
    """Asks Linux to SIGKILL this process when its parent (torchrun's agent) dies, however
    it dies; True when set. Exits at once if the parent is already gone."""
    if not sys.platform.startswith("linux"):
        return False
    import ctypes
    import signal

    parent = os.getppid()
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0) != 0:
        return False  # PR_SET_PDEATHSIG refused: torchrun's own shutdown still applies
    if os.getppid() != parent:
        raise SystemExit(f"{LEARNER_MODULE}: the parent process exited during start-up.")
    return True


def main(argv: Sequence[str] | None = None) -> int:
    if "TORCHELASTIC_RUN_ID" in os.environ:  # under torchrun: never outlive the agent
        die_with_parent()
    logging.basicConfig(
        level=logging.INFO,
        format=f"%(asctime)s rank{os.environ.get('RANK', '0')} %(levelname)s %(name)s: %(message)s",
    )
    train_learner(parse_args(argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
