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

A killed writer loses at most the episode it was writing. After each episode
the writer flushes the temporary file and records how many records (episodes)
it holds in a small commit marker beside it (a temporary name, which readers
skip). The next writer that opens the directory finds the dead writer's
temporary file, publishes its complete episodes under the name it would have
had, and removes the temporary files (see `recover_replay_directory`).
"""

from __future__ import annotations

import contextlib
import datetime
import itertools
import logging
import os
import re
import secrets
import socket
import time
from collections.abc import Iterable
from typing import Any, Literal

from t2r.data import DataError, TFRecordWriter, read_tfrecord_with_offsets

__all__ = [
    "TFRecordReplayWriter",
    "collector_id",
    "recover_replay_directory",
    "unique_record_prefix",
]

logger = logging.getLogger(__name__)

RECORD_SUFFIX = ".tfrecord"
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")
# ".<final name>.tmp-<pid>-<hex>": TFRecordWriter's temporary file.
_TEMP_FILE = re.compile(r"^\.(?P<final>.+)\.tmp-(?P<pid>\d+)-[0-9a-f]+$")
_COMMIT_SUFFIX = ".commit.tmp-0-0"  # marker: "<temporary file>" + this
# The host in a unique_record_prefix name: "..._<host>-<pid>-<8 hex>_<n>[_<5 digits>]".
_HOST_IN_NAME = re.compile(r"_(?P<host>[A-Za-z0-9.-]+?)-\d+-[0-9a-f]{8}_\d+(?:_\d{5})?\.tfrecord$")
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
        _COLLECTOR_ID = (pid, f"{_host()}-{pid}-{secrets.token_hex(4)}")
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


def _host() -> str:
    """This host's name as collector ids and record names hold it."""
    return _UNSAFE.sub("-", socket.gethostname()).strip("-.")[:32] or "host"


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _writer_is_gone(path: str, final_name: str, pid: int, max_age_secs: float) -> bool:
    """Whether the writer of temporary file `path` is gone: on this host, its
    process has exited; elsewhere (or unknown), the file is older than `max_age_secs`."""
    host = _HOST_IN_NAME.search(final_name)
    if host is not None and host.group("host") == _host() and pid != os.getpid():
        return not _process_alive(pid)
    try:
        age = time.time() - os.stat(path).st_mtime
    except FileNotFoundError:
        return False
    return age > max_age_secs


def _read_marker(marker: str) -> list[int]:
    """The cumulative record counts at each complete episode's end, or [].

    The marker holds one line per episode; a last line without its newline was
    being written when the writer died and is ignored.
    """
    try:
        with open(marker, "rb") as f:
            lines = f.read().split(b"\n")[:-1]
        return [int(line) for line in lines]
    except (OSError, ValueError):
        return []


def _recover_file(path: str, final: str, marker: str, compression: str | None) -> int:
    """Publishes the complete episodes of a dead writer's temporary file as `final`.

    Returns the number of episodes published (0 when there were none, or
    `final` exists).
    """
    ends = _read_marker(marker)
    if not ends or os.path.exists(final):
        return 0
    records: list[bytes] = []
    with contextlib.suppress(DataError, OSError):
        for _, record in read_tfrecord_with_offsets(
            path, compression="GZIP" if compression else None
        ):
            records.append(record)
            if len(records) == ends[-1]:
                break
    complete = [e for e in ends if e <= len(records)]
    if not complete:
        return 0
    with TFRecordWriter(final, compression=compression) as writer:  # type: ignore[arg-type]
        for record in records[: complete[-1]]:
            writer.write(record)
    return len(complete)


def recover_replay_directory(
    directory: str | os.PathLike[str],
    max_age_secs: float = 24 * 3600.0,
    compression: Literal["GZIP"] | None = None,
) -> list[str]:
    """Publishes what dead replay writers left in `directory`, removes their temporary files.

    A temporary replay file (``.<name>.tfrecord.tmp-<pid>-<hex>``) belongs to a dead
    writer when its process (named in the file name) has exited on this host, or,
    for a writer on another host, when the file was not written for
    `max_age_secs` (a live writer writes to it after every episode). Its
    complete episodes, as its commit marker counts them, are published under the
    name the writer would have given the file; an episode being written when the
    writer died is lost. Temporary files of live writers are left alone.

    Returns the published paths.
    """
    directory = os.fspath(directory)
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return []
    published = []
    for name in names:
        if name.endswith(_COMMIT_SUFFIX):
            data = name.removesuffix(_COMMIT_SUFFIX)
            if data not in names:  # orphaned marker: its data file is gone
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(os.path.join(directory, name))
            continue
        match = _TEMP_FILE.match(name)
        if match is None:
            continue
        path = os.path.join(directory, name)
        final_name = match.group("final")
        if not final_name.endswith(RECORD_SUFFIX):
            continue
        if not _writer_is_gone(path, final_name, int(match.group("pid")), max_age_secs):
            continue
        final = os.path.join(directory, final_name)
        marker = path + _COMMIT_SUFFIX
        try:
            episodes = _recover_file(path, final, marker, compression)
        except OSError as e:
            logger.warning("Could not recover %s: %s", path, e)
            continue
        if episodes:
            published.append(final)
        logger.warning(
            "Replay writer of %s is gone: %s its temporary file%s.",
            final,
            f"published {episodes} complete episode(s) of" if episodes else "removed",
            "" if episodes else " (no complete episode)",
        )
        for leftover in (path, marker):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(leftover)
    return published


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

    A writer killed outright (SIGKILL, power loss of the process) cannot
    publish. After each episode it flushes the temporary file and updates a
    commit marker, so the next ``open`` of a writer in the same directory
    publishes the complete episodes and removes the temporary files (see
    `recover_replay_directory`): a killed writer loses at most the episode it
    was writing, whatever `max_episodes_per_file`. The price is a small marker
    write per episode; the data reaches the trainer only when the file is
    published (by the writer, or by the recovery).

    Args:
      max_episodes_per_file: episodes per file (None: one file per ``open``).
      compression: None, or 'GZIP' (TensorFlow's ``compression_type='GZIP'``).
      recover: on ``open``, publish what dead writers left in the directory.
      stale_after_secs: a temporary file of a writer on another host counts as
        dead when it was not written for this long (on this host, the
        writer's process is checked instead).
    """

    def __init__(
        self,
        max_episodes_per_file: int | None = None,
        compression: Literal["GZIP"] | None = None,
        recover: bool = True,
        stale_after_secs: float = 24 * 3600.0,
    ) -> None:
        if max_episodes_per_file is not None and max_episodes_per_file < 1:
            raise ValueError(
                f"TFRecordReplayWriter: max_episodes_per_file must be >= 1 or None, got "
                f"{max_episodes_per_file}."
            )
        self.max_episodes_per_file = max_episodes_per_file
        self.compression = compression
        self.recover = recover
        self.stale_after_secs = stale_after_secs
        self._marker: Any = None  # the open commit marker of the file being written
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
        if self.recover:
            recover_replay_directory(directory or ".", self.stale_after_secs, self.compression)
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

    def _commit(self, writer: TFRecordWriter) -> None:
        """Makes the complete episodes so far recoverable should this process die."""
        writer.flush()
        if self._marker is None:
            self._marker = open(writer.temporary_path + _COMMIT_SUFFIX, "ab", buffering=0)
        # One short append per episode, not fsynced: this guards against a killed
        # process (the OS keeps what was written) at the cost of one write call;
        # after a machine crash the recovery keeps the episodes that reached the disk.
        self._marker.write(b"%d\n" % writer.num_records)

    def _remove_marker(self, writer: TFRecordWriter) -> None:
        marker, self._marker = self._marker, None
        if marker is not None:
            marker.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(writer.temporary_path + _COMMIT_SUFFIX)

    def _finish_file(self) -> None:
        writer, self._writer = self._writer, None
        if writer is None:
            return
        if writer.num_records == 0:
            writer.abort()
            self._remove_marker(writer)
            return
        if os.path.exists(writer.path):
            writer.abort()
            self._remove_marker(writer)
            raise FileExistsError(
                f"TFRecordReplayWriter: {writer.path} appeared while writing it; not replacing it."
            )
        writer.close()
        self._remove_marker(writer)
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
        else:
            self._commit(writer)

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
            self._remove_marker(writer)
        self._prefix = None

    def __enter__(self) -> TFRecordReplayWriter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._prefix is not None:
            self.close()
