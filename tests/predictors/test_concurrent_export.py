"""A predictor polling while writers export, one killed mid-write, loads only complete versions."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from t2r.atomic import is_temporary_path
from t2r.predictors import ExportedModelPredictor

from .export_writer import model_for_version

REPO_ROOT = Path(__file__).resolve().parents[2]
X = np.random.default_rng(0).random((4, 3), dtype=np.float32)


def _writer(export_dir: Path, first: int, last: int, hang_at: int | None = None):
    args = [
        sys.executable,
        "-m",
        "tests.predictors.export_writer",
        str(export_dir),
        str(first),
        str(last),
    ]
    if hang_at is not None:
        args.append(str(hang_at))
    return subprocess.Popen(args, cwd=REPO_ROOT, stderr=subprocess.PIPE, text=True)


def _expected(version: int) -> np.ndarray:
    model = model_for_version(version)
    with torch.no_grad():
        return (
            model.model_fn({"x": torch.from_numpy(X)}, None, "infer")
            .export_outputs["inference_output"]
            .numpy()
        )


@pytest.mark.slow
def test_polling_predictor_only_loads_complete_versions(tmp_path):
    export_dir = tmp_path / "export"
    predictor = ExportedModelPredictor(export_dir, timeout=0, wait_for_export_dir=True)
    seen: list[int] = []

    def poll() -> None:
        if predictor.restore():  # never raises, whatever the writers are doing
            version = predictor.model_version
            got = predictor.predict({"x": X})["inference_output"]
            np.testing.assert_allclose(got, _expected(version), atol=1e-5)  # its own weights
            if not seen or seen[-1] != version:
                seen.append(version)

    killed = _writer(export_dir, 1, 4, hang_at=4)
    deadline = time.monotonic() + 120
    while not Path(str(export_dir) + ".hanging").exists():
        assert killed.poll() is None, killed.stderr.read() if killed.stderr else ""
        assert time.monotonic() < deadline
        poll()
        time.sleep(0.01)
    poll()
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    leftovers = [p.name for p in export_dir.iterdir() if is_temporary_path(p)]
    assert len(leftovers) == 1 and leftovers[0].startswith(".4.tmp-")  # the half-written version
    assert sorted(p.name for p in export_dir.iterdir() if not is_temporary_path(p)) == [
        "1",
        "2",
        "3",
    ]
    poll()
    assert seen[-1] == 3

    writer = _writer(export_dir, 5, 6)
    while seen[-1] != 6:
        assert time.monotonic() < deadline
        poll()
        time.sleep(0.01)
    assert writer.wait(timeout=60) == 0, writer.stderr.read() if writer.stderr else ""
    assert 4 not in seen
    assert seen == sorted(seen) and set(seen) <= {1, 2, 3, 5, 6}
