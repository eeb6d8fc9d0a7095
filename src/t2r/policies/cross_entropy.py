"""The cross-entropy method (CEM) for continuous maximization (T2R's utils/cross_entropy)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

Samples = np.ndarray | Mapping[str, np.ndarray]


def cross_entropy_method(
    sample_fn: Callable[..., Samples],
    objective_fn: Callable[[Any], Any],
    update_fn: Callable[[dict[str, Any], Any], dict[str, Any]],
    initial_params: dict[str, Any],
    num_elites: int,
    num_iterations: int = 1,
    threshold_to_terminate: float | None = None,
) -> tuple[Samples, np.ndarray, dict[str, Any]]:
    """Maximizes `objective_fn` by refitting a sampling distribution to its elites.

    Each iteration draws ``samples = sample_fn(**params)`` (an (N, ...) array,
    or a dict of them sharing N), scores them with ``objective_fn(samples)``
    (N values), and refits ``params = update_fn(params, elites)`` to the
    `num_elites` best samples.

    Args:
      sample_fn: ``**params -> samples``.
      objective_fn: ``samples -> (N,)`` values to maximize.
      update_fn: ``(params, elite samples) -> new params``.
      initial_params: the first sampling parameters.
      num_elites: how many of the best samples refit the distribution.
      num_iterations: iterations to run.
      threshold_to_terminate: stop early once a value exceeds it.

    Returns:
      ``(samples, values, params)`` of the last iteration: its samples, their
      values as an (N,) array, and the parameters fitted to its elites.
    """
    if num_elites < 1:
        raise ValueError(f"num_elites must be >= 1, got {num_elites}.")
    if num_iterations < 1:
        raise ValueError(f"num_iterations must be >= 1, got {num_iterations}.")
    params = dict(initial_params)
    samples: Samples = np.empty(0)
    values = np.empty(0)
    for _ in range(num_iterations):
        samples = sample_fn(**params)
        values = np.asarray(objective_fn(samples), dtype=np.float64).reshape(-1)
        count = len(next(iter(samples.values()))) if isinstance(samples, Mapping) else len(samples)
        if values.shape[0] != count:
            raise ValueError(f"objective_fn returned {values.shape[0]} values for {count} samples.")
        elite_index = np.argsort(values, kind="stable")[-num_elites:]
        if isinstance(samples, Mapping):
            elites: Samples = {k: np.asarray(v)[elite_index] for k, v in samples.items()}
        else:
            elites = np.asarray(samples)[elite_index]
        params = update_fn(params, elites)
        if threshold_to_terminate is not None and values.max() > threshold_to_terminate:
            break
    return samples, values, params


def normal_cross_entropy_method(
    objective_fn: Callable[[np.ndarray], Any],
    mean: Any,
    stddev: Any,
    num_samples: int,
    num_elites: int,
    num_iterations: int = 1,
    rng: np.random.Generator | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """CEM with a diagonal normal; returns the final ``(mean, stddev)``."""
    rng = rng or np.random.default_rng()
    size = np.broadcast(np.asarray(mean), np.asarray(stddev)).size

    def sample_fn(mean: Any, stddev: Any) -> np.ndarray:
        return mean + stddev * rng.standard_normal((num_samples, size))

    _, _, params = cross_entropy_method(
        sample_fn,
        objective_fn,
        normal_update_fn,
        {"mean": mean, "stddev": stddev},
        num_elites,
        num_iterations,
    )
    return params["mean"], params["stddev"]


def normal_update_fn(params: dict[str, Any], elite_samples: Samples) -> dict[str, Any]:
    """Fits a diagonal normal to the elites (stddev with Bessel's correction)."""
    del params
    elites = np.asarray(elite_samples)
    stddev = np.std(elites, axis=0, ddof=1) if len(elites) > 1 else np.zeros(elites.shape[1:])
    return {"mean": np.mean(elites, axis=0), "stddev": stddev}


# Tensor2Robot's names.
CrossEntropyMethod = cross_entropy_method
NormalCrossEntropyMethod = normal_cross_entropy_method
