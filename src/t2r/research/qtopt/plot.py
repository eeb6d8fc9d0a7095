"""The success-over-time figure of a QT-Opt run, drawn with Pillow (no matplotlib)."""

from __future__ import annotations

import os
from collections.abc import Sequence

__all__ = ["draw_success_plot"]

_SIZE = (720, 420)
_MARGIN = (70, 40, 30, 60)  # left, top, right, bottom
_BLUE = (31, 119, 180)
_GREY = (120, 120, 120)
_ORANGE = (230, 120, 20)


def draw_success_plot(
    points: Sequence[tuple[float, float]],
    baseline: float | None,
    path: str | os.PathLike[str],
    title: str = "Grasp success on held-out objects",
) -> None:
    """Writes a PNG: success (0..1) of each evaluated policy against wall-clock minutes,
    and the random policy's success as a dashed line.

    Args:
      points: ``(wall seconds since the start, success in [0, 1])`` per evaluation.
      baseline: the random policy's success, or None.
      path: the PNG to write (atomically).
    """
    from PIL import Image, ImageDraw

    from t2r.atomic import atomic_write_bytes

    image = Image.new("RGB", _SIZE, "white")
    draw = ImageDraw.Draw(image)
    left, top, right, bottom = _MARGIN
    width, height = _SIZE[0] - left - right, _SIZE[1] - top - bottom
    x_max = max([p[0] for p in points] + [60.0]) / 60.0

    def xy(minutes: float, success: float) -> tuple[float, float]:
        return (
            left + width * minutes / x_max,
            top + height * (1.0 - min(max(success, 0.0), 1.0)),
        )

    draw.rectangle([left, top, left + width, top + height], outline="black")
    for tick in range(0, 11, 2):
        y = top + height * (1 - tick / 10)
        draw.line([left - 5, y, left, y], fill="black")
        draw.line([left, y, left + width, y], fill=(230, 230, 230))
        draw.text((left - 40, y - 6), f"{tick * 10}%", fill="black")
    step = _nice_step(x_max)
    tick_value = 0.0
    while tick_value <= x_max + 1e-9:
        x = left + width * tick_value / x_max
        draw.line([x, top + height, x, top + height + 5], fill="black")
        draw.text((x - 8, top + height + 8), f"{tick_value:g}", fill="black")
        tick_value += step
    draw.text((left + width / 2 - 60, top + height + 28), "wall-clock minutes", fill="black")
    draw.text((left, 12), title, fill="black")
    if baseline is not None:
        y = xy(0, baseline)[1]
        x = float(left)
        while x < left + width:
            draw.line([x, y, min(x + 8, left + width), y], fill=_GREY, width=2)
            x += 14
        draw.text((left + width - 190, y - 16), f"random policy {100 * baseline:.0f}%", fill=_GREY)
    line = [xy(t / 60.0, s) for t, s in points]
    if len(line) > 1:
        draw.line(line, fill=_BLUE, width=2)
    for x, y in line:
        draw.ellipse([x - 3, y - 3, x + 3, y + 3], fill=_BLUE)
    if points:
        draw.text(
            (left + 10, top + 8),
            f"newest policy (CEM on the critic): last {100 * points[-1][1]:.0f}%, "
            f"best {100 * max(p[1] for p in points):.0f}%",
            fill=_BLUE,
        )
    else:
        draw.text((left + 10, top + 8), "no policy evaluated yet", fill=_ORANGE)
    import io

    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    atomic_write_bytes(path, buffer.getvalue())


def _nice_step(span: float) -> float:
    """A tick step of 1, 2 or 5 times a power of ten giving 4 to 10 ticks over `span`."""
    import math

    raw = span / 6
    power = 10 ** math.floor(math.log10(raw)) if raw > 0 else 1.0
    for factor in (1, 2, 5, 10):
        if raw <= factor * power:
            return factor * power
    return 10 * power
