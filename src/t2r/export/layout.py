"""The export directory format: where versions live and which of them are complete.

An export directory holds one sub-directory per version::

    export_dir/
      1000/                  a version (an increasing integer: the global step)
        model.pt2            the program (torch.export), weights embedded
        model.safetensors    the model's state_dict, for warm-starting
        model.onnx           optional: the same program as ONNX
        t2r_assets.json      specs, global step, program format; written last
      .2000.tmp-123-ab12cd/  a version being written (readers skip it)

A version is *complete* when its name is a decimal integer and its
``t2r_assets.json`` exists. Writers build a version under a temporary name (see
`t2r.atomic`), write the assets last, and rename the directory into place, so a
reader that lists versions never sees a half-written one. See
``docs/export_format.md``.

This module imports no model code: predictors on a robot use it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import hashlib
import logging
import os
import shutil
import stat
import time
from pathlib import Path
from typing import Any

from t2r.atomic import atomic_directory, fsync_file, is_temporary_path
from t2r.export.errors import ExportError
from t2r.specs import (
    T2R_ASSETS_FILENAME,
    AssetsError,
    T2RAssets,
    load_t2r_assets_to_file,
    parse_t2r_assets,
)

logger = logging.getLogger(__name__)

ASSETS_FILENAME = T2R_ASSETS_FILENAME
TORCH_EXPORT_FILENAME = "model.pt2"
TORCHSCRIPT_FILENAME = "model.torchscript.pt"
WEIGHTS_FILENAME = "model.safetensors"
ONNX_FILENAME = "model.onnx"
INITIAL_NETWORK_STATE_FILENAME = "initial_network_state.safetensors"  # stateful programs only

# Values of the assets' metadata["program_format"].
TORCH_EXPORT = "torch.export"
TORCHSCRIPT = "torchscript"
PROGRAM_FORMATS = (TORCH_EXPORT, TORCHSCRIPT)

# The layout version this code writes (assets metadata["export_format_version"]).
EXPORT_FORMAT_VERSION = 1

# Temporary directories of writers that died are removed by pruning once older than this.
STALE_TEMPORARY_SECS = 3600.0


@dataclasses.dataclass(frozen=True)
class ExportVersion:
    """A complete version directory."""

    path: Path
    version: int

    def load_assets(self) -> T2RAssets:
        """The version's ``t2r_assets.json``."""
        return load_t2r_assets_to_file(self.path / ASSETS_FILENAME)


def is_version_name(name: str) -> bool:
    """Whether `name` names a version: a decimal integer (ASCII digits only)."""
    return name.isascii() and name.isdigit()


def is_complete_version(path: str | os.PathLike[str]) -> bool:
    """Whether `path` is a complete version: an integer name, not temporary, assets present."""
    path = Path(path)
    return (
        is_version_name(path.name)
        and not is_temporary_path(path)
        and (path / ASSETS_FILENAME).is_file()
    )


def list_versions(export_dir: str | os.PathLike[str]) -> list[ExportVersion]:
    """The complete versions under `export_dir`, oldest first; [] if it does not exist."""
    root = Path(export_dir)
    try:
        entries = list(os.scandir(root))
    except (FileNotFoundError, NotADirectoryError):
        return []
    found = []
    for entry in entries:
        if is_version_name(entry.name) and entry.is_dir():
            path = root / entry.name
            if is_complete_version(path):
                found.append(ExportVersion(path, int(entry.name)))
    return sorted(found, key=lambda v: v.version)


def latest_version(export_dir: str | os.PathLike[str]) -> ExportVersion | None:
    """The newest complete version under `export_dir`, or None."""
    versions = list_versions(export_dir)
    return versions[-1] if versions else None


def prune_versions(
    export_dir: str | os.PathLike[str],
    keep: int | None,
    stale_temporary_secs: float = STALE_TEMPORARY_SECS,
) -> list[Path]:
    """Removes all but the newest `keep` complete versions; returns what was removed.

    Temporary directories (writers in progress, or killed mid-write) are removed
    only once older than `stale_temporary_secs`, so that a live writer keeps
    its work. `keep` None or 0 keeps every version.
    """
    removed: list[Path] = []
    root = Path(export_dir)
    if keep:
        for old in list_versions(root)[:-keep]:
            shutil.rmtree(old.path, ignore_errors=True)
            removed.append(old.path)
    now = time.time()
    with contextlib.suppress(FileNotFoundError):
        for entry in os.scandir(root):
            if not is_temporary_path(entry.name):
                continue
            with contextlib.suppress(FileNotFoundError):
                if now - entry.stat(follow_symlinks=False).st_mtime > stale_temporary_secs:
                    path = root / entry.name
                    if entry.is_dir(follow_symlinks=False):
                        shutil.rmtree(path, ignore_errors=True)
                    else:
                        path.unlink(missing_ok=True)
                    removed.append(path)
    for path in removed:
        logger.info("Removed old export %s", path)
    return removed


def copy_version(version: ExportVersion, destination_dir: str | os.PathLike[str]) -> Path:
    """Copies a complete version into `destination_dir` under the same name, atomically.

    Files are copied into a temporary directory, the assets last, then renamed
    into place. Returns the new version's path.
    """
    destination = Path(destination_dir)
    destination.mkdir(parents=True, exist_ok=True)
    final = destination / version.path.name
    with atomic_directory(final) as tmp:
        names = sorted(p.name for p in version.path.iterdir() if p.name != ASSETS_FILENAME)
        for name in [*names, ASSETS_FILENAME]:
            source = version.path / name
            if source.is_dir():
                shutil.copytree(source, tmp / name)
            else:
                shutil.copy2(source, tmp / name)
                fsync_file(tmp / name)
    return final


def read_identity(path: str | os.PathLike[str]) -> str | None:
    """The content identity of the version at `path`, or None when it has no assets.

    The SHA-256 of its ``t2r_assets.json``, which differs between any two
    writes (each records its own ``write_id`` and time). Predictors compare
    it to notice a version that was exported again.
    """
    try:
        return hashlib.sha256(Path(path, ASSETS_FILENAME).read_bytes()).hexdigest()
    except (FileNotFoundError, NotADirectoryError):
        return None


def file_record(data: bytes) -> dict[str, Any]:
    """What the assets record of a version file (``metadata['files'][name]``)."""
    return {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}


def is_plain_file_name(name: object) -> bool:
    """Whether `name` names a file directly inside a version directory."""
    return (
        isinstance(name, str)
        and name not in ("", ".", "..")
        and not any(c in name for c in "/\\\0")
        and len(name) <= 255
    )


def read_metadata(assets: T2RAssets, path: Path) -> dict[str, Any]:
    """The assets' metadata, checked field by field.

    `path` is the assets file. Raises `AssetsError` naming it and the field
    for anything a loader would trip over: an unreadable export format
    version, an unknown program format, file names that are not plain names
    inside the version directory (``../../outside/model.pt2``), or malformed
    input/output names and file records.
    """
    metadata = dict(assets.metadata)
    found = metadata.get("export_format_version", 0)
    if not isinstance(found, int) or isinstance(found, bool):
        raise AssetsError(
            path, "metadata.export_format_version", f"must be an integer, got {found!r}."
        )
    if found > EXPORT_FORMAT_VERSION:
        raise AssetsError(
            path,
            "metadata.export_format_version",
            f"export format version {found}; this t2r reads up to {EXPORT_FORMAT_VERSION}. "
            "Upgrade t2r.",
        )
    program_format = metadata.get("program_format")
    if program_format not in PROGRAM_FORMATS:
        raise AssetsError(
            path,
            "metadata.program_format",
            f"names no t2r program ({_short(program_format)}; expected one of "
            f"{PROGRAM_FORMATS}); was it written by t2r.export?",
        )
    for field in ("program_file", "weights_file", "onnx_file"):
        name = metadata.get(field)
        if name is None and field != "program_file":
            continue
        if not is_plain_file_name(name):
            raise AssetsError(
                path,
                f"metadata.{field}",
                f"must be the name of a file inside the version directory, got {_short(name)}.",
            )
    for field in ("input_names", "output_names"):
        names = metadata.get(field)
        if names is not None and not (
            isinstance(names, list) and all(isinstance(n, str) for n in names)
        ):
            raise AssetsError(
                path, f"metadata.{field}", f"must be a list of strings, got {_short(names)}."
            )
    files = metadata.get("files")
    if files is not None:
        if not isinstance(files, dict):
            raise AssetsError(path, "metadata.files", f"must be an object, got {_short(files)}.")
        for name, record in files.items():
            if not (
                is_plain_file_name(name)
                and isinstance(record, dict)
                and isinstance(record.get("sha256"), str)
                and isinstance(record.get("size"), int)
            ):
                raise AssetsError(
                    path,
                    f"metadata.files[{name!r}]",
                    "must be a plain file name with {'sha256': str, 'size': int}, got "
                    f"{_short(record)}.",
                )
    write_id = metadata.get("write_id")
    if write_id is not None and not isinstance(write_id, str):
        raise AssetsError(path, "metadata.write_id", f"must be a string, got {_short(write_id)}.")
    return metadata


def _short(value: object, limit: int = 80) -> str:
    try:
        text = repr(value)
    except (RecursionError, ValueError):
        text = f"<{type(value).__name__}>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


class VersionReader:
    """Reads the files of one write of a version, even while it is exported again.

    The version directory is opened once; its files are then opened relative
    to that handle (``openat``), so a concurrent re-export, which swaps a new
    directory in (`t2r.atomic.publish_directory`), cannot mix its files into
    this read: they all come from the directory that was opened, and a file
    of it that has been removed meanwhile raises FileNotFoundError. Where
    the platform has no ``dir_fd``, files are opened by path; either way a
    file recorded in the assets' ``files`` is checked against its SHA-256,
    so a mix is detected (ExportError naming the file).

    Files are opened without following symbolic links and must be regular
    files directly inside the version directory.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._fd: int | None = None
        if os.open in os.supports_dir_fd:
            self._fd = os.open(self.path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        try:
            data = self._read(ASSETS_FILENAME)
            self.identity = hashlib.sha256(data).hexdigest()
            assets_path = self.path / ASSETS_FILENAME
            self.assets = parse_t2r_assets(data, assets_path)
            self.metadata = read_metadata(self.assets, assets_path)
        except BaseException:
            self.close()
            raise

    def _read(self, name: str) -> bytes:
        if not is_plain_file_name(name):
            raise ExportError(
                self.path / str(name), "is not a file name inside the version directory."
            )
        flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0)
        try:
            if self._fd is not None:
                fd = os.open(name, flags, dir_fd=self._fd)
            else:
                fd = os.open(self.path / name, flags)
        except OSError as e:
            if e.errno == errno.ELOOP:
                raise ExportError(
                    self.path / name, "is a symbolic link; version files must be regular files."
                ) from None
            raise
        with os.fdopen(fd, "rb") as f:
            if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                raise ExportError(self.path / name, "is not a regular file.")
            return f.read()

    def read_file(self, name: str) -> bytes:
        """The bytes of the version's file `name`, checked against the assets' record of it."""
        data = self._read(name)
        record = (self.metadata.get("files") or {}).get(name)
        if record is not None and (
            record["size"] != len(data) or hashlib.sha256(data).hexdigest() != record["sha256"]
        ):
            raise ExportError(
                self.path / name,
                "does not match the SHA-256 recorded in its assets (damaged, or a mix of two "
                "writes).",
            )
        return data

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> VersionReader:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
