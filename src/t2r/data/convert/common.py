"""What every format adapter shares: step specs from episode arrays, metadata as
JSON, and the warn-once record of what a conversion loses."""

from __future__ import annotations

import dataclasses
import json
import logging
import zlib
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal

import numpy as np

from t2r.data.episodes import Episode
from t2r.data.image_codec import detect_image_format
from t2r.specs import ExtendedTensorSpec, TensorSpecStruct, is_string_dtype, numpy_dtype

__all__ = [
    "ENCODED_IMAGES_KEY",
    "IMAGE_FORMATS_KEY",
    "PRIVATE_KEYS",
    "SPLIT_KEY",
    "TASK_KEY",
    "Losses",
    "check_same_spec",
    "encoded_frames",
    "image_format_of",
    "is_image",
    "jsonable",
    "remember_encoded",
    "step_spec",
    "text_array",
]

logger = logging.getLogger("t2r.data.convert")

TASK_KEY = "task"
"""Episode metadata: the language instruction."""
SPLIT_KEY = "split"
"""Episode metadata: the split an episode came from (RLDS, LeRobot) and goes to."""
IMAGE_FORMATS_KEY = "image_formats"
"""Episode metadata: ``{step path: 'jpeg' | 'png'}``, how the source stored its images;
writers of encoded formats keep that format unless told otherwise."""
ENCODED_IMAGES_KEY = "_encoded_images"
"""Episode metadata, never stored: ``{step path: EncodedFrames}``, the source's encoded
frames of a camera. A writer of the same encoding copies them instead of encoding
the decoded frames again (JPEG would lose quality at every generation), as long as
the frames are unchanged (same shape, dtype and CRC-32 as when read)."""
PRIVATE_KEYS = (ENCODED_IMAGES_KEY,)
"""Metadata keys that are not data: no writer stores them."""

ImageFormat = Literal["jpeg", "png"]


class Losses:
    """What one conversion loses, each kind logged once as a warning.

    ``note(kind, message)`` logs ``message`` the first time ``kind`` is noted; the
    messages are kept (``messages``) for the caller's summary.
    """

    def __init__(self, target: str) -> None:
        self.target = target
        self.messages: dict[str, str] = {}

    def note(self, kind: str, message: str) -> None:
        if kind in self.messages:
            return
        self.messages[kind] = message
        logger.warning("%s: %s", self.target, message)


@dataclasses.dataclass(frozen=True)
class EncodedFrames:
    """A camera's frames as the source stored them, and a fingerprint (CRC-32) of
    each decoded ``(H, W, C)`` frame."""

    frames: tuple[bytes, ...]
    frame_shape: tuple[int, ...]
    dtype: str
    crc32: tuple[int, ...]


def _fingerprint(frame: np.ndarray) -> int:
    return zlib.crc32(np.ascontiguousarray(frame).tobytes())


def remember_encoded(
    metadata: dict[str, Any], path: str, frames: Sequence[bytes], decoded: np.ndarray
) -> None:
    """Keeps `frames` (one encoded image per step) beside the episode's `decoded` array."""
    metadata.setdefault(ENCODED_IMAGES_KEY, {})[path] = EncodedFrames(
        tuple(bytes(f) for f in frames),
        decoded.shape[1:],
        str(decoded.dtype),
        tuple(_fingerprint(frame) for frame in decoded),
    )


def encoded_frames(episode: Episode, path: str, data_format: str) -> list[bytes | None] | None:
    """Per step, the source's encoded frame of `path` where it is `data_format` and
    the episode's frame is still what it decoded to, else None (encode that frame
    anew); None when the source kept no frames of `path`."""
    entry = episode.metadata.get(ENCODED_IMAGES_KEY, {}).get(path)
    if not isinstance(entry, EncodedFrames):
        return None
    array = np.asarray(episode.steps[path])
    if (
        len(array) != len(entry.frames)
        or array.shape[1:] != entry.frame_shape
        or str(array.dtype) != entry.dtype
    ):
        return None
    wanted = "jpeg" if data_format.lower() in ("jpeg", "jpg") else data_format.lower()
    return [
        data if detect_image_format(data) == wanted and _fingerprint(frame) == crc else None
        for data, frame, crc in zip(entry.frames, array, entry.crc32)
    ]


def is_image(array: np.ndarray) -> bool:
    """A camera stream: ``(T, H, W, C)`` uint8 (or uint16), C in 1, 3, 4."""
    return (
        array.dtype in (np.uint8, np.uint16)
        and array.ndim == 4
        and array.shape[-1] in (1, 3, 4)
        and array.shape[1] > 4
        and array.shape[2] > 4
    )


def is_text(array: np.ndarray) -> bool:
    return array.dtype == object or array.dtype.kind in ("U", "S")


def text_array(values: Iterable[Any], shape: tuple[int, ...]) -> np.ndarray:
    """An object array of ``str`` (bytes decoded as UTF-8) of `shape`."""
    items = [v.decode("utf-8") if isinstance(v, (bytes, bytearray)) else str(v) for v in values]
    out = np.empty(len(items), dtype=object)
    out[:] = items
    return out.reshape(shape)


def image_format_of(
    path: str, episode: Episode, override: ImageFormat | None, array: np.ndarray
) -> ImageFormat:
    """The encoding a writer uses for the images at `path`: `override`, else what
    the source used (``metadata['image_formats']``), else PNG (lossless).
    16-bit images are always PNG (JPEG has no 16-bit form)."""
    if array.dtype == np.uint16:
        return "png"
    if override is not None:
        return override
    hint = episode.metadata.get(IMAGE_FORMATS_KEY, {}).get(path)
    return "jpeg" if hint in ("jpeg", "jpg") else "png"


def step_spec(episode: Episode, image_format: ImageFormat | None = None) -> TensorSpecStruct:
    """One step's specs, read off the episode's arrays.

    Path and name are the step path; images (see `is_image`) get ``data_format``
    (`image_format_of`); text arrays are string specs.
    """
    out = TensorSpecStruct()
    for path, value in episode.steps.items():
        array = np.asarray(value)
        shape = array.shape[1:]
        if is_text(array):
            out[path] = ExtendedTensorSpec(shape, "string", name=path)
        elif is_image(array):
            fmt = image_format_of(path, episode, image_format, array)
            out[path] = ExtendedTensorSpec(shape, array.dtype, name=path, data_format=fmt)
        else:
            out[path] = ExtendedTensorSpec(shape, array.dtype, name=path)
    return out


def _spec_key(spec: ExtendedTensorSpec) -> tuple[Any, ...]:
    dtype = "string" if is_string_dtype(spec.dtype) else str(numpy_dtype(spec.dtype))
    return (tuple(spec.shape or ()), dtype, spec.data_format)


def check_same_spec(
    where: str, first: TensorSpecStruct, spec: TensorSpecStruct, index: int
) -> None:
    """Raises ValueError naming episode `index` when its features differ from the first's."""
    if list(first) != list(spec) or any(_spec_key(first[k]) != _spec_key(spec[k]) for k in first):
        diff = {
            k: (
                None if k not in first else _spec_key(first[k]),
                None if k not in spec else _spec_key(spec[k]),
            )
            for k in sorted(set(first) | set(spec))
            if k not in first or k not in spec or _spec_key(first[k]) != _spec_key(spec[k])
        }
        raise ValueError(
            f"{where}: episode {index} has other features than episode 0 "
            f"(path: (episode 0's shape, dtype, format), (this one's)): {diff}. "
            "This format holds one feature layout for all episodes."
        )


def jsonable(value: Any, where: str, losses: Losses | None = None) -> Any:
    """`value` as JSON-ready data: numpy arrays and scalars as lists and numbers.

    Anything else JSON cannot hold becomes its ``repr`` (noted in `losses`).
    """
    if isinstance(value, np.ndarray):
        if value.dtype == object:
            return [jsonable(v, where, losses) for v in value.tolist()]
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, Mapping):
        return {str(k): jsonable(v, f"{where}/{k}", losses) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v, where, losses) for v in value]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if losses is not None:
        losses.note(
            f"metadata-repr:{where}",
            f"metadata {where!r} ({type(value).__name__}) is not JSON; stored as its repr.",
        )
    return repr(value)


def dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True)
