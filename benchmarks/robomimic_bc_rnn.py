"""BC-RNN-GMM training throughput (samples/s) at robomimic's BC-RNN setting.

The setting: robomimic's ``bc`` config with ``algo.rnn`` (LSTM, 2 layers of 400,
horizon 10), ``algo.gmm`` (5 modes), ``actor_layer_dims = []``, batch 100,
``train.seq_length`` 10, Lift low-dim observations (``robot0_eef_pos``,
``robot0_eef_quat``, ``robot0_gripper_qpos``, ``object``), on the CPU. A sample is
one sequence of the batch (robomimic's unit: 100 samples per update).

Rows:

* ``train_step``: `AlgoModel.train_step` on batches already in memory: the
  algorithm's forward, backward and Adam step (the compute).
* ``train_eval_model``: ``t2r robomimic train``'s loop (the input generator over the
  HDF5 file, the update, the scalar summaries) timed between its steps from a
  hook, so start-up and the final checkpoint are not in the rate; a checkpoint in the
  window is.
* ``raw LSTM``: a bare ``nn.LSTM(19, 400, 2)`` + linear GMM head, forward, backward,
  Adam at the same sizes: what the network alone costs here (the floor of the rows
  above).

Beside each row: the ratio to robomimic 0.5's own rate on a 2-core machine like
this one (413-514 samples/s, a reference figure: robomimic is not installable here).
With ``--bf16`` the rows run under CPU bfloat16 autocast as well.

    .venv/bin/python benchmarks/robomimic_bc_rnn.py [--dataset lift.hdf5] [--steps 40]

Without ``--dataset`` it writes 20 scripted Lift demos to a temporary file first
(robosuite needed; ~20 s).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import os
import platform
import statistics
import tempfile
import time
from typing import Any

import torch

from t2r.robomimic.config import Config, load_config

ROBOMIMIC_REFERENCE = (413.0, 514.0)
BATCH = 100
SEQ = 10


def bc_rnn_gmm_config(dataset: str, output_dir: str) -> dict[str, Any]:
    """robomimic's BC-RNN-GMM low-dim config (the values robomimic's templates use)."""
    return {
        "algo_name": "bc",
        "experiment": {
            "name": "bench_bc_rnn_gmm",
            "validate": False,
            "render_video": False,
            "epoch_every_n_steps": 100,
            "rollout": {"enabled": False},
        },
        "train": {
            "data": dataset,
            "output_dir": output_dir,
            "batch_size": BATCH,
            "seq_length": SEQ,
            "num_epochs": 1,
            "hdf5_cache_mode": "all",
            "hdf5_load_next_obs": False,
            "cuda": False,
            "seed": 1,
        },
        "algo": {
            "actor_layer_dims": [],
            "gmm": {"enabled": True, "num_modes": 5, "min_std": 0.0001},
            "rnn": {
                "enabled": True,
                "horizon": SEQ,
                "hidden_dim": 400,
                "rnn_type": "LSTM",
                "num_layers": 2,
            },
        },
    }


def _autocast(bf16: bool) -> contextlib.AbstractContextManager:
    if not bf16:
        return contextlib.nullcontext()
    return torch.autocast("cpu", dtype=torch.bfloat16)


def time_train_step(
    config: Config, dataset: str, steps: int, bf16: bool = False, prefetch: int = 8
) -> float:
    """samples/s of AlgoModel.train_step on `prefetch` batches already in memory (3 warm-up
    updates first). Shared with robomimic_offline_rl.py."""
    from t2r.modes import ModeKeys
    from t2r.robomimic.training import build_model_and_inputs

    parts = build_model_and_inputs(config, dataset)
    model, inputs = parts.model, parts.train_input
    inputs.set_specification_from_model(model, ModeKeys.TRAIN)
    inputs.set_default_seed(0)
    batches = iter(inputs.create_dataset(ModeKeys.TRAIN))
    prefetched = [next(batches) for _ in range(prefetch)]
    optimizer = model.create_optimizer()
    model.train()
    warmup = 3
    with _autocast(bf16):
        for i in range(warmup):
            model.train_step(*prefetched[i % prefetch], optimizer)
        start = time.perf_counter()
        for i in range(steps):
            model.train_step(*prefetched[i % prefetch], optimizer)
    return int(config.train.batch_size) * steps / (time.perf_counter() - start)


def time_train_eval_model(config: Config, dataset: str, steps: int, bf16: bool = False) -> float:
    """samples/s of train_eval_model's loop over the HDF5 input (a hook times the steps,
    after 3 warm-up steps). Shared with robomimic_offline_rl.py."""
    from t2r.robomimic.training import build_model_and_inputs
    from t2r.train import train_eval_model
    from t2r.train.hooks import CallbackHook, HookBuilder

    warmup = 3
    stamps: dict[int, float] = {}

    class Builder(HookBuilder):
        def create_hooks(self, t2r_model: Any, model_dir: Any) -> list[Any]:
            return [
                CallbackHook(after_step=lambda step, _: stamps.update({step: time.perf_counter()}))
            ]

    parts = build_model_and_inputs(config, dataset)
    with tempfile.TemporaryDirectory() as model_dir:
        train_eval_model(
            parts.model,
            input_generator_train=parts.train_input,
            max_train_steps=warmup + steps,
            model_dir=model_dir,
            save_checkpoints_steps=10_000,
            train_hook_builders=[Builder()],
            device="cpu",
            mixed_precision="bf16" if bf16 else None,
            log_every_n_steps=10_000,
            show_progress=False,
        )
    batch = int(config.train.batch_size)
    return batch * steps / (stamps[warmup + steps] - stamps[warmup])


def time_raw_lstm(obs_dim: int, ac_dim: int, steps: int, bf16: bool) -> float:
    """samples/s of a bare LSTM(obs_dim, 400, 2) + GMM-sized head, fwd + bwd + Adam."""
    torch.manual_seed(0)
    lstm = torch.nn.LSTM(obs_dim, 400, 2, batch_first=True)
    head = torch.nn.Linear(400, 5 * ac_dim * 2 + 5)
    params = list(lstm.parameters()) + list(head.parameters())
    optimizer = torch.optim.Adam(params, lr=1e-4)
    x = torch.randn(BATCH, SEQ, obs_dim)

    def step() -> None:
        with _autocast(bf16):
            hidden, _ = lstm(x)
            loss = head(hidden).float().square().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    for _ in range(3):
        step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return BATCH * steps / (time.perf_counter() - start)


def _row(name: str, rates: list[float]) -> str:
    rate = statistics.median(rates)
    low, high = (rate / r for r in ROBOMIMIC_REFERENCE)
    spread = f"{min(rates):,.0f}-{max(rates):,.0f}" if len(rates) > 1 else "-"
    return f"| {name} | {rate:,.0f} | {spread} | {high:.2f}x-{low:.2f}x |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", help="a Lift low-dim robomimic file (default: make 20 demos)")
    parser.add_argument("--steps", type=int, default=40, help="timed updates per row")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--bf16", action="store_true", help="also time under bf16 autocast")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        dataset = args.dataset
        if dataset is None:
            from t2r.robomimic.lift_demos import collect_lift_demos

            dataset = os.path.join(tmp, "lift.hdf5")
            collect_lift_demos(20, dataset, show_progress=False)
        config = load_config(bc_rnn_gmm_config(dataset, os.path.join(tmp, "runs")))
        rows = []
        for bf16 in (False, True) if args.bf16 else (False,):
            tag = " (bf16)" if bf16 else ""
            cases = [
                (
                    "train_step" + tag,
                    lambda b=bf16: time_train_step(config, dataset, args.steps, b),
                ),
                (
                    "train_eval_model" + tag,
                    lambda b=bf16: time_train_eval_model(config, dataset, args.steps, b),
                ),
                ("raw LSTM" + tag, lambda b=bf16: time_raw_lstm(19, 7, args.steps, b)),
            ]
            for name, fn in cases:
                rates = [fn() for _ in range(args.repeats)]
                rows.append(_row(name, rates))
                print(rows[-1], flush=True)
    print()
    print(
        f"{datetime.date.today()} {platform.machine()} {os.cpu_count()} CPUs, torch "
        f"{torch.__version__}, {torch.get_num_threads()} threads; load average "
        f"{os.getloadavg()[0]:.1f} at the end"
    )
    print("| row | samples/s (median) | range | vs robomimic 0.5 (413-514) |")
    print("|---|---|---|---|")
    for row in rows:
        print(row)


if __name__ == "__main__":
    main()
