"""Scalar summaries: TensorBoard event files plus a JSON-lines file beside them."""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch


def _to_float(value: Any) -> float:
    if isinstance(value, torch.Tensor):
        return float(value.detach().float().mean().item())
    return float(value)


class MetricsWriter:
    """Writes scalars for one run directory (e.g. ``model_dir`` or ``model_dir/eval``).

    TensorBoard reads the event files; ``metrics.jsonl`` (one JSON object per
    call: ``{"step": ..., "time": ..., name: value}``) is for scripts and tests.
    """

    def __init__(self, logdir: str | os.PathLike[str], jsonl_name: str = "metrics.jsonl") -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.logdir = Path(logdir)
        self.logdir.mkdir(parents=True, exist_ok=True)
        self._tb = SummaryWriter(str(self.logdir))
        self._jsonl = open(self.logdir / jsonl_name, "a", encoding="utf-8")

    def write(self, step: int, scalars: Mapping[str, Any]) -> dict[str, float]:
        values = {name: _to_float(v) for name, v in scalars.items()}
        for name, value in values.items():
            self._tb.add_scalar(name, value, step)
        record: dict[str, Any] = {"step": step, "time": time.time()}
        record.update({k: (v if math.isfinite(v) else str(v)) for k, v in values.items()})
        self._jsonl.write(json.dumps(record) + "\n")
        self._jsonl.flush()
        self._tb.flush()
        return values

    def close(self) -> None:
        self._tb.close()
        self._jsonl.close()


def read_metrics(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The records of a ``metrics.jsonl`` file (or of the one in a directory)."""
    path = Path(path)
    if path.is_dir():
        path = path / "metrics.jsonl"
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]
