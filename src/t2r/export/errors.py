"""Errors of loading an export version; each names the file."""

from __future__ import annotations

import os


class ExportError(ValueError):
    """A version's file cannot be loaded (damaged, mixed, or not a t2r export).

    `path` is the file. Malformed ``t2r_assets.json`` content raises
    `t2r.specs.AssetsError` instead, which also names the field.
    """

    def __init__(self, path: str | os.PathLike[str], problem: str) -> None:
        super().__init__(f"{os.fspath(path)}: {problem}")
        self.path = os.fspath(path)


class UnsafeExportError(ExportError):
    """A version's file holds something that loading would execute (a pickle, code).

    Raised before anything in the file is deserialized; `entry` is the archive
    entry that was refused.
    """

    def __init__(self, path: str | os.PathLike[str], entry: str, what: str, hint: str = "") -> None:
        super().__init__(
            path,
            f"refused to load: archive entry {entry} holds {what}, which loading would "
            "execute. t2r loads only programs whose every part is data (see "
            f"docs/export_format.md, 'What is safe to load').{hint}",
        )
        self.entry = entry
