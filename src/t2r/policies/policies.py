"""Policies: numpy observations -> actions through a predictor (Tensor2Robot's policies.py).

A policy turns what a robot or simulator observes (`state`, an optional
`context`, the `timestep`) into features with the model's ``pack_features``
(or a `pack_features_fn`), asks its predictor, and post-processes the result:
the first row of a regression output, the CEM argmax of a critic, plus
exploration noise. The predictor decides where the model comes from (an
export, a checkpoint, an ensemble); ``restore()`` picks up newer versions.
"""

from __future__ import annotations

import abc
import logging
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from t2r import network_state
from t2r.policies.cross_entropy import cross_entropy_method, normal_update_fn
from t2r.predictors import AbstractPredictor

logger = logging.getLogger(__name__)

PackFeaturesFn = Callable[..., Mapping[str, Any]]


class Policy(abc.ABC):
    """Base policy: owns a predictor and exposes T2R's policy interface.

    Subclasses implement `select_action` (T2R code that overrides
    `SelectAction` keeps working: it becomes `select_action`).

    Args:
      predictor: where predictions come from; None for policies that need none.
    """

    def __init__(self, predictor: AbstractPredictor | None = None) -> None:
        self._predictor = predictor

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # Ported T2R policies override SelectAction; route select_action to it.
        if "SelectAction" in cls.__dict__ and "select_action" not in cls.__dict__:
            cls.select_action = cls.__dict__["SelectAction"]  # type: ignore[method-assign]

    @property
    def predictor(self) -> AbstractPredictor | None:
        return self._predictor

    def _require_predictor(self) -> AbstractPredictor:
        if self._predictor is None:
            raise ValueError(f"{type(self).__name__} needs a predictor; got predictor=None.")
        return self._predictor

    @abc.abstractmethod
    def select_action(self, state: Any, context: Any = None, timestep: int | None = None) -> Any:
        """The action for `state` (must not modify `state` or `context`).

        Args:
          state: the observation (whatever the model's ``pack_features`` takes).
          context: extra information (e.g. a goal or the previous episode), or None.
          timestep: the 0-based step in the episode, or None.
        """

    def SelectAction(self, state: Any, context: Any = None, timestep: int | None = None) -> Any:
        """Tensor2Robot's name for `select_action`."""
        return self.select_action(state, context, timestep)

    def reset(self) -> None:  # noqa: B027 - optional, as in Tensor2Robot
        """Starts a new episode."""

    def init_randomly(self) -> None:
        """Uses randomly initialized model weights (where the predictor supports it)."""
        if self._predictor is not None:
            self._predictor.init_randomly()

    def restore(self) -> bool:
        """Loads the newest model into the predictor; True when one is loaded."""
        if self._predictor is not None:
            return bool(self._predictor.restore())
        return True

    @property
    def model_path(self) -> str:
        if self._predictor is not None:
            return self._predictor.model_path
        return "No model path defined."

    @property
    def global_step(self) -> int:
        """The global step the model in use was saved at."""
        if self._predictor is not None:
            return self._predictor.global_step
        return 0

    def sample_action(self, obs: Any, explore_prob: float) -> tuple[Any, Any]:
        """``(action, debug)`` for dql_grasping-style ``run_env`` loops.

        `explore_prob` is ignored (exploration is the policy's own business).
        """
        del explore_prob
        return self.select_action(obs, None, None), None


class _PackingPolicy(Policy):
    """A policy that packs observations into features with a model or a function."""

    def __init__(
        self,
        t2r_model: Any = None,
        predictor: AbstractPredictor | None = None,
        pack_features_fn: PackFeaturesFn | None = None,
    ) -> None:
        super().__init__(predictor)
        self._t2r_model = t2r_model
        self._pack_features_fn = pack_features_fn
        self._network_state: dict[str, np.ndarray] | None = None

    @property
    def network_state(self) -> dict[str, np.ndarray] | None:
        """What the next `predict` feeds as the network state (None: the initial state)."""
        return self._network_state

    def reset(self) -> None:
        """Starts a new episode: a stateful model restarts from its initial state."""
        self._network_state = None

    def predict(self, features: Mapping[str, Any]) -> dict[str, np.ndarray]:
        """``predictor.predict(features)``, threading a stateful model's network state.

        For a model with a network state (`t2r.network_state`), the state is
        added to `features` (the predictor's initial state after `reset`), and
        the ``next_network_state/...`` outputs are kept for the next call and
        removed from the returned outputs. Stateless models: `predict` as is.
        """
        predictor = self._require_predictor()
        initial = predictor.initial_network_state()
        if not initial:
            return predictor.predict(features)
        state = self._network_state
        if state is None or state.keys() != initial.keys():
            state = initial
        outputs = predictor.predict({**features, **state})
        self._network_state = {
            name: outputs.pop(network_state.output_name(name)) for name in initial
        }
        return outputs

    def pack_features(self, *policy_inputs: Any) -> Mapping[str, Any]:
        """`pack_features_fn(*inputs)`, else ``t2r_model.pack_features(*inputs)``.

        Without either, the state must already be the feature dict.
        """
        if self._pack_features_fn is not None:
            return self._pack_features_fn(*policy_inputs)
        if self._t2r_model is not None:
            return self._t2r_model.pack_features(*policy_inputs)
        state = policy_inputs[0]
        if not isinstance(state, Mapping):
            raise ValueError(
                f"{type(self).__name__} has neither a t2r_model nor a pack_features_fn, so the "
                f"state must be a feature dict; got {type(state).__name__}."
            )
        return state


class RegressionPolicy(_PackingPolicy):
    """Returns the model's regressed action: ``predict(pack_features(...))[output_key][0]``.

    Args:
      t2r_model: a model whose ``pack_features(state, context, timestep)``
        builds the features (it does not run: the predictor does).
      predictor: e.g. an `ExportedModelPredictor`.
      pack_features_fn: used instead of ``t2r_model.pack_features``.
      output_key: the export output holding the action.
    """

    def __init__(
        self,
        t2r_model: Any = None,
        predictor: AbstractPredictor | None = None,
        pack_features_fn: PackFeaturesFn | None = None,
        output_key: str = "inference_output",
    ) -> None:
        super().__init__(t2r_model, predictor, pack_features_fn)
        self._output_key = output_key

    def predict_action(self, state: Any, context: Any, timestep: int | None) -> np.ndarray:
        """The model's action for the first (only) example."""
        features = self.pack_features(state, context, timestep)
        predictions = self.predict(features)
        return _prediction(self, predictions, self._output_key, "output_key")[0]

    def select_action(self, state: Any, context: Any = None, timestep: int | None = None) -> Any:
        return self.predict_action(state, context, timestep)


class OUExploreRegressionPolicy(RegressionPolicy):
    """A regression policy plus Ornstein-Uhlenbeck action noise (reset per episode).

    ``x += theta * (mu - x) + sigma * N(0, 1)`` each step, with mu = 0.

    Args:
      action_size: dimensions of the action.
      theta, sigma: the OU process's parameters.
      use_noise: False turns the noise off.
      seed: seeds the noise.
      **kwargs: see `RegressionPolicy`.
    """

    def __init__(
        self,
        t2r_model: Any = None,
        action_size: int = 2,
        theta: float = 0.2,
        sigma: float = 0.15,
        use_noise: bool = True,
        seed: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(t2r_model, **kwargs)
        self.theta, self.sigma, self.mu = theta, sigma, 0.0
        self._action_size = action_size
        self._use_noise = use_noise
        self._rng = np.random.default_rng(seed)
        self._x_t = np.zeros(action_size)

    def ou_step(self) -> np.ndarray:
        dx_t = self.theta * (self.mu - self._x_t) + self.sigma * self._rng.standard_normal(
            self._x_t.shape
        )
        self._x_t = self._x_t + dx_t
        return self._x_t

    def reset(self) -> None:
        super().reset()
        self._x_t = np.zeros(self._action_size)

    def select_action(self, state: Any, context: Any = None, timestep: int | None = None) -> Any:
        action = self.predict_action(state, context, timestep)
        noise = self.ou_step() if self._use_noise else 0.0
        return action + noise


class ScheduledExplorationRegressionPolicy(RegressionPolicy):
    """A regression policy plus Gaussian noise whose stddev follows the global step.

    ``stddev = max(stddev_0 + global_step * slope, 0)``.

    Args:
      action_size: dimensions of the action.
      stddev_0: the stddev at step 0.
      slope: its change per global step (negative to anneal).
      seed: seeds the noise.
      **kwargs: see `RegressionPolicy`.
    """

    def __init__(
        self,
        t2r_model: Any = None,
        action_size: int = 2,
        stddev_0: float = 0.2,
        slope: float = 0.0,
        seed: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(t2r_model, **kwargs)
        self._action_size = action_size
        self._stddev_0 = stddev_0
        self._slope = slope
        self._rng = np.random.default_rng(seed)

    @property
    def stddev(self) -> float:
        return max(self._stddev_0 + self.global_step * self._slope, 0.0)

    def get_noise(self) -> np.ndarray:
        return self.stddev * self._rng.standard_normal(self._action_size)

    def select_action(self, state: Any, context: Any = None, timestep: int | None = None) -> Any:
        return self.predict_action(state, context, timestep) + self.get_noise()


def _prediction(
    policy: Policy, predictions: Mapping[str, Any], key: str, argument: str | None = None
) -> Any:
    """``predictions[key]``; a KeyError naming the outputs the model has (and the
    policy argument that chose `key`) when it is missing."""
    try:
        return predictions[key]
    except KeyError:
        chosen = f" ({argument}={key!r})" if argument else ""
        fix = f" Pass {argument}= one of them." if argument else ""
        raise KeyError(
            f"{type(policy).__name__}: the model's predictions have no {key!r}{chosen}; its "
            f"outputs are {sorted(predictions)}.{fix}"
        ) from None


def _default_pack_fn(
    t2r_model: Any, state: Any, context: Any, timestep: int | None, samples: np.ndarray
) -> Mapping[str, Any]:
    if t2r_model is None:
        raise ValueError("CEMPolicy needs a t2r_model (for pack_features) or a pack_fn.")
    return t2r_model.pack_features(state, context, timestep, samples)


class CEMPolicy(Policy):
    """Maximizes a critic's ``q_predicted`` over actions with the cross-entropy method.

    Each iteration samples `cem_samples` actions from a diagonal normal
    (starting at mean `initial_mean`, stddev `initial_stddev`), scores them in
    one `predict` call on ``pack_fn(t2r_model, state, context, timestep,
    samples)`` (default: the model's ``pack_features(state, context, timestep,
    samples)``), and refits the normal to the `num_elites` best. The best
    sample of the last iteration is the action.

    Args:
      t2r_model: the critic model (for ``pack_features``).
      action_size: dimensions of the action.
      cem_iters: CEM iterations.
      cem_samples: actions scored per iteration.
      num_elites: best actions the normal is refitted to.
      pack_fn: ``(t2r_model, state, context, timestep, samples) -> features``.
      predictor: the critic's predictor.
      action_low, action_high: if given, samples are clipped to these bounds.
      initial_mean, initial_stddev: the first sampling distribution.
      seed: seeds the sampling.
      q_key: the prediction holding the values.
    """

    def __init__(
        self,
        t2r_model: Any = None,
        action_size: int = 2,
        cem_iters: int = 3,
        cem_samples: int = 64,
        num_elites: int = 10,
        pack_fn: Callable[..., Mapping[str, Any]] | None = None,
        predictor: AbstractPredictor | None = None,
        action_low: Any = None,
        action_high: Any = None,
        initial_mean: Any = 0.0,
        initial_stddev: Any = 1.0,
        seed: int | None = None,
        q_key: str = "q_predicted",
    ) -> None:
        super().__init__(predictor)
        if num_elites > cem_samples:
            raise ValueError(f"num_elites ({num_elites}) exceeds cem_samples ({cem_samples}).")
        self._t2r_model = t2r_model
        self._action_size = action_size
        self._cem_iters = cem_iters
        self._cem_samples = cem_samples
        self._num_elites = num_elites
        self._action_low = None if action_low is None else np.asarray(action_low)
        self._action_high = None if action_high is None else np.asarray(action_high)
        self._initial_mean = np.broadcast_to(np.asarray(initial_mean, float), (action_size,))
        self._initial_stddev = np.broadcast_to(np.asarray(initial_stddev, float), (action_size,))
        self._rng = np.random.default_rng(seed)
        self._q_key = q_key
        self.pack_fn = pack_fn or _default_pack_fn
        self.sample_fn: Callable[..., np.ndarray] = self._default_sample_fn

    def _default_sample_fn(self, mean: np.ndarray, stddev: np.ndarray) -> np.ndarray:
        samples = mean + stddev * self._rng.standard_normal((self._cem_samples, self._action_size))
        if self._action_low is not None or self._action_high is not None:
            samples = np.clip(samples, self._action_low, self._action_high)
        return samples.astype(np.float32)

    def get_cem_action(
        self, objective_fn: Callable[[np.ndarray], Any]
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """The CEM argmax of `objective_fn` and a debug dict (q, final params, best index)."""
        samples, values, params = cross_entropy_method(
            self.sample_fn,
            objective_fn,
            normal_update_fn,
            {"mean": self._initial_mean, "stddev": self._initial_stddev},
            num_elites=self._num_elites,
            num_iterations=self._cem_iters,
        )
        best = int(np.argmax(values))
        debug = {"q_predicted": float(values[best]), "final_params": params, "best_idx": best}
        return np.asarray(samples)[best], debug

    def _q_values(self, predictions: Mapping[str, np.ndarray]) -> np.ndarray:
        return np.asarray(_prediction(self, predictions, self._q_key, "q_key")).reshape(-1)

    def select_action(self, state: Any, context: Any = None, timestep: int | None = None) -> Any:
        predictor = self._require_predictor()

        def objective_fn(samples: np.ndarray) -> np.ndarray:
            features = self.pack_fn(self._t2r_model, state, context, timestep, samples)
            return self._q_values(predictor.predict(features))

        action, _ = self.get_cem_action(objective_fn)
        return action


class LSTMCEMPolicy(CEMPolicy):
    """`CEMPolicy` for a recurrent critic: carries its hidden state between steps.

    The critic's features get the hidden state as the `context` argument of
    `pack_fn`; its predictions must include ``lstm_hidden_state`` (one row per
    sample). After CEM, the hidden state of the chosen action is kept for the
    next step; `reset` zeroes it.

    Args:
      hidden_state_size: length of the hidden state.
      **kwargs: see `CEMPolicy`.
    """

    def __init__(self, hidden_state_size: int, **kwargs: Any) -> None:
        self._hidden_state_size = hidden_state_size
        super().__init__(**kwargs)
        self.reset()

    @property
    def hidden_state(self) -> np.ndarray:
        return self._hidden_state

    def reset(self) -> None:
        self._hidden_state = np.zeros((self._hidden_state_size,), dtype=np.float32)
        self._hidden_state_batch: np.ndarray | None = None

    def select_action(self, state: Any, context: Any = None, timestep: int | None = None) -> Any:
        predictor = self._require_predictor()

        def objective_fn(samples: np.ndarray) -> np.ndarray:
            features = self.pack_fn(self._t2r_model, state, self._hidden_state, timestep, samples)
            predictions = predictor.predict(features)
            hidden = np.asarray(_prediction(self, predictions, "lstm_hidden_state"))
            self._hidden_state_batch = hidden.reshape(-1, hidden.shape[-1])
            return self._q_values(predictions)

        action, debug = self.get_cem_action(objective_fn)
        assert self._hidden_state_batch is not None
        self._hidden_state = self._hidden_state_batch[debug["best_idx"]]
        return action


PolicyOrFactory = Policy | Callable[[], Policy]


class PerEpisodeSwitchPolicy(Policy):
    """Per episode, acts with an exploration policy with probability `explore_prob`,
    else with the greedy one (e.g. a scripted policy and a learned one).

    Args:
      explore_policy_class: a Policy, or a zero-argument factory (T2R passed classes).
      greedy_policy_class: likewise.
      explore_prob: probability of exploring in an episode.
      seed: seeds the per-episode choice.
    """

    def __init__(
        self,
        explore_policy_class: PolicyOrFactory,
        greedy_policy_class: PolicyOrFactory,
        explore_prob: float,
        seed: int | None = None,
    ) -> None:
        super().__init__(None)
        self._explore_policy: Policy = make_policy(explore_policy_class)
        self._greedy_policy: Policy = make_policy(greedy_policy_class)
        self._explore_prob = explore_prob
        self._rng = np.random.default_rng(seed)
        self._active_policy: Policy | None = None

    @property
    def active_policy(self) -> Policy | None:
        return self._active_policy

    def reset(self) -> None:
        self._explore_policy.reset()
        self._greedy_policy.reset()
        explore = self._rng.random() < self._explore_prob
        self._active_policy = self._explore_policy if explore else self._greedy_policy

    def init_randomly(self) -> None:
        self._explore_policy.init_randomly()
        self._greedy_policy.init_randomly()

    def restore(self) -> bool:
        explore_ok = self._explore_policy.restore()
        greedy_ok = self._greedy_policy.restore()
        return explore_ok and greedy_ok

    @property
    def global_step(self) -> int:
        """The greedy policy's global step."""
        return self._greedy_policy.global_step

    @property
    def model_path(self) -> str:
        return self._greedy_policy.model_path

    def select_action(self, state: Any, context: Any = None, timestep: int | None = None) -> Any:
        if self._active_policy is None:
            self.reset()
        assert self._active_policy is not None
        return self._active_policy.select_action(state, context, timestep)


def make_policy(policy: Any, required: type | None = Policy) -> Any:
    """`policy` itself, or what calling it makes: T2R passed policy classes, gin passes
    factories, callers may pass a built policy.

    An object that is not a class and has ``sample_action`` (or is a `required`)
    is kept as it is. With `required` (default `Policy`) the result must be one;
    with None, anything with ``sample_action`` will do (what `t2r.collect.run_env`
    calls). Raises TypeError naming what it got otherwise.
    """
    built = not isinstance(policy, type) and (
        hasattr(policy, "sample_action") or (required is not None and isinstance(policy, required))
    )
    made = policy if built else policy()
    if required is not None and not isinstance(made, required):
        raise TypeError(
            f"Expected a {required.__name__} or a factory of one, got {type(made).__name__}."
        )
    if not hasattr(made, "sample_action"):
        raise TypeError(
            f"Expected a policy (with sample_action) or a factory of one, got "
            f"{type(made).__name__}."
        )
    return made


class RandomPolicy(Policy):
    """Uniformly random actions in ``[low, high]`` (a baseline, and for first data collection).

    Args:
      action_size: dimensions of the action.
      low, high: bounds (scalars or per-dimension).
      seed: seeds the draws.
    """

    def __init__(
        self, action_size: int = 2, low: Any = -1.0, high: Any = 1.0, seed: int | None = None
    ) -> None:
        super().__init__(None)
        self._action_size = action_size
        self._low = np.broadcast_to(np.asarray(low, np.float32), (action_size,))
        self._high = np.broadcast_to(np.asarray(high, np.float32), (action_size,))
        self._rng = np.random.default_rng(seed)

    def select_action(self, state: Any, context: Any = None, timestep: int | None = None) -> Any:
        del state, context, timestep
        return self._rng.uniform(self._low, self._high).astype(np.float32)
