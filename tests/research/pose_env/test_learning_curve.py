"""learning_curve.png: markers for short series, a legend of the series that have data."""

from __future__ import annotations

import json

import numpy as np
from PIL import Image

from t2r.research.pose_env import demo
from t2r.research.pose_env.visualize import Curve, draw_learning_curve

SIZE = (900, 560)
PLOT_RIGHT = SIZE[0] - 200  # the legend is right of this


def _pixels(path, color, plot_only=True) -> int:
    with Image.open(path) as image:
        rgb = np.asarray(image.convert("RGB")).astype(int)
    if plot_only:
        rgb = rgb[:, :PLOT_RIGHT]
    return int((np.abs(rgb - np.array(color)).sum(-1) < 10).sum())


def _draw(tmp_path, name, curve):
    path = tmp_path / f"{name}.png"
    draw_learning_curve(path, [curve], size=SIZE)
    return path


def test_short_series_get_markers_long_ones_do_not(tmp_path):
    color = (31, 119, 180)
    few_steps, few_values = [0, 10, 20, 30], [0.5, 0.2, 0.1, 0.05]
    auto = _draw(tmp_path, "auto", Curve("few", few_steps, few_values, color))
    bare = _draw(tmp_path, "bare", Curve("few", few_steps, few_values, color, markers=False))
    assert _pixels(auto, color) > _pixels(bare, color)  # the dots add pixels

    n = 60  # more than MARKERS_UP_TO
    steps, values = list(range(n)), list(np.geomspace(1.0, 0.01, n))
    long_auto = _draw(tmp_path, "long", Curve("many", steps, values, color))
    long_bare = _draw(tmp_path, "long_bare", Curve("many", steps, values, color, markers=False))
    assert _pixels(long_auto, color) == _pixels(long_bare, color)


def test_only_series_with_data_are_in_the_legend(tmp_path):
    path = tmp_path / "curve.png"
    empty_color, full_color = (148, 103, 189), (44, 160, 44)
    draw_learning_curve(
        path,
        [
            Curve("validation: no data", [10, 20], [float("nan"), float("nan")], empty_color),
            Curve("train", [10, 20], [0.3, 0.2], full_color),
        ],
        size=SIZE,
    )
    assert _pixels(path, empty_color, plot_only=False) == 0
    assert _pixels(path, full_color, plot_only=False) > _pixels(path, full_color)  # + legend


def test_demo_curve_of_a_short_run_shows_its_single_training_point(tmp_path):
    model_dir = tmp_path / "model"
    (model_dir / "eval").mkdir(parents=True)
    (model_dir / "metrics.jsonl").write_text(json.dumps({"step": 50, "loss": 0.02}) + "\n")
    (model_dir / "eval" / "metrics.jsonl").write_text("")
    path = demo.draw_learning_curve(
        tmp_path, model_dir, random_error=0.8, final_error=0.1, final_step=50
    )
    assert _pixels(path, (255, 127, 14)) > 0  # the train point is drawn in the plot
    assert _pixels(path, (31, 119, 180), plot_only=False) == 0  # no validation data: no entry
