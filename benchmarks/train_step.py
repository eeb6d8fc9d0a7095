"""Training steps/s of a Tensor2Robot pose-regression-sized model: eager vs torch.compile.

The model is T2R's pose_env network (conv tower + spatial softmax + MLP with
bias transform, t2r.layers.ImagesToFeatures + FeaturesToPose) on 64x64x3 uint8
images at batch 64, trained through AbstractT2RModel.train_step (validation,
preprocessing, forward, backward, Adam), as train_eval_model runs it.

    .venv/bin/python benchmarks/train_step.py [--steps 10] [--rounds 7] [--batch_size 64]

The first compiled steps include compilation (about 40 s on a cold inductor
cache, seconds on a warm one); the table reports steady-state rates after
warm-up, timed in alternating windows so both modes see the same machine load.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from collections.abc import Callable

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


def build(compile_network: bool, batch_size: int) -> Callable[[], None]:
    """A closure running one train step of a fresh model on a fixed batch."""
    torch.manual_seed(0)
    model = PoseRegression()
    if compile_network:
        model.inference_network_fn = torch.compile(model.inference_network_fn)  # type: ignore[method-assign]
    optimizer = model.create_optimizer()
    features = {"state/image": torch.randint(0, 255, (batch_size, 64, 64, 3), dtype=torch.uint8)}
    labels = {"target": torch.rand(batch_size, 2)}
    return lambda: model.train_step(features, labels, optimizer)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=10, help="steps per timing window")
    parser.add_argument("--rounds", type=int, default=7, help="alternating windows per mode")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--batch_size", type=int, default=64)
    args = parser.parse_args()
    machine = platform.processor() or platform.machine()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {machine}")
    modes = {"eager": build(False, args.batch_size), "torch.compile": build(True, args.batch_size)}
    warmup = {}
    for name, step in modes.items():
        start = time.perf_counter()
        for _ in range(args.warmup):
            step()
        warmup[name] = time.perf_counter() - start
    # Windows alternate between the modes so that both see the same machine load.
    rates: dict[str, list[float]] = {name: [] for name in modes}
    for _ in range(args.rounds):
        for name, step in modes.items():
            start = time.perf_counter()
            for _ in range(args.steps):
                step()
            rates[name].append(args.steps / (time.perf_counter() - start))
    eager = statistics.median(rates["eager"])
    header = f"steps/s (median of {args.rounds})"
    print(f"\n| mode | {header} | examples/s | vs eager | warm-up ({args.warmup} steps) |")
    print("|---|---|---|---|---|")
    for name in modes:
        rate = statistics.median(rates[name])
        print(
            f"| {name} | {rate:.2f} | {rate * args.batch_size:.0f} | {rate / eager:.2f}x "
            f"| {warmup[name]:.1f} s |"
        )


if __name__ == "__main__":
    main()
