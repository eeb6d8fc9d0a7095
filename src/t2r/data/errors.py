"""The one exception type for corrupt or unparseable data."""

from __future__ import annotations

__all__ = ["DataError"]


class DataError(ValueError):
    """Data on disk or in a record is corrupt or does not match what was expected.

    Messages name the place (file and byte offset, or the feature key) and the
    expected versus the actual value, e.g.
    ``"/data/a.tfrecord: record at byte 1234: data crc32c 0x1 != stored 0x2"``.
    Subclasses ``ValueError`` so callers that catch bad values keep working.
    """
