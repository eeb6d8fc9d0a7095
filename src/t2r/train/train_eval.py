"""train_eval_model: Tensor2Robot's training and evaluation loop, on PyTorch."""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import random
import signal
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, Protocol

import numpy as np
import torch
from tqdm.auto import tqdm

from t2r import specs
from t2r.models import AbstractT2RModel
from t2r.modes import ModeKeys
from t2r.train import distributed
from t2r.train.checkpoints import (
    Checkpoint,
    CheckpointError,
    NonFiniteCheckpointError,
    TrainingState,
    describe_checkpoint,
    latest_checkpoint,
    list_checkpoints,
    load_model_weights,
    restore_latest_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from t2r.train.hooks import Hook, HookBuilder
from t2r.train.summaries import MetricsWriter

logger = logging.getLogger(__name__)

Batch = tuple[Any, Any]


class InputGenerator(Protocol):
    """What the loop needs of an input generator (see `t2r.data`)."""

    def set_specification_from_model(self, t2r_model: Any, mode: str) -> None: ...

    def create_dataset(self, mode: str) -> Iterable[Batch]: ...


class Exporter(Protocol):
    """Exports the model after evaluations (or checkpoints when there is no eval)."""

    def export(
        self,
        t2r_model: AbstractT2RModel,
        model_dir: str,
        global_step: int,
        eval_metrics: dict[str, float] | None,
    ) -> Any: ...


def seed_everything(seed: int) -> None:
    """Seeds python, numpy and torch. Call before building a model for
    reproducible initial weights."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _to_device(batch: Any, device: torch.device) -> Any:
    """Tensors (and numeric arrays) on `device`; string arrays stay numpy."""
    if batch is None:
        return None
    non_blocking = device.type == "cuda"
    return specs.map_structure(
        lambda t: (
            t
            if specs.is_string_array(t)
            else torch.as_tensor(t).to(device, non_blocking=non_blocking)
        ),
        batch,
    )


def _batch_size(features: Any) -> int:
    for value in specs.flatten_spec_structure(features).values():
        if hasattr(value, "shape") and len(value.shape):
            return int(value.shape[0])
    return 1


def _autocast(
    device: torch.device, mixed_precision: str | None
) -> contextlib.AbstractContextManager:
    if mixed_precision is None:
        return contextlib.nullcontext()
    if mixed_precision != "bf16":
        raise ValueError(f"mixed_precision must be None or 'bf16', got {mixed_precision!r}.")
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


def _learning_rates(optimizer: Any) -> dict[str, float]:
    """``learning_rate`` for one optimizer, ``learning_rate/<name>`` for each of a
    dict; ``/<i>`` is appended per param group when an optimizer has several."""
    named = optimizer.items() if isinstance(optimizer, dict) else [(None, optimizer)]
    rates: dict[str, float] = {}
    for name, opt in named:
        key = "learning_rate" if name is None else f"learning_rate/{name}"
        groups = getattr(opt, "param_groups", None) or []
        if len(groups) == 1:
            rates[key] = float(groups[0]["lr"])
        else:
            rates.update({f"{key}/{i}": float(g["lr"]) for i, g in enumerate(groups)})
    return rates


def _step_schedulers(scheduler: Any) -> None:
    if scheduler is None:
        return
    for s in scheduler.values() if isinstance(scheduler, dict) else [scheduler]:
        s.step()


@contextlib.contextmanager
def _logging_around_progress(show_progress: bool) -> Iterator[None]:
    """While the progress bar shows, console log lines are written through tqdm,
    which clears the bar, prints the line and redraws the bar below it; without
    this each log line is appended to the bar's line and the bar is printed
    again on the next (one stale copy per log line)."""
    if not show_progress:
        yield
        return
    from tqdm.contrib.logging import logging_redirect_tqdm

    with logging_redirect_tqdm():
        yield


class Preempted(Exception):
    """The process received SIGTERM (e.g. a preempted job); the loop saved a
    checkpoint before raising this, so a restart resumes where it stopped."""


@contextlib.contextmanager
def _sigterm_raises() -> Iterator[None]:
    """Turns SIGTERM (preemption) into an exception the loop can checkpoint on."""

    def handler(signum: int, frame: Any) -> None:
        raise Preempted("SIGTERM received")

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def evaluate(
    t2r_model: AbstractT2RModel,
    input_generator: InputGenerator,
    eval_steps: int | None = 100,
    device: torch.device | str = "cpu",
    mixed_precision: str | None = None,
) -> dict[str, float]:
    """Averages `model_eval_fn`'s metrics (and the loss) over up to `eval_steps`
    batches, weighting each batch by its size. `eval_steps=None` reads the whole
    (single-pass) eval set."""
    device = torch.device(device)
    was_training = t2r_model.training
    t2r_model.eval()
    totals: dict[str, float] = {}
    count = 0
    batches: Iterable[Batch] = input_generator.create_dataset(ModeKeys.EVAL)
    if eval_steps is not None:
        batches = itertools.islice(batches, eval_steps)
    try:
        with torch.no_grad(), _autocast(device, mixed_precision):
            for features, labels in batches:
                features, labels = _to_device(features, device), _to_device(labels, device)
                outputs = t2r_model.model_fn(features, labels, ModeKeys.EVAL)
                n = _batch_size(features)
                for name, value in outputs.eval_metrics.items():
                    totals[name] = (
                        totals.get(name, 0.0) + float(torch.as_tensor(value).float().mean()) * n
                    )
                count += n
    finally:
        t2r_model.train(was_training)
    if count == 0:
        raise ValueError("The eval input generator produced no batches.")
    return {name: total / count for name, total in totals.items()}


def train_eval_model(
    t2r_model: AbstractT2RModel,
    input_generator_train: InputGenerator | None = None,
    input_generator_eval: InputGenerator | None = None,
    max_train_steps: int = 1000,
    model_dir: str | os.PathLike[str] = "runs/model",
    eval_steps: int | None = 100,
    eval_every_n_steps: int | None = None,
    save_checkpoints_steps: int = 500,
    keep_checkpoint_max: int = 5,
    create_exporters_fn: Callable[[AbstractT2RModel], Sequence[Exporter]] | None = None,
    train_hook_builders: Sequence[HookBuilder] | None = None,
    eval_hook_builders: Sequence[HookBuilder] | None = None,
    device: str | torch.device = "auto",
    mixed_precision: str | None = None,
    compile: bool = False,
    seed: int = 0,
    deterministic: bool = False,
    log_every_n_steps: int = 100,
    eval_name: str | None = None,
    continuous_eval_timeout_secs: float = 600.0,
    show_progress: bool = True,
) -> dict[str, float]:
    """Trains and/or evaluates `t2r_model`, resuming from `model_dir`.

    * Train only: pass `input_generator_train`.
    * Eval only (continuous): pass `input_generator_eval`; every new checkpoint
      in `model_dir` is evaluated as it appears, until one at `max_train_steps`
      was evaluated or none appears for `continuous_eval_timeout_secs`.
    * Both: evaluates after every `eval_every_n_steps` (default: every
      checkpoint) and at the end.

    Training resumes from the newest complete checkpoint in `model_dir`:
    weights, optimizer, schedule, global step, RNG states, and the input
    position (the iterator is re-created with the same seed and starts at the
    first batch not consumed). `seed` also decides the data order of input
    generators created without a seed of their own (the first run's seed is kept
    in the checkpoint and reused on resume). On the CPU, the same seed and data
    give bitwise-identical weights, across a kill and resume too.

    Under ``torchrun`` every rank runs this function: the model is wrapped in
    DistributedDataParallel (a model with ``owns_update`` is not: it averages
    its own gradients), each rank reads its shard, and only rank 0 writes
    checkpoints, summaries and exports. At each checkpoint the ranks' weights
    are checked to be equal.

    Returns the last eval metrics (empty when there was no evaluation).
    """
    if input_generator_train is None and input_generator_eval is None:
        raise ValueError(
            "train_eval_model needs input_generator_train, input_generator_eval, or both."
        )
    model_dir = str(model_dir)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False
    owns_group = not torch.distributed.is_initialized()
    own_network_fn = vars(t2r_model).get("inference_network_fn")
    context = distributed.setup(device)
    try:
        seed_everything(seed)
        t2r_model.to(context.device)
        if compile:
            # Validation and packing stay eager; the network and loss compile. The
            # compiled wrapper lives for this call only (restored in `finally`).
            t2r_model.inference_network_fn = torch.compile(t2r_model.inference_network_fn)  # type: ignore[method-assign]
        eval_name_dir = os.path.join(model_dir, f"eval_{eval_name}" if eval_name else "eval")
        exporters = (
            list(create_exporters_fn(t2r_model)) if create_exporters_fn and context.is_main else []
        )
        if input_generator_eval is not None:
            input_generator_eval.set_specification_from_model(t2r_model, ModeKeys.EVAL)
            _set_default_seed(input_generator_eval, seed)
        if input_generator_train is None:
            assert input_generator_eval is not None
            hooks = _build_hooks(eval_hook_builders, t2r_model, model_dir, context)
            return _continuous_eval(
                t2r_model,
                input_generator_eval,
                model_dir,
                max_train_steps,
                eval_steps,
                eval_name_dir,
                context,
                mixed_precision,
                exporters,
                hooks,
                continuous_eval_timeout_secs,
            )
        input_generator_train.set_specification_from_model(t2r_model, ModeKeys.TRAIN)
        hooks = _build_hooks(train_hook_builders, t2r_model, model_dir, context)
        hooks += _build_hooks(eval_hook_builders, t2r_model, model_dir, context)
        loop = _TrainLoop(
            t2r_model,
            input_generator_train,
            input_generator_eval,
            model_dir,
            context,
            hooks,
            exporters,
            mixed_precision=mixed_precision,
            eval_dir=eval_name_dir,
            eval_steps=eval_steps,
            max_train_steps=max_train_steps,
            eval_every_n_steps=eval_every_n_steps or save_checkpoints_steps,
            save_checkpoints_steps=save_checkpoints_steps,
            keep_checkpoint_max=keep_checkpoint_max,
            log_every_n_steps=log_every_n_steps,
            show_progress=show_progress,
            seed=seed,
        )
        return loop.run()
    finally:
        if compile:
            _restore_eager_network(t2r_model, own_network_fn)
        if owns_group and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


def _set_default_seed(input_generator: Any, seed: int) -> None:
    """Gives a generator without a seed of its own the run's (see `t2r.data`)."""
    set_default_seed = getattr(input_generator, "set_default_seed", None)
    if callable(set_default_seed):
        set_default_seed(seed)


@contextlib.contextmanager
def _rng_untouched() -> Iterator[None]:
    """Whatever runs inside (eval, exports) leaves the training RNG streams as they were.

    A resumed run restores the RNG states of the checkpoint and goes straight to
    the next step; an uninterrupted run evaluates and exports in between, so
    those must not advance the streams a model draws from in training.
    """
    state = rng_state()
    try:
        yield
    finally:
        set_rng_state(state)


def _restore_eager_network(t2r_model: AbstractT2RModel, own_network_fn: Any) -> None:
    """Undoes `compile`: the instance's own inference_network_fn (if it had one) is put
    back, else the instance attribute goes and the class's eager method shows again."""
    if own_network_fn is not None:
        t2r_model.inference_network_fn = own_network_fn  # type: ignore[method-assign]
    elif "inference_network_fn" in vars(t2r_model):
        del t2r_model.inference_network_fn


def _build_hooks(
    builders: Sequence[HookBuilder] | None,
    t2r_model: AbstractT2RModel,
    model_dir: str,
    context: distributed.DistributedContext,
) -> list[Hook]:
    if not builders or not context.is_main:
        return []
    return [hook for builder in builders for hook in builder.create_hooks(t2r_model, model_dir)]


class _TrainLoop:
    """The state of one training run; `run()` is the loop."""

    def __init__(
        self,
        model: AbstractT2RModel,
        train_input: InputGenerator,
        eval_input: InputGenerator | None,
        model_dir: str,
        context: distributed.DistributedContext,
        hooks: list[Hook],
        exporters: list[Exporter],
        *,
        mixed_precision: str | None,
        eval_dir: str,
        eval_steps: int | None,
        max_train_steps: int,
        eval_every_n_steps: int,
        save_checkpoints_steps: int,
        keep_checkpoint_max: int,
        log_every_n_steps: int,
        show_progress: bool,
        seed: int = 0,
    ) -> None:
        self.model, self.train_input, self.eval_input = model, train_input, eval_input
        self.seed = seed
        self.model_dir, self.context, self.hooks, self.exporters = (
            model_dir,
            context,
            hooks,
            exporters,
        )
        self.mixed_precision, self.eval_dir, self.eval_steps = mixed_precision, eval_dir, eval_steps
        self.max_train_steps, self.eval_every_n_steps = max_train_steps, eval_every_n_steps
        self.save_checkpoints_steps, self.keep_checkpoint_max = (
            save_checkpoints_steps,
            keep_checkpoint_max,
        )
        self.log_every_n_steps, self.show_progress = log_every_n_steps, show_progress
        self.optimizer = model.create_optimizer()
        self.scheduler = model.create_lr_scheduler(self.optimizer)
        self.state = TrainingState()
        self.last_eval: dict[str, float] = {}
        self.last_checkpoint_step = -1
        # The first step whose loss was not finite (-1: none), kept on the device so
        # that finding it costs no synchronization; read before each checkpoint.
        self.first_non_finite_step: torch.Tensor | None = None

    def run(self) -> dict[str, float]:
        model, context = self.model, self.context
        restored = restore_latest_checkpoint(self.model_dir, model, self.optimizer, self.scheduler)
        if restored is not None:
            checkpoint, self.state = restored
            self.last_checkpoint_step = self.state.global_step
            logger.info("Resumed from %s at step %d.", checkpoint.path, self.state.global_step)
        # The data order's seed: the first run's, kept in the checkpoint state.
        input_seed = int(self.state.extra.get("input_seed", self.seed))
        self.state.extra["input_seed"] = input_seed
        _set_default_seed(self.train_input, input_seed)
        # So does the number of DataLoader workers: a generator left to choose it
        # (from the CPUs) reuses the interrupted run's count, on any machine.
        input_workers = self.state.extra.get("input_workers")
        set_workers = getattr(self.train_input, "set_default_num_workers", None)
        if input_workers is not None and callable(set_workers):
            set_workers(int(input_workers))
        if self.state.global_step >= self.max_train_steps:
            logger.info(
                "Already trained to step %d (max_train_steps=%d).",
                self.state.global_step,
                self.max_train_steps,
            )
            return self.last_eval
        forward = distributed.data_parallel_forward(model, context)
        writer = MetricsWriter(self.model_dir) if context.is_main else None
        for hook in self.hooks:
            hook.begin(self.state.global_step)
        try:
            with (
                _sigterm_raises(),
                _logging_around_progress(self.show_progress and context.is_main),
            ):
                self._loop(forward, writer)
        except (KeyboardInterrupt, Preempted):
            if context.is_main and self.state.global_step > self.last_checkpoint_step:
                logger.warning(
                    "Interrupted at step %d: saving a checkpoint.", self.state.global_step
                )
                self._checkpoint()
            raise
        finally:
            for hook in self.hooks:
                hook.end(self.state.global_step)
            if writer is not None:
                writer.close()
        return self.last_eval

    def _batches(self) -> Iterator[Batch]:
        dataset = self.train_input.create_dataset(ModeKeys.TRAIN)
        loader = getattr(dataset, "dataloader", None)
        if loader is not None:  # part of the data order: kept for a resume
            self.state.extra["input_workers"] = int(loader.num_workers)
        skip = self.state.input_position
        if not skip:
            return iter(dataset)
        start = time.perf_counter()
        iter_from = getattr(dataset, "iter_from", None)
        if callable(iter_from):  # a BatchIterable: record pipelines skip without parsing
            iterator = iter_from(skip)
        else:
            iterator = iter(dataset)
            for _ in range(skip):
                next(iterator)
        logger.info(
            "Input position restored at batch %d in %.2f s.", skip, time.perf_counter() - start
        )
        return iterator

    def _loop(self, forward: Any, writer: MetricsWriter | None) -> None:
        model, context = self.model, self.context
        model.train()
        batches = self._batches()
        progress = tqdm(
            total=self.max_train_steps,
            initial=self.state.global_step,
            desc="train",
            disable=not (self.show_progress and context.is_main),
            mininterval=2.0,
        )
        loss_sum = torch.zeros((), device=context.device)
        self.first_non_finite_step = torch.full((), -1, dtype=torch.int64, device=context.device)
        window_steps, window_examples, window_start = 0, 0, time.perf_counter()
        first = True
        while self.state.global_step < self.max_train_steps:
            features, labels = next(batches)
            features, labels = (
                _to_device(features, context.device),
                _to_device(labels, context.device),
            )
            if first:
                # Fail before the first update, naming the key, on data that does not fit.
                specs.validate_and_pack(
                    model.get_feature_specification_for_packing(ModeKeys.TRAIN),
                    features,
                    ignore_batch=True,
                )
                specs.validate_and_pack(
                    model.get_label_specification_for_packing(ModeKeys.TRAIN),
                    labels,
                    ignore_batch=True,
                )
                first = False
            with _autocast(context.device, self.mixed_precision):
                outputs = model.train_step(features, labels, self.optimizer, forward=forward)
            _step_schedulers(self.scheduler)
            self.state.global_step += 1
            self.state.input_position += 1
            step = self.state.global_step
            loss = outputs.loss.detach().float()
            loss_sum += loss
            bad = self.first_non_finite_step
            bad.copy_(
                torch.where((bad < 0) & ~torch.isfinite(loss), torch.full_like(bad, step), bad)
            )
            window_steps += 1
            window_examples += _batch_size(features) * context.world_size
            progress.update(1)
            log_now = step % self.log_every_n_steps == 0 or step == self.max_train_steps
            scalars: dict[str, float] = {}
            if log_now:
                elapsed = max(time.perf_counter() - window_start, 1e-9)
                self._check_loss()
                mean_loss = float(loss_sum.item()) / window_steps
                scalars = {
                    "loss": mean_loss,
                    "steps_per_sec": window_steps / elapsed,
                    "examples_per_sec": window_examples / elapsed,
                    **{k: float(torch.as_tensor(v).float()) for k, v in outputs.scalars.items()},
                }
                scalars.update(_learning_rates(self.optimizer))
                if writer is not None:
                    writer.write(step, scalars)
                progress.set_postfix(loss=f"{mean_loss:.4g}")
                loss_sum.zero_()
                window_steps, window_examples, window_start = 0, 0, time.perf_counter()
            for hook in self.hooks:
                hook.after_step(step, scalars)
            final = step == self.max_train_steps
            if step % self.save_checkpoints_steps == 0 or final:
                distributed.check_replicas_equal(model, context, step)
                checkpoint = self._checkpoint()
                with _rng_untouched():
                    for hook in self.hooks:
                        if checkpoint is not None:
                            hook.after_checkpoint(checkpoint)
                    if self.eval_input is not None and (
                        step % self.eval_every_n_steps == 0 or final
                    ):
                        self._evaluate(step)
                    elif self.eval_input is None:
                        self._export(step, None)
        progress.close()

    def _check_loss(self) -> None:
        """Raises FloatingPointError naming the first step with a non-finite loss."""
        if self.first_non_finite_step is None:
            return
        flag = self.first_non_finite_step
        if self.context.enabled:
            # Every rank stops together (one rank alone would leave the others
            # waiting at the checkpoint barrier); the step named is the latest
            # first-bad step among the ranks.
            flag = flag.clone()
            torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
        bad = int(flag.item())
        if bad >= 0:
            raise NonFiniteCheckpointError(
                f"Training loss is not finite (NaN or inf) at step {bad}; training stops "
                f"(no checkpoint is written after it). The last good checkpoint is "
                f"{describe_checkpoint(latest_checkpoint(self.model_dir))}.",
                bad,
                latest_checkpoint(self.model_dir),
            )

    def _checkpoint(self) -> Checkpoint | None:
        checkpoint = None
        # Never publish a checkpoint after a non-finite loss (save_checkpoint also
        # refuses non-finite weights).
        self._check_loss()
        if self.context.is_main:
            checkpoint = save_checkpoint(
                self.model_dir,
                self.model,
                self.state,
                self.optimizer,
                self.scheduler,
                self.keep_checkpoint_max,
            )
        self.last_checkpoint_step = self.state.global_step
        distributed.barrier(self.context)
        return checkpoint

    def _evaluate(self, step: int) -> None:
        if self.context.is_main:
            assert self.eval_input is not None
            metrics = evaluate(
                self.model,
                self.eval_input,
                self.eval_steps,
                self.context.device,
                self.mixed_precision,
            )
            _write_eval(self.eval_dir, step, metrics)
            self.last_eval = metrics
            for hook in self.hooks:
                hook.after_eval(step, metrics)
            self._export(step, metrics)
        distributed.barrier(self.context)

    def _export(self, step: int, metrics: dict[str, float] | None) -> None:
        for exporter in self.exporters:
            exporter.export(self.model, self.model_dir, step, metrics)


def _write_eval(eval_dir: str, step: int, metrics: Mapping[str, float]) -> None:
    writer = MetricsWriter(eval_dir)
    try:
        writer.write(step, metrics)
    finally:
        writer.close()
    logger.info("Eval at step %d: %s", step, ", ".join(f"{k}={v:.5g}" for k, v in metrics.items()))


def _continuous_eval(
    model: AbstractT2RModel,
    eval_input: InputGenerator,
    model_dir: str,
    max_train_steps: int,
    eval_steps: int | None,
    eval_dir: str,
    context: distributed.DistributedContext,
    mixed_precision: str | None,
    exporters: list[Exporter],
    hooks: list[Hook],
    timeout_secs: float,
    poll_secs: float = 1.0,
) -> dict[str, float]:
    """Evaluates each new checkpoint (the newest when several are waiting)."""
    evaluated: set[int] = set()
    metrics: dict[str, float] = {}
    deadline = time.monotonic() + timeout_secs
    for hook in hooks:
        hook.begin(0)
    while True:
        pending = [c for c in list_checkpoints(model_dir) if c.global_step not in evaluated]
        if not pending:
            if time.monotonic() > deadline:
                logger.info(
                    "No new checkpoint in %s for %.0f s; stopping eval.", model_dir, timeout_secs
                )
                break
            time.sleep(poll_secs)
            continue
        checkpoint = pending[-1]
        evaluated.update(c.global_step for c in pending)
        try:
            load_model_weights(checkpoint, model)
        except FileNotFoundError:  # pruned by the trainer meanwhile
            continue
        except CheckpointError as e:
            logger.warning("Not evaluating corrupt checkpoint %s: %s", checkpoint.path, e)
            continue
        metrics = evaluate(model, eval_input, eval_steps, context.device, mixed_precision)
        if context.is_main:
            _write_eval(eval_dir, checkpoint.global_step, metrics)
            for hook in hooks:
                hook.after_eval(checkpoint.global_step, metrics)
            for exporter in exporters:
                exporter.export(model, model_dir, checkpoint.global_step, metrics)
        deadline = time.monotonic() + timeout_secs
        if checkpoint.global_step >= max_train_steps:
            break
    for hook in hooks:
        hook.end(max(evaluated, default=0))
    return metrics
