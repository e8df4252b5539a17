"""The traffic chart of a report: documents (sent and received) per period, stacked by
level. One layout, drawn as SVG (self-contained: no script, no event handler, no
external reference, so it is served under a strict Content-Security-Policy) or as
PNG (Pillow, imported lazily). Pure functions over a `Report`."""

from __future__ import annotations

import io
from dataclasses import dataclass
from xml.sax.saxutils import escape

from broker.views.report import Report

SERIES = (
    ("province", "Cấp tỉnh (province)", "#1f5f99"),
    ("district", "Cấp huyện (district)", "#e08a1e"),
    ("commune", "Cấp xã (commune)", "#3f9a4a"),
    ("external", "Ngoài tỉnh (external)", "#8a6bb0"),
    ("unknown", "Không rõ (unknown)", "#9a9a9a"),
)
WIDTH, HEIGHT = 900, 420
LEFT, RIGHT, TOP, BOTTOM = 70, 190, 40, 60


@dataclass(frozen=True, slots=True)
class Bar:
    x: float
    y: float
    w: float
    h: float
    color: str


@dataclass(frozen=True, slots=True)
class Layout:
    title: str
    bars: tuple[Bar, ...]
    labels: tuple[tuple[float, str], ...]  # x of a period's label, its text
    ticks: tuple[tuple[float, int], ...]  # y of a gridline, its value
    legend: tuple[tuple[str, str], ...]  # label, color


def layout(report: Report) -> Layout:
    """Where each bar, label and gridline goes (in a WIDTH x HEIGHT picture)."""
    periods = list(report.chart)
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    top = max([sum(v.values()) for v in report.chart.values()] + [1])
    scale_top = _nice(top)
    slot = plot_w / max(len(periods), 1)
    bars = []
    for i, period in enumerate(periods):
        base = TOP + plot_h
        for level, _, color in SERIES:
            n = report.chart[period].get(level, 0)
            if n:
                h = plot_h * n / scale_top
                base -= h
                bars.append(Bar(LEFT + i * slot + slot * 0.15, base, slot * 0.7, h, color))
    labels = tuple((LEFT + (i + 0.5) * slot, p) for i, p in enumerate(periods))
    ticks = tuple((TOP + plot_h - plot_h * k / 4, scale_top * k // 4) for k in range(5))
    used = {lvl for v in report.chart.values() for lvl, n in v.items() if n}
    legend = tuple((label, color) for level, label, color in SERIES if level in used)
    q = report.query
    title = f"Lưu lượng văn bản (document traffic) {q.first_day} .. {q.last_day}"
    return Layout(title, tuple(bars), labels, ticks, legend)


def _nice(n: int) -> int:
    """A round axis top at or above n."""
    step = 10 ** max(len(str(n)) - 1, 0)
    return -(-n // step) * step


def chart_svg(report: Report) -> str:
    """The chart as a standalone SVG document."""
    lay = layout(report)
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="12">',
        f"<title>{escape(lay.title)}</title>",
        f'<rect width="{WIDTH}" height="{HEIGHT}" fill="#ffffff"/>',
        f'<text x="{LEFT}" y="24" font-size="15">{escape(lay.title)}</text>',
    ]
    for y, value in lay.ticks:
        out.append(
            f'<line x1="{LEFT}" y1="{y:.1f}" x2="{WIDTH - RIGHT}" y2="{y:.1f}" stroke="#dddddd"/>'
            f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">{value}</text>'
        )
    for b in lay.bars:
        out.append(
            f'<rect x="{b.x:.1f}" y="{b.y:.1f}" width="{b.w:.1f}" height="{b.h:.1f}" '
            f'fill="{b.color}"/>'
        )
    for x, text in lay.labels:
        out.append(
            f'<text x="{x:.1f}" y="{HEIGHT - BOTTOM + 18}" text-anchor="middle">'
            f"{escape(text)}</text>"
        )
    for i, (label, color) in enumerate(lay.legend):
        y = TOP + 10 + i * 20
        out.append(
            f'<rect x="{WIDTH - RIGHT + 15}" y="{y - 10}" width="12" height="12" fill="{color}"/>'
            f'<text x="{WIDTH - RIGHT + 32}" y="{y}">{escape(label)}</text>'
        )
    out.append("</svg>")
    return "\n".join(out) + "\n"


def chart_png(report: Report) -> bytes:
    """The same chart as PNG (Pillow's default font)."""
    from PIL import Image, ImageDraw, ImageFont  # imported lazily: only exports need it

    lay = layout(report)
    image = Image.new("RGB", (WIDTH, HEIGHT), "#ffffff")
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default()
    draw.text((LEFT, 12), lay.title, fill="#000000", font=font)
    for y, value in lay.ticks:
        draw.line([(LEFT, y), (WIDTH - RIGHT, y)], fill="#dddddd")
        draw.text((LEFT - 6, y), str(value), fill="#000000", font=font, anchor="rm")
    for b in lay.bars:
        draw.rectangle([b.x, b.y, b.x + b.w, b.y + b.h], fill=b.color)
    for x, text in lay.labels:
        draw.text((x, HEIGHT - BOTTOM + 12), text, fill="#000000", font=font, anchor="mt")
    for i, (label, color) in enumerate(lay.legend):
        y = TOP + 10 + i * 20
        draw.rectangle([WIDTH - RIGHT + 15, y - 10, WIDTH - RIGHT + 27, y + 2], fill=color)
        draw.text((WIDTH - RIGHT + 32, y - 4), label, fill="#000000", font=font, anchor="lm")
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()
