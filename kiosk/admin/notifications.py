"""Notifications: where the space's news goes (its chat, a mailbox, a webhook), and what.

Each target is an Apprise URL (notify_targets, migration 12), the events it wants, the
language of its messages, whether it is on, and whether an admin allowed personal data
in its messages (off by default; turning it on is warned about and audited). The URL
may hold a token, so once saved it is never shown back whole, nor written to the audit
log: only its scheme, and its host when that is a host name (masked()). Changing a
target without typing a URL keeps the saved one.

"Send a test" sends one message at once through spacekiosk/notices.py and keeps the
target's answer; the outbox (notify_outbox, filled and emptied by the sync agent's
notifier) is shown per target: what is waiting, since when, and what was last sent.
"""

from __future__ import annotations

import functools
import json
import re
import subprocess
import sys
import time
from datetime import UTC, datetime
from urllib.parse import urlsplit

from flask import g, redirect, render_template, request, url_for
from flask_babel import format_datetime
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l

from kiosk import i18n
from kiosk import space as space_config
from kiosk.admin import admin_required, audit, bp
from spacekiosk import notices
from spacekiosk.db import write

MAX_TARGETS = 50
MAX_NAME = 100
MAX_URL = notices.MAX_URL
MAX_ANSWER = notices.MAX_ANSWER
MASK = "•••"

# What a target can be told of: the kinds are spacekiosk/notices.py's, the labels the page's.
EVENT_LABELS = {
    notices.OPENED: _l("The space opened"),
    notices.CLOSED: _l("The space closed"),
    notices.DOOR_OPEN: _l("The door was left open"),
    notices.SENSOR_FAULT: _l("A sensor is at fault"),
    notices.SENSOR_OK: _l("A sensor recovered"),
    notices.BACKLOG: _l("Data not sent to the centre for over a day"),
    notices.CLOCK: _l("The clock is not synchronised"),
    notices.DISK: _l("The disk is nearly full"),
    notices.EVACUATION: _l("An evacuation was started"),
}
EXAMPLES = [
    ("Matrix", "matrixs://user:password@matrix.org/#room"),
    ("Telegram", "tgram://bot_token/chat_id"),
    ("Discord", "discord://webhook_id/webhook_token"),
    ("Slack", "slack://TokenA/TokenB/TokenC/#channel"),
    (_l("E-mail"), "mailtos://user:password@example.org?to=team@example.org"),
    ("ntfy", "ntfys://ntfy.sh/topic"),
    (_l("JSON webhook"), "jsons://example.org/path"),
]
# Native web addresses Apprise reads (a Discord or Slack webhook as the service gives it).
WEB = ("http", "https")


def event_keys() -> list[str]:
    """The kinds of event, in the order notices.py lists them."""
    return list(notices.KINDS)


def event_label(key: str) -> str:
    return str(EVENT_LABELS.get(key, key))


# Apprise is asked in a child process, as notices.send_test sends: loading it loads every
# plugin it has (paho-mqtt among them), which the kiosk never loads (tests/test_layers.py).
CHECK = """\
import json, sys
import apprise
url = sys.stdin.read()
schemes = set()
for schema in apprise.Apprise().details(show_disabled=True)["schemas"]:
    for key in ("protocols", "secure_protocols"):
        schemes.update(p.lower() for p in schema.get(key) or () if isinstance(p, str))
try:
    readable = bool(url) and apprise.Apprise.instantiate(url, suppress_exceptions=True) is not None
except Exception:
    readable = False
print(json.dumps({"schemes": sorted(schemes), "readable": readable}))
"""


@functools.lru_cache(maxsize=256)
def apprise_check(url: str) -> tuple[frozenset[str], bool]:
    """The URL schemes the installed Apprise knows, and whether it can make a
    notification service of `url` (nothing is sent)."""
    try:
        done = subprocess.run(
            [sys.executable, "-c", CHECK],
            input=url,
            capture_output=True,
            text=True,
            timeout=60,
        )
        answer = json.loads(done.stdout.strip().splitlines()[-1])
        return frozenset(answer["schemes"]), bool(answer["readable"])
    except (OSError, subprocess.TimeoutExpired, ValueError, KeyError, IndexError):
        return frozenset(), False


def known_schemes() -> frozenset[str]:
    return apprise_check("")[0]


def readable(url: str) -> bool:
    return apprise_check(url)[1]


def scheme_of(url: str) -> str:
    m = re.match(r"([A-Za-z][A-Za-z0-9+.-]{0,30})://", url)
    return m[1].lower() if m else ""


HOST_NAME = re.compile(
    r"^(localhost|\[[0-9a-fA-F:.]+\]|[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+)(:\d{1,5})?$"
)


def masked(url: str) -> str:
    """The URL as the page and the audit log may show it: its scheme, and its host when
    it is a host name or an address (Telegram's and Discord's "hosts" are tokens)."""
    scheme = scheme_of(url) or "?"
    try:
        host = urlsplit(url).netloc.rpartition("@")[2]
    except ValueError:
        host = ""
    if host and HOST_NAME.match(host):
        return f"{scheme}://{host}/{MASK}"
    return f"{scheme}://{MASK}"


def scrubbed(answer: str, url: str) -> str:
    """A target's answer, without any piece of its URL that may be a secret."""
    text = str(answer).replace(url, masked(url))
    shown = masked(url)
    for piece in sorted(set(re.split(r"[/:@?&=#]+", url)), key=len, reverse=True):
        if len(piece) >= 6 and piece not in shown:
            text = text.replace(piece, MASK)
    return "".join(ch if ch.isprintable() else " " for ch in text)[:MAX_ANSWER]


# --- a form ---


def read_form(form, languages: list[str], current: dict | None) -> tuple[dict, dict]:
    """The target a form describes, and the problems by field ("" keeps the saved URL
    when changing a target)."""
    problems: dict[str, list[str]] = {}

    def refuse(name: str, message: str) -> None:
        problems.setdefault(name, []).append(message)

    name = form.get("name", "").strip()
    if not name:
        refuse("name", _("Give the target a name, e.g. the chat's."))
    elif len(name) > MAX_NAME:
        refuse("name", _("A name of at most %(num)d characters.", num=MAX_NAME))
    elif not name.isprintable():
        refuse("name", _("The name holds a control character; type it again."))
    url = form.get("url", "").strip()
    if not url and current is not None:
        url = current["url"]  # left empty: the saved URL stays
    elif not url:
        refuse("url", _("Paste the target's Apprise URL, as in the examples."))
    elif len(url) > MAX_URL:
        refuse("url", _("A URL of at most %(num)d characters.", num=MAX_URL))
    elif not url.isprintable() or any(ch.isspace() for ch in url):
        refuse("url", _("The URL holds a space or a control character; paste it again."))
    elif not scheme_of(url):
        refuse("url", _("A URL starts with its service, e.g. tgram:// or jsons://."))
    elif scheme_of(url) not in known_schemes() and scheme_of(url) not in WEB:
        refuse(
            "url",
            _("Apprise does not know %(scheme)s://; see the examples.", scheme=scheme_of(url)),
        )
    elif not readable(url):
        refuse("url", _("Apprise cannot read this URL: check it against the service's example."))
    keys = event_keys()
    wanted = form.getlist("events")
    if any(key not in keys for key in wanted):
        refuse("events", _("Choose among the events listed."))
    language = form.get("language", "")
    allowed = list(languages) + ([current["language"]] if current else [])
    if language not in allowed:
        refuse("language", _("Choose one of the space's languages."))
    target = {
        "name": name,
        "url": url,
        "events": [k for k in keys if k in wanted],
        "language": language,
        "enabled": form.get("enabled") == "yes",
        "personal": form.get("personal") == "yes",
    }
    return target, problems


def _shown(target: dict) -> dict:
    """A target's form fields (never its URL)."""
    return {
        "name": target["name"],
        "events": target["events"],
        "language": target["language"],
        "enabled": target["enabled"],
        "personal": target["personal"],
    }


# --- the store ---


def _row(row: dict) -> dict:
    try:
        events = [e for e in json.loads(row["events"]) if isinstance(e, str)]
    except (ValueError, TypeError):
        events = []
    return row | {
        "events": events,
        "enabled": bool(row["enabled"]),
        "personal": bool(row["personal"]),
    }


def _targets(db) -> list[dict]:
    rows = db.execute(
        "SELECT id, name, url, events, language, personal, enabled, last_answer, last_answer_at"
        " FROM notify_targets ORDER BY name COLLATE NOCASE, id"
    ).fetchall()
    columns = ("id", "name", "url", "events", "language", "personal", "enabled",
               "last_answer", "last_answer_at")  # fmt: skip
    return [_row(dict(zip(columns, r, strict=True))) for r in rows]


def _target(db, target_id: int) -> dict | None:
    if not 0 < target_id < 2**62:
        return None
    return next((t for t in _targets(db) if t["id"] == target_id), None)


def _outbox(db) -> dict[int, dict]:
    """Per target: messages waiting, the oldest's time, the last sent and its answer."""
    found: dict[int, dict] = {}
    for target_id, waiting, oldest, last_sent in db.execute(
        "SELECT target_id, sum(sent_at IS NULL),"
        " min(CASE WHEN sent_at IS NULL THEN created_at END), max(sent_at)"
        " FROM notify_outbox GROUP BY target_id"
    ):
        found[target_id] = {"waiting": waiting or 0, "oldest": oldest, "last_sent": last_sent}
    return found


# --- the page ---


def _when(at: float | None) -> str:
    if at is None:
        return ""
    return format_datetime(datetime.fromtimestamp(at, UTC), "short")


def _page(form=None, problems=None, editing: dict | None = None, status: int = 200, message=""):
    cfg = space_config.config()
    targets = _targets(g.db)
    tested = request.args.get("tested", type=int) if request.method == "GET" else None
    return render_template(
        "admin/notifications.html",
        targets=targets,
        outbox=_outbox(g.db),
        masked=masked,
        when=_when,
        form=form if form is not None else {"events": [], "enabled": True, "personal": False,
                                            "language": cfg.space.languages[0]},
        problems=problems or {},
        focus=next((name for name in problems or {} if name), None),
        editing=editing,
        message=message,
        events=[(key, event_label(key)) for key in event_keys()],
        languages=[(code, i18n.native_name(code)) for code in cfg.space.languages]
        + ([(editing["language"], i18n.native_name(editing["language"]))]
           if editing and editing["language"] not in cfg.space.languages else []),
        examples=EXAMPLES,
        done=request.args.get("done") if request.method == "GET" else None,
        tested=next((t for t in targets if t["id"] == tested), None),
        max_url=MAX_URL,
        max_name=MAX_NAME,
    ), status  # fmt: skip


def _gone():
    return _page(message=_("That target was removed meanwhile; here is the list as it is now."),
                 status=404)  # fmt: skip


@bp.get("/notifications")
@admin_required
def notifications():
    return _page()


@bp.get("/notifications/<int:target_id>")
@admin_required
def notification_edit(target_id: int):
    target = _target(g.db, target_id)
    if target is None:
        return _gone()
    return _page(_shown(target), editing=target)


@bp.post("/notifications")
@admin_required
def notification_add():
    cfg = space_config.config()
    target, problems = read_form(request.form, cfg.space.languages, None)
    if problems:
        return _page(_shown(target), problems, status=400)
    with write(g.db):
        if g.db.execute("SELECT count(*) FROM notify_targets").fetchone()[0] >= MAX_TARGETS:
            refused = {
                "": [_("There are %(num)d targets already; remove one first.", num=MAX_TARGETS)]
            }
            return _page(_shown(target), refused, status=400)
        g.db.execute(
            "INSERT INTO notify_targets (name, url, events, language, personal, enabled,"
            " created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            [target["name"], target["url"], json.dumps(target["events"]), target["language"],
             int(target["personal"]), int(target["enabled"]), time.time()],
        )  # fmt: skip
        audit(g.db, "notification target added", _described(target))
        if target["personal"]:
            audit(g.db, "notification personal data allowed", _described(target))
    return redirect(
        url_for("admin.notifications", done="personal" if target["personal"] else "added")
    )


@bp.post("/notifications/<int:target_id>")
@admin_required
def notification_change(target_id: int):
    cfg = space_config.config()
    current = _target(g.db, target_id)
    if current is None:
        return _gone()
    target, problems = read_form(request.form, cfg.space.languages, current)
    if problems:
        return _page(_shown(target), problems, editing=current, status=400)
    with write(g.db):
        current = _target(g.db, target_id)
        if current is None:
            return _gone()
        g.db.execute(
            "UPDATE notify_targets SET name = ?, url = ?, events = ?, language = ?,"
            " personal = ?, enabled = ? WHERE id = ?",
            [target["name"], target["url"], json.dumps(target["events"]), target["language"],
             int(target["personal"]), int(target["enabled"]), target_id],
        )  # fmt: skip
        audit(g.db, "notification target changed", _described(target))
        allowed = target["personal"] and not current["personal"]
        if allowed:
            audit(g.db, "notification personal data allowed", _described(target))
        elif current["personal"] and not target["personal"]:
            audit(g.db, "notification personal data withdrawn", _described(target))
    return redirect(url_for("admin.notifications", done="personal" if allowed else "changed"))


@bp.post("/notifications/<int:target_id>/delete")
@admin_required
def notification_delete(target_id: int):
    with write(g.db):
        target = _target(g.db, target_id)
        if target is None:
            return _gone()
        g.db.execute("DELETE FROM notify_outbox WHERE target_id = ?", [target_id])
        g.db.execute("DELETE FROM notify_targets WHERE id = ?", [target_id])
        audit(g.db, "notification target removed", _described(target))
    return redirect(url_for("admin.notifications", done="removed"))


@bp.post("/notifications/<int:target_id>/test")
@admin_required
def notification_test(target_id: int):
    target = _target(g.db, target_id)
    if target is None:
        return _gone()
    try:
        ok, answer = notices.send_test(target["url"], target["language"], _space_name())
    except Exception as exc:  # a target's failure is its answer, never the page's
        ok, answer = False, f"{type(exc).__name__}: {exc}"
    shown = scrubbed(answer, target["url"]) or (_("Delivered.") if ok else _("No answer."))
    with write(g.db):
        g.db.execute(
            "UPDATE notify_targets SET last_answer = ?, last_answer_at = ? WHERE id = ?",
            [shown, time.time(), target_id],
        )
        audit(g.db, "notification test sent", f"{_described(target)} · {'ok' if ok else 'failed'}")
    return redirect(url_for("admin.notifications", tested=target_id, done="ok" if ok else "failed")
                    + f"#target-{target_id}")  # fmt: skip


def _space_name() -> str:
    return str(space_config.config().space.name)


def _described(target: dict) -> str:
    """A target for the audit log: its name and masked URL, never the URL itself."""
    return f"{target['name']} · {masked(target['url'])}"[:300]
