"""The one exception type for corrupt or unparseable data."""

from __future__ import annotations

__all__ = ["DataError"]


class DataError(ValueError):
    """Data on disk or in a record is corrupt or does not match what was expected.

    Messages name the place (file and byte offset, or the feature key) and the
    expected versus the actual value, e.g.
    ``"/data/a.tfrecord: record at byte 1234: data crc32c 0x1 != stored 0x2"``.
    Subclasses ``ValueError`` so callers that catch bad values keep working.

    The optional keyword arguments keep the same facts as attributes, so that
    callers can react (or add context) without parsing the message:

    Attributes:
        key: the feature key (the spec's serialized name), if the error is about one.
        record_index: the index of the bad record within the batch being parsed.
    """

    def __init__(
        self, message: str, *, key: str | None = None, record_index: int | None = None
    ) -> None:
        super().__init__(message)
        self.key = key
        self.record_index = record_index
