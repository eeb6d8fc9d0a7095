"""Replay writers: episodes of transitions -> TFRecord files (Tensor2Robot's utils/writer.py).

`TFRecordReplayWriter` keeps T2R's ``open(path)`` / ``write(transitions)`` /
``close()`` protocol, where ``write`` receives the transitions of one episode
(serialized records, or messages with ``SerializeToString`` such as
`t2r.data.Example`). Files are written atomically through
`t2r.data.TFRecordWriter`: a temporary name in the same directory, renamed
into place on close, so a trainer that lists the directory never reads a
partial file. Several collector processes may write into one directory at once:
`unique_record_prefix` makes names that cannot collide (host, pid and a random
token), and an existing file is never overwritten.
"""

from __future__ import annotations

import datetime
import itertools
import logging
import os
import re
import secrets
import socket
from collections.abc import Iterable
from typing import Any, Literal

from t2r.data import TFRecordWriter

__all__ = ["TFRecordReplayWriter", "collector_id", "unique_record_prefix"]

logger = logging.getLogger(__name__)

RECORD_SUFFIX = ".tfrecord"
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")
_COLLECTOR_ID: tuple[int, str] | None = None


def collector_id() -> str:
    """This process's collector id: ``<host>-<pid>-<8 hex digits>``.

    Drawn once per process (a forked child draws its own), so that records
    written by different processes, or different machines sharing a file
    system, never get the same name.
    """
    global _COLLECTOR_ID
    pid = os.getpid()
    if _COLLECTOR_ID is None or _COLLECTOR_ID[0] != pid:
        host = _UNSAFE.sub("-", socket.gethostname()).strip("-.") or "host"
        _COLLECTOR_ID = (pid, f"{host[:32]}-{pid}-{secrets.token_hex(4)}")
    return _COLLECTOR_ID[1]


def unique_record_prefix(directory: str | os.PathLike[str], global_step: int, task: int) -> str:
    """``<directory>/gs<global_step>_t<task>_<timestamp>_<collector id>_<n>``.

    Tensor2Robot's record name (``gs%d_t%d_%s``) plus the collector id and a
    per-process counter, so that every call gives a new name: two collectors
    (or two calls in one second) never write the same file.
    """
    timestamp = datetime.datetime.now().strftime("%Y-%m-%d-%H-%M-%S")
    count = next(_PREFIX_COUNTER)
    name = f"gs{int(global_step)}_t{int(task)}_{timestamp}_{collector_id()}_{count}"
    return os.path.join(os.fspath(directory), name)


_PREFIX_COUNTER = itertools.count()


def _serialize(transition: Any) -> bytes:
    if isinstance(transition, (bytes, bytearray, memoryview)):
        return bytes(transition)
    serialize = getattr(transition, "SerializeToString", None)
    if serialize is None:
        raise TypeError(
            "TFRecordReplayWriter.write takes serialized records (bytes) or messages with "
            f"SerializeToString(); got {type(transition).__name__}."
        )
    return serialize()


class TFRecordReplayWriter:
    """Writes episodes of transitions to TFRecord files, atomically.

    ``open(path)`` starts a file ``path + '.tfrecord'``; each ``write(transitions)``
    appends one episode (a list of records); ``close()`` publishes the file
    (fsync + rename). With `max_episodes_per_file`, the episodes of one
    ``open`` are split over ``path_00000.tfrecord``, ``path_00001.tfrecord``,
    ... each published as soon as it holds that many episodes, so a trainer
    reading the directory sees data while collection goes on.

    A file that would replace an existing one raises FileExistsError (use
    `unique_record_prefix` for names); a file that got no episode is not
    created. Leaving a ``with`` block by an exception closes the file, keeping
    the complete episodes written so far (an episode's records are written
    together, after it was serialized).

    Args:
      max_episodes_per_file: episodes per file (None: one file per ``open``).
      compression: None, or 'GZIP' (TensorFlow's ``compression_type='GZIP'``).
    """

    def __init__(
        self, max_episodes_per_file: int | None = None, compression: Literal["GZIP"] | None = None
    ) -> None:
        if max_episodes_per_file is not None and max_episodes_per_file < 1:
            raise ValueError(
                f"TFRecordReplayWriter: max_episodes_per_file must be >= 1 or None, got "
                f"{max_episodes_per_file}."
            )
        self.max_episodes_per_file = max_episodes_per_file
        self.compression = compression
        self._prefix: str | None = None
        self._writer: TFRecordWriter | None = None
        self._file_index = 0
        self._episodes_in_file = 0
        self.paths: list[str] = []
        self.num_records = 0
        self.num_episodes = 0

    @property
    def is_open(self) -> bool:
        return self._prefix is not None

    def open(self, path: str | os.PathLike[str]) -> None:
        """Starts writing to ``path + '.tfrecord'`` (or numbered files, see the class)."""
        if self._prefix is not None:
            raise ValueError(f"TFRecordReplayWriter is already open (on {self._prefix}).")
        path = os.fspath(path)
        directory = os.path.dirname(path)
        if directory:
            os.makedirs(directory, exist_ok=True)
        self._prefix = path
        self._file_index = 0
        self._episodes_in_file = 0

    def _file_path(self) -> str:
        assert self._prefix is not None
        if self.max_episodes_per_file is None:
            return self._prefix + RECORD_SUFFIX
        return f"{self._prefix}_{self._file_index:05d}{RECORD_SUFFIX}"

    def _start_file(self) -> TFRecordWriter:
        path = self._file_path()
        if os.path.exists(path):
            raise FileExistsError(
                f"TFRecordReplayWriter: {path} exists; replay files are never overwritten "
                "(use t2r.collect.unique_record_prefix for names)."
            )
        self._writer = TFRecordWriter(path, compression=self.compression)
        self._episodes_in_file = 0
        return self._writer

    def _finish_file(self) -> None:
        writer, self._writer = self._writer, None
        if writer is None:
            return
        if writer.num_records == 0:
            writer.abort()
            return
        if os.path.exists(writer.path):
            writer.abort()
            raise FileExistsError(
                f"TFRecordReplayWriter: {writer.path} appeared while writing it; not replacing it."
            )
        writer.close()
        self.paths.append(writer.path)
        self._file_index += 1
        logger.debug("Published %s (%d episodes).", writer.path, self._episodes_in_file)

    def write(self, transitions: Iterable[Any]) -> None:
        """Appends one episode: its transitions as bytes or messages."""
        if self._prefix is None:
            raise ValueError("TFRecordReplayWriter is not open; call open(path) first.")
        records = [_serialize(t) for t in transitions]
        writer = self._writer or self._start_file()
        for record in records:
            writer.write(record)
        self.num_records += len(records)
        self.num_episodes += 1
        self._episodes_in_file += 1
        if (
            self.max_episodes_per_file is not None
            and self._episodes_in_file >= self.max_episodes_per_file
        ):
            self._finish_file()

    def close(self) -> None:
        """Publishes the file being written (if it holds any episode)."""
        if self._prefix is None:
            raise ValueError("TFRecordReplayWriter is not open.")
        try:
            self._finish_file()
        finally:
            self._prefix = None

    def abort(self) -> None:
        """Discards the file being written (files already published stay)."""
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.abort()
        self._prefix = None

    def __enter__(self) -> TFRecordReplayWriter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._prefix is not None:
            self.close()
