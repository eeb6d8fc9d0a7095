"""Fuzzed record files through the strict input pipeline: the outcome table.

Frame damage (bytes flipped, inserted, deleted, cut off), content damage (a
damaged Example framed with valid CRCs) and semantic damage (a well-formed but
wrong feature); see tests/data/fuzz_records.py. Counts crashes, hangs, silent
corruptions and DataErrors that do not name the file and the record's byte
offset; all should be 0. The CI version (tests/data/test_fuzz_records.py) reads
300 files.

    PYTHONPATH=src .venv/bin/python benchmarks/fuzz_records.py --files 1000 --seed 0
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
    parser.add_argument("--files", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    harness = importlib.import_module("tests.data.fuzz_records")
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as root:
        result = harness.fuzz(Path(root), args.files, args.seed)
    elapsed = time.perf_counter() - start
    print(f"# {datetime.date.today()} {platform.node()}: {args.files} files, seed {args.seed}")
    print(f"{'damage':>10} " + " ".join(f"{o:>9}" for o in harness.OUTCOMES))
    for kind in ("frame", "content", "semantic"):
        row = " ".join(f"{result.kinds[f'{kind}/{o}']:>9}" for o in harness.OUTCOMES)
        print(f"{kind:>10} {row}")
    print(f"{'all':>10} " + " ".join(f"{result.counts[o]:>9}" for o in harness.OUTCOMES))
    for outcome, example in result.examples.items():
        print(f"e.g. {outcome}: {example[:200]}")
    print(f"{elapsed:.0f} s")
    if result.failures:
        sys.exit(1)


if __name__ == "__main__":
    main()
