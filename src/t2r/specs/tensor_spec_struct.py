"""TensorSpecStruct: a flat ordered dict of paths that also reads as a hierarchy."""

from __future__ import annotations

import collections
import json
import pprint
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from t2r.specs.errors import MissingKeyError, SpecError
from t2r.specs.extended_tensor_spec import ExtendedTensorSpec


def is_namedtuple(value: Any) -> bool:
    return isinstance(value, tuple) and hasattr(value, "_asdict") and hasattr(value, "_fields")


class TensorSpecStruct(collections.OrderedDict):
    """An OrderedDict keyed by flat ``'a/b/c'`` paths with hierarchical access.

    The dict interface is flat: ``keys()`` lists full paths. Attribute and item
    access also reach prefixes: ``struct.train`` (or ``struct['train']``) is a
    view of every entry under ``'train/'``, with the prefix stripped. Views are
    live: assigning or deleting through a view changes the root struct.

    Assigned dicts, namedtuples and structs are flattened into paths. Leaves are
    specs, torch tensors, numpy arrays or None. A missing key raises
    `MissingKeyError` (both a KeyError and an AttributeError). An empty dict or
    struct cannot be assigned: it would leave no path behind.

    ``keys()``, ``values()`` and ``items()`` return lists, as in Tensor2Robot.
    Equality compares the flat items, ignoring order.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # A view holds the root and its path prefix; a root has _root None.
        object.__setattr__(self, "_root", None)
        object.__setattr__(self, "_prefix", "")
        super().__init__()
        if len(args) > 1:
            raise TypeError(
                f"TensorSpecStruct expected at most 1 positional argument, got {len(args)}."
            )
        if args:
            source = args[0]
            if is_namedtuple(source):
                source = source._asdict()
            pairs = source.items() if isinstance(source, Mapping) else source
            for key, value in pairs:
                self[key] = value
        for key, value in kwargs.items():
            self[key] = value

    @classmethod
    def _view(cls, root: TensorSpecStruct, prefix: str) -> TensorSpecStruct:
        view = cls()
        object.__setattr__(view, "_root", root)
        object.__setattr__(view, "_prefix", prefix)
        # A snapshot in the dict's own storage serves C-level readers (json,
        # dict(view) fast paths); every Python-level access goes to the root.
        for key in view._own_keys():
            collections.OrderedDict.__setitem__(view, key, root._raw_get(prefix + "/" + key))
        return view

    # ------------------------------------------------------------- internals
    def _storage(self) -> TensorSpecStruct:
        return self if self._root is None else self._root

    def _full(self, key: str) -> str:
        if not isinstance(key, str):
            raise TypeError(f"TensorSpecStruct keys are str paths, got {key!r}.")
        key = key.strip("/")
        return f"{self._prefix}/{key}" if self._prefix else key

    def _raw_get(self, full_key: str) -> Any:
        return collections.OrderedDict.__getitem__(self._storage(), full_key)

    def _raw_contains(self, full_key: str) -> bool:
        return collections.OrderedDict.__contains__(self._storage(), full_key)

    def _raw_keys(self) -> Iterator[str]:
        return collections.OrderedDict.__iter__(self._storage())

    def _own_keys(self) -> list[str]:
        if self._root is None:
            return list(self._raw_keys())
        start = self._prefix + "/"
        return [k[len(start) :] for k in self._raw_keys() if k.startswith(start)]

    def _has_prefix(self, full_key: str) -> bool:
        start = full_key + "/"
        return any(k.startswith(start) for k in self._raw_keys())

    def _missing(self, key: str) -> MissingKeyError:
        where = f" under {self._prefix!r}" if self._prefix else ""
        return MissingKeyError(
            f"TensorSpecStruct has no entry {key!r}{where}; it has {self._own_keys()}."
        )

    # ------------------------------------------------------------- mapping
    def __getitem__(self, key: str) -> Any:
        full = self._full(key)
        if self._raw_contains(full):
            return self._raw_get(full)
        if self._has_prefix(full):
            return TensorSpecStruct._view(self._storage(), full)
        raise self._missing(key)

    def __setitem__(self, key: str, value: Any) -> None:
        full = self._full(key)
        if is_namedtuple(value):
            value = value._asdict()
        if isinstance(value, Mapping):
            if not value:
                raise SpecError(
                    f"Cannot assign an empty {type(value).__name__} to {full!r}: fill it first.",
                    key=full,
                )
            for sub_key, sub_value in list(value.items()):
                self[f"{key.strip('/')}/{sub_key}"] = sub_value
            return
        if self._has_prefix(full):
            raise SpecError(
                f"Cannot assign a leaf to {full!r}: it already holds entries below it.", key=full
            )
        parts = full.split("/")
        for i in range(1, len(parts)):
            if self._raw_contains("/".join(parts[:i])):
                raise SpecError(
                    f"Cannot assign {full!r}: {'/'.join(parts[:i])!r} is already a leaf.", key=full
                )
        collections.OrderedDict.__setitem__(self._storage(), full, value)
        if self._root is not None:
            collections.OrderedDict.__setitem__(self, key.strip("/"), value)

    def __delitem__(self, key: str) -> None:
        full = self._full(key)
        storage = self._storage()
        if self._raw_contains(full):
            doomed = [full]
        elif self._has_prefix(full):
            doomed = [k for k in self._raw_keys() if k.startswith(full + "/")]
        else:
            raise self._missing(key)
        for k in doomed:
            collections.OrderedDict.__delitem__(storage, k)
        if self._root is not None:
            start = self._prefix + "/"
            for k in doomed:
                local = k[len(start) :]
                if collections.OrderedDict.__contains__(self, local):
                    collections.OrderedDict.__delitem__(self, local)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        return self[name]

    def __setattr__(self, name: str, value: Any) -> None:
        if name.startswith("_"):
            object.__setattr__(self, name, value)
        else:
            self[name] = value

    def __delattr__(self, name: str) -> None:
        if name.startswith("_"):
            object.__delattr__(self, name)
        else:
            del self[name]

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and self._raw_contains(self._full(key))

    def __iter__(self) -> Iterator[str]:
        return iter(self._own_keys())

    def __reversed__(self) -> Iterator[str]:
        return reversed(self._own_keys())

    def __len__(self) -> int:
        return len(self._own_keys())

    def __dir__(self) -> Iterable[str]:
        children = {k.split("/", 1)[0] for k in self._own_keys()}
        return sorted(set(super().__dir__()) | children)

    def keys(self) -> list[str]:  # type: ignore[override]
        return self._own_keys()

    def values(self) -> list[Any]:  # type: ignore[override]
        return [self[k] for k in self._own_keys()]

    def items(self) -> list[tuple[str, Any]]:  # type: ignore[override]
        return [(k, self[k]) for k in self._own_keys()]

    def get(self, key: str, default: Any = None) -> Any:
        try:
            return self[key]
        except MissingKeyError:
            return default

    _MARKER = object()

    def pop(self, key: str, default: Any = _MARKER) -> Any:
        try:
            value = self[key]
        except MissingKeyError:
            if default is TensorSpecStruct._MARKER:
                raise
            return default
        if isinstance(value, TensorSpecStruct):
            value = value.copy()
        del self[key]
        return value

    def setdefault(self, key: str, default: Any = None) -> Any:
        if key not in self:
            self[key] = default
        return self[key]

    def update(self, *args: Any, **kwargs: Any) -> None:
        for key, value in TensorSpecStruct(*args, **kwargs).items():
            self[key] = value

    def clear(self) -> None:
        for key in self._own_keys():
            del self[key]

    def copy(self) -> TensorSpecStruct:
        """A shallow, independent root struct with this struct's items."""
        return TensorSpecStruct(self.items())

    def popitem(self, last: bool = True) -> tuple[str, Any]:
        keys = self._own_keys()
        if not keys:
            raise MissingKeyError("popitem(): TensorSpecStruct is empty.")
        key = keys[-1] if last else keys[0]
        return key, self.pop(key)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Mapping):
            return NotImplemented
        return dict(self.items()) == dict(other.items())

    def __ne__(self, other: object) -> bool:
        result = self.__eq__(other)
        return result if result is NotImplemented else not result

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"TensorSpecStruct(\n{pprint.pformat(self.to_dict(), sort_dicts=False)})"

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return (TensorSpecStruct, (self.items(),))

    def __copy__(self) -> TensorSpecStruct:
        return self.copy()

    # --------------------------------------------------------- conversions
    def to_dict(self) -> dict[str, Any]:
        """A shallow flat dict copy: ``{path: leaf}``."""
        return dict(self.items())

    def to_json(self, indent: int | None = 2) -> str:
        """The struct's specs as JSON text (see `from_json`). Leaves must be specs."""
        data = {}
        for key, value in self.items():
            if not isinstance(value, ExtendedTensorSpec):
                raise SpecError(
                    f"to_json serializes specs only; {key!r} holds {type(value).__name__}.",
                    key=key,
                )
            data[key] = value.to_dict()
        return json.dumps(data, indent=indent)

    @classmethod
    def from_json(cls, text: str | bytes) -> TensorSpecStruct:
        """The inverse of `to_json`."""
        data = json.loads(text)
        if not isinstance(data, dict):
            raise SpecError(f"Expected a JSON object of specs, got {type(data).__name__}.")
        return cls((key, ExtendedTensorSpec.from_dict(value)) for key, value in data.items())
