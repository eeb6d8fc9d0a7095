"""Re-exporting a version under polling predictors: never missing, never mixed, picked up."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from t2r.export import ASSETS_FILENAME, list_versions
from t2r.predictors import ExportedModelPredictor

REPO_ROOT = Path(__file__).resolve().parents[2]
X = np.zeros((1, 3), np.float32)


def run_reexport(
    tmp_path: Path, writes: int, predictors: int = 2, polls: int | None = None
) -> dict[str, int]:
    """Counts what polling predictors saw while a subprocess re-exported version 2.

    With `polls`, the writer is stopped after that many polls (or when it
    has made `writes` writes), so that the polls interleave with writes.
    """
    export_dir = tmp_path / "export"
    writer = subprocess.Popen(
        [sys.executable, "-m", "tests.predictors.reexport_writer", str(export_dir), str(writes)],
        cwd=REPO_ROOT,
        stderr=subprocess.PIPE,
        text=True,
    )
    polling = [ExportedModelPredictor(export_dir, timeout=0) for _ in range(predictors)]
    counts = {"polls": 0, "missing": 0, "dropped_back": 0, "mixed": 0, "loads": 0}
    loaded_writes: set[int] = set()
    last_identity = [""] * predictors
    started = Path(str(export_dir) + ".started")
    deadline = time.monotonic() + 300
    try:
        while not started.exists():
            assert writer.poll() is None, writer.stderr.read() if writer.stderr else ""
            assert time.monotonic() < deadline
            time.sleep(0.01)
        while True:
            if polls is not None and counts["polls"] >= polls:
                Path(str(export_dir) + ".stop").touch()
            done = writer.poll() is not None
            counts["polls"] += 1
            if not (export_dir / "2" / ASSETS_FILENAME).is_file():
                counts["missing"] += 1
            if [v.version for v in list_versions(export_dir)] != [1, 2]:
                counts["missing"] += 1
            for i, predictor in enumerate(polling):
                assert predictor.restore()
                if predictor.model_version != 2:
                    counts["dropped_back"] += 1
                    continue
                export = predictor.export
                if export.identity != last_identity[i]:
                    last_identity[i] = export.identity
                    counts["loads"] += 1
                write = export.metadata["write"]
                bias = predictor.predict({"x": X})["inference_output"]
                ran = round(float(bias[0, 0] - _zero_input_output(predictor, 0)))
                if ran != write:
                    counts["mixed"] += 1
                loaded_writes.add(write)
            if done:
                break
        assert writer.returncode == 0, writer.stderr.read() if writer.stderr else ""
    finally:
        if writer.poll() is None:
            writer.kill()
            writer.wait()
    last = int(Path(str(export_dir) + ".last").read_text())
    for predictor in polling:
        assert predictor.restore()
    counts["final_write_loaded"] = int(all(p.export.metadata["write"] == last for p in polling))
    counts["distinct_writes_loaded"] = len(loaded_writes)
    counts["writes"] = last - 1
    return counts


_BASE: dict[int, float] = {}


def _zero_input_output(predictor: ExportedModelPredictor, column: int) -> float:
    """The output of the bias-free network at X (the same for every write)."""
    if column not in _BASE:
        import torch

        from .export_writer import model_for_version

        model = model_for_version(0)
        with torch.no_grad():
            out = model.model_fn({"x": torch.from_numpy(X)}, None, "infer")
        _BASE[column] = float(out.export_outputs["inference_output"][0, column])
    return _BASE[column]


@pytest.mark.slow
def test_reexport_under_polling_predictors(tmp_path):
    # 300 polls by 3 predictors interleaved with the writes. (A 20-poll, 2-predictor
    # run of the same code, with these same assertions, was a separate test: one
    # process start and a few seconds for nothing this run does not check.)
    counts = run_reexport(tmp_path, writes=2000, predictors=3, polls=300)
    print(counts)
    assert counts["polls"] >= 20 and counts["writes"] >= 2, counts
    assert counts["missing"] == 0, counts
    assert counts["dropped_back"] == 0, counts
    assert counts["mixed"] == 0, counts
    assert counts["final_write_loaded"] == 1, counts  # a replaced version is picked up
    assert counts["distinct_writes_loaded"] >= 2, counts
