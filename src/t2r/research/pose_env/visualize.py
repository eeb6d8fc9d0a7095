"""Pictures for pose_env runs, drawn with Pillow (no plotting library needed).

* `draw_learning_curve`: error against training step on a log scale, with
  reference lines (random policy, target), as a PNG.
* `draw_prediction_grid`: camera images with the true (green circle) and
  predicted (red cross) positions of the duck, as a PNG.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

__all__ = ["MARKERS_UP_TO", "Curve", "GridItem", "draw_learning_curve", "draw_prediction_grid"]

TRUE_COLOR = (0, 200, 60)
PREDICTED_COLOR = (230, 20, 20)
_PALETTE = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189)]


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError):  # Pillow without FreeType: the fixed bitmap font
        return ImageFont.load_default()


# A series with at most this many points gets markers by default (a short run, or
# one point, would otherwise be a bare polyline or invisible).
MARKERS_UP_TO = 30


@dataclasses.dataclass
class Curve:
    """A line on the learning curve: (step, value) points, a label, a colour.

    markers: True always, False never, None (default) when the series has at
    most `MARKERS_UP_TO` points to draw.
    """

    label: str
    steps: Sequence[float]
    values: Sequence[float]
    color: tuple[int, int, int] | None = None
    markers: bool | None = None
    marker_size: float = 3.0


def _log_ticks(low: float, high: float) -> list[float]:
    ticks = []
    for exponent in range(math.floor(math.log10(low)), math.ceil(math.log10(high)) + 1):
        for mantissa in (1, 2, 5):
            value = mantissa * 10.0**exponent
            if low <= value <= high:
                ticks.append(value)
    return ticks


def _nice_step_ticks(high: float, count: int = 6) -> list[float]:
    if high <= 0:
        return [0.0]
    raw = high / count
    magnitude = 10.0 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    return [i * step for i in range(int(high // step) + 1)]


def _format_number(value: float) -> str:
    if value >= 1000:
        return f"{value:,.0f}"
    return f"{value:.3g}"


def draw_learning_curve(
    path: str | os.PathLike[str],
    curves: Sequence[Curve],
    hlines: Sequence[tuple[str, float, tuple[int, int, int]]] = (),
    title: str = "",
    y_label: str = "mean position error",
    size: tuple[int, int] = (900, 560),
) -> None:
    """Writes a line chart (log-scale y) of `curves` against training step to `path` (PNG).

    Args:
      path: the PNG to write.
      curves: the lines; non-positive or non-finite values are skipped, and a
        curve left without points is left out of the legend too.
      hlines: ``(label, value, colour)`` dashed reference lines.
      title: drawn above the chart.
      y_label: the quantity on the y axis.
      size: image width and height in pixels.
    """
    width, height = size
    left, right, top, bottom = 80, 200, 50, 60
    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)
    font, small = _font(15), _font(12)

    points = [
        (float(s), float(v))
        for c in curves
        for s, v in zip(c.steps, c.values)
        if math.isfinite(v) and v > 0
    ]
    values = [v for _, v in points] + [v for _, v, _ in hlines if v > 0]
    if not values:
        values = [1.0]
    y_low, y_high = min(values) / 1.3, max(values) * 1.3
    x_high = max([s for s, _ in points] + [1.0])

    plot_w, plot_h = width - left - right, height - top - bottom

    def to_xy(step: float, value: float) -> tuple[float, float]:
        x = left + plot_w * step / x_high
        fraction = (math.log10(value) - math.log10(y_low)) / (
            math.log10(y_high) - math.log10(y_low)
        )
        return x, top + plot_h * (1.0 - fraction)

    # Grid and axes.
    for tick in _log_ticks(y_low, y_high):
        _, y = to_xy(0, tick)
        draw.line([(left, y), (left + plot_w, y)], fill=(228, 228, 228))
        label = _format_number(tick)
        draw.text((left - 8, y), label, fill="black", font=small, anchor="rm")
    for tick in _nice_step_ticks(x_high):
        x, _ = to_xy(tick, y_low)
        draw.line([(x, top), (x, top + plot_h)], fill=(240, 240, 240))
        draw.text(
            (x, top + plot_h + 8), _format_number(tick), fill="black", font=small, anchor="mt"
        )
    draw.rectangle([left, top, left + plot_w, top + plot_h], outline="black")
    draw.text(
        (left + plot_w / 2, height - 18), "training step", fill="black", font=font, anchor="mm"
    )
    if y_label:
        # Rotated y label, drawn on its own image.
        label_image = Image.new("RGB", (plot_h, 24), "white")
        ImageDraw.Draw(label_image).text(
            (plot_h / 2, 12), y_label, fill="black", font=font, anchor="mm"
        )
        image.paste(label_image.rotate(90, expand=True), (10, top))
    if title:
        draw.text((left + plot_w / 2, 22), title, fill="black", font=font, anchor="mm")

    legend: list[tuple[str, tuple[int, int, int], bool]] = []
    for label, value, color in hlines:
        if value <= 0:
            continue
        _, y = to_xy(0, value)
        for x in range(left, left + plot_w, 12):
            draw.line([(x, y), (min(x + 6, left + plot_w), y)], fill=color, width=2)
        legend.append((f"{label} ({_format_number(value)})", color, True))
    for index, curve in enumerate(curves):
        color = curve.color or _PALETTE[index % len(_PALETTE)]
        xy = [
            to_xy(float(s), float(v))
            for s, v in zip(curve.steps, curve.values)
            if math.isfinite(v) and v > 0
        ]
        if not xy:
            continue  # nothing to show: no legend entry either
        if len(xy) > 1:
            draw.line(xy, fill=color, width=2)
        markers = curve.markers if curve.markers is not None else len(xy) <= MARKERS_UP_TO
        if markers:
            r = curve.marker_size
            for x, y in xy:
                draw.ellipse([x - r, y - r, x + r, y + r], fill=color, outline="white")
        legend.append((curve.label, color, False))

    y = top + 4
    for label, color, dashed in legend:
        x = left + plot_w + 14
        if dashed:
            draw.line([(x, y + 7), (x + 8, y + 7)], fill=color, width=2)
            draw.line([(x + 14, y + 7), (x + 22, y + 7)], fill=color, width=2)
        else:
            draw.line([(x, y + 7), (x + 22, y + 7)], fill=color, width=3)
        draw.multiline_text((x + 28, y), _wrap(label, 20), fill="black", font=small)
        y += 18 * (1 + _wrap(label, 20).count("\n")) + 6
    image.save(os.fspath(path), format="PNG")


def _wrap(text: str, width: int) -> str:
    lines, line = [], ""
    for word in text.split():
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}".strip()
    lines.append(line)
    return "\n".join(lines)


@dataclasses.dataclass
class GridItem:
    """One held-out image: (H, W, 3) uint8, and the true and predicted positions in
    pixels ((column, row), as `PoseToyEnv.world_to_pixel` gives them)."""

    image: np.ndarray
    true_pixel: Sequence[float]
    predicted_pixel: Sequence[float]
    error: float


def draw_prediction_grid(
    path: str | os.PathLike[str],
    items: Sequence[GridItem],
    columns: int = 4,
    scale: int = 4,
    title: str = "",
) -> None:
    """Writes `items` as a grid of upscaled images with the positions drawn (PNG).

    The true position is a green circle, the prediction a red cross, and each
    tile is captioned with its error (distance on the table).
    """
    if not items:
        raise ValueError("draw_prediction_grid needs at least one image.")
    columns = max(1, min(columns, len(items)))
    rows = math.ceil(len(items) / columns)
    tile_h, tile_w = (d * scale for d in np.asarray(items[0].image).shape[:2])
    caption, header, pad = 22, (34 if title else 0), 6
    width = columns * (tile_w + pad) + pad
    height = header + rows * (tile_h + caption + pad) + pad + 24
    canvas = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(canvas)
    font = _font(14)
    if title:
        draw.text((width / 2, header / 2 + 2), title, fill="black", font=font, anchor="mm")
    radius = max(5, scale * 2.5)
    for index, item in enumerate(items):
        row, column = divmod(index, columns)
        x0 = pad + column * (tile_w + pad)
        y0 = header + pad + row * (tile_h + caption + pad)
        tile = Image.fromarray(np.asarray(item.image, dtype=np.uint8)).resize(
            (tile_w, tile_h), Image.Resampling.BICUBIC
        )
        canvas.paste(tile, (x0, y0))
        tx, ty = (x0 + float(item.true_pixel[0]) * scale, y0 + float(item.true_pixel[1]) * scale)
        px, py = (
            x0 + float(item.predicted_pixel[0]) * scale,
            y0 + float(item.predicted_pixel[1]) * scale,
        )
        # Drawn inside the tile only (a wild prediction may project outside it).
        layer = Image.new("RGBA", (tile_w, tile_h), (0, 0, 0, 0))
        tile_draw = ImageDraw.Draw(layer)
        lx, ly = tx - x0, ty - y0
        tile_draw.ellipse(
            [lx - radius, ly - radius, lx + radius, ly + radius], outline=TRUE_COLOR, width=3
        )
        lx, ly = px - x0, py - y0
        arm = radius * 0.5
        tile_draw.line([(lx - arm, ly - arm), (lx + arm, ly + arm)], fill=PREDICTED_COLOR, width=2)
        tile_draw.line([(lx - arm, ly + arm), (lx + arm, ly - arm)], fill=PREDICTED_COLOR, width=2)
        canvas.paste(layer, (x0, y0), layer)
        draw.text(
            (x0 + tile_w / 2, y0 + tile_h + caption / 2),
            f"error {item.error:.3f}",
            fill="black",
            font=font,
            anchor="mm",
        )
    legend_y = height - 16
    draw.ellipse([pad, legend_y - 6, pad + 12, legend_y + 6], outline=TRUE_COLOR, width=3)
    draw.text((pad + 18, legend_y), "true position", fill="black", font=font, anchor="lm")
    x = pad + 140
    draw.line([(x, legend_y - 6), (x + 12, legend_y + 6)], fill=PREDICTED_COLOR, width=3)
    draw.line([(x, legend_y + 6), (x + 12, legend_y - 6)], fill=PREDICTED_COLOR, width=3)
    draw.text((x + 18, legend_y), "predicted", fill="black", font=font, anchor="lm")
    canvas.save(os.fspath(path), format="PNG")
