"""Models for the export, predictor and policy tests.

The subprocess tests check that a process loading an export never imports
this module: it is the "model code" a robot does not have.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from t2r import specs
from t2r.layers import FeaturesToPose, ImagesToFeatures
from t2r.models import CriticModel, RegressionModel
from t2r.preprocessors import ImagePreprocessor

MODULE_NAME = __name__


class PoseModel(RegressionModel):
    """pose_env's regression network: a uint8 image (+ gripper pose) -> a 2-D pose.

    The preprocessor (uint8 -> float image) runs inside exported programs.
    """

    default_preprocessor_cls = ImagePreprocessor

    def __init__(self, image_size: int = 36, channels: int = 8, **kwargs) -> None:
        self.image_size = image_size
        super().__init__(action_size=2, **kwargs)
        self.tower = ImagesToFeatures(num_channels_per_block=channels, num_output_maps=channels)
        self.head = FeaturesToPose(2 * channels, 2, hidden_dim=32, aux_input_size=2)

    def get_feature_specification(self, mode: str) -> specs.TensorSpecStruct:
        size = self.image_size
        spec = specs.TensorSpecStruct()
        spec["state/image"] = specs.ExtendedTensorSpec(
            (size, size, 3), torch.float32, name="state/image", data_format="jpeg"
        )
        spec["state/gripper"] = specs.ExtendedTensorSpec((2,), torch.float32, name="gripper")
        return spec

    def get_label_specification(self, mode: str) -> specs.TensorSpecStruct:
        return specs.TensorSpecStruct(
            target=specs.ExtendedTensorSpec((2,), torch.float32, name="target_pose")
        )

    def a_func(self, features, mode, config=None, params=None):
        images = features.state.image.permute(0, 3, 1, 2)
        points, _ = self.tower(images)
        return {"inference_output": self.head(points, features.state.gripper)}

    def pack_features(self, state, context=None, timestep=None) -> dict[str, np.ndarray]:
        image, gripper = state
        return {"state/image": image, "state/gripper": gripper}


class TinyModel(RegressionModel):
    """y = W2 relu(W1 x): small enough to export in a fraction of a second."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.hidden = nn.Linear(3, 8)
        self.out = nn.Linear(8, 2)

    def get_feature_specification(self, mode: str) -> specs.TensorSpecStruct:
        return specs.TensorSpecStruct(x=specs.ExtendedTensorSpec((3,), torch.float32, name="x"))

    def get_label_specification(self, mode: str) -> specs.TensorSpecStruct:
        return specs.TensorSpecStruct(
            target=specs.ExtendedTensorSpec((2,), torch.float32, name="t")
        )

    def a_func(self, features, mode, config=None, params=None):
        return {"inference_output": self.out(torch.relu(self.hidden(features.x)))}

    def pack_features(self, state, context=None, timestep=None) -> dict[str, np.ndarray]:
        return {"x": np.asarray(state, np.float32)}


class DataDependentModel(TinyModel):
    """Branches on the data: torch.export cannot capture it, TorchScript tracing can."""

    def a_func(self, features, mode, config=None, params=None):
        hidden = self.hidden(features.x)
        if bool((features.x >= 0).all()):
            hidden = torch.relu(hidden)
        return {"inference_output": self.out(hidden)}


class NoOnnxModel(TinyModel):
    """Uses an op ONNX has no conversion for (a 2x2 matrix inverse)."""

    def a_func(self, features, mode, config=None, params=None):
        out = self.out(torch.relu(self.hidden(features.x)))
        matrix = torch.diag_embed(out) + 3.0 * torch.eye(2)
        return {"inference_output": torch.linalg.inv(matrix).diagonal(dim1=-2, dim2=-1)}


class QuadraticCritic(CriticModel):
    """Q(target, action) = -scale * |action - target|^2, maximal at action = target."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.scale = nn.Parameter(torch.ones(()))

    def get_state_specification(self) -> specs.TensorSpecStruct:
        return specs.TensorSpecStruct(
            target=specs.ExtendedTensorSpec((2,), torch.float32, name="target")
        )

    def get_action_specification(self) -> specs.TensorSpecStruct:
        return specs.TensorSpecStruct(
            action=specs.ExtendedTensorSpec((2,), torch.float32, name="action")
        )

    def get_label_specification(self, mode: str) -> specs.TensorSpecStruct:
        return specs.TensorSpecStruct(
            reward=specs.ExtendedTensorSpec((1,), torch.float32, name="reward")
        )

    def q_func(self, features, mode, config=None, params=None):
        diff = features.action.action - features.state.target
        return {"q_predicted": -self.scale * (diff**2).sum(-1)}

    def pack_features(self, state, context, timestep, samples) -> dict[str, np.ndarray]:
        samples = np.asarray(samples, np.float32)
        target = np.broadcast_to(np.asarray(state, np.float32), samples.shape)
        return {"state/target": target, "action/action": samples}


class CountingModel(TinyModel):
    """Counts its calls in a buffer: its program mutates state."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.register_buffer("calls", torch.zeros(()))

    def a_func(self, features, mode, config=None, params=None):
        self.calls.add_(1)
        return super().a_func(features, mode, config, params)
