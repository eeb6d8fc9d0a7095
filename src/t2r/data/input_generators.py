"""Input generators: Tensor2Robot's names, on torch DataLoaders.

An input generator knows where data comes from; the specs say what it looks
like. ``set_specification_from_model`` (or ``set_feature_specifications``) gives
it the specs, ``create_dataset(mode)`` returns an iterable of
``(features, labels)`` batches: TensorSpecStructs of torch tensors keyed by the
spec paths (``labels`` is None without a label spec).

========================================  ==============================================
generator                                 data
========================================  ==============================================
:class:`DefaultRecordInputGenerator`      TFRecord files of Example / SequenceExample
:class:`FractionalRecordInputGenerator`   the first fraction of those files
:class:`WeightedRecordInputGenerator`     several file groups, sampled with weights
:class:`MultiEvalRecordInputGenerator`    one of several named eval sets (or all)
:class:`SourceInputGenerator`             any :class:`t2r.data.sources.DataSource`
:class:`ReplayInputGenerator`             a replay directory that keeps growing
:class:`DefaultRandomInputGenerator`      random data made from the specs
:class:`DefaultConstantInputGenerator`    constant data made from the specs
========================================  ==============================================

Modes (``t2r.modes.ModeKeys``): TRAIN shuffles the file order each epoch,
interleaves ``cycle_length`` files, shuffles records in a buffer, repeats
forever and yields full batches only. EVAL and PREDICT read files in sorted
order, one after the other, without shuffling; by default one pass, keeping the
last partial batch (``eval_single_pass=False``: forever, full batches, as
Tensor2Robot did).

Record generators parse in DataLoader workers (``num_workers``), sharding the
files over workers and over torch.distributed ranks so that no example is read
twice per pass (see :mod:`t2r.data.pipeline`). Left at None, the number of
workers is chosen from the CPUs available and the batch size
(:func:`auto_num_workers`; ``T2R_NUM_WORKERS`` overrides it for a whole job).
"""

from __future__ import annotations

import abc
import copy
import json
import logging
import math
import os
import secrets
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.utils.data

from t2r.data.parsing import ParseTFExampleFn
from t2r.data.pipeline import (
    BatchIterable,
    RecordBatchDataset,
    SharedReadStats,
    _no_convert,
    resolve_rank_and_world_size,
)
from t2r.data.sources import DataSource, ReplayDirectorySource, TFRecordSource
from t2r.data.tfrecord import expand_file_patterns
from t2r.modes import ModeKeys
from t2r.specs import (
    TensorSpecStruct,
    assert_valid_spec_structure,
    flatten_spec_structure,
    make_constant_numpy,
    make_random_numpy,
    to_tensors,
)

__all__ = [
    "AbstractInputGenerator",
    "DefaultConstantInputGenerator",
    "DefaultRandomInputGenerator",
    "DefaultRecordInputGenerator",
    "FractionalRecordInputGenerator",
    "GeneratorInputGenerator",
    "MultiEvalRecordInputGenerator",
    "ReplayInputGenerator",
    "SourceInputGenerator",
    "WeightedRecordInputGenerator",
    "auto_batches_per_transfer",
    "auto_num_workers",
    "available_cpus",
    "get_multi_eval_name",
]

logger = logging.getLogger(__name__)

FilePatterns = str | os.PathLike[str] | Sequence[str | os.PathLike[str]]
PreprocessFn = Callable[[Any, Any], tuple[Any, Any]]

_TF_CONFIG_ENV = "TF_CONFIG"
_MULTI_EVAL_NAME = "multi_eval_name"
NUM_WORKERS_ENV = "T2R_NUM_WORKERS"
_MAX_AUTO_WORKERS = 8
_EXAMPLES_PER_WORKER = 4
_CGROUP_CPU_MAX = "/sys/fs/cgroup/cpu.max"
_TRANSFER_EXAMPLES = 256
_TRANSFER_BYTES = 4 << 20
_MAX_TRANSFER_BATCHES = 8


def available_cpus() -> int:
    """CPUs this process may use: its affinity mask, capped by a cgroup v2 CPU quota."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        cpus = os.cpu_count() or 1
    try:
        with open(_CGROUP_CPU_MAX) as f:
            quota, period = f.read().split()[:2]
        if quota != "max":
            cpus = min(cpus, math.ceil(int(quota) / int(period)))
    except (OSError, ValueError):
        pass
    return max(1, cpus)


def auto_num_workers(batch_size: int, cpus: int | None = None) -> int:
    """DataLoader workers for a record generator that decodes images, when not told.

    The rule (``cpus`` defaults to :func:`available_cpus`):

    * 1 CPU: 0, parse in the training process (a worker would only add the
      transfer of every batch).
    * 2 to 4 CPUs: one worker per CPU. A worker stops once its prefetched
      batches are queued, so it takes CPU from the training process only while
      the training step waits for data; and with fewer workers than CPUs the
      pipeline cannot decode at the machine's rate (on 2 CPUs: half of it).
    * More CPUs: one CPU is left to the training process (its Python, feeding an
      accelerator), the others work.
    * At most ``ceil(batch_size / 4)``: the training process spends about 0.2 ms
      receiving a batch (DataLoader queue, the batch's message, its tensors),
      what a worker spends on about 4 records of small images; with fewer
      records per batch, receiving, not the workers, sets the pace.
    * At most 8: each worker holds its own shuffle buffer and prefetched batches.

    The batches a generator yields depend on its number of workers (each reads its
    own shard), so the count is part of the data order: ``train_eval_model``
    stores it in the checkpoint and a resumed run uses it again (see
    ``docs/training.md``). Pass ``num_workers`` (or set ``T2R_NUM_WORKERS``) to
    choose it yourself.
    """
    cpus = available_cpus() if cpus is None else int(cpus)
    if cpus <= 1:
        return 0
    workers = cpus if cpus <= 4 else cpus - 1
    return max(1, min(workers, math.ceil(batch_size / _EXAMPLES_PER_WORKER), _MAX_AUTO_WORKERS))


def auto_batches_per_transfer(batch_size: int, example_nbytes: int) -> int:
    """How many batches a DataLoader worker sends at once, when not told.

    Each item a worker sends costs about 0.3 ms in the worker and 0.25 ms in the
    training process (the DataLoader's index and result queues), whatever its
    size: about 9 us a record at batch 64, a fifth of decoding a 64x64 JPEG. So
    workers send ``ceil(256 / batch_size)`` batches at once, while that stays
    within 4 MiB of parsed data and 8 batches; batches of large images go one
    by one (their decode dwarfs the transfer, and memory matters more). The data
    order does not depend on it.
    """
    by_examples = math.ceil(_TRANSFER_EXAMPLES / max(1, batch_size))
    by_bytes = _TRANSFER_BYTES // max(1, batch_size * example_nbytes)
    return max(1, min(by_examples, by_bytes, _MAX_TRANSFER_BATCHES))


class AbstractInputGenerator(abc.ABC):
    """Creates the input pipeline for one model; subclasses say where data comes from.

    Args:
        batch_size: examples per batch.
    """

    def __init__(self, batch_size: int = 32) -> None:
        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}.")
        self._batch_size = int(batch_size)
        self._feature_spec: Any = None
        self._label_spec: Any = None
        self._preprocess_fn: PreprocessFn | None = None
        self._default_seed: int | None = None

    @property
    def batch_size(self) -> int:
        return self._batch_size

    @property
    def feature_spec(self) -> Any:
        return self._feature_spec

    @property
    def label_spec(self) -> Any:
        return self._label_spec

    def set_feature_specifications(self, feature_spec: Any, label_spec: Any = None) -> None:
        """Sets the specs the data must match (label_spec None: no labels)."""
        assert_valid_spec_structure(feature_spec)
        if label_spec is not None:
            assert_valid_spec_structure(label_spec)
        self._feature_spec = feature_spec
        self._label_spec = label_spec

    def set_label_specifications(self, label_spec: Any) -> None:
        """Sets (or with None, clears) the label spec alone."""
        if label_spec is not None:
            assert_valid_spec_structure(label_spec)
        self._label_spec = label_spec

    def set_specification_from_model(self, t2r_model: Any, mode: str) -> None:
        """Takes the specs from the model's preprocessor: its *in* specs for `mode`.

        Records hold what the preprocessor consumes; ``t2r_model.preprocessor``
        must have ``get_in_feature_specification(mode)`` and
        ``get_in_label_specification(mode)``. The preprocessing itself is left to
        the caller (the training loop); ``set_preprocess_fn`` runs it in the
        workers instead.
        """
        ModeKeys.validate(mode)
        preprocessor = t2r_model.preprocessor
        feature_spec = preprocessor.get_in_feature_specification(mode)
        label_spec = preprocessor.get_in_label_specification(mode)
        self.set_feature_specifications(feature_spec, label_spec)

    def set_default_seed(self, seed: int | None) -> None:
        """The seed to use when the generator was given none (the run's seed).

        ``train_eval_model`` calls this with its ``seed`` (or the one stored in the
        checkpoint it resumes from), so a generator built without ``seed=`` (as
        Tensor2Robot configs build them) shuffles alike in every rank, DataLoader
        worker and restart. A seed given to the constructor wins.
        """
        self._default_seed = None if seed is None else int(seed)

    def set_preprocess_fn(self, preprocess_fn: PreprocessFn | None) -> None:
        """A function ``(features, labels) -> (features, labels)`` applied to each batch.

        Runs where the batch is made (in the DataLoader workers for record
        generators), after parsing; it must be picklable for worker processes.
        """
        self._preprocess_fn = preprocess_fn

    def _assert_specs_initialized(self) -> None:
        if self._feature_spec is None:
            raise ValueError(
                f"{type(self).__name__} has no feature spec; call set_specification_from_model "
                "or set_feature_specifications first."
            )

    def create_dataset_input_fn(self, mode: str) -> Callable[..., Any]:
        """Tensor2Robot's input_fn: a callable returning ``create_dataset(mode)``."""
        self._assert_specs_initialized()

        def input_fn(params: Any = None) -> Any:
            del params
            return self.create_dataset(mode)

        return input_fn

    @abc.abstractmethod
    def create_dataset(self, mode: str) -> BatchIterable:
        """An iterable of ``(features, labels)`` batches for `mode`."""


def _patterns_map(
    file_patterns: FilePatterns | Mapping[str, FilePatterns] | None,
    dataset_map: Mapping[str, FilePatterns] | None,
) -> dict[str, FilePatterns]:
    if file_patterns is not None and dataset_map is not None:
        raise ValueError("Give only one of `file_patterns` or `dataset_map`.")
    if dataset_map is not None:
        file_patterns = dataset_map
    if file_patterns is None:
        raise ValueError("No file patterns given.")
    if isinstance(file_patterns, Mapping):
        if not file_patterns:
            raise ValueError("The dataset map is empty.")
        return dict(file_patterns)
    return {"": file_patterns}


def _agree_on_seed(seed: int | None, world_size: int) -> int:
    """A seed every rank shares (they must shuffle files alike to split them)."""
    if seed is not None:
        return int(seed)
    drawn = secrets.randbits(31)
    if world_size == 1:
        return drawn
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        box: list[Any] = [drawn]
        torch.distributed.broadcast_object_list(box, src=0)
        return int(box[0])
    raise ValueError(
        "Several ranks shuffle their files alike only with a common seed: pass seed=... "
        "(or initialize torch.distributed)."
    )


class _RecordInputGenerator(AbstractInputGenerator):
    """What every TFRecord-backed generator shares: DataLoader and pipeline options."""

    def __init__(
        self,
        batch_size: int = 32,
        *,
        num_workers: int | None = None,
        shuffle_buffer_size: int = 1000,
        cycle_length: int = 10,
        seed: int | None = None,
        eval_single_pass: bool = True,
        skip_corrupt_records: bool = False,
        verify_crc: bool = True,
        compression: str | None = "auto",
        decode_images: bool = True,
        prefetch_factor: int | None = 2,
        pin_memory: bool = False,
        persistent_workers: bool = False,
        multiprocessing_context: str | None = None,
        recycle_buffers: int | None = None,
        batches_per_transfer: int | None = None,
        rank: int | None = None,
        world_size: int | None = None,
        label: str = "",
    ) -> None:
        super().__init__(batch_size=batch_size)
        if num_workers is not None and num_workers < 0:
            raise ValueError(f"num_workers must be >= 0 or None (auto), got {num_workers}.")
        self._num_workers = None if num_workers is None else int(num_workers)
        self._default_num_workers: int | None = None
        self._shuffle_buffer_size = int(shuffle_buffer_size)
        self._cycle_length = int(cycle_length)
        self._seed = seed
        self._eval_single_pass = eval_single_pass
        self._skip_corrupt_records = skip_corrupt_records
        self._verify_crc = verify_crc
        self._compression = compression
        self._decode_images = decode_images
        self._prefetch_factor = prefetch_factor
        self._pin_memory = pin_memory
        self._persistent_workers = persistent_workers
        self._multiprocessing_context = multiprocessing_context
        self._recycle_buffers = recycle_buffers
        if batches_per_transfer is not None and batches_per_transfer < 1:
            raise ValueError(
                f"{type(self).__name__}: batches_per_transfer must be >= 1 or None (auto), "
                f"got {batches_per_transfer}."
            )
        self._batches_per_transfer = batches_per_transfer
        self._rank = rank
        self._world_size = world_size
        self._label = label

    @property
    def label(self) -> str:
        return self._label

    def _sources(self, mode: str) -> Any:
        """``{dataset_key: source or files}`` (or a list of them, with `_weights`)."""
        raise NotImplementedError

    _weights: Sequence[float] | None = None
    _refresh_secs: float | None = None

    def _make_parse_fn(self, sources: Any) -> Any:
        """Records -> ``(features, labels)``: TFRecord parsing unless a source says else."""
        every = list(sources.values()) if isinstance(sources, Mapping) else list(sources)
        custom = [
            s for s in every if isinstance(s, DataSource) and not isinstance(s, TFRecordSource)
        ]
        if custom:
            return custom[0].make_parse_fn(
                self._feature_spec, self._label_spec, self._decode_images
            )
        return ParseTFExampleFn(self._feature_spec, self._label_spec, self._decode_images)

    def set_default_num_workers(self, num_workers: int | None) -> None:
        """The worker count to use when the generator was given none (a checkpoint's).

        ``train_eval_model`` calls this on resume with the count the interrupted
        run used, so the data order (which depends on it) is rebuilt exactly on a
        machine with another number of CPUs. ``num_workers`` given to the
        constructor wins; this wins over ``T2R_NUM_WORKERS`` and the automatic
        choice.
        """
        if num_workers is not None and num_workers < 0:
            raise ValueError(f"num_workers must be >= 0 or None, got {num_workers}.")
        self._default_num_workers = None if num_workers is None else int(num_workers)

    def resolve_num_workers(self, parse_fn: Any = None) -> tuple[int, str]:
        """``(workers, why)``: the DataLoader workers ``create_dataset`` starts.

        In order: the constructor's ``num_workers``; the count
        :meth:`set_default_num_workers` gave; the ``T2R_NUM_WORKERS`` environment
        variable (a number, or ``auto``); else :func:`auto_num_workers` when the
        parse fn decodes images, and 0 when it does not (parsing numbers or
        arrays costs microseconds a record: workers would only add transfer).
        """
        if self._num_workers is not None:
            return self._num_workers, "given"
        if self._default_num_workers is not None:
            return self._default_num_workers, "as the run being resumed"
        env = os.environ.get(NUM_WORKERS_ENV, "").strip()
        if env and env.lower() != "auto":
            try:
                workers = int(env)
            except ValueError:
                workers = -1
            if workers < 0:
                raise ValueError(f"{NUM_WORKERS_ENV}={env!r}: expected a count >= 0 or 'auto'.")
            return workers, f"{NUM_WORKERS_ENV}={env}"
        if not (isinstance(parse_fn, ParseTFExampleFn) and parse_fn.decodes_images):
            return 0, "auto: no images to decode"
        cpus = available_cpus()
        return auto_num_workers(
            self.batch_size, cpus
        ), f"auto: {cpus} CPUs, batch {self.batch_size}"

    def resolve_batches_per_transfer(self, parse_fn: Any = None, sources: Any = None) -> int:
        """Batches a worker sends at once: the constructor's; else 1 for sources
        that grow while read (a replay directory: fresh data beats the transfer
        cost) and for parse fns other than TFRecord parsing; else
        :func:`auto_batches_per_transfer`."""
        if self._batches_per_transfer is not None:
            return self._batches_per_transfer
        every = list(sources.values()) if isinstance(sources, Mapping) else list(sources or [])
        if any(isinstance(s, DataSource) and s.growing for s in every):
            return 1
        if not isinstance(parse_fn, ParseTFExampleFn):
            return 1
        return auto_batches_per_transfer(self.batch_size, parse_fn.example_nbytes)

    def _resolve_seed(self, training: bool, world_size: int) -> int:
        seed = self._seed if self._seed is not None else self._default_seed
        if not training:
            return int(seed or 0)
        return _agree_on_seed(seed, world_size)

    def create_dataset(self, mode: str) -> BatchIterable:
        """A :class:`BatchIterable` of ``(features, labels)`` batches for `mode`."""
        ModeKeys.validate(mode)
        self._assert_specs_initialized()
        training = mode == ModeKeys.TRAIN
        sources = self._sources(mode)
        rank, world_size = resolve_rank_and_world_size(self._rank, self._world_size)
        seed = self._resolve_seed(training, world_size)
        single_pass = not training and self._eval_single_pass
        stats = SharedReadStats(self._multiprocessing_context)
        parse_fn = self._make_parse_fn(sources)
        workers, why = self.resolve_num_workers(parse_fn)
        transfer = self.resolve_batches_per_transfer(parse_fn, sources) if workers else 1
        prefetch = self._prefetch_factor or 2
        dataset = RecordBatchDataset(
            sources,
            parse_fn,
            self.batch_size,
            shuffle=training,
            repeat=not single_pass,
            drop_remainder=not single_pass,
            shuffle_buffer_size=self._shuffle_buffer_size,
            cycle_length=self._cycle_length,
            seed=seed,
            rank=rank,
            world_size=world_size,
            skip_corrupt=self._skip_corrupt_records,
            verify_crc=self._verify_crc,
            compression=self._compression,
            preprocess_fn=self._preprocess_fn,
            weights=self._weights,
            stats=stats,
            # Held at once by a worker: the batches it makes, those queued, a round
            # the main process has received, and one or two the caller holds.
            recycle_buffers=(
                transfer * (prefetch + 2) + 1
                if self._recycle_buffers is None
                else self._recycle_buffers
            ),
            refresh_secs=self._refresh_secs,
            batches_per_transfer=transfer,
        )
        loader_kwargs: dict[str, Any] = {
            "batch_size": None,
            "num_workers": workers,
            "collate_fn": _no_convert,
        }
        if workers > 0:
            loader_kwargs["prefetch_factor"] = self._prefetch_factor
            loader_kwargs["persistent_workers"] = self._persistent_workers
            loader_kwargs["multiprocessing_context"] = self._multiprocessing_context

        def loader_for(data: RecordBatchDataset) -> torch.utils.data.DataLoader:
            # Its own generator: starting an iterator (which draws the workers' base
            # seed) never touches the global torch RNG a model trains with.
            generator = torch.Generator().manual_seed(seed)
            return torch.utils.data.DataLoader(data, generator=generator, **loader_kwargs)

        loader = loader_for(dataset)

        def iterator_from(position: int) -> Iterator[Any]:
            resumed = copy.copy(dataset)
            resumed.start_batch = position
            return iter(loader_for(resumed))

        name = self._label or type(self).__name__
        logger.info(
            "%s (%s): %s, batch %d, %d workers (%s)%s, rank %d of %d%s.",
            name,
            mode,
            _describe_sources(sources),
            self.batch_size,
            workers,
            why,
            f" sending {transfer} batches at a time" if transfer > 1 else "",
            rank,
            world_size,
            f", seed {seed}" if training else "",
        )
        return BatchIterable(
            lambda: iter(loader),
            stats=stats,
            description=f"{name} ({mode})",
            single_pass=single_pass,
            dataloader=loader,
            pin_memory=self._pin_memory,
            make_iterator_from=None if single_pass else iterator_from,
            prefetch=self._in_process_prefetch(workers, parse_fn),
        )

    def _in_process_prefetch(self, workers: int, parse_fn: Any) -> int:
        """Batches a thread makes ahead when parsing in the training process.

        ``prefetch_factor`` of them for TFRecord parsing without a preprocess_fn
        (which seeds the process-wide RNGs, so it must run in the caller's
        thread); sources with their own parse fn are left as they are.
        """
        if workers or self._preprocess_fn is not None or not self._prefetch_factor:
            return 0
        return int(self._prefetch_factor) if isinstance(parse_fn, ParseTFExampleFn) else 0


def _describe_sources(sources: Any) -> str:
    def describe(value: Any) -> str:
        return repr(value) if isinstance(value, DataSource) else f"{len(value)} files"

    if isinstance(sources, Mapping):
        return ", ".join(f"{key or 'default'}: {describe(v)}" for key, v in sources.items())
    return ", ".join(f"group {i}: {describe(v)}" for i, v in enumerate(sources))


class DefaultRecordInputGenerator(_RecordInputGenerator):
    """Batches parsed from TFRecord files (Tensor2Robot's record input generator).

    Args:
        file_patterns: a glob, a comma-separated list of globs (each may start with
            ``tfrecord:``), a list of those, or ``{dataset_key: patterns}`` to zip
            several datasets record by record (specs read from their dataset_key).
            A pattern that matches no file raises ValueError naming it.
        batch_size: examples per batch.
        dataset_map: Tensor2Robot's other spelling of the ``{dataset_key: patterns}``
            form; give only one of the two.
        num_workers: DataLoader worker processes that read, parse and decode
            (0: in the main process). None (default): chosen when the dataset is
            made, see :meth:`resolve_num_workers`: ``T2R_NUM_WORKERS`` if set, else
            from the CPUs available and the batch size when images are decoded
            (:func:`auto_num_workers`: on 2 CPUs, 2), else 0. The data order
            depends on the count, which ``create_dataset`` logs.
        shuffle_buffer_size: TRAIN: records in the shuffle buffer (per worker).
        cycle_length: TRAIN: files read at once, one record from each in turn.
        seed: TRAIN: file order and shuffling. Same seed, workers and ranks: same
            batches. None draws one (ranks agree through torch.distributed).
        eval_single_pass: EVAL/PREDICT: one pass, last partial batch kept (else
            forever, full batches only).
        skip_corrupt_records: skip corrupt records (bad crc, truncation, records
            that do not parse), counting them in ``read_stats`` and logging a
            summary after each pass; default raises DataError naming the file and
            byte offset.
        verify_crc: check record crcs.
        compression: None, ``'GZIP'`` or ``'auto'`` (sniffed per file).
        decode_images: decode encoded images (else numpy arrays of bytes).
        prefetch_factor, persistent_workers, multiprocessing_context: passed to
            the DataLoader (with workers; ``prefetch_factor`` then counts items
            of ``batches_per_transfer`` batches). Without workers, a thread of the
            training process makes ``prefetch_factor`` batches ahead while the
            training step runs (no thread when None or 0, or with a preprocess_fn).
        pin_memory: hand out batches in pinned memory (when CUDA is available).
        recycle_buffers: shared-memory batch buffers each worker reuses once the
            batch in it is dropped (default ``batches_per_transfer *
            (prefetch_factor + 2) + 1``; 0: a fresh buffer per batch; see
            :class:`t2r.data.pipeline.RecordBatchDataset`).
        batches_per_transfer: with workers, each sends this many consecutive
            batches as one DataLoader item (``prefetch_factor`` counts such
            items). None (default): :func:`auto_batches_per_transfer`, 4 for
            batches of 64 small images, 1 for large images (and 1 for a replay
            directory, where fresh data matters more). The batches and their
            order do not depend on it.
        rank, world_size: this process among the data-parallel ranks; default
            from torch.distributed when it is initialized, else 0 of 1.
        label: a name for logs.
    """

    def __init__(
        self,
        file_patterns: FilePatterns | Mapping[str, FilePatterns] | None = None,
        batch_size: int = 32,
        *,
        dataset_map: Mapping[str, FilePatterns] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(batch_size=batch_size, **kwargs)
        self._patterns = _patterns_map(file_patterns, dataset_map)

    @property
    def file_patterns(self) -> dict[str, FilePatterns]:
        return dict(self._patterns)

    def _files(self) -> dict[str, list[str]]:
        return {key: expand_file_patterns(patterns) for key, patterns in self._patterns.items()}

    def _sources(self, mode: str) -> Any:
        return self._files()


class FractionalRecordInputGenerator(DefaultRecordInputGenerator):
    """Only the first ``file_fraction`` of the (sorted) files, e.g. for data ablations.

    The number of files is rounded down; at least one file must remain.
    """

    def __init__(
        self,
        file_patterns: FilePatterns | Mapping[str, FilePatterns] | None = None,
        batch_size: int = 32,
        *,
        file_fraction: float = 1.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(file_patterns, batch_size, **kwargs)
        if not 0.0 < file_fraction <= 1.0:
            raise ValueError(f"file_fraction must be in (0, 1], got {file_fraction}.")
        self._file_fraction = float(file_fraction)

    def _files(self) -> dict[str, list[str]]:
        out = {}
        for key, files in super()._files().items():
            count = int(self._file_fraction * len(files))
            if count == 0:
                raise ValueError(
                    f"file_fraction {self._file_fraction} of {len(files)} files leaves none "
                    f"(patterns {self._patterns[key]!r})."
                )
            out[key] = files[:count]
        return out


class WeightedRecordInputGenerator(_RecordInputGenerator):
    """Samples records from several file groups with weights (e.g. one per task).

    Args:
        file_patterns: one pattern per group: a list, or a comma-separated string
            (each piece one group).
        weights: sampling weight per group (default equal); normalized.
        Other arguments as for :class:`DefaultRecordInputGenerator`. ``seed`` also
        drives the sampling. In a single EVAL pass, exhausted groups drop out and
        the others go on until all are read.
    """

    def __init__(
        self,
        file_patterns: str | Sequence[str | os.PathLike[str]],
        batch_size: int = 32,
        *,
        weights: Sequence[float] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(batch_size=batch_size, **kwargs)
        if isinstance(file_patterns, (str, os.PathLike)):
            groups = [p for p in os.fspath(file_patterns).split(",") if p.strip()]
        else:
            groups = [os.fspath(p) for p in file_patterns]
        if not groups:
            raise ValueError("WeightedRecordInputGenerator needs at least one file pattern.")
        if weights is not None and len(weights) != len(groups):
            raise ValueError(
                f"{len(weights)} weights for {len(groups)} file patterns; give one per pattern."
            )
        self._groups = groups
        self._weights = [1.0] * len(groups) if weights is None else [float(w) for w in weights]

    def _sources(self, mode: str) -> Any:
        return [expand_file_patterns(group) for group in self._groups]


class SourceInputGenerator(_RecordInputGenerator):
    """Batches from any :class:`t2r.data.sources.DataSource`, through the shared pipeline.

    Sharding over workers and ranks, seeded shuffling, the input position and
    batching into spec-shaped tensors are the pipeline's (see
    :mod:`t2r.data.pipeline`); the source only lists and reads its units and
    makes the parse fn (see :mod:`t2r.data.sources`).

    Args:
        source: the data source; or ``{dataset_key: source}`` to zip several
            (their parse fn must then accept ``{dataset_key: examples}``, as
            TFRecord parsing does).
        batch_size: examples per batch.
        refresh_secs: growing sources: list the units again this often within a
            pass (None: at the start of every pass only).
        Other arguments as for :class:`DefaultRecordInputGenerator`.
    """

    def __init__(
        self,
        source: DataSource | Mapping[str, DataSource],
        batch_size: int = 32,
        *,
        refresh_secs: float | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(batch_size=batch_size, **kwargs)
        self._source = dict(source) if isinstance(source, Mapping) else {"": source}
        for key, value in self._source.items():
            if not isinstance(value, DataSource):
                raise TypeError(
                    f"Source {key or 'default'!r} is a {type(value).__name__}, not a DataSource "
                    "(units, read, length, make_parse_fn, growing)."
                )
        if refresh_secs is not None and refresh_secs <= 0:
            raise ValueError(f"refresh_secs must be positive or None, got {refresh_secs}.")
        self._refresh_secs = refresh_secs

    @property
    def source(self) -> DataSource | dict[str, DataSource]:
        return self._source[""] if list(self._source) == [""] else dict(self._source)

    def _sources(self, mode: str) -> Any:
        return dict(self._source)


class ReplayInputGenerator(SourceInputGenerator):
    """Training input over a replay directory that collectors keep adding files to.

    Every pass lists the directory again (and, within a pass, every
    ``refresh_secs``), so files published after the learner started are read
    within ``refresh_secs`` (plus the batches already prefetched). Only complete
    files are read: writers publish by atomic rename and temporary names are
    never listed (:class:`t2r.data.sources.ReplayDirectorySource`).

    Sampling: each pass reads every file listed at its start, and each file
    that appears during it, exactly once, in a shuffled order, interleaving
    ``cycle_length`` files and shuffling in a buffer; so over passes every
    transition seen is drawn equally often (uniform over the transitions seen),
    newer ones starting later. With ``max_files``, only the newest that many
    files are listed: uniform over a FIFO window of recent transitions
    (recency-weighted as a step).

    Sharding: every worker and rank reads every file and keeps the records that
    fall on it (by index and a hash of the file name), so shards agree without
    communication however the directory grows; reading (not decoding) is
    repeated per shard. Resume: the order cannot be rebuilt once the directory
    changed; a resumed learner starts a new pass (docs/training.md).

    Args:
        replay_dir: a directory (all its complete files) or glob(s).
        batch_size: examples per batch.
        max_files: keep only the newest this many files (None: all).
        refresh_secs: how often to look for new files within a pass, and to
            look again when there is nothing (yet) to read.
        Other arguments as for :class:`DefaultRecordInputGenerator`.
    """

    def __init__(
        self,
        replay_dir: FilePatterns,
        batch_size: int = 32,
        *,
        max_files: int | None = None,
        refresh_secs: float = 10.0,
        verify_crc: bool = True,
        compression: str | None = "auto",
        skip_corrupt_records: bool = False,
        **kwargs: Any,
    ) -> None:
        source = ReplayDirectorySource(
            replay_dir,
            max_files=max_files,
            verify_crc=verify_crc,
            compression=compression,
            skip_corrupt=skip_corrupt_records,
        )
        super().__init__(
            source,
            batch_size,
            refresh_secs=refresh_secs,
            verify_crc=verify_crc,
            compression=compression,
            skip_corrupt_records=skip_corrupt_records,
            **kwargs,
        )


def get_multi_eval_name(tf_config_env: Mapping[str, Any] | None = None) -> str | None:
    """The ``multi_eval_name`` of the ``TF_CONFIG`` environment variable (Tensor2Robot's)."""
    if tf_config_env is None:
        tf_config_env = json.loads(os.environ.get(_TF_CONFIG_ENV, "{}") or "{}")
    name = tf_config_env.get(_MULTI_EVAL_NAME)
    return None if name is None else str(name)


class MultiEvalRecordInputGenerator(DefaultRecordInputGenerator):
    """Several named eval sets: ``create_dataset`` reads one, ``create_datasets`` all.

    Args:
        eval_map: ``{eval_name: file_patterns}``.
        eval_name: which set ``create_dataset`` reads; default the
            ``multi_eval_name`` of ``TF_CONFIG`` (as in Tensor2Robot), else the
            only set if there is one.
        Other arguments as for :class:`DefaultRecordInputGenerator`.
    """

    def __init__(
        self,
        eval_map: Mapping[str, FilePatterns],
        batch_size: int = 32,
        *,
        eval_name: str | None = None,
        **kwargs: Any,
    ) -> None:
        if not eval_map:
            raise ValueError("eval_map is empty.")
        self._eval_map = dict(eval_map)
        name = eval_name or get_multi_eval_name()
        if name is None and len(self._eval_map) == 1:
            name = next(iter(self._eval_map))
        if name is not None and name not in self._eval_map:
            raise ValueError(f"Unknown eval set {name!r}; eval_map has {sorted(self._eval_map)}.")
        self._eval_name = name
        super().__init__(self._eval_map[name] if name else "<unset>", batch_size, **kwargs)

    @property
    def eval_names(self) -> list[str]:
        return list(self._eval_map)

    @property
    def eval_name(self) -> str | None:
        return self._eval_name

    def _files(self) -> dict[str, list[str]]:
        if self._eval_name is None:
            raise ValueError(
                f"No eval set chosen among {sorted(self._eval_map)}: pass eval_name or set "
                f"{_MULTI_EVAL_NAME} in TF_CONFIG, or use create_datasets()."
            )
        return super()._files()

    def create_datasets(self, mode: str = ModeKeys.EVAL) -> dict[str, BatchIterable]:
        """``{eval_name: batches}`` for every eval set."""
        out = {}
        chosen, patterns = self._eval_name, self._patterns
        try:
            for name, eval_patterns in self._eval_map.items():
                self._eval_name, self._patterns = name, _patterns_map(eval_patterns, None)
                out[name] = self.create_dataset(mode)
        finally:
            self._eval_name, self._patterns = chosen, patterns
        return out


class GeneratorInputGenerator(AbstractInputGenerator):
    """Batches made by a Python generator, ``_generator_fn(batch_size)``.

    Args:
        batch_size: examples per batch.
        sequence_length: time steps of sequence specs (None: no time dimension).
        num_batches: stop after this many batches (None: forever, as Tensor2Robot).
    """

    def __init__(
        self,
        batch_size: int = 32,
        sequence_length: int | None = None,
        num_batches: int | None = None,
    ) -> None:
        super().__init__(batch_size=batch_size)
        self._sequence_length = sequence_length
        self._num_batches = num_batches

    @abc.abstractmethod
    def _generator_fn(self, batch_size: int) -> Iterator[tuple[Any, Any]]:
        """Yields ``(features, labels)`` of numpy arrays (labels may be None)."""

    def _batches(self) -> Iterator[tuple[TensorSpecStruct, TensorSpecStruct | None]]:
        feature_spec = flatten_spec_structure(self._feature_spec)
        label_spec = None if self._label_spec is None else flatten_spec_structure(self._label_spec)
        for count, (features, labels) in enumerate(self._generator_fn(self.batch_size)):
            if self._num_batches is not None and count >= self._num_batches:
                return
            out_features = to_tensors(flatten_spec_structure(features), feature_spec)
            out_labels = (
                None
                if labels is None or label_spec is None
                else to_tensors(flatten_spec_structure(labels), label_spec)
            )
            if self._preprocess_fn is not None:
                out_features, out_labels = self._preprocess_fn(out_features, out_labels)
            yield out_features, out_labels

    def create_dataset(self, mode: str) -> BatchIterable:
        ModeKeys.validate(mode)
        self._assert_specs_initialized()
        return BatchIterable(
            self._batches,
            description=type(self).__name__,
            single_pass=self._num_batches is not None,
        )


class DefaultRandomInputGenerator(GeneratorInputGenerator):
    """Random data from the specs (floats in [0, 1), ints in [0, 255), fair bools).

    Args:
        seed: makes the batches reproducible (each pass starts over).
        Other arguments as for :class:`GeneratorInputGenerator`.
    """

    def __init__(
        self,
        batch_size: int = 32,
        sequence_length: int | None = None,
        num_batches: int | None = None,
        seed: int | None = None,
    ) -> None:
        super().__init__(batch_size, sequence_length, num_batches)
        self._seed = seed

    def _generator_fn(self, batch_size: int) -> Iterator[tuple[Any, Any]]:
        rng = np.random.default_rng(self._seed if self._seed is not None else self._default_seed)
        while True:
            features = make_random_numpy(
                self._feature_spec, batch_size, self._sequence_length, seed=rng
            )
            labels = (
                None
                if self._label_spec is None
                else make_random_numpy(
                    self._label_spec, batch_size, self._sequence_length, seed=rng
                )
            )
            yield features, labels


class DefaultConstantInputGenerator(GeneratorInputGenerator):
    """Every value ``constant_value``, shaped by the specs."""

    def __init__(
        self,
        constant_value: float | int,
        batch_size: int = 32,
        sequence_length: int | None = None,
        num_batches: int | None = None,
    ) -> None:
        super().__init__(batch_size, sequence_length, num_batches)
        self._constant_value = constant_value

    def _generator_fn(self, batch_size: int) -> Iterator[tuple[Any, Any]]:
        while True:
            features = make_constant_numpy(
                self._feature_spec, self._constant_value, batch_size, self._sequence_length
            )
            labels = (
                None
                if self._label_spec is None
                else make_constant_numpy(
                    self._label_spec, self._constant_value, batch_size, self._sequence_length
                )
            )
            yield features, labels
