"""Data sources: where examples come from, behind one small protocol.

The shared pipeline (:class:`t2r.data.pipeline.RecordBatchDataset`) does what
every format needs once: the order of units per epoch (seeded), sharding over
DataLoader workers x ranks, interleaving, the shuffle buffer, batching, parsing
into spec-shaped tensors, the input position for resume. A source only says
what its units are and how to read one::

    class DataSource(Protocol):
        growing: bool                                   # units may appear while read
        def units(self) -> list[str]: ...               # sorted names of units now
        def read(self, unit, stats) -> Iterator[tuple[int, Any]]: ...  # (location, example)
        def length(self, unit) -> int | None: ...       # examples in the unit, if cheap
        def make_parse_fn(self, feature_spec, label_spec, decode_images): ...

A *unit* is what a format reads sequentially: a TFRecord file, an HDF5 demo, an
RLDS/LeRobot episode, a chunk of in-memory arrays. An *example* is whatever the
source's parse fn turns into one row of a batch (serialized bytes for
TFRecord, ``(features, labels)`` dicts of numpy arrays in memory). ``location``
names an example within its unit in errors (a byte offset, an index).

``length`` is optional knowledge: where it is known (in memory, an HDF5 demo's
``num_samples``, a TFRecord file's record count found by walking the record
headers) the pipeline restores an input position by skipping whole epochs
without reading them. ``None`` means "unknown": the pipeline then counts by
reading. A source whose ``growing`` is True (a replay directory) is re-listed on
every pass and on a refresh interval; see :class:`ReplayDirectorySource`.

Sources here: :class:`TFRecordSource` (files of tf.train.Example /
SequenceExample), :class:`InMemorySource` (numpy arrays, e.g. made from specs in
tests), :class:`ReplayDirectorySource` (TFRecord files that keep arriving).
Robomimic HDF5, RLDS and LeRobot sources implement the same protocol.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np

from t2r.atomic import is_temporary_path
from t2r.data.parsing import ParseTFExampleFn
from t2r.data.tfrecord import ReadStats, count_tfrecords, read_tfrecord_with_offsets
from t2r.specs import TensorSpecStruct, flatten_spec_structure, make_random_numpy, to_tensors

__all__ = [
    "DataSource",
    "InMemorySource",
    "ReplayDirectorySource",
    "TFRecordSource",
]

ParseFn = Callable[[Any], Any]


@runtime_checkable
class DataSource(Protocol):
    """Units of examples the shared pipeline shards, shuffles, batches and parses."""

    growing: bool

    def units(self) -> list[str]:
        """Names of the units present now, sorted (the same list in every process)."""
        ...

    def read(self, unit: str, stats: ReadStats) -> Iterator[tuple[int, Any]]:
        """``(location, example)`` for each example of ``unit``, in order.

        Corruption the source detects and skips is counted in ``stats``
        (``corrupt_records``, ``truncated_files``); good examples are counted by
        the pipeline.
        """
        ...

    def length(self, unit: str) -> int | None:
        """Examples in ``unit`` when cheap to know (no decoding), else None."""
        ...

    def make_parse_fn(self, feature_spec: Any, label_spec: Any, decode_images: bool) -> ParseFn:
        """Maps a list of examples to ``(features, labels)`` (labels None without spec)."""
        ...


class TFRecordSource:
    """TFRecord files of tf.train.Example / SequenceExample; one file is one unit.

    Args:
        files: the files (e.g. from :func:`t2r.data.expand_file_patterns`).
        verify_crc, compression, skip_corrupt: as for
            :func:`t2r.data.read_tfrecord_with_offsets`.
    """

    growing = False

    def __init__(
        self,
        files: Sequence[str],
        *,
        verify_crc: bool = True,
        compression: str | None = "auto",
        skip_corrupt: bool = False,
    ) -> None:
        self.files = sorted(os.fspath(f) for f in files)
        if not self.files:
            raise ValueError("TFRecordSource needs at least one file.")
        self.verify_crc = verify_crc
        self.compression = compression
        self.skip_corrupt = skip_corrupt

    def __repr__(self) -> str:
        return f"{type(self).__name__}({len(self.files)} files)"

    def units(self) -> list[str]:
        return list(self.files)

    def read(self, unit: str, stats: ReadStats) -> Iterator[tuple[int, bytes]]:
        return read_tfrecord_with_offsets(
            unit,
            verify_crc=self.verify_crc,
            compression=self.compression,  # type: ignore[arg-type]
            skip_corrupt=self.skip_corrupt,
            stats=stats,
        )

    def length(self, unit: str) -> int | None:
        """Records in the file, by walking the record headers (no data is read)."""
        return count_tfrecords(unit, compression=self.compression)  # type: ignore[arg-type]

    def make_parse_fn(
        self, feature_spec: Any, label_spec: Any, decode_images: bool
    ) -> ParseTFExampleFn:
        return ParseTFExampleFn(feature_spec, label_spec, decode_images)


class ReplayDirectorySource(TFRecordSource):
    """TFRecord files in a directory that collectors keep adding to.

    Writers publish each file by atomic rename (:class:`t2r.data.TFRecordWriter`);
    temporary names (:func:`t2r.atomic.is_temporary_path`) are never listed, so a
    file is only read once complete. :meth:`units` globs again on every call: the
    pipeline calls it at the start of every pass and, within a pass, every
    ``refresh_secs`` (see :class:`t2r.data.pipeline.RecordBatchDataset`).

    Args:
        patterns: globs of the replay files (a directory means ``dir/*``).
        max_files: keep only the newest this many files (by modification time,
            then name): a FIFO replay capacity. None: every file.
        Other arguments as for :class:`TFRecordSource`.
    """

    growing = True

    def __init__(
        self,
        patterns: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
        *,
        max_files: int | None = None,
        verify_crc: bool = True,
        compression: str | None = "auto",
        skip_corrupt: bool = False,
    ) -> None:
        if isinstance(patterns, (str, os.PathLike)):
            patterns = [patterns]
        self.patterns = []
        for pattern in patterns:
            text = os.fspath(pattern)
            self.patterns.append(os.path.join(text, "*") if os.path.isdir(text) else text)
        if not self.patterns:
            raise ValueError("ReplayDirectorySource needs a file pattern.")
        if max_files is not None and max_files < 1:
            raise ValueError(f"max_files must be positive or None, got {max_files}.")
        self.max_files = max_files
        self.files = []
        self.verify_crc = verify_crc
        self.compression = compression
        self.skip_corrupt = skip_corrupt

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(self.patterns)})"

    def units(self) -> list[str]:
        """Complete files now, the newest ``max_files`` of them, sorted by name."""
        found: dict[str, float] = {}
        for pattern in self.patterns:
            for match in glob.glob(os.path.expanduser(pattern)):
                if is_temporary_path(match):
                    continue
                try:
                    if os.path.isfile(match):
                        found[os.path.normpath(match)] = os.path.getmtime(match)
                except OSError:  # removed meanwhile (a FIFO cleaner)
                    continue
        names = sorted(found)
        if self.max_files is not None and len(names) > self.max_files:
            newest = sorted(names, key=lambda n: (found[n], n))[-self.max_files :]
            names = sorted(newest)
        return names

    def read(self, unit: str, stats: ReadStats) -> Iterator[tuple[int, bytes]]:
        try:
            yield from super().read(unit, stats)
        except FileNotFoundError:  # removed between listing and reading
            return


class InMemorySource:
    """Examples held as numpy arrays; ``examples_per_unit`` consecutive ones form a unit.

    Args:
        features: ``{spec path: array (N, ...)}`` (or a nested structure of them).
        labels: the same for labels, or None.
        examples_per_unit: how many examples one unit holds (the last may hold fewer).
    """

    growing = False

    def __init__(
        self,
        features: Mapping[str, Any],
        labels: Mapping[str, Any] | None = None,
        examples_per_unit: int = 16,
    ) -> None:
        self.features = {k: np.asarray(v) for k, v in flatten_spec_structure(features).items()}
        self.labels = (
            None
            if labels is None
            else {k: np.asarray(v) for k, v in flatten_spec_structure(labels).items()}
        )
        sizes = {len(v) for v in self.features.values()}
        sizes |= {len(v) for v in (self.labels or {}).values()}
        if len(sizes) != 1:
            raise ValueError(f"Arrays of an InMemorySource differ in length: {sorted(sizes)}.")
        (self.num_examples,) = sizes
        if self.num_examples < 1 or examples_per_unit < 1:
            raise ValueError("An InMemorySource needs examples and examples_per_unit >= 1.")
        self.examples_per_unit = int(examples_per_unit)

    @classmethod
    def from_specs(
        cls,
        feature_spec: Any,
        label_spec: Any = None,
        num_examples: int = 64,
        examples_per_unit: int = 16,
        seed: int = 0,
    ) -> InMemorySource:
        """Random examples shaped by the specs (as ``make_random_numpy`` makes them)."""
        rng = np.random.default_rng(seed)
        features = make_random_numpy(feature_spec, num_examples, None, seed=rng)
        labels = (
            None
            if label_spec is None
            else make_random_numpy(label_spec, num_examples, None, seed=rng)
        )
        return cls(features, labels, examples_per_unit)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.num_examples} examples)"

    def units(self) -> list[str]:
        count = -(-self.num_examples // self.examples_per_unit)
        return [f"{i:08d}" for i in range(count)]

    def _bounds(self, unit: str) -> range:
        start = int(unit) * self.examples_per_unit
        return range(start, min(start + self.examples_per_unit, self.num_examples))

    def read(self, unit: str, stats: ReadStats) -> Iterator[tuple[int, Any]]:
        for i in self._bounds(unit):
            features = {k: v[i] for k, v in self.features.items()}
            labels = None if self.labels is None else {k: v[i] for k, v in self.labels.items()}
            yield i, (features, labels)

    def length(self, unit: str) -> int:
        return len(self._bounds(unit))

    def make_parse_fn(self, feature_spec: Any, label_spec: Any, decode_images: bool) -> ParseFn:
        return _StackExamples(feature_spec, label_spec)


class _StackExamples:
    """Stacks ``(features, labels)`` example dicts into spec-typed tensors (picklable)."""

    def __init__(self, feature_spec: Any, label_spec: Any) -> None:
        self.feature_spec = flatten_spec_structure(feature_spec)
        self.label_spec = None if label_spec is None else flatten_spec_structure(label_spec)

    def _stack(self, spec: Any, rows: list[Mapping[str, Any]], what: str) -> Any:
        out = []
        for path in spec:
            try:
                out.append((path, np.stack([row[path] for row in rows])))
            except KeyError:
                raise KeyError(
                    f"InMemorySource {what} lack {path!r}; they have {sorted(rows[0])}."
                ) from None
        return to_tensors(TensorSpecStruct(out), spec)

    def __call__(self, examples: list[Any]) -> tuple[Any, Any]:
        features = self._stack(self.feature_spec, [f for f, _ in examples], "features")
        labels = None
        if self.label_spec is not None:
            rows = [lab for _, lab in examples]
            if any(row is None for row in rows):
                raise ValueError("The label spec asks for labels the InMemorySource lacks.")
            labels = self._stack(self.label_spec, rows, "labels")
        return features, labels
