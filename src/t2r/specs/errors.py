"""The error raised when data or specs do not match a spec structure."""

from __future__ import annotations

from typing import Any


class SpecError(ValueError):
    """A spec structure is invalid, or a value does not match its spec.

    The message names the place (`key`, the flat path such as ``'train/images'``,
    and `name`, the spec's serialized feature name) and, for mismatches, the
    expected and actual shape and dtype. The same facts are kept as attributes
    so that callers can react without parsing the message.
    """

    def __init__(
        self,
        message: str,
        *,
        key: str | None = None,
        name: str | None = None,
        expected: Any = None,
        actual: Any = None,
    ) -> None:
        super().__init__(message)
        self.key = key
        self.name = name
        self.expected = expected
        self.actual = actual


class AssetsError(SpecError):
    """A t2r assets file is unreadable or malformed.

    Whatever the content (wrong types, deep nesting, bad UTF-8), reading
    assets raises this and nothing else; `path` is the file and `field` the
    place in it (``'feature_spec'``, ``"feature_spec['x'].shape"``,
    ``'metadata.program_file'``), or None for the file as a whole.
    """

    def __init__(self, path: Any, field: str | None, problem: str) -> None:
        where = f"{path}" if field is None else f"{path}, field {field}"
        super().__init__(f"{where}: {problem}", key=field)
        self.path = path
        self.field = field


class MissingKeyError(KeyError, AttributeError):
    """A key or attribute is missing from a TensorSpecStruct.

    It is both a KeyError (dict semantics) and an AttributeError (Tensor2Robot
    raised AttributeError for both item and attribute access, and `hasattr`
    relies on it).
    """

    def __str__(self) -> str:
        # KeyError quotes its argument; show the message as written.
        return str(self.args[0]) if self.args else ""
