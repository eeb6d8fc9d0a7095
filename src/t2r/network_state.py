"""Network state: what a stateful policy carries from one step to the next.

An exported program is a pure function, so a recurrent policy (an LSTM, BC-RNN,
RT-1's token cache) passes its state in and gets the next state out:

* the model declares a **state spec** (`AbstractT2RModel.get_network_state_specification`,
  a struct of per-example tensors) and an **initial state**
  (`get_initial_network_state`, zeros by default, learned if the model says so);
* in PREDICT the state arrives as features under ``network_state/<path>``
  (the model's PREDICT packing spec gains these entries), and the model returns
  the next state as ``inference_outputs["next_network_state"]`` (a struct or
  dict with the same paths), which becomes the export outputs
  ``next_network_state/<path>``;
* an export records the pairs and the initial state; a predictor offers
  `initial_network_state()`; a policy feeds the state, keeps the next one and
  restarts from the initial state on ``reset()``.

The names are the same for every model (TF-Agents and RT-1 call it the
network state), so the machinery needs no model code. See
``docs/export_format.md`` ("Stateful programs").
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from t2r.specs import (
    ExtendedTensorSpec,
    SpecError,
    TensorSpecStruct,
    dtype_name,
    flatten_spec_structure,
)
from t2r.specs.extended_tensor_spec import format_shape

NETWORK_STATE = "network_state"
NEXT_NETWORK_STATE = "next_network_state"


def input_name(path: str) -> str:
    """``'h'`` -> ``'network_state/h'``: the feature (program input) carrying a state entry."""
    return f"{NETWORK_STATE}/{path}"


def output_name(name: str) -> str:
    """``'network_state/h'`` -> ``'next_network_state/h'``: the output carrying its next value."""
    if not is_state_input(name):
        raise ValueError(f"{name!r} is not a network-state input (network_state/<path>).")
    return f"next_{name}"


def is_state_input(name: str) -> bool:
    return name.startswith(f"{NETWORK_STATE}/")


def with_network_state(
    feature_spec: TensorSpecStruct, state_spec: TensorSpecStruct
) -> TensorSpecStruct:
    """`feature_spec` (flattened) plus the state entries under ``network_state/``.

    Raises SpecError when the features already use that name.
    """
    flat = flatten_spec_structure(feature_spec)
    state = flatten_spec_structure(state_spec)
    if not state:
        return flat
    clash = [k for k in flat if k == NETWORK_STATE or is_state_input(k)]
    if clash:
        raise SpecError(
            f"Features {clash} use the name {NETWORK_STATE!r}, which is reserved for the "
            "model's network state (get_network_state_specification)."
        )
    for path, spec in state.items():
        flat[input_name(path)] = spec
    return flat


def split_state(
    owner: str, state_spec: TensorSpecStruct, features: Any
) -> tuple[TensorSpecStruct, TensorSpecStruct]:
    """``(features without the state, {network_state/<path>: tensor})``; raises
    SpecError naming the entry when the features lack part of the state."""
    flat = flatten_spec_structure(features)
    state = TensorSpecStruct()
    for path, spec in flatten_spec_structure(state_spec).items():
        name = input_name(path)
        if name not in flat:
            raise SpecError(
                f"{owner}'s PREDICT features lack {name!r} (its network state; feed the "
                "predictor's initial_network_state() at the start of an episode and the "
                f"{output_name(name)!r} output after that).",
                key=name,
                name=spec.name,
            )
        state[name] = flat[name]
    rest = TensorSpecStruct((k, v) for k, v in flat.items() if not is_state_input(k))
    return rest, state


def next_state_outputs(
    owner: str, state_spec: TensorSpecStruct, inference_outputs: Mapping[str, Any]
) -> dict[str, torch.Tensor]:
    """``{next_network_state/<path>: (B, ...) tensor}`` from the model's PREDICT outputs.

    Reads ``inference_outputs["next_network_state"]`` (nested or flat paths)
    and checks every entry against `state_spec` (shape after the batch
    dimension, dtype); errors name `owner` and the path.
    """
    state = flatten_spec_structure(state_spec)
    produced = inference_outputs.get(NEXT_NETWORK_STATE)
    if produced is None:
        raise ValueError(
            f"{owner} declares a network state {sorted(state)} but its PREDICT "
            f"inference outputs have no {NEXT_NETWORK_STATE!r} (got {sorted(inference_outputs)})."
        )
    flat = flatten_spec_structure(produced)
    extra = sorted(set(flat) - set(state))
    if extra:
        raise ValueError(
            f"{owner}'s {NEXT_NETWORK_STATE} has entries {extra} that the network state spec "
            f"{sorted(state)} does not declare."
        )
    outputs: dict[str, torch.Tensor] = {}
    for path, spec in state.items():
        value = flat.get(path)
        name = output_name(input_name(path))
        if value is None:
            raise ValueError(f"{owner}'s {NEXT_NETWORK_STATE} lacks {path!r} ({name}).")
        _check(owner, name, spec, value)
        outputs[name] = value
    return outputs


def _check(owner: str, name: str, spec: ExtendedTensorSpec, value: Any) -> None:
    if not isinstance(value, torch.Tensor):
        raise ValueError(f"{owner}: {name} is a {type(value).__name__}, not a tensor.")
    expected = tuple(spec.shape or ())
    ok = value.dtype == spec.dtype and value.dim() == len(expected) + 1
    ok = ok and all(d is None or d == a for d, a in zip(expected, value.shape[1:]))
    if not ok:
        raise SpecError(
            f"{owner}: {name} must have shape (B, {', '.join(map(str, expected))}) dtype "
            f"{dtype_name(spec.dtype)} (the network state spec {spec.name!r}), got shape "
            f"{format_shape(tuple(value.shape))} dtype {dtype_name(value.dtype)}.",
            key=name,
            name=spec.name,
        )


def zeros_like_spec(state_spec: TensorSpecStruct) -> TensorSpecStruct:
    """A zero tensor per entry of `state_spec`, without a batch dimension."""
    return TensorSpecStruct(
        (path, torch.zeros(tuple(spec.shape or ()), dtype=spec.dtype))
        for path, spec in flatten_spec_structure(state_spec).items()
    )
