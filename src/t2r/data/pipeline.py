"""The pipeline behind the input generators: list, shard, shuffle, batch, parse.

Examples come from data sources (:mod:`t2r.data.sources`: TFRecord files,
arrays in memory, a growing replay directory, ...); everything below is shared
by all of them. One :class:`RecordBatchDataset` (a torch ``IterableDataset``)
runs in each DataLoader worker (or in the main process with ``num_workers=0``)::

    units of each dataset key's source (files, episodes, chunks)
      -> unit order        TRAIN: shuffled each epoch (same permutation in every worker)
      -> shard             worker w of W on rank r of R reads shard r * W + w of R * W
      -> interleave        TRAIN: cycle_length units at once, one example from each in turn
      -> shuffle buffer    TRAIN only, per shard and epoch (each epoch is every example once)
      -> zip / sample      several dataset keys zipped; or weighted sources sampled
      -> batch             TRAIN: full batches only; EVAL: the last partial batch kept
      -> parse + decode    the source's parse fn (ParseTFExampleFn for TFRecord)
      -> preprocess_fn     optional, still in the worker, RNGs seeded per batch

Sharding never reads an example twice per pass: with at least as many units as
shards, units are dealt to shards (``order[shard::num_shards]``); with fewer,
every shard reads every unit but keeps only examples ``i`` with
``i % num_shards == shard`` of the (deterministic) interleaved stream, so decoding,
the expensive part, is still split. TRAIN repeats forever; a shard that finds
no example in a whole epoch stops (so an IterableDataset worker never spins).
A growing source (a replay directory) is listed again every pass and every
``refresh_secs``; its shards keep examples by index and a hash of the unit name.

Input position: ``start_batch`` (``BatchIterable.iter_from``) starts the stream at
a batch of this rank as if the batches before had been read. Each worker works
out which of them it would have made; whole epochs are skipped from the units'
lengths without reading, the rest of the current epoch is read but not parsed.

A worker parses each batch into one shared-memory buffer and reuses a few such
buffers: the main process gets the buffer once, then only a small message per
batch, and a buffer is refilled only after the main process has dropped every
tensor viewing it (see ``_SlotPool``). Held batches are never overwritten; if
all buffers are held, a fresh one is used. A worker may send several consecutive
batches as one DataLoader item (``batches_per_transfer``, a ``_BatchGroup``):
the DataLoader's cost per item is then paid once for all of them, and
:class:`BatchIterable` yields the batches in the order the workers would have
given them one at a time (``_ungroup``).
"""

from __future__ import annotations

import collections
import contextlib
import copy
import dataclasses
import logging
import multiprocessing
import os
import queue
import random
import secrets
import threading
import time
import weakref
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.utils.data

from t2r.data.batch_buffer import LayoutEntry, tensors_from_layout
from t2r.data.errors import DataError
from t2r.data.parsing import ParseTFExampleFn
from t2r.data.sources import DataSource, TFRecordSource
from t2r.data.tfrecord import ReadStats
from t2r.specs import TensorSpecStruct

__all__ = ["BatchIterable", "RecordBatchDataset", "SharedReadStats", "resolve_rank_and_world_size"]

logger = logging.getLogger(__name__)

# (file, byte offset, serialized record)
Item = tuple[str, int, bytes]


def resolve_rank_and_world_size(
    rank: int | None = None, world_size: int | None = None
) -> tuple[int, int]:
    """Explicit values win; else torch.distributed's when initialized; else (0, 1)."""
    if rank is None or world_size is None:
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            rank = torch.distributed.get_rank() if rank is None else rank
            world_size = torch.distributed.get_world_size() if world_size is None else world_size
        else:
            rank = 0 if rank is None else rank
            world_size = 1 if world_size is None else world_size
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"Invalid rank {rank} for world_size {world_size}.")
    return rank, world_size


class SharedReadStats:
    """:class:`ReadStats` summed over every worker process (shared memory counters)."""

    _FIELDS = ("records", "corrupt_records", "truncated_files")

    def __init__(self, context: Any = None) -> None:
        ctx = (
            multiprocessing.get_context(context)
            if isinstance(context, str) or context is None
            else context
        )
        self._counts = ctx.Array("q", len(self._FIELDS), lock=True)

    def add(self, delta: ReadStats) -> None:
        values = [getattr(delta, name) for name in self._FIELDS]
        if any(values):
            with self._counts.get_lock():
                for i, value in enumerate(values):
                    self._counts[i] += value

    def snapshot(self) -> ReadStats:
        with self._counts.get_lock():
            return ReadStats(*self._counts[:])

    def reset(self) -> None:
        with self._counts.get_lock():
            for i in range(len(self._FIELDS)):
                self._counts[i] = 0


def _seed(*parts: int) -> int:
    return int(np.random.SeedSequence([p & 0xFFFFFFFF for p in parts]).generate_state(1)[0])


@dataclasses.dataclass
class _Shard:
    index: int
    count: int


class RecordBatchDataset(torch.utils.data.IterableDataset):
    """Batches of parsed examples from data sources; see the module docstring.

    Args:
        sources: ``{dataset_key: source}``; several keys are zipped example by
            example (each spec reads from its dataset_key). With ``weights``,
            instead a list of sources sampled example by example with those
            weights. A source is a :class:`t2r.data.sources.DataSource`, or a list
            of TFRecord files (made a :class:`~t2r.data.sources.TFRecordSource`
            with ``verify_crc``, ``compression`` and ``skip_corrupt``).
        parse_fn: maps a batch of examples (a list, or ``{dataset_key: list}``) to
            ``(features, labels)`` or ``features``.
        batch_size: examples per batch.
        shuffle: TRAIN behaviour: shuffled unit order, interleaving, shuffle buffer.
        repeat: read forever (else one pass).
        drop_remainder: drop the last partial batch of a pass.
        shuffle_buffer_size, cycle_length: see the module docstring.
        seed: base seed; the same seed gives the same batches for the same
            number of workers and ranks.
        rank, world_size: this process's place among the distributed ranks.
        skip_corrupt: skip (and count) corrupt records instead of raising: bad
            framing or crc (see :func:`read_tfrecord_with_offsets`), and records
            the parse fn rejects.
        verify_crc, compression: passed to the reader of file lists.
        preprocess_fn: applied to each parsed batch, in the worker. Its python,
            numpy and torch RNGs are seeded per batch (from ``seed``, the rank and
            the batch's index), so random preprocessing is reproducible and
            resumes exactly.
        weights: sampling weights of the sources (weighted mode).
        stats: shared counters updated after every batch.
        recycle_buffers: in a DataLoader worker, parse into up to this many
            shared-memory buffers that are reused once the main process has
            dropped every tensor of the batch they hold (0: a fresh buffer per
            batch). Only for a ParseTFExampleFn without preprocess_fn; batches then
            reach the main process as ``_SlotBatch`` messages that
            :class:`BatchIterable` turns into ``(features, labels)``.
        refresh_secs: for growing sources (a replay directory): list the units
            again after this many seconds within a pass (None: once per pass);
            also how long to wait before looking again when there is nothing to
            read.
        start_batch: (repeating streams) begin at this batch of this rank's
            stream, as if that many batches had been read; see
            :meth:`BatchIterable.iter_from`.
        batches_per_transfer: in a DataLoader worker, send this many consecutive
            batches as one item (a ``_BatchGroup``), so that the DataLoader's
            per-item cost (its queues, a few hundred microseconds) is paid once
            for all of them; :class:`BatchIterable` puts the batches back in the
            stream's order, which does not depend on this number.
    """

    def __init__(
        self,
        sources: Mapping[str, DataSource | Sequence[str]] | Sequence[DataSource | Sequence[str]],
        parse_fn: ParseTFExampleFn | Callable[[Any], Any],
        batch_size: int,
        *,
        shuffle: bool,
        repeat: bool,
        drop_remainder: bool,
        shuffle_buffer_size: int = 1000,
        cycle_length: int = 10,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        skip_corrupt: bool = False,
        verify_crc: bool = True,
        compression: str | None = "auto",
        preprocess_fn: Callable[[Any, Any], tuple[Any, Any]] | None = None,
        weights: Sequence[float] | None = None,
        stats: SharedReadStats | None = None,
        recycle_buffers: int = 4,
        refresh_secs: float | None = None,
        start_batch: int = 0,
        batches_per_transfer: int = 1,
    ) -> None:
        super().__init__()
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}.")
        if start_batch < 0:
            raise ValueError(f"start_batch must be >= 0, got {start_batch}.")
        if batches_per_transfer < 1:
            raise ValueError(
                "RecordBatchDataset: batches_per_transfer must be >= 1, got "
                f"{batches_per_transfer}."
            )

        def as_source(value: DataSource | Sequence[str]) -> DataSource:
            if isinstance(value, DataSource):
                return value
            files = list(value)
            if not files:
                raise ValueError("Every dataset needs at least one file.")
            return TFRecordSource(
                files, verify_crc=verify_crc, compression=compression, skip_corrupt=skip_corrupt
            )

        self.weights = None if weights is None else [float(w) for w in weights]
        if self.weights is not None:
            groups = [as_source(g) for g in sources]
            if len(groups) != len(self.weights):
                raise ValueError(
                    f"{len(self.weights)} weights for {len(groups)} file groups; give one each."
                )
            if any(w < 0 for w in self.weights) or sum(self.weights) <= 0:
                raise ValueError(f"Weights must be >= 0 with a positive sum, got {self.weights}.")
            self.groups: list[DataSource] = groups
            self.sources: dict[str, DataSource] = {}
        else:
            if not isinstance(sources, Mapping):
                raise TypeError("sources must be a {dataset_key: source} mapping without weights.")
            self.sources = {key: as_source(value) for key, value in sorted(sources.items())}
            self.groups = []
        self.parse_fn = parse_fn
        self.batch_size = int(batch_size)
        self.shuffle = shuffle
        self.repeat = repeat
        self.drop_remainder = drop_remainder
        self.shuffle_buffer_size = int(shuffle_buffer_size)
        self.cycle_length = max(1, int(cycle_length))
        self.seed = int(seed)
        self.rank = rank
        self.world_size = world_size
        self.skip_corrupt = skip_corrupt
        self.preprocess_fn = preprocess_fn
        self.stats = stats
        self.recycle_buffers = int(recycle_buffers)
        self.refresh_secs = refresh_secs
        self.start_batch = int(start_batch)
        self.batches_per_transfer = int(batches_per_transfer)
        self._pool: _SlotPool | None = None
        self._local = ReadStats()
        self._flushed = ReadStats()
        self._lengths: dict[tuple[int, str], int] = {}
        every = [*self.sources.values(), *self.groups]
        tfrecords = all(isinstance(source, TFRecordSource) for source in every)
        self._location_word = "record at byte" if tfrecords else "example"

    @property
    def growing(self) -> bool:
        """Whether a source may gain units while it is read (a replay directory)."""
        return any(source.growing for source in [*self.sources.values(), *self.groups])

    # ---------------------------------------------------------------- sharding
    def _shard(self) -> tuple[_Shard, int, int]:
        """This process's shard, and which of the rank's batches it makes.

        Returns ``(shard, logical_worker, workers)``: the DataLoader takes batch
        ``k`` from worker ``k % workers``; starting at ``start_batch``, worker
        ``w`` plays the part of worker ``(w + start_batch) % workers`` of a pass
        started at 0, so batch ``k`` of the resumed stream is batch
        ``start_batch + k`` of the original one.
        """
        info = torch.utils.data.get_worker_info()
        worker, workers = (0, 1) if info is None else (info.id, info.num_workers)
        logical = (worker + self.start_batch) % workers
        return _Shard(self.rank * workers + logical, self.world_size * workers), logical, workers

    # ----------------------------------------------------------------- reading
    def _read(self, source: DataSource, unit: str, count_corruption: bool) -> Iterator[Item]:
        stats = ReadStats()
        try:
            for location, example in source.read(unit, stats):
                yield unit, location, example
        finally:
            # With record-level sharding every shard reads every file: only shard 0
            # counts its corruption, so totals over workers stay right.
            if count_corruption:
                self._local.corrupt_records += stats.corrupt_records
                self._local.truncated_files += stats.truncated_files

    def _interleave(
        self,
        source: DataSource,
        pending: collections.deque[str],
        cycle_length: int,
        counts: bool,
        refresh: Callable[[], None] | None = None,
    ) -> Iterator[Item]:
        """One example from each of ``cycle_length`` open units in turn (deterministic).

        ``refresh`` (growing sources) may append units to ``pending``; it is
        called after every round.
        """
        if cycle_length <= 1 and refresh is None:
            for unit in pending:
                yield from self._read(source, unit, counts)
            return
        active: list[Iterator[Item]] = []
        while pending or active:
            while pending and len(active) < cycle_length:
                active.append(self._read(source, pending.popleft(), counts))
            for reader in list(active):
                item = next(reader, None)
                if item is None:
                    active.remove(reader)
                    if pending:
                        active.append(self._read(source, pending.popleft(), counts))
                    continue
                yield item
            if refresh is not None:
                refresh()

    def _order(self, units: list[str], stream: int, epoch: int) -> list[str]:
        order = list(units)
        if self.shuffle:
            random.Random(_seed(self.seed, stream, epoch)).shuffle(order)
        return order

    def _length(self, source: DataSource, stream: int, unit: str) -> int:
        key = (stream, unit)
        if key not in self._lengths:
            length = source.length(unit)
            if length is None:  # unknown: count by reading (nothing is parsed)
                length = sum(1 for _ in source.read(unit, ReadStats()))
            self._lengths[key] = length
        return self._lengths[key]

    def _epoch_count(self, source: DataSource, stream: int, order: list[str], shard: _Shard) -> int:
        """Examples this shard reads in one epoch over ``order`` (without reading them)."""
        if len(order) >= shard.count:
            return sum(self._length(source, stream, u) for u in order[shard.index :: shard.count])
        total = sum(self._length(source, stream, u) for u in order)
        return max(0, -(-(total - shard.index) // shard.count))

    def _static_epoch(self, source: DataSource, order: list[str], shard: _Shard) -> Iterator[Item]:
        """This shard's examples of one epoch over a fixed list of units."""
        file_level = len(order) >= shard.count
        mine = order[shard.index :: shard.count] if file_level else order
        cycle = min(self.cycle_length, len(mine)) if self.shuffle else 1
        counts = file_level or shard.index == 0
        for index, item in enumerate(
            self._interleave(source, collections.deque(mine), cycle, counts)
        ):
            if file_level or index % shard.count == shard.index:
                self._local.records += 1
                yield item

    def _growing_epoch(
        self, source: DataSource, stream: int, shard: _Shard, epoch: int
    ) -> Iterator[Item]:
        """One pass over the units of a growing source, taking in new ones as they come.

        Every shard reads every unit and keeps the examples whose index, offset
        by a hash of the unit's name, falls on it: shards agree without talking
        to each other, even when they list the directory at different moments.
        """
        units = source.units()
        rng = random.Random(_seed(self.seed, stream, epoch, 0x6EE0))
        if self.shuffle:
            rng.shuffle(units)
        pending = collections.deque(units)
        seen = set(units)
        last = time.monotonic()

        def refresh() -> None:
            nonlocal last
            if self.refresh_secs is None or time.monotonic() - last < self.refresh_secs:
                return
            last = time.monotonic()
            new = [unit for unit in source.units() if unit not in seen]
            if self.shuffle:
                rng.shuffle(new)
            pending.extend(new)
            seen.update(new)
            if new:
                logger.info("%r: %d new units join the pass.", source, len(new))

        counts = shard.index == 0
        hashes: dict[str, int] = {}
        indexes: dict[str, int] = {}
        for item in self._interleave(
            source, pending, self.cycle_length if self.shuffle else 1, counts, refresh
        ):
            unit = item[0]
            index = indexes.get(unit, 0)
            indexes[unit] = index + 1
            if unit not in hashes:
                hashes[unit] = zlib.crc32(os.path.basename(unit).encode())
            if (hashes[unit] + index) % shard.count == shard.index:
                self._local.records += 1
                yield item

    def _shuffled(
        self, items: Iterator[Any], stream: int, shard: _Shard, epoch: int
    ) -> Iterator[Any]:
        """A shuffle buffer over one epoch (drained at its end, so epochs stay apart)."""
        if not self.shuffle or self.shuffle_buffer_size <= 1:
            yield from items
            return
        rng = random.Random(_seed(self.seed, stream, shard.index, epoch, 0x5EED))
        buffer: list[Any] = []
        size = self.shuffle_buffer_size
        for item in items:
            if len(buffer) < size:
                buffer.append(item)
                continue
            j = rng.randrange(size)
            yield buffer[j]
            buffer[j] = item
        rng.shuffle(buffer)
        yield from buffer

    def _stream(self, source: DataSource, stream: int, shard: _Shard, skip: int) -> Iterator[Item]:
        """This shard's examples of one source, epoch after epoch if repeating.

        The first ``skip`` examples are left out; whole epochs of them without
        reading (their size comes from the units' lengths).
        """
        epoch = 0
        while True:
            if source.growing:
                items = self._growing_epoch(source, stream, shard, epoch)
            else:
                order = self._order(source.units(), stream, epoch)
                if skip and self.repeat:
                    count = self._epoch_count(source, stream, order, shard)
                    if 0 < count <= skip:
                        skip -= count
                        epoch += 1
                        continue
                items = self._static_epoch(source, order, shard)
            found = 0
            for item in self._shuffled(items, stream, shard, epoch):
                found += 1
                if skip:
                    skip -= 1
                    continue
                yield item
            self._log_epoch(epoch, stream, shard)
            epoch += 1
            if not self.repeat:
                return
            if found == 0:
                if source.growing:
                    time.sleep(self.refresh_secs or 1.0)
                    continue
                logger.warning(
                    "Shard %d of %d found no record in %d units of %r; it stops.",
                    shard.index,
                    shard.count,
                    len(source.units()),
                    source,
                )
                return

    def _examples(self, shard: _Shard, skip: int) -> Iterator[Any]:
        """Items: ``(unit, location, example)``, or ``{dataset_key: item}`` when zipping.

        ``skip``: leave out this many items first (cheaply, see :meth:`_stream`).
        """
        if self.weights is not None:
            weights = list(self.weights)
            rng = random.Random(_seed(self.seed, shard.index, 0x3E16))
            live = [i for i, w in enumerate(weights) if w > 0]
            skips = [0] * len(self.groups)
            if skip and self.repeat:  # endless streams never drop out: replay the draws
                for _ in range(skip):
                    (choice,) = rng.choices(live, weights=[weights[i] for i in live])
                    skips[choice] += 1
                skip = 0
            streams = [
                self._stream(source, i, shard, skips[i]) for i, source in enumerate(self.groups)
            ]
            while live:
                (choice,) = rng.choices(live, weights=[weights[i] for i in live])
                item = next(streams[choice], None)
                if item is None:
                    live.remove(choice)
                    continue
                if skip:
                    skip -= 1
                    continue
                yield item
            return
        keys = list(self.sources)
        iterators = [self._stream(self.sources[key], i, shard, skip) for i, key in enumerate(keys)]
        if len(keys) == 1 and keys[0] == "":
            yield from iterators[0]
            return
        for items in zip(*iterators):
            yield dict(zip(keys, items))

    # ---------------------------------------------------------------- batching
    def _log_epoch(self, epoch: int, stream: int, shard: _Shard) -> None:
        bad = self._local.corrupt_records + self._local.truncated_files
        if bad:
            logger.warning(
                "Shard %d of %d, stream %d, epoch %d: %d records so far, %d corrupt records "
                "skipped, %d truncated files.",
                shard.index,
                shard.count,
                stream,
                epoch,
                self._local.records,
                self._local.corrupt_records,
                self._local.truncated_files,
            )

    def _flush_stats(self) -> None:
        if self.stats is None:
            return
        delta = ReadStats(
            self._local.records - self._flushed.records,
            self._local.corrupt_records - self._flushed.corrupt_records,
            self._local.truncated_files - self._flushed.truncated_files,
        )
        self.stats.add(delta)
        self._flushed = dataclasses.replace(self._local)

    def _run_parse(self, records: Any, batch_index: int) -> Any:
        """Parse (and preprocess) one batch: ``(features, labels)`` or a _SlotBatch."""
        parse_fn = self.parse_fn
        if not isinstance(parse_fn, ParseTFExampleFn):
            parsed = parse_fn(records)
        elif self._pool is not None:
            return self._pool.parse(parse_fn, records)
        else:
            parsed = parse_fn(records)
            if not parse_fn.has_labels:
                parsed = (parsed, None)
        if not isinstance(parsed, tuple):
            parsed = (parsed, None)
        if self.preprocess_fn is not None:
            with _seeded_rngs(_seed(self.seed, self.rank, batch_index, 0x9E9)):
                parsed = tuple(self.preprocess_fn(*parsed))
        return parsed

    def _parse(self, pending: list[Any], batch_index: int) -> Any:
        """Parses a batch; in skip mode drops a bad record and returns None."""
        if isinstance(pending[0], dict):
            records: Any = {key: [item[key][2] for item in pending] for key in pending[0]}
        else:
            records = [item[2] for item in pending]
        try:
            return self._run_parse(records, batch_index)
        except DataError as e:
            index = getattr(e, "record_index", None)
            if index is None:
                raise
            item = pending[index]
            parts = item.values() if isinstance(item, dict) else [item]
            place = "; ".join(
                f"{unit}: {self._location_word} {location}" for unit, location, _ in parts
            )
            message = f"{place}: {e}"
            if not self.skip_corrupt:
                raise DataError(message, key=e.key, record_index=index) from e
            logger.warning("%s; skipping the record", message)
            self._local.corrupt_records += 1
            self._local.records -= 1
            del pending[index]
            return None

    def __iter__(self) -> Iterator[Any]:
        # Each pass works on its own shallow copy: its counters and buffers are its own.
        return copy.copy(self)._run()

    def _run(self) -> Iterator[Any]:
        info = torch.utils.data.get_worker_info()
        size = self.batches_per_transfer
        if info is None or size <= 1:
            yield from self._shard_batches()
            return
        # A worker sends its batches ``size`` at a time. Batches made before an
        # error reach the main process first; the error comes with the next item.
        group: list[Any] = []
        try:
            for batch in self._shard_batches():
                group.append(batch)
                if len(group) == size:
                    yield _BatchGroup(info.id, info.num_workers, group)
                    group = []
        except Exception:  # not GeneratorExit: a closed generator yields nothing more
            if group:
                yield _BatchGroup(info.id, info.num_workers, group)
            raise
        if group:
            yield _BatchGroup(info.id, info.num_workers, group)

    def _shard_batches(self) -> Iterator[Any]:
        shard, logical, workers = self._shard()
        in_worker = torch.utils.data.get_worker_info() is not None
        recycle = (
            in_worker
            and self.recycle_buffers > 0
            and isinstance(self.parse_fn, ParseTFExampleFn)
            and self.preprocess_fn is None
        )
        self._pool = _SlotPool(self.recycle_buffers) if recycle else None
        self._local = ReadStats()
        self._flushed = ReadStats()
        # This process makes batches logical, logical + workers, ... of the rank's
        # stream; those before start_batch are skipped unparsed.
        own = max(0, -(-(self.start_batch - logical) // workers))
        skip = own * self.batch_size
        if skip and self.growing:
            logger.info(
                "A growing source cannot rebuild a past order: the input position "
                "(batch %d) is not restored; reading starts a new pass.",
                self.start_batch,
            )
            skip = 0
        pending: list[Any] = []
        try:
            for item in self._examples(shard, skip):
                pending.append(item)
                if len(pending) < self.batch_size:
                    continue
                batch = self._parse(pending, logical + own * workers)
                if batch is None:
                    continue  # a bad record was dropped: refill
                pending = []
                own += 1
                self._flush_stats()
                yield batch
            while pending and not self.drop_remainder:
                batch = self._parse(pending, logical + own * workers)
                if batch is not None:
                    pending = []
                    own += 1
                    self._flush_stats()
                    yield batch
        finally:
            self._flush_stats()


@contextlib.contextmanager
def _seeded_rngs(seed: int) -> Iterator[None]:
    """Python, numpy and torch (CPU) RNGs seeded with ``seed`` inside, restored after."""
    python_state, numpy_state = random.getstate(), np.random.get_state()
    with torch.random.fork_rng(devices=[]):
        random.seed(seed)
        np.random.seed(seed)
        torch.manual_seed(seed)
        try:
            yield
        finally:
            random.setstate(python_state)
            np.random.set_state(numpy_state)


# ----------------------------------------------------- recycled batch buffers
#
# A fresh shared-memory buffer per batch costs its allocation, a page fault per
# 4 KiB page and the unmapping (about 0.6 ms for a 400 KB batch, 4.5 ms for a
# 6 MB one here: as much as decoding the batch's 64x64 JPEGs). Workers therefore
# keep a few buffers and reuse one as soon as the main process has dropped every
# tensor that views it. Each buffer starts with a 64-byte header whose first
# byte is the busy flag: the worker sets it before filling the buffer; the main
# process clears it from a finalizer of the array all the batch's tensors view.
# A buffer goes to the main process (as a file descriptor) only the first time;
# afterwards a message names it by (pool token, slot, generation).

_HEADER_BYTES = 64


class _Slot:
    __slots__ = ("base", "capacity", "flag", "generation", "sent", "storage")

    def __init__(self, capacity: int, generation: int) -> None:
        nbytes = _HEADER_BYTES + capacity
        if hasattr(torch.UntypedStorage, "_new_shared"):
            self.storage = torch.UntypedStorage._new_shared(nbytes)
        else:  # pragma: no cover - older torch
            self.storage = torch.empty(nbytes, dtype=torch.uint8).share_memory_().untyped_storage()
        self.base = torch.empty(0, dtype=torch.uint8).set_(self.storage)
        self.flag = self.base[:1].numpy()
        self.flag[0] = 1
        self.capacity = capacity
        self.generation = generation
        self.sent = False


class _SlotBatch:
    """A parsed batch in a recycled worker buffer, as sent to the main process."""

    __slots__ = ("features", "generation", "labels", "slot", "storage", "token")

    def __init__(
        self,
        token: str,
        slot: int,
        generation: int,
        storage: Any,
        features: list[LayoutEntry],
        labels: list[LayoutEntry] | None,
    ) -> None:
        self.token = token
        self.slot = slot
        self.generation = generation
        self.storage = storage
        self.features = features
        self.labels = labels

    def __getstate__(self) -> tuple[Any, ...]:
        return tuple(getattr(self, name) for name in self.__slots__)

    def __setstate__(self, state: tuple[Any, ...]) -> None:
        for name, value in zip(self.__slots__, state):
            setattr(self, name, value)


class _SlotPool:
    """Worker side: up to ``max_slots`` reusable shared buffers (then one-off ones)."""

    def __init__(self, max_slots: int) -> None:
        self.token = secrets.token_hex(8)
        self.max_slots = max_slots
        self.slots: list[_Slot] = []

    def _acquire(self, nbytes: int) -> tuple[int, _Slot]:
        for index, slot in enumerate(self.slots):
            if slot.flag[0] == 0 and slot.capacity >= nbytes:
                slot.flag[0] = 1
                return index, slot
        capacity = nbytes + nbytes // 4  # room for longer sequences later
        for index, slot in enumerate(self.slots):
            if slot.flag[0] == 0:  # free but too small: replace it
                self.slots[index] = _Slot(capacity, slot.generation + 1)
                return index, self.slots[index]
        if len(self.slots) < self.max_slots:
            self.slots.append(_Slot(capacity, 0))
            return len(self.slots) - 1, self.slots[-1]
        return -1, _Slot(nbytes, 0)  # every buffer is held: a one-off buffer

    def parse(self, parse_fn: ParseTFExampleFn, records: Any) -> _SlotBatch:
        taken: list[tuple[int, _Slot]] = []

        def allocate(nbytes: int) -> torch.Tensor:
            index, slot = self._acquire(nbytes)
            taken.append((index, slot))
            return slot.base[_HEADER_BYTES : _HEADER_BYTES + nbytes]

        try:
            parsed = parse_fn.parse_numpy(records, allocate=allocate)
        except BaseException:
            for _, slot in taken:
                slot.flag[0] = 0
            raise
        ((index, slot),) = taken
        features, labels = parse_fn.layout(parsed)
        storage = None if slot.sent else slot.storage
        slot.sent = True
        return _SlotBatch(self.token, index, slot.generation, storage, features, labels)


class _OwnerArray(np.ndarray):
    """The array every tensor of a received batch views; its finalizer frees the slot.

    A subclass, so numpy does not collapse the views' base onto the buffer.
    """


def _release(flag: np.ndarray) -> None:
    flag[0] = 0


class _Receiver:
    """Main side: turns _SlotBatch messages into ``(features, labels)`` tensors."""

    def __init__(self) -> None:
        # (pool token, slot) -> (generation, the slot's bytes as a numpy array)
        self._buffers: dict[tuple[str, int], tuple[int, np.ndarray]] = {}

    def materialize(self, message: _SlotBatch) -> tuple[TensorSpecStruct, Any]:
        key = (message.token, message.slot)
        if message.storage is not None:
            buffer = torch.empty(0, dtype=torch.uint8).set_(message.storage).numpy()
            if message.slot >= 0:
                self._buffers[key] = (message.generation, buffer)
        else:
            generation, buffer = self._buffers[key]
            if generation != message.generation:
                raise RuntimeError(
                    f"Batch buffer {key} generation {message.generation} was never received "
                    f"(have {generation})."
                )
        owner = buffer[_HEADER_BYTES:].view(_OwnerArray)
        if message.slot >= 0:
            weakref.finalize(owner, _release, buffer[:1])
        features = tensors_from_layout(owner, message.features)
        labels = None if message.labels is None else tensors_from_layout(owner, message.labels)
        return features, labels


class _BatchGroup:
    """Consecutive batches of one DataLoader worker, sent to the main process as one item."""

    __slots__ = ("batches", "worker", "workers")

    def __init__(self, worker: int, workers: int, batches: list[Any]) -> None:
        self.worker = worker
        self.workers = workers
        self.batches = batches

    def __getstate__(self) -> tuple[Any, ...]:
        return (self.worker, self.workers, self.batches)

    def __setstate__(self, state: tuple[Any, ...]) -> None:
        self.worker, self.workers, self.batches = state


_END = object()


def _ungroup(items: Iterator[Any]) -> Iterator[Any]:
    """The batches of a DataLoader's items in stream order, ``_BatchGroup`` or not.

    The DataLoader hands out one item from each live worker in turn (worker ids
    increasing within a round). Ungrouped, round ``r`` holds batch ``r`` of each
    worker; so for a round of groups of ``G`` batches this yields batch ``j`` of
    every group, worker by worker, for ``j`` in ``0..G-1``: the order the same
    workers give one batch at a time. A round ends at the last worker, or when
    the next item comes from a worker already seen (some have finished: it is
    kept for the next round). An error while a round is collected is raised
    after the round's batches.
    """
    lookahead: Any = _END
    while True:
        if lookahead is not _END:
            first, lookahead = lookahead, _END
        else:
            first = next(items, _END)
            if first is _END:
                return
        if not isinstance(first, _BatchGroup):
            yield first
            continue
        groups = [first]
        error: BaseException | None = None
        while groups[-1].worker < groups[-1].workers - 1:
            try:
                item = next(items, _END)
            except Exception as e:
                error = e
                break
            if item is _END:
                break
            if not isinstance(item, _BatchGroup) or item.worker <= groups[-1].worker:
                lookahead = item
                break
            groups.append(item)
        for j in range(max(len(group.batches) for group in groups)):
            for group in groups:
                if j < len(group.batches):
                    yield group.batches[j]
        groups = []
        if error is not None:
            raise error


def _pin(struct: TensorSpecStruct) -> TensorSpecStruct:
    return TensorSpecStruct(
        (key, value.pin_memory() if isinstance(value, torch.Tensor) else value)
        for key, value in struct.items()
    )


def _no_convert(batch: Any) -> Any:
    """DataLoader's collate_fn: batches are already tensors (picklable, module level)."""
    return batch


class _PrefetchThread:
    """Runs an iterator in a thread, up to ``depth`` items ahead of its consumer.

    For pipelines in the training process (``num_workers=0``): the next batches
    are read and parsed while the training step runs (JPEG decoding and torch
    release the GIL), so a step that takes longer than a batch never waits for
    one. Items come out in the iterator's order; its exception is raised to the
    consumer; :meth:`close` (or the consumer's generator closing) stops the thread.
    """

    _END = object()

    def __init__(self, iterator: Iterator[Any], depth: int) -> None:
        self._queue: queue.Queue[tuple[Any, BaseException | None]] = queue.Queue(depth)
        self._stop = threading.Event()
        self._finished = False
        self._thread = threading.Thread(
            target=self._produce, args=(iterator,), name="t2r-prefetch", daemon=True
        )
        self._thread.start()

    def _put(self, item: tuple[Any, BaseException | None]) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _produce(self, iterator: Iterator[Any]) -> None:
        try:
            for item in iterator:
                if not self._put((item, None)):
                    return
            self._put((self._END, None))
        except BaseException as e:  # handed to the consumer, raised there
            self._put((self._END, e))
        finally:
            close = getattr(iterator, "close", None)
            if callable(close):
                close()

    def __iter__(self) -> _PrefetchThread:
        return self

    def __next__(self) -> Any:
        if self._finished:
            raise StopIteration
        item, error = self._queue.get()
        if item is self._END:
            self._finished = True
            self._thread.join()
            if error is not None:
                raise error
            raise StopIteration
        return item

    def close(self, timeout: float = 1.0) -> None:
        """Stops the thread: at once if it waits to queue a batch, else after the
        batch it is making. Waits up to ``timeout`` seconds: a producer waiting for
        data that may never come (a replay directory) is a daemon thread that ends
        when it next has a batch; it is never waited for indefinitely."""
        self._stop.set()
        self._finished = True
        deadline = time.monotonic() + timeout
        while self._thread.is_alive() and time.monotonic() < deadline:
            with contextlib.suppress(queue.Empty):
                self._queue.get(timeout=0.05)  # unblocks a producer waiting to put


class BatchIterable:
    """What ``create_dataset`` returns: iterate it for ``(features, labels)`` batches.

    Each ``iter()`` starts a new pass (EVAL) or an endless stream (TRAIN).
    ``batches_yielded`` counts the batches handed out over all passes (the
    input position a training loop can log or checkpoint); ``read_stats`` totals
    the records read and the corrupt ones skipped, over all workers and passes
    (a summary of each finished pass is logged, as a warning if any was corrupt).
    ``single_pass`` says whether a pass ends; ``dataloader`` is the underlying
    DataLoader (None for generated data). With ``pin_memory`` (and CUDA), tensors
    are copied to pinned memory as they are handed out. ``prefetch`` (for
    pipelines in the training process): a thread makes up to that many batches
    ahead while the caller works on the last one (see ``_PrefetchThread``).

    :meth:`iter_from` starts a stream at a given batch (the input position a
    checkpoint stored). With ``make_iterator_from`` (repeating record pipelines)
    it skips without parsing, and whole epochs without reading; otherwise it
    makes and drops the batches before the position.
    """

    def __init__(
        self,
        make_iterator: Callable[[], Iterator[Any]],
        stats: SharedReadStats | None = None,
        description: str = "",
        single_pass: bool = False,
        dataloader: torch.utils.data.DataLoader | None = None,
        pin_memory: bool = False,
        make_iterator_from: Callable[[int], Iterator[Any]] | None = None,
        prefetch: int = 0,
    ) -> None:
        self._make_iterator = make_iterator
        self.prefetch = int(prefetch)
        self._make_iterator_from = make_iterator_from
        self._pin_memory = pin_memory and torch.cuda.is_available()
        self._stats = stats
        self._description = description
        self.single_pass = single_pass
        self.dataloader = dataloader
        self.batches_yielded = 0

    @property
    def read_stats(self) -> ReadStats:
        return self._stats.snapshot() if self._stats is not None else ReadStats()

    def __iter__(self) -> Iterator[Any]:
        return self._batches(self._make_iterator())

    def iter_from(self, position: int) -> Iterator[Any]:
        """The batches from batch ``position`` on (0: the same as ``iter()``)."""
        if position < 0:
            raise ValueError(f"position must be >= 0, got {position}.")
        if position == 0:
            return iter(self)
        if self._make_iterator_from is not None:
            self.batches_yielded += position
            return self._batches(self._make_iterator_from(position))
        iterator = iter(self)
        for _ in range(position):
            next(iterator)
        return iterator

    def _batches(self, iterator: Iterator[Any]) -> Iterator[Any]:
        before = self.read_stats
        receiver = _Receiver()
        prefetcher = None
        if self.prefetch > 0:
            iterator = prefetcher = _PrefetchThread(iterator, self.prefetch)
        try:
            for batch in _ungroup(iterator):
                if isinstance(batch, _SlotBatch):
                    batch = receiver.materialize(batch)
                elif isinstance(batch, list):
                    batch = tuple(batch)
                if self._pin_memory:
                    batch = tuple(None if part is None else _pin(part) for part in batch)
                self.batches_yielded += 1
                yield batch
        except BaseException:
            # A worker error leaves the DataLoader iterator in a reference cycle with
            # the traceback; collected later, its queues may be finalized before it
            # and the workers' shutdown waits out a 5 s timeout. Stop them now.
            shutdown = getattr(iterator, "_shutdown_workers", None)
            if shutdown is not None:
                shutdown()
            raise
        finally:
            if prefetcher is not None:
                prefetcher.close()
        if self._stats is not None:
            after = self._stats.snapshot()
            corrupt = after.corrupt_records - before.corrupt_records
            truncated = after.truncated_files - before.truncated_files
            log = logger.warning if corrupt or truncated else logger.info
            log(
                "%s: pass done: %d records read, %d corrupt records skipped, "
                "%d files cut short by corruption.",
                self._description or "input",
                after.records - before.records,
                corrupt,
                truncated,
            )
