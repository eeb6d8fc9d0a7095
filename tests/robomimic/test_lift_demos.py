"""The scripted Lift demonstrator and the robomimic file it writes."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from t2r.robomimic.lift_demos import ScriptedLiftPolicy
from tests.robomimic.robosuite_needs import needs_robosuite


def _ob(eef, cube):
    return {"robot0_eef_pos": np.asarray(eef, float), "object": np.r_[cube, np.zeros(7)]}


def test_scripted_policy_goes_above_then_down_then_closes_then_lifts():
    policy = ScriptedLiftPolicy()
    cube = np.array([0.0, 0.0, 0.82])
    # Far to the side and low: move toward the hover point, gripper open.
    action = policy(_ob([0.2, 0.0, 0.9], cube))
    assert action.shape == (7,) and action[0] < 0 and action[6] == -1.0
    assert policy.phase == "approach"
    # At the hover point: start descending.
    action = policy(_ob(cube + [0, 0, ScriptedLiftPolicy.HOVER], cube))
    assert policy.phase == "descend" and action[2] < 0 and action[6] == -1.0
    # At the grasp point: close for CLOSE_STEPS steps without moving away, then lift.
    grasp = cube + [0, 0, ScriptedLiftPolicy.GRASP_DEPTH]
    for _ in range(ScriptedLiftPolicy.CLOSE_STEPS):
        action = policy(_ob(grasp, cube))
        assert policy.phase == "close" and action[6] == 1.0
        np.testing.assert_allclose(action[:3], 0.0, atol=1e-9)
    action = policy(_ob(grasp, cube))
    assert policy.phase == "lift" and action[2] == 1.0 and action[6] == 1.0
    assert np.all(np.abs(action) <= 1.0) and np.all(action[3:6] == 0.0)
    policy.start_episode()
    assert policy.phase == "approach"


def test_scripted_policy_noise_is_seeded_and_clipped():
    cube = np.array([0.0, 0.0, 0.82])
    a = ScriptedLiftPolicy(action_noise=5.0, seed=3)(_ob([0.1, 0.0, 0.9], cube))
    b = ScriptedLiftPolicy(action_noise=5.0, seed=3)(_ob([0.1, 0.0, 0.9], cube))
    np.testing.assert_array_equal(a, b)
    assert np.all(np.abs(a) <= 1.0)
    with pytest.raises(ValueError, match="action_noise must be >= 0"):
        ScriptedLiftPolicy(action_noise=-1.0)


@pytest.mark.slow
def test_collect_lift_demos_writes_a_robomimic_file_that_replays(lift_demos):
    from t2r.robomimic import hdf5
    from t2r.robomimic.envs import make_env_from_env_args
    from t2r.robomimic.lift_demos import lift_env_args

    path, stats = lift_demos  # collect_lift_demos(3, path, seed=1)
    assert stats.demos == 3 and stats.attempts >= 3 and stats.success_rate == 3 / stats.attempts
    assert hdf5.list_demos(path) == ["demo_0", "demo_1", "demo_2"]
    assert hdf5.list_demos(path, "train") == ["demo_0", "demo_1"]
    assert hdf5.list_demos(path, "valid") == ["demo_2"]
    env_args = hdf5.read_env_args(path)
    assert env_args == lift_env_args()
    demo = hdf5.read_demo(path, "demo_0")
    n = demo.num_samples
    assert demo.actions.shape == (n, 7) and np.all(np.abs(demo.actions) <= 1.0)
    assert demo.dones is not None and demo.dones.tolist() == [0] * (n - 1) + [1]
    # Sparse reward: it succeeded and then held the cube up for the last 10 steps.
    assert demo.rewards is not None and np.all(demo.rewards[-10:] == 1.0)
    assert demo.states is not None and demo.states.shape[0] == n
    assert demo.next_obs is not None
    np.testing.assert_array_equal(demo.next_obs["object"][:-1], demo.obs["object"][1:])
    with h5py.File(path, "r") as f:
        assert "<mujoco" in f["data/demo_0"].attrs["model_file"]
        assert f["data"].attrs["total"] == sum(
            f[f"data/{d}"].attrs["num_samples"] for d in ("demo_0", "demo_1", "demo_2")
        )
    # The stored states reproduce the stored observations, exactly at the start and
    # to within 2 mm later: robosuite's observations after a step read positions
    # computed before the last physics substep's integration.
    env = make_env_from_env_args(env_args)
    try:
        env.reset()
        for step in (0, n // 2, n - 1):
            ob = env.reset_to({"states": demo.states[step]})
            atol = 1e-9 if step == 0 else 2e-3
            np.testing.assert_allclose(ob["object"], demo.obs["object"][step], atol=atol)
            np.testing.assert_allclose(
                ob["robot0_eef_pos"], demo.obs["robot0_eef_pos"][step], atol=atol
            )
    finally:
        env.close()


@pytest.mark.slow
def test_collect_lift_demos_with_cameras(tmp_path):
    needs_robosuite()
    from t2r.robomimic import hdf5
    from t2r.robomimic.lift_demos import collect_lift_demos

    path = tmp_path / "lift_images.hdf5"
    # 84x84 is the default; 24x24 renders faster in a test.
    collect_lift_demos(1, path, camera=True, image_size=24, show_progress=False)
    demo = hdf5.read_demo(path, "demo_0")
    n = demo.num_samples
    for key in ("agentview_image", "robot0_eye_in_hand_image"):
        assert demo.obs[key].shape == (n, 24, 24, 3) and demo.obs[key].dtype == np.uint8
        assert demo.obs[key].std() > 0
    assert hdf5.list_demos(path, "valid") == []
    assert hdf5.read_env_args(path)["env_kwargs"]["use_camera_obs"] is True


@pytest.mark.slow
def test_collect_lift_demos_gives_up_naming_the_counts(tmp_path):
    needs_robosuite()
    from t2r.robomimic.lift_demos import collect_lift_demos

    with pytest.raises(RuntimeError, match="only 0 of 2 episodes succeeded in 2 attempts"):
        collect_lift_demos(2, tmp_path / "x.hdf5", max_steps=3, max_attempts=2, show_progress=False)
    assert not (tmp_path / "x.hdf5").exists()


@pytest.mark.slow
def test_cli_demos_prints_the_success_rate(tmp_path, capsys):
    needs_robosuite()
    from t2r.cli import main
    from t2r.robomimic import hdf5

    out = tmp_path / "d.hdf5"
    assert main(["robomimic", "demos", "--n", "2", "--output", str(out), "--no_progress"]) == 0
    printed = capsys.readouterr().out
    assert f"wrote 2 demos to {out}" in printed and "success rate" in printed
    assert hdf5.list_demos(out) == ["demo_0", "demo_1"]
    assert main(["robomimic", "demos", "--n", "0", "--output", str(out)]) == 1
    assert "n must be >= 1" in capsys.readouterr().err


def test_a_grasp_offset_aims_the_script_beside_the_cube():
    cube = np.array([0.0, 0.0, 0.82])
    offset = ScriptedLiftPolicy(grasp_offset=(0.0, 0.03, 0.0))
    hover = cube + [0.0, 0.03, ScriptedLiftPolicy.HOVER]
    action = offset(_ob(hover, cube))  # at its (shifted) hover point: it descends there
    assert offset.phase == "descend" and abs(action[1]) < 1e-9 and action[2] < 0


@pytest.mark.slow
def test_collect_mixed_lift_demos_writes_expert_noisy_and_failed_demos(tmp_path):
    needs_robosuite()
    from t2r.robomimic import hdf5
    from t2r.robomimic.lift_demos import collect_mixed_lift_demos

    path = tmp_path / "mixed.hdf5"
    stats = collect_mixed_lift_demos(
        path, expert=2, noisy=1, failed=1, seed=0, unsuccessful_steps=40, show_progress=False
    )
    assert stats.demos == {"expert": 2, "noisy": 1, "failed": 1}
    assert stats.successes["expert"] == 2 and stats.successes["failed"] == 0
    masks = hdf5.read_filter_keys(path)
    assert masks["expert"] == ["demo_0", "demo_1"] and masks["noisy"] == ["demo_2"]
    assert masks["failed"] == ["demo_3"]
    assert sorted(masks["train"] + masks["valid"]) == ["demo_0", "demo_1", "demo_2", "demo_3"]
    for name, succeeded in (("demo_0", True), ("demo_3", False)):
        demo = hdf5.read_demo(path, name)
        assert (demo.rewards.max() > 0) == succeeded
        assert demo.dones[-1] == 1 and demo.dones[:-1].sum() == 0
        assert set(demo.next_obs) == set(demo.obs)
        np.testing.assert_array_equal(demo.next_obs["object"][:-1], demo.obs["object"][1:])
    assert hdf5.read_demo(path, "demo_3").num_samples == 40  # failed: the step budget
