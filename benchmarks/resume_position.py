"""Time to restore an input position on resume: skipping by making batches vs seeking.

A resumed run must start its input at the first batch it had not consumed.
Before: the pipeline made (read, parsed, decoded) and dropped every consumed
batch, so the cost grew with the position. Now ``BatchIterable.iter_from``
skips whole epochs from the units' record counts (TFRecord: a walk over the
record headers, once per file) and reads, without parsing, only the records of
the current epoch before the position. This script writes pose_env-like records
(64x64 JPEG + 5 floats) and prints, for a few positions, the seconds to the
first batch both ways, measured in one run (the same batches come out).

    python benchmarks/resume_position.py                  # 2,048 records in 8 files
    python benchmarks/resume_position.py --records 8192 --positions 100,1000,10000
"""

from __future__ import annotations

import argparse
import datetime
import itertools
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from t2r.data import DefaultRecordInputGenerator, TFRecordWriter, create_serialize_tf_example_fn
from t2r.modes import ModeKeys
from t2r.specs import ExtendedTensorSpec, TensorSpecStruct

FEATURES = TensorSpecStruct(
    [
        ("state", ExtendedTensorSpec((64, 64, 3), torch.uint8, "state/image", data_format="jpeg")),
        ("pose", ExtendedTensorSpec((2,), torch.float32, "pose")),
    ]
)
LABELS = TensorSpecStruct([("target_pose", ExtendedTensorSpec((3,), torch.float32, "target"))])


def write(directory: Path, records: int, files: int) -> str:
    rng = np.random.default_rng(0)
    serialize = create_serialize_tf_example_fn(FEATURES, LABELS)
    per_file = -(-records // files)
    for f in range(files):
        with TFRecordWriter(directory / f"data-{f:03d}.tfrecord") as writer:
            for _ in range(per_file):
                image = rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)
                image[16:48, 16:48] = rng.integers(0, 255, 3, dtype=np.uint8)
                features = {"state": image, "pose": rng.random(2, np.float32)}
                writer.write(serialize(features, {"target_pose": rng.random(3, np.float32)}))
    return str(directory / "data-*.tfrecord")


def first_batch(
    pattern: str, position: int, seek: bool, batch_size: int, workers: int
) -> tuple[float, list[float]]:
    gen = DefaultRecordInputGenerator(pattern, batch_size, seed=0, num_workers=workers)
    gen.set_feature_specifications(FEATURES, LABELS)
    dataset = gen.create_dataset(ModeKeys.TRAIN)
    start = time.perf_counter()
    if seek:
        iterator = dataset.iter_from(position)
    else:  # what resume did before: make and drop the consumed batches
        iterator = iter(dataset)
        for _ in itertools.islice(iterator, position):
            pass
    features, _ = next(iterator)
    return time.perf_counter() - start, features["pose"][:, 0].tolist()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=2048)
    parser.add_argument("--files", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument("--positions", default="10,100,1000")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        pattern = write(Path(tmp), args.records, args.files)
        print(
            f"{datetime.date.today()}, {platform.processor() or platform.machine()}, "
            f"{os.cpu_count()} cores, torch {torch.__version__}; {args.records} records in "
            f"{args.files} files, batch {args.batch_size}, {args.workers} workers "
            f"(an epoch is {args.records // args.batch_size} batches)\n"
        )
        print("| position (batches) | make and drop s | seek s | speed-up |")
        print("|---|---|---|---|")
        for position in [int(p) for p in args.positions.split(",")]:
            slow, slow_batch = first_batch(pattern, position, False, args.batch_size, args.workers)
            fast, fast_batch = first_batch(pattern, position, True, args.batch_size, args.workers)
            assert slow_batch == fast_batch, "the resumed stream differs"
            print(f"| {position:,} | {slow:.2f} | {fast:.3f} | {slow / fast:.0f}x |")


if __name__ == "__main__":
    main()
