"""Today and History: how the space was used over any span of its days, against the
period before, as figures, charts drawn on the server and their numbers as tables.

Read-only: everything comes through `spacekiosk.usage` (visits, people, purposes,
events, hours of the week, people present). The span is in the query string
(`?preset=today|week|month|30days`, or `?start=YYYY-MM-DD&end=YYYY-MM-DD`); anything
else there is answered with 400 and the page's own range picker, never an error page.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from babel.dates import format_date, format_interval, get_day_names
from babel.numbers import format_decimal, format_percent, get_group_symbol
from flask import g, render_template, request
from flask_babel import get_locale, ngettext
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l

from kiosk import i18n, space
from kiosk.admin import admin_required, bp
from spacekiosk import charts, usage
from spacekiosk.usage import Presence, Usage

PRESETS = {
    "today": _l("Today"),
    "week": _l("This week"),
    "month": _l("This month"),
    "30days": _l("Last 30 days"),
}
DEFAULT = "30days"
ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
EARLIEST_YEAR, LATEST_YEAR = 2000, 2099
BY_DAY_UP_TO = 92  # longer spans are drawn by the week


class BadRange(ValueError):
    """The query string asked for a span the page cannot show; the message says why."""


@dataclass(frozen=True)
class Choice:
    span: usage.Span
    preset: str | None  # which preset, if the span is one


def choose(args, today: date, zone) -> Choice:
    """The span the query string asks for (see the module's docstring)."""
    start, end = args.get("start", "").strip(), args.get("end", "").strip()
    preset = args.get("preset", "").strip()
    if not (start or end):
        preset = preset or DEFAULT
        if preset not in PRESETS:
            raise BadRange(_("There is no range called “%(name)s”.", name=preset[:40]))
        return Choice(usage.Span(_preset_start(preset, today), today, zone), preset)
    first = _day(start or end, "start" if start else "end")
    last = _day(end, "end") if end else max(first, min(today, first + timedelta(days=30)))
    if last < first:
        raise BadRange(_("The end date is before the start date."))
    if (last - first).days + 1 > usage.MAX_DAYS:
        raise BadRange(_("Please choose at most three years at a time."))
    return Choice(usage.Span(first, last, zone), None)


def _preset_start(preset: str, today: date) -> date:
    if preset == "week":
        return today - timedelta(days=today.weekday())
    if preset == "month":
        return today.replace(day=1)
    if preset == "30days":
        return today - timedelta(days=29)
    return today


def _day(text: str, which: str) -> date:
    if not ISO_DATE.fullmatch(text):
        if which == "start":
            raise BadRange(_("The start date must look like 2026-11-30."))
        raise BadRange(_("The end date must look like 2026-11-30."))
    try:
        day = date.fromisoformat(text)
    except ValueError:
        raise BadRange(_("There is no such day as %(day)s.", day=text)) from None
    if not EARLIEST_YEAR <= day.year <= LATEST_YEAR:
        raise BadRange(
            _(
                "Please choose days between %(first)d and %(last)d.",
                first=EARLIEST_YEAR,
                last=LATEST_YEAR,
            )
        )
    return day


@bp.get("/history")
@admin_required
def history():
    config = space.config()
    zone = config.space.timezone
    now = time.time()
    today = datetime.fromtimestamp(now, zone).date()
    try:
        choice = choose(request.args, today, zone)
    except BadRange as exc:
        page = render_template(
            "admin/history.html", error=str(exc), presets=PRESETS, today=today, choice=None
        )
        return page, 400
    current, before = usage.compare(g.db, config, choice.span, now)
    kept_from = now - config.retention.visits_days * 86400
    return render_template(
        "admin/history.html",
        error=None,
        presets=PRESETS,
        today=today,
        choice=choice,
        current=current,
        before=before,
        running=current.until < choice.span.end,
        span_words=span_words(choice.span),
        before_words=span_words(choice.span.before()),
        figures=figures(current, before),
        charts=build_charts(current, before, config),
        # Erased visitors' nameless visits are deleted after retention.visits_days.
        erased_gone=choice.span.before().start < kept_from,
        erased_kept_days=config.retention.visits_days,
    )


# --- words and numbers in the page's language ---


def locale():
    return get_locale()


def span_words(span: usage.Span) -> str:
    if span.first == span.last:
        return format_date(span.first, "full", locale=locale())
    return format_interval(span.first, span.last, "yMMMd", locale=locale())


def whole(n: float) -> str:
    # Babel's format_decimal, as "#,##0" would give, without parsing the pattern for
    # each of the thousand cells a year's tables hold.
    return f"{round(n):,}".replace(",", get_group_symbol(locale=locale()))


def tenths(n: float | None) -> str:
    return "–" if n is None else format_decimal(n, "#,##0.0", locale=locale())


def change(now: float | None, before: float | None, digits: str = "whole") -> str:
    """How a figure moved from the period before: "+12 (+15 %)", "no change", "new"."""
    if now is None or before is None:
        return ""
    shown = whole if digits == "whole" else tenths
    difference = now - before
    if abs(difference) < (0.05 if digits == "tenths" else 0.5):
        return _("no change")
    sign = "+" if difference > 0 else "−"
    moved = f"{sign}{shown(abs(difference))}"
    if not before:
        return moved
    share = format_percent(abs(difference) / before, locale=locale())
    return f"{moved} ({sign}{share})"


@dataclass(frozen=True)
class Figure:
    id: str
    label: str
    value: str
    before: str
    change: str


def figures(current: Usage, before: Usage) -> list[Figure]:
    now_present, then_present = current.presence_total(), before.presence_total()
    rows = [
        ("visits", _("Visits"), current.visits, before.visits, "whole"),
        ("people", _("Different people"), current.visitors, before.visitors, "whole"),
        ("new", _("New people"), current.new, before.new, "whole"),
        ("returning", _("Returning people"), current.returning, before.returning, "whole"),
        ("peak", _("Most people present at once"), now_present.peak, then_present.peak, "whole"),
        (
            "average",
            _("People present on average while open"),
            now_present.average,
            then_present.average,
            "tenths",
        ),
    ]
    found = []
    for key, label, value, old, digits in rows:
        shown = whole if digits == "whole" else tenths
        found.append(
            Figure(
                key,
                label,
                shown(value) if value is not None else "–",
                shown(old) if old is not None else "–",
                change(value, old, digits),
            )
        )
    return found


def purpose_name(purpose: str) -> str:
    return str(i18n.PURPOSE_NAMES.get(purpose, purpose))


def _day_label(d: date, pattern: str = "d MMM") -> str:
    return format_date(d, pattern, locale=locale())


# --- the charts ---


@dataclass(frozen=True)
class Unit:
    """What the time chart's columns are: hours of the day, days or weeks."""

    key: str
    header: str
    labels: list[str]
    long_labels: list[str]
    signins: list[int]
    new: list[int] | None  # new people are known by the day, not the hour
    presence: list[Presence]


def time_unit(current: Usage) -> Unit:
    days = current.shown_days
    span = current.span
    if span.days == 1:
        signins, presence = current.visits_by_hour_of_day(), current.presence_by_hour_of_day()
        last = 24 if current.until >= span.end else _hours_so_far(current)
        # From the first hour with anything in it (the opening, usually) to now.
        busy = [
            h for h in range(last) if signins[h] or presence[h].peak or presence[h].open_minutes
        ]
        hours = range(min(busy, default=0), last)
        return Unit(
            "hour",
            _("Hour"),
            [f"{h:02d}" for h in hours],
            [f"{h:02d}:00–{h + 1:02d}:00" for h in hours],
            [signins[h] for h in hours],
            None,
            [presence[h] for h in hours],
        )
    new_by_day = {usage.EPOCH + timedelta(days=d): n for d, n in current.new_by_day.items()}
    if span.days <= BY_DAY_UP_TO:
        return Unit(
            "day",
            _("Day"),
            [_day_label(d) for d in days],
            [_day_label(d, "EEE d MMM") for d in days],
            [n for _d, n in current.visits_by_day()],
            [new_by_day.get(d, 0) for d in days],
            [p for _d, p in current.presence_by_day()],
        )
    weeks = current.visits_by_week()
    new_weeks: dict[date, int] = {}
    for d, n in new_by_day.items():
        monday = d - timedelta(days=d.weekday())
        new_weeks[monday] = new_weeks.get(monday, 0) + n
    return Unit(
        "week",
        _("Week of"),
        [_day_label(monday) for monday, _n in weeks],
        [_day_label(monday, "d MMM y") for monday, _n in weeks],
        [n for _m, n in weeks],
        [new_weeks.get(monday, 0) for monday, _n in weeks],
        [p for _m, p in current.presence_by_week()],
    )


def _hours_so_far(current: Usage) -> int:
    return max(1, min(24, int((current.until - current.span.start) // 3600) + 1))


def build_charts(current: Usage, before: Usage, config) -> dict:
    unit = time_unit(current)
    found = {"time": _time_chart(current, unit, config)}
    if unit.key == "day" and current.span.days >= 14:
        found["weeks"] = _weeks_chart(current)
    found["people"] = _people_chart(current, before)
    found["purposes"] = _purposes_chart(current, before)
    found["events"] = _events_chart(current, before)
    found["heat"] = _heat_chart(current)
    return found


def _time_chart(current: Usage, unit: Unit, config) -> charts.ColumnChart:
    counter = current.presence_source == "counter"
    title = {
        "hour": _("Sign-ins and people present, by the hour"),
        "day": _("Sign-ins and people present, by the day"),
        "week": _("Sign-ins and people present, by the week"),
    }[unit.key]
    tips = [
        ngettext("%(when)s: %(num)d sign-in", "%(when)s: %(num)d sign-ins", n, when=label)
        for label, n in zip(unit.long_labels, unit.signins, strict=True)
    ]
    peak_name = _("Most present at once")
    peak_tips = [
        _("%(when)s: at most %(people)s present", when=label, people=whole(p.peak))
        for label, p in zip(unit.long_labels, unit.presence, strict=True)
    ]
    header = [unit.header, _("Sign-ins"), peak_name, _("Present on average")]
    rows = [
        [label, whole(n), whole(p.peak), tenths(p.average)]
        for label, n, p in zip(unit.long_labels, unit.signins, unit.presence, strict=True)
    ]
    if unit.new is not None:
        header.insert(2, _("New people"))
        for row, new in zip(rows, unit.new, strict=True):
            row.insert(2, whole(new))
    table = charts.Table(title, header, rows)
    desc = ngettext(
        "%(num)d sign-in in all; at most %(peak)s people present at once.",
        "%(num)d sign-ins in all; at most %(peak)s people present at once.",
        current.visits,
        peak=whole(current.presence_total().peak),
    )
    if not counter:
        desc += " " + _("People present are counted from sign-ins: there is no people counter.")
    return charts.column_chart(
        "signins",
        title,
        desc,
        table,
        unit.labels,
        unit.signins,
        tips,
        name=_("Sign-ins"),
        line=(peak_name, [p.peak for p in unit.presence], peak_tips),
        empty=_("Nobody signed in, and nobody was counted present."),
    )


def _weeks_chart(current: Usage) -> charts.ColumnChart:
    weeks = current.visits_by_week()
    title = _("Visits per week")
    labels = [_day_label(monday, "d MMM y") for monday, _n in weeks]
    table = charts.Table(
        _("Visits per week (weeks start on Monday; the first and last count only the days chosen)"),
        [_("Week of"), _("Visits")],
        [[label, whole(n)] for label, (_m, n) in zip(labels, weeks, strict=True)],
    )
    return charts.column_chart(
        "weeks",
        title,
        _("Visits in each week of the span."),
        table,
        [_day_label(monday) for monday, _n in weeks],
        [n for _m, n in weeks],
        [
            ngettext(
                "Week of %(when)s: %(num)d visit", "Week of %(when)s: %(num)d visits", n, when=label
            )
            for label, (_m, n) in zip(labels, weeks, strict=True)
        ],
        empty=_("No visits in these weeks."),
        height=200,
    )


def _compared_bars(
    id: str, title: str, items: dict[str, tuple[int, int]], empty: str
) -> charts.BarChart:
    """Bars for this period, and a table with the period before beside it."""
    table = charts.Table(
        title,
        ["", _("This period"), _("The period before")],
        [[label, whole(now), whole(then)] for label, (now, then) in items.items()],
    )
    shown = [(label, now, whole(now)) for label, (now, _then) in items.items() if now]
    return charts.bar_chart(id, title, shown, width=440, empty=empty, table=table)


def _people_chart(current: Usage, before: Usage) -> charts.BarChart:
    return _compared_bars(
        "people",
        _("New and returning people"),
        {
            _("New people"): (current.new, before.new),
            _("Returning people"): (current.returning, before.returning),
        },
        _("Nobody came in this span."),
    )


def _purposes_chart(current: Usage, before: Usage) -> charts.BarChart:
    names = sorted(set(current.by_purpose) | set(before.by_purpose))
    return _compared_bars(
        "purposes",
        _("Why people came"),
        {purpose_name(p): (current.by_purpose[p], before.by_purpose[p]) for p in names},
        _("No visits in this span."),
    )


def _events_chart(current: Usage, before: Usage) -> charts.BarChart:
    names = sorted(set(current.by_event) | set(before.by_event))
    return _compared_bars(
        "events",
        _("Visits by event"),
        {name: (current.by_event[name], before.by_event[name]) for name in names},
        _("No sign-ins were for an event in this span."),
    )


def _heat_chart(current: Usage) -> charts.Heatmap:
    grid = current.hour_of_week()
    short = get_day_names("abbreviated", locale=locale())
    full = get_day_names("wide", locale=locale())
    days = tuple(short[d] for d in range(7))  # Babel numbers Monday 0
    title = _("Visits by hour of the week")
    table = charts.Table(
        _("Visits by day of the week and hour, in the space's time"),
        ["", *[f"{h:02d}" for h in range(24)]],
        [[days[d], *[whole(v) for v in row]] for d, row in enumerate(grid)],
    )
    busiest = max(((d, h) for d in range(7) for h in range(24)), key=lambda dh: grid[dh[0]][dh[1]])
    desc = ngettext(
        "The busiest hour: %(day)s %(hour)s with %(num)d visit.",
        "The busiest hour: %(day)s %(hour)s with %(num)d visits.",
        grid[busiest[0]][busiest[1]],
        day=full[busiest[0]],
        hour=f"{busiest[1]:02d}:00",
    )
    return charts.heatmap(
        "hours",
        title,
        grid,
        days=days,
        tip=lambda d, h, n: ngettext(
            "%(day)s %(hours)s: %(num)d visit",
            "%(day)s %(hours)s: %(num)d visits",
            n,
            day=full[d],
            hours=f"{h:02d}:00–{h + 1:02d}:00",
        ),
        desc=desc,
        empty=_("No visits in this span."),
        table=table,
    )
