"""The sync agent: hourly buckets out through MQTT 5, released only by the collector's ack.

paho's own queue lives in memory, so the agent hands it a small window of the durable
outbox at a time and lets the outbox, not paho, remember what is still owed.

Time, which a Pi without a real-time clock cannot take for granted:
- **An hour is over when the Pi can vouch that it is** (`clock.Reckoning`): by the wall
  clock while it can be trusted; after the clock jumps ahead of its last trusted reading
  carried forward by the monotonic clock (set by hand, a wrong real-time clock), by that
  reading carried forward, until timesyncd vouches for the new time; after a jump back,
  by the earlier time at once; with nothing trusted yet in this boot, by the last
  trusted reading on record. A clock an hour fast never sends the running hour as over.
- **Connected minutes count only connections that existed.** Each connection is its own
  row of link_log, which only this run of the agent extends, and only while the clock
  stays the one it began on (a jump starts a new row): a restart, a night switched off
  or a clock being set never stretches an earlier one. A connection made before the
  clock was set is recorded as untrusted and moved by the correction once it is known,
  as the kiosk moves visits (`clock.Watch`); until then it is not counted.

**On a metered link** (`sync.link = "metered"`) the connection is not kept open: every
`sync.contact_every_minutes` the agent connects, sends what is due, waits for the acks,
publishes its status if it changed, and disconnects (sync/contact.py has the schedule and
the retries, docs/protocol.md the bytes). No last will: between contacts the space is
not offline, and its status says how often it calls (`contact_every`). Link availability
is sampled at the contacts: a successful contact extends the connection row of the one
before it, so the time between two successful contacts counts as connected; a failed
attempt ends that row at the last success, so the time from there to the next success
counts as down — a lower bound that costs no bytes of its own.

A full disk is ridden out: a failed write is logged once, said in the retained status
(`store`) and to systemd, and tried again with backoff; nothing is released that was not
recorded, so an ack lost to a failed write only means the hour is sent again.

SIGTERM is seen within a moment whatever the loop waits on: the stop also sets the event
the loop sleeps on. The agent then closes its link interval and publishes "offline".
"""

from __future__ import annotations

import contextlib
import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import paho.mqtt.client as mqtt
import requests
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from spacekiosk import __version__, clock, protocol, sensorstate, settings, syncstate
from spacekiosk.config import SpaceConfig
from spacekiosk.db import StoreHealth, open_store
from spacekiosk.migrations import SPACE_MIGRATIONS
from spacekiosk.service import notify, status, watchdog_interval
from sync import contact, outbox
from sync import notify as notifier

log = logging.getLogger(__name__)

MAX_IN_FLIGHT = 4  # batches handed to paho at once; the rest wait in SQLite
SESSION_EXPIRY = 7 * 86400  # keep the ack subscription across short outages
DIGEST_DAYS = 35  # how far back a reconciliation digest reaches
HTTP_TIMEOUT = (10, 30)  # seconds to connect, to read the collector's answer
GOODBYE_SECONDS = 1.5  # how long a stop waits for the broker to take the "offline" status
CONNECT_SECONDS = 30  # a metered contact not connected by then has failed


@dataclass
class Link:
    """What the paho thread tells the main loop; the main loop alone touches the store."""

    connected: threading.Event = field(default_factory=threading.Event)
    wake: threading.Event = field(default_factory=threading.Event)
    inbox: queue.Queue = field(default_factory=queue.Queue)
    refused: str | None = None
    failed: threading.Event = field(default_factory=threading.Event)  # a connect attempt


class Agent:
    """One space's sync agent; use as a context manager so the client is always closed."""

    def __init__(
        self,
        config: SpaceConfig,
        clock_watch: clock.Watch | None = None,
        reckoning: clock.Reckoning | None = None,
    ):
        self.base = config  # the file's; `config` adds what the admins saved
        self.space = config.space.id
        self.db = open_store(config.database.path, SPACE_MIGRATIONS)
        known = syncstate.state(self.db)
        stamps = ("last_send_at", "last_digest_at", "last_contact_at")
        self.stamps = {k: known.get(k, 0) for k in stamps}
        # A metered link's contacts: when the next is due, the one under way, and what
        # it still waits for the broker to take (see the module's docstring).
        self.metered = config.sync.metered
        self.schedule = contact.Schedule(config.sync.every_seconds, self.stamps["last_contact_at"])
        self.contact_began: float | None = None  # monotonic, while a contact is under way
        self.contact_reached = False  # the contact under way got its connection
        self.contact_leaving = False  # the disconnect under way is the agent's own
        self.unconfirmed: list[mqtt.MQTTMessageInfo] = []  # status, digest: not yet PUBACKed
        self.http_wanted = False  # a metered contact failed: try the HTTPS route
        self.resubscribe = False
        self.tls: contact.ResumingContext | None = None
        self.store = StoreHealth(config.database.path, "the sync agent")
        # Times of the link, and which hours are over: see the module's docstring.
        self.watch = clock_watch or clock.Watch()
        self.reckoning = reckoning or clock.Reckoning(known.get("clock_anchor"))
        self.fixes: list[clock.Correction] = []  # clock corrections not yet stored
        self.after_id = self.db.execute("SELECT coalesce(max(id), 0) FROM link_log").fetchone()[0]
        self.link_row: int | None = None  # the link_log row of the connection up now
        self.link_trusted = True  # that row's times were taken on a trusted clock
        self.link_base = 0.0  # and its clock, as (wall - monotonic)
        self.link = Link()
        self.stopping = threading.Event()  # set by a stop: no POST holds it up
        self.last_status: dict | None = None
        self.told_backlog = False
        self.down_since = time.monotonic()
        self.ever_connected = False
        self.eager = False  # send whatever is due, now (`sync --once`)
        self.http = self._http() if config.sync.http_url else None
        self.client = self._client()

    @property
    def config(self) -> SpaceConfig:
        """The config in effect: the file's, with the settings the local admins saved on
        the kiosk's pages (opening hours, capacity...), read afresh at each use: a change
        reaches the next hour's buckets and the next status without a restart."""
        return settings.effective(self.db, self.base)

    def _http(self) -> requests.Session:
        session = requests.Session()
        token = self.base.sync.token_file.read_text().strip()
        session.headers["Authorization"] = f"Bearer {token}"
        session.headers["Content-Type"] = "application/octet-stream"
        if self.base.mqtt.ca_file:
            session.verify = str(self.base.mqtt.ca_file)
        return session

    def _client(self) -> mqtt.Client:
        cfg = self.base.mqtt
        client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=f"spacekiosk-{self.space}",
            protocol=mqtt.MQTTv5,
        )
        password = cfg.password_file.read_text().strip() if cfg.password_file else None
        client.username_pw_set(self.base.mqtt_username, password)
        if cfg.tls:
            self.tls = contact.tls_context(cfg.ca_file, self.reckoning.wall, self.metered)
            client.tls_set_context(self.tls)
        if self.metered:
            # A contact's connection is not retried by paho: a failed one waits for the
            # schedule's next attempt.
            client.reconnect_delay_set(CONNECT_SECONDS * 2, CONNECT_SECONDS * 4)
            client.on_connect_fail = self._on_connect_fail
        else:
            client.will_set(
                protocol.topic(self.space, "status"),
                protocol.status_message(online=False, agent=__version__),
                qos=1,
                retain=True,
            )
            client.reconnect_delay_set(1, 300)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_publish = self._on_publish
        return client

    # --- paho's thread: record and wake, nothing more ---

    def _on_connect(self, client, userdata, flags, reason_code, properties):
        if reason_code.is_failure:
            self.link.refused = str(reason_code)
            log.error(
                "broker %s:%d refused the login: %s",
                self.base.mqtt.host,
                self.base.mqtt.port,
                reason_code,
            )
            return
        self.link.refused = None
        resumed = bool(getattr(client.socket(), "session_reused", False))
        if self.tls is not None:
            self.tls.keep(client.socket())  # for the next connection to resume
        # The session (7 days) keeps the ack subscription: a reconnection within it need
        # not pay for a SUBSCRIBE, unless acks went missing (see _send_window).
        if not flags.session_present or self.resubscribe:
            client.subscribe(protocol.topic(self.space, "ack"), qos=1)
            self.resubscribe = False
        self.link.connected.set()
        self.link.inbox.put(("connected", resumed))
        self.link.wake.set()

    def _on_connect_fail(self, client, userdata):
        self.link.failed.set()
        self.link.wake.set()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties):
        if not self.link.connected.is_set():
            return  # a connection attempt that failed; nothing was up
        if reason_code == 0:  # our own goodbye, at a stop or the end of `sync --once`
            log.info("disconnected from the broker")
        else:
            log.warning("disconnected from the broker: %s", reason_code)
        self.link.connected.clear()
        self.link.inbox.put(("disconnected", None))
        self.link.wake.set()

    def _on_message(self, client, userdata, message):
        self.link.inbox.put(("ack", message.payload))
        self.link.wake.set()

    def _on_publish(self, client, userdata, mid, reason_code, properties):
        if reason_code.is_failure:
            # e.g. 0x87 not authorised: the rows stay pending and are retried later.
            self.link.inbox.put(("refused", str(reason_code)))
            self.link.wake.set()

    # --- the main loop ---

    def __enter__(self) -> Agent:
        if self.metered:
            self._note(broker="between contacts")
        else:
            self._connect()
        return self

    def _connect(self) -> None:
        cfg = self.base.mqtt
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = SESSION_EXPIRY
        self.client.connect_async(
            cfg.host, cfg.port, keepalive=cfg.keepalive_seconds, clean_start=False, properties=props
        )
        self.client.loop_start()
        self._note(broker="connecting")

    def __exit__(self, *exc) -> None:
        with contextlib.suppress(sqlite3.Error):  # a full disk: the interval ends short
            self._check_clock()
            if self.link.connected.is_set() or not self.metered:
                self._link("down")
        if self.link.connected.is_set():
            with contextlib.suppress(sqlite3.Error, RuntimeError, ValueError):
                info = self.client.publish(
                    protocol.topic(self.space, "status"),
                    self._status(online=False),
                    qos=1,
                    retain=True,
                )
                info.wait_for_publish(timeout=GOODBYE_SECONDS)
            self.client.disconnect()
        self.client.loop_stop()
        self._note(broker="stopped")
        if self.http is not None:
            self.http.close()
        self.db.close()

    def _note(self, **values: object) -> None:
        """Record the agent's state for the kiosk's status page, unless the disk is full:
        then the retained status and systemd's say so instead."""
        try:
            outbox.set_state(self.db, **values)
        except sqlite3.OperationalError as exc:
            self.store.failed(exc)

    def _link(self, event: str) -> None:
        """Note that the connection to the broker exists now ("up", "still") or has just
        ended ("down"): the row of this connection is extended while the clock is the
        one it began on; otherwise a new row begins (see the module's docstring)."""
        row, self.link_row = self.link_row, None  # if the write fails, begin anew
        if event == "down" and row is None:
            return
        at, trusted = self.watch.now()
        base = at - self.watch.monotonic()
        jumped = abs(base - self.link_base) > clock.JUMP_SECONDS
        if row is not None and trusted == self.link_trusted and not jumped:
            outbox.link_extend(self.db, row, at)
        elif event == "down":
            return  # the clock changed since the last note: the interval ends there
        else:
            row = outbox.link_start(self.db, at, trusted)
            self.link_trusted = trusted
        self.link_base = base
        if event != "down":
            self.link_row = row

    def _check_clock(self) -> None:
        """Store the correction for link times taken before the clock was set, once the
        clock says what it is (kept until stored, should the disk be full)."""
        if fix := self.watch.check():
            self.fixes.append(fix)
        while self.fixes:
            fix = self.fixes[0]
            moved = outbox.link_correct(self.db, fix, self.after_id)
            self.fixes.pop(0)
            if self.link_row is not None and not self.link_trusted:
                self.link_base += fix.offset  # the open row is on the new clock now
                self.link_trusted = fix.synced
            log.info(
                "the clock was set: %d connection(s) recorded before moved by %+.1f s%s",
                moved,
                fix.offset,
                "" if fix.synced else " (the clock is still not synchronized)",
            )

    def refresh(self) -> int:
        self._check_clock()
        if self.link.connected.is_set():
            self._link("still")
        now = self.reckoning.now()  # hours over by a clock the Pi can vouch for
        queued = outbox.refresh(self.db, self.config, now)
        if self.reckoning.changed:
            outbox.set_state(self.db, clock_anchor=self.reckoning.record)
            self.reckoning.changed = False
        if queued:
            log.info("queued %d changed hour(s)", queued)
        return queued

    def pump(self) -> int:
        """Handle what the network said, then hand paho the next window. Returns acks seen."""
        self._check_clock()
        acked = 0
        while True:
            try:
                kind, data = self.link.inbox.get_nowait()
            except queue.Empty:
                break
            if kind == "ack":
                acked += self._take_ack(data)
            elif kind == "connected":
                log.info("connected to %s:%d%s", self.base.mqtt.host, self.base.mqtt.port,
                         " (TLS session resumed)" if data else "")  # fmt: skip
                self.ever_connected = True
                if not self.metered:  # the last will may have said offline meanwhile
                    self.last_status = None
                self._link("up")
                self._note(broker="connected")
                outbox.retry_now(self.db)
                if self.metered:  # the hours over by now, with this contact's link time
                    self.contact_reached = True
                    self.refresh()
            elif kind == "disconnected":
                self.down_since = time.monotonic()
                if self.contact_leaving:  # the end of a metered contact: the link is fine
                    self.contact_leaving = False
                else:
                    self._link("down")
                    self._note(broker="unreachable")
            elif kind == "refused":
                log.error("the broker refused a usage batch (%s); it stays queued", data)
        if self.link.refused:
            self._note(broker=f"refused: {self.link.refused}")
        if self.link.connected.is_set():
            if self._status_due():  # on connecting, before the hours: who it is, and its backlog
                self._publish_status()
            self._send_window()
            self._reconcile(self._digest_over_mqtt)
        elif self.http is not None and self._http_due():
            acked += self._send_http()
            self._reconcile(self._digest_over_https)
        if self.metered:  # last: a contact ends only once its status and digest are out
            self._contact()
        return acked

    def _take_ack(self, payload: bytes) -> int:
        try:
            ack = protocol.read_ack(payload)
        except protocol.ProtocolError as exc:
            log.warning("ignoring a malformed ack: %s", exc)
            return 0
        if ack.committed:
            released = outbox.delivered(self.db, ack.committed)
            log.info(
                "collector committed %d bucket(s); %d released from the outbox",
                len(ack.committed),
                released,
            )
        if ack.resend:
            queued = outbox.resend(self.db, ack.resend)
            log.warning(
                "the collector lacks part of %s; %d bucket(s) queued again",
                ", ".join(protocol.day_iso(d) for d in ack.resend),
                queued,
            )
        return len(ack.committed)

    def _reconcile(self, send: Callable[[bytes], bool]) -> None:
        """Now and then, with nothing pending, tell the collector what it should hold;
        `send` takes the digest on the route that is up, and says if it went."""
        every = self.base.sync.reconcile_hours * 3600
        now = time.time()
        if now - self.stamps.get("last_digest_at", 0) < every or self.backlog():
            return
        since = int(now - DIGEST_DAYS * 86400) // protocol.DAY * protocol.DAY
        days = protocol.digest(outbox.delivered_units(self.db, since))
        if days and send(protocol.digest_message(self.space, days)):
            self._stamp("last_digest_at", now)
            log.info("sent a reconciliation digest of %d day(s)", len(days))

    def _digest_over_mqtt(self, digest: bytes) -> bool:
        """Publish it; the collector answers on the ack topic if it lacks anything."""
        info = self.client.publish(protocol.topic(self.space, "digest"), digest, qos=1)
        self._confirm(info)
        return info.rc == mqtt.MQTT_ERR_SUCCESS

    def _digest_over_https(self, digest: bytes) -> bool:
        """POST it; the answer is the ack, asking again for any day that differs."""
        ack = self._post("digest", digest, "the reconciliation digest")
        if ack is not None:
            self._take_ack(ack)
        return ack is not None

    def _post(self, route: str, body: bytes, what: str) -> bytes | None:
        """POST to the collector's /api/v1/`route`: its answer (an ack), or None once the
        failure is in the log and the state the status reports."""
        url = f"{self.base.sync.http_url}/api/v1/{route}"
        try:
            response = self._post_until_stopped(url, body)
        except requests.RequestException as exc:
            log.warning("could not send %s over HTTPS to %s: %s", what, url, exc)
            outbox.set_state(self.db, http="unreachable")
            return None
        if response.status_code != 200:
            log.error("the collector refused %s over HTTPS (%d): %s", what,
                      response.status_code, response.text[:200])  # fmt: skip
            outbox.set_state(self.db, http=f"refused: {response.status_code}")
            return None
        outbox.set_state(self.db, http="ok")
        return response.content

    def _post_until_stopped(self, url: str, body: bytes) -> requests.Response:
        """The POST, in a thread of its own: a slow or silent collector can hold a POST
        for HTTP_TIMEOUT, longer than systemd waits for a stop. A stop abandons it; what
        it carried stays in the outbox, unacknowledged, and goes again after a restart."""
        answer: list = []
        done = threading.Event()

        def post() -> None:
            try:
                answer.append(self.http.post(url, data=body, timeout=HTTP_TIMEOUT))
            except Exception as exc:  # handed to the loop, which logs it
                answer.append(exc)
            finally:
                done.set()

        threading.Thread(target=post, name="https", daemon=True).start()
        while not done.wait(0.1):
            if self.stopping.is_set():
                raise requests.ConnectionError("stopped while the collector was answering")
        if isinstance(answer[0], Exception):
            raise answer[0]
        return answer[0]

    def _http_due(self) -> bool:
        """MQTT has been down (or refused) long enough to try the HTTPS route; on a
        metered link, a contact has just failed."""
        if self.metered:
            wanted, self.http_wanted = self.http_wanted, False
            return wanted
        waited = time.monotonic() - self.down_since
        return self.link.refused is not None or waited >= self.base.sync.http_after_seconds

    def _send_http(self) -> int:
        """POST the next window of batches to the collector; its answer is the ack."""
        acked = 0
        for _ in range(MAX_IN_FLIGHT):
            batch = outbox.due(self.db, self.base.sync.batch_hours)
            if not batch:
                break
            outbox.sent(self.db, batch, self.base.sync.ack_timeout_seconds)
            ack = self._post("ingest", protocol.usage_message(self.space, batch), "a batch")
            if ack is None:
                break  # it stays queued, and comes due again
            acked += self._take_ack(ack)
        if acked:  # let the central team see the space, its backlog and its sensors
            with contextlib.suppress(requests.RequestException):
                self._post_until_stopped(
                    f"{self.base.sync.http_url}/api/v1/status", self._status(online=True)
                )
        return acked

    def _send_due(self) -> bool:
        """Whether to send now. On a metered link every message and its ack cost bytes
        for their headers and keys, so finished hours wait for `sync.send_every_minutes`
        and go together, compressed as one — unless a backlog has built up (after an
        outage), or sent rows wait for a retry."""
        every = self.base.sync.send_every_minutes * 60
        if self.eager or every == 0 or self.metered:  # a contact sends all that is due
            return True
        if time.time() - self.stamps.get("last_send_at", 0) >= every:
            return True
        return self.backlog() >= self.base.sync.batch_hours or outbox.retrying(self.db)

    def _send_window(self) -> None:
        if not self._send_due():
            return
        size = self.base.sync.batch_hours
        if outbox.retrying(self.db):  # an ack went missing: make sure acks can arrive
            self.resubscribe = True
        sent_any = False
        for _ in range(MAX_IN_FLIGHT):
            batch = outbox.due(self.db, size)
            if not batch:
                break
            info = self.client.publish(
                protocol.topic(self.space, "usage"),
                protocol.usage_message(self.space, batch),
                qos=1,
            )
            if info.rc != mqtt.MQTT_ERR_SUCCESS:
                break  # not connected after all; the rows stay due
            outbox.sent(self.db, batch, self.base.sync.ack_timeout_seconds)
            sent_any = True
        if sent_any:
            self._stamp("last_send_at", time.time())

    def _stamp(self, key: str, at: float) -> None:
        """Remember when the agent last sent or reconciled: in memory for the loop, and
        in the store for the next start."""
        self.stamps[key] = at
        outbox.set_state(self.db, **{key: at})

    def _sensors(self) -> dict:
        """Only what is wrong, to keep the retained status small on a metered link."""
        now = time.time()
        faults = {
            name: h["reason"]
            for name, h in sensorstate.health(self.db, self.config, now).items()
            if not h["ok"]
        }
        door = sensorstate.door(self.db, self.config, now)
        return {"faults": faults, "door_alert": bool(door and door["alert"])}

    def _status(self, online: bool, sensors: dict | None = None) -> bytes:
        health = syncstate.health(self.db)
        return protocol.status_message(
            sensors=self._sensors() if sensors is None else sensors,
            online=online,
            backlog=health["backlog"],
            oldest_pending=health["oldest_pending"] and protocol.hour_iso(health["oldest_pending"]),
            last_sync=health["last_delivery_at"],
            agent=__version__,
            clock=clock.state(),
            about=self._about(),
            **({} if self.store.state == "ok" else {"store": self.store.state}),
            **({"contact_every": self.base.sync.every_seconds} if self.metered else {}),
        )

    def _about(self) -> dict:
        """What the central team would otherwise type in: the space's name, capacity and
        time zone (the space's, not any visitor's)."""
        space = self.config.space
        return {"name": space.name, "capacity": space.capacity, "timezone": space.timezone.key}

    def _publish_status(self) -> None:
        """On connecting, and when something the central team watches changes — not on
        every delivery: a retained message costs bytes on a metered link."""
        backlog = self.backlog()
        behind = backlog > self.base.sync.batch_hours  # more than one send's worth
        sensors = self._sensors()
        summary = {
            "behind": behind,
            "clock": clock.state(),
            "store": self.store.state,
            "about": self._about(),  # an admin changed the capacity: the centre hears of it
            **sensors,
        }
        caught_up = backlog == 0 and self.told_backlog  # the last status told of a backlog
        if summary != self.last_status or caught_up:
            info = self.client.publish(
                protocol.topic(self.space, "status"),
                self._status(online=True, sensors=sensors),
                qos=1,
                retain=True,
            )
            self._confirm(info)
            # Not handed to paho (the link went meanwhile): the next connection tells it.
            self.last_status = summary if info.rc == mqtt.MQTT_ERR_SUCCESS else None
            self.told_backlog = backlog > 0

    def backlog(self) -> int:
        return syncstate.health(self.db)["backlog"]

    def _status_due(self) -> bool:
        """An always-on link tells its status as things change. A metered contact tells
        it once, at its end: once its hours are acknowledged, or once it has waited an
        ack timeout for them (the central team then hears of the backlog)."""
        if not self.metered or self.contact_began is None:
            return True
        waited = time.monotonic() - self.contact_began
        return self.backlog() == 0 or waited > self.base.sync.ack_timeout_seconds

    # --- a metered link's contacts ---

    def _contact(self) -> None:
        """Begin a contact when one is due; end the one under way when all it sent is
        acknowledged, when it could not connect, or when it has taken too long (a link
        gone silent, as behind a carrier NAT that dropped it, never holds it open)."""
        if self.contact_began is None:
            if self.schedule.due(time.time()):
                self.contact_began = time.monotonic()
                self.contact_reached = False
                self.link.failed.clear()
                self.unconfirmed.clear()
                log.info("contacting %s:%d", self.base.mqtt.host, self.base.mqtt.port)
                self._connect()
            return
        took = time.monotonic() - self.contact_began
        limit = CONNECT_SECONDS + 2 * self.base.sync.ack_timeout_seconds
        if not self.link.connected.is_set():
            if self.link.failed.is_set() or took > CONNECT_SECONDS or self.contact_reached:
                self._end_contact(reached=self.contact_reached, complete=False)
        elif self._contact_complete():
            self._end_contact(reached=True, complete=True)
        elif took > limit:
            self._end_contact(reached=True, complete=False)

    def _confirm(self, info: mqtt.MQTTMessageInfo) -> None:
        """Keep `info` until the broker has taken its message (a contact waits for it)."""
        self.unconfirmed = [i for i in self.unconfirmed if _waiting(i)] + [info]

    def _contact_complete(self) -> bool:
        self.unconfirmed = [i for i in self.unconfirmed if _waiting(i)]
        return not self.unconfirmed and self.backlog() == 0

    def _end_contact(self, reached: bool, complete: bool) -> None:
        self.contact_began = None
        if complete:  # the link was up to here
            self._link("still")
        if self.link.connected.is_set():
            self.contact_leaving = True
            self.client.disconnect()
        self.client.loop_stop()
        self.link.connected.clear()
        now = time.time()
        if complete:
            self.schedule.succeeded(now)
            self._stamp("last_contact_at", now)
            wait = self.schedule.every
        else:
            wait = self.schedule.failed(now)
        if not reached:
            self.link_row = None  # down from the last successful contact (module docstring)
            self.http_wanted = True
        # For the kiosk's status page: how the link stands, and when it is tried next.
        self._note(
            broker="between contacts" if reached else "unreachable",
            next_contact_at=self.schedule.due_at,
        )
        if complete:
            log.info("contact complete; the next in %.0f min", wait / 60)
            return
        log.warning(
            "the contact %s; trying again in %.0f min",
            "was cut short" if reached else "could not connect",
            wait / 60,
        )

    def troubled(self, exc: sqlite3.OperationalError) -> float:
        """A write failed: say so (once) and return how long to wait before trying again."""
        first = self.store.failures == 0
        delay = self.store.failed(exc)
        if first:
            status(f"cannot write the store ({self.store.state}); retrying")
            if self.link.connected.is_set():
                with contextlib.suppress(sqlite3.Error):
                    self._publish_status()
        return delay

    def recovered(self) -> None:
        failing = self.store.failures
        self.store.ok()
        if failing:
            status("running")


def _waiting(info: mqtt.MQTTMessageInfo) -> bool:
    """The message is with paho, not yet taken by the broker."""
    try:
        return not info.is_published()
    except (RuntimeError, ValueError):  # it never went: paho was not connected
        return False


def run(config: SpaceConfig, stopping: threading.Event) -> int:
    """Serve until SIGTERM: refresh buckets every interval, deliver whenever connected;
    ride out a store that cannot be written, trying again with backoff."""
    interval = config.sync.interval_seconds
    watchdog = watchdog_interval()
    with Agent(config) as agent:
        agent.stopping = stopping
        # The loop sleeps on the link's wake event; a stop must end that sleep at once.
        threading.Thread(
            target=lambda: stopping.wait() and agent.link.wake.set(), name="stop", daemon=True
        ).start()
        # The space's notifications (sync/notify.py), on a connection of their own, so a
        # slow chat service never holds up the usage data.
        notifying = notifier.start(config, stopping)
        notify("READY=1")
        next_refresh = retry_at = 0.0
        while not stopping.is_set():
            now = time.monotonic()
            if now >= retry_at:
                try:
                    if now >= next_refresh:
                        next_refresh = now + interval
                        agent.refresh()
                    agent.pump()
                    agent.recovered()
                except sqlite3.OperationalError as exc:
                    retry_at = time.monotonic() + agent.troubled(exc)
                    next_refresh = min(next_refresh, retry_at)
            if watchdog:
                notify("WATCHDOG=1")
            wake_at = max(next_refresh, retry_at)
            timeout = min(wake_at - time.monotonic(), watchdog or 60, 60)
            agent.link.wake.wait(max(timeout, 0.05))
            agent.link.wake.clear()
        notify("STOPPING=1")
        notifying.join(timeout=GOODBYE_SECONDS)
    return 0


def run_once(config: SpaceConfig, timeout: float = 120, out=print) -> int:
    """Refresh, deliver the whole backlog with progress lines, and exit: 0 if all delivered,
    75 (EX_TEMPFAIL) if some hours are still queued when `timeout` seconds have passed."""
    started = time.monotonic()
    deadline = started + timeout
    with Agent(config) as agent:
        agent.refresh()
        total = agent.backlog()
        route = f"{config.mqtt.host}:{config.mqtt.port}"
        if agent.http is not None:
            route += f" (or {config.sync.http_url} over HTTPS)"
        out(f"{total} hour(s) to deliver to {route}")
        if total == 0:
            return 0
        outbox.retry_now(agent.db)
        agent.eager = True
        agent.schedule.due_at = 0.0  # a metered link: contact now
        left = total
        while left and time.monotonic() < deadline:
            agent.pump()  # sends what is due; unacked hours come due again with backoff
            if agent.backlog() < left:
                left = agent.backlog()
                took = time.monotonic() - started
                out(f"delivered {total - left}/{total} hour(s) in {took:.1f} s")
            agent.link.wake.wait(0.5)
            agent.link.wake.clear()
        while agent.contact_began is not None and time.monotonic() < deadline:
            agent.pump()  # a metered contact ends with its status and digest out
            agent.link.wake.wait(0.5)
            agent.link.wake.clear()
        if not left:
            out(f"all {total} hour(s) delivered")
            return 0
        if left == total and not agent.ever_connected:
            reason = agent.link.refused or "no connection"
            out(f"could not reach the broker ({reason}); {total} hour(s) stay queued")
        else:
            out(
                f"the collector has not acknowledged {left} hour(s) within {timeout:.0f} s; "
                "they stay queued"
            )
        return 75
