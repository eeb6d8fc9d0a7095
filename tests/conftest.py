"""Shared test set-up: where the real-data fixtures live (see tests/needs.py)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.needs import needs_fixture

# Record generators left to choose their DataLoader workers start one per CPU when
# they decode images (t2r.data.input_generators.auto_num_workers). The suite runs
# them in-process unless a test asks for workers (tests/data/test_auto_workers.py
# unsets this): fewer forks on a shared machine, the orders the tests were written
# for. Set T2R_NUM_WORKERS=auto to run the suite with the automatic choice.
os.environ.setdefault("T2R_NUM_WORKERS", "0")

# One torch intra-op thread in this process and in every process the suite starts
# (training and CLI subprocesses, torchrun ranks, collectors, Ray actors inherit the
# environment; `t2r collect` and `t2r demo` read T2R_NUM_THREADS). The tests' models
# are tiny: a second thread adds synchronisation, not speed, and processes running
# side by side (two torchrun ranks, collectors, a writer and its pollers) each
# spin-waiting a thread per CPU starve one another on a small machine. Set
# OMP_NUM_THREADS (and T2R_NUM_THREADS) to run the suite with other counts.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("T2R_NUM_THREADS", os.environ["OMP_NUM_THREADS"])


def pytest_configure(config: pytest.Config) -> None:
    import torch

    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))


@pytest.fixture
def fixtures_dir() -> Path:
    """The fixtures directory. Skips when absent, except under CI, where it fails:
    CI always has shared/ beside the clone, so a miss there is a real problem."""
    return needs_fixture()
