"""Small models and an in-memory input generator for the training-loop tests."""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import nn

from t2r import specs
from t2r.models import ClassificationModel, CriticModel, RegressionModel
from t2r.modes import ModeKeys
from t2r.preprocessors import ImagePreprocessor


class TinyRegression(RegressionModel):
    """y = W x + b with dropout, so RNG state matters for resume equality."""

    def __init__(self, dropout: float = 0.1, **kwargs) -> None:
        super().__init__(**kwargs)
        self.hidden = nn.Linear(3, 16)
        self.dropout = nn.Dropout(dropout)
        self.out = nn.Linear(16, 2)

    def get_feature_specification(self, mode: str) -> specs.TensorSpecStruct:
        return specs.TensorSpecStruct(x=specs.ExtendedTensorSpec((3,), torch.float32, name="x"))

    def get_label_specification(self, mode: str) -> specs.TensorSpecStruct:
        return specs.TensorSpecStruct(
            target=specs.ExtendedTensorSpec((2,), torch.float32, name="t")
        )

    def a_func(self, features, mode, config=None, params=None):
        hidden = self.dropout(torch.relu(self.hidden(features.x)))
        output = self.out(hidden)
        self.add_golden_tensor("output_mean", output.mean())
        return {"inference_output": output}


class SeededInput:
    """Endless batches that depend only on the seed and the batch index."""

    def __init__(self, batch_size: int = 8, seed: int = 0, num_eval_batches: int = 3) -> None:
        self.batch_size = batch_size
        self.seed = seed
        self.num_eval_batches = num_eval_batches
        self.mode: str | None = None

    def set_specification_from_model(self, t2r_model, mode: str) -> None:
        self.mode = mode

    def create_dataset(
        self, mode: str
    ) -> Iterator[tuple[specs.TensorSpecStruct, specs.TensorSpecStruct]]:
        generator = torch.Generator().manual_seed(self.seed + (0 if mode == ModeKeys.TRAIN else 1))
        count = 0
        while mode == ModeKeys.TRAIN or count < self.num_eval_batches:
            x = torch.rand(self.batch_size, 3, generator=generator)
            target = torch.stack([x[:, 0] + 2 * x[:, 1], x[:, 2] - x[:, 0]], dim=1)
            yield specs.TensorSpecStruct(x=x), specs.TensorSpecStruct(target=target)
            count += 1


class TinyClassifier(ClassificationModel):
    """Multi-label by default: random data has no valid class indices."""

    def __init__(self, multi_label: bool = True, **kwargs) -> None:
        super().__init__(num_classes=3, multi_label=multi_label, **kwargs)
        self.net = nn.Linear(4, 3)

    def get_feature_specification(self, mode: str) -> specs.TensorSpecStruct:
        return specs.TensorSpecStruct(x=specs.ExtendedTensorSpec((4,), torch.float32, name="x"))

    def get_label_specification(self, mode: str) -> specs.TensorSpecStruct:
        if self.multi_label:
            target = specs.ExtendedTensorSpec((3,), torch.float32, name="label")
        else:
            target = specs.ExtendedTensorSpec((), torch.int64, name="label")
        return specs.TensorSpecStruct(target=target)

    def a_func(self, features, mode, config=None, params=None):
        return {"logits": self.net(features.x)}


class TinyCritic(CriticModel):
    """Q(image, action) with a uint8 camera image turned to float by ImagePreprocessor."""

    default_preprocessor_cls = ImagePreprocessor

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.image = nn.Conv2d(3, 4, 3, stride=2)
        self.q = nn.Linear(4 + 2, 1)

    def get_state_specification(self) -> specs.TensorSpecStruct:
        return specs.TensorSpecStruct(
            image=specs.ExtendedTensorSpec((8, 8, 3), torch.float32, name="state/image")
        )

    def get_action_specification(self) -> specs.TensorSpecStruct:
        return specs.TensorSpecStruct(
            pose=specs.ExtendedTensorSpec((2,), torch.float32, name="pose")
        )

    def get_label_specification(self, mode: str) -> specs.TensorSpecStruct:
        return specs.TensorSpecStruct(
            reward=specs.ExtendedTensorSpec((1,), torch.float32, name="reward")
        )

    def q_func(self, features, mode, config=None, params=None):
        image = self.image(features.state.image.permute(0, 3, 1, 2)).mean(dim=(2, 3))
        q = self.q(torch.cat([image, features.action.pose], dim=-1))
        return {"q_predicted": q}
