"""Server-rendered SVG charts for the daily report: plain strings, no plotting library, no script and
no ``style`` attribute (the pages' CSP allows only the stylesheet); colours come from classes in
``web/static/app.css`` (``.ch-*``). Each chart has a ``<title>`` and an ``aria-label`` for screen
readers. Sparklines are the equipment pages' (``web/charts.py``).
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape


def _num(v: float) -> str:
    return f"{v:.1f}".rstrip("0").rstrip(".")


def _frame(width: int, height: int, label: str, body: list[str], cls: str) -> str:
    title = escape(label)
    return (f'<svg class="chart {cls}" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
            f'width="{width}" height="{height}" role="img" aria-label="{title}"><title>{title}</title>'
            + "".join(body) + "</svg>")


def sales_by_hour(values: Sequence[int], baseline: Sequence[float | None], label: str,
                  width: int = 640, height: int = 220) -> str:
    """Bars: dishes per hour of the day; line: the same weekday's baseline (median of past weeks)."""
    left, bottom, top = 34, 22, 10
    plot_w, plot_h = width - left - 6, height - bottom - top
    peak = max([*values, *[b for b in baseline if b is not None], 1])
    step = plot_w / max(1, len(values))
    body = [f'<line class="ch-axis" x1="{left}" y1="{top + plot_h}" x2="{width - 6}" y2="{top + plot_h}"/>']
    for frac in (0.5, 1.0):
        y = top + plot_h - plot_h * frac
        body.append(f'<line class="ch-grid" x1="{left}" y1="{_num(y)}" x2="{width - 6}" y2="{_num(y)}"/>'
                    f'<text class="ch-tick" x="{left - 4}" y="{_num(y + 4)}" text-anchor="end">'
                    f'{_num(peak * frac)}</text>')
    for h, v in enumerate(values):
        bh = plot_h * v / peak
        x = left + h * step + step * 0.15
        body.append(f'<rect class="ch-bar" x="{_num(x)}" y="{_num(top + plot_h - bh)}" width="{_num(step * 0.7)}" '
                    f'height="{_num(bh)}"><title>{h:02d}:00 {v}</title></rect>')
        if h % 3 == 0:
            body.append(f'<text class="ch-tick" x="{_num(left + h * step + step / 2)}" y="{height - 6}" '
                        f'text-anchor="middle">{h:02d}</text>')
    points = [f"{_num(left + h * step + step / 2)},{_num(top + plot_h - plot_h * b / peak)}"
              for h, b in enumerate(baseline) if b is not None]
    if len(points) > 1:
        body.append(f'<polyline class="ch-base" fill="none" points="{" ".join(points)}"/>')
    return _frame(width, height, label, body, "ch-sales")


def distribution(counts: Sequence[int], labels: Sequence[str], label: str, width: int = 640, height: int = 180) -> str:
    """A histogram: one bar per bucket with its count on top."""
    left, bottom, top = 10, 22, 16
    plot_w, plot_h = width - 2 * left, height - bottom - top
    peak = max([*counts, 1])
    step = plot_w / max(1, len(counts))
    body = [f'<line class="ch-axis" x1="{left}" y1="{top + plot_h}" x2="{width - left}" y2="{top + plot_h}"/>']
    for i, (n, name) in enumerate(zip(counts, labels, strict=True)):
        bh = plot_h * n / peak
        x = left + i * step + step * 0.1
        body.append(f'<rect class="ch-bar" x="{_num(x)}" y="{_num(top + plot_h - bh)}" width="{_num(step * 0.8)}" '
                    f'height="{_num(bh)}"><title>{escape(name)}: {n}</title></rect>'
                    f'<text class="ch-tick" x="{_num(x + step * 0.4)}" y="{_num(top + plot_h - bh - 3)}" '
                    f'text-anchor="middle">{n}</text>'
                    f'<text class="ch-tick" x="{_num(x + step * 0.4)}" y="{height - 6}" text-anchor="middle">'
                    f'{escape(name)}</text>')
    return _frame(width, height, label, body, "ch-dist")
