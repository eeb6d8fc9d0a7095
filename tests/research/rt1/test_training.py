"""RT-1 under bf16 autocast (what train_eval_model(mixed_precision="bf16") does)."""

from __future__ import annotations

import torch

from t2r import specs
from t2r.modes import ModeKeys
from t2r.research.rt1 import RT1Model
from t2r.train import seed_everything


def test_rt1_trains_under_bf16_autocast():
    seed_everything(0)
    model = RT1Model()
    spec = model.get_feature_specification_for_packing(ModeKeys.TRAIN)
    features = specs.make_random_numpy(spec, batch_size=2, seed=0)
    labels = specs.make_random_numpy(
        model.get_label_specification_for_packing(ModeKeys.TRAIN), batch_size=2, seed=1
    )
    features = {k: torch.from_numpy(v) for k, v in features.items()}
    labels = {k: torch.from_numpy(v) for k, v in labels.items()}
    optimizer = model.create_optimizer()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        outputs = model.model_fn(features, labels, ModeKeys.TRAIN)
        step = model.train_step(features, labels, optimizer)
    assert outputs.inference_outputs["action_logits"].dtype == torch.bfloat16
    assert outputs.loss.dtype == torch.float32 and torch.isfinite(step.loss)
