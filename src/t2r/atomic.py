"""Atomic file writes: what others read never appears half-written.

A writer creates a temporary name in the destination's directory, fsyncs it and
renames it into place (then fsyncs the directory, so the rename survives a
crash). Readers skip temporary names with `is_temporary_path`. Records,
checkpoints, exports, assets and golden values all go through here; multi-file
results (checkpoints, export versions) are filled in an `atomic_directory`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import secrets
import shutil
from collections.abc import Iterator, Mapping
from pathlib import Path

import torch
from safetensors.torch import save_file

logger = logging.getLogger(__name__)

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


def fsync_file(path: str | os.PathLike[str]) -> None:
    """Flushes a written file to disk."""
    with open(path, "rb+") as f:
        os.fsync(f.fileno())


def write_safetensors(
    path: str | os.PathLike[str],
    tensors: Mapping[str, torch.Tensor],
    metadata: dict[str, str] | None = None,
) -> None:
    """Writes `tensors` to a safetensors file atomically.

    safetensors refuses tensors that share memory (tied weights, views); those
    are cloned first.
    """
    seen: set[int] = set()
    unique = {}
    for key, tensor in tensors.items():
        tensor = tensor.detach().cpu().contiguous()
        ptr = tensor.untyped_storage().data_ptr() if tensor.numel() else -1
        unique[key] = tensor.clone() if ptr in seen else tensor
        if ptr != -1:
            seen.add(ptr)
    tmp = temporary_path_for(path)
    try:
        save_file(unique, tmp, metadata=metadata)
        fsync_file(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def publish_directory(tmp: str | os.PathLike[str], final: str | os.PathLike[str]) -> Path:
    """Renames the filled temporary directory `tmp` to `final`, durably.

    An existing `final` (the same checkpoint or version written again) is
    replaced: moved aside, then removed, so readers see the old or the new one,
    never a mix. If another writer published `final` between the two renames,
    theirs is kept and `tmp` is removed.
    """
    tmp, final = Path(tmp), Path(final)
    fsync_directory(tmp)
    try:
        os.replace(tmp, final)
    except OSError:  # `final` exists and is not empty
        aside = Path(temporary_path_for(final))
        moved_aside = True
        try:
            os.replace(final, aside)
        except FileNotFoundError:
            moved_aside = False
        try:
            os.replace(tmp, final)
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)
            logger.warning("Another writer published %s first; keeping theirs.", final)
        if moved_aside:
            shutil.rmtree(aside, ignore_errors=True)
    fsync_directory(final.parent)
    return final


@contextlib.contextmanager
def atomic_directory(final: str | os.PathLike[str]) -> Iterator[Path]:
    """Yields a temporary directory beside `final`; on success it is published as
    `final` (see `publish_directory`), on an exception removed."""
    tmp = Path(temporary_path_for(final))
    tmp.mkdir()
    try:
        yield tmp
        publish_directory(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
