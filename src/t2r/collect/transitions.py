"""Episodes -> records, derived from a transition spec (no hand-written Example code).

`SpecEpisodeToTransitions(spec)` is an ``episode_to_transitions_fn`` for
`t2r.collect.run_env`: each transition ``(obs, action, reward, new_obs, done,
info)`` becomes one record written by the spec-driven serializer
(`t2r.data.create_serialize_tf_example_fn`), so the records parse back with
the same spec (`t2r.data.create_parse_tf_example_fn`) and in TensorFlow.

Each spec path takes its value from the first of these that has it:

1. the observation: a mapping's keys are spec paths (``{'state/image': ...,
   'state/wrist_image': ...}``, nested mappings flatten to ``a/b``); an array
   observation is the value of `observation_key`;
2. the action under `action_key` (a mapping action: its keys, like the
   observation);
3. the reward under `reward_key` (as a ``(1,)`` value), ``done`` under `done_key`;
4. the env's ``info`` (merged with the policy's debug dict) by key.

So a new camera is one entry in the env's observation dict and one spec: the
collect side needs no other change. A spec path no source has is an error
naming the path and the keys that were there (an optional spec is skipped).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from t2r import specs
from t2r.data import create_serialize_tf_example_fn

__all__ = ["SpecEpisodeToTransitions"]


def _flatten(value: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, item in value.items():
        path = f"{prefix}{key}"
        if isinstance(item, Mapping):
            out.update(_flatten(item, path + "/"))
        else:
            out[path] = item
    return out


class SpecEpisodeToTransitions:
    """An episode -> one serialized record per transition, as `spec` lays them out.

    Args:
      spec: the records' layout (a TensorSpecStruct or nested specs), e.g.
        ``state/image`` (uint8, ``data_format='jpeg'``), ``action``, ``reward``.
      observation_key: the spec path of an observation that is an array (not a mapping).
      action_key: the spec path of an array action.
      reward_key: the spec path of the reward (written as a ``(1,)`` value).
      done_key: the spec path of the episode-end flag.
      jpeg_quality: quality of JPEG-encoded images.
    """

    def __init__(
        self,
        spec: Any,
        observation_key: str | None = None,
        action_key: str = "action",
        reward_key: str = "reward",
        done_key: str = "done",
        jpeg_quality: int = 95,
    ) -> None:
        self.spec = spec
        self.observation_key = observation_key
        self.action_key = action_key
        self.reward_key = reward_key
        self.done_key = done_key
        self._paths = list(specs.flatten_spec_structure(spec).items())
        self._serialize = create_serialize_tf_example_fn(spec, jpeg_quality=jpeg_quality)

    def values(self, transition: Sequence[Any]) -> dict[str, Any]:
        """The value of every spec path found in one transition (see the module docstring)."""
        obs, action, reward, _new_obs, done, info = transition
        sources: dict[str, Any] = {}
        if isinstance(obs, Mapping):
            sources.update(_flatten(obs))
        elif self.observation_key is not None:
            sources[self.observation_key] = obs
        if isinstance(action, Mapping):
            sources.update({k: v for k, v in _flatten(action).items() if k not in sources})
        else:
            sources.setdefault(self.action_key, action)
        sources.setdefault(self.reward_key, np.asarray([reward], np.float32))
        sources.setdefault(self.done_key, np.asarray([bool(done)]))
        for key, value in _flatten(dict(info or {})).items():
            sources.setdefault(key, value)
        found = {}
        for path, spec in self._paths:
            if path in sources and sources[path] is not None:
                found[path] = sources[path]
            elif not spec.is_optional:
                where = "an array" if not isinstance(obs, Mapping) else "a mapping"
                raise specs.SpecError(
                    f"SpecEpisodeToTransitions: no value for {path!r} (spec name {spec.name!r}) "
                    f"in the transition: the observation is {where}"
                    + (
                        f" (observation_key={self.observation_key!r})"
                        if not isinstance(obs, Mapping)
                        else ""
                    )
                    + f", action_key={self.action_key!r}, reward_key={self.reward_key!r}, "
                    f"done_key={self.done_key!r}; keys there: {sorted(sources)}.",
                    key=path,
                    name=spec.name,
                )
        return found

    def __call__(self, episode: Sequence[Sequence[Any]]) -> list[bytes]:
        """One serialized record (tf.train.Example) per transition of `episode`."""
        records = []
        for transition in episode:
            record = self._serialize(self.values(transition))
            if not isinstance(record, bytes):
                raise ValueError(
                    "SpecEpisodeToTransitions: the spec names several dataset keys "
                    f"({sorted(record)}); a replay file holds one record per transition."
                )
            records.append(record)
        return records
