"""Dataset conversion throughput: steps/s of `t2r.data.convert.convert` for every pair
of formats, beside the image codec work each pair cannot avoid.

The dataset: `--episodes` episodes of `--steps` steps, each step a 64x64x3 uint8
camera (a smooth moving pattern, so codecs behave as on camera images), a 7-d
float32 state, a 7-d float32 action, reward, is_terminal and a language
instruction. It is written once in each format (TFRecord and RLDS with PNG images,
LeRobot with MP4 video unless --no_video), then each source is converted to each
target, `--repeats` times, and the best time is kept.

Rows: one per (source, target), in steps/s. The reference above them: the same
frames encoded once and decoded once as PNG, the codec work of a pair that must
decode and encode every frame. Between TFRecord and RLDS the frames are copied,
not encoded again (only decoded once, by the reader), so those pairs may run
faster than it; robomimic stores raw frames; LeRobot's video goes through its
own writer and reader (the robomimic -> lerobot and lerobot -> robomimic rows).

    .venv/bin/python benchmarks/convert_formats.py [--episodes 20] [--steps 50] [--repeats 2]
"""

from __future__ import annotations

import argparse
import datetime
import logging
import os
import platform
import shutil
import tempfile
import time

import numpy as np

from t2r.data.convert import FORMATS, convert, write_episodes
from t2r.data.episodes import Episode
from t2r.data.image_codec import decode_image, encode_image


def make_episodes(episodes: int, steps: int, seed: int = 0) -> list[Episode]:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:64, 0:64].astype(np.float32)
    out = []
    for i in range(episodes):
        phase = rng.uniform(0, 6.28, 3)
        frames = np.stack(
            [
                np.stack(
                    [127 + 120 * np.sin(x / 9 + y / 13 + t / 5 + phase[c]) for c in range(3)],
                    axis=-1,
                )
                for t in range(steps)
            ]
        ).astype(np.uint8)
        instruction = np.empty(steps, dtype=object)
        instruction[:] = [f"pick the block {i % 5}"] * steps
        out.append(
            Episode(
                {
                    "observation/image": frames,
                    "observation/state": rng.normal(size=(steps, 7)).astype(np.float32),
                    "observation/language_instruction": instruction,
                    "action": rng.uniform(-1, 1, (steps, 7)).astype(np.float32),
                    "reward": (np.arange(steps) == steps - 1).astype(np.float32),
                    "is_terminal": np.arange(steps) == steps - 1,
                },
                {"task": f"pick the block {i % 5}", "fps": 10},
            )
        )
    return out


def target(root: str, fmt: str, name: str) -> str:
    return os.path.join(root, f"{name}.hdf5" if fmt == "robomimic" else name)


def png_bound(episodes: list[Episode], repeats: int) -> float:
    """Steps/s of encoding and decoding every frame once as PNG (best of `repeats`)."""
    frames = [f for e in episodes for f in e.steps["observation/image"]]
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for frame in frames:
            decode_image(encode_image(frame, "png"), frame.shape)
        best = min(best, time.perf_counter() - start)
    return len(frames) / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=20)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--no_video", action="store_true", help="LeRobot with PNG frames")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)  # the loss warnings are known here
    import torch

    torch.set_num_threads(1)
    episodes = make_episodes(args.episodes, args.steps)
    total = args.episodes * args.steps
    root = tempfile.mkdtemp(prefix="t2r_convert_bench_")
    try:
        sources = {}
        for fmt in FORMATS:
            sources[fmt] = target(root, fmt, f"src_{fmt}")
            write_episodes(sources[fmt], episodes, to=fmt, video=not args.no_video)  # type: ignore[arg-type]
        bound = png_bound(episodes, args.repeats)
        machine = platform.processor() or platform.machine()
        print(
            f"# {datetime.date.today()}  {platform.node()}  {machine}"
            f"  {args.episodes} episodes x {args.steps} steps, 64x64x3 camera"
            f"{'' if args.no_video else ', LeRobot as MP4'}"
        )
        print(f"PNG encode+decode of every frame once: {bound:,.0f} steps/s")
        print(f"{'source':>10s} -> {'target':10s}  {'steps/s':>9s}")
        for src in FORMATS:
            for dst in FORMATS:
                best = float("inf")
                for r in range(args.repeats):
                    out = target(root, dst, f"out_{src}_{dst}_{r}")
                    start = time.perf_counter()
                    convert(sources[src], out, to=dst, video=not args.no_video)  # type: ignore[arg-type]
                    best = min(best, time.perf_counter() - start)
                    if os.path.isdir(out):
                        shutil.rmtree(out)
                    else:
                        os.remove(out)
                print(f"{src:>10s} -> {dst:10s}  {total / best:9,.0f}")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
