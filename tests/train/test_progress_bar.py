"""The training progress bar: printed once, its loss updated every log window."""

from __future__ import annotations

import contextlib
import logging
import re
import sys

from t2r.train import read_metrics, seed_everything, train_eval_model

from .models import SeededInput, TinyRegression


def _rendered_lines(text: str) -> list[str]:
    """What a terminal shows: per line, the text after its last carriage return."""
    return [line.rsplit("\r", 1)[-1].rstrip() for line in text.split("\n")]


@contextlib.contextmanager
def _console_logging():
    """A root StreamHandler on (captured) stderr at INFO, as logging.basicConfig makes."""
    root = logging.getLogger()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    previous = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        yield
    finally:
        root.removeHandler(handler)
        root.setLevel(previous)


def test_progress_bar_is_printed_once_with_the_loss_of_each_window(tmp_path, capsys):
    seed_everything(0)
    with _console_logging():
        train_eval_model(
            TinyRegression(),
            SeededInput(),
            SeededInput(),
            max_train_steps=30,
            model_dir=tmp_path,
            save_checkpoints_steps=10,
            eval_steps=2,
            log_every_n_steps=5,
            show_progress=True,
        )
    err = capsys.readouterr().err
    lines = _rendered_lines(err)
    bars = [line for line in lines if line.startswith("train:")]
    assert len(bars) == 1, "\n".join(lines)
    assert "30/30" in bars[0]
    assert sum("Eval at step" in line for line in lines) == 3  # log lines on their own lines
    assert all(line.startswith(("INFO", "train:")) or not line for line in lines)

    shown = re.findall(r"loss=([0-9.e+-]+)\]", err)
    distinct = [v for i, v in enumerate(shown) if i == 0 or shown[i - 1] != v]
    logged = [f"{r['loss']:.4g}" for r in read_metrics(tmp_path) if "loss" in r]
    assert len(logged) == 6
    assert distinct == logged  # every window's loss appeared on the bar, in order
