"""A QT-Opt learner killed under torchrun is restarted by torchrun and resumes exactly
from its checkpoint: same final weights as a run that was never killed."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

from t2r.data import TFRecordWriter, create_serialize_tf_example_fn
from t2r.export import layout
from t2r.research.qtopt.transitions import labelled_specification
from t2r.specs import make_random_numpy
from t2r.train import latest_checkpoint

REPO_ROOT = Path(__file__).resolve().parents[3]
IMAGE_SIZE = 16
STEPS = 10


def write_labelled(directory: Path, files: int = 2, per_file: int = 24) -> None:
    """Random labelled transitions (target_q in [0, 1]), as the Bellman updater writes them."""
    spec = labelled_specification(IMAGE_SIZE)
    serialize = create_serialize_tf_example_fn(spec)
    directory.mkdir(parents=True)
    for index in range(files):
        values = make_random_numpy(spec, per_file, None, seed=index)
        values["target_q"] = (
            np.random.default_rng(index).uniform(size=(per_file, 1)).astype(np.float32)
        )
        with TFRecordWriter(str(directory / f"replay-{index}.tfrecord")) as writer:
            for row in range(per_file):
                writer.write(serialize({k: v[row] for k, v in values.items()}))


def run_learner(
    output: Path, steps_log: Path, kill_after: int | None
) -> subprocess.CompletedProcess:
    extra = ["--kill_after", str(kill_after)] if kill_after is not None else []
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=1",
        "--max-restarts=1", "-m", "tests.research.qtopt.run_learner",
        f"--output_dir={output}", f"--steps={STEPS}", "--batch_size=8",
        f"--image_size={IMAGE_SIZE}", "--cem_samples=8", "--network=tiny",
        "--export_every=4", "--checkpoint_every=4", "--fixed_input", "--log_every=100",
        "--steps_log", str(steps_log), *extra,
    ]  # fmt: skip
    return subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)


def final_weights(output: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    checkpoint = latest_checkpoint(output / "model")
    assert checkpoint is not None and checkpoint.global_step == STEPS, checkpoint
    return load_file(str(checkpoint.path / "model.safetensors"))


def test_a_killed_learner_is_restarted_by_torchrun_and_resumes_exactly(tmp_path):
    output = tmp_path / "run"
    write_labelled(output / "labelled")
    straight = run_learner(output, tmp_path / "straight.log", None)
    assert straight.returncode == 0, straight.stderr[-3000:]
    reference = final_weights(output)
    for produced in ("model", "export", "export_lagged"):  # the same paths, from scratch
        shutil.rmtree(output / produced)
    killed = run_learner(output, tmp_path / "killed.log", kill_after=6)
    assert killed.returncode == 0, killed.stderr[-3000:]
    steps = [
        tuple(map(int, line.split()))
        for line in (tmp_path / "killed.log").read_text().split("\n")
        if line
    ]
    # Attempt 0 ran steps 1..6 and died (its checkpoint: step 4); torchrun's restart
    # resumed at step 5, not from scratch and not from a later, unsaved state.
    assert steps == [(0, s) for s in range(1, 7)] + [(1, s) for s in range(5, STEPS + 1)]
    resumed = final_weights(output)
    assert reference.keys() == resumed.keys()
    assert all(torch.equal(reference[k], resumed[k]) for k in reference)
    # Exports flowed as in the uninterrupted run: the newest at the last step, the
    # lagged one a version behind.
    assert layout.list_versions(output / "export")[-1].version == STEPS
    lagged = [v.version for v in layout.list_versions(output / "export_lagged")]
    assert lagged and lagged[-1] < STEPS
