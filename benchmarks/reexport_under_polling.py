"""Re-exporting a version while predictors poll: missing versions, mixed loads, pick-up.

A subprocess (``tests.predictors.reexport_writer``) writes version 1 once,
then version 2 again and again; write k has output bias (k, -k) and records
``metadata['write'] = k``. Meanwhile this process polls, as fast as it can:

* missing: polls at which ``2/t2r_assets.json`` is absent or the listed
  versions are not [1, 2] (the version was mid-replace); "watched" is the
  same check made continuously by a thread (checks / misses);
* dropped back: predictor restores after which it serves version 1;
* fresh loads: ``load_export('2/')`` each poll; mixed = the program's
  weights (its bias) come from another write than the assets it returned;
  load errors = loads that raised (a removed file, a digest mismatch);
* picked up: whether each predictor serves the last write once the writer
  is done (a replaced version is reloaded).

Run it against another checkout with ``PYTHONPATH=/path/to/src``:

    .venv/bin/python benchmarks/reexport_under_polling.py [--writes 100] [--predictors 2]
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import torch

import t2r
from t2r.export import ASSETS_FILENAME, list_versions, load_export
from t2r.predictors import ExportedModelPredictor

REPO_ROOT = Path(__file__).resolve().parents[1]
X = np.zeros((1, 3), np.float32)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--writes", type=int, default=100)
    parser.add_argument("--predictors", type=int, default=2)
    args = parser.parse_args()
    sys.path.insert(0, str(REPO_ROOT))
    from tests.predictors.export_writer import model_for_version

    with torch.no_grad():
        base = float(
            model_for_version(0)
            .model_fn({"x": torch.from_numpy(X)}, None, "infer")
            .export_outputs["inference_output"][0, 0]
        )
    counts = dict.fromkeys(
        ["polls", "missing", "dropped_back", "reloads", "fresh_loads", "mixed", "load_errors"], 0
    )
    with tempfile.TemporaryDirectory() as tmp:
        export_dir = Path(tmp) / "export"
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([os.path.dirname(t2r.__path__[0])])}
        writer = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.predictors.reexport_writer",
                str(export_dir),
                str(args.writes),
            ],
            cwd=REPO_ROOT,
            env=env,
        )
        predictors = [ExportedModelPredictor(export_dir, timeout=0) for _ in range(args.predictors)]
        started = Path(str(export_dir) + ".started")
        while not started.exists():
            if writer.poll() is not None:
                raise SystemExit(f"the writer failed ({writer.returncode})")
            time.sleep(0.01)
        stop = threading.Event()
        watched = [0, 0]

        def watch() -> None:
            assets = export_dir / "2" / ASSETS_FILENAME
            while not stop.is_set():
                watched[0] += 1
                if not assets.is_file():
                    watched[1] += 1

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        start = time.perf_counter()
        last_loaded: list[object] = [None] * len(predictors)
        while True:
            done = writer.poll() is not None
            counts["polls"] += 1
            if not (export_dir / "2" / ASSETS_FILENAME).is_file() or [
                v.version for v in list_versions(export_dir)
            ] != [1, 2]:
                counts["missing"] += 1
            for i, predictor in enumerate(predictors):
                predictor.restore()
                if predictor.model_version != 2:
                    counts["dropped_back"] += 1
                    continue
                export = predictor.export
                if export is not last_loaded[i]:
                    last_loaded[i] = export
                    counts["reloads"] += 1
            try:
                loaded = load_export(export_dir / "2")
                counts["fresh_loads"] += 1
                with torch.inference_mode():
                    out = loaded.program({"x": torch.from_numpy(X)})["inference_output"]
                if round(float(out[0, 0]) - base) != loaded.metadata["write"]:
                    counts["mixed"] += 1
            except Exception:  # counted: removed or mismatched while loading
                counts["load_errors"] += 1
            if done:
                break
        seconds = time.perf_counter() - start
        stop.set()
        watcher.join()
        for predictor in predictors:
            predictor.restore()
        picked_up = sum(p.export.metadata["write"] == args.writes + 1 for p in predictors)
    print(
        f"t2r at {os.path.dirname(t2r.__path__[0])}; {platform.node()}, "
        f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC; "
        f"{args.writes} re-exports of version 2 in {seconds:.1f} s, {args.predictors} predictors"
    )
    print(
        "| polls | missing | watched (checks / missing) | dropped back | predictor reloads | "
        "fresh loads | mixed | load errors | last write picked up |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    print(
        f"| {counts['polls']} | {counts['missing']} | {watched[0]} / {watched[1]} | "
        f"{counts['dropped_back']} | "
        f"{counts['reloads']} | {counts['fresh_loads']} | {counts['mixed']} | "
        f"{counts['load_errors']} | {picked_up}/{len(predictors)} |"
    )


if __name__ == "__main__":
    main()
