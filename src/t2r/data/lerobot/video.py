"""Camera streams as MP4, encoded and decoded with PyAV.

Encoding: LeRobot's defaults for new datasets (``VideoEncoderConfig``): codec
``libsvtav1`` (AV1), ``pix_fmt`` ``yuv420p``, GOP ``g=2``, ``crf=30``, preset 12
(SVT-AV1 maps it to its fastest, 11). PyAV 18's wheels here carry the SVT-AV1
encoder and the dav1d decoder, so AV1 both encodes and decodes; ``h264``
(libx264, ``crf`` 23) is the alternative. Frame ``i`` of a file gets pts ``i`` in
a time base of ``1/fps``; the MP4 muxer rescales that to its own time base
(e.g. ``1/15360`` at 30 fps), which keeps every timestamp a multiple of ``1/fps``.

Decoding (:func:`decode_frames`) follows LeRobot's PyAV path: seek to the
keyframe at or before the first requested time, decode forward until the last,
and give each requested timestamp the decoded frame nearest in time, which must
be within ``tolerance_s`` (LeRobot's 1e-4 s) or the read fails naming the file
and the timestamps. Frames come out ``(N, H, W, 3)`` uint8 RGB (LeRobot gives
``(N, 3, H, W)`` float in [0, 1]).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from fractions import Fraction
from typing import Any

import av
import numpy as np

from t2r.data.errors import DataError

__all__ = ["CODEC_OPTIONS", "DEFAULT_CODEC", "VideoStreamWriter", "decode_frames", "video_info"]

DEFAULT_CODEC = "libsvtav1"
"""LeRobot's default codec for new datasets (AV1 through SVT-AV1)."""
CODEC_OPTIONS: dict[str, dict[str, str]] = {
    "libsvtav1": {"g": "2", "crf": "30", "preset": "12"},
    "h264": {"g": "2", "crf": "23", "preset": "medium"},
    "libx264": {"g": "2", "crf": "23", "preset": "medium"},
    "hevc": {"g": "2", "crf": "28", "preset": "medium"},
}
"""Encoder options per codec (LeRobot's ``VideoEncoderConfig.get_codec_options``)."""
PIX_FMT = "yuv420p"

logger = logging.getLogger(__name__)
av.logging.set_level(av.logging.ERROR)


class VideoStreamWriter:
    """Appends ``(H, W, 3)`` uint8 frames to one MP4 file; ``close()`` finishes it.

    Frames of consecutive episodes go into the same stream back to back, so an
    episode's frames start at ``frames_written / fps`` seconds (its
    ``from_timestamp`` in ``meta/episodes``).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        fps: int,
        height: int,
        width: int,
        codec: str = DEFAULT_CODEC,
        threads: int | None = 1,
    ) -> None:
        self.path = os.fspath(path)
        self.fps = int(fps)
        self.height, self.width = int(height), int(width)
        self.codec = codec
        self.frames_written = 0
        self._frames_muxed = 0
        self._bytes_muxed = 0
        options = dict(CODEC_OPTIONS.get(codec, {"g": "2"}))
        if threads is not None:
            if codec == "libsvtav1":
                options["svtav1-params"] = f"lp={threads}"
            else:
                options["threads"] = str(threads)
        self.options = options
        os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
        self._container: Any = av.open(self.path, mode="w", format="mp4")
        try:
            stream = self._container.add_stream(codec, rate=self.fps, options=options)
        except (av.FFmpegError, ValueError) as e:
            self._container.close()
            raise ValueError(f"{self.path}: PyAV cannot encode with codec {codec!r}: {e}") from e
        stream.width, stream.height = self.width, self.height  # type: ignore[union-attr]
        stream.pix_fmt = PIX_FMT  # type: ignore[union-attr]
        stream.time_base = Fraction(1, self.fps)
        self._stream: Any = stream

    @property
    def size_bytes(self) -> int:
        """The file's size so far: bytes muxed, plus the frames the encoder still holds
        (its lookahead) at the mean size of those muxed (1/50 of raw RGB before any)."""
        pending = self.frames_written - self._frames_muxed
        if self._frames_muxed:
            per_frame = self._bytes_muxed / self._frames_muxed
        else:
            per_frame = self.height * self.width * 3 / 50
        return int(self._bytes_muxed + pending * per_frame)

    def _mux(self, packets: Any) -> None:
        for packet in packets:
            self._container.mux(packet)
            self._bytes_muxed += packet.size
            self._frames_muxed += 1

    def write(self, frames: np.ndarray) -> None:
        """Appends ``frames``: ``(N, H, W, 3)`` uint8."""
        frames = np.asarray(frames)
        if frames.ndim != 4 or frames.shape[1:] != (self.height, self.width, 3):
            raise ValueError(
                f"{self.path}: frames of shape {frames.shape}, expected "
                f"(N, {self.height}, {self.width}, 3)."
            )
        if frames.dtype != np.uint8:
            raise ValueError(f"{self.path}: frames are {frames.dtype}, expected uint8.")
        for frame in frames:
            video_frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
            video_frame.pts = self.frames_written
            video_frame.time_base = Fraction(1, self.fps)
            self.frames_written += 1
            self._mux(self._stream.encode(video_frame))

    def close(self) -> None:
        if self._container is None:
            return
        try:
            self._mux(self._stream.encode())
        finally:
            self._container.close()
            self._container = None


def video_info(path: str | os.PathLike[str], codec_options: dict[str, str]) -> dict[str, Any]:
    """The ``info`` of a video feature in ``info.json``, as LeRobot's ``get_video_info``."""
    with av.open(os.fspath(path)) as container:
        stream = container.streams.video[0]
        info: dict[str, Any] = {
            "video.height": stream.height,
            "video.width": stream.width,
            "video.codec": stream.codec_context.codec.canonical_name,
            "video.pix_fmt": stream.pix_fmt,
            "video.is_depth_map": False,
            "video.fps": int(stream.base_rate or stream.average_rate or 0),
            "video.channels": 3,
            "has_audio": bool(container.streams.audio),
        }
    for key in ("g", "crf", "preset"):
        if key in codec_options:
            value = codec_options[key]
            info[f"video.{key}"] = int(value) if value.isdigit() else value
    return info


def decode_frames(
    path: str | os.PathLike[str],
    timestamps: Sequence[float] | np.ndarray,
    tolerance_s: float,
    *,
    expected_shape: tuple[int, int, int] | None = None,
) -> np.ndarray:
    """The frames of ``path`` at ``timestamps`` (seconds in the file): ``(N, H, W, 3)`` uint8.

    Raises:
        DataError: the file is missing or undecodable, or a timestamp has no frame
            within ``tolerance_s``, naming the file and the timestamps.
    """
    path = os.fspath(path)
    query = np.asarray(timestamps, dtype=np.float64).reshape(-1)
    if query.size == 0:
        shape = expected_shape or (0, 0, 3)
        return np.zeros((0, *shape), np.uint8)
    if not os.path.isfile(path):
        raise DataError(f"{path}: video file not found.")
    first, last = float(query.min()), float(query.max())
    times: list[float] = []
    frames: list[np.ndarray] = []
    try:
        with av.open(path) as container:
            if not container.streams.video:
                raise DataError(f"{path}: holds no video stream.")
            stream = container.streams.video[0]
            time_base = stream.time_base
            if time_base is None:
                raise DataError(f"{path}: the video stream has no time base.")
            container.seek(
                max(0, round(first / time_base) - 1), backward=True, any_frame=False, stream=stream
            )
            seconds_per_tick = float(time_base)
            for frame in container.decode(stream):
                if frame.pts is None:
                    continue
                t = frame.pts * seconds_per_tick
                if t < first - tolerance_s:
                    continue
                times.append(t)
                frames.append(frame.to_ndarray(format="rgb24"))
                if t >= last:
                    break
    except av.FFmpegError as e:
        raise DataError(f"{path}: cannot decode the video: {e}") from e
    if not frames:
        raise DataError(
            f"{path}: no frame decoded in [{first:.6f}, {last:.6f}] s (the video is shorter?)."
        )
    loaded = np.asarray(times)
    nearest = np.abs(query[:, None] - loaded[None, :]).argmin(axis=1)
    distance = np.abs(loaded[nearest] - query)
    bad = distance > tolerance_s
    if bad.any():
        raise DataError(
            f"{path}: no frame within tolerance_s={tolerance_s} of timestamps "
            f"{query[bad][:5].tolist()} (nearest frames at {loaded[nearest][bad][:5].tolist()})."
        )
    out = np.stack([frames[i] for i in nearest])
    if expected_shape is not None and out.shape[1:] != tuple(expected_shape):
        raise DataError(
            f"{path}: frames of shape {out.shape[1:]}, but info.json says {tuple(expected_shape)}."
        )
    return out
