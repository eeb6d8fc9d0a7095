"""Atomic file writes: what others read never appears half-written.

A writer creates a temporary name in the destination's directory, fsyncs it and
renames it into place (then fsyncs the directory, so the rename survives a
crash). Readers skip temporary names with `is_temporary_path`. Records,
checkpoints, exports, assets and golden values all go through here; multi-file
results (checkpoints, export versions) are filled in an `atomic_directory`.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import logging
import os
import re
import secrets
import shutil
import sys
from collections.abc import Callable, Iterator, Mapping
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


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike[str]) -> Iterator[str]:
    """Yields a temporary name beside `path` for the caller to write (by any library);
    on a clean exit fsyncs it, renames it over `path` and fsyncs the directory.

    On any error the temporary file is removed and `path` is left as it was.
    """
    tmp = temporary_path_for(path)
    try:
        yield tmp
        fsync_file(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    fsync_directory(Path(path).parent)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Writes `data` to `path` atomically (temporary name, fsync, rename)."""
    with atomic_file(path) as tmp:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        with os.fdopen(fd, "wb") as f:
            f.write(data)


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
    with atomic_file(path) as tmp:
        save_file(unique, tmp, metadata=metadata)


class _SwapUnsupported(Exception):
    """This platform or filesystem cannot exchange two paths atomically."""


def _load_swap() -> Callable[[str, str], None] | None:
    """An atomic exchange of two existing paths, where the C library has one.

    Linux: ``renameat2(RENAME_EXCHANGE)`` (glibc >= 2.28); macOS:
    ``renamex_np(RENAME_SWAP)``. Raises OSError as rename does (ENOENT when
    either path is missing) and `_SwapUnsupported` where the filesystem
    refuses the flag.
    """
    try:
        libc = ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None
    if sys.platform.startswith("linux") and hasattr(libc, "renameat2"):
        at_fdcwd, rename_exchange = -100, 2
        renameat2 = libc.renameat2
        renameat2.argtypes = [
            ctypes.c_int,
            ctypes.c_char_p,
            ctypes.c_int,
            ctypes.c_char_p,
            ctypes.c_uint,
        ]

        def call(a: bytes, b: bytes) -> int:
            return int(renameat2(at_fdcwd, a, at_fdcwd, b, rename_exchange))

    elif sys.platform == "darwin" and hasattr(libc, "renamex_np"):
        rename_swap = 2
        renamex_np = libc.renamex_np
        renamex_np.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_uint]

        def call(a: bytes, b: bytes) -> int:
            return int(renamex_np(a, b, rename_swap))

    else:
        return None

    def swap(a: str, b: str) -> None:
        if call(os.fsencode(a), os.fsencode(b)) != 0:
            err = ctypes.get_errno()
            if err in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP, errno.EOPNOTSUPP):
                raise _SwapUnsupported(os.strerror(err))
            raise OSError(err, os.strerror(err), a, None, b)

    return swap


_swap = _load_swap()


def swap_paths(a: str | os.PathLike[str], b: str | os.PathLike[str]) -> bool:
    """Exchanges two existing paths in one atomic step; False where unsupported.

    Raises FileNotFoundError when either is missing.
    """
    if _swap is None:
        return False
    try:
        _swap(os.fspath(a), os.fspath(b))
    except _SwapUnsupported:
        return False
    return True


def publish_directory(tmp: str | os.PathLike[str], final: str | os.PathLike[str]) -> Path:
    """Renames the filled temporary directory `tmp` to `final`, durably.

    An existing `final` (the same checkpoint or version written again) is
    replaced by exchanging the two directories in one atomic step
    (`swap_paths`), then removing the old one from the temporary name: at
    every instant, a crash or SIGKILL included, `final` is the complete old
    or the complete new directory, and a leftover old one carries a
    temporary name (readers skip it; pruning removes it). Of concurrent
    writers of the same `final`, the last one wins.

    Where the filesystem cannot exchange directories (not Linux or macOS,
    or e.g. some network filesystems), the old one is renamed aside first:
    between the two renames `final` is missing, and a crash there loses it
    (a warning says so once).
    """
    tmp, final = Path(tmp), Path(final)
    fsync_directory(tmp)
    while True:
        try:
            swapped = swap_paths(tmp, final)
        except FileNotFoundError:  # no `final` yet: a plain rename publishes it
            try:
                os.rename(tmp, final)
            except OSError as e:
                if e.errno in (errno.ENOTEMPTY, errno.EEXIST):
                    continue  # another writer published `final` meanwhile: replace theirs
                raise
            break
        if swapped:
            shutil.rmtree(tmp, ignore_errors=True)  # the old `final`
            break
        _publish_by_renaming_aside(tmp, final)
        break
    fsync_directory(final.parent)
    return final


_warned_no_swap = False


def _publish_by_renaming_aside(tmp: Path, final: Path) -> None:
    global _warned_no_swap
    if not _warned_no_swap:
        _warned_no_swap = True
        logger.warning(
            "This filesystem cannot exchange directories atomically; replacing %s leaves it "
            "missing for an instant (and lost if the process dies then).",
            final,
        )
    try:
        os.replace(tmp, final)
        return
    except OSError:  # `final` exists and is not empty
        pass
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
