"""TFRecord files: atomic writing, checked reading, file patterns.

A TFRecord file is a sequence of records, each framed as::

    uint64  length             little-endian
    uint32  masked_crc32c(the 8 length bytes)
    bytes   data[length]
    uint32  masked_crc32c(data)

with ``masked_crc32c(b) = ((c >> 15) | (c << 17)) + 0xa282ead8 (mod 2**32)`` where
``c = crc32c(b)``. TensorFlow's ``'GZIP'`` option is a gzip stream of the same bytes.

Writers never expose a partial file: they write to a temporary name in the target
directory (see :func:`is_temporary_path`), fsync, and rename onto the final name on
close. Readers (:func:`expand_file_patterns`) skip temporary names.
"""

from __future__ import annotations

import contextlib
import dataclasses
import glob
import gzip
import logging
import os
import struct
import zlib
from collections.abc import Iterator, Sequence
from types import TracebackType
from typing import BinaryIO, Literal

import crc32c as _crc32c

from t2r.atomic import fsync_directory, is_temporary_path, temporary_path_for
from t2r.data.errors import DataError

__all__ = [
    "ReadStats",
    "TFRecordWriter",
    "count_tfrecords",
    "expand_file_patterns",
    "masked_crc32c",
    "read_tfrecord",
    "read_tfrecord_at",
    "read_tfrecord_with_offsets",
    "tfrecord_offsets",
]

logger = logging.getLogger(__name__)

_LENGTH = struct.Struct("<Q")
_HEADER = struct.Struct("<QI")
_CRC = struct.Struct("<I")
_MASK_DELTA = 0xA282EAD8
_BUFFER_SIZE = 1 << 20
_GZIP_LEVEL = 6  # zlib's default, as TensorFlow uses
_GZIP_ERRORS = (gzip.BadGzipFile, EOFError, zlib.error)
_PREFIX = "tfrecord:"


def masked_crc32c(data: bytes) -> int:
    """The masked CRC-32C TFRecord stores for ``data``."""
    crc = _crc32c.crc32c(data)
    return (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF


def _check_compression(compression: str | None, allowed: tuple[str, ...]) -> str | None:
    if compression is None or compression == "":
        return None
    upper = compression.upper()
    for name in allowed:
        if upper == name.upper():
            return name
    raise ValueError(f"unsupported TFRecord compression {compression!r}; use None or {allowed}")


class TFRecordWriter:
    """Writes records to ``path`` atomically; use as a context manager.

    Records go to a temporary file in the same directory; :meth:`close` fsyncs it and
    renames it onto ``path``, so no reader ever sees a partial file. Leaving the
    ``with`` block by an exception calls :meth:`abort` instead: the temporary file
    is removed and ``path`` is untouched.

    Args:
        path: final file name; its directory must exist.
        compression: None, or ``'GZIP'`` for a gzip stream TensorFlow reads with
            ``compression_type='GZIP'``.
    """

    def __init__(
        self, path: str | os.PathLike[str], compression: Literal["GZIP"] | None = None
    ) -> None:
        self.path = os.fspath(path)
        self.compression = _check_compression(compression, ("GZIP",))
        self.num_records = 0
        self._tmp_path = temporary_path_for(self.path)
        fd = os.open(self._tmp_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        self._file: BinaryIO | None = os.fdopen(fd, "wb", buffering=_BUFFER_SIZE)
        self._stream: BinaryIO | None = self._file
        if self.compression == "GZIP":
            self._stream = gzip.GzipFile(  # type: ignore[assignment]
                filename="", mode="wb", fileobj=self._file, compresslevel=_GZIP_LEVEL, mtime=0
            )

    def write(self, record: bytes | bytearray | memoryview) -> None:
        """Appends one record (any bytes-like object)."""
        if self._stream is None:
            raise ValueError(f"{self.path}: write() on a closed TFRecordWriter")
        if not isinstance(record, bytes):
            if not isinstance(record, (bytearray, memoryview)):
                raise TypeError(f"records are bytes, got {type(record).__name__}")
            record = bytes(record)
        length = _LENGTH.pack(len(record))
        self._stream.write(length)
        self._stream.write(_CRC.pack(masked_crc32c(length)))
        self._stream.write(record)
        self._stream.write(_CRC.pack(masked_crc32c(record)))
        self.num_records += 1

    @property
    def temporary_path(self) -> str:
        """The temporary file the records go to until :meth:`close` renames it."""
        return self._tmp_path

    def flush(self) -> None:
        """Pushes buffered records into the temporary file (not visible until close)."""
        if self._stream is not None:
            self._stream.flush()
            if self._file is not None and self._file is not self._stream:
                self._file.flush()

    def close(self) -> None:
        """Finishes the file, fsyncs it and renames it onto ``path``. Idempotent."""
        if self._stream is None or self._file is None:
            return
        try:
            if self._stream is not self._file:
                self._stream.close()  # writes the gzip trailer, leaves the file open
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
            os.replace(self._tmp_path, self.path)
        except BaseException:
            self.abort()
            raise
        self._stream = self._file = None
        fsync_directory(os.path.dirname(self.path))
        logger.debug("wrote %d records to %s", self.num_records, self.path)

    def abort(self) -> None:
        """Discards everything written: closes and removes the temporary file."""
        stream, file = self._stream, self._file
        self._stream = self._file = None
        for handle in (stream, file):
            if handle is not None:
                with contextlib.suppress(Exception):
                    handle.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._tmp_path)

    def __enter__(self) -> TFRecordWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


@dataclasses.dataclass
class ReadStats:
    """Counters a reader updates; pass one instance across many files to total them.

    Attributes:
        records: good records yielded.
        corrupt_records: records skipped because their data crc did not match
            (only with ``skip_corrupt=True``).
        truncated_files: files whose reading stopped early because the framing was
            lost: a bad length crc, a truncated record, or a broken gzip stream
            (only with ``skip_corrupt=True``).
    """

    records: int = 0
    corrupt_records: int = 0
    truncated_files: int = 0


class _Corrupt(Exception):
    """Internal: a bad record; ``fatal`` when the framing of the rest is lost."""

    def __init__(self, problem: str, fatal: bool) -> None:
        super().__init__(problem)
        self.problem = problem
        self.fatal = fatal


def _sniff_compression(path: str) -> str | None:
    with open(path, "rb") as f:
        head = f.read(12)
    if len(head) == 12 and masked_crc32c(head[:8]) == _CRC.unpack_from(head, 8)[0]:
        return None
    return "GZIP" if head[:2] == b"\x1f\x8b" else None


@contextlib.contextmanager
def _open_for_read(path: str, compression: str | None) -> Iterator[BinaryIO]:
    with open(path, "rb", buffering=_BUFFER_SIZE) as raw:
        if compression is None:
            yield raw
        else:
            with gzip.GzipFile(fileobj=raw, mode="rb") as stream:
                yield stream  # type: ignore[misc]


def read_tfrecord_with_offsets(
    path: str | os.PathLike[str],
    verify_crc: bool = True,
    compression: Literal["GZIP", "auto"] | None = None,
    skip_corrupt: bool = False,
    stats: ReadStats | None = None,
) -> Iterator[tuple[int, bytes]]:
    """Yields ``(offset, record)`` for each record of one TFRecord file.

    ``offset`` is the byte offset of the record's length field, in the file, or in
    the uncompressed stream for GZIP files.

    Args:
        path: the file.
        verify_crc: check both crcs of every record. Truncation is always detected.
        compression: None, ``'GZIP'``, or ``'auto'`` (plain if the first header's
            crc checks out, else GZIP if the file starts with the gzip magic).
        skip_corrupt: instead of raising, log a warning and go on. A record whose
            data crc is wrong is skipped (``stats.corrupt_records += 1``) and
            reading continues with the next record, since its length was verified.
            A bad length crc, a truncated record or a broken gzip stream ends this
            file (``stats.truncated_files += 1``): nothing after it can be framed.
        stats: counters to update; see :class:`ReadStats`.

    Raises:
        DataError: (without ``skip_corrupt``) naming the file, the byte offset of the
            bad record, and expected versus actual values.
    """
    path = os.fspath(path)
    mode = _check_compression(compression, ("GZIP", "auto"))
    if mode == "auto":
        mode = _sniff_compression(path)
    where = " of the uncompressed stream" if mode == "GZIP" else ""
    with _open_for_read(path, mode) as f:
        size = os.fstat(f.fileno()).st_size if mode is None else None
        read = f.read
        offset = 0
        while True:
            length = 0
            try:
                try:
                    header = read(12)
                    if not header:
                        return
                    if len(header) < 12:
                        raise _Corrupt(f"truncated header: {len(header)} of 12 bytes", True)
                    length, length_crc = _HEADER.unpack(header)
                    if verify_crc and masked_crc32c(header[:8]) != length_crc:
                        raise _Corrupt(
                            f"length crc mismatch: stored 0x{length_crc:08x}, "
                            f"computed 0x{masked_crc32c(header[:8]):08x} (length field {length})",
                            True,
                        )
                    if size is not None and offset + 16 + length > size:
                        raise _Corrupt(
                            f"truncated record: needs {length + 4} bytes of data and crc, "
                            f"{max(size - offset - 12, 0)} left in the file",
                            True,
                        )
                    data = read(length)
                    footer = read(4)
                    if len(data) < length or len(footer) < 4:
                        raise _Corrupt(
                            f"truncated record: needs {length + 4} bytes of data and crc, "
                            f"got {len(data) + len(footer)}",
                            True,
                        )
                    if verify_crc:
                        (data_crc,) = _CRC.unpack(footer)
                        if masked_crc32c(data) != data_crc:
                            raise _Corrupt(
                                f"data crc mismatch: stored 0x{data_crc:08x}, computed "
                                f"0x{masked_crc32c(data):08x} ({length} data bytes)",
                                False,
                            )
                except _GZIP_ERRORS as e:
                    raise _Corrupt(f"broken gzip stream: {e}", True) from e
            except _Corrupt as bad:
                message = f"{path}: record at byte {offset}{where}: {bad.problem}"
                if not skip_corrupt:
                    raise DataError(message) from bad.__cause__
                if bad.fatal:
                    logger.warning("%s; skipping the rest of the file", message)
                    if stats is not None:
                        stats.truncated_files += 1
                    return
                logger.warning("%s; skipping the record", message)
                if stats is not None:
                    stats.corrupt_records += 1
            else:
                if stats is not None:
                    stats.records += 1
                yield offset, data
            offset += 16 + length


def count_tfrecords(
    path: str | os.PathLike[str], compression: Literal["GZIP", "auto"] | None = "auto"
) -> int:
    """The number of records in one file, from the record headers alone.

    Plain files: one 12-byte read and a seek per record, no data read and no crc
    checked (a file cut short counts its complete records only). GZIP files are
    decompressed, but nothing is parsed.
    """
    path = os.fspath(path)
    mode = _check_compression(compression, ("GZIP", "auto"))
    if mode == "auto":
        mode = _sniff_compression(path)
    count = 0
    with _open_for_read(path, mode) as f:
        size = os.fstat(f.fileno()).st_size if mode is None else None
        offset = 0
        while True:
            header = f.read(12)
            if len(header) < 12:
                return count
            (length,) = _LENGTH.unpack_from(header)
            if size is not None:
                offset += 16 + length
                if offset > size:
                    return count
                f.seek(offset)
            else:
                skipped = f.read(length + 4)
                if len(skipped) < length + 4:
                    return count
            count += 1


def tfrecord_offsets(path: str | os.PathLike[str]) -> list[int]:
    """Byte offsets of the records of one uncompressed TFRecord file, from the headers.

    One 12-byte read and a seek per record (no data read, no crc checked); a record
    cut short at the end of the file is not listed. With :func:`read_tfrecord_at`
    this gives random access to records (RLDS episodes, one record each).
    """
    path = os.fspath(path)
    offsets: list[int] = []
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        offset = 0
        while offset + 12 <= size:
            f.seek(offset)
            (length,) = _LENGTH.unpack(f.read(8))
            if offset + 16 + length > size:
                break
            offsets.append(offset)
            offset += 16 + length
    return offsets


def read_tfrecord_at(path: str | os.PathLike[str], offset: int, verify_crc: bool = True) -> bytes:
    """The record whose length field starts at byte ``offset`` of an uncompressed file.

    Raises:
        DataError: a bad crc or a truncated record, naming the file and offset.
    """
    path = os.fspath(path)
    with open(path, "rb") as f:
        f.seek(offset)
        header = f.read(12)
        if len(header) < 12:
            raise DataError(f"{path}: record at byte {offset}: truncated header")
        length, length_crc = _HEADER.unpack(header)
        if verify_crc and masked_crc32c(header[:8]) != length_crc:
            raise DataError(
                f"{path}: record at byte {offset}: length crc mismatch: stored "
                f"0x{length_crc:08x}, computed 0x{masked_crc32c(header[:8]):08x}"
            )
        data = f.read(length)
        footer = f.read(4)
    if len(data) < length or len(footer) < 4:
        raise DataError(
            f"{path}: record at byte {offset}: truncated record: needs {length + 4} bytes "
            f"of data and crc, got {len(data) + len(footer)}"
        )
    if verify_crc:
        (data_crc,) = _CRC.unpack(footer)
        if masked_crc32c(data) != data_crc:
            raise DataError(
                f"{path}: record at byte {offset}: data crc mismatch: stored 0x{data_crc:08x}, "
                f"computed 0x{masked_crc32c(data):08x} ({length} data bytes)"
            )
    return data


def read_tfrecord(
    path: str | os.PathLike[str],
    verify_crc: bool = True,
    compression: Literal["GZIP", "auto"] | None = None,
    skip_corrupt: bool = False,
    stats: ReadStats | None = None,
) -> Iterator[bytes]:
    """Yields the records of one TFRecord file.

    Same arguments and errors as :func:`read_tfrecord_with_offsets`; by default any
    corruption raises :class:`DataError` naming the file and byte offset, and
    ``skip_corrupt=True`` skips bad records (counting them in ``stats``).
    """
    for _, record in read_tfrecord_with_offsets(
        path, verify_crc=verify_crc, compression=compression, skip_corrupt=skip_corrupt, stats=stats
    ):
        yield record


def expand_file_patterns(
    patterns: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
) -> list[str]:
    """Expands file patterns into a sorted, de-duplicated list of files.

    Accepts a glob, a comma-separated list of globs, each optionally prefixed with
    ``tfrecord:`` (T2R's format marker, stripped), or a sequence of those.
    Directories and temporary names (:func:`is_temporary_path`) are skipped.

    Raises:
        ValueError: no pattern given, or a pattern matches no file (naming it).
    """
    if isinstance(patterns, (str, os.PathLike)):
        patterns = [patterns]
    pieces: list[str] = []
    for pattern in patterns:
        for piece in os.fspath(pattern).split(","):
            piece = piece.strip()
            piece = piece.removeprefix(_PREFIX)
            if piece:
                pieces.append(piece)
    if not pieces:
        raise ValueError(f"no file pattern given in {patterns!r}")
    files: set[str] = set()
    for piece in pieces:
        matches = [
            os.path.normpath(m)
            for m in glob.glob(os.path.expanduser(piece), recursive=True)
            if os.path.isfile(m) and not is_temporary_path(m)
        ]
        if not matches:
            raise ValueError(f"file pattern {piece!r} matches no file")
        files.update(matches)
    return sorted(files)
