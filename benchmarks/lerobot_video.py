"""LeRobot camera streams: t2r's decode throughput against a plain PyAV loop on the same files.

A LeRobot v3.0 dataset is written with t2r's writer (default 8 episodes x 100
frames of 240x320 RGB, one camera, 30 fps, AV1 via libsvtav1 as LeRobot encodes
by default; ``--codec h264`` for H.264), then decoded four ways, frames/s:

* plain PyAV loop (the peer, the physical limit): open each MP4, decode every
  frame in order, ``to_ndarray("rgb24")``; nothing else.
* t2r episode read: ``LeRobotReader.episode(i).column(cam)`` for every episode:
  seek to the episode's ``from_timestamp``, decode forward, match every frame's
  timestamp within LeRobot's tolerance_s = 1e-4 (what ``read_lerobot_episodes``
  and ``LeRobotSource`` do, once per episode).
* t2r one frame per call: ``decode_frames(file, [t], 1e-4)`` for random frames,
  LeRobot's per-item access pattern with PyAV (seek to the keyframe, decode to t).
* input generator: ``LeRobotInputGenerator`` batches of 32 frames (camera + a
  10-frame action window), TRAIN order, one epoch (every episode's camera
  decoded once), 0 and 2 DataLoader workers: the shared pipeline end to end. The
  generator's automatic worker count is 0 for LeRobot (it starts workers for
  image-decoding TFRecord parsing only); pass ``num_workers`` to decode in workers.

The encode rate of the writer is printed too. On a shared machine the figures are
indicative; run it alone for numbers to record (one intra-op thread).

    .venv/bin/python benchmarks/lerobot_video.py [--episodes 8] [--frames 100]
        [--height 240] [--width 320] [--codec libsvtav1] [--random 200]
"""

from __future__ import annotations

import argparse
import datetime
import itertools
import os
import platform
import tempfile
import time

import av
import numpy as np
import torch

from t2r.data.episodes import Episode
from t2r.data.lerobot import (
    LeRobotInputGenerator,
    LeRobotReader,
    decode_frames,
    write_lerobot_dataset,
)
from t2r.modes import ModeKeys
from t2r.specs import ExtendedTensorSpec, TensorSpecStruct

CAMERA = "observation.images.top"
FPS = 30


def synthetic_episodes(episodes: int, frames: int, height: int, width: int) -> list[Episode]:
    """Moving textured gradients with noise (a camera-like load for the codec)."""
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:height, 0:width]
    out = []
    for e in range(episodes):
        images = np.empty((frames, height, width, 3), np.uint8)
        for t in range(frames):
            base = np.stack(
                [(x + 3 * t + 17 * e) % 256, (y + 2 * t) % 256, ((x ^ y) + t) % 256], axis=-1
            )
            images[t] = np.clip(base + rng.normal(0, 4, base.shape), 0, 255).astype(np.uint8)
        out.append(
            Episode(
                steps={
                    "observation/images/top": images,
                    "observation/state": rng.normal(size=(frames, 6)).astype(np.float32),
                    "action": rng.normal(size=(frames, 6)).astype(np.float32),
                },
                metadata={"task": "benchmark"},
            )
        )
    return out


def plain_pyav(files: list[str]) -> int:
    count = 0
    for path in files:
        with av.open(path) as container:
            stream = container.streams.video[0]
            for frame in container.decode(stream):
                frame.to_ndarray(format="rgb24")
                count += 1
    return count


def t2r_episodes(root: str) -> int:
    reader = LeRobotReader(root)
    count = 0
    for episode in reader.info.episodes:
        count += len(reader.episode(episode.episode_index).column(CAMERA))
    return count


def t2r_random_frames(root: str, samples: int) -> int:
    reader = LeRobotReader(root)
    rng = np.random.default_rng(1)
    for _ in range(samples):
        episode = reader.info.episodes[int(rng.integers(len(reader.info.episodes)))]
        ref = episode.videos[CAMERA]
        t = int(rng.integers(episode.length)) / reader.info.fps
        decode_frames(os.path.join(root, ref.file), [ref.from_timestamp + t], 1e-4)
    return samples


def generator_frames(root: str, batches: int, height: int, width: int, workers: int = 0) -> int:
    deltas = {"action": [i / FPS for i in range(10)]}
    gen = LeRobotInputGenerator(
        root, deltas, batch_size=32, seed=0, shuffle_buffer_size=256, num_workers=workers
    )
    gen.set_feature_specifications(
        TensorSpecStruct(
            image=ExtendedTensorSpec((height, width, 3), torch.uint8, name=CAMERA),
            state=ExtendedTensorSpec((6,), torch.float32, name="observation.state"),
        ),
        TensorSpecStruct(actions=ExtendedTensorSpec((10, 6), torch.float32, name="action")),
    )
    count = 0
    for features, _ in itertools.islice(gen.create_dataset(ModeKeys.TRAIN), batches):
        count += len(features.image)
    return count


def timed(fn: object, *args: object) -> tuple[float, int]:
    start = time.perf_counter()
    count = fn(*args)  # type: ignore[operator]
    return time.perf_counter() - start, int(count)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--episodes", type=int, default=8)
    parser.add_argument("--frames", type=int, default=100)
    parser.add_argument("--height", type=int, default=240)
    parser.add_argument("--width", type=int, default=320)
    parser.add_argument("--codec", default="libsvtav1")
    parser.add_argument("--random", type=int, default=200, help="frames decoded one per call")
    parser.add_argument("--batches", type=int, default=0, help="0: one epoch")
    parser.add_argument("--repeats", type=int, default=3, help="best of this many runs")
    args = parser.parse_args()
    torch.set_num_threads(1)

    total = args.episodes * args.frames
    with tempfile.TemporaryDirectory() as tmp:
        root = os.path.join(tmp, "ds")
        episodes = synthetic_episodes(args.episodes, args.frames, args.height, args.width)
        start = time.perf_counter()
        info = write_lerobot_dataset(root, episodes, FPS, codec=args.codec)
        encode_secs = time.perf_counter() - start
        del episodes
        files = sorted({os.path.join(root, e.videos[CAMERA].file) for e in info.episodes})
        size = sum(os.path.getsize(f) for f in files)
        rows = [
            ("plain PyAV loop (peer)", plain_pyav, (files,)),
            ("t2r episode read", t2r_episodes, (root,)),
            ("t2r one frame per call", t2r_random_frames, (root, args.random)),
            (
                "LeRobotInputGenerator, 0 workers",
                generator_frames,
                (root, args.batches or total // 32, args.height, args.width),
            ),
            (
                "LeRobotInputGenerator, 2 workers",
                generator_frames,
                (root, args.batches or total // 32, args.height, args.width, 2),
            ),
        ]
        results = []
        for name, fn, fn_args in rows:
            best = min((timed(fn, *fn_args) for _ in range(args.repeats)), key=lambda r: r[0])
            results.append((name, best[1] / best[0], best[1]))
        codec = info.raw["features"][CAMERA]["info"]["video.codec"]

    print(
        f"# {datetime.date.today()} {platform.node()} {platform.processor() or platform.machine()}"
        f", torch threads {torch.get_num_threads()}, PyAV {av.__version__}"
    )
    print(
        f"# {args.episodes} episodes x {args.frames} frames, {args.height}x{args.width} RGB, "
        f"codec {codec} ({args.codec}), {len(files)} file(s), {size / total:,.0f} bytes/frame"
    )
    print(f"# write (encode + parquet + stats): {total / encode_secs:,.0f} frames/s")
    print(f"{'row':36s} {'frames/s':>10s} {'frames':>8s} {'vs peer':>8s}")
    peer = results[0][1]
    for name, rate, count in results:
        print(f"{name:36s} {rate:10,.0f} {count:8d} {rate / peer:8.2f}")


if __name__ == "__main__":
    main()
