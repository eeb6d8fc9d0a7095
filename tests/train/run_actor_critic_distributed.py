"""One rank of a 2-process CPU run of TinyActorCritic (a model that owns its
update); the test starts it with torchrun:
``torchrun --standalone --nproc_per_node=2 -m tests.train.run_actor_critic_distributed OUT``.

1. Trains TinyActorCritic for 4 steps, each rank on its own batches, and saves
   its final state_dict as ``OUT/weights_rank<r>.safetensors``.
2. Trains a copy that forgets to average its gradients and writes the error
   the loop raised (or "no error") to ``OUT/forgetful_rank<r>.txt``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import torch.distributed as dist
from safetensors.torch import save_file

from t2r.train import seed_everything, train_eval_model

from .models import TinyActorCritic, TransitionInput

STEPS = 4


def main(out: str) -> None:
    dist.init_process_group("gloo")  # shared by both runs; train_eval_model joins it
    rank = dist.get_rank()
    root = Path(out)
    # Different initial weights per rank: the loop must broadcast rank 0's.
    seed_everything(0 if rank == 0 else 123)
    model = TinyActorCritic()
    train_eval_model(
        model,
        TransitionInput(batch_size=4, seed=0),
        max_train_steps=STEPS,
        model_dir=root / "model",
        save_checkpoints_steps=STEPS,
        device="cpu",
        show_progress=False,
        log_every_n_steps=1,
    )
    weights = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(weights, str(root / f"weights_rank{rank}.safetensors"))

    seed_everything(0)
    forgetful = TinyActorCritic(average=False)
    try:
        train_eval_model(
            forgetful,
            TransitionInput(batch_size=4, seed=0),
            max_train_steps=STEPS,
            model_dir=root / "forgetful",
            save_checkpoints_steps=STEPS,
            device="cpu",
            show_progress=False,
        )
        message = "no error"
    except RuntimeError as e:
        message = str(e)
    (root / f"forgetful_rank{rank}.txt").write_text(message)
    dist.destroy_process_group()
    assert os.environ["WORLD_SIZE"] == "2"


if __name__ == "__main__":
    main(sys.argv[1])
