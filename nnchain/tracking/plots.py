"""Pictures of trials and sweeps as PNG bytes, drawn with Pillow.

A trial's two pictures are drawn in its worker while the sweep runs, so they must cost
little next to a short trial: matplotlib takes a second to import and a tenth of a second
a figure, Pillow a few milliseconds for these simple charts. The charts are plain: lines,
translucent bands, points, a heatmap; linear or log axes; a legend beside the plot.

Colours of layers run in one ramp (viridis), input side dark to output side light.
"""

from __future__ import annotations

import math
import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

# viridis at 0, 0.25, 0.5, 0.75, 1
_VIRIDIS = np.array([(68, 1, 84), (59, 82, 139), (33, 145, 140), (94, 201, 98),
                     (253, 231, 37)], dtype=float)
# distinct colours for groups (matplotlib's tab10)
PALETTE = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
           (140, 86, 75), (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207)]
MAX_POINTS = 400  # a curve drawn with more points is thinned (every k-th point, last kept)


def ramp(count: int) -> list[tuple[int, int, int]]:
    """``count`` colours from the ramp's dark end (input side) to its light end (output)."""
    return [tuple(int(c) for c in ramp_values(np.array([i / max(1, count - 1)]))[0])
            for i in range(count)]


def ramp_values(fractions: np.ndarray) -> np.ndarray:
    """RGB (n, 3) floats of the ramp at ``fractions`` in [0, 1] (NaN: its low end; callers
    paint missing cells their own colour)."""
    where = np.clip(np.nan_to_num(fractions, nan=0.0), 0, 1) * (len(_VIRIDIS) - 1)
    low = np.minimum(where.astype(int), len(_VIRIDIS) - 2)
    part = (where - low)[..., None]
    return _VIRIDIS[low] * (1 - part) + _VIRIDIS[low + 1] * part


def group_colour(index: int) -> tuple[int, int, int]:
    return PALETTE[index % len(PALETTE)]


@lru_cache(maxsize=4)
def _font(size: int):
    from PIL import ImageFont

    return ImageFont.load_default(size=size)


@lru_cache(maxsize=2048)
def _text_mask(text: str, size: int):
    """The text's coverage as an "L" image, drawn once: a worker draws the same tick
    labels for trial after trial, and rendering text is most of a chart's time."""
    from PIL import Image, ImageDraw

    left, top, right, bottom = _font(size).getbbox(text)
    mask = Image.new("L", (max(1, int(right)), max(1, int(bottom))), 0)
    ImageDraw.Draw(mask).text((0, 0), text, fill=255, font=_font(size))
    return mask


@lru_cache(maxsize=1)
def _drawing_class():
    from PIL import ImageDraw

    class CachedTextDraw(ImageDraw.ImageDraw):
        """ImageDraw whose ``text`` pastes cached masks (same pixels as ``text``)."""

        def __init__(self, image) -> None:
            super().__init__(image)
            self.target = image

        def text(self, xy, text, fill=(0, 0, 0), font=None, **_):
            mask = _text_mask(text, int(font.size))
            x, y = int(round(xy[0])), int(round(xy[1]))
            colour = (*fill, 255) if self.target.mode == "RGBA" else fill
            self.target.paste(colour, (x, y, x + mask.width, y + mask.height), mask)

    return CachedTextDraw


def _draw(image):
    return _drawing_class()(image)


def _text_width(text: str, size: int) -> float:
    return _font(size).getlength(text)


def _fit(text: str, width: float, size: int) -> str:
    """``text`` cut with an ellipsis to fit ``width`` pixels."""
    if _text_width(text, size) <= width:
        return text
    while text and _text_width(text + "…", size) > width:
        text = text[:-1]
    return text + "…"


def tick_label(value: float) -> str:
    if value == 0:
        return "0"
    if abs(value) >= 1e4 or abs(value) < 1e-3:
        return f"{value:.2g}".replace("e-0", "e-").replace("e+0", "e")
    return f"{value:.3g}"


def linear_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """Round ticks (1, 2, 5 times a power of ten) covering [low, high]."""
    if high <= low:
        return [low]
    raw = (high - low) / count
    power = 10.0 ** math.floor(math.log10(raw))
    step = next(s * power for s in (1, 2, 5, 10) if s * power >= raw)
    first = math.ceil(low / step - 1e-9) * step
    return [first + i * step for i in range(int((high - first) / step + 1e-9) + 1)]


def log_ticks(low: float, high: float) -> list[float]:
    """Powers of ten in [low, high] (at most about eight); over less than two decades,
    also 2 and 5 times them, or round linear ticks when still too few."""
    first, last = math.floor(math.log10(low)), math.ceil(math.log10(high))
    every = max(1, math.ceil((last - first + 1) / 8))
    ticks = [10.0 ** k for k in range(first, last + 1, every) if low <= 10.0 ** k <= high]
    if len(ticks) < 3:
        ticks = [m * 10.0 ** k for k in range(first, last + 1) for m in (1, 2, 5)
                 if low <= m * 10.0 ** k <= high]
    if len(ticks) < 3:
        ticks = [t for t in linear_ticks(low, high, 4) if t > 0]
    return ticks or [low]


def spans_decades(values: Sequence[float]) -> bool:
    """Whether positive ``values`` span at least two decades (a log axis shows them better)."""
    finite = [v for v in values if isinstance(v, int | float) and math.isfinite(v)]
    return bool(finite) and min(finite) > 0 and max(finite) / min(finite) >= 100


@dataclass
class _Series:
    kind: str  # "line", "band", "points"
    x: np.ndarray
    y: np.ndarray
    colour: tuple[int, int, int]
    label: str = ""
    y2: np.ndarray | None = None
    thin: bool = False


@dataclass
class Chart:
    """A chart of lines, bands and points, rendered by ``png``."""

    title: str
    xlabel: str = ""
    ylabel: str = ""
    xlog: bool = False
    ylog: bool = False
    size: tuple[int, int] = (640, 400)
    xcategories: list[str] | None = None  # x = 0, 1, ... named by these
    note: str = ""  # shown in the plot area when nothing is drawn
    series: list[_Series] = field(default_factory=list)

    def line(self, x, y, colour, label: str = "", thin: bool = False) -> None:
        self.series.append(_Series("line", _floats(x), _floats(y), colour, label,
                                   thin=thin))

    def band(self, x, low, high, colour) -> None:
        self.series.append(_Series("band", _floats(x), _floats(low), colour, y2=_floats(high)))

    def points(self, x, y, colour, label: str = "") -> None:
        self.series.append(_Series("points", _floats(x), _floats(y), colour, label))

    # ---- rendering -----------------------------------------------------------------------
    def png(self) -> bytes:
        from PIL import Image, ImageDraw

        width, height = self.size
        labels = [s.label for s in self.series if s.label]
        legend = min(220, max((_text_width(t, 11) for t in labels), default=0) + 34) \
            if labels else 12
        box = (62, 34, width - legend, height - 44)  # left, top, right, bottom of the plot
        bands = [s for s in self.series if s.kind == "band"]
        image = Image.new("RGBA" if bands else "RGB", (width, height), (255, 255, 255))
        draw = _draw(image)
        draw.text((8, 4), _fit(self.title, width - 16, 14), fill=(0, 0, 0), font=_font(14))
        ranges = self._ranges()
        if ranges is None:
            draw.rectangle(box, outline=(0, 0, 0))
            draw.text((box[0] + 10, (box[1] + box[3]) / 2), self.note or "no values",
                      fill=(90, 90, 90), font=_font(12))
            return _encode(image)
        (x0, x1), (y0, y1) = ranges
        fx = _mapper(x0, x1, box[0], box[2], self.xlog)
        fy = _mapper(y0, y1, box[3], box[1], self.ylog)
        self._axes(draw, box, ranges, fx, fy)
        if bands:  # translucent: drawn apart, then laid over the axes
            overlay = Image.new("RGBA", image.size, (0, 0, 0, 0))
            shade = ImageDraw.Draw(overlay)
            for s in bands:
                for xs, low, high in _finite_runs(s.x, s.y, s.y2, self.xlog, self.ylog):
                    outline = [*zip(fx(xs), fy(high), strict=True),
                               *zip(fx(xs[::-1]), fy(low[::-1]), strict=True)]
                    if len(outline) >= 3:
                        shade.polygon(outline, fill=(*s.colour, 60))
            image = Image.alpha_composite(image, overlay)
            draw = _draw(image)
        draw.rectangle(box, outline=(0, 0, 0))
        for s in self.series:
            if s.kind == "line":
                for xs, ys, _ in _finite_runs(s.x, s.y, None, self.xlog, self.ylog):
                    xs, ys = _thin(xs, ys)
                    points = list(zip(fx(xs), fy(ys), strict=True))
                    if len(points) == 1:
                        px, py = points[0]
                        draw.ellipse((px - 2, py - 2, px + 2, py + 2), fill=s.colour)
                    else:
                        draw.line(points, fill=s.colour, width=1 if s.thin else 2)
            elif s.kind == "points":
                for xs, ys, _ in _finite_runs(s.x, s.y, None, self.xlog, self.ylog):
                    for px, py in zip(fx(xs), fy(ys), strict=True):
                        draw.ellipse((px - 3, py - 3, px + 3, py + 3), fill=s.colour)
        self._legend(draw, box)
        return _encode(image)

    def _ranges(self):
        xs, ys = [], []
        for s in self.series:
            for part in _finite_runs(s.x, s.y, s.y2, self.xlog, self.ylog):
                xs.append(part[0])
                ys.append(part[1])
                if part[2] is not None:
                    ys.append(part[2])
        if not xs or not sum(len(x) for x in xs):
            return None
        x_all, y_all = np.concatenate(xs), np.concatenate(ys)
        x_range = _padded(float(x_all.min()), float(x_all.max()), self.xlog, pad=False)
        if self.xcategories is not None:
            x_range = (-0.5, len(self.xcategories) - 0.5)
        return x_range, _padded(float(y_all.min()), float(y_all.max()), self.ylog, pad=True)

    def _axes(self, draw, box, ranges, fx, fy) -> None:
        (x0, x1), (y0, y1) = ranges
        font, grey = _font(11), (225, 225, 225)
        if self.xcategories is not None:
            xticks = [(float(i), _fit(t, (box[2] - box[0]) / max(1, len(self.xcategories)), 11))
                      for i, t in enumerate(self.xcategories)]
        else:
            values = log_ticks(x0, x1) if self.xlog else linear_ticks(x0, x1)
            xticks = [(v, tick_label(v)) for v in values]
        for value, text in xticks:
            px = float(fx(np.array([value]))[0])
            if box[0] - 1 <= px <= box[2] + 1:
                draw.line((px, box[1], px, box[3]), fill=grey)
                draw.text((px - _text_width(text, 11) / 2, box[3] + 4), text, fill=(0, 0, 0),
                          font=font)
        for value in (log_ticks(y0, y1) if self.ylog else linear_ticks(y0, y1)):
            py = float(fy(np.array([value]))[0])
            if box[1] - 1 <= py <= box[3] + 1:
                draw.line((box[0], py, box[2], py), fill=grey)
                text = tick_label(value)
                draw.text((box[0] - 4 - _text_width(text, 11), py - 6), text, fill=(0, 0, 0),
                          font=font)
        if self.xlabel:
            draw.text(((box[0] + box[2]) / 2 - _text_width(self.xlabel, 12) / 2, box[3] + 22),
                      self.xlabel, fill=(0, 0, 0), font=_font(12))
        if self.ylabel:
            draw.text((8, 21), _fit(self.ylabel, box[2] - 8, 11), fill=(80, 80, 80),
                      font=_font(11))

    def _legend(self, draw, box) -> None:
        y = box[1]
        for s in self.series:
            if not s.label:
                continue
            if y > box[3] - 12:
                draw.text((box[2] + 8, y), "…", fill=(0, 0, 0), font=_font(11))
                break
            draw.line((box[2] + 8, y + 7, box[2] + 26, y + 7), fill=s.colour, width=3)
            draw.text((box[2] + 30, y), _fit(s.label, 186, 11), fill=(0, 0, 0),
                      font=_font(11))
            y += 15


def heatmap(title: str, panels: Sequence[tuple[str, np.ndarray]], *, xlabel: str = "epoch",
            colour_label: str = "log10 value", width: int = 640) -> bytes:
    """One panel per ``(name, values)``: values (layers, epochs), row 0 the input side,
    drawn at the bottom; one log colour scale over all panels, with its bar."""
    from PIL import Image

    panel_height = 90
    height = 40 + len(panels) * (panel_height + 30) + 40
    image = Image.new("RGB", (width, max(height, 120)), (255, 255, 255))
    draw = _draw(image)
    draw.text((8, 8), _fit(title, width - 16, 14), fill=(0, 0, 0), font=_font(14))
    logs = [np.log10(np.where(values > 0, values, np.nan)) for _, values in panels]
    finite = np.concatenate([v[np.isfinite(v)] for v in logs]) if logs else np.array([])
    low, high = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    if high - low < 1e-12:
        low, high = low - 0.5, high + 0.5
    left, right = 70, width - 90
    y = 36
    for (name, _values), log_values in zip(panels, logs, strict=True):
        draw.text((left, y), _fit(name, right - left, 12), fill=(0, 0, 0), font=_font(12))
        top = y + 16
        layers, epochs = log_values.shape if log_values.ndim == 2 else (0, 0)
        if layers and epochs:
            colours = ramp_values((log_values - low) / (high - low))
            colours[~np.isfinite(log_values)] = (235, 235, 235)
            cells = Image.fromarray(colours[::-1].astype(np.uint8), "RGB")
            image.paste(cells.resize((right - left, panel_height), Image.NEAREST), (left, top))
            for row in range(layers):
                label = f"layer{row + 1}"
                cy = top + panel_height - (row + 0.5) * panel_height / layers - 6
                if layers <= 8 or row in (0, layers - 1):
                    draw.text((left - 6 - _text_width(label, 10), cy), label, fill=(0, 0, 0),
                              font=_font(10))
            for tick in linear_ticks(0, epochs - 1, 4):
                px = left + (tick + 0.5) * (right - left) / epochs
                text = tick_label(tick)
                draw.text((px - _text_width(text, 10) / 2, top + panel_height + 2), text,
                          fill=(0, 0, 0), font=_font(10))
        draw.rectangle((left, top, right, top + panel_height), outline=(0, 0, 0))
        y = top + panel_height + 14
    draw.text(((left + right) / 2 - _text_width(xlabel, 12) / 2, y), xlabel, fill=(0, 0, 0),
              font=_font(12))
    bar = ramp_values(np.linspace(1, 0, 120))[:, None, :].repeat(14, axis=1)
    image.paste(Image.fromarray(bar.astype(np.uint8), "RGB"), (right + 20, 40))
    for fraction in (0.0, 0.5, 1.0):
        value = high - fraction * (high - low)
        draw.text((right + 38, 40 + fraction * 114), f"{value:.2g}", fill=(0, 0, 0),
                  font=_font(10))
    draw.text((right + 8, 166), _fit(colour_label, 80, 10), fill=(0, 0, 0), font=_font(10))
    return _encode(image)


# ---- helpers -------------------------------------------------------------------------------
def _floats(values) -> np.ndarray:
    return np.asarray(values, dtype=float).reshape(-1)


def _finite_runs(x, y, y2, xlog: bool, ylog: bool):
    """(x, y, y2) split where a value is missing or cannot be shown on a log axis."""
    ok = np.isfinite(x) & (np.abs(y) <= 1e300)
    if y2 is not None:
        ok &= np.abs(y2) <= 1e300
    if xlog:
        ok &= x > 0
    if ylog:
        ok &= y > 0
        if y2 is not None:
            ok &= y2 > 0
    edges = np.flatnonzero(np.diff(np.r_[0, ok.astype(np.int8), 0]))
    return [(x[a:b], y[a:b], None if y2 is None else y2[a:b])
            for a, b in zip(edges[::2], edges[1::2], strict=True)]


def _thin(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if len(x) <= MAX_POINTS:
        return x, y
    keep = np.unique(np.r_[np.arange(0, len(x), math.ceil(len(x) / MAX_POINTS)), len(x) - 1])
    return x[keep], y[keep]


def _padded(low: float, high: float, log: bool, pad: bool) -> tuple[float, float]:
    """The axis range around [low, high], a little wider with ``pad``; kept inside what a
    float holds (a diverged trial's values reach 1e300)."""
    if log:
        first, last = math.log10(low), math.log10(high)
        margin = max(last - first, 0.5 if high <= low else 0.0) * (0.04 if pad else 0.0)
        if high <= low:
            margin = max(margin, 0.3)
        return 10.0 ** max(first - margin, -300), 10.0 ** min(last + margin, 300)
    low, high = max(low, -1e300), min(high, 1e300)
    if high <= low:
        return low - 0.5, high + 0.5
    margin = (high - low) * (0.04 if pad else 0.0)
    return low - margin, high + margin


def _mapper(low: float, high: float, start: float, end: float, log: bool):
    if log:
        low, high = math.log10(low), math.log10(high)

    def to_pixels(values: np.ndarray) -> list[float]:
        values = np.asarray(values, dtype=float)
        values = np.log10(values) if log else values
        return (start + (values - low) * (end - start) / (high - low)).tolist()

    return to_pixels


def _encode(image) -> bytes:
    """PNG bytes of ``image`` as 8-bit RGB, written here rather than by Pillow: Pillow
    chooses a row filter for every row of an RGB image, which costs most of a trial
    picture's time, and these charts (flat colour, thin lines) compress as well unfiltered."""
    pixels = np.asarray(image.convert("RGB") if image.mode != "RGB" else image, np.uint8)
    height, width, _ = pixels.shape
    rows = np.zeros((height, 1 + 3 * width), np.uint8)  # each row: filter type 0, then RGB
    rows[:, 1:] = pixels.reshape(height, -1)
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB, no interlace
    return (_PNG_SIGNATURE + _chunk(b"IHDR", header)
            + _chunk(b"IDAT", zlib.compress(rows.tobytes(), 1)) + _chunk(b"IEND", b""))


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _chunk(kind: bytes, body: bytes) -> bytes:
    return (struct.pack(">I", len(body)) + kind + body
            + struct.pack(">I", zlib.crc32(kind + body)))


# ---- a sweep's pictures, from plain numbers ------------------------------------------------
def band_chart(title: str, ylabel: str, lines: Sequence[tuple[str, np.ndarray, np.ndarray]],
               xlabel: str = "epoch") -> bytes:
    """One line per ``(label, mean, std)`` against the step, a band of mean ± std where std
    is known; log axis when every value is > 0 and they span two decades."""
    values = [v for _, mean, _ in lines for v in mean.tolist() if math.isfinite(v)]
    chart = Chart(title, xlabel, ylabel, ylog=spans_decades(values))
    for i, (label, mean, std) in enumerate(lines):
        x = np.arange(len(mean))
        if np.isfinite(std).any():
            chart.band(x, mean - std, mean + std, group_colour(i))
        chart.line(x, mean, group_colour(i), label)
    return chart.png()


def param_chart(title: str, param: str, ylabel: str, xs: Sequence, ys: Sequence[float]
                ) -> bytes:
    """The final metric of each trial (points) and its mean per value (line) against one
    param: a numeric axis (log when the values span decades), else one slot per value."""
    numeric = all(isinstance(x, int | float) and not isinstance(x, bool) for x in xs)
    if numeric:
        positions, categories = [float(x) for x in xs], None
        chart = Chart(title, param, ylabel, xlog=spans_decades(positions))
    else:
        categories = list(dict.fromkeys(_category(x) for x in xs))
        positions = [float(categories.index(_category(x))) for x in xs]
        chart = Chart(title, param, ylabel, xcategories=categories)
    chart.points(positions, ys, (31, 119, 180), "trials")
    means: dict[float, list[float]] = {}
    for x, y in zip(positions, ys, strict=True):
        means.setdefault(x, []).append(y)
    order = sorted(means)
    chart.line(order, [sum(means[x]) / len(means[x]) for x in order], (214, 39, 40), "mean")
    return chart.png()


def _category(value) -> str:
    if isinstance(value, list):
        return "[" + ",".join(map(str, value)) + "]"
    return str(value)
