"""Preprocessors run inside exported programs (PREDICT, dynamic batch size)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from t2r.modes import ModeKeys
from t2r.preprocessors import ImagePreprocessor, NoOpPreprocessor, PhotometricDistortion
from t2r.specs import ExtendedTensorSpec, SpecError


def feature_spec(mode: str) -> dict:
    del mode
    return {
        "state": ExtendedTensorSpec((16, 16, 3), torch.float32, name="image", data_format="jpeg"),
        "pose": ExtendedTensorSpec((2,), torch.float32, name="pose"),
    }


class Policy(nn.Module):
    """A stand-in for a model: preprocess, then a tiny network."""

    def __init__(self, preprocessor: nn.Module) -> None:
        super().__init__()
        self.preprocessor = preprocessor

    def forward(self, image: torch.Tensor, pose: torch.Tensor) -> torch.Tensor:
        features, _ = self.preprocessor({"state": image, "pose": pose}, None, ModeKeys.PREDICT)
        return features.state.mean(dim=(1, 2)) + features.pose.sum(-1, keepdim=True)


def export(policy: Policy, image: torch.Tensor, pose: torch.Tensor):
    batch = torch.export.Dim("batch", min=1, max=64)
    return torch.export.export(
        policy, (image, pose), dynamic_shapes={"image": {0: batch}, "pose": {0: batch}}
    )


def test_image_preprocessor_exports_with_a_dynamic_batch():
    pre = ImagePreprocessor(
        feature_spec, in_size=20, crop_size=12, distortion=PhotometricDistortion(), seed=0
    )
    policy = Policy(pre)
    image = torch.randint(0, 256, (3, 20, 20, 3), dtype=torch.uint8)
    pose = torch.rand(3, 2)
    program = export(policy, image, pose)
    for batch in (1, 5):
        image = torch.randint(0, 256, (batch, 20, 20, 3), dtype=torch.uint8)
        pose = torch.rand(batch, 2)
        torch.testing.assert_close(program.module()(image, pose), policy(image, pose))


def test_spec_mismatch_stops_export_with_a_named_error():
    policy = Policy(NoOpPreprocessor(feature_spec))
    with pytest.raises(SpecError, match=r"'pose' \(spec name 'pose'\).*\(2,\).*\(3,\)"):
        export(policy, torch.rand(2, 16, 16, 3), torch.rand(2, 3))
