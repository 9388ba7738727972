"""Bar charts as inline SVG: no script, readable when printed, with a text alternative beside them.

Pure: values in, markup out (escaped here, since the result is inserted as-is into the page). Figures
are exact Decimal; only the bar geometry is computed in floats, never a figure that is shown.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from html import escape

WIDTH, HEIGHT = 640, 220
LEFT, RIGHT, TOP, BOTTOM = 8, 8, 12, 34
PALETTE = ("#1f5fa8", "#d9822b", "#3b8a3e", "#8e44ad")  # distinguishable in greyscale print too
PATTERNS = ("", "url(#hatch)", "", "url(#hatch)")


@dataclass(frozen=True, slots=True)
class Series:
    name: str
    values: Sequence[Decimal | None]  # one per category; None when there is no figure


def bar_chart(title: str, categories: Sequence[str], series: Sequence[Series], value_text: Sequence[Sequence[str]],
              *, chart_id: str) -> str:
    """Grouped bars, one group per category (month). `value_text[s][c]` is the shown figure for a tooltip."""
    plot_w = WIDTH - LEFT - RIGHT
    plot_h = HEIGHT - TOP - BOTTOM
    top = max((v for s in series for v in s.values if v is not None), default=Decimal(0))
    scale = float(top) if top > 0 else 1.0
    group_w = plot_w / max(len(categories), 1)
    bar_w = max(group_w * 0.8 / max(len(series), 1), 1.0)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-labelledby="{chart_id}-title {chart_id}-desc">',
        f'<title id="{chart_id}-title">{escape(title)}</title>',
        f'<desc id="{chart_id}-desc">{escape(_describe(categories, series, value_text))}</desc>',
        '<defs><pattern id="hatch" width="4" height="4" patternUnits="userSpaceOnUse" patternTransform="rotate(45)">'
        '<rect width="4" height="4" fill="#d9822b"/>'
        '<line x1="0" y1="0" x2="0" y2="4" stroke="#fff" stroke-width="1.5"/>'
        "</pattern></defs>",
        f'<line x1="{LEFT}" y1="{TOP + plot_h}" x2="{WIDTH - RIGHT}" y2="{TOP + plot_h}" stroke="#555"/>',
    ]
    for c, category in enumerate(categories):
        x0 = LEFT + c * group_w + group_w * 0.1
        for s, ser in enumerate(series):
            value = ser.values[c]
            if value is None:
                continue
            h = plot_h * float(value) / scale
            x = x0 + s * bar_w
            fill = PATTERNS[s % len(PATTERNS)] or PALETTE[s % len(PALETTE)]
            parts.append(
                f'<rect x="{x:.1f}" y="{TOP + plot_h - h:.1f}" width="{bar_w * 0.92:.1f}" height="{h:.1f}" '
                f'fill="{fill}"><title>{escape(ser.name)}, {escape(category)} : '
                f"{escape(value_text[s][c])}</title></rect>"
            )
        parts.append(
            f'<text x="{LEFT + c * group_w + group_w / 2:.1f}" y="{HEIGHT - BOTTOM + 16}" text-anchor="middle" '
            f'font-size="11">{escape(category)}</text>'
        )
    for s, ser in enumerate(series):
        x = LEFT + s * 150
        fill = PATTERNS[s % len(PATTERNS)] or PALETTE[s % len(PALETTE)]
        parts.append(f'<rect x="{x}" y="{HEIGHT - 12}" width="10" height="10" fill="{fill}"/>')
        parts.append(f'<text x="{x + 14}" y="{HEIGHT - 3}" font-size="11">{escape(ser.name)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _describe(categories: Sequence[str], series: Sequence[Series], value_text: Sequence[Sequence[str]]) -> str:
    return "; ".join(
        f"{ser.name}: " + ", ".join(f"{cat} {value_text[s][c]}" for c, cat in enumerate(categories))
        for s, ser in enumerate(series)
    )
