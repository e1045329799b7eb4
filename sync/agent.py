"""The sync agent: hourly buckets out through MQTT 5, released only by the collector's ack.

paho's own queue lives in memory, so the agent hands it a small window of the durable
outbox at a time and lets the outbox, not paho, remember what is still owed.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass, field

import paho.mqtt.client as mqtt
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
        self.link = Link()
        self.last_status: dict | None = None
        self.client = self._client()

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
        if self.link.connected.is_set():
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
        if self.link.connected.is_set():
            info = self.client.publish(
                protocol.topic(self.space, "status"), self._status(online=False), qos=1, retain=True
            )
            info.wait_for_publish(timeout=5)
            self.client.disconnect()
        self.client.loop_stop()
        outbox.set_state(self.db, broker="stopped")
        self.db.close()

    def refresh(self) -> int:
        queued = outbox.refresh(self.db, self.config.sync.recompute_days, config=self.config)
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
                outbox.retry_now(self.db)
                self.last_status = None
            elif kind == "disconnected":
                outbox.set_state(self.db, broker="unreachable")
            elif kind == "refused":
                log.error("the broker refused a usage batch (%s); it stays queued", data)
        if self.link.refused:
            outbox.set_state(self.db, broker=f"refused: {self.link.refused}")
        if self.link.connected.is_set():
            self._send_window()
            self._publish_status()
        return acked

    def _take_ack(self, payload: bytes) -> int:
        try:
            committed = protocol.read_ack(payload)
        except protocol.ProtocolError as exc:
            log.warning("ignoring a malformed ack: %s", exc)
            return 0
        released = outbox.delivered(self.db, committed)
        log.info(
            "collector committed %d hour(s); %d released from the outbox", len(committed), released
        )
        return len(committed)

    def _send_window(self) -> None:
        size = self.config.sync.batch_hours
        for _ in range(MAX_IN_FLIGHT):
            batch = outbox.due(self.db, size)
            if not batch:
                return
            info = self.client.publish(
                protocol.topic(self.space, "usage"),
                protocol.usage_message(self.space, batch),
                qos=1,
            )
            if info.rc != mqtt.MQTT_ERR_SUCCESS:
                return  # not connected after all; the rows stay due
            outbox.sent(self.db, batch, self.config.sync.ack_timeout_seconds)

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

    def _status(self, online: bool) -> bytes:
        health = outbox.health(self.db)
        return protocol.status_message(
            sensors=self._sensors(),
            online=online,
            backlog=health["backlog"],
            oldest_pending=health["oldest_pending"] and protocol.hour_iso(health["oldest_pending"]),
            last_sync=health["last_delivery_at"],
            agent=__version__,
            clock=clock.state(),
        )

    def _publish_status(self) -> None:
        health = outbox.health(self.db)
        summary = {"backlog": health["backlog"], "clock": clock.state(), **self._sensors()}
        if summary != self.last_status:
            self.client.publish(
                protocol.topic(self.space, "status"), self._status(online=True), qos=1, retain=True
            )
            self.last_status = summary

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
    deadline = time.monotonic() + timeout
    with Agent(config) as agent:
        agent.refresh()
        total = agent.backlog()
        out(f"{total} hour(s) to deliver to {config.mqtt.host}:{config.mqtt.port}")
        if total == 0:
            return 0
        if not agent.link.connected.wait(max(deadline - time.monotonic(), 0)):
            reason = agent.link.refused or "no connection"
            out(f"could not reach the broker ({reason}); {total} hour(s) stay queued")
            return 75
        outbox.retry_now(agent.db)
        left = total
        while left and time.monotonic() < deadline:
            agent.pump()  # sends what is due; unacked hours come due again with backoff
            if agent.backlog() < left:
                left = agent.backlog()
                out(f"delivered {total - left}/{total} hour(s)")
            agent.link.wake.wait(0.5)
            agent.link.wake.clear()
        if left:
            out(
                f"the collector has not acknowledged {left} hour(s) within {timeout:.0f} s; "
                "they stay queued"
            )
            return 75
        out(f"all {total} hour(s) delivered")
        return 0
