"""Environments from env_args: parsing, Gymnasium (type 2) and robosuite (type 1)."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest

from t2r.robomimic.envs import EnvArgsError, make_env_from_env_args, parse_env_args
from tests.needs import needs_module
from tests.robomimic.robosuite_needs import needs_robosuite


def test_parse_env_args_reads_json_and_fills_env_kwargs():
    parsed = parse_env_args(json.dumps({"env_name": "Lift", "type": 1}))
    assert parsed == {"env_name": "Lift", "type": 1, "env_kwargs": {}}
    assert parse_env_args(b'{"env_name": "X", "type": 2, "env_kwargs": {"a": 1}}')[
        "env_kwargs"
    ] == {"a": 1}


@pytest.mark.parametrize(
    ("env_args", "message"),
    [
        ("{not json", "not valid JSON"),
        ([1, 2], "must be a JSON object, got list"),
        ({"type": 1}, r"env_args\['env_name'\] must be a non-empty string, got None"),
        ({"env_name": "Lift", "type": "1"}, r"env_args\['type'\] must be an int .* got '1'"),
        ({"env_name": "Lift", "type": 1, "env_kwargs": []}, r"env_args\['env_kwargs'\]"),
    ],
)
def test_parse_env_args_errors_name_the_field(env_args, message):
    with pytest.raises(EnvArgsError, match=message):
        parse_env_args(env_args)


def test_unsupported_type_is_an_error_naming_it():
    with pytest.raises(EnvArgsError, match=r"env_args\['type'\] = 3 for 'Momart'"):
        make_env_from_env_args({"env_name": "Momart", "type": 3, "env_kwargs": {}})


def test_gym_env_from_env_args():
    needs_module("gymnasium")
    env = make_env_from_env_args({"env_name": "Pendulum-v1", "type": 2, "env_kwargs": {}})
    ob = env.reset()
    assert set(ob) == {"flat"} and ob["flat"].shape == (3,)
    assert env.action_dimension == 1
    ob, reward, done, info = env.step(np.zeros(1, dtype=np.float32))
    assert ob["flat"].shape == (3,) and isinstance(reward, float) and done is False
    assert info["is_success"] == {"task": False} == env.is_success()
    assert env.serialize() == {"env_name": "Pendulum-v1", "type": 2, "env_kwargs": {}}
    with pytest.raises(EnvArgsError, match="gymnasium.make\\('NoSuchEnv-v0'\\) failed"):
        make_env_from_env_args({"env_name": "NoSuchEnv-v0", "type": 2})


# -- robosuite ------------------------------------------------------------------------------------


def _lift_args(**env_kwargs):
    needs_robosuite()
    return {
        "env_name": "Lift",
        "type": 1,
        "env_kwargs": {"robots": ["Panda"], "control_freq": 20, **env_kwargs},
    }


@pytest.fixture(scope="module")
def lift():
    env = make_env_from_env_args(_lift_args(), render_offscreen=True)
    yield env
    env.close()


@pytest.mark.slow
def test_robosuite_lift_has_robomimics_observations(lift):
    ob = lift.reset()
    for key in ("object", "robot0_eef_pos", "robot0_eef_quat", "robot0_gripper_qpos"):
        assert key in ob, key
    assert ob["object"].shape == (10,)
    assert not any(k.endswith("proprio-state") for k in ob)
    assert lift.action_dimension == 7 and lift.type == 1 and lift.name == "Lift"
    ob2, reward, done, info = lift.step(np.zeros(7))
    assert reward == 0.0 and done is False and info["is_success"] == {"task": False}
    assert set(ob2) == set(ob)


@pytest.mark.slow
def test_robosuite_reset_to_restores_the_state(lift):
    first = lift.reset()
    state = lift.get_state()
    assert state["states"].ndim == 1 and "<mujoco" in state["model"]
    for _ in range(5):
        moved, *_ = lift.step(np.array([1.0, 0, 0, 0, 0, 0, -1]))
    assert not np.allclose(moved["robot0_eef_pos"], first["robot0_eef_pos"])
    restored = lift.reset_to({"states": state["states"]})
    np.testing.assert_allclose(restored["robot0_eef_pos"], first["robot0_eef_pos"], atol=1e-9)
    np.testing.assert_allclose(restored["object"], first["object"], atol=1e-9)


@pytest.mark.slow
def test_robosuite_render_is_upright_uint8(lift):
    lift.reset()
    frame = lift.render(48, 64, camera_name="agentview")
    assert frame.shape == (48, 64, 3) and frame.dtype == np.uint8
    raw = lift.env.sim.render(height=48, width=64, camera_name="agentview")
    np.testing.assert_array_equal(frame, raw[::-1])


@pytest.mark.slow
def test_robosuite_image_observations_at_84():
    env = make_env_from_env_args(
        _lift_args(camera_names=["agentview"], camera_heights=84, camera_widths=84),
        use_image_obs=True,
    )
    try:
        ob = env.reset()
        image = ob["agentview_image"]
        assert image.shape == (84, 84, 3) and image.dtype == np.uint8
        # Upright, as robomimic stores them: MuJoCo's rows flipped.
        np.testing.assert_array_equal(image, env.render(84, 84, camera_name="agentview"))
    finally:
        env.close()


@pytest.mark.slow
def test_robosuite_old_controller_config_is_converted_and_serialized_as_given():
    old = {"type": "OSC_POSE", "input_max": 1, "input_min": -1, "kp": 150,
           "output_max": [0.05] * 3 + [0.5] * 3, "output_min": [-0.05] * 3 + [-0.5] * 3,
           "damping_ratio": 1, "impedance_mode": "fixed", "kp_limits": [0, 300],
           "damping_ratio_limits": [0, 10], "position_limits": None,
           "orientation_limits": None, "uncouple_pos_ori": True, "control_delta": True,
           "interpolation": None, "ramp_ratio": 0.2}  # fmt: skip
    env = make_env_from_env_args(_lift_args(controller_configs=old, render_gpu_device_id=0))
    try:
        env.reset()
        assert env.action_dimension == 7
        kwargs = env.serialize()["env_kwargs"]
        assert kwargs["controller_configs"] == old
        assert "render_gpu_device_id" not in kwargs
        assert kwargs["ignore_done"] is True and kwargs["use_camera_obs"] is False
        with pytest.raises(RuntimeError, match="without an offscreen renderer"):
            env.render()
    finally:
        env.close()


def test_robosuite_chatter_below_error_is_dropped():
    needs_robosuite()
    logger = logging.getLogger("robosuite_logs")

    def passes(level):
        return logger.filter(logging.LogRecord("robosuite_logs", level, "x", 1, "m", None, None))

    assert not passes(logging.WARNING) and not passes(logging.INFO)
    assert passes(logging.ERROR)
