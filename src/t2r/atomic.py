"""Atomic file writes: what others read never appears half-written.

A writer creates a temporary name in the destination's directory, fsyncs it and
renames it into place (then fsyncs the directory, so the rename survives a
crash). Readers skip temporary names with `is_temporary_path`. Records,
checkpoints, exports and assets all go through here.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
from pathlib import Path

_TMP_NAME = re.compile(r"^\..+\.tmp-\d+-[0-9a-f]+$")


def temporary_path_for(path: str | os.PathLike[str]) -> str:
    """A fresh temporary name next to `path`: ``<dir>/.<basename>.tmp-<pid>-<hex>``."""
    directory, base = os.path.split(os.fspath(path))
    return os.path.join(directory, f".{base}.tmp-{os.getpid()}-{secrets.token_hex(4)}")


def is_temporary_path(path: str | os.PathLike[str]) -> bool:
    """True for names made by `temporary_path_for`; readers must skip them."""
    return _TMP_NAME.match(os.path.basename(os.fspath(path))) is not None


def fsync_directory(directory: str | os.PathLike[str]) -> None:
    """Makes a rename in `directory` durable; a no-op where directories can't be opened."""
    try:
        fd = os.open(os.fspath(directory) or ".", os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Writes `data` to `path` atomically (temporary name, fsync, rename)."""
    tmp = temporary_path_for(path)
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    fsync_directory(Path(path).parent)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """Writes UTF-8 `text` to `path` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))
