"""Charts drawn on the server as SVG: this module lays them out, `templates/charts.html`
draws them. No script and nothing fetched: a chart is part of the page, prints as it
shows, and each carries a title, a description and its numbers as a table.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

# Distinct at a glance, dark enough for text on white, and told apart by most people
# with a colour-vision deficiency (after Okabe & Ito, darkened).
PALETTE = (
    "#1f6fb5",
    "#d9771e",
    "#23946a",
    "#c0428a",
    "#6a55c4",
    "#9c5a2c",
    "#2f9fc6",
    "#7c7c16",
    "#56606b",
)
# Heat from none to most: a single blue hue, light to dark, so order reads without a key.
RAMP = ("#eef2f6", "#d3e3f3", "#a8c9e8", "#74a9d8", "#4287c2", "#1f63a3", "#0c3f7a")
DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
FULL_DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


@dataclass(frozen=True)
class Table:
    """A chart's numbers, for screen readers and for anyone who wants them exactly."""

    caption: str
    header: list[str]
    rows: list[list[str]]


@dataclass
class Chart:
    id: str
    title: str
    desc: str
    width: int
    height: int
    table: Table
    empty: str = ""  # said instead of drawing when there is nothing to show


@dataclass
class Line:
    name: str
    colour: str
    path: str
    points: list[tuple[float, float, str]]  # x, y, tooltip
    label_y: float
    tail: str = ""  # the last segment, dashed: a week still running


@dataclass
class LineChart(Chart):
    plot: tuple[float, float, float, float] = (0, 0, 0, 0)  # left, top, right, bottom
    lines: list[Line] = field(default_factory=list)
    x_labels: list[tuple[float, str]] = field(default_factory=list)
    y_ticks: list[tuple[float, str]] = field(default_factory=list)
    band: tuple[float, float, str] | None = None  # x from, x to, label: a highlighted span


@dataclass
class Bar:
    label: str
    value: str
    y: float
    length: float
    colour: str


@dataclass
class BarChart(Chart):
    left: float = 0
    bar_height: float = 0
    track: float = 0  # when a full bar means something (100 %), its length, drawn faint
    bars: list[Bar] = field(default_factory=list)


@dataclass
class Cell:
    x: float
    y: float
    fill: str
    tooltip: str


@dataclass
class Heatmap(Chart):
    cell: tuple[float, float] = (0, 0)
    cells: list[Cell] = field(default_factory=list)
    rows: list[tuple[float, str]] = field(default_factory=list)
    columns: list[tuple[float, str]] = field(default_factory=list)
    legend: list[tuple[float, str]] = field(default_factory=list)
    legend_y: float = 0
    left: int = 0
    top: int = 0
    most: int = 0


@dataclass
class Column:
    x: float
    y: float
    height: float
    tooltip: str


@dataclass
class ColumnChart(Chart):
    plot: tuple[float, float, float, float] = (0, 0, 0, 0)  # left, top, right, bottom
    column_width: float = 0
    colour: str = PALETTE[0]
    columns: list[Column] = field(default_factory=list)
    line: Line | None = None  # a second measure over the columns, on the same scale
    x_labels: list[tuple[float, str]] = field(default_factory=list)
    y_ticks: list[tuple[float, str]] = field(default_factory=list)
    key: list[tuple[str, str, str]] = field(default_factory=list)  # kind, colour, name


def colour_map(keys: list[str]) -> dict[str, str]:
    """A colour per key, in the palette's order."""
    return {key: PALETTE[i % len(PALETTE)] for i, key in enumerate(keys)}


def nice_ticks(top: float, count: int = 4) -> list[float]:
    """Round axis values from 0 to at least `top`, about `count` steps, whole numbers."""
    if top <= 0:
        return [0, 1]
    raw = top / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    step = max(step, 1)
    return [i * step for i in range(math.ceil(top / step - 1e-9) + 1)]


def number(value: float) -> str:
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.1f}"


def _week_label(start: int) -> str:
    return datetime.fromtimestamp(start, UTC).strftime("%d %b %Y")


def _month_marks(weeks: list[int], x_of) -> list[tuple[float, str]]:
    """Month names under the first week starting in each month; the year at January
    and at the first mark."""
    marks, last = [], None
    for i, start in enumerate(weeks):
        when = datetime.fromtimestamp(start, UTC)
        if (when.year, when.month) != last:
            if last is not None or when.day <= 7:
                fmt = "%b %Y" if not marks or when.month == 1 else "%b"
                marks.append((x_of(i), when.strftime(fmt)))
            last = (when.year, when.month)
    return marks


def _spread(ys: list[float], gap: float, low: float, high: float) -> list[float]:
    """Label positions near `ys` but at least `gap` apart, within [low, high]."""
    order = sorted(range(len(ys)), key=lambda i: ys[i])
    placed = [0.0] * len(ys)
    floor = low
    for i in order:
        placed[i] = max(ys[i], floor)
        floor = placed[i] + gap
    overflow = floor - gap - high
    if overflow > 0:
        for i in order:
            placed[i] = max(low, placed[i] - overflow)
    return placed


def _path(points: list[tuple[float, float, str]]) -> str:
    return "M" + " L".join(f"{x},{y}" for x, y, _ in points)


def line_chart(
    id: str,
    title: str,
    weeks: list[int],
    series: dict[str, list[int]],
    names: dict[str, str] | None = None,
    band: tuple[int, int, str] | None = None,
    partial_last: bool = False,
    width: int = 1060,
    colours: dict[str, str] | None = None,
) -> LineChart:
    """Visits per week, a line per space, labelled at its end instead of a legend.
    `partial_last`: the last week is still running, so its segment is dashed.
    `colours` by series key (the busiest first get the palette in order otherwise)."""
    names = names or {}
    height = 300
    left, top, right, bottom = 48, 26, width - 160, height - 34
    ticks = nice_ticks(max((max(v) for v in series.values()), default=0))
    span = max(len(weeks) - 1, 1)

    def x_of(i: float) -> float:
        return round(left + (right - left) * i / span, 1)

    def y_of(v: float) -> float:
        return round(bottom - (bottom - top) * v / ticks[-1], 1)

    ordered = sorted(series.items(), key=lambda kv: (-sum(kv[1]), kv[0]))
    colours = colour_map([space for space, _ in ordered]) | (colours or {})
    lines = []
    for space, values in ordered:
        name = names.get(space, space)
        points = [
            (x_of(i), y_of(v), f"{name}, week of {_week_label(weeks[i])}: {v} visits")
            for i, v in enumerate(values)
        ]
        solid = points[:-1] if partial_last and len(points) > 1 else points
        line = Line(name, colours[space], _path(solid), points, points[-1][1])
        if solid is not points:
            line.tail = _path(points[-2:])
        lines.append(line)
    for line, y in zip(
        lines, _spread([ln.label_y for ln in lines], 14, top + 4, bottom), strict=True
    ):
        line.label_y = round(y, 1)
    shown = [(s, names.get(s, s)) for s, _ in ordered]
    table = Table(
        f"{title}: visits (sign-ins) per week, weeks starting Monday (UTC)",
        ["Week of", *[name for _, name in shown]],
        [[_week_label(w), *[str(series[s][i]) for s, _ in shown]] for i, w in enumerate(weeks)],
    )
    totals = ", ".join(f"{names.get(s, s)} {sum(v)}" for s, v in ordered)
    desc = (
        f"Visits per week over {len(weeks)} weeks from {_week_label(weeks[0])}"
        + (f". Totals: {totals}." if totals else ".")
        if weeks
        else ""
    )
    chart = LineChart(id, title, desc, width, height, table)
    chart.plot = (left, top, right, bottom)
    chart.lines = lines
    chart.x_labels = _month_marks(weeks, x_of)
    chart.y_ticks = [(y_of(t), number(t)) for t in ticks]
    if band and weeks:
        inside = [i for i, w in enumerate(weeks) if band[0] <= w < band[1]]
        if inside:
            chart.band = (x_of(inside[0] - 0.5), x_of(inside[-1] + 0.5), band[2])
    if not any(sum(v) for v in series.values()):
        chart.empty = "No visits were recorded in these weeks."
    return chart


def bar_chart(
    id: str,
    title: str,
    items: list[tuple[str, float, str]],
    scale_to: float | None = None,
    colour: str = PALETTE[0],
    unit: str = "",
    width: int = 520,
    colours: dict[str, str] | None = None,
    empty: str = "Nothing to compare yet.",
    table: Table | None = None,
) -> BarChart:
    """Horizontal bars, largest first: (label, value, value as shown). `scale_to` fixes
    the full length (1.0 for a share), else the largest value fills it. `colours` by
    label, where a bar should match its line in another chart. `empty` and `table` are
    what a page in another language says instead of the English ones."""
    colours = colours or {}
    items = sorted(items, key=lambda it: (-it[1], it[0]))
    bar_height, gap = 22, 10
    left, value_room = 150, 64
    full = scale_to or max((v for _, v, _ in items), default=0) or 1
    length = width - left - value_room
    bars = [
        Bar(
            label,
            shown,
            8 + i * (bar_height + gap),
            round(length * min(v, full) / full, 1),
            colours.get(label, colour),
        )
        for i, (label, v, shown) in enumerate(items)
    ]
    height = 16 + len(items) * (bar_height + gap)
    desc = "; ".join(f"{label}: {shown}" for label, _, shown in items)
    if table is None:
        table = Table(title, ["", unit or "value"], [[label, shown] for label, _, shown in items])
    chart = BarChart(id, title, desc, width, height, table)
    chart.left, chart.bar_height, chart.bars = left, bar_height, bars
    chart.track = length if scale_to else 0
    if not items:
        chart.empty = empty
    return chart


def heatmap(
    id: str,
    title: str,
    grid: list[list[int]],
    what: str = "visits",
    *,
    days: tuple[str, ...] = DAYS,
    tip: Callable[[int, int, int], str] | None = None,
    desc: str | None = None,
    empty: str | None = None,
    table: Table | None = None,
) -> Heatmap:
    """A week of hours (rows Monday to Sunday, columns 00-23 UTC), darker for more.

    A page in another language, or in the space's hours, gives its own words: `days`
    (short names, Monday first), `tip(day, hour, value)` for each cell, `desc`, `empty`
    and `table`; the layout is the same."""
    cw, ch, left, top = 34, 26, 44, 22
    most = max(max(row) for row in grid)
    table = table or _heat_table(title, grid)
    chart = Heatmap(id, title, "", left + 24 * cw + 8, top + 7 * ch + 48, table)
    chart.cell, chart.left, chart.top, chart.most = (cw - 2, ch - 2), left, top, most
    for d, row in enumerate(grid):
        for h, value in enumerate(row):
            shade = RAMP[0] if not value else RAMP[max(1, math.ceil(value / most * 6))]
            if tip is None:
                words = f"{FULL_DAYS[d]} {h:02d}:00-{h + 1:02d}:00 UTC: {value} {what}"
            else:
                words = tip(d, h, value)
            chart.cells.append(Cell(left + h * cw, top + d * ch, shade, words))
    chart.rows = [(top + d * ch + ch / 2, days[d]) for d in range(7)]
    chart.columns = [(left + h * cw + (cw - 2) / 2, f"{h:02d}") for h in range(0, 24, 3)]
    chart.legend_y = top + 7 * ch + 18
    chart.legend = [(left + 48 + i * 30, colour) for i, colour in enumerate(RAMP)]
    busiest = max(((d, h) for d in range(7) for h in range(24)), key=lambda dh: grid[dh[0]][dh[1]])
    chart.desc = (
        f"{what.capitalize()} by day of the week and hour (UTC). Busiest: "
        f"{FULL_DAYS[busiest[0]]} {busiest[1]:02d}:00 with {most}."
        if most
        else f"No {what} in this span."
    )
    if desc is not None:
        chart.desc = desc
    if not most:
        chart.empty = f"No {what} were recorded in this span." if empty is None else empty
    return chart


def _heat_table(title: str, grid: list[list[int]]) -> Table:
    return Table(
        f"{title}, by hour (UTC)",
        ["", *[f"{h:02d}" for h in range(24)]],
        [[DAYS[d], *[str(v) for v in row]] for d, row in enumerate(grid)],
    )


def column_chart(
    id: str,
    title: str,
    desc: str,
    table: Table,
    labels: list[str],
    values: list[float],
    tips: list[str],
    *,
    name: str = "",
    line: tuple[str, list[float], list[str]] | None = None,
    empty: str = "",
    width: int = 760,
    height: int = 230,
    colour: str = PALETTE[0],
    line_colour: str = PALETTE[1],
) -> ColumnChart:
    """Columns in time order (hours, days or weeks), `name`d, and at most one `line`
    (name, values, tips) over them on the same scale: sign-ins beside the peak of people
    present, say. Under the columns, about a dozen of `labels` are shown; `tips` are
    each column's hover text. The caller words everything, the numbers' `table` too,
    so a page can speak its visitors' language. `empty` is said instead of drawing when
    every value is zero."""
    left, top, right, bottom = 44, 10, width - 10, height - 28
    tallest = max([*values, *(line[1] if line else [])], default=0)
    ticks = nice_ticks(tallest)
    slot = (right - left) / max(len(values), 1)
    bar = max(min(slot * 0.72, 48), 1.5)

    def y_of(v: float) -> float:
        return round(bottom - (bottom - top) * v / ticks[-1], 1)

    def x_of(i: int) -> float:
        return round(left + slot * (i + 0.5), 1)

    chart = ColumnChart(id, title, desc, width, height, table)
    chart.plot, chart.column_width, chart.colour = (left, top, right, bottom), round(bar, 1), colour
    chart.columns = [
        Column(round(x_of(i) - bar / 2, 1), y_of(v), round(bottom - y_of(v), 1), tip)
        for i, (v, tip) in enumerate(zip(values, tips, strict=True))
    ]
    chart.y_ticks = [(y_of(t), number(t)) for t in ticks]
    every = max(1, math.ceil(len(labels) / 12))
    chart.x_labels = [(x_of(i), label) for i, label in enumerate(labels) if i % every == 0]
    chart.key = [("column", colour, name)] if name else []
    if line:
        line_name, line_values, line_tips = line
        points = [
            (x_of(i), y_of(v), tip)
            for i, (v, tip) in enumerate(zip(line_values, line_tips, strict=True))
        ]
        chart.line = Line(line_name, line_colour, _path(points), points, 0)
        chart.key.append(("line", line_colour, line_name))
    if not tallest and empty:
        chart.empty = empty
    return chart
