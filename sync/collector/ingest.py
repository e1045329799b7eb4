"""The collector's MQTT side: validate, commit, then acknowledge — in that order."""

from __future__ import annotations

import logging
import queue
import threading
from dataclasses import dataclass, field

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from spacekiosk.config import CollectorConfig
from spacekiosk.db import StoreError
from sync import protocol
from sync.collector import store

log = logging.getLogger(__name__)


BATCH = 500  # messages committed in one transaction at most


@dataclass
class Arrivals:
    """What a batch of messages asks the store for, read and validated before writing."""

    usage: list[tuple[str, list[protocol.Bucket]]] = field(default_factory=list)
    statuses: list[tuple[str, dict]] = field(default_factory=list)
    rejects: list[tuple[str, str]] = field(default_factory=list)
    digests: list[tuple[str, bytes, str]] = field(default_factory=list)


class Ingest:
    """Subscribes to every space's usage, status and digests; one thread commits what
    arrives, many messages to a transaction, and acknowledges only after the commit.

    With `central.shared`, several collectors share the spaces' messages (an MQTT 5
    shared subscription: each message goes to one of them). Their sessions then start
    clean: a collector that stops has nothing queued for it, and what it had taken but
    not acknowledged comes again from the space after its ack timeout.
    """

    def __init__(self, config: CollectorConfig):
        self.config = config
        self.db = store.connect(config.central, "ingest")
        self.messages: queue.Queue = queue.Queue(maxsize=10_000)
        self.connected = threading.Event()
        self.committed = 0  # buckets, for the benchmark and the health check
        self.client = self._client()
        self.worker = threading.Thread(target=self._work, name="ingest", daemon=True)

    def _client(self) -> mqtt.Client:
        cfg = self.config.mqtt
        client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=self.config.central.client_id,
            protocol=mqtt.MQTTv5,
        )
        password = cfg.password_file.read_text().strip() if cfg.password_file else None
        client.username_pw_set(cfg.username, password)
        if cfg.tls:
            client.tls_set(ca_certs=str(cfg.ca_file) if cfg.ca_file else None)
        client.reconnect_delay_set(1, 10)
        client.on_connect = self._on_connect
        client.on_disconnect = lambda *a: self.connected.clear()
        client.on_message = lambda c, u, m: self.messages.put((m.topic, m.payload))
        return client

    def _on_connect(self, client, userdata, flags, reason_code, properties):
        if reason_code.is_failure:
            log.error("broker refused the collector's login: %s", reason_code)
            return
        client.subscribe([(topic, 1) for topic in subscriptions(self.config.central.shared)])
        self.connected.set()
        log.info("collector subscribed on %s:%d", self.config.mqtt.host, self.config.mqtt.port)

    def start(self) -> None:
        cfg = self.config.mqtt
        self.worker.start()
        # Alone, a session that outlives a restart: the broker keeps the subscriptions and
        # queues what arrives meanwhile, so the spaces need not resend it.
        shared = self.config.central.shared
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 0 if shared else 86400
        self.client.connect_async(
            cfg.host,
            cfg.port,
            keepalive=cfg.keepalive_seconds,
            clean_start=shared,
            properties=props,
        )
        self.client.loop_start()

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
        self.messages.put(None)
        self.worker.join(timeout=10)
        self.db.close()

    def _work(self) -> None:
        while (first := self.messages.get()) is not None:
            items = [first]
            while len(items) < BATCH:
                try:
                    item = self.messages.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    self.messages.put(None)  # stop after this batch
                    break
                items.append(item)
            self.handle_many(items)

    def _reconnect(self) -> None:
        if store.alive(self.db):
            return
        try:
            fresh = store.connect(self.config.central, "ingest")
        except StoreError as exc:
            log.error("%s; trying again with the next messages", exc)
            return
        self.db.close()
        self.db = fresh
        log.info("reconnected to the central store")

    def handle_many(self, items: list[tuple[str, bytes]]) -> None:
        """Validate each message, commit the good ones together, then acknowledge them.
        A bad one is logged and counted, never committed, never fatal."""
        arrivals = Arrivals()
        for topic, payload in items:
            read(arrivals, topic, payload)
        try:
            store.commit(
                self.db, usage=arrivals.usage, statuses=arrivals.statuses, rejects=arrivals.rejects
            )
        except Exception:
            # e.g. a full disk, or PostgreSQL gone: nothing was committed, so no ack goes
            # out and the spaces send the batches again. Keep serving.
            log.exception("could not commit %d message(s)", len(items))
            self._reconnect()
            return
        for space, buckets in arrivals.usage:
            self.client.publish(protocol.topic(space, "ack"), protocol.ack_message(buckets), qos=1)
            self.committed += len(buckets)
        for space, payload, topic in arrivals.digests:
            try:
                ack = take_digest(self.db, space, payload)
            except protocol.ProtocolError as exc:
                log.warning("rejected a message on %s: %s", topic, exc)
                store.reject(self.db, topic, str(exc))
                continue
            if ack is not None:
                self.client.publish(protocol.topic(space, "ack"), ack, qos=1)


def subscriptions(shared: bool) -> list[str]:
    """The topic filters a collector subscribes to. Statuses are retained and every
    collector keeps them; usage and digests are shared out when `shared`."""
    topics = [f"{protocol.PREFIX}/+/{kind}" for kind in ("usage", "digest")]
    if shared:
        topics = [f"$share/{SHARE_GROUP}/{topic}" for topic in topics]
    return [*topics, f"{protocol.PREFIX}/+/status"]


SHARE_GROUP = "spacekiosk-collectors"


def read(arrivals: Arrivals, topic: str, payload: bytes) -> None:
    """File one message under what it asks for, or under rejects with the reason."""
    try:
        space, kind = protocol.parse_topic(topic)
        if kind == "usage":
            arrivals.usage.append((space, protocol.read_usage(payload, space)))
        elif kind == "digest":
            arrivals.digests.append((space, payload, topic))
        elif kind == "status":
            if payload:  # an empty retained message clears the topic
                arrivals.statuses.append((space, protocol.read_status(payload)))
        else:
            raise protocol.ProtocolError(f"unexpected topic kind {kind!r}")
    except protocol.ProtocolError as exc:
        log.warning("rejected a message on %s: %s", topic, exc)
        arrivals.rejects.append((topic, str(exc)))


def take_usage(db, space: str, payload: bytes) -> bytes:
    """Validate and commit a usage batch; the ack to send, true only once this returns.
    Raises ProtocolError, having written nothing, for a batch that breaks the protocol."""
    buckets = protocol.read_usage(payload, space)
    store.commit_usage(db, space, buckets)
    return protocol.ack_message(buckets)


def take_digest(db, space: str, payload: bytes) -> bytes | None:
    """Compare a space's digest with what is here; ask for the days that differ."""
    lacking = store.lacking(db, space, protocol.read_digest(payload, space))
    if lacking:
        log.warning("%s: asking again for %d day(s) that differ", space, len(lacking))
        return protocol.ack_message(resend=lacking)
    return None
