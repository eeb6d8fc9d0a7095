"""Kill -9 a deterministic training at random points, resume, compare bitwise.

Half the points are after random steps, half at random checkpoint-write events
(between the files of a checkpoint, between a temporary name and its rename,
between publishing and pruning); see tests/train/kill_resume.py. Each killed
run is resumed to the end and its final weights compared with an uninterrupted
run's. The CI version (tests/train/test_kill_resume.py) runs 3 fixed points.

    PYTHONPATH=src .venv/bin/python benchmarks/kill_resume.py --points 20 --seed 0
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import platform
import sys
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    harness = importlib.import_module("tests.train.kill_resume")
    report = importlib.import_module("tests.train.test_kill_resume").report
    points = harness.kill_points(args.points, args.seed)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as root:
        outcomes = harness.kill_and_resume(Path(root), points)
    print(f"# {datetime.date.today()} {platform.node()} {platform.processor() or ''}")
    print(report(outcomes))
    print(f"{time.perf_counter() - start:.0f} s")
    if not all(o.exact for o in outcomes):
        sys.exit(1)


if __name__ == "__main__":
    main()
