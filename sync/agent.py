"""The sync agent: hourly buckets out through MQTT 5, released only by the collector's ack.

paho's own queue lives in memory, so the agent hands it a small window of the durable
outbox at a time and lets the outbox, not paho, remember what is still owed.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import paho.mqtt.client as mqtt
import requests
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from sensors import state
from spacekiosk import __version__, clock
from spacekiosk.config import SpaceConfig
from spacekiosk.db import open_store
from spacekiosk.migrations import SPACE_MIGRATIONS
from spacekiosk.service import notify, watchdog_interval
from sync import outbox, protocol

log = logging.getLogger(__name__)

MAX_IN_FLIGHT = 4  # batches handed to paho at once; the rest wait in SQLite
SESSION_EXPIRY = 7 * 86400  # keep the ack subscription across short outages
DIGEST_DAYS = 35  # how far back a reconciliation digest reaches
HTTP_TIMEOUT = (10, 30)  # seconds to connect, to read the collector's answer


@dataclass
class Link:
    """What the paho thread tells the main loop; the main loop alone touches the store."""

    connected: threading.Event = field(default_factory=threading.Event)
    wake: threading.Event = field(default_factory=threading.Event)
    inbox: queue.Queue = field(default_factory=queue.Queue)
    refused: str | None = None


class Agent:
    """One space's sync agent; use as a context manager so the client is always closed."""

    def __init__(self, config: SpaceConfig):
        self.config = config
        self.space = config.space.id
        self.db = open_store(config.database.path, SPACE_MIGRATIONS)
        known = outbox.state(self.db)
        self.stamps = {k: known.get(k, 0) for k in ("last_send_at", "last_digest_at")}
        self.link = Link()
        self.last_status: dict | None = None
        self.told_backlog = False
        self.down_since = time.monotonic()
        self.ever_connected = False
        self.eager = False  # send whatever is due, now (`sync --once`)
        self.link_open = False  # an interval of link_log is ours to extend
        self.http = self._http() if config.sync.http_url else None
        self.client = self._client()

    def _http(self) -> requests.Session:
        session = requests.Session()
        token = self.config.sync.token_file.read_text().strip()
        session.headers["Authorization"] = f"Bearer {token}"
        session.headers["Content-Type"] = "application/octet-stream"
        if self.config.mqtt.ca_file:
            session.verify = str(self.config.mqtt.ca_file)
        return session

    def _client(self) -> mqtt.Client:
        cfg = self.config.mqtt
        client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=f"spacekiosk-{self.space}",
            protocol=mqtt.MQTTv5,
        )
        password = cfg.password_file.read_text().strip() if cfg.password_file else None
        client.username_pw_set(self.config.mqtt_username, password)
        if cfg.tls:
            client.tls_set(ca_certs=str(cfg.ca_file) if cfg.ca_file else None)
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
                self.config.mqtt.host,
                self.config.mqtt.port,
                reason_code,
            )
            return
        self.link.refused = None
        client.subscribe(protocol.topic(self.space, "ack"), qos=1)
        self.link.connected.set()
        self.link.inbox.put(("connected", None))
        self.link.wake.set()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties):
        if not self.link.connected.is_set():
            return  # a connection attempt that failed; nothing was up
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
        cfg = self.config.mqtt
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = SESSION_EXPIRY
        self.client.connect_async(
            cfg.host, cfg.port, keepalive=cfg.keepalive_seconds, clean_start=False, properties=props
        )
        self.client.loop_start()
        outbox.set_state(self.db, broker="connecting")
        return self

    def __exit__(self, *exc) -> None:
        if self.link_open:
            self._link("down")
        if self.link.connected.is_set():
            info = self.client.publish(
                protocol.topic(self.space, "status"), self._status(online=False), qos=1, retain=True
            )
            info.wait_for_publish(timeout=5)
            self.client.disconnect()
        self.client.loop_stop()
        outbox.set_state(self.db, broker="stopped")
        if self.http is not None:
            self.http.close()
        self.db.close()

    def _link(self, event: str) -> None:
        """Note when the broker was reachable — with a clock that can be trusted only:
        a Pi whose clock is not set yet would file the minutes under the wrong hours."""
        if clock.state() != "unsynchronized":
            outbox.link(self.db, event)

    def refresh(self) -> int:
        if self.link_open:
            self._link("still")
        queued = outbox.refresh(self.db, self.config)
        if queued:
            log.info("queued %d changed hour(s)", queued)
        return queued

    def pump(self) -> int:
        """Handle what the network said, then hand paho the next window. Returns acks seen."""
        acked = 0
        while True:
            try:
                kind, data = self.link.inbox.get_nowait()
            except queue.Empty:
                break
            if kind == "ack":
                acked += self._take_ack(data)
            elif kind == "connected":
                log.info("connected to %s:%d", self.config.mqtt.host, self.config.mqtt.port)
                outbox.set_state(self.db, broker="connected")
                self._link("up")
                self.link_open = self.ever_connected = True
                outbox.retry_now(self.db)
                self.last_status = None
            elif kind == "disconnected":
                if self.link_open:
                    self._link("down")
                self.link_open = False
                outbox.set_state(self.db, broker="unreachable")
                self.down_since = time.monotonic()
            elif kind == "refused":
                log.error("the broker refused a usage batch (%s); it stays queued", data)
        if self.link.refused:
            outbox.set_state(self.db, broker=f"refused: {self.link.refused}")
        if self.link.connected.is_set():
            self._send_window()
            self._publish_status()
            self._reconcile(self._digest_over_mqtt)
        elif self.http is not None and self._http_due():
            acked += self._send_http()
            self._reconcile(self._digest_over_https)
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
        every = self.config.sync.reconcile_hours * 3600
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
        url = f"{self.config.sync.http_url}/api/v1/{route}"
        try:
            response = self.http.post(url, data=body, timeout=HTTP_TIMEOUT)
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

    def _http_due(self) -> bool:
        """MQTT has been down (or refused) long enough to try the HTTPS route."""
        waited = time.monotonic() - self.down_since
        return self.link.refused is not None or waited >= self.config.sync.http_after_seconds

    def _send_http(self) -> int:
        """POST the next window of batches to the collector; its answer is the ack."""
        acked = 0
        for _ in range(MAX_IN_FLIGHT):
            batch = outbox.due(self.db, self.config.sync.batch_hours)
            if not batch:
                break
            outbox.sent(self.db, batch, self.config.sync.ack_timeout_seconds)
            ack = self._post("ingest", protocol.usage_message(self.space, batch), "a batch")
            if ack is None:
                break  # it stays queued, and comes due again
            acked += self._take_ack(ack)
        if acked:  # let the central team see the space, its backlog and its sensors
            with contextlib.suppress(requests.RequestException):
                self.http.post(
                    f"{self.config.sync.http_url}/api/v1/status",
                    data=self._status(online=True),
                    timeout=HTTP_TIMEOUT,
                )
        return acked

    def _send_due(self) -> bool:
        """Whether to send now. On a metered link every message and its ack cost bytes
        for their headers and keys, so finished hours wait for `sync.send_every_minutes`
        and go together, compressed as one — unless a backlog has built up (after an
        outage), or sent rows wait for a retry."""
        every = self.config.sync.send_every_minutes * 60
        if self.eager or every == 0:
            return True
        if time.time() - self.stamps.get("last_send_at", 0) >= every:
            return True
        return self.backlog() >= self.config.sync.batch_hours or outbox.retrying(self.db)

    def _send_window(self) -> None:
        if not self._send_due():
            return
        size = self.config.sync.batch_hours
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
            outbox.sent(self.db, batch, self.config.sync.ack_timeout_seconds)
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
            for name, h in state.health(self.db, self.config, now).items()
            if not h["ok"]
        }
        door = state.door(self.db, self.config, now)
        return {"faults": faults, "door_alert": bool(door and door["alert"])}

    def _status(self, online: bool, sensors: dict | None = None) -> bytes:
        health = outbox.health(self.db)
        return protocol.status_message(
            sensors=self._sensors() if sensors is None else sensors,
            online=online,
            backlog=health["backlog"],
            oldest_pending=health["oldest_pending"] and protocol.hour_iso(health["oldest_pending"]),
            last_sync=health["last_delivery_at"],
            agent=__version__,
            clock=clock.state(),
            about=self._about(),
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
        behind = backlog > self.config.sync.batch_hours  # more than one send's worth
        sensors = self._sensors()
        summary = {"behind": behind, "clock": clock.state(), **sensors}
        caught_up = backlog == 0 and self.told_backlog  # the last status told of a backlog
        if summary != self.last_status or caught_up:
            self.client.publish(
                protocol.topic(self.space, "status"),
                self._status(online=True, sensors=sensors),
                qos=1,
                retain=True,
            )
            self.last_status = summary
            self.told_backlog = backlog > 0

    def backlog(self) -> int:
        return outbox.health(self.db)["backlog"]


def run(config: SpaceConfig, stopping: threading.Event) -> int:
    """Serve until SIGTERM: refresh buckets every interval, deliver whenever connected."""
    interval = config.sync.interval_seconds
    watchdog = watchdog_interval()
    with Agent(config) as agent:
        notify("READY=1")
        next_refresh = 0.0
        while not stopping.is_set():
            now = time.monotonic()
            if now >= next_refresh:
                agent.refresh()
                next_refresh = now + interval
            agent.pump()
            if watchdog:
                notify("WATCHDOG=1")
            timeout = min(next_refresh - time.monotonic(), watchdog or 60, 60)
            agent.link.wake.wait(max(timeout, 0.05))
            agent.link.wake.clear()
        notify("STOPPING=1")
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
        left = total
        while left and time.monotonic() < deadline:
            agent.pump()  # sends what is due; unacked hours come due again with backoff
            if agent.backlog() < left:
                left = agent.backlog()
                took = time.monotonic() - started
                out(f"delivered {total - left}/{total} hour(s) in {took:.1f} s")
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
