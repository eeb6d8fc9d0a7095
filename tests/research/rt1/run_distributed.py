"""One rank of a 2-process CPU RT-1 training run (gloo); the test starts it with
``torchrun --standalone --nproc_per_node=2 -m tests.research.rt1.run_distributed MODEL_DIR``.

Each rank writes its final weights and the first image it trained on.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import torch.distributed as dist
from safetensors.torch import save_file

from t2r.data import DefaultRandomInputGenerator
from t2r.research.rt1 import RT1Model
from t2r.train import seed_everything, train_eval_model


class _Recording(DefaultRandomInputGenerator):
    """Random batches; remembers the first image batch this rank drew."""

    first = None

    def create_dataset(self, mode):
        for features, labels in super().create_dataset(mode):
            if _Recording.first is None:
                _Recording.first = features["observation/image"].clone()
            yield features, labels


def main(model_dir: str) -> None:
    seed_everything(0)
    model = RT1Model()
    initial = {k: v.clone() for k, v in model.state_dict().items()}
    rank = int(os.environ["RANK"])
    train_eval_model(
        model,
        _Recording(batch_size=2, seed=rank),  # different data on each rank
        max_train_steps=3,
        model_dir=model_dir,
        save_checkpoints_steps=3,
        device="cpu",
        show_progress=False,
    )
    weights = {k: v.contiguous() for k, v in model.state_dict().items()}
    changed = {k: (weights[k] != initial[k]).any().reshape(1).float() for k in weights}
    save_file(weights, str(Path(model_dir) / f"weights_rank{rank}.safetensors"))
    assert _Recording.first is not None
    save_file(
        {"image": _Recording.first.contiguous(), **{f"changed/{k}": v for k, v in changed.items()}},
        str(Path(model_dir) / f"seen_rank{rank}.safetensors"),
    )
    assert not dist.is_initialized()


if __name__ == "__main__":
    main(sys.argv[1])
