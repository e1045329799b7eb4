"""The central team's pages: every space at a glance, the reports, a space's details.
A space's page saves what the team enters there (its name, capacity and monthly cost)
through accounts.py; nothing else here writes."""

from __future__ import annotations

import csv
import io
import time

from flask import (
    Blueprint,
    Response,
    abort,
    flash,
    g,
    redirect,
    render_template,
    request,
    url_for,
)

from collector import accounts, alerts, periods, reports, store
from collector.api import safe_cell
from collector.periods import DAY
from spacekiosk import charts, figures

bp = Blueprint("pages", __name__)


@bp.app_template_global("define")
def define(key: str) -> str:
    """The address of a figure's definition on the "How the figures are counted" page;
    a key no figure has is an error, not a link to nowhere."""
    return url_for("pages.figure_definitions", _anchor=figures.get(key).key)


@bp.app_template_global("figure")
def figure(key: str) -> figures.Figure:
    """A figure's definition, for a page that prints it beside the figure."""
    return figures.get(key)


@bp.get("/figures")
def figure_definitions():
    """How the figures are counted: every definition, each under its key as an anchor.
    Behind the same login as the other pages: it says nothing secret (docs/figures.md
    is the same text), but nothing on the collector but /healthz is read without one."""
    return render_template("figures.html", sections=figures.by_section())


def _window(now: float) -> tuple[int, int]:
    """The charts' span: the WEEKS_SHOWN ISO weeks up to and including this one."""
    until = periods.next_start(periods.period_start(int(now), "week"), "week")
    return until - reports.WEEKS_SHOWN * 7 * DAY, until


def _space_or_404(space: str) -> reports.Space:
    for known in reports.spaces(g.db):
        if known.id == space:
            return known
    abort(404, f"There is no space called {space!r}.")


@bp.get("/")
def dashboard():
    now = time.time()
    spaces = reports.spaces(g.db)
    names = {s.id: s.name for s in spaces}
    chosen = request.args.get("space") or None
    if chosen is not None and chosen not in names:
        abort(404, f"There is no space called {chosen!r}.")
    since, until = _window(now)
    found = periods.rows(g.db, since, until)
    weeks, series = reports.weekly_visits(found, until)
    for space in names:  # a space with no visits is a flat line, not missing
        series.setdefault(space, [0] * len(weeks))
    busiest = sorted(series, key=lambda space: (-sum(series[space]), space))
    colours = charts.colour_map(busiest)  # a space keeps its colour from chart to chart
    lines, line_names = _fewer_lines(series, busiest, names)
    weekly = charts.line_chart(
        "weekly",
        "Visits per week",
        weeks,
        lines,
        line_names,
        partial_last=True,
        colours=colours | {OTHERS: "#7b8490"},
    )
    zones = {s.id: s.timezone for s in spaces}
    grid, skipped = reports.hour_of_week([r for r in found if chosen in (None, r.space)], zones)
    where = names[chosen] if chosen else "all spaces"
    heat = charts.heatmap("pattern", f"Visits by hour of the week, {where}", grid)
    return render_template(
        "dashboard.html",
        now=now,
        spaces=spaces,
        online=sum(s.online(now) for s in spaces),  # a metered space that is late is not
        weekly=weekly,
        compare=_comparison(spaces, found, {names[k]: c for k, c in colours.items()}),
        heat=heat,
        skipped=skipped,
        chosen=chosen,
        since=since,
        until=until,
        rejects=store.reject_count(g.db),
        heard=store.contacts(g.db),  # what the collector itself received and committed
        raised=alerts.current(g.db),
    )


MAX_LINES = 8


def _fewer_lines(
    series: dict[str, list[int]], busiest: list[str], names: dict[str, str]
) -> tuple[dict[str, list[int]], dict[str, str]]:
    """At most MAX_LINES lines: past that, the quieter spaces become one summed line
    (more would be a tangle nobody reads; the bars below still show every space)."""
    if len(busiest) <= MAX_LINES:
        return series, names
    kept, rest = busiest[: MAX_LINES - 1], busiest[MAX_LINES - 1 :]
    lines = {space: series[space] for space in kept}
    lines[OTHERS] = [sum(week) for week in zip(*(series[s] for s in rest), strict=True)]
    return lines, names | {OTHERS: f"{len(rest)} other spaces"}


OTHERS = "_others"  # not a space id: those start with a letter or digit


def _comparison(
    spaces: list[reports.Space], found: list[periods.Row], colours: dict[str, str]
) -> list[charts.BarChart]:
    """Visits and utilisation of each space over the charts' span, as two bar charts
    in the spaces' colours from the weekly chart."""
    names = ("signins", "open_minutes", "occupied_minutes")
    sums: dict[str, list[int]] = {space.id: [0, 0, 0] for space in spaces}
    for row in found:  # only three counts: add them, not every count and breakdown
        into, counts = sums.setdefault(row.space, [0, 0, 0]), row.counts
        for i, name in enumerate(names):
            into[i] += counts.get(name, 0)
    visits, use = [], []
    for space in spaces:
        signins, open_minutes, occupied = sums[space.id]
        visits.append((space.name, signins, charts.number(signins)))
        if open_minutes and space.motion:  # without a motion sensor: not known, not 0 %
            share = occupied / open_minutes
            use.append((space.name, share, f"{share:.0%}"))
    return [
        charts.bar_chart("compare-visits", "Visits", visits, unit="visits", colours=colours),
        charts.bar_chart(
            "compare-use",
            "Utilisation (occupied hours ÷ open hours)",
            use,
            scale_to=max([1.0, *[v for _, v, _ in use]]),
            unit="utilisation",
            colours=colours,
        ),
    ]


def _period(now: float, space: str | None = None) -> periods.Period:
    try:
        return periods.parse_period(request.args.get("period") or _default_month(now, space))
    except ValueError as exc:
        abort(400, str(exc))


def _default_month(now: float, space: str | None = None) -> str:
    """The month a report opens on: the last full month, what a central team reports on
    to its funders; but when that month holds nothing (of this space) and this month
    does, as for a programme that began this month, this month so far (the report says
    it is still running) rather than an empty page."""
    last = periods.last_full_month(now)
    this = periods.recent_periods(now, 1)[0]
    if _holds(periods.parse_period(last), space):
        return last
    return this if _holds(periods.parse_period(this), space) else last


def _holds(period: periods.Period, space: str | None) -> bool:
    """Whether any space (or `space`) stored an hour or a day in the period."""
    sql = "SELECT 1 FROM usage WHERE hour_start >= ? AND hour_start < ?"
    params: list = [period.start, period.end]
    if space is not None:
        sql += " AND space = ?"
        params.append(space)
    return g.db.execute(sql + " LIMIT 1", params).fetchone() is not None


@bp.get("/reports")
def report_table():
    now = time.time()
    period = _period(now)
    report = reports.report(g.db, period, now)
    return render_template(
        "reports.html",
        report=report,
        choices=periods.recent_periods(now),
        now=now,
        over=reports.over(now),
        # A period that is over, whose last hours a space has not sent yet.
        late=[r.name for r in report.rows if r.link_until and r.link_until < period.end],
    )


@bp.get("/reports.csv")
def report_csv():
    now = time.time()
    report = reports.report(g.db, _period(now), now)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(["period", *CSV_COLUMNS])
    for row in [*report.rows, report.total]:
        writer.writerow([report.period.label, *[safe_cell(v) for v in csv_values(row)]])
    return Response(
        out.getvalue(),
        mimetype="text/csv",
        headers={"Content-Disposition": f'attachment; filename="report-{report.period.label}.csv"'},
    )


CSV_COLUMNS = [
    "space",
    "name",
    "capacity",
    "visits",
    "distinct_visitors",  # different people in the period (all: each space's added up)
    "unique_visitors_hourly_sum",  # each hour's distinct visitors added up
    "new_visitors",
    "returning_distinct_visitors",
    "events_held",
    "event_signins",
    "occupied_hours",
    "open_hours",
    "utilisation",
    "occupancy_peak",
    "peak_space",
    "peak_per_capacity",
    "average_occupancy",
    "link_availability",
    "cost",
    "currency",
    "cost_months",
    "cost_per_visit",
]


def csv_values(row: reports.Figures) -> list:
    """A report row as CSV cells: ratios as fractions, blank where there is no figure."""

    def fraction(value: float | None, places: int = 4) -> str:
        return "" if value is None else f"{value:.{places}f}"

    return [
        row.id or "all",
        row.name,
        row.capacity if row.capacity is not None else "",
        row.visits,
        "" if row.unique_visitors is None else row.unique_visitors,
        row.hourly_visitors,
        row.new_visitors,
        "" if row.returning_visitors is None else row.returning_visitors,
        row.events,
        row.event_signins,
        fraction(row.occupied_minutes / 60 if row.occupied_known else None, 2),
        fraction(row.open_minutes / 60, 2),
        fraction(row.utilisation),
        row.peak,
        row.peak_space or (row.name if row.id else ""),
        fraction(row.peak_ratio),
        fraction(row.average_occupancy, 2),
        fraction(row.availability),
        fraction(row.cost, 2),
        row.currency or "",
        row.cost_months,
        fraction(row.cost_per_visit, 2),
    ]


@bp.get("/reports/<space>")
def space_report(space: str):
    now = time.time()
    known = _space_or_404(space)
    period = _period(now, space)
    until = min(period.end, periods.next_start(periods.period_start(int(now), "week"), "week"))
    history = periods.rows(g.db, until - reports.WEEKS_SHOWN * 7 * DAY, until, space)
    weeks, series = reports.weekly_visits(history, until)
    inside = [r for r in history if period.start <= r.start < period.end]  # all it has there
    # This space's row of the month's table, from its own hours: not the whole table's.
    row = reports.figures(known, inside, reports.costs(g.db, period.months, space), period, now)
    grid, skipped = reports.hour_of_week(inside, {space: known.timezone})
    purposes = reports.breakdown(inside, "by_purpose")
    return render_template(
        "report.html",
        space=known,
        row=row,
        period=period,
        choices=periods.recent_periods(now),
        weekly=charts.line_chart(
            "weekly",
            "Visits per week",
            weeks,
            {space: series.get(space, [0] * len(weeks))},
            {space: known.name},
            band=(period.start, period.end, period.label),
            partial_last=until > now,
        ),
        heat=charts.heatmap("pattern", f"Visits by hour of the week, {period.label}", grid),
        skipped=skipped,
        purposes=charts.bar_chart(
            "purposes",
            f"Why visitors came, {period.label}",
            [(label, n, charts.number(n)) for label, n in purposes],
            colour=charts.PALETTE[1],
            unit="sign-ins",
        ),
        events=reports.breakdown(inside, "by_event"),
        now=now,
        over=reports.over(now),
    )


@bp.get("/spaces/<space>")
def space_details(space: str):
    return _details(_space_or_404(space))


def _details(space: reports.Space, status: int = 200, errors: dict | None = None, form=None):
    entered = g.db.execute(
        "SELECT month, amount, currency FROM costs WHERE space = ? ORDER BY month DESC",
        [space.id],
    ).fetchall()
    page = render_template(
        "space.html",
        now=time.time(),
        space=space,
        heard=store.contacts(g.db).get(space.id) or (None, None),
        raised=alerts.current(g.db, space.id).get(space.id, []),
        alert_history=alerts.history(g.db, space.id),
        costs=entered,
        errors=errors or {},
        form=form or {},
        default_month=periods.last_full_month(time.time()),
        default_currency=entered[0][2] if entered else "",
    )
    return page, status


@bp.post("/spaces/<space>/info")
def save_info(space: str):
    known = _space_or_404(space)
    name = request.form.get("name", "").strip()
    text = request.form.get("capacity", "").strip()
    errors = {}
    if not name or len(name) > 80:
        errors["name"] = "Give the space a name of 1 to 80 characters."
    capacity = None
    if text:
        # ASCII digits only: "²" and "٣" are digits to str.isdigit(), and int() refuses "²".
        if not (text.isascii() and text.isdigit()) or not 1 <= int(text) <= 10000:
            errors["capacity"] = "Capacity is a whole number of people from 1 to 10000, e.g. 20."
        else:
            capacity = int(text)
    if not errors:
        try:
            accounts.set_space_info(g.db, space, name, capacity)
        except ValueError as exc:
            errors["name"] = str(exc)
    if errors:
        return _details(known, 400, errors, request.form)
    flash("Name and capacity saved.")
    return redirect(url_for("pages.space_details", space=space), 303)


@bp.post("/spaces/<space>/cost")
def save_cost(space: str):
    known = _space_or_404(space)
    month = request.form.get("month", "").strip()
    amount = request.form.get("amount", "").strip()
    currency = request.form.get("currency", "").strip().upper()
    errors = {}
    try:
        periods.parse_period(month)
        if len(month) != 7:
            raise ValueError
    except ValueError:
        errors["month"] = "A month looks like 2026-11."
    if not accounts.AMOUNT.match(amount):
        errors["amount"] = "The cost is a number of 0 or more, written like 1250.50."
    if len(currency) != 3 or not currency.isalpha() or not currency.isascii():
        errors["currency"] = "The currency is a three-letter code such as EUR, KES or PHP."
    if not errors:
        try:
            accounts.set_cost(g.db, space, month, amount, currency)
        except ValueError as exc:
            errors["amount"] = str(exc)
    if errors:
        return _details(known, 400, errors, request.form)
    flash(f"Cost for {month} saved.")
    return redirect(url_for("pages.space_details", space=space), 303)
