"""SpecEpisodeToTransitions: records laid out by the transition spec, read back by it."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from t2r import specs
from t2r.collect import SpecEpisodeToTransitions
from t2r.data import create_parse_tf_example_fn


def _spec() -> specs.TensorSpecStruct:
    spec = specs.TensorSpecStruct()
    spec["state/image"] = specs.ExtendedTensorSpec(
        (8, 8, 3), torch.uint8, name="state/image", data_format="png"
    )
    spec["action"] = specs.ExtendedTensorSpec((2,), torch.float32, name="action")
    spec["reward"] = specs.ExtendedTensorSpec((1,), torch.float32, name="reward")
    spec["done"] = specs.ExtendedTensorSpec((1,), torch.int64, name="done")
    spec["target"] = specs.ExtendedTensorSpec((2,), torch.float32, name="target")
    return spec


def _transition(obs, t: int):
    action = np.array([t, -t], np.float32)
    return (obs, action, float(t) / 2, obs, t == 1, {"target": np.array([1.0, 2.0], np.float32)})


def _image(value: int) -> np.ndarray:
    return np.full((8, 8, 3), value, np.uint8)


def test_an_array_observation_and_info_fill_the_spec():
    spec = _spec()
    convert = SpecEpisodeToTransitions(spec, observation_key="state/image")
    records = convert([_transition(_image(t * 10), t) for t in range(2)])
    batch = create_parse_tf_example_fn(spec)(records)
    assert torch.equal(batch["state/image"][1], torch.full((8, 8, 3), 10, dtype=torch.uint8))
    assert batch["action"].tolist() == [[0.0, -0.0], [1.0, -1.0]]
    assert batch["reward"].tolist() == [[0.0], [0.5]]
    assert batch["done"].tolist() == [[0], [1]]
    assert batch["target"].tolist() == [[1.0, 2.0], [1.0, 2.0]]


def test_a_new_camera_is_one_spec_and_one_observation_entry():
    spec = _spec()
    spec["state/wrist_image"] = specs.ExtendedTensorSpec(
        (8, 8, 3), torch.uint8, name="state/wrist_image", data_format="png"
    )
    convert = SpecEpisodeToTransitions(spec)
    obs = {"state": {"image": _image(1), "wrist_image": _image(7)}}
    batch = create_parse_tf_example_fn(spec)(convert([_transition(obs, 0)]))
    assert int(batch["state/wrist_image"].float().mean()) == 7
    assert int(batch["state/image"].float().mean()) == 1


def test_a_missing_value_names_the_path_and_what_was_there():
    spec = _spec()
    spec["state/depth"] = specs.ExtendedTensorSpec((8, 8, 1), torch.float32, name="depth")
    convert = SpecEpisodeToTransitions(spec, observation_key="state/image")
    with pytest.raises(specs.SpecError, match=r"no value for 'state/depth'.*keys there: \["):
        convert([_transition(_image(0), 0)])
    spec["state/depth"] = specs.ExtendedTensorSpec(
        (8, 8, 1), torch.float32, name="depth", is_optional=True
    )
    assert (
        len(
            SpecEpisodeToTransitions(spec, observation_key="state/image")(
                [_transition(_image(0), 0)]
            )
        )
        == 1
    )


def test_a_value_of_the_wrong_shape_is_a_spec_error():
    convert = SpecEpisodeToTransitions(_spec(), observation_key="state/image")
    with pytest.raises(specs.SpecError, match="state/image"):
        convert([_transition(np.zeros((4, 4, 3), np.uint8), 0)])
