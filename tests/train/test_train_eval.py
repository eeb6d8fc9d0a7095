from __future__ import annotations

import json
import math
import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from t2r import specs
from t2r.data import TFRecordWriter, create_serialize_tf_example_fn
from t2r.train import (
    CallbackHook,
    GoldenValuesHookBuilder,
    HookBuilder,
    Preempted,
    latest_checkpoint,
    list_checkpoints,
    read_metrics,
    seed_everything,
    train_eval_model,
)

from . import run_records, run_tiny
from .models import SeededInput, TinyRegression

REPO_ROOT = Path(__file__).resolve().parents[2]


class Recorder(HookBuilder):
    def __init__(self) -> None:
        self.events: list[tuple] = []

    def create_hooks(self, t2r_model, model_dir):
        return [
            CallbackHook(
                begin=lambda step: self.events.append(("begin", step)),
                after_checkpoint=lambda ckpt: self.events.append(("checkpoint", ckpt.global_step)),
                after_eval=lambda step, metrics: self.events.append(("eval", step)),
                end=lambda step: self.events.append(("end", step)),
            )
        ]


def _train(model_dir, max_steps, **kwargs):
    seed_everything(0)
    model = TinyRegression()
    kwargs.setdefault("show_progress", False)
    metrics = train_eval_model(
        model, SeededInput(), max_train_steps=max_steps, model_dir=model_dir, **kwargs
    )
    return model, metrics


def test_train_and_eval_writes_checkpoints_summaries_and_eval(tmp_path):
    recorder = Recorder()
    _, metrics = _train(
        tmp_path,
        20,
        input_generator_eval=SeededInput(),
        save_checkpoints_steps=10,
        log_every_n_steps=5,
        train_hook_builders=[recorder],
    )
    assert [c.global_step for c in list_checkpoints(tmp_path)] == [10, 20]
    train_records = read_metrics(tmp_path)
    assert [r["step"] for r in train_records] == [5, 10, 15, 20]
    assert {"loss", "learning_rate", "steps_per_sec", "examples_per_sec"} <= set(train_records[0])
    eval_records = read_metrics(tmp_path / "eval")
    assert [r["step"] for r in eval_records] == [10, 20]
    assert metrics["loss"] == pytest.approx(eval_records[-1]["loss"])
    assert any(p.name.startswith("events.out.tfevents") for p in (tmp_path / "eval").iterdir())
    assert recorder.events == [
        ("begin", 0),
        ("checkpoint", 10),
        ("eval", 10),
        ("checkpoint", 20),
        ("eval", 20),
        ("end", 20),
    ]


def test_resume_continues_from_the_newest_checkpoint(tmp_path):
    _train(tmp_path, 10, save_checkpoints_steps=5)
    recorder = Recorder()
    _train(tmp_path, 15, save_checkpoints_steps=5, train_hook_builders=[recorder])
    assert recorder.events[0] == ("begin", 10)
    assert latest_checkpoint(tmp_path).global_step == 15
    # Nothing more to do: returns without training.
    recorder = Recorder()
    _train(tmp_path, 15, save_checkpoints_steps=5, train_hook_builders=[recorder])
    assert recorder.events == []


def _weights(model_dir) -> dict[str, torch.Tensor]:
    return load_file(str(latest_checkpoint(model_dir).path / "model.safetensors"))


def _run(model_dir, max_steps, kill_at=None):
    args = [sys.executable, "-m", "tests.train.run_tiny", str(model_dir), str(max_steps)]
    if kill_at:
        args.append(str(kill_at))
    return subprocess.run(args, cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)


@pytest.mark.slow
def test_killed_and_resumed_run_matches_uninterrupted_bitwise(tmp_path):
    # The uninterrupted run in this process (run_tiny's own code), the killed one and
    # its resume in fresh processes: equal weights also show that a run does not
    # depend on the process it runs in.
    run_tiny.main(str(tmp_path / "straight"), 30, None, actor_critic=False)
    killed = _run(tmp_path / "resumed", 30, kill_at=17)
    assert killed.returncode == -signal.SIGKILL
    assert latest_checkpoint(tmp_path / "resumed").global_step == 15
    resumed = _run(tmp_path / "resumed", 30)
    assert resumed.returncode == 0, resumed.stderr
    a, b = _weights(tmp_path / "straight"), _weights(tmp_path / "resumed")
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name


def test_same_seed_gives_identical_weights_in_process(tmp_path):
    a, _ = _train(tmp_path / "a", 12, deterministic=True, save_checkpoints_steps=12)
    b, _ = _train(tmp_path / "b", 12, deterministic=True, save_checkpoints_steps=12)
    for (name, x), y in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(x, y), name


def test_eval_only_evaluates_each_checkpoint(tmp_path):
    _train(tmp_path, 10, save_checkpoints_steps=5, keep_checkpoint_max=5)
    seed_everything(1)
    metrics = train_eval_model(
        TinyRegression(),
        input_generator_eval=SeededInput(),
        max_train_steps=10,
        model_dir=tmp_path,
        eval_steps=2,
        continuous_eval_timeout_secs=0.1,
    )
    records = read_metrics(tmp_path / "eval")
    assert [r["step"] for r in records] == [10]  # the newest of those waiting
    assert records[0]["loss"] == pytest.approx(metrics["loss"])


def test_eval_only_times_out_without_checkpoints(tmp_path):
    metrics = train_eval_model(
        TinyRegression(),
        input_generator_eval=SeededInput(),
        model_dir=tmp_path,
        continuous_eval_timeout_secs=0.1,
    )
    assert metrics == {}


class BadInput(SeededInput):
    def create_dataset(self, mode):
        for features, labels in super().create_dataset(mode):
            yield specs.TensorSpecStruct(x=features.x[:, :2]), labels


def test_mismatched_data_stops_before_the_first_step(tmp_path):
    seed_everything(0)
    model = TinyRegression()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(specs.SpecError) as info:
        train_eval_model(
            model, BadInput(), max_train_steps=5, model_dir=tmp_path, show_progress=False
        )
    assert str(info.value) == (
        "Shape mismatch at 'x' (spec name 'x'): expected shape (3,) dtype torch.float32, "
        "got shape (2,) dtype torch.float32."
    )
    assert all(torch.equal(before[k], v.cpu()) for k, v in model.state_dict().items())
    assert list_checkpoints(tmp_path) == []


class NanInput(SeededInput):
    def create_dataset(self, mode):
        for features, labels in super().create_dataset(mode):
            yield features, specs.TensorSpecStruct(target=labels.target * math.nan)


def test_non_finite_loss_names_the_step(tmp_path):
    # NaN from the first step; found at the first logging step, naming step 1.
    with pytest.raises(FloatingPointError, match="at step 1;"):
        _train_with(tmp_path, NanInput(), log_every_n_steps=2)


def _train_with(tmp_path, generator, **kwargs):
    seed_everything(0)
    return train_eval_model(
        TinyRegression(),
        generator,
        max_train_steps=4,
        model_dir=tmp_path,
        show_progress=False,
        **kwargs,
    )


def test_golden_values_are_recorded(tmp_path):
    _train(tmp_path, 4, train_hook_builders=[GoldenValuesHookBuilder(num_steps=2)])
    golden = load_file(str(tmp_path / "golden_values.safetensors"))
    assert sorted(golden) == ["output_mean/1", "output_mean/2"]


def test_overfits_a_fixed_batch(tmp_path):
    class FixedBatch(SeededInput):
        def create_dataset(self, mode):
            batch = next(iter(super().create_dataset(mode)))
            while True:
                yield batch

    seed_everything(0)
    model = TinyRegression(dropout=0.0, create_optimizer_fn=lambda p: torch.optim.Adam(p, lr=1e-2))
    train_eval_model(
        model,
        FixedBatch(),
        max_train_steps=300,
        model_dir=tmp_path,
        log_every_n_steps=10,
        show_progress=False,
        save_checkpoints_steps=300,
    )
    losses = [r["loss"] for r in read_metrics(tmp_path)]
    assert losses[-1] < 0.01 * losses[0]


def test_bf16_autocast_runs(tmp_path):
    _, metrics = _train(tmp_path, 4, input_generator_eval=SeededInput(), mixed_precision="bf16")
    assert math.isfinite(metrics["loss"])
    with pytest.raises(ValueError, match="bf16"):
        _train(tmp_path / "x", 2, mixed_precision="fp8")


def test_needs_a_generator():
    with pytest.raises(ValueError, match="input_generator"):
        train_eval_model(TinyRegression())


def test_state_json_records_input_position(tmp_path):
    _train(tmp_path, 5, save_checkpoints_steps=5)
    state = json.loads((latest_checkpoint(tmp_path).path / "state.json").read_text())
    assert state["global_step"] == 5 and state["input_position"] == 5


def test_sigterm_saves_a_checkpoint(tmp_path):
    class TermAt(HookBuilder):
        def create_hooks(self, t2r_model, model_dir):
            def after_step(step, scalars):
                if step == 3:
                    os.kill(os.getpid(), signal.SIGTERM)

            return [CallbackHook(after_step=after_step)]

    with pytest.raises(Preempted, match="SIGTERM"):
        _train(tmp_path, 10, save_checkpoints_steps=100, train_hook_builders=[TermAt()])
    assert latest_checkpoint(tmp_path).global_step == 3


def _write_records(directory: Path, num_files: int = 3, per_file: int = 20) -> str:
    """TinyRegression's x -> target records, in several TFRecord files."""
    model = TinyRegression()
    serialize = create_serialize_tf_example_fn(
        model.get_feature_specification("train"), model.get_label_specification("train")
    )
    generator = torch.Generator().manual_seed(7)
    directory.mkdir()
    for f in range(num_files):
        with TFRecordWriter(directory / f"data-{f}.tfrecord") as writer:
            for _ in range(per_file):
                x = torch.rand(3, generator=generator)
                target = torch.stack([x[0] + 2 * x[1], x[2] - x[0]])
                writer.write(serialize({"x": x.numpy()}, {"target": target.numpy()}))
    return str(directory / "data-*.tfrecord")


def _run_records(model_dir, pattern, max_steps, kind, workers, kill_at=None):
    args = [sys.executable, "-m", "tests.train.run_records", str(model_dir), pattern]
    args += [str(max_steps), kind, str(workers)]
    if kill_at:
        args.append(str(kill_at))
    return subprocess.run(args, cwd=REPO_ROOT, capture_output=True, text=True, timeout=240)


@pytest.mark.slow
@pytest.mark.parametrize(("kind", "workers"), [("dropout", 0), ("noise", 2)])
def test_default_record_generator_resumes_bitwise_after_sigkill(tmp_path, kind, workers):
    """No seed on the generator: the run's seed decides the data order, in every
    worker and after a restart; the model's RNG stream (dropout, or torch.randn in
    its train_step) continues exactly; an eval after each checkpoint changes nothing."""
    pattern = _write_records(tmp_path / "data")
    kill_at = random.Random().randint(6, 19)  # a random step, printed on failure
    # The uninterrupted run in this process, the killed run and its resume each in a
    # fresh one: equal weights also show that the order does not depend on the process.
    run_records.main(str(tmp_path / "straight"), pattern, 20, kind, workers, None)
    straight = _weights(tmp_path / "straight")
    killed = _run_records(tmp_path / "resumed", pattern, 20, kind, workers, kill_at=kill_at)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert latest_checkpoint(tmp_path / "resumed").global_step == (kill_at - 1) // 5 * 5
    resumed = _run_records(tmp_path / "resumed", pattern, 20, kind, workers)
    assert resumed.returncode == 0, resumed.stderr
    assert "Input position restored" in resumed.stderr
    weights = _weights(tmp_path / "resumed")
    assert weights.keys() == straight.keys()
    for key in straight:
        assert torch.equal(straight[key], weights[key]), (key, kill_at)
