"""Every figure is defined once (spacekiosk/figures.py, written out as docs/figures.md),
and every page that shows a figure links its label to that definition.

The pages are rendered by the real Flask apps over real stores seeded as the collector's
and the admin pages' own tests seed them: the central page, the report table and a
space's printable report (a past month and one still running), and the kiosk's Now and
History pages. Each link to a definition must name a figure that has one, and the
"How the figures are counted" page of the same app must hold its anchor."""

from __future__ import annotations

import re
import time
from html.parser import HTMLParser

import pytest
from admin import log_in as admin_log_in
from central import commit_usage
from conftest import LOGINS, ROOT, write_collector_config
from test_admin_history import midday_zone, seed, space_toml
from test_collector_web import ATHENS, NAIROBI, STATUS, at

import kiosk
from collector import accounts, pages, periods, store
from collector.web import create_app
from spacekiosk import config, figures, protocol
from spacekiosk.protocol import Bucket

DOC = ROOT / "docs" / "figures.md"
KEY = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$")


# --- the definitions themselves ---


def test_docs_figures_md_is_written_from_the_definitions():
    assert DOC.read_text() == figures.markdown(), (
        "docs/figures.md is out of date: run `python -m spacekiosk.figures > docs/figures.md`"
    )


def test_each_figure_is_defined_once_with_a_stable_key_a_unit_and_a_paragraph():
    keys = [f.key for f in figures.FIGURES]
    assert len(keys) == len(set(keys)), "a key defined twice"
    titles = [f.title for f in figures.FIGURES]
    assert len(titles) == len(set(titles)), "two figures under one title"
    sections = {key for key, _title in figures.SECTIONS}
    for figure in figures.FIGURES:
        assert KEY.match(figure.key), figure.key
        assert figure.section in sections, figure.key
        assert figure.unit and figure.title, figure.key
        assert len(figure.definition) > 80 and figure.definition.endswith("."), figure.key
        assert "\n" not in figure.definition, f"{figure.key}: one paragraph"
        assert f'<a id="{figure.key}"></a>' in figures.markdown()
    with pytest.raises(KeyError):
        figures.get("no-such-figure")


def test_every_count_the_api_and_the_csv_give_is_defined():
    named = {name for figure in figures.FIGURES for name in figure.names}
    given = {*protocol.COUNTS, *protocol.BREAKDOWNS, *pages.CSV_COLUMNS} - {"space", "name"}
    assert given <= named, f"defined nowhere: {sorted(given - named)}"


# --- reading the pages ---


class Links(HTMLParser):
    """Every link on a page: (href, its visible text, its aria-label), and every id."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.links: list[list] = []
        self.ids: set[str] = set()
        self.open: list[list] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if attrs.get("id"):
            self.ids.add(attrs["id"])
        if tag == "a":
            self.open.append([attrs.get("href") or "", "", attrs.get("aria-label")])

    def handle_data(self, data):
        for link in self.open:
            link[1] += data

    def handle_endtag(self, tag):
        if tag == "a" and self.open:
            self.links.append(self.open.pop())


def read(html: str) -> Links:
    parser = Links()
    parser.feed(html)
    return parser


def defined_on(html: str, page: str) -> set[str]:
    """The figure keys a page links to on `page` (the definitions' address), each link
    checked: a key with a definition, and an accessible name that is its visible text."""
    found = set()
    for href, text, label in read(html).links:
        if not href.startswith(page + "#"):
            continue
        key = href.split("#", 1)[1]
        assert key in figures.BY_KEY, f"a link to {href}, which no figure defines"
        assert text.strip(), f"a link to {href} with no visible text"
        assert label is None or text.strip() in label, f"{href}: its name hides its text"
        found.add(key)
    return found


def column_heads(html: str) -> list[str]:
    """The inner HTML of each column heading of the page's tables (not the charts')."""
    html = re.sub(r'<details class="chart-data">.*?</details>', "", html, flags=re.S)
    return re.findall(r'<th scope="col">(.*?)</th>', html, re.S)


# --- the collector ---

PASSWORD = LOGINS["central"]
NOW = at("2025-04-15T12:30")  # April is still running; March is over


@pytest.fixture
def collector(tmp_path):
    cfg = config.load(write_collector_config(tmp_path / "central", broker_port=1))
    db = store.connect(cfg.central)
    commit_usage(db, "athens", ATHENS, now=at("2025-04-01T00:10"))
    commit_usage(db, "nairobi", NAIROBI, now=at("2025-04-01T00:10"))
    store.commit_status(db, "athens", STATUS, now=at("2025-04-01T00:10"))
    accounts.set_space_info(db, "athens", "Athens Makerspace", 20)
    accounts.set_cost(db, "athens", "2025-03", 620, "EUR")
    accounts.add_user(db, "central", PASSWORD)
    # The month still running: an hour of this month, so its report is provisional.
    running = periods.period_start(int(time.time()), "hour") - 3600
    commit_usage(db, "athens", [Bucket(running, 1, {"signins": 2, "open_minutes": 60})])
    client = create_app(cfg).test_client()
    token = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/login").text)[1]
    answer = client.post(
        "/login", data={"name": "central", "password": PASSWORD, "csrf_token": token}
    )
    assert answer.status_code == 302
    yield client
    db.close()


THIS_MONTH = periods.recent_periods(time.time(), 1)[0]
# What each page shows, and so must link to a definition.
COLLECTOR_PAGES = {
    "/": {
        "online",
        "backlog",
        "clock",
        "sensors",
        "hours-stored",
        "visits-per-week",
        "visits",
        "utilisation",
        "visits-by-hour-of-week",
    },
    "/?space=athens": {"visits-per-week", "visits", "utilisation", "visits-by-hour-of-week"},
    "/reports?period=2025-03": {
        "visits",
        "unique-visitors",
        "new-visitors",
        "returning-visitors",
        "events-held",
        "utilisation",
        "peak-occupancy",
        "peak-per-capacity",
        "average-occupancy",
        "link-availability",
        "cost",
        "cost-per-visit",
        "visits-per-space",
    },
    f"/reports?period={THIS_MONTH}": {"provisional", "visits", "link-availability"},
    "/reports/athens?period=2025-03": {
        "visits",
        "unique-visitors",
        "new-visitors",
        "returning-visitors",
        "events-held",
        "utilisation",
        "peak-occupancy",
        "peak-per-capacity",
        "average-occupancy",
        "link-availability",
        "cost-per-visit",
        "visits-per-week",
        "by-purpose",
        "by-event",
        "visits-by-hour-of-week",
    },
    f"/reports/athens?period={THIS_MONTH}": {"provisional", "visits", "cost-per-visit"},
}
NOT_FIGURES = {"Space", "Size", "Spaces", "Event", "Report"}  # names, not figures


def test_the_collector_pages_link_every_figure_to_its_definition(collector):
    definitions = collector.get("/figures")
    assert definitions.status_code == 200
    anchors = read(definitions.text).ids
    assert set(figures.BY_KEY) <= anchors, set(figures.BY_KEY) - anchors
    for path, shown in COLLECTOR_PAGES.items():
        page = collector.get(path)
        assert page.status_code == 200, path
        linked = defined_on(page.text, "/figures")
        assert shown <= linked, f"{path} shows {sorted(shown - linked)} without a definition"
        assert linked <= anchors
        for head in column_heads(page.text):
            text = re.sub(r"<[^>]+>", "", head).strip()
            if text and text not in NOT_FIGURES:
                assert '<a href="/figures#' in head, f"{path}: the column {text!r} is not defined"


def test_the_collector_definitions_need_the_same_login_as_the_pages(tmp_path):
    cfg = config.load(write_collector_config(tmp_path / "central", broker_port=1))
    store.connect(cfg.central).close()
    answer = create_app(cfg).test_client().get("/figures")
    assert answer.status_code == 302 and "/login" in answer.headers["Location"]


# --- the kiosk's admin pages ---


@pytest.fixture
def admin_client(tmp_path):
    now = time.time()
    cfg = config.load(space_toml(tmp_path, midday_zone(now)))
    seed(cfg, now)  # visits, purposes, an event, the counter, a local admin
    app = kiosk.create_app(cfg, {"TESTING": True})
    return admin_log_in(app.test_client())


ADMIN_PAGES = {
    "/admin/": {"signed-in-now", "people-present-now"},
    "/admin/history?preset=30days": {
        "visits",
        "different-people",
        "new-people",
        "returning-people",
        "peak-occupancy",
        "present-on-average",
        "visits-per-week",
        "by-purpose",
        "by-event",
        "visits-by-hour-of-week",
    },
    "/admin/history?preset=today": {"visits", "peak-occupancy", "present-on-average"},
}


def test_the_admin_pages_link_every_figure_to_its_definition(admin_client):
    definitions = admin_client.get("/admin/figures")
    assert definitions.status_code == 200
    anchors = read(definitions.text).ids
    assert set(figures.BY_KEY) <= anchors, set(figures.BY_KEY) - anchors
    for path, shown in ADMIN_PAGES.items():
        page = admin_client.get(path)
        assert page.status_code == 200, path
        linked = defined_on(page.text, "/admin/figures")
        assert shown <= linked, f"{path} shows {sorted(shown - linked)} without a definition"
        assert linked <= anchors


def test_the_admin_definitions_are_for_admins_only(admin_client):
    anonymous = admin_client.application.test_client()
    answer = anonymous.get("/admin/figures")
    assert answer.status_code == 302 and "/admin/login" in answer.headers["Location"]
    outside = anonymous.get("/admin/figures", environ_base={"REMOTE_ADDR": "203.0.113.7"})
    assert outside.status_code == 404
