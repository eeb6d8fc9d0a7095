"""QT-Opt's Bellman targets: r + gamma (1 - done) max_a' Q_target(s', a'), the max by CEM.

`BellmanLabeller` is pure computation on an in-memory batch of transitions
(`t2r.research.qtopt.transitions`): the process around it (reading the
replay, picking up the lagged target export, writing labelled records) is the
Bellman updater's. The max over the next state's actions is T2R's CEM (3
iterations of 64 samples, 10 elites), run for every next state of the batch
at once: each CEM iteration is one ``predict`` call on (B states, 64
candidates) with the critic's `action_batch_size` tiling. Done transitions
take no max (their next state is not even scored).

With ``second_target_predictor`` the max is taken of the minimum of two target
critics at each candidate (QT-Opt's clipped double Q-learning, where the two
targets are lagged by different numbers of steps).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

import numpy as np

from t2r.research.qtopt.actions import ENV_ACTION_SIZE, STATE_FEATURES_IN_ACTION
from t2r.research.qtopt.models import Grasping44CriticModel
from t2r.research.qtopt.policy import CEM_ITERS, CEM_SAMPLES, NUM_ELITES

__all__ = ["BellmanLabeller", "batched_cem_max"]


class _Predictor(Protocol):
    def predict(self, features: Mapping[str, Any]) -> Mapping[str, Any]: ...


def batched_cem_max(
    q_fn: Any,
    batch_size: int,
    action_size: int = ENV_ACTION_SIZE,
    cem_iters: int = CEM_ITERS,
    cem_samples: int = CEM_SAMPLES,
    num_elites: int = NUM_ELITES,
    rng: np.random.Generator | None = None,
    low: float = -1.0,
    high: float = 1.0,
) -> tuple[np.ndarray, np.ndarray]:
    """T2R's CEM (`t2r.policies.CEMPolicy`'s algorithm) for `batch_size` independent problems.

    Per problem: a diagonal normal starting at mean 0, stddev 1; each iteration
    draws `cem_samples` actions, clips them to [low, high], scores all problems'
    candidates in one ``q_fn(samples (B, N, A)) -> (B, N)`` call, and refits the
    normal to the `num_elites` best (stddev with Bessel's correction). Returns
    the last iteration's best ``(actions (B, A), values (B,))``, as the policy
    acts.
    """
    if not 1 <= num_elites <= cem_samples:
        raise ValueError(
            f"batched_cem_max: need 1 <= num_elites <= cem_samples, got {num_elites}, "
            f"{cem_samples}."
        )
    if cem_iters < 1:
        raise ValueError(f"batched_cem_max: cem_iters must be >= 1, got {cem_iters}.")
    rng = rng or np.random.default_rng()
    mean = np.zeros((batch_size, 1, action_size))
    stddev = np.ones((batch_size, 1, action_size))
    rows = np.arange(batch_size)
    samples = np.empty((batch_size, cem_samples, action_size), np.float32)
    values = np.empty((batch_size, cem_samples))
    for _ in range(cem_iters):
        noise = rng.standard_normal((batch_size, cem_samples, action_size))
        samples = np.clip(mean + stddev * noise, low, high).astype(np.float32)
        values = np.asarray(q_fn(samples), dtype=np.float64).reshape(batch_size, cem_samples)
        elite_index = np.argsort(values, axis=1, kind="stable")[:, -num_elites:]
        elites = samples[rows[:, None], elite_index]  # (B, E, A)
        mean = elites.mean(axis=1, keepdims=True)
        stddev = (
            elites.std(axis=1, ddof=1, keepdims=True) if num_elites > 1 else np.zeros_like(mean)
        )
    best = np.argmax(values, axis=1)
    return samples[rows, best], values[rows, best]


def _column(batch: Mapping[str, Any], key: str) -> np.ndarray:
    if key not in batch:
        raise KeyError(
            f"BellmanLabeller: the batch has no {key!r}; it needs the transition records' "
            f"next_state/*, reward and done; got {sorted(batch)}."
        )
    value = batch[key]
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    return np.asarray(value)


class BellmanLabeller:
    """Labels transitions with ``r + gamma * (1 - done) * max_a' Q_target(s', a')``,
    less ``step_penalty`` on transitions that do not end the episode (QT-Opt's reward
    of -0.05 per step before the last), clipped to [0, 1] (the critic is a sigmoid
    trained with a log loss, so its labels are probabilities).

    Args:
      target_predictor: the lagged target critic (e.g. an `ExportedModelPredictor`
        of the lagged export), exported with ``action_batch_size = cem_samples``
        (or None); its ``predict`` returns ``q_predicted``.
      model: the critic, for packing next states and candidate actions into
        features (`Grasping44CriticModel.pack_batch_features`).
      gamma: the discount (QT-Opt's 0.9).
      step_penalty: subtracted from the target of every transition that does not
        end the episode (QT-Opt's 0.05; 0: none).
      mc_lower_bound: a transition's target is at least the discounted return its
        episode went on to get (the same rewards, discount and penalty): what was
        achieved from (s, a) once is a lower bound of what the best continuation
        achieves, in a deterministic task. It carries a success back over a whole
        episode at once, where a Bellman backup moves it one step per target
        update. ``label`` then needs whole episodes in order (as replay files and
        `fitted_q_iteration`'s records hold them).
      mc_mix: the target is ``(1 - mc_mix) * backup + mc_mix * return``: a mixed
        Monte-Carlo update (Bellemare et al., 2016). The return of what the
        collecting policy did next corrects a critic that overvalues going on
        within one relabel, where a backup through an overestimated max moves
        one step per target update; it is pessimistic for exploration data
        (random continuations). Needs whole episodes in order, as above.
      cem_iters, cem_samples, num_elites: T2R's CEM (3, 64, 10).
      seed: seeds CEM's sampling.
      second_target_predictor: optional second target; the max is of the
        minimum of both (clipped double Q).
      max_batch_size: next states per ``predict`` call (bounds memory).
    """

    def __init__(
        self,
        target_predictor: _Predictor,
        model: Grasping44CriticModel,
        gamma: float = 0.9,
        cem_iters: int = CEM_ITERS,
        cem_samples: int = CEM_SAMPLES,
        num_elites: int = NUM_ELITES,
        seed: int | None = None,
        second_target_predictor: _Predictor | None = None,
        max_batch_size: int = 64,
        step_penalty: float = 0.0,
        mc_lower_bound: bool = False,
        mc_mix: float = 0.0,
    ) -> None:
        if not 0.0 <= gamma <= 1.0:
            raise ValueError(f"BellmanLabeller: gamma must be in [0, 1], got {gamma}.")
        if not 0.0 <= mc_mix <= 1.0:
            raise ValueError(f"BellmanLabeller: mc_mix must be in [0, 1], got {mc_mix}.")
        if not 0.0 <= step_penalty <= 1.0:
            raise ValueError(
                f"BellmanLabeller: step_penalty must be in [0, 1], got {step_penalty}."
            )
        if model.action_batch_size not in (None, cem_samples):
            raise ValueError(
                f"BellmanLabeller: the model's action_batch_size is {model.action_batch_size}, "
                f"but CEM scores cem_samples={cem_samples} candidates per state; they must match."
            )
        if max_batch_size < 1:
            raise ValueError(f"BellmanLabeller: max_batch_size must be >= 1, got {max_batch_size}.")
        self.target_predictor = target_predictor
        self.second_target_predictor = second_target_predictor
        self.model = model
        self.gamma = float(gamma)
        self.step_penalty = float(step_penalty)
        self.mc_lower_bound = bool(mc_lower_bound)
        self.mc_mix = float(mc_mix)
        self.cem_iters = cem_iters
        self.cem_samples = cem_samples
        self.num_elites = num_elites
        self.max_batch_size = max_batch_size
        self._rng = np.random.default_rng(seed)

    def _q(self, observations: Mapping[str, np.ndarray], samples: np.ndarray) -> np.ndarray:
        """Q_target(s', a) for samples (B, N, 6) -> (B, N)."""
        features = self.model.pack_batch_features(observations, samples)
        batch, count = samples.shape[:2]
        q = np.asarray(self.target_predictor.predict(features)["q_predicted"]).reshape(batch, count)
        if self.second_target_predictor is not None:
            second = self.second_target_predictor.predict(features)["q_predicted"]
            q = np.minimum(q, np.asarray(second).reshape(batch, count))
        return q

    def max_q(self, next_observations: Mapping[str, np.ndarray]) -> np.ndarray:
        """max_a' Q_target(s', a') by CEM for B next states -> (B,) (and the maximizers
        are what the CEM policy would act with)."""
        count = len(next_observations["image"])
        out = np.empty(count, np.float64)
        for start in range(0, count, self.max_batch_size):
            chunk = {
                k: v[start : start + self.max_batch_size] for k, v in next_observations.items()
            }
            size = len(chunk["image"])
            _, values = batched_cem_max(
                lambda samples, chunk=chunk: self._q(chunk, samples),
                size,
                cem_iters=self.cem_iters,
                cem_samples=self.cem_samples,
                num_elites=self.num_elites,
                rng=self._rng,
            )
            out[start : start + size] = values
        return out

    def returns(self, reward: np.ndarray, done: np.ndarray) -> np.ndarray:
        """The discounted return after each transition of whole episodes in order:
        ``G_t = r_t - step_penalty + gamma * G_{t+1}`` within an episode, ``G = r``
        on its last transition (done)."""
        if reward.size and done[-1] < 0.5:
            raise ValueError(
                "BellmanLabeller: Monte-Carlo returns need whole episodes in order, but the "
                "batch's last transition does not end an episode (done = 0)."
            )
        out = np.empty_like(reward)
        following = 0.0
        for t in range(len(reward) - 1, -1, -1):
            if done[t] >= 0.5:
                following = reward[t]
            else:
                following = reward[t] - self.step_penalty + self.gamma * following
            out[t] = following
        return out

    def label(self, batch: Mapping[str, Any]) -> np.ndarray:
        """Bellman targets for a batch of transitions -> ``target_q`` (B, 1) float32.

        Args:
          batch: ``{record key: (B, ...)}`` as `parse_transitions` returns (numpy
            or torch): ``reward`` (B, 1), ``done`` (B, 1), ``next_state/image``
            (B, S, S, 3) uint8, ``next_state/gripper_closed``,
            ``next_state/height_to_bottom`` (B, 1).
        """
        reward = _column(batch, "reward").reshape(-1).astype(np.float64)
        done = _column(batch, "done").reshape(-1).astype(np.float64)
        if reward.shape != done.shape:
            raise ValueError(
                f"BellmanLabeller: reward has {reward.shape[0]} values but done {done.shape[0]}."
            )
        target = reward.copy()
        live = np.flatnonzero(done < 0.5)
        if live.size:
            next_observations = {
                "image": _column(batch, "next_state/image")[live],
                **{
                    name: _column(batch, f"next_state/{name}").reshape(-1, 1)[live]
                    for name in STATE_FEATURES_IN_ACTION
                },
            }
            target[live] += self.gamma * self.max_q(next_observations) - self.step_penalty
        if self.mc_lower_bound or self.mc_mix:
            returns = self.returns(reward, done)
            if self.mc_lower_bound:
                target = np.maximum(target, returns)
            target = (1.0 - self.mc_mix) * target + self.mc_mix * returns
        return np.clip(target, 0.0, 1.0).astype(np.float32).reshape(-1, 1)
