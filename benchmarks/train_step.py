"""Training steps/s of a Tensor2Robot pose-regression-sized model: eager vs torch.compile.

The model is T2R's pose_env network (conv tower + spatial softmax + MLP with
bias transform, t2r.layers.ImagesToFeatures + FeaturesToPose) on 64x64x3 uint8
images at batch 64, trained through AbstractT2RModel.train_step (validation,
preprocessing, forward, backward, Adam), as train_eval_model runs it.

    .venv/bin/python benchmarks/train_step.py [--steps 30] [--batch_size 64]

The first compiled steps include compilation (about 40 s here); the table
reports steady-state rates after warm-up, and the compile time separately.
"""

from __future__ import annotations

import argparse
import platform
import time

import torch

from t2r import specs
from t2r.layers import FeaturesToPose, ImagesToFeatures
from t2r.models import RegressionModel
from t2r.preprocessors import ImagePreprocessor


class PoseRegression(RegressionModel):
    default_preprocessor_cls = ImagePreprocessor

    def __init__(self) -> None:
        super().__init__(action_size=2)
        self.tower = ImagesToFeatures(normalizer="layer_norm")
        self.head = FeaturesToPose(in_features=64, num_outputs=2)

    def get_feature_specification(self, mode: str) -> specs.TensorSpecStruct:
        spec = specs.TensorSpecStruct()
        spec["state/image"] = specs.ExtendedTensorSpec(
            (64, 64, 3), torch.float32, name="state/image"
        )
        return spec

    def get_label_specification(self, mode: str) -> specs.TensorSpecStruct:
        return specs.TensorSpecStruct(
            target=specs.ExtendedTensorSpec((2,), torch.float32, name="target_pose")
        )

    def a_func(self, features, mode, config=None, params=None):
        points, _ = self.tower(features.state.image.permute(0, 3, 1, 2))
        return {"inference_output": self.head(points)}


def measure(compile_network: bool, steps: int, warmup: int, batch_size: int) -> tuple[float, float]:
    torch.manual_seed(0)
    model = PoseRegression()
    if compile_network:
        model.inference_network_fn = torch.compile(model.inference_network_fn)  # type: ignore[method-assign]
    optimizer = model.create_optimizer()
    features = {"state/image": torch.randint(0, 255, (batch_size, 64, 64, 3), dtype=torch.uint8)}
    labels = {"target": torch.rand(batch_size, 2)}
    start = time.perf_counter()
    for _ in range(warmup):
        model.train_step(features, labels, optimizer)
    warmup_secs = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(steps):
        model.train_step(features, labels, optimizer)
    return steps / (time.perf_counter() - start), warmup_secs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--batch_size", type=int, default=64)
    args = parser.parse_args()
    machine = platform.processor() or platform.machine()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {machine}")
    rows = []
    for name, compiled in (("eager", False), ("torch.compile", True)):
        rate, warm = measure(compiled, args.steps, args.warmup, args.batch_size)
        rows.append((name, rate, rate * args.batch_size, warm))
    eager = rows[0][1]
    print(f"\n| mode | steps/s | examples/s | vs eager | warm-up ({args.warmup} steps) |")
    print("|---|---|---|---|---|")
    for name, rate, examples, warm in rows:
        print(f"| {name} | {rate:.2f} | {examples:.0f} | {rate / eager:.2f}x | {warm:.1f} s |")


if __name__ == "__main__":
    main()
