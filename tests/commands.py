"""Running the ``t2r`` command as a user starts it: its own process."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def run_t2r(*args: str, cwd: str | Path, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    """``python -m t2r.cli ARGS`` in `cwd`; fails the test with the end of its stderr
    unless it exits 0. Returns the finished process (stdout for the caller's checks)."""
    result = subprocess.run(
        [sys.executable, "-m", "t2r.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result
