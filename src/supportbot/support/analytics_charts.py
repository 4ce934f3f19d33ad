"""Server-side SVG charts for the analytics page: bars, stacked bars per day, a heat map.

No JavaScript and no CDN: each chart is an inline ``<svg>`` whose every mark carries its
number as text (a label or a ``<title>`` tooltip) and as ``data-*`` attributes, so a person
reads it and a browser test checks it. Colours follow the admin's theme where it has one
(``currentColor`` for text, so dark mode works).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

from django.utils.html import format_html
from django.utils.safestring import SafeString, mark_safe

#: One colour per series (FAQ, local LLM, API LLM, hand-over) and for plain bars.
COLOURS = {"faq": "#417690", "local_llm": "#79aec8", "api_llm": "#8e6bbf", "handed_over": "#ba2121",
           "bar": "#417690", "heat": "65,118,144"}


@dataclass(frozen=True)
class Bar:
    key: str  # a stable name for tests (data-key)
    label: str
    value: float
    text: str  # the value as shown (e.g. "42 (61%)")
    colour: str = COLOURS["bar"]


def _svg(name: str, title: str, width: int, height: int, body: Sequence[SafeString]) -> SafeString:
    return format_html(
        '<svg class="analytics-chart" data-chart="{}" xmlns="http://www.w3.org/2000/svg" width="{}" height="{}" '
        'viewBox="0 0 {} {}" role="img" aria-label="{}" font-size="12" font-family="sans-serif">'
        "<title>{}</title>{}</svg>",
        name, width, height, width, height, title, title, _join(body),
    )


def _join(parts: Sequence[SafeString]) -> SafeString:
    """Marks built by format_html (every value escaped there), joined."""
    return mark_safe("".join(parts))


def bar_chart(name: str, title: str, bars: Sequence[Bar], *, label_width: int = 260,
              bar_width: int = 280) -> SafeString:
    """Horizontal bars, one row per :class:`Bar`, the label left and the value right of it."""
    row, top = 24, 4
    most = max((b.value for b in bars), default=0) or 1
    width = label_width + bar_width + 110
    body = []
    for i, bar in enumerate(bars):
        y = top + i * row
        length = round(bar_width * bar.value / most, 1) if bar.value > 0 else 0
        body.append(format_html(
            '<g class="bar" data-key="{}" data-label="{}" data-value="{}">'
            '<text x="{}" y="{}" text-anchor="end" fill="currentColor">{}</text>'
            '<rect x="{}" y="{}" width="{}" height="16" fill="{}"><title>{}: {}</title></rect>'
            '<text x="{}" y="{}" fill="currentColor">{}</text></g>',
            bar.key, bar.label, _number(bar.value),
            label_width - 8, y + 12, _shorten(bar.label, label_width // 7),
            label_width, y, length, bar.colour, bar.label, bar.text,
            label_width + length + 6, y + 12, bar.text,
        ))
    return _svg(name, title, width, top * 2 + row * max(len(bars), 1), body)


@dataclass(frozen=True)
class Series:
    key: str
    label: str
    values: Sequence[int]  # one per day
    colour: str


def daily_chart(name: str, title: str, days: Sequence[date], series: Sequence[Series]) -> SafeString:
    """Stacked columns per day (series bottom to top), with a legend and the y-axis maximum."""
    left, top, plot_height, legend = 44, 10, 160, 22
    step = max(3.0, min(48.0, 760 / max(len(days), 1)))
    column = max(2.0, step * 0.75)
    width = int(left + step * len(days) + 20)
    totals = [sum(s.values[i] for s in series) for i in range(len(days))]
    most = max(totals, default=0) or 1
    body = [format_html(
        '<line x1="{}" y1="{}" x2="{}" y2="{}" stroke="currentColor" stroke-opacity="0.4"/>'
        '<text x="{}" y="{}" text-anchor="end" fill="currentColor">{}</text>'
        '<text x="{}" y="{}" text-anchor="end" fill="currentColor">0</text>',
        left, top + plot_height, width - 10, top + plot_height, left - 6, top + 10, most, left - 6,
        top + plot_height,
    )]
    label_every = math.ceil(40 / step)  # a "03-14" label needs about 40 px
    for i, day in enumerate(days):
        x = round(left + i * step, 1)
        y = float(top + plot_height)
        parts = []
        for s in series:
            value = s.values[i]
            height = round(plot_height * value / most, 1)
            y -= height
            parts.append(format_html(
                '<rect class="segment" data-series="{}" data-value="{}" x="{}" y="{}" width="{}" height="{}" '
                'fill="{}"><title>{} {}: {}</title></rect>',
                s.key, value, x, round(y, 1), round(column, 1), height, s.colour, day.isoformat(), s.label, value,
            ))
        label = ""
        if i % label_every == 0:
            label = format_html('<text x="{}" y="{}" text-anchor="middle" fill="currentColor" font-size="10">{}</text>',
                                round(x + column / 2, 1), top + plot_height + 14, day.strftime("%m-%d"))
        body.append(format_html('<g class="day" data-day="{}" data-total="{}">{}{}</g>', day.isoformat(),
                                totals[i], _join(parts), label))
    x = left
    legend_y = top + plot_height + 34
    for s in series:
        body.append(format_html(
            '<rect x="{}" y="{}" width="10" height="10" fill="{}"/><text x="{}" y="{}" fill="currentColor">{}</text>',
            x, legend_y - 9, s.colour, x + 14, legend_y, s.label))
        x += 24 + 7 * len(s.label)
    return _svg(name, title, max(width, x + 10), top + plot_height + legend + 20, body)


def heat_map(name: str, title: str, grid: Sequence[Sequence[int]], row_labels: Sequence[str]) -> SafeString:
    """Weekday (rows) x hour (columns) cells, darker for more; each cell shows its count."""
    left, top, cell_w, cell_h = 40, 18, 26, 22
    most = max((max(r) for r in grid), default=0) or 1
    body = [format_html('<text x="{}" y="{}" text-anchor="middle" fill="currentColor" font-size="10">{}</text>',
                        left + hour * cell_w + cell_w // 2, top - 6, f"{hour:02d}") for hour in range(24)]
    for weekday, counts in enumerate(grid):
        y = top + weekday * cell_h
        body.append(format_html('<text x="{}" y="{}" text-anchor="end" fill="currentColor">{}</text>',
                                left - 6, y + 15, row_labels[weekday]))
        for hour, count in enumerate(counts):
            opacity = round(0.08 + 0.92 * count / most, 3) if count else 0.04
            body.append(format_html(
                '<g class="cell" data-weekday="{}" data-hour="{}" data-count="{}">'
                '<rect x="{}" y="{}" width="{}" height="{}" fill="rgba({},{})" stroke="currentColor" '
                'stroke-opacity="0.1"><title>{} {}:00: {}</title></rect>{}</g>',
                weekday, hour, count, left + hour * cell_w, y, cell_w - 1, cell_h - 1, COLOURS["heat"], opacity,
                row_labels[weekday], f"{hour:02d}", count,
                format_html('<text x="{}" y="{}" text-anchor="middle" font-size="10" fill="{}">{}</text>',
                            left + hour * cell_w + cell_w // 2, y + 15,
                            "#fff" if count / most > 0.5 else "currentColor", count) if count else "",
            ))
    return _svg(name, title, left + 24 * cell_w + 4, top + 7 * cell_h + 4, body)


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:.4f}"


def _shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: max(1, limit - 1)] + "…"

