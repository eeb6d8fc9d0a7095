"""QT-Opt's policy: T2R's CEM over the critic, acting with the grasp env's 6-vector."""

from __future__ import annotations

from t2r.policies import CEMPolicy
from t2r.predictors import AbstractPredictor
from t2r.research.qtopt.actions import ENV_ACTION_SIZE
from t2r.research.qtopt.models import Grasping44CriticModel

__all__ = ["CEM_ITERS", "CEM_SAMPLES", "NUM_ELITES", "qtopt_cem_policy"]

#: T2R's CEMPolicy defaults (``policies/policies.py``), which QT-Opt used.
CEM_ITERS = 3
CEM_SAMPLES = 64
NUM_ELITES = 10


def qtopt_cem_policy(
    predictor: AbstractPredictor | None,
    model: Grasping44CriticModel,
    seed: int | None = None,
    cem_iters: int = CEM_ITERS,
    cem_samples: int = CEM_SAMPLES,
    num_elites: int = NUM_ELITES,
) -> CEMPolicy:
    """A `CEMPolicy` that maximizes `model`'s Q over the env's 6-vector actions.

    Each of `cem_iters` iterations draws `cem_samples` 6-vectors from a diagonal
    normal (T2R's start: mean 0, stddev 1), clips them to the action space
    [-1, 1] (T2R sampled unbounded; the env clips anyway, and clipped samples
    are what the critic scores), scores them in one ``predictor.predict`` call
    on ``model.pack_features(obs, None, timestep, samples)``, and refits the
    normal to the `num_elites` best. ``sample_action(obs, explore_prob)``
    returns ``(action (6,) float32, None)``: the best sample of the last
    iteration.

    Args:
      predictor: the critic's predictor (an `ExportedModelPredictor` of the
        newest export in the loop); may be set later on the policy.
      model: the critic (for packing); its `action_batch_size` must be None
        or `cem_samples`, the one the export was made with.
      seed: seeds the sampling.
      cem_iters, cem_samples, num_elites: T2R's 3, 64, 10 by default.
    """
    if model.action_batch_size not in (None, cem_samples):
        raise ValueError(
            f"qtopt_cem_policy: the model's action_batch_size is {model.action_batch_size}, "
            f"but CEM scores cem_samples={cem_samples} candidates per call; they must match."
        )
    return CEMPolicy(
        t2r_model=model,
        action_size=ENV_ACTION_SIZE,
        cem_iters=cem_iters,
        cem_samples=cem_samples,
        num_elites=num_elites,
        predictor=predictor,
        action_low=-1.0,
        action_high=1.0,
        initial_mean=0.0,
        initial_stddev=1.0,
        seed=seed,
    )
