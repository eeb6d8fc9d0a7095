"""One rank of a 2-process CPU run of BC-RNN-GMM through AlgoModel; the test starts it
with ``torchrun --standalone --nproc_per_node=2 -m tests.robomimic.run_distributed OUT``.

Trains 3 steps, each rank on its own batches (different initial weights per rank: the
loop broadcasts rank 0's), and saves the final state_dict as
``OUT/weights_rank<r>.safetensors``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch.distributed as dist
from safetensors.torch import save_file

from t2r.robomimic.model import AlgoModel
from t2r.train import seed_everything, train_eval_model

from .models import AC_DIM, LOW_DIM_SHAPES, LinearDemoInput, tiny_config

STEPS = 3


def main(out: str) -> None:
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    seed_everything(0 if rank == 0 else 123)
    model = AlgoModel(tiny_config("bc_rnn_gmm"), LOW_DIM_SHAPES, AC_DIM)
    train_eval_model(
        model,
        LinearDemoInput(batch_size=4, seed=0),
        max_train_steps=STEPS,
        model_dir=Path(out) / "model",
        save_checkpoints_steps=STEPS,
        device="cpu",
        show_progress=False,
    )
    weights = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(weights, str(Path(out) / f"weights_rank{rank}.safetensors"))
    dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1])
