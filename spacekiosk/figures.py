"""What each figure the project shows means: one definition each, for every page.

The collector's pages, reports and API and the kiosk's admin pages link each figure's
label to its definition here, by its key (the anchor of the "How the figures are
counted" pages, which both web apps render from FIGURES). docs/figures.md is written
from it: `python -m spacekiosk.figures > docs/figures.md` (a test fails when it is out
of date).

Every definition says what is counted, over which minutes, how the hour still running
and the days the space was closed or cut off are treated, and the unit. They describe
what the code does (sync/buckets.py counts each hour on the Pi; collector/reports.py
and collector/api.py add the hours up; spacekiosk/usage.py and spacekiosk/occupancy.py
count for the admins' pages); a change there changes the definition here.
"""

from __future__ import annotations

from dataclasses import dataclass

# The sections of the page, in order.
SECTIONS = (
    ("visits", "Visits and visitors"),
    ("people", "People present"),
    ("hours", "Opening hours and use"),
    ("link", "Connection and sensors"),
    ("money", "Cost"),
    ("now", "The space now"),
    ("data", "About the data"),
)


@dataclass(frozen=True)
class Figure:
    key: str  # stable: the anchor every page links to
    title: str
    section: str
    unit: str
    definition: str  # one paragraph, plain text
    names: tuple[str, ...] = ()  # its names in the API, the CSVs and the wire protocol
    shown: tuple[str, ...] = ()  # where it is shown


CENTRAL = "the central page"
REPORTS = "the reports (table, CSV, printable)"
API = "/api/v1/usage"
HISTORY = "the kiosk's History page"

# Said once, used by several definitions below.
_RUNNING = (
    "The hour still running is only counted when the space sends it "
    "(sync.send_running_hour), and then only its sign-ins and counts so far."
)
_CLOCK = "Times taken while the Pi's clock was not yet set are left out until they are corrected."
_OVER = (
    "The Pi works it out only for hours that are over, so a period still running holds it "
    "up to the end of the last hour over (the period is provisional)."
)

FIGURES: tuple[Figure, ...] = (
    # --- visits and visitors ---
    Figure(
        "visits",
        "Visits (sign-ins)",
        "visits",
        "sign-ins",
        "Each sign-in on the kiosk (on its screen or a phone) is one visit, counted in the "
        "hour it began; a person who signs in twice is two visits. A visit belongs to the "
        "hour, day, week or month its sign-in falls in: UTC at the centre, the space's own "
        "days on the kiosk's pages. Sign-ins count whether or not the space was open then, "
        "and whether or not the link was up: the Pi keeps them and sends them later. "
        + _RUNNING
        + " "
        + _CLOCK
        + " Visits of visitors whose names were erased still count.",
        ("signins", "visits"),
        (CENTRAL, REPORTS, API, HISTORY),
    ),
    Figure(
        "sign-outs",
        "Sign-outs",
        "visits",
        "sign-outs",
        "Visits that ended in the hour: signed out by the visitor, by an admin, or by the "
        "kiosk at closing time (a visit still open when the opening hours end is closed at "
        "the closing time). Counted in the hour of the sign-out. " + _RUNNING + " " + _CLOCK,
        ("signouts",),
        (API,),
    ),
    Figure(
        "unique-visitors",
        "Unique visitors (different people)",
        "visits",
        "visitors",
        "The different people who signed in in the period (a UTC day, ISO week, month or "
        "quarter at the centre): someone who came on twelve days of a month counts once. "
        "Only counts leave a space, never who came, so the Pi counts, for each hour, the "
        "people whose first sign-in of its day, week, month, quarter and year fell in it "
        "(first_in_day ... first_in_year); the hours' first_in_<period> added up over the "
        "period are its different people, exactly (a day rolled up from its hours keeps "
        "them). For a span given by from and to that cuts a period it is not known (null). "
        "All spaces: each space's different people added up, as someone who came to two "
        "spaces counts at each (a name is not an identity across spaces). Shown as — "
        "where an hour came from a space whose agent is too old to count it; the sum of "
        "each hour's distinct visitors is still given as unique_visitors_hourly_sum (in "
        "the API: the hours' unique_visitors added up). " + _RUNNING + " " + _CLOCK,
        (
            "distinct_visitors",
            "unique_visitors_hourly_sum",
            "first_in_day",
            "first_in_week",
            "first_in_month",
            "first_in_quarter",
            "first_in_year",
        ),
        (REPORTS, API),
    ),
    Figure(
        "hourly-visitors",
        "Visitors per hour (distinct in each hour)",
        "visits",
        "visitors",
        "For each hour, the number of different visitors who signed in in it. Added up "
        "over longer periods (unique_visitors in the API's periods, "
        "unique_visitors_hourly_sum in the report CSV), someone who came in two different "
        "hours counts twice, so it is visitor-hours, not people: the reports' unique "
        "visitors are the different people. " + _RUNNING + " " + _CLOCK,
        ("unique_visitors",),
        (API,),
    ),
    Figure(
        "new-visitors",
        "New visitors",
        "visits",
        "visitors",
        "Of each hour's visitors, those whose first visit ever began in that hour; over a "
        "longer period, the hours' numbers added up. A person is new once, in the hour of "
        "their first sign-in at that space; but someone whose name was erased "
        "(retention.days after their last visit) who comes back signs in as a first visit, "
        "and is new again: a name is not an identity, and once it is erased the kiosk "
        "cannot know the person came before, so over a long span new visitors can count "
        "people who are in fact returning. " + _RUNNING + " " + _CLOCK,
        ("new_visitors",),
        (REPORTS, API),
    ),
    Figure(
        "returning-visitors",
        "Returning visitors",
        "visits",
        "visitors",
        "Of the period's different people (unique visitors), those who had visited before "
        "the period began: unique visitors less new visitors, each person once however "
        "often they came. All spaces: each space's added up. Shown as — where unique "
        "visitors are not known. In the API, returning_distinct_visitors for a period; "
        "returning_visitors is each hour's (those who had visited before that hour began), "
        "which added up over a period counts a regular once per hour. " + _RUNNING + " " + _CLOCK,
        ("returning_visitors", "returning_distinct_visitors"),
        (REPORTS, API),
    ),
    Figure(
        "different-people",
        "Different people",
        "visits",
        "people",
        "On the kiosk's History page: the number of different visitor records that signed "
        "in at least once in the chosen days (the space's local days, up to now for a span "
        "still running). Someone who came on ten days counts once; one person with two "
        "records counts twice until an admin merges them. Visits of erased visitors still count, "
        "until they are deleted after retention.visits_days. " + _CLOCK,
        (),
        (HISTORY,),
    ),
    Figure(
        "new-people",
        "New people",
        "visits",
        "people",
        "On the kiosk's History page: of the different people in the chosen days, those "
        "whose first visit ever fell within those days. Each counts once, on the local day "
        "of that first visit (the charts' New people). Someone whose name was erased who "
        "comes back is a new record, so new again. " + _CLOCK,
        (),
        (HISTORY,),
    ),
    Figure(
        "returning-people",
        "Returning people",
        "visits",
        "people",
        "On the kiosk's History page: the different people of the chosen days less the new "
        "people, that is those who had come before the first chosen day. Each counts once, "
        "however often they came.",
        (),
        (HISTORY,),
    ),
    Figure(
        "by-purpose",
        "Why visitors came (by purpose)",
        "visits",
        "sign-ins",
        "Sign-ins by the purpose the visitor picked on the kiosk, shown by the purpose's "
        "label (a purpose a space added itself is shown as the space named it). A sign-in "
        "without a purpose is in the visits but under no purpose, so the purposes may add "
        "up to fewer than the visits. Counted like visits: in the hour of the sign-in, "
        "added up label by label.",
        ("by_purpose", "purpose:<label>"),
        (REPORTS, API, HISTORY),
    ),
    Figure(
        "by-event",
        "Sign-ins by event",
        "visits",
        "sign-ins",
        "Sign-ins made for a community event (the visitor picked today's event on the "
        "kiosk), by the event's name. Counted like visits: in the hour of the sign-in, "
        "added up name by name.",
        ("by_event", "event:<label>", "event_signins"),
        (REPORTS, API, HISTORY),
    ),
    Figure(
        "events-held",
        "Events held",
        "visits",
        "events",
        "A space's community events with at least one sign-in in the period, counted by "
        "name (the same name on two days is one event). All spaces: the spaces' counts "
        "added up. In brackets, the sign-ins for events. An event nobody signed in for is "
        "not counted.",
        ("events_held", "event_signins"),
        (REPORTS,),
    ),
    Figure(
        "visits-per-week",
        "Visits per week",
        "visits",
        "sign-ins per week",
        "Visits (sign-ins) in each ISO week, Monday 00:00 to Sunday 24:00 UTC, for the 26 "
        "weeks up to this one (the report's period shaded); this week is so far, drawn "
        "dashed. A rolled-up day counts in the week it starts in. On the kiosk's History "
        "page the weeks are the space's local weeks, and the first and last count only the "
        "chosen days. With more than eight spaces, the seven busiest have a line each and "
        "the others one summed line.",
        (),
        (CENTRAL, REPORTS, HISTORY),
    ),
    Figure(
        "visits-by-hour-of-week",
        "Visits by hour of the week",
        "visits",
        "sign-ins per hour",
        "Sign-ins added up by weekday and hour, each space's hours in its own time zone "
        "(UTC for a space that has not named a real zone; in a zone off UTC by part of an "
        "hour, an hour counts at the local hour it began). A rolled-up day is left out, "
        "since its hours are not known, and the page says how many were.",
        (),
        (CENTRAL, REPORTS, HISTORY),
    ),
    Figure(
        "visits-per-space",
        "Visits per space",
        "visits",
        "sign-ins",
        "In the report's By size of space table: the visits of the spaces in a size band "
        "divided by the number of spaces in it.",
        (),
        (REPORTS,),
    ),
    # --- people present ---
    Figure(
        "entries",
        "Entries and exits (people counter)",
        "people",
        "crossings",
        "Crossings of the people counter's beam at the door, inwards (entries) and outwards "
        "(exits), counted in the hour they happened. Zero at a space without a counter. "
        + _RUNNING
        + " "
        + _CLOCK,
        ("entries", "exits"),
        (API,),
    ),
    Figure(
        "door-openings",
        "Door openings",
        "people",
        "openings",
        "Times the door sensor reported the door opening, in the hour it happened. "
        + _RUNNING
        + " "
        + _CLOCK,
        ("door_openings",),
        (API,),
    ),
    Figure(
        "motion-periods",
        "Motion periods",
        "people",
        "periods",
        "Times a motion sensor (PIR) started seeing motion, in the hour it started. "
        + _RUNNING
        + " "
        + _CLOCK,
        ("motion_periods",),
        (API,),
    ),
    Figure(
        "peak-occupancy",
        "Peak occupancy (most people present at once)",
        "people",
        "people",
        "The most people present at the same moment. People present are the people "
        "counter's running total where the space has a counter (entries less exits, never "
        "below zero, and back to zero at the first moment after closing that the door has "
        "been shut and nothing has moved for 30 minutes); without a counter, the visits "
        "signed in and not yet out. Over several hours, days or a rolled-up day, the "
        "highest hour. All spaces: the busiest space's peak (the report names the space), "
        "not how many were present across the spaces at once. Closed hours count too. "
        + _OVER
        + " "
        + _CLOCK,
        ("occupancy_peak",),
        (REPORTS, API, HISTORY),
    ),
    Figure(
        "peak-per-capacity",
        "Peak ÷ capacity",
        "people",
        "percent",
        "Peak occupancy divided by the space's capacity (the one entered on its page, or "
        "the one its Pi reports). All spaces: the busiest space's peak divided by that "
        "space's own capacity (the report names it), since its peak beside the capacities "
        "of all the spaces added up would read as a share of seats nobody filled at once. "
        "A size band, which shows no peak: the peaks of its spaces that have a capacity "
        "added up, divided by their capacities added up. Blank without a capacity.",
        ("peak_per_capacity", "capacity", "peak_space"),
        (REPORTS,),
    ),
    Figure(
        "person-minutes",
        "Person-minutes",
        "people",
        "person-minutes",
        "People present (as in peak occupancy) added up minute by minute over the hour: "
        "three people for twenty minutes are 60. It adds up across hours, days and spaces; "
        "divided by 60 it is the hour's time-weighted average. Every minute of the hour "
        "counts, open or not. " + _OVER,
        ("person_minutes",),
        (API,),
    ),
    Figure(
        "average-occupancy",
        "Average occupancy (people on average while open)",
        "people",
        "people",
        "In the reports: the person-minutes while the space was open divided by its open "
        "minutes, for the space or (for all spaces and a size band) summed over the spaces: "
        "the people there on an average open minute. Time when it was closed (the cleaner, "
        "people staying on after closing) counts in neither. Blank when there are no open "
        "minutes, or where an hour came from a space whose agent is too old to count "
        "person-minutes while open. " + _OVER,
        ("average_occupancy",),
        (REPORTS,),
    ),
    Figure(
        "open-person-minutes",
        "Person-minutes while open",
        "people",
        "person-minutes",
        "Person-minutes (people present added up minute by minute) over the minutes of the "
        "hour when the opening hours say the space was open: what average occupancy "
        "divides by the open minutes. At most the hour's person-minutes. " + _OVER,
        ("open_person_minutes",),
        (API,),
    ),
    Figure(
        "present-on-average",
        "People present on average while open",
        "people",
        "people",
        "On the kiosk's History page: the person-minutes of the hours in which the space "
        "was open for at least a minute, divided by the minutes it was open. For a space "
        "without opening hours in the chosen days, the person-minutes divided by the "
        "minutes of the hours anyone was there. The hours the Pi has already counted come "
        "from its hourly counts; the most recent ones (not yet counted) are worked out from "
        "the sensors the same way. Hours are the Pi's UTC hours, each in the local hour it "
        "starts in.",
        (),
        (HISTORY,),
    ),
    # --- opening hours and use ---
    Figure(
        "occupied-minutes",
        "Occupied minutes",
        "hours",
        "minutes (hours in the reports)",
        "The minutes in which any motion sensor (PIR) was seeing motion, from its motion "
        "event to its next still event, overlapping sensors counted once, rounded to whole "
        "minutes per hour. Every minute counts, open or not. Only a motion sensor tells it "
        "(the people counter and the sign-ins do not), and a space's hours do not say "
        "which sensors it has: a space that has never reported motion in any hour the "
        "collector holds is taken to have none, and its occupied minutes are not known: "
        "blank (—) in the reports, null in /api/v1/usage (for all spaces, null only when "
        "no space has reported motion). The reports show it in hours. " + _OVER + " " + _CLOCK,
        ("occupied_minutes", "occupied_hours"),
        (REPORTS, API),
    ),
    Figure(
        "open-minutes",
        "Open minutes",
        "hours",
        "minutes (hours in the reports)",
        "The minutes the opening hours in effect on the Pi (its config, with what the admins "
        "saved) say the space was open, in the space's time zone, days closed left out. It "
        "comes from the opening hours alone: a space that stayed shut on an open day, or "
        "whose Pi was off, still counts those minutes (the opening hours are a schedule, "
        "known whether or not anything was recording, and the Pi works them out when it "
        "is back), and use outside the hours adds none. "
        "A space open 00:00 to 24:00 has 60 in each hour. The reports show it in hours. " + _OVER,
        ("open_minutes", "open_hours"),
        (REPORTS, API),
    ),
    Figure(
        "utilisation",
        "Utilisation (occupied hours ÷ open hours)",
        "hours",
        "percent",
        "Occupied minutes divided by open minutes over the period, for a space or (all "
        "spaces, a size band, the central page's comparison over 26 weeks) sums divided by "
        "sums. The motion counted is at any hour, the divisor only the opening hours, so it "
        "can pass 100 % when a space is used outside its hours. Blank (—) when there are no "
        "open minutes, and at a space without a motion sensor (one that has never reported "
        "motion), whose occupied minutes are not known: not 0 % (and no bar in the central "
        "page's comparison). All spaces and a size "
        "band take only the spaces with a motion sensor, their occupied minutes over their "
        "open minutes. Open minutes count while the Pi is off (they come from the opening "
        "hours), occupied minutes do not, so a Pi off in open hours lowers it. " + _OVER,
        ("utilisation",),
        (CENTRAL, REPORTS),
    ),
    # --- connection and sensors ---
    Figure(
        "connected-minutes",
        "Connected minutes",
        "link",
        "minutes",
        "The minutes the space's sync agent held a connection to the central broker, from "
        "the Pi's own log of connections, rounded to whole minutes per hour. The Pi counts "
        "them locally and sends them once the link is back, so an outage shows as hours "
        "with fewer connected minutes, not as missing hours. " + _OVER + " " + _CLOCK,
        ("connected_minutes",),
        (API,),
    ),
    Figure(
        "link-availability",
        "Link availability",
        "link",
        "percent",
        "Connected minutes divided by the minutes of the period since the space was first "
        "heard from (its first message, or its oldest hour if earlier), up to the end of "
        "the newest hour it has sent (or of the hour the collector last heard from it, if "
        "later), and never past the last hour that is over. The Pi sends its hours every "
        "sync.send_every_minutes (6 hours by default; a metered space at each contact, every "
        "sync.contact_every_minutes, a day by default): hours over but not sent yet are left "
        "out of the divisor rather than counted as an outage, and the report is marked "
        "provisional until they arrive. A space whose agent is offline (the broker's last "
        "will) counts on to the last hour over, its outage in the divisor. A metered space "
        '(sync.link = "metered") is not connected all the time: it makes contact every '
        "sync.contact_every_minutes, and its Pi counts the link up from one successful "
        "scheduled contact to the next, and down from the last successful contact before a "
        "failed attempt until the next one that succeeds. That is a lower bound, sampled "
        "at each contact, costing no bytes beyond the contacts, and it comes as the same "
        "connected minutes. A metered space that is late (see Online) counts on to the "
        "last hour over, as one offline does. All spaces: connected minutes added up "
        "divided by those minutes added up. Every minute counts, open or not.",
        ("link_availability",),
        (REPORTS,),
    ),
    Figure(
        "sensor-fault-minutes",
        "Sensor fault minutes",
        "link",
        "minutes",
        "The minutes in which any sensor was reported faulty (stuck, blocked, flickering), "
        "from its fault event to its next ok event, overlapping faults counted once. " + _OVER,
        ("sensor_fault_minutes",),
        (API,),
    ),
    # --- money ---
    Figure(
        "cost",
        "Cost",
        "money",
        "the currency entered",
        "The running costs the central team entered on the space's page for the period's "
        "months, added up. Blank (—) when none is entered; mixed currencies when they "
        "cannot be added. All spaces: the spaces' costs added up when they share a currency.",
        ("cost", "currency", "cost_months"),
        (REPORTS,),
    ),
    Figure(
        "cost-per-visit",
        "Cost per visit",
        "money",
        "the currency entered, per sign-in",
        "The cost divided by the visits in the months that have a cost entered (a month "
        "without a cost takes neither its cost nor its visits). A month still running takes "
        "its cost pro-rated to the part of the month its visits cover, up to the newest "
        "hour the space has sent (a third of the month over: a third of its cost), since "
        "the whole month's cost over a few days' visits would read as a dear visit; running "
        "costs accrue day by day, and the figure is provisional until the month is over. "
        "All spaces: the priced spaces' costs so counted added up, divided by their visits "
        "added up. Blank without a cost.",
        ("cost_per_visit",),
        (REPORTS,),
    ),
    # --- the space now ---
    Figure(
        "signed-in-now",
        "People signed in",
        "now",
        "people",
        "Visits signed in on the kiosk and not signed out yet, at this moment. Forgotten "
        "sign-outs count until the kiosk closes them at closing time or an admin signs "
        "them out.",
        ("people_signed_in", "signed_in"),
        ("the kiosk's Now page", "/api/v1/status"),
    ),
    Figure(
        "people-present-now",
        "People present, by the sensors' estimate",
        "now",
        "people",
        "The people counter's running total now (as in peak occupancy), with high "
        "confidence when the space stood empty and quiet within the last day and medium "
        "otherwise; without a counter, the people signed in (medium confidence), or 1 "
        "(low confidence) when nobody is signed in but a motion sensor saw motion in the "
        "last 30 minutes.",
        ("people", "people_now_present"),
        ("the kiosk's Now page", "/api/v1/status", "/spaceapi.json"),
    ),
    Figure(
        "online",
        "Online and last contact",
        "now",
        "status and time",
        "Online: the space's last status says its agent is connected (the broker's last "
        "will says offline when the connection is lost). A metered space (sync.link = "
        '"metered", shown as metered with how often it makes contact) connects on a '
        "schedule and sets no last will, so its status says online between contacts: it "
        "is online while its last contact is at most two intervals and an hour old, and "
        "late, not online, past that. Last contact: when the collector "
        "itself last received a valid message from the space (its retained status and "
        "last will are not contact); usage delivered: when it last stored hours from it.",
        ("online", "last_contact", "last_delivery", "contact_every", "late"),
        (CENTRAL, "/api/v1/spaces"),
    ),
    Figure(
        "backlog",
        "Backlog",
        "now",
        "hours",
        "The hours the Pi has counted but the collector has not acknowledged yet (a "
        "rolled-up day is 24), and since when, as the space's last status says.",
        ("backlog", "oldest_pending"),
        (CENTRAL, "/api/v1/spaces"),
    ),
    Figure(
        "clock",
        "Clock",
        "now",
        "synchronised or not",
        "Whether the Pi's clock is set, as its last status says: synchronised when "
        "systemd-timesyncd says so, not synchronised when it does not or when the clock "
        "reads a date before the release (a Pi that booted without the time), unknown when "
        "there is no systemd-timesyncd to ask. Times the Pi records while its clock is not "
        "trusted are held back from the counts until they are corrected.",
        ("clock",),
        (CENTRAL, "/api/v1/spaces"),
    ),
    Figure(
        "sensors",
        "Sensors",
        "now",
        "faults and alerts",
        "What the space's last status says is wrong: each sensor the sensors daemon judges "
        "faulty (stuck, blocked, flickering) and why, a door left open past "
        "sensors.door.open_alert_minutes, and a store that is full or failing (then the Pi "
        "is not recording). ok when none of these.",
        ("sensors", "store"),
        (CENTRAL, "/api/v1/spaces"),
    ),
    Figure(
        "hours-stored",
        "Hours stored",
        "now",
        "buckets",
        "The buckets the collector holds for the space, of all time: an hour is one, and "
        "so is a rolled-up day. It says how much history the space has sent, not how long "
        "it was open.",
        ("hours",),
        (CENTRAL, "/api/v1/spaces"),
    ),
    # --- about the data ---
    Figure(
        "provisional",
        "Provisional",
        "data",
        "yes or no",
        "A report period, or an API period, that holds an hour not over yet. Its visits, "
        "visitors and events count what the spaces have sent so far; its occupancy, open, "
        "occupied and connected minutes count only the hours that are over, its link "
        "availability only the hours each space has sent, and its cost per visit a running "
        "month's cost pro-rated to those hours. Hours a space has not sent yet (its Pi sends "
        "every few hours, or after an outage) arrive later and change a past period too: a "
        "report for a period that is over is marked provisional while a space online has "
        "not sent its last hours.",
        ("provisional",),
        (REPORTS, API),
    ),
    Figure(
        "period-hours",
        "Hours of a period",
        "data",
        "hours",
        "In /api/v1/usage: the length of the period (a day is 24, a week 168), however few "
        "of its hours hold data, not the hours of data in it. By hour, a rolled-up day is "
        "one entry of 24. Only periods with data are listed.",
        ("hours",),
        (API,),
    ),
)

BY_KEY = {figure.key: figure for figure in FIGURES}


def get(key: str) -> Figure:
    """The figure of `key`; KeyError for a key no figure has (a link to nowhere)."""
    return BY_KEY[key]


def by_section() -> list[tuple[str, str, list[Figure]]]:
    """(section key, its title, its figures) in the page's order."""
    return [(key, title, [f for f in FIGURES if f.section == key]) for key, title in SECTIONS]


def markdown() -> str:
    """docs/figures.md: every definition, each under an anchor of its key."""
    lines = [
        "# How the figures are counted",
        "",
        "<!-- Written by `python -m spacekiosk.figures > docs/figures.md` from",
        "     spacekiosk/figures.py: edit that, not this. -->",
        "",
        "Each figure the collector's pages, reports and API and the kiosk's admin pages "
        "show, defined once. The pages link each figure's label to its definition here "
        "(the collector at `/figures`, the kiosk at `/admin/figures`).",
        "",
        "All counts are anonymous: a space sends counts per hour, never who came.",
    ]
    for _key, title, found in by_section():
        lines += ["", f"## {title}"]
        for figure in found:
            lines += ["", f'<a id="{figure.key}"></a>', f"### {figure.title}", ""]
            lines.append(figure.definition)
            lines.append("")
            facts = [f"Unit: {figure.unit}."]
            if figure.names:
                facts.append("Named " + ", ".join(f"`{n}`" for n in figure.names) + ".")
            if figure.shown:
                facts.append("Shown on " + ", ".join(figure.shown) + ".")
            lines.append(" ".join(facts))
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(markdown(), end="")
