"""Every layer runs forward and backward on CUDA and agrees with CPU (skipped without a GPU)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

from t2r.layers import (
    FeaturesToPose,
    ImagesToFeatures,
    MDNHead,
    SpatialSoftmax,
    film_resnet18,
    film_resnet50,
    mdn_nll,
)

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


def _first(out: object) -> torch.Tensor:
    if isinstance(out, torch.Tensor):
        return out
    assert isinstance(out, tuple)
    return out[0]


CASES: dict[str, tuple[Callable[[], torch.nn.Module], Callable[[], tuple[torch.Tensor, ...]]]] = {
    "spatial_softmax": (SpatialSoftmax, lambda: (torch.randn(2, 4, 9, 9),)),
    "images_to_features": (
        lambda: ImagesToFeatures(film_embedding_size=3),
        lambda: (torch.rand(2, 3, 64, 64), torch.randn(2, 3)),
    ),
    "features_to_pose": (lambda: FeaturesToPose(64, 2), lambda: (torch.randn(2, 64),)),
    "resnet18_v1": (
        lambda: film_resnet18(film_embedding_size=3),
        lambda: (torch.rand(2, 3, 64, 64), torch.randn(2, 3)),
    ),
    "resnet50_v2": (
        lambda: film_resnet50(10, version=2),
        lambda: (torch.rand(2, 3, 64, 64),),
    ),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_cuda_matches_cpu(name: str) -> None:
    make_module, make_inputs = CASES[name]
    torch.manual_seed(0)
    module = make_module().eval()
    inputs = make_inputs()
    want = _first(module(*inputs))
    module_cuda = module.to("cuda")
    got = _first(module_cuda(*(x.to("cuda") for x in inputs)))
    assert got.device.type == "cuda"
    got.float().sum().backward()
    assert all(p.grad is None or p.grad.device.type == "cuda" for p in module_cuda.parameters())
    # Loose tolerance: cuDNN may use TF32 for convolutions.
    torch.testing.assert_close(got.cpu(), want.detach(), atol=2e-2, rtol=2e-2)


def test_mdn_on_cuda() -> None:
    torch.manual_seed(0)
    head = MDNHead(8, 2, 3).to("cuda")
    params = head(torch.randn(4, 8, device="cuda"))
    loss = mdn_nll(params, torch.randn(4, 2, device="cuda"))
    loss.backward()
    assert loss.device.type == "cuda" and torch.isfinite(loss)
