"""One rank of a 2-process CPU training run; the test starts it with torchrun:
``torchrun --standalone --nproc_per_node=2 -m tests.train.run_distributed MODEL_DIR PATTERN``.

Each rank records the example ids it trained on and its final weights.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
import torch.distributed as dist
from safetensors.torch import save_file

from t2r import specs
from t2r.data import DefaultRecordInputGenerator
from t2r.train import seed_everything, train_eval_model

from .models import TinyRegression


class TinyRegressionWithId(TinyRegression):
    def get_feature_specification(self, mode):
        spec = super().get_feature_specification(mode)
        spec.id = specs.ExtendedTensorSpec((), torch.int64, name="id")
        return spec


class RecordingInput:
    """Passes batches through, remembering the ids this rank saw."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.ids: list[int] = []

    def set_specification_from_model(self, t2r_model, mode):
        self.inner.set_specification_from_model(t2r_model, mode)

    def create_dataset(self, mode):
        for features, labels in self.inner.create_dataset(mode):
            self.ids.extend(int(i) for i in features.id)
            yield features, labels


def main(model_dir: str, pattern: str) -> None:
    seed_everything(0)
    model = TinyRegressionWithId()
    recording = RecordingInput(
        DefaultRecordInputGenerator(
            file_patterns=pattern, batch_size=4, seed=0, shuffle_buffer_size=4
        )
    )
    train_eval_model(
        model,
        recording,
        max_train_steps=6,
        model_dir=model_dir,
        save_checkpoints_steps=6,
        device="cpu",
        show_progress=False,
    )
    rank = int(__import__("os").environ["RANK"])
    out = Path(model_dir)
    save_file(
        {k: v.contiguous() for k, v in model.state_dict().items()},
        str(out / f"weights_rank{rank}.safetensors"),
    )
    (out / f"ids_rank{rank}.json").write_text(json.dumps(recording.ids))
    assert not dist.is_initialized(), "train_eval_model should tear down the group it created"


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
