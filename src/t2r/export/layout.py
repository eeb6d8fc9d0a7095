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
import logging
import os
import shutil
import time
from pathlib import Path
from typing import Any

from t2r.atomic import atomic_directory, fsync_file, is_temporary_path
from t2r.specs import T2R_ASSETS_FILENAME, T2RAssets, load_t2r_assets_to_file

logger = logging.getLogger(__name__)

ASSETS_FILENAME = T2R_ASSETS_FILENAME
TORCH_EXPORT_FILENAME = "model.pt2"
TORCHSCRIPT_FILENAME = "model.torchscript.pt"
WEIGHTS_FILENAME = "model.safetensors"
ONNX_FILENAME = "model.onnx"

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


def read_metadata(assets: T2RAssets, path: Path) -> dict[str, Any]:
    """The assets' metadata, checked for a readable export format version."""
    metadata = dict(assets.metadata)
    found = metadata.get("export_format_version", 0)
    if found > EXPORT_FORMAT_VERSION:
        raise ValueError(
            f"{path} has export format version {found}; this t2r reads up to "
            f"{EXPORT_FORMAT_VERSION}. Upgrade t2r."
        )
    return metadata
