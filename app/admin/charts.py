"""The dashboard's daily chart as server-rendered SVG geometry: no chart library, no script.

``daily_bars`` turns the metrics' daily series into two bars a day (issued, redeemed) on a shared
scale with three gridlines; the template draws them and puts the same figures in a table for screen
readers and for anyone who prefers numbers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

WIDTH, HEIGHT = 720, 160
LEFT, BOTTOM, TOP = 0, 1, 8  # the scale's numbers sit in a gutter beside the chart, in HTML, to stay legible


@dataclass(frozen=True)
class Bar:
    date: str
    issued: int
    redeemed: int
    x: float
    width: float
    issued_top: float
    redeemed_top: float


def nice_ceiling(value: int) -> int:
    """The smallest of 1, 2, 5 × 10^n at or above ``value`` (at least 1): a scale a person reads."""
    if value <= 1:
        return 1
    power = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 5, 10):
        if step * power >= value:
            return step * power
    return 10 * power  # pragma: no cover - the loop always returns


def daily_bars(daily: list[dict[str, Any]]) -> dict[str, Any]:
    """Geometry for ``daily`` (``shop_metrics(..., daily=True)["daily"]``): bars, gridlines, date labels."""
    peak = nice_ceiling(max((max(d["codes_issued"], d["codes_redeemed"]) for d in daily), default=0))
    plot_width, plot_height = WIDTH - LEFT, HEIGHT - BOTTOM - TOP
    slot = plot_width / max(len(daily), 1)
    bar = max(min(slot * 0.38, 14), 0.6)

    def top(value: int) -> float:
        return round(TOP + plot_height * (1 - value / peak), 2)

    bars = [Bar(date=d["date"], issued=d["codes_issued"], redeemed=d["codes_redeemed"],
                x=round(LEFT + slot * n + (slot - 2 * bar) / 2, 2), width=round(bar, 2),
                issued_top=top(d["codes_issued"]), redeemed_top=top(d["codes_redeemed"]))
            for n, d in enumerate(daily)]
    # Gridlines at 0, half the scale when that is a whole number (10 → 5; not 5 → 2.5), and the scale.
    steps = (0, peak // 2, peak) if peak % 2 == 0 and peak > 1 else (0, peak)
    # Where each line's number sits beside the chart (app.css: .y-label.at-base|at-middle|at-top, the
    # percentages of TOP and HEIGHT below): no inline style.
    places = {0: "base", peak: "top", peak // 2: "middle"}
    grid = [{"y": top(value), "label": f"{value:,}", "place": places[value]} for value in steps]
    picks = sorted({0, len(daily) // 2, len(daily) - 1}) if daily else []
    labels = [{"x": round(LEFT + slot * n + slot / 2, 2), "text": daily[n]["date"][5:]} for n in picks]
    return {"width": WIDTH, "height": HEIGHT, "base": HEIGHT - BOTTOM, "left": LEFT, "bars": bars, "grid": grid,
            "labels": labels, "issued": sum(d["codes_issued"] for d in daily),
            "redeemed": sum(d["codes_redeemed"] for d in daily)}
