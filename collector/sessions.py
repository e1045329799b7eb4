"""The central page's sessions and failed logins, kept in the central store: the core's
(spacekiosk/sessions.py, shared with the kiosk's admin pages) over the store's own
transaction, so the same statements run on SQLite and PostgreSQL. Sole writer of
`sessions` and `login_tries`, for the login (auth.py) and accounts.py alike.

A session's cookie holds only a random id; logging out deletes its row, so a copied
cookie stops working at once; a new password or `spacekiosk user remove` deletes all of
that user's; each ends SESSION_HOURS after it began. Nobody who is not logged in has a
row: an anonymous client writes nothing here but its failed logins.
"""

from __future__ import annotations

from collector import store
from spacekiosk.sessions import TRIES_WINDOW, Sessions, Throttle

SESSION_HOURS = 12
TRIES = 10  # failed logins per address within TRIES_WINDOW seconds; then none is checked

SESSIONS = Sessions(store.transaction, hours=SESSION_HOURS)
THROTTLE = Throttle(store.transaction, tries=TRIES)

begin = SESSIONS.begin
find = SESSIONS.find
keep = SESSIONS.keep
end = SESSIONS.end
end_all = SESSIONS.end_all
count = SESSIONS.count
take_try = THROTTLE.take
forgive = THROTTLE.forgive

__all__ = ["SESSION_HOURS", "TRIES", "TRIES_WINDOW", "begin", "count", "end", "end_all"]
__all__ += ["find", "forgive", "keep", "take_try"]
