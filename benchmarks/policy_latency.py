"""Policy latency: numpy observation -> action at batch 1, exported vs eager vs checkpoint.

The model is pose_env's regression network at its real size: a 64x64x3 uint8
image, the ImagePreprocessor (uint8 -> float) and T2R's vision tower
(`ImagesToFeatures`) and pose head (`FeaturesToPose`). Each row times the
whole step a robot loop does, one observation at a time:

* exported program: `RegressionPolicy` + `ExportedModelPredictor` (torch.export
  ``.pt2`` loaded without the model code; inputs checked against the assets).
* ONNX Runtime: the same policy with `OnnxPredictor` (the peer a user might pick).
* eager model: numpy -> torch -> ``model.model_fn(..., PREDICT)`` (with its
  spec validation) -> numpy, under ``torch.inference_mode``.
* CheckpointPredictor: `RegressionPolicy` + `CheckpointPredictor` (the eager
  model behind the predictor's input checks).
* network only: ``a_func`` on an already preprocessed float tensor: no
  numpy, no checks, no preprocessing; the floor the others approach.

Run: ``.venv/bin/python benchmarks/policy_latency.py`` (``--help`` for options).
"""

from __future__ import annotations

import argparse
import datetime
import logging
import platform
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from t2r import specs
from t2r.export import export_saved_model
from t2r.layers import FeaturesToPose, ImagesToFeatures
from t2r.models import RegressionModel
from t2r.modes import ModeKeys
from t2r.policies import RegressionPolicy
from t2r.predictors import CheckpointPredictor, ExportedModelPredictor, OnnxPredictor
from t2r.preprocessors import ImagePreprocessor
from t2r.train import TrainingState, save_checkpoint


class PoseEnvRegressionModel(RegressionModel):
    """T2R's PoseEnvRegressionModel: image -> feature points -> (x, y) pose."""

    default_preprocessor_cls = ImagePreprocessor

    def __init__(self, image_size: int = 64, **kwargs) -> None:
        self.image_size = image_size
        super().__init__(action_size=2, **kwargs)
        self.tower = ImagesToFeatures()
        self.head = FeaturesToPose(self.tower.out_features, 2)

    def get_feature_specification(self, mode: str) -> specs.TensorSpecStruct:
        size = self.image_size
        spec = specs.TensorSpecStruct()
        spec["state/image"] = specs.ExtendedTensorSpec(
            (size, size, 3), torch.float32, name="state/image", data_format="jpeg"
        )
        return spec

    def get_label_specification(self, mode: str) -> specs.TensorSpecStruct:
        return specs.TensorSpecStruct(
            target_pose=specs.ExtendedTensorSpec((2,), torch.float32, name="target_pose")
        )

    def a_func(self, features, mode, config=None, params=None):
        points, _ = self.tower(features.state.image.permute(0, 3, 1, 2))
        return {"inference_output": self.head(points)}

    def pack_features(self, state, context=None, timestep=None):
        return {"state/image": state}


def _time(step: Callable[[], object], iterations: int, warmup: int) -> list[float]:
    for _ in range(warmup):
        step()
    times = []
    for _ in range(iterations):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return times


def _cpu_name() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.CalledProcessError):
        pass
    return platform.processor() or "unknown CPU"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=2000)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: all)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds per variant")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = PoseEnvRegressionModel().eval()
    observation = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        export_saved_model(model, root / "export", global_step=1, export_onnx=True)
        save_checkpoint(root / "model", model, TrainingState(global_step=1))

        exported = ExportedModelPredictor(root / "export", timeout=0)
        onnx = OnnxPredictor(root / "export", timeout=0)
        checkpoint = CheckpointPredictor(PoseEnvRegressionModel(), root / "model", timeout=0)
        for predictor in (exported, onnx, checkpoint):
            assert predictor.restore()

        def eager_step() -> np.ndarray:
            with torch.inference_mode():
                features = {"state/image": torch.from_numpy(observation)[None]}
                outputs = model.model_fn(features, None, ModeKeys.PREDICT)
                return outputs.export_outputs["inference_output"][0].numpy()

        floor_input = specs.TensorSpecStruct(
            {"state/image": torch.from_numpy(observation)[None].float() / 255.0}
        )

        def network_step() -> torch.Tensor:
            with torch.inference_mode():
                return model.a_func(floor_input, ModeKeys.PREDICT)["inference_output"]

        exported_policy = RegressionPolicy(model, predictor=exported)
        onnx_policy = RegressionPolicy(model, predictor=onnx)
        checkpoint_policy = RegressionPolicy(model, predictor=checkpoint)
        steps: dict[str, Callable[[], object]] = {
            "exported program (torch.export)": lambda: exported_policy.select_action(observation),
            "ONNX Runtime (OnnxPredictor)": lambda: onnx_policy.select_action(observation),
            "eager model (model_fn)": eager_step,
            "CheckpointPredictor": lambda: checkpoint_policy.select_action(observation),
            "network only (a_func, float input)": network_step,
        }
        reference = eager_step()
        for name, step in steps.items():
            if "network" not in name:
                np.testing.assert_allclose(np.asarray(step()), reference, atol=1e-4, err_msg=name)

        times: dict[str, list[float]] = {name: [] for name in steps}
        per_round = max(args.iterations // args.rounds, 1)
        for _ in range(args.rounds):  # interleaved, so background load hits all alike
            for name, step in steps.items():
                times[name] += _time(step, per_round, args.warmup // args.rounds)

    eager_median = statistics.median(times["eager model (model_fn)"])
    date = datetime.date.today().isoformat()
    print(f"Policy latency, batch 1, 64x64x3 uint8 -> 2-D pose ({date})")
    print(
        f"CPU: {_cpu_name()}, torch threads: {torch.get_num_threads()}, torch {torch.__version__}"
    )
    print(f"{per_round * args.rounds} timed steps per row\n")
    print("| path | median (us) | p90 (us) | actions/s | median / eager |")
    print("|---|---:|---:|---:|---:|")
    for name, samples in times.items():
        median = statistics.median(samples)
        p90 = float(np.percentile(samples, 90))
        rate = len(samples) / sum(samples)
        print(
            f"| {name} | {median * 1e6:.0f} | {p90 * 1e6:.0f} | {rate:.0f} | "
            f"{median / eager_median:.2f}x |"
        )


if __name__ == "__main__":
    main()
