"""Feature statistics as LeRobot stores them (``meta/stats.json``, ``stats/...`` columns).

Per feature: ``min``, ``max``, ``mean``, ``std``, ``count`` and the quantiles
``q01``, ``q10``, ``q50``, ``q90``, ``q99``. Numeric features reduce over frames
(shape of one frame; scalars ``(1,)``); cameras reduce over frames and pixels per
channel, scaled to [0, 1], shape ``(3, 1, 1)``, as LeRobot's
``compute_episode_stats``, and like it on a sample: evenly spaced frames (all up to
100, then ``n ** 0.75`` up to 10,000; ``count`` is the frames sampled), each
strided down to about 150 pixels on its long side when that side is 300 or more.
Per episode the quantiles are exact (LeRobot estimates them with histograms);
over the dataset they combine as LeRobot's
``aggregate_feature_stats`` does: means and variances by count, min of the lower
quantiles (q01..q50) and max of the upper ones (q90, q99), a conservative envelope.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

__all__ = ["QUANTILES", "aggregate_stats", "feature_stats", "stats_to_json"]

QUANTILES = (0.01, 0.10, 0.50, 0.90, 0.99)

Stats = dict[str, np.ndarray]


def _quantile_key(q: float) -> str:
    return f"q{round(q * 100):02d}"


def sample_indices(length: int) -> np.ndarray:
    """The frames LeRobot samples for camera stats (``sample_indices``)."""
    count = length if length < 100 else max(100, min(int(length**0.75), 10_000))
    return np.round(np.linspace(0, length - 1, count)).astype(int)


def _camera_sample(frames: np.ndarray) -> np.ndarray:
    """LeRobot's sample of ``(T, H, W, C)`` frames: sampled in time, strided in space."""
    sample = frames[sample_indices(len(frames))]
    height, width = sample.shape[1:3]
    if max(height, width) >= 300:
        stride = int(max(height, width) / 150)
        sample = sample[:, ::stride, ::stride]
    return sample


def feature_stats(values: np.ndarray, camera: bool) -> Stats:
    """Stats of one episode's values ``(T, ...)`` of one feature."""
    array = np.asarray(values)
    if camera:  # (T, H, W, C) uint8 -> per channel, in [0, 1]
        array = _camera_sample(array)
        # (C, pixels): each channel contiguous, so the reductions run along memory.
        data = np.ascontiguousarray(array.reshape(-1, array.shape[-1]).T, np.float64) / 255.0
        shape: tuple[int, ...] = (array.shape[-1], 1, 1)
    else:
        data = np.ascontiguousarray(array.reshape(array.shape[0], -1).T, np.float64)
        shape = array.shape[1:] or (1,)
    mean = data.mean(axis=1)
    out: Stats = {
        "min": data.min(axis=1).reshape(shape),
        "max": data.max(axis=1).reshape(shape),
        "mean": mean.reshape(shape),
        "std": np.sqrt(np.mean(np.square(data - mean[:, None]), axis=1)).reshape(shape),
        "count": np.array([array.shape[0]], np.int64),
    }
    quantiles = np.quantile(data, QUANTILES, axis=1)
    for q, value in zip(QUANTILES, quantiles):
        out[_quantile_key(q)] = value.reshape(shape)
    return out


def aggregate_stats(per_episode: Sequence[Mapping[str, Stats]]) -> dict[str, Stats]:
    """The dataset's stats from its episodes' (LeRobot's ``aggregate_stats``)."""
    keys: list[str] = []
    for stats in per_episode:
        keys.extend(k for k in stats if k not in keys)
    out: dict[str, Stats] = {}
    for key in keys:
        items = [s[key] for s in per_episode if key in s]
        counts = np.array([float(s["count"][0]) for s in items])
        total = counts.sum()
        means = np.stack([s["mean"] for s in items])
        weights = (counts / total).reshape(-1, *([1] * (means.ndim - 1)))
        mean = (means * weights).sum(axis=0)
        variances = np.stack([s["std"] ** 2 for s in items])
        variance = ((variances + (means - mean) ** 2) * weights).sum(axis=0)
        agg: Stats = {
            "min": np.min(np.stack([s["min"] for s in items]), axis=0),
            "max": np.max(np.stack([s["max"] for s in items]), axis=0),
            "mean": mean,
            "std": np.sqrt(variance),
            "count": np.array([int(total)], np.int64),
        }
        for q in QUANTILES:
            name = _quantile_key(q)
            stacked = np.stack([s[name] for s in items])
            agg[name] = stacked.min(axis=0) if q <= 0.5 else stacked.max(axis=0)
        out[key] = agg
    return out


def stats_to_json(stats: Mapping[str, Mapping[str, np.ndarray]]) -> dict[str, Any]:
    return {key: {k: np.asarray(v).tolist() for k, v in s.items()} for key, s in stats.items()}
