"""Models that own their update step: two optimizers, target networks, torchrun."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from t2r.export import export_saved_model
from t2r.models import average_gradients, polyak_update
from t2r.predictors import ExportedModelPredictor
from t2r.train import latest_checkpoint, read_metrics, seed_everything, train_eval_model

from .models import TinyActorCritic, TransitionInput
from .torchrun import run_two_processes

REPO_ROOT = Path(__file__).resolve().parents[2]


def _train(model_dir, model, steps, **kwargs):
    kwargs.setdefault("show_progress", False)
    # The CPU: these tests compare against CPU tensors and a gloo torchrun run bitwise.
    kwargs.setdefault("device", "cpu")
    return train_eval_model(
        model, TransitionInput(), max_train_steps=steps, model_dir=model_dir, **kwargs
    )


def test_every_optimizer_learning_rate_is_logged_under_its_name(tmp_path):
    seed_everything(0)
    model = TinyActorCritic(
        actor_lr=1e-3,
        critic_lr=2e-3,
        create_lr_scheduler_fn=lambda opt: torch.optim.lr_scheduler.LambdaLR(
            opt, lambda step: 0.5**step
        ),
    )
    _train(tmp_path, model, 3, log_every_n_steps=1)
    records = read_metrics(tmp_path)
    assert [r["learning_rate/actor"] for r in records] == pytest.approx(
        [1e-3 * 0.5, 1e-3 * 0.25, 1e-3 * 0.125]
    )
    assert [r["learning_rate/critic"] for r in records] == pytest.approx(
        [2e-3 * 0.5, 2e-3 * 0.25, 2e-3 * 0.125]
    )
    assert "learning_rate" not in records[0]
    assert {"critic_loss", "actor_loss"} <= set(records[0])


def test_both_networks_and_targets_move(tmp_path):
    seed_everything(0)
    model = TinyActorCritic()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    _train(tmp_path, model, 3)
    for name, value in model.state_dict().items():
        assert not torch.equal(before[name], value), name
    # The targets trail the networks (tau < 1): neither equal nor left behind.
    assert not torch.equal(model.target_critic[0].weight, model.critic[0].weight)
    saved = load_file(str(latest_checkpoint(tmp_path).path / "model.safetensors"))
    assert torch.equal(saved["target_critic.0.weight"], model.target_critic[0].weight)


def test_polyak_update_blends_parameters_and_checks_structure():
    source, target = nn.Linear(2, 2), nn.Linear(2, 2)
    expected = 0.75 * target.weight.detach() + 0.25 * source.weight.detach()
    polyak_update(target, source, 0.25)
    assert torch.allclose(target.weight, expected)
    with pytest.raises(ValueError, match=r"differ in parameters \['2.bias', '2.weight'\]"):
        polyak_update(
            nn.Sequential(nn.Linear(2, 2)),
            nn.Sequential(nn.Linear(2, 2), nn.ReLU(), nn.Linear(2, 2)),
            0.5,
        )
    with pytest.raises(ValueError, match="tau must be in"):
        polyak_update(target, source, 1.5)


def test_average_gradients_is_a_no_op_in_one_process():
    layer = nn.Linear(2, 1)
    layer(torch.ones(1, 2)).sum().backward()
    grad = layer.weight.grad.clone()
    average_gradients(layer)
    assert torch.equal(layer.weight.grad, grad)


def test_export_serves_the_actor_only(tmp_path):
    seed_everything(0)
    model = TinyActorCritic()
    _train(tmp_path / "model", model, 2)
    version = export_saved_model(model, tmp_path / "export", global_step=2)
    predictor = ExportedModelPredictor(tmp_path / "export", timeout=0)
    assert predictor.restore()
    assert list(predictor.get_feature_specification()) == ["obs"]
    assert predictor.export.output_names == ("action",)
    obs = torch.rand(5, 3)
    with torch.no_grad():
        expected = model.actor(obs).numpy()
    assert (predictor.predict({"obs": obs.numpy()})["action"] == expected).all()
    # The program computes with the actor's weights only (it carries the rest unused).
    program = torch.export.load(str(version / "model.pt2"))
    used = {
        spec.target
        for spec, node in zip(
            program.graph_signature.input_specs,
            [n for n in program.graph.nodes if n.op == "placeholder"],
        )
        if spec.target is not None and node.users
    }
    assert used == {f"model.actor.{i}.{p}" for i in (0, 2) for p in ("weight", "bias")}


def _run(model_dir, max_steps, kill_at=None):
    args = [sys.executable, "-m", "tests.train.run_tiny", str(model_dir), str(max_steps)]
    if kill_at:
        args.append(str(kill_at))
    args.append("--actor_critic")
    return subprocess.run(args, cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)


@pytest.mark.slow
def test_killed_and_resumed_actor_critic_matches_uninterrupted_bitwise(tmp_path):
    straight = _run(tmp_path / "straight", 20)
    assert straight.returncode == 0, straight.stderr
    killed = _run(tmp_path / "resumed", 20, kill_at=12)
    assert killed.returncode == -signal.SIGKILL
    assert latest_checkpoint(tmp_path / "resumed").global_step == 10
    resumed = _run(tmp_path / "resumed", 20)
    assert resumed.returncode == 0, resumed.stderr
    a = latest_checkpoint(tmp_path / "straight")
    b = latest_checkpoint(tmp_path / "resumed")
    assert a.global_step == b.global_step == 20
    for filename in ("model.safetensors", "optimizer.safetensors"):
        x, y = load_file(str(a.path / filename)), load_file(str(b.path / filename))
        assert x.keys() == y.keys(), filename
        for name in x:
            assert torch.equal(x[name], y[name]), f"{filename}: {name}"
    weights = load_file(str(a.path / "model.safetensors"))
    assert {"target_actor.0.weight", "target_critic.0.weight"} <= set(weights)
    optimizer = load_file(str(a.path / "optimizer.safetensors"))
    for name in ("actor", "critic"):
        assert any(k.startswith(f"optimizer.{name}.state.") for k in optimizer), name
    assert a.state["optimizer"] == b.state["optimizer"]


@pytest.mark.slow
def test_torchrun_averages_both_networks_and_keeps_targets_equal(tmp_path):
    run_two_processes("tests.train.run_actor_critic_distributed", str(tmp_path))
    w0 = load_file(str(tmp_path / "weights_rank0.safetensors"))
    w1 = load_file(str(tmp_path / "weights_rank1.safetensors"))
    assert {"target_actor.0.weight", "target_critic.0.weight"} <= set(w0)
    for name in w0:  # networks and target networks, bitwise equal on both ranks
        assert torch.equal(w0[name], w1[name]), name
    # Averaged correctly: one process on both ranks' batches put together
    # (the mean loss over 2B examples) reaches the same weights.
    seed_everything(0)
    reference = TinyActorCritic()
    train_eval_model(
        reference,
        TransitionInput(batch_size=4, seed=0, ranks=(0, 1)),
        max_train_steps=4,
        model_dir=tmp_path / "reference",
        show_progress=False,
    )
    for name, value in reference.state_dict().items():
        torch.testing.assert_close(w0[name], value, rtol=1e-5, atol=1e-6, msg=name)
    # Not averaging is caught at the checkpoint, on every rank, naming the parameters.
    for rank in (0, 1):
        message = (tmp_path / f"forgetful_rank{rank}.txt").read_text()
        assert message.startswith("After step 4 the ranks' weights of TinyActorCritic differ"), (
            message
        )
        assert "actor.0.weight" in message and "average_gradients" in message
