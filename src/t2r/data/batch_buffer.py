"""The memory layout of a parsed batch: every array of a batch in one uint8 buffer.

One buffer per batch means a DataLoader worker can hand a whole batch to the
training process as a single shared-memory block (no per-tensor pickling), and
the receiver rebuilds the tensors as views from a small layout description.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.utils.data

from t2r.specs import TensorSpecStruct, as_torch_dtype

__all__ = [
    "LayoutEntry",
    "ParsedBatch",
    "allocate_batch",
    "default_allocate",
    "tensors_from_layout",
]

# Each array starts on a cache-line boundary.
_ALIGN = 64


LayoutEntry = tuple[str, int, tuple[int, ...], str, str, Any]


@dataclasses.dataclass
class ParsedBatch:
    """One parsed batch: numpy arrays and torch views of one uint8 buffer.

    Attributes:
        base: the 1-D uint8 buffer (from the allocate function).
        arrays, views, offsets: per internal field: the numpy array, the torch view
            of the same memory (None for object arrays, which live outside the
            buffer) and the byte offset in ``base`` (-1 for object arrays).
    """

    base: torch.Tensor
    arrays: dict[Any, np.ndarray]
    views: dict[Any, torch.Tensor | None]
    offsets: dict[Any, int]


def default_allocate(nbytes: int) -> torch.Tensor:
    """A fresh buffer; in shared memory inside a DataLoader worker (no copy to send)."""
    if torch.utils.data.get_worker_info() is not None:
        if hasattr(torch.UntypedStorage, "_new_shared"):
            storage = torch.UntypedStorage._new_shared(nbytes)
            return torch.empty(0, dtype=torch.uint8).set_(storage)
        return torch.empty(nbytes, dtype=torch.uint8).share_memory_()
    # numpy's allocations reuse freed heap memory; torch.empty of a large buffer
    # maps fresh pages, whose first-touch faults cost ~5 us a record for 64x64 images.
    return torch.from_numpy(np.empty(nbytes, np.uint8))


def allocate_batch(
    requests: list[tuple[Any, tuple[int, ...], np.dtype]],
    allocate: Callable[[int], torch.Tensor],
) -> ParsedBatch:
    """Arrays for one batch, carved from a single buffer ``allocate(total bytes)``.

    Object arrays (encoded images left undecoded) are plain numpy arrays.
    """
    offsets: dict[Any, int] = {}
    total = 0
    for key, shape, dtype in requests:
        if dtype.kind == "O":
            offsets[key] = -1
            continue
        total = -(-total // _ALIGN) * _ALIGN
        offsets[key] = total
        total += math.prod(shape) * dtype.itemsize
    base = allocate(max(total, 1))
    arrays: dict[Any, np.ndarray] = {}
    views: dict[Any, torch.Tensor | None] = {}
    for key, shape, dtype in requests:
        offset = offsets[key]
        if offset < 0:
            arrays[key], views[key] = np.empty(shape, dtype), None
            continue
        size = math.prod(shape) * dtype.itemsize
        view = base[offset : offset + size].view(_TORCH_VIEW_DTYPES[dtype]).view(shape)
        arrays[key], views[key] = view.numpy(), view
    return ParsedBatch(base, arrays, views, offsets)


def tensors_from_layout(owner: np.ndarray, layout: list[LayoutEntry]) -> TensorSpecStruct:
    """Rebuilds a TensorSpecStruct from :meth:`ParseTFExampleFn.layout` entries.

    ``owner`` is a uint8 numpy array of the buffer; the tensors are views of it
    (``torch.from_numpy``: they keep ``owner`` alive), cast where the spec dtype
    differs (bfloat16).
    """
    struct = TensorSpecStruct()
    for path, offset, shape, np_name, torch_name, obj in layout:
        if offset < 0:
            struct[path] = obj
            continue
        dtype, target = _dtypes(np_name, torch_name)
        size = math.prod(shape) * dtype.itemsize
        tensor = torch.from_numpy(owner[offset : offset + size].view(dtype).reshape(shape))
        struct[path] = tensor if tensor.dtype == target else tensor.to(target)
    return struct


@functools.cache
def _dtypes(np_name: str, torch_name: str) -> tuple[np.dtype[Any], torch.dtype]:
    """The numpy and torch dtypes a layout entry names (looked up once per pair)."""
    return np.dtype(np_name), as_torch_dtype(torch_name)


_TORCH_VIEW_DTYPES = {
    np.dtype(name): getattr(torch, name)
    for name in (
        "float16",
        "float32",
        "float64",
        "uint8",
        "uint16",
        "uint32",
        "uint64",
        "int8",
        "int16",
        "int32",
        "int64",
        "bool",
        "complex64",
        "complex128",
    )
}
