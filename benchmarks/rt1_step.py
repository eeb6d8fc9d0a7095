"""RT-1 policy step latency (token reuse vs full recompute), training throughput, memory.

Rows, at the paper's size (`PAPER_SIZE`: 300x300 images, 6 frames, 35.1M
parameters, random weights), batch 1, `--threads` CPU threads (2):

* policy step, token reuse: `RT1Model.predict_step`: encode the new frame only,
  the 5 previous frames' image tokens come from the network state;
* policy step, full recompute: `RT1Model.predict_window` on all 6 frames (what
  rt1-pytorch does every step);
* the same two through exports (`--exported`): `ExportedModelPredictor` on a
  torch.export program of each (token_reuse=True / False), as a robot serves it;
* training: samples/s of `train_step` (forward, backward, Adam) at `--batch`
  windows of 6 frames, fp32 / bf16 autocast / torch.compile, and the peak
  resident memory of each (each row runs in its own process so peaks are its own).

Latency rows report the median and min over `--steps` timed steps after 2
warm-up steps, the window full (steady state); the two paths alternate step by
step so both see the same machine load.

    .venv/bin/python benchmarks/rt1_step.py [--steps 10] [--threads 2] [--batch 2]
        [--train-steps 3] [--exported] [--skip-train] [--image-size 300]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

import numpy as np
import torch

from t2r.modes import ModeKeys
from t2r.research.rt1 import PAPER_SIZE, RT1Model
from t2r.train import seed_everything


def _model(image_size: int, token_reuse: bool = True) -> RT1Model:
    seed_everything(0)
    return RT1Model(**{**PAPER_SIZE, "image_size": image_size}, token_reuse=token_reuse).eval()


def _frames(model: RT1Model, count: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    h, w = model.image_size
    images = torch.randint(0, 256, (1, count, h, w, 3), dtype=torch.uint8, generator=g)
    return images, torch.randn(1, count, model.embedding_size, generator=g)


def _timed(fn: Any, steps: int) -> list[float]:
    fn(0)
    fn(1)
    times = []
    for i in range(steps):
        start = time.perf_counter()
        fn(i + 2)
        times.append((time.perf_counter() - start) * 1000)
    return times


def _alternating(paths: dict[str, Any], steps: int) -> dict[str, list[float]]:
    """Times the paths in turn, one step each per round (2 warm-up rounds), so every
    path sees the same machine load."""
    times: dict[str, list[float]] = {name: [] for name in paths}
    for i in range(steps + 2):
        for name, fn in paths.items():
            start = time.perf_counter()
            fn(i)
            if i >= 2:
                times[name].append((time.perf_counter() - start) * 1000)
    return times


def latency_eager(image_size: int, steps: int) -> dict[str, Any]:
    model = _model(image_size)
    t = model.time_sequence_length
    images, embeddings = _frames(model, steps + 2 + t)
    state = {k: v[None] for k, v in model.get_initial_network_state().items()}
    with torch.no_grad():  # fill the window first: steady state
        for i in range(t):
            out = model.predict_step(
                images[:, i], embeddings[:, i], state["image_tokens"], state["seq_idx"]
            )
            state = out["next_network_state"]
        agree = []

        def reuse(i: int) -> None:
            nonlocal state
            out = model.predict_step(
                images[:, t + i], embeddings[:, t + i], state["image_tokens"], state["seq_idx"]
            )
            state = out["next_network_state"]
            agree.append(out["action_tokens"])

        def recompute(i: int) -> None:
            out = model.predict_window(
                images[:, i + 1 : i + 1 + t], embeddings[:, i + 1 : i + 1 + t]
            )
            agree[-1] = bool(torch.equal(agree[-1], out["action_tokens"]))  # same window

        result: dict[str, Any] = _alternating({"reuse": reuse, "recompute": recompute}, steps)
        result["same_actions"] = all(a is True for a in agree)
        return result


def latency_exported(image_size: int, steps: int) -> dict[str, Any]:
    from t2r.export import export_saved_model
    from t2r.predictors import ExportedModelPredictor
    from t2r.research.rt1.policy import RT1Policy

    policies: dict[str, RT1Policy] = {}
    export_s: dict[str, float] = {}
    directory = tempfile.mkdtemp()
    images = embeddings = torch.empty(0)
    for name, reuse in (("exported reuse", True), ("exported recompute", False)):
        model = _model(image_size, token_reuse=reuse)
        images, embeddings = _frames(model, steps + 2 + model.time_sequence_length)
        start = time.perf_counter()
        export_saved_model(model, os.path.join(directory, name.split()[1]), global_step=0)
        export_s[name] = time.perf_counter() - start
        predictor = ExportedModelPredictor(os.path.join(directory, name.split()[1]), timeout=0)
        assert predictor.restore()
        policies[name] = RT1Policy(predictor)
        del model
    obs = [
        {"image": images[0, i].numpy(), "natural_language_embedding": embeddings[0, i].numpy()}
        for i in range(images.shape[1])
    ]
    for policy in policies.values():
        policy.reset()
        for i in range(6):
            policy.select_action(obs[i])
    paths = {
        name: (lambda i, p=policy: p.select_action(obs[6 + i])) for name, policy in policies.items()
    }
    result: dict[str, Any] = _alternating(paths, steps)
    result["export_s"] = export_s
    return result


def train_rate(image_size: int, batch: int, steps: int, variant: str) -> dict[str, float]:
    model = _model(image_size).train()
    spec = model.get_feature_specification_for_packing(ModeKeys.TRAIN)
    from t2r import specs

    features = specs.make_random_numpy(spec, batch_size=batch, seed=0)
    labels = specs.make_random_numpy(
        model.get_label_specification_for_packing(ModeKeys.TRAIN), batch_size=batch, seed=1
    )
    features = {k: torch.from_numpy(np.asarray(v)) for k, v in features.items()}
    labels = {k: torch.from_numpy(np.asarray(v)) for k, v in labels.items()}
    optimizer = model.create_optimizer()
    if variant == "compile":
        model.inference_network_fn = torch.compile(model.inference_network_fn)  # type: ignore[method-assign]
    autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=variant == "bf16")

    def step(_: int) -> None:
        with autocast:
            model.train_step(features, labels, optimizer)

    start = time.perf_counter()
    step(0)  # warm-up (compiles)
    first_s = time.perf_counter() - start
    times = _timed(step, steps)
    return {
        "samples_per_s": batch / (statistics.median(times) / 1000),
        "first_step_s": first_s,
        "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
    }


def _child(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    kind = args.child
    if kind == "eager":
        out: Any = latency_eager(args.image_size, args.steps)
    elif kind == "exported":
        out = latency_exported(args.image_size, args.steps)
    else:
        out = train_rate(args.image_size, args.batch, args.train_steps, kind.split(":")[1])
    out["peak_rss_gib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print("RESULT " + json.dumps(out))


def _run(args: argparse.Namespace, kind: str) -> dict[str, Any]:
    command = [sys.executable, __file__, "--child", kind]
    for flag in ("steps", "threads", "batch", "train_steps", "image_size"):
        command += [f"--{flag.replace('_', '-')}", str(getattr(args, flag))]
    result = subprocess.run(command, capture_output=True, text=True, env=os.environ)
    if result.returncode != 0:
        raise RuntimeError(f"{kind} failed:\n{result.stderr[-3000:]}")
    line = [x for x in result.stdout.splitlines() if x.startswith("RESULT ")][-1]
    return json.loads(line[len("RESULT ") :])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--train-steps", type=int, default=3)
    parser.add_argument("--image-size", type=int, default=300)
    parser.add_argument("--exported", action="store_true")
    parser.add_argument("--skip-train", action="store_true")
    parser.add_argument("--train-variants", default="fp32,bf16,compile")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(args)
        return
    load = os.getloadavg()
    print(
        f"# rt1_step: {datetime.date.today()}, {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} CPUs, load {load[0]:.1f}, torch {torch.__version__}, "
        f"threads {args.threads}, {args.image_size}px, 6 frames, paper size"
    )
    eager = _run(args, "eager")
    rows = [
        ("policy step, token reuse (eager)", eager["reuse"]),
        ("policy step, full recompute (eager)", eager["recompute"]),
    ]
    print(f"same action tokens in both eager paths at every step: {eager['same_actions']}")
    if args.exported:
        exported = _run(args, "exported")
        rows += [
            ("policy step, token reuse (export)", exported["exported reuse"]),
            ("policy step, full recompute (export)", exported["exported recompute"]),
        ]
    print("| path | median ms | min ms |")
    print("|---|---|---|")
    for name, times in rows:
        print(f"| {name} | {statistics.median(times):.0f} | {min(times):.0f} |")
    speedup = statistics.median(eager["recompute"]) / statistics.median(eager["reuse"])
    print(
        f"\nreuse speed-up (eager, median): {speedup:.2f}x; "
        f"latency peak RSS {eager['peak_rss_gib']:.2f} GiB"
    )
    if args.exported:
        print(
            f"export time: reuse {exported['export_s']['exported reuse']:.0f} s, "
            f"recompute {exported['export_s']['exported recompute']:.0f} s"
        )
    if args.skip_train:
        return
    print(
        f"\n| training (batch {args.batch} x 6 frames) | samples/s | first step s | peak RSS GiB |"
    )
    print("|---|---|---|---|")
    for variant in args.train_variants.split(","):
        try:
            r = _run(args, f"train:{variant}")
            print(
                f"| {variant} | {r['samples_per_s']:.2f} | {r['first_step_s']:.1f} "
                f"| {r['peak_rss_gib']:.2f} |"
            )
        except RuntimeError as e:
            print(f"| {variant} | failed: {str(e).splitlines()[-1][:80]} | | |")


if __name__ == "__main__":
    main()
